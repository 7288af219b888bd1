//! What every request of one plane shares: the state behind its lock, the fault switchboard, the
//! audit log. Held by the server, the fault control endpoint, authentication, watches and the
//! controller-manager.

use super::audit::Audit;
use super::faults::Faults;
use super::state::State;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// State shared by all requests of one DevCluster.
#[derive(Debug)]
pub struct Shared {
    /// Objects, registry, RNG.
    pub state: Mutex<State>,
    /// Fault switchboard.
    pub faults: Faults,
    /// Call log.
    pub audit: Audit,
    /// Idle time after which a watch with `allowWatchBookmarks` gets a bookmark.
    pub bookmark_interval: Duration,
}

impl Shared {
    /// Locks the state (a poisoned lock is recovered: a panicking handler leaves valid JSON).
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}
