//! Building a Kubernetes client from an explicit kubeconfig or the usual defaults, and the
//! controller's client-side rate limit.

use std::future::Future;
use std::num::NonZeroU32;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use governor::{DefaultDirectRateLimiter, Quota};
use kube::client::ClientBuilder;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// A client for `kubeconfig` when given, else in-cluster config, $KUBECONFIG or ~/.kube/config.
pub async fn client(kubeconfig: Option<&Path>) -> anyhow::Result<Client> {
    client_as(kubeconfig, None).await
}

/// The User-Agent of the controller's requests: the product, its version and the replica's
/// identity, so an apiserver audit log names the replica that wrote.
pub fn controller_user_agent(identity: &str) -> String {
    format!(
        "ingress-failover/{} ({identity})",
        env!("CARGO_PKG_VERSION")
    )
}

/// The controller's client configuration: kube's default retry layer off. kube-client 5
/// retries 429/503/504 inside the request, up to 15 times with a backoff growing from 5 ms to
/// 1000 s, so during a 503 outage one request hung for minutes: the lease renewal could not
/// reach its renew deadline, a reconcile held SIGTERM, and requests caught mid-backoff kept
/// sleeping long after the API answered again (issue 12). Every caller in the controller
/// retries on its own terms (renew deadline, per-write backoff, watcher backoff, Event
/// retries), so a request answers with the API's answer at once.
pub fn without_default_retry(mut config: Config) -> Config {
    config.default_retry = false;
    config
}

/// Like [`client`], sending `user_agent` on every request when given.
pub async fn client_as(
    kubeconfig: Option<&Path>,
    user_agent: Option<&str>,
) -> anyhow::Result<Client> {
    client_limited(kubeconfig, user_agent, None).await
}

/// The controller's client: like [`client_as`], with requests held to `limit` when given.
pub async fn client_limited(
    kubeconfig: Option<&Path>,
    user_agent: Option<&str>,
    limit: Option<RateLimit>,
) -> anyhow::Result<Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .map_err(|e| anyhow::anyhow!("reading kubeconfig {}: {e}", path.display()))?;
            Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(|e| anyhow::anyhow!("loading kubeconfig {}: {e}", path.display()))?
        }
        None => Config::infer().await?,
    };
    let mut config = without_default_retry(config);
    if let Some(ua) = user_agent {
        let value = http::HeaderValue::from_str(ua)
            .map_err(|e| anyhow::anyhow!("invalid User-Agent {ua:?}: {e}"))?;
        config.headers.push((http::header::USER_AGENT, value));
    }
    match limit {
        Some(limit) => rate_limited(config, limit),
        None => Ok(ClientBuilder::try_from(config)?
            .with_layer(&ThrottleLayer { limiter: None })
            .build()),
    }
}

/// Requests this process sent to the API, by HTTP method, and the time they waited for the
/// client-side rate limit: one set per process, like the client, registered with the
/// controller's metrics (`ingress_failover_api_requests_total`,
/// `ingress_failover_api_throttled_seconds_total`).
pub struct RequestMetrics {
    pub requests: prometheus_client::metrics::family::Family<
        MethodLabel,
        prometheus_client::metrics::counter::Counter,
    >,
    pub throttled: prometheus_client::metrics::counter::Counter<f64, std::sync::atomic::AtomicU64>,
}

/// The HTTP method of an API request: a bounded label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct MethodLabel {
    pub method: &'static str,
}

/// This process's request counters.
pub static REQUESTS: std::sync::LazyLock<RequestMetrics> =
    std::sync::LazyLock::new(|| RequestMetrics {
        requests: Default::default(),
        throttled: Default::default(),
    });

fn method_label(m: &http::Method) -> &'static str {
    match *m {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::PATCH => "PATCH",
        http::Method::DELETE => "DELETE",
        _ => "other",
    }
}

/// Client-side rate limit of API requests (client-go's QPS and burst): a mass incident — a
/// fifth of ten thousand policies deciding at once — queues its writes here instead of
/// bursting them at the apiserver. Lease requests are never held: leader election must renew
/// within its deadline whatever else is queued (the chart's FlowSchema gives them the
/// apiserver's `leader-election` priority level for the same reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained requests per second.
    pub qps: NonZeroU32,
    /// Requests allowed at once after a quiet period.
    pub burst: NonZeroU32,
}

/// A client for `config` whose requests (but Lease requests) pass `limit` first.
pub fn rate_limited(config: Config, limit: RateLimit) -> anyhow::Result<Client> {
    let limiter = Arc::new(DefaultDirectRateLimiter::direct(
        Quota::per_second(limit.qps).allow_burst(limit.burst),
    ));
    Ok(ClientBuilder::try_from(config)?
        .with_layer(&ThrottleLayer {
            limiter: Some(limiter),
        })
        .build())
}

/// The path prefix of coordination.k8s.io, whose Leases are exempt from the limit.
const LEASES: &str = "/apis/coordination.k8s.io/";

struct ThrottleLayer {
    limiter: Option<Arc<DefaultDirectRateLimiter>>,
}

impl<S> tower::Layer<S> for ThrottleLayer {
    type Service = Throttle<S>;
    fn layer(&self, inner: S) -> Throttle<S> {
        Throttle {
            inner,
            limiter: self.limiter.clone(),
        }
    }
}

/// Counts each request and holds it (but Lease requests) until the limiter, if any, allows
/// it. The inner future is created at once and awaited after the permit: the stack's futures
/// are lazy, so nothing is sent before that, and the buffer kube's client drives its stack
/// through never waits on us.
struct Throttle<S> {
    inner: S,
    limiter: Option<Arc<DefaultDirectRateLimiter>>,
}

impl<S, B> tower::Service<http::Request<B>> for Throttle<S>
where
    S: tower::Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        REQUESTS
            .requests
            .get_or_create(&MethodLabel {
                method: method_label(req.method()),
            })
            .inc();
        let exempt = req.uri().path().starts_with(LEASES);
        let response = self.inner.call(req);
        let Some(limiter) = self.limiter.clone().filter(|_| !exempt) else {
            return Box::pin(response);
        };
        Box::pin(async move {
            if limiter.check().is_err() {
                let held = std::time::Instant::now();
                limiter.until_ready().await;
                REQUESTS.throttled.inc_by(held.elapsed().as_secs_f64());
            }
            response.await
        })
    }
}
