//! `?watch=true`: a stream of newline-delimited JSON watch events.
//!
//! A watch replays the event log after its resourceVersion (or, without one, sends the current
//! objects as ADDED), then follows the store. Label/field selectors are applied to both the
//! old and new object so "stopped matching" becomes DELETED, as in the apiserver. Bookmarks are
//! sent when the stream has been idle for the bookmark interval, so clients can resume from a
//! recent version instead of re-listing. A version older than the retained log yields an ERROR
//! event carrying a 410 Status — the signal for kube-runtime's watcher to re-list.

use super::read::{present, selected};
use super::shared::Shared;
use super::state::{Ctx, ListOptions};
use super::status::ApiError;
use super::store::{EventType, StoredEvent};
use super::table::{self, Render};
use bytes::Bytes;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Parameters of one watch request.
#[derive(Debug, Clone)]
pub struct WatchParams {
    /// Start after this version; `None`/0 = send current state first.
    pub resource_version: Option<u64>,
    /// `allowWatchBookmarks`.
    pub bookmarks: bool,
    /// `sendInitialEvents=true`: end the initial state with an `initial-events-end` bookmark.
    pub send_initial_events: bool,
    /// Close the stream after this long.
    pub timeout: Duration,
    /// Selectors.
    pub opts: ListOptions,
    /// Objects, Table rows (`kubectl get -w`) or PartialObjectMetadata.
    pub render: Render,
}

struct Emitter {
    ctx: Ctx,
    render: Render,
    columns_sent: bool,
    tx: mpsc::Sender<Bytes>,
}

impl Emitter {
    async fn send(&mut self, kind: &str, object: Value) -> bool {
        let data_event = matches!(kind, "ADDED" | "MODIFIED" | "DELETED");
        let object = match &self.render {
            Render::Metadata if data_event || kind == "BOOKMARK" => table::partial(&object),
            Render::Table(mode) if data_event => {
                let t = table::table(
                    &self.ctx.info,
                    &[object],
                    json!({}),
                    mode,
                    !self.columns_sent,
                );
                self.columns_sent = true;
                t
            }
            _ => object,
        };
        let mut line =
            serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
        line.push(b'\n');
        self.tx.send(Bytes::from(line)).await.is_ok()
    }

    async fn bookmark(&mut self, rv: u64, initial_end: bool) -> bool {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj = json!({"kind": self.ctx.info.kind, "apiVersion": self.ctx.info.api_version(&self.ctx.version), "metadata": meta});
        self.send("BOOKMARK", obj).await
    }

    async fn gone(&mut self, e: ApiError) {
        let _ = self.send("ERROR", e.to_status()).await;
    }
}

fn transition(e: &StoredEvent, matches: &dyn Fn(&Value) -> bool) -> Option<&'static str> {
    let now = matches(&e.object);
    let before = e.old.as_ref().is_some_and(matches);
    match (e.kind, before, now) {
        (EventType::Added, _, true) => Some("ADDED"),
        (EventType::Modified, true, true) => Some("MODIFIED"),
        (EventType::Modified, false, true) => Some("ADDED"),
        (EventType::Modified, true, false) => Some("DELETED"),
        (EventType::Deleted, true, _) => Some("DELETED"),
        _ => None,
    }
}

/// Starts streaming; returns the body stream.
pub fn start(
    shared: Arc<Shared>,
    ctx: Ctx,
    p: WatchParams,
) -> impl futures::Stream<Item = Result<Bytes, Infallible>> + Send {
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    tokio::spawn(run(
        shared,
        ctx.clone(),
        p.clone(),
        Emitter {
            ctx,
            render: p.render.clone(),
            columns_sent: false,
            tx,
        },
    ));
    futures::stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|b| (Ok(b), rx)) },
    )
}

async fn run(shared: Arc<Shared>, ctx: Ctx, p: WatchParams, mut out: Emitter) {
    let deadline = tokio::time::Instant::now() + p.timeout;
    let mut drops = shared.faults.drop_signal();
    drops.borrow_and_update();
    let ns = if ctx.info.namespaced {
        ctx.namespace.clone()
    } else {
        None
    };
    let (group, plural) = (ctx.storage().0.to_string(), ctx.storage().1.to_string());
    let in_scope = move |e: &StoredEvent| {
        e.key.group == group
            && e.key.plural == plural
            && ns.as_deref().is_none_or(|n| e.key.namespace == n)
    };
    let opts = p.opts.clone();
    let presenting = ctx.clone();
    let matches = move |o: &Value| {
        if presenting.info.storage.is_some() {
            selected(&opts, &present(&presenting, o.clone()))
        } else {
            selected(&opts, o)
        }
    };

    let start: Result<_, ApiError> = {
        let st = shared.lock();
        let notify = st.store.subscribe();
        match p.resource_version.filter(|rv| *rv > 0) {
            Some(rv) => match st.store.events_since(rv, |_| false) {
                Ok(_) => Ok((notify, rv, Vec::new())),
                Err(g) => Err(ApiError::gone(format!(
                    "too old resource version: {rv} ({})",
                    g.oldest
                ))),
            },
            None => {
                let ns = ctx.namespace.as_deref().filter(|_| ctx.info.namespaced);
                let objs: Vec<Value> = st
                    .store
                    .list(ctx.storage().0, ctx.storage().1, ns)
                    .into_iter()
                    .filter(|(_, o)| matches(o))
                    .map(|(_, o)| present(&ctx, o.clone()))
                    .collect();
                Ok((notify, st.store.rv(), objs))
            }
        }
    };
    let (mut notify, mut cursor, initial) = match start {
        Ok(s) => s,
        Err(e) => {
            out.gone(e).await;
            return;
        }
    };
    for obj in initial {
        if !out.send("ADDED", obj).await {
            return;
        }
    }
    if p.send_initial_events && !out.bookmark(cursor, true).await {
        return;
    }
    let mut next_bookmark = tokio::time::Instant::now() + shared.bookmark_interval;
    loop {
        notify.borrow_and_update();
        let batch = shared.lock().store.events_since(cursor, &in_scope);
        let (events, now) = match batch {
            Ok(b) => b,
            Err(g) => {
                out.gone(ApiError::gone(format!(
                    "too old resource version: {cursor} ({})",
                    g.oldest
                )))
                .await;
                return;
            }
        };
        for e in events {
            if let Some(kind) = transition(&e, &matches) {
                let obj = match (e.kind, e.old) {
                    // As kube-apiserver's watch cache: an object that stopped matching is
                    // DELETED as it was when it last matched, at the new resourceVersion.
                    (EventType::Modified, Some(mut old)) if kind == "DELETED" => {
                        old["metadata"]["resourceVersion"] =
                            e.object["metadata"]["resourceVersion"].clone();
                        old
                    }
                    _ => e.object,
                };
                let obj = present(&ctx, obj);
                if !out.send(kind, obj).await {
                    return;
                }
            }
        }
        cursor = now;
        tokio::select! {
            changed = notify.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep_until(next_bookmark), if p.bookmarks => {
                next_bookmark = tokio::time::Instant::now() + shared.bookmark_interval;
                if !out.bookmark(cursor, false).await { return }
            }
            _ = tokio::time::sleep_until(deadline) => return,
            _ = drops.changed() => return,
            _ = out.tx.closed() => return,
        }
    }
}
