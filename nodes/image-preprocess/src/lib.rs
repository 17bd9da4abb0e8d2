//! `image-preprocess`: one `frame` in, one `tensor` out, ready for the model: bilinear resize
//! (stretch / centre crop / letterbox), grey <-> RGB, `(p/255 - mean) / std`, NCHW or NHWC, f32
//! or u8. The target geometry comes from the model directory (`model_dir`: its `model.yml`
//! input shape and layout, and its optional `preprocess:` section for `resize`, `mean`, `std`,
//! `pad`, covered by the model's signature like the rest of `model.yml`), so a new model needs
//! no graph edit; explicit keys override.
//!
//! Pixels are read in place from the received message (zero-copy) and written into one reused
//! buffer: the preprocessing itself does not allocate per frame after the first frame of a given
//! size (the outgoing Arrow message is the only per-frame allocation).

use forgeline_inference::{ModelDir, PreprocessMeta, ResizeKind};
use forgeline_runtime::arrow::array::{Array, UInt8Array};
use forgeline_runtime::columns::{Header, u32s};
use forgeline_runtime::{ConfigProblem, InitContext, Input, Outbox, Stage, StageError, Validate};
use forgeline_schemas::{Frame, Tensor, frame};
use forgeline_vision::{DType, FrameRef, Layout, PreprocessConfig, Preprocessor, ResizeMode};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The file older model directories shipped their preprocessing in, outside the sha256 list
/// and signature; it is refused now (the settings live in `model.yml` `preprocess:`).
pub const LEGACY_PREPROCESS_FILE: &str = "preprocess.yml";

/// Configuration of `image-preprocess` (the node's `FORGELINE_CONFIG`). Every key is optional;
/// without `model_dir` the defaults are those of [`PreprocessConfig`] (224x224x1 f32 NCHW).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Model directory: the input size, channels and layout come from its `model.yml`
    /// (`inputs[0].shape` `[-1, C, H, W]` or `[-1, H, W, C]`, `inputs[0].layout`), and
    /// `resize`/`mean`/`std`/`pad` from its `preprocess:` section when present. Default none.
    pub model_dir: Option<PathBuf>,
    /// Target width (default: the model's, else 224).
    pub width: Option<u32>,
    /// Target height (default: the model's, else 224).
    pub height: Option<u32>,
    /// Output channels 1 or 3 (default: the model's, else 1).
    pub channels: Option<u32>,
    /// `nchw` or `nhwc` (default: the model's, else `nchw`).
    pub layout: Option<Layout>,
    /// `f32` or `u8` (default `f32`).
    pub dtype: Option<DType>,
    /// `stretch`, `center_crop`, `letterbox` (default: the model's `preprocess.resize`, else
    /// `stretch`).
    pub resize: Option<ResizeMode>,
    /// Per-channel mean, 0..1 scale (default: the model's `preprocess.mean`, else `[0.0]`).
    pub mean: Option<Vec<f32>>,
    /// Per-channel std, 0..1 scale (default: the model's `preprocess.std`, else `[1.0]`).
    pub std: Option<Vec<f32>>,
    /// Letterbox border, raw pixel value (default: the model's `preprocess.pad`, else 0).
    pub pad: Option<u8>,
}

fn problem(field: &str, reason: impl Into<String>) -> ConfigProblem {
    ConfigProblem {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Size, channels and layout from a model's input spec.
fn model_geometry(model: &ModelDir) -> Result<(u32, u32, u32, Layout), String> {
    let input = model.input();
    let layout = match input.layout.as_deref() {
        None | Some("nchw") => Layout::Nchw,
        Some("nhwc") => Layout::Nhwc,
        Some(other) => {
            return Err(format!(
                "model input layout `{other}` is not an image layout, expected nchw or nhwc"
            ));
        }
    };
    let dims: Vec<u32> = input
        .shape
        .iter()
        .skip(1)
        .filter_map(|d| u32::try_from(*d).ok())
        .collect();
    if input.shape.len() != 4 || dims.len() != 3 {
        return Err(format!(
            "model input shape {:?} is not an image tensor, expected [-1, C, H, W] or [-1, H, W, C]",
            input.shape
        ));
    }
    Ok(match layout {
        Layout::Nchw => (dims[2], dims[1], dims[0], layout),
        Layout::Nhwc => (dims[1], dims[0], dims[2], layout),
    })
}

impl Config {
    /// The preprocessor settings this config resolves to (reading the model directory, relative
    /// paths from the current directory).
    ///
    /// # Errors
    /// Every problem found, each naming its field.
    pub fn resolve(&self) -> Result<PreprocessConfig, Vec<ConfigProblem>> {
        let mut base = PreprocessConfig::default();
        let mut problems = Vec::new();
        if let Some(dir) = &self.model_dir {
            match ModelDir::load(dir) {
                Ok(model) => {
                    match model_geometry(&model) {
                        Ok((w, h, c, layout)) => {
                            base.width = w;
                            base.height = h;
                            base.channels = c;
                            base.layout = layout;
                        }
                        Err(reason) => problems.push(problem("model_dir", reason)),
                    }
                    if let Some(p) = &model.meta().preprocess {
                        apply_model_preprocess(&mut base, p);
                    }
                }
                Err(e) => problems.push(problem("model_dir", e.to_string())),
            }
            if let Some(reason) = legacy_preprocess_file(dir) {
                problems.push(problem("model_dir", reason));
            }
        }
        let config = PreprocessConfig {
            width: self.width.unwrap_or(base.width),
            height: self.height.unwrap_or(base.height),
            channels: self.channels.unwrap_or(base.channels),
            layout: self.layout.unwrap_or(base.layout),
            dtype: self.dtype.unwrap_or(base.dtype),
            resize: self.resize.unwrap_or(base.resize),
            mean: self.mean.clone().unwrap_or(base.mean),
            std: self.std.clone().unwrap_or(base.std),
            pad: self.pad.unwrap_or(base.pad),
        };
        if self.model_dir.is_some() && problems.is_empty() {
            let checks = [
                ("width", self.width, base.width),
                ("height", self.height, base.height),
                ("channels", self.channels, base.channels),
            ];
            for (field, set, model) in checks {
                if let Some(v) = set
                    && v != model
                {
                    problems.push(problem(
                        field,
                        format!("found {v}, but the model's input expects {model}: remove the key or pick another model"),
                    ));
                }
            }
        }
        if let Err(e) = config.validate() {
            problems.extend(e.problems.into_iter().map(|p| problem("preprocess", p)));
        }
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(problems)
        }
    }
}

/// The model's `preprocess:` settings over the defaults (keys it leaves out keep them).
fn apply_model_preprocess(base: &mut PreprocessConfig, p: &PreprocessMeta) {
    if let Some(resize) = p.resize {
        base.resize = match resize {
            ResizeKind::Stretch => ResizeMode::Stretch,
            ResizeKind::CenterCrop => ResizeMode::CenterCrop,
            ResizeKind::Letterbox => ResizeMode::Letterbox,
        };
    }
    if let Some(mean) = &p.mean {
        base.mean.clone_from(mean);
    }
    if let Some(std) = &p.std {
        base.std.clone_from(std);
    }
    if let Some(pad) = p.pad {
        base.pad = pad;
    }
}

/// Why a model directory that still ships `preprocess.yml` is refused: its settings would not
/// be covered by the sha256 list and signature, and silently ignoring them could change the
/// normalisation the model was trained with.
fn legacy_preprocess_file(dir: &Path) -> Option<String> {
    let path = dir.join(LEGACY_PREPROCESS_FILE);
    path.exists().then(|| {
        format!(
            "{} is no longer read: move its keys into model.yml under `preprocess:` (covered by the model's signature) and delete the file",
            path.display()
        )
    })
}

impl Validate for Config {
    fn validate(&self) -> Vec<ConfigProblem> {
        self.resolve().err().unwrap_or_default()
    }
}

/// The preprocessing stage.
pub struct ImagePreprocess {
    preprocessor: Preprocessor,
    /// The outgoing row; its `data` is the reused output buffer.
    row: Tensor,
}

impl ImagePreprocess {
    /// The settings in use.
    pub fn config(&self) -> &PreprocessConfig {
        self.preprocessor.config()
    }
}

impl Stage for ImagePreprocess {
    type Config = Config;
    const KIND: &'static str = "image-preprocess";

    fn new(config: Config, _ctx: &InitContext) -> eyre::Result<Self> {
        let resolved = config.resolve().map_err(|problems| {
            let lines: Vec<String> = problems
                .iter()
                .map(|p| format!("{}: {}", p.field, p.reason))
                .collect();
            eyre::eyre!("invalid config: {}", lines.join("; "))
        })?;
        let preprocessor = Preprocessor::new(resolved).map_err(|e| eyre::eyre!("{e}"))?;
        let shape = preprocessor.output_shape();
        tracing::info!(dims = ?shape.dims(), dtype = shape.dtype.name(), layout = shape.layout.name(), "preprocessor ready");
        let row = shape.to_tensor(
            forgeline_schemas::Correlation::default(),
            Vec::with_capacity(shape.byte_len()),
            String::new(),
        );
        Ok(Self { preprocessor, row })
    }

    fn on_input(&mut self, input: &Input<'_>, out: &mut Outbox) -> Result<(), StageError> {
        // The in-place form (under dora, from `camera-acquisition`): one frame per payload.
        if let Some(bytes) = input.data.as_any().downcast_ref::<UInt8Array>() {
            let frame = frame::wire::parse(bytes.values()).map_err(|mut e| {
                e.reason = format!("on input `{}`: {}", input.port, e.reason);
                e
            })?;
            let view = FrameRef {
                width: frame.width,
                height: frame.height,
                channels: frame.channels,
                data: frame.pixels,
                source: frame.source,
            };
            return self.send_tensor(&view, frame.key(), out);
        }
        let batch = input.batch::<Frame>()?;
        let header = Header::of(&batch, frame::NAME)?;
        let widths = u32s(&batch, frame::NAME, "width")?;
        let heights = u32s(&batch, frame::NAME, "height")?;
        let channels = u32s(&batch, frame::NAME, "channels")?;
        for row in 0..batch.num_rows() {
            // Zero-copy: the pixels are read straight from the received buffer.
            let view = FrameRef {
                width: widths.value(row),
                height: heights.value(row),
                channels: channels.value(row),
                data: frame::pixels(&batch, row)?,
                source: header.source(row),
            };
            self.send_tensor(&view, header.key(row), out)?;
        }
        Ok(())
    }
}

impl ImagePreprocess {
    /// Preprocesses one frame into the reused tensor row and queues it on `tensor`.
    fn send_tensor(
        &mut self,
        view: &FrameRef<'_>,
        key: forgeline_schemas::Correlation,
        out: &mut Outbox,
    ) -> Result<(), StageError> {
        let shape = self
            .preprocessor
            .run(view, &mut self.row.data)
            .map_err(|e| StageError::Input(e.to_string()))?;
        debug_assert_eq!(self.row.shape, shape.dims());
        self.row.key = key;
        self.row.source.clear();
        self.row.source.push_str(view.source);
        out.send("tensor", std::slice::from_ref(&self.row));
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is the failure report.
mod tests {
    use super::*;
    use forgeline_runtime::arrow::array::ArrayRef;
    use forgeline_runtime::parse_config;
    use forgeline_schemas::Correlation;
    use std::sync::Arc;

    fn ctx() -> InitContext {
        InitContext {
            node_id: "preprocess".into(),
            outputs: vec!["tensor".into()],
            inputs: vec!["frame".into()],
            restart_count: 0,
        }
    }

    fn frame(w: u32, h: u32, c: u32, fill: u8, source: &str) -> Frame {
        Frame {
            key: Correlation::new("cam", 7, 123),
            width: w,
            height: h,
            channels: c,
            encoding: forgeline_vision::encoding(c).into(),
            data: vec![fill; (w * h * c) as usize],
            source: source.into(),
        }
    }

    fn run(stage: &mut ImagePreprocess, f: &Frame) -> Result<Vec<Tensor>, StageError> {
        let data: ArrayRef = Arc::new(forgeline_schemas::to_struct_array(&Frame::to_batch(
            std::slice::from_ref(f),
        )));
        feed(stage, &data)
    }

    /// Feeds one `frame` payload; returns the tensors sent.
    fn feed(stage: &mut ImagePreprocess, data: &ArrayRef) -> Result<Vec<Tensor>, StageError> {
        let input = Input {
            port: "frame",
            data,
            now_ns: 0,
            sent_ns: 0,
        };
        let mut out = Outbox::default();
        stage.on_input(&input, &mut out)?;
        Ok(out
            .take()
            .into_iter()
            .flat_map(|(port, b)| {
                assert_eq!(port, "tensor");
                Tensor::try_from_batch(&b).unwrap()
            })
            .collect())
    }

    #[test]
    fn frame_becomes_a_normalised_tensor_with_its_keys() {
        let config = parse_config::<Config>(
            Some("width: 8\nheight: 4\nchannels: 3\nlayout: nhwc\nmean: [0.5]\nstd: [0.25]\n"),
            "t",
            "p",
        )
        .unwrap();
        let mut stage = ImagePreprocess::new(config, &ctx()).unwrap();
        let out = run(&mut stage, &frame(16, 8, 1, 255, "part_1.png")).unwrap();
        assert_eq!(out.len(), 1);
        let t = &out[0];
        assert_eq!(t.key, Correlation::new("cam", 7, 123));
        assert_eq!(t.shape, vec![1, 4, 8, 3]);
        assert_eq!((t.dtype.as_str(), t.layout.as_str()), ("f32", "nhwc"));
        assert_eq!(t.source, "part_1.png");
        let values: Vec<f32> = t
            .data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        assert_eq!(values.len(), 8 * 4 * 3);
        // (1.0 - 0.5) / 0.25 = 2 everywhere.
        assert!(values.iter().all(|v| (v - 2.0).abs() < 1e-5), "{values:?}");
    }

    fn run_in_place(
        stage: &mut ImagePreprocess,
        payload: &[u8],
    ) -> Result<Vec<Tensor>, StageError> {
        feed(
            stage,
            &(Arc::new(UInt8Array::from(payload.to_vec())) as ArrayRef),
        )
    }

    #[test]
    fn the_in_place_form_gives_the_same_tensor_as_the_record_batch() {
        let config = parse_config::<Config>(Some("width: 8\nheight: 8\n"), "t", "p").unwrap();
        let mut stage = ImagePreprocess::new(config, &ctx()).unwrap();
        let mut f = frame(16, 12, 3, 0, "part_9.png");
        for (i, p) in f.data.iter_mut().enumerate() {
            *p = u8::try_from(i % 251).unwrap();
        }
        let from_batch = run(&mut stage, &f).unwrap();
        let payload = frame::wire::encode(&f).unwrap();
        let in_place = run_in_place(&mut stage, &payload).unwrap();
        assert_eq!(in_place, from_batch);
        assert_eq!(in_place[0].key, f.key);
        // A truncated payload is refused, naming the field and the input.
        let e = run_in_place(&mut stage, &payload[..payload.len() - 3]).unwrap_err();
        assert!(
            e.to_string().contains("field `data`") || e.to_string().contains("data"),
            "{e}"
        );
        assert!(e.to_string().contains("input `frame`"), "{e}");
    }

    #[test]
    fn a_bad_frame_is_an_input_error_naming_its_source() {
        let config = parse_config::<Config>(Some("width: 8\nheight: 8\n"), "t", "p").unwrap();
        let mut stage = ImagePreprocess::new(config, &ctx()).unwrap();
        let mut bad = frame(4, 4, 1, 0, "cam-A/part_9.png");
        bad.data.truncate(10);
        let err = run(&mut stage, &bad).unwrap_err();
        assert!(matches!(err, StageError::Input(_)), "{err}");
        assert!(err.to_string().contains("cam-A/part_9.png"), "{err}");
        // The stage goes on with the next frame.
        assert_eq!(
            run(&mut stage, &frame(4, 4, 1, 0, "ok.png")).unwrap().len(),
            1
        );
    }

    #[test]
    fn model_dir_gives_the_geometry_and_its_preprocess_section_the_normalisation() {
        let dir = tempfile::tempdir().unwrap();
        let onnx = b"not a real onnx file; ModelDir only checks size and sha256";
        std::fs::write(dir.path().join("m.onnx"), onnx).unwrap();
        let sha = {
            // sha256 of the bytes above, computed once with `sha256sum`.
            use std::process::Command;
            let out = Command::new("sha256sum")
                .arg(dir.path().join("m.onnx"))
                .output()
                .unwrap();
            String::from_utf8(out.stdout).unwrap()[..64].to_owned()
        };
        let yml = format!(
            "format: 1\nname: optical-test\nversion: 1.0.0\ncreated: '2026-11-25T00:00:00Z'\ntask: classification\nfeature_set: image\ninputs:\n- name: image\n  shape: [-1, 1, 48, 64]\n  dtype: f32\n  layout: nchw\noutputs:\n- name: probabilities\n  shape: [-1, 2]\n  dtype: f32\nvariants:\n  fp32: {{ file: m.onnx, sha256: {sha}, size: {} }}\ndefault_variant: fp32\nthresholds: {{ warning: 0.25, critical: 0.5 }}\nlabels: [good, defect]\npreprocess:\n  resize: center_crop\n  mean: [0.25]\n",
            onnx.len()
        );
        std::fs::write(dir.path().join("model.yml"), yml).unwrap();
        let text = format!("model_dir: {}\n", dir.path().display());
        let config = parse_config::<Config>(Some(&text), "t", "p").unwrap();
        let resolved = config.resolve().unwrap();
        assert_eq!(
            (resolved.width, resolved.height, resolved.channels),
            (64, 48, 1)
        );
        assert_eq!(resolved.resize, ResizeMode::CenterCrop);
        assert_eq!(resolved.mean, vec![0.25]);
        assert_eq!(
            resolved.std,
            vec![1.0],
            "keys the section leaves out keep the default"
        );
        // An explicit key overrides the model's.
        let text = format!(
            "model_dir: {}
resize: letterbox
",
            dir.path().display()
        );
        let config = parse_config::<Config>(Some(&text), "t", "p").unwrap();
        assert_eq!(config.resolve().unwrap().resize, ResizeMode::Letterbox);

        // A leftover preprocess.yml (outside the signature) is refused rather than ignored.
        std::fs::write(dir.path().join(LEGACY_PREPROCESS_FILE), "resize: stretch\n").unwrap();
        let text = format!(
            "model_dir: {}
",
            dir.path().display()
        );
        let err = parse_config::<Config>(Some(&text), "t", "p")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("preprocess.yml") && err.contains("preprocess:"),
            "{err}"
        );
        std::fs::remove_file(dir.path().join(LEGACY_PREPROCESS_FILE)).unwrap();

        // A size that contradicts the model is refused, naming the field.
        let text = format!("model_dir: {}\nwidth: 32\n", dir.path().display());
        let err = parse_config::<Config>(Some(&text), "t", "p")
            .unwrap_err()
            .to_string();
        assert!(err.contains("width") && err.contains("64"), "{err}");
        // A missing model directory is refused, naming it.
        let err = parse_config::<Config>(Some("model_dir: /nonexistent/model\n"), "t", "p")
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/model"), "{err}");
    }
}
