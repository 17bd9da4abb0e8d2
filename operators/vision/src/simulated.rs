//! A seeded generator of metal-part surface images with drawn defects.
//!
//! Every frame is a procedural surface (ours, no third-party imagery): a base grey level, a
//! lighting gradient with vignetting, machining marks (concentric turning marks or parallel
//! milling marks), two octaves of value-noise texture and sensor noise. A defect is drawn on top
//! through a weight mask, so the pixels outside the defect's [`Region`] are exactly those of the
//! good part with the same `seq`:
//!
//! - `scratch`: a thin anti-aliased straight line, bright or dark;
//! - `crack`: a dark random-walk polyline with one to three branches;
//! - `spot`: a cluster of one to three elliptical blobs, all dark or all bright;
//! - `missing`: a disc of the part cut out (dark background, sharp edge), often at the border.
//!
//! Frame `seq` is a pure function of (config, seed, `seq`): the surface comes from ChaCha8 seeded
//! with `seed` on stream `seq`, the label draw and the defect geometry from two further generators,
//! so a restarted node reproduces frame N and a defective frame N differs from good frame N by the
//! defect only.

use std::f32::consts::TAU;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, Problems};
use crate::{Camera, DefectKind, PartLabel, RawFrame, VisionError};

/// Per-frame probability of each defect (the rest are good parts). They must sum to at most 1.
///
/// ```yaml
/// { scratch: 0.03, crack: 0.02, spot: 0.03, missing: 0.02 }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DefectProbabilities {
    /// Probability of a scratch. Default 0.03.
    pub scratch: f64,
    /// Probability of a crack. Default 0.02.
    pub crack: f64,
    /// Probability of spots. Default 0.03.
    pub spot: f64,
    /// Probability of a missing region. Default 0.02.
    pub missing: f64,
}

impl Default for DefectProbabilities {
    fn default() -> Self {
        Self {
            scratch: 0.03,
            crack: 0.02,
            spot: 0.03,
            missing: 0.02,
        }
    }
}

impl DefectProbabilities {
    /// No defects at all.
    pub fn none() -> Self {
        Self {
            scratch: 0.0,
            crack: 0.0,
            spot: 0.0,
            missing: 0.0,
        }
    }

    /// The probability of `kind`.
    pub fn of(&self, kind: DefectKind) -> f64 {
        match kind {
            DefectKind::Scratch => self.scratch,
            DefectKind::Crack => self.crack,
            DefectKind::Spot => self.spot,
            DefectKind::Missing => self.missing,
        }
    }
}

/// Configuration of the simulated camera.
///
/// ```yaml
/// seed: 7
/// width: 300
/// height: 300
/// channels: 1
/// defects: { scratch: 0.03, crack: 0.02, spot: 0.03, missing: 0.02 }
/// severity: 1.0
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimulatedCameraConfig {
    /// Generator seed. Default 0.
    pub seed: u64,
    /// Image width in pixels, 16..=8192. Default 300.
    pub width: u32,
    /// Image height in pixels, 16..=8192. Default 300.
    pub height: u32,
    /// 1 (grey, `mono8`) or 3 (RGB, `rgb8`, a slightly blue steel tint). Default 1.
    pub channels: u32,
    /// Per-frame defect probabilities. Default: 10 % defective in total.
    pub defects: DefectProbabilities,
    /// Defect size and contrast factor, in (0, 3]. 1 is clearly visible to a person; 0.3 is
    /// subtle. Default 1.
    pub severity: f32,
}

impl Default for SimulatedCameraConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            width: 300,
            height: 300,
            channels: 1,
            defects: DefectProbabilities::default(),
            severity: 1.0,
        }
    }
}

impl SimulatedCameraConfig {
    /// Checks every field and reports all problems at once.
    ///
    /// # Errors
    /// [`ConfigError`] with one line per bad field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Problems::new("simulated camera");
        for (name, value) in [("width", self.width), ("height", self.height)] {
            problems.check((16..=8192).contains(&value), || {
                format!("{name}: found {value}, expected 16..=8192 pixels")
            });
        }
        problems.check(matches!(self.channels, 1 | 3), || {
            format!(
                "channels: found {}, expected 1 (mono8) or 3 (rgb8)",
                self.channels
            )
        });
        let mut sum = 0.0;
        for kind in DefectKind::ALL {
            let p = self.defects.of(kind);
            problems.check((0.0..=1.0).contains(&p), || {
                format!("defects.{kind}: found {p}, expected a probability in 0..=1")
            });
            sum += p;
        }
        problems.check(sum <= 1.0 + 1e-9, || {
            format!("defects: probabilities sum to {sum}, expected at most 1")
        });
        problems.check(self.severity > 0.0 && self.severity <= 3.0, || {
            format!(
                "severity: found {}, expected a number in (0, 3]",
                self.severity
            )
        });
        problems.finish()
    }
}

/// A pixel rectangle `[x0, x1) x [y0, y1)`: where a defect changed the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// First column.
    pub x0: u32,
    /// First row.
    pub y0: u32,
    /// One past the last column.
    pub x1: u32,
    /// One past the last row.
    pub y1: u32,
}

impl Region {
    /// Whether pixel (`x`, `y`) lies inside.
    pub fn contains(&self, x: u32, y: u32) -> bool {
        (self.x0..self.x1).contains(&x) && (self.y0..self.y1).contains(&y)
    }
}

/// The seeded part-surface simulator, also a [`Camera`] that plays frames 0, 1, 2… forever.
#[derive(Debug, Clone)]
pub struct SimulatedCamera {
    config: SimulatedCameraConfig,
    next_seq: u64,
}

/// Seed offsets of the label and defect generators, so they never share a stream with the surface.
const LABEL_SALT: u64 = 0x5EED_1AB3_1000_0001;
const DEFECT_SALT: u64 = 0x5EED_DEFE_C700_0002;

impl SimulatedCamera {
    /// Validates the config and builds the simulator.
    ///
    /// # Errors
    /// [`ConfigError`] listing every problem of the config.
    pub fn new(config: SimulatedCameraConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            config,
            next_seq: 0,
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &SimulatedCameraConfig {
        &self.config
    }

    /// The next [`Camera::next_frame`] plays frame `seq`.
    pub fn seek(&mut self, seq: u64) {
        self.next_seq = seq;
    }

    /// Frame `seq`: the label is drawn from `defects`, the surface and defect from the seed.
    pub fn frame(&self, seq: u64) -> RawFrame {
        self.frame_as(seq, self.draw_label(seq))
    }

    /// The label frame `seq` gets from the configured probabilities.
    pub fn draw_label(&self, seq: u64) -> Option<DefectKind> {
        let u: f64 = stream(self.config.seed ^ LABEL_SALT, seq).random();
        let mut edge = 0.0;
        DefectKind::ALL.into_iter().find(|&kind| {
            edge += self.config.defects.of(kind);
            u < edge
        })
    }

    /// Frame `seq` with the given defect (or none) at the configured severity.
    pub fn frame_as(&self, seq: u64, defect: Option<DefectKind>) -> RawFrame {
        self.render(seq, defect, self.config.severity).0
    }

    /// Frame `seq` with the given defect at `severity` (clamped to (0, 3]), and the region the
    /// defect changed (`None` for a good part).
    pub fn render(
        &self,
        seq: u64,
        defect: Option<DefectKind>,
        severity: f32,
    ) -> (RawFrame, Option<Region>) {
        let (w, h) = (self.config.width as usize, self.config.height as usize);
        let mut lum = surface(&mut stream(self.config.seed, seq), w, h);
        let region = defect.and_then(|kind| {
            let severity = if severity.is_finite() {
                severity.clamp(0.05, 3.0)
            } else {
                1.0
            };
            let mut rng = stream(self.config.seed ^ DEFECT_SALT, seq);
            draw_defect(&mut lum, w, h, kind, severity, &mut rng)
        });
        let mut tint_rng = stream(self.config.seed, seq);
        tint_rng.set_word_pos(1 << 40); // far past what the surface consumed
        let data = quantise(&lum, self.config.channels, &mut tint_rng);
        let frame = RawFrame {
            seq,
            width: self.config.width,
            height: self.config.height,
            channels: self.config.channels,
            data,
            source: format!("simulated:{}", self.config.seed),
            label: Some(defect.map_or(PartLabel::Good, |kind| PartLabel::Defect(Some(kind)))),
        };
        (frame, region)
    }
}

impl Camera for SimulatedCamera {
    fn next_frame(&mut self) -> Option<Result<RawFrame, VisionError>> {
        let frame = self.frame(self.next_seq);
        self.next_seq += 1;
        Some(Ok(frame))
    }

    fn describe(&self) -> String {
        format!(
            "simulated camera seed {}, {}x{}x{}, next frame {}",
            self.config.seed,
            self.config.width,
            self.config.height,
            self.config.channels,
            self.next_seq
        )
    }
}

/// ChaCha8 seeded with `seed`, on stream `seq`.
fn stream(seed: u64, seq: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(seq);
    rng
}

fn uniform(rng: &mut ChaCha8Rng, lo: f32, hi: f32) -> f32 {
    lo + (hi - lo) * rng.random::<f32>()
}

/// Value noise: a random lattice every `cell` pixels, smoothstep-interpolated.
struct ValueNoise {
    cell: f32,
    cols: usize,
    lattice: Vec<f32>,
}

impl ValueNoise {
    fn new(rng: &mut ChaCha8Rng, w: usize, h: usize, cell: usize) -> Self {
        let cols = w / cell + 2;
        let rows = h / cell + 2;
        let lattice = (0..cols * rows)
            .map(|_| rng.random::<f32>() * 2.0 - 1.0)
            .collect();
        Self {
            cell: cell as f32,
            cols,
            lattice,
        }
    }

    fn at(&self, x: usize, y: usize) -> f32 {
        let fx = x as f32 / self.cell;
        let fy = y as f32 / self.cell;
        let (ix, iy) = (fx as usize, fy as usize);
        let smooth = |t: f32| t * t * (3.0 - 2.0 * t);
        let (tx, ty) = (smooth(fx - ix as f32), smooth(fy - iy as f32));
        let v = |cx: usize, cy: usize| self.lattice[cy * self.cols + cx];
        let top = v(ix, iy) + (v(ix + 1, iy) - v(ix, iy)) * tx;
        let bottom = v(ix, iy + 1) + (v(ix + 1, iy + 1) - v(ix, iy + 1)) * tx;
        top + (bottom - top) * ty
    }
}

/// The good part's luminance, 0..255 as f32, row-major.
fn surface(rng: &mut ChaCha8Rng, w: usize, h: usize) -> Vec<f32> {
    let base = uniform(rng, 110.0, 150.0);
    let light_angle = uniform(rng, 0.0, TAU);
    let light_gain = uniform(rng, 10.0, 30.0);
    let vignette = uniform(rng, 5.0, 15.0);
    let turning = rng.random_bool(0.5);
    let mark_period = uniform(rng, 3.0, 6.0);
    let mark_amp = uniform(rng, 3.0, 8.0);
    let mark_phase = uniform(rng, 0.0, TAU);
    let mark_angle = uniform(rng, 0.0, TAU);
    // Turning marks circle a centre that may lie off the part (large radius: gentle arcs).
    let (mcx, mcy) = (
        uniform(rng, -0.5, 1.5) * w as f32,
        uniform(rng, -0.5, 1.5) * h as f32,
    );
    let coarse = ValueNoise::new(rng, w, h, 16);
    let fine = ValueNoise::new(rng, w, h, 4);
    let (cx, cy) = (w as f32 / 2.0, h as f32 / 2.0);
    let half = cx.max(cy);
    let (lc, ls) = (light_angle.cos(), light_angle.sin());
    let (mc, ms) = (mark_angle.cos(), mark_angle.sin());
    let mut lum = Vec::with_capacity(w * h);
    for y in 0..h {
        for x in 0..w {
            let (px, py) = (x as f32, y as f32);
            let (dx, dy) = ((px - cx) / half, (py - cy) / half);
            let light = light_gain * (dx * lc + dy * ls) - vignette * (dx * dx + dy * dy);
            let d = if turning {
                (px - mcx).hypot(py - mcy)
            } else {
                px * mc + py * ms
            };
            let marks = mark_amp * (TAU * d / mark_period + mark_phase).sin();
            let texture = 8.0 * coarse.at(x, y) + 4.0 * fine.at(x, y);
            let noise = 6.0 * (rng.random::<f32>() - 0.5);
            lum.push(base + light + marks + texture + noise);
        }
    }
    lum
}

/// Draws `kind` into `lum` and returns the region it changed.
fn draw_defect(
    lum: &mut [f32],
    w: usize,
    h: usize,
    kind: DefectKind,
    severity: f32,
    rng: &mut ChaCha8Rng,
) -> Option<Region> {
    let mut mask = vec![0.0f32; w * h];
    let side = w.min(h) as f32;
    let (wf, hf) = (w as f32, h as f32);
    match kind {
        DefectKind::Scratch => {
            let (x, y) = (uniform(rng, 0.1, 0.9) * wf, uniform(rng, 0.1, 0.9) * hf);
            let angle = uniform(rng, 0.0, TAU);
            let length = (uniform(rng, 0.2, 0.5) * side * severity).max(6.0);
            let half_width = uniform(rng, 0.6, 1.2);
            let end = (x + angle.cos() * length, y + angle.sin() * length);
            stroke_segment(&mut mask, w, h, (x, y), end, half_width);
            let contrast = uniform(rng, 40.0, 70.0) * severity;
            let delta = if rng.random_bool(0.6) {
                contrast
            } else {
                -contrast
            };
            apply_delta(lum, &mask, delta);
        }
        DefectKind::Crack => {
            let start = (uniform(rng, 0.2, 0.8) * wf, uniform(rng, 0.2, 0.8) * hf);
            let heading = uniform(rng, 0.0, TAU);
            let steps = (uniform(rng, 8.0, 14.0) * severity.sqrt()).round().max(3.0) as usize;
            let trunk = random_walk(rng, start, heading, steps, 7.0);
            for pair in trunk.windows(2) {
                stroke_segment(&mut mask, w, h, pair[0], pair[1], 0.9);
            }
            let branches = rng.random_range(1..=3);
            for _ in 0..branches {
                let at = trunk[rng.random_range(1..trunk.len())];
                let turn = uniform(rng, 0.5, 1.1) * if rng.random_bool(0.5) { 1.0 } else { -1.0 };
                let branch = random_walk(rng, at, heading + turn, steps / 2 + 1, 5.0);
                for pair in branch.windows(2) {
                    stroke_segment(&mut mask, w, h, pair[0], pair[1], 0.7);
                }
            }
            apply_delta(lum, &mask, -uniform(rng, 60.0, 90.0) * severity);
        }
        DefectKind::Spot => {
            // A cluster: blobs within ~12 % of the side around one centre (spatter, pitting).
            let cluster = (uniform(rng, 0.15, 0.85) * wf, uniform(rng, 0.15, 0.85) * hf);
            let blobs = rng.random_range(1..=3);
            for _ in 0..blobs {
                let centre = (
                    cluster.0 + uniform(rng, -0.12, 0.12) * side,
                    cluster.1 + uniform(rng, -0.12, 0.12) * side,
                );
                let radii = (
                    uniform(rng, 3.0, 10.0) * severity,
                    uniform(rng, 3.0, 10.0) * severity,
                );
                fill_ellipse(&mut mask, w, h, centre, radii, uniform(rng, 0.0, TAU), 1.5);
            }
            let contrast = uniform(rng, 50.0, 90.0) * severity;
            let delta = if rng.random_bool(0.7) {
                -contrast
            } else {
                contrast
            };
            apply_delta(lum, &mask, delta);
        }
        DefectKind::Missing => {
            // A notch: a disc centred near (often beyond) the border, cut to the background.
            let radius = (uniform(rng, 0.08, 0.18) * side * severity.sqrt()).max(4.0);
            let along = rng.random::<f32>();
            let depth = uniform(rng, -0.3, 0.5) * radius;
            let centre = match rng.random_range(0..4) {
                0 => (along * wf, depth),
                1 => (along * wf, hf - depth),
                2 => (depth, along * hf),
                _ => (wf - depth, along * hf),
            };
            fill_ellipse(&mut mask, w, h, centre, (radius, radius), 0.0, 50.0);
            let background = uniform(rng, 8.0, 25.0);
            for (value, &weight) in lum.iter_mut().zip(&mask) {
                *value += (background - *value) * weight;
            }
        }
    }
    region_of(&mask, w)
}

/// A polyline of `steps` segments of ~`step` px whose heading wanders.
fn random_walk(
    rng: &mut ChaCha8Rng,
    start: (f32, f32),
    mut heading: f32,
    steps: usize,
    step: f32,
) -> Vec<(f32, f32)> {
    let mut points = vec![start];
    let mut at = start;
    for _ in 0..steps {
        heading += uniform(rng, -0.45, 0.45);
        let length = uniform(rng, 0.6, 1.3) * step;
        at = (at.0 + heading.cos() * length, at.1 + heading.sin() * length);
        points.push(at);
    }
    points
}

/// Max-blends an anti-aliased line of half-width `half_width` into `mask`.
fn stroke_segment(
    mask: &mut [f32],
    w: usize,
    h: usize,
    a: (f32, f32),
    b: (f32, f32),
    half_width: f32,
) {
    let reach = half_width + 1.0;
    let (x_lo, x_hi) = span(a.0.min(b.0) - reach, a.0.max(b.0) + reach, w);
    let (y_lo, y_hi) = span(a.1.min(b.1) - reach, a.1.max(b.1) + reach, h);
    let (vx, vy) = (b.0 - a.0, b.1 - a.1);
    let len2 = (vx * vx + vy * vy).max(1e-6);
    for y in y_lo..y_hi {
        for x in x_lo..x_hi {
            let (px, py) = (x as f32 - a.0, y as f32 - a.1);
            let t = ((px * vx + py * vy) / len2).clamp(0.0, 1.0);
            let d = (px - t * vx).hypot(py - t * vy);
            let weight = (half_width + 0.5 - d).clamp(0.0, 1.0);
            let cell = &mut mask[y * w + x];
            *cell = cell.max(weight);
        }
    }
}

/// Max-blends a filled rotated ellipse into `mask`; `sharpness` sets how fast the edge falls.
fn fill_ellipse(
    mask: &mut [f32],
    w: usize,
    h: usize,
    centre: (f32, f32),
    radii: (f32, f32),
    angle: f32,
    sharpness: f32,
) {
    let reach = radii.0.max(radii.1) + 1.0;
    let (x_lo, x_hi) = span(centre.0 - reach, centre.0 + reach, w);
    let (y_lo, y_hi) = span(centre.1 - reach, centre.1 + reach, h);
    let (c, s) = (angle.cos(), angle.sin());
    for y in y_lo..y_hi {
        for x in x_lo..x_hi {
            let (dx, dy) = (x as f32 - centre.0, y as f32 - centre.1);
            let (u, v) = ((dx * c + dy * s) / radii.0, (-dx * s + dy * c) / radii.1);
            let weight = (sharpness * (1.0 - (u * u + v * v))).clamp(0.0, 1.0);
            let cell = &mut mask[y * w + x];
            *cell = cell.max(weight);
        }
    }
}

/// The pixel index range `[lo, hi)` covering `[from, to]`, clipped to `0..n`.
fn span(from: f32, to: f32, n: usize) -> (usize, usize) {
    let lo = from.floor().max(0.0) as usize;
    let hi = (to.ceil() + 1.0).clamp(0.0, n as f32) as usize;
    (lo.min(n), hi)
}

fn apply_delta(lum: &mut [f32], mask: &[f32], delta: f32) {
    for (value, &weight) in lum.iter_mut().zip(mask) {
        *value += delta * weight;
    }
}

/// The bounding box of the mask's non-zero pixels.
fn region_of(mask: &[f32], w: usize) -> Option<Region> {
    let mut region: Option<Region> = None;
    for (i, _) in mask.iter().enumerate().filter(|(_, m)| **m > 0.0) {
        let (x, y) = ((i % w) as u32, (i / w) as u32);
        let r = region.get_or_insert(Region {
            x0: x,
            y0: y,
            x1: x + 1,
            y1: y + 1,
        });
        r.x0 = r.x0.min(x);
        r.y0 = r.y0.min(y);
        r.x1 = r.x1.max(x + 1);
        r.y1 = r.y1.max(y + 1);
    }
    region
}

/// Luminance to 8-bit pixels; RGB gets a slightly blue steel tint drawn per frame.
fn quantise(lum: &[f32], channels: u32, rng: &mut ChaCha8Rng) -> Vec<u8> {
    let to_u8 = |v: f32| v.round().clamp(0.0, 255.0) as u8;
    if channels == 1 {
        return lum.iter().map(|&v| to_u8(v)).collect();
    }
    let tint = [
        uniform(rng, 0.94, 0.99),
        uniform(rng, 0.98, 1.01),
        uniform(rng, 1.02, 1.07),
    ];
    lum.iter()
        .flat_map(|&v| tint.map(|t| to_u8(v * t)))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is the failure report.
mod tests {
    use super::*;

    fn camera(seed: u64, channels: u32) -> SimulatedCamera {
        SimulatedCamera::new(SimulatedCameraConfig {
            seed,
            channels,
            ..SimulatedCameraConfig::default()
        })
        .unwrap()
    }

    fn mean(data: &[u8]) -> f64 {
        data.iter().map(|&v| f64::from(v)).sum::<f64>() / data.len() as f64
    }

    #[test]
    fn frames_are_a_pure_function_of_config_seed_and_seq() {
        let a = camera(7, 1);
        let mut b = camera(7, 1);
        b.seek(40);
        for seq in [40, 41, 42] {
            let played = b.next_frame().unwrap().unwrap();
            assert_eq!(played, a.frame(seq));
            assert_eq!(played.seq, seq);
        }
        assert_ne!(a.frame(1).data, a.frame(2).data);
        assert_ne!(a.frame(1).data, camera(8, 1).frame(1).data);
        let rgb = camera(7, 3).frame(5);
        assert_eq!(rgb.data.len(), 300 * 300 * 3);
        assert_eq!(rgb, camera(7, 3).frame(5));
    }

    #[test]
    fn good_parts_look_like_textured_metal() {
        let cam = camera(3, 1);
        for seq in 0..5 {
            let frame = cam.frame_as(seq, None);
            let m = mean(&frame.data);
            assert!((80.0..180.0).contains(&m), "mean grey {m}");
            let var = frame
                .data
                .iter()
                .map(|&v| (f64::from(v) - m).powi(2))
                .sum::<f64>()
                / frame.data.len() as f64;
            // Texture and marks, but no saturation.
            assert!((10.0..900.0).contains(&var), "variance {var}");
            let clipped = frame.data.iter().filter(|&&v| v == 0 || v == 255).count();
            assert_eq!(clipped, 0);
        }
        // RGB: blue above red (steel tint).
        let rgb = camera(3, 3).frame_as(0, None).data;
        let (r, b): (f64, f64) = rgb.chunks_exact(3).fold((0.0, 0.0), |(r, b), p| {
            (r + f64::from(p[0]), b + f64::from(p[2]))
        });
        assert!(b > r * 1.03, "r {r} b {b}");
    }

    #[test]
    fn each_defect_changes_the_image_where_it_was_drawn_and_only_there() {
        let cam = camera(11, 1);
        let (w, h) = (300u32, 300u32);
        for kind in DefectKind::ALL {
            for seq in 0..8 {
                let (good, none) = cam.render(seq, None, 1.0);
                assert!(none.is_none());
                let (bad, region) = cam.render(seq, Some(kind), 1.0);
                assert_eq!(bad.label, Some(PartLabel::Defect(Some(kind))));
                let region = region.unwrap();
                assert!(region.x1 <= w && region.y1 <= h && region.x0 < region.x1);
                let (mut inside_max, mut inside_strong) = (0u8, 0usize);
                for y in 0..h {
                    for x in 0..w {
                        let i = (y * w + x) as usize;
                        let diff = good.data[i].abs_diff(bad.data[i]);
                        if region.contains(x, y) {
                            inside_max = inside_max.max(diff);
                            inside_strong += usize::from(diff >= 20);
                        } else {
                            assert_eq!(
                                diff, 0,
                                "{kind} seq {seq} changed ({x},{y}) outside {region:?}"
                            );
                        }
                    }
                }
                assert!(
                    inside_max >= 30,
                    "{kind} seq {seq}: max change {inside_max}"
                );
                assert!(
                    inside_strong >= 10,
                    "{kind} seq {seq}: {inside_strong} px changed by >= 20 in {region:?}"
                );
            }
        }
    }

    #[test]
    fn missing_region_is_dark_and_scratch_is_thin() {
        let cam = camera(5, 1);
        for seq in 0..6 {
            let (frame, region) = cam.render(seq, Some(DefectKind::Missing), 1.0);
            let region = region.unwrap();
            let w = 300;
            let dark = (region.y0..region.y1)
                .flat_map(|y| (region.x0..region.x1).map(move |x| (x, y)))
                .filter(|&(x, y)| frame.data[(y * w + x) as usize] < 40)
                .count();
            assert!(
                dark >= 30,
                "seq {seq}: only {dark} dark pixels in {region:?}"
            );
            let (good, _) = cam.render(seq, None, 1.0);
            let (scratched, _) = cam.render(seq, Some(DefectKind::Scratch), 1.0);
            let changed = good
                .data
                .iter()
                .zip(&scratched.data)
                .filter(|(a, b)| a.abs_diff(**b) > 10)
                .count();
            // A line 1-3 px wide and at most 0.5 * 300 * severity long.
            assert!((10..=150 * 4).contains(&changed), "seq {seq}: {changed} px");
        }
    }

    #[test]
    fn higher_severity_changes_more() {
        let cam = camera(2, 1);
        let change = |severity: f32| -> u64 {
            let (good, _) = cam.render(9, None, 1.0);
            let (bad, _) = cam.render(9, Some(DefectKind::Spot), severity);
            good.data
                .iter()
                .zip(&bad.data)
                .map(|(a, b)| u64::from(a.abs_diff(*b)))
                .sum()
        };
        assert!(change(2.0) > change(1.0) && change(1.0) > change(0.3));
    }

    #[test]
    fn label_draw_follows_the_probabilities() {
        let mut config = SimulatedCameraConfig {
            width: 16,
            height: 16,
            ..SimulatedCameraConfig::default()
        };
        config.defects = DefectProbabilities {
            scratch: 0.1,
            crack: 0.0,
            spot: 0.2,
            missing: 0.0,
        };
        let cam = SimulatedCamera::new(config).unwrap();
        let labels: Vec<_> = (0..4000).map(|seq| cam.draw_label(seq)).collect();
        let count = |k| labels.iter().filter(|l| **l == k).count();
        assert_eq!(
            count(Some(DefectKind::Crack)) + count(Some(DefectKind::Missing)),
            0
        );
        let scratch = count(Some(DefectKind::Scratch));
        let spot = count(Some(DefectKind::Spot));
        assert!((330..470).contains(&scratch), "{scratch}");
        assert!((700..900).contains(&spot), "{spot}");
        assert!(cam.frame(0).label.is_some());
    }

    #[test]
    fn config_reports_every_problem() {
        let config = SimulatedCameraConfig {
            width: 8,
            channels: 4,
            defects: DefectProbabilities {
                scratch: 0.7,
                crack: 0.5,
                spot: -0.1,
                missing: 0.0,
            },
            severity: f32::NAN,
            ..SimulatedCameraConfig::default()
        };
        let err = SimulatedCamera::new(config).unwrap_err();
        assert_eq!(err.problems.len(), 5, "{err}");
        let msg = err.to_string();
        for needle in [
            "width: found 8",
            "channels: found 4",
            "defects.spot",
            "sum to",
            "severity",
        ] {
            assert!(msg.contains(needle), "{needle} in {msg}");
        }
        let yaml = "seed: 3\ndefects: { scratch: 0.5 }\n";
        let parsed: SimulatedCameraConfig = serde_yaml::from_str(yaml).unwrap();
        assert_eq!(parsed.defects.scratch, 0.5);
        assert_eq!(parsed.defects.crack, 0.02);
        assert_eq!(parsed.width, 300);
        assert!(serde_yaml::from_str::<SimulatedCameraConfig>("defects: { dent: 0.1 }").is_err());
    }
}
