//! `/metrics`, `/healthz` and `/readyz`. Ready only once every cache has listed: a replica that
//! has not seen the world yet must not receive a leader's duties from a rolling update.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;

use super::secure_metrics::{Authorizer, SecureMetrics, TlsListener};

/// Which caches have completed their initial list. A cache is registered as pending and marked
/// synced once its store is ready; nothing ever marks it pending again, so a watch restart (a
/// dropped connection, a 410 relist) never turns readiness off.
#[derive(Default)]
pub struct Readiness {
    caches: Mutex<BTreeMap<&'static str, bool>>,
    /// Why a cache cannot sync (e.g. its CRD is not installed), said by /readyz.
    problems: Mutex<BTreeMap<&'static str, String>>,
}

impl Readiness {
    /// Readiness waiting for the caches named.
    pub fn expecting(names: &[&'static str]) -> Self {
        Readiness {
            caches: Mutex::new(names.iter().map(|n| (*n, false)).collect()),
            problems: Mutex::default(),
        }
    }

    /// Whether the cache `name` has listed once.
    pub fn is_synced(&self, name: &str) -> bool {
        self.caches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .copied()
            .unwrap_or(false)
    }

    /// Tracks `store`: pending now, synced once its initial list is in.
    pub fn watch<K>(self: &Arc<Self>, name: &'static str, store: kube::runtime::reflector::Store<K>)
    where
        K: kube::Resource + Clone + Send + Sync + 'static,
        K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
    {
        self.set(name, false);
        let me = self.clone();
        tokio::spawn(async move {
            // `Store::wait_until_ready` wakes only its most recent waiter (one oneshot receiver
            // behind the store, one waker): the kube-runtime Controller awaits its own store's
            // readiness too and keeps re-polling it, so a task that merely awaits the policy
            // store can sleep forever — /readyz stayed "caches not synced" whenever the policy
            // list finished after the others. Asking again every 200 ms needs no wake-up.
            loop {
                match tokio::time::timeout(
                    std::time::Duration::from_millis(200),
                    store.wait_until_ready(),
                )
                .await
                {
                    Ok(Ok(())) => {
                        me.set(name, true);
                        tracing::info!(cache = name, "cache synced");
                        return;
                    }
                    Ok(Err(_)) => return, // the reflector is gone (shutdown)
                    Err(_) => continue,
                }
            }
        });
    }

    fn set(&self, name: &'static str, synced: bool) {
        self.caches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name, synced);
    }

    /// Sets (or clears, with `None`) why the cache `name` cannot sync.
    pub fn set_problem(&self, name: &'static str, problem: Option<String>) {
        let mut p = self.problems.lock().unwrap_or_else(|p| p.into_inner());
        match problem {
            Some(text) => p.insert(name, text),
            None => p.remove(name),
        };
    }

    /// The problems said by /readyz, `cache: why` each.
    pub fn problems(&self) -> Vec<String> {
        self.problems
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(n, why)| format!("{n}: {why}"))
            .collect()
    }

    /// The caches still waiting for their initial list (empty when ready).
    pub fn pending(&self) -> Vec<&'static str> {
        self.caches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(_, synced)| !**synced)
            .map(|(n, _)| *n)
            .collect()
    }
}

#[derive(Clone)]
struct AppState {
    registry: Arc<Registry>,
    ready: Arc<Readiness>,
    /// With `--metrics-secure`: who may read /metrics.
    auth: Option<Arc<Authorizer>>,
}

/// How the endpoints are served: plain HTTP, or HTTPS with /metrics behind Kubernetes authn/authz.
pub enum Serving {
    Plain,
    Secure {
        tls: SecureMetrics,
        /// Asks the API server about bearer tokens (TokenReview, SubjectAccessReview).
        client: kube::Client,
    },
}

/// Binds `addr` and returns the bound address and the server future.
pub async fn serve(
    addr: SocketAddr,
    registry: Arc<Registry>,
    ready: Arc<Readiness>,
    serving: Serving,
) -> anyhow::Result<(SocketAddr, impl std::future::Future<Output = ()> + Send)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("binding the metrics address {addr}: {e}"))?;
    let bound = listener.local_addr()?;
    let (tls, auth) = match serving {
        Serving::Plain => (None, None),
        Serving::Secure { tls, client } => (
            Some(super::secure_metrics::tls_config(&tls, bound)?),
            Some(Arc::new(Authorizer::new(client))),
        ),
    };
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(AppState {
            registry,
            ready,
            auth,
        });
    let server: futures::future::BoxFuture<'static, std::io::Result<()>> = match tls {
        None => Box::pin(axum::serve(listener, app).into_future()),
        Some(config) => {
            Box::pin(axum::serve(TlsListener::new(listener, config)?, app).into_future())
        }
    };
    Ok((bound, async move {
        if let Err(e) = server.await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    }))
}

async fn metrics(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(auth) = &s.auth
        && let Err(denied) = auth.check(&headers).await
    {
        return denied;
    }
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &s.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    let pending = s.ready.pending();
    let problems = s.ready.problems();
    if pending.is_empty() && problems.is_empty() {
        (StatusCode::OK, "ready".to_string())
    } else {
        let mut body = if pending.is_empty() {
            "not ready".to_string()
        } else {
            format!("caches not synced: {}", pending.join(", "))
        };
        for p in problems {
            body.push_str(&format!("\n{p}"));
        }
        (StatusCode::SERVICE_UNAVAILABLE, body)
    }
}
