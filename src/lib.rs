//! ingress-failover: a Kubernetes operator that automates load-balancer failover.
//!
//! See ARCHITECTURE.md for the map of modules.

pub mod api;
pub mod check;
pub mod controller;
#[cfg(feature = "devcluster")]
pub mod demo;
pub mod duration;
pub mod engine;
pub mod health;
pub mod kubeclient;
pub mod plugin;
pub mod probe;
pub mod simulate;
pub mod validation;

/// Installs the ring TLS provider once per process: kube's rustls needs exactly one, and two
/// crates choosing different defaults would panic at the first TLS connection.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
