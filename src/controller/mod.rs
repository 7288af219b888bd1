//! `ingress-failover run`: the controller. An adapter around the engine: caches and probe facts
//! in, server-side-applied objects, status, Events and metrics out.
//!
//! Wiring: reflectors keep caches of the EndpointSlices, Deployments and Ingresses in the
//! watched namespaces; their changes, probe facts and a leadership gain each trigger the
//! reconcile of the policies they concern; only the lease holder writes.

pub mod actuate;
mod claims;
pub mod context;
pub mod desired;
mod effect;
pub mod events;
mod http_server;
mod leader;
pub mod ledger;
pub mod metrics;
pub mod observe;
pub mod reconcile;
mod report;
pub mod secure_metrics;
pub mod targets;

use std::net::SocketAddr;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use prometheus_client::registry::Registry;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::api::FailoverPolicy;
use crate::engine::{CheckFact, Pool};
use crate::probe::{Allowlist, Fact, Prober, ProberConfig, Tier};
use crate::validation::ValidationContext;

pub use context::{Clock, Context, Stores, system_clock};

/// The caches /readyz waits for.
const CACHES: [&str; 5] = [
    "endpointslices",
    "deployments",
    "ingresses",
    "horizontalpodautoscalers",
    "failoverpolicies",
];

/// How the controller runs (from `run`'s flags).
#[derive(Debug, Clone)]
pub struct Options {
    /// Namespaces to watch; empty means all.
    pub namespaces: Vec<String>,
    /// Only policies matching this label selector are managed.
    pub policy_selector: Option<String>,
    /// Cache only Deployments matching this label selector (emergency and ingress-controller
    /// Deployments must carry it); none caches every Deployment in the watched namespaces.
    pub deployment_selector: Option<String>,
    /// Cache only Ingresses matching this label selector; none caches every Ingress in the
    /// watched namespaces.
    pub ingress_selector: Option<String>,
    pub rules: ValidationContext,
    /// Where /metrics, /healthz and /readyz are served (`--metrics-addr`).
    pub metrics_addr: SocketAddr,
    /// `--metrics-secure`: HTTPS, and /metrics only for callers the API server authenticates
    /// and authorizes (`secure_metrics`); none serves plain HTTP to anyone who can connect.
    pub metrics_secure: Option<secure_metrics::SecureMetrics>,
    pub leader_election: bool,
    pub lease_name: String,
    pub lease_namespace: String,
    pub identity: String,
    pub lease_seconds: u64,
    pub prober: ProberConfig,
    /// Read EndpointSlices that Kubernetes' EndpointSlice controller does not manage (hand-written
    /// or another controller's): off by default, since whoever may write a slice would choose
    /// what the operator probes (`observe::EndpointTrust`).
    pub trust_unmanaged_endpointslices: bool,
}

/// A running controller's handles, for tests and the demo.
pub struct Running {
    pub ctx: Arc<Context>,
    pub metrics_addr: SocketAddr,
    pub registry: Arc<Registry>,
}

/// Builds everything and runs until `shutdown` resolves.
pub async fn run(
    client: Client,
    opts: Options,
    clock: Clock,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
    started: Option<tokio::sync::oneshot::Sender<Running>>,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let allowlist =
        Allowlist::parse(&opts.rules.probe_allowlist).context("parsing --probe-allowlist")?;
    let (prober, facts) = Prober::new(opts.prober.clone(), allowlist.clone());

    let mut registry = Registry::default();
    let metrics = metrics::Metrics::default();
    metrics.register(&mut registry);
    prober.metrics().register(&mut registry);

    let (leader_rx, leader_task) = leader::start(&client, &opts).await?;

    let (slices, slice_stream) = reflect::<EndpointSlice>(
        &client,
        &opts.namespaces,
        watcher::Config::default().labels(observe::SERVICE_NAME_LABEL),
    );
    let labelled = |sel: &Option<String>| match sel {
        Some(sel) => watcher::Config::default().labels(sel),
        None => watcher::Config::default(),
    };
    let (deployments, deploy_stream) = reflect::<Deployment>(
        &client,
        &opts.namespaces,
        labelled(&opts.deployment_selector),
    );
    let (ingresses, ingress_stream) =
        reflect::<Ingress>(&client, &opts.namespaces, labelled(&opts.ingress_selector));
    let (autoscalers, autoscaler_stream) =
        reflect::<HorizontalPodAutoscaler>(&client, &opts.namespaces, watcher::Config::default());
    // Nothing reconciles on an autoscaler change (the next reconcile sees it); the stream only
    // keeps the cache.
    tokio::spawn(autoscaler_stream.for_each(|_| async {}));
    let stores = Stores {
        slices: slices.clone(),
        deployments: deployments.clone(),
        ingresses: ingresses.clone(),
        deployments_listed: Default::default(),
        namespaces: Arc::new(opts.namespaces.clone()),
        autoscalers: autoscalers.clone(),
    };

    let policies: Api<FailoverPolicy> = match opts.namespaces.as_slice() {
        [one] => Api::namespaced(client.clone(), one),
        _ => Api::all(client.clone()),
    };
    let mut wc = watcher::Config::default();
    if let Some(sel) = &opts.policy_selector {
        wc = wc.labels(sel);
    }
    let controller = Controller::new(policies, wc);
    let pstore = controller.store();

    let events = events::EventSink::new(client.clone(), actuate::MANAGER, &opts.identity);
    let ctx = Arc::new(Context {
        client: client.clone(),
        rules: opts.rules.clone(),
        prober: prober.clone(),
        events,
        metrics: metrics.clone(),
        stores,
        leader: leader_rx.clone(),
        policies: pstore.clone(),
        clock,
        runtimes: Default::default(),
        failures: Default::default(),
        allowlist: std::sync::Mutex::new(Arc::new(allowlist)),
        trust_unmanaged_slices: opts.trust_unmanaged_endpointslices,
    });

    let readiness = Arc::new(http_server::Readiness::expecting(&CACHES));
    let registry = Arc::new(registry);
    let serving = match &opts.metrics_secure {
        Some(tls) => http_server::Serving::Secure {
            tls: tls.clone(),
            client: client.clone(),
        },
        None => http_server::Serving::Plain,
    };
    let (addr, server) = http_server::serve(
        opts.metrics_addr,
        registry.clone(),
        readiness.clone(),
        serving,
    )
    .await?;
    info!(%addr, "serving /metrics, /healthz and /readyz");
    tokio::spawn(server);

    // Probe facts: append to the policy's observation, then ask for its reconcile.
    let (trigger_tx, trigger_rx) = mpsc::unbounded_channel::<ObjectRef<FailoverPolicy>>();
    tokio::spawn(pump_facts(facts, ctx.clone(), trigger_tx.clone()));

    // Leadership gained: reconcile everything (resuming from status). Lost: forget and stop
    // probing, so a returning term starts from status like a restart.
    let (all_tx, all_rx) = mpsc::unbounded_channel::<()>();
    tokio::spawn(follow_leadership(
        opts.leader_election,
        leader_rx,
        ctx.clone(),
        all_tx,
    ));

    let namespaces = opts.namespaces.clone();
    let in_scope = move |ns: Option<&str>| {
        namespaces.is_empty() || ns.is_some_and(|n| namespaces.iter().any(|w| w == n))
    };
    let (s1, s2, s3) = (pstore.clone(), pstore.clone(), pstore.clone());
    let (f1, f2, f3) = (in_scope.clone(), in_scope.clone(), in_scope.clone());

    // Readiness: every cache has listed once. Each is awaited on its own, so /readyz can say
    // which one is still missing; once listed, a cache stays ready across watch restarts.
    readiness.watch("endpointslices", slices);
    readiness.watch("deployments", deployments);
    readiness.watch("ingresses", ingresses);
    readiness.watch("horizontalpodautoscalers", autoscalers);
    readiness.watch("failoverpolicies", pstore.clone());
    // A Deployment absent from a synced, unfiltered cache does not exist: only then may the
    // engine read a missing ingress controller as a down one. Asked of the readiness tracker
    // rather than awaited on the store (a second waiter would steal the store's one waker).
    if opts.deployment_selector.is_none() {
        let (readiness, listed) = (readiness.clone(), ctx.stores.deployments_listed.clone());
        tokio::spawn(async move {
            while !readiness.is_synced("deployments") {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            listed.store(true, std::sync::atomic::Ordering::SeqCst);
        });
    }

    let started_ctx = ctx.clone();
    if let Some(tx) = started {
        let _ = tx.send(Running {
            ctx: started_ctx,
            metrics_addr: addr,
            registry: registry.clone(),
        });
    }

    controller
        .watches_stream(slice_stream, move |s: EndpointSlice| {
            if !f1(s.metadata.namespace.as_deref()) {
                return Vec::new();
            }
            let svc = s.labels().get(observe::SERVICE_NAME_LABEL).cloned();
            policies_referencing(&s1, s.metadata.namespace.as_deref(), |p| {
                svc.as_deref().is_some_and(|svc| references_service(p, svc))
            })
        })
        .watches_stream(deploy_stream, move |d: Deployment| {
            if !f2(d.metadata.namespace.as_deref()) {
                return Vec::new();
            }
            let name = d.name_any();
            let dns = d.metadata.namespace.clone().unwrap_or_default();
            policies_referencing(&s2, None, |p| references_deployment(p, &dns, &name))
        })
        .watches_stream(ingress_stream, move |i: Ingress| {
            if !f3(i.metadata.namespace.as_deref()) {
                return Vec::new();
            }
            policies_referencing(&s3, i.metadata.namespace.as_deref(), |p| {
                p.spec.ingress.is_some()
            })
        })
        .reconcile_on(tokio_stream(trigger_rx))
        .reconcile_all_on(tokio_stream(all_rx))
        .graceful_shutdown_on(shutdown)
        .run(reconcile::reconcile, reconcile::error_policy, ctx.clone())
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "reconcile loop");
            }
        })
        .await;

    info!("controller stopped");
    if let Some(task) = leader_task {
        task.abort();
    }
    Ok(())
}

fn tokio_stream<T: Send + 'static>(
    mut rx: mpsc::UnboundedReceiver<T>,
) -> impl Stream<Item = T> + Send {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// A reflector over the watched namespaces: a cache plus the stream of touched objects that
/// drives it (the Controller polls the stream).
fn reflect<K>(
    client: &Client,
    namespaces: &[String],
    wc: watcher::Config,
) -> (
    Store<K>,
    impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let api: Api<K> = match namespaces {
        [one] => Api::namespaced(client.clone(), one),
        _ => Api::all(client.clone()),
    };
    let (store, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, wc).default_backoff()).touched_objects();
    (store, stream)
}

fn policies_referencing(
    store: &Store<FailoverPolicy>,
    namespace: Option<&str>,
    refers: impl Fn(&FailoverPolicy) -> bool,
) -> Vec<ObjectRef<FailoverPolicy>> {
    store
        .state()
        .iter()
        .filter(|p| namespace.is_none() || p.metadata.namespace.as_deref() == namespace)
        .filter(|p| refers(p))
        .map(|p| ObjectRef::from_obj(&**p))
        .collect()
}

fn references_service(p: &FailoverPolicy, svc: &str) -> bool {
    let b = &p.spec.backends;
    b.primary.service.as_ref().is_some_and(|s| s.name == svc)
        || p.spec.managed_service.name == svc
        || b.emergency
            .as_ref()
            .and_then(|e| e.deployment.as_ref())
            .is_some_and(|d| d.service_name.as_deref().unwrap_or(&d.name) == svc)
}

fn references_deployment(p: &FailoverPolicy, ns: &str, name: &str) -> bool {
    let own_ns = p.metadata.namespace.as_deref().unwrap_or_default();
    let emergency = own_ns == ns
        && p.spec
            .backends
            .emergency
            .as_ref()
            .and_then(|e| e.deployment.as_ref())
            .is_some_and(|d| d.name == name);
    let controller = p.spec.ingress.as_ref().is_some_and(|i| {
        std::iter::once(&i.health)
            .chain(i.backup_health.as_ref())
            .filter_map(|h| h.controller_deployment.as_ref())
            .any(|c| c.name == name && c.namespace.as_deref().unwrap_or(own_ns) == ns)
    });
    emergency || controller
}

async fn pump_facts(
    mut facts: mpsc::Receiver<Fact>,
    ctx: Arc<Context>,
    trigger: mpsc::UnboundedSender<ObjectRef<FailoverPolicy>>,
) {
    while let Some(fact) = facts.recv().await {
        let Some(rt) = ctx.runtime(&fact.key.policy) else {
            continue;
        };
        {
            let mut r = context::lock(&rt);
            match fact.key.tier {
                Tier::LoadBalancer => r.obs.lb_checks.push(fact.outcome),
                Tier::BackupLoadBalancer => r.obs.backup_lb_checks.push(fact.outcome),
                tier => r.obs.checks.push(CheckFact {
                    address: fact.key.endpoint.to_string(),
                    pool: if tier == Tier::Primary {
                        Pool::Primary
                    } else {
                        Pool::Emergency
                    },
                    outcome: fact.outcome,
                }),
            }
        }
        if let Some((ns, name)) = fact.key.policy.split_once('/') {
            let _ = trigger.send(ObjectRef::new(name).within(ns));
        }
    }
}

async fn follow_leadership(
    election: bool,
    mut leader: tokio::sync::watch::Receiver<bool>,
    ctx: Arc<Context>,
    all: mpsc::UnboundedSender<()>,
) {
    let mut was = false;
    loop {
        let is = *leader.borrow_and_update();
        ctx.metrics.leader.set(i64::from(is));
        if is && !was && !election {
            info!("leader election disabled: this replica writes; reconciling every policy");
        } else if is && !was {
            info!("acquired the leader lease; reconciling every policy");
            let _ = all.send(());
        } else if !is && was {
            warn!("lost the leader lease; forgetting state and stopping probes");
            for key in ctx.clear_runtimes() {
                ctx.prober.remove_policy(&key);
            }
        }
        was = is;
        if leader.changed().await.is_err() {
            return;
        }
    }
}
