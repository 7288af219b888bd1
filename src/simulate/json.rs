//! JSON lines: one object per timeline row, then one summary object. Stable enough to diff
//! (the golden tests do) and to pipe into `jq`.
//!
//! Every row has `t` (seconds since the scenario start), `time` (RFC 3339), `source`
//! (`scenario`, `world` or `engine`), `action` and `reason`; `affected` carries the objects the
//! engine names (an endpoint, a published-set diff, replicas, ingress classes, phases) and
//! `target` names the load balancer or ingress controller for scenario rows about them. With
//! `spec.dns`, `DnsDrain` / `DnsDrainEnded` engine rows (no `affected`) mark when a tier the DNS
//! records left starts and stops receiving answers from resolver caches.

use std::io::{self, Write};

use jiff::Timestamp;
use serde_json::{Map, Value, json};

use crate::engine::{Affected, Millis};

use super::run::{Row, Timeline};

pub fn write(t: &Timeline, out: &mut dyn Write) -> io::Result<()> {
    for r in &t.rows {
        write_object(out, &row(t, r))?;
    }
    write_object(out, &summary(t))
}

/// One object per line, keys in the order given: `t` first reads best in a terminal and keeps
/// goldens' diffs aligned (a serde_json `Map` would sort the keys).
fn write_object(out: &mut dyn Write, fields: &[(&str, Value)]) -> io::Result<()> {
    out.write_all(b"{")?;
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        serde_json::to_writer(&mut *out, k)?;
        out.write_all(b":")?;
        serde_json::to_writer(&mut *out, v)?;
    }
    out.write_all(b"}\n")
}

/// Seconds since start as a JSON number: an integer on whole seconds (the common case), a
/// fraction otherwise.
fn seconds(ms: Millis) -> Value {
    if ms % 1000 == 0 {
        json!(ms / 1000)
    } else {
        json!(ms as f64 / 1000.0)
    }
}

fn rfc3339(ms: Millis) -> String {
    Timestamp::from_millisecond(ms)
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .to_string()
}

/// The fields of one timeline row.
pub fn row(t: &Timeline, r: &Row) -> Vec<(&'static str, Value)> {
    let mut m = vec![
        ("t", seconds(r.at - t.start)),
        ("time", rfc3339(r.at).into()),
        ("source", r.source.as_str().into()),
        ("action", r.action.into()),
    ];
    if !matches!(r.affected, Affected::None) {
        m.push((
            "affected",
            serde_json::to_value(&r.affected).unwrap_or(Value::Null),
        ));
    }
    if let Some(target) = &r.target {
        m.push(("target", target.as_str().into()));
    }
    m.push(("reason", r.reason.clone().into()));
    m
}

/// The closing line: `"action": "summary"` with the final phase and the replay's figures.
pub fn summary(t: &Timeline) -> Vec<(&'static str, Value)> {
    let s = &t.summary;
    let counts: Map<String, Value> = s
        .counts
        .iter()
        .map(|(k, n)| (k.as_str().to_string(), json!(n)))
        .collect();
    let reason = if s.violations.is_empty() {
        "replay finished; all invariants held".to_string()
    } else {
        format!(
            "replay finished; {} invariant(s) violated",
            s.violations.len()
        )
    };
    vec![
        ("t", seconds(t.end - t.start)),
        ("time", rfc3339(t.end).into()),
        ("source", "summary".into()),
        ("action", "summary".into()),
        ("phase", s.final_phase.as_str().into()),
        ("counts", Value::Object(counts)),
        ("maxEmergencyReplicas", json!(s.max_emergency_replicas)),
        ("secondsOnBackupClass", seconds(s.backup_class_ms)),
        ("secondsInPanic", seconds(s.panic_ms)),
        ("secondsEmpty", seconds(s.empty_ms)),
        ("checks", json!(s.checks)),
        ("steps", json!(s.steps)),
        ("violations", json!(s.violations)),
        ("reason", reason.into()),
    ]
}
