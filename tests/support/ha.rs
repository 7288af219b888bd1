//! Helpers of the high-availability suites (tests/controller_ha.rs, tests/controller_shards.rs):
//! replicas with leader election, and the controller's writes as the embedded plane's audit
//! log records them, told apart by the replica identity in their User-Agent.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use devcluster::{AuditWrite, DevCluster};

use crate::cluster::*;

pub fn embedded(env: &Env, what: &str) -> Option<Arc<DevCluster>> {
    if env.cluster.is_none() {
        eprintln!("{what}: needs the embedded plane's faults and audit log; skipped");
    }
    env.cluster.clone()
}

/// Options of one replica with leader election and the given timings.
pub fn replica(
    env: &Env,
    id: &str,
    lease: u64,
    renew: Duration,
    retry: Duration,
) -> ingress_failover::controller::Options {
    let mut o = env.controller_options();
    o.leader_election = true;
    o.identity = id.to_string();
    o.lease_seconds = lease;
    o.lease_renew_deadline = renew;
    o.lease_retry_period = retry;
    o
}

/// Successful writes by controller replicas to anything they manage (their policies' status
/// and finalizers included; Events and the Lease itself left out), oldest first, as
/// (identity, write).
pub fn controller_writes(plane: &DevCluster) -> Vec<(String, AuditWrite)> {
    plane
        .audit_log()
        .writes()
        .into_iter()
        .filter(|w| is_controller_agent(&w.user_agent) && w.succeeded())
        .filter(|w| !matches!(w.resource.as_str(), "events" | "leases"))
        .map(|w| (identity_of(&w.user_agent), w))
        .collect()
}

/// One writer at a time: once another replica has written, a replica that wrote before never
/// writes again (each term is one unbroken run of writes). Returns the runs, (identity,
/// writes, first, last).
pub fn assert_one_writer_at_a_time(
    writes: &[(String, AuditWrite)],
) -> Vec<(String, usize, Instant, Instant)> {
    let mut runs: Vec<(String, usize, Instant, Instant)> = Vec::new();
    for (id, w) in writes {
        match runs.last_mut() {
            Some((last, n, _, end)) if last == id => {
                *n += 1;
                *end = w.at;
            }
            _ => {
                assert!(
                    !runs.iter().any(|(r, ..)| r == id),
                    "{id} wrote {} {}/{} again after another replica had written: two writers; runs so far: {runs:?}",
                    w.verb,
                    w.resource,
                    w.name
                );
                runs.push((id.clone(), 1, w.at, w.at));
            }
        }
    }
    runs
}

/// The replica identity in a controller User-Agent (`ingress-failover/<version> (<identity>)`).
pub fn identity_of(ua: &str) -> String {
    ua.rsplit_once('(')
        .map(|(_, rest)| rest.trim_end_matches(')').to_string())
        .unwrap_or_default()
}
