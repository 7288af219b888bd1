//! Events, one per action, each with its own message.
//!
//! kube-runtime 5's `events::Recorder` keys its event series on (type, action, reason,
//! reporting controller and instance, regarding, related) — not on the note. A second Event
//! with the same reason for the same policy therefore only bumps the first one's count and
//! keeps the first one's message: `kubectl describe fp` showed `PhaseChanged (x11)
//! Pending → Normal`. Every action here is a distinct Event instead, created with a name that
//! sorts in the order the actions happened and a microsecond `eventTime`, so the story reads in
//! order.

use std::sync::atomic::{AtomicI64, Ordering};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client};

/// Kubernetes caps an Event's note at 1 kB.
const MAX_NOTE: usize = 1024;

/// `Normal` or `Warning`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Normal,
    Warning,
}

/// Writes Events as the controller (`reportingController`) and this replica
/// (`reportingInstance`).
pub struct EventSink {
    client: Client,
    controller: String,
    instance: String,
    /// Last name suffix handed out: names are strictly increasing within a process.
    last: AtomicI64,
}

impl EventSink {
    pub fn new(client: Client, controller: &str, instance: &str) -> Self {
        EventSink {
            client,
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

    /// Creates one Event about `regarding`.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        severity: Severity,
        reason: &str,
        action: &str,
        note: &str,
    ) -> Result<(), kube::Error> {
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
        Api::<Event>::namespaced(self.client.clone(), &ns)
            .create(&PostParams::default(), &ev)
            .await
            .map(|_| ())
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
