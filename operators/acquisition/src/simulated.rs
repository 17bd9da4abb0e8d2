//! A seeded physical model of the stamping press's accelerometer signal, with injectable process
//! and sensor faults.
//!
//! One stroke (defaults: 10 kHz, 2,000 samples = 200 ms):
//! - the ram hits the part at ~20 ms (jitter +/-2 ms): a short broadband half-sine pulse
//!   (0.5 ms) excites four decaying structural resonances between 200 and 400 Hz
//!   (240, 285, 330, 372 Hz; per-stroke jitter: frequency +/-2 %, damping +/-10 %, amplitude
//!   +/-10 %); the peak is 3-5 g;
//! - a small machine hum (25 Hz drive plus its 50 Hz harmonic) and white sensor noise;
//! - the sensor clips at +/- `full_scale_g`.
//!
//! Stroke `seq` is a pure function of (config, `seed`, `seq`): its random numbers come from a
//! ChaCha8 generator seeded with `seed` on stream `seq`, so a restarted node reproduces stroke N
//! exactly and strokes can be made in any order or in parallel. Fault-specific draws come from a
//! second generator, so stroke N's healthy part (impact, modes, hum, noise) is the same whatever
//! fault is injected into it: the difference between a faulty and a normal stroke N is the fault.

use std::collections::BTreeMap;
use std::f64::consts::TAU;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, Problems};
use crate::{AcquisitionError, FaultKind, SensorFaultKind, Stroke, StrokeLabel, VibrationSource};

/// Nominal structural modes excited by the impact: (frequency Hz, amplitude g, damping ratio).
/// Light damping (1.3-1.8 %) keeps the energy in the 200-400 Hz band: a resonance's skirts do not
/// depend on damping, its peak grows as damping falls.
const MODES: [(f64, f64, f64); 4] = [
    (240.0, 1.2, 0.016),
    (285.0, 1.8, 0.013),
    (330.0, 1.4, 0.015),
    (372.0, 0.9, 0.018),
];
/// Nominal impact time after the stroke window opens, s.
const IMPACT_S: f64 = 0.020;
/// Impact time jitter, +/- s.
const IMPACT_JITTER_S: f64 = 0.002;
/// Width of the broadband impact pulse, s.
const PULSE_WIDTH_S: f64 = 0.0005;
/// Peak of the impact pulse for a nominal hit, g.
const PULSE_G: f64 = 1.5;
/// Drive hum fundamental, Hz (1,500 rpm motor).
const HUM_HZ: f64 = 25.0;
/// Highest severity accepted: beyond 3x nominal the fault models leave their physical range.
const MAX_SEVERITY: f32 = 3.0;
/// Lowest sample rate that keeps the bearing resonance (up to 3.5 kHz) below Nyquist.
const MIN_SAMPLE_RATE_HZ: f32 = 8_000.0;
/// Shortest stroke window that holds the impact, a double hit up to 60 ms later and the ring-down.
const MIN_STROKE_S: f32 = 0.1;
/// Lowest full scale: a nominal stroke peaks at ~5 g and must not clip.
const MIN_FULL_SCALE_G: f32 = 8.0;

/// Probability per stroke of each process fault. All default to 0 (a healthy press).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultRates {
    /// Worn die: resonances 6 % lower and 40 % less damped at severity 1. Default 0.
    pub die_wear: f64,
    /// Second impact 20-60 ms after the first, 60-90 % as strong at severity 1, with a sharper
    /// broadband contact pulse. Default 0.
    pub double_hit: f64,
    /// New 550-750 Hz mode (0.6 g at severity 1) modulated at 20-40 Hz (sidebands). Default 0.
    pub cracked_tooling: f64,
    /// Impulses at a BPFO of 80-120 Hz (0.3 g at severity 1) ringing a 2.5-3.5 kHz resonance.
    /// Default 0.
    pub bearing_outer_race: f64,
    /// No part: impact at 30 % strength and a mode mix shifted to the upper modes. Default 0.
    pub misfeed: f64,
}

/// Probability per stroke of each sensor fault. All default to 0 (a healthy sensor).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SensorFaultRates {
    /// A shock beyond full scale at the impact: samples sit at +/- `full_scale_g`. Default 0.
    pub clipping: f64,
    /// A run of exact zeros, 10 % of the stroke at severity 1. Default 0.
    pub dropout: f64,
    /// NaN samples, 1 + 3 x severity of them (rounded); from 3 on, the third is +Inf. Default 0.
    pub nan: f64,
    /// The reading freezes at one value from somewhere in the first quarter to the end. Default 0.
    pub stuck: f64,
    /// The DC level jumps by 1 g (severity 1) between 30 % and 70 % of the stroke. Default 0.
    pub offset_jump: f64,
}

/// A fault forced on one stroke, whatever the probabilities say.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduledFault {
    /// The stroke number.
    pub seq: u64,
    /// The label to inject (`normal` forces a healthy stroke).
    pub fault: StrokeLabel,
    /// Severity for this stroke; default: the config's `fault_severity`.
    #[serde(default)]
    pub severity: Option<f32>,
}

/// Configuration of the simulated press. Every field has a default; unknown keys are refused.
///
/// ```yaml
/// seed: 42
/// sample_rate_hz: 10000
/// samples_per_stroke: 2000
/// full_scale_g: 50
/// noise_g: 0.02
/// hum_g: 0.03
/// faults: { die_wear: 0.01, double_hit: 0.005 }
/// sensor_faults: { dropout: 0.002 }
/// fault_severity: 1.0
/// schedule:
///   - { seq: 100, fault: cracked_tooling, severity: 0.5 }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PressSimConfig {
    /// Seed of the whole simulated line. Default 42.
    pub seed: u64,
    /// Sample rate in Hz, at least 8,000. Default 10,000.
    pub sample_rate_hz: f32,
    /// Samples per stroke window, at least 100 ms worth. Default 2,000 (200 ms).
    pub samples_per_stroke: usize,
    /// Sensor full scale, +/- g; the signal is clamped there. At least 8. Default 50.
    pub full_scale_g: f32,
    /// RMS of the white sensor noise floor, g. Default 0.02.
    pub noise_g: f32,
    /// Amplitude of the 25 Hz drive hum, g (its 50 Hz harmonic is 40 % of it). Default 0.03.
    pub hum_g: f32,
    /// Probability per stroke of each process fault. Default: all 0.
    pub faults: FaultRates,
    /// Probability per stroke of each sensor fault. Default: all 0.
    pub sensor_faults: SensorFaultRates,
    /// How strong injected faults are: 1.0 is the nominal, detectable-but-not-huge fault
    /// described on each rate; accepted range (0, 3]. Default 1.0.
    pub fault_severity: f32,
    /// Faults forced on given strokes (overrides the probabilities). Default: none.
    pub schedule: Vec<ScheduledFault>,
}

impl Default for PressSimConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            sample_rate_hz: 10_000.0,
            samples_per_stroke: 2_000,
            full_scale_g: 50.0,
            noise_g: 0.02,
            hum_g: 0.03,
            faults: FaultRates::default(),
            sensor_faults: SensorFaultRates::default(),
            fault_severity: 1.0,
            schedule: Vec::new(),
        }
    }
}

impl FaultRates {
    fn by_label(&self) -> [(StrokeLabel, f64); 5] {
        [
            (StrokeLabel::Fault(FaultKind::DieWear), self.die_wear),
            (StrokeLabel::Fault(FaultKind::DoubleHit), self.double_hit),
            (
                StrokeLabel::Fault(FaultKind::CrackedTooling),
                self.cracked_tooling,
            ),
            (
                StrokeLabel::Fault(FaultKind::BearingOuterRace),
                self.bearing_outer_race,
            ),
            (StrokeLabel::Fault(FaultKind::Misfeed), self.misfeed),
        ]
    }
}

impl SensorFaultRates {
    fn by_label(&self) -> [(StrokeLabel, f64); 5] {
        [
            (
                StrokeLabel::Sensor(SensorFaultKind::Clipping),
                self.clipping,
            ),
            (StrokeLabel::Sensor(SensorFaultKind::Dropout), self.dropout),
            (StrokeLabel::Sensor(SensorFaultKind::Nan), self.nan),
            (StrokeLabel::Sensor(SensorFaultKind::Stuck), self.stuck),
            (
                StrokeLabel::Sensor(SensorFaultKind::OffsetJump),
                self.offset_jump,
            ),
        ]
    }
}

fn severity_ok(s: f32) -> bool {
    s > 0.0 && s <= MAX_SEVERITY
}

impl PressSimConfig {
    /// Checks every field and reports all problems at once.
    ///
    /// # Errors
    /// [`ConfigError`] with one line per bad field (field, value found, what is expected).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut p = Problems::new("simulated source");
        let rate = self.sample_rate_hz;
        p.check(rate.is_finite() && (MIN_SAMPLE_RATE_HZ..=1.0e6).contains(&rate), || {
            format!("sample_rate_hz: found {rate}, expected 8000..=1000000 Hz (the bearing resonance reaches 3.5 kHz)")
        });
        if rate.is_finite() && rate > 0.0 {
            #[allow(clippy::cast_precision_loss)] // a stroke length far below 2^24
            let seconds = self.samples_per_stroke as f32 / rate;
            p.check(seconds >= MIN_STROKE_S && self.samples_per_stroke <= 10_000_000, || {
                format!(
                    "samples_per_stroke: found {} ({seconds} s at {rate} Hz), expected at least 0.1 s worth (impact, double hit and ring-down) and at most 10000000",
                    self.samples_per_stroke
                )
            });
        }
        let fs = self.full_scale_g;
        p.check(fs.is_finite() && fs >= MIN_FULL_SCALE_G, || {
            format!("full_scale_g: found {fs}, expected a finite value >= 8 g (a normal stroke peaks at ~5 g)")
        });
        for (name, value) in [("noise_g", self.noise_g), ("hum_g", self.hum_g)] {
            p.check(value.is_finite() && value >= 0.0, || {
                format!("{name}: found {value}, expected a finite value >= 0 g")
            });
        }
        let rates = self
            .faults
            .by_label()
            .into_iter()
            .map(|(l, r)| ("faults", l, r));
        let sensor = self
            .sensor_faults
            .by_label()
            .into_iter()
            .map(|(l, r)| ("sensor_faults", l, r));
        let mut total = 0.0;
        for (group, label, rate) in rates.chain(sensor) {
            if (0.0..=1.0).contains(&rate) {
                total += rate;
            } else {
                p.push(format!(
                    "{group}.{label}: found {rate}, expected a probability in 0..=1"
                ));
            }
        }
        p.check(total <= 1.0 + 1e-9, || {
            format!("faults + sensor_faults: probabilities sum to {total}, expected at most 1 (one label per stroke)")
        });
        let s = self.fault_severity;
        p.check(severity_ok(s), || {
            format!("fault_severity: found {s}, expected 0 < severity <= 3 (1 = nominal)")
        });
        let mut seen = BTreeMap::new();
        for (i, entry) in self.schedule.iter().enumerate() {
            if let Some(first) = seen.insert(entry.seq, i) {
                p.push(format!(
                    "schedule[{i}].seq: stroke {} is already scheduled by schedule[{first}], expected one entry per stroke",
                    entry.seq
                ));
            }
            if let Some(s) = entry.severity {
                p.check(severity_ok(s), || {
                    format!("schedule[{i}].severity: found {s}, expected 0 < severity <= 3")
                });
            }
        }
        p.finish()
    }
}

/// The seeded press simulator. Also a [`VibrationSource`] that yields strokes 0, 1, 2… forever.
#[derive(Debug, Clone)]
pub struct PressSimulator {
    config: PressSimConfig,
    schedule: BTreeMap<u64, (StrokeLabel, f32)>,
    source: String,
    next_seq: u64,
}

impl PressSimulator {
    /// Validates `config` and builds the simulator.
    ///
    /// # Errors
    /// [`ConfigError`] listing every bad field.
    pub fn new(config: PressSimConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let schedule = config
            .schedule
            .iter()
            .map(|e| {
                (
                    e.seq,
                    (e.fault, e.severity.unwrap_or(config.fault_severity)),
                )
            })
            .collect();
        let source = format!("simulated:{}", config.seed);
        Ok(Self {
            config,
            schedule,
            source,
            next_seq: 0,
        })
    }

    /// The validated configuration.
    pub fn config(&self) -> &PressSimConfig {
        &self.config
    }

    /// Continues the [`VibrationSource`] iteration at stroke `seq` (e.g. after a restart).
    pub fn seek(&mut self, seq: u64) {
        self.next_seq = seq;
    }

    /// Stroke `seq`: its label comes from the schedule, else from the fault probabilities.
    /// A pure function of (config, seed, `seq`).
    pub fn stroke(&self, seq: u64) -> Stroke {
        let mut rng = self.rng(seq);
        // Always draw, so the rest of the stroke's random stream does not depend on the schedule.
        let u: f64 = rng.random();
        let (label, severity) = self
            .schedule
            .get(&seq)
            .copied()
            .unwrap_or_else(|| (self.draw_label(u), self.config.fault_severity));
        self.make(seq, rng, label, severity)
    }

    /// Stroke `seq` forced to `label` at the configured severity (for datasets and tests). The
    /// healthy part of the signal is the same as [`Self::stroke`]'s for that `seq`.
    pub fn stroke_as(&self, seq: u64, label: StrokeLabel) -> Stroke {
        self.stroke_with(seq, label, self.config.fault_severity)
    }

    /// Stroke `seq` forced to `label` at `severity` (clamped to (0, 3]).
    pub fn stroke_with(&self, seq: u64, label: StrokeLabel, severity: f32) -> Stroke {
        let mut rng = self.rng(seq);
        let _: f64 = rng.random();
        self.make(
            seq,
            rng,
            label,
            severity.clamp(f32::MIN_POSITIVE, MAX_SEVERITY),
        )
    }

    fn rng(&self, seq: u64) -> ChaCha8Rng {
        stream(self.config.seed, seq)
    }

    fn draw_label(&self, u: f64) -> StrokeLabel {
        let mut acc = 0.0;
        for (label, p) in self
            .config
            .faults
            .by_label()
            .into_iter()
            .chain(self.config.sensor_faults.by_label())
        {
            acc += p;
            if u < acc {
                return label;
            }
        }
        StrokeLabel::Normal
    }

    fn make(&self, seq: u64, mut rng: ChaCha8Rng, label: StrokeLabel, severity: f32) -> Stroke {
        let mut fault_rng = stream(self.config.seed ^ FAULT_STREAM_KEY, seq);
        let samples = synthesize(
            &self.config,
            &mut rng,
            &mut fault_rng,
            label,
            f64::from(severity),
        );
        Stroke {
            seq,
            sample_rate_hz: self.config.sample_rate_hz,
            samples,
            source: self.source.clone(),
            label: Some(label),
        }
    }
}

impl VibrationSource for PressSimulator {
    fn next_stroke(&mut self) -> Option<Result<Stroke, AcquisitionError>> {
        let stroke = self.stroke(self.next_seq);
        self.next_seq += 1;
        Some(Ok(stroke))
    }

    fn describe(&self) -> String {
        format!(
            "simulated press (seed {}, {} Hz, {} samples/stroke), next stroke {}",
            self.config.seed,
            self.config.sample_rate_hz,
            self.config.samples_per_stroke,
            self.next_seq
        )
    }
}

/// Mixed into the seed of the fault generator (the 64-bit golden ratio).
const FAULT_STREAM_KEY: u64 = 0x9E37_79B9_7F4A_7C15;

/// ChaCha8 seeded with `seed`, on stream `seq`.
fn stream(seed: u64, seq: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(seq);
    rng
}

/// Uniform in `[center - half, center + half)`.
fn jitter(rng: &mut ChaCha8Rng, center: f64, half: f64) -> f64 {
    center + half * (2.0 * rng.random::<f64>() - 1.0)
}

/// Adds a damped resonance rung at `t0` s: `amp * exp(-zeta*w*(t-t0)) * sin(w*(t-t0))` for
/// t >= t0, by phasor recursion (one complex multiply per sample), stopping once below 1 µg.
fn add_ring(x: &mut [f64], fs: f64, t0: f64, freq: f64, zeta: f64, amp: f64) {
    let w = TAU * freq;
    let sigma = zeta * w;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // t0 >= 0, bounded
    let first = (t0 * fs).ceil().max(0.0) as usize;
    if first >= x.len() {
        return;
    }
    #[allow(clippy::cast_precision_loss)]
    let tau0 = first as f64 / fs - t0;
    let mag0 = amp * (-sigma * tau0).exp();
    let (mut re, mut im) = (mag0 * (w * tau0).cos(), mag0 * (w * tau0).sin());
    let decay = (-sigma / fs).exp();
    let (c, s) = ((w / fs).cos() * decay, (w / fs).sin() * decay);
    let floor = 1e-6 * amp.abs();
    for v in &mut x[first..] {
        *v += im;
        (re, im) = (re * c - im * s, re * s + im * c);
        if re.abs() < floor && im.abs() < floor {
            break;
        }
    }
}

/// Adds a half-sine pulse of `width` s and `peak` g starting at `t0` s.
fn add_pulse(x: &mut [f64], fs: f64, t0: f64, width: f64, peak: f64) {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let (first, last) = (
        (t0 * fs).ceil().max(0.0) as usize,
        ((t0 + width) * fs).floor().max(0.0) as usize,
    );
    for i in first..=last.min(x.len().saturating_sub(1)) {
        #[allow(clippy::cast_precision_loss)]
        let tau = i as f64 / fs - t0;
        x[i] += peak * (std::f64::consts::PI * tau / width).sin().max(0.0);
    }
}

/// One impact at `t0` of relative `strength`, exciting `modes` (freq, amp, zeta) after the
/// per-stroke jitter has been applied.
fn add_impact(x: &mut [f64], fs: f64, t0: f64, strength: f64, modes: &[(f64, f64, f64)]) {
    add_pulse(x, fs, t0, PULSE_WIDTH_S, PULSE_G * strength);
    for &(freq, amp, zeta) in modes {
        add_ring(x, fs, t0, freq, zeta, amp * strength);
    }
}

#[allow(clippy::too_many_lines)] // one physical model, read top to bottom
fn synthesize(
    config: &PressSimConfig,
    rng: &mut ChaCha8Rng,
    fault_rng: &mut ChaCha8Rng,
    label: StrokeLabel,
    s: f64,
) -> Vec<f32> {
    let fs = f64::from(config.sample_rate_hz);
    let n = config.samples_per_stroke;
    let mut x = vec![0.0_f64; n];

    // Healthy press, drawn first and in a fixed order so every label shares it.
    let t0 = jitter(rng, IMPACT_S, IMPACT_JITTER_S);
    let mut modes = MODES.map(|(f, a, z)| {
        (
            jitter(rng, f, 0.02 * f),
            jitter(rng, a, 0.1 * a),
            jitter(rng, z, 0.1 * z),
        )
    });
    let hum_phase = [rng.random::<f64>() * TAU, rng.random::<f64>() * TAU];
    let mut strength = 1.0;

    match label {
        StrokeLabel::Fault(FaultKind::DieWear) => {
            for (f, _, z) in &mut modes {
                *f *= (1.0 - 0.06 * s).max(0.5);
                *z /= 1.0 + 0.6 * s;
            }
        }
        StrokeLabel::Fault(FaultKind::Misfeed) => {
            // No part between the dies: the ram meets far less resistance, and without the
            // part's stiffness the upper modes dominate.
            let k = s.min(1.0);
            strength = 1.0 - 0.7 * k;
            let mix = [0.3, 0.4, 1.1, 1.8];
            for ((_, a, _), m) in modes.iter_mut().zip(mix) {
                *a *= 1.0 + k * (m - 1.0);
            }
        }
        _ => {}
    }
    add_impact(&mut x, fs, t0, strength, &modes);

    match label {
        StrokeLabel::Fault(FaultKind::DoubleHit) => {
            let delay = fault_rng.random_range(0.020..0.060);
            let second = (fault_rng.random_range(0.6..0.9) * s.sqrt()).min(1.2);
            // The second contact is on an already-formed part: harder, so a sharper and
            // relatively stronger broadband pulse than the first.
            let t1 = t0 + delay;
            add_pulse(&mut x, fs, t1, 0.6 * PULSE_WIDTH_S, 1.5 * PULSE_G * second);
            for &(freq, amp, zeta) in &modes {
                add_ring(&mut x, fs, t1, freq, zeta, amp * second);
            }
        }
        StrokeLabel::Fault(FaultKind::CrackedTooling) => {
            // The crack breathes with the load: an amplitude-modulated mode, i.e. a carrier with
            // two sidebands at +/- the modulation frequency.
            let f = fault_rng.random_range(550.0..750.0);
            let fm = fault_rng.random_range(20.0..40.0);
            let (amp, depth, zeta) = (0.6 * s, 0.6, 0.010);
            add_ring(&mut x, fs, t0, f, zeta, amp);
            add_ring(&mut x, fs, t0, f + fm, zeta, amp * depth / 2.0);
            add_ring(&mut x, fs, t0, f - fm, zeta, amp * depth / 2.0);
        }
        StrokeLabel::Fault(FaultKind::BearingOuterRace) => {
            let bpfo = fault_rng.random_range(80.0..120.0);
            let f_res = fault_rng.random_range(2_500.0..3_500.0);
            let amp = 0.3 * s;
            let mut t = fault_rng.random::<f64>() / bpfo;
            #[allow(clippy::cast_precision_loss)]
            let end = n as f64 / fs;
            while t < end {
                add_ring(
                    &mut x,
                    fs,
                    t,
                    f_res,
                    0.04,
                    jitter(fault_rng, amp, 0.2 * amp),
                );
                // Rolling elements slip a little: +/-1 % period jitter.
                t += jitter(fault_rng, 1.0 / bpfo, 0.01 / bpfo);
            }
        }
        _ => {}
    }

    // Machine hum and sensor noise.
    let hum = f64::from(config.hum_g);
    let noise = f64::from(config.noise_g);
    let (w1, w2) = (TAU * HUM_HZ / fs, 2.0 * TAU * HUM_HZ / fs);
    for (i, v) in x.iter_mut().enumerate() {
        #[allow(clippy::cast_precision_loss)]
        let i = i as f64;
        let e: f64 = rng.sample(StandardNormal);
        *v +=
            hum * ((w1 * i + hum_phase[0]).sin() + 0.4 * (w2 * i + hum_phase[1]).sin()) + noise * e;
    }

    let full_scale = f64::from(config.full_scale_g);
    let mut samples: Vec<f32> = Vec::with_capacity(n);
    if let StrokeLabel::Sensor(kind) = label {
        apply_sensor_fault(&mut x, fault_rng, kind, s, fs, t0, full_scale);
    }
    #[allow(clippy::cast_possible_truncation)] // clamped to the sensor range
    samples.extend(x.iter().map(|v| v.clamp(-full_scale, full_scale) as f32));
    if label == StrokeLabel::Sensor(SensorFaultKind::Nan) && n > 0 {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let count = (1.0 + (3.0 * s).round()) as usize;
        for k in 0..count {
            let i = fault_rng.random_range(0..n);
            samples[i] = if k == 2 { f32::INFINITY } else { f32::NAN };
        }
    }
    samples
}

fn apply_sensor_fault(
    x: &mut [f64],
    rng: &mut ChaCha8Rng,
    kind: SensorFaultKind,
    s: f64,
    fs: f64,
    t0: f64,
    full_scale: f64,
) {
    let n = x.len();
    if n == 0 {
        return;
    }
    #[allow(clippy::cast_precision_loss)]
    let nf = n as f64;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let index = |v: f64| (v.max(0.0) as usize).min(n - 1);
    match kind {
        SensorFaultKind::Clipping => {
            // Metal-to-metal shock on a loose mount at the impact, beyond the sensor's range.
            add_pulse(x, fs, t0, 0.002, full_scale * (1.3 + 0.5 * s));
        }
        SensorFaultKind::Dropout => {
            let len = index((0.05 + 0.05 * s) * nf).max(1);
            let start = rng.random_range(0..=n - len);
            x[start..start + len].fill(0.0);
        }
        SensorFaultKind::Stuck => {
            let start = rng.random_range(0..=n / 4);
            let held = x[start];
            x[start..].fill(held);
        }
        SensorFaultKind::OffsetJump => {
            let start = index(rng.random_range(0.3..0.7) * nf);
            let jump = if rng.random::<bool>() { 1.0 } else { -1.0 } * (0.5 + 0.5 * s);
            for v in &mut x[start..] {
                *v += jump;
            }
        }
        SensorFaultKind::Nan => {} // applied after the sensor clamp
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is the failure report.
mod tests;
