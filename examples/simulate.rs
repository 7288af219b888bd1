//! Runs the simulator without the CLI (which lives in `src/main.rs`):
//!
//! ```text
//! cargo run --example simulate -- examples/gradual-degradation [table|json|svg]
//! cargo run --example simulate -- path/to/policy.yaml path/to/scenario.yaml [table|json|svg]
//! ```
//!
//! A directory argument means its `policy.yaml` and `scenario.yaml`. The operator's flags come
//! from the environment, as the binary's would: `INGRESS_FAILOVER_PROBE_ALLOWLIST` (the examples'
//! health URLs need `.shop.internal`) and `INGRESS_FAILOVER_INGRESS_CONTROLLER_NAMESPACES`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::ValueEnum;
use ingress_failover::simulate::{OutputFormat, run};
use ingress_failover::validation::ValidationContext;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (policy, scenario, rest) = match args.as_slice() {
        [dir, rest @ ..] if PathBuf::from(dir).is_dir() => {
            let dir = PathBuf::from(dir);
            (dir.join("policy.yaml"), dir.join("scenario.yaml"), rest)
        }
        [policy, scenario, rest @ ..] => (PathBuf::from(policy), PathBuf::from(scenario), rest),
        _ => {
            eprintln!("usage: simulate (DIR | POLICY SCENARIO) [table|json|svg]");
            return ExitCode::from(2);
        }
    };
    let output = match rest.first() {
        Some(f) => match OutputFormat::from_str(f, true) {
            Ok(o) => o,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        },
        None => OutputFormat::Table,
    };
    let env = |name: &str| std::env::var(name).unwrap_or_default();
    let rules = match ValidationContext::from_flags(
        [env("INGRESS_FAILOVER_INGRESS_CONTROLLER_NAMESPACES")],
        [env("INGRESS_FAILOVER_PROBE_ALLOWLIST")],
    ) {
        Ok(rules) => rules,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match run(&policy, &scenario, &rules, output, &mut out) {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
