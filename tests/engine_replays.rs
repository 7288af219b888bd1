//! Randomized multi-tier incidents: proptest generates a policy and a timeline of what backends,
//! load balancers, the platform and people do (failures, readiness loss, termination, deleted
//! Deployments, restarts, spec edits valid and invalid, dry-run and overrides on and off, clock
//! steps, budget resets), replays it through `simulate` and requires every global invariant to
//! hold at every step (see `engine::invariants`).
//!
//! `cargo test` replays 2,000 incidents; more with
//! `INGRESS_FAILOVER_REPLAYS=10000 cargo test --release --test engine_replays`.
//! A failure is shrunk to a minimal incident, written as a policy and scenario pair under
//! `target/replay-failures/` (commit it under `tests/scenarios/` as a regression) and printed.

use std::fmt::Write as _;

use ingress_failover::simulate::simulate_str;
use ingress_failover::validation::ValidationContext;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

#[derive(Debug, Clone)]
struct Knobs {
    service: bool,
    backends: usize,
    emergency: Option<(u32, u32, u32)>,
    url: bool,
    controller: bool,
    backup_url: bool,
    hot_standby: bool,
    steps: bool,
    /// `spec.dns` TTL (HotStandby only).
    dns_ttl: Option<u32>,
    interval: u32,
    rise: u32,
    fall: u32,
    activate_for: u32,
    deactivate_for: u32,
    hold_down: u32,
    cooldown: u32,
    max_transitions: u32,
    window: u32,
    fail_closed: bool,
    max_ejection: u32,
    panic: u32,
    dry_run: bool,
}

#[derive(Debug, Clone)]
enum Ev {
    Backend(usize, &'static str),
    /// Every backend but the first (a brown-out that wakes emergency capacity).
    Majority(&'static str),
    AllNotReady,
    Ready(usize),
    Terminating(usize),
    Lb(&'static str),
    BackupLb(&'static str),
    Controller(bool),
    Delete(bool),
    Recreate(bool),
    Restart,
    Edit(&'static str),
    ClockStep(i32),
    Reset,
}

/// The operator flags the generated incidents are replayed with: the generator's health URLs
/// are under `.shop.internal`.
fn rules() -> ValidationContext {
    ValidationContext::from_flags([""], [".shop.internal"]).expect("valid flags")
}

fn knobs() -> impl Strategy<Value = Knobs> {
    (
        (
            any::<bool>(),
            1usize..6,
            prop::option::of((0u32..2, 1u32..4, 0u32..3)),
        ),
        (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()),
        (1u32..6, 1u32..4, 1u32..4, 0u32..40, 0u32..60),
        (0u32..90, 0u32..400, 1u32..5, 30u32..900),
        (any::<bool>(), 0u32..=100, 0u32..=100, any::<bool>()),
    )
        .prop_map(|(a, b, c, d, e)| Knobs {
            service: a.0,
            backends: a.1,
            emergency: a.2.map(|(s, extra, more)| (s, s + extra, s + extra + more)),
            url: b.0 || !b.1,
            controller: b.1,
            backup_url: e.0 != e.3,
            hot_standby: b.2,
            steps: b.3,
            // Without failback steps the TTL may exceed the cooldown (the drain then decides
            // when capacity scales down); with them it stays within the 20 s step.
            dns_ttl: (b.2 && c.4 % 2 == 0).then_some(if b.3 { c.3 % 20 + 1 } else { c.3 * 5 + 1 }),
            interval: c.0,
            rise: c.1,
            fall: c.2,
            activate_for: c.3,
            deactivate_for: c.4,
            hold_down: d.0,
            cooldown: d.1,
            max_transitions: d.2,
            window: d.3,
            fail_closed: e.0,
            max_ejection: e.1,
            panic: e.2,
            dry_run: e.3 && e.1 % 3 == 0,
        })
}

const EDITS: [&str; 14] = [
    "{dryRun: true}",
    "{dryRun: false}",
    "{override: {mode: ForceBackup, reason: drill}}",
    "{override: {mode: ForcePrimary, reason: drill}}",
    "{override: {mode: Freeze, reason: change freeze}}",
    "{override: {mode: Freeze, reason: short freeze, expiresAt: \"2026-12-01T03:12:00Z\"}}",
    "{override: null}",
    "{thresholds: {activateBelow: 0.9, deactivateAbove: 0.75}}",
    "{thresholds: {activateBelow: 0.5, deactivateAbove: 0.75}}",
    "{safety: {flapBudget: {maxTransitions: 20}}}",
    "{safety: {flapBudget: {maxTransitions: 1}}}",
    "{safety: {panicThresholdPercent: 0}}",
    "{ingress: {mode: SwitchClass}}",
    "{recovery: {holdDownSeconds: 5, emergencyCooldownSeconds: 5}}",
];

fn event() -> impl Strategy<Value = Ev> {
    let state = prop::sample::select(vec![
        "up",
        "down",
        "refusing",
        "badStatus",
        "slow",
        "flapping",
    ]);
    let lb = prop::sample::select(vec!["up", "down", "badStatus"]);
    prop_oneof![
        5 => (0usize..6, state).prop_map(|(i, s)| Ev::Backend(i, s)),
        4 => prop::sample::select(vec!["up", "down", "refusing"]).prop_map(Ev::Majority),
        1 => Just(Ev::AllNotReady),
        2 => (0usize..6).prop_map(Ev::Ready),
        1 => (0usize..6).prop_map(Ev::Terminating),
        4 => lb.clone().prop_map(Ev::Lb),
        2 => lb.prop_map(Ev::BackupLb),
        2 => any::<bool>().prop_map(Ev::Controller),
        1 => any::<bool>().prop_map(Ev::Delete),
        1 => any::<bool>().prop_map(Ev::Recreate),
        4 => Just(Ev::Restart),
        3 => prop::sample::select(EDITS.to_vec()).prop_map(Ev::Edit),
        1 => (-90i32..90).prop_map(Ev::ClockStep),
        1 => Just(Ev::Reset),
    ]
}

fn incident() -> impl Strategy<Value = (Knobs, Vec<(u32, Ev)>)> {
    (knobs(), prop::collection::vec((0u32..1200, event()), 0..40)).prop_map(|(k, mut events)| {
        events.sort_by_key(|(at, _)| *at);
        (k, events)
    })
}

fn address(k: &Knobs, i: usize) -> String {
    let i = i % k.backends + 1;
    if k.service {
        format!("10.244.0.{i}:8080")
    } else {
        format!("10.0.1.{i}:8080")
    }
}

fn policy(k: &Knobs) -> String {
    let mut p = String::from(
        "apiVersion: ingressfailover.io/v1alpha1\nkind: FailoverPolicy\nmetadata: {name: web, namespace: shop}\nspec:\n  backends:\n    primary:\n",
    );
    if k.service {
        p.push_str("      service: {name: web}\n");
    } else {
        let list: Vec<String> = (0..k.backends).map(|i| address(k, i)).collect();
        let _ = writeln!(p, "      addresses: [{}]", list.join(", "));
    }
    if let Some((standby, active, max)) = k.emergency {
        let _ = writeln!(
            p,
            "    emergency:\n      deployment: {{name: web-emergency, standbyReplicas: {standby}, activeReplicas: {active}, maxReplicas: {max}}}"
        );
    }
    let _ = writeln!(
        p,
        "  managedService: {{name: web-healthy}}\n  probe: {{intervalSeconds: {}, timeoutSeconds: 1, failureThreshold: {}, successThreshold: {}}}",
        k.interval, k.fall, k.rise
    );
    let _ = writeln!(
        p,
        "  ingress:\n    ingresses: [web]\n    primaryClass: nginx\n    backupClass: nginx-backup\n    mode: {}\n    health:",
        if k.hot_standby {
            "HotStandby"
        } else {
            "SwitchClass"
        }
    );
    if k.url {
        p.push_str("      url: http://lb.shop.internal/healthz\n");
    }
    if k.controller {
        p.push_str("      controllerDeployment: {name: ingress-nginx-controller}\n");
    }
    if k.backup_url {
        p.push_str("    backupHealth:\n      url: http://lb-backup.shop.internal/healthz\n");
    }
    if let Some(ttl) = k.dns_ttl {
        let mode = ["Atomic", "Weighted", "Failover"][(ttl % 3) as usize];
        let _ = writeln!(
            p,
            "  dns: {{hostnames: [shop.example.com], ttlSeconds: {ttl}, mode: {mode}}}"
        );
    }
    let _ = writeln!(
        p,
        "  thresholds: {{activateBelow: 0.5, activateForSeconds: {}, deactivateAbove: 0.75, deactivateForSeconds: {}}}",
        k.activate_for, k.deactivate_for
    );
    let steps = if k.hot_standby && k.steps {
        ", failbackSteps: [10, 50], stepSeconds: 20"
    } else {
        ""
    };
    let _ = writeln!(
        p,
        "  recovery: {{holdDownSeconds: {}, emergencyCooldownSeconds: {}{steps}}}",
        k.hold_down, k.cooldown
    );
    let _ = writeln!(
        p,
        "  safety: {{failMode: {}, maxEjectionPercent: {}, panicThresholdPercent: {}, flapBudget: {{maxTransitions: {}, windowSeconds: {}}}}}",
        if k.fail_closed {
            "FailClosed"
        } else {
            "FailOpen"
        },
        k.max_ejection,
        k.panic,
        k.max_transitions,
        k.window
    );
    if k.dry_run {
        p.push_str("  dryRun: true\n");
    }
    p
}

fn scenario(k: &Knobs, events: &[(u32, Ev)]) -> String {
    let mut s = String::from("start: 2026-12-01T03:00:00Z\nduration: 20m\n");
    if k.service {
        s.push_str("backends:\n");
        for i in 0..k.backends {
            let _ = writeln!(s, "  - {{address: {}}}", address(k, i));
        }
    }
    if k.emergency.is_some() {
        s.push_str("emergency: {readyAfter: 30s, podRange: 10.0.2.0/24}\n");
    }
    s.push_str("events:\n");
    let mut written = 0;
    for (at, ev) in events {
        let line = match ev {
            Ev::Backend(i, state) => {
                let extra = match *state {
                    "badStatus" => ", status: 503",
                    "slow" => ", latencyMs: 1500",
                    "flapping" => ", upFor: 7s, downFor: 5s",
                    _ => "",
                };
                format!("backend: {}, state: {state}{extra}", address(k, *i))
            }
            Ev::Majority(state) if k.backends > 1 => {
                let list: Vec<String> = (1..k.backends).map(|i| address(k, i)).collect();
                format!("backends: [{}], state: {state}", list.join(", "))
            }
            Ev::AllNotReady if k.service => "backend: \"*\", state: notReady".to_string(),
            Ev::Ready(i) if k.service => format!("backend: {}, state: ready", address(k, *i)),
            Ev::Terminating(i) if k.service => {
                format!("backend: {}, state: terminating", address(k, *i))
            }
            Ev::Lb(state) if k.url => {
                let extra = if *state == "badStatus" {
                    ", status: 503"
                } else {
                    ""
                };
                format!("loadBalancer: {state}{extra}")
            }
            Ev::BackupLb(state) if k.backup_url => {
                let extra = if *state == "badStatus" {
                    ", status: 503"
                } else {
                    ""
                };
                format!("backupLoadBalancer: {state}{extra}")
            }
            Ev::Controller(ready) if k.controller => format!(
                "ingressController: {}",
                if *ready { "ready" } else { "notReady" }
            ),
            Ev::Delete(ctrl) | Ev::Recreate(ctrl) => {
                let verb = if matches!(ev, Ev::Delete(_)) {
                    "deleteObject"
                } else {
                    "recreate"
                };
                if *ctrl && k.controller {
                    format!("{verb}: ingressController")
                } else if !*ctrl && k.emergency.is_some() {
                    format!("{verb}: emergencyDeployment")
                } else {
                    continue;
                }
            }
            Ev::Restart => "restart: true".to_string(),
            Ev::Edit(patch) => format!("edit: {patch}"),
            Ev::ClockStep(m) => format!(
                "clockStep: \"{}{}m\"",
                if *m < 0 { "-" } else { "+" },
                m.abs()
            ),
            Ev::Reset => "resetFlapBudget: true".to_string(),
            _ => continue,
        };
        let _ = writeln!(s, "  - {{at: +{at}s, {line}}}");
        written += 1;
    }
    if written == 0 {
        s.push_str("  []\n");
    }
    s
}

/// Replays one generated incident; Err carries the files and the broken invariants.
fn replay_one(k: &Knobs, events: &[(u32, Ev)]) -> Result<(), String> {
    let (p, s) = (policy(k), scenario(k, events));
    let t = simulate_str(&p, &s, &rules())
        .map_err(|e| format!("generated files do not parse: {e}\n{p}\n{s}"))?;
    if t.summary.violations.is_empty() {
        return Ok(());
    }
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/replay-failures");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join("policy.yaml"), &p);
    let _ = std::fs::write(dir.join("scenario.yaml"), &s);
    Err(format!(
        "invariants broken: {:?}\n(written to {}/policy.yaml and scenario.yaml)\n--- policy\n{p}--- scenario\n{s}",
        t.summary.violations,
        dir.display()
    ))
}

#[test]
fn randomized_incidents_hold_every_invariant() {
    let cases = std::env::var("INGRESS_FAILOVER_REPLAYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let started = std::time::Instant::now();
    let result = runner.run(&incident(), |(k, events)| {
        replay_one(&k, &events).map_err(TestCaseError::fail)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    eprintln!(
        "{cases} randomized incidents replayed, every invariant held ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
}

/// The generator itself must produce files the simulator accepts, or the property above would
/// pass on parse errors alone.
#[test]
fn generated_incidents_parse() {
    let mut runner = TestRunner::new(Config {
        cases: 64,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&incident(), |(k, events)| {
            let (p, s) = (policy(&k), scenario(&k, &events));
            simulate_str(&p, &s, &rules())
                .map_err(|e| TestCaseError::fail(format!("{e}\n{p}\n{s}")))?;
            Ok(())
        })
        .unwrap();
}
