//! The `press-v1` feature extractor: spectral, envelope and impact features of one stroke.

use std::sync::Arc;

use forgeline_schemas::QualityFlags;
use realfft::num_complex::Complex;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};

use crate::config::{Band, ConfigError, FeatureConfig};
use crate::quality::check_quality;

/// Name and version of the feature set computed here (stored in the model metadata and in
/// every [`FeatureVector`](forgeline_schemas::FeatureVector)).
pub const FEATURE_SET: &str = "press-v1";

/// Floor added to mean-square energies (g²) before taking logs: 1e-12 g² (1 µg RMS).
const ENERGY_FLOOR_G2: f64 = 1e-12;
/// Floor added to amplitudes (g) before taking logs: 1 µg.
const AMPLITUDE_FLOOR_G: f64 = 1e-6;
/// Level reported for a spectral peak that does not exist, dB relative to the total.
const MISSING_PEAK_DB: f32 = -120.0;
/// Lowest level reported for the second impact and the post-impact energy, dB.
const IMPACT_FLOOR_DB: f32 = -60.0;
/// Envelope local maxima below this fraction of the main impact are not impact candidates.
const IMPACT_CANDIDATE_FRACTION: f32 = 0.001;
/// Start of the "main impact" window before the impact, ms.
const MAIN_IMPACT_LEAD_MS: f32 = 2.0;

/// Computes the `press-v1` feature vector and the data-quality flags of press strokes.
///
/// FFT plans and every buffer are created in [`FeatureExtractor::new`]; [`extract`] does not
/// allocate (the caller's output vector grows once, on the first call).
///
/// [`extract`]: FeatureExtractor::extract
pub struct FeatureExtractor {
    cfg: FeatureConfig,
    names: Vec<String>,
    fft_len: usize,
    forward: Arc<dyn RealToComplex<f32>>,
    inverse: Arc<dyn ComplexToReal<f32>>,
    forward_scratch: Vec<Complex<f32>>,
    inverse_scratch: Vec<Complex<f32>>,
    /// Hann window for `window_len` samples (the rest of the buffer is unused).
    window: Vec<f32>,
    window_len: usize,
    /// FFT input (destroyed by each transform).
    time: Vec<f32>,
    /// Spectrum of the windowed stroke, later of the windowed envelope.
    spectrum: Vec<Complex<f32>>,
    /// Spectrum of the un-windowed, de-meaned stroke (input of the Hilbert envelopes).
    raw_spectrum: Vec<Complex<f32>>,
    /// Masked spectrum handed to the inverse FFT (destroyed by each transform).
    masked: Vec<Complex<f32>>,
    in_phase: Vec<f32>,
    quadrature: Vec<f32>,
    /// Mean-square contribution of each bin, g².
    power: Vec<f64>,
    envelope: Vec<f32>,
    smoothed: Vec<f32>,
    /// Spectral peak candidates `(bin, mean square)`; capacity for every bin.
    peaks: Vec<(usize, f64)>,
}

impl std::fmt::Debug for FeatureExtractor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeatureExtractor")
            .field("feature_set", &FEATURE_SET)
            .field("fft_len", &self.fft_len)
            .field("features", &self.names.len())
            .finish_non_exhaustive()
    }
}

impl FeatureExtractor {
    /// Validates `cfg`, plans the FFTs and allocates every buffer.
    pub fn new(cfg: FeatureConfig) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let fft_len = cfg.expected_samples.next_power_of_two();
        let bins = fft_len / 2 + 1;
        let mut planner = RealFftPlanner::<f32>::new();
        let forward = planner.plan_fft_forward(fft_len);
        let inverse = planner.plan_fft_inverse(fft_len);
        let names = feature_names(&cfg);
        Ok(Self {
            forward_scratch: forward.make_scratch_vec(),
            inverse_scratch: inverse.make_scratch_vec(),
            forward,
            inverse,
            window: vec![0.0; fft_len],
            window_len: 0,
            time: vec![0.0; fft_len],
            spectrum: vec![Complex::default(); bins],
            raw_spectrum: vec![Complex::default(); bins],
            masked: vec![Complex::default(); bins],
            in_phase: vec![0.0; fft_len],
            quadrature: vec![0.0; fft_len],
            power: vec![0.0; bins],
            envelope: vec![0.0; fft_len],
            smoothed: vec![0.0; fft_len],
            peaks: Vec::with_capacity(bins),
            names,
            fft_len,
            cfg,
        })
    }

    /// The feature names, in the order of the values written by [`FeatureExtractor::extract`].
    pub fn feature_names(&self) -> &[String] {
        &self.names
    }

    /// The configuration in use.
    pub fn config(&self) -> &FeatureConfig {
        &self.cfg
    }

    /// FFT length: `expected_samples` rounded up to a power of two. Longer strokes are analysed
    /// over their first `fft_len` samples (and flagged `wrong_length`).
    pub fn fft_len(&self) -> usize {
        self.fft_len
    }

    /// Computes the features of one stroke into `out` (cleared first, one value per
    /// [`feature_names`](Self::feature_names) entry) and returns its data-quality flags.
    ///
    /// When a sample is NaN or infinite, every value is NaN. Otherwise every value is finite,
    /// whatever the other flags. `sample_rate_hz` is used for the analysis when it is a
    /// positive finite number, else `expected_sample_rate_hz`.
    pub fn extract(
        &mut self,
        samples: &[f32],
        sample_rate_hz: f32,
        out: &mut Vec<f32>,
    ) -> QualityFlags {
        let flags = check_quality(
            samples,
            sample_rate_hz,
            self.cfg.expected_samples,
            self.cfg.expected_sample_rate_hz,
            &self.cfg.quality,
        );
        out.clear();
        if flags.contains(QualityFlags::NAN) || flags.contains(QualityFlags::INF) {
            out.resize(self.names.len(), f32::NAN);
            return flags;
        }
        let fs = if sample_rate_hz.is_finite() && sample_rate_hz > 0.0 {
            sample_rate_hz
        } else {
            self.cfg.expected_sample_rate_hz
        };
        out.reserve(self.names.len());
        let n = samples.len().min(self.fft_len);
        let analysed = &samples[..n];
        let moments = Moments::of(samples);
        let mean = moments.mean as f32;

        // Spectrum of the Hann-windowed stroke.
        self.prepare_window(n);
        for (slot, (&x, &w)) in self.time.iter_mut().zip(analysed.iter().zip(&self.window)) {
            *slot = (x - mean) * w;
        }
        self.time[n..].fill(0.0);
        self.transform_forward_into_spectrum();
        let total = self.compute_power(n);
        let bin_hz = fs / self.fft_len as f32;

        self.push_band_features(bin_hz, total, out);
        self.push_peak_features(bin_hz, total, out);
        push_spread(&self.power, bin_hz, total, out);
        moments.push(out);

        // Envelopes from the un-windowed stroke.
        for (slot, &x) in self.time.iter_mut().zip(analysed) {
            *slot = x - mean;
        }
        self.time[n..].fill(0.0);
        self.transform_forward_raw();
        self.push_bearing_features(n, bin_hz, out);
        self.push_impact_features(n, fs, out);
        debug_assert_eq!(out.len(), self.names.len());
        flags
    }

    fn prepare_window(&mut self, n: usize) {
        if self.window_len == n {
            return;
        }
        let denom = n.saturating_sub(1).max(1) as f32;
        for (i, w) in self.window[..n].iter_mut().enumerate() {
            *w = 0.5 - 0.5 * (std::f32::consts::TAU * i as f32 / denom).cos();
        }
        self.window_len = n;
    }

    /// `time` -> `spectrum`.
    fn transform_forward_into_spectrum(&mut self) {
        // Buffer lengths are fixed at construction from the plan, so the transform cannot fail;
        // were it to (a bug), the zeroed spectrum yields floor-level features, never garbage.
        if self
            .forward
            .process_with_scratch(
                &mut self.time,
                &mut self.spectrum,
                &mut self.forward_scratch,
            )
            .is_err()
        {
            debug_assert!(
                false,
                "forward FFT rejected buffers sized from its own plan"
            );
            self.spectrum.fill(Complex::default());
        }
    }

    /// `time` -> `raw_spectrum`.
    fn transform_forward_raw(&mut self) {
        if self
            .forward
            .process_with_scratch(
                &mut self.time,
                &mut self.raw_spectrum,
                &mut self.forward_scratch,
            )
            .is_err()
        {
            debug_assert!(
                false,
                "forward FFT rejected buffers sized from its own plan"
            );
            self.raw_spectrum.fill(Complex::default());
        }
    }

    /// `masked` -> `target` (`in_phase` or `quadrature`), unnormalised.
    fn transform_inverse(&mut self, quadrature: bool) {
        let target = if quadrature {
            &mut self.quadrature
        } else {
            &mut self.in_phase
        };
        if self
            .inverse
            .process_with_scratch(&mut self.masked, target, &mut self.inverse_scratch)
            .is_err()
        {
            debug_assert!(
                false,
                "inverse FFT rejected its input (DC/Nyquist bins are zeroed)"
            );
            target.fill(0.0);
        }
    }

    /// Fills `power` with each bin's mean-square contribution (g²) and returns the total.
    ///
    /// With a window `w`, `sum(x² w²) / sum(w²)` estimates the mean square of `x`; by Parseval
    /// that is `sum_k c_k |X_k|² / (N sum(w²))` with `c_k = 2` except at DC and Nyquist.
    fn compute_power(&mut self, n: usize) -> f64 {
        let w2: f64 = self.window[..n]
            .iter()
            .map(|&w| f64::from(w) * f64::from(w))
            .sum();
        let scale = if w2 > 0.0 {
            1.0 / (self.fft_len as f64 * w2)
        } else {
            0.0
        };
        let last = self.power.len() - 1;
        let mut total = 0.0;
        for (k, (p, c)) in self.power.iter_mut().zip(&self.spectrum).enumerate() {
            let one_sided = if k == 0 || k == last { 1.0 } else { 2.0 };
            *p = one_sided * f64::from(c.norm_sqr()) * scale;
            total += *p;
        }
        total
    }

    fn band_energy(&self, band: Band, bin_hz: f32) -> f64 {
        let (lo, hi) = band_bins(band, bin_hz, self.power.len());
        self.power[lo..hi].iter().sum()
    }

    fn push_band_features(&self, bin_hz: f32, total: f64, out: &mut Vec<f32>) {
        for band in &self.cfg.bands {
            let energy = self.band_energy(*band, bin_hz);
            out.push(log10(energy + ENERGY_FLOOR_G2));
        }
        let nominal = self.band_energy(self.cfg.nominal_band, bin_hz);
        out.push(if total > 0.0 {
            (nominal / total) as f32
        } else {
            0.0
        });
    }

    fn push_peak_features(&mut self, bin_hz: f32, total: f64, out: &mut Vec<f32>) {
        let first = ((self.cfg.peak_min_hz / bin_hz).ceil() as usize).max(1);
        let last = self.power.len() - 1;
        self.peaks.clear();
        for k in first..last {
            let p = self.power[k];
            if p > self.power[k - 1] && p >= self.power[k + 1] && p > 0.0 {
                self.peaks.push((k, p));
            }
        }
        // The strongest candidates (partial selection sort: a handful of ranks)...
        let found = self.cfg.spectral_peaks.min(self.peaks.len());
        for rank in 0..found {
            if let Some(best) = (rank..self.peaks.len())
                .max_by(|&a, &b| self.peaks[a].1.total_cmp(&self.peaks[b].1))
            {
                self.peaks.swap(rank, best);
            }
        }
        // ...listed in frequency order.
        self.peaks[..found].sort_unstable_by_key(|&(k, _)| k);
        for rank in 0..self.cfg.spectral_peaks {
            match self.peaks.get(rank) {
                Some(&(k, p)) if rank < found && total > 0.0 => {
                    // Parabolic interpolation on the log power refines the frequency to a
                    // fraction of a bin (Hann main lobe).
                    let (a, b, c) = (
                        (self.power[k - 1] + ENERGY_FLOOR_G2).ln(),
                        (p + ENERGY_FLOOR_G2).ln(),
                        (self.power[k + 1] + ENERGY_FLOOR_G2).ln(),
                    );
                    let curvature = a - 2.0 * b + c;
                    let delta = if curvature < 0.0 {
                        (0.5 * (a - c) / curvature).clamp(-0.5, 0.5)
                    } else {
                        0.0
                    };
                    out.push((k as f64 + delta) as f32 * bin_hz);
                    // The Hann main lobe spreads a tone over three bins: their sum is the tone's
                    // level whatever its position between bins.
                    let lobe: f64 = self.power[k - 1..=k + 1].iter().sum();
                    out.push(10.0 * log10(lobe / total));
                }
                _ => {
                    out.push(0.0);
                    out.push(MISSING_PEAK_DB);
                }
            }
        }
    }

    /// Writes `|analytic signal|` of the stroke restricted to bins `lo..hi` into `envelope[..n]`.
    fn analytic_envelope(&mut self, lo: usize, hi: usize, n: usize) {
        let last = self.masked.len() - 1;
        // DC and Nyquist carry no analytic part (and the inverse FFT requires them real).
        let (lo, hi) = (lo.max(1), hi.min(last));
        for quadrature in [false, true] {
            self.masked.fill(Complex::default());
            for k in lo..hi {
                let x = self.raw_spectrum[k];
                // Hilbert transform: multiply the positive frequencies by -j.
                self.masked[k] = if quadrature {
                    Complex::new(x.im, -x.re)
                } else {
                    x
                };
            }
            self.transform_inverse(quadrature);
        }
        let norm = 1.0 / self.fft_len as f32;
        for ((e, &i), &q) in self.envelope[..n]
            .iter_mut()
            .zip(&self.in_phase)
            .zip(&self.quadrature)
        {
            // Not `hypot`: its overflow care costs more than the transforms here, and the
            // values (accelerations in g, scaled by the FFT length) are far from overflow.
            *e = (i * i + q * q).sqrt() * norm;
        }
    }

    fn push_bearing_features(&mut self, n: usize, bin_hz: f32, out: &mut Vec<f32>) {
        let (lo, hi) = band_bins(self.cfg.envelope_band, bin_hz, self.raw_spectrum.len());
        self.analytic_envelope(lo, hi, n);
        let envelope = &self.envelope[..n];
        let env_mean = if n > 0 {
            envelope.iter().map(|&e| f64::from(e)).sum::<f64>() / n as f64
        } else {
            0.0
        };
        for (slot, (&e, &w)) in self.time.iter_mut().zip(envelope.iter().zip(&self.window)) {
            *slot = (e - env_mean as f32) * w;
        }
        self.time[n..].fill(0.0);
        self.transform_forward_into_spectrum();
        let w_sum: f64 = self.window[..n].iter().map(|&w| f64::from(w)).sum();
        let amplitude_scale = if w_sum > 0.0 { 2.0 / w_sum } else { 0.0 };
        for h in 1..=self.cfg.bpfo_harmonics {
            let centre = h as f32 * self.cfg.bpfo_hz;
            let band = Band::new(
                centre - self.cfg.bpfo_tolerance_hz,
                centre + self.cfg.bpfo_tolerance_hz,
            );
            let (lo, hi) = band_bins(band, bin_hz, self.spectrum.len());
            let peak = self.spectrum[lo..hi]
                .iter()
                .map(|c| f64::from(c.norm()) * amplitude_scale)
                .fold(0.0, f64::max);
            // Modulation depth: the envelope's amplitude at the harmonic over its mean level.
            let depth = peak / (env_mean + AMPLITUDE_FLOOR_G);
            out.push(20.0 * log10(depth + AMPLITUDE_FLOOR_G));
        }
    }

    fn push_impact_features(&mut self, n: usize, fs: f32, out: &mut Vec<f32>) {
        let bin_hz = fs / self.fft_len as f32;
        let (lo, hi) = band_bins(self.cfg.impact_band, bin_hz, self.raw_spectrum.len());
        self.analytic_envelope(lo, hi, n);
        let half = (self.cfg.envelope_smoothing_ms * fs / 1000.0 / 2.0).round() as usize;
        moving_average(&self.envelope[..n], half, &mut self.smoothed[..n]);
        let peaks = ImpactPeaks::of(
            &self.smoothed[..n],
            self.cfg.impact_peak_fraction,
            ms_to_samples(self.cfg.impact_min_separation_ms, fs).max(1),
        );
        // Ring-down and second hits on the broadband envelope, anchored at the main impact.
        let (lo, hi) = (1, self.raw_spectrum.len() - 1);
        self.analytic_envelope(lo, hi, n);
        let post_energy_db = post_impact_energy_db(
            &self.envelope[..n],
            peaks.main,
            ms_to_samples(MAIN_IMPACT_LEAD_MS, fs),
            ms_to_samples(self.cfg.post_impact_start_ms, fs).max(1),
            ms_to_samples(self.cfg.post_impact_window_ms, fs).max(1),
        );
        let to_ms = |samples: usize| samples as f32 * 1000.0 / fs;
        out.extend_from_slice(&[
            to_ms(peaks.main),
            post_energy_db,
            peaks.count as f32,
            peaks.second_delay.map_or(0.0, to_ms),
            peaks.second_rel_db,
        ]);
    }

    /// Sum of the capacities of every internal buffer (elements); constant after `new`.
    #[cfg(test)]
    pub(crate) fn buffer_capacity(&self) -> usize {
        self.forward_scratch.capacity()
            + self.inverse_scratch.capacity()
            + self.window.capacity()
            + self.time.capacity()
            + self.spectrum.capacity()
            + self.raw_spectrum.capacity()
            + self.masked.capacity()
            + self.in_phase.capacity()
            + self.quadrature.capacity()
            + self.power.capacity()
            + self.envelope.capacity()
            + self.smoothed.capacity()
            + self.peaks.capacity()
    }
}

/// The feature names of `cfg`, in output order.
fn feature_names(cfg: &FeatureConfig) -> Vec<String> {
    let mut names = Vec::new();
    for band in &cfg.bands {
        names.push(format!("band_{}_{}hz_log10_g2", band.lo_hz, band.hi_hz));
    }
    names.push(format!(
        "share_{}_{}hz",
        cfg.nominal_band.lo_hz, cfg.nominal_band.hi_hz
    ));
    for i in 1..=cfg.spectral_peaks {
        names.push(format!("peak{i}_hz"));
        names.push(format!("peak{i}_rel_db"));
    }
    names.extend(
        [
            "spectral_centroid_hz",
            "spectral_spread_hz",
            "rms_log10_g",
            "peak_log10_g",
            "crest_factor_db",
            "kurtosis_log10",
        ]
        .map(String::from),
    );
    for h in 1..=cfg.bpfo_harmonics {
        names.push(format!("env_bpfo_h{h}_db"));
    }
    names.extend(
        [
            "impact_time_ms",
            "post_impact_energy_db",
            "impact_count",
            "second_impact_delay_ms",
            "second_impact_rel_db",
        ]
        .map(String::from),
    );
    names
}

/// Bins `lo..hi` whose centre frequency lies in `[band.lo_hz, band.hi_hz)`, clamped to `bins`.
fn band_bins(band: Band, bin_hz: f32, bins: usize) -> (usize, usize) {
    let lo = ((band.lo_hz / bin_hz).ceil().max(0.0) as usize).min(bins);
    let hi = ((band.hi_hz / bin_hz).ceil().max(0.0) as usize).min(bins);
    (lo, hi.max(lo))
}

fn log10(x: f64) -> f32 {
    x.log10() as f32
}

fn ms_to_samples(ms: f32, fs: f32) -> usize {
    (ms * fs / 1000.0).round().max(0.0) as usize
}

/// Centred moving average of half-width `half` (window `2 half + 1`, shrunk at the edges).
fn moving_average(input: &[f32], half: usize, output: &mut [f32]) {
    let n = input.len();
    let mut sum = 0.0_f64;
    // Running sum over [i - half, i + half] ∩ [0, n).
    let mut lo = 0;
    let mut hi = 0; // exclusive
    for (i, out) in output.iter_mut().enumerate().take(n) {
        let want_hi = (i + half + 1).min(n);
        while hi < want_hi {
            sum += f64::from(input[hi]);
            hi += 1;
        }
        let want_lo = i.saturating_sub(half);
        while lo < want_lo {
            sum -= f64::from(input[lo]);
            lo += 1;
        }
        *out = (sum / (hi - lo) as f64) as f32;
    }
}

/// Spectral centroid and spread (Hz) of the power spectrum.
fn push_spread(power: &[f64], bin_hz: f32, total: f64, out: &mut Vec<f32>) {
    if total <= 0.0 {
        out.extend_from_slice(&[0.0, 0.0]);
        return;
    }
    let bin_hz = f64::from(bin_hz);
    let centroid = power
        .iter()
        .enumerate()
        .map(|(k, p)| k as f64 * bin_hz * p)
        .sum::<f64>()
        / total;
    let variance = power
        .iter()
        .enumerate()
        .map(|(k, p)| (k as f64 * bin_hz - centroid).powi(2) * p)
        .sum::<f64>()
        / total;
    out.extend_from_slice(&[centroid as f32, variance.sqrt() as f32]);
}

/// Mean and central moments of a stroke (f64 accumulation).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Moments {
    pub(crate) mean: f64,
    /// Variance (second central moment).
    pub(crate) m2: f64,
    /// Fourth central moment.
    pub(crate) m4: f64,
    /// Largest `|x - mean|`.
    pub(crate) peak: f64,
}

impl Moments {
    pub(crate) fn of(samples: &[f32]) -> Self {
        if samples.is_empty() {
            return Self {
                mean: 0.0,
                m2: 0.0,
                m4: 0.0,
                peak: 0.0,
            };
        }
        let n = samples.len() as f64;
        let mean = samples.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let (mut m2, mut m4, mut peak) = (0.0, 0.0, 0.0_f64);
        for &x in samples {
            let d = f64::from(x) - mean;
            let d2 = d * d;
            m2 += d2;
            m4 += d2 * d2;
            peak = peak.max(d.abs());
        }
        Self {
            mean,
            m2: m2 / n,
            m4: m4 / n,
            peak,
        }
    }

    /// Kurtosis `m4 / m2²` (3 for a Gaussian); 1 (its minimum) for a constant signal.
    pub(crate) fn kurtosis(&self) -> f64 {
        if self.m2 > 0.0 {
            self.m4 / (self.m2 * self.m2)
        } else {
            1.0
        }
    }

    fn push(&self, out: &mut Vec<f32>) {
        let rms = self.m2.sqrt();
        out.push(log10(rms + AMPLITUDE_FLOOR_G));
        out.push(log10(self.peak + AMPLITUDE_FLOOR_G));
        out.push(20.0 * log10((self.peak + AMPLITUDE_FLOOR_G) / (rms + AMPLITUDE_FLOOR_G)));
        out.push(log10(self.kurtosis()));
    }
}

/// The impacts found in an impact-band envelope.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ImpactPeaks {
    /// Index of the largest envelope value (0 when the envelope is empty or zero).
    main: usize,
    /// Impacts: dominant peaks at least `peak_fraction` of the main one (main included).
    count: u32,
    /// Distance from the main impact to the strongest other impact, when there is one.
    second_delay: Option<usize>,
    /// Level of the strongest other dominant peak relative to the main one, dB (floor -60).
    second_rel_db: f32,
}

impl ImpactPeaks {
    /// An impact is a local maximum that dominates +/- `separation` samples, so the decay of
    /// one impact (monotonic on that scale) is not counted as another.
    fn of(envelope: &[f32], peak_fraction: f32, separation: usize) -> Self {
        let none = Self {
            main: 0,
            count: 0,
            second_delay: None,
            second_rel_db: IMPACT_FLOOR_DB,
        };
        let n = envelope.len();
        let Some((main, &peak)) = envelope
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
        else {
            return none;
        };
        if peak <= 0.0 {
            return none;
        }
        let mut count = 1;
        let mut second: Option<(usize, f32)> = None;
        for i in 1..n.saturating_sub(1) {
            let v = envelope[i];
            if i.abs_diff(main) < separation
                || v < IMPACT_CANDIDATE_FRACTION * peak
                || v <= envelope[i - 1]
                || v < envelope[i + 1]
            {
                continue;
            }
            let window = &envelope[i.saturating_sub(separation)..(i + separation + 1).min(n)];
            if window.iter().any(|&w| w > v) {
                continue;
            }
            if v >= peak_fraction * peak {
                count += 1;
            }
            if second.is_none_or(|(_, s)| v > s) {
                second = Some((i, v));
            }
        }
        let (second_delay, second_rel_db) = match second {
            Some((i, v)) => (
                (v >= peak_fraction * peak).then(|| i.abs_diff(main)),
                (20.0 * (v / peak).log10()).max(IMPACT_FLOOR_DB),
            ),
            None => (None, IMPACT_FLOOR_DB),
        };
        Self {
            main,
            count,
            second_delay,
            second_rel_db,
        }
    }
}

/// Energy of `envelope` in `[main + start, main + start + len)` over the energy from `lead`
/// samples before `main` to `main + start`, dB (floor -60).
fn post_impact_energy_db(
    envelope: &[f32],
    main: usize,
    lead: usize,
    start: usize,
    len: usize,
) -> f32 {
    let n = envelope.len();
    let energy = |part: &[f32]| {
        part.iter()
            .map(|&e| f64::from(e) * f64::from(e))
            .sum::<f64>()
    };
    let post_lo = (main + start).min(n);
    let post_hi = (post_lo + len).min(n);
    let main_energy = energy(&envelope[main.saturating_sub(lead).min(post_lo)..post_lo]);
    let post_energy = energy(&envelope[post_lo..post_hi]);
    if post_energy > 0.0 && main_energy > 0.0 {
        (10.0 * log10(post_energy / main_energy)).max(IMPACT_FLOOR_DB)
    } else {
        IMPACT_FLOOR_DB
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is the failure report.
mod tests;
