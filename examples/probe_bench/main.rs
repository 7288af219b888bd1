//! Side-by-side benchmark of the prober against HAProxy; driven by
//! `benches/probe_vs_haproxy.sh` (see benches/README.md, "Probing vs HAProxy").
//!
//! One executable, several roles, so the script builds one thing and every process measured
//! runs the same code: `run` orchestrates; `serve` and `prober` are its children.

mod backends;
mod common;
mod haproxy;
mod prober;
mod run;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    role: Role,
}

#[derive(Subcommand)]
enum Role {
    /// Loopback HTTP backends for endpoints FROM..TO.
    Serve {
        #[arg(long)]
        from: usize,
        #[arg(long)]
        to: usize,
    },
    /// Our prober checking endpoints 0..COUNT every second.
    Prober {
        #[arg(long)]
        count: usize,
    },
    /// The whole comparison.
    Run {
        #[arg(long, default_value = "haproxy")]
        haproxy: String,
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 100.0)]
        clk_tck: f64,
        #[arg(long, value_delimiter = ',', default_values_t = [1000, 10000])]
        scales: Vec<usize>,
        #[arg(long, default_value_t = 20)]
        window_secs: u64,
        #[arg(long, default_value_t = 3)]
        warm_secs: u64,
        /// Backends killed in total; each is one detection sample for both probers.
        #[arg(long, default_value_t = 200)]
        kills: usize,
        #[arg(long, default_value_t = 40)]
        kills_per_round: usize,
    },
}

fn main() -> std::io::Result<()> {
    match Cli::parse().role {
        Role::Serve { from, to } => backends::serve(from, to),
        Role::Prober { count } => prober::run(count),
        Role::Run {
            haproxy,
            dir,
            clk_tck,
            scales,
            window_secs,
            warm_secs,
            kills,
            kills_per_round,
        } => run::run(run::Args {
            haproxy,
            dir,
            clk_tck,
            scales: scales
                .into_iter()
                .filter(|&n| n > 0 && n <= 20_000)
                .collect(),
            window: Duration::from_secs(window_secs.clamp(1, 120)),
            warm: Duration::from_secs(warm_secs.clamp(1, 30)),
            kills: kills.clamp(1, 500),
            kills_per_round: kills_per_round.max(1),
        }),
    }
}
