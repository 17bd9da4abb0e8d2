//! # forgeline-vision
//!
//! The acquisition and preprocessing stages of the optical inspection line: camera frames of
//! parts -> [`Preprocessor`] -> CNN -> threshold -> reject to the PLC. Frames come from a
//! [`Camera`]:
//!
//! - [`simulated::SimulatedCamera`]: seeded procedural metal-part surfaces with drawn defects
//!   (`scratch`, `crack`, `spot`, `missing`); frame `N` is a pure function of (config, seed, `N`).
//! - [`replay::ReplayCamera`]: PNG / JPEG / TIFF files, a folder (sorted) or a list.
//!
//! [`dataset::generate_dataset`] writes labelled PNG sets (`good/`, `defect/`, `manifest.csv`)
//! for training. [`Preprocessor`] turns a frame into model-ready tensor bytes (bilinear resize,
//! grey/RGB conversion, normalisation, NCHW/NHWC) without allocating once warmed up. There is no
//! wall clock and no dora type in this crate: the node owns time and transport.

pub mod dataset;
mod error;
mod label;
pub mod preprocess;
pub mod replay;
pub mod simulated;

use forgeline_schemas::{Correlation, Frame};
use serde::{Deserialize, Serialize};

pub use dataset::{DatasetCounts, Manifest, ManifestRow, generate_dataset};
pub use error::{ConfigError, VisionError};
pub use label::{DefectKind, PartLabel, UnknownLabel};
pub use preprocess::{DType, Layout, PreprocessConfig, Preprocessor, ResizeMode, TensorShape};
pub use replay::{ReplayCamera, ReplayConfig};
pub use simulated::{DefectProbabilities, Region, SimulatedCamera, SimulatedCameraConfig};

/// One camera frame as acquired: row-major interleaved 8-bit pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct RawFrame {
    /// Frame number from the source (0-based, +1 per frame; a looping replay keeps counting).
    pub seq: u64,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Channels: 1 (grey, `mono8`) or 3 (RGB, `rgb8`).
    pub channels: u32,
    /// Pixel bytes, `width * height * channels` long.
    pub data: Vec<u8>,
    /// Where the frame came from: `simulated:<seed>` or the image's path.
    pub source: String,
    /// Ground truth when known (simulator, or a replayed file under `good/` or `defect/`).
    pub label: Option<PartLabel>,
}

impl RawFrame {
    /// A borrowed view for [`Preprocessor::run`].
    pub fn as_frame_ref(&self) -> FrameRef<'_> {
        FrameRef {
            width: self.width,
            height: self.height,
            channels: self.channels,
            data: &self.data,
            source: &self.source,
        }
    }

    /// The frame as a `frame` message row, stamped with `asset_id` and the acquisition time (ns
    /// since the Unix epoch, from the node's clock). Encoding `mono8` for 1 channel, else `rgb8`.
    pub fn into_frame(self, asset_id: impl Into<String>, acq_time_ns: u64) -> Frame {
        Frame {
            key: Correlation::new(asset_id, self.seq, acq_time_ns),
            width: self.width,
            height: self.height,
            channels: self.channels,
            encoding: encoding(self.channels).to_owned(),
            data: self.data,
            source: self.source,
        }
    }
}

/// The `Frame.encoding` word for a channel count: `mono8` for 1, `rgb8` otherwise.
pub fn encoding(channels: u32) -> &'static str {
    if channels == 1 { "mono8" } else { "rgb8" }
}

/// A borrowed frame: what [`Preprocessor::run`] reads (from a [`RawFrame`] or straight from a
/// `frame` message's Arrow buffer, without a copy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRef<'a> {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Channels: 1 or 3.
    pub channels: u32,
    /// Row-major interleaved pixels, `width * height * channels` bytes.
    pub data: &'a [u8],
    /// Where the frame came from, for error messages.
    pub source: &'a str,
}

impl<'a> FrameRef<'a> {
    /// A view of a `frame` message row.
    pub fn from_frame(frame: &'a Frame) -> Self {
        Self {
            width: frame.width,
            height: frame.height,
            channels: frame.channels,
            data: &frame.data,
            source: &frame.source,
        }
    }

    /// Checks the dimensions against the buffer: width and height > 0, channels 1 or 3,
    /// `data.len() == width * height * channels`.
    ///
    /// # Errors
    /// [`VisionError::BadFrame`] naming the source, the dimensions and the byte count.
    pub fn validate(&self) -> Result<(), VisionError> {
        let bad = |reason: String| VisionError::BadFrame {
            origin: self.source.to_owned(),
            width: self.width,
            height: self.height,
            channels: self.channels,
            len: self.data.len(),
            reason,
        };
        if self.width == 0 || self.height == 0 {
            return Err(bad("width and height must be at least 1".into()));
        }
        if self.channels != 1 && self.channels != 3 {
            return Err(bad(format!(
                "{} channels, expected 1 (mono8) or 3 (rgb8)",
                self.channels
            )));
        }
        let expected = (self.width as u64) * (self.height as u64) * (self.channels as u64);
        if self.data.len() as u64 != expected {
            return Err(bad(format!(
                "expected width * height * channels = {expected} bytes"
            )));
        }
        Ok(())
    }
}

/// A source of part images: simulator, image files or (later) a real camera.
pub trait Camera {
    /// The next frame. `None`: the source is exhausted. `Some(Err(_))`: one bad item (a corrupt
    /// file); the caller logs it and calls again, one bad item never stops the others.
    fn next_frame(&mut self) -> Option<Result<RawFrame, VisionError>>;

    /// One line for logs: what the source is and where it stands.
    fn describe(&self) -> String;
}

impl<C: Camera + ?Sized> Camera for Box<C> {
    fn next_frame(&mut self) -> Option<Result<RawFrame, VisionError>> {
        (**self).next_frame()
    }

    fn describe(&self) -> String {
        (**self).describe()
    }
}

/// Which camera to build, as one tagged config (`kind: simulated` or `kind: replay`), so a node's
/// YAML picks its source without code changes.
///
/// ```yaml
/// kind: simulated
/// seed: 7
/// defects: { scratch: 0.05 }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CameraConfig {
    /// The seeded part-surface simulator.
    Simulated(SimulatedCameraConfig),
    /// PNG / JPEG / TIFF files.
    Replay(ReplayConfig),
}

impl CameraConfig {
    /// Validates the config and builds the camera.
    ///
    /// # Errors
    /// [`ConfigError`] listing every problem of the config.
    pub fn build(self) -> Result<Box<dyn Camera + Send>, ConfigError> {
        Ok(match self {
            Self::Simulated(config) => Box::new(SimulatedCamera::new(config)?),
            Self::Replay(config) => Box::new(ReplayCamera::new(config)?),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is the failure report.
mod tests {
    use super::*;

    #[test]
    fn raw_frame_becomes_a_frame_row_with_its_keys() {
        let raw = RawFrame {
            seq: 4,
            width: 2,
            height: 1,
            channels: 3,
            data: vec![1, 2, 3, 4, 5, 6],
            source: "simulated:7".into(),
            label: Some(PartLabel::Good),
        };
        assert!(raw.as_frame_ref().validate().is_ok());
        let frame = raw.into_frame("camera-2", 99);
        assert_eq!(frame.key, Correlation::new("camera-2", 4, 99));
        assert_eq!(frame.encoding, "rgb8");
        assert_eq!(frame.data, vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(FrameRef::from_frame(&frame).data.len(), 6);
        assert_eq!(encoding(1), "mono8");
    }

    #[test]
    fn validate_names_the_source_and_the_mismatch() {
        let data = [0u8; 10];
        let cases = [
            (4, 3, 1, "expected width * height * channels = 12 bytes"),
            (0, 3, 1, "at least 1"),
            (5, 1, 2, "2 channels, expected 1 (mono8) or 3 (rgb8)"),
        ];
        for (width, height, channels, needle) in cases {
            let frame = FrameRef {
                width,
                height,
                channels,
                data: &data,
                source: "cam-A/part_3.png",
            };
            let msg = frame.validate().unwrap_err().to_string();
            assert!(
                msg.contains("cam-A/part_3.png") && msg.contains(needle),
                "{msg}"
            );
            assert!(msg.contains("10 bytes"), "{msg}");
        }
    }

    #[test]
    fn camera_to_tensor_message_end_to_end() {
        use forgeline_schemas::Tensor;
        let mut camera = CameraConfig::Simulated(SimulatedCameraConfig {
            seed: 1,
            channels: 3,
            ..SimulatedCameraConfig::default()
        })
        .build()
        .unwrap();
        let mut pre = Preprocessor::new(PreprocessConfig {
            width: 64,
            height: 64,
            channels: 3,
            layout: Layout::Nhwc,
            dtype: DType::U8,
            ..PreprocessConfig::default()
        })
        .unwrap();
        let raw = camera.next_frame().unwrap().unwrap();
        let frame = raw.into_frame("camera-1", 5);
        let mut bytes = Vec::new();
        let shape = pre.run(&FrameRef::from_frame(&frame), &mut bytes).unwrap();
        let tensor = shape.to_tensor(frame.key.clone(), bytes, frame.source.clone());
        let batch = Tensor::to_batch(std::slice::from_ref(&tensor));
        let back = Tensor::try_from_batch(&batch).unwrap();
        assert_eq!(back, vec![tensor]);
        assert_eq!(back[0].shape, vec![1, 64, 64, 3]);
        assert_eq!(back[0].data.len(), 64 * 64 * 3);
    }

    #[test]
    fn camera_config_picks_the_source_by_kind_and_rejects_unknown_keys() {
        let sim: CameraConfig =
            serde_yaml::from_str("kind: simulated\nseed: 7\nwidth: 64\nheight: 48\n").unwrap();
        let mut camera = sim.build().unwrap();
        assert!(
            camera.describe().contains("seed 7"),
            "{}",
            camera.describe()
        );
        let frame = camera.next_frame().unwrap().unwrap();
        assert_eq!(
            (frame.width, frame.height, frame.data.len()),
            (64, 48, 64 * 48)
        );

        let replay: CameraConfig =
            serde_yaml::from_str("kind: replay\npaths: [a.png]\nloop: true\n").unwrap();
        assert!(matches!(
            replay,
            CameraConfig::Replay(ReplayConfig { looping: true, .. })
        ));
        let typo = serde_yaml::from_str::<CameraConfig>("kind: simulated\nseeed: 7\n");
        assert!(typo.unwrap_err().to_string().contains("seeed"));
        let bad = serde_yaml::from_str::<CameraConfig>("kind: webcam\n");
        assert!(bad.is_err());
        let refused: CameraConfig = serde_yaml::from_str("kind: simulated\nchannels: 2\n").unwrap();
        let err = refused.build().err().unwrap().to_string();
        assert!(err.contains("channels"), "{err}");
    }
}
