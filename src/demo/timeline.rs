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
    pub endpoints_down: usize,
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
                if before != Some(ep.state) && (before.is_some() || ep.state != EndpointState::Up) {
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
                    if ep.state == EndpointState::Down {
                        seen.endpoints_down += 1;
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
