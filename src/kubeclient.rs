//! Building a Kubernetes client from an explicit kubeconfig or the usual defaults.

use std::path::Path;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// A client for `kubeconfig` when given, else in-cluster config, $KUBECONFIG or ~/.kube/config.
pub async fn client(kubeconfig: Option<&Path>) -> anyhow::Result<Client> {
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
    Ok(Client::try_from(config)?)
}
