//! Integration harness: a Kubernetes API (the embedded control plane by default, a real cluster
//! when `INGRESS_FAILOVER_KUBECONFIG` is set), real loopback backends, and the real controller
//! running in-process. Tests talk to the cluster only through the Kubernetes API.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use devcluster::{DevCluster, DevClusterOptions};
use ingress_failover::api::{FailoverPolicy, FailoverPolicyStatus};
use ingress_failover::controller::{self, Options, Running};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use testkit::farm::{Behavior, Farm};
use testkit::pods::{serve_pods, slice_addresses};
use tokio::sync::oneshot;

// The kit's loopback HTTP client and polling, under the names the tests use (each test binary
// uses a subset).
#[allow(unused_imports)]
pub use testkit::http::{get as http_get, response as http_response};
#[allow(unused_imports)]
pub use testkit::wait::eventually;

pub const TEST_AGENT: &str = "ingress-failover-tests";
pub const CONTROLLER_AGENT: &str = "ingress-failover";

/// Whether a User-Agent is a controller replica's (`ingress-failover/<version> (<identity>)`).
pub fn is_controller_agent(ua: &str) -> bool {
    ua.starts_with(&format!("{CONTROLLER_AGENT}/"))
}

static NEXT: AtomicU32 = AtomicU32::new(1);

/// One test's world.
pub struct Env {
    pub cluster: Option<Arc<DevCluster>>,
    pub client: Client,
    pub ns: String,
    pub farm: Farm,
    pub controller: Option<ControllerHandle>,
    net: u32,
    next_host: AtomicU32,
}

/// A controller running on its own runtime and thread, so that killing it drops every task it
/// spawned (lease renewal, probes, HTTP server) at once, as a crashed process would.
pub struct ControllerHandle {
    pub running: Running,
    stop: Option<oneshot::Sender<()>>,
    kill: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ControllerHandle {
    pub fn writes(&self) -> u64 {
        self.running.ctx.metrics.total_writes()
    }

    /// Stops the controller as a crash would: no cleanup, no lease release.
    pub async fn kill(mut self) {
        if let Some(k) = self.kill.take() {
            let _ = k.send(());
        }
        self.join().await;
    }

    /// Graceful shutdown.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.join().await;
    }

    async fn join(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

pub fn init() {
    ingress_failover::install_crypto_provider();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TEST_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

impl Env {
    /// A fresh namespace on the embedded plane (or the real cluster), with the CRD installed.
    pub async fn start(name: &str) -> Env {
        init();
        let net = NEXT.fetch_add(1, Ordering::SeqCst);
        let (cluster, client) = match std::env::var("INGRESS_FAILOVER_KUBECONFIG") {
            Ok(path) => {
                let c = ingress_failover::kubeclient::client(Some(path.as_ref()))
                    .await
                    .expect("client for INGRESS_FAILOVER_KUBECONFIG");
                (None, c)
            }
            Err(_) => {
                let opts = DevClusterOptions {
                    pod_ready_delay: Duration::from_millis(300),
                    ..Default::default()
                };
                let cluster = DevCluster::start(opts).await.expect("devcluster starts");
                let client = cluster.client_with_user_agent(TEST_AGENT).expect("client");
                (Some(Arc::new(cluster)), client)
            }
        };
        // On a real cluster, which outlives a test run, namespaces are unique per run too.
        let ns = match cluster {
            Some(_) => format!("{name}-{net}"),
            None => format!("{name}-{net}-{}", std::process::id()),
        };
        let env = Env {
            cluster,
            client,
            ns,
            farm: Farm::new(),
            controller: None,
            net,
            next_host: AtomicU32::new(1),
        };
        env.install_crd().await;
        env.apply_json(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": env.ns}}),
        )
        .await;
        env
    }

    async fn install_crd(&self) {
        let api: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        let crd = ingress_failover::api::crd::crd();
        api.patch(
            "failoverpolicies.ingressfailover.io",
            &PatchParams::apply(TEST_AGENT).force(),
            &Patch::Apply(&crd),
        )
        .await
        .expect("CRD applies");
        let policies: Api<FailoverPolicy> = Api::all(self.client.clone());
        eventually(Duration::from_secs(10), || async {
            policies.list(&ListParams::default().limit(1)).await.ok()
        })
        .await;
    }

    /// An address for a new backend, distinct per test: 127.<test>.0.<n>:8080 on the embedded
    /// plane; on a real cluster (which refuses loopback addresses in EndpointSlices) a port of
    /// `INGRESS_FAILOVER_TEST_BACKEND_IP`, an address of this host the cluster can route to.
    pub fn backend_addr(&self) -> SocketAddr {
        let n = self.next_host.fetch_add(1, Ordering::SeqCst);
        match backend_ip() {
            Some(ip) => SocketAddr::new(ip, (20000 + (self.net % 400) * 100 + n % 100) as u16),
            // The third octet also depends on the process, so that test binaries run side by
            // side (in development) do not bind the same addresses.
            None => format!(
                "127.{}.{}.{}:8080",
                100 + self.net % 100,
                (std::process::id() % 50) * 5 + (n / 250) % 5,
                1 + n % 250
            )
            .parse()
            .unwrap(),
        }
    }

    /// Starts `n` healthy backends and returns their addresses.
    pub async fn backends(&self, n: usize) -> Vec<SocketAddr> {
        let mut out = Vec::new();
        for _ in 0..n {
            let a = self.backend_addr();
            self.farm
                .set(a, Behavior::Healthy)
                .await
                .expect("backend binds");
            out.push(a);
        }
        out
    }

    pub async fn set(&self, addr: SocketAddr, b: Behavior) {
        self.farm.set(addr, b).await.expect("backend reconfigures");
    }

    pub fn controller_options(&self) -> Options {
        // A real cluster is shared by the tests running in parallel: each controller watches
        // its own test's namespace only (the embedded plane is one cluster per test).
        let namespaces = match self.cluster {
            Some(_) => Vec::new(),
            None => vec![self.ns.clone()],
        };
        // The leader-election Lease: in the test's namespace, or (a real cluster with the
        // chart's ServiceAccount) in the operator's namespace, where the chart grants Leases.
        let (lease_name, lease_namespace) =
            match std::env::var("INGRESS_FAILOVER_TEST_LEASE_NAMESPACE") {
                Ok(lease_ns) => (format!("ingress-failover-{}", self.ns), lease_ns),
                Err(_) => ("ingress-failover".into(), self.ns.clone()),
            };
        Options {
            namespaces,
            policy_selector: None,
            deployment_selector: None,
            ingress_selector: None,
            rules: ingress_failover::validation::ValidationContext {
                allowed_ingress_controller_namespaces: vec![],
                probe_allowlist: match (probe_allowlist(), backend_ip()) {
                    (Some(list), _) => list,
                    (None, Some(ip)) => vec![ip.to_string()],
                    (None, None) => vec!["127.0.0.0/8".into()],
                },
            },
            metrics_addr: "127.0.0.1:0".parse().unwrap(),
            metrics_secure: None,
            leader_election: false,
            lease_name,
            lease_namespace,
            identity: format!("test-{}", self.net),
            lease_seconds: 3,
            // client-go's proportions (15 s / 10 s / 2 s) for a 3 s lease.
            lease_renew_deadline: Duration::from_millis(2000),
            lease_retry_period: Duration::from_millis(400),
            shards: 1,
            prober: Default::default(),
            trust_unmanaged_endpointslices: false,
            dns_endpoints: false,
            max_concurrent_reconciles: 32,
            gateway_api: false,
            resync: std::time::Duration::from_secs(300),
        }
    }

    /// Starts the real controller in-process.
    pub async fn start_controller(&mut self) {
        let opts = self.controller_options();
        self.controller = Some(self.spawn_controller(opts).await);
    }

    pub async fn spawn_controller(&self, opts: Options) -> ControllerHandle {
        let cluster = self.cluster.clone();
        let real_client = self.client.clone();
        let controller_user_agent = ingress_failover::kubeclient::controller_user_agent;
        let controller_kubeconfig = std::env::var("INGRESS_FAILOVER_CONTROLLER_KUBECONFIG").ok();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (kill_tx, kill_rx) = oneshot::channel::<()>();
        let (started_tx, started_rx) = oneshot::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("controller runtime");
            rt.block_on(async move {
                // The client must be built on this runtime: its connections live here.
                let client = match (&cluster, controller_kubeconfig) {
                    // As `run` does: the product, version and replica identity, so the audit log
                    // tells the replicas apart.
                    (Some(c), _) => {
                        kube::Client::try_from(ingress_failover::kubeclient::without_default_retry(
                            c.config_with_user_agent(&controller_user_agent(&opts.identity)),
                        ))
                        .expect("client")
                    }
                    // The controller's own identity (e.g. the chart's ServiceAccount token), so
                    // that the real authorizer checks every call it makes.
                    // User-Agent as `run` sends it, so the apiserver's audit log names the replica.
                    (None, Some(path)) => ingress_failover::kubeclient::client_as(
                        Some(path.as_ref()),
                        Some(&controller_user_agent(&opts.identity)),
                    )
                    .await
                    .expect("client for INGRESS_FAILOVER_CONTROLLER_KUBECONFIG"),
                    (None, None) => real_client,
                };
                let shutdown = async move {
                    let _ = stop_rx.await;
                };
                let run = controller::run(
                    client,
                    opts,
                    controller::system_clock(),
                    shutdown,
                    Some(started_tx),
                );
                tokio::select! {
                    r = run => if let Err(e) = r { panic!("controller failed: {e:#}") },
                    _ = kill_rx => {}
                }
            });
            rt.shutdown_background();
        });
        let running = tokio::time::timeout(Duration::from_secs(20), started_rx)
            .await
            .expect("controller starts in time")
            .expect("controller reports its start");
        ControllerHandle {
            running,
            stop: Some(stop_tx),
            kill: Some(kill_tx),
            thread: Some(thread),
        }
    }

    pub async fn apply_json(&self, mut obj: Value) {
        let api_version = obj["apiVersion"].as_str().unwrap().to_string();
        let kind = obj["kind"].as_str().unwrap().to_string();
        let name = obj["metadata"]["name"].as_str().unwrap().to_string();
        let namespaced = kind != "Namespace" && kind != "IngressClass";
        if namespaced && obj["metadata"].get("namespace").is_none() {
            obj["metadata"]["namespace"] = json!(self.ns);
        }
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (String::new(), api_version.clone()),
        };
        let gvk = kube::core::GroupVersionKind::gvk(&group, &version, &kind);
        let (ar, _) = kube::discovery::pinned_kind(&self.client, &gvk)
            .await
            .unwrap_or_else(|e| panic!("discovering {kind}: {e}"));
        let api: Api<kube::core::DynamicObject> = if namespaced {
            Api::namespaced_with(self.client.clone(), &self.ns, &ar)
        } else {
            Api::all_with(self.client.clone(), &ar)
        };
        api.patch(
            &name,
            &PatchParams::apply(TEST_AGENT).force(),
            &Patch::Apply(&obj),
        )
        .await
        .unwrap_or_else(|e| panic!("applying {kind} {name}: {e}"));
    }

    /// Deletes a policy and waits until it is gone (its finalizer has run).
    pub async fn delete_policy(&self, name: &str, timeout: Duration) {
        self.policies()
            .delete(name, &Default::default())
            .await
            .expect("delete policy");
        self.wait_policy_gone(name, timeout).await;
    }

    /// Until the policy `name` no longer exists (its finalizer done).
    pub async fn wait_policy_gone(&self, name: &str, timeout: Duration) {
        eventually(timeout, || async {
            self.policies()
                .get_opt(name)
                .await
                .ok()
                .flatten()
                .is_none()
                .then_some(())
        })
        .await;
    }

    /// Writes the controller made to anything but its policies and Events, per the embedded
    /// plane's audit log.
    pub fn managed_writes(&self) -> Vec<devcluster::AuditEntry> {
        let cluster = self
            .cluster
            .as_ref()
            .expect("the audit log is the embedded plane's");
        cluster
            .audit()
            .into_iter()
            .filter(|e| is_controller_agent(&e.user_agent))
            .filter(|e| matches!(e.verb.as_str(), "create" | "update" | "patch" | "delete"))
            .filter(|e| !matches!(e.resource.as_str(), "failoverpolicies" | "events"))
            .collect()
    }

    pub fn policies(&self) -> Api<FailoverPolicy> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub async fn status(&self, name: &str) -> Option<FailoverPolicyStatus> {
        self.policies()
            .get_opt(name)
            .await
            .ok()
            .flatten()
            .and_then(|p| p.status)
    }

    /// Waits until the policy's status satisfies `pred`, returning it.
    pub async fn wait_status(
        &self,
        name: &str,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&FailoverPolicyStatus) -> bool,
    ) -> FailoverPolicyStatus {
        let deadline = Instant::now() + timeout;
        loop {
            let st = self.status(name).await;
            if let Some(s) = &st
                && pred(s)
            {
                return s.clone();
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; last status: {st:#?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Addresses (`host:port`) in the managed Service's EndpointSlices.
    pub async fn published(&self, service: &str) -> BTreeSet<String> {
        let selector = format!(
            "kubernetes.io/service-name={service},endpointslice.kubernetes.io/managed-by=ingress-failover.ingressfailover.io"
        );
        slice_addresses(&self.client, &self.ns, &selector)
            .await
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    pub async fn wait_published(
        &self,
        service: &str,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&BTreeSet<String>) -> bool,
    ) -> BTreeSet<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let p = self.published(service).await;
            if pred(&p) {
                return p;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; published: {p:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn ingress_class(&self, name: &str) -> Option<String> {
        let api: Api<Ingress> = Api::namespaced(self.client.clone(), &self.ns);
        api.get_opt(name)
            .await
            .ok()
            .flatten()
            .and_then(|i| i.spec.and_then(|s| s.ingress_class_name))
    }

    pub async fn deployment_replicas(&self, name: &str) -> Option<i32> {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &self.ns);
        api.get_opt(name)
            .await
            .ok()
            .flatten()
            .and_then(|d| d.spec.and_then(|s| s.replicas))
    }

    /// Keeps a farm backend running at every ready address of `service`'s EndpointSlices (the
    /// pods the embedded controller-manager creates have loopback IPs but no server).
    pub fn serve_pods_of(&self, service: &str) -> tokio::task::JoinHandle<()> {
        if self.cluster.is_none() && std::env::var_os("INGRESS_FAILOVER_TEST_SERVE_PODS").is_none()
        {
            // A real cluster's pods run `pod_image()` and serve themselves; pods of a fake
            // kubelet (kwok, INGRESS_FAILOVER_TEST_SERVE_PODS set) run nothing and are served
            // here at their (locally routed) pod IPs.
            return tokio::spawn(async {});
        }
        tokio::spawn(serve_pods(
            self.client.clone(),
            self.ns.clone(),
            format!("kubernetes.io/service-name={service}"),
            self.farm.clone(),
        ))
    }
}

/// `INGRESS_FAILOVER_TEST_PROBE_ALLOWLIST`: comma-separated addresses/CIDRs the controller may
/// probe on a real cluster (backends and pod IPs); the backend IP alone by default.
fn probe_allowlist() -> Option<Vec<String>> {
    std::env::var("INGRESS_FAILOVER_TEST_PROBE_ALLOWLIST")
        .ok()
        .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
}

fn backend_ip() -> Option<std::net::IpAddr> {
    std::env::var("INGRESS_FAILOVER_TEST_BACKEND_IP")
        .ok()
        .and_then(|v| v.parse().ok())
}

/// Image of the pods the tests create: any image works on the embedded plane (its pods run
/// nothing); a real cluster needs a server answering `/healthz` on 8080.
pub fn pod_image() -> String {
    std::env::var("INGRESS_FAILOVER_TEST_POD_IMAGE").unwrap_or_else(|_| "web:1".into())
}

pub fn addrs(list: &[SocketAddr]) -> Vec<String> {
    list.iter().map(|a| a.to_string()).collect()
}

pub fn set_of(list: &[SocketAddr]) -> BTreeSet<String> {
    list.iter().map(|a| a.to_string()).collect()
}

/// A policy over static loopback backends with fast timings (1 s checks, fall 3, rise 2).
pub fn policy(name: &str, primary: &[SocketAddr], extra: Value) -> Value {
    let mut p = json!({
        "apiVersion": "ingressfailover.io/v1alpha1",
        "kind": "FailoverPolicy",
        "metadata": {"name": name},
        "spec": {
            "backends": {"primary": {"addresses": addrs(primary)}},
            "managedService": {"name": format!("{name}-healthy"), "port": 80},
            "probe": {"http": {"path": "/healthz"}, "intervalSeconds": 1, "timeoutSeconds": 1,
                      "failureThreshold": 3, "successThreshold": 2, "jitterPercent": 0},
            "thresholds": {"activateBelow": 0.5, "activateForSeconds": 1, "deactivateAbove": 0.75, "deactivateForSeconds": 2},
            "recovery": {"holdDownSeconds": 3, "emergencyCooldownSeconds": 3, "stepSeconds": 2},
        }
    });
    merge(&mut p["spec"], extra);
    p
}

pub fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, p) => *b = p,
    }
}

pub fn condition<'a>(
    s: &'a FailoverPolicyStatus,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    s.conditions.iter().find(|c| c.type_ == type_)
}

pub fn is_true(s: &FailoverPolicyStatus, type_: &str) -> bool {
    condition(s, type_).is_some_and(|c| c.status == "True")
}

// ---- Helpers for the "right about real objects" tests (issue 11). ----

impl Env {
    /// The policy's status as raw JSON (fields newer than the typed status included).
    pub async fn raw_status(&self, name: &str) -> Value {
        let api: Api<kube::core::DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            &self.ns,
            &kube::core::ApiResource::erase::<FailoverPolicy>(&()),
        );
        api.get_opt(name)
            .await
            .ok()
            .flatten()
            .and_then(|o| o.data.get("status").cloned())
            .unwrap_or(Value::Null)
    }

    /// Waits until the raw status satisfies `pred`.
    pub async fn wait_raw_status(
        &self,
        name: &str,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let st = self.raw_status(name).await;
            if pred(&st) {
                return st;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; last status: {st:#}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn ingress(&self, name: &str) -> Option<Ingress> {
        let api: Api<Ingress> = Api::namespaced(self.client.clone(), &self.ns);
        api.get_opt(name).await.ok().flatten()
    }

    /// Events about policy `name`, oldest first: (reason, note).
    pub async fn events_of(&self, name: &str) -> Vec<(String, String)> {
        let api: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(self.client.clone(), &self.ns);
        let mut list: Vec<_> = api
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default()
            .into_iter()
            .filter(|e| {
                e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                    && e.regarding.as_ref().and_then(|r| r.kind.as_deref())
                        == Some("FailoverPolicy")
            })
            .collect();
        list.sort_by_key(|e| (e.event_time.as_ref().map(|t| t.0), e.metadata.name.clone()));
        list.into_iter()
            .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
            .collect()
    }

    /// Waits until an Event about policy `name` satisfies `pred`.
    pub async fn wait_event(
        &self,
        name: &str,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&str, &str) -> bool,
    ) -> (String, String) {
        let deadline = Instant::now() + timeout;
        loop {
            let evs = self.events_of(name).await;
            if let Some(e) = evs.iter().find(|(r, n)| pred(r, n)) {
                return e.clone();
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; events: {evs:#?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Scales a Deployment through `/scale` as field manager `manager` (kubectl scale, a GitOps
    /// self-heal, an autoscaler).
    pub async fn scale_as(&self, name: &str, replicas: i32, manager: &str) {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &self.ns);
        let patch = json!({"spec": {"replicas": replicas}});
        api.patch_scale(
            name,
            &PatchParams {
                field_manager: Some(manager.to_string()),
                ..Default::default()
            },
            &Patch::Merge(&patch),
        )
        .await
        .unwrap_or_else(|e| panic!("scaling {name} as {manager}: {e}"));
    }

    /// The running controller's metrics in the text exposition format.
    pub async fn metrics_text(&self) -> String {
        let addr = self
            .controller
            .as_ref()
            .expect("controller")
            .running
            .metrics_addr;
        http_get(addr, "/metrics").await.1
    }
}

/// The value of one metric sample (`name{labels}`) in a text exposition, 0 when absent.
pub fn metric_value(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

/// A condition of a raw status: (status, reason, message).
pub fn raw_condition(status: &Value, type_: &str) -> Option<(String, String, String)> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_string(),
                c["reason"].as_str().unwrap_or_default().to_string(),
                c["message"].as_str().unwrap_or_default().to_string(),
            )
        })
}

/// Deployment + Service in the test namespace whose pods the embedded controller-manager
/// creates (with loopback IPs the farm then serves).
pub fn emergency_objects() -> Vec<serde_json::Value> {
    vec![
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web-emergency"},
               "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web-emergency"}},
                        "template": {"metadata": {"labels": {"app": "web-emergency"}},
                                     "spec": {"containers": [{"name": "web", "image": pod_image(), "args": ["netexec", "--http-port=8080"], "ports": [{"containerPort": 8080}]}]}}}}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web-emergency"},
               "spec": {"selector": {"app": "web-emergency"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}),
    ]
}

/// Two IngressClasses and the Ingress `web` on `class`, routing to the managed Service.
pub fn ingress_objects(class: &str) -> Vec<serde_json::Value> {
    vec![
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "nginx-primary"}, "spec": {"controller": "k8s.io/ingress-nginx-primary"}}),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "nginx-backup"}, "spec": {"controller": "k8s.io/ingress-nginx-backup"}}),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web"},
               "spec": {"ingressClassName": class, "rules": [{"host": "shop.example", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                 "backend": {"service": {"name": "web-healthy", "port": {"number": 80}}}}]}}]}}),
    ]
}
