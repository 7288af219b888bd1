//! Building a Kubernetes client from an explicit kubeconfig or the usual defaults.

use std::path::Path;

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
    Ok(Client::try_from(config)?)
}
