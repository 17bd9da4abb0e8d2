//! Typed configuration of the scorer (the `inference` node's YAML).

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Which ONNX file of the model directory to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VariantChoice {
    /// The FP32 model.
    Fp32,
    /// The INT8 (QDQ) model.
    Int8,
    /// The model's `default_variant` (default).
    #[default]
    Auto,
}

/// An ONNX Runtime execution provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    /// NVIDIA TensorRT (cargo feature `tensorrt`).
    Tensorrt,
    /// NVIDIA CUDA (cargo feature `cuda`).
    Cuda,
    /// Intel OpenVINO (cargo feature `openvino`).
    Openvino,
    /// The CPU provider, always available.
    Cpu,
}

impl Provider {
    /// Name used in config, logs and `Score::provider`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tensorrt => "tensorrt",
            Self::Cuda => "cuda",
            Self::Openvino => "openvino",
            Self::Cpu => "cpu",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// ONNX Runtime graph optimisation level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizationLevel {
    /// No graph optimisation.
    Disable,
    /// Basic (constant folding, redundant node removal).
    Basic,
    /// Extended (fusions, QDQ to integer kernels).
    Extended,
    /// Layout optimisations too.
    Layout,
    /// Everything (default).
    #[default]
    All,
}

/// TensorRT execution provider options (used only when `tensorrt` is registered).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TensorRtOptions {
    /// Allow FP16 kernels (default false).
    pub fp16: bool,
    /// Allow INT8 kernels (default false; QDQ models carry their own scales).
    pub int8: bool,
    /// Directory for built engines, so restarts skip the minutes-long build (default none).
    pub engine_cache_dir: Option<PathBuf>,
    /// INT8 calibration table name for non-QDQ models (default none).
    pub calibration_table: Option<String>,
}

/// Configuration of a [`crate::Scorer`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InferenceConfig {
    /// Which model file to run (default `auto`: the model's `default_variant`).
    pub variant: VariantChoice,
    /// Execution providers in priority order (default `[tensorrt, cuda, openvino, cpu]`).
    /// Leave `cpu` out to fail instead of silently running on the CPU.
    pub providers: Vec<Provider>,
    /// Threads inside one operator (default 1: small models, and other nodes share the cores).
    pub intra_threads: usize,
    /// Threads across independent operators (default 1).
    pub inter_threads: usize,
    /// Graph optimisation level (default `all`).
    pub optimization_level: OptimizationLevel,
    /// Runs on a dummy row before the first real score, so the first stroke does not pay for
    /// lazy initialisation (default 10).
    pub warmup_runs: u32,
    /// The CPU provider's memory arena (default true): ONNX Runtime keeps freed tensor memory
    /// for reuse instead of returning it to the system. Off trades a little speed for a smaller
    /// resident set on boxes short of memory.
    pub memory_arena: bool,
    /// ONNX Runtime's memory pattern planning (default true): after a first run it plans one
    /// allocation for all intermediate tensors of that input shape. Turn it off when input
    /// shapes vary a lot (each new shape is planned again).
    pub memory_pattern: bool,
    /// TensorRT options.
    pub tensorrt: TensorRtOptions,
    /// Path of `libonnxruntime.so` (default none: `ORT_DYLIB_PATH`, then the project's `.venv`).
    pub onnxruntime_lib: Option<PathBuf>,
    /// Most rows scored in one session run (default 1 = no batching). Above 1 the node scores
    /// the rows of one message, and messages already queued on the same input, together.
    pub max_batch: usize,
}

impl Default for InferenceConfig {
    fn default() -> Self {
        Self {
            variant: VariantChoice::Auto,
            providers: vec![
                Provider::Tensorrt,
                Provider::Cuda,
                Provider::Openvino,
                Provider::Cpu,
            ],
            intra_threads: 1,
            inter_threads: 1,
            optimization_level: OptimizationLevel::All,
            warmup_runs: 10,
            memory_arena: true,
            memory_pattern: true,
            tensorrt: TensorRtOptions::default(),
            onnxruntime_lib: None,
            max_batch: 1,
        }
    }
}

impl InferenceConfig {
    /// Every problem with the values (types are checked by serde), all at once.
    #[must_use]
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.providers.is_empty() {
            out.push(
                "providers: is empty, expected a priority list such as [cuda, cpu]".to_owned(),
            );
        }
        for (i, p) in self.providers.iter().enumerate() {
            if self.providers[..i].contains(p) {
                out.push(format!("providers: {p} is listed twice"));
            }
        }
        if self.intra_threads == 0 {
            out.push("intra_threads: 0, expected at least 1".to_owned());
        }
        if self.inter_threads == 0 {
            out.push("inter_threads: 0, expected at least 1".to_owned());
        }
        if self.max_batch == 0 {
            out.push("max_batch: 0, expected at least 1 (1 = no batching)".to_owned());
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn empty_yaml_gives_documented_defaults() {
        let c: InferenceConfig = serde_yaml::from_str("{}").unwrap();
        assert_eq!(c, InferenceConfig::default());
        assert_eq!(c.providers.last(), Some(&Provider::Cpu));
        assert_eq!(c.warmup_runs, 10);
        assert!(c.memory_arena && c.memory_pattern);
    }

    #[test]
    fn parses_a_full_config() {
        let c: InferenceConfig = serde_yaml::from_str(
            "variant: int8\nproviders: [cuda, cpu]\nintra_threads: 2\noptimization_level: extended\n\
             tensorrt: {fp16: true, engine_cache_dir: /var/cache/trt}\nonnxruntime_lib: /opt/ort/libonnxruntime.so\n\
             memory_arena: false\nmemory_pattern: false\n",
        )
        .unwrap();
        assert_eq!(c.variant, VariantChoice::Int8);
        assert_eq!(c.providers, [Provider::Cuda, Provider::Cpu]);
        assert!(c.tensorrt.fp16);
        assert!(!c.memory_arena && !c.memory_pattern);
        assert!(c.problems().is_empty());
    }

    #[test]
    fn rejects_unknown_keys_and_providers() {
        let e = serde_yaml::from_str::<InferenceConfig>("warmup: 3")
            .unwrap_err()
            .to_string();
        assert!(e.contains("warmup"), "{e}");
        let e = serde_yaml::from_str::<InferenceConfig>("providers: [rocm]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("rocm"), "{e}");
    }

    #[test]
    fn reports_all_value_problems() {
        let c = InferenceConfig {
            providers: vec![Provider::Cpu, Provider::Cpu],
            intra_threads: 0,
            ..Default::default()
        };
        assert_eq!(c.problems().len(), 2);
    }

    proptest! {
        #[test]
        fn yaml_round_trip(variant in 0..3_u8, threads in 1..8_usize, warmup in 0..100_u32, n in 1..4_usize) {
            let all = [Provider::Tensorrt, Provider::Cuda, Provider::Openvino, Provider::Cpu];
            let c = InferenceConfig {
                variant: [VariantChoice::Fp32, VariantChoice::Int8, VariantChoice::Auto][usize::from(variant)],
                providers: all[4 - n..].to_vec(),
                intra_threads: threads,
                warmup_runs: warmup,
                ..Default::default()
            };
            let back: InferenceConfig = serde_yaml::from_str(&serde_yaml::to_string(&c).unwrap()).unwrap();
            prop_assert_eq!(back, c);
        }
    }
}
