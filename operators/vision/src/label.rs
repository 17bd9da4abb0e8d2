//! Ground truth of one part image: what the simulator drew, or what a replayed file's folder
//! (`good/`, `defect/`) and name say. Written as one flat snake_case word (`good`, `scratch`,
//! `crack`, `spot`, `missing`, or `defect` when the kind is unknown) in YAML, file names and
//! `manifest.csv`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A surface defect the simulator can draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DefectKind {
    /// Thin bright or dark straight line (tool or handling scratch).
    Scratch,
    /// Dark branching polyline.
    Crack,
    /// One to three blobs (weld spatter, pits, stains).
    Spot,
    /// A region cut out of the part (dark, sharp-edged).
    Missing,
}

impl DefectKind {
    /// Every defect kind, in declaration order.
    pub const ALL: [Self; 4] = [Self::Scratch, Self::Crack, Self::Spot, Self::Missing];

    /// The snake_case name (`scratch`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Scratch => "scratch",
            Self::Crack => "crack",
            Self::Spot => "spot",
            Self::Missing => "missing",
        }
    }
}

/// Ground truth of one part image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PartLabel {
    /// A good part (expected verdict `ok`).
    Good,
    /// A defective part (expected verdict `reject`); the kind when known.
    Defect(Option<DefectKind>),
}

impl PartLabel {
    /// Every label with a known kind: `good`, then each [`DefectKind`].
    pub const ALL: [Self; 5] = [
        Self::Good,
        Self::Defect(Some(DefectKind::Scratch)),
        Self::Defect(Some(DefectKind::Crack)),
        Self::Defect(Some(DefectKind::Spot)),
        Self::Defect(Some(DefectKind::Missing)),
    ];

    /// The snake_case name: `good`, a [`DefectKind`] name, or `defect` when the kind is unknown.
    pub fn name(self) -> &'static str {
        match self {
            Self::Good => "good",
            Self::Defect(Some(kind)) => kind.name(),
            Self::Defect(None) => "defect",
        }
    }

    /// The verdict a correct pipeline gives the part, as the `Verdict` wire name: `ok` or
    /// `reject`.
    pub fn expected_verdict(self) -> &'static str {
        match self {
            Self::Good => "ok",
            Self::Defect(_) => "reject",
        }
    }

    /// The folder a dataset stores the part in: `good` or `defect`.
    pub fn folder(self) -> &'static str {
        match self {
            Self::Good => "good",
            Self::Defect(_) => "defect",
        }
    }

    /// The label of a replayed image from its parent folder name (`good`, `defect`) and file
    /// stem: in `defect/`, a stem starting with a kind name (`scratch_000012`) gives that kind.
    /// `None` when the folder is neither.
    pub fn from_folder_and_stem(folder: &str, stem: &str) -> Option<Self> {
        match folder {
            "good" => Some(Self::Good),
            "defect" => Some(Self::Defect(DefectKind::ALL.into_iter().find(|kind| {
                stem.strip_prefix(kind.name())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with(['_', '-']))
            }))),
            _ => None,
        }
    }
}

impl fmt::Display for DefectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for PartLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A word that is not a part label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown part label `{found}`: expected one of good, scratch, crack, spot, missing, defect"
)]
pub struct UnknownLabel {
    /// The word that was given.
    pub found: String,
}

impl FromStr for PartLabel {
    type Err = UnknownLabel;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "defect" {
            return Ok(Self::Defect(None));
        }
        Self::ALL
            .into_iter()
            .find(|label| label.name() == s)
            .ok_or_else(|| UnknownLabel {
                found: s.to_owned(),
            })
    }
}

impl Serialize for PartLabel {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for PartLabel {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let word = String::deserialize(deserializer)?;
        word.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is the failure report.
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_display_fromstr_and_serde() {
        let mut all = PartLabel::ALL.to_vec();
        all.push(PartLabel::Defect(None));
        for label in all {
            assert_eq!(label.to_string().parse::<PartLabel>(), Ok(label));
            let yaml = serde_yaml::to_string(&label).unwrap();
            assert_eq!(yaml.trim(), label.name());
            assert_eq!(serde_yaml::from_str::<PartLabel>(&yaml).unwrap(), label);
        }
        let err = "scrach".parse::<PartLabel>().unwrap_err().to_string();
        assert!(err.contains("scrach") && err.contains("scratch"), "{err}");
    }

    #[test]
    fn verdicts_and_folders() {
        assert_eq!(PartLabel::Good.expected_verdict(), "ok");
        assert_eq!(PartLabel::Good.folder(), "good");
        for label in [PartLabel::Defect(None), PartLabel::ALL[3]] {
            assert_eq!(label.expected_verdict(), "reject");
            assert_eq!(label.folder(), "defect");
        }
    }

    #[test]
    fn labels_from_folders_and_stems() {
        let cases = [
            ("good", "scratch_1", Some(PartLabel::Good)),
            (
                "defect",
                "scratch_000012",
                Some(PartLabel::Defect(Some(DefectKind::Scratch))),
            ),
            (
                "defect",
                "missing",
                Some(PartLabel::Defect(Some(DefectKind::Missing))),
            ),
            ("defect", "part_7", Some(PartLabel::Defect(None))),
            ("defect", "spotless_1", Some(PartLabel::Defect(None))),
            ("images", "good_1", None),
            ("Good", "x", None),
        ];
        for (folder, stem, expected) in cases {
            assert_eq!(
                PartLabel::from_folder_and_stem(folder, stem),
                expected,
                "{folder}/{stem}"
            );
        }
    }
}
