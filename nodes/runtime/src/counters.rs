//! Message and error counters kept by the runtime for every node.

use std::collections::BTreeMap;

/// Per-node counters: messages in/out per port, errors per class, queue drops per input.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Messages received per input port.
    pub received: BTreeMap<String, u64>,
    /// Messages sent per output port.
    pub sent: BTreeMap<String, u64>,
    /// Rows (items) sent per output port.
    pub rows_sent: BTreeMap<String, u64>,
    /// Stage errors per class (`input`, `external`, `internal`).
    pub errors: BTreeMap<&'static str, u64>,
    /// Messages dora dropped from an input queue because it was full.
    pub dropped: BTreeMap<String, u64>,
    /// Sends that dora refused.
    pub send_failures: u64,
}

impl Counters {
    /// Adds one to a named counter in `map`.
    pub(crate) fn bump<K: Ord + Clone>(map: &mut BTreeMap<K, u64>, key: &K, by: u64) {
        if let Some(v) = map.get_mut(key) {
            *v += by;
        } else {
            map.insert(key.clone(), by);
        }
    }

    /// Total messages dropped by dora's input queues.
    pub fn total_dropped(&self) -> u64 {
        self.dropped.values().sum()
    }

    /// Total stage errors of all classes.
    pub fn total_errors(&self) -> u64 {
        self.errors.values().sum()
    }
}
