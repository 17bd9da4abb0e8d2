//! WAV helpers (via `hound`): the one place that writes and reads recordings' WAV files.

use std::path::Path;

use crate::AcquisitionError;

/// Writes `samples` (g) as a mono float32 WAV at `sample_rate_hz`, replacing any existing file.
///
/// # Errors
/// [`AcquisitionError::WriteWav`] naming `path` when the file cannot be created or written.
pub fn write_wav_f32(
    path: &Path,
    samples: &[f32],
    sample_rate_hz: u32,
) -> Result<(), AcquisitionError> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: sample_rate_hz,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let fail = |e: hound::Error| AcquisitionError::WriteWav {
        file: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut writer = hound::WavWriter::create(path, spec).map_err(fail)?;
    for &v in samples {
        writer.write_sample(v).map_err(fail)?;
    }
    writer.finalize().map_err(fail)
}

/// Reads a mono WAV recorded at `expected_rate_hz`: float32 as is, int16 scaled so that
/// full-scale 32768 is `int16_full_scale_g`.
pub(crate) fn read_wav(
    path: &Path,
    expected_rate_hz: f32,
    int16_full_scale_g: f32,
) -> Result<Vec<f32>, AcquisitionError> {
    let file = || path.to_path_buf();
    let malformed = |e: hound::Error| match e {
        hound::Error::IoError(source) => AcquisitionError::Io {
            file: file(),
            action: "cannot read",
            source,
        },
        other => AcquisitionError::MalformedWav {
            file: file(),
            reason: other.to_string(),
        },
    };
    let reader = hound::WavReader::open(path).map_err(malformed)?;
    let spec = reader.spec();
    if spec.channels != 1 {
        return Err(AcquisitionError::NotMono {
            file: file(),
            channels: spec.channels,
        });
    }
    #[allow(clippy::cast_precision_loss)] // WAV rates are far below 2^24
    let found = spec.sample_rate as f32;
    if (found - expected_rate_hz).abs() > 1e-3 * expected_rate_hz {
        return Err(AcquisitionError::WrongSampleRate {
            file: file(),
            expected: expected_rate_hz,
            found,
        });
    }
    match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, 32) => reader
            .into_samples::<f32>()
            .collect::<Result<_, _>>()
            .map_err(malformed),
        (hound::SampleFormat::Int, 16) => {
            let scale = int16_full_scale_g / 32_768.0;
            reader
                .into_samples::<i16>()
                .map(|v| v.map(|v| f32::from(v) * scale))
                .collect::<Result<_, _>>()
                .map_err(malformed)
        }
        (format, bits) => Err(AcquisitionError::UnsupportedFormat {
            file: file(),
            format: format!(
                "{} {bits}-bit",
                if format == hound::SampleFormat::Float {
                    "float"
                } else {
                    "int"
                }
            ),
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is the failure report.
mod tests {
    use super::*;

    #[test]
    fn float_wav_round_trips_bit_exactly_nan_included() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.wav");
        let samples = vec![0.0, 1.25, -49.99, f32::NAN, f32::INFINITY, 1e-7];
        write_wav_f32(&path, &samples, 10_000).unwrap();
        let back = read_wav(&path, 10_000.0, 50.0).unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&back), bits(&samples));
    }

    #[test]
    fn int16_wav_is_scaled_by_the_configured_full_scale() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("i.wav");
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 10_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&path, spec).unwrap();
        for v in [0_i16, 16_384, -32_768, 32_767] {
            w.write_sample(v).unwrap();
        }
        w.finalize().unwrap();
        let back = read_wav(&path, 10_000.0, 50.0).unwrap();
        assert_eq!(back[..3], [0.0, 25.0, -50.0]);
        assert!((back[3] - 50.0).abs() < 0.01);
    }

    #[test]
    fn writing_into_a_missing_directory_names_the_file() {
        let err = write_wav_f32(Path::new("/nonexistent-dir/x.wav"), &[0.0], 10_000).unwrap_err();
        assert!(err.to_string().contains("/nonexistent-dir/x.wav"), "{err}");
    }
}
