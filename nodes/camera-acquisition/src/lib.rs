//! `camera-acquisition`: turns a [`Camera`] (the seeded part-surface simulator, or a folder of
//! PNG/JPEG/TIFF images) into `frame` messages, one frame per message. Under dora each frame is
//! written in place into its own shared-memory sample (`Outbox::send_frame`, the wire form of
//! `forgeline_schemas::frame::wire`: the pixels are copied once, from the simulator's or the
//! decoder's buffer into the sample, and never after); receivers read them in place.
//! Paced by a dora timer (`pace: { fps: 10 }`) or as fast as the line takes them (`fps: max`).
//! A bad image (corrupt, truncated, unsupported format, wrong channel count) is reported by file
//! name on `health` and in the log, and the next image plays: the line keeps running.

use forgeline_acquisition::{Pacer, Rate};
use forgeline_runtime::{
    ConfigProblem, Idle, InitContext, Input, Outbox, Stage, StageError, Validate,
};
use forgeline_schemas::frame::wire::FrameHeader;
use forgeline_schemas::{Correlation, Health, HealthLevel};
use forgeline_vision::{Camera, CameraConfig, SimulatedCameraConfig};
use serde::Deserialize;
use serde::de::{self, Deserializer};
use std::fmt;

/// The vision operator crate (cameras, preprocessing, datasets), re-exported for the tools that
/// drive this node's sources offline (`forgeline score`, `forgeline train optical`).
pub use forgeline_vision;

/// Frames per second, or as fast as possible.
///
/// YAML: a number is frames per second (`fps: 10`), the word `max` is as fast as the line takes
/// them (`fps: max`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FrameRate {
    /// Frames per second (finite, > 0).
    PerSecond(f64),
    /// No pacing: a frame each time the node is idle.
    Max,
}

impl fmt::Display for FrameRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PerSecond(r) => write!(f, "{r} frames/s"),
            Self::Max => f.write_str("max"),
        }
    }
}

impl<'de> Deserialize<'de> for FrameRate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(f64),
            Word(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Number(r) => Ok(Self::PerSecond(r)),
            Raw::Word(w) if w == "max" => Ok(Self::Max),
            Raw::Word(w) => Err(de::Error::custom(format!(
                "found `{w}`, expected frames per second (a number > 0) or `max`"
            ))),
        }
    }
}

/// How fast frames are released.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PaceConfig {
    /// Frames per second or `max` (default 10).
    pub fps: FrameRate,
    /// Most frames one timer tick releases; frames missed beyond it are skipped (default 1).
    pub max_burst: u64,
}

impl Default for PaceConfig {
    fn default() -> Self {
        Self {
            fps: FrameRate::PerSecond(10.0),
            max_burst: 1,
        }
    }
}

/// Configuration of `camera-acquisition` (the node's `FORGELINE_CONFIG`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Asset id stamped on every frame (default `camera-01`).
    pub asset_id: String,
    /// Where frames come from: `kind: simulated` (default, 300x300 grey) or `kind: replay`.
    pub source: CameraConfig,
    /// Pace: `fps: 10` (default) or `fps: max`; `max_burst` frames per tick.
    pub pace: PaceConfig,
    /// Exit when the source is exhausted (a finite replay), which ends the dataflow once every
    /// frame has gone through (default false: keep running idle).
    pub exit_when_done: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            asset_id: "camera-01".into(),
            source: CameraConfig::Simulated(SimulatedCameraConfig::default()),
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
        if let FrameRate::PerSecond(r) = self.pace.fps
            && !(r.is_finite() && r > 0.0 && r <= 1.0e6)
        {
            problems.push(ConfigProblem {
                field: "pace.fps".into(),
                reason: format!("found {r}, expected frames per second in (0, 1e6] or `max`"),
            });
        }
        if self.pace.max_burst == 0 {
            problems.push(ConfigProblem {
                field: "pace.max_burst".into(),
                reason: "found 0, expected at least 1".into(),
            });
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

/// The camera acquisition stage.
pub struct CameraAcquisition {
    asset_id: String,
    node_id: String,
    camera: Box<dyn Camera + Send>,
    pacer: Pacer,
    free_running: bool,
    exhausted: bool,
    exit_when_done: bool,
    health_seq: u64,
    frames: u64,
    bad_images: u64,
}

impl CameraAcquisition {
    /// Frames sent so far.
    pub fn frames_sent(&self) -> u64 {
        self.frames
    }

    /// Images skipped as unusable so far.
    pub fn bad_images(&self) -> u64 {
        self.bad_images
    }

    /// Emits up to `n` frames (a bad image counts as one); returns how many frames were sent.
    fn emit(&mut self, n: u64, now_ns: u64, out: &mut Outbox) -> u64 {
        let mut sent = 0;
        for _ in 0..n {
            match self.camera.next_frame() {
                None => {
                    if !self.exhausted {
                        tracing::info!(node = %self.node_id, source = %self.camera.describe(), frames = self.frames, bad_images = self.bad_images, "source exhausted");
                        self.exhausted = true;
                    }
                    break;
                }
                Some(Err(e)) => {
                    self.bad_images += 1;
                    let file = e
                        .file()
                        .map(|f| f.display().to_string())
                        .unwrap_or_default();
                    tracing::warn!(node = %self.node_id, file = %file, "skipped an image: {e}");
                    self.health_seq += 1;
                    out.health(Health {
                        key: Correlation::new(self.asset_id.clone(), self.health_seq, now_ns),
                        node_id: self.node_id.clone(),
                        component: "camera".into(),
                        level: HealthLevel::Warning,
                        code: "bad_input".into(),
                        message: e.to_string(),
                        value: f64::NAN,
                    });
                }
                Some(Ok(raw)) => {
                    // The acquisition time is when the frame is complete in the node (a real
                    // camera's frame has arrived; the simulator has rendered it, the replay has
                    // decoded it), so rendering and decoding are not counted as line latency.
                    let header = FrameHeader {
                        key: Correlation::new(
                            self.asset_id.clone(),
                            raw.seq,
                            forgeline_runtime::now_ns().max(now_ns),
                        ),
                        width: raw.width,
                        height: raw.height,
                        channels: raw.channels,
                        encoding: forgeline_vision::encoding(raw.channels).to_owned(),
                        source: raw.source,
                    };
                    if header.pixel_len() != Some(raw.data.len()) {
                        self.bad_images += 1;
                        tracing::warn!(node = %self.node_id, source = %header.source, bytes = raw.data.len(),
                            "skipped a frame: {} pixel bytes for {} x {} x {}", raw.data.len(), raw.width, raw.height, raw.channels);
                        continue;
                    }
                    tracing::debug!(asset = %header.key.asset_id, seq = header.key.seq, source = %header.source, "frame");
                    // One message per frame, its pixels copied once from the source's buffer
                    // straight into the shared-memory sample that travels (in place under dora).
                    if let Err(e) =
                        out.send_frame("frame", &header, |px| px.copy_from_slice(&raw.data))
                    {
                        self.bad_images += 1;
                        tracing::warn!(node = %self.node_id, source = %header.source, "skipped a frame: {e}");
                        continue;
                    }
                    self.frames += 1;
                    sent += 1;
                }
            }
        }
        sent
    }
}

impl Stage for CameraAcquisition {
    type Config = Config;
    const KIND: &'static str = "camera-acquisition";

    fn new(config: Config, ctx: &InitContext) -> eyre::Result<Self> {
        let (rate, free_running) = match config.pace.fps {
            FrameRate::PerSecond(fps) => (Rate::StrokesPerMin(fps * 60.0), false),
            FrameRate::Max => (Rate::AsFastAsPossible, true),
        };
        let camera = config.source.build().map_err(|e| eyre::eyre!("{e}"))?;
        let pacer = Pacer::new(rate).with_max_burst(config.pace.max_burst);
        tracing::info!(source = %camera.describe(), fps = %config.pace.fps, "camera ready");
        Ok(Self {
            asset_id: config.asset_id,
            node_id: ctx.node_id.clone(),
            camera,
            pacer,
            free_running,
            exhausted: false,
            exit_when_done: config.exit_when_done,
            health_seq: 0,
            frames: 0,
            bad_images: 0,
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
            // One frame per idle call, so ticks and stops are seen between frames.
            self.emit(1, now_ns, out);
            return Ok(if self.exhausted && !self.exit_when_done {
                Idle::Wait
            } else {
                Idle::Spin
            });
        }
        Ok(Idle::Wait)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is the failure report.
mod tests {
    use super::*;
    use forgeline_runtime::parse_config;
    use forgeline_schemas::Frame;

    fn ctx() -> InitContext {
        InitContext {
            node_id: "camera".into(),
            outputs: vec!["frame".into(), "health".into()],
            inputs: vec!["tick".into()],
            restart_count: 0,
        }
    }

    fn stage(yaml: &str) -> CameraAcquisition {
        let config = parse_config::<Config>(Some(yaml), "test", "camera").unwrap();
        CameraAcquisition::new(config, &ctx()).unwrap()
    }

    #[test]
    fn simulated_frames_are_one_message_each_with_keys() {
        let mut s = stage(
            "asset_id: cam-7\nsource: { kind: simulated, seed: 3, width: 32, height: 24 }\npace: { fps: max }\n",
        );
        let mut out = Outbox::default();
        for _ in 0..3 {
            assert_eq!(s.on_idle(1_000, &mut out).unwrap(), Idle::Spin);
        }
        let sent = out.take();
        assert_eq!(sent.len(), 3);
        for (i, (port, batch)) in sent.iter().enumerate() {
            assert_eq!(port, "frame");
            let rows = Frame::try_from_batch(batch).unwrap();
            assert_eq!(rows.len(), 1);
            assert_eq!(rows[0].key.asset_id, "cam-7");
            assert_eq!(rows[0].key.seq, i as u64);
            assert_eq!((rows[0].width, rows[0].height), (32, 24));
            assert_eq!(rows[0].data.len(), 32 * 24);
        }
    }

    #[test]
    fn paced_frames_follow_the_timer() {
        let mut s =
            stage("source: { kind: simulated, width: 16, height: 16 }\npace: { fps: 10 }\n");
        let data: forgeline_runtime::arrow::array::ArrayRef =
            std::sync::Arc::new(forgeline_runtime::arrow::array::NullArray::new(0));
        let mut out = Outbox::default();
        let mut tick = |now_ns: u64, out: &mut Outbox| {
            let input = Input {
                port: "tick",
                data: &data,
                now_ns,
                sent_ns: now_ns,
            };
            s.on_input(&input, out).unwrap();
        };
        tick(0, &mut out); // first frame at start
        tick(50_000_000, &mut out); // 50 ms: none due
        tick(100_000_000, &mut out); // 100 ms: the second
        assert_eq!(out.take().len(), 2);
    }

    #[test]
    fn bad_images_are_reported_by_name_and_the_replay_goes_on() {
        let dir = std::env::temp_dir().join(format!("forgeline-cam-test-{}", std::process::id()));
        let camera = SimulatedCameraConfig {
            width: 16,
            height: 16,
            ..SimulatedCameraConfig::default()
        };
        let counts = forgeline_vision::DatasetCounts {
            good: 1,
            ..Default::default()
        };
        forgeline_vision::dataset::generate_dataset_with(&dir, &camera, &counts, 0).unwrap();
        std::fs::remove_file(dir.join("manifest.csv")).unwrap();
        // Sorted before good_000000.png, so the bad file plays first.
        std::fs::write(
            dir.join("good/a_corrupt.png"),
            b"\x89PNG\r\n\x1a\nnot really",
        )
        .unwrap();
        let yaml = format!(
            "source: {{ kind: replay, paths: [{}] }}\npace: {{ fps: max }}\nexit_when_done: true\n",
            dir.display()
        );
        let mut s = stage(&yaml);
        let mut out = Outbox::default();
        let mut idles = Vec::new();
        for _ in 0..4 {
            idles.push(s.on_idle(5, &mut out).unwrap());
        }
        assert_eq!(idles.last(), Some(&Idle::Exit));
        let sent = out.take();
        let ports: Vec<&str> = sent.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(ports, ["health", "frame"]);
        let health = forgeline_schemas::Health::try_from_batch(&sent[0].1).unwrap();
        assert!(
            health[0].message.contains("a_corrupt.png"),
            "{}",
            health[0].message
        );
        assert_eq!((s.frames_sent(), s.bad_images()), (1, 1));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn config_problems_are_all_reported() {
        let err = parse_config::<Config>(
            Some("asset_id: ''\npace: { fps: -1, max_burst: 0 }\nsource: { kind: simulated, channels: 2 }\n"),
            "test",
            "camera",
        )
        .unwrap_err()
        .to_string();
        for needle in ["asset_id", "pace.fps", "pace.max_burst", "channels"] {
            assert!(err.contains(needle), "{needle}: {err}");
        }
        let typo = parse_config::<Config>(Some("pace: { fsp: 3 }\n"), "t", "camera")
            .unwrap_err()
            .to_string();
        assert!(typo.contains("fsp"), "{typo}");
        let word = parse_config::<Config>(Some("pace: { fps: fast }\n"), "t", "camera")
            .unwrap_err()
            .to_string();
        assert!(word.contains("fast"), "{word}");
    }
}
