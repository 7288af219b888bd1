//! `ingress-failover check` against the corpus: every file under `tests/corpus/invalid/` makes one
//! mistake and names, in its first line `# expect: ...`, text its error line must contain; every
//! file under `tests/corpus/valid/` must pass without a single problem or warning.

use std::path::{Path, PathBuf};

use ingress_failover::check::{EXIT_INVALID, EXIT_VALID, check_files_at};
use ingress_failover::validation::ValidationContext;
use jiff::Timestamp;

/// The operator flags the corpus assumes: `--ingress-controller-namespace ingress-nginx` and
/// `--probe-allowlist 10.0.0.0/8,.example.internal`.
fn ctx() -> ValidationContext {
    ValidationContext {
        allowed_ingress_controller_namespaces: vec!["ingress-nginx".into()],
        probe_allowlist: vec!["10.0.0.0/8".into(), ".example.internal".into()],
    }
}

fn now() -> Timestamp {
    "2026-11-29T12:00:00Z".parse().unwrap()
}

fn corpus(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn expectation(file: &Path) -> String {
    let text = std::fs::read_to_string(file).unwrap();
    text.lines()
        .next()
        .and_then(|l| l.strip_prefix("# expect: "))
        .unwrap_or_else(|| panic!("{} must start with '# expect: ...'", file.display()))
        .to_string()
}

#[test]
fn corpus_is_large_enough() {
    assert!(corpus("invalid").len() >= 24);
    assert!(corpus("valid").len() >= 3);
}

#[test]
fn every_invalid_policy_is_refused_with_its_reason_and_nothing_else() {
    let mut failures = Vec::new();
    for file in corpus("invalid") {
        let expect = expectation(&file);
        let report = check_files_at(std::slice::from_ref(&file), &ctx(), now());
        let name = file.display().to_string();
        let ok = report.exit_code == EXIT_INVALID
            && report.lines.len() == 1
            && report.lines[0].starts_with(&name)
            && report.lines[0].contains(&expect);
        if !ok {
            failures.push(format!(
                "{}: exit {}, expected one line containing {expect:?}, got:\n    {}",
                file.file_name().unwrap().to_string_lossy(),
                report.exit_code,
                report.lines.join("\n    ")
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn invalid_expectations_are_all_different() {
    let mut expectations: Vec<String> = corpus("invalid").iter().map(|f| expectation(f)).collect();
    let total = expectations.len();
    expectations.sort();
    expectations.dedup();
    assert_eq!(
        expectations.len(),
        total,
        "two corpus files test the same mistake"
    );
}

#[test]
fn every_valid_policy_passes_without_findings() {
    for file in corpus("valid") {
        let report = check_files_at(std::slice::from_ref(&file), &ctx(), now());
        assert_eq!(
            report.exit_code,
            EXIT_VALID,
            "{}: {:#?}",
            file.display(),
            report.lines
        );
        for line in &report.lines {
            assert!(
                line.ends_with(": valid") || line.contains(": skipped "),
                "{}: unexpected finding: {line}",
                file.display()
            );
        }
        assert!(
            report.lines.iter().any(|l| l.ends_with(": valid")),
            "{}: no policy found",
            file.display()
        );
    }
}

#[test]
fn all_files_at_once_report_every_file_and_fail() {
    let mut files = corpus("valid");
    files.extend(corpus("invalid"));
    let report = check_files_at(&files, &ctx(), now());
    assert_eq!(report.exit_code, EXIT_INVALID);
    for file in &files {
        let name = file.display().to_string();
        assert!(
            report.lines.iter().any(|l| l.starts_with(&name)),
            "{name} missing from the report"
        );
    }
}

/// The real binary: same lines, same exit code as the library, and no panic.
#[test]
fn binary_matches_library() {
    let mut files = corpus("valid");
    files.extend(corpus("invalid"));
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ingress-failover"))
        .arg("check")
        .args(["--ingress-controller-namespace", "ingress-nginx"])
        .args(["--probe-allowlist", "10.0.0.0/8,.example.internal"])
        .args(&files)
        .output()
        .expect("run ingress-failover");
    let report = check_files_at(&files, &ctx(), Timestamp::now());
    assert_eq!(output.status.code(), Some(report.exit_code));
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(stdout.lines().collect::<Vec<_>>(), report.lines);
    assert!(
        !String::from_utf8_lossy(&output.stderr).contains("panicked"),
        "no panic, ever"
    );
}

/// The shipped example policies and the e2e drill's policy pass the operator's own rules (with
/// the flags the chart and the e2e install pass).
#[test]
fn shipped_policies_are_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("manifests/examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.push(root.join("e2e/manifests/policy.yaml"));
    files.sort();
    let ctx = ValidationContext {
        allowed_ingress_controller_namespaces: vec![
            "ingress-nginx".into(),
            "ingress-primary".into(),
        ],
        probe_allowlist: vec!["10.0.0.0/8".into(), ".example.internal".into()],
    };
    let report = check_files_at(&files, &ctx, now());
    assert_eq!(report.exit_code, 0, "{:#?}", report.lines);
}

/// Issue 14: `check` refuses a failback step shorter than the DNS TTL, naming both fields, with
/// the exit code of an invalid policy (the rule is CEL: the API server refuses it too).
#[test]
fn check_refuses_a_failback_step_shorter_than_the_dns_ttl() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus/invalid/dns-step-shorter-than-ttl.yaml");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ingress-failover"))
        .arg("check")
        .args(["--probe-allowlist", "10.0.0.0/8,.example.internal"])
        .arg(&file)
        .output()
        .expect("run ingress-failover");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(output.status.code(), Some(EXIT_INVALID), "{stdout}");
    assert!(
        stdout.contains("spec.recovery.stepSeconds") && stdout.contains("spec.dns.ttlSeconds"),
        "{stdout}"
    );
}
