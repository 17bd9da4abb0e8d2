//! Error types: [`ConfigError`] (bad configuration, refused at start) and [`VisionError`] (one bad
//! image, frame or output file; the caller logs it and carries on with the next).

use std::path::{Path, PathBuf};

pub use forgeline_acquisition::ConfigError;
pub(crate) use forgeline_acquisition::Problems;

/// One failed item: an image that cannot be used, a frame that does not match its dimensions, a
/// file that cannot be written. Every variant names the file or the frame's source.
#[derive(Debug, thiserror::Error)]
pub enum VisionError {
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
    /// The image is corrupt or truncated.
    #[error("{}: corrupt or truncated image: {reason}", .file.display())]
    Corrupt {
        /// The image file.
        file: PathBuf,
        /// What the decoder said.
        reason: String,
    },
    /// The file is not a PNG, JPEG or TIFF, or uses a variant of them the decoder cannot read.
    #[error("{}: unsupported image format: {reason} (expected PNG, JPEG or TIFF)", .file.display())]
    UnsupportedFormat {
        /// The file.
        file: PathBuf,
        /// What the decoder said.
        reason: String,
    },
    /// The image's colour channels (alpha dropped) are not the ones the replay expects.
    #[error(
        "{}: wrong channel count: found {found} ({colour}), expected {expected} (set `channels` in the replay config, or let `preprocess` convert)",
        .file.display()
    )]
    WrongChannels {
        /// The image file.
        file: PathBuf,
        /// Colour channels found (1 grey, 3 RGB).
        found: u32,
        /// The decoder's colour type (`La8`, `Rgba16`…).
        colour: String,
        /// `channels` of the replay config.
        expected: u32,
    },
    /// A frame whose pixel buffer does not match `width * height * channels`, or whose
    /// dimensions are unusable (zero, or a channel count other than 1 or 3).
    #[error("frame from `{origin}`: {width}x{height}x{channels} with {len} bytes: {reason}")]
    BadFrame {
        /// Where the frame came from (`RawFrame::source`, a node input).
        origin: String,
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// Channels.
        channels: u32,
        /// Bytes in the pixel buffer.
        len: usize,
        /// What is wrong and what is expected.
        reason: String,
    },
    /// An image could not be written.
    #[error("{}: cannot write image: {reason}", .file.display())]
    Encode {
        /// The output file.
        file: PathBuf,
        /// What the encoder said.
        reason: String,
    },
    /// A `manifest.csv` line is malformed.
    #[error("{}:{line}: bad manifest line `{text}`: {reason}", .file.display())]
    BadManifestLine {
        /// The manifest.
        file: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The line's text (first 80 characters).
        text: String,
        /// What is wrong and what is expected.
        reason: String,
    },
    /// The configuration was refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl VisionError {
    /// The file the error is about, if any.
    pub fn file(&self) -> Option<&Path> {
        match self {
            Self::Io { file, .. }
            | Self::Corrupt { file, .. }
            | Self::UnsupportedFormat { file, .. }
            | Self::WrongChannels { file, .. }
            | Self::Encode { file, .. }
            | Self::BadManifestLine { file, .. } => Some(file),
            Self::BadFrame { .. } | Self::Config(_) => None,
        }
    }
}
