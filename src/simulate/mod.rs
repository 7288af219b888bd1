//! `ingress-failover simulate`: replays an incident scenario against the decision engine on a
//! virtual clock and prints what the operator would do, when and why.
//!
//! The replay uses the very engine the controller runs ([`crate::engine::step`]); only the world
//! around it is simulated ([`world`]). So a scenario is both documentation ("this is what happens
//! when the LB dies at 3 AM") and a regression test (the goldens under `tests/golden/`).
//!
//! Layout: [`scenario`] parses the YAML scenario, [`world`] simulates backends, probes, pods and
//! the load balancer, [`run`] drives the engine and records the timeline, and [`table`],
//! [`json`] and [`svg`] render it.

pub mod json;
pub mod run;
pub mod scenario;
pub mod svg;
pub mod table;
pub mod world;

use std::io::Write;
use std::path::{Path, PathBuf};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;

use crate::api::FailoverPolicySpec;

pub use run::{Row, Sample, Source, Summary, Timeline, replay};
pub use scenario::Scenario;

/// How the timeline is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns for a terminal, with a closing summary.
    #[default]
    Table,
    /// One JSON object per line; the last line is the summary.
    Json,
    /// A self-contained SVG picture of the tiers' health over time, with the actions marked.
    Svg,
}

/// Exit code when the replay ran and every invariant held.
pub const EXIT_OK: i32 = 0;
/// Exit code when the replay saw an invariant broken (empty Service under FailOpen, emergency
/// replicas out of bounds, an emergency endpoint published before its pod was ready). The
/// violation is also printed in the output.
pub const EXIT_INVARIANT_VIOLATED: i32 = 1;

/// Why a simulation could not run.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("policy {}: {message}", path.display())]
    Policy { path: PathBuf, message: String },
    /// The scenario is not well-formed YAML of the expected shape (serde-saphyr's message
    /// carries the line, column and offending key).
    #[error("{message}")]
    ScenarioSyntax { message: String },
    /// A scenario field has a value that does not make sense.
    #[error("field {field}: {message}")]
    ScenarioField { field: String, message: String },
    /// A scenario error, with the file it is in.
    #[error("scenario {}: {source}", path.display())]
    Scenario {
        path: PathBuf,
        #[source]
        source: Box<SimulateError>,
    },
    #[error("cannot write the output: {0}")]
    Write(#[from] std::io::Error),
}

/// A FailoverPolicy document as written in a file (`kubectl apply -f` form).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PolicyDocument {
    api_version: String,
    kind: String,
    #[serde(default)]
    metadata: ObjectMeta,
    spec: FailoverPolicySpec,
}

/// A policy read from YAML: its name (for titles) and its spec.
#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    pub spec: FailoverPolicySpec,
}

/// Parses a FailoverPolicy YAML document (apiVersion `ingressfailover.io/v1alpha1`).
pub fn parse_policy(text: &str) -> Result<Policy, String> {
    let doc: PolicyDocument = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
    if doc.api_version != "ingressfailover.io/v1alpha1" {
        return Err(format!(
            "apiVersion is {:?}; expected ingressfailover.io/v1alpha1",
            doc.api_version
        ));
    }
    if doc.kind != "FailoverPolicy" {
        return Err(format!("kind is {:?}; expected FailoverPolicy", doc.kind));
    }
    let p = &doc.spec.backends.primary;
    if p.service.is_none() && p.addresses.is_empty() {
        return Err("spec.backends.primary: set service and/or addresses".to_string());
    }
    Ok(Policy {
        name: doc.metadata.name.unwrap_or_else(|| "unnamed".to_string()),
        spec: doc.spec,
    })
}

/// Parses both documents and replays them. Tests and the benchmark start here.
pub fn simulate_str(policy: &str, scenario: &str) -> Result<Timeline, SimulateError> {
    let policy = parse_policy(policy).map_err(|message| SimulateError::Policy {
        path: PathBuf::from("<policy>"),
        message,
    })?;
    let scenario =
        scenario::parse(scenario, &policy.spec).map_err(|e| SimulateError::Scenario {
            path: PathBuf::from("<scenario>"),
            source: Box::new(e),
        })?;
    Ok(replay(&policy.name, &policy.spec, &scenario))
}

/// Writes a replay in the chosen format.
pub fn render(
    timeline: &Timeline,
    output: OutputFormat,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    match output {
        OutputFormat::Table => table::write(timeline, out),
        OutputFormat::Json => json::write(timeline, out),
        OutputFormat::Svg => svg::write(timeline, out),
    }
}

/// `ingress-failover simulate --policy P --scenario S --output F`: reads both files, replays the
/// scenario and writes the result to `out`. Returns the process exit code: [`EXIT_OK`], or
/// [`EXIT_INVARIANT_VIOLATED`] when the replay broke one of the product's invariants.
pub fn run(
    policy: &Path,
    scenario: &Path,
    output: OutputFormat,
    out: &mut dyn Write,
) -> Result<i32, SimulateError> {
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|source| SimulateError::Read {
            path: path.to_path_buf(),
            source,
        })
    };
    let policy_text = read(policy)?;
    let scenario_text = read(scenario)?;
    let parsed = parse_policy(&policy_text).map_err(|message| SimulateError::Policy {
        path: policy.to_path_buf(),
        message,
    })?;
    let sc =
        scenario::parse(&scenario_text, &parsed.spec).map_err(|e| SimulateError::Scenario {
            path: scenario.to_path_buf(),
            source: Box::new(e),
        })?;
    let timeline = replay(&parsed.name, &parsed.spec, &sc);
    render(&timeline, output, out)?;
    out.flush()?;
    Ok(if timeline.summary.violations.is_empty() {
        EXIT_OK
    } else {
        EXIT_INVARIANT_VIOLATED
    })
}
