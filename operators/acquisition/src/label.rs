//! Ground-truth labels of a stroke: what the simulator injected, or what a recording's file name
//! says. Labels are flat snake_case words (`normal`, `die_wear`, `clipping`…) in YAML, file names
//! and `manifest.csv`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A process fault: the press or its tooling is wrong, the part must be rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Worn die: the structural resonances drift down and their damping falls.
    DieWear,
    /// The ram hits twice: a second impact 20-60 ms after the first.
    DoubleHit,
    /// Cracked tooling: a new, higher mode (550-750 Hz) with modulation sidebands.
    CrackedTooling,
    /// Outer-race bearing defect: impulses at the BPFO (80-120 Hz) ringing a 2.5-3.5 kHz resonance.
    BearingOuterRace,
    /// No part in the die: a weak impact with a different mode mix.
    Misfeed,
}

/// A sensor fault: the data is not fit for a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SensorFaultKind {
    /// The accelerometer saturates: samples sit at +/- full scale.
    Clipping,
    /// The link drops samples: a run of exact zeros.
    Dropout,
    /// NaN / Inf samples (ADC or driver fault).
    Nan,
    /// The reading freezes at one value.
    Stuck,
    /// The DC level jumps mid-stroke (loose mounting, cable).
    OffsetJump,
}

impl FaultKind {
    /// Every process fault, in declaration order.
    pub const ALL: [Self; 5] = [
        Self::DieWear,
        Self::DoubleHit,
        Self::CrackedTooling,
        Self::BearingOuterRace,
        Self::Misfeed,
    ];

    /// The snake_case name (`die_wear`).
    pub fn name(self) -> &'static str {
        match self {
            Self::DieWear => "die_wear",
            Self::DoubleHit => "double_hit",
            Self::CrackedTooling => "cracked_tooling",
            Self::BearingOuterRace => "bearing_outer_race",
            Self::Misfeed => "misfeed",
        }
    }
}

impl SensorFaultKind {
    /// Every sensor fault, in declaration order.
    pub const ALL: [Self; 5] = [
        Self::Clipping,
        Self::Dropout,
        Self::Nan,
        Self::Stuck,
        Self::OffsetJump,
    ];

    /// The snake_case name (`offset_jump`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Clipping => "clipping",
            Self::Dropout => "dropout",
            Self::Nan => "nan",
            Self::Stuck => "stuck",
            Self::OffsetJump => "offset_jump",
        }
    }
}

/// Ground truth of one stroke.
///
/// Written and read as one flat snake_case word: `normal`, a [`FaultKind`] name or a
/// [`SensorFaultKind`] name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StrokeLabel {
    /// A healthy stroke.
    Normal,
    /// A process fault (expected verdict `reject`).
    Fault(FaultKind),
    /// A sensor fault (expected verdict `sensor_fault`).
    Sensor(SensorFaultKind),
}

impl StrokeLabel {
    /// Every label: `normal`, then the process faults, then the sensor faults.
    pub const ALL: [Self; 11] = [
        Self::Normal,
        Self::Fault(FaultKind::DieWear),
        Self::Fault(FaultKind::DoubleHit),
        Self::Fault(FaultKind::CrackedTooling),
        Self::Fault(FaultKind::BearingOuterRace),
        Self::Fault(FaultKind::Misfeed),
        Self::Sensor(SensorFaultKind::Clipping),
        Self::Sensor(SensorFaultKind::Dropout),
        Self::Sensor(SensorFaultKind::Nan),
        Self::Sensor(SensorFaultKind::Stuck),
        Self::Sensor(SensorFaultKind::OffsetJump),
    ];

    /// The snake_case name (`normal`, `die_wear`, `clipping`…).
    pub fn name(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::Fault(kind) => kind.name(),
            Self::Sensor(kind) => kind.name(),
        }
    }

    /// The verdict a correct pipeline gives this stroke, as the `Verdict` wire name:
    /// `ok`, `reject` or `sensor_fault`.
    pub fn expected_verdict(self) -> &'static str {
        match self {
            Self::Normal => "ok",
            Self::Fault(_) => "reject",
            Self::Sensor(_) => "sensor_fault",
        }
    }

    /// The label a recording's file stem starts with, if any: the stem equals a label name or
    /// starts with it followed by `_` or `-` (`die_wear_000012` -> `die_wear`). The longest
    /// matching name wins.
    pub fn from_file_stem(stem: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .filter(|label| {
                let name = label.name();
                stem.strip_prefix(name)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with(['_', '-']))
            })
            .max_by_key(|label| label.name().len())
            .copied()
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for SensorFaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for StrokeLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A word that is not a stroke label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown stroke label `{found}`: expected one of {}", label_names())]
pub struct UnknownLabel {
    /// The word that was given.
    pub found: String,
}

fn label_names() -> String {
    StrokeLabel::ALL.map(StrokeLabel::name).join(", ")
}

impl FromStr for StrokeLabel {
    type Err = UnknownLabel;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|label| label.name() == s)
            .ok_or_else(|| UnknownLabel {
                found: s.to_owned(),
            })
    }
}

impl Serialize for StrokeLabel {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for StrokeLabel {
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
        for label in StrokeLabel::ALL {
            assert_eq!(label.to_string().parse::<StrokeLabel>(), Ok(label));
            let yaml = serde_yaml::to_string(&label).unwrap();
            assert_eq!(yaml.trim(), label.name());
            assert_eq!(serde_yaml::from_str::<StrokeLabel>(&yaml).unwrap(), label);
        }
        for kind in FaultKind::ALL {
            assert_eq!(
                serde_yaml::to_string(&kind).unwrap().trim(),
                kind.to_string()
            );
        }
        for kind in SensorFaultKind::ALL {
            assert_eq!(
                serde_yaml::to_string(&kind).unwrap().trim(),
                kind.to_string()
            );
        }
    }

    #[test]
    fn unknown_label_names_the_word_and_the_choices() {
        let err = "die_waer".parse::<StrokeLabel>().unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("die_waer") && msg.contains("die_wear") && msg.contains("offset_jump")
        );
        assert!(serde_yaml::from_str::<StrokeLabel>("bogus").is_err());
    }

    #[test]
    fn expected_verdicts() {
        assert_eq!(StrokeLabel::Normal.expected_verdict(), "ok");
        assert_eq!(
            StrokeLabel::Fault(FaultKind::Misfeed).expected_verdict(),
            "reject"
        );
        assert_eq!(
            StrokeLabel::Sensor(SensorFaultKind::Nan).expected_verdict(),
            "sensor_fault"
        );
        // The words are the `Verdict` wire names.
        use forgeline_schemas::Verdict;
        for (label, verdict) in [
            (StrokeLabel::Normal, Verdict::Ok),
            (StrokeLabel::Fault(FaultKind::DieWear), Verdict::Reject),
            (
                StrokeLabel::Sensor(SensorFaultKind::Stuck),
                Verdict::SensorFault,
            ),
        ] {
            assert_eq!(
                serde_yaml::to_string(&verdict).unwrap().trim(),
                label.expected_verdict()
            );
        }
    }

    #[test]
    fn labels_from_file_stems() {
        let cases = [
            ("normal_000001", Some(StrokeLabel::Normal)),
            ("die_wear_12", Some(StrokeLabel::Fault(FaultKind::DieWear))),
            ("nan-3", Some(StrokeLabel::Sensor(SensorFaultKind::Nan))),
            (
                "offset_jump",
                Some(StrokeLabel::Sensor(SensorFaultKind::OffsetJump)),
            ),
            ("nancy_1", None),
            ("press07_2024", None),
            ("Normal_1", None),
        ];
        for (stem, expected) in cases {
            assert_eq!(StrokeLabel::from_file_stem(stem), expected, "{stem}");
        }
    }
}
