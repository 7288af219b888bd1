//! The controller's client-side API rate limit (`--kube-api-qps`, `--kube-api-burst`), through a
//! real client against the embedded plane: requests beyond the burst wait for the rate, and
//! Lease requests never wait (leader election must renew within its deadline whatever a mass
//! incident has queued).

use std::time::{Duration, Instant};

use futures::future::join_all;
use ingress_failover::devcluster::{DevCluster, DevClusterOptions};
use ingress_failover::kubeclient::{RateLimit, rate_limited, without_default_retry};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_the_burst_wait_for_the_rate_and_leases_never_wait() {
    ingress_failover::install_crypto_provider();
    let plane = DevCluster::start(DevClusterOptions::default())
        .await
        .expect("plane");
    let limit = RateLimit {
        qps: 5.try_into().unwrap(),
        burst: 2.try_into().unwrap(),
    };
    let client = rate_limited(without_default_retry(plane.config()), limit).expect("client");
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let leases: Api<Lease> = Api::namespaced(client, "default");

    // Twelve reads at once: two go at once (the burst), the other ten at five per second.
    let start = Instant::now();
    let reads = join_all((0..12).map(|_| {
        let maps = maps.clone();
        async move {
            maps.list(&Default::default()).await.expect("list");
            start.elapsed()
        }
    }))
    .await;
    let mut reads: Vec<Duration> = reads;
    reads.sort();
    eprintln!("MEASURE completion of 12 reads at qps 5, burst 2: {reads:?}");
    assert!(
        reads[11] >= Duration::from_millis(1800),
        "12 requests at 5/s after a burst of 2 took {:?}",
        reads[11]
    );
    // A request done before the first refill (200 ms) had a burst permit: at most two.
    let early = reads
        .iter()
        .filter(|t| **t < Duration::from_millis(150))
        .count();
    assert!(early <= 2, "{early} requests beat the limit: {reads:?}");

    // The bucket is empty again after another ten reads are queued; Lease calls made meanwhile
    // go straight through, ahead of the queued reads.
    let start = Instant::now();
    let queued = join_all((0..10).map(|_| {
        let maps = maps.clone();
        async move {
            maps.list(&Default::default()).await.expect("list");
            start.elapsed()
        }
    }));
    let lease_calls = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        join_all((0..5).map(|_| {
            let leases = leases.clone();
            async move {
                leases.list(&Default::default()).await.expect("list leases");
                start.elapsed()
            }
        }))
        .await
    };
    let (mut queued, lease_times) = tokio::join!(queued, lease_calls);
    queued.sort();
    let slowest_lease = lease_times.iter().max().copied().unwrap();
    eprintln!("MEASURE Lease calls during a queue of 10 reads: {lease_times:?}; reads {queued:?}");
    assert!(
        slowest_lease < queued[4],
        "a Lease call ({slowest_lease:?}) waited behind the queued reads ({queued:?})"
    );
}
