//! Error types: [`ConfigError`] (bad configuration, refused at start) and [`AcquisitionError`]
//! (one bad recording, stroke or output file; the caller logs it and carries on).

use std::fmt;
use std::path::PathBuf;

/// A configuration that was refused. Lists every problem at once, each naming the field, the value
/// found and what is expected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct ConfigError {
    /// Which configuration (`simulated source`, `replay source`, `pace`, `dataset plan`,
    /// `simulated camera`, `preprocess`…).
    pub what: &'static str,
    /// One line per problem: `field: found value, expected …`.
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid {} config ({} problem(s))",
            self.what,
            self.problems.len()
        )?;
        for problem in &self.problems {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}

/// Collects config problems so that validation reports all of them at once, then turns them
/// into one [`ConfigError`] (shared by the acquisition operators: press sources, pacing,
/// datasets, and the vision crate's cameras).
///
/// ```
/// use forgeline_acquisition::Problems;
/// let mut p = Problems::new("example");
/// p.check(3 > 0, || "count: found 3, expected > 0".into());
/// p.check(-1.0_f32 > 0.0, || "rate: found -1, expected > 0".into());
/// let e = p.finish().unwrap_err();
/// assert_eq!(e.problems, vec!["rate: found -1, expected > 0".to_owned()]);
/// ```
#[derive(Debug)]
pub struct Problems {
    what: &'static str,
    list: Vec<String>,
}

impl Problems {
    /// No problem yet, for the configuration named `what`.
    #[must_use]
    pub fn new(what: &'static str) -> Self {
        Self {
            what,
            list: Vec::new(),
        }
    }

    /// Records `problem` when `ok` is false.
    pub fn check(&mut self, ok: bool, problem: impl FnOnce() -> String) {
        if !ok {
            self.list.push(problem());
        }
    }

    /// Records `problem`.
    pub fn push(&mut self, problem: String) {
        self.list.push(problem);
    }

    /// Records the problems of a nested configuration's check, each prefixed (`pace.`).
    pub fn extend(&mut self, prefix: &str, other: Result<(), ConfigError>) {
        if let Err(e) = other {
            self.list
                .extend(e.problems.into_iter().map(|p| format!("{prefix}{p}")));
        }
    }

    /// `Ok` when nothing was recorded, else every problem in one [`ConfigError`].
    ///
    /// # Errors
    /// The recorded problems.
    pub fn finish(self) -> Result<(), ConfigError> {
        if self.list.is_empty() {
            Ok(())
        } else {
            Err(ConfigError {
                what: self.what,
                problems: self.list,
            })
        }
    }
}

/// One failed item: a recording that cannot be used, a stroke that cannot be cut, a file that
/// cannot be written. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum AcquisitionError {
    /// The file or directory cannot be opened, read or written.
    #[error("{}: {action}: {source}", .file.display())]
    Io {
        /// The file or directory.
        file: PathBuf,
        /// What was being done (`cannot open`, `cannot list directory`…).
        action: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The WAV header or data is malformed.
    #[error("{}: malformed WAV: {reason}", .file.display())]
    MalformedWav {
        /// The recording.
        file: PathBuf,
        /// What the WAV decoder said.
        reason: String,
    },
    /// The recording's sample rate is not the configured one.
    #[error(
        "{}: wrong sample rate: found {found} Hz, expected {expected} Hz (resample the recording or set `sample_rate_hz`)",
        .file.display()
    )]
    WrongSampleRate {
        /// The recording.
        file: PathBuf,
        /// The configured rate in Hz.
        expected: f32,
        /// The recording's rate in Hz.
        found: f32,
    },
    /// The WAV has more than one channel.
    #[error("{}: {channels} channels, expected mono (1 channel)", .file.display())]
    NotMono {
        /// The recording.
        file: PathBuf,
        /// Channels found.
        channels: u16,
    },
    /// The WAV sample format is not float32 or int16.
    #[error("{}: unsupported WAV sample format {format}, expected float32 or int16", .file.display())]
    UnsupportedFormat {
        /// The recording.
        file: PathBuf,
        /// The format found (`int 24-bit`…).
        format: String,
    },
    /// A one-stroke-per-file recording does not hold exactly one stroke.
    #[error(
        "{}: wrong length: found {found} samples, expected {expected} (one stroke per file; use `segmentation: trigger` for continuous recordings)",
        .file.display()
    )]
    WrongLength {
        /// The recording.
        file: PathBuf,
        /// `samples_per_stroke`.
        expected: usize,
        /// Samples in the file.
        found: usize,
    },
    /// A CSV line is not a number, or not `time,value`.
    #[error("{}:{line}: unreadable CSV line `{text}`: {reason}", .file.display())]
    BadCsvLine {
        /// The recording.
        file: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The line's text (first 80 characters).
        text: String,
        /// What is wrong and what is expected.
        reason: String,
    },
    /// A continuous recording ends in the middle of a triggered stroke.
    #[error(
        "{}: stroke triggered at sample {start} is cut short: {found} samples left, expected {expected}",
        .file.display()
    )]
    TruncatedStroke {
        /// The recording.
        file: PathBuf,
        /// First sample of the stroke (after the pre-trigger).
        start: usize,
        /// `samples_per_stroke`.
        expected: usize,
        /// Samples left in the recording.
        found: usize,
    },
    /// A continuous recording has no sample above the trigger level.
    #[error(
        "{}: no stroke found: no sample above the trigger level {level_g} g in {samples} samples",
        .file.display()
    )]
    NoTrigger {
        /// The recording.
        file: PathBuf,
        /// `trigger_level_g`.
        level_g: f32,
        /// Samples in the recording.
        samples: usize,
    },
    /// A WAV could not be written.
    #[error("{}: cannot write WAV: {reason}", .file.display())]
    WriteWav {
        /// The output file.
        file: PathBuf,
        /// What the WAV encoder said.
        reason: String,
    },
    /// The configuration was refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl AcquisitionError {
    /// The file the error is about, if any (every variant but `Config`).
    pub fn file(&self) -> Option<&std::path::Path> {
        match self {
            Self::Io { file, .. }
            | Self::MalformedWav { file, .. }
            | Self::WrongSampleRate { file, .. }
            | Self::NotMono { file, .. }
            | Self::UnsupportedFormat { file, .. }
            | Self::WrongLength { file, .. }
            | Self::BadCsvLine { file, .. }
            | Self::TruncatedStroke { file, .. }
            | Self::NoTrigger { file, .. }
            | Self::WriteWav { file, .. } => Some(file),
            Self::Config(_) => None,
        }
    }
}
