//! `kubectl failover`: the on-call view of a FailoverPolicy and the supported manual moves.
//!
//! Everything here reads or writes the policy object only, through the same API types the
//! controller uses, and speaks the engine's words: conditions, history reasons and Event
//! messages are quoted, never re-phrased. The binary (`src/bin/kubectl-failover.rs`) is the
//! command line around these functions; they take the clock as an argument so their output is
//! testable.

use std::fmt::Write as _;

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use crate::api::{
    EndpointState, FailoverPolicy, FailoverPolicyStatus, LoadBalancerStatus, OverrideMode,
    condition_types as ct,
};
use crate::engine::EngineConfig;

/// "2m13s", "28m", "1h02m", "3d4h": the most useful two units of a non-negative duration.
pub fn human(d: SignedDuration) -> String {
    let s = d.as_secs().max(0);
    let (days, hours, mins, secs) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (days, hours, mins) {
        (0, 0, 0) => format!("{secs}s"),
        (0, 0, m) if secs == 0 => format!("{m}m"),
        (0, 0, m) => format!("{m}m{secs:02}s"),
        (0, h, m) => format!("{h}h{m:02}m"),
        (d, h, _) => format!("{d}d{h}h"),
    }
}

fn ts(t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> Timestamp {
    t.0
}

fn ago(t: Timestamp, now: Timestamp) -> String {
    format!("{} ago", human(now.duration_since(t)))
}

/// The newest history entry whose action is one of `actions`.
fn last_of<'a>(
    s: &'a FailoverPolicyStatus,
    actions: &[&str],
) -> Option<&'a crate::api::TransitionRecord> {
    s.history
        .iter()
        .rev()
        .find(|h| actions.contains(&h.action.as_str()))
}

fn lb_line(name: &str, lb: &LoadBalancerStatus, now: Timestamp) -> String {
    let mut line = format!("{name}: {:?}", lb.state);
    if let Some(t) = &lb.last_change {
        let _ = write!(line, " since {} ({})", ts(t), ago(ts(t), now));
    }
    if let Some(e) = lb
        .last_error
        .as_deref()
        .filter(|_| lb.state != EndpointState::Up)
    {
        let _ = write!(line, "; last error: {e}");
    }
    line
}

/// Timers a person on call asks about, from status and spec: when the next automatic move may
/// come and when an override ends. Each is an estimate from the recorded times ("about"): the
/// engine restarts a hold-down on every failed check.
pub fn timers(p: &FailoverPolicy, now: Timestamp) -> Vec<String> {
    let mut out = Vec::new();
    let Some(s) = &p.status else {
        return out;
    };
    let spec = &p.spec;
    // A person's override in force holds everything: no automatic timer applies until it ends,
    // so the next thing that happens is its end, not a failback "due now".
    if let Some(o) = spec
        .r#override
        .as_ref()
        .filter(|o| o.mode != OverrideMode::Auto)
    {
        match &o.expires_at {
            Some(t) if ts(t) > now => {
                out.push(format!(
                    "override {:?} expires in {}",
                    o.mode,
                    human(ts(t).duration_since(now))
                ));
                return out;
            }
            Some(_) => out.push(format!("override {:?} has expired", o.mode)),
            None => {
                out.push(format!(
                    "override {:?} has no expiry (kubectl failover resume ends it)",
                    o.mode
                ));
                return out;
            }
        }
    }
    let on_backup = s.decided_class.is_some()
        && s.decided_class.as_deref() == spec.ingress.as_ref().map(|i| i.backup_class.as_str());
    let weight = s.primary_weight_percent.unwrap_or(100);
    if let (true, Some(lb)) = (on_backup && weight == 0, &s.load_balancer) {
        match (&lb.state, &lb.last_change) {
            (EndpointState::Up, Some(t)) => {
                let due =
                    ts(t) + SignedDuration::from_secs(i64::from(spec.recovery.hold_down_seconds));
                out.push(if due > now {
                    format!(
                        "failback in about {} (hold-down {}s since the load balancer came back up)",
                        human(due.duration_since(now)),
                        spec.recovery.hold_down_seconds
                    )
                } else {
                    "failback due now (hold-down passed)".to_string()
                });
            }
            _ => out.push(
                "failback waits for the primary load balancer to pass its checks".to_string(),
            ),
        }
    } else if weight < 100
        && let Some(h) = last_of(s, &["IngressFailback", "FailbackStep"])
    {
        let due = ts(&h.time) + SignedDuration::from_secs(i64::from(spec.recovery.step_seconds));
        out.push(format!(
            "next failback step in about {} (at {weight}% now, {}s per step)",
            human(due.duration_since(now)),
            spec.recovery.step_seconds
        ));
    }
    if let Some(e) = &s.emergency
        && e.state == Some(crate::api::EmergencyState::CoolingDown)
        && let Some(h) = last_of(s, &["EmergencyRelease"])
    {
        let due = ts(&h.time)
            + SignedDuration::from_secs(i64::from(spec.recovery.emergency_cooldown_seconds));
        out.push(format!(
            "emergency scale-down in about {} (cooldown {}s, and only once traffic is home)",
            human(due.duration_since(now)),
            spec.recovery.emergency_cooldown_seconds
        ));
    }
    for b in &s.flap_budgets {
        if let (Some(since), Some(oldest)) = (&b.frozen_since, b.transitions.first()) {
            let thaw = ts(oldest)
                + SignedDuration::from_secs(i64::from(spec.safety.flap_budget.window_seconds));
            out.push(format!(
                "{} tier frozen since {} holding {}; thaws in about {} (or: kubectl failover reset)",
                b.tier,
                ago(ts(since), now),
                b.held.as_deref().unwrap_or("its return"),
                human(thaw.duration_since(now))
            ));
        }
    }
    out
}

/// `kubectl failover status`: one policy, everything on one screen.
pub fn status_text(p: &FailoverPolicy, now: Timestamp) -> String {
    let ns = p.metadata.namespace.as_deref().unwrap_or_default();
    let name = p.metadata.name.as_deref().unwrap_or_default();
    let mut o = String::new();
    let Some(s) = &p.status else {
        let _ = writeln!(
            o,
            "FailoverPolicy {ns}/{name}: no status yet (is the operator running?)"
        );
        return o;
    };
    let _ = writeln!(o, "FailoverPolicy {ns}/{name}: {}", s.phase.as_str());
    if p.spec.dry_run {
        let _ = writeln!(o, "  DRY-RUN: decisions are reported, not applied");
    }
    if let Some(sh) = &s.shard {
        // Which replica to read logs of, or to suspect when nothing moves (`run --shards`).
        let _ = writeln!(
            o,
            "Shard:      {} of {}, held by {}",
            sh.index, sh.count, sh.holder
        );
    }
    if let Some(tier) = &p.spec.ingress {
        let _ = writeln!(
            o,
            "Traffic:    on {} (decided {}), {}% on the primary tier {} / backup {} [{:?}]",
            s.active_class.as_deref().unwrap_or("unknown"),
            s.decided_class.as_deref().unwrap_or("-"),
            s.primary_weight_percent.unwrap_or(100),
            tier.primary_class,
            tier.backup_class,
            tier.mode
        );
        if let Some(lb) = &s.load_balancer {
            let _ = writeln!(o, "{}", lb_line("Primary LB", lb, now));
        }
        if let Some(lb) = &s.backup_load_balancer {
            let _ = writeln!(o, "{}", lb_line("Backup LB ", lb, now));
        }
    }
    if let (Some(dns), Some(d)) = (&p.spec.dns, &s.dns) {
        let _ = writeln!(
            o,
            "DNS:        {} [{:?}, TTL {}s] {}% of answers for the primary tier{}",
            dns.hostnames
                .iter()
                .map(|h| h.0.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            dns.mode,
            dns.ttl_seconds,
            d.primary_weight_percent,
            match (&d.draining_tier, &d.draining_until) {
                (Some(tier), Some(until)) => format!(
                    "; {tier} tier draining until {} (in about {}): kept serving one TTL",
                    ts(until),
                    human(ts(until).duration_since(now))
                ),
                _ => String::new(),
            }
        );
    }
    if let Some(t) = &s.primary {
        let _ = writeln!(
            o,
            "Primary:    {} healthy ({:.0}%), {} published{}",
            t.summary,
            t.ratio * 100.0,
            t.published,
            if t.panic {
                " — PANIC: fail-open publishes every candidate"
            } else {
                ""
            }
        );
    }
    if let Some(e) = &s.emergency {
        let _ = writeln!(
            o,
            "Emergency:  {:?}, {} desired, {} ready{}",
            e.state.unwrap_or_default(),
            e.desired_replicas.map_or("?".into(), |r| r.to_string()),
            e.ready_replicas.map_or("?".into(), |r| r.to_string()),
            e.health
                .as_ref()
                .map(|h| format!(", {} healthy", h.summary))
                .unwrap_or_default()
        );
        if let (Some(w), Some(weights)) = (
            e.weight_percent,
            p.spec
                .gateway
                .as_ref()
                .and_then(|g| g.backend_weights.as_ref()),
        ) {
            let _ = writeln!(
                o,
                "Weights:    {} per primary, {} per emergency backend at {w}%{}",
                weights.primary,
                weights.emergency,
                match &e.next_step_at {
                    Some(at) => format!(
                        "; ramping down, next step at {} (in about {})",
                        ts(at),
                        human(ts(at).duration_since(now))
                    ),
                    None => String::new(),
                }
            );
        }
    }
    let budgets: Vec<String> = s
        .flap_budgets
        .iter()
        .map(|b| {
            format!(
                "{} {}/{}{}",
                b.tier,
                b.transitions.len(),
                p.spec.safety.flap_budget.max_transitions,
                if b.frozen_since.is_some() {
                    " FROZEN"
                } else {
                    ""
                }
            )
        })
        .collect();
    if !budgets.is_empty() {
        let _ = writeln!(
            o,
            "Flap budget: {} (window {}s)",
            budgets.join(", "),
            p.spec.safety.flap_budget.window_seconds
        );
    }
    for t in timers(p, now) {
        let _ = writeln!(o, "Timer:      {t}");
    }
    let _ = writeln!(o, "Conditions:");
    for c in &s.conditions {
        let _ = writeln!(o, "  {}={} {}: {}", c.type_, c.status, c.reason, c.message);
    }
    if !s.endpoints.is_empty() {
        let _ = writeln!(o, "Endpoints:");
        for e in &s.endpoints {
            let _ = writeln!(
                o,
                "  {:<24} {:<9} {:<8} {}{}",
                e.address,
                e.pool,
                format!("{:?}", e.state),
                if e.published { "published" } else { "out" },
                e.last_error
                    .as_deref()
                    .filter(|_| e.state != EndpointState::Up)
                    .map(|m| format!(" — {m}"))
                    .unwrap_or_default()
            );
        }
    }
    o
}

/// `kubectl failover status` without a name: one line per policy.
pub fn summary_table(policies: &[FailoverPolicy], now: Timestamp) -> String {
    let mut o = format!(
        "{:<30} {:<16} {:<16} {:>6} {:<9} {:<10} {}\n",
        "POLICY", "PHASE", "ACTIVE", "WEIGHT", "HEALTHY", "EMERGENCY", "NEXT"
    );
    for p in policies {
        let s = p.status.clone().unwrap_or_default();
        let _ = writeln!(
            o,
            "{:<30} {:<16} {:<16} {:>5}% {:<9} {:<10} {}",
            crate::api::PolicyId::of(p).to_string(),
            s.phase.as_str(),
            s.active_class.as_deref().unwrap_or("-"),
            s.primary_weight_percent.unwrap_or(100),
            s.primary.as_ref().map_or("-", |t| t.summary.as_str()),
            s.emergency.as_ref().map_or("-", |e| e.summary.as_str()),
            timers(p, now).first().map_or("", String::as_str)
        );
    }
    o
}

/// `kubectl failover history`: the recorded transitions, oldest first, with their reasons.
pub fn history_text(p: &FailoverPolicy, now: Timestamp) -> String {
    let mut o = String::new();
    for h in p.status.iter().flat_map(|s| &s.history) {
        let _ = writeln!(
            o,
            "{}  {:>9}  {:<20} {}",
            ts(&h.time),
            ago(ts(&h.time), now),
            h.action,
            h.reason
        );
    }
    if o.is_empty() {
        o.push_str("no transitions recorded\n");
    }
    o
}

/// `kubectl failover explain`: why traffic and capacity are where they are, in the engine's
/// words (the conditions that decide them and the transitions that put them there).
pub fn explain_text(p: &FailoverPolicy, now: Timestamp) -> String {
    let mut o = String::new();
    let Some(s) = &p.status else {
        return "no status yet: the operator has not reconciled this policy\n".to_string();
    };
    let cond = |t: &str| s.conditions.iter().find(|c| c.type_ == t);
    if let Some(c) = cond(ct::READY).filter(|c| c.status != "True") {
        let _ = writeln!(o, "Not ready ({}): {}", c.reason, c.message);
    }
    if let Some(o2) = p
        .spec
        .r#override
        .as_ref()
        .filter(|o| o.mode != OverrideMode::Auto)
    {
        let _ = writeln!(
            o,
            "A person is in charge: override {:?}{}",
            o2.mode,
            if o2.reason.is_empty() {
                String::new()
            } else {
                format!(" ({})", o2.reason)
            }
        );
    }
    if p.spec.ingress.is_some() {
        let _ = writeln!(
            o,
            "Traffic is on {}:",
            s.active_class.as_deref().unwrap_or("an unknown class")
        );
        if let Some(c) = cond(ct::FAILOVER_ACTIVE) {
            let _ = writeln!(o, "  {}: {}", c.reason, c.message);
        }
        if let Some(h) = last_of(
            s,
            &[
                "IngressFailover",
                "IngressFailback",
                "FailbackStep",
                "FailbackComplete",
                "FailoverHeld",
            ],
        ) {
            let _ = writeln!(
                o,
                "  last move {} ({}): {}",
                h.action,
                ago(ts(&h.time), now),
                h.reason
            );
        }
    }
    if let Some(c) = cond(ct::EMERGENCY_ACTIVE) {
        let _ = writeln!(o, "Emergency capacity ({}): {}", c.reason, c.message);
        if let Some(h) = last_of(
            s,
            &[
                "EmergencyActivate",
                "EmergencyRelease",
                "EmergencyScaleDown",
            ],
        ) {
            let _ = writeln!(
                o,
                "  last move {} ({}): {}",
                h.action,
                ago(ts(&h.time), now),
                h.reason
            );
        }
    }
    if let Some(c) = cond(ct::DEGRADED) {
        let _ = writeln!(o, "Backends ({}): {}", c.reason, c.message);
    }
    if let Some(c) = cond(ct::FROZEN).filter(|c| c.status == "True") {
        let _ = writeln!(o, "Frozen ({}): {}", c.reason, c.message);
    }
    if let Some(c) = cond(ct::IN_EFFECT).filter(|c| c.status != "True") {
        let _ = writeln!(o, "Not in effect ({}): {}", c.reason, c.message);
    }
    for t in timers(p, now) {
        let _ = writeln!(o, "Next: {t}");
    }
    o
}

/// The merge patch of `override`: force a side or freeze, for a while, with a reason.
pub fn override_patch(
    mode: OverrideMode,
    duration: Option<SignedDuration>,
    reason: &str,
    now: Timestamp,
) -> Value {
    let mut o = json!({"mode": mode, "reason": reason});
    if let Some(d) = duration {
        o["expiresAt"] = json!(
            (now + d)
                .round(jiff::Unit::Second)
                .unwrap_or(now + d)
                .to_string()
        );
    }
    json!({"spec": {"override": o}})
}

/// The merge patch of `resume`: automatic decisions again (the override is removed).
pub fn resume_patch() -> Value {
    json!({"spec": {"override": null}})
}

/// The merge patch of `reset`: the supported way to clear a flap-budget freeze (a new value of
/// the reset annotation, acted on once).
pub fn reset_patch(now: Timestamp) -> Value {
    json!({"metadata": {"annotations": {EngineConfig::RESET_ANNOTATION: now.to_string()}}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_a_person_says_them() {
        let d = SignedDuration::from_secs;
        assert_eq!(human(d(7)), "7s");
        assert_eq!(human(d(133)), "2m13s");
        assert_eq!(human(d(28 * 60)), "28m");
        assert_eq!(human(d(3720)), "1h02m");
        assert_eq!(human(d(3 * 86_400 + 4 * 3600 + 5)), "3d4h");
        assert_eq!(human(d(-5)), "0s");
    }

    /// A policy failed over long ago whose primary load balancer has been up past the hold-down.
    fn failed_over(override_: Value) -> FailoverPolicy {
        serde_json::from_value(json!({
            "apiVersion": "ingressfailover.io/v1alpha1", "kind": "FailoverPolicy",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {
                "backends": {"primary": {"service": {"name": "web"}}},
                "managedService": {"name": "web-healthy"},
                "ingress": {"ingresses": ["web"], "primaryClass": "nginx-primary",
                            "backupClass": "nginx-backup", "health": {"url": "http://lb.shop.internal/healthz"}},
                "override": override_,
            },
            "status": {
                "phase": "FailedOver", "decidedClass": "nginx-backup", "primaryWeightPercent": 0,
                "loadBalancer": {"state": "Up", "lastChange": "2026-12-01T02:00:00Z"},
            },
        }))
        .expect("policy")
    }

    #[test]
    fn an_override_in_force_is_the_next_thing_not_a_failback_it_holds() {
        let now: Timestamp = "2026-12-01T03:00:00Z".parse().unwrap();
        let auto = failed_over(json!(null));
        assert_eq!(timers(&auto, now), ["failback due now (hold-down passed)"]);
        let forced = failed_over(json!({"mode": "ForceBackup", "reason": "drill",
                                         "expiresAt": "2026-12-01T03:30:00Z"}));
        assert_eq!(
            timers(&forced, now),
            ["override ForceBackup expires in 30m"]
        );
        let forever = failed_over(json!({"mode": "Freeze", "reason": "drill"}));
        assert_eq!(
            timers(&forever, now),
            ["override Freeze has no expiry (kubectl failover resume ends it)"]
        );
        // Once expired, the operator decides again: its timers are back.
        let expired = failed_over(json!({"mode": "ForceBackup", "reason": "drill",
                                          "expiresAt": "2026-12-01T02:30:00Z"}));
        assert_eq!(
            timers(&expired, now),
            [
                "override ForceBackup has expired",
                "failback due now (hold-down passed)"
            ]
        );
    }

    #[test]
    fn status_names_the_shard_and_its_holder() {
        let now: Timestamp = "2026-12-01T03:00:00Z".parse().unwrap();
        let mut p = failed_over(json!(null));
        assert!(
            !status_text(&p, now).contains("Shard:"),
            "one Lease: no shard line"
        );
        p.status.as_mut().unwrap().shard = Some(crate::api::ShardStatus {
            index: 3,
            count: 6,
            holder: "ingress-failover-7d9f-abc".into(),
        });
        assert!(
            status_text(&p, now).contains("Shard:      3 of 6, held by ingress-failover-7d9f-abc"),
            "{}",
            status_text(&p, now)
        );
    }

    #[test]
    fn status_shows_the_emergency_weight_and_its_next_ramp_step() {
        let now: Timestamp = "2026-12-01T03:00:00Z".parse().unwrap();
        let mut p = failed_over(json!(null));
        p.spec.backends.emergency = Some(
            serde_json::from_value(
                json!({"deployment": {"name": "e", "activeReplicas": 2, "maxReplicas": 2}}),
            )
            .unwrap(),
        );
        p.spec.ingress = None;
        p.spec.gateway = Some(
            serde_json::from_value(json!({"routes": ["web"], "primaryGateway": {"name": "a"},
                "backupGateway": {"name": "b"}, "backendWeights": {}}))
            .unwrap(),
        );
        let st = p.status.as_mut().unwrap();
        st.emergency = Some(crate::api::EmergencyStatus {
            state: Some(crate::api::EmergencyState::Releasing),
            weight_percent: Some(25),
            next_step_at: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                "2026-12-01T03:00:30Z".parse().unwrap(),
            )),
            ..Default::default()
        });
        let text = status_text(&p, now);
        assert!(
            text.contains("Weights:    100 per primary, 50 per emergency backend at 25%; ramping down, next step at 2026-12-01T03:00:30Z (in about 30s)"),
            "{text}"
        );
    }

    #[test]
    fn override_patch_carries_mode_reason_and_expiry() {
        let now: Timestamp = "2026-12-01T03:00:00Z".parse().unwrap();
        let p = override_patch(
            OverrideMode::ForceBackup,
            Some(SignedDuration::from_mins(30)),
            "LB vendor incident",
            now,
        );
        assert_eq!(p["spec"]["override"]["mode"], "ForceBackup");
        assert_eq!(p["spec"]["override"]["reason"], "LB vendor incident");
        assert_eq!(p["spec"]["override"]["expiresAt"], "2026-12-01T03:30:00Z");
    }
}
