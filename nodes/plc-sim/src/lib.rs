//! `plc-sim`: a real Modbus TCP server on loopback with the default register map, so the default
//! graphs exchange real Modbus frames out of the box. Every write is logged. Point `plc-output`'s
//! `link.address` at a real PLC and drop this node to go live.

use forgeline_plc::{SimConfig, Simulator};
use forgeline_runtime::{InitContext, Input, Outbox, Stage, StageError, Validate};
use serde::Deserialize;

/// Configuration of `plc-sim`: bind address (default `127.0.0.1:5020`) and memory size.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Config(pub SimConfig);

impl Validate for Config {}

/// The simulator stage: the server runs on its own thread for the life of the node.
pub struct PlcSim {
    sim: Option<Simulator>,
}

impl Stage for PlcSim {
    type Config = Config;
    const KIND: &'static str = "plc-sim";

    fn new(config: Config, _ctx: &InitContext) -> eyre::Result<Self> {
        let sim = Simulator::start(&config.0).map_err(|e| eyre::eyre!("{e}"))?;
        tracing::info!(addr = %sim.local_addr(), "PLC simulator listening (Modbus TCP)");
        Ok(Self { sim: Some(sim) })
    }

    fn on_input(&mut self, _input: &Input<'_>, _out: &mut Outbox) -> Result<(), StageError> {
        Ok(())
    }

    fn on_stop(&mut self, _now_ns: u64, _out: &mut Outbox) -> Result<(), StageError> {
        if let Some(sim) = self.sim.take() {
            let snap = sim.snapshot();
            tracing::info!(?snap, "PLC simulator final state");
            sim.stop()
                .map_err(|e| StageError::External(e.to_string()))?;
        }
        Ok(())
    }
}
