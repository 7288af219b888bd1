//! The DNS tier's drain (`spec.dns`), driven through the public `step`: after the records move
//! away from a tier, that tier keeps serving for one TTL; emergency capacity waits for the
//! drain; the drain is a deadline and survives a restart.

#[path = "support/engine_harness.rs"]
mod harness;

use harness::*;
use ingress_failover::engine::report::render_status;
use ingress_failover::engine::{
    Action, ActionKind as K, EmergencyPhase, IngressPhase, LbTier, Now, PolicyState,
};
use serde_json::json;

const A1: &str = "10.0.1.1:80";
const A2: &str = "10.0.1.2:80";
const A3: &str = "10.0.1.3:80";

/// HotStandby with DNS records of the given mode and TTL, emergency capacity with a 10 s
/// cooldown, hold-down 30 s.
fn dns_spec(
    mode: &str,
    ttl: u32,
    steps: serde_json::Value,
    step_seconds: u32,
) -> serde_json::Value {
    json!({
        "ingress": {"ingresses": ["web"], "primaryClass": "nginx-primary", "backupClass": "nginx-backup",
            "mode": "HotStandby", "health": {"url": "http://lb.internal/healthz"}},
        "dns": {"hostnames": ["shop.example.com"], "ttlSeconds": ttl, "mode": mode},
        "backends": {"emergency": {"deployment": {"name": "e", "activeReplicas": 2, "maxReplicas": 2}}},
        "recovery": {"holdDownSeconds": 30, "emergencyCooldownSeconds": 10,
            "failbackSteps": steps, "stepSeconds": step_seconds},
    })
}

fn lb_rounds(h: &mut Harness, n: usize, ok: bool) -> Vec<Action> {
    (0..n)
        .flat_map(|_| {
            h.lb(ok);
            h.round(&[])
        })
        .collect()
}

fn at(actions: &[Action], kind: K) -> i64 {
    actions
        .iter()
        .find(|a| a.kind == kind)
        .unwrap_or_else(|| panic!("no {kind:?} in {actions:?}"))
        .at
}

#[test]
fn failover_drains_the_primary_for_one_ttl_and_status_says_until_when() {
    let mut h = Harness::new(&spec(dns_spec("Atomic", 60, json!([]), 60)));
    h.step();
    assert_eq!(h.state.desired_dns_primary_percent(&h.cfg), Some(100));
    let a = lb_rounds(&mut h, 3, false);
    let failover = at(&a, K::IngressFailover);
    assert_eq!(h.state.desired_dns_primary_percent(&h.cfg), Some(0));
    let d = h.state.draining.expect("the primary drains");
    assert_eq!(d.tier, LbTier::Primary);
    assert_eq!(d.until, failover + 60_000);
    let status = render_status(&h.cfg, &h.state, Some(1), h.now, None);
    let dns = status.dns.expect("status.dns");
    assert_eq!(dns.primary_weight_percent, 0);
    assert_eq!(dns.draining_tier.as_deref(), Some("primary"));
    assert_eq!(
        dns.draining_until.unwrap().0.as_millisecond(),
        failover + 60_000
    );
    // The drain's end is a deadline (status changes then) and it ends exactly there.
    let now = Now::from(h.now);
    assert!(h.state.next_deadline(&h.cfg, now).unwrap() <= failover + 60_000);
    h.run((failover + 60_000 - h.now) / 1000 - 1);
    assert!(h.state.draining.is_some(), "still draining 1 s before");
    h.run(1);
    assert_eq!(h.state.draining, None);
    let status = render_status(&h.cfg, &h.state, Some(1), h.now, None);
    assert_eq!(status.dns.unwrap().draining_until, None);
}

#[test]
fn emergency_scale_down_waits_for_the_backup_drain_after_failback() {
    // Without DNS the cooldown (10 s) would count from the failback; with a 60 s TTL the backup
    // keeps serving 60 s after the records return, and capacity stays up through it.
    let mut h = Harness::new(&spec(dns_spec("Atomic", 60, json!([]), 60)));
    h.step();
    lb_rounds(&mut h, 3, false); // failover
    h.rounds(15, &[A1, A2, A3]); // emergency on
    assert!(matches!(h.state.emergency, EmergencyPhase::Active { .. }));
    h.rounds(2, &[]);
    let a = lb_rounds(&mut h, 60, true); // released (20 s), then hold-down, failback
    assert!(matches!(
        h.state.emergency,
        EmergencyPhase::CoolingDown { .. }
    ));
    let failback = at(&a, K::IngressFailback);
    assert_eq!(h.state.ingress, IngressPhase::Primary);
    let d = h.state.draining.expect("the backup drains");
    assert_eq!(d.tier, LbTier::Backup);
    assert_eq!(d.until, failback + 60_000);
    let a = h.run(90);
    let down = at(&a, K::EmergencyScaleDown);
    assert_eq!(
        down - failback,
        70_000,
        "cooldown counts from the drain's end (TTL 60 s + cooldown 10 s)"
    );
}

#[test]
fn without_dns_the_cooldown_counts_from_the_failback() {
    // The same incident without spec.dns: the control for the test above.
    let mut s = dns_spec("Atomic", 60, json!([]), 60);
    s.as_object_mut().unwrap().remove("dns");
    let mut h = Harness::new(&spec(s));
    h.step();
    lb_rounds(&mut h, 3, false);
    h.rounds(15, &[A1, A2, A3]);
    h.rounds(2, &[]);
    let mut a = lb_rounds(&mut h, 60, true);
    let failback = at(&a, K::IngressFailback);
    a.extend(h.run(90));
    assert_eq!(at(&a, K::EmergencyScaleDown) - failback, 10_000);
    assert_eq!(h.state.draining, None);
}

#[test]
fn weighted_records_follow_each_failback_step_and_drain_the_backup_at_the_end() {
    let mut h = Harness::new(&spec(dns_spec("Weighted", 20, json!([10, 50]), 20)));
    h.step();
    lb_rounds(&mut h, 3, false);
    assert_eq!(h.state.desired_dns_primary_percent(&h.cfg), Some(0));
    let a = lb_rounds(&mut h, 40, true); // hold-down: first step
    at(&a, K::IngressFailback);
    assert_eq!(h.state.desired_dns_primary_percent(&h.cfg), Some(10));
    // A weighted step leaves both tiers in the answers: the primary's drain of the failover is
    // whatever remains of it, no new drain starts.
    let a = h.run(20);
    at(&a, K::FailbackStep);
    assert_eq!(h.state.desired_dns_primary_percent(&h.cfg), Some(50));
    let a = h.run(20);
    let complete = at(&a, K::FailbackComplete);
    assert_eq!(h.state.desired_dns_primary_percent(&h.cfg), Some(100));
    let d = h.state.draining.expect("backup drains after the last step");
    assert_eq!((d.tier, d.until), (LbTier::Backup, complete + 20_000));
}

#[test]
fn atomic_records_stay_on_the_backup_until_the_gradual_failback_completes() {
    let mut h = Harness::new(&spec(dns_spec("Atomic", 20, json!([10, 50]), 20)));
    h.step();
    lb_rounds(&mut h, 3, false);
    lb_rounds(&mut h, 40, true);
    assert!(matches!(h.state.ingress, IngressPhase::FailingBack { .. }));
    assert_eq!(h.state.desired_dns_primary_percent(&h.cfg), Some(0));
}

#[test]
fn the_failback_dwell_is_never_shorter_than_the_ttl() {
    // Validation refuses stepSeconds < ttlSeconds; the engine holds the promise regardless.
    let h = Harness::new(&spec(dns_spec("Weighted", 45, json!([10, 50]), 5)));
    assert_eq!(h.cfg.step_ms, 45_000);
}

#[test]
fn a_restart_during_the_drain_resumes_it_and_keeps_capacity_up() {
    let mut h = Harness::new(&spec(dns_spec("Atomic", 60, json!([]), 60)));
    h.step();
    lb_rounds(&mut h, 3, false);
    h.rounds(15, &[A1, A2, A3]);
    h.rounds(2, &[]);
    let a = lb_rounds(&mut h, 60, true);
    let failback = at(&a, K::IngressFailback);
    h.run(5);
    let status = render_status(&h.cfg, &h.state, Some(1), h.now, None);
    // The new process has a different monotonic clock.
    let restart = Now {
        mono: 7_000_000,
        wall: h.now,
    };
    let mut resumed = PolicyState::resume(&h.cfg, &status, restart);
    let d = resumed.draining.expect("drain resumed");
    assert_eq!(d.tier, LbTier::Backup);
    assert_eq!(d.until, restart.mono + (failback + 60_000 - h.now));
    assert!(
        resumed
            .next_deadline(&h.cfg, restart)
            .is_some_and(|t| t <= d.until)
    );
    // Stepping the resumed state: no scale-down before drain end + cooldown.
    let mut obs = h.obs.clone();
    obs.clear_checks();
    let mut down_at = None;
    for s in 1..=120 {
        let now = Now {
            mono: restart.mono + s * 1000,
            wall: restart.wall + s * 1000,
        };
        let mut actions = Vec::new();
        ingress_failover::engine::step(&h.cfg, &mut resumed, &obs, now, &mut actions);
        if actions.iter().any(|a| a.kind == K::EmergencyScaleDown) {
            down_at = Some(now.wall);
            break;
        }
    }
    let down_at = down_at.expect("scales down eventually");
    assert!(
        down_at >= failback + 70_000,
        "scaled down {} ms after the failback, before drain end + cooldown",
        down_at - failback
    );
}

/// The engine's own promise (`engine::invariants`, checked by the simulator and the randomized
/// replays) over the same incident, step by step: no scale-down while the backup drains, no
/// record move without a drain of the tier it left.
#[test]
fn the_drain_invariants_hold_through_failover_emergency_and_failback() {
    use ingress_failover::engine::invariants::{Snapshot, check_step};
    let mut h = Harness::new(&spec(dns_spec("Atomic", 60, json!([]), 60)));
    let mut broken = Vec::new();
    let mut step = |h: &mut Harness, lb: Option<bool>, failing: &[&str]| {
        let before = Snapshot::of(&h.cfg, &h.state);
        if let Some(ok) = lb {
            h.lb(ok);
        }
        let actions = h.round(failing);
        let after = Snapshot::of(&h.cfg, &h.state);
        broken.extend(check_step(
            &h.cfg, &h.state, &before, &after, &actions, h.now,
        ));
    };
    for _ in 0..3 {
        step(&mut h, Some(false), &[]);
    }
    for _ in 0..15 {
        step(&mut h, None, &[A1, A2, A3]);
    }
    for _ in 0..60 {
        step(&mut h, Some(true), &[]);
    }
    for _ in 0..90 {
        step(&mut h, None, &[]);
    }
    assert!(
        h.log.iter().any(|a| a.kind == K::EmergencyScaleDown),
        "the incident ends with the scale-down"
    );
    assert!(broken.is_empty(), "{broken:#?}");
}
