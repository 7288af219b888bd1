//! What every reconcile shares: the client, caches, prober, metrics and the engine's per-policy
//! memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use kube::Client;
use kube::runtime::reflector::Store;
use tokio::sync::watch;

use crate::api::FailoverPolicyStatus;
use crate::api::PolicyId;
use crate::engine::{Action, EndpointFact, EngineConfig, Millis, Now, Observation, PolicyState};
use crate::probe::Prober;
use crate::validation::Allowlist;
use crate::validation::ValidationContext;

use super::metrics::Metrics;

/// The clock the engine is given: windows on a monotonic clock, timestamps on the wall clock
/// (see [`Now`]). Real time in production; tests may inject another.
pub type Clock = Arc<dyn Fn() -> Now + Send + Sync>;

/// Wall time from the system clock; monotonic time from `Instant`, expressed as the wall time at
/// start plus the monotonic time elapsed since, so both read alike until the wall clock steps.
pub fn system_clock() -> Clock {
    let origin = std::time::Instant::now();
    let origin_wall = jiff::Timestamp::now().as_millisecond();
    Arc::new(move || Now {
        mono: origin_wall + origin.elapsed().as_millis() as Millis,
        wall: jiff::Timestamp::now().as_millisecond(),
    })
}

/// The Service (in `default`) whose endpoints are the API server's addresses; its
/// EndpointSlice, written by the API server itself, carries the same name.
const API_SERVER_SERVICE: &str = "kubernetes";

/// Read-only caches of what policies reference, kept warm on every replica.
#[derive(Clone)]
pub struct Stores {
    pub slices: Store<EndpointSlice>,
    /// The slices by Service and by owner, following `slices` (see `index`).
    pub slice_index: Arc<super::index::Index<EndpointSlice, super::index::SliceKey>>,
    pub deployments: Store<Deployment>,
    pub ingresses: Store<Ingress>,
    /// HorizontalPodAutoscalers, to leave an autoscaled emergency Deployment to its autoscaler.
    pub autoscalers: Store<HorizontalPodAutoscaler>,
    /// ExternalDNS `DNSEndpoint`s, with `--dns-endpoints` only (the CRD is optional).
    pub dns_endpoints: Option<Store<super::dns::DNSEndpoint>>,
    /// Whether a Deployment absent from the cache does not exist: set once the Deployment
    /// cache has listed everything in scope with no label filter.
    pub deployments_listed: Arc<std::sync::atomic::AtomicBool>,
    /// The namespaces the caches watch; empty means all.
    pub namespaces: Arc<Vec<String>>,
    /// HTTPRoutes and Gateways, with `--gateway-api` only.
    pub gateway: Option<super::gateway::GatewayStores>,
}

impl Stores {
    /// Whether a Deployment in `ns` absent from the cache does not exist: the cache has listed
    /// every Deployment there (synced, no label filter, namespace in scope).
    pub fn lists_every_deployment_in(&self, ns: &str) -> bool {
        self.deployments_listed
            .load(std::sync::atomic::Ordering::SeqCst)
            && (self.namespaces.is_empty() || self.namespaces.iter().any(|n| n == ns))
    }

    /// The EndpointSlices of the Service `ns/name`, whoever wrote them.
    pub fn service_slices(&self, ns: &str, name: &str) -> Vec<Arc<EndpointSlice>> {
        self.slice_index
            .get(&self.slices, &super::index::SliceKey::service(ns, name))
    }

    /// The EndpointSlices owned by the object with `uid` (a policy: what it published).
    pub fn owned_slices(&self, uid: &str) -> Vec<Arc<EndpointSlice>> {
        self.slice_index.get(
            &self.slices,
            &super::index::SliceKey::Owner(uid.to_string()),
        )
    }

    /// The cached Deployment `ns/name`, if seen.
    pub fn deployment(&self, ns: &str, name: &str) -> Option<Arc<Deployment>> {
        self.deployments
            .get(&kube::runtime::reflector::ObjectRef::new(name).within(ns))
    }
}

/// What the operator last made true of one Service it publishes through.
#[derive(Debug, Default)]
pub struct Publication {
    /// The Service was found or created for the current generation.
    pub ensured: bool,
    /// The published set last made true in the cluster, and when the cluster was last
    /// compared: a reconcile triggered by a probe fact that changed nothing skips the
    /// comparison, and a periodic one still catches objects changed behind the operator's back.
    pub synced: Option<(Vec<super::desired::Published>, i64)>,
}

impl Publication {
    /// Whether the slices must be compared with `published` now.
    pub fn due(&self, published: &[super::desired::Published], now: i64, resync_ms: i64) -> bool {
        self.synced
            .as_ref()
            .is_none_or(|(synced, at)| synced.as_slice() != published || now - at >= resync_ms)
    }
}

/// The engine's memory of one policy, plus what the controller last wrote for it.
pub struct PolicyRuntime {
    pub generation: Option<i64>,
    pub cfg: EngineConfig,
    pub state: PolicyState,
    pub obs: Observation,
    /// The inventory last handed to the engine and the prober.
    pub inventory: Vec<EndpointFact>,
    /// Replicas this process last wrote (or found) for the emergency Deployment: written again
    /// only when the engine's wish changes, so a human scaling it by hand is not fought.
    pub emergency_replicas_written: Option<i32>,
    /// The generation refused by validation and why, while the last valid one is held.
    pub rejected: Option<(Option<i64>, String)>,
    /// resourceVersion of the cached emergency Deployment when the operator last scaled it:
    /// while the cache still shows that version it has not seen the write, and a difference
    /// is lag, not another writer.
    pub emergency_written_over: Option<String>,
    /// Per source Ingress: the fields last applied (debug form) and the resourceVersion the cache
    /// showed then, to tell cache lag from another writer.
    pub ingress_written: std::collections::HashMap<String, (String, Option<String>)>,
    /// Actions whose Events wait for the writes they describe to succeed.
    pub pending_events: Vec<Action>,
    pub last_status: Option<FailoverPolicyStatus>,
    /// Probe targets need refreshing (spec or inventory changed).
    pub targets_dirty: bool,
    /// A probe fact has queued a reconcile that has not started yet: later facts join the
    /// observation without another trigger (at 10,000 policies a trigger per fact was hundreds
    /// of queue messages a second for reconciles already due).
    pub fact_trigger_sent: bool,
    /// The claims epoch at which no other policy claimed anything this one claims (see
    /// [`super::claims::Epoch`]).
    pub alone_at: Option<u64>,
    /// The managed Service: found or created, and the set its slices were last made to list.
    pub managed: Publication,
    /// The same for the weighted emergency Service (`spec.gateway.backendWeights`).
    pub emergency: Publication,
    /// The same for the legacy Endpoints mirror, with whether an object of the operator's
    /// exists (None: not known in this process yet).
    pub legacy_synced: Option<(Vec<super::desired::Published>, i64)>,
    pub legacy_exists: Option<bool>,
    /// Failing writes and their backoff, corrections of other writers.
    pub ledger: super::ledger::Ledger,
    /// The objects this policy claims that another policy owns, as last announced.
    pub conflict: Option<String>,
    /// Objects handed back since the last spec change (`Service name`, `Ingress name`): the
    /// caches may still show them as the policy's for a moment.
    pub retired: std::collections::BTreeSet<String>,
    /// When renamed or removed references were last looked for (None: look on the next
    /// reconcile, as after a spec change or a restart).
    pub references_checked: Option<i64>,
}

/// Shared by all reconciles.
pub struct Context {
    pub client: Client,
    pub rules: ValidationContext,
    pub prober: Prober,
    pub events: super::events::EventSink,
    pub metrics: Metrics,
    pub stores: Stores,
    /// True while this replica holds the leader Lease (with shards: at least one shard).
    pub leader: watch::Receiver<bool>,
    /// Which shards this replica holds: a policy is written only by its shard's holder.
    pub shards: Arc<super::shards::ShardSet>,
    /// Every policy in scope (the Controller's own cache): claims are decided among them.
    pub policies: Store<crate::api::FailoverPolicy>,
    /// The policies by what they read (`index::policy_keys`): triggers and claim rivals.
    pub policy_index: Arc<super::index::Index<crate::api::FailoverPolicy, super::index::PolicyKey>>,
    /// When what policies claim last changed.
    pub claims_epoch: Arc<super::claims::Epoch>,
    pub clock: Clock,
    /// Per-policy engine memory (start empty).
    pub runtimes: Mutex<HashMap<PolicyId, Arc<Mutex<PolicyRuntime>>>>,
    /// Consecutive reconcile failures per policy (start empty).
    pub failures: Mutex<HashMap<PolicyId, u32>>,
    /// `--probe-allowlist` with the API server's addresses last seen (see [`Self::allowlist`]).
    pub allowlist: Mutex<Arc<Allowlist>>,
    /// `--trust-unmanaged-endpointslices`: read EndpointSlices whatever manages them.
    pub trust_unmanaged_slices: bool,
    /// How long a policy goes without a reconcile when nothing happens (`--resync-seconds`).
    pub resync: std::time::Duration,
    /// Reconciles doing work at once (`--max-concurrent-reconciles`), granted in the order asked.
    pub reconcile_slots: tokio::sync::Semaphore,
}

impl Context {
    /// The allowlist every endpoint and probe is judged by, with the API server's current
    /// addresses: its in-cluster Service IP (`KUBERNETES_SERVICE_HOST`) and the endpoints of
    /// `default/kubernetes` when the slice cache covers that namespace. When they change, the
    /// prober is told too, so its own check before connecting uses the same addresses.
    pub fn allowlist(&self) -> Arc<Allowlist> {
        let slice = self
            .stores
            .slices
            .get(&kube::runtime::reflector::ObjectRef::new(API_SERVER_SERVICE).within("default"));
        let addresses = std::env::var("KUBERNETES_SERVICE_HOST")
            .ok()
            .and_then(|h| h.parse().ok())
            .into_iter()
            .chain(
                slice
                    .iter()
                    .flat_map(|s| s.endpoints.iter())
                    .flat_map(|e| e.addresses.iter())
                    .filter_map(|a| a.parse().ok()),
            );
        let mut current = self.allowlist.lock().unwrap_or_else(|p| p.into_inner());
        let next = (**current).clone().with_api_server(addresses);
        if next != **current {
            *current = Arc::new(next.clone());
            self.prober.set_allowlist(next);
        }
        current.clone()
    }

    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    /// Resolves as soon as this replica is not the leader (at once if it is not now, or if the
    /// election has ended). Reconciles race their writes against it, so a lost lease cancels
    /// every write still in flight.
    pub async fn leadership_lost(&self) {
        let mut leader = self.leader.clone();
        let _ = leader.wait_for(|is| !*is).await;
    }

    /// Whether this replica holds the shard of `policy` (with one shard: is the leader), so
    /// may write for it.
    pub fn holds(&self, policy: &crate::api::FailoverPolicy) -> bool {
        self.shards.holds(self.shards.of(policy))
    }

    /// Resolves as soon as this replica does not hold `shard` (`self.shards.of(policy)`):
    /// reconciles race their writes against it, as [`Self::leadership_lost`] for one shard.
    pub async fn shard_lost(&self, shard: u32) {
        let mut held = self.shards.flag(shard);
        let _ = held.wait_for(|is| !*is).await;
    }

    fn map(&self) -> MutexGuard<'_, HashMap<PolicyId, Arc<Mutex<PolicyRuntime>>>> {
        self.runtimes.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn runtime(&self, key: &PolicyId) -> Option<Arc<Mutex<PolicyRuntime>>> {
        self.map().get(key).cloned()
    }

    /// Every policy's memory, e.g. to reset write backoff once the API answers again.
    pub fn all_runtimes(&self) -> Vec<Arc<Mutex<PolicyRuntime>>> {
        self.map().values().cloned().collect()
    }

    pub fn insert_runtime(&self, key: PolicyId, rt: PolicyRuntime) -> Arc<Mutex<PolicyRuntime>> {
        let rt = Arc::new(Mutex::new(rt));
        self.map().insert(key, rt.clone());
        rt
    }

    pub fn remove_runtime(&self, key: &PolicyId) {
        self.map().remove(key);
    }

    /// Forgets every policy's memory, e.g. after losing the lease: the next leader term
    /// resumes from status, like a restart.
    pub fn clear_runtimes(&self) -> Vec<PolicyId> {
        self.map().drain().map(|(k, _)| k).collect()
    }

    /// Forgets the memory of the policies `pred` selects (a shard lost), returning their keys.
    pub fn remove_runtimes_where(&self, pred: impl Fn(&PolicyId) -> bool) -> Vec<PolicyId> {
        let mut map = self.map();
        let keys: Vec<PolicyId> = map.keys().filter(|k| pred(k)).cloned().collect();
        for k in &keys {
            map.remove(k);
        }
        keys
    }

    /// Consecutive failures of a policy's reconcile, for its exponential backoff.
    pub fn record_failure(&self, key: &PolicyId) -> u32 {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let n = f.entry(key.clone()).or_insert(0);
        *n = n.saturating_add(1);
        *n
    }

    pub fn record_success(&self, key: &PolicyId) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

/// Locks a runtime; poisoning is ignored because every mutation is a complete engine step.
pub fn lock(rt: &Mutex<PolicyRuntime>) -> MutexGuard<'_, PolicyRuntime> {
    rt.lock().unwrap_or_else(|p| p.into_inner())
}
