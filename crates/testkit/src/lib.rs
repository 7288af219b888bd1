//! The loopback kit of ingress-failover's tests, demo and benchmarks: real HTTP backends whose
//! behaviour changes on cue ([`farm`]), the server that answers for the embedded control
//! plane's pods ([`pods`]), a minimal HTTP client ([`http`]) and polling until a condition holds
//! ([`wait`]). Not part of the controller image.

pub mod farm;
pub mod http;
pub mod pods;
pub mod wait;
