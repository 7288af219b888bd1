//! An embedded Kubernetes control plane: an in-memory server speaking the Kubernetes REST API
//! over loopback HTTP, for tests, the demo and benchmarks on machines without a cluster.
//!
//! It serves discovery, namespaces, Services, Pods, EndpointSlices, Deployments (with `/scale`
//! and `/status`), Ingresses, IngressClasses, Leases, Events (core and events.k8s.io),
//! ConfigMaps, and CustomResourceDefinitions (whose resources appear in discovery when
//! created), with the semantics the operator depends on: resourceVersion/uid/generation,
//! 409/404/422 Status errors, selectors, pagination, resumable watches with bookmarks and 410
//! Gone, merge/JSON/strategic/apply patches with managedFields and conflicts, status and scale
//! isolation, finalizers, owner-reference cascade, CRD schema validation, and a minimal
//! Deployment → Pod → EndpointSlice controller-manager. Faults can be injected on cue and every
//! call is audited per user agent. See `docs/devcluster.md` for what it does not emulate.
//!
//! ```no_run
//! # async fn demo() -> Result<(), devcluster::DevClusterError> {
//! use devcluster::{DevCluster, DevClusterOptions};
//! let cluster = DevCluster::start(DevClusterOptions::default()).await?;
//! let client = cluster.client()?;
//! # let _ = client; Ok(()) }
//! ```

mod api;
mod apply;
mod audit;
mod authn;
mod control;
mod controller_manager;
mod convert;
mod crd;
mod defaults;
mod delete;
mod discovery;
mod faults;
mod fields;
mod managed;
mod meta;
mod openapi;
mod patch;
mod read;
mod resources;
mod response;
mod router;
mod scale;
mod schema;
mod selectors;
mod server;
mod shared;
mod state;
mod status;
mod store;
mod table;
mod watch;

pub use audit::{Audit, AuditEntry, AuditWrite};
pub use faults::{ErrorRule, FaultConfig, Faults, LatencyRule, OutageMode};

use shared::Shared;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How to start a [`DevCluster`].
#[derive(Debug, Clone)]
pub struct DevClusterOptions {
    /// Where to listen; port 0 picks a free port. Must be loopback in practice (no TLS, no auth).
    pub listen: SocketAddr,
    /// How long a new Pod takes to become Ready.
    pub pod_ready_delay: Duration,
    /// How many change events the watch log retains; older resourceVersions get 410 Gone.
    pub watch_window: usize,
    /// Idle time after which watches with `allowWatchBookmarks=true` get a BOOKMARK.
    pub bookmark_interval: Duration,
    /// Seed for uids, generated names and IPs (fault draws have their own seed).
    pub seed: u64,
    /// Run the Deployment/Pod/EndpointSlice controller-manager.
    pub controller_manager: bool,
}

impl Default for DevClusterOptions {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            pod_ready_delay: Duration::from_millis(500),
            watch_window: 10_000,
            bookmark_interval: Duration::from_secs(5),
            seed: 0x1f_a11_0e5,
            controller_manager: true,
        }
    }
}

/// Errors of starting or serving the plane.
#[derive(Debug, thiserror::Error)]
pub enum DevClusterError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The kubeconfig could not be written.
    #[error("cannot write kubeconfig {path}: {source}")]
    Kubeconfig {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A kube client could not be built.
    #[error("cannot build a kube client: {0}")]
    Client(#[from] kube::Error),
    /// `devcluster --listen` was given an address other than loopback without
    /// `--allow-non-loopback`.
    #[error(
        "refusing to listen on {0}: the embedded control plane has no authentication and no TLS, so anyone who can reach that address could read and change everything in it; listen on a loopback address (127.0.0.1, ::1) or pass --allow-non-loopback"
    )]
    NonLoopback(SocketAddr),
    /// Waiting for a shutdown signal failed.
    #[error("cannot wait for a shutdown signal: {0}")]
    Signal(std::io::Error),
}

/// The listener, which closes its socket for the length of a `Refuse` outage (so connections
/// are really refused) and binds the same address again afterwards.
struct FaultyListener {
    inner: Option<TcpListener>,
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl axum::serve::Listener for FaultyListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let mut outages = self.shared.faults.outage_signal();
        loop {
            outages.borrow_and_update();
            if let Some(until) = self.shared.faults.refusing_until() {
                self.inner = None;
                tokio::select! {
                    _ = tokio::time::sleep_until(tokio::time::Instant::from_std(until)) => {}
                    _ = outages.changed() => {}
                }
                continue;
            }
            let listener = match &self.inner {
                Some(l) => l,
                None => match TcpListener::bind(self.addr).await {
                    Ok(l) => self.inner.insert(l),
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                },
            };
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, addr)) if self.shared.faults.refusing_until().is_none() => return (stream, addr),
                    Ok(_) => continue,
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                },
                _ = outages.changed() => {}
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

/// A running embedded control plane. Dropping it stops the server.
#[derive(Debug)]
pub struct DevCluster {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    tasks: Vec<JoinHandle<()>>,
}

impl DevCluster {
    /// Binds, starts serving and (optionally) starts the controller-manager.
    pub async fn start(opts: DevClusterOptions) -> Result<Self, DevClusterError> {
        let listener =
            TcpListener::bind(opts.listen)
                .await
                .map_err(|source| DevClusterError::Bind {
                    addr: opts.listen,
                    source,
                })?;
        let addr = listener
            .local_addr()
            .map_err(|source| DevClusterError::Bind {
                addr: opts.listen,
                source,
            })?;
        let shared = Arc::new(Shared {
            state: Mutex::new(state::State::new(opts.watch_window, opts.seed)),
            faults: Faults::default(),
            audit: Audit::default(),
            bookmark_interval: opts.bookmark_interval,
        });
        let (tx, rx) = oneshot::channel::<()>();
        let app = server::router(shared.clone());
        let listener = FaultyListener {
            inner: Some(listener),
            addr,
            shared: shared.clone(),
        };
        let mut tasks = vec![tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        })];
        if opts.controller_manager {
            tasks.push(tokio::spawn(controller_manager::run(
                shared.clone(),
                opts.pod_ready_delay,
            )));
        }
        Ok(Self {
            addr,
            shared,
            shutdown: Some(tx),
            tasks,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kube config pointing at this plane (namespace `default`).
    pub fn config(&self) -> kube::Config {
        let uri: http::Uri = self.url().parse().expect("a socket address is a valid URI");
        kube::Config::new(uri)
    }

    /// A kube client for this plane. kube sends no User-Agent, so its calls are audited under
    /// the empty user agent; see [`DevCluster::client_with_user_agent`].
    pub fn client(&self) -> Result<kube::Client, DevClusterError> {
        Ok(kube::Client::try_from(self.config())?)
    }

    /// A kube config pointing at this plane whose requests identify themselves with
    /// `user_agent` (for the audit log). The controller's tests turn kube's default retry off
    /// in it, as the controller does with its own.
    pub fn config_with_user_agent(&self, user_agent: &str) -> kube::Config {
        let mut config = self.config();
        if let Ok(v) = http::HeaderValue::from_str(user_agent) {
            config.headers.push((http::header::USER_AGENT, v));
        }
        config
    }

    /// A kube client that identifies itself with `user_agent` (for the audit log).
    pub fn client_with_user_agent(
        &self,
        user_agent: &str,
    ) -> Result<kube::Client, DevClusterError> {
        Ok(kube::Client::try_from(
            self.config_with_user_agent(user_agent),
        )?)
    }

    /// A kubeconfig for kubectl and other clients.
    pub fn kubeconfig_yaml(&self) -> String {
        kubeconfig_yaml(&self.url())
    }

    /// The fault switchboard.
    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// Every distinct (user agent, group, resource, subresource, verb) called so far, sorted.
    pub fn audit(&self) -> BTreeSet<AuditEntry> {
        self.shared.audit.entries()
    }

    /// The audit log with counts.
    pub fn audit_log(&self) -> &Audit {
        &self.shared.audit
    }

    /// Drops the retained watch events: watches resuming from any version handed out so far
    /// get 410 Gone (open watches notice on their next check and end with the ERROR event).
    pub fn compact(&self) {
        self.shared.lock().store.compact();
    }

    /// Stops serving and waits for the server task.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        for t in self.tasks.drain(..) {
            t.abort();
            let _ = t.await;
        }
    }
}

impl Drop for DevCluster {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A kubeconfig for a plane at `server` (`http://127.0.0.1:PORT`), context `devcluster`.
pub fn kubeconfig_yaml(server: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: devcluster
  cluster:
    server: {server}
users:
- name: devcluster
  user: {{}}
contexts:
- name: devcluster
  context:
    cluster: devcluster
    user: devcluster
    namespace: default
current-context: devcluster
"
    )
}

/// The `devcluster` command: starts a plane on `listen` (default `127.0.0.1:0`, a free port),
/// writes a kubeconfig for it to `kubeconfig_path`, prints the address, and serves until
/// SIGINT or SIGTERM. Faults are controlled over HTTP, see the `control` module docs. An
/// address that is not loopback is refused unless `allow_non_loopback`: the plane has no
/// authentication and no TLS.
pub async fn serve_command(
    kubeconfig_path: &Path,
    listen: Option<SocketAddr>,
    allow_non_loopback: bool,
) -> Result<(), DevClusterError> {
    let mut opts = DevClusterOptions::default();
    if let Some(l) = listen {
        if !l.ip().is_loopback() && !allow_non_loopback {
            return Err(DevClusterError::NonLoopback(l));
        }
        opts.listen = l;
    }
    let cluster = DevCluster::start(opts).await?;
    std::fs::write(kubeconfig_path, cluster.kubeconfig_yaml()).map_err(|source| {
        DevClusterError::Kubeconfig {
            path: kubeconfig_path.to_path_buf(),
            source,
        }
    })?;
    println!("devcluster listening on {}", cluster.url());
    println!("kubeconfig written to {}", kubeconfig_path.display());
    println!("fault control: {}/_devcluster/faults", cluster.url());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(DevClusterError::Signal)?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.map_err(DevClusterError::Signal)?,
        _ = term.recv() => {}
    }
    cluster.shutdown().await;
    Ok(())
}
