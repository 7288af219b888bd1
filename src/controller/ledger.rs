//! The controller's memory of its own writes, per policy: which actuation is failing and when
//! it may be tried again (backoff that holds whatever triggered the reconcile), and how often
//! it has corrected another writer's change to a field it owns.
//!
//! Each actuation (managed Service, EndpointSlices, emergency scale, Ingresses) is tracked on
//! its own, so one failing write never blocks the others.

use std::collections::BTreeMap;

use crate::engine::Millis;

/// Corrections of another field manager's change to one owned field before the operator stops
/// correcting it and reports the other writer instead (a GitOps self-heal would otherwise
/// fight it forever).
pub const MAX_CORRECTIONS: u32 = 3;

/// First retry delay of a failing write; doubles per attempt.
const BACKOFF_BASE_MS: i64 = 500;
/// Longest retry delay of a failing write.
const BACKOFF_MAX_MS: i64 = 300_000;

/// One kind of write a reconcile makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Actuation {
    Service,
    Slices,
    /// The weighted emergency Service and its slices (`spec.gateway.backendWeights`): failing
    /// on their own, never holding the managed Service's writes.
    EmergencyService,
    EmergencySlices,
    /// The legacy `Endpoints` mirror (`managedService.legacyEndpoints`).
    LegacyEndpoints,
    Scale,
    Ingress,
    /// The policy's `DNSEndpoint` (`spec.dns`).
    Dns,
    /// The Gateway tier's HTTPRoute copies.
    Routes,
    /// The policy's own status (its failures are returned as reconcile errors, not shown in
    /// the status they could not write).
    Status,
}

impl Actuation {
    /// Bounded metric label.
    pub fn resource(self) -> &'static str {
        match self {
            Actuation::Service | Actuation::EmergencyService => "services",
            Actuation::Slices | Actuation::EmergencySlices => "endpointslices",
            Actuation::LegacyEndpoints => "endpoints",
            Actuation::Scale => "deployments/scale",
            Actuation::Ingress => "ingresses",
            Actuation::Dns => "dnsendpoints",
            Actuation::Routes => "httproutes",
            Actuation::Status => "failoverpolicies/status",
        }
    }
}

/// A write that failed, for the `InEffect` condition and its Event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The object, e.g. `Deployment shop/web-emergency/scale`.
    pub object: String,
    /// The API's answer.
    pub error: String,
    /// Consecutive failed attempts.
    pub attempts: u32,
    /// Not tried again before this time.
    pub next_at: Millis,
}

impl Failure {
    pub fn message(&self) -> String {
        format!(
            "writing {} failed {} time(s): {}",
            self.object, self.attempts, self.error
        )
    }
}

/// What to do about a field another manager changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Correction {
    /// Write it back (this is correction number `n`).
    Correct(u32),
    /// Stop: the bound is reached (first time: report it).
    GiveUp { first: bool },
}

#[derive(Debug, Default)]
struct Corrections {
    /// The value the operator wants for the field; a new decision starts a new count.
    value: String,
    count: u32,
    reported: bool,
    manager: String,
}

/// Per-policy write memory.
#[derive(Debug, Default)]
pub struct Ledger {
    failing: BTreeMap<Actuation, Failure>,
    corrections: BTreeMap<String, Corrections>,
}

impl Ledger {
    /// Whether `what` may be written now (not failing, or its backoff has passed).
    pub fn due(&self, what: Actuation, now: Millis) -> bool {
        self.failing.get(&what).is_none_or(|f| now >= f.next_at)
    }

    /// Records a failed write; returns whether it is news (a first failure or a different
    /// error) that deserves an Event.
    pub fn failed(&mut self, what: Actuation, object: String, error: String, now: Millis) -> bool {
        let previous = self.failing.get(&what);
        let attempts = previous.map_or(0, |f| f.attempts) + 1;
        let news = previous.is_none_or(|f| f.object != object || f.error != error);
        let exp = BACKOFF_BASE_MS.saturating_mul(1i64 << (attempts - 1).min(20));
        let delay = exp.min(BACKOFF_MAX_MS);
        let jitter = 0.8 + fastrand::f64() * 0.4;
        self.failing.insert(
            what,
            Failure {
                object,
                error,
                attempts,
                next_at: now + (delay as f64 * jitter) as Millis,
            },
        );
        news
    }

    /// Records a successful write (or nothing to write); returns the failure it ends, if any.
    pub fn succeeded(&mut self, what: Actuation) -> Option<Failure> {
        self.failing.remove(&what)
    }

    /// Writes of managed objects failing now, in a stable order.
    pub fn failures(&self) -> impl Iterator<Item = &Failure> {
        self.failing
            .iter()
            .filter(|(a, _)| **a != Actuation::Status)
            .map(|(_, f)| f)
    }

    /// Makes every failing write due now: the API answers again after failing, so backoff
    /// grown during an outage (up to minutes) must not hold the catch-up (issue 12: recovery
    /// after a 60 s outage took 43 s). Attempt counts are kept, so a write that still fails
    /// backs off from where it was.
    pub fn retry_now(&mut self, now: Millis) {
        for f in self.failing.values_mut() {
            f.next_at = f.next_at.min(now);
        }
    }

    /// The earliest time a failing write (status included) may be tried again.
    pub fn next_retry(&self) -> Option<Millis> {
        self.failing.values().map(|f| f.next_at).min()
    }

    /// The operator wants `value` for `field`. A different wish than the one corrections were
    /// counted for ends that tug-of-war (seeing its own value again does not: the other
    /// writer reverts it right after).
    pub fn expect(&mut self, field: &str, value: &str) {
        if self
            .corrections
            .get(field)
            .is_some_and(|c| c.value != value)
        {
            self.corrections.remove(field);
        }
    }

    /// Another manager changed `field` away from `value`: correct it, or give up after
    /// [`MAX_CORRECTIONS`].
    pub fn correction(&mut self, field: &str, value: &str, manager: &str) -> Correction {
        self.expect(field, value);
        let c = self.corrections.entry(field.to_string()).or_default();
        c.value = value.to_string();
        c.manager = manager.to_string();
        if c.count >= MAX_CORRECTIONS {
            let first = !c.reported;
            c.reported = true;
            return Correction::GiveUp { first };
        }
        c.count += 1;
        Correction::Correct(c.count)
    }

    /// Fields the operator has stopped correcting, with the other manager.
    pub fn other_writers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.corrections
            .iter()
            .filter(|(_, c)| c.reported)
            .map(|(f, c)| (f.as_str(), c.manager.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_back_off_and_only_news_is_reported() {
        let mut l = Ledger::default();
        assert!(l.due(Actuation::Scale, 0));
        assert!(l.failed(Actuation::Scale, "D".into(), "404".into(), 0));
        assert!(!l.due(Actuation::Scale, 100));
        assert!(
            l.due(Actuation::Ingress, 100),
            "other actuations unaffected"
        );
        assert!(!l.failed(Actuation::Scale, "D".into(), "404".into(), 1000));
        let f = l.failures().next().unwrap().clone();
        assert_eq!(f.attempts, 2);
        assert!(f.next_at >= 1000 + 800, "{f:?}");
        for n in 3..30 {
            l.failed(Actuation::Scale, "D".into(), "404".into(), 0);
            let f = l.failures().next().unwrap();
            assert!(
                f.next_at <= (BACKOFF_MAX_MS as f64 * 1.2) as i64,
                "{n}: {f:?}"
            );
        }
        assert!(l.failed(Actuation::Scale, "D".into(), "403".into(), 0));
        assert!(l.succeeded(Actuation::Scale).is_some());
        assert!(l.due(Actuation::Scale, 0));
    }

    #[test]
    fn corrections_are_bounded_per_decision() {
        let mut l = Ledger::default();
        for n in 1..=MAX_CORRECTIONS {
            l.expect("f", "2");
            assert_eq!(l.correction("f", "2", "argocd"), Correction::Correct(n));
        }
        assert_eq!(l.other_writers().count(), 0, "the last correction may hold");
        assert_eq!(
            l.correction("f", "2", "argocd"),
            Correction::GiveUp { first: true }
        );
        assert_eq!(
            l.correction("f", "2", "argocd"),
            Correction::GiveUp { first: false }
        );
        assert_eq!(l.other_writers().count(), 1);
        l.expect("f", "0");
        assert_eq!(l.other_writers().count(), 0, "a new decision, a new count");
    }
}
