//! The simulator's contract: every example replays to its committed golden timeline, and each
//! example's timeline satisfies the runbook's expectations, checked independently of the golden
//! so a regenerated golden cannot silently encode a wrong behaviour.
//!
//! Regenerate goldens after an intended change with
//! `UPDATE_GOLDEN=1 cargo test --test simulate`, then read the diff.

use std::path::{Path, PathBuf};

use ingress_failover::api::Phase;
use ingress_failover::engine::{ActionKind, Affected, Millis};
use ingress_failover::simulate::{
    self, OutputFormat, Row, SimulateError, Source, Timeline, simulate_str,
};
use ingress_failover::validation::ValidationContext;

/// The operator flags the examples and scenarios are replayed with (examples/README.md): their
/// load balancers' health URLs are under `.shop.internal`.
fn rules() -> ValidationContext {
    ValidationContext::from_flags([""], [".shop.internal"]).expect("valid flags")
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every directory under `examples/` with a policy and a scenario.
fn examples() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root().join("examples"))
        .expect("examples/ exists")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("scenario.yaml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

struct Example {
    timeline: Timeline,
    /// Probe timing the detection bounds depend on.
    interval_ms: Millis,
    timeout_ms: Millis,
    jitter: f64,
    fall: i64,
    resolution_ms: Millis,
}

impl Example {
    fn load(name: &str) -> Example {
        let dir = root().join("examples").join(name);
        let policy = read(&dir.join("policy.yaml"));
        let scenario = read(&dir.join("scenario.yaml"));
        let spec = simulate::load_policy("policy", &policy, &rules())
            .expect("example policy loads")
            .spec;
        let sc = simulate::scenario::parse(&scenario, &spec).expect("example scenario parses");
        let timeline = simulate_str(&policy, &scenario, &rules()).expect("example replays");
        Example {
            timeline,
            interval_ms: i64::from(spec.probe.interval_seconds) * 1000,
            timeout_ms: i64::from(spec.probe.timeout_seconds) * 1000,
            jitter: f64::from(spec.probe.jitter_percent) / 100.0,
            fall: i64::from(spec.probe.failure_threshold),
            resolution_ms: sc.resolution_ms,
        }
    }

    /// Worst case from a target breaking to the engine seeing `fall` failures: the next check
    /// fires within one jittered interval, `fall - 1` more follow, the last one needs the full
    /// timeout to fail, and the engine reads it on its next step.
    fn detection_bound(&self) -> Millis {
        let interval = (self.interval_ms as f64 * (1.0 + self.jitter)).ceil() as Millis;
        self.fall * interval + self.timeout_ms + self.resolution_ms
    }

    fn rows(&self, kind: ActionKind) -> Vec<&Row> {
        self.timeline
            .rows
            .iter()
            .filter(|r| r.kind == Some(kind))
            .collect()
    }

    fn first(&self, kind: ActionKind) -> &Row {
        self.rows(kind)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no {kind} in the timeline"))
    }

    fn scenario_rows(&self) -> Vec<&Row> {
        self.timeline
            .rows
            .iter()
            .filter(|r| r.source == Source::Scenario)
            .collect()
    }

    /// Primary healthy ratio in force at `at` (from the recorded samples).
    fn ratio_at(&self, at: Millis) -> f64 {
        self.timeline
            .samples
            .iter()
            .take_while(|s| s.at <= at)
            .last()
            .map_or(1.0, |s| s.primary_ratio())
    }
}

fn endpoint_address(r: &Row) -> &str {
    match &r.affected {
        Affected::Endpoint { address, .. } => address,
        other => panic!("row {} has no endpoint: {other:?}", r.action),
    }
}

fn json_lines(name: &str) -> String {
    let dir = root().join("examples").join(name);
    let mut out = Vec::new();
    let code = simulate::run(
        &dir.join("policy.yaml"),
        &dir.join("scenario.yaml"),
        &rules(),
        OutputFormat::Json,
        &mut out,
    )
    .expect("example runs");
    assert_eq!(code, simulate::EXIT_OK, "{name}: an invariant was violated");
    String::from_utf8(out).expect("JSON output is UTF-8")
}

// ---------------------------------------------------------------------------------------------
// Goldens.

#[test]
fn every_example_matches_its_golden_timeline() {
    let names = examples();
    assert!(names.len() >= 3, "examples found: {names:?}");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    for name in names {
        let got = json_lines(&name);
        let path = root().join("tests/golden").join(format!("{name}.jsonl"));
        if update {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&path).unwrap_or_else(|_| {
            panic!(
                "{} is missing; run UPDATE_GOLDEN=1 cargo test --test simulate",
                path.display()
            )
        });
        if got != want {
            let (i, (g, w)) = got
                .lines()
                .zip(want.lines())
                .enumerate()
                .find(|(_, (g, w))| g != w)
                .unwrap_or((
                    got.lines().count().min(want.lines().count()),
                    ("<end>", "<end>"),
                ));
            panic!(
                "{name}: timeline differs from {} at line {}\n  got:  {g}\n  want: {w}\n\
                 If the change is intended, regenerate with UPDATE_GOLDEN=1 and review the diff.",
                path.display(),
                i + 1
            );
        }
    }
}

#[test]
fn json_lines_carry_the_documented_fields_and_end_with_a_summary() {
    let out = json_lines("gradual-degradation");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is one JSON object"))
        .collect();
    let (summary, rows) = lines.split_last().unwrap();
    for row in rows {
        assert!(row["t"].is_number(), "{row}");
        assert!(row["action"].is_string(), "{row}");
        assert!(row["reason"].is_string(), "{row}");
    }
    let down = rows
        .iter()
        .find(|r| r["action"] == "EndpointDown")
        .expect("an EndpointDown row");
    assert_eq!(down["affected"]["address"], "10.0.1.10:8080");
    assert_eq!(down["t"], 635);
    assert_eq!(summary["action"], "summary");
    assert_eq!(summary["phase"], "Normal");
    assert_eq!(summary["counts"]["EmergencyActivate"], 1);
    assert_eq!(summary["maxEmergencyReplicas"], 4);
}

#[test]
fn replays_are_deterministic_and_the_seed_matters() {
    let dir = root().join("examples/flapping-backend");
    let policy = read(&dir.join("policy.yaml"));
    let scenario = read(&dir.join("scenario.yaml"));
    let a = simulate_str(&policy, &scenario, &rules()).unwrap();
    let b = simulate_str(&policy, &scenario, &rules()).unwrap();
    assert_eq!(a.rows, b.rows);
    assert_eq!(a.samples, b.samples);
    let reseeded = scenario.replace("seed: 3", "seed: 4");
    assert_ne!(reseeded, scenario);
    let c = simulate_str(&policy, &reseeded, &rules()).unwrap();
    assert_ne!(a.rows, c.rows, "the seed drives probe jitter");
}

// ---------------------------------------------------------------------------------------------
// The runbook's expectations, per example.

#[test]
fn gradual_degradation_follows_the_runbook() {
    let ex = Example::load("gradual-degradation");
    let t = &ex.timeline;
    assert!(
        t.summary.violations.is_empty(),
        "{:?}",
        t.summary.violations
    );

    // Every failing backend is ejected, within the detection bound, and not before it fails.
    let failures: Vec<&Row> = ex
        .scenario_rows()
        .into_iter()
        .filter(|r| !r.reason.starts_with("up"))
        .collect();
    assert_eq!(failures.len(), 4);
    for f in &failures {
        let addr = endpoint_address(f);
        let down = ex
            .rows(ActionKind::EndpointDown)
            .into_iter()
            .find(|r| endpoint_address(r) == addr)
            .unwrap_or_else(|| panic!("{addr} never ejected"));
        let took = down.at - f.at;
        assert!(
            took > 0 && took <= ex.detection_bound(),
            "{addr} ejected {took} ms after failing (bound {})",
            ex.detection_bound()
        );
    }

    // Two of four down is a ratio of exactly 0.5 — not below it: no emergency then.
    let activate = ex.first(ActionKind::EmergencyActivate);
    assert_eq!(ex.rows(ActionKind::EmergencyActivate).len(), 1);
    let third_ejection = ex.rows(ActionKind::EndpointDown)[2].at;
    assert!(activate.at > third_ejection);
    assert_eq!(ex.ratio_at(third_ejection - 1), 0.5);

    // Activation after the ratio stayed below 0.5 for activateForSeconds, and promptly then.
    let below_since = t
        .samples
        .iter()
        .filter(|s| s.at <= activate.at)
        .rev()
        .take_while(|s| s.primary_ratio() < t.cfg.activate_below)
        .last()
        .expect("ratio below threshold before activation")
        .at;
    let waited = activate.at - below_since;
    assert!(
        waited >= t.cfg.activate_for_ms && waited <= t.cfg.activate_for_ms + ex.resolution_ms,
        "activated {waited} ms after the ratio dropped (window {} ms)",
        t.cfg.activate_for_ms
    );
    assert_eq!(
        activate.affected,
        Affected::Replicas { from: 0, to: 4 },
        "scales standby → active"
    );

    // Scale first, then shift: no emergency endpoint is published before its pod is ready.
    let ready_at = |addr: &str| {
        t.rows
            .iter()
            .find(|r| r.action == "PodReady" && endpoint_address(r) == addr)
            .map(|r| r.at)
    };
    let mut emergency_published = 0;
    for p in ex.rows(ActionKind::PublishEndpoints) {
        let Affected::Endpoints { added, .. } = &p.affected else {
            panic!("publish without a diff")
        };
        for a in added.iter().filter(|a| a.starts_with("10.0.2.")) {
            emergency_published += 1;
            let ready = ready_at(a).unwrap_or_else(|| panic!("{a} published, never ready"));
            assert!(
                ready <= p.at,
                "{a} published at {} before ready at {ready}",
                p.at
            );
            // ...and it passed successThreshold checks after becoming ready.
            assert!(p.at > ready, "{a} published without passing a single check");
        }
    }
    assert_eq!(emergency_published, 4);
    let pods_ready = ready_at("10.0.2.1:8080").unwrap();
    assert_eq!(pods_ready - activate.at, 120_000, "readyAfter: 2m");

    // Below panicThresholdPercent (50 % of the four primaries) the pool is in fail-open panic;
    // it ends only once two backends serve again — not when the first emergency pod does, which
    // would then take all traffic alone.
    let panic_in = ex.first(ActionKind::PanicEntered);
    let panic_out = ex.first(ActionKind::PanicExited);
    assert!(ex.ratio_at(panic_in.at) < 0.5);
    assert!(panic_in.at < pods_ready && panic_out.at > pods_ready);
    let emergency_ups: Vec<&Row> = ex
        .rows(ActionKind::EndpointUp)
        .into_iter()
        .filter(|r| endpoint_address(r).starts_with("10.0.2."))
        .collect();
    assert!(panic_out.at > emergency_ups[0].at || emergency_ups[0].at == emergency_ups[1].at);
    assert!(emergency_ups.iter().any(|r| r.at == panic_out.at));
    assert!(
        panic_out
            .reason
            .contains("at or above panicThresholdPercent 50"),
        "{}",
        panic_out.reason
    );
    assert_eq!(t.summary.empty_ms, 0, "never an empty Service");

    // Recovery: released after deactivateForSeconds at or above 0.75, scaled down after the
    // cooldown, back to Normal.
    let release = ex.first(ActionKind::EmergencyRelease);
    let back_above = t
        .samples
        .iter()
        .filter(|s| s.at <= release.at)
        .rev()
        .take_while(|s| s.primary_ratio() >= t.cfg.deactivate_above)
        .last()
        .unwrap()
        .at;
    assert!(release.at - back_above >= t.cfg.deactivate_for_ms);
    let scale_down = ex.first(ActionKind::EmergencyScaleDown);
    assert_eq!(scale_down.at - release.at, t.cfg.emergency_cooldown_ms);
    assert_eq!(scale_down.affected, Affected::Replicas { from: 4, to: 0 });
    assert_eq!(t.summary.final_phase, Phase::Normal);
}

#[test]
fn dns_failover_drains_each_tier_one_ttl_and_scales_down_after_the_backup_drain() {
    let ex = Example::load("dns-failover");
    let t = &ex.timeline;
    assert!(
        t.summary.violations.is_empty(),
        "{:?}",
        t.summary.violations
    );
    let ttl = t.cfg.dns.expect("the example has spec.dns").ttl_ms;
    let named =
        |action: &str| -> Vec<&Row> { t.rows.iter().filter(|r| r.action == action).collect() };
    let (drains, ended) = (named("DnsDrain"), named("DnsDrainEnded"));
    assert_eq!(drains.len(), 2, "one drain per switch: {drains:?}");
    assert_eq!(ended.len(), 2, "{ended:?}");

    // The records leave the primary with the failover, and it keeps serving one TTL.
    let failover = ex.first(ActionKind::IngressFailover);
    assert_eq!(drains[0].at, failover.at);
    assert!(
        drains[0].reason.contains("left the primary tier"),
        "{}",
        drains[0].reason
    );
    assert_eq!(
        ended[0].at - drains[0].at,
        ttl,
        "the primary drains exactly one TTL"
    );

    // They leave the backup when the failback completes (the steps keep both tiers answered).
    let complete = ex.first(ActionKind::FailbackComplete);
    assert_eq!(drains[1].at, complete.at);
    assert!(
        drains[1].reason.contains("left the backup tier"),
        "{}",
        drains[1].reason
    );
    assert_eq!(ended[1].at - drains[1].at, ttl);

    // Emergency capacity stays up through the backup's drain, then its cooldown.
    let release = ex.first(ActionKind::EmergencyRelease);
    let scale_down = ex.first(ActionKind::EmergencyScaleDown);
    assert!(
        release.at < drains[1].at,
        "released before the failback ended"
    );
    assert_eq!(
        scale_down.at - ended[1].at,
        t.cfg.emergency_cooldown_ms,
        "the cooldown counts from the drain's end, not from the release or the failback"
    );

    // The DNS share on the samples follows the weighted steps: 0 while failed over, each
    // failback step's weight, 100 after.
    let shares: Vec<u32> =
        t.samples
            .iter()
            .filter_map(|s| s.dns_primary_share)
            .fold(Vec::new(), |mut v, x| {
                if v.last() != Some(&x) {
                    v.push(x);
                }
                v
            });
    assert_eq!(shares, [100, 0, 10, 50, 100]);

    let mut out = Vec::new();
    simulate::render(t, OutputFormat::Svg, &mut out).unwrap();
    let svg = String::from_utf8(out).unwrap();
    assert!(
        svg.contains("DNS answers for primary"),
        "the SVG has a DNS lane"
    );
}

#[test]
fn lb_cascade_fails_over_then_back_gradually_and_scales_down_last() {
    let ex = Example::load("lb-cascade");
    let t = &ex.timeline;
    assert!(
        t.summary.violations.is_empty(),
        "{:?}",
        t.summary.violations
    );
    let lb_events: Vec<&Row> = ex
        .scenario_rows()
        .into_iter()
        .filter(|r| r.target.is_some())
        .collect();
    let (lb_death, lb_back) = (lb_events[0].at, lb_events[1].at);

    // Failover within the detection bound of the LB's death (3 failed checks of the health URL).
    let failover = ex.first(ActionKind::IngressFailover);
    let lb_down = ex.first(ActionKind::LoadBalancerDown);
    assert_eq!(
        failover.at, lb_down.at,
        "failover as soon as the LB is judged down"
    );
    assert!(
        failover.at - lb_death <= ex.detection_bound(),
        "failover {} ms after the LB died (bound {})",
        failover.at - lb_death,
        ex.detection_bound()
    );
    assert!(
        matches!(&failover.affected, Affected::Ingress { to_class, primary_weight_percent: 0, .. } if to_class == "nginx-backup")
    );

    // The backends slowing down past maxLatencyMs are ejected as TooSlow, and the emergency wakes.
    assert!(
        ex.rows(ActionKind::EndpointDown)
            .iter()
            .all(|r| r.reason.contains("over maxLatencyMs 500"))
    );
    assert!(ex.first(ActionKind::EmergencyActivate).at > failover.at);

    // Failback only after holdDownSeconds of a healthy LB, then 10 → 50 → 100 every stepSeconds.
    let lb_up = ex.first(ActionKind::LoadBalancerUp);
    assert!(lb_up.at >= lb_back);
    let failback = ex.first(ActionKind::IngressFailback);
    assert_eq!(failback.at - lb_up.at, t.cfg.hold_down_ms);
    assert!(failback.at - lb_back >= t.cfg.hold_down_ms);
    let weights: Vec<(Millis, u32)> = t
        .rows
        .iter()
        .filter(|r| {
            matches!(
                r.kind,
                Some(
                    ActionKind::IngressFailback
                        | ActionKind::FailbackStep
                        | ActionKind::FailbackComplete
                )
            )
        })
        .map(|r| match &r.affected {
            Affected::Ingress {
                primary_weight_percent,
                ..
            } => (r.at, *primary_weight_percent),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        weights.iter().map(|w| w.1).collect::<Vec<_>>(),
        [10, 50, 100]
    );
    for pair in weights.windows(2) {
        assert_eq!(pair[1].0 - pair[0].0, t.cfg.step_ms, "dwell between steps");
    }
    let complete = ex.first(ActionKind::FailbackComplete);
    assert!(
        matches!(&complete.affected, Affected::Ingress { to_class, .. } if to_class == "nginx")
    );

    // Emergency capacity scales down last: after the failback completed.
    let scale_down = ex.first(ActionKind::EmergencyScaleDown);
    assert!(scale_down.at > complete.at);
    assert!(ex.first(ActionKind::EmergencyRelease).at < scale_down.at);
    assert_eq!(t.summary.final_phase, Phase::Normal);
    assert_eq!(t.summary.backup_class_ms, complete.at - failover.at);
}

#[test]
fn flapping_backend_is_damped_and_the_flap_budget_freezes_the_policy() {
    let ex = Example::load("flapping-backend");
    let t = &ex.timeline;
    assert!(
        t.summary.violations.is_empty(),
        "{:?}",
        t.summary.violations
    );
    let scenario = ex.scenario_rows();
    let (act1_start, act1_end) = (scenario[0].at, scenario[1].at);

    // Act 1: the world flips every 3-4 s; rise/fall lets through only a handful of transitions,
    // strictly alternating Down/Up, and the pool never nears the emergency threshold.
    let world_flips = (act1_end - act1_start) / 7_000 * 2;
    let flips: Vec<&Row> = t
        .rows
        .iter()
        .filter(|r| {
            matches!(
                r.kind,
                Some(ActionKind::EndpointDown | ActionKind::EndpointUp)
            ) && endpoint_address(r) == "10.0.1.30:8080"
                && r.at < act1_end + ex.detection_bound()
        })
        .collect();
    assert!(!flips.is_empty(), "the flapping backend is noticed");
    assert!(
        (flips.len() as i64) * 10 < world_flips,
        "{} engine transitions for {world_flips} world flips",
        flips.len()
    );
    for (i, f) in flips.iter().enumerate() {
        let want = if i % 2 == 0 {
            ActionKind::EndpointDown
        } else {
            ActionKind::EndpointUp
        };
        assert_eq!(f.kind, Some(want), "rise/fall alternates");
    }
    assert!(
        !t.rows
            .iter()
            .any(|r| r.kind == Some(ActionKind::EmergencyActivate) && r.at < act1_end)
    );

    // Act 2: within any window, at most maxTransitions moves plus the one protective move
    // (waking capacity) that the budget never refuses...
    let counted: Vec<(Millis, ActionKind)> = t
        .rows
        .iter()
        .filter_map(|r| {
            r.kind
                .filter(|k| k.counts_against_flap_budget())
                .map(|k| (r.at, k))
        })
        .collect();
    for (i, &(start, _)) in counted.iter().enumerate() {
        let within = counted[i..]
            .iter()
            .filter(|(a, _)| a - start < t.cfg.flap_window_ms)
            .count();
        assert!(within as u32 <= t.cfg.flap_max_transitions + 1);
    }
    // ...then the return move that finds no room freezes the emergency tier on its safe side:
    // capacity stays engaged until the window has room again.
    let frozen = ex.first(ActionKind::FlapBudgetExhausted);
    assert!(
        frozen.reason.contains("instead of EmergencyRelease"),
        "{}",
        frozen.reason
    );
    let unfrozen = ex.first(ActionKind::Unfrozen);
    assert!(unfrozen.at > frozen.at);
    assert!(
        !counted
            .iter()
            .any(|&(a, _)| a >= frozen.at && a < unfrozen.at),
        "no transition while frozen"
    );
    let oldest_in_window = counted
        .iter()
        .map(|&(a, _)| a)
        .filter(|&a| frozen.at - a < t.cfg.flap_window_ms)
        .min()
        .unwrap();
    assert!(
        unfrozen.at - oldest_in_window >= t.cfg.flap_window_ms,
        "thaws only once a transition left the window"
    );
    for s in t
        .samples
        .iter()
        .filter(|s| s.at >= frozen.at && s.at < unfrozen.at)
    {
        assert!(s.emergency_desired > 0, "capacity stays up while frozen");
    }
    let frozen_samples = t
        .samples
        .iter()
        .filter(|s| s.at >= frozen.at && s.at < unfrozen.at);
    for s in frozen_samples {
        assert_eq!(s.phase, Phase::Frozen);
    }
    assert_eq!(t.summary.final_phase, Phase::Normal);
}

/// A Service-backed pool (pods listed by the scenario, with Kubernetes readiness), wall-clock
/// times crossing midnight in a +01:00 offset, a TCP probe (blind to HTTP status) and the
/// ingress controller's readiness as the primary tier's only signal.
#[test]
fn service_pool_readiness_and_controller_signal() {
    let policy = read(&root().join("tests/data/service-pool-policy.yaml"));
    let scenario = read(&root().join("tests/data/service-pool-scenario.yaml"));
    let t = simulate_str(&policy, &scenario, &rules()).unwrap();
    let find = |kind: ActionKind| t.rows.iter().filter(move |r| r.kind == Some(kind));
    let publishes: Vec<&Row> = find(ActionKind::PublishEndpoints).collect();
    // Not-ready pod out from the start; the 503-answering pod stays in (TCP sees a connection).
    assert!(matches!(&publishes[0].affected,
        Affected::Endpoints { added, .. } if added == &["10.244.0.10:8080", "10.244.0.12:8080"]));
    let scripted: Vec<&Row> = t
        .rows
        .iter()
        .filter(|r| r.source == Source::Scenario)
        .collect();
    // 23:55 and 00:01 are 5 and 11 minutes after a 23:50 start: the second wraps past midnight.
    assert_eq!(scripted[0].at - t.start, 5 * 60_000);
    assert_eq!(scripted[1].at - t.start, 11 * 60_000);
    // Readiness changes are published in the step they are observed, without probe delay.
    assert_eq!(publishes[1].at, scripted[0].at);
    assert_eq!(publishes[2].at, scripted[1].at);
    // The controller losing its last ready replica fails over after failureThreshold ×
    // intervalSeconds (debounced like a probe); back after the rise and the hold-down.
    let failover = find(ActionKind::IngressFailover).next().unwrap();
    assert_eq!(
        failover.at - scripted[2].at,
        i64::from(t.cfg.fall) * t.cfg.interval_ms
    );
    let failback = find(ActionKind::IngressFailback).next().unwrap();
    assert_eq!(
        failback.at - scripted[3].at,
        i64::from(t.cfg.rise) * t.cfg.interval_ms + t.cfg.hold_down_ms
    );
    assert_eq!(t.summary.backup_class_ms, failback.at - failover.at);
}

/// Engine regression found with the simulator: a backend that fails while an override Freeze
/// holds the published set must leave it as soon as the freeze ends, not whenever some unrelated
/// endpoint happens to flip later (in a quiet pool: never).
#[test]
fn a_backend_that_failed_during_a_freeze_is_unpublished_when_the_freeze_ends() {
    let policy = POLICY.replace(
        "  managedService: {name: m}\n",
        "  managedService: {name: m}\n  override:\n    mode: Freeze\n    expiresAt: \"2026-11-29T10:20:00Z\"\n    reason: change freeze\n",
    );
    let scenario = "start: 2026-11-29T10:00:00Z\nduration: 30m\nevents:\n  - {at: +5m, backend: 10.0.1.10:8080, state: down}\n";
    let t = simulate_str(&policy, scenario, &rules()).unwrap();
    let at = |kind: ActionKind| t.rows.iter().find(|r| r.kind == Some(kind)).map(|r| r.at);
    let down = at(ActionKind::EndpointDown).expect("ejection decided during the freeze");
    let expired = at(ActionKind::OverrideExpired).expect("the freeze ends");
    assert!(down < expired);
    let unpublished = t.rows.iter().find(|r| {
        matches!(&r.affected, Affected::Endpoints { removed, .. } if removed.iter().any(|a| a == "10.0.1.10:8080"))
    });
    assert_eq!(
        unpublished.map(|r| r.at),
        Some(expired),
        "the dead backend must leave the EndpointSlice when the freeze ends"
    );
}

// ---------------------------------------------------------------------------------------------
// Bad input: a clear error naming the field, never a panic.

const POLICY: &str = "\
apiVersion: ingressfailover.io/v1alpha1
kind: FailoverPolicy
metadata: {name: t}
spec:
  backends:
    primary:
      addresses: [10.0.1.10:8080, 10.0.1.11:8080]
    emergency:
      deployment: {name: e, activeReplicas: 2, maxReplicas: 3}
  managedService: {name: m}
";

fn scenario_error(scenario: &str) -> String {
    match simulate_str(POLICY, scenario, &rules()) {
        Ok(_) => panic!("accepted:\n{scenario}"),
        Err(e @ SimulateError::Scenario { .. }) => e.to_string(),
        Err(other) => panic!("wrong error kind: {other}"),
    }
}

#[test]
fn malformed_scenarios_are_refused_with_the_field_named() {
    let base = "start: 2026-11-29T10:00:00Z\nduration: 10m\n";
    let cases: &[(&str, &str)] = &[
        ("duration: 10m\n", "start"),
        ("start: yesterday\nduration: 10m\n", "field start"),
        (
            "start: 2026-11-29T10:00:00Z\nduration: ten\n",
            "field duration",
        ),
        (
            "start: 2026-11-29T10:00:00Z\nduration: 0s\n",
            "field duration",
        ),
        (
            "start: 2026-11-29T10:00:00Z\nduration: 10m\nresolution: 1h\n",
            "field resolution",
        ),
        (
            "start: 2026-11-29T10:00:00Z\nduration: 10m\nsurprise: 1\n",
            "surprise",
        ),
        (
            "events:\n  - {at: +20m, backend: 10.0.1.10:8080, state: down}\n",
            "field events[0].at",
        ),
        (
            "events:\n  - {at: soon, backend: 10.0.1.10:8080, state: down}\n",
            "field events[0].at",
        ),
        (
            "events:\n  - {at: +1m, backend: 10.0.1.10:8080, state: down}\n  - {at: +2m, backend: 10.0.1.99:8080, state: down}\n",
            "field events[1].backend: 10.0.1.99:8080 is not a backend",
        ),
        (
            "events:\n  - {at: +1m, backend: 10.0.1.10:8080, state: dwon}\n",
            "field events[0].state: unknown state \"dwon\"",
        ),
        (
            "events:\n  - {at: +1m, backend: 10.0.1.10:8080, state: slow}\n",
            "field events[0].latencyMs",
        ),
        (
            "events:\n  - {at: +1m, backend: 10.0.1.10:8080, state: badStatus}\n",
            "field events[0].status",
        ),
        (
            "events:\n  - {at: +1m, backend: 10.0.1.10:8080, state: flapping, upFor: 2s}\n",
            "field events[0].downFor",
        ),
        (
            "events:\n  - {at: +1m, backend: 10.0.1.10:8080, state: notReady}\n",
            "field events[0].state: 10.0.1.10:8080 is a static address",
        ),
        (
            "events:\n  - {at: +1m, loadBalancer: down}\n",
            "field events[0].loadBalancer: the policy has no spec.ingress.health.url",
        ),
        (
            "events:\n  - {at: +1m, state: down}\n",
            "field events[0]: set exactly one of",
        ),
        (
            "events:\n  - {at: +1m, backend: 10.0.1.10:8080, backends: [10.0.1.11:8080], state: down}\n",
            "field events[0]: set exactly one of",
        ),
        (
            "backends:\n  - {address: 10.0.1.77:8080}\n",
            "field backends[0].address: 10.0.1.77:8080 is not in the policy's",
        ),
        (
            "backends:\n  - {address: nonsense}\n",
            "field backends[0].address",
        ),
        (
            "emergency: {readyAfter: soon}\n",
            "field emergency.readyAfter",
        ),
        (
            "emergency: {podRange: 10.0.2.0/30}\n",
            "field emergency.podRange: 10.0.2.0/30 holds 2 pod addresses but the policy's maxReplicas is 3",
        ),
        (
            "emergency: {podRange: 10.0.1.0/24, podPort: 8080}\n",
            "field emergency.podRange: 10.0.1.10:8080 is a static backend",
        ),
        ("events: [1, 2]\n", "events"),
    ];
    for (extra, want) in cases {
        let scenario = if extra.starts_with("start") || extra.starts_with("duration") {
            extra.to_string()
        } else {
            format!("{base}{extra}")
        };
        let err = scenario_error(&scenario);
        if std::env::var_os("SHOW_ERRORS").is_some() {
            eprintln!("{err}");
        }
        assert!(
            err.contains(want),
            "for\n{scenario}\nwanted an error containing {want:?}, got: {err}"
        );
        assert!(err.starts_with("scenario "), "{err}");
    }
}

#[test]
fn truncated_and_garbled_scenarios_never_panic() {
    let text = read(&root().join("examples/lb-cascade/scenario.yaml"));
    let spec = simulate::load_policy(
        "policy",
        &read(&root().join("examples/lb-cascade/policy.yaml")),
        &rules(),
    )
    .unwrap()
    .spec;
    for cut in (0..text.len()).filter(|&i| text.is_char_boundary(i)) {
        let _ = simulate::scenario::parse(&text[..cut], &spec);
    }
    for (i, _) in text.char_indices().step_by(7) {
        let mut garbled = text.clone();
        garbled.replace_range(i..i + garbled[i..].chars().next().unwrap().len_utf8(), ":");
        let _ = simulate::scenario::parse(&garbled, &spec);
    }
}

#[test]
fn bad_policy_and_missing_files_are_clear_errors() {
    let bad_kind = POLICY.replace("kind: FailoverPolicy", "kind: Deployment");
    let err = simulate_str(
        &bad_kind,
        "start: 2026-11-29T10:00:00Z\nduration: 1m\n",
        &rules(),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("<policy>: default/t: kind: Unsupported value: \"Deployment\""),
        "{err}"
    );

    let mut out = Vec::new();
    let err = simulate::run(
        Path::new("/nonexistent/policy.yaml"),
        Path::new("/nonexistent/scenario.yaml"),
        &rules(),
        OutputFormat::Table,
        &mut out,
    )
    .unwrap_err();
    assert!(matches!(err, SimulateError::Read { .. }));
    assert!(
        err.to_string().contains("/nonexistent/policy.yaml"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// Renderers.

#[test]
fn table_shows_every_row_and_the_summary() {
    let ex = Example::load("gradual-degradation");
    let mut out = Vec::new();
    simulate::render(&ex.timeline, OutputFormat::Table, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let header = lines
        .iter()
        .position(|l| l.starts_with("TIME"))
        .expect("a header");
    // One line per row, columns aligned: every row's action starts where the header's does.
    let col = lines[header].find("ACTION").unwrap();
    let body = &lines[header + 1..header + 1 + ex.timeline.rows.len()];
    for (line, row) in body.iter().zip(&ex.timeline.rows) {
        let action = line[col..].to_lowercase();
        assert!(action.contains(&row.action.to_lowercase()), "{line}");
        assert_eq!(line.as_bytes()[col - 1], b' ');
    }
    assert!(text.contains("10:45:52  +0:45:52  EmergencyActivate"));
    assert!(text.contains("final phase               Normal"));
    assert!(text.contains("max emergency replicas    4 (maxReplicas 6)"));
    assert!(text.contains("invariants                all held"));
}

#[test]
fn svg_is_well_formed_and_shows_the_story() {
    for name in examples() {
        let ex = Example::load(&name);
        let mut out = Vec::new();
        simulate::render(&ex.timeline, OutputFormat::Svg, &mut out).unwrap();
        let svg = String::from_utf8(out).unwrap();
        check_xml(&svg).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(svg.contains("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.contains("stroke-dasharray"), "thresholds are dashed");
        assert!(svg.contains("Primary pool"));
        for kind in [
            ActionKind::EmergencyActivate,
            ActionKind::FlapBudgetExhausted,
        ] {
            if !ex.rows(kind).is_empty() {
                let label = match kind {
                    ActionKind::EmergencyActivate => "emergency on",
                    _ => "FROZEN: flap budget",
                };
                assert!(svg.contains(label), "{name}: {kind} is labelled");
            }
        }
    }
}

#[test]
fn the_xml_checker_rejects_what_it_should() {
    assert!(check_xml("<a><b/></a>").is_ok());
    assert!(check_xml("<a><b></a>").is_err());
    assert!(check_xml("<a x=\"1\" y='2'>t &amp; &#233;</a>").is_ok());
    assert!(check_xml("<a>x & y</a>").is_err());
    assert!(check_xml("<a x=1/>").is_err());
    assert!(check_xml("<a></a><b></b>").is_err());
    assert!(check_xml("<a>").is_err());
}

/// A small well-formedness check (no dependency): tags balance, attributes are quoted, `&`
/// only starts a known entity, exactly one root element.
fn check_xml(s: &str) -> Result<(), String> {
    let mut stack: Vec<&str> = Vec::new();
    let mut roots = 0;
    let mut rest = s.trim_start();
    if let Some(r) = rest.strip_prefix("<?xml") {
        rest = &r[r.find("?>").ok_or("unterminated declaration")? + 2..];
    }
    while !rest.is_empty() {
        let lt = rest.find('<').unwrap_or(rest.len());
        check_text(&rest[..lt])?;
        if !stack.is_empty() || rest[..lt].trim().is_empty() {
        } else {
            return Err(format!("text outside the root: {:?}", &rest[..lt]));
        }
        rest = &rest[lt..];
        if rest.is_empty() {
            break;
        }
        if let Some(r) = rest.strip_prefix("<!--") {
            rest = &r[r.find("-->").ok_or("unterminated comment")? + 3..];
            continue;
        }
        let gt = rest.find('>').ok_or("unterminated tag")?;
        let tag = &rest[1..gt];
        rest = &rest[gt + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            let open = stack.pop().ok_or(format!("</{name}> closes nothing"))?;
            if open != name.trim() {
                return Err(format!("<{open}> closed by </{name}>"));
            }
            continue;
        }
        let self_closing = tag.ends_with('/');
        let tag = tag.trim_end_matches('/');
        let name_end = tag.find(char::is_whitespace).unwrap_or(tag.len());
        let name = &tag[..name_end];
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_alphanumeric() || ":-_".contains(c))
        {
            return Err(format!("bad tag name {name:?}"));
        }
        check_attributes(&tag[name_end..])?;
        if stack.is_empty() {
            roots += 1;
            if roots > 1 {
                return Err("more than one root element".into());
            }
        }
        if !self_closing {
            stack.push(name);
        }
    }
    match stack.last() {
        Some(open) => Err(format!("<{open}> never closed")),
        None if roots == 1 => Ok(()),
        None => Err("no root element".into()),
    }
}

fn check_attributes(mut s: &str) -> Result<(), String> {
    loop {
        s = s.trim_start();
        if s.is_empty() {
            return Ok(());
        }
        let eq = s
            .find('=')
            .ok_or(format!("attribute without value: {s:?}"))?;
        let name = s[..eq].trim();
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(format!("bad attribute name {name:?}"));
        }
        let v = &s[eq + 1..];
        let quote = v.chars().next().ok_or("missing attribute value")?;
        if quote != '"' && quote != '\'' {
            return Err(format!("unquoted attribute {name}"));
        }
        let end = v[1..].find(quote).ok_or("unterminated attribute value")?;
        let value = &v[1..1 + end];
        if value.contains('<') {
            return Err(format!("'<' in attribute {name}"));
        }
        check_text(value)?;
        s = &v[end + 2..];
    }
}

fn check_text(s: &str) -> Result<(), String> {
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        let r = &rest[i + 1..];
        let semi = r.find(';').ok_or("'&' without ';'")?;
        let entity = &r[..semi];
        let ok = matches!(entity, "amp" | "lt" | "gt" | "quot" | "apos")
            || entity
                .strip_prefix('#')
                .is_some_and(|n| n.chars().all(|c| c.is_ascii_digit()) && !n.is_empty());
        if !ok {
            return Err(format!("unknown entity &{entity};"));
        }
        rest = &r[semi + 1..];
    }
    if s.contains('>') && s.contains("]]>") {
        return Err("']]>' in text".into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The starting policy is validated as `check` and the controller validate it (issue 13).

/// Runs the binary; returns (exit code, stdout, stderr).
fn binary(args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ingress-failover"))
        .args(args)
        .output()
        .expect("ingress-failover runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A policy `check` refuses is refused by `simulate` with `check`'s own lines, whatever layer
/// refuses it (schema, CEL, the operator's semantic rules, the operator's flags); with the
/// flags that make it valid, both accept it.
#[test]
fn simulate_refuses_what_check_refuses_in_checks_words() {
    let dir = std::env::temp_dir().join(format!("if-simulate-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let scenario = dir.join("scenario.yaml");
    std::fs::write(&scenario, "start: 2026-11-29T10:00:00Z\nduration: 10m\n").unwrap();
    let scenario = scenario.to_str().unwrap();
    let lb = root().join("examples/lb-cascade/policy.yaml");
    let cases: Vec<(String, &str)> = vec![
        // The operator's flags: a health URL no --probe-allowlist entry permits.
        (
            read(&lb),
            "allowed with --probe-allowlist (none is configured)",
        ),
        // Semantic: the managed Service is the Service it reads.
        (
            POLICY.replace(
                "addresses: [10.0.1.10:8080, 10.0.1.11:8080]",
                "service: {name: m}",
            ),
            "must differ from spec.backends.primary.service.name",
        ),
        // Semantic: a loopback backend.
        (
            POLICY.replace("10.0.1.11:8080", "127.0.0.1:8080"),
            "loopback",
        ),
        // Schema: a bound.
        (
            POLICY.replace(
                "managedService: {name: m}",
                "managedService: {name: m}\n  probe: {intervalSeconds: 0}",
            ),
            "spec.probe.intervalSeconds",
        ),
        // CEL: the emergency pool's bounds.
        (
            POLICY.replace("maxReplicas: 3", "maxReplicas: 1"),
            "spec.backends.emergency.deployment",
        ),
    ];
    for (i, (policy, reason)) in cases.iter().enumerate() {
        let file = dir.join(format!("policy-{i}.yaml"));
        std::fs::write(&file, policy).unwrap();
        let file = file.to_str().unwrap();
        let (code, check_out, _) = binary(&["check", file]);
        assert_eq!(code, Some(1), "check accepts case {i}: {check_out}");
        assert!(check_out.contains(reason), "case {i}: {check_out}");
        let (code, _, simulate_err) =
            binary(&["simulate", "--policy", file, "--scenario", scenario]);
        assert_eq!(code, Some(2), "simulate accepts case {i}: {simulate_err}");
        for line in check_out.lines() {
            assert!(
                simulate_err.contains(line),
                "case {i}: simulate does not say {line:?}:\n{simulate_err}"
            );
        }
    }
    // With the flag that permits its health URL, both accept the example.
    let lb = lb.to_str().unwrap();
    let (code, out, _) = binary(&["check", "--probe-allowlist", ".shop.internal", lb]);
    assert_eq!(code, Some(0), "{out}");
    let (code, _, err) = binary(&[
        "simulate",
        "--probe-allowlist",
        ".shop.internal",
        "--policy",
        lb,
        "--scenario",
        scenario,
    ]);
    assert_eq!(code, Some(0), "{err}");
}

/// A scenario's backend addresses obey the one address rule of policies (issue 13): a
/// dotted-decimal typo or an unbracketed IPv6 address is refused in the same words as in a
/// policy, where before any `something:port` passed.
#[test]
fn scenario_addresses_obey_the_policy_address_rule() {
    let dir = std::env::temp_dir().join(format!("if-simulate-addr-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let policy = dir.join("policy.yaml");
    std::fs::write(&policy, POLICY).unwrap();
    for (address, words) in [
        (
            "10.0.1.300:8080",
            "\"10.0.1.300\" is not an IP address or host name",
        ),
        (
            "2001:db8::1:8080",
            "IPv6 addresses must be written in brackets",
        ),
        ("10.0.1.10:0", "port 0 is outside 1-65535"),
    ] {
        let scenario = dir.join("scenario.yaml");
        std::fs::write(
            &scenario,
            format!(
                "start: 2026-11-29T10:00:00Z\nduration: 10m\nbackends:\n  - address: \"{address}\"\n    state: down\n"
            ),
        )
        .unwrap();
        let (code, _, err) = binary(&[
            "simulate",
            "--policy",
            policy.to_str().unwrap(),
            "--scenario",
            scenario.to_str().unwrap(),
        ]);
        assert_ne!(code, Some(0), "{address} was accepted");
        assert!(err.contains(words), "{address}: {err}");
    }
}

/// Issue 14: weighted emergency capacity is released by a ramp — the samples' emergency weight
/// steps 100 → 50 → 25 → 0 one step a minute, the pods stay published through the 0 % step,
/// and the cooldown counts from their leaving.
#[test]
fn weighted_emergency_ramps_its_weight_down_before_the_pods_leave() {
    let ex = Example::load("weighted-emergency");
    let t = &ex.timeline;
    assert!(
        t.summary.violations.is_empty(),
        "{:?}",
        t.summary.violations
    );
    let release = ex.first(ActionKind::EmergencyRelease);
    let ramps: Vec<&Row> = t
        .rows
        .iter()
        .filter(|r| r.kind == Some(ActionKind::EmergencyRampDown))
        .collect();
    let at: Vec<Millis> = ramps.iter().map(|r| r.at - release.at).collect();
    assert_eq!(at, [60_000, 120_000, 180_000], "one step a minute");
    let weight_at = |when: Millis| {
        t.samples
            .iter()
            .rev()
            .find(|s| s.at <= when)
            .map(|s| (s.emergency_weight, s.emergency_published))
            .unwrap()
    };
    assert_eq!(weight_at(release.at - 1_000).0, Some(100));
    assert_eq!(weight_at(release.at).0, Some(50));
    assert_eq!(weight_at(release.at + 60_000).0, Some(25));
    let zero = weight_at(release.at + 120_000);
    assert_eq!(zero.0, Some(0));
    assert_eq!(zero.1, 2, "the pods stay published through the 0 % step");
    assert_eq!(weight_at(release.at + 180_000).1, 0, "then they leave");
    let down = ex.first(ActionKind::EmergencyScaleDown);
    assert_eq!(
        down.at - release.at,
        180_000 + 120_000,
        "the cooldown counts from the ramp's end"
    );
}
