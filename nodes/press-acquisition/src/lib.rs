//! `press-acquisition`: turns a [`VibrationSource`] (the seeded press simulator, or WAV/CSV
//! recordings) into `waveform` messages, paced by a dora timer (`rate: 18` strokes/min) or as fast
//! as possible (`rate: max`). A bad recording is reported on `health` and skipped; the line goes on.

use forgeline_acquisition::{
    PaceConfig, Pacer, PressSimConfig, Rate, SourceConfig, VibrationSource,
};
use forgeline_runtime::{
    ConfigProblem, Idle, InitContext, Input, Outbox, Stage, StageError, Validate,
};
use forgeline_schemas::{Correlation, Health, HealthLevel, Waveform};
use serde::Deserialize;

/// Configuration of `press-acquisition` (the node's `FORGELINE_CONFIG`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Asset id stamped on every stroke (default `press-01`).
    pub asset_id: String,
    /// Where strokes come from: `kind: simulated` (default) or `kind: replay`.
    pub source: SourceConfig,
    /// Pace: `rate: 18` strokes/min (default) or `rate: max`; `max_burst` strokes per tick.
    pub pace: PaceConfig,
    /// Exit when the source is exhausted (a finite replay), which ends the dataflow once every
    /// stroke has gone through (default false: keep running idle).
    pub exit_when_done: bool,
    /// Strokes that fall due at the same tick travel together, at most this many per message
    /// (default 32). At a press's normal rate one stroke falls due per tick, so each message
    /// holds one stroke; at high rates (test benches, many strokes per tick) this amortises the
    /// per-message cost of every hop. 1 sends every stroke on its own.
    pub max_strokes_per_message: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            asset_id: "press-01".into(),
            source: SourceConfig::Simulated(PressSimConfig::default()),
            pace: PaceConfig::default(),
            exit_when_done: false,
            max_strokes_per_message: 32,
        }
    }
}

impl Validate for Config {
    fn validate(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        if self.asset_id.trim().is_empty() {
            problems.push(ConfigProblem {
                field: "asset_id".into(),
                reason: "must not be empty".into(),
            });
        }
        if !(1..=10_000).contains(&self.max_strokes_per_message) {
            problems.push(ConfigProblem {
                field: "max_strokes_per_message".into(),
                reason: format!(
                    "found {}, expected 1 to 10000",
                    self.max_strokes_per_message
                ),
            });
        }
        if let Err(e) = self.pace.validate() {
            problems.extend(e.problems.into_iter().map(|reason| ConfigProblem {
                field: "pace".into(),
                reason,
            }));
        }
        if let Err(e) = self.source.clone().build() {
            problems.extend(e.problems.into_iter().map(|reason| ConfigProblem {
                field: "source".into(),
                reason,
            }));
        }
        problems
    }
}

/// The acquisition stage.
pub struct PressAcquisition {
    asset_id: String,
    node_id: String,
    source: Box<dyn VibrationSource + Send>,
    pacer: Pacer,
    free_running: bool,
    exhausted: bool,
    exit_when_done: bool,
    health_seq: u64,
    max_per_message: usize,
    /// Strokes of the current tick not sent yet (reused).
    ready: Vec<Waveform>,
}

impl PressAcquisition {
    /// Emits up to `n` strokes; returns how many were sent.
    fn emit(&mut self, n: u64, now_ns: u64, out: &mut Outbox) -> u64 {
        let mut sent = 0;
        for _ in 0..n {
            match self.source.next_stroke() {
                None => {
                    if !self.exhausted {
                        tracing::info!(source = %self.source.describe(), "source exhausted");
                        self.exhausted = true;
                    }
                    break;
                }
                Some(Err(e)) => {
                    tracing::warn!(node = %self.node_id, "skipped a stroke: {e}");
                    self.health_seq += 1;
                    out.health(Health {
                        key: Correlation::new(self.asset_id.clone(), self.health_seq, now_ns),
                        node_id: self.node_id.clone(),
                        component: "source".into(),
                        level: HealthLevel::Warning,
                        code: "bad_input".into(),
                        message: e.to_string(),
                        value: f64::NAN,
                    });
                }
                Some(Ok(stroke)) => {
                    let row: Waveform = stroke.into_waveform(self.asset_id.clone(), now_ns);
                    tracing::debug!(asset = %row.key.asset_id, seq = row.key.seq, "stroke");
                    self.ready.push(row);
                    if self.ready.len() >= self.max_per_message {
                        self.flush(out);
                    }
                    sent += 1;
                }
            }
        }
        self.flush(out);
        sent
    }

    /// Sends the strokes gathered so far as one message.
    fn flush(&mut self, out: &mut Outbox) {
        if !self.ready.is_empty() {
            out.send("waveform", &self.ready);
            self.ready.clear();
        }
    }
}

impl Stage for PressAcquisition {
    type Config = Config;
    const KIND: &'static str = "press-acquisition";

    fn new(config: Config, ctx: &InitContext) -> eyre::Result<Self> {
        let free_running = matches!(config.pace.rate, Rate::AsFastAsPossible);
        let source = config.source.build().map_err(|e| eyre::eyre!("{e}"))?;
        let pacer = Pacer::from_config(config.pace).map_err(|e| eyre::eyre!("{e}"))?;
        tracing::info!(source = %source.describe(), rate = %pacer.rate(), "acquisition ready");
        Ok(Self {
            asset_id: config.asset_id,
            node_id: ctx.node_id.clone(),
            source,
            pacer,
            free_running,
            exhausted: false,
            exit_when_done: config.exit_when_done,
            health_seq: 0,
            max_per_message: config.max_strokes_per_message.max(1),
            ready: Vec::new(),
        })
    }

    fn on_input(&mut self, input: &Input<'_>, out: &mut Outbox) -> Result<(), StageError> {
        // Any input (normally `tick: dora/timer/millis/N`) is a clock tick.
        if !self.free_running && !self.exhausted {
            let due = self.pacer.due(input.now_ns);
            self.emit(due, input.now_ns, out);
        }
        Ok(())
    }

    fn on_idle(&mut self, now_ns: u64, out: &mut Outbox) -> Result<Idle, StageError> {
        if self.exhausted && self.exit_when_done {
            return Ok(Idle::Exit);
        }
        if self.free_running && !self.exhausted {
            let due = self.pacer.due(now_ns);
            self.emit(due, now_ns, out);
            return Ok(if self.exhausted {
                Idle::Wait
            } else {
                Idle::Spin
            });
        }
        Ok(Idle::Wait)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests: a panic is the failure report.
mod tests {
    use super::*;
    use forgeline_runtime::arrow::array::{ArrayRef, NullArray};
    use forgeline_runtime::parse_config;
    use std::sync::Arc;

    fn stage(yaml: &str) -> PressAcquisition {
        let config = parse_config::<Config>(Some(yaml), "t", "press").unwrap();
        PressAcquisition::new(
            config,
            &InitContext {
                node_id: "press".into(),
                outputs: vec!["waveform".into()],
                inputs: vec!["tick".into()],
                restart_count: 0,
            },
        )
        .unwrap()
    }

    /// Ticks at `times` (ns); the rows of each message sent, as seqs.
    fn run(stage: &mut PressAcquisition, times: &[u64]) -> Vec<Vec<u64>> {
        let tick: ArrayRef = Arc::new(NullArray::new(0));
        let mut out = Outbox::default();
        for t in times {
            let input = Input {
                port: "tick",
                data: &tick,
                now_ns: *t,
                sent_ns: *t,
            };
            stage.on_input(&input, &mut out).unwrap();
        }
        out.take()
            .into_iter()
            .map(|(port, b)| {
                assert_eq!(port, "waveform");
                Waveform::try_from_batch(&b)
                    .unwrap()
                    .iter()
                    .map(|w| w.key.seq)
                    .collect()
            })
            .collect()
    }

    #[test]
    fn strokes_due_at_one_tick_travel_together_up_to_the_limit() {
        let mut s = stage("pace: {rate: 6000, max_burst: 1000}\nmax_strokes_per_message: 4\n");
        // 100 strokes/s: a 100 ms gap makes 10 strokes due at one tick.
        let messages = run(&mut s, &[1_000_000_000, 1_100_000_000]);
        let sizes: Vec<usize> = messages.iter().map(Vec::len).collect();
        assert!(sizes.iter().all(|n| (1..=4).contains(n)), "{sizes:?}");
        assert!(
            sizes.len() >= 3,
            "10 strokes in messages of at most 4: {sizes:?}"
        );
        // Every stroke once, in order.
        let seqs: Vec<u64> = messages.concat();
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    }

    #[test]
    fn at_a_normal_rate_each_message_holds_one_stroke() {
        let mut s = stage("pace: {rate: 18}\n");
        // 18 strokes/min: ticks every 50 ms for 10 s release one stroke at a time.
        let times: Vec<u64> = (0..200).map(|i| 1_000_000_000 + i * 50_000_000).collect();
        let messages = run(&mut s, &times);
        assert!(!messages.is_empty());
        assert!(messages.iter().all(|m| m.len() == 1), "{messages:?}");
    }

    #[test]
    fn a_zero_limit_is_refused_naming_the_field() {
        let config = parse_config::<Config>(Some("max_strokes_per_message: 0\n"), "t", "press");
        let e = config.unwrap_err().to_string();
        assert!(e.contains("max_strokes_per_message"), "{e}");
    }
}
