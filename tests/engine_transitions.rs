//! One test per transition of the engine's state machines, driven through the public `step`.

#[path = "support/engine_harness.rs"]
mod harness;

use harness::*;
use ingress_failover::api::{Phase, condition_types as ct, reasons};
use ingress_failover::engine::report::render_status;
use ingress_failover::engine::{
    ActionKind as K, DeploymentFact, EmergencyPhase, IngressPhase, PolicyState, Pool,
};
use serde_json::json;

const A1: &str = "10.0.1.1:80";
const A2: &str = "10.0.1.2:80";
const A3: &str = "10.0.1.3:80";
const A4: &str = "10.0.1.4:80";

#[test]
fn first_step_publishes_every_ready_backend_and_reports_normal() {
    let mut h = Harness::new(&spec(json!({})));
    let a = h.step();
    assert_eq!(kinds(&a), vec![K::PublishEndpoints, K::PhaseChanged]);
    assert_eq!(h.published(), primary(4));
    assert_eq!(h.state.phase, Phase::Normal);
}

#[test]
fn backend_leaves_after_exactly_failure_threshold_failures() {
    let mut h = Harness::new(&spec(json!({})));
    h.step();
    assert!(!has(&h.rounds(2, &[A1]), K::EndpointDown));
    assert_eq!(h.published().len(), 4, "still published while Falling");
    let a = h.round(&[A1]);
    assert_eq!(
        kinds(&a),
        vec![K::EndpointDown, K::PublishEndpoints, K::PhaseChanged]
    );
    assert!(a[0].reason.contains("3 consecutive failed checks"));
    assert!(a[0].reason.contains("connection refused"));
    assert_eq!(h.published(), vec![A2, A3, A4]);
    assert_eq!(h.state.phase, Phase::Degraded);
}

#[test]
fn backend_returns_after_exactly_success_threshold_successes() {
    let mut h = Harness::new(&spec(json!({})));
    h.step();
    h.rounds(3, &[A1]);
    assert!(
        !has(&h.round(&[]), K::EndpointUp),
        "one good check is not enough"
    );
    let a = h.round(&[]);
    assert_eq!(
        kinds(&a),
        vec![K::EndpointUp, K::PublishEndpoints, K::PhaseChanged]
    );
    assert_eq!(h.published().len(), 4);
    assert_eq!(h.state.phase, Phase::Normal);
}

#[test]
fn a_failure_while_rising_sends_the_backend_back_down() {
    let mut h = Harness::new(&spec(json!({"probe": {"successThreshold": 3}})));
    h.step();
    h.rounds(3, &[A1]);
    h.rounds(2, &[]);
    h.round(&[A1]);
    assert!(
        !has(&h.rounds(2, &[]), K::EndpointUp),
        "rise count restarted"
    );
    assert!(has(&h.round(&[]), K::EndpointUp));
}

#[test]
fn kubernetes_not_ready_removes_without_probe_failures() {
    let mut h = Harness::new(&spec(json!({})));
    h.step();
    h.obs.endpoints[0].ready = false;
    let eps = h.obs.endpoints.clone();
    h.obs.set_endpoints(eps);
    let a = h.run(1);
    assert!(has(&a, K::PublishEndpoints));
    assert_eq!(h.published(), vec![A2, A3, A4]);
}

#[test]
fn emergency_activates_only_after_the_ratio_stays_low_for_the_window() {
    let s = spec(
        json!({"backends": {"emergency": {"deployment": {"name": "web-emergency", "activeReplicas": 3, "maxReplicas": 5}}}}),
    );
    let mut h = Harness::new(&s);
    h.step();
    h.rounds(3, &[A1, A2, A3]); // ratio 0.25 from now on
    let low_since = h.now;
    let before = h.rounds(9, &[A1, A2, A3]);
    assert!(!has(&before, K::EmergencyActivate));
    let a = h.round(&[A1, A2, A3]);
    let act = a
        .iter()
        .find(|a| a.kind == K::EmergencyActivate)
        .expect("activates");
    assert_eq!(h.now - low_since, 10_000);
    assert!(
        act.reason.contains("0.25 (1/4) below 0.5 for 10s"),
        "{}",
        act.reason
    );
    assert_eq!(h.state.desired_emergency_replicas(&h.cfg), Some(3));
    assert_eq!(h.state.phase, Phase::EmergencyActive);
}

#[test]
fn a_brief_dip_below_the_threshold_does_not_activate() {
    let s = spec(
        json!({"backends": {"emergency": {"deployment": {"name": "e", "activeReplicas": 3, "maxReplicas": 3}}}}),
    );
    let mut h = Harness::new(&s);
    h.step();
    h.rounds(3, &[A1, A2, A3]);
    h.rounds(5, &[A1, A2, A3]);
    h.rounds(2, &[A2, A3]); // A1 back: ratio 0.5, not below
    let a = h.rounds(20, &[A2, A3]);
    assert!(!has(&a, K::EmergencyActivate));
}

#[test]
fn emergency_endpoints_join_only_when_ready_and_healthy() {
    let s = spec(
        json!({"backends": {"emergency": {"deployment": {"name": "e", "activeReplicas": 2, "maxReplicas": 2}}}}),
    );
    let mut h = Harness::new(&s);
    h.step();
    h.rounds(13, &[A1, A2, A3, A4]);
    assert!(matches!(h.state.emergency, EmergencyPhase::Active { .. }));
    assert!(h.state.panic, "all primary failing: fail-open panic");
    // Pods exist but are not ready yet: not published.
    h.set_emergency_pods(&[("10.9.0.1:80", false), ("10.9.0.2:80", false)]);
    h.round(&[A1, A2, A3, A4]);
    assert!(!h.published().iter().any(|a| a.starts_with("10.9")));
    // Ready, but they must pass successThreshold checks first (scale first, then shift).
    h.set_emergency_pods(&[("10.9.0.1:80", true), ("10.9.0.2:80", true)]);
    h.check("10.9.0.1:80", Pool::Emergency, true);
    h.round(&[A1, A2, A3, A4]);
    assert!(!h.published().iter().any(|a| a.starts_with("10.9")));
    h.check("10.9.0.1:80", Pool::Emergency, true);
    let a = h.round(&[A1, A2, A3, A4]);
    // One healthy endpoint for a pool of four is 25 %, below panicThresholdPercent 50: the
    // panic goes on and the new pod joins it instead of taking all the traffic alone.
    assert!(!has(&a, K::PanicExited), "one pod does not end the panic");
    assert!(h.state.panic);
    assert_eq!(
        h.published(),
        vec![A1, A2, A3, A4, "10.9.0.1:80"],
        "every candidate while in panic"
    );
    h.check("10.9.0.2:80", Pool::Emergency, true);
    h.round(&[A1, A2, A3, A4]);
    h.check("10.9.0.2:80", Pool::Emergency, true);
    let a = h.round(&[A1, A2, A3, A4]);
    let exit = a
        .iter()
        .find(|a| a.kind == K::PanicExited)
        .expect("two healthy of four ends the panic");
    assert!(
        exit.reason
            .contains("2 of 4 backends healthy (50%), at or above panicThresholdPercent 50"),
        "{}",
        exit.reason
    );
    assert_eq!(h.published(), vec!["10.9.0.1:80", "10.9.0.2:80"]);
}

#[test]
fn hysteresis_holds_the_emergency_between_the_two_thresholds() {
    let s = spec(
        json!({"backends": {"emergency": {"deployment": {"name": "e", "activeReplicas": 2, "maxReplicas": 2}}}}),
    );
    let mut h = Harness::new(&s);
    h.step();
    h.rounds(13, &[A1, A2, A3]);
    assert!(matches!(h.state.emergency, EmergencyPhase::Active { .. }));
    h.rounds(2, &[A1, A2]); // A3 rises: 0.5
    let a = h.rounds(60, &[A1, A2]);
    assert!(!has(&a, K::EmergencyRelease), "0.5 is not above 0.75");
}

#[test]
fn emergency_releases_then_scales_down_after_the_cooldown() {
    let s = spec(
        json!({"backends": {"emergency": {"deployment": {"name": "e", "standbyReplicas": 1, "activeReplicas": 4, "maxReplicas": 6}}}}),
    );
    let mut h = Harness::new(&s);
    h.step();
    h.rounds(13, &[A1, A2, A3]);
    h.rounds(2, &[]); // all rise back: ratio 1
    let recovered = h.now;
    let a = h.rounds(30, &[]);
    let rel = a
        .iter()
        .find(|a| a.kind == K::EmergencyRelease)
        .expect("released");
    assert_eq!(rel.at - recovered, 20_000);
    assert!(matches!(
        h.state.emergency,
        EmergencyPhase::CoolingDown { .. }
    ));
    assert_eq!(h.state.phase, Phase::Recovering);
    assert_eq!(
        h.state.desired_emergency_replicas(&h.cfg),
        Some(4),
        "scale down last"
    );
    let a = h.rounds(60, &[]);
    let down = a
        .iter()
        .find(|a| a.kind == K::EmergencyScaleDown)
        .expect("scales down");
    assert_eq!(down.at - rel.at, 60_000);
    assert_eq!(h.state.desired_emergency_replicas(&h.cfg), Some(1));
    assert_eq!(h.state.phase, Phase::Normal);
}

#[test]
fn a_relapse_during_cooldown_reactivates_without_rescaling() {
    let s = spec(
        json!({"backends": {"emergency": {"deployment": {"name": "e", "activeReplicas": 4, "maxReplicas": 4}}}}),
    );
    let mut h = Harness::new(&s);
    h.step();
    h.rounds(13, &[A1, A2, A3]);
    h.rounds(2, &[]);
    h.rounds(25, &[]);
    assert!(matches!(
        h.state.emergency,
        EmergencyPhase::CoolingDown { .. }
    ));
    let a = h.rounds(14, &[A1, A2, A3]);
    assert!(has(&a, K::EmergencyActivate));
    assert_eq!(h.state.desired_emergency_replicas(&h.cfg), Some(4));
}

fn ingress(extra: serde_json::Value) -> serde_json::Value {
    let mut v = json!({"ingress": {"ingresses": ["web"], "primaryClass": "nginx-primary", "backupClass": "nginx-backup",
        "health": {"url": "http://lb.internal/healthz"}}});
    if let (Some(o), Some(e)) = (v["ingress"].as_object_mut(), extra.as_object()) {
        for (k, val) in e {
            o.insert(k.clone(), val.clone());
        }
    }
    v
}

fn lb_rounds(h: &mut Harness, n: usize, ok: bool) -> Vec<ingress_failover::engine::Action> {
    (0..n)
        .flat_map(|_| {
            h.lb(ok);
            h.round(&[])
        })
        .collect()
}

#[test]
fn ingress_fails_over_after_the_load_balancer_fails_threshold_checks() {
    let mut h = Harness::new(&spec(ingress(json!({}))));
    h.step();
    assert!(!has(&lb_rounds(&mut h, 2, false), K::IngressFailover));
    let a = lb_rounds(&mut h, 1, false);
    assert_eq!(
        kinds(&a),
        vec![K::LoadBalancerDown, K::IngressFailover, K::PhaseChanged]
    );
    let d = h.state.desired_ingress(&h.cfg).unwrap();
    assert_eq!(d.active_class, "nginx-backup");
    assert_eq!(d.primary_weight_percent, 0);
    assert_eq!(h.state.phase, Phase::FailedOver);
}

#[test]
fn failback_waits_for_an_uninterrupted_hold_down() {
    let mut h = Harness::new(&spec(ingress(json!({}))));
    h.step();
    lb_rounds(&mut h, 3, false);
    lb_rounds(&mut h, 2, true); // Up again
    assert!(!has(&lb_rounds(&mut h, 20, true), K::IngressFailback));
    // One bad check does not reset the hold-down (still Up/Falling)...
    lb_rounds(&mut h, 1, false);
    // ...but three do.
    lb_rounds(&mut h, 2, false);
    assert!(!h.state.lb_serving);
    lb_rounds(&mut h, 2, true);
    let back_up = h.now;
    let a = lb_rounds(&mut h, 40, true);
    let fb = a
        .iter()
        .find(|a| a.kind == K::IngressFailback)
        .expect("fails back");
    assert_eq!(fb.at - back_up, 30_000);
    assert_eq!(h.state.ingress, IngressPhase::Primary);
    assert_eq!(h.state.phase, Phase::Normal);
}

#[test]
fn gradual_failback_steps_and_aborts_when_the_primary_fails_again() {
    let mut s = ingress(json!({"mode": "HotStandby"}));
    s["recovery"] = json!({"holdDownSeconds": 30, "failbackSteps": [10, 50], "stepSeconds": 10});
    let mut h = Harness::new(&spec(s));
    h.step();
    lb_rounds(&mut h, 3, false);
    lb_rounds(&mut h, 2, true);
    let a = lb_rounds(&mut h, 31, true);
    assert!(has(&a, K::IngressFailback));
    assert_eq!(
        h.state
            .desired_ingress(&h.cfg)
            .unwrap()
            .primary_weight_percent,
        10
    );
    assert_eq!(h.state.phase, Phase::Recovering);
    let a = lb_rounds(&mut h, 10, true);
    assert!(has(&a, K::FailbackStep));
    assert_eq!(
        h.state
            .desired_ingress(&h.cfg)
            .unwrap()
            .primary_weight_percent,
        50
    );
    let a = lb_rounds(&mut h, 3, false);
    assert!(has(&a, K::IngressFailover), "abort to backup");
    assert_eq!(
        h.state
            .desired_ingress(&h.cfg)
            .unwrap()
            .primary_weight_percent,
        0
    );
    lb_rounds(&mut h, 2, true);
    lb_rounds(&mut h, 30, true);
    lb_rounds(&mut h, 10, true);
    let a = lb_rounds(&mut h, 10, true);
    assert!(has(&a, K::FailbackComplete));
    let d = h.state.desired_ingress(&h.cfg).unwrap();
    assert_eq!(
        (d.active_class.as_str(), d.primary_weight_percent),
        ("nginx-primary", 100)
    );
}

#[test]
fn controller_without_ready_replicas_counts_as_load_balancer_down() {
    let mut s = ingress(json!({}));
    s["ingress"]["health"] = json!({"controllerDeployment": {"name": "ingress-nginx-controller"}});
    let mut h = Harness::new(&spec(s));
    h.step();
    h.obs.lb_controller = Some(DeploymentFact::NotReady);
    // Debounced like a probe: failureThreshold (3) × intervalSeconds (1) of no ready replica.
    let a = h.run(2);
    assert!(!has(&a, K::LoadBalancerDown), "a 2 s dip is not an outage");
    let a = h.run(2);
    assert!(has(&a, K::LoadBalancerDown));
    assert!(has(&a, K::IngressFailover));
    // Unknown readiness afterwards keeps the last known verdict.
    h.obs.lb_controller = None;
    assert!(!has(&h.run(5), K::LoadBalancerUp));
}

#[test]
fn a_short_dip_of_the_controller_deployment_costs_nothing() {
    let mut s = ingress(json!({}));
    s["ingress"]["health"] = json!({"controllerDeployment": {"name": "ingress-nginx-controller"}});
    let mut h = Harness::new(&spec(s));
    h.step();
    h.obs.lb_controller = Some(DeploymentFact::NotReady);
    let mut a = h.run(1);
    h.obs.lb_controller = Some(DeploymentFact::Ready);
    a.extend(h.run(10));
    assert!(!has(&a, K::LoadBalancerDown));
    assert!(!has(&a, K::IngressFailover));
}

#[test]
fn a_deleted_controller_deployment_is_a_down_load_balancer() {
    let mut s = ingress(json!({}));
    s["ingress"]["health"] = json!({"controllerDeployment": {"name": "ingress-nginx-controller"}});
    let mut h = Harness::new(&spec(s));
    h.step();
    h.obs.lb_controller = Some(DeploymentFact::Missing);
    let a = h.run(4);
    let down = a
        .iter()
        .find(|x| x.kind == K::LoadBalancerDown)
        .expect("a deleted controller fails over");
    assert!(down.reason.contains("does not exist"), "{}", down.reason);
    assert!(has(&a, K::IngressFailover));
}

#[test]
fn flap_budget_holds_the_backup_side_then_thaws_after_the_window() {
    let mut s = ingress(json!({}));
    s["recovery"] = json!({"holdDownSeconds": 0});
    s["safety"] = json!({"flapBudget": {"maxTransitions": 2, "windowSeconds": 100}});
    let mut h = Harness::new(&spec(s));
    h.step();
    lb_rounds(&mut h, 3, false); // failover (1)
    lb_rounds(&mut h, 2, true); // failback (2)
    assert_eq!(h.state.ingress, IngressPhase::Primary);
    // Failing over away from a dead load balancer is never refused, even over budget.
    let a = lb_rounds(&mut h, 3, false);
    assert!(has(&a, K::IngressFailover));
    assert!(matches!(h.state.ingress, IngressPhase::FailedOver { .. }));
    // The return is what the budget holds back: traffic stays on the backup.
    let a = lb_rounds(&mut h, 2, true);
    assert!(has(&a, K::FlapBudgetExhausted));
    assert!(!has(&a, K::IngressFailback));
    assert!(
        matches!(h.state.ingress, IngressPhase::FailedOver { .. }),
        "held on the backup"
    );
    assert_eq!(h.state.phase, Phase::Frozen);
    let st = render_status(&h.cfg, &h.state, Some(1), h.now, None);
    let frozen = st
        .conditions
        .iter()
        .find(|c| c.type_ == ct::FROZEN)
        .unwrap();
    assert_eq!(
        (frozen.status.as_str(), frozen.reason.as_str()),
        ("True", reasons::FLAP_BUDGET_EXHAUSTED)
    );
    assert!(
        frozen
            .message
            .contains("ingress tier holds back IngressFailback"),
        "{}",
        frozen.message
    );
    let a = lb_rounds(&mut h, 100, true);
    assert!(has(&a, K::Unfrozen));
    assert!(
        has(&a, K::IngressFailback),
        "the held decision is taken after the thaw"
    );
}

#[test]
fn override_force_backup_holds_until_expiry_then_auto_resumes() {
    let expires = "2026-01-15T10:01:00Z";
    let mut s = ingress(json!({}));
    s["override"] = json!({"mode": "ForceBackup", "reason": "INC-42 drill", "expiresAt": expires});
    let mut h = Harness::new(&spec(s));
    let a = h.step();
    assert!(has(&a, K::OverrideApplied));
    assert!(has(&a, K::IngressFailover));
    assert!(a.iter().any(|a| a.reason.contains("INC-42 drill")));
    assert_eq!(
        h.state.transitions_in_window(&h.cfg, h.now),
        0,
        "overrides are not flaps"
    );
    let a = lb_rounds(&mut h, 59, true);
    assert!(
        !has(&a, K::IngressFailback),
        "forced while the LB is healthy"
    );
    let a = lb_rounds(&mut h, 1, true);
    assert!(has(&a, K::OverrideExpired));
    // Auto resumes: the LB has been healthy since the start, hold-down 30s passed.
    assert!(has(&a, K::IngressFailback));
}

#[test]
fn override_force_primary_ignores_a_dead_load_balancer() {
    let mut s = ingress(json!({}));
    s["override"] = json!({"mode": "ForcePrimary", "reason": "backup tier is worse"});
    let mut h = Harness::new(&spec(s));
    h.step();
    let a = lb_rounds(&mut h, 10, false);
    assert!(has(&a, K::LoadBalancerDown));
    assert!(!has(&a, K::IngressFailover));
    assert_eq!(h.state.ingress, IngressPhase::Primary);
}

#[test]
fn override_freeze_changes_nothing_managed() {
    let mut s = ingress(json!({}));
    s["override"] = json!({"mode": "Freeze", "reason": "change freeze"});
    let mut h = Harness::new(&spec(s));
    h.step();
    let published = h.published();
    let a = lb_rounds(&mut h, 5, false);
    let a2 = h.rounds(5, &[A1, A2, A3]);
    assert!(!a.iter().chain(&a2).any(|a| a.kind.writes_managed_object()));
    assert_eq!(h.published(), published);
    assert_eq!(h.state.phase, Phase::Frozen);
    // Health is still tracked and shown.
    assert!(
        h.state
            .endpoints
            .iter()
            .filter(|e| !e.health.state.serving())
            .count()
            == 3
    );
}

#[test]
fn fail_open_publishes_everything_when_nothing_passes() {
    let mut h = Harness::new(&spec(json!({})));
    h.step();
    let a = h.rounds(3, &[A1, A2, A3, A4]);
    assert!(has(&a, K::PanicEntered));
    assert_eq!(h.published().len(), 4);
    let st = render_status(&h.cfg, &h.state, None, h.now, None);
    let deg = st
        .conditions
        .iter()
        .find(|c| c.type_ == ct::DEGRADED)
        .unwrap();
    assert_eq!(deg.reason, reasons::PANIC_FAIL_OPEN);
    // One of four back is 25 %: still below the default panicThresholdPercent of 50.
    let a = h.rounds(2, &[A2, A3, A4]);
    assert!(!has(&a, K::PanicExited));
    assert_eq!(h.published().len(), 4);
    let a = h.rounds(2, &[A3, A4]);
    assert!(has(&a, K::PanicExited));
    assert_eq!(h.published(), vec![A1, A2]);
}

#[test]
fn panic_threshold_zero_panics_only_when_nothing_passes() {
    let mut h = Harness::new(&spec(json!({"safety": {"panicThresholdPercent": 0}})));
    h.step();
    let a = h.rounds(3, &[A1, A2, A3]);
    assert!(!has(&a, K::PanicEntered), "one of four passing is enough");
    assert_eq!(h.published(), vec![A4]);
    let a = h.rounds(3, &[A1, A2, A3, A4]);
    let enter = a.iter().find(|a| a.kind == K::PanicEntered).unwrap();
    assert!(
        enter.reason.contains("no backend passes"),
        "{}",
        enter.reason
    );
}

#[test]
fn panic_below_the_threshold_publishes_every_candidate() {
    let mut h = Harness::new(&spec(json!({"safety": {"panicThresholdPercent": 60}})));
    h.step();
    let a = h.rounds(3, &[A1, A2]);
    let enter = a.iter().find(|a| a.kind == K::PanicEntered).unwrap();
    assert!(
        enter
            .reason
            .contains("2 of 4 backends healthy (50%), below panicThresholdPercent 60"),
        "{}",
        enter.reason
    );
    assert_eq!(h.published().len(), 4);
}

#[test]
fn fail_closed_publishes_nothing_when_nothing_passes() {
    let mut h = Harness::new(&spec(json!({"safety": {"failMode": "FailClosed"}})));
    h.step();
    let a = h.rounds(3, &[A1, A2, A3, A4]);
    assert!(!has(&a, K::PanicEntered));
    assert!(h.published().is_empty());
}

#[test]
fn max_ejection_percent_keeps_the_most_recent_failures() {
    let mut h = Harness::new(&spec(
        json!({"safety": {"maxEjectionPercent": 50, "panicThresholdPercent": 0}}),
    ));
    h.step();
    h.rounds(3, &[A1]);
    h.rounds(3, &[A1, A2]);
    assert_eq!(h.published(), vec![A3, A4]);
    let a = h.rounds(3, &[A1, A2, A3]);
    let publish = a.iter().find(|a| a.kind == K::PublishEndpoints);
    assert!(
        publish.is_none(),
        "A3 is kept: ejecting it would exceed 50%"
    );
    let limited = a
        .iter()
        .find(|a| a.kind == K::EjectionLimited)
        .expect("keeping a failing backend is said");
    assert!(
        limited
            .reason
            .contains("kept published by maxEjectionPercent 50%")
            && limited.reason.contains(A3),
        "{}",
        limited.reason
    );
    assert_eq!(h.published(), vec![A3, A4]);
    assert!(
        h.state
            .endpoints
            .iter()
            .any(|e| e.address == A3 && !e.health.state.serving())
    );
}

#[test]
fn unknown_inventory_decides_nothing() {
    let s = spec(json!({}));
    let mut h = Harness::new(&s);
    h.obs = Default::default();
    let a = h.run(30);
    assert!(a.is_empty(), "{a:?}");
    assert_eq!(h.state.phase, Phase::Pending);
}

#[test]
fn dry_run_decides_the_same_and_says_so() {
    let mut live = Harness::new(&spec(json!({})));
    let mut dry = Harness::new(&spec(json!({"dryRun": true})));
    live.step();
    dry.step();
    assert_eq!(kinds(&live.rounds(5, &[A1])), kinds(&dry.rounds(5, &[A1])));
    let st = render_status(&dry.cfg, &dry.state, None, dry.now, None);
    let ready = st.conditions.iter().find(|c| c.type_ == ct::READY).unwrap();
    assert_eq!(ready.reason, reasons::DRY_RUN);
}

#[test]
fn resuming_from_status_repeats_no_transition() {
    let mut s = ingress(json!({}));
    s["backends"]["emergency"] =
        json!({"deployment": {"name": "e", "activeReplicas": 2, "maxReplicas": 2}});
    let spec = spec(s);
    let mut h = Harness::new(&spec);
    h.step();
    lb_rounds(&mut h, 3, false);
    h.rounds(13, &[A1, A2, A3]);
    assert_eq!(h.state.phase, Phase::FailedOver);
    let status = render_status(&h.cfg, &h.state, Some(1), h.now, None);

    let mut resumed = Harness::new(&spec);
    resumed.state = PolicyState::resume(&resumed.cfg, &status, h.now);
    resumed.now = h.now;
    let a = resumed.step();
    assert!(
        !a.iter().any(|a| a.kind.writes_managed_object()),
        "a restart repeats nothing: {a:?}"
    );
    assert_eq!(resumed.published(), h.published());
    assert_eq!(
        resumed.state.desired_ingress(&resumed.cfg),
        h.state.desired_ingress(&h.cfg)
    );
    assert_eq!(
        resumed.state.desired_emergency_replicas(&resumed.cfg),
        h.state.desired_emergency_replicas(&h.cfg)
    );
    assert_eq!(resumed.state.transitions_in_window(&resumed.cfg, h.now), 2);
}

#[test]
fn conditions_keep_their_transition_time_while_unchanged() {
    let mut h = Harness::new(&spec(json!({})));
    h.step();
    let first = render_status(&h.cfg, &h.state, Some(1), h.now, None);
    h.run(100);
    let later = render_status(&h.cfg, &h.state, Some(1), h.now, Some(&first));
    assert_eq!(first.conditions, later.conditions);
    h.rounds(3, &[A1]);
    let degraded = render_status(&h.cfg, &h.state, Some(1), h.now, Some(&later));
    let c = degraded
        .conditions
        .iter()
        .find(|c| c.type_ == ct::DEGRADED)
        .unwrap();
    assert_eq!(c.status, "True");
    assert_ne!(
        Some(&c.last_transition_time),
        later
            .conditions
            .iter()
            .find(|c| c.type_ == ct::DEGRADED)
            .map(|c| &c.last_transition_time)
    );
    assert_eq!(degraded.primary.as_ref().unwrap().summary, "3/4");
}

#[test]
fn fail_open_panic_publishes_not_ready_endpoints_but_never_terminating_ones() {
    let mut h = Harness::new(&spec(json!({})));
    let mut eps = h.obs.endpoints.clone();
    eps[0].ready = false;
    eps[1].ready = false;
    h.obs.set_endpoints(eps);
    h.step();
    h.rounds(3, &[A3, A4]);
    assert!(h.state.panic);
    assert_eq!(
        h.published(),
        primary(4),
        "not ready is better than nothing"
    );
    // Every pod loses readiness: still never an empty Service.
    let mut eps = h.obs.endpoints.clone();
    eps.iter_mut().for_each(|e| e.ready = false);
    h.obs.set_endpoints(eps);
    h.run(1);
    assert!(h.state.panic);
    assert_eq!(h.published(), primary(4));
    // Terminating endpoints are on their way out: never published, not counted.
    let mut eps = h.obs.endpoints.clone();
    eps[0].terminating = true;
    h.obs.set_endpoints(eps);
    h.run(1);
    assert_eq!(h.published(), vec![A2, A3, A4]);
    assert_eq!(h.state.primary_total, 3);
}

#[test]
fn max_ejection_percent_always_allows_one_ejection() {
    // 4 backends at 20 %: 0.8 rounds down to 0, but at least one may go (as in Envoy).
    let mut h = Harness::new(&spec(json!({"safety": {"maxEjectionPercent": 20}})));
    h.step();
    h.rounds(3, &[A1]);
    assert_eq!(h.published(), vec![A2, A3, A4]);
    let a = h.rounds(3, &[A1, A2]);
    assert!(has(&a, K::EjectionLimited));
    assert_eq!(h.published(), vec![A2, A3, A4]);
}

#[test]
fn a_new_endpoint_is_decided_by_its_first_check() {
    let mut h = Harness::new(&spec(json!({})));
    h.step();
    let mut eps = h.obs.endpoints.clone();
    eps.push(ingress_failover::engine::EndpointFact::ready(
        "10.0.1.5:80",
        Pool::Primary,
    ));
    h.obs.set_endpoints(eps);
    h.run(1);
    assert!(h.published().contains(&"10.0.1.5:80".to_string()));
    let a = h.round(&["10.0.1.5:80"]);
    let down = a.iter().find(|a| a.kind == K::EndpointDown).unwrap();
    assert!(
        down.reason.contains("first check failed"),
        "{}",
        down.reason
    );
}

#[test]
fn resume_keeps_cooling_capacity_while_traffic_is_on_the_backup_class() {
    // Issue 9 defect 5: a restart during FailedOver + CoolingDown scaled the emergency
    // Deployment to standby at once. Every machine resumes from its own status field.
    let mut s = ingress(json!({}));
    s["backends"]["emergency"] =
        json!({"deployment": {"name": "e", "activeReplicas": 2, "maxReplicas": 2}});
    s["recovery"] = json!({"holdDownSeconds": 30, "emergencyCooldownSeconds": 60});
    let mut h = Harness::new(&spec(s));
    h.step();
    lb_rounds(&mut h, 3, false); // failover
    h.rounds(15, &[A1, A2, A3]); // ratio 0.25 for 10 s: emergency on
    assert!(matches!(h.state.emergency, EmergencyPhase::Active { .. }));
    h.rounds(22, &[]); // healthy 20 s: released, cooling down
    assert!(matches!(
        h.state.emergency,
        EmergencyPhase::CoolingDown { .. }
    ));
    assert!(matches!(h.state.ingress, IngressPhase::FailedOver { .. }));
    let status = render_status(&h.cfg, &h.state, Some(1), h.now, None);
    let resumed = PolicyState::resume(&h.cfg, &status, h.now);
    assert_eq!(
        resumed.desired_emergency_replicas(&h.cfg),
        Some(2),
        "capacity stays up through a restart"
    );
    assert!(matches!(resumed.ingress, IngressPhase::FailedOver { .. }));
}
