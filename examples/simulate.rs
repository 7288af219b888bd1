//! Runs the simulator without the CLI (which lives in `src/main.rs`):
//!
//! ```text
//! cargo run --example simulate -- examples/gradual-degradation [table|json|svg]
//! cargo run --example simulate -- path/to/policy.yaml path/to/scenario.yaml [table|json|svg]
//! ```
//!
//! A directory argument means its `policy.yaml` and `scenario.yaml`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::ValueEnum;
use ingress_failover::simulate::{OutputFormat, run};

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
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match run(&policy, &scenario, output, &mut out) {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
