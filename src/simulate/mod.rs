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

use jiff::Timestamp;

use crate::api::FailoverPolicySpec;
use crate::validation::ValidationContext;

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
    /// The starting policy is one `check` refuses: its lines, word for word.
    #[error(
        "the policy is invalid (as `ingress-failover check` with the same flags reports):\n{}",
        lines.join("\n")
    )]
    InvalidPolicy { lines: Vec<String> },
    /// The operator flags (`--probe-allowlist`, `--ingress-controller-namespace`) are malformed.
    #[error("{0}")]
    Rules(String),
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

/// The starting policy: as `check` and the controller accept it (CRD defaults filled in).
#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    pub namespace: String,
    pub spec: FailoverPolicySpec,
}

/// Loads the starting policy from the YAML `text` of `source` through `check`'s own validation
/// (schema, CEL, the operator's semantic rules with the operator's flags in `rules`): a policy
/// `check` refuses is refused here with the very lines `check` prints. The source must hold
/// exactly one FailoverPolicy.
pub fn load_policy(
    source: &str,
    text: &str,
    rules: &ValidationContext,
) -> Result<Policy, SimulateError> {
    rules
        .check()
        .map_err(|e| SimulateError::Rules(e.to_string()))?;
    let (report, policies) =
        crate::check::validate_source_at(source, text, rules, Timestamp::now());
    if report.exit_code != crate::check::EXIT_VALID {
        return Err(SimulateError::InvalidPolicy {
            lines: report.lines,
        });
    }
    let [policy] = <[_; 1]>::try_from(policies).map_err(|all| SimulateError::Policy {
        path: PathBuf::from(source),
        message: format!(
            "holds {} FailoverPolicies; simulate replays exactly one ({})",
            all.len(),
            report.lines.join("; ")
        ),
    })?;
    Ok(Policy {
        name: policy.metadata.name.clone().unwrap_or_default(),
        namespace: policy
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string()),
        spec: policy.spec,
    })
}

/// Loads both documents and replays them, with the operator's flags in `rules`. Tests and the
/// benchmark start here.
pub fn simulate_str(
    policy: &str,
    scenario: &str,
    rules: &ValidationContext,
) -> Result<Timeline, SimulateError> {
    let policy = load_policy("<policy>", policy, rules)?;
    let scenario =
        scenario::parse(scenario, &policy.spec).map_err(|e| SimulateError::Scenario {
            path: PathBuf::from("<scenario>"),
            source: Box::new(e),
        })?;
    Ok(replay(&policy, &scenario, rules))
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
    rules: &ValidationContext,
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
    let parsed = load_policy(&policy.display().to_string(), &policy_text, rules)?;
    let sc =
        scenario::parse(&scenario_text, &parsed.spec).map_err(|e| SimulateError::Scenario {
            path: scenario.to_path_buf(),
            source: Box::new(e),
        })?;
    let timeline = replay(&parsed, &sc, rules);
    render(&timeline, output, out)?;
    out.flush()?;
    Ok(if timeline.summary.violations.is_empty() {
        EXIT_OK
    } else {
        EXIT_INVARIANT_VIOLATED
    })
}
