//! Weighted emergency capacity (`spec.gateway.backendWeights`), driven through the public
//! `step`: while engaged the emergency backends carry their full weight; a release ramps that
//! weight down one step per `rampDownStepSeconds` (never cut), keeps their endpoints published
//! through a last step at 0 %, and only then starts the cooldown; a relapse mid-ramp engages
//! again at full weight; the ramp is a deadline and resumes from status.

#[path = "support/engine_harness.rs"]
mod harness;

use harness::*;
use ingress_failover::api::FailoverPolicyStatus;
use ingress_failover::engine::invariants::{Snapshot, check_step};
use ingress_failover::engine::report::render_status;
use ingress_failover::engine::{Action, ActionKind as K, EmergencyPhase, Now, PolicyState, Pool};
use serde_json::json;

const A1: &str = "10.0.1.1:80";
const A2: &str = "10.0.1.2:80";
const A3: &str = "10.0.1.3:80";
const E1: &str = "10.9.0.1:80";
const E2: &str = "10.9.0.2:80";

/// The Gateway tier with weighted emergency capacity: two pods, ramp [50, 25] at 10 s a step,
/// cooldown 60 s (the harness's), activate below 0.5 for 10 s, release above 0.75 for 20 s.
fn weighted(steps: serde_json::Value) -> serde_json::Value {
    json!({
        "gateway": {"routes": ["web"], "primaryGateway": {"name": "gw-a"}, "backupGateway": {"name": "gw-b"},
            "backendWeights": {"primary": 100, "emergency": 50, "rampDownSteps": steps, "rampDownStepSeconds": 10}},
        "backends": {"emergency": {"deployment": {"name": "e", "activeReplicas": 2, "maxReplicas": 2}}},
    })
}

/// Steps like [`Harness::round`], checking the engine's invariants on every step.
fn checked_rounds(h: &mut Harness, n: usize, failing: &[&str]) -> Vec<Action> {
    let mut all = Vec::new();
    for _ in 0..n {
        let before = Snapshot::of(&h.cfg, &h.state);
        for e in [E1, E2] {
            h.check(e, Pool::Emergency, true);
        }
        let a = h.round(failing);
        let after = Snapshot::of(&h.cfg, &h.state);
        let broken = check_step(&h.cfg, &h.state, &before, &after, &a, h.now);
        assert!(broken.is_empty(), "{broken:?} after {a:?}");
        all.extend(a);
    }
    all
}

/// Engaged, the two emergency pods published and carrying full weight.
fn engaged(steps: serde_json::Value) -> Harness {
    let mut h = Harness::new(&spec(weighted(steps)));
    h.step();
    assert_eq!(h.state.desired_emergency_weight_percent(&h.cfg), Some(0));
    h.set_emergency_pods(&[(E1, true), (E2, true)]);
    checked_rounds(&mut h, 14, &[A1, A2, A3]);
    assert!(matches!(h.state.emergency, EmergencyPhase::Active { .. }));
    checked_rounds(&mut h, 3, &[A1, A2, A3]);
    assert!(h.published().contains(&E1.to_string()));
    assert_eq!(h.state.desired_emergency_weight_percent(&h.cfg), Some(100));
    h
}

fn at(actions: &[Action], kind: K) -> Vec<i64> {
    actions
        .iter()
        .filter(|a| a.kind == kind)
        .map(|a| a.at)
        .collect()
}

#[test]
fn release_ramps_the_weight_down_then_unpublishes_then_cools_down() {
    let mut h = engaged(json!([50, 25]));
    // The primaries recover: 20 s above 0.75 releases, and the ramp begins.
    let mut weights = Vec::new();
    let mut log = Vec::new();
    for _ in 0..150 {
        log.extend(checked_rounds(&mut h, 1, &[]));
        weights.push((
            h.now,
            h.state.desired_emergency_weight_percent(&h.cfg).unwrap(),
            h.published().iter().any(|a| a.starts_with("10.9")),
        ));
    }
    let release = at(&log, K::EmergencyRelease)[0];
    let ramp = at(&log, K::EmergencyRampDown);
    assert_eq!(
        ramp,
        vec![release + 10_000, release + 20_000, release + 30_000],
        "one step every 10 s"
    );
    let weight_at = |t: i64| weights.iter().find(|w| w.0 == t).unwrap();
    assert_eq!(weight_at(release).1, 50);
    assert_eq!(weight_at(release + 9_000).1, 50);
    assert_eq!(weight_at(release + 10_000).1, 25);
    assert_eq!(weight_at(release + 20_000).1, 0);
    assert!(
        weight_at(release + 29_000).2,
        "still published through the 0 % step"
    );
    assert!(!weight_at(release + 30_000).2, "then they leave");
    let down = at(&log, K::EmergencyScaleDown);
    assert_eq!(
        down,
        vec![release + 30_000 + 60_000],
        "the cooldown counts from the end of the ramp"
    );
    let release_reason = &log
        .iter()
        .find(|a| a.kind == K::EmergencyRelease)
        .unwrap()
        .reason;
    assert!(
        release_reason.contains("ramps down to 50% now, then 25%, 0% (10s a step)"),
        "{release_reason}"
    );
}

#[test]
fn a_relapse_mid_ramp_engages_again_at_full_weight() {
    let mut h = engaged(json!([50, 25]));
    let a = checked_rounds(&mut h, 36, &[]);
    assert_eq!(at(&a, K::EmergencyRampDown).len(), 1, "{a:?}");
    assert_eq!(h.state.desired_emergency_weight_percent(&h.cfg), Some(25));
    // The pool falls again for the activation window: protective, never refused.
    let a = checked_rounds(&mut h, 14, &[A1, A2, A3]);
    assert_eq!(at(&a, K::EmergencyActivate).len(), 1, "{a:?}");
    assert_eq!(h.state.desired_emergency_weight_percent(&h.cfg), Some(100));
    assert!(h.published().contains(&E2.to_string()));
}

#[test]
fn the_ramp_step_is_a_deadline_and_status_says_when() {
    let mut h = engaged(json!([50]));
    let a = checked_rounds(&mut h, 24, &[]);
    let release = at(&a, K::EmergencyRelease)[0];
    let now = Now::from(h.now);
    assert_eq!(
        h.state.next_deadline(&h.cfg, now),
        Some(release + 10_000),
        "re-evaluated exactly when the step falls due"
    );
    let status = render_status(&h.cfg, &h.state, Some(1), h.now, None);
    let em = status.emergency.expect("status.emergency");
    assert_eq!(em.weight_percent, Some(50));
    assert_eq!(
        em.next_step_at.unwrap().0.as_millisecond(),
        release + 10_000
    );
    assert!(em.summary.starts_with("Releasing 50%"), "{}", em.summary);
    // With no new fact, the step at the deadline moves the ramp.
    h.now = release + 10_000;
    let a = h.step();
    assert_eq!(at(&a, K::EmergencyRampDown), vec![release + 10_000]);
    assert_eq!(h.state.desired_emergency_weight_percent(&h.cfg), Some(0));
}

#[test]
fn a_restart_mid_ramp_resumes_at_the_persisted_step_never_higher_or_lower() {
    let mut h = engaged(json!([50, 25]));
    checked_rounds(&mut h, 36, &[]);
    assert_eq!(h.state.desired_emergency_weight_percent(&h.cfg), Some(25));
    let status = render_status(&h.cfg, &h.state, Some(1), h.now, None);
    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(json["emergency"]["state"], "Releasing");
    assert_eq!(json["emergency"]["weightPercent"], 25);
    let persisted: FailoverPolicyStatus = serde_json::from_value(json).unwrap();
    let resumed = PolicyState::resume(&h.cfg, &persisted, h.now + 5_000);
    assert!(matches!(
        resumed.emergency,
        EmergencyPhase::Releasing { step: 1, since } if since == h.now + 5_000
    ));
    assert_eq!(resumed.desired_emergency_weight_percent(&h.cfg), Some(25));
    // A spec edit that removed the ramp continues as the cooldown it would have reached.
    let plain = ingress_failover::engine::EngineConfig::from_spec(&spec(json!({
        "backends": {"emergency": {"deployment": {"name": "e", "activeReplicas": 2, "maxReplicas": 2}}},
    })));
    let resumed = PolicyState::resume(&plain, &persisted, h.now);
    assert!(matches!(
        resumed.emergency,
        EmergencyPhase::CoolingDown { .. }
    ));
}

#[test]
fn an_empty_ramp_still_holds_one_step_at_zero_before_the_endpoints_leave() {
    let mut h = engaged(json!([]));
    let mut log = Vec::new();
    for _ in 0..40 {
        log.extend(checked_rounds(&mut h, 1, &[]));
        if at(&log, K::EmergencyRelease).len() == 1 && at(&log, K::EmergencyRampDown).is_empty() {
            assert_eq!(h.state.desired_emergency_weight_percent(&h.cfg), Some(0));
            assert!(h.published().contains(&E1.to_string()));
        }
    }
    let release = at(&log, K::EmergencyRelease)[0];
    assert_eq!(at(&log, K::EmergencyRampDown), vec![release + 10_000]);
    assert!(!h.published().contains(&E1.to_string()));
}

#[test]
fn without_backend_weights_there_is_no_weight_and_release_unpublishes_at_once() {
    let mut h = Harness::new(&spec(json!({
        "backends": {"emergency": {"deployment": {"name": "e", "activeReplicas": 2, "maxReplicas": 2}}},
    })));
    h.step();
    h.set_emergency_pods(&[(E1, true), (E2, true)]);
    checked_rounds(&mut h, 15, &[A1, A2, A3]);
    assert_eq!(h.state.desired_emergency_weight_percent(&h.cfg), None);
    let a = checked_rounds(&mut h, 25, &[]);
    assert_eq!(at(&a, K::EmergencyRelease).len(), 1);
    assert!(!h.published().contains(&E1.to_string()));
    assert!(at(&a, K::EmergencyRampDown).is_empty());
}

/// The invariant itself: a weight cut past the ramp's next step, or endpoints leaving at a
/// non-zero weight, are reported (what the randomized replays rely on).
#[test]
fn the_invariants_name_a_cut_weight() {
    let h = engaged(json!([50, 25]));
    let before = Snapshot::of(&h.cfg, &h.state);
    let mut after = before.clone();
    after.emergency_weight_percent = Some(25);
    let broken = check_step(&h.cfg, &h.state, &before, &after, &[], h.now);
    assert!(
        broken.iter().any(|b| b.contains("cut from 100% to 25%")),
        "{broken:?}"
    );
    after.emergency_weight_percent = Some(0);
    after.effective.emergency = 2;
    let broken = check_step(&h.cfg, &h.state, &before, &after, &[], h.now);
    assert!(
        broken
            .iter()
            .any(|b| b.contains("left the published set at 100% weight")),
        "{broken:?}"
    );
}
