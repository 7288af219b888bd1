//! The operator's logs as a collector reads them (issue 15, logs): written to a pipe or a file,
//! they carry no ANSI colour codes, and `--log-format json` gives one JSON object per line.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Runs `run` against an API server that refuses connections (a closed loopback port) for a
/// moment and returns what it logged to stdout.
fn logs_of_run(extra: &[&str]) -> String {
    let dir = std::env::temp_dir().join(format!("if-logs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: \"http://127.0.0.1:9\"}}]\nusers: [{name: u, user: {}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ingress-failover"))
        .args([
            "run",
            "--leader-election=false",
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .args(extra)
        .env("KUBECONFIG", &kubeconfig)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run starts");
    std::thread::sleep(Duration::from_millis(1500));
    let _ = child.kill();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let _ = child.wait();
    out
}

#[test]
fn logs_to_a_pipe_have_no_colour_codes() {
    let out = logs_of_run(&["--log-format", "text"]);
    assert!(out.contains("serving /metrics"), "{out}");
    assert!(
        !out.contains('\u{1b}'),
        "ANSI escape in piped logs: {out:?}"
    );
}

#[test]
fn json_logs_are_one_object_per_line() {
    let out = logs_of_run(&["--log-format", "json"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(!lines.is_empty());
    for line in lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
    }
}
