//! Seeded synthetic strokes for this crate's tests (the plant simulator lives in
//! `forgeline-acquisition`; these are minimal, exactly-known signals).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::Normal;

/// Sample rate of the test strokes, Hz.
pub(crate) const FS: f32 = 10_000.0;
/// Samples per test stroke.
pub(crate) const N: usize = 2000;

/// `len` samples of zero-mean Gaussian noise with standard deviation `std` g.
pub(crate) fn noise(seed: u64, std: f32, len: usize) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let normal = Normal::new(0.0_f32, std).unwrap();
    (0..len).map(|_| rng.sample(normal)).collect()
}

/// A sine of `freq_hz` and amplitude `amp` g, `len` samples at `fs`.
pub(crate) fn sine(freq_hz: f32, amp: f32, fs: f32, len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| amp * (std::f32::consts::TAU * freq_hz * i as f32 / fs).sin())
        .collect()
}

/// Adds an impact at `t0_ms`: a decaying sine of `freq_hz` and time constant `tau_ms`.
pub(crate) fn add_impact(x: &mut [f32], t0_ms: f32, amp: f32, freq_hz: f32, tau_ms: f32) {
    let start = (t0_ms * FS / 1000.0) as usize;
    for (i, v) in x.iter_mut().enumerate().skip(start) {
        let t = (i - start) as f32 / FS;
        *v += amp * (-t * 1000.0 / tau_ms).exp() * (std::f32::consts::TAU * freq_hz * t).sin();
    }
}

/// Adds a half-sine pulse of `width_ms` and `peak` g at `t0_ms` (the broadband part of a hit).
pub(crate) fn add_pulse(x: &mut [f32], t0_ms: f32, width_ms: f32, peak: f32) {
    let start = (t0_ms * FS / 1000.0) as usize;
    let len = (width_ms * FS / 1000.0) as usize;
    for (k, v) in x.iter_mut().skip(start).take(len + 1).enumerate() {
        *v += peak * (std::f32::consts::PI * k as f32 / len as f32).sin();
    }
}

/// Structural modes of the test press: (Hz, g, decay time constant ms), like the simulator's.
const MODES: [(f32, f32, f32); 4] = [
    (240.0, 1.2, 22.0),
    (285.0, 1.8, 22.0),
    (330.0, 1.4, 17.0),
    (372.0, 0.9, 13.0),
];

/// Adds a hit of relative `strength` at `t0_ms`: a 0.5 ms, 1.5 g pulse ringing `modes`
/// (Hz, g, decay ms), which beat with each other.
pub(crate) fn add_hit_with(x: &mut [f32], t0_ms: f32, strength: f32, modes: &[(f32, f32, f32)]) {
    add_pulse(x, t0_ms, 0.5, 1.5 * strength);
    for &(freq, amp, tau) in modes {
        add_impact(x, t0_ms, amp * strength, freq, tau);
    }
}

/// [`add_hit_with`] the nominal modes.
pub(crate) fn add_hit(x: &mut [f32], t0_ms: f32, strength: f32) {
    add_hit_with(x, t0_ms, strength, &MODES);
}

/// A healthy stroke: sensor noise, 25 Hz hum and one hit at 40 ms with the nominal modes.
pub(crate) fn stroke(seed: u64) -> Vec<f32> {
    let mut x = noise(seed, 0.02, N);
    for (i, v) in x.iter_mut().enumerate() {
        *v += 0.03 * (std::f32::consts::TAU * 25.0 * i as f32 / FS).sin();
    }
    add_hit(&mut x, 40.0, 1.0);
    x
}

/// Process fault families of the press, as the plant simulator models them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    Normal,
    DieWear,
    DoubleHit,
    CrackedTooling,
    BearingOuterRace,
    Misfeed,
}

/// A stroke of `family` with per-stroke jitter like the simulator's (impact time +/-2 ms,
/// mode frequency +/-2 %, amplitude and decay +/-10 %).
pub(crate) fn jittered_stroke(seed: u64, family: Family) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
    let mut jitter =
        |value: f32, fraction: f32| value * (1.0 + fraction * rng.random_range(-1.0..1.0_f32));
    let t0 = jitter(40.0, 0.05);
    let mut modes = MODES.map(|(f, a, tau)| (jitter(f, 0.02), jitter(a, 0.1), jitter(tau, 0.1)));
    let mut strength = 1.0;
    match family {
        Family::DieWear => {
            for (f, _, tau) in &mut modes {
                *f *= 0.94;
                *tau *= 1.6;
            }
        }
        Family::Misfeed => {
            strength = 0.3;
            for ((_, a, _), m) in modes.iter_mut().zip([0.3, 0.4, 1.1, 1.8]) {
                *a *= m;
            }
        }
        _ => {}
    }
    let mut x = noise(seed, 0.02, N);
    for (i, v) in x.iter_mut().enumerate() {
        *v += 0.03 * (std::f32::consts::TAU * 25.0 * i as f32 / FS).sin();
    }
    add_hit_with(&mut x, t0, strength, &modes);
    match family {
        Family::DoubleHit => add_hit_with(&mut x, t0 + jitter(40.0, 0.5), 0.65, &modes),
        Family::CrackedTooling => {
            let f = jitter(650.0, 0.15);
            add_impact(&mut x, t0, 0.45, f, 20.0);
            add_impact(&mut x, t0, 0.13, f + 30.0, 20.0);
            add_impact(&mut x, t0, 0.13, f - 30.0, 20.0);
        }
        Family::BearingOuterRace => add_bearing_fault(&mut x, jitter(100.0, 0.2), 0.3),
        _ => {}
    }
    x
}

/// Adds a bearing outer-race fault: impulses every `1 / rate_hz` s, each ringing the 3 kHz
/// resonance (time constant 1.3 ms).
pub(crate) fn add_bearing_fault(x: &mut [f32], rate_hz: f32, amp: f32) {
    let period_ms = 1000.0 / rate_hz;
    let mut t0 = 1.0;
    while t0 < x.len() as f32 * 1000.0 / FS {
        let start = (t0 * FS / 1000.0) as usize;
        for (k, v) in x.iter_mut().skip(start).take(80).enumerate() {
            let t = k as f32 / FS;
            *v += amp * (-t * 1000.0 / 1.3).exp() * (std::f32::consts::TAU * 3000.0 * t).sin();
        }
        t0 += period_ms;
    }
}
