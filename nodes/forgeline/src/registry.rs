//! The built-in node kinds, one entry per stage, shared by `forgeline node` and `forgeline check`.

use forgeline_runtime::inprocess::DynStage;
use forgeline_runtime::{ConfigError, InitContext, Stage, parse_config, run_node};

/// Builds a stage in-process from `(config text, origin, context)`.
pub type BuildFn = fn(Option<&str>, &str, &InitContext) -> eyre::Result<Box<dyn DynStage>>;

/// One built-in node kind.
pub struct NodeKind {
    /// The kind name used in graphs: `args: node <kind>`.
    pub kind: &'static str,
    /// Runs the node (the process's whole life).
    pub run: fn() -> eyre::Result<()>,
    /// Validates a config text for this kind.
    pub check: fn(Option<&str>, &str, &str) -> Result<(), ConfigError>,
    /// Builds the stage in-process from a config text (for `forgeline score` and benchmarks).
    pub build: BuildFn,
}

fn entry<S: Stage>() -> NodeKind {
    NodeKind {
        kind: S::KIND,
        run: run_node::<S>,
        check: |text, origin, node_id| parse_config::<S::Config>(text, origin, node_id).map(|_| ()),
        build: |text, origin, ctx| {
            let config = parse_config::<S::Config>(text, origin, &ctx.node_id)?;
            Ok(Box::new(S::new(config, ctx)?))
        },
    }
}

/// Every built-in node kind.
pub fn kinds() -> Vec<NodeKind> {
    vec![
        entry::<forgeline_node_press_acquisition::PressAcquisition>(),
        entry::<forgeline_node_vibration_features::VibrationFeatures>(),
        entry::<forgeline_node_camera_acquisition::CameraAcquisition>(),
        entry::<forgeline_node_image_preprocess::ImagePreprocess>(),
        entry::<forgeline_node_inference::Inference>(),
        entry::<forgeline_node_threshold::ThresholdStage>(),
        entry::<forgeline_node_drift::Drift>(),
        entry::<forgeline_node_telemetry::Telemetry>(),
        entry::<forgeline_node_health::HealthNode>(),
        entry::<forgeline_node_plc_output::PlcOutput>(),
        entry::<forgeline_node_plc_sim::PlcSim>(),
        entry::<forgeline_runtime_selftest::Passthrough>(),
    ]
}

/// Looks a kind up by name.
pub fn find(kind: &str) -> Option<NodeKind> {
    kinds().into_iter().find(|k| k.kind == kind)
}

/// Comma-separated kind names, for error messages.
pub fn names() -> String {
    kinds()
        .iter()
        .map(|k| k.kind)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A trivial stage kept for runtime self-tests until the real stages are registered.
mod forgeline_runtime_selftest {
    use forgeline_runtime::{InitContext, Input, Outbox, Stage, StageError, Validate};
    use serde::Deserialize;

    /// Forwards every message from each input to the output of the same name.
    pub struct Passthrough;

    /// Passthrough has no settings.
    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct PassthroughConfig {}
    impl Validate for PassthroughConfig {}

    impl Stage for Passthrough {
        type Config = PassthroughConfig;
        const KIND: &'static str = "passthrough";
        fn new(_: PassthroughConfig, _: &InitContext) -> eyre::Result<Self> {
            Ok(Self)
        }
        fn on_input(&mut self, input: &Input<'_>, out: &mut Outbox) -> Result<(), StageError> {
            let batch = forgeline_schemas::batch_from_struct_array(input.data.as_ref(), "any")?;
            out.send_batch(input.port, batch);
            Ok(())
        }
    }
}
