//! A minimal kube-controller-manager: Deployment → Pods → ready → Deployment status →
//! EndpointSlices, enough for "scale the emergency Deployment and wait until its endpoints are
//! ready" to behave as on a real cluster.
//!
//! * Deployments get `spec.replicas` Pods (owned directly by the Deployment; no ReplicaSets),
//!   named `{deployment}-{template-hash}-{suffix}`, with IPs in 127.10.0.0/16 so real local
//!   HTTP backends can listen on them (Linux routes all of 127.0.0.0/8 to loopback).
//! * A Pod becomes Ready `pod_ready_delay` after it is first seen; readiness probes are not run.
//! * A changed pod template rolls out by surge: new Pods first, old ones deleted once enough
//!   new ones are ready.
//! * Deployment status: replicas, updatedReplicas, readyReplicas, availableReplicas,
//!   observedGeneration, Available/Progressing conditions.
//! * Every Service with a selector gets one EndpointSlice (`kubernetes.io/service-name` label,
//!   ports from `targetPort`, named ports resolved against the container ports). Selectorless
//!   Services are left alone — their slices belong to whoever manages them.

use super::api;
use super::delete;
use super::meta::{self, meta_str};
use super::selectors::LabelSelector;
use super::shared::Shared;
use super::state::{CONTROLLER_MANAGER, Ctx, Managed, State, Target};
use super::store::ObjKey;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Manager {
    ready_delay: Duration,
    /// Pods waiting to become Ready, by (namespace, name).
    ready_at: HashMap<(String, String), Instant>,
    next_ip: u32,
}

/// Runs forever, reconciling after every store change and when a Pod is due to become ready.
pub async fn run(shared: Arc<Shared>, ready_delay: Duration) {
    let mut notify = shared.lock().store.subscribe();
    let mut m = Manager {
        ready_delay,
        ready_at: HashMap::new(),
        next_ip: 1,
    };
    let mut cursor = 0;
    loop {
        notify.borrow_and_update();
        let wake = {
            let mut st = shared.lock();
            let dirty = dirty_since(&st, cursor);
            // Our own writes below count as changes for the next pass (a Pod turning Ready must
            // update its Deployment and EndpointSlice), so the cursor is taken before them.
            cursor = st.store.rv();
            m.reconcile(&mut st, &dirty)
        };
        let sleep = wake
            .map(|w| w.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            changed = notify.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(sleep) => {}
        }
    }
}

/// What must be reconciled. Reconciling only what changed keeps a busy plane with thousands of
/// objects linear instead of quadratic.
#[derive(Default)]
struct Dirty {
    /// Everything (first pass, or the event log no longer reaches back to the cursor).
    all: bool,
    deployments: HashSet<(String, String)>,
    services: HashSet<(String, String)>,
    pods: HashSet<(String, String)>,
}

fn deployment_owners(obj: &Value) -> impl Iterator<Item = String> + '_ {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|r| r["kind"] == json!("Deployment"))
        .filter_map(|r| r["name"].as_str().map(String::from))
}

fn dirty_since(st: &State, cursor: u64) -> Dirty {
    let everything = Dirty {
        all: true,
        ..Default::default()
    };
    if cursor == 0 {
        return everything;
    }
    let Ok((events, _)) = st.store.events_since(cursor, |_| true) else {
        return everything;
    };
    let mut d = Dirty::default();
    let mut selectors: HashMap<String, Vec<(String, LabelSelector)>> = HashMap::new();
    for e in events {
        let (ns, name) = (e.key.namespace.clone(), e.key.name.clone());
        match (e.key.group.as_str(), e.key.plural.as_str()) {
            ("apps", "deployments") => {
                d.deployments.insert((ns, name));
            }
            ("", "services") => {
                d.services.insert((ns, name));
            }
            ("discovery.k8s.io", "endpointslices") => {
                if let Some(svc) = e
                    .object
                    .pointer("/metadata/labels/kubernetes.io~1service-name")
                    .and_then(Value::as_str)
                {
                    d.services.insert((ns, svc.to_string()));
                }
            }
            ("", "pods") => {
                d.pods.insert((ns.clone(), name.clone()));
                let selectors = selectors
                    .entry(ns.clone())
                    .or_insert_with(|| service_selectors(st, &ns));
                for obj in std::iter::once(&e.object).chain(e.old.as_ref()) {
                    d.deployments
                        .extend(deployment_owners(obj).map(|o| (ns.clone(), o)));
                    for (svc, sel) in selectors.iter() {
                        if sel.matches_object(obj) {
                            d.services.insert((ns.clone(), svc.clone()));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    d
}

/// (name, selector) of every Service with a selector in `ns`.
fn service_selectors(st: &State, ns: &str) -> Vec<(String, LabelSelector)> {
    st.store
        .list("", "services", Some(ns))
        .into_iter()
        .filter_map(|(k, svc)| {
            let sel = svc
                .pointer("/spec/selector")
                .and_then(Value::as_object)
                .filter(|s| !s.is_empty())?;
            Some((
                k.name.clone(),
                LabelSelector::from_label_selector(&json!({"matchLabels": sel})),
            ))
        })
        .collect()
}

fn selected_objects(
    st: &State,
    group: &str,
    plural: &str,
    all: bool,
    names: &HashSet<(String, String)>,
) -> Vec<Value> {
    if all {
        return objects(st, group, plural, None);
    }
    names
        .iter()
        .filter_map(|(ns, name)| st.store.get(&ObjKey::new(group, plural, ns, name)).cloned())
        .collect()
}

fn ctx(st: &State, group: &str, plural: &str, ns: &str) -> Option<Ctx> {
    let info = st.registry.get(group, plural)?.clone();
    let version = info.versions[0].clone();
    Some(Ctx::new(info, &version, Some(ns), CONTROLLER_MANAGER))
}

fn owned_by(obj: &Value, uid: &str) -> bool {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| refs.iter().any(|r| r["uid"] == json!(uid)))
}

fn is_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == json!("Ready") && c["status"] == json!("True"))
        })
}

fn template_hash(template: &Value) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in template.to_string().bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..10)
        .map(|i| ALPHABET[((h >> (i * 6)) % ALPHABET.len() as u64) as usize] as char)
        .collect()
}

fn objects(st: &State, group: &str, plural: &str, ns: Option<&str>) -> Vec<Value> {
    st.store
        .list(group, plural, ns)
        .into_iter()
        .map(|(_, o)| o.clone())
        .collect()
}

impl Manager {
    fn reconcile(&mut self, st: &mut State, dirty: &Dirty) -> Option<Instant> {
        for d in selected_objects(st, "apps", "deployments", dirty.all, &dirty.deployments) {
            self.deployment(st, &d);
        }
        let wake = self.pods(st, dirty);
        for svc in selected_objects(st, "", "services", dirty.all, &dirty.services) {
            endpoint_slice(st, &svc);
        }
        wake
    }

    fn deployment(&mut self, st: &mut State, d: &Value) {
        if meta_str(d, "deletionTimestamp").is_some() {
            return;
        }
        let (ns, name, uid) = (
            meta_str(d, "namespace").unwrap_or("").to_string(),
            meta_str(d, "name").unwrap_or("").to_string(),
            meta_str(d, "uid").unwrap_or("").to_string(),
        );
        let Some(pod_ctx) = ctx(st, "", "pods", &ns) else {
            return;
        };
        let desired = d
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(1)
            .max(0) as usize;
        let template = d.pointer("/spec/template").cloned().unwrap_or(json!({}));
        let hash = template_hash(&template);
        let pods: Vec<Value> = st
            .store
            .list("", "pods", Some(&ns))
            .into_iter()
            .filter(|(_, p)| owned_by(p, &uid) && meta_str(p, "deletionTimestamp").is_none())
            .map(|(_, p)| p.clone())
            .collect();
        let current_hash =
            |p: &Value| p.pointer("/metadata/labels/pod-template-hash") == Some(&json!(hash));
        let (mut new, old): (Vec<Value>, Vec<Value>) = pods.into_iter().partition(current_hash);
        while new.len() < desired {
            let mut labels = template
                .pointer("/metadata/labels")
                .cloned()
                .unwrap_or(json!({}));
            labels["pod-template-hash"] = json!(hash);
            let ip = self.next_ip;
            self.next_ip += 1;
            let ip = format!("127.10.{}.{}", (ip / 250) % 256, ip % 250 + 1);
            let containers = template
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let statuses: Vec<Value> = containers
                .iter()
                .map(|c| json!({"name": c["name"], "image": c["image"], "imageID": "", "ready": false, "started": true, "restartCount": 0, "state": {"running": {"startedAt": meta::now()}}}))
                .collect();
            let pod = json!({
                "metadata": {
                    "generateName": format!("{name}-{hash}-"),
                    "labels": labels,
                    "annotations": template.pointer("/metadata/annotations").cloned().unwrap_or(json!({})),
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name, "uid": uid, "controller": true, "blockOwnerDeletion": true}],
                },
                "spec": template.get("spec").cloned().unwrap_or(json!({})),
                "status": {
                    "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "127.0.0.1", "startTime": meta::now(),
                    "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": meta::now()}],
                    "containerStatuses": statuses,
                },
            });
            match api::create(st, &pod_ctx, pod) {
                Ok(p) => new.push(p),
                Err(_) => break,
            }
        }
        // Scale down: not-ready pods first, then the newest.
        new.sort_by_key(|p| {
            (
                is_ready(p),
                std::cmp::Reverse(meta_str(p, "creationTimestamp").unwrap_or("").to_string()),
            )
        });
        while new.len() > desired {
            let p = new.remove(0);
            let _ = delete::delete(st, &pod_ctx, meta_str(&p, "name").unwrap_or(""), &json!({}));
        }
        let new_ready = new.iter().filter(|p| is_ready(p)).count();
        let mut remaining_old = old.clone();
        if new_ready >= desired {
            for p in &old {
                let _ = delete::delete(st, &pod_ctx, meta_str(p, "name").unwrap_or(""), &json!({}));
            }
            remaining_old.clear();
        }
        let ready = new_ready + remaining_old.iter().filter(|p| is_ready(p)).count();
        let total = new.len() + remaining_old.len();
        let available = ready >= desired;
        let mut status = json!({"observedGeneration": d.pointer("/metadata/generation").cloned().unwrap_or(json!(1))});
        for (k, v) in [
            ("replicas", total),
            ("updatedReplicas", new.len()),
            ("readyReplicas", ready),
            ("availableReplicas", ready),
        ] {
            if v > 0 {
                status[k] = json!(v);
            }
        }
        if total > ready {
            status["unavailableReplicas"] = json!(total - ready);
        }
        let old_conds = d
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let cond = |type_: &str, ok: bool, reason: &str, message: &str| {
            let st = if ok { "True" } else { "False" };
            let since = old_conds
                .iter()
                .find(|c| c["type"] == json!(type_) && c["status"] == json!(st))
                .and_then(|c| c.get("lastTransitionTime").cloned())
                .unwrap_or(json!(meta::now()));
            json!({"type": type_, "status": st, "reason": reason, "message": message, "lastTransitionTime": since, "lastUpdateTime": since})
        };
        status["conditions"] = json!([
            if available {
                cond(
                    "Available",
                    true,
                    "MinimumReplicasAvailable",
                    "Deployment has minimum availability.",
                )
            } else {
                cond(
                    "Available",
                    false,
                    "MinimumReplicasUnavailable",
                    "Deployment does not have minimum availability.",
                )
            },
            cond(
                "Progressing",
                true,
                "NewReplicaSetAvailable",
                "devcluster rolls pods directly, without ReplicaSets."
            ),
        ]);
        if d.get("status") != Some(&status)
            && let Some(dctx) = ctx(st, "apps", "deployments", &ns)
        {
            let mut new_obj = d.clone();
            new_obj["status"] = status;
            let _ = api::commit(st, &dctx, d, new_obj, Target::Status, Managed::Update);
        }
    }

    /// Gives Pods an IP and flips them Ready once their delay has passed. Only Pods that
    /// changed or are waiting are looked at.
    fn pods(&mut self, st: &mut State, dirty: &Dirty) -> Option<Instant> {
        let now = Instant::now();
        let mut candidates: HashSet<(String, String)> = self.ready_at.keys().cloned().collect();
        if dirty.all {
            candidates.extend(
                st.store
                    .list("", "pods", None)
                    .into_iter()
                    .map(|(k, _)| (k.namespace.clone(), k.name.clone())),
            );
        } else {
            candidates.extend(dirty.pods.iter().cloned());
        }
        let mut wake: Option<Instant> = None;
        for id in candidates {
            let Some(p) = st
                .store
                .get(&ObjKey::new("", "pods", &id.0, &id.1))
                .cloned()
            else {
                self.ready_at.remove(&id);
                continue;
            };
            if is_ready(&p) || meta_str(&p, "deletionTimestamp").is_some() {
                self.ready_at.remove(&id);
                continue;
            }
            let due = *self
                .ready_at
                .entry(id.clone())
                .or_insert(now + self.ready_delay);
            if due > now {
                wake = Some(wake.map_or(due, |w| w.min(due)));
                continue;
            }
            let Some(pctx) = ctx(st, "", "pods", &id.0) else {
                continue;
            };
            let mut new = p.clone();
            if new.pointer("/status/podIP").is_none() {
                let ip = self.next_ip;
                self.next_ip += 1;
                let ip = format!("127.10.{}.{}", (ip / 250) % 256, ip % 250 + 1);
                new["status"]["podIP"] = json!(ip);
                new["status"]["podIPs"] = json!([{"ip": ip}]);
                new["status"]["phase"] = json!("Running");
            }
            new["status"]["conditions"] = json!([{"type": "Ready", "status": "True", "lastTransitionTime": meta::now()}, {"type": "ContainersReady", "status": "True", "lastTransitionTime": meta::now()}]);
            if let Some(cs) = new
                .pointer_mut("/status/containerStatuses")
                .and_then(Value::as_array_mut)
            {
                for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                    c.insert("ready".into(), json!(true));
                }
            }
            let _ = api::commit(st, &pctx, &p, new, Target::Status, Managed::Update);
            self.ready_at.remove(&id);
        }
        wake
    }
}

fn resolve_port(target: &Value, port: &Value, pods: &[Value]) -> Value {
    match target {
        Value::Number(_) => target.clone(),
        Value::String(name) => pods
            .iter()
            .flat_map(|p| {
                p.pointer("/spec/containers")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            })
            .flat_map(|c| {
                c.get("ports")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            })
            .find(|cp| cp["name"] == json!(name))
            .map(|cp| cp["containerPort"].clone())
            .unwrap_or_else(|| port.clone()),
        _ => port.clone(),
    }
}

fn endpoint_slice(st: &mut State, svc: &Value) {
    let Some(selector) = svc
        .pointer("/spec/selector")
        .and_then(Value::as_object)
        .filter(|s| !s.is_empty())
    else {
        return;
    };
    if meta_str(svc, "deletionTimestamp").is_some() {
        return;
    }
    let sel = LabelSelector::from_label_selector(&json!({"matchLabels": selector}));
    let (ns, name, uid) = (
        meta_str(svc, "namespace").unwrap_or("").to_string(),
        meta_str(svc, "name").unwrap_or("").to_string(),
        meta_str(svc, "uid").unwrap_or("").to_string(),
    );
    let mut pods: Vec<Value> = st
        .store
        .list("", "pods", Some(&ns))
        .into_iter()
        .filter(|(_, p)| sel.matches_object(p) && p.pointer("/status/podIP").is_some())
        .map(|(_, p)| p.clone())
        .collect();
    pods.sort_by(|a, b| meta_str(a, "name").cmp(&meta_str(b, "name")));
    let endpoints: Vec<Value> = pods
        .iter()
        .map(|p| {
            let ready = is_ready(p);
            let terminating = meta_str(p, "deletionTimestamp").is_some();
            json!({
                "addresses": [p["status"]["podIP"]],
                "conditions": {"ready": ready && !terminating, "serving": ready, "terminating": terminating},
                "targetRef": {"kind": "Pod", "name": p["metadata"]["name"], "namespace": ns, "uid": p["metadata"]["uid"]},
            })
        })
        .collect();
    let ports: Vec<Value> = svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| {
            json!({
                "name": p.get("name").cloned().unwrap_or(json!("")),
                "port": resolve_port(p.get("targetPort").unwrap_or(&p["port"]), &p["port"], &pods),
                "protocol": p.get("protocol").cloned().unwrap_or(json!("TCP")),
            })
        })
        .collect();
    let slice_name = format!("{name}-{}", &template_hash(&json!(uid))[..5]);
    let key = ObjKey::new("discovery.k8s.io", "endpointslices", &ns, &slice_name);
    let Some(sctx) = ctx(st, "discovery.k8s.io", "endpointslices", &ns) else {
        return;
    };
    let desired = json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": slice_name,
            "namespace": ns,
            "labels": {"kubernetes.io/service-name": name, "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": name, "uid": uid, "controller": true, "blockOwnerDeletion": true}],
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": ports,
    });
    match st.store.get(&key).cloned() {
        None => {
            let _ = api::create(st, &sctx, desired);
        }
        Some(old) => {
            let mut new = old.clone();
            for f in ["addressType", "endpoints", "ports"] {
                new[f] = desired[f].clone();
            }
            new["metadata"]["labels"] = desired["metadata"]["labels"].clone();
            if new != old {
                if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.remove("resourceVersion");
                }
                let _ = api::commit(st, &sctx, &old, new, Target::Main, Managed::Update);
            }
        }
    }
}
