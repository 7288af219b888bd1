//! `ingress-failover check FILE...`: validates FailoverPolicy manifests offline with the
//! controller's own rules (CRD schema and defaults, CEL rules, then the operator's semantic
//! checks), so a mistake is found before `kubectl apply` rather than in an incident.
//!
//! Output is one line per finding, on stdout, in a shape that `grep` and editors understand:
//!
//! ```text
//! policy.yaml: shop/web: valid
//! policy.yaml:doc2: shop/api: spec.probe.intervalSeconds: Invalid value: 0: should be greater than or equal to 1
//! policy.yaml:doc2: shop/api: warning: spec.recovery.failbackSteps: ends at 50 %: ...
//! policy.yaml:doc3: skipped ConfigMap shop/settings (not a FailoverPolicy)
//! broken.yaml:7:3: YAML syntax error: ...
//! ```
//!
//! `:docN` appears when a file holds several documents. Exit code: 0 when every policy is valid,
//! 1 when any problem was found, 2 for usage errors (no file, unreadable file, bad operator
//! flags). Warnings never change the exit code.

use std::io::Read;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde_json::Value;

use crate::api::FailoverPolicy;
use crate::validation::{self, FieldError, ValidationContext, policy_warnings, validate_document};

/// Exit code: every document is fine.
pub const EXIT_VALID: i32 = 0;
/// Exit code: at least one policy (or file) has a problem.
pub const EXIT_INVALID: i32 = 1;
/// Exit code: the command could not do its job (no file given, file unreadable, bad flags).
pub const EXIT_USAGE: i32 = 2;

/// What `check` found: the lines to print (stdout) and the process exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// One line per finding, without trailing newline.
    pub lines: Vec<String>,
    /// [`EXIT_VALID`], [`EXIT_INVALID`] or [`EXIT_USAGE`].
    pub exit_code: i32,
}

impl Report {
    fn new() -> Self {
        Report {
            lines: Vec::new(),
            exit_code: EXIT_VALID,
        }
    }

    fn fail(&mut self, code: i32) {
        self.exit_code = self.exit_code.max(code);
    }

    fn merge(&mut self, other: Report) {
        self.lines.extend(other.lines);
        self.fail(other.exit_code);
    }
}

/// Runs `check` and prints its report to stdout; returns the exit code for `main`.
pub fn run(files: &[PathBuf], ctx: &ValidationContext) -> i32 {
    let report = check_files(files, ctx);
    for line in &report.lines {
        println!("{line}");
    }
    report.exit_code
}

/// Checks every file (`-` is stdin) and collects the findings, without printing.
pub fn check_files(files: &[PathBuf], ctx: &ValidationContext) -> Report {
    check_files_at(files, ctx, Timestamp::now())
}

/// [`check_files`] with the clock injected (warnings such as an expired override depend on it).
pub fn check_files_at(files: &[PathBuf], ctx: &ValidationContext, now: Timestamp) -> Report {
    let mut report = Report::new();
    if let Err(e) = ctx.check() {
        report.lines.push(format!("error: {e}"));
        report.fail(EXIT_USAGE);
        return report;
    }
    if files.is_empty() {
        report
            .lines
            .push("usage: ingress-failover check FILE... (use - for stdin)".into());
        report.fail(EXIT_USAGE);
        return report;
    }
    for file in files {
        let name = file.display().to_string();
        match read_source(file) {
            Ok(text) => report.merge(check_source_at(&name, &text, ctx, now)),
            Err(e) => {
                report.lines.push(format!("{name}: cannot read: {e}"));
                report.fail(EXIT_USAGE);
            }
        }
    }
    report
}

fn read_source(file: &Path) -> std::io::Result<String> {
    if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        Ok(text)
    } else {
        std::fs::read_to_string(file)
    }
}

/// Checks the YAML text of one source named `name` (a file name, or `-`).
pub fn check_source(name: &str, text: &str, ctx: &ValidationContext) -> Report {
    check_source_at(name, text, ctx, Timestamp::now())
}

/// [`check_source`] with the clock injected.
pub fn check_source_at(name: &str, text: &str, ctx: &ValidationContext, now: Timestamp) -> Report {
    validate_source_at(name, text, ctx, now).0
}

/// What `check` reports for one source, and the valid policies in it (typed, with the CRD's
/// defaults): `simulate` loads its starting policy through this, so it replays only what
/// `check` and the controller accept, and refuses the rest with `check`'s own lines.
pub fn validate_source_at(
    name: &str,
    text: &str,
    ctx: &ValidationContext,
    now: Timestamp,
) -> (Report, Vec<FailoverPolicy>) {
    let mut report = Report::new();
    let mut policies = Vec::new();
    let documents: Vec<Value> = match serde_saphyr::from_multiple(text) {
        Ok(documents) => documents,
        Err(e) => {
            report.lines.push(yaml_error_line(name, &e));
            report.fail(EXIT_INVALID);
            return (report, policies);
        }
    };
    // A `---` at the very end or between documents yields empty documents: nothing to check.
    let documents: Vec<(usize, Value)> = documents
        .into_iter()
        .enumerate()
        .filter(|(_, doc)| !doc.is_null())
        .collect();
    if documents.is_empty() {
        report
            .lines
            .push(format!("{name}: no document to check (the file is empty)"));
        report.fail(EXIT_INVALID);
        return (report, policies);
    }
    let numbered = documents.len() > 1;
    for (index, doc) in documents {
        let source = if numbered {
            format!("{name}:doc{}", index + 1)
        } else {
            name.to_string()
        };
        policies.extend(check_document(&mut report, &source, &doc, ctx, now));
    }
    (report, policies)
}

fn check_document(
    report: &mut Report,
    source: &str,
    doc: &Value,
    ctx: &ValidationContext,
    now: Timestamp,
) -> Option<FailoverPolicy> {
    let kind = doc.get("kind").and_then(Value::as_str);
    let api_version = doc.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let ours = api_version.split('/').next() == validation::API_VERSION.split('/').next();
    let id = object_id(doc);
    if let Some(kind) = kind
        && kind != validation::KIND
        && !ours
    {
        report.lines.push(format!(
            "{source}: skipped {kind} {id} (not a FailoverPolicy)"
        ));
        return None;
    }
    match validate_document(doc, ctx) {
        Ok(policy) => {
            for warning in policy_warnings(&policy, now) {
                report
                    .lines
                    .push(format!("{source}: {id}: warning: {warning}"));
            }
            report.lines.push(format!("{source}: {id}: valid"));
            Some(policy)
        }
        Err(errors) => {
            report.fail(EXIT_INVALID);
            for error in errors {
                report.lines.push(problem_line(source, &id, &error));
            }
            None
        }
    }
}

fn problem_line(source: &str, id: &str, error: &FieldError) -> String {
    if error.path.is_empty() {
        format!("{source}: {id}: {}", error.message)
    } else {
        format!("{source}: {id}: {}: {}", error.path, error.message)
    }
}

/// `namespace/name` as kubectl would resolve it: no namespace means `default`.
fn object_id(doc: &Value) -> String {
    let meta = doc.get("metadata");
    let namespace = meta
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("<unnamed>");
    format!("{namespace}/{name}")
}

/// One line for a YAML error: `FILE:LINE:COLUMN: YAML syntax error: what`, without the source
/// snippet serde-saphyr renders by default (it spans several lines).
fn yaml_error_line(name: &str, error: &serde_saphyr::Error) -> String {
    let plain = error.without_snippet().to_string();
    let mut message = plain
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
        // A hint for programmers embedding the parser, not for the person fixing the file.
        .replace(", set DuplicateKeyPolicy in Options if acceptable", "");
    match error.location() {
        Some(loc) if loc.line() > 0 => {
            // The position leads the line already; do not repeat it at the end.
            let suffix = format!(" at line {}, column {}", loc.line(), loc.column());
            if let Some(stripped) = message.strip_suffix(&suffix) {
                message = stripped.to_string();
            }
            format!(
                "{name}:{}:{}: YAML syntax error: {message}",
                loc.line(),
                loc.column()
            )
        }
        _ => format!("{name}: YAML syntax error: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> Timestamp {
        "2026-06-01T00:00:00Z".parse().unwrap()
    }

    const MINIMAL: &str = "apiVersion: ingressfailover.io/v1alpha1\nkind: FailoverPolicy\nmetadata:\n  name: web\n  namespace: shop\nspec:\n  backends:\n    primary:\n      service:\n        name: web\n  managedService:\n    name: web-failover\n";

    #[test]
    fn valid_policy_prints_one_valid_line() {
        let report = check_source_at("p.yaml", MINIMAL, &ValidationContext::default(), at());
        assert_eq!(report.lines, vec!["p.yaml: shop/web: valid"]);
        assert_eq!(report.exit_code, EXIT_VALID);
    }

    #[test]
    fn multi_document_files_number_documents_and_skip_other_kinds() {
        let text = format!(
            "{MINIMAL}---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n---\n{}",
            MINIMAL.replace(
                "managedService:\n    name: web-failover\n",
                "managedService:\n    name: web-failover\n  probe:\n    intervalSeconds: 0\n"
            )
        );
        let report = check_source_at("m.yaml", &text, &ValidationContext::default(), at());
        assert_eq!(report.exit_code, EXIT_INVALID);
        assert_eq!(report.lines[0], "m.yaml:doc1: shop/web: valid");
        assert_eq!(
            report.lines[1],
            "m.yaml:doc2: skipped ConfigMap default/cfg (not a FailoverPolicy)"
        );
        assert_eq!(
            report.lines[2],
            "m.yaml:doc3: shop/web: spec.probe.intervalSeconds: Invalid value: 0: should be greater than or equal to 1"
        );
    }

    #[test]
    fn yaml_errors_are_one_line_with_position() {
        let report = check_source_at(
            "bad.yaml",
            "kind: FailoverPolicy\nspec:\n  a: [1, 2\n  b: 3\n",
            &ValidationContext::default(),
            at(),
        );
        assert_eq!(report.exit_code, EXIT_INVALID);
        assert_eq!(report.lines.len(), 1);
        assert!(
            report.lines[0].starts_with("bad.yaml:"),
            "{:?}",
            report.lines
        );
        assert!(
            report.lines[0].contains("YAML syntax error"),
            "{:?}",
            report.lines
        );
    }

    #[test]
    fn hostile_or_odd_yaml_never_panics() {
        let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
        let bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n";
        let inputs = [
            deep.as_str(),
            bomb,
            "\tkind: FailoverPolicy\n",
            "kind: FailoverPolicy\nkind: FailoverPolicy\n",
            "? [a, b]\n: c\n",
            "42\n",
            "kind: FailoverPolicy\napiVersion: ingressfailover.io/v1alpha1\nspec: [1]\n",
            "kind: FailoverPolicy\napiVersion: ingressfailover.io/v1alpha1\nmetadata: {name: 7}\nspec: {}\n",
            "\u{feff}kind: [\n",
            "--- !!binary aGVsbG8=\n",
        ];
        for input in inputs {
            let report = check_source_at("x.yaml", input, &ValidationContext::default(), at());
            assert_eq!(
                report.exit_code, EXIT_INVALID,
                "{input:?}: {:?}",
                report.lines
            );
            assert!(!report.lines.is_empty());
            assert!(
                report.lines.iter().all(|l| !l.contains('\n')),
                "{:?}",
                report.lines
            );
        }
    }

    #[test]
    fn usage_errors_exit_2() {
        let ctx = ValidationContext::default();
        assert_eq!(check_files(&[], &ctx).exit_code, EXIT_USAGE);
        let report = check_files(&[PathBuf::from("/nonexistent/policy.yaml")], &ctx);
        assert_eq!(report.exit_code, EXIT_USAGE);
        assert!(report.lines[0].starts_with("/nonexistent/policy.yaml: cannot read:"));
        let bad_ctx = ValidationContext {
            probe_allowlist: vec!["not a cidr/99".into()],
            ..Default::default()
        };
        assert_eq!(
            check_files(&[PathBuf::from("-")], &bad_ctx).exit_code,
            EXIT_USAGE
        );
    }

    #[test]
    fn empty_file_is_a_problem() {
        let report = check_source_at("e.yaml", "# nothing\n", &ValidationContext::default(), at());
        assert_eq!(report.exit_code, EXIT_INVALID);
    }
}
