//! # forgeline-acquisition
//!
//! The acquisition stage of the stamping press line (2,500 t press, 18 strokes/min, accelerometer
//! at 10 kHz, one stroke = 2,000 samples = 200 ms). Strokes come from a [`VibrationSource`]:
//!
//! - [`simulated::PressSimulator`]: a seeded physical model of the press with injectable process
//!   and sensor faults; stroke `N` is a pure function of (config, seed, `N`).
//! - [`replay::ReplaySource`]: WAV / CSV recordings, one stroke per file or a continuous
//!   recording cut into strokes by a trigger.
//!
//! [`dataset::generate`] writes labelled WAV datasets for training and evaluation, and
//! [`pace::Pacer`] turns an injected clock into "strokes due now". There is no wall clock and no
//! dora type in this crate: the node owns time and transport.

pub mod dataset;
mod error;
mod label;
pub mod pace;
pub mod replay;
pub mod simulated;
mod wav;

use forgeline_schemas::{Correlation, Waveform};
use serde::{Deserialize, Serialize};

pub use error::{AcquisitionError, ConfigError, Problems};
pub use label::{FaultKind, SensorFaultKind, StrokeLabel, UnknownLabel};
pub use pace::{PaceConfig, Pacer, Rate};
pub use replay::{ReplayConfig, ReplaySource, Segmentation};
pub use simulated::{PressSimConfig, PressSimulator};
pub use wav::write_wav_f32;

/// One press stroke as acquired: accelerometer samples in g.
#[derive(Debug, Clone, PartialEq)]
pub struct Stroke {
    /// Stroke number from the source (0-based, +1 per stroke; a looping replay keeps counting).
    pub seq: u64,
    /// Sample rate in Hz.
    pub sample_rate_hz: f32,
    /// Acceleration in g. May hold NaN/Inf on a sensor fault: consumers must check.
    pub samples: Vec<f32>,
    /// Where the stroke came from: `simulated:<seed>` or the recording's path
    /// (`…/die_wear_000012.wav`, or `…/line.wav@<start sample>` for a triggered stroke).
    pub source: String,
    /// Ground truth when known (simulator, or a recording named `<label>_…`), for evaluation.
    pub label: Option<StrokeLabel>,
}

impl Stroke {
    /// The stroke as a `waveform` message row, stamped with `asset_id` and the acquisition time
    /// (ns since the Unix epoch, from the node's clock).
    pub fn into_waveform(self, asset_id: impl Into<String>, acq_time_ns: u64) -> Waveform {
        Waveform {
            key: Correlation::new(asset_id, self.seq, acq_time_ns),
            sample_rate_hz: self.sample_rate_hz,
            samples: self.samples,
            source: self.source,
        }
    }
}

/// A source of press strokes: simulator, recording or (later) real hardware.
pub trait VibrationSource {
    /// The next stroke. `None`: the source is exhausted. `Some(Err(_))`: one bad item (a bad
    /// file, a truncated stroke); the caller logs it and calls again, one bad item never stops
    /// the others.
    fn next_stroke(&mut self) -> Option<Result<Stroke, AcquisitionError>>;

    /// One line for logs: what the source is and where it stands.
    fn describe(&self) -> String;
}

impl<S: VibrationSource + ?Sized> VibrationSource for Box<S> {
    fn next_stroke(&mut self) -> Option<Result<Stroke, AcquisitionError>> {
        (**self).next_stroke()
    }

    fn describe(&self) -> String {
        (**self).describe()
    }
}

/// Which source to build, as one tagged config (`kind: simulated` or `kind: replay`), so a node's
/// YAML picks its source without code changes.
///
/// ```yaml
/// kind: simulated
/// seed: 7
/// faults: { die_wear: 0.02 }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SourceConfig {
    /// The seeded press simulator.
    Simulated(PressSimConfig),
    /// WAV / CSV recordings.
    Replay(ReplayConfig),
}

impl SourceConfig {
    /// Validates the config and builds the source.
    ///
    /// # Errors
    /// [`ConfigError`] listing every problem of the config.
    pub fn build(self) -> Result<Box<dyn VibrationSource + Send>, ConfigError> {
        Ok(match self {
            Self::Simulated(config) => Box::new(PressSimulator::new(config)?),
            Self::Replay(config) => Box::new(ReplaySource::new(config)?),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is the failure report.
mod tests {
    use super::*;

    #[test]
    fn stroke_becomes_a_waveform_row_with_its_keys() {
        let stroke = Stroke {
            seq: 12,
            sample_rate_hz: 10_000.0,
            samples: vec![0.5, -1.0],
            source: "simulated:7".into(),
            label: Some(StrokeLabel::Normal),
        };
        let row = stroke.into_waveform("press-07", 99);
        assert_eq!(row.key, Correlation::new("press-07", 12, 99));
        assert_eq!(row.samples, vec![0.5, -1.0]);
        assert_eq!(row.source, "simulated:7");
        assert_eq!(row.sample_rate_hz, 10_000.0);
    }

    #[test]
    fn source_config_picks_the_source_by_kind_and_rejects_unknown_keys() {
        let sim: SourceConfig = serde_yaml::from_str("kind: simulated\nseed: 7\n").unwrap();
        let mut source = sim.build().unwrap();
        assert!(
            source.describe().contains("seed 7"),
            "{}",
            source.describe()
        );
        assert_eq!(source.next_stroke().unwrap().unwrap().samples.len(), 2000);

        let replay: SourceConfig =
            serde_yaml::from_str("kind: replay\npaths: [a.wav]\nloop: true\n").unwrap();
        assert!(matches!(
            replay,
            SourceConfig::Replay(ReplayConfig { looping: true, .. })
        ));

        let typo = serde_yaml::from_str::<SourceConfig>("kind: simulated\nseeed: 7\n");
        assert!(typo.unwrap_err().to_string().contains("seeed"));
        let bad = serde_yaml::from_str::<SourceConfig>("kind: camera\n");
        assert!(bad.is_err());
    }

    #[test]
    fn invalid_source_config_is_refused_at_build() {
        let sim: SourceConfig =
            serde_yaml::from_str("kind: simulated\nsample_rate_hz: -1\n").unwrap();
        let err = sim.build().err().unwrap();
        assert!(err.to_string().contains("sample_rate_hz"), "{err}");
    }
}
