//! Server-side apply and `managedFields`.
//!
//! Ownership is tracked per field manager as a set of leaf field paths in the `fieldsV1`
//! notation (`f:spec`, `k:{"name":"web"}`, `v:"finalizer"`). Apply merges the applied
//! configuration into the live object (maps recursively, `x-kubernetes-list-type: map` lists by
//! their keys, sets as unions, everything else atomically), removes fields the manager applied
//! before but no longer does (unless someone else also owns them), and refuses with 409 when it
//! would change a field another manager owns — unless `force=true`, which takes ownership.
//! Ordinary writes (create/update/patch) record their changed fields as an `Update` entry and
//! take those fields away from other managers, which is what later makes an applier conflict
//! with, say, `kubectl scale`.

use super::fields::{
    FieldPath, FieldSet, ListKind, Scope, child_schema, find_item, get_at, item_key, leaves,
    list_kind,
};
use super::managed::{ManagedEntry, read_managed, write_managed};
use serde_json::{Map, Value};

fn remove_at(v: &mut Value, path: &[String]) {
    let Some((last, parent_path)) = path.split_last() else {
        return;
    };
    let mut cur = v;
    for seg in parent_path {
        let next = match seg.strip_prefix("f:") {
            Some(f) => cur.get_mut(f),
            None => match cur.as_array_mut() {
                Some(list) => find_item(list, seg).and_then(move |i| list.get_mut(i)),
                None => None,
            },
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    match last.strip_prefix("f:") {
        Some(f) => {
            if let Some(m) = cur.as_object_mut() {
                m.remove(f);
            }
        }
        None => {
            if let Some(list) = cur.as_array_mut()
                && let Some(i) = find_item(list, last)
            {
                list.remove(i);
            }
        }
    }
}

/// Merges an applied configuration into the live object.
fn merge_into(live: &mut Value, config: &Value, schema: Option<&Value>, root: bool) {
    let (Some(l), Some(c)) = (live.as_object_mut(), config.as_object()) else {
        *live = config.clone();
        return;
    };
    for (k, cv) in c {
        let cs = child_schema(schema, k);
        match (l.get_mut(k), cv) {
            (Some(lv @ Value::Object(_)), Value::Object(_)) => merge_into(lv, cv, cs, false),
            (Some(Value::Array(litems)), Value::Array(citems)) => {
                match list_kind(k, cs, citems.first().or(litems.first()), root) {
                    ListKind::Map(keys) => {
                        let item_schema = cs.and_then(|s| s.get("items"));
                        for ci in citems {
                            let pos = item_key(ci, &keys).and_then(|seg| find_item(litems, &seg));
                            match pos {
                                Some(i) => merge_into(&mut litems[i], ci, item_schema, false),
                                None => litems.push(ci.clone()),
                            }
                        }
                    }
                    ListKind::Set => {
                        for ci in citems {
                            if !litems.contains(ci) {
                                litems.push(ci.clone());
                            }
                        }
                    }
                    ListKind::Atomic => *litems = citems.clone(),
                }
            }
            _ => {
                l.insert(k.clone(), cv.clone());
            }
        }
    }
}

/// A field another manager owns, which an apply without force would change.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    /// The other manager.
    pub manager: String,
    /// The field, as `.spec.replicas`.
    pub field: String,
}

/// Renders a field path for humans: `.spec.containers[name="web"].image`.
pub fn display_path(path: &[String]) -> String {
    let mut s = String::new();
    for seg in path {
        if let Some(f) = seg.strip_prefix("f:") {
            s.push('.');
            s.push_str(f);
        } else if let Some(k) = seg.strip_prefix("k:") {
            let m: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
            let inner: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
            s.push_str(&format!("[{}]", inner.join(",")));
        } else if let Some(v) = seg.strip_prefix("v:") {
            s.push_str(&format!("[{v}]"));
        }
    }
    s
}

/// Everything an apply needs to know.
pub struct ApplyRequest<'a> {
    /// The applied configuration (already parsed).
    pub config: &'a Value,
    /// Field manager.
    pub manager: &'a str,
    /// `force=true`.
    pub force: bool,
    /// Main resource or status.
    pub scope: Scope,
    /// openAPIV3Schema for CRDs (list types); `None` for built-ins.
    pub schema: Option<&'a Value>,
    /// apiVersion recorded in managedFields.
    pub api_version: &'a str,
    /// Timestamp recorded in managedFields.
    pub now: &'a str,
}

/// Server-side apply of `req.config` onto `base` (the live object, or a fresh skeleton on create).
pub fn apply(base: &Value, req: &ApplyRequest<'_>) -> Result<Value, Vec<Conflict>> {
    let config = req.scope.filter(req.config);
    let sub = req.scope.subresource();
    let new_set = leaves(&config, req.schema);
    let mut entries = read_managed(base);
    let mine = |e: &ManagedEntry| {
        e.manager == req.manager && e.operation == "Apply" && e.subresource == sub
    };
    let mut conflicts = Vec::new();
    for e in entries.iter_mut().filter(|e| !mine(e)) {
        let clashing: Vec<FieldPath> = e
            .fields
            .intersection(&new_set)
            .filter(|p| get_at(base, p) != get_at(&config, p))
            .cloned()
            .collect();
        for p in clashing {
            if req.force {
                e.fields.remove(&p);
            } else {
                conflicts.push(Conflict {
                    manager: e.manager.clone(),
                    field: display_path(&p),
                });
            }
        }
    }
    if !conflicts.is_empty() {
        return Err(conflicts);
    }
    let prev: FieldSet = entries
        .iter()
        .find(|e| mine(e))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    let mut merged = base.clone();
    merge_into(&mut merged, &config, req.schema, true);
    for p in prev.difference(&new_set) {
        if !entries.iter().any(|e| !mine(e) && e.fields.contains(p)) {
            // An item of a keyed list whose every field this manager dropped goes as a whole
            // (its key fields are among the dropped ones, so it could not be found afterwards).
            let still_set_below = |ancestor: &[String]| {
                new_set
                    .iter()
                    .chain(
                        entries
                            .iter()
                            .filter(|e| !mine(e))
                            .flat_map(|e| e.fields.iter()),
                    )
                    .any(|q| q.len() > ancestor.len() && q[..ancestor.len()] == *ancestor)
            };
            if let Some(depth) =
                (1..p.len()).find(|&d| p[d - 1].starts_with("k:") && !still_set_below(&p[..d]))
            {
                remove_at(&mut merged, &p[..depth]);
                continue;
            }
            remove_at(&mut merged, p);
            // A map whose every field this manager dropped goes too (the apiserver tracks the
            // map itself as owned), unless someone still sets a field below it.
            for depth in (2..p.len()).rev() {
                let ancestor = &p[..depth];
                let still_set = new_set
                    .iter()
                    .chain(
                        entries
                            .iter()
                            .filter(|e| !mine(e))
                            .flat_map(|e| e.fields.iter()),
                    )
                    .any(|q| q.len() > depth && q[..depth] == *ancestor);
                let empty = get_at(&merged, ancestor)
                    .is_some_and(|v| v.as_object().is_some_and(|m| m.is_empty()));
                if still_set || !empty {
                    break;
                }
                remove_at(&mut merged, ancestor);
            }
        }
    }
    entries.retain(|e| !mine(e));
    entries.push(ManagedEntry {
        manager: req.manager.into(),
        operation: "Apply".into(),
        subresource: sub.into(),
        api_version: req.api_version.into(),
        time: req.now.into(),
        fields: new_set,
    });
    write_managed(&mut merged, &entries);
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::managed::{read_managed, record_update};
    use serde_json::json;

    const MAIN: Scope = Scope::Main {
        exclude_status: true,
    };

    fn req<'a>(config: &'a Value, manager: &'a str, force: bool) -> ApplyRequest<'a> {
        ApplyRequest {
            config,
            manager,
            force,
            scope: MAIN,
            schema: None,
            api_version: "apps/v1",
            now: "t",
        }
    }

    #[test]
    fn apply_merges_by_key_and_conflicts_between_managers() {
        let live = json!({"metadata": {"name": "d"}, "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "a", "image": "a:1"}]}}}});
        let cfg = json!({"spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "a", "image": "a:2"}]}}}});
        let v = apply(&live, &req(&cfg, "one", false)).unwrap();
        assert_eq!(v["spec"]["replicas"], 2);
        assert_eq!(
            v["spec"]["template"]["spec"]["containers"][0]["image"],
            "a:2"
        );
        // Another manager changing replicas conflicts; same value is shared ownership.
        let other = json!({"spec": {"replicas": 3}});
        let err = apply(&v, &req(&other, "two", false)).unwrap_err();
        assert_eq!(
            err,
            vec![Conflict {
                manager: "one".into(),
                field: ".spec.replicas".into()
            }]
        );
        let same = json!({"spec": {"replicas": 2}});
        assert!(apply(&v, &req(&same, "two", false)).is_ok());
        // force takes ownership; then "one" re-applying without replicas does not remove it.
        let forced = apply(&v, &req(&other, "two", true)).unwrap();
        assert_eq!(forced["spec"]["replicas"], 3);
        let cfg2 = json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "a:2"}]}}}});
        let again = apply(&forced, &req(&cfg2, "one", false)).unwrap();
        assert_eq!(again["spec"]["replicas"], 3);
    }

    #[test]
    fn apply_removes_fields_the_manager_dropped() {
        let live = json!({"metadata": {"name": "x"}});
        let v1 = apply(
            &live,
            &req(
                &json!({"metadata": {"labels": {"a": "1", "b": "2"}}}),
                "m",
                false,
            ),
        )
        .unwrap();
        let v2 = apply(
            &v1,
            &req(&json!({"metadata": {"labels": {"a": "1"}}}), "m", false),
        )
        .unwrap();
        assert_eq!(v2["metadata"]["labels"], json!({"a": "1"}));
        let entries = read_managed(&v2);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].operation, "Apply");
    }

    #[test]
    fn apply_removes_a_map_whose_fields_were_all_dropped() {
        let base = json!({"apiVersion": "v1", "kind": "X", "metadata": {"name": "a"}});
        let first = json!({"apiVersion": "v1", "kind": "X", "metadata": {"name": "a"},
                           "spec": {"keep": 1, "nested": {"a": 1, "b": 2}}});
        let merged = apply(&base, &req(&first, "one", false)).unwrap();
        let second = json!({"apiVersion": "v1", "kind": "X", "metadata": {"name": "a"}, "spec": {"keep": 1}});
        let merged = apply(&merged, &req(&second, "one", false)).unwrap();
        assert_eq!(merged["spec"], json!({"keep": 1}));
    }

    #[test]
    fn apply_removes_a_list_item_whose_fields_were_all_dropped() {
        let owner = json!({"apiVersion": "v1", "kind": "X", "name": "p", "uid": "u1"});
        let first =
            json!({"metadata": {"name": "s", "ownerReferences": [owner]}, "spec": {"a": 1}});
        let base = apply(&json!({}), &req(&first, "m", false)).unwrap();
        let second = json!({"metadata": {"name": "s"}, "spec": {"a": 1}});
        let after = apply(&base, &req(&second, "m", false)).unwrap();
        let refs = after.pointer("/metadata/ownerReferences");
        assert!(
            refs.is_none_or(|r| r.as_array().is_some_and(|a| a.is_empty())),
            "{after:#}"
        );
    }

    #[test]
    fn updates_take_ownership() {
        let v = apply(
            &json!({"metadata": {"name": "x"}}),
            &req(&json!({"spec": {"replicas": 1}}), "applier", false),
        )
        .unwrap();
        let mut scaled = v.clone();
        scaled["spec"]["replicas"] = json!(5);
        record_update(Some(&v), &mut scaled, "kubectl", MAIN, "apps/v1", "t");
        let err = apply(
            &scaled,
            &req(&json!({"spec": {"replicas": 1}}), "applier", false),
        )
        .unwrap_err();
        assert_eq!(err[0].manager, "kubectl");
    }

    #[test]
    fn schema_list_map_keys() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "items": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["id"],
                      "items": {"type": "object"}}}}}});
        let live = json!({"metadata": {"name": "x"}, "spec": {"items": [{"id": "a", "v": 1}]}});
        let cfg = json!({"spec": {"items": [{"id": "b", "v": 2}]}});
        let r = ApplyRequest {
            schema: Some(&schema),
            ..req(&cfg, "m", false)
        };
        let v = apply(&live, &r).unwrap();
        assert_eq!(v["spec"]["items"].as_array().unwrap().len(), 2);
    }
}
