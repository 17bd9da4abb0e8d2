//! The event loop: dora events in, [`Stage`] calls, Arrow messages out.

use crate::config::{CONFIG_ENV, parse_config};
use crate::counters::Counters;
use crate::stage::{Idle, InitContext, Input, Outbox, Stage, StageError, UpstreamEvent};
use arrow::array::{Array, ArrayRef};
use dora_node_api::{DoraNode, Event, EventStream, MetadataParameters, TryRecvError};
use eyre::WrapErr;
use forgeline_schemas::arrow;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Wall-clock time in ns since the Unix epoch (the runtime's clock; stages get it passed in).
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// When the sender sent a message: dora's hybrid-logical-clock timestamp in its metadata, ns
/// since the Unix epoch (0 if it lies before the epoch).
pub fn sent_ns(metadata: &dora_node_api::Metadata) -> u64 {
    metadata
        .timestamp()
        .get_time()
        .to_system_time()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Sets up `tracing` for a node: key-value lines on stderr (dora collects them per node),
/// level from `FORGELINE_LOG` (default `info`). Safe to call twice.
pub fn init_tracing(kind: &str) {
    init_tracing_or(kind, "info");
}

/// [`init_tracing`] with another default level (used when `FORGELINE_LOG` is unset), such as
/// `warn,forgeline_inference=info` for a command-line tool that should say little but which
/// execution provider ran.
pub fn init_tracing_or(kind: &str, default_filter: &str) {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_from_env("FORGELINE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .finish()
        .with(tracing_subscriber::filter::filter_fn(|meta| {
            !is_dora_custom_type_warning(meta)
        }))
        .try_init();
    tracing::debug!(kind, "tracing initialised");
}

/// dora-node-api 1.1.0 resolves each input's `input_types` URN against its built-in type
/// registry only, so every forgeline type (`forgeline/messages/v1/*`, declared for `dora validate
/// --strict-types` in `graphs/types/`) gives one warning per typed input at node start, "unknown
/// input type URN … — skipping type check", carrying the whole dataflow descriptor in its span
/// (about 20 KB per line). The runtime checks every payload's schema itself (`Input::batch`),
/// so that callsite (pinned with dora-node-api `=1.1.0`) is dropped; the module's other
/// warnings (discarded inputs among them) still show.
fn is_dora_custom_type_warning(meta: &tracing::Metadata<'_>) -> bool {
    meta.target() == "dora_node_api::event_stream"
        && *meta.level() == tracing::Level::WARN
        && meta.line() == Some(DORA_UNKNOWN_TYPE_WARNING_LINE)
        && meta.file().is_some_and(|f| {
            // The target names the crate and the `=1.1.0` pin fixes the line; the file only
            // tells this module's `mod.rs` from its submodules (any registry or vendor path).
            f.ends_with("event_stream/mod.rs") || f.ends_with("event_stream\\mod.rs")
        })
}

/// The line of that warning in dora-node-api 1.1.0's `src/event_stream/mod.rs`.
const DORA_UNKNOWN_TYPE_WARNING_LINE: u32 = 433;

/// What a node did over its life, returned by [`run_stage`] (and logged at the end).
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    /// Message and error counters.
    pub counters: Counters,
    /// Whether the loop ended on a `Stop` event (rather than the stream closing).
    pub stopped: bool,
}

/// Validates the stage's config from the environment (as the graph would pass it) and returns the
/// report to print: `Ok` when valid.
///
/// # Errors
/// The formatted [`crate::ConfigError`].
pub fn check_config_from_env<S: Stage>(node_id: &str) -> Result<(), String> {
    let text = std::env::var(CONFIG_ENV).ok();
    parse_config::<S::Config>(text.as_deref(), &format!("env {CONFIG_ENV}"), node_id)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The whole life of a node process: `--check-config` handling, tracing, dora init, config,
/// stage construction, then [`run_stage`].
///
/// # Errors
/// Bad config, a failing [`Stage::new`], a dora failure, or a [`StageError::Internal`].
pub fn run_node<S: Stage>() -> eyre::Result<()> {
    if std::env::args().any(|a| a == "--check-config") {
        let node_id = std::env::var("FORGELINE_NODE_ID").unwrap_or_else(|_| S::KIND.to_owned());
        return match check_config_from_env::<S>(&node_id) {
            Ok(()) => {
                println!("ok: node `{node_id}` ({}) config is valid", S::KIND);
                Ok(())
            }
            Err(report) => Err(eyre::eyre!(report)),
        };
    }
    init_tracing(S::KIND);
    let (node, events) = DoraNode::init_from_env()
        .map_err(|e| eyre::eyre!("{}: cannot connect to the dora daemon: {e}", S::KIND))?;
    let node_id = node.id().to_string();
    let origin = format!("node `{node_id}` env {CONFIG_ENV}");
    let text = std::env::var(CONFIG_ENV).ok();
    let config = match parse_config::<S::Config>(text.as_deref(), &origin, &node_id) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(node = %node_id, kind = S::KIND, "{e}");
            return Err(eyre::eyre!(e));
        }
    };
    let ctx = InitContext {
        node_id: node_id.clone(),
        outputs: node
            .node_config()
            .outputs
            .iter()
            .map(ToString::to_string)
            .collect(),
        inputs: node
            .node_config()
            .inputs
            .keys()
            .map(ToString::to_string)
            .collect(),
        restart_count: node.restart_count(),
    };
    if ctx.restart_count > 0 {
        tracing::warn!(node = %node_id, restarts = ctx.restart_count, "node restarted by dora");
    }
    let stage = S::new(config, &ctx)
        .wrap_err_with(|| format!("node `{node_id}` ({}): cannot start", S::KIND))?;
    tracing::info!(node = %node_id, kind = S::KIND, inputs = ?ctx.inputs, outputs = ?ctx.outputs, "started");
    let summary = run_stage(node, events, stage, &node_id)?;
    tracing::info!(
        node = %node_id,
        received = ?summary.counters.received,
        sent = ?summary.counters.sent,
        errors = ?summary.counters.errors,
        dropped = ?summary.counters.dropped,
        "stopped"
    );
    Ok(())
}

/// Drives `stage` with the events of `node` until the stream ends or a `Stop` arrives.
///
/// Works with a real daemon and with `DoraNode::init_testing`.
///
/// # Errors
/// A [`StageError::Internal`] from the stage (after `on_stop` was attempted).
pub fn run_stage<S: Stage>(
    mut node: DoraNode,
    mut events: EventStream,
    mut stage: S,
    node_id: &str,
) -> eyre::Result<RunSummary> {
    let mut out = Outbox::with_allocator(node.sample_allocator());
    let mut summary = RunSummary::default();
    let mut idle = Idle::Wait;
    let mut last_drop_check = Instant::now();
    let mut fatal: Option<StageError> = None;
    // An event taken from the queue while gathering a batch for `on_inputs`, handled next.
    let mut held: Option<Event> = None;
    let mut observer = crate::observe::Observer::from_dora(S::KIND, &node);

    loop {
        let event = if let Some(e) = held.take() {
            Some(e)
        } else {
            match idle {
                Idle::Exit => {
                    tracing::info!(node = %node_id, "stage finished; exiting");
                    break;
                }
                Idle::Wait => events.recv(),
                Idle::Spin => match events.try_recv() {
                    Ok(event) => Some(event),
                    Err(TryRecvError::Empty) => {
                        let now = now_ns();
                        let result = stage.on_idle(now, &mut out);
                        observer.before_send(&out, now);
                        observer.maybe_report(&summary.counters, now, false, &mut out);
                        flush(&mut node, &mut out, &mut summary.counters);
                        match handle(result, &mut summary.counters, node_id, "idle") {
                            Ok(Some(next)) => idle = next,
                            Ok(None) => {}
                            Err(e) => {
                                fatal = Some(e);
                                break;
                            }
                        }
                        continue;
                    }
                    Err(_) => None,
                },
            }
        };
        let Some(event) = event else { break };
        let now = now_ns();
        let result = match event {
            // A timer that only wakes the loop for the node report below (observe.rs).
            Event::Input { id, .. } if id.as_str() == crate::observe::REPORT_TICK_INPUT => Ok(()),
            // A timer that keeps the stage's working set warm between messages (observe.rs).
            Event::Input { id, .. } if id.as_str() == crate::observe::KEEP_WARM_INPUT => {
                stage.keep_warm(now);
                Ok(())
            }
            Event::Input { id, metadata, data } => {
                let port = id.to_string();
                Counters::bump(&mut summary.counters.received, &port, 1);
                let data: ArrayRef = data.into_inner();
                let sent_ns = sent_ns(&metadata);
                let input = Input {
                    port: &port,
                    data: &data,
                    now_ns: now,
                    sent_ns,
                };
                observer.on_input(&port, &data, now, sent_ns);
                let batch_max = stage.max_input_batch();
                let r = if batch_max > 1 && !events.is_empty() {
                    let queued = take_queued(&mut events, &port, batch_max - 1, &mut held);
                    for (d, s) in &queued {
                        Counters::bump(&mut summary.counters.received, &port, 1);
                        observer.on_input(&port, d, now, *s);
                    }
                    let mut inputs = vec![input];
                    inputs.extend(queued.iter().map(|(d, s)| Input {
                        port: &port,
                        data: d,
                        now_ns: now,
                        sent_ns: *s,
                    }));
                    stage.on_inputs(&inputs, &mut out)
                } else {
                    stage.on_input(&input, &mut out)
                };
                observer.after_input();
                if !events.is_empty() {
                    observer.on_queued_arrival();
                }
                handle_with_port(r, &mut summary.counters, node_id, &port)
            }
            Event::Stop(_) => {
                summary.stopped = true;
                break;
            }
            Event::InputClosed { id } => upstream(
                &mut stage,
                UpstreamEvent::InputClosed(id.to_string()),
                now,
                &mut out,
            ),
            Event::NodeRestarted { id } => upstream(
                &mut stage,
                UpstreamEvent::NodeRestarted(id.to_string()),
                now,
                &mut out,
            ),
            Event::NodeFailed {
                source_node_id,
                error,
                ..
            } => upstream(
                &mut stage,
                UpstreamEvent::NodeFailed {
                    node: source_node_id.to_string(),
                    error,
                },
                now,
                &mut out,
            ),
            Event::Error(e) => {
                tracing::warn!(node = %node_id, "dora reported an error: {e}");
                Ok(())
            }
            _ => Ok(()),
        };
        if let Err(e) = result {
            fatal = Some(e);
            break;
        }
        match handle(
            stage.on_idle(now, &mut out),
            &mut summary.counters,
            node_id,
            "idle",
        ) {
            Ok(Some(next)) => idle = next,
            Ok(None) => {}
            Err(e) => {
                fatal = Some(e);
                break;
            }
        }
        observer.before_send(&out, now);
        observer.maybe_report(&summary.counters, now, false, &mut out);
        flush(&mut node, &mut out, &mut summary.counters);
        if last_drop_check.elapsed() > Duration::from_secs(1) {
            record_drops(&mut events, &mut summary.counters, node_id);
            last_drop_check = Instant::now();
        }
    }

    if let Err(e) = stage.on_stop(now_ns(), &mut out) {
        tracing::warn!(node = %node_id, "on_stop failed: {e}");
        Counters::bump(&mut summary.counters.errors, &e.class(), 1);
    }
    flush(&mut node, &mut out, &mut summary.counters);
    record_drops(&mut events, &mut summary.counters, node_id);
    observer.maybe_report(&summary.counters, now_ns(), true, &mut out);
    flush(&mut node, &mut out, &mut summary.counters);
    observer.finish();
    match fatal {
        Some(e) => Err(eyre::eyre!("node `{node_id}`: {e}")),
        None => Ok(summary),
    }
}

/// Takes up to `max` already-queued messages of input `port` (payload, sent time) without
/// waiting; the first other event taken is kept in `held` for the loop to handle next.
fn take_queued(
    events: &mut EventStream,
    port: &str,
    max: usize,
    held: &mut Option<Event>,
) -> Vec<(ArrayRef, u64)> {
    let mut queued = Vec::new();
    while queued.len() < max && held.is_none() {
        match events.try_recv() {
            Ok(Event::Input { id, metadata, data }) if id.as_str() == port => {
                let sent_ns = sent_ns(&metadata);
                queued.push((data.into_inner(), sent_ns));
            }
            Ok(other) => *held = Some(other),
            Err(_) => break,
        }
    }
    queued
}

fn upstream<S: Stage>(
    stage: &mut S,
    event: UpstreamEvent,
    now: u64,
    out: &mut Outbox,
) -> Result<(), StageError> {
    tracing::info!(?event, "upstream event");
    match stage.on_upstream(&event, now, out) {
        Err(e @ StageError::Internal(_)) => Err(e),
        Err(e) => {
            tracing::warn!("on_upstream: {e}");
            Ok(())
        }
        Ok(()) => Ok(()),
    }
}

/// Input and external errors are logged and counted; internal ones end the node.
fn handle_with_port(
    result: Result<(), StageError>,
    counters: &mut Counters,
    node_id: &str,
    port: &str,
) -> Result<(), StageError> {
    match result {
        Ok(()) => Ok(()),
        Err(e @ StageError::Internal(_)) => {
            Counters::bump(&mut counters.errors, &e.class(), 1);
            tracing::error!(node = %node_id, port, "{e}");
            Err(e)
        }
        Err(e) => {
            Counters::bump(&mut counters.errors, &e.class(), 1);
            tracing::warn!(node = %node_id, port, class = e.class(), "{e}");
            Ok(())
        }
    }
}

fn handle(
    result: Result<Idle, StageError>,
    counters: &mut Counters,
    node_id: &str,
    what: &str,
) -> Result<Option<Idle>, StageError> {
    match result {
        Ok(idle) => Ok(Some(idle)),
        Err(e) => handle_with_port(Err(e), counters, node_id, what).map(|()| None),
    }
}

fn flush(node: &mut DoraNode, out: &mut Outbox, counters: &mut Counters) {
    flush_batches(node, out, counters);
    for (port, sample) in out.samples.drain(..) {
        // The sample already holds a complete `UInt8` Arrow IPC stream (`Outbox::send_frame`).
        let mut parameters = MetadataParameters::default();
        parameters.insert(
            dora_node_api::metadata::FRAMING.to_owned(),
            dora_node_api::Parameter::String(dora_node_api::metadata::FRAMING_ARROW_IPC.to_owned()),
        );
        match node.send_output_sample(port.clone().into(), parameters, Some(sample)) {
            Ok(()) => {
                Counters::bump(&mut counters.sent, &port, 1);
                Counters::bump(&mut counters.rows_sent, &port, 1);
            }
            Err(e) => {
                counters.send_failures += 1;
                tracing::warn!(port, "send failed: {e}");
            }
        }
    }
}

fn flush_batches(node: &mut DoraNode, out: &mut Outbox, counters: &mut Counters) {
    for (port, batch) in out.pending.drain(..) {
        let rows = batch.num_rows() as u64;
        let array: ArrayRef = Arc::new(forgeline_schemas::to_struct_array(&batch));
        debug_assert_eq!(array.len(), batch.num_rows());
        match node.send_output(port.clone().into(), MetadataParameters::default(), array) {
            Ok(()) => {
                Counters::bump(&mut counters.sent, &port, 1);
                Counters::bump(&mut counters.rows_sent, &port, rows);
            }
            Err(e) => {
                counters.send_failures += 1;
                tracing::warn!(port, "send failed: {e}");
            }
        }
    }
}

fn record_drops(events: &mut EventStream, counters: &mut Counters, node_id: &str) {
    for (input, n) in events.drain_drop_counts() {
        // A wake-up timer's ticks carry nothing: one dropped while the node was busy is lost
        // work of no one (the next tick comes), so it is neither a warning nor a drop.
        if [
            crate::observe::KEEP_WARM_INPUT,
            crate::observe::REPORT_TICK_INPUT,
        ]
        .contains(&input.as_str())
        {
            continue;
        }
        if n > 0 {
            let input = input.to_string();
            tracing::warn!(node = %node_id, input, dropped = n, "dora dropped messages: input queue full");
            Counters::bump(&mut counters.dropped, &input, n);
        }
    }
}
