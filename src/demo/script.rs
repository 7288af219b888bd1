//! The incident the demo plays, step by step, each step waiting (with a deadline) for the
//! operator's reaction before the next one — never a fixed sleep standing in for a decision.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kube::{Api, Client};

use crate::api::{FailoverPolicy, FailoverPolicyStatus, Phase, condition_types as ct};

use super::timeline::{Seen, Timeline};
use super::{NS, POLICY, Pace};
use testkit::farm::{Behavior, Farm};

/// Steps `play` checks when the incident runs to its end.
const STEPS: usize = 9;

/// What the script managed to play.
#[derive(Debug, Default)]
pub struct Outcome {
    pub steps: Vec<(String, bool)>,
}

async fn status(client: &Client) -> Option<FailoverPolicyStatus> {
    let api: Api<FailoverPolicy> = Api::namespaced(client.clone(), NS);
    api.get_opt(POLICY)
        .await
        .ok()
        .flatten()
        .and_then(|p| p.status)
}

/// Waits until `pred` holds for the policy's status, up to the pace's deadline.
async fn until(client: &Client, pace: &Pace, pred: impl Fn(&FailoverPolicyStatus) -> bool) -> bool {
    let deadline = Instant::now() + pace.deadline;
    while Instant::now() < deadline {
        if status(client).await.is_some_and(|s| pred(&s)) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

fn is_true(s: &FailoverPolicyStatus, t: &str) -> bool {
    s.conditions
        .iter()
        .any(|c| c.type_ == t && c.status == "True")
}

async fn primary_pods(client: &Client) -> Vec<SocketAddr> {
    testkit::pods::slice_addresses(client, NS, "kubernetes.io/service-name=web").await
}

pub async fn play(
    client: &Client,
    farm: &Farm,
    lb: SocketAddr,
    pace: &Pace,
    tl: &Timeline,
) -> Outcome {
    let mut out = Outcome::default();
    let mut step = |name: &str, ok: bool| {
        if !ok {
            tl.say(&format!(
                "✗ expected transition did not happen in time: {name}"
            ));
        }
        out.steps.push((name.to_string(), ok));
        ok
    };

    tl.say("four primary backends start; the operator publishes them through Service web-healthy");
    let ok = until(client, pace, |s| {
        s.phase == Phase::Normal && s.primary.as_ref().is_some_and(|p| p.healthy == 4)
    })
    .await;
    if !step("Normal with 4/4 healthy", ok) {
        return out;
    }
    let pods = primary_pods(client).await;
    if pods.len() < 4 {
        step("four primary pods", false);
        return out;
    }
    tokio::time::sleep(pace.beat).await;

    tl.say(&format!("10:00 backend {} starts answering 503", pods[0]));
    let _ = farm.set(pods[0], Behavior::Status(503)).await;
    let ok = until(client, pace, |s| {
        s.primary.as_ref().is_some_and(|p| p.healthy == 3)
    })
    .await;
    step("first backend ejected", ok);
    tokio::time::sleep(pace.beat).await;

    tl.say(&format!(
        "10:20 backend {} stops accepting connections",
        pods[1]
    ));
    let _ = farm.set(pods[1], Behavior::Refuse).await;
    tokio::time::sleep(pace.beat).await;
    tl.say(&format!(
        "10:40 backend {} becomes slow (3 s per answer)",
        pods[2]
    ));
    let _ = farm
        .set(pods[2], Behavior::Slow(Duration::from_secs(3)))
        .await;
    let ok = until(client, pace, |s| is_true(s, ct::EMERGENCY_ACTIVE)).await;
    step("emergency capacity engaged (healthy < 50%)", ok);
    let ok = until(client, pace, |s| {
        s.emergency
            .as_ref()
            .and_then(|e| e.health.as_ref())
            .is_some_and(|h| h.published >= 1)
    })
    .await;
    step("emergency pods published once ready", ok);
    tokio::time::sleep(pace.beat).await;

    tl.say(&format!(
        "11:00 the primary load balancer's health URL http://{lb}/healthz starts failing"
    ));
    let _ = farm.set(lb, Behavior::Status(503)).await;
    let ok = until(client, pace, |s| s.phase == Phase::FailedOver).await;
    step("traffic moved to the backup ingress class", ok);
    tokio::time::sleep(pace.beat).await;

    tl.say("11:30 the on-call engineer restarts the primary backends");
    for p in &pods[..3] {
        let _ = farm.set(*p, Behavior::Healthy).await;
    }
    let ok = until(client, pace, |s| {
        s.primary.as_ref().is_some_and(|p| p.healthy == 4)
    })
    .await;
    step("primary backends back", ok);
    tl.say("11:45 the primary load balancer recovers");
    let _ = farm.set(lb, Behavior::Healthy).await;
    let ok = until(client, pace, |s| {
        s.primary_weight_percent.is_some_and(|w| w > 0 && w < 100)
    })
    .await;
    step("gradual failback started after the hold-down", ok);
    let ok = until(client, pace, |s| s.primary_weight_percent == Some(100)).await;
    step("failback complete", ok);
    let ok = until(client, pace, |s| {
        s.phase == Phase::Normal
            && s.emergency
                .as_ref()
                .is_some_and(|e| e.desired_replicas == Some(0))
    })
    .await;
    step("emergency capacity scaled down last; back to Normal", ok);
    out
}

/// Prints the verdict; true when every step and every expected decision happened.
pub fn report(outcome: &Outcome, seen: &Seen) -> bool {
    const EXPECTED: [&str; 7] = [
        "EmergencyActivate",
        "LoadBalancerDown",
        "IngressFailover",
        "IngressFailback",
        "FailbackComplete",
        "EmergencyRelease",
        "EmergencyScaleDown",
    ];
    println!();
    println!("summary");
    let mut ok = true;
    for (name, passed) in &outcome.steps {
        println!("  {} {name}", if *passed { "✓" } else { "✗" });
        ok &= passed;
    }
    for a in EXPECTED {
        let passed = seen.actions.contains(a);
        if !passed {
            println!("  ✗ decision {a} never recorded");
        }
        ok &= passed;
    }
    let steps_complete = outcome.steps.len() == STEPS;
    if !steps_complete {
        println!("  ✗ the incident was cut short");
    }
    ok &= steps_complete;
    println!(
        "  {} of {} primary backends were ejected at some point",
        seen.primaries_ejected.len(),
        seen.primaries.len()
    );
    println!(
        "{}",
        if ok {
            "demo passed: every expected transition happened"
        } else {
            "demo FAILED: see the ✗ lines above"
        }
    );
    ok
}
