//! ingress-failover: a Kubernetes operator that automates load-balancer failover.
//!
//! See ARCHITECTURE.md for the map of modules.

pub mod api;
pub mod engine;
pub mod health;
pub mod simulate;
