//! What is in effect, next to what was decided. The engine renders the decision; this module
//! corrects the parts of status that describe the cluster with what the cluster says: the
//! class the Ingresses carry (`activeClass`, beside the engine's `decidedClass`), the
//! `InEffect` condition (failing writes, other writers, an autoscaler, dry-run), and in
//! dry-run the `FailoverActive`/`EmergencyActive` conditions, which say what was decided and
//! that it was not applied (the engine marks the history and Events of dry-run decisions).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use crate::api::{FailoverPolicyStatus, condition_types as ct, reasons};
use crate::engine::Millis;
use crate::engine::report::time;

/// What the cluster shows after this reconcile's writes.
#[derive(Debug, Default)]
pub struct InEffect {
    /// Class the managed Ingresses carry (None without an ingress tier or when they disagree).
    pub class: Option<String>,
    /// Replicas the emergency Deployment's spec asks for.
    pub replicas: Option<i32>,
    /// Failing writes, each naming its object and error.
    pub failures: Vec<String>,
    /// Other reasons a decision is not in effect: (reason, message).
    pub notes: Vec<(&'static str, String)>,
}

/// Facts of the spec the correction needs.
pub struct Spec<'a> {
    pub dry_run: bool,
    pub has_ingress: bool,
    pub backup_class: Option<&'a str>,
    pub standby_replicas: Option<i32>,
}

/// Rewrites the cluster-describing parts of `status` (see the module documentation).
pub fn apply(
    status: &mut FailoverPolicyStatus,
    spec: &Spec<'_>,
    fx: &InEffect,
    previous: Option<&FailoverPolicyStatus>,
    generation: Option<i64>,
    now: Millis,
) {
    if spec.has_ingress {
        status.active_class = fx.class.clone();
    }
    let decided_class = status.decided_class.clone().unwrap_or_else(|| "-".into());
    let in_effect_class = fx.class.clone().unwrap_or_else(|| "unknown".into());
    let decided_replicas = status.emergency.as_ref().and_then(|e| e.desired_replicas);

    if spec.dry_run {
        if spec.has_ingress {
            let on_backup = fx.class.is_some() && fx.class.as_deref() == spec.backup_class;
            set(
                status,
                ct::FAILOVER_ACTIVE,
                on_backup,
                reasons::DRY_RUN,
                format!("dry-run: decided class {decided_class}; traffic is on {in_effect_class}"),
                previous,
                generation,
                now,
            );
        }
        if let (Some(decided), Some(standby)) = (decided_replicas, spec.standby_replicas) {
            let active = fx.replicas.is_some_and(|r| r > standby);
            set(
                status,
                ct::EMERGENCY_ACTIVE,
                active,
                reasons::DRY_RUN,
                format!(
                    "dry-run: decided {decided} emergency replicas; the Deployment asks for {}",
                    fx.replicas.map_or("?".to_string(), |r| r.to_string())
                ),
                previous,
                generation,
                now,
            );
        }
    }

    let (on, reason, message) = if !fx.failures.is_empty() {
        let mut all = fx.failures.clone();
        all.extend(fx.notes.iter().map(|(_, m)| m.clone()));
        (false, reasons::WRITE_FAILED, all.join("; "))
    } else if let Some((reason, _)) = fx
        .notes
        .iter()
        .find(|(r, _)| *r == reasons::OTHER_WRITER)
        .or_else(|| fx.notes.first())
    {
        let all: Vec<&str> = fx.notes.iter().map(|(_, m)| m.as_str()).collect();
        (false, *reason, all.join("; "))
    } else if spec.dry_run {
        let mut parts = Vec::new();
        if spec.has_ingress {
            parts.push(format!(
                "decided class {decided_class}, in effect {in_effect_class}"
            ));
        }
        if let Some(d) = decided_replicas {
            parts.push(format!(
                "decided {d} emergency replicas, in effect {}",
                fx.replicas.map_or("?".to_string(), |r| r.to_string())
            ));
        }
        let message = if parts.is_empty() {
            "dry-run: decisions are reported, not applied".to_string()
        } else {
            format!(
                "dry-run: decisions are reported, not applied ({})",
                parts.join("; ")
            )
        };
        (false, reasons::DRY_RUN, message)
    } else {
        (
            true,
            reasons::APPLIED,
            "every decision is applied".to_string(),
        )
    };
    set(
        status,
        ct::IN_EFFECT,
        on,
        reason,
        message,
        previous,
        generation,
        now,
    );
}

/// Sets (or adds) condition `type_`, keeping its transition time while its status holds.
#[allow(clippy::too_many_arguments)]
fn set(
    status: &mut FailoverPolicyStatus,
    type_: &str,
    on: bool,
    reason: &str,
    message: String,
    previous: Option<&FailoverPolicyStatus>,
    generation: Option<i64>,
    now: Millis,
) {
    let value = if on { "True" } else { "False" };
    let since = previous
        .and_then(|p| p.conditions.iter().find(|c| c.type_ == type_))
        .filter(|c| c.status == value)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| time(now));
    let cond = Condition {
        type_: type_.to_string(),
        status: value.to_string(),
        reason: reason.to_string(),
        message,
        observed_generation: generation,
        last_transition_time: since,
    };
    match status.conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => *c = cond,
        None => status.conditions.push(cond),
    }
}
