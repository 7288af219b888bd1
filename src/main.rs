//! The `ingress-failover` binary: one executable, several commands (see README.md).

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "ingress-failover",
    version,
    about = "Kubernetes operator that automates load-balancer failover"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the FailoverPolicy CustomResourceDefinition as YAML.
    Crd,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => {
            print!("{}", ingress_failover::api::crd::crd_yaml());
            ExitCode::SUCCESS
        }
    }
}
