//! Issue 9's defects, one scenario each, replayed through `simulate` (the user's interface):
//! `tests/scenarios/NN-name/{policy,scenario*}.yaml`. Every replay must also hold every global
//! invariant (`InvariantViolated` rows fail the test), and each test asserts the behaviour the
//! defect broke. Run one by hand with
//! `ingress-failover simulate --policy tests/scenarios/NN-name/policy.yaml --scenario tests/scenarios/NN-name/scenario.yaml`.

use std::path::PathBuf;

use ingress_failover::api::Phase;
use ingress_failover::engine::{ActionKind as K, Affected, Millis};
use ingress_failover::simulate::{Row, Source, Timeline, simulate_str};
use ingress_failover::validation::ValidationContext;

/// The operator flags the examples and scenarios are replayed with (examples/README.md): their
/// load balancers' health URLs are under `.shop.internal`.
fn rules() -> ValidationContext {
    ValidationContext::from_flags([""], [".shop.internal"]).expect("valid flags")
}

const MIN: Millis = 60_000;

fn replay(dir: &str, scenario: &str) -> Timeline {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/scenarios")
        .join(dir);
    let read = |f: &str| {
        std::fs::read_to_string(root.join(f)).unwrap_or_else(|e| panic!("{dir}/{f}: {e}"))
    };
    let t = simulate_str(&read("policy.yaml"), &read(scenario), &rules())
        .unwrap_or_else(|e| panic!("{dir}/{scenario}: {e}"));
    assert!(
        t.summary.violations.is_empty(),
        "{dir}/{scenario}: invariants broken: {:?}",
        t.summary.violations
    );
    t
}

fn rows(t: &Timeline, kind: K) -> Vec<&Row> {
    t.rows.iter().filter(|r| r.kind == Some(kind)).collect()
}

fn first(t: &Timeline, kind: K) -> &Row {
    rows(t, kind)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no {kind} in the timeline"))
}

/// When the scenario's `n`-th scripted event happened.
fn scripted(t: &Timeline, n: usize) -> Millis {
    t.rows
        .iter()
        .filter(|r| r.source == Source::Scenario)
        .nth(n)
        .expect("scripted event")
        .at
}

fn published_after(t: &Timeline, at: Millis) -> Option<usize> {
    t.rows
        .iter()
        .rfind(|r| r.at <= at && r.kind == Some(K::PublishEndpoints))
        .and_then(|r| match &r.affected {
            Affected::Endpoints { published, .. } => Some(*published),
            _ => None,
        })
}

#[test]
fn d01_a_spent_emergency_budget_never_blocks_a_load_balancer_failover() {
    let t = replay("01-budget-per-tier", "scenario.yaml");
    assert!(
        rows(&t, K::EmergencyActivate).len() >= 3,
        "three brown-outs"
    );
    let lb_dies = t.start + 25 * MIN;
    let failover = first(&t, K::IngressFailover);
    assert!(
        failover.at > lb_dies && failover.at - lb_dies < MIN,
        "fails over at once"
    );
    assert!(
        !rows(&t, K::FlapBudgetExhausted)
            .iter()
            .any(|r| r.reason.contains("IngressFailover")),
        "no budget holds a failover"
    );
    assert_eq!(t.summary.final_phase, Phase::FailedOver);
}

#[test]
fn d02_every_pod_not_ready_still_publishes_them_under_fail_open() {
    let t = replay("02-all-pods-not-ready", "scenario.yaml");
    let panic = first(&t, K::PanicEntered);
    assert_eq!(panic.at, scripted(&t, 0));
    assert!(panic.reason.contains("4 not ready"), "{}", panic.reason);
    assert_eq!(published_after(&t, panic.at), Some(4));
    assert_eq!(t.summary.empty_ms, 0);
}

#[test]
fn d03_panic_lasts_until_the_healthy_share_reaches_the_threshold() {
    let t = replay("03-panic-threshold", "scenario.yaml");
    let enter = first(&t, K::PanicEntered);
    let exit = first(&t, K::PanicExited);
    let emergency_up: Vec<&Row> = rows(&t, K::EndpointUp)
        .into_iter()
        .filter(|r| {
            matches!(
                &r.affected,
                Affected::Endpoint {
                    pool: "emergency",
                    ..
                }
            )
        })
        .collect();
    assert!(emergency_up.len() >= 2);
    assert!(enter.at < emergency_up[0].at);
    // The first emergency pod joins the panic (1 of 4 = 25 % < 50 %) rather than ending it...
    if emergency_up[0].at < emergency_up[1].at {
        assert!(exit.at > emergency_up[0].at);
        assert_eq!(published_after(&t, emergency_up[0].at), Some(5));
    }
    // ...the second ends it, and the reason says so truthfully.
    assert_eq!(exit.at, emergency_up[1].at);
    assert!(
        exit.reason
            .contains("2 of 4 backends healthy (50%), at or above panicThresholdPercent 50"),
        "{}",
        exit.reason
    );
}

#[test]
fn d04_a_small_pool_still_ejects_one_backend_and_says_what_it_keeps() {
    let t = replay("04-max-ejection-small-pool", "scenario.yaml");
    let first_out = rows(&t, K::PublishEndpoints)[1];
    assert!(
        matches!(&first_out.affected, Affected::Endpoints { removed, .. } if removed == &["10.0.1.1:8080"]),
        "{:?}",
        first_out.affected
    );
    let kept = first(&t, K::EjectionLimited);
    assert!(kept.at > scripted(&t, 1));
    assert!(
        kept.reason.contains("maxEjectionPercent 20%") && kept.reason.contains("10.0.1.2:8080"),
        "{}",
        kept.reason
    );
}

#[test]
fn d05_a_restart_during_failover_and_cooldown_keeps_capacity_up() {
    let t = replay("05-restart-failedover-coolingdown", "scenario.yaml");
    let release = first(&t, K::EmergencyRelease);
    let restart = scripted(&t, 7);
    assert!(release.at < restart, "the restart lands in the cooldown");
    let failback = first(&t, K::IngressFailback);
    let scale_down = first(&t, K::EmergencyScaleDown);
    assert!(
        scale_down.at >= failback.at + MIN,
        "scaled down last, after the cooldown"
    );
    assert!(
        !t.rows
            .iter()
            .any(|r| r.action == "PodDeleted" && r.at < scale_down.at),
        "no pod lost to the restart"
    );
}

#[test]
fn d06_an_invalid_edit_holds_decisions_and_its_fix_carries_on() {
    let t = replay("06-invalid-edit-then-fix", "scenario.yaml");
    let invalid = rows(&t, K::PhaseChanged)
        .into_iter()
        .find(|r| {
            matches!(
                r.affected,
                Affected::Phase {
                    to: Phase::Invalid,
                    ..
                }
            )
        })
        .expect("the invalid edit is reported");
    assert!(
        invalid.reason.contains("deactivateAbove"),
        "{}",
        invalid.reason
    );
    assert!(
        rows(&t, K::IngressFailback).is_empty(),
        "never back to the dead primary"
    );
    assert_eq!(t.summary.final_phase, Phase::FailedOver);
    assert!(t.summary.backup_class_ms >= 14 * MIN);
}

#[test]
fn d07_leaving_dry_run_never_carries_out_the_rehearsal_silently() {
    // The rehearsed failover is over when dry-run ends: nothing moves.
    let t = replay("07-dry-run-off", "scenario-1.yaml");
    let rehearsed = first(&t, K::IngressFailover);
    assert!(rehearsed.reason.starts_with("dry-run, not applied"));
    let ended = first(&t, K::DryRunEnded);
    assert!(
        !t.rows.iter().any(|r| r.at >= ended.at
            && r.at < scripted(&t, 3)
            && matches!(r.kind, Some(K::IngressFailover | K::IngressFailback))),
        "nothing imagined is carried out"
    );
    // A real failure afterwards is a real, plainly reasoned failover.
    let real = rows(&t, K::IngressFailover)[1];
    assert_eq!(real.reason, "primary load balancer is down");

    // Still down when dry-run ends: a fresh decision, as an action of its own.
    let t = replay("07-dry-run-off", "scenario-2.yaml");
    let ended = first(&t, K::DryRunEnded);
    let real = rows(&t, K::IngressFailover)
        .into_iter()
        .find(|r| r.at >= ended.at)
        .expect("decided afresh");
    assert_eq!(real.reason, "primary load balancer is down");
}

#[test]
fn d08_a_frozen_tier_has_three_ways_out() {
    for (scenario, way_out) in [
        ("scenario-1.yaml", K::Unfrozen),
        ("scenario-2.yaml", K::FlapBudgetReset),
        ("scenario-3.yaml", K::Unfrozen),
    ] {
        let t = replay("08-frozen-way-out", scenario);
        let frozen = first(&t, K::FlapBudgetExhausted);
        assert!(
            frozen.reason.contains("IngressFailback"),
            "{}",
            frozen.reason
        );
        let thaw = first(&t, way_out);
        assert!(thaw.at > frozen.at);
        assert_eq!(thaw.at, scripted(&t, 4), "{scenario}: thaws at the edit");
        assert!(
            rows(&t, K::IngressFailback).iter().any(|r| r.at == thaw.at),
            "{scenario}: the held failback follows at once"
        );
        assert_ne!(t.summary.final_phase, Phase::Frozen, "{scenario}");
    }
    let t = replay("08-frozen-way-out", "scenario-1.yaml");
    assert!(
        first(&t, K::Unfrozen)
            .reason
            .contains("3 of 10 transitions")
    );
}

#[test]
fn d09_emergency_capacity_scales_down_only_after_every_tier_is_back() {
    let t = replay("09-scale-down-last", "scenario.yaml");
    let release = first(&t, K::EmergencyRelease);
    let failback = first(&t, K::IngressFailback);
    let scale_down = first(&t, K::EmergencyScaleDown);
    assert!(
        release.at < failback.at - 5 * MIN,
        "released long before the failback"
    );
    assert_eq!(
        scale_down.at,
        failback.at + MIN,
        "cooldown counts from the failback"
    );
}

#[test]
fn d10_warm_emergency_pods_serve_when_the_pool_drops_again() {
    let t = replay("10-warm-pods-serve", "scenario.yaml");
    let second_drop = scripted(&t, 6);
    let again = rows(&t, K::EmergencyActivate)
        .into_iter()
        .find(|r| r.at > second_drop)
        .expect("capacity engaged again, budget or not");
    assert!(again.at - second_drop < 2 * MIN);
    let served = t.rows.iter().any(|r| {
        r.at >= again.at
            && matches!(&r.affected, Affected::Endpoints { added, .. } if added.iter().any(|a| a.starts_with("10.0.2.")))
    });
    assert!(served, "the warm pods are published");
}

#[test]
fn d11_a_failed_check_short_of_the_threshold_restarts_the_hold_down() {
    let t = replay("11-hold-down-restarts", "scenario.yaml");
    let up = first(&t, K::LoadBalancerUp);
    let burst = scripted(&t, 2);
    let failback = first(&t, K::IngressFailback);
    assert!(
        failback.at - up.at > 2 * MIN + 30_000,
        "the hold-down restarted"
    );
    assert!(
        failback.at >= burst + 2 * MIN,
        "120 s after the last failed check at the earliest"
    );
}

#[test]
fn d12_the_controller_signal_is_debounced_and_a_deleted_controller_is_down() {
    let t = replay("12-controller-signal", "scenario-1.yaml");
    assert!(
        rows(&t, K::LoadBalancerDown).is_empty(),
        "a 1 s dip costs nothing"
    );
    assert!(rows(&t, K::IngressFailover).is_empty());
    let t = replay("12-controller-signal", "scenario-2.yaml");
    let down = first(&t, K::LoadBalancerDown);
    assert!(down.reason.contains("does not exist"), "{}", down.reason);
    assert_eq!(
        down.at - scripted(&t, 0),
        15_000,
        "failureThreshold × intervalSeconds"
    );
    assert!(first(&t, K::IngressFailback).at > scripted(&t, 1));
}

#[test]
fn d13_terminating_pods_leave_the_ratio_so_a_rollout_wakes_nothing() {
    let t = replay("13-rollout-terminating", "scenario.yaml");
    assert!(rows(&t, K::EmergencyActivate).is_empty());
    let last = t.samples.last().unwrap();
    assert_eq!((last.primary_healthy, last.primary_total), (1, 1));
    assert_eq!(
        published_after(&t, t.end),
        Some(1),
        "terminating pods unpublished"
    );
}

#[test]
fn d14_no_activation_skips_its_sustain_window_when_a_freeze_ends() {
    let t = replay("14-freeze-override-timers", "scenario.yaml");
    let expired = first(&t, K::OverrideExpired);
    let activate = rows(&t, K::EmergencyActivate)
        .into_iter()
        .find(|r| r.at >= expired.at)
        .expect("activates after the freeze");
    let low_again = scripted(&t, 9);
    assert!(
        activate.at - low_again >= 30_000 + 10_000,
        "the ratio must be low for activateForSeconds after detection ({} ms)",
        activate.at - low_again
    );
}

#[test]
fn d15_a_wall_clock_step_does_not_shorten_the_hold_down() {
    let t = replay("15-clock-step", "scenario.yaml");
    let up = first(&t, K::LoadBalancerUp);
    let failback = first(&t, K::IngressFailback);
    assert_eq!(failback.at - up.at, 2 * MIN);
}

#[test]
fn d16_a_new_endpoint_is_decided_by_its_first_check() {
    let t = replay("16-new-endpoint-first-check", "scenario.yaml");
    let downs = rows(&t, K::EndpointDown);
    let from_start = downs
        .iter()
        .find(|r| matches!(&r.affected, Affected::Endpoint { address, .. } if address == "10.0.1.4:8080"))
        .unwrap();
    assert!(from_start.at - t.start <= 5_000, "one check, not three");
    assert!(
        from_start.reason.contains("first check failed"),
        "{}",
        from_start.reason
    );
    // A confirmed backend keeps HAProxy's fall count.
    let later = downs
        .iter()
        .find(|r| matches!(&r.affected, Affected::Endpoint { address, .. } if address == "10.0.1.2:8080"))
        .unwrap();
    assert!(
        later.reason.contains("3 consecutive failed checks"),
        "{}",
        later.reason
    );
}

/// Minimal incidents the randomized replays (`tests/engine_replays.rs`) once broke, committed
/// as they were shrunk: each must now hold every invariant.
#[test]
fn shrunk_randomized_failures_stay_fixed() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios/regressions");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("tests/scenarios/regressions") {
        let name = entry.unwrap().file_name().into_string().unwrap();
        replay(&format!("regressions/{name}"), "scenario.yaml");
        n += 1;
    }
    assert!(n > 0, "no regression scenario found");
}

#[test]
fn i11_5_traffic_never_moves_to_a_backup_judged_down() {
    let t = replay("17-backup-tier", "scenario-1.yaml");
    let primary_down = first(&t, K::LoadBalancerDown);
    let held = first(&t, K::FailoverHeld);
    assert_eq!(held.at, primary_down.at, "both down: held at once");
    let backup_up = first(&t, K::BackupLoadBalancerUp);
    let failover = first(&t, K::IngressFailover);
    assert_eq!(
        failover.at, backup_up.at,
        "fails over the moment the backup serves"
    );

    let t = replay("17-backup-tier", "scenario-2.yaml");
    let backup_down = first(&t, K::BackupLoadBalancerDown);
    let failback = first(&t, K::IngressFailback);
    assert_eq!(failback.at, backup_down.at, "home at once, no hold-down");
    assert!(failback.reason.contains("backup load balancer is down"));
}
