//! `--probe-allowlist` through the real binary (issue 13): `run` and `check` accept exactly the
//! forms docs/security.md documents and refuse every other one with the same message (as does
//! `simulate`, which takes the same flags), before doing anything else. (`run` once refused `.example.com`, the documented form, while `check`
//! refused `*.example.com`.)
//!
//! `run` is pointed at a kubeconfig whose API server is a closed loopback port: an entry it
//! accepts gets it as far as serving /metrics; one it refuses makes it exit at once.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_ingress-failover");

/// The documented forms (docs/security.md), each with a health URL host it must permit.
const ACCEPTED: &[(&str, &str)] = &[
    ("10.0.0.0/8", "10.1.2.3"),
    ("fd00::/8", "[fd00::7]"),
    ("10.1.2.3", "10.1.2.3"),
    ("2001:db8::1", "[2001:db8::1]"),
    ("[2001:db8::1]", "[2001:db8::1]"),
    ("lb.example.com", "lb.example.com"),
    ("LB.Example.com.", "lb.example.com"),
    (".example.com", "lb.example.com"),
    ("*.example.com", "lb.example.com"),
];

const REFUSED: &[&str] = &[
    "*",
    ".",
    "*.",
    "**.example.com",
    "*example.com",
    "lb.example.com:8080",
    "http://lb.example.com/",
    "10.0.0.0/33",
    "10.0.1.300",
    "a b",
];

/// A directory of this test's own: the tests of this file run in parallel and write policy
/// files of the same names (one test truncating a file another was reading failed CI once).
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("if-allowlist-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn kubeconfig(dir: &Path) -> PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: \"http://127.0.0.1:1\"}}]\nusers: [{name: u, user: {}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n",
    )
    .unwrap();
    path
}

/// A valid policy whose health URL is on `host`.
fn policy(dir: &Path, host: &str) -> PathBuf {
    let name = host.replace(|c: char| !c.is_ascii_alphanumeric(), "_");
    let path = dir.join(format!("policy-{name}.yaml"));
    std::fs::write(
        &path,
        format!(
            "apiVersion: ingressfailover.io/v1alpha1\nkind: FailoverPolicy\nmetadata: {{name: web, namespace: shop}}\nspec:\n  backends: {{primary: {{service: {{name: web}}}}}}\n  managedService: {{name: web-failover}}\n  ingress:\n    ingresses: [web]\n    primaryClass: nginx\n    backupClass: nginx-backup\n    health: {{url: \"http://{host}/healthz\"}}\n"
        ),
    )
    .unwrap();
    path
}

fn check(entry: &str, file: &Path) -> (Option<i32>, String, String) {
    let out = Command::new(BIN)
        .args(["check", "--probe-allowlist", entry])
        .arg(file)
        .output()
        .expect("check runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// What `run` does with `entry`: `Ok(())` once it serves /metrics (the flags parsed; it is then
/// stopped), `Err((code, stderr))` when it exits first.
fn run(entry: &str, kubeconfig: &Path) -> Result<(), (Option<i32>, String)> {
    let mut child = Command::new(BIN)
        .args([
            "run",
            "--leader-election=false",
            "--metrics-addr",
            "127.0.0.1:0",
            "--log-format",
            "text",
            "--probe-allowlist",
            entry,
        ])
        .env("KUBECONFIG", kubeconfig)
        .env_remove("INGRESS_FAILOVER_PROBE_ALLOWLIST")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run starts");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("serving /metrics") {
                let _ = tx.send(());
                return;
            }
        }
    });
    let served = rx.recv_timeout(Duration::from_secs(30)).is_ok();
    if served {
        let _ = child.kill();
        let _ = child.wait();
        return Ok(());
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    Err((
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[test]
fn check_accepts_the_documented_forms_and_they_permit_what_they_say() {
    let dir = scratch("check_accepts_the_documented_forms_and_they_permit_what_they_say");
    for (entry, host) in ACCEPTED {
        let (code, stdout, stderr) = check(entry, &policy(&dir, host));
        assert_eq!(
            code,
            Some(0),
            "check --probe-allowlist {entry:?} with a health URL on {host}: {stdout}{stderr}"
        );
    }
    // A suffix permits the names below the domain, not the domain itself.
    for entry in [".example.com", "*.example.com"] {
        let (code, stdout, _) = check(entry, &policy(&dir, "example.com"));
        assert_eq!(code, Some(1), "{entry}: {stdout}");
        assert!(
            stdout.contains("is not in the operator's --probe-allowlist"),
            "{stdout}"
        );
    }
}

#[test]
fn run_and_check_refuse_the_other_forms_with_the_same_message() {
    let dir = scratch("run_and_check_refuse_the_other_forms_with_the_same_message");
    let kubeconfig = kubeconfig(&dir);
    let file = policy(&dir, "lb.example.com");
    for entry in REFUSED {
        let (code, stdout, check_err) = check(entry, &file);
        assert_eq!(code, Some(2), "check {entry:?}: {stdout}{check_err}");
        let want = format!(
            "error: --probe-allowlist entry {:?} is not a CIDR",
            entry.trim()
        );
        assert!(check_err.starts_with(&want), "check {entry:?}: {check_err}");
        let simulate = Command::new(BIN)
            .args([
                "simulate",
                "--probe-allowlist",
                entry,
                "--scenario",
                "unread.yaml",
            ])
            .arg("--policy")
            .arg(&file)
            .output()
            .expect("simulate runs");
        assert_eq!(simulate.status.code(), Some(2), "simulate {entry:?}");
        assert_eq!(
            String::from_utf8_lossy(&simulate.stderr).trim(),
            check_err.trim(),
            "simulate and check say the same"
        );
        let (code, run_err) = run(entry, &kubeconfig).expect_err("run must refuse the entry");
        assert_eq!(code, Some(1), "run {entry:?}: {run_err}");
        assert_eq!(
            run_err.trim(),
            check_err.trim(),
            "run and check say the same"
        );
    }
}

#[test]
fn run_accepts_the_documented_forms() {
    let dir = scratch("run_accepts_the_documented_forms");
    let kubeconfig = kubeconfig(&dir);
    for (entry, _) in ACCEPTED {
        if let Err((code, stderr)) = run(entry, &kubeconfig) {
            panic!("run --probe-allowlist {entry:?} exited {code:?}: {stderr}");
        }
    }
}
