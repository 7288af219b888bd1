//! The Gateway API tier's own signal: a Gateway's status, as its controller reports it.
//!
//! A Gateway controller knows when its data plane cannot serve (a listener it could not
//! program, an address it could not get) before any probe notices. The controller reduces the
//! Gateway object to a [`GatewayFact`]; here it is debounced with the policy's fall/rise counted
//! in intervals, exactly like the ingress controller Deployment (the same [`Debounce`]), and
//! joins the tier's verdict: the tier serves only while every configured signal says so.

use super::config::{EngineConfig, Millis};
use super::state::Debounce;

/// What the cache says about a Gateway's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayFact {
    /// `Accepted` and `Programmed` True for its current generation, and its listener (or every
    /// listener) `Programmed`.
    Serving,
    /// Anything else, in words (for example `condition Programmed is False (AddressNotAssigned)
    /// for generation 3`).
    NotServing(String),
    /// The (synced) cache has no such Gateway.
    Missing,
}

/// The debounced verdict on one Gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewaySignal {
    /// The last fact known (None: never seen, the cache is not synced).
    pub fact: Option<GatewayFact>,
    pub signal: Debounce,
}

impl Default for GatewaySignal {
    fn default() -> Self {
        GatewaySignal {
            fact: None,
            signal: Debounce::SERVING,
        }
    }
}

/// What one step made of a Gateway signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GatewayJudgement {
    /// The debounced verdict (always true when the signal is not configured).
    pub ok: bool,
    /// The current fact says not serving (restarts a hold-down, like a failed check).
    pub failure_seen: bool,
}

impl GatewaySignal {
    /// Feeds this step's fact (None: unknown, the last fact holds) when the signal is
    /// configured, and returns the verdict.
    pub(crate) fn judge(
        &mut self,
        cfg: &EngineConfig,
        enabled: bool,
        observed: Option<&GatewayFact>,
        now: Millis,
    ) -> GatewayJudgement {
        if !enabled {
            return GatewayJudgement {
                ok: true,
                failure_seen: false,
            };
        }
        if let Some(f) = observed
            && self.fact.as_ref() != Some(f)
        {
            self.fact = Some(f.clone());
        }
        let mut failure_seen = false;
        if let Some(f) = &self.fact {
            let ok = *f == GatewayFact::Serving;
            failure_seen = !ok;
            self.signal.update(ok, now, cfg.fall_ms(), cfg.rise_ms());
        }
        GatewayJudgement {
            ok: self.signal.serving,
            failure_seen,
        }
    }

    /// Why the signal says down, for the LoadBalancerDown reason.
    pub fn why(&self, cfg: &EngineConfig) -> String {
        let what = match &self.fact {
            Some(GatewayFact::Missing) => "does not exist".to_string(),
            Some(GatewayFact::NotServing(why)) => format!("is not serving: {why}"),
            Some(GatewayFact::Serving) | None => "was not serving".to_string(),
        };
        format!(
            "Gateway {what} for {}s (failureThreshold × intervalSeconds)",
            cfg.fall_ms() / 1000
        )
    }
}

/// Both sides' Gateway signals, remembered per policy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GatewaySignals {
    pub primary: GatewaySignal,
    pub backup: GatewaySignal,
}

impl GatewaySignals {
    /// After a restart: a side status recorded as down stays down until its Gateway has
    /// served for rise (conservative, as the backup controller signal resumes).
    pub(crate) fn resume(primary_serving: bool, backup_serving: bool) -> Self {
        let mut s = GatewaySignals::default();
        s.primary.signal.serving = primary_serving;
        s.backup.signal.serving = backup_serving;
        s
    }

    /// The debounce windows under way, for [`super::PolicyState::next_deadline`].
    pub(crate) fn debounces(&self) -> [&Debounce; 2] {
        [&self.primary.signal, &self.backup.signal]
    }
}
