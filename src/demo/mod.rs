//! `ingress-failover demo`: the embedded default. Starts the embedded control plane, real
//! loopback backends and the real controller, then plays the runbook's incident.

pub mod farm;
