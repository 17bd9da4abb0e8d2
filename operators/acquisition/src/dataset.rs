//! Labelled WAV datasets from the press simulator, for training and evaluation.
//!
//! [`generate`] writes one float32 mono WAV per stroke, named `<label>_<seq>.wav` (seq zero-padded
//! to 6 digits), and `manifest.csv` with `file,seq,label,expected_verdict`. A directory written
//! here replays with [`crate::ReplaySource`] (`segmentation: per_file`), which reads the label
//! back from the file name.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, Problems};
use crate::{AcquisitionError, PressSimConfig, PressSimulator, StrokeLabel, write_wav_f32};

/// The manifest's file name inside a dataset directory.
pub const MANIFEST: &str = "manifest.csv";
const HEADER: &str = "file,seq,label,expected_verdict";

/// What to generate: how many strokes of each label, from which press model.
///
/// ```yaml
/// counts: { normal: 200, die_wear: 20, clipping: 20 }
/// first_seq: 0
/// press: { fault_severity: 1.0 }
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatasetPlan {
    /// Strokes per label; written label by label in [`StrokeLabel::ALL`] order. Default: none.
    pub counts: BTreeMap<StrokeLabel, usize>,
    /// Stroke number of the first stroke; later ones count up from it. Use a different generate
    /// seed or a disjoint range for a held-out set. Default 0.
    pub first_seq: u64,
    /// The press model. Its `seed` is replaced by [`generate`]'s; its fault probabilities and
    /// schedule are ignored (labels come from `counts`); `fault_severity` applies. Default:
    /// [`PressSimConfig::default`].
    pub press: PressSimConfig,
}

impl DatasetPlan {
    /// A training set: `normal` healthy strokes only.
    pub fn training(normal: usize) -> Self {
        Self {
            counts: BTreeMap::from([(StrokeLabel::Normal, normal)]),
            ..Self::default()
        }
    }

    /// A held-out evaluation set: `normal` healthy strokes and `per_fault` strokes of every
    /// process-fault and sensor-fault family.
    pub fn held_out(normal: usize, per_fault: usize) -> Self {
        let counts = StrokeLabel::ALL
            .into_iter()
            .map(|label| {
                (
                    label,
                    if label == StrokeLabel::Normal {
                        normal
                    } else {
                        per_fault
                    },
                )
            })
            .collect();
        Self {
            counts,
            ..Self::default()
        }
    }

    /// Total strokes in the plan.
    pub fn len(&self) -> usize {
        self.counts.values().sum()
    }

    /// Whether the plan generates no stroke.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks the plan and its press model, reporting all problems at once.
    ///
    /// # Errors
    /// [`ConfigError`] naming each bad field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut p = Problems::new("dataset plan");
        p.extend("press.", self.press.validate());
        let rate = self.press.sample_rate_hz;
        p.check(rate.fract() == 0.0, || {
            format!(
                "press.sample_rate_hz: found {rate}, expected a whole number of Hz (WAV header)"
            )
        });
        p.check(
            u64::try_from(self.len()).is_ok_and(|n| self.first_seq.checked_add(n).is_some()),
            || {
                format!(
                    "first_seq: found {}, the stroke numbers would overflow u64",
                    self.first_seq
                )
            },
        );
        p.finish()
    }
}

/// One stroke of a dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestRow {
    /// WAV file name, relative to the dataset directory.
    pub file: String,
    /// Stroke number (the simulator's `seq`: regenerate it with the same seed).
    pub seq: u64,
    /// Ground truth.
    pub label: StrokeLabel,
}

impl ManifestRow {
    /// The verdict a correct pipeline gives the stroke (`ok`, `reject`, `sensor_fault`).
    pub fn expected_verdict(&self) -> &'static str {
        self.label.expected_verdict()
    }
}

/// The contents of a dataset's `manifest.csv`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Manifest {
    /// The strokes, in file order.
    pub rows: Vec<ManifestRow>,
}

impl Manifest {
    /// Reads `<dir>/manifest.csv`.
    ///
    /// # Errors
    /// [`AcquisitionError::Io`] when it cannot be read, [`AcquisitionError::BadCsvLine`] naming
    /// the line when a row is malformed.
    pub fn read(dir: &Path) -> Result<Self, AcquisitionError> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path).map_err(|source| AcquisitionError::Io {
            file: path.clone(),
            action: "cannot read",
            source,
        })?;
        let mut rows = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let bad = |reason: String| AcquisitionError::BadCsvLine {
                file: path.clone(),
                line: index + 1,
                text: line.chars().take(80).collect(),
                reason,
            };
            if index == 0 {
                if line.trim() != HEADER {
                    return Err(bad(format!("expected the header `{HEADER}`")));
                }
                continue;
            }
            if line.trim().is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let [file, seq, label, verdict] = fields[..] else {
                return Err(bad(format!(
                    "{} fields, expected 4 ({HEADER})",
                    fields.len()
                )));
            };
            let seq = seq
                .parse()
                .map_err(|_| bad(format!("seq `{seq}` is not a stroke number")))?;
            let label: StrokeLabel = label
                .parse()
                .map_err(|e: crate::UnknownLabel| bad(e.to_string()))?;
            if verdict != label.expected_verdict() {
                return Err(bad(format!(
                    "expected_verdict `{verdict}` contradicts label `{label}` (expected `{}`)",
                    label.expected_verdict()
                )));
            }
            rows.push(ManifestRow {
                file: file.to_owned(),
                seq,
                label,
            });
        }
        Ok(Self { rows })
    }

    /// The manifest as CSV text, header included.
    pub fn to_csv(&self) -> String {
        let mut out = format!("{HEADER}\n");
        for row in &self.rows {
            // Writing to a String cannot fail.
            let _ = writeln!(
                out,
                "{},{},{},{}",
                row.file,
                row.seq,
                row.label,
                row.expected_verdict()
            );
        }
        out
    }

    /// Rows per label.
    pub fn count_by_label(&self) -> BTreeMap<StrokeLabel, usize> {
        let mut counts = BTreeMap::new();
        for row in &self.rows {
            *counts.entry(row.label).or_default() += 1;
        }
        counts
    }
}

/// Generates the dataset `plan` into `dir` (created if missing; existing files of the same names
/// are replaced) with the simulator seeded by `seed`.
///
/// # Errors
/// [`AcquisitionError::Config`] for an invalid plan, [`AcquisitionError::Io`] /
/// [`AcquisitionError::WriteWav`] naming the file that could not be written.
pub fn generate(dir: &Path, seed: u64, plan: &DatasetPlan) -> Result<Manifest, AcquisitionError> {
    plan.validate()?;
    let press = PressSimConfig {
        seed,
        schedule: Vec::new(),
        ..plan.press.clone()
    };
    let sim = PressSimulator::new(press)?;
    std::fs::create_dir_all(dir).map_err(|source| AcquisitionError::Io {
        file: dir.to_path_buf(),
        action: "cannot create directory",
        source,
    })?;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // validated whole, 8e3..=1e6
    let rate = plan.press.sample_rate_hz as u32;
    let mut manifest = Manifest::default();
    let mut seq = plan.first_seq;
    for label in StrokeLabel::ALL {
        for _ in 0..plan.counts.get(&label).copied().unwrap_or(0) {
            let file = format!("{label}_{seq:06}.wav");
            let stroke = sim.stroke_as(seq, label);
            write_wav_f32(&dir.join(&file), &stroke.samples, rate)?;
            manifest.rows.push(ManifestRow { file, seq, label });
            seq += 1;
        }
    }
    let path: PathBuf = dir.join(MANIFEST);
    std::fs::write(&path, manifest.to_csv()).map_err(|source| AcquisitionError::Io {
        file: path,
        action: "cannot write",
        source,
    })?;
    Ok(manifest)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is the failure report.
mod tests {
    use super::*;
    use crate::{ReplayConfig, ReplaySource, VibrationSource};

    #[test]
    fn held_out_set_has_every_family_and_replays_with_its_labels() {
        let dir = tempfile::tempdir().unwrap();
        let plan = DatasetPlan {
            first_seq: 1_000,
            ..DatasetPlan::held_out(3, 2)
        };
        let manifest = generate(dir.path(), 7, &plan).unwrap();
        assert_eq!(manifest.rows.len(), 3 + 2 * 10);
        let counts = manifest.count_by_label();
        assert_eq!(counts.len(), StrokeLabel::ALL.len());
        assert_eq!(counts[&StrokeLabel::Normal], 3);
        assert_eq!(manifest.rows[0].file, "normal_001000.wav");
        assert_eq!(Manifest::read(dir.path()).unwrap(), manifest);
        let csv = std::fs::read_to_string(dir.path().join(MANIFEST)).unwrap();
        assert!(
            csv.starts_with("file,seq,label,expected_verdict\nnormal_001000.wav,1000,normal,ok\n"),
            "{csv}"
        );
        assert!(csv.contains(",die_wear,reject\n") && csv.contains(",nan,sensor_fault\n"));

        // Each WAV is the simulator's stroke bit for bit, and replay reads the label back.
        let sim = PressSimulator::new(PressSimConfig {
            seed: 7,
            ..PressSimConfig::default()
        })
        .unwrap();
        let mut replay = ReplaySource::new(ReplayConfig {
            paths: vec![dir.path().to_path_buf()],
            ..ReplayConfig::default()
        })
        .unwrap();
        let mut by_file = BTreeMap::new();
        while let Some(item) = replay.next_stroke() {
            let stroke = item.unwrap();
            let name = Path::new(&stroke.source)
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned();
            by_file.insert(name, stroke);
        }
        assert_eq!(by_file.len(), manifest.rows.len());
        for row in &manifest.rows {
            let stroke = &by_file[&row.file];
            assert_eq!(stroke.label, Some(row.label));
            let expected = sim.stroke_as(row.seq, row.label).samples;
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&stroke.samples), bits(&expected), "{}", row.file);
        }
    }

    #[test]
    fn training_plan_is_normal_only_and_plans_parse_from_yaml() {
        let plan = DatasetPlan::training(400);
        assert_eq!(plan.len(), 400);
        assert_eq!(
            plan.counts.keys().collect::<Vec<_>>(),
            [&StrokeLabel::Normal]
        );
        let yaml: DatasetPlan =
            serde_yaml::from_str("counts: { normal: 5, bearing_outer_race: 2 }\nfirst_seq: 9")
                .unwrap();
        assert_eq!(yaml.len(), 7);
        assert!(serde_yaml::from_str::<DatasetPlan>("counts: { wobble: 2 }").is_err());
        assert!(serde_yaml::from_str::<DatasetPlan>("count: { normal: 2 }").is_err());
    }

    #[test]
    fn invalid_plan_is_refused_naming_the_press_field() {
        let dir = tempfile::tempdir().unwrap();
        let plan = DatasetPlan {
            press: PressSimConfig {
                sample_rate_hz: 12_000.5,
                full_scale_g: 1.0,
                ..PressSimConfig::default()
            },
            ..DatasetPlan::training(1)
        };
        let err = generate(dir.path(), 1, &plan).unwrap_err().to_string();
        assert!(
            err.contains("press.full_scale_g")
                && err.contains("press.sample_rate_hz: found 12000.5"),
            "{err}"
        );
    }

    #[test]
    fn malformed_manifest_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(MANIFEST);
        std::fs::write(
            &path,
            format!("{HEADER}\nnormal_000001.wav,1,normal,ok\nx.wav,2,die_wear,ok\n"),
        )
        .unwrap();
        let err = Manifest::read(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("manifest.csv:3") && err.contains("contradicts"),
            "{err}"
        );
        std::fs::write(&path, format!("{HEADER}\nx.wav,two,normal,ok\n")).unwrap();
        let err = Manifest::read(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("manifest.csv:2") && err.contains("`two`"),
            "{err}"
        );
    }
}
