//! The `ingress-failover` binary: one executable, several commands (see README.md).

use clap::{Args, Parser, Subcommand};
use ingress_failover::validation::ValidationContext;
use std::path::PathBuf;
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

/// Operator-wide rules that decide what a namespaced policy may reference. `check` takes the
/// same flags as `run` so that its answer is the controller's.
#[derive(Args, Debug, Clone, Default)]
struct PolicyRules {
    /// CIDRs, IPs, host names or .domain suffixes that health URLs may point to (comma-separated
    /// or repeated). Policies' own endpoint addresses are always allowed.
    #[arg(long, env = "INGRESS_FAILOVER_PROBE_ALLOWLIST", value_delimiter = ',')]
    probe_allowlist: Vec<String>,

    /// Namespaces, besides a policy's own, where an ingress controller Deployment may be watched.
    #[arg(
        long = "ingress-controller-namespace",
        env = "INGRESS_FAILOVER_INGRESS_CONTROLLER_NAMESPACES",
        value_delimiter = ','
    )]
    ingress_controller_namespaces: Vec<String>,
}

impl PolicyRules {
    fn context(&self) -> Result<ValidationContext, String> {
        let ctx = ValidationContext {
            allowed_ingress_controller_namespaces: self.ingress_controller_namespaces.clone(),
            probe_allowlist: self.probe_allowlist.clone(),
        };
        ctx.check().map_err(|e| e.to_string())?;
        Ok(ctx)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Print the FailoverPolicy CustomResourceDefinition as YAML.
    Crd {
        /// Print the Markdown policy reference generated from the CRD instead.
        #[arg(long)]
        reference: bool,
    },
    /// Validate policies offline with exactly the rules the controller applies. Exit 0 when all
    /// are valid, 1 with one line per problem otherwise.
    Check {
        /// Policy files (YAML, several documents allowed); `-` reads standard input.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        rules: PolicyRules,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd { reference } => {
            if reference {
                print!(
                    "{}",
                    ingress_failover::api::reference::policy_reference_markdown()
                );
            } else {
                print!("{}", ingress_failover::api::crd::crd_yaml());
            }
            ExitCode::SUCCESS
        }
        Command::Check { files, rules } => match rules.context() {
            Ok(ctx) => exit(ingress_failover::check::run(&files, &ctx)),
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
    }
}

fn exit(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
