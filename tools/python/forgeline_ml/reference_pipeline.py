"""The press line as a plant engineer would write it in Python: the baseline of `forgeline
bench-line`.

numpy FFT features (a line-by-line port of the 31 ``press-v1`` features of
``operators/vibration``), then ``onnxruntime.InferenceSession`` on the same model file with the
same normalisation (``model.yml``), then the model's calibrated thresholds. Single-threaded
(``intra_op_num_threads = 1``): latency per stroke and strokes per second per core.

Differences from the Rust operators, on purpose or honestly:

- the features are computed in float64 (the Rust extractor uses float32 FFTs and float64 sums),
  so values agree to about 1e-4 relative, not bit for bit (``test_reference_pipeline.py``
  checks the agreement on simulated strokes);
- the data-quality checks are reduced to NaN/Inf and clipping (the Rust operator also checks
  length, rate, dropout, stuck and offset jumps); a stroke flagged here is a ``sensor_fault``;
- no Arrow messages, no processes: this is the "one script" a user would compare us with.

Run::

    python -m forgeline_ml.reference_pipeline --model-dir models/press-anomaly DIR_OF_WAVS [--json]
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import time
from pathlib import Path

import numpy as np
import yaml

# press-v1 defaults (operators/vibration/src/config.rs).
EXPECTED_SAMPLES = 2000
BANDS = [(0, 100), (100, 200), (200, 400), (400, 550), (550, 750), (750, 1000), (1000, 1500),
         (1500, 2500), (2500, 3500), (3500, 5000)]
NOMINAL_BAND = (200.0, 400.0)
SPECTRAL_PEAKS = 3
PEAK_MIN_HZ = 20.0
BPFO_HZ, BPFO_TOL_HZ, BPFO_HARMONICS = 100.0, 20.0, 3
ENVELOPE_BAND = (2000.0, 4500.0)
IMPACT_BAND = (1000.0, 2500.0)
ENVELOPE_SMOOTHING_MS = 1.0
IMPACT_PEAK_FRACTION = 0.3
IMPACT_MIN_SEPARATION_MS = 10.0
POST_IMPACT_START_MS, POST_IMPACT_WINDOW_MS = 15.0, 60.0
FULL_SCALE_G, CLIP_MARGIN, CLIP_MIN_SAMPLES = 50.0, 0.01, 3

ENERGY_FLOOR = 1e-12
AMPLITUDE_FLOOR = 1e-6
MISSING_PEAK_DB = -120.0
IMPACT_FLOOR_DB = -60.0
IMPACT_CANDIDATE_FRACTION = 0.001
MAIN_IMPACT_LEAD_MS = 2.0


def read_wav(path: Path) -> tuple[np.ndarray, float]:
    """Samples (float32, g) and sample rate of a WAV written by ``forgeline simulate``
    (IEEE float32 or int16 PCM, mono)."""
    data = path.read_bytes()
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError(f"{path}: not a RIFF/WAVE file")
    pos, fmt, rate, samples = 12, None, None, None
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = data[pos + 8:pos + 8 + size]
        if cid == b"fmt ":
            fmt, _channels, rate = struct.unpack_from("<HHI", body, 0)
            if fmt == 0xFFFE and len(body) >= 26:  # WAVE_FORMAT_EXTENSIBLE: the sub-format's tag
                fmt = struct.unpack_from("<H", body, 24)[0]
        elif cid == b"data":
            if fmt == 3:
                samples = np.frombuffer(body, dtype="<f4").astype(np.float32)
            elif fmt == 1:
                samples = np.frombuffer(body, dtype="<i2").astype(np.float32) * (50.0 / 32768.0)
            else:
                raise ValueError(f"{path}: WAV format {fmt}, expected 1 (PCM) or 3 (float)")
        pos += 8 + size + (size & 1)
    if samples is None or rate is None:
        raise ValueError(f"{path}: no fmt/data chunk")
    return samples, float(rate)


class Extractor:
    """The press-v1 features of one stroke (31 values), numpy port of FeatureExtractor."""

    def __init__(self, n: int = EXPECTED_SAMPLES):
        self.n = n
        self.fft_len = 1 << (n - 1).bit_length()
        self.window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / max(n - 1, 1))

    def _bins(self, band, bin_hz, bins):
        lo = min(int(max(np.ceil(band[0] / bin_hz), 0)), bins)
        hi = min(int(max(np.ceil(band[1] / bin_hz), 0)), bins)
        return lo, max(hi, lo)

    def _envelope(self, raw, lo, hi, n):
        last = len(raw) - 1
        lo, hi = max(lo, 1), min(hi, last)
        masked = np.zeros_like(raw)
        masked[lo:hi] = raw[lo:hi]
        i = np.fft.irfft(masked, self.fft_len)
        q = np.fft.irfft(-1j * masked, self.fft_len)
        return np.hypot(i, q)[:n]

    def extract(self, x: np.ndarray, fs: float) -> tuple[np.ndarray, bool]:
        """(features, quality ok)."""
        x = np.asarray(x, dtype=np.float64)
        if not np.all(np.isfinite(x)):
            return np.full(31, np.nan), False
        clipped = np.count_nonzero(np.abs(x) >= FULL_SCALE_G * (1 - CLIP_MARGIN)) >= CLIP_MIN_SAMPLES
        n = min(len(x), self.fft_len)
        if n != self.n:
            self.__init__(n)
        N = self.fft_len
        bin_hz = fs / N
        mean = x.mean()
        d = x - mean
        out: list[float] = []

        spec = np.fft.rfft(d[:n] * self.window, N)
        w2 = np.sum(self.window ** 2)
        power = np.abs(spec) ** 2 / (N * w2)
        power[1:-1] *= 2.0
        total = power.sum()
        for band in BANDS:
            lo, hi = self._bins(band, bin_hz, len(power))
            out.append(np.log10(power[lo:hi].sum() + ENERGY_FLOOR))
        lo, hi = self._bins(NOMINAL_BAND, bin_hz, len(power))
        out.append(power[lo:hi].sum() / total if total > 0 else 0.0)

        # Spectral peaks: the 3 strongest local maxima above PEAK_MIN_HZ, in frequency order.
        first = max(int(np.ceil(PEAK_MIN_HZ / bin_hz)), 1)
        k = np.arange(first, len(power) - 1)
        p = power[k]
        is_peak = (p > power[k - 1]) & (p >= power[k + 1]) & (p > 0)
        ks = k[is_peak]
        top = np.sort(ks[np.argsort(power[ks], kind="stable")[::-1][:SPECTRAL_PEAKS]])
        for rank in range(SPECTRAL_PEAKS):
            if rank < len(top) and total > 0:
                kk = top[rank]
                a, b, c = np.log(power[kk - 1:kk + 2] + ENERGY_FLOOR)
                curv = a - 2 * b + c
                delta = float(np.clip(0.5 * (a - c) / curv, -0.5, 0.5)) if curv < 0 else 0.0
                out += [(kk + delta) * bin_hz, 10 * np.log10(power[kk - 1:kk + 2].sum() / total)]
            else:
                out += [0.0, MISSING_PEAK_DB]

        freqs = np.arange(len(power)) * bin_hz
        if total > 0:
            centroid = (freqs * power).sum() / total
            out += [centroid, np.sqrt(((freqs - centroid) ** 2 * power).sum() / total)]
        else:
            out += [0.0, 0.0]

        rms = np.sqrt(np.mean(d ** 2))
        peak = np.max(np.abs(d))
        m2, m4 = np.mean(d ** 2), np.mean(d ** 4)
        out += [np.log10(rms + AMPLITUDE_FLOOR), np.log10(peak + AMPLITUDE_FLOOR),
                20 * np.log10((peak + AMPLITUDE_FLOOR) / (rms + AMPLITUDE_FLOOR)),
                np.log10(m4 / (m2 * m2) if m2 > 0 else 1.0)]

        raw = np.fft.rfft(d[:n], N)
        # Bearing: envelope spectrum at BPFO and its harmonics.
        lo, hi = self._bins(ENVELOPE_BAND, bin_hz, len(raw))
        env = self._envelope(raw, lo, hi, n)
        env_mean = env.mean()
        env_spec = np.abs(np.fft.rfft((env - env_mean) * self.window, N)) * (2.0 / self.window.sum())
        for h in range(1, BPFO_HARMONICS + 1):
            lo, hi = self._bins((h * BPFO_HZ - BPFO_TOL_HZ, h * BPFO_HZ + BPFO_TOL_HZ), bin_hz, len(env_spec))
            peak_amp = env_spec[lo:hi].max() if hi > lo else 0.0
            out.append(20 * np.log10(peak_amp / (env_mean + AMPLITUDE_FLOOR) + AMPLITUDE_FLOOR))

        # Impacts: smoothed envelope in the impact band, main impact and a second one.
        lo, hi = self._bins(IMPACT_BAND, bin_hz, len(raw))
        env = self._envelope(raw, lo, hi, n)
        half = int(round(ENVELOPE_SMOOTHING_MS * fs / 1000 / 2))
        csum = np.concatenate([[0.0], np.cumsum(env)])
        idx = np.arange(n)
        lo_i, hi_i = np.maximum(idx - half, 0), np.minimum(idx + half + 1, n)
        smooth = (csum[hi_i] - csum[lo_i]) / (hi_i - lo_i)
        sep = max(int(round(IMPACT_MIN_SEPARATION_MS * fs / 1000)), 1)
        main, count, second_delay, second_db = self._impacts(smooth, sep)
        full = self._envelope(raw, 1, len(raw) - 1, n)
        lead = int(round(MAIN_IMPACT_LEAD_MS * fs / 1000))
        start = max(int(round(POST_IMPACT_START_MS * fs / 1000)), 1)
        length = max(int(round(POST_IMPACT_WINDOW_MS * fs / 1000)), 1)
        post_lo = min(main + start, n)
        post_hi = min(post_lo + length, n)
        main_e = np.sum(full[min(max(main - lead, 0), post_lo):post_lo] ** 2)
        post_e = np.sum(full[post_lo:post_hi] ** 2)
        post_db = max(10 * np.log10(post_e / main_e), IMPACT_FLOOR_DB) if post_e > 0 and main_e > 0 else IMPACT_FLOOR_DB
        to_ms = 1000.0 / fs
        out += [main * to_ms, post_db, float(count),
                second_delay * to_ms if second_delay is not None else 0.0, second_db]
        return np.asarray(out, dtype=np.float32), not clipped

    @staticmethod
    def _impacts(env: np.ndarray, sep: int):
        n = len(env)
        main = int(np.argmax(env))
        peak = env[main]
        if peak <= 0:
            return 0, 0, None, IMPACT_FLOOR_DB
        i = np.arange(1, n - 1)
        v = env[i]
        cand = (np.abs(i - main) >= sep) & (v >= IMPACT_CANDIDATE_FRACTION * peak) & (v > env[i - 1]) & (v >= env[i + 1])
        count, second = 1, None
        for j in i[cand]:
            val = env[j]
            if np.any(env[max(j - sep, 0):min(j + sep + 1, n)] > val):
                continue
            if val >= IMPACT_PEAK_FRACTION * peak:
                count += 1
            if second is None or val > second[1]:
                second = (int(j), val)
        if second is None:
            return main, count, None, IMPACT_FLOOR_DB
        j, val = second
        delay = abs(j - main) if val >= IMPACT_PEAK_FRACTION * peak else None
        return main, count, delay, max(20 * np.log10(val / peak), IMPACT_FLOOR_DB)


class Pipeline:
    """Features → onnxruntime → thresholds, as one would write it."""

    def __init__(self, model_dir: Path, variant: str = "fp32"):
        import onnxruntime as ort

        meta = yaml.safe_load((model_dir / "model.yml").read_text())
        norm = meta["inputs"][0]["normalization"]
        self.mean = np.asarray(norm["mean"], dtype=np.float32)
        self.inv_std = 1.0 / np.asarray(norm["std"], dtype=np.float32)
        self.warning = float(meta["thresholds"]["warning"])
        self.critical = float(meta["thresholds"]["critical"])
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(model_dir / meta["variants"][variant]["file"]),
                                            sess_options=opts, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.extractor = Extractor()

    def score(self, features: np.ndarray) -> float:
        x = ((features - self.mean) * self.inv_std).astype(np.float32)[None, :]
        return float(np.ravel(self.session.run(None, {self.input: x})[0])[0])

    def decide(self, samples: np.ndarray, fs: float) -> tuple[str, float]:
        features, ok = self.extractor.extract(samples, fs)
        if not ok or not np.all(np.isfinite(features)):
            return "sensor_fault", float("nan")
        s = self.score(features)
        return ("reject" if s >= self.warning else "ok"), s


def percentile(sorted_ms: list[float], q: float) -> float:
    """Nearest rank, as forgeline_runtime::latency."""
    rank = min(max(int(np.ceil(q * len(sorted_ms))), 1), len(sorted_ms))
    return sorted_ms[rank - 1]


def run(model_dir: Path, inputs: list[Path], repeat: int = 1) -> dict:
    """Decides every stroke of ``inputs`` ``repeat`` times; latency (ms) and strokes/s."""
    files = []
    for p in inputs:
        files += sorted(p.glob("*.wav")) if p.is_dir() else [p]
    strokes = [read_wav(f) for f in files]
    if not strokes:
        raise SystemExit(f"no WAV stroke in {', '.join(map(str, inputs))}")
    pipe = Pipeline(model_dir)
    lat, verdicts = [], {}
    started = time.perf_counter()
    for _ in range(repeat):
        for samples, fs in strokes:
            t0 = time.perf_counter()
            verdict, _ = pipe.decide(samples, fs)
            lat.append((time.perf_counter() - t0) * 1e3)
            verdicts[verdict] = verdicts.get(verdict, 0) + 1
    elapsed = time.perf_counter() - started
    s = sorted(lat)
    return {"strokes": len(lat), "p50_ms": percentile(s, 0.5), "p95_ms": percentile(s, 0.95),
            "p99_ms": percentile(s, 0.99), "p999_ms": percentile(s, 0.999), "max_ms": s[-1],
            "strokes_per_s": len(lat) / elapsed, "verdicts": verdicts}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-dir", type=Path, required=True)
    ap.add_argument("--repeat", type=int, default=1, help="passes over the strokes")
    ap.add_argument("--json", action="store_true", help="print one JSON line")
    ap.add_argument("inputs", type=Path, nargs="+", help="WAV files or directories")
    args = ap.parse_args(argv)
    report = run(args.model_dir, args.inputs, args.repeat)
    if args.json:
        print(json.dumps(report))
    else:
        for k, v in report.items():
            print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
