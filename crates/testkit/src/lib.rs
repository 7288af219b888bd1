//! The loopback kit of ingress-failover's tests, demo and benchmarks: real HTTP backends whose
//! behaviour changes on cue ([`farm`]), and the server that answers for the embedded control
//! plane's pods ([`pods`]). Not part of the controller image.

pub mod farm;
pub mod pods;
