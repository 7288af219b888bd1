//! Crash consistency (issue 12 item 4): a controller killed between a managed write and the
//! status write that records it, or between that status write and the managed write, never
//! undoes the decision once restarted. Status is the write-ahead record of every decision that
//! moves traffic or capacity; these tests drive each of the four moves of an incident (failover,
//! emergency scale-up, failback, scale-down) through the Kubernetes API and kill the controller
//! at the exact moment, with the embedded plane delaying one of the two writes so the moment is
//! wide enough to hit.

#[path = "support/cluster.rs"]
mod cluster;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cluster::*;
use devcluster::{FaultConfig, LatencyRule};
use ingress_failover::api::{FailoverPolicyStatus, Phase};
use serde_json::json;
use testkit::farm::Behavior;

const T: Duration = Duration::from_secs(30);
/// How long a write is held back by the plane: the window in which the controller is killed.
const DELAY_MS: u64 = 3000;

/// One move of the incident: how to cause it, the managed object it changes and to what.
#[derive(Clone, Copy, Debug)]
enum Move {
    Failover,
    ScaleUp,
    Failback,
    ScaleDown,
}

impl Move {
    /// (verb, resource) of the managed write that carries this move.
    fn write(self) -> &'static str {
        match self {
            Move::Failover | Move::Failback => "ingresses",
            Move::ScaleUp | Move::ScaleDown => "deployments/scale",
        }
    }

    /// The history action the move records.
    fn action(self) -> &'static str {
        match self {
            Move::Failover => "IngressFailover",
            Move::Failback => "IngressFailback",
            Move::ScaleUp => "EmergencyActivate",
            Move::ScaleDown => "EmergencyScaleDown",
        }
    }

    /// What the managed object shows once the move is made.
    fn target(self) -> World {
        match self {
            Move::Failover => World::Class("nginx-backup"),
            Move::Failback => World::Class("nginx-primary"),
            Move::ScaleUp => World::Replicas(2),
            Move::ScaleDown => World::Replicas(0),
        }
    }

    /// Whether the status written by the controller records this move as decided.
    fn decided(self, s: &FailoverPolicyStatus) -> bool {
        let replicas = s.emergency.as_ref().and_then(|e| e.desired_replicas);
        match self {
            Move::Failover => s.decided_class.as_deref() == Some("nginx-backup"),
            Move::Failback => s.decided_class.as_deref() == Some("nginx-primary"),
            Move::ScaleUp => replicas == Some(2),
            Move::ScaleDown => replicas == Some(0),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum World {
    Class(&'static str),
    Replicas(i32),
}

struct Incident {
    env: Env,
    backends: Vec<SocketAddr>,
    lb: SocketAddr,
    _pods: tokio::task::JoinHandle<()>,
}

impl Incident {
    /// Four primaries, an emergency Deployment (0 → 2 replicas) and one Ingress on the primary
    /// class behind a load balancer health URL; the controller running and everything Normal.
    async fn start(name: &str) -> Incident {
        let inc = Incident::prepare(name).await;
        let mut inc = inc;
        inc.env.start_controller().await;
        inc.normal().await;
        inc
    }

    /// The world of the incident, without a controller.
    async fn prepare(name: &str) -> Incident {
        let env = Env::start(name).await;
        let backends = env.backends(4).await;
        let lb = env.backend_addr();
        env.set(lb, Behavior::Healthy).await;
        for o in emergency_objects()
            .into_iter()
            .chain(ingress_objects("nginx-primary"))
        {
            env.apply_json(o).await;
        }
        let pods = env.serve_pods_of("web-emergency");
        env.apply_json(policy(
            "web",
            &backends,
            json!({
                "backends": {"emergency": {"deployment": {"name": "web-emergency", "standbyReplicas": 0, "activeReplicas": 2, "maxReplicas": 3}}},
                "ingress": {"ingresses": ["web"], "primaryClass": "nginx-primary", "backupClass": "nginx-backup",
                            "health": {"url": format!("http://{lb}/healthz")}},
                "safety": {"flapBudget": {"maxTransitions": 20, "windowSeconds": 3600}},
            }),
        ))
        .await;
        Incident {
            env,
            backends,
            lb,
            _pods: pods,
        }
    }

    async fn normal(&self) {
        self.env
            .wait_status("web", T, "Normal", |s| s.phase == Phase::Normal)
            .await;
    }

    /// Causes `m` (the health change that makes the engine decide it).
    async fn cause(&self, m: Move) {
        match m {
            Move::Failover => self.env.set(self.lb, Behavior::Status(503)).await,
            Move::Failback => self.env.set(self.lb, Behavior::Healthy).await,
            Move::ScaleUp => {
                for a in &self.backends[..3] {
                    self.env.set(*a, Behavior::Status(500)).await;
                }
            }
            Move::ScaleDown => {
                for a in &self.backends[..3] {
                    self.env.set(*a, Behavior::Healthy).await;
                }
            }
        }
    }

    async fn world(&self, m: Move) -> Option<World> {
        match m.target() {
            World::Class(_) => self.env.ingress_class("web").await.map(|c| {
                if c == "nginx-backup" {
                    World::Class("nginx-backup")
                } else if c == "nginx-primary" {
                    World::Class("nginx-primary")
                } else {
                    panic!("unexpected class {c}")
                }
            }),
            World::Replicas(_) => self
                .env
                .deployment_replicas("web-emergency")
                .await
                .map(World::Replicas),
        }
    }

    fn delay(&self, verb: &str, resource: &str) {
        self.env
            .cluster
            .as_ref()
            .unwrap()
            .faults()
            .set(FaultConfig {
                seed: 1,
                errors: vec![],
                latency: vec![LatencyRule {
                    verb: Some(verb.into()),
                    resource: Some(resource.into()),
                    millis: DELAY_MS,
                }],
            });
    }

    fn undelay(&self) {
        self.env.cluster.as_ref().unwrap().faults().clear();
    }

    /// Kills the controller and starts a new one, as a crash and a restart would.
    async fn crash_and_restart(&mut self) {
        self.env.controller.take().unwrap().kill().await;
        self.undelay();
        self.env.start_controller().await;
    }

    /// For `hold`, the managed object keeps the move's result: the restarted controller never
    /// undoes it, not even for a moment.
    async fn assert_kept(&self, m: Move, hold: Duration) {
        let until = Instant::now() + hold;
        while Instant::now() < until {
            let now = self.world(m).await;
            assert_eq!(
                now,
                Some(m.target()),
                "{m:?} was undone after the restart; history: {:?}",
                self.env.status("web").await.map(|s| s
                    .history
                    .iter()
                    .map(|h| h.action.clone())
                    .collect::<Vec<_>>())
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The move is recorded once in history: neither lost nor repeated by the restart.
    async fn assert_recorded_once(&self, m: Move, before: usize) {
        let s = self.env.status("web").await.unwrap();
        let n = s.history.iter().filter(|h| h.action == m.action()).count();
        assert_eq!(
            n,
            before + 1,
            "{m:?} recorded {} time(s) since it was caused: {:?}",
            n - before,
            s.history.iter().map(|h| &h.action).collect::<Vec<_>>()
        );
    }

    async fn history_count(&self, m: Move) -> usize {
        self.env
            .status("web")
            .await
            .map(|s| s.history.iter().filter(|h| h.action == m.action()).count())
            .unwrap_or(0)
    }
}

/// Waits until the move before `m` is decided and in effect, so that `m` is the only write in
/// flight when the controller is killed.
async fn before(inc: &Incident, m: Move) {
    let Some(prev) = MOVES
        .iter()
        .position(|x| std::mem::discriminant(x) == std::mem::discriminant(&m))
        .and_then(|i| i.checked_sub(1))
        .map(|i| MOVES[i])
    else {
        return;
    };
    inc.env
        .wait_status("web", T, "the previous move in effect", |s| {
            prev.decided(s) && is_true(s, "InEffect")
        })
        .await;
    eventually(T, || async {
        (inc.world(prev).await == Some(prev.target())).then_some(())
    })
    .await;
}

const MOVES: [Move; 4] = [
    Move::Failover,
    Move::ScaleUp,
    Move::Failback,
    Move::ScaleDown,
];

/// Order 1: the managed write lands, the status write that records the decision is slow (held
/// back by the plane), and the controller is killed right after the managed write. Before the
/// write-ahead record, the restarted controller resumed from the old status and undid all four
/// moves (emergency 2 → 0 mid-incident, the Ingress back on the failing class, ...).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_the_managed_write_never_undoes_it() {
    let mut inc = Incident::start("crash-after-write").await;
    for m in MOVES {
        before(&inc, m).await;
        let count = inc.history_count(m).await;
        inc.delay("patch", "failoverpolicies/status");
        inc.cause(m).await;
        // The managed write lands: kill at once, while its status write is held back.
        eventually(T, || async {
            (inc.world(m).await == Some(m.target())).then_some(())
        })
        .await;
        inc.crash_and_restart().await;
        inc.assert_kept(m, Duration::from_secs(5)).await;
        inc.assert_recorded_once(m, count).await;
    }
}

/// Order 2: the decision is recorded in status, the managed write is slow (held back by the
/// plane), and the controller is killed in between. The restarted controller carries the
/// decision out (once: no second history entry) and never moves the other way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_the_decision_is_recorded_carries_it_out() {
    let mut inc = Incident::start("crash-before-write").await;
    for m in MOVES {
        before(&inc, m).await;
        let count = inc.history_count(m).await;
        let start = inc.world(m).await;
        inc.delay("patch", m.write());
        inc.cause(m).await;
        // The decision is in status and the managed write has not landed: kill now.
        let s = inc
            .env
            .wait_status("web", T, "the decision recorded", |s| m.decided(s))
            .await;
        assert_eq!(
            inc.world(m).await,
            start,
            "{m:?}: the decision must be in status before the object changes (phase {:?})",
            s.phase
        );
        inc.crash_and_restart().await;
        eventually(T, || async {
            (inc.world(m).await == Some(m.target())).then_some(())
        })
        .await;
        inc.assert_kept(m, Duration::from_secs(3)).await;
        inc.assert_recorded_once(m, count).await;
    }
}

/// A replica with leader election on (lease 3 s), as the chart runs two.
fn replica(env: &Env, id: &str) -> ingress_failover::controller::Options {
    let mut o = env.controller_options();
    o.leader_election = true;
    o.identity = id.to_string();
    o.lease_seconds = 3;
    o
}

/// The same window with a leader change instead of a restart: the leader is killed right after
/// the managed write, while its status write is held back, and the standby takes over. The new
/// leader resumes from status and must not undo the move (issue 12 item 4: "a leadership change
/// in the same window would do the same").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_change_after_the_managed_write_never_undoes_it() {
    let inc = Incident::prepare("crash-leader").await;
    let mut replicas = vec![
        inc.env
            .spawn_controller(replica(&inc.env, "replica-a"))
            .await,
        inc.env
            .spawn_controller(replica(&inc.env, "replica-b"))
            .await,
    ];
    inc.normal().await;
    let mut next = 0;
    for m in [Move::Failover, Move::ScaleUp] {
        before(&inc, m).await;
        let count = inc.history_count(m).await;
        inc.delay("patch", "failoverpolicies/status");
        inc.cause(m).await;
        eventually(T, || async {
            (inc.world(m).await == Some(m.target())).then_some(())
        })
        .await;
        let leader = replicas
            .iter()
            .position(|r| r.running.ctx.metrics.leader.get() == 1)
            .expect("one replica leads");
        replicas.remove(leader).kill().await;
        inc.undelay();
        // The standby takes the lease within about 3 s; watch through the takeover and after it.
        inc.assert_kept(m, Duration::from_secs(8)).await;
        assert!(
            replicas
                .iter()
                .any(|r| r.running.ctx.metrics.leader.get() == 1),
            "the standby took over"
        );
        inc.assert_recorded_once(m, count).await;
        next += 1;
        replicas.push(
            inc.env
                .spawn_controller(replica(&inc.env, &format!("replica-{next}")))
                .await,
        );
    }
    for r in replicas {
        r.kill().await;
    }
}
