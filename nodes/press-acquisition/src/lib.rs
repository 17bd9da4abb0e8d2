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
}

impl Default for Config {
    fn default() -> Self {
        Self {
            asset_id: "press-01".into(),
            source: SourceConfig::Simulated(PressSimConfig::default()),
            pace: PaceConfig::default(),
            exit_when_done: false,
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
                    out.send("waveform", &[row]);
                    sent += 1;
                }
            }
        }
        sent
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
