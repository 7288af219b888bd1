//! Leader election on a coordination.k8s.io Lease: only the holder writes; standbys keep warm
//! caches and take over within the lease duration when the holder dies.

use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Options;

type LeaseTask = JoinHandle<Result<LeaseManager, kube_lease_manager::LeaseManagerError>>;

/// Starts the election (or a constant "leader" when disabled) and returns the leadership flag.
pub async fn start(
    client: &Client,
    opts: &Options,
) -> anyhow::Result<(watch::Receiver<bool>, Option<LeaseTask>)> {
    if !opts.leader_election {
        let (tx, rx) = watch::channel(true);
        // Keep the sender alive for the life of the process: a closed channel reads as "lost".
        std::mem::forget(tx);
        return Ok((rx, None));
    }
    let duration = opts.lease_seconds.max(2);
    let manager = LeaseManagerBuilder::new(client.clone(), &opts.lease_name)
        .with_namespace(&opts.lease_namespace)
        .with_identity(&opts.identity)
        .with_duration(duration)
        .with_grace((duration / 3).max(1))
        .with_field_manager(format!("ingress-failover-lease-{}", opts.identity))
        .build()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "leader election: cannot use Lease {}/{}: {e}",
                opts.lease_namespace,
                opts.lease_name
            )
        })?;
    let (rx, task) = manager.watch().await;
    Ok((rx, Some(task)))
}
