//! When a decision can fall due with no new fact. The engine owns its timers: the controller
//! asks [`PolicyState::next_deadline`] and re-evaluates the policy exactly then, instead of
//! re-deriving the timer rules from the state's fields and polling every second.
//!
//! A deadline may be early (the step at that time finds a condition no longer holds: nothing
//! happens), never late: every window that [`super::step`] compares with the monotonic clock
//! contributes its end here. That is what the tests below and the randomized replays check.

use super::config::{EngineConfig, Millis, Now};
use super::state::{EmergencyPhase, IngressPhase, PolicyState};

impl PolicyState {
    /// The earliest monotonic time after `now` at which a step with no new fact may decide
    /// something (a sustain window, hold-down, failback dwell, cooldown, flap-budget thaw,
    /// controller-Deployment debounce, emergency weight ramp step or override expiry ends), or `None` when only a new
    /// fact can change anything.
    pub fn next_deadline(&self, cfg: &EngineConfig, now: Now) -> Option<Millis> {
        let mut at: Vec<Millis> = Vec::new();
        if cfg.emergency.is_some() {
            at.extend(self.below_since.map(|t| t + cfg.activate_for_ms));
            at.extend(self.above_since.map(|t| t + cfg.deactivate_for_ms));
            if let EmergencyPhase::CoolingDown { since } = self.emergency {
                let home = if cfg.ingress.is_some() {
                    self.traffic_home_since
                } else {
                    Some(since)
                };
                at.extend(home.map(|h| h.max(since) + cfg.emergency_cooldown_ms));
            }
            if let (EmergencyPhase::Releasing { since, .. }, Some(ramp)) =
                (self.emergency, &cfg.emergency_ramp)
            {
                at.push(since + ramp.step_ms);
            }
        }
        match self.ingress {
            IngressPhase::Primary => {}
            IngressPhase::FailedOver { .. } => at.push(self.lb_clean_since + cfg.hold_down_ms),
            IngressPhase::FailingBack { since, .. } => at.push(since + cfg.step_ms),
        }
        // The end of a DNS drain changes what status reports (and, for the backup's, lets the
        // cooldown count: that is already in `traffic_home_since`).
        at.extend(self.draining.map(|d| d.until));
        // A transition leaving the window thaws a frozen tier, and changes what status reports.
        for b in &self.budgets {
            at.extend(b.transitions.front().map(|t| t + cfg.flap_window_ms));
        }
        let [gateway, backup_gateway] = self.gateway.debounces();
        for signal in [
            &self.controller_signal,
            &self.backup_signal,
            gateway,
            backup_gateway,
        ] {
            if let Some(since) = signal.contrary_since {
                let needed = if signal.serving {
                    cfg.fall_ms()
                } else {
                    cfg.rise_ms()
                };
                at.push(since + needed);
            }
        }
        // Override expiry is wall-clock time: the same distance on the monotonic clock.
        if let Some(exp) = cfg.override_.as_ref().and_then(|o| o.expires_at)
            && exp > now.wall
        {
            at.push(now.mono + (exp - now.wall));
        }
        at.into_iter().filter(|&t| t > now.mono).min()
    }
}
