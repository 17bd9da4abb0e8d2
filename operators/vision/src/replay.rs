//! Replay of part images: PNG, JPEG and TIFF files, greyscale or RGB, any size.
//!
//! Paths are files (played in the given order) and directories (their image files, recursively,
//! sorted by path). 16-bit images are scaled to 8 bits, an alpha channel is dropped, grey+alpha
//! becomes grey. A file that cannot be used (corrupt, truncated, not PNG/JPEG/TIFF, wrong channel
//! count) is one `Err` naming the file; the next call plays the next file. A file whose parent
//! folder is `good` or `defect` gets that label (and the defect kind from a `scratch_…` style name),
//! so a dataset written by [`crate::generate_dataset`] replays with its ground truth.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageError, ImageReader};
use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, Problems};
use crate::{Camera, PartLabel, RawFrame, VisionError};

/// File extensions a directory listing picks up (lower case). Decodable: png, jpg, jpeg, tif,
/// tiff; the others are listed so that a stray BMP in a folder is reported, not silently skipped.
const IMAGE_EXTENSIONS: [&str; 12] = [
    "png", "jpg", "jpeg", "tif", "tiff", "bmp", "gif", "webp", "pgm", "ppm", "pnm", "tga",
];

/// Configuration of the image replay camera.
///
/// ```yaml
/// paths: [/data/optical/held_out]
/// loop: false
/// channels: 1
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplayConfig {
    /// Image files (in the given order) and directories (their image files, recursively, sorted
    /// by path). Required, non-empty.
    pub paths: Vec<PathBuf>,
    /// Start again from the first file when all are played (frame numbers keep counting). Stops
    /// anyway after a pass that yields no frame. Default false.
    #[serde(rename = "loop")]
    pub looping: bool,
    /// Colour channels every image must have (1 grey or 3 RGB, after dropping alpha); an image
    /// with the other count is an error naming it. Default: none, any image is played as it is.
    pub channels: Option<u32>,
}

impl ReplayConfig {
    /// A config playing `paths` once, any channel count.
    pub fn from_paths<P: Into<PathBuf>>(paths: impl IntoIterator<Item = P>) -> Self {
        Self {
            paths: paths.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }
}

/// Plays image files as frames.
#[derive(Debug, Clone)]
pub struct ReplayCamera {
    config: ReplayConfig,
    files: Vec<PathBuf>,
    next_file: usize,
    next_seq: u64,
    frames_this_pass: u64,
}

impl ReplayCamera {
    /// Validates the config and lists the files to play (directories are read now).
    ///
    /// # Errors
    /// [`ConfigError`] listing every problem: no paths, a path that does not exist, a directory
    /// that cannot be read or holds no image file, a bad `channels`.
    pub fn new(config: ReplayConfig) -> Result<Self, ConfigError> {
        let mut problems = Problems::new("replay camera");
        problems.check(!config.paths.is_empty(), || {
            "paths: empty, expected at least one image file or directory".into()
        });
        if let Some(channels) = config.channels {
            problems.check(matches!(channels, 1 | 3), || {
                format!("channels: found {channels}, expected 1 (grey) or 3 (RGB)")
            });
        }
        let mut files = Vec::new();
        for path in &config.paths {
            if path.is_dir() {
                let before = files.len();
                if let Err(e) = list_images(path, &mut files) {
                    problems.check(false, || {
                        format!("paths: cannot list directory {}: {e}", path.display())
                    });
                }
                problems.check(files.len() > before, || {
                    format!(
                        "paths: directory {} holds no image file (expected .png, .jpg, .jpeg, .tif or .tiff)",
                        path.display()
                    )
                });
            } else if path.is_file() {
                files.push(path.clone());
            } else {
                problems.check(false, || {
                    format!("paths: {} does not exist", path.display())
                });
            }
        }
        problems.finish()?;
        Ok(Self {
            config,
            files,
            next_file: 0,
            next_seq: 0,
            frames_this_pass: 0,
        })
    }

    /// The files played, in order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }
}

impl Camera for ReplayCamera {
    fn next_frame(&mut self) -> Option<Result<RawFrame, VisionError>> {
        if self.next_file >= self.files.len() {
            if !self.config.looping || self.frames_this_pass == 0 {
                return None;
            }
            self.next_file = 0;
            self.frames_this_pass = 0;
        }
        let path = &self.files[self.next_file];
        self.next_file += 1;
        let result =
            read_image(path, self.config.channels).map(|(width, height, channels, data)| {
                let seq = self.next_seq;
                self.next_seq += 1;
                self.frames_this_pass += 1;
                RawFrame {
                    seq,
                    width,
                    height,
                    channels,
                    data,
                    source: path.display().to_string(),
                    label: label_of(path),
                }
            });
        Some(result)
    }

    fn describe(&self) -> String {
        format!(
            "replay camera: {} file(s), next file {}{}, {} frame(s) played",
            self.files.len(),
            self.next_file,
            if self.config.looping {
                " (looping)"
            } else {
                ""
            },
            self.next_seq
        )
    }
}

/// Appends the image files under `dir` (recursively), sorted by path.
fn list_images(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries = std::fs::read_dir(dir)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<std::io::Result<Vec<_>>>()?;
    entries.sort();
    for path in entries {
        if path.is_dir() {
            list_images(&path, files)?;
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        {
            files.push(path);
        }
    }
    Ok(())
}

fn label_of(path: &Path) -> Option<PartLabel> {
    let folder = path.parent()?.file_name()?.to_str()?;
    let stem = path.file_stem()?.to_str()?;
    PartLabel::from_folder_and_stem(folder, stem)
}

/// Decodes one image to 8-bit grey or RGB: `(width, height, channels, pixels)`.
///
/// # Errors
/// Every error names `path`: [`VisionError::Io`], [`VisionError::UnsupportedFormat`],
/// [`VisionError::Corrupt`], [`VisionError::WrongChannels`].
pub fn read_image(
    path: &Path,
    expected_channels: Option<u32>,
) -> Result<(u32, u32, u32, Vec<u8>), VisionError> {
    let bytes = std::fs::read(path).map_err(|source| VisionError::Io {
        file: path.to_owned(),
        action: "cannot read",
        source,
    })?;
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|source| VisionError::Io {
            file: path.to_owned(),
            action: "cannot read",
            source,
        })?;
    if reader.format().is_none() {
        return Err(VisionError::UnsupportedFormat {
            file: path.to_owned(),
            reason: "the content is not a recognised image format".into(),
        });
    }
    let image = reader.decode().map_err(|e| match e {
        ImageError::Unsupported(reason) => VisionError::UnsupportedFormat {
            file: path.to_owned(),
            reason: reason.to_string(),
        },
        other => VisionError::Corrupt {
            file: path.to_owned(),
            reason: other.to_string(),
        },
    })?;
    let colour = image.color();
    let channels = if colour.has_color() { 3 } else { 1 };
    if let Some(expected) = expected_channels
        && expected != channels
    {
        return Err(VisionError::WrongChannels {
            file: path.to_owned(),
            found: channels,
            colour: format!("{colour:?}"),
            expected,
        });
    }
    let (width, height) = (image.width(), image.height());
    let data = to_8bit(image, channels);
    Ok((width, height, channels, data))
}

fn to_8bit(image: DynamicImage, channels: u32) -> Vec<u8> {
    match (channels, image) {
        (1, DynamicImage::ImageLuma8(buffer)) => buffer.into_raw(),
        (1, other) => other.into_luma8().into_raw(),
        (_, DynamicImage::ImageRgb8(buffer)) => buffer.into_raw(),
        (_, other) => other.into_rgb8().into_raw(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is the failure report.
mod tests {
    use super::*;
    use image::{ImageBuffer, Luma, LumaA, Rgb, Rgba};

    fn gradient(w: u32, h: u32) -> impl Fn(u32, u32) -> u8 {
        move |x, y| ((x * 200 / w.max(1)) + (y * 50 / h.max(1))) as u8
    }

    fn write_grey(path: &Path, w: u32, h: u32) -> Vec<u8> {
        let g = gradient(w, h);
        let img = ImageBuffer::from_fn(w, h, |x, y| Luma([g(x, y)]));
        img.save(path).unwrap();
        img.into_raw()
    }

    fn write_rgb(path: &Path, w: u32, h: u32) -> Vec<u8> {
        let g = gradient(w, h);
        let img = ImageBuffer::from_fn(w, h, |x, y| Rgb([g(x, y), 255 - g(x, y), 77]));
        img.save(path).unwrap();
        img.into_raw()
    }

    fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| f64::from(x.abs_diff(*y)))
            .sum::<f64>()
            / a.len() as f64
    }

    fn play_one(path: &Path) -> Result<RawFrame, VisionError> {
        let mut camera = ReplayCamera::new(ReplayConfig::from_paths([path])).unwrap();
        camera.next_frame().unwrap()
    }

    #[test]
    fn png_and_tiff_round_trip_exactly_grey_and_rgb() {
        let dir = tempfile::tempdir().unwrap();
        for ext in ["png", "tif", "tiff"] {
            let path = dir.path().join(format!("grey.{ext}"));
            let pixels = write_grey(&path, 37, 21);
            let frame = play_one(&path).unwrap();
            assert_eq!(
                (frame.width, frame.height, frame.channels),
                (37, 21, 1),
                "{ext}"
            );
            assert_eq!(frame.data, pixels, "{ext}");
            assert_eq!(frame.source, path.display().to_string());

            let path = dir.path().join(format!("colour.{ext}"));
            let pixels = write_rgb(&path, 19, 40);
            let frame = play_one(&path).unwrap();
            assert_eq!(
                (frame.width, frame.height, frame.channels),
                (19, 40, 3),
                "{ext}"
            );
            assert_eq!(frame.data, pixels, "{ext}");
        }
    }

    #[test]
    fn jpeg_round_trips_within_compression_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("part.jpg");
        let pixels = write_grey(&path, 64, 48);
        let frame = play_one(&path).unwrap();
        assert_eq!((frame.width, frame.height, frame.channels), (64, 48, 1));
        assert!(mean_abs_diff(&frame.data, &pixels) < 2.0);
        let path = dir.path().join("part.jpeg");
        let pixels = write_rgb(&path, 64, 48);
        let frame = play_one(&path).unwrap();
        assert_eq!(frame.channels, 3);
        assert!(mean_abs_diff(&frame.data, &pixels) < 4.0);
    }

    #[test]
    fn sixteen_bit_and_alpha_are_converted() {
        let dir = tempfile::tempdir().unwrap();
        for ext in ["png", "tif"] {
            let path = dir.path().join(format!("deep.{ext}"));
            let img: ImageBuffer<Luma<u16>, Vec<u16>> =
                ImageBuffer::from_fn(8, 4, |x, y| Luma([(x * 8000 + y * 300) as u16]));
            img.save(&path).unwrap();
            let frame = play_one(&path).unwrap();
            assert_eq!(frame.channels, 1);
            for (i, value) in frame.data.iter().enumerate() {
                let (x, y) = (i as u32 % 8, i as u32 / 8);
                let expected = f64::from(x * 8000 + y * 300) / 257.0;
                assert!(
                    (f64::from(*value) - expected).abs() <= 1.0,
                    "{ext} {i}: {value} vs {expected}"
                );
            }

            let path = dir.path().join(format!("alpha.{ext}"));
            let img =
                ImageBuffer::from_fn(5, 3, |x, y| Rgba([x as u8 * 10, y as u8 * 20, 30, 128]));
            img.save(&path).unwrap();
            let frame = play_one(&path).unwrap();
            assert_eq!(frame.channels, 3, "{ext}");
            assert_eq!(&frame.data[..6], &[0, 0, 30, 10, 0, 30], "{ext}");

            let path = dir.path().join(format!("rgba16.{ext}"));
            let img: ImageBuffer<Rgba<u16>, Vec<u16>> =
                ImageBuffer::from_fn(2, 2, |_, _| Rgba([65535, 0, 32896, 65535]));
            img.save(&path).unwrap();
            let frame = play_one(&path).unwrap();
            assert_eq!(frame.data, [255, 0, 128].repeat(4), "{ext}");
        }
        let path = dir.path().join("grey_alpha.png");
        ImageBuffer::from_fn(3, 1, |x, _| LumaA([x as u8 * 50, 7]))
            .save(&path)
            .unwrap();
        let frame = play_one(&path).unwrap();
        assert_eq!((frame.channels, frame.data.clone()), (1, vec![0, 50, 100]));
    }

    #[test]
    fn bad_files_are_errors_naming_the_file_and_the_next_file_still_plays() {
        let dir = tempfile::tempdir().unwrap();
        let good = |name: &str| {
            let path = dir.path().join(name);
            write_grey(&path, 16, 16);
            path
        };
        let a = good("a.png");
        // Truncated PNG: the first half of a valid one.
        let full = std::fs::read(&a).unwrap();
        let truncated = dir.path().join("b_truncated.png");
        std::fs::write(&truncated, &full[..full.len() / 2]).unwrap();
        // Corrupt: valid signature and header, garbage after.
        let mut garbage = full.clone();
        for byte in &mut garbage[40..] {
            *byte ^= 0x5A;
        }
        let corrupt = dir.path().join("c_corrupt.png");
        std::fs::write(&corrupt, &garbage).unwrap();
        // Unsupported: a BMP (the decoder is built without it) and a text file.
        let bmp = dir.path().join("d_part.bmp");
        let mut bmp_bytes = b"BM".to_vec();
        bmp_bytes.extend_from_slice(&[0u8; 60]);
        std::fs::write(&bmp, &bmp_bytes).unwrap();
        let text = dir.path().join("e_notes.png");
        std::fs::write(&text, "not an image at all").unwrap();
        let truncated_jpeg = dir.path().join("f_cut.jpg");
        let jpeg = dir.path().join("tmp.jpg");
        write_grey(&jpeg, 32, 32);
        let bytes = std::fs::read(&jpeg).unwrap();
        std::fs::remove_file(&jpeg).unwrap();
        std::fs::write(&truncated_jpeg, &bytes[..bytes.len() / 3]).unwrap();
        let z = good("z.png");
        std::fs::write(dir.path().join("manifest.csv"), "ignored").unwrap();

        let mut camera = ReplayCamera::new(ReplayConfig::from_paths([dir.path()])).unwrap();
        assert_eq!(camera.files().len(), 7);
        let mut results = Vec::new();
        while let Some(result) = camera.next_frame() {
            results.push(result);
        }
        assert_eq!(results.len(), 7);
        let first = results[0].as_ref().unwrap();
        assert_eq!(
            (first.seq, first.source.clone()),
            (0, a.display().to_string())
        );
        for (result, (file, kind)) in results[1..6].iter().zip([
            (&truncated, "corrupt"),
            (&corrupt, "corrupt"),
            (&bmp, "unsupported"),
            (&text, "unsupported"),
            (&truncated_jpeg, "corrupt"),
        ]) {
            let err = result.as_ref().unwrap_err();
            assert_eq!(err.file(), Some(file.as_path()));
            let msg = err.to_string();
            assert!(msg.contains(&file.display().to_string()), "{msg}");
            match kind {
                "corrupt" => assert!(matches!(err, VisionError::Corrupt { .. }), "{msg}"),
                _ => assert!(
                    matches!(err, VisionError::UnsupportedFormat { .. }),
                    "{msg}"
                ),
            }
        }
        let last = results[6].as_ref().unwrap();
        assert_eq!(
            (last.seq, last.source.clone()),
            (1, z.display().to_string())
        );
        assert!(
            camera.describe().contains("7 file(s)"),
            "{}",
            camera.describe()
        );
    }

    #[test]
    fn wrong_channel_count_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let rgb = dir.path().join("rgb.png");
        write_rgb(&rgb, 4, 4);
        let grey = dir.path().join("grey.png");
        write_grey(&grey, 4, 4);
        let mut config = ReplayConfig::from_paths([&rgb, &grey]);
        config.channels = Some(1);
        let mut camera = ReplayCamera::new(config).unwrap();
        let err = camera.next_frame().unwrap().unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("rgb.png") && msg.contains("found 3") && msg.contains("expected 1"),
            "{msg}"
        );
        assert_eq!(camera.next_frame().unwrap().unwrap().channels, 1);
        assert!(camera.next_frame().is_none());
    }

    #[test]
    fn labels_come_from_the_folder_and_looping_keeps_counting() {
        let dir = tempfile::tempdir().unwrap();
        for folder in ["good", "defect", "other"] {
            std::fs::create_dir(dir.path().join(folder)).unwrap();
        }
        write_grey(&dir.path().join("good/p1.png"), 4, 4);
        write_grey(&dir.path().join("defect/crack_2.png"), 4, 4);
        write_grey(&dir.path().join("defect/p3.png"), 4, 4);
        write_grey(&dir.path().join("other/p4.png"), 4, 4);
        let mut config = ReplayConfig::from_paths([dir.path()]);
        config.looping = true;
        let mut camera = ReplayCamera::new(config).unwrap();
        let labels: Vec<_> = (0..6)
            .map(|_| {
                let frame = camera.next_frame().unwrap().unwrap();
                (frame.seq, frame.label.map(|l| l.to_string()))
            })
            .collect();
        let s = |v: &str| Some(v.to_owned());
        assert_eq!(
            labels,
            vec![
                (0, s("crack")),
                (1, s("defect")),
                (2, s("good")),
                (3, None),
                (4, s("crack")),
                (5, s("defect"))
            ]
        );
    }

    #[test]
    fn looping_over_only_bad_files_stops_after_one_pass() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junk.png");
        std::fs::write(&path, "junk").unwrap();
        let mut config = ReplayConfig::from_paths([&path]);
        config.looping = true;
        let mut camera = ReplayCamera::new(config).unwrap();
        assert!(camera.next_frame().unwrap().is_err());
        assert!(camera.next_frame().is_none());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        #[test]
        fn arbitrary_bytes_never_panic_and_errors_name_the_file(
            prefix in proptest::sample::select(vec![
                b"\x89PNG\r\n\x1a\n".to_vec(),
                b"\xff\xd8\xff\xe0".to_vec(),
                b"II*\0".to_vec(),
                Vec::new(),
            ]),
            tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("fuzz.png");
            std::fs::write(&path, [prefix, tail].concat()).unwrap();
            match read_image(&path, None) {
                Ok((w, h, c, data)) => proptest::prop_assert_eq!(data.len(), (w * h * c) as usize),
                Err(e) => proptest::prop_assert_eq!(e.file(), Some(path.as_path())),
            }
        }
    }

    #[test]
    fn config_reports_every_problem() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        let config = ReplayConfig {
            paths: vec![empty.clone(), dir.path().join("nope.png")],
            looping: false,
            channels: Some(2),
        };
        let err = ReplayCamera::new(config).unwrap_err();
        let msg = err.to_string();
        assert_eq!(err.problems.len(), 3, "{msg}");
        assert!(
            msg.contains("holds no image file") && msg.contains("nope.png does not exist"),
            "{msg}"
        );
        assert!(msg.contains("channels: found 2"), "{msg}");
        let err = ReplayCamera::new(ReplayConfig::default()).unwrap_err();
        assert!(err.to_string().contains("paths: empty"));
        let yaml: ReplayConfig = serde_yaml::from_str("paths: [a]\nchannels: 3\n").unwrap();
        assert_eq!((yaml.channels, yaml.looping), (Some(3), false));
        assert!(serde_yaml::from_str::<ReplayConfig>("paths: [a]\nlooping: true\n").is_err());
    }
}
