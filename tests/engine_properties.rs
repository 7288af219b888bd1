//! PRODUCT.md's invariants, checked over random fact streams.

#[path = "support/engine_harness.rs"]
mod harness;

use harness::*;
use ingress_failover::engine::risefall::{Flip, RiseFall};
use ingress_failover::engine::{Action, ActionKind, Pool};
use proptest::prelude::*;
use serde_json::json;

/// One random event in the life of a policy.
#[derive(Debug, Clone)]
enum Event {
    /// Check results for the primary backends (bit i = backend i healthy), then one second.
    Round(u8),
    /// A load-balancer check, then one second.
    Lb(bool),
    /// Kubernetes readiness of primary backend i flips.
    ToggleReady(usize),
    /// Emergency pods: count and how many are ready.
    EmergencyPods(u8, u8),
    /// Checks for every emergency pod.
    EmergencyRound(bool),
    /// Time passes with no facts.
    Idle(u16),
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        6 => any::<u8>().prop_map(Event::Round),
        2 => any::<bool>().prop_map(Event::Lb),
        1 => (0usize..6).prop_map(Event::ToggleReady),
        1 => (0u8..5, 0u8..5).prop_map(|(n, r)| Event::EmergencyPods(n, r.min(n))),
        2 => any::<bool>().prop_map(Event::EmergencyRound),
        1 => (1u16..400).prop_map(Event::Idle),
    ]
}

#[derive(Debug, Clone)]
struct Knobs {
    backends: usize,
    fail_closed: bool,
    max_ejection: u32,
    rise: u32,
    fall: u32,
    max_transitions: u32,
    window: u32,
    active: i32,
    max: i32,
    steps: bool,
}

fn knobs() -> impl Strategy<Value = Knobs> {
    (
        1usize..7,
        any::<bool>(),
        0u32..=100,
        1u32..4,
        1u32..4,
        1u32..5,
        10u32..300,
        (0i32..6, 0i32..8),
        any::<bool>(),
    )
        .prop_map(
            |(backends, fail_closed, max_ejection, rise, fall, mt, window, (a, m), steps)| Knobs {
                backends,
                fail_closed,
                max_ejection,
                rise,
                fall,
                max_transitions: mt,
                window,
                active: a.min(m),
                max: m,
                steps,
            },
        )
}

fn build(k: &Knobs) -> Harness {
    let addrs: Vec<String> = primary(k.backends);
    let mut recovery =
        json!({"holdDownSeconds": 5, "emergencyCooldownSeconds": 15, "stepSeconds": 3});
    if k.steps {
        recovery["failbackSteps"] = json!([10, 50]);
    }
    let s = spec(json!({
        "backends": {"primary": {"addresses": addrs},
                     "emergency": {"deployment": {"name": "e", "activeReplicas": k.active, "maxReplicas": k.max}}},
        "probe": {"successThreshold": k.rise, "failureThreshold": k.fall},
        "thresholds": {"activateForSeconds": 3, "deactivateForSeconds": 4},
        "safety": {"failMode": if k.fail_closed {"FailClosed"} else {"FailOpen"},
                   "maxEjectionPercent": k.max_ejection,
                   "panicThresholdPercent": (k.max_ejection * 7) % 101,
                   "flapBudget": {"maxTransitions": k.max_transitions, "windowSeconds": k.window}},
        "ingress": {"ingresses": ["web"], "primaryClass": "a", "backupClass": "b", "mode": "HotStandby",
                    "health": {"url": "http://lb/healthz"}},
        "recovery": recovery,
    }));
    let mut h = Harness::new(&s);
    h.step();
    h
}

fn apply(h: &mut Harness, e: &Event) -> Vec<Action> {
    match *e {
        Event::Round(bits) => {
            for (i, a) in h.addresses(Pool::Primary).iter().enumerate() {
                h.check(a, Pool::Primary, bits & (1 << (i % 8)) != 0);
            }
            h.run(1)
        }
        Event::Lb(ok) => {
            h.lb(ok);
            h.run(1)
        }
        Event::ToggleReady(i) => {
            let mut eps = h.obs.endpoints.clone();
            if let Some(e) = eps.iter_mut().filter(|e| e.pool == Pool::Primary).nth(i) {
                e.ready = !e.ready;
            }
            h.obs.set_endpoints(eps);
            h.run(1)
        }
        Event::EmergencyPods(n, ready) => {
            let pods: Vec<(String, bool)> = (0..n)
                .map(|i| (format!("10.9.0.{i}:80"), i < ready))
                .collect();
            let pods: Vec<(&str, bool)> = pods.iter().map(|(a, r)| (a.as_str(), *r)).collect();
            h.set_emergency_pods(&pods);
            h.run(1)
        }
        Event::EmergencyRound(ok) => {
            for a in h.addresses(Pool::Emergency) {
                h.check(&a, Pool::Emergency, ok);
            }
            h.run(1)
        }
        Event::Idle(s) => h.run(i64::from(s)),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Never an empty published set while any primary endpoint exists outside termination
    /// (ready or not), unless fail-closed.
    #[test]
    fn fail_open_never_publishes_nothing(k in knobs(), events in prop::collection::vec(event(), 1..120)) {
        let mut h = build(&k);
        for e in &events {
            apply(&mut h, e);
            if !k.fail_closed && h.state.endpoints.iter().any(|e| e.pool == Pool::Primary && !e.terminating) {
                prop_assert!(h.state.published_count() > 0, "empty set after {e:?}");
            }
        }
    }

    /// The engine's next deadline is never late: stepping with no new fact at any time before it
    /// decides nothing (the controller sleeps until the deadline instead of polling).
    #[test]
    fn nothing_falls_due_before_the_next_deadline(k in knobs(), events in prop::collection::vec(event(), 1..120), frac in 0.0f64..1.0) {
        let mut h = build(&k);
        for e in &events {
            apply(&mut h, e);
            let now = ingress_failover::engine::Now::from(h.now);
            let deadline = h.state.next_deadline(&h.cfg, now);
            if let Some(d) = deadline {
                prop_assert!(d > h.now, "deadline {d} not after now {}", h.now);
            }
            let last_quiet = deadline.map_or(h.now + 86_400_000, |d| d - 1);
            // The last quiet moment, and one at random before it.
            let probe = h.now + 1 + ((last_quiet - h.now - 1) as f64 * frac) as i64;
            for at in [last_quiet, probe] {
                if at <= h.now {
                    continue;
                }
                let mut state = h.state.clone();
                let mut obs = h.obs.clone();
                obs.clear_checks();
                let mut actions = Vec::new();
                ingress_failover::engine::step(&h.cfg, &mut state, &obs, at, &mut actions);
                prop_assert!(
                    actions.is_empty(),
                    "{} ms after {e:?}, before the deadline {deadline:?}: {:?}",
                    at - h.now,
                    kinds(&actions)
                );
            }
        }
    }

    /// Emergency replicas stay within [0, maxReplicas] whatever happens.
    #[test]
    fn emergency_replicas_within_bounds(k in knobs(), events in prop::collection::vec(event(), 1..120)) {
        let mut h = build(&k);
        for e in &events {
            apply(&mut h, e);
            let r = h.state.desired_emergency_replicas(&h.cfg).unwrap();
            prop_assert!((0..=k.max).contains(&r), "replicas {r} outside 0..={}", k.max);
        }
    }

    /// Per tier, the return moves (failback, release) in any window never exceed the flap
    /// budget, and all moves never exceed it by more than the one protective move that is
    /// never refused.
    #[test]
    fn transitions_within_flap_budget(k in knobs(), events in prop::collection::vec(event(), 1..200)) {
        let mut h = build(&k);
        let mut times: [Vec<(i64, bool)>; 2] = Default::default();
        for e in &events {
            for a in apply(&mut h, e) {
                if let Some(tier) = a.kind.budget_tier() {
                    let ret = matches!(a.kind, ActionKind::IngressFailback | ActionKind::EmergencyRelease);
                    times[tier as usize].push((a.at, ret));
                }
            }
        }
        let window = i64::from(k.window) * 1000;
        for tier in &times {
            for (i, &(t, _)) in tier.iter().enumerate() {
                let in_window: Vec<_> = tier[i..].iter().take_while(|(u, _)| u - t < window).collect();
                let returns = in_window.iter().filter(|(_, r)| *r).count() as u32;
                prop_assert!(returns <= k.max_transitions,
                    "{returns} return moves within {}s starting at {t}", k.window);
                prop_assert!(in_window.len() as u32 <= k.max_transitions + 1,
                    "{} transitions within {}s starting at {t}", in_window.len(), k.window);
            }
        }
    }

    /// Every action carries a cause.
    #[test]
    fn no_action_without_a_reason(k in knobs(), events in prop::collection::vec(event(), 1..120)) {
        let mut h = build(&k);
        for e in &events {
            for a in apply(&mut h, e) {
                prop_assert!(!a.reason.trim().is_empty(), "{a:?}");
            }
        }
    }

    /// At most maxEjectionPercent of the ready primary pool is removed for failing probes
    /// (fail-closed included: ejection limits apply before fail mode).
    #[test]
    fn ejection_never_exceeds_the_cap(k in knobs(), events in prop::collection::vec(event(), 1..120)) {
        let mut h = build(&k);
        for e in &events {
            apply(&mut h, e);
            let ready: Vec<_> = h.state.endpoints.iter().filter(|e| e.pool == Pool::Primary && e.ready).collect();
            let ejected = ready.iter().filter(|e| !e.published).count();
            // Envoy's rule: at least one may always go when the percentage is above zero.
            let floor = ready.len() * k.max_ejection as usize / 100;
            let cap = if k.max_ejection == 0 || ready.is_empty() { 0 } else { floor.max(1) };
            prop_assert!(ejected <= cap,
                "{ejected} of {} ejected, cap {}% ({cap})", ready.len(), k.max_ejection);
        }
    }

    /// An endpoint leaves exactly at the fall-th consecutive failure and returns exactly at the
    /// rise-th consecutive success, checked against a run-length reading of the raw sequence.
    #[test]
    fn rise_and_fall_are_exact(rise in 1u32..6, fall in 1u32..6, checks in prop::collection::vec(any::<bool>(), 1..300)) {
        let mut rf = RiseFall::up(0);
        let mut serving = true;
        let mut run = 0u32; // length of the current run of results opposite to `serving`
        for (i, &ok) in checks.iter().enumerate() {
            let flip = rf.observe(ok, Some("x"), rise, fall, i as i64);
            let against = ok != serving;
            run = if against { run + 1 } else { 0 };
            let expected = if against && run == if serving { fall } else { rise } {
                serving = !serving;
                run = 0;
                Some(if serving { Flip::WentUp } else { Flip::WentDown })
            } else {
                None
            };
            prop_assert_eq!(flip, expected, "check {} ok={}", i, ok);
            prop_assert_eq!(rf.state.serving(), serving);
        }
    }

    /// The engine is deterministic: the same inputs give the same actions and state.
    #[test]
    fn deterministic(k in knobs(), events in prop::collection::vec(event(), 1..80)) {
        let (mut a, mut b) = (build(&k), build(&k));
        for e in &events {
            prop_assert_eq!(apply(&mut a, e), apply(&mut b, e));
        }
        prop_assert_eq!(a.state, b.state);
    }
}

#[test]
fn action_names_round_trip() {
    for k in ActionKind::ALL {
        assert_eq!(ActionKind::from_name(k.as_str()), Some(k));
    }
}
