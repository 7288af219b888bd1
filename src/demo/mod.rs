//! `ingress-failover demo`: the embedded default. Starts the embedded control plane, real
//! loopback HTTP backends and the real controller, then plays the runbook's incident —
//! backends failing one by one, emergency capacity waking, the primary load balancer failing
//! and traffic moving to the backup class, recovery and gradual return — printing a live
//! timeline. Exits 0 when every expected transition happened.

mod script;
mod timeline;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use devcluster::{DevCluster, DevClusterOptions};
use testkit::farm::{self, Farm};
use testkit::pods;

/// How the demo runs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Shorter timings (about a minute instead of a few).
    pub fast: bool,
    /// Where to write the kubeconfig of the embedded control plane.
    pub kubeconfig: PathBuf,
    /// After the story, leave the control plane, backends and controller running for
    /// inspection (kubectl, `kubectl failover`, /metrics) until SIGINT or SIGTERM.
    pub keep: bool,
    /// Where the controller serves /metrics; loopback only (the demo's controller has no
    /// authentication). Port 0 picks a free one.
    pub metrics_addr: std::net::SocketAddr,
}

/// Timings of one run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pace {
    pub interval: u32,
    pub activate_for: u32,
    pub deactivate_for: u32,
    pub hold_down: u32,
    pub step: u32,
    pub cooldown: u32,
    pub pod_ready: Duration,
    /// Pause between scripted events, so a person can follow.
    pub beat: Duration,
    /// Longest wait for any expected transition.
    pub deadline: Duration,
}

impl Pace {
    fn new(fast: bool) -> Self {
        if fast {
            Pace {
                interval: 1,
                activate_for: 2,
                deactivate_for: 3,
                hold_down: 4,
                step: 2,
                cooldown: 4,
                pod_ready: Duration::from_secs(2),
                beat: Duration::from_secs(2),
                deadline: Duration::from_secs(45),
            }
        } else {
            Pace {
                interval: 2,
                activate_for: 6,
                deactivate_for: 10,
                hold_down: 15,
                step: 8,
                cooldown: 15,
                pod_ready: Duration::from_secs(8),
                beat: Duration::from_secs(5),
                deadline: Duration::from_secs(120),
            }
        }
    }
}

pub(crate) const NS: &str = "demo";
pub(crate) const POLICY: &str = "web";
const AGENT: &str = "ingress-failover-demo";

/// Runs the demo; `Ok(true)` when every expected transition happened.
pub async fn run(opts: DemoOptions) -> anyhow::Result<bool> {
    crate::install_crypto_provider();
    anyhow::ensure!(
        opts.metrics_addr.ip().is_loopback(),
        "--metrics-addr {}: the demo serves /metrics on loopback only",
        opts.metrics_addr
    );
    let pace = Pace::new(opts.fast);
    let cluster = Arc::new(
        DevCluster::start(DevClusterOptions {
            pod_ready_delay: pace.pod_ready,
            ..Default::default()
        })
        .await
        .context("starting the embedded control plane")?,
    );
    std::fs::write(&opts.kubeconfig, cluster.kubeconfig_yaml())
        .with_context(|| format!("writing {}", opts.kubeconfig.display()))?;
    let client = cluster.client_with_user_agent(AGENT)?;
    println!("ingress-failover demo — the load-balancer failover runbook, automated");
    println!();
    println!("  embedded control plane: {}", cluster.url());
    println!(
        "  watch it live:          kubectl --kubeconfig {} get fp -n {NS} -w",
        opts.kubeconfig.display()
    );

    let farm = Farm::new();
    let lb = "127.0.0.1:0".parse().expect("address");
    let lb = free_port(lb).await?;
    farm.set(lb, farm::Behavior::Healthy).await?;
    setup(&client, &pace, lb).await?;
    let pods = tokio::spawn(pods::serve_pods(
        client.clone(),
        NS.to_string(),
        "kubernetes.io/service-name in (web,web-emergency)".to_string(),
        farm.clone(),
    ));

    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (started_tx, started_rx) = oneshot::channel();
    let controller_client = Client::try_from(crate::kubeclient::without_default_retry(
        cluster.config_with_user_agent("ingress-failover"),
    ))?;
    let controller = tokio::spawn(crate::controller::run(
        controller_client,
        controller_options(opts.metrics_addr),
        crate::controller::system_clock(),
        async move {
            let _ = stop_rx.await;
        },
        Some(started_tx),
    ));
    let metrics = started_rx
        .await
        .context("the controller stopped before serving /metrics")?
        .metrics_addr;
    println!("  its metrics:            http://{metrics}/metrics");
    println!();

    let timeline = timeline::Timeline::start(client.clone());
    let outcome = script::play(&client, &farm, lb, &pace, &timeline).await;
    let seen = timeline.stop().await;
    let ok = script::report(&outcome, &seen);

    if opts.keep {
        let kc = opts.kubeconfig.display();
        println!();
        println!("kept running for inspection; Ctrl-C (or SIGTERM) stops everything:");
        println!("  embedded control plane:  {}", cluster.url());
        println!(
            "  policy and its objects:  kubectl --kubeconfig {kc} -n {NS} get fp,ingress,deploy,endpointslices"
        );
        println!(
            "  the on-call view:        kubectl failover status {POLICY} -n {NS} --kubeconfig {kc}"
        );
        println!(
            "  what happened, and why:  kubectl failover history {POLICY} -n {NS} --kubeconfig {kc}"
        );
        println!("  the load balancer:       http://{lb}/healthz (a loopback backend of the demo)");
        println!("  the controller's metrics: http://{metrics}/metrics");
        wait_for_signal().await?;
    }

    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), controller).await;
    pods.abort();
    drop(cluster);
    Ok(ok)
}

/// Returns at SIGINT or SIGTERM.
async fn wait_for_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("waiting for SIGTERM")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for SIGINT")?,
        _ = term.recv() => {}
    }
    Ok(())
}

fn controller_options(metrics_addr: std::net::SocketAddr) -> crate::controller::Options {
    crate::controller::Options {
        namespaces: vec![NS.to_string()],
        policy_selector: None,
        deployment_selector: None,
        ingress_selector: None,
        rules: crate::validation::ValidationContext {
            allowed_ingress_controller_namespaces: Vec::new(),
            probe_allowlist: vec!["127.0.0.0/8".to_string()],
        },
        metrics_addr,
        metrics_secure: None,
        leader_election: false,
        lease_name: "ingress-failover".into(),
        lease_namespace: NS.into(),
        identity: "demo".into(),
        lease_seconds: 15,
        lease_renew_deadline: std::time::Duration::from_secs(10),
        lease_retry_period: std::time::Duration::from_secs(2),
        shards: 1,
        prober: Default::default(),
        trust_unmanaged_endpointslices: false,
        dns_endpoints: false,
        max_concurrent_reconciles: 32,
        gateway_api: false,
        resync: std::time::Duration::from_secs(300),
    }
}

async fn free_port(addr: std::net::SocketAddr) -> anyhow::Result<std::net::SocketAddr> {
    let l = tokio::net::TcpListener::bind(addr).await?;
    Ok(l.local_addr()?)
}

async fn apply(client: &Client, obj: Value) -> anyhow::Result<()> {
    let kind = obj["kind"].as_str().unwrap_or_default().to_string();
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let api_version = obj["apiVersion"].as_str().unwrap_or_default().to_string();
    let (group, version) = api_version
        .split_once('/')
        .map_or((String::new(), api_version.clone()), |(g, v)| {
            (g.to_string(), v.to_string())
        });
    let gvk = kube::core::GroupVersionKind::gvk(&group, &version, &kind);
    let (ar, caps) = kube::discovery::pinned_kind(client, &gvk)
        .await
        .with_context(|| format!("discovering {kind}"))?;
    let api: Api<kube::core::DynamicObject> = if caps.scope == kube::discovery::Scope::Namespaced {
        Api::namespaced_with(client.clone(), NS, &ar)
    } else {
        Api::all_with(client.clone(), &ar)
    };
    api.patch(
        &name,
        &PatchParams::apply(AGENT).force(),
        &Patch::Apply(&obj),
    )
    .await
    .with_context(|| format!("applying {kind} {name}"))?;
    Ok(())
}

/// The demo's world: the CRD, two ingress classes, the primary pool (a Deployment of four
/// behind a Service), an emergency Deployment at 0, the Ingress, and the policy.
async fn setup(client: &Client, pace: &Pace, lb: std::net::SocketAddr) -> anyhow::Result<()> {
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    crds.patch(
        "failoverpolicies.ingressfailover.io",
        &PatchParams::apply(AGENT).force(),
        &Patch::Apply(crate::api::crd::crd()),
    )
    .await
    .context("installing the FailoverPolicy CRD")?;
    let deployment = |name: &str, replicas: i32| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": NS},
               "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                        "template": {"metadata": {"labels": {"app": name}},
                                     "spec": {"containers": [{"name": "web", "image": "demo/web:1", "ports": [{"containerPort": 8080}]}]}}}})
    };
    let service = |name: &str| {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NS},
               "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})
    };
    let objects = vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "nginx-primary"}, "spec": {"controller": "k8s.io/ingress-nginx-primary"}}),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "nginx-backup"}, "spec": {"controller": "k8s.io/ingress-nginx-backup"}}),
        deployment("web", 4),
        service("web"),
        deployment("web-emergency", 0),
        service("web-emergency"),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web", "namespace": NS},
               "spec": {"ingressClassName": "nginx-primary", "rules": [{"host": "shop.example", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                 "backend": {"service": {"name": "web-healthy", "port": {"number": 80}}}}]}}]}}),
        json!({
            "apiVersion": "ingressfailover.io/v1alpha1", "kind": "FailoverPolicy",
            "metadata": {"name": POLICY, "namespace": NS},
            "spec": {
                "backends": {
                    "primary": {"service": {"name": "web"}},
                    "emergency": {"deployment": {"name": "web-emergency", "standbyReplicas": 0, "activeReplicas": 3, "maxReplicas": 4}}
                },
                "managedService": {"name": "web-healthy", "port": 80},
                "probe": {"http": {"path": "/healthz", "maxLatencyMs": 800}, "intervalSeconds": pace.interval, "timeoutSeconds": pace.interval,
                          "failureThreshold": 3, "successThreshold": 2, "jitterPercent": 0},
                "ingress": {"ingresses": ["web"], "primaryClass": "nginx-primary", "backupClass": "nginx-backup", "mode": "HotStandby",
                            "health": {"url": format!("http://{lb}/healthz")}},
                "thresholds": {"activateBelow": 0.5, "activateForSeconds": pace.activate_for, "deactivateAbove": 0.75, "deactivateForSeconds": pace.deactivate_for},
                "recovery": {"holdDownSeconds": pace.hold_down, "failbackSteps": [10, 50], "stepSeconds": pace.step, "emergencyCooldownSeconds": pace.cooldown},
                "safety": {"flapBudget": {"maxTransitions": 10, "windowSeconds": 600}}
            }
        }),
    ];
    // The policy comes last, once the primary pool is up: a pool still starting is, to the
    // operator, a pool with no ready capacity — an emergency, which is not the story told here.
    let (policy, world) = objects.split_last().expect("the policy is last");
    for o in world {
        apply(client, o.clone()).await?;
    }
    wait_ready(client, "web", 4, pace.deadline).await?;
    apply(client, policy.clone()).await
}

async fn wait_ready(
    client: &Client,
    deployment: &str,
    replicas: i32,
    deadline: Duration,
) -> anyhow::Result<()> {
    let api: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(client.clone(), NS);
    let until = std::time::Instant::now() + deadline;
    loop {
        let ready = api
            .get_opt(deployment)
            .await?
            .and_then(|d| d.status.and_then(|s| s.ready_replicas))
            .unwrap_or(0);
        if ready >= replicas {
            return Ok(());
        }
        if std::time::Instant::now() > until {
            anyhow::bail!("Deployment {NS}/{deployment} has {ready}/{replicas} ready replicas");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
