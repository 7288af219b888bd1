//! Durations through the real binaries (issue 13): scenario files and `kubectl failover override
//! --for` read durations by one rule (`src/duration.rs`), so a form one accepts the other does.
//! (Before, a scenario took `1d` and refused `1 hour`; the plugin did the opposite.)

use std::path::{Path, PathBuf};
use std::process::Command;

/// Forms people write, every one accepted by both.
const ACCEPTED: &[&str] = &[
    "45m", "2h", "1h30m", "1h 30m", "1 hour", "PT90M", "1d", "90000ms",
];
/// Forms refused by both, with the same words.
const REFUSED: &[&str] = &["90", "ten", "-5m", "1mo", "5x"];

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("if-durations-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const POLICY: &str = "\
apiVersion: ingressfailover.io/v1alpha1
kind: FailoverPolicy
metadata: {name: t, namespace: default}
spec:
  backends:
    primary:
      addresses: [10.0.1.10:8080, 10.0.1.11:8080]
  managedService: {name: m}
";

/// `simulate` with a scenario lasting `duration`: Ok(stdout) or Err(stderr).
fn simulate(dir: &Path, duration: &str) -> Result<String, String> {
    let policy = dir.join("policy.yaml");
    std::fs::write(&policy, POLICY).unwrap();
    let scenario = dir.join(format!("scenario-{}.yaml", duration.replace(' ', "_")));
    std::fs::write(
        &scenario,
        format!("start: 2026-11-29T10:00:00Z\nduration: \"{duration}\"\nresolution: 1m\n"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ingress-failover"))
        .args(["simulate", "--output", "json", "--policy"])
        .arg(&policy)
        .arg("--scenario")
        .arg(&scenario)
        .output()
        .expect("simulate runs");
    if out.status.code() == Some(2) {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    } else {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// `kubectl failover override --for duration` against an API server that is a closed loopback
/// port: Ok(stderr) when the flag parsed (it then fails to connect), Err(stderr) when clap
/// refused it.
fn override_for(dir: &Path, duration: &str) -> Result<String, String> {
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: \"http://127.0.0.1:1\"}}]\nusers: [{name: u, user: {}}]\ncontexts: [{name: x, context: {cluster: c, user: u, namespace: default}}]\ncurrent-context: x\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kubectl-failover"))
        .args(["override", "freeze", "web", "--reason", "drill"])
        .arg(format!("--for={duration}"))
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .output()
        .expect("kubectl-failover runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    match out.status.code() {
        Some(2) => Err(stderr),
        _ => Ok(stderr),
    }
}

#[test]
fn simulate_and_the_plugin_accept_the_same_forms() {
    let dir = scratch();
    for form in ACCEPTED {
        let stdout = simulate(&dir, form).unwrap_or_else(|e| panic!("simulate {form:?}: {e}"));
        assert!(stdout.contains("summary"), "{form}: {stdout}");
        let stderr = override_for(&dir, form).unwrap_or_else(|e| panic!("--for {form:?}: {e}"));
        assert!(!stderr.contains("is not a duration"), "{form}: {stderr}");
    }
}

#[test]
fn simulate_and_the_plugin_refuse_the_same_forms_in_the_same_words() {
    let dir = scratch();
    for form in REFUSED {
        let want = format!("{form:?} is not a duration like 45s, 90m, 2h or 1h30m");
        let err = simulate(&dir, form).expect_err(form);
        assert!(err.contains(&want), "simulate {form:?}: {err}");
        let err = override_for(&dir, form).expect_err(form);
        assert!(err.contains(&want), "--for {form:?}: {err}");
    }
}
