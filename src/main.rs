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

/// Operator-wide rules that decide what a namespaced policy may reference. `check` and
/// `simulate` take the same flags as `run` so that their answer is the controller's.
#[derive(Args, Debug, Clone, Default)]
struct PolicyRules {
    /// What the operator may probe beyond policies' own endpoints (comma-separated or
    /// repeated): health URLs, static host names, and loopback, link-local, metadata or API
    /// server addresses, which are refused from every source unless listed here. Entries: a
    /// CIDR (10.0.0.0/8), an IP address, a host name (lb.example.com), or a domain suffix
    /// (.example.com, also written *.example.com: every name below example.com); anything else
    /// is refused at start-up (docs/security.md).
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

/// Flags of `run`.
#[derive(Args, Debug, Clone)]
struct RunArgs {
    /// Kubeconfig to use; default: in-cluster config, then $KUBECONFIG / ~/.kube/config.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Namespace to watch (repeat or comma-separate); default: all namespaces.
    #[arg(
        long = "namespace",
        env = "INGRESS_FAILOVER_NAMESPACES",
        value_delimiter = ','
    )]
    namespaces: Vec<String>,
    /// Only manage policies matching this label selector (e.g. `team=payments`).
    #[arg(long, env = "INGRESS_FAILOVER_POLICY_SELECTOR")]
    policy_selector: Option<String>,
    /// Cache only Deployments with these labels (emergency and ingress-controller Deployments
    /// must then carry them); default: every Deployment in the watched namespaces.
    #[arg(long, env = "INGRESS_FAILOVER_DEPLOYMENT_SELECTOR")]
    deployment_selector: Option<String>,
    /// Cache only Ingresses with these labels; default: every Ingress in the watched namespaces.
    #[arg(long, env = "INGRESS_FAILOVER_INGRESS_SELECTOR")]
    ingress_selector: Option<String>,
    #[command(flatten)]
    rules: PolicyRules,
    /// Read EndpointSlices that Kubernetes' EndpointSlice controller does not manage (hand-written
    /// ones, or another controller's). Off by default: whoever may write an EndpointSlice would
    /// choose what the operator probes.
    #[arg(long, env = "INGRESS_FAILOVER_TRUST_UNMANAGED_ENDPOINTSLICES")]
    trust_unmanaged_endpointslices: bool,
    /// Write ExternalDNS `DNSEndpoint` objects (externaldns.k8s.io/v1alpha1) for policies with
    /// `spec.dns`. Needs ExternalDNS's DNSEndpoint CRD and RBAC for `dnsendpoints` (chart value
    /// `externalDNS.enabled`). Off: the CRD may be absent, and a policy with `spec.dns` is
    /// `Ready=False` with reason `DNSEndpointsDisabled`.
    #[arg(long, env = "INGRESS_FAILOVER_DNS_ENDPOINTS")]
    dns_endpoints: bool,
    /// Address serving /metrics, /healthz and /readyz.
    #[arg(
        long,
        env = "INGRESS_FAILOVER_METRICS_ADDR",
        default_value = "0.0.0.0:8080"
    )]
    metrics_addr: std::net::SocketAddr,
    /// Serve HTTPS, and /metrics only to callers the API server authenticates (TokenReview) and
    /// authorizes for `get` on the non-resource URL /metrics (SubjectAccessReview). /healthz and
    /// /readyz stay open for the kubelet. Off: plain HTTP to anyone who can connect.
    #[arg(long, env = "INGRESS_FAILOVER_METRICS_SECURE")]
    metrics_secure: bool,
    /// With --metrics-secure: a directory holding tls.crt and tls.key (a mounted TLS Secret);
    /// without it a self-signed certificate is generated at start.
    #[arg(
        long,
        env = "INGRESS_FAILOVER_METRICS_CERT_DIR",
        requires = "metrics_secure"
    )]
    metrics_cert_dir: Option<PathBuf>,
    /// Log format.
    #[arg(
        long,
        env = "INGRESS_FAILOVER_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,
    /// Elect a leader through a Lease so that only one replica writes.
    #[arg(long, env = "INGRESS_FAILOVER_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// Name of the Lease used for leader election.
    #[arg(long, default_value = "ingress-failover")]
    lease_name: String,
    /// Namespace of the Lease (normally the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// This replica's identity in the Lease (normally the pod name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Lease duration: how long a dead leader blocks the others.
    #[arg(long, default_value_t = 15)]
    lease_seconds: u64,
    /// How long the leader keeps acting without a successful renewal of its Lease; must be
    /// shorter than --lease-seconds (client-go's renewDeadline). Past it, it stops writing at once.
    #[arg(long, default_value_t = 10)]
    lease_renew_deadline_seconds: u64,
    /// How often the leader renews its Lease and a standby tries to take it (client-go's
    /// retryPeriod); a failed renewal is retried sooner, until the renew deadline.
    #[arg(long, default_value_t = 2)]
    lease_retry_period_seconds: u64,
    /// Split policies among replicas on this many shards, one Lease each
    /// (`<lease-name>-shard-<i>`; a policy's shard is FNV-1a 64 of its UID modulo this). Each
    /// replica holds about shards / replicas of them and reconciles and probes only their
    /// policies. 1: one leader for every policy (the `--lease-name` Lease). Every replica of an
    /// installation must use the same value.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    shards: u32,
    /// Client-side limit of API requests per second, sustained (client-go's QPS): a mass
    /// incident queues its writes here rather than burst them at the apiserver. 0: no limit.
    /// Lease renewals are never held.
    #[arg(long, default_value_t = 50)]
    kube_api_qps: u32,
    /// Requests allowed at once above --kube-api-qps after a quiet period (client-go's burst).
    #[arg(long, default_value_t = 100)]
    kube_api_burst: u32,
    /// Reconciles doing work at once; the others wait for a slot in the order they asked, and
    /// a policy's triggers meanwhile merge into one reconcile. Unbounded, ten thousand
    /// reconciles at a cold start or a mass incident would all be in flight, each holding its
    /// state while it waits for --kube-api-qps.
    #[arg(long, env = "INGRESS_FAILOVER_MAX_CONCURRENT_RECONCILES", default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..))]
    max_concurrent_reconciles: u16,
    /// Reconcile each policy at least this often when nothing happens: a safety net (probe
    /// facts, watched objects and the engine's own deadlines drive every decision), jittered by
    /// ±10 %.
    #[arg(long, env = "INGRESS_FAILOVER_RESYNC_SECONDS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    resync_seconds: u64,
    /// Cache HTTPRoutes and Gateways so that policies with spec.gateway are judged and moved.
    /// Needs the Gateway API CRDs (standard channel) and RBAC on httproutes and gateways (chart
    /// value gatewayAPI.enabled). Off, a policy with spec.gateway is Ready=False saying so.
    #[arg(long, env = "INGRESS_FAILOVER_GATEWAY_API")]
    gateway_api: bool,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// The embedded default: an in-memory control plane, real loopback backends and the real
    /// controller playing the runbook's incident live. Exits 0 when every expected transition
    /// happened.
    #[cfg(feature = "devcluster")]
    Demo {
        /// A shorter run (about a minute).
        #[arg(long)]
        fast: bool,
        /// Where to write the kubeconfig of the embedded control plane (for kubectl).
        #[arg(long, default_value_os_t = std::env::temp_dir().join("ingress-failover-demo.kubeconfig"))]
        kubeconfig: PathBuf,
        /// After the story, keep the control plane, backends and controller running for
        /// inspection (kubectl, kubectl failover) until Ctrl-C.
        #[arg(long)]
        keep: bool,
        /// Where the controller serves /metrics (plain HTTP; loopback only). Port 0: any free
        /// port; the address is printed either way (scripts/render-dashboard.sh scrapes it).
        #[arg(long, default_value = "127.0.0.1:0")]
        metrics_addr: std::net::SocketAddr,
    },
    /// Serve the embedded Kubernetes control plane until SIGINT/SIGTERM.
    #[cfg(feature = "devcluster")]
    Devcluster {
        /// Where to write a kubeconfig for it.
        #[arg(long)]
        kubeconfig: PathBuf,
        /// Listen address (default: 127.0.0.1 on a free port). Only loopback addresses are
        /// accepted unless --allow-non-loopback is given.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Accept a --listen address that is not loopback. The plane has no authentication and
        /// no TLS: whoever can reach the address can read and write everything in it.
        #[arg(long)]
        allow_non_loopback: bool,
    },
    /// Run the controller.
    Run(Box<RunArgs>),
    /// Replay an incident timeline against the decision engine on a virtual clock and print
    /// what the operator would do, when and why.
    Simulate {
        /// The FailoverPolicy (YAML).
        #[arg(long)]
        policy: PathBuf,
        /// The scenario (YAML; format in docs/scenarios.md).
        #[arg(long)]
        scenario: PathBuf,
        /// Output: an aligned table, JSON lines, or an SVG timeline.
        #[arg(long, value_enum, default_value_t)]
        output: ingress_failover::simulate::OutputFormat,
        /// The operator's flags the policy and its edits are validated with, as by `check`.
        #[command(flatten)]
        rules: PolicyRules,
    },
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
        #[cfg(feature = "devcluster")]
        Command::Demo {
            fast,
            kubeconfig,
            keep,
            metrics_addr,
        } => {
            let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "error".into());
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_writer(std::io::stderr)
                .try_init();
            let opts = ingress_failover::demo::DemoOptions {
                fast,
                kubeconfig,
                keep,
                metrics_addr,
            };
            match runtime().block_on(ingress_failover::demo::run(opts)) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        #[cfg(feature = "devcluster")]
        Command::Devcluster {
            kubeconfig,
            listen,
            allow_non_loopback,
        } => {
            init_logging(LogFormat::Text);
            match runtime().block_on(devcluster::serve_command(
                &kubeconfig,
                listen,
                allow_non_loopback,
            )) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run(args) => {
            init_logging(args.log_format);
            match runtime().block_on(run(*args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Simulate {
            policy,
            scenario,
            output,
            rules,
        } => {
            let rules = match rules.context() {
                Ok(rules) => rules,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            match ingress_failover::simulate::run(&policy, &scenario, &rules, output, &mut out) {
                Ok(code) => {
                    use std::io::Write as _;
                    let _ = out.flush();
                    exit(code)
                }
                Err(e) => {
                    drop(out);
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
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

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime starts")
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only for a person at a terminal: log files and collectors get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_target(false);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    use anyhow::Context as _;
    ingress_failover::install_crypto_provider();
    let rules = args.rules.context().map_err(anyhow::Error::msg)?;
    let identity = args.identity.clone().unwrap_or_else(|| {
        format!(
            "{}-{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "ingress-failover".into()),
            std::process::id()
        )
    });
    // Before the prober sizes its keep-alive budget from the limit (ProberConfig::default).
    let nofile = ingress_failover::probe::raise_open_file_limit();
    tracing::info!(
        open_file_limit = nofile,
        kept_connection_budget = ingress_failover::probe::kept_connection_budget(
            ingress_failover::probe::ProberConfig::default().max_in_flight
        ),
        "probe connections kept open between checks are bounded by the open-file limit"
    );
    let user_agent = ingress_failover::kubeclient::controller_user_agent(&identity);
    let limit = std::num::NonZeroU32::new(args.kube_api_qps).map(|qps| {
        ingress_failover::kubeclient::RateLimit {
            qps,
            burst: std::num::NonZeroU32::new(args.kube_api_burst).unwrap_or(qps),
        }
    });
    let client = ingress_failover::kubeclient::client_limited(
        args.kubeconfig.as_deref(),
        Some(&user_agent),
        limit,
    )
    .await
    .context("connecting to the Kubernetes API")?;
    let opts = ingress_failover::controller::Options {
        namespaces: args.namespaces,
        policy_selector: args.policy_selector,
        deployment_selector: args.deployment_selector,
        ingress_selector: args.ingress_selector,
        rules,
        metrics_addr: args.metrics_addr,
        metrics_secure: args.metrics_secure.then(|| {
            ingress_failover::controller::secure_metrics::SecureMetrics {
                cert_dir: args.metrics_cert_dir.clone(),
            }
        }),
        leader_election: args.leader_election,
        lease_name: args.lease_name,
        lease_namespace: args.lease_namespace,
        identity,
        lease_seconds: args.lease_seconds,
        lease_renew_deadline: std::time::Duration::from_secs(args.lease_renew_deadline_seconds),
        lease_retry_period: std::time::Duration::from_secs(args.lease_retry_period_seconds),
        shards: args.shards,
        prober: Default::default(),
        trust_unmanaged_endpointslices: args.trust_unmanaged_endpointslices,
        max_concurrent_reconciles: args.max_concurrent_reconciles,
        resync: std::time::Duration::from_secs(args.resync_seconds),
        dns_endpoints: args.dns_endpoints,
        gateway_api: args.gateway_api,
    };
    ingress_failover::controller::run(
        client,
        opts,
        ingress_failover::controller::system_clock(),
        shutdown_signal(),
        None,
    )
    .await
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
