//! Engine replay: one day of timeline at 1 s resolution for 100 policies.
//!
//! The product promises that "the simulator replays a day of incident timeline for 100 policies
//! in well under a second". The fleet is a realistic mix: 4–8 static backends per policy probed
//! every 10 s, half with an emergency Deployment, a third with a HotStandby ingress tier, and
//! incidents spread over the day (a backend down for 30 min everywhere; overloads that wake the
//! emergency; primary LB outages with gradual failback; flapping backends; 503 storms).
//!
//! Two measurements:
//! - `replay_day_100_policies`: the whole simulator (world, probes, pods, engine, timeline rows
//!   and samples) — the number the product promise is about;
//! - `engine_idle_day_100_policies`: the engine alone, stepped every second with no new facts
//!   (the floor every step pays, whatever happens).
//!
//! Run with `cargo bench --bench engine`; the median of the full replay is also printed on its
//! own line for `benches/README.md`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use ingress_failover::engine::{
    Action, EndpointFact, EngineConfig, Observation, PolicyState, Pool, step,
};
use ingress_failover::simulate::{Policy, Scenario, load_policy, replay, scenario};
use ingress_failover::validation::ValidationContext;

const POLICIES: usize = 100;
const DAY_STEPS: i64 = 86_400;

fn policy_yaml(i: usize) -> String {
    let n = 4 + i % 5;
    let mut y = format!(
        "apiVersion: ingressfailover.io/v1alpha1\nkind: FailoverPolicy\nmetadata: {{name: p{i}}}\nspec:\n  backends:\n    primary:\n      addresses:\n"
    );
    for j in 0..n {
        y.push_str(&format!("        - 10.0.1.{}:8080\n", 10 + j));
    }
    if i.is_multiple_of(2) {
        y.push_str("    emergency:\n      deployment: {name: e, standbyReplicas: 0, activeReplicas: 3, maxReplicas: 5}\n");
    }
    y.push_str("  managedService: {name: m}\n");
    y.push_str("  probe: {http: {path: /healthz, maxLatencyMs: 500}, intervalSeconds: 10, timeoutSeconds: 5}\n");
    if i.is_multiple_of(3) {
        y.push_str(
            "  ingress:\n    ingresses: [web]\n    primaryClass: nginx\n    backupClass: nginx-backup\n    mode: HotStandby\n    health: {url: http://lb.internal/healthz}\n  recovery: {holdDownSeconds: 300, failbackSteps: [10, 50, 100], stepSeconds: 120}\n",
        );
    }
    y
}

fn scenario_yaml(i: usize) -> String {
    let n = 4 + i % 5;
    let addr = |j: usize| format!("10.0.1.{}:8080", 10 + j % n);
    let mut y = format!("start: 2026-11-29T00:00:00Z\nduration: 24h\nseed: {i}\nevents:\n");
    let mut ev = |at_min: usize, body: String| {
        y.push_str(&format!("  - {{at: +{at_min}m, {body}}}\n"));
    };
    // Everyone: one backend down for 30 minutes at some hour.
    let h = (i * 7) % 22;
    ev(h * 60, format!("backend: {}, state: down", addr(i)));
    ev(h * 60 + 30, format!("backend: {}, state: up", addr(i)));
    // Every 5th: an overload slows three quarters of the pool for 20 minutes (emergency).
    if i.is_multiple_of(5) {
        let list: Vec<String> = (0..n * 3 / 4).map(addr).collect();
        let at = (8 + i % 6) * 60;
        ev(
            at,
            format!(
                "backends: [{}], state: slow, latencyMs: 900",
                list.join(", ")
            ),
        );
        ev(
            at + 20,
            format!("backends: [{}], state: up", list.join(", ")),
        );
    }
    // Policies with an ingress tier: the primary LB is down for 15 minutes.
    if i.is_multiple_of(3) {
        let at = (14 + i % 4) * 60;
        ev(at, "loadBalancer: down".to_string());
        ev(at + 15, "loadBalancer: up".to_string());
    }
    // Every 7th: a flapping backend for an hour.
    if i.is_multiple_of(7) {
        ev(
            180,
            format!(
                "backend: {}, state: flapping, upFor: 3s, downFor: 4s",
                addr(i + 1)
            ),
        );
        ev(240, format!("backend: {}, state: up", addr(i + 1)));
    }
    // Every 11th: a 503 storm on one backend for two hours.
    if i.is_multiple_of(11) {
        ev(
            1200,
            format!("backend: {}, state: badStatus, status: 503", addr(i + 2)),
        );
        ev(1320, format!("backend: {}, state: up", addr(i + 2)));
    }
    y
}

/// The operator's flags the fleet is validated with: its health URL host.
fn rules() -> ValidationContext {
    ValidationContext::from_flags([""], ["lb.internal"]).expect("valid flags")
}

fn fleet() -> Vec<(Policy, Scenario)> {
    (0..POLICIES)
        .map(|i| {
            let p = load_policy("bench", &policy_yaml(i), &rules()).expect("bench policy loads");
            let s = scenario::parse(&scenario_yaml(i), &p.spec).expect("bench scenario parses");
            (p, s)
        })
        .collect()
}

fn replay_all(fleet: &[(Policy, Scenario)]) -> usize {
    let rules = rules();
    fleet
        .iter()
        .map(|(policy, sc)| replay(policy, sc, &rules).rows.len())
        .sum()
}

/// The engine alone: inventory once, then a step per second with nothing new observed.
fn engine_idle(cfgs: &[(EngineConfig, Vec<EndpointFact>)]) -> usize {
    let mut actions: Vec<Action> = Vec::with_capacity(64);
    let mut total = 0;
    for (cfg, endpoints) in cfgs {
        let mut state = PolicyState::new();
        let mut obs = Observation::default();
        obs.set_endpoints(endpoints.clone());
        let start = 1_764_374_400_000;
        for s in 0..DAY_STEPS {
            step(cfg, &mut state, &obs, start + s * 1000, &mut actions);
            obs.clear_checks();
            total += actions.len();
            actions.clear();
        }
    }
    total
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn bench(c: &mut Criterion) {
    let fleet = fleet();
    let rows = replay_all(&fleet);
    let steps = POLICIES as i64 * (DAY_STEPS + 1);
    println!("fleet: {POLICIES} policies, {steps} engine steps, {rows} timeline rows per replay");

    // The headline number, measured plainly so it can be quoted: median of 11 full replays.
    let times: Vec<Duration> = (0..11)
        .map(|_| {
            let t = Instant::now();
            black_box(replay_all(black_box(&fleet)));
            t.elapsed()
        })
        .collect();
    let m = median(times);
    println!(
        "median: one day at 1 s for {POLICIES} policies replayed in {:.1} ms ({:.0} ns per policy-step)",
        m.as_secs_f64() * 1e3,
        m.as_secs_f64() * 1e9 / steps as f64
    );

    let mut g = c.benchmark_group("engine");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(8));
    g.bench_function("replay_day_100_policies", |b| {
        b.iter(|| black_box(replay_all(black_box(&fleet))))
    });
    let cfgs: Vec<(EngineConfig, Vec<EndpointFact>)> = fleet
        .iter()
        .map(|(policy, sc)| {
            let endpoints = sc
                .primary
                .iter()
                .map(|b| EndpointFact::ready(b.address.clone(), Pool::Primary))
                .collect();
            (EngineConfig::from_spec(&policy.spec), endpoints)
        })
        .collect();
    g.bench_function("engine_idle_day_100_policies", |b| {
        b.iter(|| black_box(engine_idle(black_box(&cfgs))))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
