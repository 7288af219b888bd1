//! Reading endpoint addresses out of EndpointSlices, and serving the loopback "pods" the
//! embedded control plane hands out (they have IPs in 127.0.0.0/8 but no process behind them).
//! Shared by the demo, the integration tests and the controller benchmark.
//! The embedded plane hands out IP addresses only, so an address that is not an IP is skipped.

use std::net::SocketAddr;
use std::time::Duration;

use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::ListParams;
use kube::{Api, Client};

use crate::farm::{Behavior, Farm};

/// Every `address:port` listed by the EndpointSlices in `ns` matching `selector` (the port is
/// each slice's first), sorted and without duplicates. An API error reads as no address.
pub async fn slice_addresses(client: &Client, ns: &str, selector: &str) -> Vec<SocketAddr> {
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().labels(selector);
    let mut out: Vec<SocketAddr> = api
        .list(&lp)
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .iter()
        .flat_map(|s| {
            let port = s
                .ports
                .as_ref()
                .and_then(|p| p.first())
                .and_then(|p| p.port)
                .unwrap_or(0);
            s.endpoints.iter().filter_map(move |e| {
                let ip: std::net::IpAddr = e.addresses.first()?.parse().ok()?;
                Some(SocketAddr::new(ip, u16::try_from(port).ok()?))
            })
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Keeps a healthy farm backend at every address the matching EndpointSlices list, as new
/// pods appear. Runs until aborted.
pub async fn serve_pods(client: Client, ns: String, selector: String, farm: Farm) {
    loop {
        for addr in slice_addresses(&client, &ns, &selector).await {
            if !farm.addresses().contains(&addr) {
                let _ = farm.set(addr, Behavior::Healthy).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
