//! The loopback kit of ingress-failover's tests, demo and benchmarks: real HTTP backends whose
//! behaviour changes on cue ([`farm`]), the server that answers for the embedded control
//! plane's pods ([`pods`]), a minimal HTTP client ([`http`]) and polling until a condition holds
//! ([`wait`]); for the benchmarks, tens of thousands of killable backends in one process and
//! the plumbing of measured child processes ([`bulk`]); and the DNS failover lab: BIND 9 and
//! the pinned ExternalDNS build on loopback, with a minimal DNS client ([`dns`]). Not part of
//! the controller image.

pub mod bulk;
pub mod crds;
pub mod dns;
pub mod farm;
pub mod http;
pub mod pods;
pub mod wait;
