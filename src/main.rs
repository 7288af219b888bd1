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
    Crd {
        /// Print the Markdown policy reference generated from the CRD instead.
        #[arg(long)]
        reference: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd { reference } => {
            if reference {
                print!("{}", ingress_failover::api::reference::policy_reference_markdown());
            } else {
                print!("{}", ingress_failover::api::crd::crd_yaml());
            }
            ExitCode::SUCCESS
        }
    }
}
