//! Replay of recorded strokes from WAV and CSV files.
//!
//! - WAV: mono, at `sample_rate_hz`; float32 samples in g, or int16 scaled so that 32768 is
//!   `int16_full_scale_g`.
//! - CSV: one value per line, or `time,value` (time in s, checked against `sample_rate_hz`); an
//!   optional header line; blank lines and `#` comments are skipped.
//!
//! `paths` lists files and directories; a directory contributes its `.wav` / `.csv` files sorted
//! by name (not recursive; a dataset's `manifest.csv` is skipped). With `segmentation: per_file` each file is one stroke of exactly
//! `samples_per_stroke` samples; with `segmentation: trigger` each file is a continuous recording
//! cut into strokes where |x| first exceeds `trigger_level_g`. Each bad file is one error item;
//! the next call goes on with the next file.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, Problems};
use crate::wav::read_wav;
use crate::{AcquisitionError, Stroke, StrokeLabel, VibrationSource};

/// How a recording is cut into strokes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Segmentation {
    /// Each file holds exactly one stroke.
    #[default]
    PerFile,
    /// Each file is a continuous recording; strokes are found by the trigger.
    Trigger,
}

/// Replay configuration. Unknown keys are refused.
///
/// ```yaml
/// paths: [recordings/line7/]     # files and/or directories
/// sample_rate_hz: 10000
/// samples_per_stroke: 2000
/// int16_full_scale_g: 50
/// segmentation: trigger           # or per_file
/// trigger_level_g: 1.0
/// pre_trigger_samples: 200
/// hold_off_samples: 2000
/// loop: false
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplayConfig {
    /// Recordings: files (in the given order) and directories (their `.wav`/`.csv` files sorted
    /// by name). Required, non-empty.
    pub paths: Vec<PathBuf>,
    /// Expected sample rate in Hz; a recording at another rate is refused. Default 10,000.
    pub sample_rate_hz: f32,
    /// Samples per stroke. Default 2,000.
    pub samples_per_stroke: usize,
    /// The g value of int16 full scale (32768) in int16 WAVs. Default 50.
    pub int16_full_scale_g: f32,
    /// `per_file` or `trigger`. Default `per_file`.
    pub segmentation: Segmentation,
    /// Trigger: a stroke starts where |x| first exceeds this, in g. Default 1.0.
    pub trigger_level_g: f32,
    /// Trigger: samples kept before the trigger sample (a stroke triggered earlier in the
    /// recording starts at sample 0). Less than `samples_per_stroke`. Default 200 (20 ms, where
    /// the simulator puts the impact).
    pub pre_trigger_samples: usize,
    /// Trigger: after a trigger, the next one is searched this many samples later. At least 1.
    /// Default 2,000 (one stroke).
    pub hold_off_samples: usize,
    /// Start again from the first path when all are replayed (stroke numbers keep counting).
    /// Stops anyway after a pass that yields no stroke. Default false.
    #[serde(rename = "loop")]
    pub looping: bool,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        Self {
            paths: Vec::new(),
            sample_rate_hz: 10_000.0,
            samples_per_stroke: 2_000,
            int16_full_scale_g: 50.0,
            segmentation: Segmentation::PerFile,
            trigger_level_g: 1.0,
            pre_trigger_samples: 200,
            hold_off_samples: 2_000,
            looping: false,
        }
    }
}

impl ReplayConfig {
    /// Checks every field and reports all problems at once.
    ///
    /// # Errors
    /// [`ConfigError`] with one line per bad field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut p = Problems::new("replay source");
        p.check(!self.paths.is_empty(), || {
            "paths: empty, expected at least one file or directory".to_owned()
        });
        let positive = [
            ("sample_rate_hz", self.sample_rate_hz),
            ("int16_full_scale_g", self.int16_full_scale_g),
            ("trigger_level_g", self.trigger_level_g),
        ];
        for (name, v) in positive {
            p.check(v.is_finite() && v > 0.0, || {
                format!("{name}: found {v}, expected a finite value > 0")
            });
        }
        p.check(self.samples_per_stroke > 0, || {
            "samples_per_stroke: found 0, expected at least 1".to_owned()
        });
        p.check(
            self.pre_trigger_samples < self.samples_per_stroke.max(1),
            || {
                format!(
                    "pre_trigger_samples: found {}, expected less than samples_per_stroke ({})",
                    self.pre_trigger_samples, self.samples_per_stroke
                )
            },
        );
        p.check(self.hold_off_samples > 0, || {
            "hold_off_samples: found 0, expected at least 1".to_owned()
        });
        p.finish()
    }
}

/// A continuous recording being cut into strokes.
#[derive(Debug)]
struct Recording {
    file: PathBuf,
    samples: Vec<f32>,
    /// Where the next trigger search starts.
    cursor: usize,
    found_any: bool,
}

/// Replays recordings as strokes. See the [module docs](self).
#[derive(Debug)]
pub struct ReplaySource {
    config: ReplayConfig,
    pending: VecDeque<PathBuf>,
    current: Option<Recording>,
    next_seq: u64,
    strokes_this_pass: u64,
    pass: u64,
}

impl ReplaySource {
    /// Validates `config` and prepares the replay (files are opened lazily, one at a time).
    ///
    /// # Errors
    /// [`ConfigError`] listing every bad field.
    pub fn new(config: ReplayConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let pending = config.paths.iter().cloned().collect();
        Ok(Self {
            config,
            pending,
            current: None,
            next_seq: 0,
            strokes_this_pass: 0,
            pass: 0,
        })
    }

    fn emit(&mut self, samples: Vec<f32>, source: String, file: &Path) -> Stroke {
        let label = file
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(StrokeLabel::from_file_stem);
        let stroke = Stroke {
            seq: self.next_seq,
            sample_rate_hz: self.config.sample_rate_hz,
            samples,
            source,
            label,
        };
        self.next_seq += 1;
        self.strokes_this_pass += 1;
        stroke
    }

    /// The next triggered stroke of the current recording; `None` when it has no more.
    fn cut(&mut self) -> Option<Result<Stroke, AcquisitionError>> {
        let config = &self.config;
        let rec = self.current.as_mut()?;
        let level = config.trigger_level_g;
        let Some(hit) = rec.samples[rec.cursor.min(rec.samples.len())..]
            .iter()
            .position(|v| v.abs() > level)
        else {
            let rec = self.current.take()?;
            if rec.found_any {
                return None;
            }
            return Some(Err(AcquisitionError::NoTrigger {
                file: rec.file,
                level_g: level,
                samples: rec.samples.len(),
            }));
        };
        let trigger = rec.cursor + hit;
        rec.found_any = true;
        rec.cursor = trigger + config.hold_off_samples;
        let start = trigger.saturating_sub(config.pre_trigger_samples);
        let expected = config.samples_per_stroke;
        let found = rec.samples.len() - start;
        if found < expected {
            rec.cursor = rec.samples.len();
            return Some(Err(AcquisitionError::TruncatedStroke {
                file: rec.file.clone(),
                start,
                expected,
                found,
            }));
        }
        let samples = rec.samples[start..start + expected].to_vec();
        let file = rec.file.clone();
        let source = format!("{}@{start}", file.display());
        Some(Ok(self.emit(samples, source, &file)))
    }

    fn load(&self, file: &Path) -> Result<Vec<f32>, AcquisitionError> {
        if has_extension(file, "csv") {
            read_csv(file, self.config.sample_rate_hz)
        } else {
            read_wav(
                file,
                self.config.sample_rate_hz,
                self.config.int16_full_scale_g,
            )
        }
    }
}

impl VibrationSource for ReplaySource {
    fn next_stroke(&mut self) -> Option<Result<Stroke, AcquisitionError>> {
        loop {
            if self.current.is_some() {
                if let Some(item) = self.cut() {
                    return Some(item);
                }
                continue;
            }
            let Some(path) = self.pending.pop_front() else {
                if self.config.looping && self.strokes_this_pass > 0 {
                    self.pending = self.config.paths.iter().cloned().collect();
                    self.strokes_this_pass = 0;
                    self.pass += 1;
                    continue;
                }
                return None;
            };
            if path.is_dir() {
                match list_recordings(&path) {
                    Ok(files) => {
                        for file in files.into_iter().rev() {
                            self.pending.push_front(file);
                        }
                        continue;
                    }
                    Err(e) => return Some(Err(e)),
                }
            }
            let samples = match self.load(&path) {
                Ok(samples) => samples,
                Err(e) => return Some(Err(e)),
            };
            match self.config.segmentation {
                Segmentation::PerFile => {
                    let expected = self.config.samples_per_stroke;
                    if samples.len() != expected {
                        return Some(Err(AcquisitionError::WrongLength {
                            file: path,
                            expected,
                            found: samples.len(),
                        }));
                    }
                    let source = path.display().to_string();
                    return Some(Ok(self.emit(samples, source, &path)));
                }
                Segmentation::Trigger => {
                    self.current = Some(Recording {
                        file: path,
                        samples,
                        cursor: 0,
                        found_any: false,
                    });
                }
            }
        }
    }

    fn describe(&self) -> String {
        let mode = match self.config.segmentation {
            Segmentation::PerFile => "one stroke per file",
            Segmentation::Trigger => "triggered strokes",
        };
        format!(
            "replay of {} path(s), {mode}, {} Hz, {} samples/stroke, pass {}, next stroke {}",
            self.config.paths.len(),
            self.config.sample_rate_hz,
            self.config.samples_per_stroke,
            self.pass,
            self.next_seq
        )
    }
}

fn has_extension(path: &Path, ext: &str) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

/// The `.wav` / `.csv` files of `dir`, sorted by name, except a dataset's `manifest.csv`.
fn list_recordings(dir: &Path) -> Result<Vec<PathBuf>, AcquisitionError> {
    let io = |source| AcquisitionError::Io {
        file: dir.to_path_buf(),
        action: "cannot list directory",
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let is_manifest = path
            .file_name()
            .is_some_and(|n| n == crate::dataset::MANIFEST);
        if path.is_file()
            && !is_manifest
            && (has_extension(&path, "wav") || has_extension(&path, "csv"))
        {
            files.push(path);
        }
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(files)
}

/// Reads a CSV recording: one value per line or `time,value`, optional header line.
fn read_csv(path: &Path, expected_rate_hz: f32) -> Result<Vec<f32>, AcquisitionError> {
    let file = || path.to_path_buf();
    let text = std::fs::read_to_string(path).map_err(|source| AcquisitionError::Io {
        file: file(),
        action: "cannot read",
        source,
    })?;
    let mut values = Vec::new();
    let mut times: Vec<f64> = Vec::with_capacity(2);
    let mut columns = None;
    let mut header_allowed = true;
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |reason: String| AcquisitionError::BadCsvLine {
            file: file(),
            line: index + 1,
            text: line.chars().take(80).collect(),
            reason,
        };
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let first_data_line = header_allowed;
        header_allowed = false;
        if first_data_line
            && fields.iter().any(|f| {
                f.starts_with(|c: char| c.is_ascii_alphabetic()) && f.parse::<f64>().is_err()
            })
        {
            // A header such as `value` or `time,value`.
            if fields.len() > 2 {
                return Err(bad(format!(
                    "{} columns, expected one value or `time,value`",
                    fields.len()
                )));
            }
            columns = Some(fields.len());
            continue;
        }
        match columns {
            None if fields.len() <= 2 => columns = Some(fields.len()),
            None => {
                return Err(bad(format!(
                    "{} columns, expected one value or `time,value`",
                    fields.len()
                )));
            }
            Some(n) if n != fields.len() => {
                return Err(bad(format!(
                    "{} columns, expected {n} like the lines above",
                    fields.len()
                )));
            }
            Some(_) => {}
        }
        let value_text = fields[fields.len() - 1];
        let value: f32 = value_text.parse().map_err(|_| {
            bad(format!(
                "`{value_text}` is not a number (expected acceleration in g)"
            ))
        })?;
        if fields.len() == 2 && times.len() < 2 {
            let time = fields[0]
                .parse()
                .map_err(|_| bad(format!("`{}` is not a time in s", fields[0])))?;
            times.push(time);
        }
        values.push(value);
    }
    if let [t0, t1] = times[..] {
        #[allow(clippy::cast_possible_truncation)]
        let found = (1.0 / (t1 - t0)) as f32;
        if !(found.is_finite() && (found - expected_rate_hz).abs() <= 1e-3 * expected_rate_hz) {
            return Err(AcquisitionError::WrongSampleRate {
                file: file(),
                expected: expected_rate_hz,
                found,
            });
        }
    }
    Ok(values)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is the failure report.
mod tests;
