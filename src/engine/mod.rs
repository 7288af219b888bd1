//! The decision engine: one pure, deterministic brain shared by the controller, the simulator
//! and the tests.
//!
//! `step(config, state, observation, now, actions)` has no I/O and reads no clock: time is an
//! argument. The controller feeds it live facts and applies the desired state read off
//! [`PolicyState`]; the simulator feeds it a scenario on a virtual clock.

pub mod actions;
pub mod config;
mod deadline;
pub mod facts;
pub mod gateway;
pub mod invariants;
mod publish;
pub mod report;
pub mod risefall;
pub mod state;
mod step;

pub use actions::{Action, ActionKind, Affected};
pub use config::{DnsConfig, EmergencyRamp, EngineConfig, Millis, Now};
pub use facts::{CheckFact, DeploymentFact, EndpointFact, Observation, Pool};
pub use gateway::GatewayFact;
pub use state::{Drain, EmergencyPhase, IngressDesired, IngressPhase, LbTier, PolicyState, Tier};
pub use step::{hold_invalid, step};

/// How a decision taken in dry-run starts its reason (history, Events, logs, the simulator):
/// it was reported, not applied.
pub const DRY_RUN_PREFIX: &str = "dry-run, not applied: ";
