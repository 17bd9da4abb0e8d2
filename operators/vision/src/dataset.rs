//! Labelled PNG datasets from the part simulator, for `forgeline train optical` and evaluation.
//!
//! [`generate_dataset`] writes one PNG per part into `good/` or `defect/`, named
//! `<label>_<seq>.png` (seq zero-padded to 6 digits), and `manifest.csv` with
//! `file,seq,label,expected_verdict` (`file` relative to the dataset directory, `/`-separated).
//! A directory written here replays with [`crate::ReplayCamera`], which reads the label back from
//! the folder and file name.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use image::{ColorType, ImageFormat};
use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, Problems};
use crate::{DefectKind, PartLabel, SimulatedCamera, SimulatedCameraConfig, VisionError};

/// The manifest's file name inside a dataset directory.
pub const MANIFEST: &str = "manifest.csv";
const HEADER: &str = "file,seq,label,expected_verdict";

/// How many parts of each label to generate.
///
/// ```yaml
/// { good: 400, scratch: 25, crack: 25, spot: 25, missing: 25 }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatasetCounts {
    /// Good parts. Default 0.
    pub good: usize,
    /// Scratched parts. Default 0.
    pub scratch: usize,
    /// Cracked parts. Default 0.
    pub crack: usize,
    /// Parts with spots. Default 0.
    pub spot: usize,
    /// Parts with a missing region. Default 0.
    pub missing: usize,
}

impl DatasetCounts {
    /// `good` good parts and `per_defect` parts of every defect kind.
    pub fn balanced(good: usize, per_defect: usize) -> Self {
        Self {
            good,
            scratch: per_defect,
            crack: per_defect,
            spot: per_defect,
            missing: per_defect,
        }
    }

    /// The count for `kind` (`None`: good parts).
    pub fn of(&self, kind: Option<DefectKind>) -> usize {
        match kind {
            None => self.good,
            Some(DefectKind::Scratch) => self.scratch,
            Some(DefectKind::Crack) => self.crack,
            Some(DefectKind::Spot) => self.spot,
            Some(DefectKind::Missing) => self.missing,
        }
    }

    /// Total parts.
    pub fn len(&self) -> usize {
        self.good + self.scratch + self.crack + self.spot + self.missing
    }

    /// Whether no part would be generated.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Problems::new("dataset counts");
        problems.check(!self.is_empty(), || {
            "counts: all zero, expected at least one part to generate".into()
        });
        problems.finish()
    }
}

/// One line of `manifest.csv`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestRow {
    /// Image path relative to the dataset directory, `/`-separated (`defect/crack_000412.png`).
    pub file: String,
    /// Frame number (the simulator's `seq`: regenerate it with the same seed).
    pub seq: u64,
    /// Ground truth.
    pub label: PartLabel,
}

impl ManifestRow {
    /// The verdict a correct pipeline gives the part (`ok`, `reject`).
    pub fn expected_verdict(&self) -> &'static str {
        self.label.expected_verdict()
    }
}

/// The contents of a dataset's `manifest.csv`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Manifest {
    /// The parts, in file order.
    pub rows: Vec<ManifestRow>,
}

impl Manifest {
    /// Reads `<dir>/manifest.csv`.
    ///
    /// # Errors
    /// [`VisionError::Io`] when it cannot be read, [`VisionError::BadManifestLine`] naming the
    /// line when the header or a row is malformed.
    pub fn read(dir: &Path) -> Result<Self, VisionError> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path).map_err(|source| VisionError::Io {
            file: path.clone(),
            action: "cannot read",
            source,
        })?;
        let mut rows = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let bad = |reason: String| VisionError::BadManifestLine {
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
                return Err(bad(format!("{} fields, expected 4", fields.len())));
            };
            let seq = seq
                .parse()
                .map_err(|_| bad(format!("seq `{seq}` is not a whole number")))?;
            let label: PartLabel = label.parse().map_err(|e| bad(format!("{e}")))?;
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

    /// The manifest as CSV text, header first.
    pub fn to_csv(&self) -> String {
        let mut csv = format!("{HEADER}\n");
        for row in &self.rows {
            // Writing to a String cannot fail.
            let _ = writeln!(
                csv,
                "{},{},{},{}",
                row.file,
                row.seq,
                row.label,
                row.expected_verdict()
            );
        }
        csv
    }
}

/// Writes a dataset of default-sized (300x300 grey) parts from simulator seed `seed`, frames
/// numbered from 0: good parts first, then each defect kind in [`DefectKind::ALL`] order.
///
/// # Errors
/// See [`generate_dataset_with`].
pub fn generate_dataset(
    dir: &Path,
    seed: u64,
    counts: &DatasetCounts,
) -> Result<Manifest, VisionError> {
    let camera = SimulatedCameraConfig {
        seed,
        ..SimulatedCameraConfig::default()
    };
    generate_dataset_with(dir, &camera, counts, 0)
}

/// Writes a dataset with the given camera model (its `seed`, size, channels and `severity`
/// apply; its defect probabilities are ignored: labels come from `counts`), frames numbered from
/// `first_seq`. Use another seed or a disjoint `first_seq` range for a held-out set.
///
/// # Errors
/// [`VisionError::Config`] for a bad camera config or all-zero counts, [`VisionError::Io`] when a
/// folder cannot be created or the manifest written, [`VisionError::Encode`] naming the PNG that
/// could not be written.
pub fn generate_dataset_with(
    dir: &Path,
    camera: &SimulatedCameraConfig,
    counts: &DatasetCounts,
    first_seq: u64,
) -> Result<Manifest, VisionError> {
    counts.validate()?;
    let simulator = SimulatedCamera::new(camera.clone())?;
    for folder in ["good", "defect"] {
        let path = dir.join(folder);
        std::fs::create_dir_all(&path).map_err(|source| VisionError::Io {
            file: path,
            action: "cannot create directory",
            source,
        })?;
    }
    let colour = if camera.channels == 1 {
        ColorType::L8
    } else {
        ColorType::Rgb8
    };
    let mut manifest = Manifest::default();
    let mut seq = first_seq;
    let kinds = std::iter::once(None).chain(DefectKind::ALL.map(Some));
    for kind in kinds {
        for _ in 0..counts.of(kind) {
            let frame = simulator.frame_as(seq, kind);
            let label = frame
                .label
                .unwrap_or(kind.map_or(PartLabel::Good, |k| PartLabel::Defect(Some(k))));
            let file = format!("{}/{}_{seq:06}.png", label.folder(), label.name());
            let path: PathBuf = dir.join(&file);
            image::save_buffer_with_format(
                &path,
                &frame.data,
                frame.width,
                frame.height,
                colour,
                ImageFormat::Png,
            )
            .map_err(|e| VisionError::Encode {
                file: path.clone(),
                reason: e.to_string(),
            })?;
            manifest.rows.push(ManifestRow { file, seq, label });
            seq += 1;
        }
    }
    let path = dir.join(MANIFEST);
    std::fs::write(&path, manifest.to_csv()).map_err(|source| VisionError::Io {
        file: path,
        action: "cannot write",
        source,
    })?;
    tracing::info!(dir = %dir.display(), parts = manifest.rows.len(), "optical dataset written");
    Ok(manifest)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is the failure report.
mod tests {
    use super::*;
    use crate::{Camera, ReplayCamera, ReplayConfig};

    #[test]
    fn dataset_writes_pngs_and_a_manifest_that_replay_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let camera = SimulatedCameraConfig {
            seed: 9,
            width: 40,
            height: 32,
            ..SimulatedCameraConfig::default()
        };
        let counts = DatasetCounts {
            good: 3,
            crack: 2,
            missing: 1,
            ..DatasetCounts::default()
        };
        let manifest = generate_dataset_with(dir.path(), &camera, &counts, 100).unwrap();
        assert_eq!(manifest.rows.len(), 6);
        assert_eq!(manifest.rows[0].file, "good/good_000100.png");
        assert_eq!(manifest.rows[3].file, "defect/crack_000103.png");
        assert_eq!(manifest.rows[5].label.to_string(), "missing");
        assert_eq!(Manifest::read(dir.path()).unwrap(), manifest);
        let csv = std::fs::read_to_string(dir.path().join(MANIFEST)).unwrap();
        assert!(
            csv.starts_with("file,seq,label,expected_verdict\ngood/good_000100.png,100,good,ok\n")
        );
        assert!(csv.contains("defect/crack_000103.png,103,crack,reject"));

        // Replaying the dataset root gives the same pixels and labels (sorted: defect/ first).
        let simulator = SimulatedCamera::new(camera).unwrap();
        let mut replay = ReplayCamera::new(ReplayConfig::from_paths([dir.path()])).unwrap();
        let mut seen = 0;
        while let Some(frame) = replay.next_frame() {
            let frame = frame.unwrap();
            let row = manifest
                .rows
                .iter()
                .find(|r| frame.source.ends_with(&r.file))
                .unwrap();
            assert_eq!(frame.label, Some(row.label));
            assert_eq!(
                frame.data,
                simulator
                    .frame_as(
                        row.seq,
                        match row.label {
                            PartLabel::Good => None,
                            PartLabel::Defect(kind) => kind,
                        }
                    )
                    .data
            );
            seen += 1;
        }
        assert_eq!(seen, 6);
    }

    #[test]
    fn empty_counts_and_bad_manifests_are_refused_with_names() {
        let dir = tempfile::tempdir().unwrap();
        let err = generate_dataset(dir.path(), 1, &DatasetCounts::default()).unwrap_err();
        assert!(err.to_string().contains("all zero"), "{err}");

        std::fs::write(
            dir.path().join(MANIFEST),
            "file,seq,label,expected_verdict\na.png,x,good,ok\n",
        )
        .unwrap();
        let msg = Manifest::read(dir.path()).unwrap_err().to_string();
        assert!(
            msg.contains("manifest.csv:2") && msg.contains("seq `x`"),
            "{msg}"
        );
        std::fs::write(
            dir.path().join(MANIFEST),
            "file,seq,label,expected_verdict\na.png,1,crack,ok\n",
        )
        .unwrap();
        let msg = Manifest::read(dir.path()).unwrap_err().to_string();
        assert!(msg.contains("contradicts"), "{msg}");
        std::fs::write(dir.path().join(MANIFEST), "name,label\n").unwrap();
        let msg = Manifest::read(dir.path()).unwrap_err().to_string();
        assert!(
            msg.contains("manifest.csv:1") && msg.contains("header"),
            "{msg}"
        );
    }

    #[test]
    fn default_dataset_is_300_square_grey() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = generate_dataset(dir.path(), 4, &DatasetCounts::balanced(1, 1)).unwrap();
        assert_eq!(manifest.rows.len(), 5);
        let img = image::open(dir.path().join(&manifest.rows[1].file)).unwrap();
        assert_eq!(
            (img.width(), img.height(), img.color()),
            (300, 300, ColorType::L8)
        );
    }
}
