//! One reconcile of a FailoverPolicy: validate, gather facts from the caches, step the engine,
//! write the desired state where the cluster differs, report status, then publish the Events
//! of what was done — in that order, so an Event never announces a write that failed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action as Requeue;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tracing::{Instrument, info, warn};

use super::actuate::{self, ActuateError, MANAGER};
use super::claims;
use super::context::{Context, PolicyRuntime, lock};
use super::desired::Published;
use super::effect::{self, InEffect};
use super::events::Severity;
use super::ledger::{Actuation, Correction, MAX_CORRECTIONS};
use super::legacy_endpoints;
use super::metrics::{KindLabels, ReconcileErrorKind};
use super::observe;
use super::report::{export_gauges, log_action, publish_events};
use super::targets;
use crate::api::{
    DeletionPolicy, FailoverPolicy, FailoverPolicySpec, FailoverPolicyStatus, IngressMode,
    PolicyId, condition_types, reasons,
};
use crate::engine::report::{invalid_status, mark_invalid, render_status};
use crate::engine::{
    DeploymentFact, EngineConfig, IngressDesired, Now, Observation, PolicyState, Pool, step,
};
use crate::validation::validate_document;

/// How often the managed EndpointSlices are compared with the desired set even when the engine's
/// published set has not changed (catches edits and deletions made behind the operator's back).
const RESYNC_MS: i64 = 30_000;

/// Finalizer that lets deletion restore what the policy changed.
pub const FINALIZER: &str = "ingressfailover.io/cleanup";

/// Why a reconcile failed (it is retried with per-object backoff).
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Actuate(#[from] ActuateError),
    #[error("writing status of {policy}: {source}")]
    Status {
        policy: String,
        #[source]
        source: kube::Error,
    },
    #[error("finalizer: {0}")]
    Finalizer(String),
}

impl ReconcileError {
    /// Bounded metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            ReconcileError::Actuate(ActuateError::Api { .. }) => ReconcileErrorKind::API,
            ReconcileError::Actuate(ActuateError::Conflict { .. }) => ReconcileErrorKind::CONFLICT,
            ReconcileError::Status { .. } => ReconcileErrorKind::STATUS,
            ReconcileError::Finalizer(_) => ReconcileErrorKind::FINALIZER,
        }
    }
}

/// Entry point given to the kube-runtime Controller.
pub async fn reconcile(
    policy: Arc<FailoverPolicy>,
    ctx: Arc<Context>,
) -> Result<Requeue, ReconcileError> {
    let ns = policy.namespace().unwrap_or_default();
    let name = policy.name_any();
    let span = tracing::info_span!("reconcile", namespace = %ns, name = %name);
    async move {
        let shard = ctx.shards.of(&policy);
        if !ctx.holds(&policy) {
            // Standby replicas keep caches warm but never write; the leader's term resumes
            // from status when it starts.
            return Ok(Requeue::requeue(Duration::from_secs(30)));
        }
        let api: Api<FailoverPolicy> = Api::namespaced(ctx.client.clone(), &ns);
        let work = async {
            // A slot first, in the order reconciles asked (tokio's semaphore is fair), so that
            // a cold start or a mass incident waits here rather than in flight behind the rate
            // limit. Not kube-runtime's own concurrency limit: the runner then keeps the queue's
            // due items in a hash set and takes the first it iterates, so at 10,000 policies the
            // ones re-triggered by their own writes were served again and again while 3,019
            // were never reconciled in 25 minutes.
            let _slot = ctx.reconcile_slots.acquire().await;
            // From here on, a new fact needs a reconcile after this one: whatever this one
            // returns, it cannot have seen that fact.
            if let Some(rt) = ctx.runtime(&PolicyId::new(&ns, &name)) {
                lock(&rt).fact_trigger_sent = false;
            }
            let started = Instant::now();
            // Deleted while clients may still resolve to the backup tier: records back first,
            // the rest restored once they can no longer (before the finalizer helper, which
            // would remove the finalizer after any successful cleanup).
            match deletion_drain(&policy, &ctx).await {
                Ok(Some(wait)) => return (Ok(Requeue::requeue(wait)), started),
                Ok(None) => {}
                Err(e) => return (Err(e), started),
            }
            let result = finalizer(&api, FINALIZER, policy, |event| async {
                match event {
                    Finalizer::Apply(p) => apply(p, &ctx).await,
                    Finalizer::Cleanup(p) => cleanup(p, &ctx).await,
                }
            })
            .await
            .or_else(|e| match e {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => Err(e),
                // Cleaned up from a cache a step behind: the policy is already gone, which is
                // what removing the finalizer was for.
                kube::runtime::finalizer::Error::RemoveFinalizer(kube::Error::Api(s))
                    if s.code == 404 =>
                {
                    Ok(Requeue::await_change())
                }
                other => Err(ReconcileError::Finalizer(other.to_string())),
            });
            (result, started)
        };
        // Leadership can end mid-reconcile (renew deadline passed, lease taken, shutdown):
        // dropping the reconcile there cancels its writes in flight and every later one, so
        // a former leader never writes beside the next (issue 12). The next term resumes from
        // status.
        let result = tokio::select! {
            biased;
            () = ctx.shard_lost(shard) => {
                warn!("leadership lost mid-reconcile; its remaining writes are cancelled");
                return Ok(Requeue::await_change());
            }
            r = work => r,
        };
        let (result, started) = result;
        ctx.metrics
            .reconcile_duration
            .observe(started.elapsed().as_secs_f64());
        if result.is_ok() {
            ctx.record_success(&PolicyId::new(&ns, &name));
        }
        result
    }
    .instrument(span)
    .await
}

/// Per-object exponential backoff with jitter, reset on success.
pub fn error_policy(
    policy: Arc<FailoverPolicy>,
    error: &ReconcileError,
    ctx: Arc<Context>,
) -> Requeue {
    let key = PolicyId::of(&policy);
    let n = ctx.record_failure(&key);
    ctx.metrics
        .reconcile_errors
        .get_or_create(&KindLabels { kind: error.kind() })
        .inc();
    let base = Duration::from_millis(500).saturating_mul(1u32 << n.min(10));
    let capped = base.min(Duration::from_secs(300));
    let jitter = 0.8 + fastrand::f64() * 0.4;
    warn!(policy = %key, attempt = n, error = %error, "reconcile failed; retrying");
    Requeue::requeue(capped.mul_f64(jitter))
}

fn owner_ref(p: &FailoverPolicy) -> OwnerReference {
    p.controller_owner_ref(&())
        .expect("a policy read from the API has a name and uid")
}

async fn apply(policy: Arc<FailoverPolicy>, ctx: &Context) -> Result<Requeue, ReconcileError> {
    let ns = policy.namespace().unwrap_or_default();
    let key = PolicyId::of(&policy);
    let clock = (ctx.clock)();
    let now = clock.wall;
    let generation = policy.metadata.generation;

    // Validation (schema, CEL, semantic) runs once per spec generation: a runtime exists only
    // for a generation that passed, and most reconciles are triggered by probe facts.
    let known = ctx
        .runtime(&key)
        .filter(|rt| lock(rt).generation == generation && generation.is_some());
    let (rt, spec) = match known {
        Some(rt) => (rt, policy.spec.clone()),
        None => {
            if let Some(rt) = ctx.runtime(&key)
                && lock(&rt)
                    .rejected
                    .as_ref()
                    .is_some_and(|(g, _)| *g == generation)
            {
                // Still the generation already refused: keep holding, re-validate nothing.
                let message = lock(&rt)
                    .rejected
                    .as_ref()
                    .map(|(_, m)| m.clone())
                    .unwrap_or_default();
                return hold_invalid(&policy, ctx, rt, &message, now).await;
            }
            let value = serde_json::to_value(&*policy).expect("policy serializes");
            let spec = match validate_document(&value, &ctx.rules) {
                Ok(valid) => valid.spec,
                Err(errors) => {
                    let message = invalid_message(&errors);
                    // A policy that was valid keeps its engine memory and holds its last valid
                    // decisions; one that never was manages nothing.
                    return match ctx.runtime(&key) {
                        Some(rt) => {
                            lock(&rt).rejected = Some((generation, message.clone()));
                            hold_invalid(&policy, ctx, rt, &message, now).await
                        }
                        None => refuse(&policy, ctx, &key, &message, now).await,
                    };
                }
            };
            let rt = match ctx.runtime(&key) {
                Some(rt) => rt,
                None => {
                    ctx.insert_runtime(key.clone(), new_runtime(&policy, &spec, ctx, &ns, clock))
                }
            };
            lock(&rt).rejected = None;
            (rt, spec)
        }
    };

    let mut problems = Vec::new();
    let plan = {
        let mut guard = lock(&rt);
        let r = &mut *guard;
        if r.generation != generation {
            let old = std::mem::replace(&mut r.cfg, EngineConfig::from_spec(&spec));
            r.state.config_changed(&old);
            r.generation = generation;
            r.targets_dirty = true;
            r.managed = Default::default();
            r.emergency = Default::default();
            r.legacy_synced = None;
            // A new spec may fix what failed or end a tug-of-war: try again at once.
            r.ledger = Default::default();
            r.retired.clear();
            r.references_checked = None;
        }
        r.cfg.flap_budget_reset = policy
            .annotations()
            .get(EngineConfig::RESET_ANNOTATION)
            .cloned();
        gather(ctx, &spec, &ns, r, &mut problems);
        if r.targets_dirty {
            match targets::targets(&spec, &r.inventory) {
                Ok((list, own)) => match ctx.prober.set_targets(&key, own, list) {
                    Ok(_) => r.targets_dirty = false,
                    Err(e) => problems.push(format!("probe configuration: {e}")),
                },
                Err(e) => problems.push(format!("probe configuration: {e}")),
            }
        }
        let mut actions = Vec::new();
        step(&r.cfg, &mut r.state, &r.obs, clock, &mut actions);
        r.obs.clear_checks();
        for a in &actions {
            ctx.metrics
                .transitions
                .get_or_create(&KindLabels {
                    kind: a.kind.as_str(),
                })
                .inc();
            log_action(a, r.cfg.dry_run);
        }
        r.pending_events.extend(actions);
        Plan::from(r, clock, spec.weighted_emergency_service().is_some())
    };

    // One owner per written object: a policy claiming what another owns writes nothing.
    // Asked again only when some policy's claims may have changed since it last found no
    // rival (with rivals, every time: which one owns an object can change with its labels).
    let epoch = ctx.claims_epoch.current();
    let conflicts = if lock(&rt).alone_at == Some(epoch) {
        Vec::new()
    } else {
        let found = claims::conflicts(ctx, &policy, &spec);
        lock(&rt).alone_at = found.is_none().then_some(epoch);
        found.unwrap_or_default()
    };
    let conflict = (!conflicts.is_empty()).then(|| {
        let list: Vec<String> = conflicts.iter().map(ToString::to_string).collect();
        format!(
            "{}; this policy writes nothing until it owns every object it names (rename its references, or delete the other policy)",
            list.join("; ")
        )
    });
    let dns_disabled = (spec.dns.is_some() && ctx.stores.dns_endpoints.is_none()).then(|| {
        "spec.dns is set but the operator runs without --dns-endpoints: no DNS record is written; install ExternalDNS's DNSEndpoint CRD and set the chart value externalDNS.enabled=true (which passes --dns-endpoints and grants RBAC for dnsendpoints)".to_string()
    });
    let not_ready = match &conflict {
        Some(m) => Some((reasons::CONFLICT, m.clone())),
        None if dns_disabled.is_some() => dns_disabled
            .clone()
            .map(|m| (reasons::DNS_ENDPOINTS_DISABLED, m)),
        // Refused probe targets alone are their own reason: the policy is fine, its targets not.
        None if !problems.is_empty() => Some((
            if problems.iter().all(|p| p.starts_with(observe::REFUSED)) {
                reasons::PROBE_REFUSED
            } else {
                reasons::REFERENCES_UNRESOLVED
            },
            problems.join("; "),
        )),
        None => None,
    };
    announce_conflict(ctx, &policy, &rt, conflict.as_deref()).await;

    let mut fx = if plan.dry_run {
        InEffect::default()
    } else if let Some(message) = &conflict {
        // The engine's actions describe moves that are not made: their Events would mislead.
        lock(&rt).pending_events.clear();
        InEffect {
            notes: vec![(reasons::CONFLICT, message.clone())],
            ..Default::default()
        }
    } else {
        if !ctx.holds(&policy) {
            return Ok(Requeue::requeue(Duration::from_secs(30)));
        }
        // Write-ahead: a decision that moves traffic or capacity is in status before any object
        // changes, so a crash or a leadership change between the two never undoes it.
        let recorded =
            record_decision(ctx, &policy, &spec, &plan, &rt, not_ready.as_ref(), clock).await;
        write_desired(ctx, &policy, &spec, &plan, &rt, now, recorded).await
    };
    in_effect_from_caches(ctx, &spec, &ns, plan.dry_run, &mut fx);
    let status = render(
        &rt,
        &policy,
        &spec,
        plan.dry_run,
        not_ready.as_ref(),
        &fx,
        clock,
    );
    // The gauges say what the operator decided and sees, before status is written: whoever reads
    // status and then /metrics never finds the metrics behind.
    export_gauges(ctx, &key, &rt);
    // Compare with what this process last wrote as well as with the cache: under load the cache
    // lags behind our own writes, and re-writing an identical status only feeds the lag.
    let mut written = lock(&rt).last_status.as_ref() == Some(&status);
    // A failing status write backs off like any other: probe facts arriving every second do not
    // hammer the API with it.
    if !written && lock(&rt).ledger.due(Actuation::Status, now) {
        if let Err(e) = write_status(ctx, &policy, &ns, &status).await {
            lock(&rt).ledger.failed(
                Actuation::Status,
                format!("FailoverPolicy {key} status"),
                e.to_string(),
                now,
            );
            ctx.metrics.write_failed(&key, Actuation::Status.resource());
            return Err(e);
        }
        lock(&rt).ledger.succeeded(Actuation::Status);
        written = true;
    }
    publish_events(ctx, &policy, &rt, plan.dry_run, &fx).await;
    let next_retry = {
        let mut r = lock(&rt);
        if written {
            r.last_status = Some(status);
        }
        r.ledger.next_retry()
    };
    // A resync every `--resync-seconds` (jittered, so a fleet does not resync in step) as a
    // safety net; sooner exactly when the engine says a decision may fall due with no new fact.
    // Facts, watched objects and the engine's deadlines drive every decision: at 10,000
    // policies a 30 s resync alone was 333 reconciles a second.
    let mut wait = ctx.resync.mul_f64(0.9 + fastrand::f64() * 0.2);
    if let Some(at) = plan.deadline {
        let left = at - (ctx.clock)().mono;
        wait = wait.min(Duration::from_millis(
            u64::try_from(left.max(10)).unwrap_or(10),
        ));
    }
    if let Some(at) = next_retry {
        wait = wait.min(Duration::from_millis(
            u64::try_from((at - now).max(100)).unwrap_or(100),
        ));
    }
    Ok(Requeue::requeue(wait))
}

/// What to write, copied out of the runtime so no lock is held across API calls.
struct Plan {
    dry_run: bool,
    /// The managed Service's set: the primaries only when emergency endpoints are published
    /// apart (`emergency_published`).
    published: Vec<Published>,
    /// The weighted emergency Service's set (`spec.gateway.backendWeights`).
    emergency_published: Option<Vec<Published>>,
    /// The emergency backends' weight in percent of theirs (`spec.gateway.backendWeights`).
    emergency_weight_percent: Option<u32>,
    inventory_known: bool,
    emergency_replicas: Option<i32>,
    ingress: Option<IngressDesired>,
    /// Percent of DNS answers for the primary tier (`spec.dns`).
    dns_primary_percent: Option<u32>,
    /// The tier the DNS records left, while it still drains (kept serving).
    draining: Option<crate::engine::LbTier>,
    /// When the engine may decide something with no new fact (monotonic).
    deadline: Option<crate::engine::Millis>,
}

impl Plan {
    fn from(r: &PolicyRuntime, now: Now, split: bool) -> Self {
        let s = &r.state;
        let of = |pool: Option<Pool>| -> Vec<Published> {
            s.published()
                .filter(|e| pool.is_none_or(|p| e.pool == p))
                .filter_map(|e| Published::parse(&e.address))
                .collect()
        };
        Plan {
            dry_run: r.cfg.dry_run,
            published: of(split.then_some(Pool::Primary)),
            emergency_published: split.then(|| of(Some(Pool::Emergency))),
            emergency_weight_percent: s.in_effect_emergency_weight_percent(&r.cfg),
            inventory_known: s.inventory_known,
            emergency_replicas: s.desired_emergency_replicas(&r.cfg),
            ingress: s.desired_ingress(&r.cfg),
            dns_primary_percent: s.desired_dns_primary_percent(&r.cfg),
            draining: s.draining.filter(|d| d.until > now.mono).map(|d| d.tier),
            deadline: s.next_deadline(&r.cfg, now),
        }
    }
}

/// One Event when a policy starts conflicting with another over an object (or the objects or
/// owner named change), and a log line when the conflict ends.
async fn announce_conflict(
    ctx: &Context,
    policy: &FailoverPolicy,
    rt: &std::sync::Mutex<PolicyRuntime>,
    conflict: Option<&str>,
) {
    let before = std::mem::replace(&mut lock(rt).conflict, conflict.map(str::to_string));
    match (before.as_deref(), conflict) {
        (b, Some(now)) if b != Some(now) => {
            warn!(conflict = %now, "conflicting claim: writing nothing");
            note(
                ctx,
                policy,
                Severity::Warning,
                reasons::CONFLICT,
                "Claim",
                now,
            )
            .await;
        }
        (Some(_), None) => info!("no longer conflicting: this policy owns every object it names"),
        _ => {}
    }
}

/// Fills what this reconcile's writes did not establish from the caches: the class the managed
/// Ingresses carry and the replicas the emergency Deployment asks for.
fn in_effect_from_caches(
    ctx: &Context,
    spec: &FailoverPolicySpec,
    ns: &str,
    dry_run: bool,
    fx: &mut InEffect,
) {
    if dry_run || fx.class.is_none() {
        fx.class = actuate::class_in_effect(ctx, ns, spec);
    }
    if let Some(d) = spec
        .backends
        .emergency
        .as_ref()
        .and_then(|e| e.deployment.as_ref())
        && fx.replicas.is_none()
    {
        fx.replicas = observe::spec_replicas(ctx.stores.deployment(ns, &d.name).as_deref());
    }
}

/// The status of this reconcile: the engine's rendering, unresolved references, and what is in
/// effect beside what was decided.
fn render(
    rt: &std::sync::Mutex<PolicyRuntime>,
    policy: &FailoverPolicy,
    spec: &FailoverPolicySpec,
    dry_run: bool,
    not_ready: Option<&(&str, String)>,
    fx: &InEffect,
    clock: Now,
) -> FailoverPolicyStatus {
    let generation = policy.metadata.generation;
    let r = lock(rt);
    // Conditions keep their transition times from the newest status known: ours, if the
    // cache has not caught up with our last write yet.
    let previous = r.last_status.as_ref().or(policy.status.as_ref());
    let mut s = render_status(&r.cfg, &r.state, generation, clock, previous);
    if let Some((reason, message)) = not_ready {
        mark_not_ready(&mut s, reason, message, previous, clock.wall);
    }
    let facts = effect::Spec {
        dry_run,
        has_ingress: spec.ingress.is_some(),
        backup_class: spec.ingress.as_ref().map(|i| i.backup_class.as_str()),
        standby_replicas: spec
            .backends
            .emergency
            .as_ref()
            .and_then(|e| e.deployment.as_ref())
            .map(|d| d.standby_replicas),
    };
    effect::apply(&mut s, &facts, fx, previous, generation, clock.wall);
    s
}

/// The part of status a restarted controller (or a new leader) resumes traffic and capacity
/// from: the decided class and weight, the emergency machine, and the flap budgets that count
/// the moves. Status is the write-ahead record of these: they are written before any object.
#[derive(PartialEq)]
struct Decision<'a> {
    class: Option<&'a str>,
    weight: Option<u32>,
    emergency: Option<(Option<crate::api::EmergencyState>, Option<i32>)>,
    budgets: &'a [crate::api::FlapBudgetStatus],
}

impl<'a> Decision<'a> {
    fn of(s: &'a FailoverPolicyStatus) -> Self {
        Decision {
            class: s.decided_class.as_deref(),
            weight: s.primary_weight_percent,
            emergency: s.emergency.as_ref().map(|e| (e.state, e.desired_replicas)),
            budgets: &s.flap_budgets,
        }
    }
}

/// Persists the engine's decision in status before it is acted on, when status does not hold it
/// yet. Returns whether the decision is recorded: when it is not (the status write failed or
/// backs off), traffic and capacity keep what they have and only the published endpoints, which
/// a restart re-derives from probes, are written.
async fn record_decision(
    ctx: &Context,
    policy: &FailoverPolicy,
    spec: &FailoverPolicySpec,
    plan: &Plan,
    rt: &std::sync::Mutex<PolicyRuntime>,
    not_ready: Option<&(&str, String)>,
    clock: Now,
) -> bool {
    if plan.emergency_replicas.is_none() && plan.ingress.is_none() {
        return true;
    }
    let ns = policy.namespace().unwrap_or_default();
    let mut fx = InEffect {
        failures: lock(rt).ledger.failures().map(|f| f.message()).collect(),
        ..Default::default()
    };
    in_effect_from_caches(ctx, spec, &ns, false, &mut fx);
    fx.notes.push((
        reasons::APPLYING,
        "the decision is recorded and its writes are under way".to_string(),
    ));
    let status = render(rt, policy, spec, false, not_ready, &fx, clock);
    let recorded = {
        let r = lock(rt);
        r.last_status
            .as_ref()
            .or(policy.status.as_ref())
            .is_some_and(|p| {
                p.phase != crate::api::Phase::Pending && Decision::of(p) == Decision::of(&status)
            })
    };
    if recorded {
        return true;
    }
    if !lock(rt).ledger.due(Actuation::Status, clock.wall) {
        return false;
    }
    let key = PolicyId::of(policy);
    // As for the final status: the gauges never trail what status says was decided.
    export_gauges(ctx, &key, rt);
    match write_status(ctx, policy, &ns, &status).await {
        Ok(()) => {
            let mut r = lock(rt);
            r.ledger.succeeded(Actuation::Status);
            r.last_status = Some(status);
            true
        }
        Err(e) => {
            warn!(error = %e, "recording the decision in status failed; traffic and capacity wait for it");
            lock(rt).ledger.failed(
                Actuation::Status,
                format!("FailoverPolicy {key} status"),
                e.to_string(),
                clock.wall,
            );
            ctx.metrics.write_failed(&key, Actuation::Status.resource());
            false
        }
    }
}

fn new_runtime(
    policy: &FailoverPolicy,
    spec: &FailoverPolicySpec,
    ctx: &Context,
    ns: &str,
    now: Now,
) -> PolicyRuntime {
    let cfg = EngineConfig::from_spec(spec);
    // A status with decisions means an earlier process (or leader) was enforcing this policy:
    // resume its memory instead of re-deciding from scratch. That includes an Invalid status
    // written while holding the last valid decisions: its decided fields are intact.
    let state = match &policy.status {
        Some(st) if st.phase != crate::api::Phase::Pending => {
            // Status is the write-ahead record of every decision: what it says is carried out,
            // whatever the objects show (a crash may have come before their writes).
            info!(
                decided_class = st.decided_class.as_deref().unwrap_or("-"),
                emergency = ?st.emergency.as_ref().and_then(|e| e.state),
                desired_replicas = ?st.emergency.as_ref().and_then(|e| e.desired_replicas),
                "resuming the decisions recorded in status"
            );
            PolicyState::resume(&cfg, st, now)
        }
        _ => PolicyState::new(),
    };
    let emergency_replicas_written = spec
        .backends
        .emergency
        .as_ref()
        .and_then(|e| e.deployment.as_ref())
        .and_then(|d| {
            let dep = ctx.stores.deployment(ns, &d.name);
            observe::spec_replicas(dep.as_deref())
        });
    PolicyRuntime {
        generation: policy.metadata.generation,
        cfg,
        state,
        obs: Observation::default(),
        inventory: Vec::new(),
        emergency_replicas_written,
        rejected: None,
        emergency_written_over: None,
        ingress_written: Default::default(),
        pending_events: Vec::new(),
        last_status: policy.status.clone(),
        targets_dirty: true,
        fact_trigger_sent: false,
        alone_at: None,
        managed: Default::default(),
        emergency: Default::default(),
        legacy_synced: None,
        legacy_exists: None,
        ledger: Default::default(),
        conflict: None,
        retired: Default::default(),
        references_checked: None,
    }
}

/// Reads the caches into the engine's observation.
fn gather(
    ctx: &Context,
    spec: &FailoverPolicySpec,
    ns: &str,
    r: &mut PolicyRuntime,
    problems: &mut Vec<String>,
) {
    // The slices of the Services the pools read (none for static pools).
    let slices: Vec<_> = spec
        .backends
        .primary
        .service
        .as_ref()
        .map(|s| s.name.as_str())
        .into_iter()
        .chain(
            spec.backends
                .emergency
                .as_ref()
                .and_then(|e| e.deployment.as_ref())
                .map(|d| d.service_name.as_deref().unwrap_or(&d.name)),
        )
        .flat_map(|svc| ctx.stores.service_slices(ns, svc))
        .collect();
    // A Service-backed pool with no EndpointSlice at all is unknown, not empty: Kubernetes keeps
    // an (empty) slice for every Service with a selector, so absence means "not seen yet" or a
    // wrong name — never a reason to wake capacity or eject anything.
    let mut known = true;
    let missing = |svc: &str, what: &str, problems: &mut Vec<String>| {
        let seen = slices.iter().any(|s| {
            s.labels()
                .get(observe::SERVICE_NAME_LABEL)
                .map(String::as_str)
                == Some(svc)
                && s.labels()
                    .get(observe::MANAGED_BY_LABEL)
                    .map(String::as_str)
                    != Some(observe::MANAGED_BY)
        });
        if !seen {
            problems.push(format!(
                "no EndpointSlice found for {what} Service {ns}/{svc}"
            ));
        }
        !seen
    };
    if let Some(svc) = &spec.backends.primary.service
        && missing(&svc.name, "primary", problems)
    {
        known = false;
    }
    let allowlist = ctx.allowlist();
    let trust = observe::EndpointTrust {
        allowlist: &allowlist,
        unmanaged_slices: ctx.trust_unmanaged_slices,
    };
    let inventory = observe::inventory(spec, ns, &slices, trust, problems);
    if known && (inventory != r.inventory || !r.obs.inventory_known) {
        r.obs.set_endpoints(inventory.clone());
        r.inventory = inventory;
        r.targets_dirty = true;
    }
    if let Some(d) = spec
        .backends
        .emergency
        .as_ref()
        .and_then(|e| e.deployment.as_ref())
    {
        let dep = ctx.stores.deployment(ns, &d.name);
        if dep.is_none() {
            problems.push(format!("emergency Deployment {ns}/{} not found", d.name));
        }
        r.obs.emergency_ready_replicas = observe::ready_replicas(dep.as_deref());
    }
    if let Some(tier) = &spec.gateway {
        super::gateway::gather(ctx, tier, ns, &mut r.obs, problems);
        if spec.ingress.is_none() {
            let (p, b) = (tier.primary_health(), tier.backup_health());
            if let Some(c) = &p.controller_deployment {
                r.obs.lb_controller = controller_fact(ctx, ns, c, "Gateway controller", problems);
            }
            if let Some(c) = &b.controller_deployment {
                r.obs.backup_controller =
                    controller_fact(ctx, ns, c, "backup Gateway controller", problems);
            }
        }
    }
    if let Some(ingress) = &spec.ingress {
        if let Some(c) = &ingress.health.controller_deployment {
            r.obs.lb_controller = controller_fact(ctx, ns, c, "ingress controller", problems);
        }
        if let Some(c) = ingress
            .backup_health
            .as_ref()
            .and_then(|b| b.controller_deployment.as_ref())
        {
            r.obs.backup_controller =
                controller_fact(ctx, ns, c, "backup ingress controller", problems);
        }
    }
}

/// What the cache says about a tier's ingress controller Deployment. Absent from a cache that
/// has listed every Deployment in its namespace, it does not exist; otherwise it is unknown.
fn controller_fact(
    ctx: &Context,
    ns: &str,
    c: &crate::api::NamespacedRef,
    what: &str,
    problems: &mut Vec<String>,
) -> Option<DeploymentFact> {
    let cns = c.namespace.as_deref().unwrap_or(ns);
    let dep = ctx.stores.deployment(cns, &c.name);
    if dep.is_none() {
        problems.push(format!("{what} Deployment {cns}/{} not found", c.name));
    }
    match observe::ready_replicas(dep.as_deref()) {
        Some(n) if n > 0 => Some(DeploymentFact::Ready),
        Some(_) => Some(DeploymentFact::NotReady),
        None if ctx.stores.lists_every_deployment_in(cns) => Some(DeploymentFact::Missing),
        None => None,
    }
}

/// Writes the desired state, each actuation on its own: a failing one (a missing Deployment)
/// is recorded in the ledger, backs off, becomes part of the `InEffect` condition and an
/// Event, and never keeps the others (above all the traffic move) from being written.
/// Traffic and capacity are written only once their decision is `recorded` in status.
async fn write_desired(
    ctx: &Context,
    policy: &FailoverPolicy,
    spec: &FailoverPolicySpec,
    plan: &Plan,
    rt: &std::sync::Mutex<PolicyRuntime>,
    now: i64,
    recorded: bool,
) -> InEffect {
    let owner = owner_ref(policy);
    let name = policy.name_any();
    let namespace = policy.namespace().unwrap_or_default();
    let ns = namespace.as_str();
    let mut fx = InEffect::default();
    let due = |what: Actuation| lock(rt).ledger.due(what, now);

    // References renamed or removed since the last look are handed back. The objects are read
    // from the caches, not the spec, so a restart loses nothing; looked at after a spec change,
    // after a restart and then at the resync period, never on every probe-triggered reconcile.
    let look = lock(rt)
        .references_checked
        .is_none_or(|at| now - at >= RESYNC_MS);
    if look {
        let mut clean = true;
        // A renamed managed Service is handed back like on deletion: left alone, it would keep
        // publishing the last set the policy wrote there, frozen.
        let uid = policy.metadata.uid.as_deref().unwrap_or_default();
        let current: Vec<String> = std::iter::once(spec.managed_service.name.clone())
            .chain(spec.weighted_emergency_service())
            .collect();
        for (old, port_name) in actuate::retired_services(ctx, ns, uid, &current) {
            if lock(rt).retired.contains(&format!("Service {old}")) {
                continue;
            }
            if old == spec.managed_service.emergency_service_name() {
                // backendWeights removed: the emergency Service is emptied once no copy routes
                // there.
                if !due(Actuation::EmergencySlices) {
                    clean = false;
                    continue;
                }
                let routed = ctx.stores.gateway.as_ref().is_some_and(|g| {
                    super::gateway::copies_of(&g.routes, ns, &name)
                        .iter()
                        .any(|c| super::gateway::routes_to(c, ns, &old))
                });
                if routed {
                    clean = false;
                    continue;
                }
                match actuate::empty_service(ctx, ns, &old, &name).await {
                    Ok(()) => {
                        lock(rt).retired.insert(format!("Service {old}"));
                        info!(service = %old, "backendWeights removed: emptied the emergency Service");
                    }
                    Err(e) => {
                        clean = false;
                        failed(ctx, policy, rt, Actuation::EmergencySlices, &e, now).await;
                    }
                }
                continue;
            }
            if !due(Actuation::Service) {
                clean = false;
                continue;
            }
            let mut was = spec.clone();
            was.managed_service.name = old.clone();
            if !port_name.is_empty() {
                was.managed_service.port_name = port_name;
            }
            match actuate::hand_back_service(ctx, ns, &was, &name).await {
                Ok(()) => {
                    lock(rt).retired.insert(format!("Service {old}"));
                    info!(service = %old, "managedService renamed: handed the old Service back");
                    note(
                        ctx,
                        policy,
                        Severity::Normal,
                        "HandedBack",
                        "Rename",
                        &format!(
                            "spec.managedService.name no longer names Service {ns}/{old}: handed it back publishing the whole primary pool, no longer managed"
                        ),
                    )
                    .await;
                }
                Err(e) => {
                    clean = false;
                    failed(ctx, policy, rt, Actuation::Service, &e, now).await
                }
            }
        }
        // Ingresses no longer named are handed back like on deletion, not left on the backup class.
        clean &= due(Actuation::Ingress);
        if due(Actuation::Ingress) {
            let already = lock(rt).retired.clone();
            let (released, error) =
                actuate::release_ingresses(ctx, ns, spec, &name, &already).await;
            for ing in released {
                lock(rt).retired.insert(format!("Ingress {ing}"));
                info!(ingress = %ing, "no longer named by the policy: handed back");
                note(
                    ctx,
                    policy,
                    Severity::Normal,
                    "HandedBack",
                    "Release",
                    &format!(
                        "the policy no longer names Ingress {ns}/{ing}: handed back on its primary class, without the operator's annotations and claim"
                    ),
                )
                .await;
            }
            if let Some(e) = error {
                clean = false;
                failed(ctx, policy, rt, Actuation::Ingress, &e, now).await;
            }
        }
        // spec.dns removed: the DNSEndpoint is handed back as on deletion with Orphan (records
        // as they are, no longer owned): deleting it would take away what clients resolve.
        if spec.dns.is_none() && super::dns::owned_by(ctx, ns, &name) && due(Actuation::Dns) {
            match super::dns::hand_back(ctx, ns, &name, spec, false).await {
                Ok(()) => {
                    let e = super::dns::endpoint_name(&name);
                    info!(dnsendpoint = %e, "spec.dns removed: handed the DNSEndpoint back");
                    note(
                        ctx,
                        policy,
                        Severity::Normal,
                        "HandedBack",
                        "Release",
                        &format!(
                            "spec.dns removed: DNSEndpoint {ns}/{e} handed back with its records as they are, no longer owned or updated by the policy"
                        ),
                    )
                    .await;
                }
                Err(e) => {
                    clean = false;
                    failed(ctx, policy, rt, Actuation::Dns, &e, now).await;
                }
            }
        }
        if clean {
            lock(rt).references_checked = Some(now);
        }
    }
    if plan.inventory_known {
        let managed = Publish {
            service: &spec.managed_service.name,
            published: &plan.published,
            actuations: (Actuation::Service, Actuation::Slices),
            memory: |r| &mut r.managed,
            slices_need_service: false,
        };
        publish(ctx, policy, spec, rt, &managed, &owner, now).await;
        if let (Some(service), Some(published)) =
            (spec.weighted_emergency_service(), &plan.emergency_published)
        {
            let emergency = Publish {
                service: &service,
                published,
                actuations: (Actuation::EmergencyService, Actuation::EmergencySlices),
                memory: |r| &mut r.emergency,
                slices_need_service: true,
            };
            publish(ctx, policy, spec, rt, &emergency, &owner, now).await;
        }
        sync_legacy_endpoints(ctx, policy, spec, plan, rt, &owner, now).await;
    }

    if !recorded {
        fx.failures = lock(rt).ledger.failures().map(|f| f.message()).collect();
        return fx;
    }
    if let (Some(want), Some(d)) = (
        plan.emergency_replicas,
        spec.backends
            .emergency
            .as_ref()
            .and_then(|e| e.deployment.as_ref()),
    ) {
        scale_emergency(ctx, policy, rt, ns, &d.name, want, now, &mut fx).await;
    }

    if let (Some(want), Some(tier)) = (&plan.ingress, &spec.ingress)
        && due(Actuation::Ingress)
    {
        let sync =
            actuate::sync_ingresses(ctx, ns, spec, tier.mode, want, &owner, &name, Some(rt)).await;
        if sync.errors.is_empty() {
            lock(rt).ledger.succeeded(Actuation::Ingress);
            if !sync.given_up && !actuate::managed_ingresses(ctx, ns, spec).is_empty() {
                fx.class = Some(want.active_class.clone());
            }
        }
        for e in &sync.errors {
            failed(ctx, policy, rt, Actuation::Ingress, e, now).await;
        }
        for n in &sync.notes {
            let message = match n.correction {
                Some(k) => format!(
                    "{} was changed by field manager {:?}; setting it back to the decided class (correction {k} of {MAX_CORRECTIONS})",
                    n.field, n.manager
                ),
                None if n.first => format!(
                    "{} keeps being changed by field manager {:?}; stopped correcting it after {MAX_CORRECTIONS} corrections",
                    n.field, n.manager
                ),
                None => continue,
            };
            let action = if n.correction.is_some() {
                "Correct"
            } else {
                "StopCorrecting"
            };
            note(
                ctx,
                policy,
                Severity::Warning,
                reasons::OTHER_WRITER,
                action,
                &message,
            )
            .await;
        }
    }
    // Routes before records (make before break): the DNS answers move to a side only once the
    // copies are attached there, so no client is sent to a Gateway that does not serve them.
    let mut routes_in_place = spec.gateway.is_none();
    if let (Some(want), Some(tier), Some(stores)) =
        (&plan.ingress, &spec.gateway, &ctx.stores.gateway)
        && due(Actuation::Routes)
    {
        let templates = super::gateway::templates(&stores.routes, ns, tier);
        let weights = route_weights(spec, plan, rt);
        let sync = super::gateway::sync_copies(
            ctx,
            stores,
            ns,
            tier,
            &templates,
            want,
            plan.draining,
            weights.as_ref(),
            &owner,
            &name,
        )
        .await;
        if sync.errors.is_empty() {
            lock(rt).ledger.succeeded(Actuation::Routes);
            routes_in_place = true;
        }
        if !sync.written.is_empty() {
            info!(routes = ?sync.written, "HTTPRoute copies written");
        }
        for e in &sync.errors {
            failed(ctx, policy, rt, Actuation::Routes, e, now).await;
        }
    }
    if let (Some(percent), Some(dns)) = (plan.dns_primary_percent, &spec.dns)
        && ctx.stores.dns_endpoints.is_some()
        && routes_in_place
        && due(Actuation::Dns)
    {
        let addresses = super::dns::tier_addresses(ctx, ns, spec);
        let what = format!("DNSEndpoint {ns}/{}", super::dns::endpoint_name(&name));
        let result = match super::dns::desired_endpoints(dns, percent, &addresses) {
            Ok(endpoints) => super::dns::sync(ctx, ns, &name, Some(&owner), &endpoints)
                .await
                .map(|_| ()),
            Err(message) => Err(ActuateError::Conflict { what, message }),
        };
        match result {
            Ok(()) => {
                lock(rt).ledger.succeeded(Actuation::Dns);
            }
            Err(e) => failed(ctx, policy, rt, Actuation::Dns, &e, now).await,
        }
    }
    fx.failures = lock(rt).ledger.failures().map(|f| f.message()).collect();
    for (field, manager) in lock(rt).ledger.other_writers() {
        fx.notes.push((
            reasons::OTHER_WRITER,
            format!(
                "{field} keeps being changed by field manager {manager:?}; the operator stopped correcting it after {MAX_CORRECTIONS} corrections (see docs/install.md on GitOps tools)"
            ),
        ));
    }
    fx
}

/// One Service the operator publishes through, and where its memory is kept.
struct Publish<'a> {
    service: &'a str,
    published: &'a [Published],
    /// The Service's and its slices' own actuations: a failing one holds only itself.
    actuations: (Actuation, Actuation),
    memory: fn(&mut PolicyRuntime) -> &mut super::context::Publication,
    /// Write no slice until the Service is confirmed: the weighted emergency Service, since a
    /// route weight counts its written slices. (The managed Service's slices are written even
    /// if it could not be ensured this time, as they always were.)
    slices_need_service: bool,
}

/// Finds or creates the Service (once per generation), then makes its slices list exactly
/// the published set, compared with what was last written (the cluster itself every
/// `RESYNC_MS`).
async fn publish(
    ctx: &Context,
    policy: &FailoverPolicy,
    spec: &FailoverPolicySpec,
    rt: &std::sync::Mutex<PolicyRuntime>,
    what: &Publish<'_>,
    owner: &OwnerReference,
    now: i64,
) {
    let ns = policy.namespace().unwrap_or_default();
    let name = policy.name_any();
    let (service_actuation, slices_actuation) = what.actuations;
    let due = |a: Actuation| lock(rt).ledger.due(a, now);
    if !(what.memory)(&mut lock(rt)).ensured && due(service_actuation) {
        match actuate::ensure_service(ctx, &ns, what.service, spec, owner, &name).await {
            Ok(()) => {
                let mut r = lock(rt);
                (what.memory)(&mut r).ensured = true;
                r.ledger.succeeded(service_actuation);
            }
            Err(e) => {
                failed(ctx, policy, rt, service_actuation, &e, now).await;
                if what.slices_need_service {
                    return;
                }
            }
        }
    }
    let resync = (what.memory)(&mut lock(rt)).due(what.published, now, RESYNC_MS);
    if resync && due(slices_actuation) {
        match actuate::sync_slices(
            ctx,
            &ns,
            what.service,
            &spec.managed_service.port_name,
            owner,
            &name,
            what.published,
        )
        .await
        {
            Ok(_) => {
                let mut r = lock(rt);
                (what.memory)(&mut r).synced = Some((what.published.to_vec(), now));
                r.ledger.succeeded(slices_actuation);
            }
            Err(e) => failed(ctx, policy, rt, slices_actuation, &e, now).await,
        }
    }
}

/// The backendRef weights of the route copies (`spec.gateway.backendWeights`), per serving
/// backend times the backends each Service publishes. Emergency endpoints count only once the
/// cluster has them (the last successful sync of the emergency Service): a weight never sends
/// traffic to a Service whose endpoints are not written yet. None outside an emergency, so
/// the copies keep the template's own weights then.
fn route_weights(
    spec: &FailoverPolicySpec,
    plan: &Plan,
    rt: &std::sync::Mutex<PolicyRuntime>,
) -> Option<super::gateway::RouteWeights> {
    let weights = spec.gateway.as_ref()?.backend_weights.as_ref()?;
    let emergency_service = spec.weighted_emergency_service()?;
    let percent = plan.emergency_weight_percent?;
    let written = lock(rt)
        .emergency
        .synced
        .as_ref()
        .map(|(synced, _)| {
            plan.emergency_published
                .iter()
                .flatten()
                .filter(|p| synced.contains(p))
                .count()
        })
        .unwrap_or(0);
    super::gateway::RouteWeights::of(
        spec.managed_service.name.clone(),
        emergency_service,
        (weights.primary, plan.published.len()),
        (weights.emergency, written, percent),
    )
}

/// The emergency Deployment's replicas, compared with the cached object (not with the last
/// write): a change made by someone else is corrected, naming the field manager, at most
/// [`MAX_CORRECTIONS`] times; an autoscaler targeting the Deployment is left alone.
#[allow(clippy::too_many_arguments)]
async fn scale_emergency(
    ctx: &Context,
    policy: &FailoverPolicy,
    rt: &std::sync::Mutex<PolicyRuntime>,
    ns: &str,
    deployment: &str,
    want: i32,
    now: i64,
    fx: &mut InEffect,
) {
    let dep = ctx.stores.deployment(ns, deployment);
    let have = observe::spec_replicas(dep.as_deref());
    let field = format!("spec.replicas of Deployment {ns}/{deployment}");
    lock(rt).ledger.expect(&field, &want.to_string());
    let autoscaler = observe::autoscaler_of(&ctx.stores.autoscalers.state(), ns, deployment);
    if let Some(hpa) = &autoscaler {
        fx.notes.push((
            reasons::AUTOSCALER,
            format!(
                "HorizontalPodAutoscaler {ns}/{hpa} scales Deployment {ns}/{deployment}: the operator sets {want} replicas when its decision changes and leaves the rest to the autoscaler (now {})",
                have.map_or("?".to_string(), |h| h.to_string())
            ),
        ));
    }
    let cached_rv = dep
        .as_deref()
        .and_then(|d| d.metadata.resource_version.clone());
    let step = {
        let r = lock(rt);
        scale_step(&ScaleFacts {
            have,
            want,
            exists: dep.is_some(),
            cached_rv: cached_rv.as_deref(),
            autoscaled: autoscaler.is_some(),
            written: r.emergency_replicas_written,
            written_over: r.emergency_written_over.as_deref(),
        })
    };
    match step {
        ScaleStep::InPlace => {
            let mut r = lock(rt);
            r.emergency_replicas_written = Some(want);
            r.ledger.succeeded(Actuation::Scale);
            return;
        }
        ScaleStep::AwaitCache | ScaleStep::LeaveToAutoscaler => return,
        ScaleStep::CorrectOtherWriter => {
            let managers = dep
                .as_deref()
                .map(|d| observe::other_managers(&d.metadata, &["f:spec", "f:replicas"], MANAGER))
                .unwrap_or_default();
            let manager = if managers.is_empty() {
                "unknown".to_string()
            } else {
                managers.join(", ")
            };
            let verdict = lock(rt)
                .ledger
                .correction(&field, &want.to_string(), &manager);
            match verdict {
                Correction::Correct(n) => {
                    note(
                        ctx,
                        policy,
                        Severity::Warning,
                        reasons::OTHER_WRITER,
                        "Correct",
                        &format!(
                            "{field} was changed to {} by field manager {manager:?}; setting it back to {want} (correction {n} of {MAX_CORRECTIONS})",
                            have.map_or("?".to_string(), |h| h.to_string())
                        ),
                    )
                    .await;
                }
                Correction::GiveUp { first } => {
                    if first {
                        note(
                            ctx,
                            policy,
                            Severity::Warning,
                            reasons::OTHER_WRITER,
                            "StopCorrecting",
                            &format!(
                                "{field} keeps being changed by field manager {manager:?}; stopped correcting it after {MAX_CORRECTIONS} corrections"
                            ),
                        )
                        .await;
                    }
                    return;
                }
            }
        }
        ScaleStep::Write => {}
    }
    if !lock(rt).ledger.due(Actuation::Scale, now) {
        return;
    }
    match actuate::scale(ctx, ns, deployment, want).await {
        Ok(()) => {
            let mut r = lock(rt);
            r.emergency_replicas_written = Some(want);
            r.emergency_written_over = cached_rv;
            r.ledger.succeeded(Actuation::Scale);
            fx.replicas = Some(want);
            info!(deployment = %deployment, replicas = want, "scaled emergency capacity");
        }
        Err(e) => failed(ctx, policy, rt, Actuation::Scale, &e, now).await,
    }
}

/// What the emergency Deployment's replica count is observed to be, and what this operator
/// last wrote to it: all [`scale_step`] decides from.
#[derive(Debug, Clone, Copy)]
struct ScaleFacts<'a> {
    /// `spec.replicas` in the cache (None: no Deployment, or no count).
    have: Option<i32>,
    /// What the engine wants.
    want: i32,
    exists: bool,
    /// The cached Deployment's resourceVersion.
    cached_rv: Option<&'a str>,
    /// A HorizontalPodAutoscaler scales it.
    autoscaled: bool,
    /// The count this operator last wrote, and the resourceVersion it wrote over.
    written: Option<i32>,
    written_over: Option<&'a str>,
}

/// What [`scale_emergency`] does about the replica count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ScaleStep {
    /// The Deployment already has the wanted count: nothing to write.
    InPlace,
    /// This operator wrote the count and the cache has not caught up with that write yet.
    AwaitCache,
    /// Another writer changed the count this operator wrote, and an autoscaler scales the
    /// Deployment: the count is the autoscaler's between decisions.
    LeaveToAutoscaler,
    /// Another writer changed the count this operator wrote: set it back, within the ledger's
    /// limit of corrections.
    CorrectOtherWriter,
    /// Write the wanted count (when the ledger's backoff allows).
    Write,
}

/// The pure part of [`scale_emergency`]: from what is observed and remembered, what to do.
fn scale_step(f: &ScaleFacts<'_>) -> ScaleStep {
    if f.have == Some(f.want) {
        return ScaleStep::InPlace;
    }
    let ours = f.written == Some(f.want);
    if ours && f.cached_rv.is_some() && f.written_over == f.cached_rv {
        return ScaleStep::AwaitCache;
    }
    // The operator wrote `want` before and the Deployment says otherwise: another writer.
    if ours && f.exists {
        return if f.autoscaled {
            ScaleStep::LeaveToAutoscaler
        } else {
            ScaleStep::CorrectOtherWriter
        };
    }
    ScaleStep::Write
}

/// The legacy `Endpoints` mirror (`managedService.legacyEndpoints`): kept equal to the published
/// set while the policy opts in, removed when it stops. Looked at only when it may matter (see
/// [`legacy_endpoints::must_look`]), so a policy that never opts in never touches the API.
async fn sync_legacy_endpoints(
    ctx: &Context,
    policy: &FailoverPolicy,
    spec: &FailoverPolicySpec,
    plan: &Plan,
    rt: &std::sync::Mutex<PolicyRuntime>,
    owner: &OwnerReference,
    now: i64,
) {
    let opted = spec.managed_service.legacy_endpoints;
    // A status written for an older generation: the spec changed while no replica observed it
    // (the opt-out may have been that edit). No status at all is a policy nobody has acted on.
    let unobserved_edit = policy
        .status
        .as_ref()
        .and_then(|s| s.observed_generation)
        .is_some_and(|g| Some(g) != policy.metadata.generation);
    let look = {
        let mut r = lock(rt);
        if !opted && !unobserved_edit && r.legacy_exists.is_none() {
            // This spec was observed (its status written) by a replica that then removed any
            // mirror of an earlier opt-in: there is none to look for.
            r.legacy_exists = Some(false);
        }
        legacy_endpoints::must_look(
            opted,
            r.legacy_exists,
            unobserved_edit,
            r.legacy_synced.as_ref(),
            &plan.published,
            now,
        )
    };
    if !look || !lock(rt).ledger.due(Actuation::LegacyEndpoints, now) {
        return;
    }
    let ns = policy.namespace().unwrap_or_default();
    let service = &spec.managed_service.name;
    let want = opted.then(|| {
        legacy_endpoints::desired(
            &ns,
            service,
            &spec.managed_service.port_name,
            Some(owner),
            &policy.name_any(),
            &plan.published,
        )
    });
    match legacy_endpoints::sync(ctx, &ns, service, want).await {
        Ok(exists) => {
            let mut r = lock(rt);
            r.legacy_exists = Some(exists);
            r.legacy_synced = opted.then(|| (plan.published.clone(), now));
            r.ledger.succeeded(Actuation::LegacyEndpoints);
        }
        Err(e) => failed(ctx, policy, rt, Actuation::LegacyEndpoints, &e, now).await,
    }
}

/// A failed write: ledger (backoff), metric, log and — when it is news — an Event.
async fn failed(
    ctx: &Context,
    policy: &FailoverPolicy,
    rt: &std::sync::Mutex<PolicyRuntime>,
    what: Actuation,
    e: &ActuateError,
    now: i64,
) {
    let key = PolicyId::of(policy);
    let news = lock(rt)
        .ledger
        .failed(what, e.object().to_string(), e.cause(), now);
    ctx.metrics.write_failed(&key, what.resource());
    warn!(object = %e.object(), error = %e.cause(), "write failed; retrying with backoff");
    if news {
        note(
            ctx,
            policy,
            Severity::Warning,
            reasons::WRITE_FAILED,
            "Write",
            &format!("writing {} failed: {}", e.object(), e.cause()),
        )
        .await;
    }
}

/// One Event about the policy (write failures, corrections, refusals).
pub(crate) async fn note(
    ctx: &Context,
    policy: &FailoverPolicy,
    severity: Severity,
    reason: &str,
    action: &str,
    message: &str,
) {
    // Queued; the sender retries and counts it once created.
    if let Err(e) = ctx
        .events
        .publish(&policy.object_ref(&()), severity, reason, action, message)
        .await
    {
        warn!(error = %e, "could not publish event");
    }
}

/// Sets `Ready=False` with `reason` and `message`, keeping the transition time while the same
/// reason holds.
fn mark_not_ready(
    status: &mut FailoverPolicyStatus,
    reason: &str,
    message: &str,
    previous: Option<&FailoverPolicyStatus>,
    now: i64,
) {
    let since = previous
        .and_then(|p| {
            p.conditions
                .iter()
                .find(|c| c.type_ == condition_types::READY)
        })
        .filter(|c| c.status == "False" && c.reason == reason)
        .map(|c| c.last_transition_time.clone());
    if let Some(c) = status
        .conditions
        .iter_mut()
        .find(|c| c.type_ == condition_types::READY)
    {
        c.status = "False".into();
        c.reason = reason.into();
        c.message = message.into();
        c.last_transition_time = since.unwrap_or_else(|| crate::engine::report::time(now));
    }
}

async fn write_status(
    ctx: &Context,
    policy: &FailoverPolicy,
    ns: &str,
    status: &FailoverPolicyStatus,
) -> Result<(), ReconcileError> {
    // With shards, status names the policy's shard and its holder (see `shards`).
    let stamped;
    let status = match ctx.shards.status_of(policy) {
        Some(shard) => {
            stamped = FailoverPolicyStatus {
                shard: Some(shard),
                ..status.clone()
            };
            &stamped
        }
        None => status,
    };
    if policy.status.as_ref() == Some(status) {
        return Ok(());
    }
    let api: Api<FailoverPolicy> = Api::namespaced(ctx.client.clone(), ns);
    let patch = json!({
        "apiVersion": "ingressfailover.io/v1alpha1",
        "kind": "FailoverPolicy",
        "status": status,
    });
    api.patch_status(
        &policy.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|source| ReconcileError::Status {
        policy: PolicyId::of(policy).to_string(),
        source,
    })?;
    ctx.metrics.write("failoverpolicies/status");
    Ok(())
}

fn invalid_message(errors: &[crate::validation::FieldError]) -> String {
    let mut message: Vec<String> = errors.iter().take(5).map(ToString::to_string).collect();
    if errors.len() > 5 {
        message.push(format!("and {} more", errors.len() - 5));
    }
    message.join("; ")
}

/// A policy that was valid and whose new generation is not: the engine keeps its memory, the
/// managed objects stay as the last valid generation left them (nothing is written), and status
/// keeps every decided field with Ready=False/InvalidSpec. A fixed spec carries on from there.
async fn hold_invalid(
    policy: &FailoverPolicy,
    ctx: &Context,
    rt: Arc<std::sync::Mutex<PolicyRuntime>>,
    message: &str,
    now: i64,
) -> Result<Requeue, ReconcileError> {
    let ns = policy.namespace().unwrap_or_default();
    let key = PolicyId::of(policy);
    let status = {
        let mut guard = lock(&rt);
        let r = &mut *guard;
        // Checks keep arriving for the last valid targets; they wait for no step.
        r.obs.clear_checks();
        let mut actions = Vec::new();
        crate::engine::hold_invalid(&mut r.state, message, now, &mut actions);
        for a in &actions {
            log_action(a, r.cfg.dry_run);
        }
        r.pending_events.extend(actions);
        let previous = r.last_status.as_ref().or(policy.status.as_ref());
        let mut s = render_status(&r.cfg, &r.state, policy.metadata.generation, now, previous);
        mark_invalid(&mut s, policy.metadata.generation, message, now, previous);
        // Nothing is written while held: what was in effect stays in effect.
        if let Some(p) = previous {
            s.active_class.clone_from(&p.active_class);
            if let Some(c) = p
                .conditions
                .iter()
                .find(|c| c.type_ == condition_types::IN_EFFECT)
            {
                s.conditions.push(c.clone());
            }
        }
        s
    };
    if lock(&rt).last_status.as_ref() != Some(&status) {
        write_status(ctx, policy, &ns, &status).await?;
    }
    let dry_run = lock(&rt).cfg.dry_run;
    publish_events(ctx, policy, &rt, dry_run, &InEffect::default()).await;
    lock(&rt).last_status = Some(status);
    ctx.metrics.set_phase(&key, crate::api::Phase::Invalid);
    Ok(Requeue::await_change())
}

/// An invalid spec on a policy this process holds no memory of: say why, manage nothing, probe
/// nothing. Decided fields an earlier process left in status are kept, so that a fixed spec
/// resumes them instead of starting from scratch.
async fn refuse(
    policy: &FailoverPolicy,
    ctx: &Context,
    key: &PolicyId,
    message: &str,
    now: i64,
) -> Result<Requeue, ReconcileError> {
    ctx.remove_runtime(key);
    ctx.prober.remove_policy(key);
    let ns = policy.namespace().unwrap_or_default();
    let previous = policy.status.as_ref();
    let status = match previous.filter(|p| p.phase != crate::api::Phase::Pending) {
        Some(p) => {
            let mut s = p.clone();
            mark_invalid(&mut s, policy.metadata.generation, message, now, previous);
            s
        }
        None => invalid_status(policy.metadata.generation, message, now, previous),
    };
    let changed = policy.status.as_ref() != Some(&status);
    write_status(ctx, policy, &ns, &status).await?;
    if changed {
        note(
            ctx,
            policy,
            Severity::Warning,
            reasons::INVALID_SPEC,
            "Validate",
            message,
        )
        .await;
    }
    ctx.metrics.set_phase(key, crate::api::Phase::Invalid);
    Ok(Requeue::await_change())
}

/// Deletion with Restore of a policy whose DNS records still send clients to the backup tier
/// (`status.dns.primaryWeightPercent` below 100): the records are handed back pointing at the
/// primary first, and status says the backup drains one TTL from now (`drainingTier: backup`,
/// `drainingUntil`), restart-safe. Until then nothing else is restored: the HotStandby mirror,
/// the route copies' backup attachment and emergency capacity keep serving the clients whose
/// resolvers still answer with the backup. Returns how long to wait yet (None: go on).
async fn deletion_drain(
    policy: &Arc<FailoverPolicy>,
    ctx: &Context,
) -> Result<Option<Duration>, ReconcileError> {
    // Called before every reconcile: not being deleted is the first thing to rule out.
    if policy.metadata.deletion_timestamp.is_none() {
        return Ok(None);
    }
    let spec = &policy.spec;
    let (Some(dns), Some(d)) = (
        &spec.dns,
        policy.status.as_ref().and_then(|s| s.dns.as_ref()),
    ) else {
        return Ok(None);
    };
    let ours = policy
        .metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == FINALIZER);
    if !ours
        || spec.deletion_policy != DeletionPolicy::Restore
        || spec.dry_run
        || ctx.stores.dns_endpoints.is_none()
    {
        return Ok(None);
    }
    let ns = policy.namespace().unwrap_or_default();
    let name = policy.name_any();
    let now = (ctx.clock)().wall;
    if d.primary_weight_percent < 100 {
        super::dns::hand_back(ctx, &ns, &name, spec, true).await?;
        let until = now + i64::from(dns.ttl_seconds.max(1)) * 1000;
        let mut status = policy.status.clone().unwrap_or_default();
        status.dns = Some(crate::api::DnsStatus {
            primary_weight_percent: 100,
            draining_tier: Some(crate::engine::LbTier::Backup.as_str().to_string()),
            draining_until: Some(crate::engine::report::time(until + 999)),
        });
        write_status(ctx, policy, &ns, &status).await?;
        info!(
            until,
            "deleted while DNS answered with the backup: records back on the primary, the rest restored after one TTL"
        );
        note(
            ctx,
            policy,
            Severity::Normal,
            "Draining",
            "Delete",
            &format!(
                "policy deleted while DNS records sent clients to the backup tier: records point at the primary again; the backup keeps serving for one TTL ({}s) before the rest is restored",
                dns.ttl_seconds
            ),
        )
        .await;
        return Ok(Some(Duration::from_secs(u64::from(dns.ttl_seconds.max(1)))));
    }
    let until = d
        .draining_until
        .as_ref()
        .filter(|_| d.draining_tier.as_deref() == Some(crate::engine::LbTier::Backup.as_str()))
        .map(|t| t.0.as_millisecond());
    Ok(until
        .filter(|&u| u > now)
        .map(|u| Duration::from_millis(u64::try_from(u - now).unwrap_or(0))))
}

/// Deletion: restore (or leave) what the policy changed, then forget it.
///
/// With Restore, the Ingresses return to the primary class in the form they use (role
/// annotations and mirrors removed), the emergency Deployment to its standby replicas, and the
/// managed Service is handed back publishing the whole primary pool: deleting a policy never
/// leaves an Ingress routing to a Service with no endpoints while primary backends exist.
async fn cleanup(policy: Arc<FailoverPolicy>, ctx: &Context) -> Result<Requeue, ReconcileError> {
    let ns = policy.namespace().unwrap_or_default();
    let key = PolicyId::of(&policy);
    let spec = &policy.spec;
    if spec.deletion_policy == DeletionPolicy::Restore && !spec.dry_run {
        let owner = owner_ref(&policy);
        let name = policy.name_any();
        if let Some(tier) = &spec.ingress {
            let back = IngressDesired {
                active_class: tier.primary_class.clone(),
                primary_weight_percent: 100,
            };
            let sync = actuate::sync_ingresses(
                ctx,
                &ns,
                spec,
                IngressMode::SwitchClass,
                &back,
                &owner,
                &name,
                None,
            )
            .await;
            if let Some(e) = sync.errors.into_iter().next() {
                return Err(e.into());
            }
        }
        if let Some(d) = spec
            .backends
            .emergency
            .as_ref()
            .and_then(|e| e.deployment.as_ref())
        {
            let dep = ctx.stores.deployment(&ns, &d.name);
            if observe::spec_replicas(dep.as_deref()).is_some_and(|r| r != d.standby_replicas) {
                actuate::scale(ctx, &ns, &d.name, d.standby_replicas).await?;
            }
        }
        actuate::hand_back_service(ctx, &ns, spec, &name).await?;
        if ctx.stores.dns_endpoints.is_some() {
            super::dns::hand_back(ctx, &ns, &name, spec, true).await?;
        }
        if let (Some(tier), Some(stores)) = (&spec.gateway, &ctx.stores.gateway) {
            let emergency = spec.weighted_emergency_service();
            super::gateway::hand_back(ctx, stores, &ns, tier, &name, emergency.as_deref(), true)
                .await?;
        }
        info!(policy = %key, "deleted: restored the primary class and standby replicas; handed back the managed Service with the whole primary pool");
        note(
            ctx,
            &policy,
            Severity::Normal,
            "Restored",
            "Delete",
            &format!(
                "policy deleted: Ingresses back on the primary class, emergency capacity at standby, Service {ns}/{} handed back publishing the whole primary pool",
                spec.managed_service.name
            ),
        )
        .await;
    } else if let (Some(tier), Some(stores)) = (&spec.gateway, &ctx.stores.gateway) {
        // Orphan (or dry-run): the copies stay where they are, but without the ownerReference
        // garbage collection would delete them with the policy, and the routes they serve.
        let emergency = spec.weighted_emergency_service();
        let name = policy.name_any();
        super::gateway::hand_back(ctx, stores, &ns, tier, &name, emergency.as_deref(), false)
            .await?;
    }
    // Orphan (and dry-run) leave the records as they are, but never to the garbage collector:
    // deleting the policy must not delete what clients resolve.
    if (spec.deletion_policy != DeletionPolicy::Restore || spec.dry_run)
        && ctx.stores.dns_endpoints.is_some()
    {
        super::dns::hand_back(ctx, &ns, &policy.name_any(), spec, false).await?;
    }
    ctx.remove_runtime(&key);
    ctx.prober.remove_policy(&key);
    ctx.metrics.forget(&key);
    Ok(Requeue::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The emergency scale as a table: what is observed and remembered → what is done.
    #[test]
    fn scale_steps() {
        use ScaleStep::*;
        let base = ScaleFacts {
            have: Some(0),
            want: 3,
            exists: true,
            cached_rv: Some("7"),
            autoscaled: false,
            written: None,
            written_over: None,
        };
        let cases = [
            (
                "already there",
                ScaleFacts {
                    have: Some(3),
                    ..base
                },
                InPlace,
            ),
            (
                "already there, autoscaled",
                ScaleFacts {
                    have: Some(3),
                    autoscaled: true,
                    ..base
                },
                InPlace,
            ),
            ("a new decision", base, Write),
            (
                "a new decision, autoscaled",
                ScaleFacts {
                    autoscaled: true,
                    ..base
                },
                Write,
            ),
            (
                "a different earlier write",
                ScaleFacts {
                    written: Some(1),
                    ..base
                },
                Write,
            ),
            (
                "no Deployment yet",
                ScaleFacts {
                    exists: false,
                    have: None,
                    cached_rv: None,
                    written: Some(3),
                    ..base
                },
                Write,
            ),
            (
                "our write, cache behind",
                ScaleFacts {
                    written: Some(3),
                    written_over: Some("7"),
                    ..base
                },
                AwaitCache,
            ),
            (
                "our write, changed since",
                ScaleFacts {
                    written: Some(3),
                    written_over: Some("5"),
                    ..base
                },
                CorrectOtherWriter,
            ),
            (
                "our write, changed by the autoscaler",
                ScaleFacts {
                    written: Some(3),
                    written_over: Some("5"),
                    autoscaled: true,
                    ..base
                },
                LeaveToAutoscaler,
            ),
        ];
        for (what, facts, step) in cases {
            assert_eq!(scale_step(&facts), step, "{what}");
        }
    }
}
