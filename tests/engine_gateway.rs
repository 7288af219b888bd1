//! The Gateway API tier in the engine: the Gateway's own status as a signal of each side,
//! debounced with fall/rise in intervals like the controller Deployment, joined to the one
//! load-balancer tier decision (issue 14).

#[path = "support/engine_harness.rs"]
mod harness;

use harness::*;
use ingress_failover::engine::{
    ActionKind as K, EngineConfig, GatewayFact, IngressPhase, Now, PolicyState,
};
use serde_json::{Value, json};

fn gateway(extra: Value) -> Value {
    let mut v = json!({"gateway": {"routes": ["web"],
        "primaryGateway": {"name": "gw-primary"},
        "backupGateway": {"name": "gw-backup", "namespace": "edge", "sectionName": "http"}}});
    if let (Some(o), Some(e)) = (v["gateway"].as_object_mut(), extra.as_object()) {
        for (k, val) in e {
            o.insert(k.clone(), val.clone());
        }
    }
    v
}

fn down(why: &str) -> Option<GatewayFact> {
    Some(GatewayFact::NotServing(why.to_string()))
}

#[test]
fn a_gateway_policy_is_one_tier_named_by_its_gateways() {
    let cfg = EngineConfig::from_spec(&spec(gateway(json!({}))));
    let ing = cfg.ingress.expect("the gateway tier runs the tier machine");
    assert_eq!(ing.primary_class, "gateway/gw-primary");
    assert_eq!(ing.backup_class, "gateway/edge/gw-backup#http");
    assert!(
        ing.has_gateway && ing.has_backup_gateway,
        "status on by default"
    );
    assert!(!ing.has_health_url && !ing.has_controller);

    // Gradual failback is allowed: the routes attach to both Gateways.
    let mut s = gateway(json!({}));
    s["recovery"] = json!({"failbackSteps": [10, 50], "holdDownSeconds": 30, "stepSeconds": 10});
    assert_eq!(
        EngineConfig::from_spec(&spec(s)).failback_steps,
        vec![10, 50]
    );

    // Off: the Gateway's status is no signal; the URL is.
    let cfg = EngineConfig::from_spec(&spec(gateway(json!({
        "health": {"gatewayStatus": false, "url": "http://gw.internal/healthz"}}))));
    let ing = cfg.ingress.unwrap();
    assert!(!ing.has_gateway && ing.has_health_url && ing.has_backup_gateway);
}

#[test]
fn with_ingress_and_gateway_one_decision_uses_the_ingress_classes_and_both_signals() {
    let mut s = gateway(json!({}));
    s["ingress"] = json!({"ingresses": ["web"], "primaryClass": "nginx-primary",
        "backupClass": "nginx-backup", "health": {"url": "http://lb.internal/healthz"}});
    let cfg = EngineConfig::from_spec(&spec(s));
    let ing = cfg.ingress.unwrap();
    assert_eq!(
        (ing.primary_class.as_str(), ing.backup_class.as_str()),
        ("nginx-primary", "nginx-backup")
    );
    assert!(ing.has_health_url && ing.has_gateway && ing.has_backup_gateway);
}

/// Each row: the primary Gateway's fact per second (None = unknown), and whether the tier
/// failed over by the end. fall 3 × interval 1 s: three seconds of a contrary fact flip it.
#[test]
fn the_gateway_status_is_debounced_with_fall_in_intervals() {
    let p = || down("condition Programmed is False (AddressNotAssigned)");
    let ok = || Some(GatewayFact::Serving);
    let rows: Vec<(&str, Vec<Option<GatewayFact>>, bool)> = vec![
        ("serving throughout", vec![ok(); 6], false),
        (
            "a 2 s dip is not an outage",
            vec![p(), p(), ok(), ok(), ok()],
            false,
        ),
        (
            "3 s not programmed fails over",
            vec![p(), p(), p(), p()],
            true,
        ),
        (
            "a deleted Gateway is down",
            vec![Some(GatewayFact::Missing); 4],
            true,
        ),
        (
            "unknown holds the last fact (down)",
            vec![p(), None, None, None],
            true,
        ),
        ("unknown from the start is no fact", vec![None; 6], false),
    ];
    for (name, facts, failed_over) in rows {
        let mut h = Harness::new(&spec(gateway(json!({}))));
        h.obs.lb_gateway = Some(GatewayFact::Serving);
        h.obs.backup_gateway = Some(GatewayFact::Serving);
        h.step();
        h.obs.lb_gateway = None;
        let mut all = Vec::new();
        for f in facts {
            if f.is_some() {
                h.obs.lb_gateway = f;
            }
            all.extend(h.run(1));
        }
        assert_eq!(has(&all, K::IngressFailover), failed_over, "{name}");
        assert_eq!(
            matches!(h.state.ingress, IngressPhase::FailedOver { .. }),
            failed_over,
            "{name}"
        );
    }
}

#[test]
fn the_down_reason_names_the_gateway_condition() {
    let mut h = Harness::new(&spec(gateway(json!({}))));
    h.obs.backup_gateway = Some(GatewayFact::Serving);
    h.step();
    h.obs.lb_gateway = down("listener http: condition Programmed is False (Invalid)");
    let a = h.run(4);
    let d = a
        .iter()
        .find(|x| x.kind == K::LoadBalancerDown)
        .expect("down");
    assert!(d.reason.contains("Gateway is not serving"), "{}", d.reason);
    assert!(d.reason.contains("listener http"), "{}", d.reason);
    let want = h.state.desired_ingress(&h.cfg).unwrap();
    assert_eq!(want.active_class, "gateway/edge/gw-backup#http");
}

#[test]
fn a_backup_gateway_judged_down_holds_traffic_on_the_primary() {
    let mut h = Harness::new(&spec(gateway(json!({}))));
    h.step();
    h.obs.backup_gateway = Some(GatewayFact::Missing);
    assert!(has(&h.run(4), K::BackupLoadBalancerDown));
    h.obs.lb_gateway = down("condition Accepted is False");
    let a = h.run(4);
    assert!(has(&a, K::FailoverHeld));
    assert!(!has(&a, K::IngressFailover));
    assert_eq!(h.state.ingress, IngressPhase::Primary);
}

#[test]
fn a_gateway_not_serving_restarts_the_hold_down_and_rises_after_rise_intervals() {
    let mut h = Harness::new(&spec(gateway(json!({}))));
    h.obs.backup_gateway = Some(GatewayFact::Serving);
    h.step();
    h.obs.lb_gateway = down("condition Programmed is False");
    h.run(4);
    assert!(matches!(h.state.ingress, IngressPhase::FailedOver { .. }));
    h.obs.lb_gateway = Some(GatewayFact::Serving);
    let a = h.run(2);
    assert!(!has(&a, K::LoadBalancerUp), "rise is 2 intervals");
    let a = h.run(1);
    assert!(has(&a, K::LoadBalancerUp));
    // 20 s into the 30 s hold-down the Gateway blips: the count starts again.
    h.run(20);
    h.obs.lb_gateway = down("condition Programmed is False");
    h.run(1);
    h.obs.lb_gateway = Some(GatewayFact::Serving);
    let a = h.run(25);
    assert!(
        !has(&a, K::IngressFailback),
        "hold-down restarted by the blip"
    );
    let a = h.run(10);
    assert!(has(&a, K::IngressFailback));
}

#[test]
fn gateway_status_off_ignores_the_gateway() {
    let mut h = Harness::new(&spec(gateway(json!({
        "health": {"gatewayStatus": false, "url": "http://gw.internal/healthz"}}))));
    h.step();
    h.obs.lb_gateway = Some(GatewayFact::Missing);
    assert!(!has(&h.run(10), K::LoadBalancerDown));
}

#[test]
fn the_gateway_debounce_is_a_deadline() {
    let mut h = Harness::new(&spec(gateway(json!({}))));
    h.step();
    h.obs.lb_gateway = down("condition Programmed is False");
    h.run(1);
    let now = Now::from(h.now);
    let at = h
        .state
        .next_deadline(&h.cfg, now)
        .expect("the debounce ends");
    assert_eq!(
        at,
        h.now + h.cfg.fall_ms(),
        "fall counted from the first contrary fact"
    );
}

#[test]
fn resume_keeps_a_down_primary_gateway_down_until_it_rises() {
    let mut h = Harness::new(&spec(gateway(json!({}))));
    h.obs.backup_gateway = Some(GatewayFact::Serving);
    h.step();
    h.obs.lb_gateway = down("condition Programmed is False");
    h.run(4);
    let status =
        ingress_failover::engine::report::render_status(&h.cfg, &h.state, Some(1), h.now, None);
    let mut s = PolicyState::resume(&h.cfg, &status, h.now);
    assert!(!s.gateway.primary.signal.serving);
    let obs = ingress_failover::engine::Observation {
        lb_gateway: Some(GatewayFact::Serving),
        ..Default::default()
    };
    let mut actions = Vec::new();
    ingress_failover::engine::step(&h.cfg, &mut s, &obs, h.now + 1000, &mut actions);
    assert!(!s.lb_serving, "one interval is short of rise");
}
