//! Events, one per action, each with its own message.
//!
//! kube-runtime 5's `events::Recorder` keys its event series on (type, action, reason,
//! reporting controller and instance, regarding, related) — not on the note. A second Event
//! with the same reason for the same policy therefore only bumps the first one's count and
//! keeps the first one's message: `kubectl describe fp` showed `PhaseChanged (x11)
//! Pending → Normal`. Every action here is a distinct Event instead, created with a name that
//! sorts in the order the actions happened and a microsecond `eventTime`, so the story reads in
//! order.
//!
//! Delivery is queued: a reconcile hands its Events to one background sender and goes on, and
//! the sender retries a failed creation with backoff (API errors, throttling, a dropped
//! connection), a bounded number of times, in order. Before, an Event whose one creation
//! failed was lost (issue 12: 5 lost at 30 % injected API errors, 14 at 50 %). Events of a
//! leadership term that has ended are dropped, not delivered late: the next term resumes from
//! status and announces its own decisions (otherwise a failover decided just before an outage
//! cost the lease was announced twice). With shards, each shard has its own term: an Event is
//! dropped once the term of its policy's shard has ended.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::sync::{mpsc, watch};

use super::shards::ShardSet;
use tracing::{debug, warn};

use super::metrics::Metrics;

/// Kubernetes caps an Event's note at 1 kB.
const MAX_NOTE: usize = 1024;

/// Creation attempts per Event before it is given up (and counted in `events_dropped`).
const MAX_ATTEMPTS: u32 = 8;
/// Delay before the first retry; doubled per attempt up to [`MAX_RETRY_DELAY`]. With 8
/// attempts an Event is given up about 12 s after its first failure.
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(200);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(3);
/// Events waiting for delivery; beyond it new ones are refused (and logged by the caller).
const QUEUE: usize = 1024;

/// Why an Event was not queued.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("event queue full ({QUEUE} waiting): the API has been failing for a while")]
    QueueFull,
    #[error("event sender stopped")]
    Closed,
}

/// `Normal` or `Warning`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Normal,
    Warning,
}

/// Writes Events as the controller (`reportingController`) and this replica
/// (`reportingInstance`).
pub struct EventSink {
    queue: mpsc::Sender<(Stamp, Event)>,
    term: Term,
    shards: Arc<ShardSet>,
    controller: String,
    instance: String,
    /// Last name suffix handed out: names are strictly increasing within a process.
    last: AtomicI64,
}

impl EventSink {
    /// Starts the background sender (on the current runtime).
    pub fn new(
        client: Client,
        controller: &str,
        instance: &str,
        metrics: Metrics,
        shards: Arc<ShardSet>,
    ) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE);
        let term = Term::follow(&shards);
        tokio::spawn(deliver_all(client, rx, metrics, term.clone()));
        EventSink {
            queue,
            term,
            shards,
            controller: controller.to_string(),
            instance: instance.to_string(),
            last: AtomicI64::new(0),
        }
    }

    /// A fresh suffix from the wall clock (nanoseconds, so names sort by time), never reused.
    fn next_suffix(&self) -> i64 {
        let now = i64::try_from(jiff::Timestamp::now().as_nanosecond()).unwrap_or(i64::MAX);
        let mut prev = self.last.load(Ordering::SeqCst);
        loop {
            let next = now.max(prev + 1);
            match self
                .last
                .compare_exchange(prev, next, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return next,
                Err(p) => prev = p,
            }
        }
    }

    /// Queues one Event about `regarding`; it is created in order with the others, retried on
    /// API errors.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        severity: Severity,
        reason: &str,
        action: &str,
        note: &str,
    ) -> Result<(), EventError> {
        let ns = regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = format!(
            "{}.{:016x}",
            regarding.name.as_deref().unwrap_or("ingress-failover"),
            self.next_suffix()
        );
        let now = jiff::Timestamp::now();
        let ev = Event {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            // Microsecond precision: `kubectl describe` orders Events by it. (The apiserver
            // refuses the deprecated* fields on an events.k8s.io/v1 create.)
            event_time: Some(MicroTime(now)),
            type_: Some(
                match severity {
                    Severity::Normal => "Normal",
                    Severity::Warning => "Warning",
                }
                .to_string(),
            ),
            reason: Some(reason.to_string()),
            action: Some(action.to_string()),
            note: Some(truncate(note, MAX_NOTE)),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(truncate(&self.instance, 128)),
            ..Default::default()
        };
        let shard = self.shards.of_reference(regarding);
        self.queue
            .try_send(((shard, self.term.current(shard)), ev))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => EventError::QueueFull,
                mpsc::error::TrySendError::Closed(_) => EventError::Closed,
            })
    }
}

/// The shard an Event's policy belongs to and the term it was queued in.
type Stamp = (u32, u64);

/// The leadership term of each shard (one with a single Lease): bumped on every change of the
/// shard's flag, so an Event queued in one term is recognised as stale in any later one (even
/// a later term of this replica).
#[derive(Clone)]
struct Term {
    shards: Arc<Vec<(Arc<AtomicU64>, watch::Receiver<bool>)>>,
}

impl Term {
    fn follow(set: &ShardSet) -> Self {
        let shards: Vec<_> = (0..set.count())
            .map(|i| {
                let count = Arc::new(AtomicU64::new(0));
                let mut flag = set.flag(i);
                let (c, f) = (count.clone(), flag.clone());
                tokio::spawn(async move {
                    while flag.changed().await.is_ok() {
                        c.fetch_add(1, Ordering::SeqCst);
                    }
                });
                (count, f)
            })
            .collect();
        Term {
            shards: Arc::new(shards),
        }
    }

    fn current(&self, shard: u32) -> u64 {
        self.shards[shard as usize % self.shards.len()]
            .0
            .load(Ordering::SeqCst)
    }

    /// Whether an Event queued in `term` of `shard` may still be delivered.
    fn live(&self, (shard, term): Stamp) -> bool {
        term == self.current(shard) && *self.shards[shard as usize % self.shards.len()].1.borrow()
    }
}

/// The background sender: one Event at a time, in the order queued.
async fn deliver_all(
    client: Client,
    mut rx: mpsc::Receiver<(Stamp, Event)>,
    metrics: Metrics,
    term: Term,
) {
    while let Some((queued_in, ev)) = rx.recv().await {
        deliver(&client, &ev, &metrics, || term.live(queued_in)).await;
    }
}

/// Creates `ev`, retrying what may succeed later. `AlreadyExists` after a retry means an
/// earlier attempt was created (its answer was lost): the name is unique per Event.
async fn deliver(client: &Client, ev: &Event, metrics: &Metrics, live: impl Fn() -> bool) {
    let ns = ev.metadata.namespace.clone().unwrap_or_default();
    let name = ev.metadata.name.clone().unwrap_or_default();
    let api = Api::<Event>::namespaced(client.clone(), &ns);
    let mut delay = FIRST_RETRY_DELAY;
    for attempt in 1..=MAX_ATTEMPTS {
        if !live() {
            metrics.events_dropped.inc();
            debug!(event = %name, "leadership term over; Event dropped");
            return;
        }
        match api.create(&PostParams::default(), ev).await {
            Ok(_) => {
                metrics.write("events");
                return;
            }
            Err(kube::Error::Api(e)) if e.code == 409 && attempt > 1 => {
                metrics.write("events");
                return;
            }
            Err(e) if retryable(&e) && attempt < MAX_ATTEMPTS => {
                debug!(event = %name, attempt, error = %e, retry_in = ?delay, "creating an Event failed; retrying");
                metrics.events_retried.inc();
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_RETRY_DELAY);
            }
            Err(e) => {
                metrics.events_dropped.inc();
                warn!(event = %name, attempts = attempt, error = %e, "could not publish event; giving up");
                return;
            }
        }
    }
}

/// Errors worth another attempt: the API failing or throttling, or the connection.
fn retryable(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code >= 500 || s.code == 429,
        // Transport errors: the request may not have reached the API.
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => true,
        _ => false,
    }
}

/// `s` cut to at most `max` bytes on a character boundary, marked with `…` when cut.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_respects_the_limit_and_char_boundaries() {
        let s = "é".repeat(600);
        let t = truncate(&s, 1024);
        assert!(t.len() <= 1024, "{}", t.len());
        assert!(t.ends_with('…'));
        assert_eq!(truncate("short", 1024), "short");
    }
}
