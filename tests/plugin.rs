//! `kubectl failover` against a live incident, through its command line (issue 15): the
//! embedded plane by default, a real cluster when `INGRESS_FAILOVER_KUBECONFIG` is set.

#[path = "support/cluster.rs"]
mod cluster;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use cluster::*;
use ingress_failover::api::{Phase, condition_types as ct};
use ingress_failover::demo::farm::Behavior;
use serde_json::json;

const T: Duration = Duration::from_secs(30);

/// A kubeconfig file for the test's cluster.
fn kubeconfig(env: &Env) -> PathBuf {
    if let Ok(path) = std::env::var("INGRESS_FAILOVER_KUBECONFIG") {
        return PathBuf::from(path);
    }
    let path = std::env::temp_dir().join(format!("kubectl-failover-{}.yaml", env.ns));
    std::fs::write(&path, env.cluster.as_ref().unwrap().kubeconfig_yaml()).unwrap();
    path
}

/// Runs `kubectl failover ARGS -n NS`; returns (success, stdout, stderr).
fn plugin(env: &Env, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kubectl-failover"))
        .args(args)
        .args(["-n", &env.ns, "--kubeconfig"])
        .arg(kubeconfig(env))
        .output()
        .expect("kubectl-failover runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(env: &Env, args: &[&str]) -> String {
    let (success, out, err) = plugin(env, args);
    assert!(success, "kubectl failover {args:?} failed: {err}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incident_seen_and_steered_from_kubectl_failover() {
    let mut env = Env::start("plugin").await;
    let b = env.backends(2).await;
    let lb = env.backend_addr();
    env.set(lb, Behavior::Healthy).await;
    for o in ingress_objects("nginx-primary") {
        env.apply_json(o).await;
    }
    env.apply_json(policy(
        "web",
        &b,
        json!({"ingress": {"ingresses": ["web"], "primaryClass": "nginx-primary", "backupClass": "nginx-backup",
                           "health": {"url": format!("http://{lb}/healthz")}},
               "recovery": {"holdDownSeconds": 600}}),
    ))
    .await;
    env.start_controller().await;
    env.wait_status("web", T, "Normal", |s| s.phase == Phase::Normal)
        .await;

    // The load balancer dies: status and explain say where traffic is and why.
    env.set(lb, Behavior::Status(503)).await;
    env.wait_status("web", T, "failed over", |s| {
        is_true(s, ct::FAILOVER_ACTIVE) && is_true(s, ct::IN_EFFECT)
    })
    .await;
    let status = ok(&env, &["status", "web"]);
    eprintln!("$ kubectl failover status web\n{status}");
    assert!(status.contains("FailedOver"), "{status}");
    assert!(
        status.contains("on nginx-backup (decided nginx-backup)"),
        "{status}"
    );
    assert!(status.contains("Primary LB: Down"), "{status}");
    assert!(
        status.contains("failback waits for the primary load balancer"),
        "{status}"
    );
    let explain = ok(&env, &["explain", "web"]);
    eprintln!("$ kubectl failover explain web\n{explain}");
    assert!(explain.contains("Traffic is on nginx-backup"), "{explain}");
    assert!(explain.contains("PrimaryLoadBalancerDown"), "{explain}");
    let history = ok(&env, &["history", "web"]);
    assert!(history.contains("IngressFailover"), "{history}");

    // It comes back: the hold-down timer is shown.
    env.set(lb, Behavior::Healthy).await;
    let status = eventually(T, || async {
        let s = ok(&env, &["status", "web"]);
        s.contains("failback in about").then_some(s)
    })
    .await;
    assert!(status.contains("hold-down 600s"), "{status}");

    // A person takes charge, for a while, with a reason.
    let (success, _, err) = plugin(&env, &["override", "force-primary", "web", "--reason", "x"]);
    assert!(
        !success && err.contains("--for"),
        "an override needs an end: {err}"
    );
    let out = ok(
        &env,
        &[
            "override",
            "force-primary",
            "web",
            "--for",
            "30m",
            "--reason",
            "vendor says LB fixed",
        ],
    );
    assert!(out.contains("override ForcePrimary for 30m"), "{out}");
    eventually(T, || async {
        (env.ingress_class("web").await.as_deref() == Some("nginx-primary")).then_some(())
    })
    .await;
    let status = ok(&env, &["status", "web"]);
    // 30 minutes from the command, to the second: "30m" or "29m5xs" a moment later.
    assert!(
        status.contains("override ForcePrimary expires in 30m")
            || status.contains("override ForcePrimary expires in 29m"),
        "{status}"
    );
    let list = ok(&env, &["status"]);
    assert!(
        list.lines()
            .any(|l| l.contains("/web") && l.contains("nginx-primary")),
        "{list}"
    );

    // Hand back: the operator decides again; the load balancer is healthy, so traffic stays.
    ok(&env, &["resume", "web"]);
    let p = env.policies().get("web").await.unwrap();
    assert!(p.spec.r#override.is_none());
    env.wait_status("web", T, "the override gone from status", |s| {
        s.r#override.is_none()
    })
    .await;
    let explain = ok(&env, &["explain", "web"]);
    assert!(!explain.contains("A person is in charge"), "{explain}");
    assert_eq!(
        env.ingress_class("web").await.as_deref(),
        Some("nginx-primary")
    );

    // Reset: the annotation the engine acts on once.
    ok(&env, &["reset", "web"]);
    let p = env.policies().get("web").await.unwrap();
    assert!(
        p.metadata
            .annotations
            .unwrap_or_default()
            .contains_key("ingressfailover.io/reset-flap-budget")
    );
    let s = env
        .wait_status("web", T, "the reset acted upon", |s| {
            s.flap_budget_reset.is_some()
        })
        .await;
    assert!(
        s.flap_budgets.iter().all(|b| b.transitions.is_empty()),
        "{:?}",
        s.flap_budgets
    );
}

/// `demo --keep` leaves everything running after the story, and `kubectl failover` reads it:
/// the policy back to Normal, with the whole incident in its history (issue 15).
#[test]
fn kubectl_failover_reads_the_demo_kept_running() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    if std::env::var_os("INGRESS_FAILOVER_KUBECONFIG").is_some() {
        return; // the demo brings its own embedded plane
    }
    let kubeconfig =
        std::env::temp_dir().join(format!("demo-keep-{}.kubeconfig", std::process::id()));
    let mut demo = Command::new(env!("CARGO_BIN_EXE_ingress-failover"))
        .args(["demo", "--fast", "--keep", "--kubeconfig"])
        .arg(&kubeconfig)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("demo starts");
    let mut lines = BufReader::new(demo.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    let kept = loop {
        match lines.next() {
            Some(Ok(line)) => {
                let done = line.starts_with("kept running for inspection");
                seen.push(line);
                if done {
                    break true;
                }
            }
            _ => break false,
        }
    };
    assert!(kept, "the demo did not stay up:\n{}", seen.join("\n"));
    assert!(
        seen.iter().any(|l| l.starts_with("demo passed")),
        "{}",
        seen.join("\n")
    );
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_kubectl-failover"))
            .args(args)
            .args(["-n", "demo", "--kubeconfig"])
            .arg(&kubeconfig)
            .output()
            .expect("kubectl-failover runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let status = run(&["status", "web"]);
    eprintln!("$ kubectl failover status web -n demo\n{status}");
    assert!(
        status.starts_with("FailoverPolicy demo/web: Normal"),
        "{status}"
    );
    let history = run(&["history", "web"]);
    eprintln!("$ kubectl failover history web -n demo\n{history}");
    for action in [
        "EmergencyActivate",
        "IngressFailover",
        "FailbackComplete",
        "EmergencyScaleDown",
    ] {
        assert!(history.contains(action), "{action} missing:\n{history}");
    }
    // The controller's /metrics, where the demo said (scripts/render-dashboard.sh scrapes it).
    let url = seen
        .iter()
        .find_map(|l| l.trim().strip_prefix("its metrics:"))
        .map(|u| u.trim().to_string())
        .unwrap_or_else(|| panic!("no metrics address printed:\n{}", seen.join("\n")));
    let addr = url
        .strip_prefix("http://")
        .and_then(|u| u.strip_suffix("/metrics"))
        .expect("http://ADDR/metrics");
    let metrics = {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).expect("metrics answer");
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        body
    };
    for series in [
        r#"ingress_failover_policy_phase{namespace="demo",name="web",phase="Normal"} 1"#,
        r#"ingress_failover_published_endpoints{namespace="demo",name="web"} 4"#,
        r#"ingress_failover_primary_weight_percent{namespace="demo",name="web"} 100"#,
    ] {
        assert!(metrics.contains(series), "{series} missing:\n{metrics}");
    }
    // SIGTERM ends the kept demo cleanly.
    let _ = Command::new("kill")
        .args(["-TERM", &demo.id().to_string()])
        .status();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let code = loop {
        if let Some(code) = demo.try_wait().expect("wait") {
            break Some(code);
        }
        if std::time::Instant::now() > deadline {
            let _ = demo.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        code.is_some_and(|c| c.success()),
        "the kept demo ends on SIGTERM with its verdict: {code:?}"
    );
}
