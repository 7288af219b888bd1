//! The live timeline: follows the policy's status and prints every decision the controller
//! records (history), phase changes and per-backend health changes, as they happen.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::{Api, Client};

use crate::api::{EndpointState, FailoverPolicy, Phase};

use super::{NS, POLICY};

/// What the timeline saw, for the final verdict.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    pub actions: BTreeSet<String>,
    pub phases: Vec<Phase>,
    /// Primary backends the operator ejected at least once (by address).
    pub primaries_ejected: BTreeSet<String>,
    /// Primary backends listed in status.
    pub primaries: BTreeSet<String>,
}

pub struct Timeline {
    seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
    started: Instant,
}

impl Timeline {
    pub fn start(client: Client) -> Self {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let started = Instant::now();
        let task = tokio::spawn(follow(client, seen.clone(), started));
        Timeline {
            seen,
            task,
            started,
        }
    }

    /// Prints a line of the script itself, on the same clock.
    pub fn say(&self, what: &str) {
        println!("{}  ▶ {what}", stamp(self.started));
    }

    pub async fn stop(self) -> Seen {
        // One last look so the final decisions are printed.
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.task.abort();
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

fn stamp(started: Instant) -> String {
    let t = started.elapsed().as_secs_f64();
    format!("[{:>3}:{:04.1}]", (t / 60.0) as u64, t % 60.0)
}

async fn follow(client: Client, seen: Arc<Mutex<Seen>>, started: Instant) {
    let api: Api<FailoverPolicy> = Api::namespaced(client, NS);
    let mut printed: BTreeSet<(String, String)> = BTreeSet::new();
    let mut phase: Option<Phase> = None;
    let mut states: BTreeMap<String, EndpointState> = BTreeMap::new();
    let mut class: Option<(String, u32)> = None;
    loop {
        if let Ok(Some(p)) = api.get_opt(POLICY).await
            && let Some(st) = p.status
        {
            let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
            for ep in &st.endpoints {
                let before = states.insert(ep.address.clone(), ep.state);
                let primary = ep.pool == "primary";
                if primary {
                    seen.primaries.insert(ep.address.clone());
                }
                // A new emergency pod starts Down until its first good checks: that is not news
                // (it did not exist before); its first Up is.
                let first_sight_news = ep.state != EndpointState::Up && primary;
                if before != Some(ep.state) && (before.is_some() || first_sight_news) {
                    let why = ep
                        .last_error
                        .as_deref()
                        .filter(|_| !ep.state.serving() || ep.state == EndpointState::Falling)
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default();
                    println!(
                        "{}    {} backend {:<18} {}{why}",
                        stamp(started),
                        ep.pool,
                        ep.address,
                        ep.state
                    );
                    if ep.state == EndpointState::Down && primary {
                        seen.primaries_ejected.insert(ep.address.clone());
                    }
                }
            }
            for h in &st.history {
                let key = (h.time.0.to_string(), h.action.clone());
                if printed.insert(key) {
                    println!("{}  ● {:<20} {}", stamp(started), h.action, h.reason);
                    seen.actions.insert(h.action.clone());
                }
            }
            let now_class = st.active_class.clone().zip(st.primary_weight_percent);
            if now_class.is_some() && now_class != class {
                if let Some((c, w)) = &now_class {
                    println!(
                        "{}    traffic: {w}% on the primary class (authoritative: {c})",
                        stamp(started)
                    );
                }
                class = now_class;
            }
            if phase != Some(st.phase) {
                let healthy = st
                    .primary
                    .as_ref()
                    .map_or("-".to_string(), |t| t.summary.clone());
                let emergency = st
                    .emergency
                    .as_ref()
                    .map_or("-".to_string(), |e| e.summary.clone());
                println!(
                    "{}  ◆ phase {:<16} healthy {healthy}, emergency {emergency}",
                    stamp(started),
                    st.phase.as_str()
                );
                seen.phases.push(st.phase);
                phase = Some(st.phase);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
