//! Stages run in one process, without dora: the same stage code, the same config, messages routed
//! along the graph's edges through Arrow batches. Used by `forgeline score` (the graph's own
//! operators over recordings) and as the fused baseline of the benchmarks.

use crate::stage::{Input, Outbox, Stage, StageError};
use arrow::array::ArrayRef;
use arrow::record_batch::RecordBatch;
use forgeline_schemas::arrow;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// A stage behind a trait object, so stages of different types can be chained.
pub trait DynStage {
    /// Feeds one message to the stage and returns what it sent.
    ///
    /// # Errors
    /// The stage's [`StageError`].
    fn call(
        &mut self,
        port: &str,
        data: &ArrayRef,
        now_ns: u64,
    ) -> Result<Vec<(String, RecordBatch)>, StageError>;

    /// Tells the stage the run is over and returns what it sent.
    ///
    /// # Errors
    /// The stage's [`StageError`].
    fn stop(&mut self, now_ns: u64) -> Result<Vec<(String, RecordBatch)>, StageError>;
}

impl<S: Stage> DynStage for S {
    fn call(
        &mut self,
        port: &str,
        data: &ArrayRef,
        now_ns: u64,
    ) -> Result<Vec<(String, RecordBatch)>, StageError> {
        let mut out = Outbox::default();
        let input = Input {
            port,
            data,
            now_ns,
            sent_ns: now_ns,
        };
        let r = self.on_input(&input, &mut out);
        let sent = out.take();
        r.map(|()| sent)
    }

    fn stop(&mut self, now_ns: u64) -> Result<Vec<(String, RecordBatch)>, StageError> {
        let mut out = Outbox::default();
        self.on_stop(now_ns, &mut out)?;
        Ok(out.take())
    }
}

/// One message that left a node: `(node id, output id, batch)`.
pub type Emitted = (String, String, RecordBatch);

/// Stages wired as in a graph, run in the calling thread.
#[derive(Default)]
pub struct InProcessGraph {
    stages: BTreeMap<String, Box<dyn DynStage>>,
    /// `(node, output)` → `[(node, input)]`
    routes: BTreeMap<(String, String), Vec<(String, String)>>,
}

impl InProcessGraph {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a stage under `node_id`.
    pub fn add_stage(&mut self, node_id: &str, stage: Box<dyn DynStage>) {
        self.stages.insert(node_id.to_owned(), stage);
    }

    /// Routes `from_node/output` to `to_node`'s input `input`.
    pub fn connect(&mut self, from_node: &str, output: &str, to_node: &str, input: &str) {
        self.routes
            .entry((from_node.to_owned(), output.to_owned()))
            .or_default()
            .push((to_node.to_owned(), input.to_owned()));
    }

    /// Whether a stage named `node_id` is in the graph.
    pub fn has_stage(&self, node_id: &str) -> bool {
        self.stages.contains_key(node_id)
    }

    /// Publishes `batch` as if node `from_node` had sent it on `output`, runs every stage it
    /// reaches (breadth first, in order), and returns every message sent on the way, including
    /// the injected one. A stage error is returned with the node id; messages sent before it are
    /// kept in `emitted`.
    ///
    /// # Errors
    /// `(node id, error)` of the first stage that failed.
    pub fn publish(
        &mut self,
        from_node: &str,
        output: &str,
        batch: RecordBatch,
        now_ns: u64,
        emitted: &mut Vec<Emitted>,
    ) -> Result<(), (String, StageError)> {
        let mut queue: VecDeque<Emitted> = VecDeque::new();
        queue.push_back((from_node.to_owned(), output.to_owned(), batch));
        while let Some((node, out, batch)) = queue.pop_front() {
            if let Some(targets) = self.routes.get(&(node.clone(), out.clone())) {
                let data: ArrayRef = Arc::new(forgeline_schemas::to_struct_array(&batch));
                for (to, input) in targets {
                    if let Some(stage) = self.stages.get_mut(to) {
                        let sent = stage
                            .call(input, &data, now_ns)
                            .map_err(|e| (to.clone(), e))?;
                        queue.extend(sent.into_iter().map(|(port, b)| (to.clone(), port, b)));
                    }
                }
            }
            emitted.push((node, out, batch));
        }
        Ok(())
    }
}
