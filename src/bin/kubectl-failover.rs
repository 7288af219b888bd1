//! `kubectl failover`: what an on-call engineer needs from a FailoverPolicy at 3 AM, and the
//! supported manual moves. Put the binary on PATH as `kubectl-failover` (`cargo install --path
//! . --bin kubectl-failover`); kubectl finds it as `kubectl failover`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use ingress_failover::api::{FailoverPolicy, OverrideMode};
use ingress_failover::plugin;
use jiff::{SignedDuration, Timestamp};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};

/// On-call view and manual control of ingress-failover policies.
///
/// Assess: `status` (tiers, ratios, endpoints, emergency capacity, timers) and `explain` (why
/// traffic is where it is, in the operator's words). Reroute by hand: `override force-backup`
/// or `force-primary`, always with `--for` and `--reason`. Stop everything moving: `override
/// freeze`. Hand back to the operator: `resume`. Clear a flap-budget freeze after fixing the
/// flapping: `reset`.
#[derive(Parser)]
#[command(name = "kubectl failover", version)]
struct Cli {
    /// Namespace of the policy (default: the kubeconfig context's namespace).
    #[arg(short, long, global = true)]
    namespace: Option<String>,
    /// Path to the kubeconfig (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true)]
    kubeconfig: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Everything about one policy on one screen, or a line per policy without a name.
    Status {
        policy: Option<String>,
        /// Every namespace (with no policy named).
        #[arg(short = 'A', long)]
        all_namespaces: bool,
    },
    /// The recorded transitions with their reasons, oldest first.
    History { policy: String },
    /// Why traffic and capacity are where they are now, in the operator's words.
    Explain { policy: String },
    /// Take charge by hand: force traffic to a side, or freeze every automatic change.
    Override {
        mode: Mode,
        policy: String,
        /// How long the override lasts (for example 30m, 2h); it ends by itself after that.
        #[arg(long = "for", value_parser = ingress_failover::duration::parse)]
        duration: Option<SignedDuration>,
        /// Why, in words: shown in status and Events.
        #[arg(long)]
        reason: String,
        /// Allow an override without --for (it then lasts until `resume`).
        #[arg(long)]
        no_expiry: bool,
    },
    /// End an override: the operator decides again, with a fresh flap budget.
    Resume { policy: String },
    /// Clear a flap-budget freeze the supported way (the reset annotation).
    Reset { policy: String },
}

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    ForceBackup,
    ForcePrimary,
    Freeze,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime starts");
    match rt.block_on(run(cli)) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<String> {
    use anyhow::Context as _;
    ingress_failover::install_crypto_provider();
    let client = ingress_failover::kubeclient::client(cli.kubeconfig.as_deref()).await?;
    let ns = cli
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    let api: Api<FailoverPolicy> = Api::namespaced(client.clone(), &ns);
    let now = Timestamp::now();
    let get = |name: String| {
        let api = api.clone();
        let ns = ns.clone();
        async move {
            api.get(&name)
                .await
                .with_context(|| format!("reading FailoverPolicy {ns}/{name}"))
        }
    };
    let patch = |name: String, body: serde_json::Value| {
        let api = api.clone();
        let ns = ns.clone();
        async move {
            api.patch(
                &name,
                &PatchParams {
                    field_manager: Some("kubectl-failover".into()),
                    ..Default::default()
                },
                &Patch::Merge(&body),
            )
            .await
            .with_context(|| format!("updating FailoverPolicy {ns}/{name}"))
        }
    };
    Ok(match cli.command {
        Command::Status {
            policy: Some(name), ..
        } => plugin::status_text(&get(name).await?, now),
        Command::Status {
            policy: None,
            all_namespaces,
        } => {
            let list = if all_namespaces {
                Api::<FailoverPolicy>::all(client.clone())
            } else {
                api.clone()
            }
            .list(&ListParams::default())
            .await
            .context("listing FailoverPolicies")?;
            plugin::summary_table(&list.items, now)
        }
        Command::History { policy } => plugin::history_text(&get(policy).await?, now),
        Command::Explain { policy } => plugin::explain_text(&get(policy).await?, now),
        Command::Override {
            mode,
            policy,
            duration,
            reason,
            no_expiry,
        } => {
            anyhow::ensure!(
                duration.is_some() || no_expiry,
                "say how long with --for (for example --for 30m), or --no-expiry to hold until `kubectl failover resume`"
            );
            let mode = match mode {
                Mode::ForceBackup => OverrideMode::ForceBackup,
                Mode::ForcePrimary => OverrideMode::ForcePrimary,
                Mode::Freeze => OverrideMode::Freeze,
            };
            let p = patch(
                policy.clone(),
                plugin::override_patch(mode, duration, &reason, now),
            )
            .await?;
            format!(
                "FailoverPolicy {ns}/{policy}: override {mode:?} {}; reason: {reason}\n",
                duration.map_or("until resumed".to_string(), |d| format!(
                    "for {}",
                    plugin::human(d)
                ))
            ) + &plugin::explain_text(&p, now)
        }
        Command::Resume { policy } => {
            patch(policy.clone(), plugin::resume_patch()).await?;
            format!("FailoverPolicy {ns}/{policy}: override removed; the operator decides again\n")
        }
        Command::Reset { policy } => {
            patch(policy.clone(), plugin::reset_patch(now)).await?;
            format!(
                "FailoverPolicy {ns}/{policy}: flap budgets reset; a frozen tier may move on the next decision\n"
            )
        }
    })
}
