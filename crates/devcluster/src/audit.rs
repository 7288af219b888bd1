//! Who called what: per user agent, each (group, resource, subresource, verb) with a count.
//!
//! The set of entries for the operator's user agent is exactly the RBAC rules its Helm chart
//! needs; the counts let tests assert things like "the watcher listed once". Writes are also
//! kept in order with their time and answer ([`Audit::writes`]), so a test can tell which
//! replica wrote when (one writer at a time across a leader change).

use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

/// One kind of API call.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// `User-Agent` header (empty when the client sent none; kube-rs sends none by default).
    pub user_agent: String,
    /// API group (empty for core).
    pub group: String,
    /// Plural resource.
    pub resource: String,
    /// Subresource (`status`, `scale`) or empty.
    pub subresource: String,
    /// Kubernetes verb.
    pub verb: String,
}

/// One write (create, update, patch, delete) as it was answered, in arrival order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditWrite {
    /// When the answer was sent.
    pub at: std::time::Instant,
    /// `User-Agent` header.
    pub user_agent: String,
    /// Plural resource.
    pub resource: String,
    /// Subresource or empty.
    pub subresource: String,
    /// Namespace or empty.
    pub namespace: String,
    /// Object name or empty.
    pub name: String,
    /// Kubernetes verb.
    pub verb: String,
    /// HTTP status of the answer.
    pub code: u16,
}

impl AuditWrite {
    /// Whether the write changed (or may have changed) something: a 2xx answer.
    pub fn succeeded(&self) -> bool {
        (200..300).contains(&self.code)
    }
}

/// Writes kept in order; the oldest are dropped beyond this.
const MAX_WRITES: usize = 200_000;

/// The audit log of one DevCluster.
#[derive(Debug, Default)]
pub struct Audit {
    counts: Mutex<BTreeMap<AuditEntry, u64>>,
    writes: Mutex<std::collections::VecDeque<AuditWrite>>,
}

impl Audit {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<AuditEntry, u64>> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records one call.
    pub fn record(&self, entry: AuditEntry) {
        *self.lock().entry(entry).or_default() += 1;
    }

    /// The distinct calls, sorted.
    pub fn entries(&self) -> BTreeSet<AuditEntry> {
        self.lock().keys().cloned().collect()
    }

    /// Every distinct call with how often it happened.
    pub fn counts(&self) -> BTreeMap<AuditEntry, u64> {
        self.lock().clone()
    }

    /// Calls of `verb` on `resource` (any group, user agent, subresource) so far.
    pub fn count(&self, verb: &str, resource: &str) -> u64 {
        self.lock()
            .iter()
            .filter(|(e, _)| e.verb == verb && e.resource == resource)
            .map(|(_, n)| n)
            .sum()
    }

    /// Records one answered write.
    pub fn record_write(&self, write: AuditWrite) {
        let mut w = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        if w.len() >= MAX_WRITES {
            w.pop_front();
        }
        w.push_back(write);
    }

    /// The writes answered so far, oldest first.
    pub fn writes(&self) -> Vec<AuditWrite> {
        self.writes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// Forgets everything.
    pub fn clear(&self) {
        self.lock().clear();
        self.writes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}
