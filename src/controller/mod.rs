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
pub mod dns;
mod effect;
pub mod events;
pub mod gateway;
mod http_server;
pub mod index;
mod leader;
pub mod ledger;
pub mod legacy_endpoints;
pub mod metrics;
pub mod observe;
pub mod reconcile;
mod report;
pub mod secure_metrics;
pub mod shards;
pub mod targets;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::{FutureExt, Stream, StreamExt};
use index::PolicyKey;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::utils::Backoff;
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use prometheus_client::registry::Registry;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

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
    /// How long a leader keeps acting without a successful renewal; shorter than the lease.
    pub lease_renew_deadline: Duration,
    /// How often the leader renews and a standby tries to acquire.
    pub lease_retry_period: Duration,
    /// `--shards`: policies split among replicas on this many Leases (1: one leader for all;
    /// see [`shards`]).
    pub shards: u32,
    pub prober: ProberConfig,
    /// Read EndpointSlices that Kubernetes' EndpointSlice controller does not manage (hand-written
    /// or another controller's): off by default, since whoever may write a slice would choose
    /// what the operator probes (`observe::EndpointTrust`).
    pub trust_unmanaged_endpointslices: bool,
    /// Reconciles doing work at once (`--max-concurrent-reconciles`); the rest wait for a slot
    /// (`Context::reconcile_slots`) in the order they asked, a policy's triggers merging meanwhile.
    pub max_concurrent_reconciles: u16,
    /// A reconcile of each policy at least this often with nothing happening (`--resync-seconds`):
    /// a safety net, since facts, watches and the engine's deadlines drive every decision.
    pub resync: Duration,
    /// `--dns-endpoints`: cache, watch and write ExternalDNS `DNSEndpoint`s for policies with
    /// `spec.dns` (off: the CRD may be absent; such policies are `Ready=False`).
    pub dns_endpoints: bool,
    /// `--gateway-api`: cache HTTPRoutes and Gateways (the Gateway API CRDs must be installed)
    /// so that policies with `spec.gateway` are judged and moved; off, such a policy is
    /// `Ready=False` saying how to turn it on.
    pub gateway_api: bool,
}

/// How long `run` waits for in-flight reconciles after the shutdown signal before returning
/// anyway: a reconcile blocked on an unreachable API must not keep a SIGTERMed pod alive
/// (issue 12: still alive 11 minutes later). Writes stop at once regardless (leadership ends
/// first).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// The CRD whose absence /readyz, the log and `ingress_failover_crd_missing` report.
const CRD_NAME: &str = "failoverpolicies.ingressfailover.io";

/// A running controller's handles, for tests and the demo.
pub struct Running {
    pub ctx: Arc<Context>,
    pub metrics_addr: SocketAddr,
    pub registry: Arc<Registry>,
}

/// Builds everything and runs until `shutdown` resolves. Returns within [`SHUTDOWN_GRACE`]
/// plus the Lease release after it, whatever the API does. `client` should be configured with
/// [`crate::kubeclient::without_default_retry`] (as `kubeclient::client_as` does): with kube's
/// default retry one request may wait out an outage for minutes, past the renew deadline.
pub async fn run(
    client: Client,
    opts: Options,
    clock: Clock,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
    started: Option<tokio::sync::oneshot::Sender<Running>>,
) -> anyhow::Result<()> {
    let shutdown = shutdown.boxed().shared();
    let allowlist = Allowlist::parse(&opts.rules.probe_allowlist)?;
    let (prober, facts) = Prober::new(opts.prober.clone(), allowlist.clone());

    let mut registry = Registry::default();
    let metrics = metrics::Metrics::default();
    metrics.register(&mut registry);
    prober.metrics().register(&mut registry);

    // Never waits on the API: an unreachable API must not delay the shutdown handling below.
    let (leader_rx, shard_set, election) = shards::start(&client, &opts)?;

    let health = Arc::new(ApiHealth::default());
    let caches = start_caches(&client, &opts, &health);
    let expected: Vec<&'static str> = CACHES
        .iter()
        .chain(
            opts.gateway_api
                .then_some(&gateway::CACHES)
                .into_iter()
                .flatten(),
        )
        .copied()
        .collect();
    let readiness = Arc::new(http_server::Readiness::expecting(&expected));
    let claims_epoch = Arc::new(claims::Epoch::default());
    let policy_index = index::Index::new(index::policy_keys);
    let controller = policy_controller(
        &client,
        &opts,
        &health,
        &readiness,
        &metrics,
        (claims_epoch.clone(), policy_index.clone()),
    );
    let pstore = controller.store();

    let events = events::EventSink::new(
        client.clone(),
        actuate::MANAGER,
        &opts.identity,
        metrics.clone(),
        shard_set.clone(),
    );
    let ctx = Arc::new(Context {
        client: client.clone(),
        rules: opts.rules.clone(),
        prober: prober.clone(),
        events,
        metrics: metrics.clone(),
        stores: caches.stores.clone(),
        leader: leader_rx.clone(),
        shards: shard_set,
        policies: pstore.clone(),
        policy_index: policy_index.clone(),
        claims_epoch: claims_epoch.clone(),
        clock,
        runtimes: Default::default(),
        failures: Default::default(),
        allowlist: std::sync::Mutex::new(Arc::new(allowlist)),
        trust_unmanaged_slices: opts.trust_unmanaged_endpointslices,
        resync: opts.resync,
        reconcile_slots: tokio::sync::Semaphore::new(usize::from(opts.max_concurrent_reconciles)),
    });

    let registry = Arc::new(registry);
    let addr = serve_http(&client, &opts, &registry, &readiness).await?;
    let (trigger_rx, all_rx) = spawn_followers(&opts, &ctx, facts, leader_rx, &health);
    watch_readiness(&readiness, &opts, &caches.stores, &pstore);

    if let Some(tx) = started {
        let _ = tx.send(Running {
            ctx: ctx.clone(),
            metrics_addr: addr,
            registry: registry.clone(),
        });
    }

    // On the signal, leadership ends first (in-flight reconciles are cancelled by it, so no
    // write starts after the signal), then the Lease is handed back.
    let election_stopped = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            shutdown.await;
            if let Some(election) = election {
                election.stop().await;
            }
        })
    };

    let controller = wire_triggers(
        controller,
        caches,
        &opts.namespaces,
        &pstore,
        &policy_index,
        &claims_epoch,
    )
    .reconcile_on(tokio_stream(trigger_rx))
    .reconcile_all_on(tokio_stream(all_rx))
    .trigger_backoff(NoPause)
    .graceful_shutdown_on(shutdown.clone())
    .run(reconcile::reconcile, reconcile::error_policy, ctx.clone())
    .for_each(|res| async move {
        if let Err(e) = res {
            tracing::debug!(error = %e, "reconcile loop");
        }
    });
    // kube-runtime's graceful shutdown waits for every in-flight reconcile, and a runner held
    // "until the store is ready" (CRD missing, API unreachable) never finishes: bounded here.
    let grace_over = async {
        shutdown.await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        () = controller => info!("controller stopped"),
        () = grace_over => warn!(
            grace = ?SHUTDOWN_GRACE,
            "reconciles still in flight after the shutdown grace period; stopping without them"
        ),
    }
    // The election stops (and releases the Lease) within its own bound.
    let _ = tokio::time::timeout(Duration::from_secs(3), election_stopped).await;
    Ok(())
}

/// The objects a cache stream touched, boxed so the caches can travel together.
type Touched<K> = futures::stream::BoxStream<'static, Result<K, watcher::Error>>;

/// The caches reconciles read, and the streams that keep them (the Controller polls them and
/// maps each touched object to the policies it concerns, see [`wire_triggers`]).
struct Caches {
    stores: Stores,
    slices: Touched<EndpointSlice>,
    deployments: Touched<Deployment>,
    ingresses: Touched<Ingress>,
    autoscalers: Touched<HorizontalPodAutoscaler>,
    dns_endpoints: Option<Touched<dns::DNSEndpoint>>,
    /// With `--gateway-api`: HTTPRoutes and Gateways.
    gateway: Option<(Touched<gateway::HttpRoute>, Touched<gateway::Gateway>)>,
}

/// One reflector per kind the reconciles read, each with its own backoff.
fn start_caches(client: &Client, opts: &Options, health: &Arc<ApiHealth>) -> Caches {
    let slice_index = index::Index::new(index::slice_keys);
    let feed = slice_index.clone();
    let (slices, slice_stream) = reflect::<EndpointSlice>(
        client,
        &opts.namespaces,
        watcher::Config::default().labels(observe::SERVICE_NAME_LABEL),
        health,
        move |e| feed.apply(e),
    );
    let labelled = |sel: &Option<String>| match sel {
        Some(sel) => watcher::Config::default().labels(sel),
        None => watcher::Config::default(),
    };
    let (deployments, deploy_stream) = reflect::<Deployment>(
        client,
        &opts.namespaces,
        labelled(&opts.deployment_selector),
        health,
        |_| {},
    );
    let (ingresses, ingress_stream) = reflect::<Ingress>(
        client,
        &opts.namespaces,
        labelled(&opts.ingress_selector),
        health,
        |_| {},
    );
    let (autoscalers, autoscaler_stream) = reflect::<HorizontalPodAutoscaler>(
        client,
        &opts.namespaces,
        watcher::Config::default(),
        health,
        |_| {},
    );
    let (dns_store, dns_stream) = if opts.dns_endpoints {
        let (store, stream) = reflect::<dns::DNSEndpoint>(
            client,
            &opts.namespaces,
            watcher::Config::default().labels(desired::POLICY_LABEL),
            health,
            |_| {},
        );
        (Some(store), Some(stream.boxed()))
    } else {
        (None, None)
    };
    let (gateway_stores, gateway) = if opts.gateway_api {
        let (routes, route_stream) = reflect::<gateway::HttpRoute>(
            client,
            &opts.namespaces,
            watcher::Config::default(),
            health,
            |_| {},
        );
        let (gateways, gateway_stream) = reflect::<gateway::Gateway>(
            client,
            &opts.namespaces,
            watcher::Config::default(),
            health,
            |_| {},
        );
        (
            Some(gateway::GatewayStores {
                routes,
                gateways,
                listed: Default::default(),
            }),
            Some((route_stream.boxed(), gateway_stream.boxed())),
        )
    } else {
        (None, None)
    };
    Caches {
        stores: Stores {
            dns_endpoints: dns_store,
            slices,
            slice_index,
            deployments,
            ingresses,
            deployments_listed: Default::default(),
            namespaces: Arc::new(opts.namespaces.clone()),
            autoscalers,
            gateway: gateway_stores,
        },
        gateway,
        slices: slice_stream.boxed(),
        deployments: deploy_stream.boxed(),
        ingresses: ingress_stream.boxed(),
        autoscalers: autoscaler_stream.boxed(),
        dns_endpoints: dns_stream,
    }
}

/// The Controller over the policies in scope. The policy reflector is ours (not
/// `Controller::new`'s) so that its errors can be read: a missing CRD is said in the log,
/// /readyz and a metric instead of waiting in silence.
fn policy_controller(
    client: &Client,
    opts: &Options,
    health: &Arc<ApiHealth>,
    readiness: &Arc<http_server::Readiness>,
    metrics: &metrics::Metrics,
    (claims_epoch, policy_index): (Arc<claims::Epoch>, Arc<PolicyIndex>),
) -> Controller<FailoverPolicy> {
    let policies: Api<FailoverPolicy> = match opts.namespaces.as_slice() {
        [one] => Api::namespaced(client.clone(), one),
        _ => Api::all(client.clone()),
    };
    let mut wc = watcher::Config::default();
    if let Some(sel) = &opts.policy_selector {
        wc = wc.labels(sel);
    }
    let (pstore, pwriter) = reflector::store();
    let crd = CrdPresence {
        readiness: readiness.clone(),
        metrics: metrics.clone(),
        missing: AtomicBool::new(false),
    };
    let before = pstore.clone();
    let policy_stream = reflector::reflector(
        pwriter,
        watched(watcher(policies, wc), health).inspect(move |r| {
            crd.observe(r);
            if let Ok(event) = r {
                claims_epoch.observe(event, &before);
                policy_index.apply(event);
            }
        }),
    )
    .applied_objects();
    Controller::for_stream(policy_stream, pstore)
}

/// `/metrics`, `/healthz` and `/readyz`, plain or secure; returns the bound address.
async fn serve_http(
    client: &Client,
    opts: &Options,
    registry: &Arc<Registry>,
    readiness: &Arc<http_server::Readiness>,
) -> anyhow::Result<SocketAddr> {
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
    Ok(addr)
}

/// The tasks that feed the reconcile queue besides the caches: probe facts (one policy each),
/// leadership changes and the API coming back after an outage (every policy). Returns the
/// queue's two inputs.
fn spawn_followers(
    opts: &Options,
    ctx: &Arc<Context>,
    facts: mpsc::Receiver<Fact>,
    leader_rx: tokio::sync::watch::Receiver<bool>,
    health: &Arc<ApiHealth>,
) -> (
    mpsc::UnboundedReceiver<ObjectRef<FailoverPolicy>>,
    mpsc::UnboundedReceiver<()>,
) {
    // Probe facts: append to the policy's observation, then ask for its reconcile.
    let (trigger_tx, trigger_rx) = mpsc::unbounded_channel::<ObjectRef<FailoverPolicy>>();
    tokio::spawn(pump_facts(facts, ctx.clone(), trigger_tx));

    // Leadership gained: reconcile everything (resuming from status). Lost: forget and stop
    // probing, so a returning term starts from status like a restart.
    let (all_tx, all_rx) = mpsc::unbounded_channel::<()>();
    tokio::spawn(follow_leadership(
        opts.leader_election,
        leader_rx,
        ctx.clone(),
        all_tx.clone(),
    ));
    // Per shard: gained, reconcile its policies; lost, forget them (with one shard, only the
    // shard_held metric: the leader follower above does the rest).
    tokio::spawn(shards::follow(ctx.clone(), all_tx.clone()));
    // The API answers again after failing: every write held by backoff is due now and every
    // policy is reconciled, instead of waiting out backoff grown during the outage.
    tokio::spawn(catch_up_after_outages(health.clone(), ctx.clone(), all_tx));
    (trigger_rx, all_rx)
}

/// Readiness: every cache has listed once. Each is awaited on its own, so /readyz can say which
/// one is still missing; once listed, a cache stays ready across watch restarts.
fn watch_readiness(
    readiness: &Arc<http_server::Readiness>,
    opts: &Options,
    stores: &Stores,
    pstore: &Store<FailoverPolicy>,
) {
    readiness.watch("endpointslices", stores.slices.clone());
    readiness.watch("deployments", stores.deployments.clone());
    readiness.watch("ingresses", stores.ingresses.clone());
    readiness.watch("horizontalpodautoscalers", stores.autoscalers.clone());
    readiness.watch("failoverpolicies", pstore.clone());
    if let Some(store) = &stores.dns_endpoints {
        readiness.watch("dnsendpoints", store.clone());
    }
    if let Some(g) = &stores.gateway {
        readiness.watch(gateway::CACHES[0], g.routes.clone());
        readiness.watch(gateway::CACHES[1], g.gateways.clone());
        // Gateways are cached unfiltered: once listed, an absent one does not exist.
        let (readiness, listed) = (readiness.clone(), g.listed.clone());
        tokio::spawn(async move {
            while !readiness.is_synced(gateway::CACHES[1]) {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            listed.store(true, std::sync::atomic::Ordering::SeqCst);
        });
    }
    // A Deployment absent from a synced, unfiltered cache does not exist: only then may the
    // engine read a missing ingress controller as a down one. Asked of the readiness tracker
    // rather than awaited on the store (a second waiter would steal the store's one waker).
    if opts.deployment_selector.is_none() {
        let (readiness, listed) = (readiness.clone(), stores.deployments_listed.clone());
        tokio::spawn(async move {
            while !readiness.is_synced("deployments") {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            listed.store(true, std::sync::atomic::Ordering::SeqCst);
        });
    }
}

/// The policies index, by what they read (`index::policy_keys`).
type PolicyIndex = index::Index<FailoverPolicy, PolicyKey>;

/// The policies a touched object concerns, in the watched namespaces only, looked up in the
/// index: no pass over the fleet per watch event.
#[derive(Clone)]
struct Concerned {
    index: Arc<PolicyIndex>,
    namespaces: Arc<Vec<String>>,
}

impl Concerned {
    /// The object's namespace, when it is watched.
    fn in_scope<'a>(&self, ns: Option<&'a str>) -> Option<&'a str> {
        ns.filter(|n| self.namespaces.is_empty() || self.namespaces.iter().any(|w| w == n))
    }

    fn policies(
        &self,
        ns: Option<&str>,
        key: impl FnOnce(&str) -> Option<PolicyKey>,
    ) -> Vec<ObjectRef<FailoverPolicy>> {
        self.in_scope(ns)
            .and_then(key)
            .map(|k| self.index.refs(&k))
            .unwrap_or_default()
    }
}

/// Which policies a touched EndpointSlice, Deployment, Ingress, autoscaler, DNSEndpoint,
/// HTTPRoute or Gateway concerns (in the watched namespaces only): those are reconciled.
fn wire_triggers(
    controller: Controller<FailoverPolicy>,
    caches: Caches,
    namespaces: &[String],
    pstore: &Store<FailoverPolicy>,
    policy_index: &Arc<PolicyIndex>,
    claims_epoch: &Arc<claims::Epoch>,
) -> Controller<FailoverPolicy> {
    let concerned = Concerned {
        index: policy_index.clone(),
        namespaces: Arc::new(namespaces.to_vec()),
    };
    let (c1, c2, c3, c4) = (
        concerned.clone(),
        concerned.clone(),
        concerned.clone(),
        concerned.clone(),
    );
    let (epoch_ingresses, epoch_routes) = (claims_epoch.clone(), claims_epoch.clone());
    // A DNSEndpoint changed behind the operator's back (or deleted) is its policy's business:
    // the one its label names.
    let controller = match caches.dns_endpoints {
        Some(stream) => {
            let (pstore, c) = (pstore.clone(), concerned.clone());
            controller.watches_stream(stream, move |e: dns::DNSEndpoint| {
                let ns = c.in_scope(e.metadata.namespace.as_deref())?;
                let policy = ObjectRef::new(e.labels().get(desired::POLICY_LABEL)?).within(ns);
                pstore
                    .get(&policy)
                    .filter(|p| p.spec.dns.is_some())
                    .map(|_| policy)
            })
        }
        None => controller,
    };
    let controller = match caches.gateway {
        Some((routes, gateways)) => {
            let (c5, c6) = (concerned.clone(), concerned);
            controller
                // A template edited (or a copy changed by someone else): its policies copy
                // it again.
                .watches_stream(routes, move |r: gateway::HttpRoute| {
                    let ns = r.metadata.namespace.as_deref();
                    // A template's labels decide which selectors claim it; the operator's own
                    // copies are never claimed.
                    if c5.in_scope(ns).is_some() && !r.labels().contains_key(desired::POLICY_LABEL)
                    {
                        epoch_routes.bump();
                    }
                    c5.policies(ns, |ns| Some(PolicyKey::Routes(ns.to_string())))
                })
                // A Gateway's status changed: the policies judging it hear of it at once.
                .watches_stream(gateways, move |g: gateway::Gateway| {
                    let name = g.name_any();
                    c6.policies(g.metadata.namespace.as_deref(), |ns| {
                        Some(PolicyKey::gateway(ns, &name))
                    })
                })
        }
        None => controller,
    };
    controller
        .watches_stream(caches.slices, move |s: EndpointSlice| {
            let svc = s.labels().get(observe::SERVICE_NAME_LABEL);
            c1.policies(s.metadata.namespace.as_deref(), |ns| {
                svc.map(|svc| PolicyKey::service(ns, svc))
            })
        })
        .watches_stream(caches.deployments, move |d: Deployment| {
            let name = d.name_any();
            c2.policies(d.metadata.namespace.as_deref(), |ns| {
                Some(PolicyKey::deployment(ns, &name))
            })
        })
        .watches_stream(caches.ingresses, move |i: Ingress| {
            let ns = i.metadata.namespace.as_deref();
            // Ingress selectors claim by labels.
            if c3.in_scope(ns).is_some() {
                epoch_ingresses.bump();
            }
            c3.policies(ns, |ns| Some(PolicyKey::Ingresses(ns.to_string())))
        })
        // An autoscaler on an emergency Deployment changes what is in effect (status says who
        // else scales it): its policy hears of it at once, not at the next resync.
        .watches_stream(caches.autoscalers, move |h: HorizontalPodAutoscaler| {
            let target = h.spec.as_ref().map(|s| &s.scale_target_ref);
            let Some(target) = target.filter(|t| t.kind == "Deployment") else {
                return Vec::new();
            };
            c4.policies(h.metadata.namespace.as_deref(), |ns| {
                Some(PolicyKey::deployment(ns, &target.name))
            })
        })
}

/// Whether the API is failing, as the watches see it: a failing list or watch marks it down;
/// [`catch_up_after_outages`] then asks the API itself until it answers. (A watch that
/// reconnects after an outage yields no event when nothing changed, so the watches alone
/// cannot tell that the API is back.)
#[derive(Default)]
struct ApiHealth {
    failing_since: std::sync::Mutex<Option<std::time::Instant>>,
}

impl ApiHealth {
    /// Failing this long is an outage worth a catch-up; a lone watch error (a 410, a dropped
    /// connection) is not, and resets no backoff.
    const OUTAGE: Duration = Duration::from_secs(3);
    /// How often the API is asked while failing.
    const POLL: Duration = Duration::from_millis(500);

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<std::time::Instant>> {
        self.failing_since.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn observe<T>(&self, r: &Result<T, watcher::Error>) {
        if r.is_err() {
            self.lock().get_or_insert_with(std::time::Instant::now);
        }
    }
}

/// Once the API answers again after an outage, every write held by backoff is due at once
/// and every policy is reconciled, instead of waiting out backoff grown during the outage.
async fn catch_up_after_outages(
    health: Arc<ApiHealth>,
    ctx: Arc<Context>,
    all: mpsc::UnboundedSender<()>,
) {
    loop {
        tokio::time::sleep(ApiHealth::POLL).await;
        let Some(since) = *health.lock() else {
            continue;
        };
        let answered = tokio::time::timeout(ApiHealth::POLL, ctx.client.apiserver_version()).await;
        if !matches!(answered, Ok(Ok(_))) {
            continue;
        }
        health.lock().take();
        if since.elapsed() < ApiHealth::OUTAGE {
            continue;
        }
        info!(
            failing_for = ?since.elapsed(),
            "the API answers again; retrying held writes and reconciling every policy"
        );
        let now = (ctx.clock)().wall;
        for rt in ctx.all_runtimes() {
            context::lock(&rt).ledger.retry_now(now);
        }
        if all.send(()).is_err() {
            return;
        }
    }
}

/// Reports a missing FailoverPolicy CRD (the policy list answering 404) once per change: an
/// error in the log, the reason in /readyz, `ingress_failover_crd_missing` 1.
struct CrdPresence {
    readiness: Arc<http_server::Readiness>,
    metrics: metrics::Metrics,
    missing: AtomicBool,
}

impl CrdPresence {
    fn observe<T>(&self, r: &Result<T, watcher::Error>) {
        let missing = match r {
            Err(
                watcher::Error::InitialListFailed(kube::Error::Api(s))
                | watcher::Error::WatchStartFailed(kube::Error::Api(s)),
            ) => s.code == 404,
            Err(_) => return, // another failure says nothing about the CRD
            Ok(_) => false,
        };
        if self.missing.swap(missing, Ordering::SeqCst) == missing {
            return;
        }
        self.metrics.crd_missing.set(i64::from(missing));
        if missing {
            let why = format!(
                "the CustomResourceDefinition {CRD_NAME} is not installed (the policy list answers 404): install the chart's CRD (crds/)"
            );
            error!(
                crd = CRD_NAME,
                "{why}; no policy can be managed until it is"
            );
            self.readiness.set_problem("failoverpolicies", Some(why));
        } else {
            info!(crd = CRD_NAME, "the FailoverPolicy CRD is installed");
            self.readiness.set_problem("failoverpolicies", None);
        }
    }
}

fn tokio_stream<T: Send + 'static>(
    mut rx: mpsc::UnboundedReceiver<T>,
) -> impl Stream<Item = T> + Send {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Watcher backoff: 250 ms doubling to at most 2 s, with jitter. kube-runtime's
/// `default_backoff()` grows to 30 s (plus up to as much jitter): after a 60 s outage a
/// reflector could sleep most of a minute more before it listed again (issue 12: 43 s to
/// converge). Reset on every successful event by `StreamBackoff`.
struct WatchBackoff {
    next: Duration,
}

impl WatchBackoff {
    const FIRST: Duration = Duration::from_millis(250);
    const MAX: Duration = Duration::from_secs(2);
}

impl Default for WatchBackoff {
    fn default() -> Self {
        WatchBackoff { next: Self::FIRST }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let base = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        Some(base.mul_f64(0.75 + fastrand::f64() * 0.5))
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

/// The Controller's trigger backoff: none. kube-runtime merges every trigger (the policy
/// watch, each `watches_stream`, and `reconcile_on`: the probe facts) into one stream and, by
/// default, pauses *all* of it after an error from *any* of them, with a backoff that grows
/// from 0.8 s to 30 s. One compaction gives each of the five reflectors a 410, each error
/// doubled the pause, and every decision waited 16–20 s (issue 12, item 5); an outage grew it
/// to 30 s. Each reflector backs off on its own ([`WatchBackoff`], applied before it), so the
/// merged stream has nothing left to pause for.
struct NoPause;

impl Iterator for NoPause {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(Duration::ZERO)
    }
}

impl Backoff for NoPause {
    fn reset(&mut self) {}
}

/// A watcher with [`WatchBackoff`], reporting to `health`.
fn watched<K>(
    events: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    health: &Arc<ApiHealth>,
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static
where
    K: Send + 'static,
{
    let health = health.clone();
    events
        .backoff(WatchBackoff::default())
        .inspect(move |r| health.observe(r))
}

/// A reflector over the watched namespaces: a cache plus the stream of touched objects that
/// drives it (the Controller polls the stream).
fn reflect<K>(
    client: &Client,
    namespaces: &[String],
    wc: watcher::Config,
    health: &Arc<ApiHealth>,
    index: impl Fn(&watcher::Event<K>) + Send + 'static,
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
    // The index follows each event just before the store does (see `index`).
    let events = watched(watcher(api, wc), health).inspect(move |r| {
        if let Ok(event) = r {
            index(event);
        }
    });
    let stream = reflector::reflector(writer, events).touched_objects();
    (store, stream)
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
            // A check that changes no decision and nothing status shows (a serving endpoint
            // passing again, one out of service failing the same way, a Falling or Rising one
            // moving its counter) is taken by the engine without a step or a reconcile: in
            // steady state that is nearly every check, and a reconcile per check was most of the
            // operator's cost (issue 16). Only while no earlier fact waits, so that it is judged
            // against the state those facts will leave.
            let pending = !r.obs.checks.is_empty()
                || !r.obs.lb_checks.is_empty()
                || !r.obs.backup_lb_checks.is_empty();
            let pool = if fact.key.tier == Tier::Primary {
                Pool::Primary
            } else {
                Pool::Emergency
            };
            let r = &mut *r;
            let absorbed = !pending
                && match fact.key.tier {
                    Tier::LoadBalancer => r.state.absorbs_lb_check(false, &fact.outcome),
                    Tier::BackupLoadBalancer => r.state.absorbs_lb_check(true, &fact.outcome),
                    Tier::Primary | Tier::Emergency => r.state.absorb_check(
                        &r.cfg,
                        pool,
                        fact.key.endpoint.as_ref(),
                        &fact.outcome,
                    ),
                };
            if absorbed {
                ctx.metrics.facts_absorbed.inc();
                continue;
            }
            match fact.key.tier {
                Tier::LoadBalancer => r.obs.lb_checks.push(fact.outcome),
                Tier::BackupLoadBalancer => r.obs.backup_lb_checks.push(fact.outcome),
                Tier::Primary | Tier::Emergency => r.obs.checks.push(CheckFact {
                    address: fact.key.endpoint.to_string(),
                    pool,
                    outcome: fact.outcome,
                }),
            }
            // One trigger per reconcile to come: the reconcile clears the flag as it starts.
            if std::mem::replace(&mut r.fact_trigger_sent, true) {
                continue;
            }
        }
        let _ = trigger.send(fact.key.policy.object_ref());
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
                // A standby must not keep exporting what it last saw: its stale series would
                // sit beside the new leader's and keep alerts firing after the fix.
                ctx.metrics.forget(&key);
            }
        }
        was = is;
        if leader.changed().await.is_err() {
            return;
        }
    }
}
