//! Who called what: per user agent, each (group, resource, subresource, verb) with a count.
//!
//! The set of entries for the operator's user agent is exactly the RBAC rules its Helm chart
//! needs; the counts let tests assert things like "the watcher listed once".

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

/// The audit log of one DevCluster.
#[derive(Debug, Default)]
pub struct Audit {
    counts: Mutex<BTreeMap<AuditEntry, u64>>,
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

    /// Forgets everything.
    pub fn clear(&self) {
        self.lock().clear();
    }
}
