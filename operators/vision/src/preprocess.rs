//! Frame -> model-ready tensor bytes: bilinear resize (`stretch`, `center_crop`, `letterbox`),
//! grey/RGB conversion, per-channel normalisation, NCHW or NHWC, `f32` or `u8`, little-endian.
//!
//! [`Preprocessor::run`] does not allocate once warmed up: the interpolation tables and the
//! resized intermediate are kept and rebuilt only when the source geometry changes, and the
//! caller's output `Vec` is reused (`clear` + `resize` within its capacity). The inner loops walk
//! contiguous slices with `chunks_exact`, so the per-pixel writes carry no bounds checks; only
//! the data-dependent source gathers are checked.
//!
//! Resampling follows the half-pixel-centre convention (OpenCV `INTER_LINEAR`, PyTorch
//! `align_corners=False`): output pixel `d` samples source coordinate `(d + 0.5) * scale - 0.5`,
//! clamped to the image. There is no anti-aliasing prefilter: downscaling by more than 2x
//! skips pixels, as OpenCV's bilinear does.

use forgeline_schemas::{Correlation, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, Problems};
use crate::{FrameRef, RawFrame, VisionError};

/// How the frame is fitted to the target size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResizeMode {
    /// Scale each axis independently to the target (aspect ratio not kept).
    #[default]
    Stretch,
    /// Scale so the target is covered, keeping the aspect ratio, and cut the centre.
    CenterCrop,
    /// Scale so the whole frame fits, keeping the aspect ratio, centred; the border is `pad`.
    Letterbox,
}

/// Tensor memory layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// `[1, C, H, W]`: one plane per channel.
    #[default]
    Nchw,
    /// `[1, H, W, C]`: channels interleaved.
    Nhwc,
}

impl Layout {
    /// The `Tensor.layout` word: `nchw` or `nhwc`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Nchw => "nchw",
            Self::Nhwc => "nhwc",
        }
    }
}

/// Tensor element type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DType {
    /// `(pixel / 255 - mean[c]) / std[c]` as little-endian f32.
    #[default]
    F32,
    /// The resized pixel value, rounded, 0..=255.
    U8,
}

impl DType {
    /// The `Tensor.dtype` word: `f32` or `u8`.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::U8 => "u8",
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::U8 => 1,
        }
    }
}

/// Configuration of the preprocessor.
///
/// ```yaml
/// width: 224
/// height: 224
/// resize: letterbox
/// channels: 3
/// layout: nchw
/// dtype: f32
/// mean: [0.485, 0.456, 0.406]
/// std: [0.229, 0.224, 0.225]
/// pad: 0
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PreprocessConfig {
    /// Target width in pixels, 1..=8192. Default 224.
    pub width: u32,
    /// Target height in pixels, 1..=8192. Default 224.
    pub height: u32,
    /// `stretch`, `center_crop` or `letterbox`. Default `stretch`.
    pub resize: ResizeMode,
    /// Output channels, 1 (grey; RGB frames become `0.299 R + 0.587 G + 0.114 B`) or 3 (RGB;
    /// grey frames are replicated). Default 1.
    pub channels: u32,
    /// `nchw` or `nhwc`. Default `nchw`.
    pub layout: Layout,
    /// `f32` or `u8`. Default `f32`.
    pub dtype: DType,
    /// Per-channel mean on the 0..1 scale (`f32` only): one value for all channels or one per
    /// channel. Default `[0.0]`.
    pub mean: Vec<f32>,
    /// Per-channel standard deviation on the 0..1 scale (`f32` only), > 0: one value or one per
    /// channel. Default `[1.0]`.
    pub std: Vec<f32>,
    /// Letterbox border as a raw pixel value (normalised like any pixel for `f32`). Default 0.
    pub pad: u8,
}

impl Default for PreprocessConfig {
    fn default() -> Self {
        Self {
            width: 224,
            height: 224,
            resize: ResizeMode::Stretch,
            channels: 1,
            layout: Layout::Nchw,
            dtype: DType::F32,
            mean: vec![0.0],
            std: vec![1.0],
            pad: 0,
        }
    }
}

impl PreprocessConfig {
    /// Checks every field and reports all problems at once.
    ///
    /// # Errors
    /// [`ConfigError`] with one line per bad field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Problems::new("preprocess");
        for (name, value) in [("width", self.width), ("height", self.height)] {
            problems.check((1..=8192).contains(&value), || {
                format!("{name}: found {value}, expected 1..=8192 pixels")
            });
        }
        problems.check(matches!(self.channels, 1 | 3), || {
            format!(
                "channels: found {}, expected 1 (grey) or 3 (RGB)",
                self.channels
            )
        });
        let channels = self.channels as usize;
        for (name, values) in [("mean", &self.mean), ("std", &self.std)] {
            problems.check(values.len() == 1 || values.len() == channels, || {
                format!(
                    "{name}: found {} value(s), expected 1 or `channels` ({channels})",
                    values.len()
                )
            });
        }
        problems.check(self.mean.iter().all(|m| m.is_finite()), || {
            format!("mean: found {:?}, expected finite numbers", self.mean)
        });
        problems.check(self.std.iter().all(|s| s.is_finite() && *s > 0.0), || {
            format!("std: found {:?}, expected finite numbers > 0", self.std)
        });
        if self.dtype == DType::U8 {
            problems.check(self.mean == [0.0] && self.std == [1.0], || {
                format!(
                    "mean/std: found {:?}/{:?}, but normalisation applies to dtype f32 only (remove them or use dtype: f32)",
                    self.mean, self.std
                )
            });
        }
        problems.finish()
    }
}

/// Shape and type of the tensor [`Preprocessor::run`] writes: batch 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TensorShape {
    /// Memory layout.
    pub layout: Layout,
    /// Element type.
    pub dtype: DType,
    /// Channels.
    pub channels: usize,
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
}

impl TensorShape {
    /// The dimensions outermost first: `[1, C, H, W]` or `[1, H, W, C]`.
    pub fn dims(&self) -> [i64; 4] {
        let (c, h, w) = (self.channels as i64, self.height as i64, self.width as i64);
        match self.layout {
            Layout::Nchw => [1, c, h, w],
            Layout::Nhwc => [1, h, w, c],
        }
    }

    /// Number of elements.
    pub fn elements(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Number of bytes.
    pub fn byte_len(&self) -> usize {
        self.elements() * self.dtype.size()
    }

    /// The element index of channel `c`, row `y`, column `x`.
    pub fn index(&self, c: usize, y: usize, x: usize) -> usize {
        match self.layout {
            Layout::Nchw => (c * self.height + y) * self.width + x,
            Layout::Nhwc => (y * self.width + x) * self.channels + c,
        }
    }

    /// A `tensor` message row holding `data` (bytes written by [`Preprocessor::run`]).
    pub fn to_tensor(&self, key: Correlation, data: Vec<u8>, source: impl Into<String>) -> Tensor {
        Tensor {
            key,
            shape: self.dims().to_vec(),
            dtype: self.dtype.name().to_owned(),
            layout: self.layout.name().to_owned(),
            data,
            source: source.into(),
        }
    }
}

/// One interpolation tap along an axis: the two source indices (already multiplied by the
/// axis stride) and the weight of the second.
#[derive(Debug, Clone, Copy, Default)]
struct Tap {
    i0: usize,
    i1: usize,
    weight: f32,
}

/// The source geometry the tables were built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Geometry {
    width: usize,
    height: usize,
    channels: usize,
}

/// Where the content lands in the output (the rest is letterbox border).
#[derive(Debug, Clone, Copy, Default)]
struct Placement {
    x0: usize,
    y0: usize,
    width: usize,
    height: usize,
}

/// Turns frames into tensor bytes; holds the reusable buffers. One per node (not shared).
///
/// ```
/// use forgeline_vision::{Camera, PreprocessConfig, Preprocessor, SimulatedCamera, SimulatedCameraConfig};
///
/// let mut camera = SimulatedCamera::new(SimulatedCameraConfig::default())?;
/// let mut pre = Preprocessor::new(PreprocessConfig { channels: 3, ..PreprocessConfig::default() })?;
/// let mut bytes = Vec::new(); // reused frame after frame
/// let frame = camera.next_frame().expect("the simulator never ends")?;
/// let shape = pre.run(&frame.as_frame_ref(), &mut bytes)?;
/// assert_eq!(shape.dims(), [1, 3, 224, 224]);
/// assert_eq!(bytes.len(), 3 * 224 * 224 * 4);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Preprocessor {
    config: PreprocessConfig,
    shape: TensorShape,
    /// Per output channel: `value = pixel * scale[c] + offset[c]` (f32 only).
    scale: [f32; 3],
    offset: [f32; 3],
    geometry: Option<Geometry>,
    placement: Placement,
    columns: Vec<Tap>,
    rows: Vec<Tap>,
    /// Output-sized, source channels, interleaved, 0..255.
    resized: Vec<f32>,
}

impl Preprocessor {
    /// Validates the config and builds the preprocessor (buffers are sized on the first frame).
    ///
    /// # Errors
    /// [`ConfigError`] listing every problem of the config.
    pub fn new(config: PreprocessConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let channels = config.channels as usize;
        let mut scale = [0.0; 3];
        let mut offset = [0.0; 3];
        for c in 0..channels {
            let mean = config.mean.get(c).copied().unwrap_or(config.mean[0]);
            let std = config.std.get(c).copied().unwrap_or(config.std[0]);
            scale[c] = 1.0 / (255.0 * std);
            offset[c] = -mean / std;
        }
        let shape = TensorShape {
            layout: config.layout,
            dtype: config.dtype,
            channels,
            height: config.height as usize,
            width: config.width as usize,
        };
        Ok(Self {
            config,
            shape,
            scale,
            offset,
            geometry: None,
            placement: Placement::default(),
            columns: Vec::new(),
            rows: Vec::new(),
            resized: Vec::new(),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &PreprocessConfig {
        &self.config
    }

    /// The shape every [`run`](Self::run) writes.
    pub fn output_shape(&self) -> TensorShape {
        self.shape
    }

    /// Preprocesses `frame` into `out` (cleared first; `output_shape().byte_len()` bytes,
    /// little-endian). Allocation-free after the first frame of a given source geometry once
    /// `out` has the capacity.
    ///
    /// # Errors
    /// [`VisionError::BadFrame`] naming the frame's source when its buffer does not match
    /// `width * height * channels`, or the dimensions are unusable.
    pub fn run(
        &mut self,
        frame: &FrameRef<'_>,
        out: &mut Vec<u8>,
    ) -> Result<TensorShape, VisionError> {
        frame.validate()?;
        let geometry = Geometry {
            width: frame.width as usize,
            height: frame.height as usize,
            channels: frame.channels as usize,
        };
        if self.geometry != Some(geometry) {
            self.prepare(geometry);
        }
        match geometry.channels {
            1 => self.resize::<1>(frame.data, geometry),
            _ => self.resize::<3>(frame.data, geometry),
        }
        out.clear();
        out.resize(self.shape.byte_len(), 0);
        match (geometry.channels, self.shape.channels) {
            // Grey to grey, or grey replicated to RGB.
            (1, _) => self.emit::<1>(out, |px, _| px[0]),
            (_, 1) => self.emit::<3>(out, |px, _| 0.299 * px[0] + 0.587 * px[1] + 0.114 * px[2]),
            _ => self.emit::<3>(out, |px, c| px[c]),
        }
        Ok(self.shape)
    }

    /// [`run`](Self::run) on a [`RawFrame`].
    ///
    /// # Errors
    /// As [`run`](Self::run).
    pub fn run_raw(
        &mut self,
        frame: &RawFrame,
        out: &mut Vec<u8>,
    ) -> Result<TensorShape, VisionError> {
        self.run(&frame.as_frame_ref(), out)
    }

    /// Builds the tap tables and the intermediate buffer for a new source geometry.
    fn prepare(&mut self, src: Geometry) {
        let (dw, dh) = (self.shape.width, self.shape.height);
        let (sw, sh) = (src.width as f32, src.height as f32);
        // `scale`: source pixels per output pixel; `origin`: source coordinate of the content's
        // left/top edge.
        let (placement, scale_x, scale_y, origin_x, origin_y) = match self.config.resize {
            ResizeMode::Stretch => (
                Placement {
                    x0: 0,
                    y0: 0,
                    width: dw,
                    height: dh,
                },
                sw / dw as f32,
                sh / dh as f32,
                0.0,
                0.0,
            ),
            ResizeMode::CenterCrop => {
                let s = (sw / dw as f32).min(sh / dh as f32);
                (
                    Placement {
                        x0: 0,
                        y0: 0,
                        width: dw,
                        height: dh,
                    },
                    s,
                    s,
                    (sw - dw as f32 * s) / 2.0,
                    (sh - dh as f32 * s) / 2.0,
                )
            }
            ResizeMode::Letterbox => {
                let s = (sw / dw as f32).max(sh / dh as f32);
                let width = ((sw / s).round() as usize).clamp(1, dw);
                let height = ((sh / s).round() as usize).clamp(1, dh);
                (
                    Placement {
                        x0: (dw - width) / 2,
                        y0: (dh - height) / 2,
                        width,
                        height,
                    },
                    sw / width as f32,
                    sh / height as f32,
                    0.0,
                    0.0,
                )
            }
        };
        fill_taps(
            &mut self.columns,
            placement.width,
            scale_x,
            origin_x,
            src.width,
            src.channels,
        );
        fill_taps(
            &mut self.rows,
            placement.height,
            scale_y,
            origin_y,
            src.height,
            src.width * src.channels,
        );
        self.resized.clear();
        self.resized
            .resize(dw * dh * src.channels, f32::from(self.config.pad));
        self.placement = placement;
        self.geometry = Some(src);
    }

    /// Bilinear resize of the content into `self.resized` (source channels kept).
    fn resize<const C: usize>(&mut self, src: &[u8], geometry: Geometry) {
        let stride = geometry.width * C;
        let out_stride = self.shape.width * C;
        let Placement { x0, y0, width, .. } = self.placement;
        let out_rows = self.resized[y0 * out_stride..]
            .chunks_exact_mut(out_stride)
            .zip(&self.rows);
        for (out_row, row) in out_rows {
            let top = &src[row.i0..row.i0 + stride];
            let bottom = &src[row.i1..row.i1 + stride];
            let wy = row.weight;
            let out_pixels = out_row[x0 * C..(x0 + width) * C].chunks_exact_mut(C);
            for (px, col) in out_pixels.zip(&self.columns) {
                let wx = col.weight;
                let (a, b) = (&top[col.i0..col.i0 + C], &top[col.i1..col.i1 + C]);
                let (c, d) = (&bottom[col.i0..col.i0 + C], &bottom[col.i1..col.i1 + C]);
                for k in 0..C {
                    let (a, b, c, d) = (
                        f32::from(a[k]),
                        f32::from(b[k]),
                        f32::from(c[k]),
                        f32::from(d[k]),
                    );
                    // lerp as `a + (b - a) * w`: exact when both ends are equal.
                    let upper = a + (b - a) * wx;
                    let lower = c + (d - c) * wx;
                    px[k] = upper + (lower - upper) * wy;
                }
            }
        }
    }

    /// Writes `self.resized` to `out` in the configured layout and dtype; `pick(pixel, c)` gives
    /// output channel `c` of a source pixel (0..255).
    fn emit<const C: usize>(&self, out: &mut [u8], pick: impl Fn(&[f32], usize) -> f32) {
        let channels = self.shape.channels;
        let size = self.shape.dtype.size();
        let plane = self.shape.width * self.shape.height * size;
        let pixels = self.resized.chunks_exact(C);
        match (self.shape.layout, self.shape.dtype) {
            (Layout::Nchw, DType::F32) => {
                for (c, out_plane) in out.chunks_exact_mut(plane).enumerate() {
                    let (scale, offset) = (self.scale[c], self.offset[c]);
                    for (dst, px) in out_plane.chunks_exact_mut(4).zip(pixels.clone()) {
                        dst.copy_from_slice(&(pick(px, c) * scale + offset).to_le_bytes());
                    }
                }
            }
            (Layout::Nchw, DType::U8) => {
                for (c, out_plane) in out.chunks_exact_mut(plane).enumerate() {
                    for (dst, px) in out_plane.iter_mut().zip(pixels.clone()) {
                        *dst = to_u8(pick(px, c));
                    }
                }
            }
            (Layout::Nhwc, DType::F32) => {
                for (dst, px) in out.chunks_exact_mut(channels * 4).zip(pixels) {
                    for (c, element) in dst.chunks_exact_mut(4).enumerate() {
                        let value = pick(px, c) * self.scale[c] + self.offset[c];
                        element.copy_from_slice(&value.to_le_bytes());
                    }
                }
            }
            (Layout::Nhwc, DType::U8) => {
                for (dst, px) in out.chunks_exact_mut(channels).zip(pixels) {
                    for (c, element) in dst.iter_mut().enumerate() {
                        *element = to_u8(pick(px, c));
                    }
                }
            }
        }
    }
}

/// Rounds a 0..255 value to a byte (`as` saturates out-of-range values).
fn to_u8(value: f32) -> u8 {
    (value + 0.5) as u8
}

/// Fills `taps` for `count` output pixels sampling source coordinate
/// `origin + (d + 0.5) * scale - 0.5`, clamped to `0..n`; indices are multiplied by `stride`.
fn fill_taps(taps: &mut Vec<Tap>, count: usize, scale: f32, origin: f32, n: usize, stride: usize) {
    taps.clear();
    let last = (n - 1) as f32;
    taps.extend((0..count).map(|d| {
        let f = (origin + (d as f32 + 0.5) * scale - 0.5).clamp(0.0, last);
        let i0 = f.floor() as usize;
        let i1 = (i0 + 1).min(n - 1);
        Tap {
            i0: i0 * stride,
            i1: i1 * stride,
            weight: f - i0 as f32,
        }
    }));
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is the failure report.
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame(width: u32, height: u32, channels: u32, data: &[u8]) -> FrameRef<'_> {
        FrameRef {
            width,
            height,
            channels,
            data,
            source: "test",
        }
    }

    fn config(width: u32, height: u32) -> PreprocessConfig {
        PreprocessConfig {
            width,
            height,
            ..PreprocessConfig::default()
        }
    }

    fn f32s(bytes: &[u8]) -> Vec<f32> {
        bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }

    fn run(config: PreprocessConfig, frame: FrameRef<'_>) -> (TensorShape, Vec<u8>) {
        let mut pre = Preprocessor::new(config).unwrap();
        let mut out = Vec::new();
        let shape = pre.run(&frame, &mut out).unwrap();
        assert_eq!(out.len(), shape.byte_len());
        (shape, out)
    }

    #[test]
    fn constant_image_stays_constant_in_every_mode() {
        for mode in [ResizeMode::Stretch, ResizeMode::CenterCrop] {
            for (sw, sh) in [(300, 300), (640, 480), (17, 5), (3, 200)] {
                for channels in [1u32, 3] {
                    let data = vec![173u8; (sw * sh * channels) as usize];
                    let cfg = PreprocessConfig {
                        resize: mode,
                        dtype: DType::U8,
                        channels,
                        ..config(224, 96)
                    };
                    let (_, out) = run(cfg, frame(sw, sh, channels, &data));
                    assert!(
                        out.iter().all(|&v| v == 173),
                        "{mode:?} {sw}x{sh}x{channels}"
                    );
                    let cfg = PreprocessConfig {
                        resize: mode,
                        ..config(31, 64)
                    };
                    let (_, out) = run(cfg, frame(sw, sh, channels, &data));
                    assert!(f32s(&out).iter().all(|&v| (v - 173.0 / 255.0).abs() < 1e-6));
                }
            }
        }
    }

    #[test]
    fn known_gradients_resample_at_half_pixel_centres() {
        // Upsampling 4 -> 8: output d samples (d + 0.5) / 2 - 0.5, clamped.
        let data = [0u8, 60, 120, 180];
        let cfg = PreprocessConfig {
            dtype: DType::U8,
            ..config(8, 1)
        };
        let (_, out) = run(cfg, frame(4, 1, 1, &data));
        assert_eq!(out, [0, 15, 45, 75, 105, 135, 165, 180]);
        // Downsampling 8 -> 4 by 2 averages pixel pairs (f32, exact).
        let data: Vec<u8> = (0..8).map(|x| x * 10).collect();
        let (_, out) = run(
            PreprocessConfig {
                std: vec![1.0 / 255.0],
                ..config(4, 1)
            },
            frame(8, 1, 1, &data),
        );
        assert_eq!(f32s(&out), [5.0, 25.0, 45.0, 65.0]);
        // Vertical gradient, 2 -> 4 rows, 3 columns kept.
        let data = [0u8, 0, 0, 200, 200, 200];
        let (_, out) = run(
            PreprocessConfig {
                dtype: DType::U8,
                ..config(3, 4)
            },
            frame(3, 2, 1, &data),
        );
        assert_eq!(out, [0, 0, 0, 50, 50, 50, 150, 150, 150, 200, 200, 200]);
    }

    #[test]
    fn same_size_stretch_is_an_exact_copy() {
        let data: Vec<u8> = (0..5 * 4 * 3).map(|i| (i * 37 % 256) as u8).collect();
        let cfg = PreprocessConfig {
            dtype: DType::U8,
            channels: 3,
            layout: Layout::Nhwc,
            ..config(5, 4)
        };
        let (_, out) = run(cfg, frame(5, 4, 3, &data));
        assert_eq!(out, data);
    }

    #[test]
    fn center_crop_cuts_the_middle_and_letterbox_pads() {
        // 8x4 grey, columns numbered: crop to 4x4 keeps columns 2..6 at scale 1.
        let data: Vec<u8> = (0..4).flat_map(|_| (0..8).map(|x| x * 20)).collect();
        let cfg = PreprocessConfig {
            dtype: DType::U8,
            resize: ResizeMode::CenterCrop,
            ..config(4, 4)
        };
        let (_, out) = run(cfg, frame(8, 4, 1, &data));
        assert_eq!(&out[..4], &[40, 60, 80, 100]);
        assert_eq!(&out[12..], &[40, 60, 80, 100]);
        // 4x2 of 200 into 4x4 letterbox, pad 9: rows 0 and 3 are border.
        let data = [200u8; 8];
        let cfg = PreprocessConfig {
            dtype: DType::U8,
            resize: ResizeMode::Letterbox,
            pad: 9,
            ..config(4, 4)
        };
        let (_, out) = run(cfg, frame(4, 2, 1, &data));
        assert_eq!(out, [[9u8; 4], [200; 4], [200; 4], [9; 4]].concat());
        // Tall frame into a square: columns padded, content keeps its aspect ratio.
        let data = vec![100u8; 10 * 40];
        let cfg = PreprocessConfig {
            dtype: DType::U8,
            resize: ResizeMode::Letterbox,
            ..config(8, 8)
        };
        let (_, out) = run(cfg, frame(10, 40, 1, &data));
        for row in out.chunks_exact(8) {
            assert_eq!(row, [0, 0, 0, 100, 100, 0, 0, 0]);
        }
    }

    #[test]
    fn normalisation_math() {
        let data = [0u8, 51, 255];
        let cfg = PreprocessConfig {
            mean: vec![0.5],
            std: vec![0.25],
            ..config(3, 1)
        };
        let (_, out) = run(cfg, frame(3, 1, 1, &data));
        let values = f32s(&out);
        for (v, expected) in values.iter().zip([-2.0f32, -1.2, 2.0]) {
            assert!((v - expected).abs() < 1e-5, "{values:?}");
        }
        // Per-channel ImageNet constants, RGB NCHW: (p / 255 - mean[c]) / std[c].
        let mean = [0.485f32, 0.456, 0.406];
        let std = [0.229f32, 0.224, 0.225];
        let data = [10u8, 128, 250, 0, 255, 77];
        let cfg = PreprocessConfig {
            channels: 3,
            mean: mean.to_vec(),
            std: std.to_vec(),
            ..config(2, 1)
        };
        let (shape, out) = run(cfg, frame(2, 1, 3, &data));
        assert_eq!(shape.dims(), [1, 3, 1, 2]);
        let values = f32s(&out);
        for c in 0..3 {
            for x in 0..2 {
                let expected = (f32::from(data[x * 3 + c]) / 255.0 - mean[c]) / std[c];
                let got = values[shape.index(c, 0, x)];
                assert!(
                    (got - expected).abs() < 1e-5,
                    "c{c} x{x}: {got} vs {expected}"
                );
            }
        }
    }

    #[test]
    fn grey_and_rgb_convert_both_ways() {
        let rgb = [255u8, 0, 0, 0, 255, 0, 0, 0, 255, 90, 90, 90];
        let cfg = PreprocessConfig {
            dtype: DType::U8,
            ..config(4, 1)
        };
        let (_, out) = run(cfg, frame(4, 1, 3, &rgb));
        assert_eq!(out, [76, 150, 29, 90]);
        let grey = [7u8, 200];
        let cfg = PreprocessConfig {
            dtype: DType::U8,
            channels: 3,
            ..config(2, 1)
        };
        let (shape, out) = run(cfg, frame(2, 1, 1, &grey));
        assert_eq!(shape.dims(), [1, 3, 1, 2]);
        assert_eq!(out, [7, 200, 7, 200, 7, 200]);
    }

    #[test]
    fn bad_frames_name_their_source_and_the_preprocessor_recovers() {
        let mut pre = Preprocessor::new(config(4, 4)).unwrap();
        let mut out = Vec::new();
        let data = [0u8; 11];
        let bad = FrameRef {
            width: 4,
            height: 3,
            channels: 1,
            data: &data,
            source: "cam-3:seq 41",
        };
        let msg = pre.run(&bad, &mut out).unwrap_err().to_string();
        assert!(
            msg.contains("cam-3:seq 41") && msg.contains("11 bytes") && msg.contains("12"),
            "{msg}"
        );
        // Geometry changes between frames rebuild the tables.
        let a = [50u8; 12];
        let b = [90u8; 60];
        pre.run(&frame(4, 3, 1, &a), &mut out).unwrap();
        assert!(f32s(&out).iter().all(|&v| (v - 50.0 / 255.0).abs() < 1e-6));
        pre.run(&frame(5, 4, 3, &b), &mut out).unwrap();
        assert!(f32s(&out).iter().all(|&v| (v - 90.0 / 255.0).abs() < 1e-6));
    }

    #[test]
    fn config_reports_every_problem_and_parses_yaml() {
        let cfg = PreprocessConfig {
            width: 0,
            channels: 2,
            mean: vec![0.1, 0.2],
            std: vec![0.0],
            dtype: DType::U8,
            ..PreprocessConfig::default()
        };
        let err = Preprocessor::new(cfg).unwrap_err();
        let msg = err.to_string();
        for needle in [
            "width: found 0",
            "channels: found 2",
            "std: found [0.0]",
            "dtype f32 only",
        ] {
            assert!(msg.contains(needle), "{needle} in {msg}");
        }
        let cfg: PreprocessConfig = serde_yaml::from_str(
            "width: 128\nheight: 96\nresize: center_crop\nchannels: 3\nlayout: nhwc\nmean: [0.5, 0.5, 0.5]\nstd: [0.5]\n",
        )
        .unwrap();
        assert_eq!(
            (cfg.resize, cfg.layout, cfg.dtype),
            (ResizeMode::CenterCrop, Layout::Nhwc, DType::F32)
        );
        let shape = Preprocessor::new(cfg).unwrap().output_shape();
        assert_eq!(
            (shape.dims(), shape.byte_len()),
            ([1, 96, 128, 3], 96 * 128 * 3 * 4)
        );
        assert!(serde_yaml::from_str::<PreprocessConfig>("resize: fit\n").is_err());
        assert!(serde_yaml::from_str::<PreprocessConfig>("widht: 3\n").is_err());
    }

    #[test]
    fn shape_becomes_a_tensor_row() {
        let shape = Preprocessor::new(PreprocessConfig {
            layout: Layout::Nhwc,
            dtype: DType::U8,
            ..config(2, 2)
        })
        .unwrap()
        .output_shape();
        let tensor = shape.to_tensor(Correlation::new("cam", 3, 4), vec![0; 4], "simulated:1");
        assert_eq!(tensor.shape, vec![1, 2, 2, 1]);
        assert_eq!(
            (tensor.dtype.as_str(), tensor.layout.as_str()),
            ("u8", "nhwc")
        );
        assert_eq!(tensor.key, Correlation::new("cam", 3, 4));
    }

    fn arb_case()
    -> impl Strategy<Value = (u32, u32, u32, Vec<u8>, u32, u32, u32, ResizeMode, DType)> {
        (1u32..24, 1u32..24, prop_oneof![Just(1u32), Just(3)]).prop_flat_map(|(w, h, c)| {
            (
                Just(w),
                Just(h),
                Just(c),
                prop::collection::vec(any::<u8>(), (w * h * c) as usize),
                1u32..20,
                1u32..20,
                prop_oneof![Just(1u32), Just(3)],
                prop_oneof![
                    Just(ResizeMode::Stretch),
                    Just(ResizeMode::CenterCrop),
                    Just(ResizeMode::Letterbox)
                ],
                prop_oneof![Just(DType::F32), Just(DType::U8)],
            )
        })
    }

    proptest! {
        #[test]
        fn nchw_and_nhwc_hold_the_same_values_at_mapped_indices(
            (w, h, c, data, dw, dh, oc, resize, dtype) in arb_case()
        ) {
            let base = PreprocessConfig { width: dw, height: dh, channels: oc, resize, dtype, pad: 17, ..PreprocessConfig::default() };
            let (nchw, a) = run(PreprocessConfig { layout: Layout::Nchw, ..base.clone() }, frame(w, h, c, &data));
            let (nhwc, b) = run(PreprocessConfig { layout: Layout::Nhwc, ..base }, frame(w, h, c, &data));
            let size = dtype.size();
            let (oc, dh, dw) = (oc as usize, dh as usize, dw as usize);
            prop_assert_eq!(a.len(), oc * dh * dw * size);
            let mut seen = vec![false; oc * dh * dw];
            for ch in 0..oc {
                for y in 0..dh {
                    for x in 0..dw {
                        let (i, j) = (nchw.index(ch, y, x), nhwc.index(ch, y, x));
                        prop_assert_eq!(i, ch * dh * dw + y * dw + x);
                        prop_assert_eq!(j, (y * dw + x) * oc + ch);
                        prop_assert_eq!(&a[i * size..(i + 1) * size], &b[j * size..(j + 1) * size]);
                        prop_assert!(!seen[i]);
                        seen[i] = true;
                    }
                }
            }
        }

        #[test]
        fn outputs_stay_within_the_input_range(
            (w, h, c, data, dw, dh, _oc, resize, _dtype) in arb_case()
        ) {
            // Bilinear weights are convex: no output below the darkest or above the brightest
            // input (or the pad).
            let cfg = PreprocessConfig { width: dw, height: dh, channels: c, resize, dtype: DType::U8, pad: 128, ..PreprocessConfig::default() };
            let (_, out) = run(cfg, frame(w, h, c, &data));
            let lo = data.iter().copied().min().unwrap_or(0).min(128);
            let hi = data.iter().copied().max().unwrap_or(255).max(128);
            prop_assert!(out.iter().all(|v| (lo..=hi).contains(v)));
        }
    }
}
