//! JSON lines: one object per timeline row, then one summary object. Stable enough to diff
//! (the golden tests do) and to pipe into `jq`.
//!
//! Every row has `t` (seconds since the scenario start), `time` (RFC 3339), `source`
//! (`scenario`, `world` or `engine`), `action` and `reason`; `affected` carries the objects the
//! engine names (an endpoint, a published-set diff, replicas, ingress classes, phases) and
//! `target` names the load balancer or ingress controller for scenario rows about them.

use std::io::{self, Write};

use jiff::Timestamp;
use serde_json::{Map, Value, json};

use crate::engine::{Affected, Millis};

use super::run::{Row, Timeline};

pub fn write(t: &Timeline, out: &mut dyn Write) -> io::Result<()> {
    for r in &t.rows {
        let v = row(t, r);
        serde_json::to_writer(&mut *out, &v)?;
        out.write_all(b"\n")?;
    }
    serde_json::to_writer(&mut *out, &summary(t))?;
    out.write_all(b"\n")
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

pub fn row(t: &Timeline, r: &Row) -> Value {
    let mut m = Map::new();
    m.insert("t".into(), seconds(r.at - t.start));
    m.insert("time".into(), rfc3339(r.at).into());
    m.insert("source".into(), r.source.as_str().into());
    m.insert("action".into(), r.action.into());
    m.insert("reason".into(), r.reason.clone().into());
    if !matches!(r.affected, Affected::None) {
        m.insert(
            "affected".into(),
            serde_json::to_value(&r.affected).unwrap_or(Value::Null),
        );
    }
    if let Some(target) = &r.target {
        m.insert("target".into(), target.as_str().into());
    }
    Value::Object(m)
}

pub fn summary(t: &Timeline) -> Value {
    let s = &t.summary;
    let counts: Map<String, Value> = s
        .counts
        .iter()
        .map(|(k, n)| (k.as_str().to_string(), json!(n)))
        .collect();
    json!({
        "t": seconds(t.end - t.start),
        "time": rfc3339(t.end),
        "source": "summary",
        "action": "summary",
        "reason": if s.violations.is_empty() {
            "replay finished; all invariants held".to_string()
        } else {
            format!("replay finished; {} invariant(s) violated", s.violations.len())
        },
        "phase": s.final_phase.as_str(),
        "counts": counts,
        "maxEmergencyReplicas": s.max_emergency_replicas,
        "secondsOnBackupClass": seconds(s.backup_class_ms),
        "secondsInPanic": seconds(s.panic_ms),
        "secondsEmpty": seconds(s.empty_ms),
        "checks": s.checks,
        "steps": s.steps,
        "violations": s.violations,
    })
}
