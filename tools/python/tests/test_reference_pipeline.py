"""The Python reference pipeline of `forgeline bench-line`: WAV reading, the numpy port of the
press-v1 features (against the model's training statistics, which come from the Rust
extractor), and end-to-end verdicts on strokes written by `forgeline simulate`."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from forgeline_ml.reference_pipeline import Extractor, Pipeline, read_wav, run

ROOT = Path(__file__).resolve().parents[3]
MODEL = ROOT / "models" / "press-anomaly"
FORGELINE = ROOT / "target" / "release" / "forgeline"


def write_float_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    data = samples.astype("<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, 1, rate, rate * 4, 4, 32)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


def test_float_wav_round_trips(tmp_path):
    x = np.linspace(-1, 1, 2000, dtype=np.float32)
    write_float_wav(tmp_path / "a.wav", x, 10_000)
    y, fs = read_wav(tmp_path / "a.wav")
    assert fs == 10_000.0
    np.testing.assert_array_equal(x, y)
    (tmp_path / "bad.wav").write_bytes(b"nope")
    with pytest.raises(ValueError, match="not a RIFF"):
        read_wav(tmp_path / "bad.wav")


def test_a_tone_gives_31_finite_features_with_its_frequency_as_a_peak():
    fs = 10_000.0
    t = np.arange(2000) / fs
    x = np.sin(2 * np.pi * 300.0 * t) + 0.01 * np.random.default_rng(0).standard_normal(2000)
    f, ok = Extractor().extract(x, fs)
    assert ok and f.shape == (31,) and np.all(np.isfinite(f))
    peaks_hz = f[[11, 13, 15]]
    assert np.min(np.abs(peaks_hz - 300.0)) < 5.0, peaks_hz
    # Nearly all the energy is in the 200-400 Hz nominal band.
    assert f[10] > 0.95


def test_nan_is_a_sensor_fault_and_clipping_is_flagged():
    x = np.zeros(2000)
    x[5] = np.nan
    f, ok = Extractor().extract(x, 10_000.0)
    assert not ok and np.all(np.isnan(f))
    clipped = np.sin(np.arange(2000) * 0.1) * 60.0
    assert not Extractor().extract(np.clip(clipped, -50, 50), 10_000.0)[1]


@pytest.fixture(scope="module")
def strokes(tmp_path_factory):
    if not FORGELINE.exists():
        pytest.skip("target/release/forgeline not built")
    out = tmp_path_factory.mktemp("strokes")
    subprocess.run([str(FORGELINE), "simulate", "--out", str(out), "--seed", "5",
                    "--normal", "40", "--per-fault", "1"], check=True, capture_output=True)
    return out


def test_features_of_normal_strokes_match_the_rust_training_statistics(strokes):
    meta = yaml.safe_load((MODEL / "model.yml").read_text())
    norm = meta["inputs"][0]["normalization"]
    mean, std = np.asarray(norm["mean"]), np.asarray(norm["std"])
    ex = Extractor()
    rows = np.array([ex.extract(*read_wav(p))[0] for p in sorted(strokes.glob("normal_*.wav"))])
    assert rows.shape == (40, 31)
    z = np.abs((rows.mean(axis=0) - mean) / std)
    # The model was trained on the Rust extractor's features of normal strokes (another seed):
    # a port that computed any feature differently would be many standard deviations off.
    assert np.all(z < 1.0), {n: round(float(v), 2) for n, v in zip(meta["inputs"][0]["features"], z) if v >= 1.0}


def test_the_pipeline_passes_normal_strokes_and_flags_sensor_faults(strokes):
    pipe = Pipeline(MODEL)
    normal = [pipe.decide(*read_wav(p))[0] for p in sorted(strokes.glob("normal_*.wav"))]
    assert normal.count("ok") >= 0.9 * len(normal), normal
    nan = sorted(strokes.glob("nan_*.wav"))
    assert nan and all(pipe.decide(*read_wav(p))[0] == "sensor_fault" for p in nan)
    report = run(MODEL, [strokes], repeat=1)
    assert report["strokes"] == len(list(strokes.glob("*.wav")))
    assert report["strokes_per_s"] > 0 and report["p50_ms"] <= report["p99_ms"] <= report["max_ms"]
