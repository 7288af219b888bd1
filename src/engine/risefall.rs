//! HAProxy's `rise`/`fall` state machine for one checked target.
//!
//! A target leaves service after exactly `fall` consecutive failed checks and returns after
//! exactly `rise` consecutive good ones. The two intermediate states are kept visible (HAProxy
//! shows them as "UP 1/3", "DOWN 1/2") because an SRE reading status wants to see a backend that
//! is about to flip.

use crate::api::EndpointState;

use super::config::Millis;

/// Rise/fall bookkeeping for one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RiseFall {
    pub state: EndpointState,
    /// Consecutive failed checks (meaningful while Up/Falling).
    pub fails: u32,
    /// Consecutive good checks (meaningful while Down/Rising).
    pub oks: u32,
    /// When `state` last changed.
    pub last_change: Millis,
    /// The most recent failure, kept after recovery for the post-mortem.
    pub last_error: Option<Box<str>>,
    /// Up but not yet checked: the first check decides alone (see [`RiseFall::unconfirmed`]).
    pub unconfirmed: bool,
}

/// A change of the serving verdict caused by one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flip {
    /// The target just left service (reached `fall`).
    WentDown,
    /// The target just returned to service (reached `rise`).
    WentUp,
}

impl RiseFall {
    /// A target known to be serving (resumed from status as Up, or the load balancer before
    /// any check): it leaves service after `fall` consecutive failed checks.
    pub fn up(now: Millis) -> Self {
        RiseFall {
            state: EndpointState::Up,
            fails: 0,
            oks: 0,
            last_change: now,
            last_error: None,
            unconfirmed: false,
        }
    }

    /// A new target, as HAProxy starts a server: Up (so that a restart or a scale-out never
    /// ejects a healthy pool before its first check) but unconfirmed, so that its first check
    /// alone decides — a failure takes it Down at once, a success confirms it and the normal
    /// `fall` count applies from then on.
    pub fn unconfirmed(now: Millis) -> Self {
        RiseFall {
            unconfirmed: true,
            ..RiseFall::up(now)
        }
    }

    /// A target that must earn its place with `rise` good checks first.
    pub fn down(now: Millis) -> Self {
        RiseFall {
            state: EndpointState::Down,
            ..RiseFall::up(now)
        }
    }

    /// Whether one more check with this result would leave this machine exactly as it is: a
    /// confirmed serving target passing again, or a target out of service failing again the same
    /// way. Such a check decides nothing, so the controller need not step the engine (or
    /// reconcile) for it: in steady state that is nearly every check.
    pub fn absorbs(&self, healthy: bool, error: Option<&str>) -> bool {
        use EndpointState::*;
        if self.unconfirmed || self.fails != 0 || self.oks != 0 {
            return false;
        }
        if healthy {
            self.state == Up
        } else {
            self.state == Down && error.is_none_or(|e| self.last_error.as_deref() == Some(e))
        }
    }

    /// Whether one more check with this result would only move a counter (`fails` or `oks`):
    /// a target already Falling failing again short of `fall` with the error it already has,
    /// or one Rising passing again short of `rise`. Nothing an SRE or a decision sees changes
    /// (state, last error, when it changed, the first-check flag), so the controller may feed
    /// it with [`RiseFall::observe`] outside a reconcile.
    pub fn only_counts(&self, healthy: bool, error: Option<&str>, rise: u32, fall: u32) -> bool {
        use EndpointState::*;
        if self.unconfirmed {
            return false;
        }
        if healthy {
            self.state == Rising && self.oks + 1 < rise
        } else {
            self.state == Falling
                && self.fails + 1 < fall
                && error.is_none_or(|e| self.last_error.as_deref() == Some(e))
        }
    }

    /// Feeds one check result; returns the serving flip it caused, if any.
    pub fn observe(
        &mut self,
        healthy: bool,
        error: Option<&str>,
        rise: u32,
        fall: u32,
        now: Millis,
    ) -> Option<Flip> {
        use EndpointState::*;
        let before = self.state;
        if std::mem::take(&mut self.unconfirmed) && !healthy {
            if let Some(e) = error {
                self.last_error = Some(e.into());
            }
            self.state = Down;
            self.fails = 0;
            self.oks = 0;
            self.last_change = now;
            return Some(Flip::WentDown);
        }
        if healthy {
            self.fails = 0;
            match self.state {
                Up => {}
                Falling => self.state = Up,
                Down | Rising => {
                    self.oks += 1;
                    self.state = if self.oks >= rise { Up } else { Rising };
                }
            }
            if self.state == Up {
                self.oks = 0;
            }
        } else {
            self.oks = 0;
            if let Some(e) = error
                && self.last_error.as_deref() != Some(e)
            {
                self.last_error = Some(e.into());
            }
            match self.state {
                Down => {}
                Rising => self.state = Down,
                Up | Falling => {
                    self.fails += 1;
                    self.state = if self.fails >= fall { Down } else { Falling };
                }
            }
            if self.state == Down {
                self.fails = 0;
            }
        }
        if self.state != before {
            self.last_change = now;
        }
        match (before.serving(), self.state.serving()) {
            (true, false) => Some(Flip::WentDown),
            (false, true) => Some(Flip::WentUp),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use EndpointState::*;

    /// (start state, prior counter, check passed, rise, fall, expected state, expected flip)
    type Case = (
        EndpointState,
        u32,
        bool,
        u32,
        u32,
        EndpointState,
        Option<Flip>,
    );

    /// Table: every (state, check) pair of the machine.
    #[test]
    fn every_transition() {
        let cases: &[Case] = &[
            (Up, 0, true, 2, 3, Up, None),
            (Up, 0, false, 2, 3, Falling, None),
            (Up, 0, false, 2, 1, Down, Some(Flip::WentDown)),
            (Falling, 1, false, 2, 3, Falling, None),
            (Falling, 2, false, 2, 3, Down, Some(Flip::WentDown)),
            (Falling, 2, true, 2, 3, Up, None),
            (Down, 0, false, 2, 3, Down, None),
            (Down, 0, true, 2, 3, Rising, None),
            (Down, 0, true, 1, 3, Up, Some(Flip::WentUp)),
            (Rising, 1, true, 2, 3, Up, Some(Flip::WentUp)),
            (Rising, 1, true, 3, 3, Rising, None),
            (Rising, 2, false, 3, 3, Down, None),
        ];
        for &(start, counter, ok, rise, fall, want, flip) in cases {
            let mut rf = RiseFall::up(0);
            rf.state = start;
            if start.serving() {
                rf.fails = counter;
            } else {
                rf.oks = counter;
            }
            let got = rf.observe(ok, Some("boom"), rise, fall, 5);
            assert_eq!(
                (rf.state, got),
                (want, flip),
                "{start:?} counter={counter} ok={ok} rise={rise} fall={fall}"
            );
            assert_eq!(rf.last_change, if want != start { 5 } else { 0 });
        }
    }

    #[test]
    fn a_new_target_is_decided_by_its_first_check() {
        let mut rf = RiseFall::unconfirmed(0);
        assert_eq!(
            rf.observe(false, Some("refused"), 2, 3, 1),
            Some(Flip::WentDown)
        );
        assert_eq!(rf.state, Down);
        let mut rf = RiseFall::unconfirmed(0);
        assert_eq!(rf.observe(true, None, 2, 3, 1), None);
        assert!(!rf.unconfirmed);
        // Confirmed: the normal fall count applies.
        assert_eq!(rf.observe(false, Some("x"), 2, 3, 2), None);
        assert_eq!(rf.state, Falling);
    }

    #[test]
    fn failure_message_is_kept_after_recovery() {
        let mut rf = RiseFall::up(0);
        rf.observe(false, Some("connection refused"), 2, 1, 1);
        rf.observe(true, None, 1, 1, 2);
        assert_eq!(rf.state, Up);
        assert_eq!(rf.last_error.as_deref(), Some("connection refused"));
    }

    /// Every machine and check the exhaustive tests below judge: each state, `fails` below 3,
    /// `oks` below `oks_below`, first-check flag and last error, with each outcome (a pass, or a
    /// failure with no message or one of two). A pass meets each error of the last loop, which
    /// it ignores, so each pass case appears 3 times.
    fn every_check(oks_below: u32) -> Vec<(RiseFall, bool, Option<&'static str>)> {
        let errors = [None, Some("timeout"), Some("refused")];
        let mut out = Vec::new();
        for state in [Up, Falling, Down, Rising] {
            for fails in 0..3 {
                for oks in 0..oks_below {
                    for unconfirmed in [false, true] {
                        for last in errors {
                            for healthy in [true, false] {
                                for error in errors {
                                    let m = RiseFall {
                                        state,
                                        fails,
                                        oks,
                                        last_change: 5,
                                        last_error: last.map(Into::into),
                                        unconfirmed,
                                    };
                                    out.push((m, healthy, if healthy { None } else { error }));
                                }
                            }
                        }
                    }
                }
            }
        }
        out
    }

    /// A check the machine absorbs changes nothing at all: no field, no flip. Checked over every
    /// state, counter, first-check flag, last error and outcome (rise 3, fall 2).
    #[test]
    fn an_absorbed_check_changes_nothing() {
        let mut absorbed = 0;
        for (m, healthy, error) in every_check(4) {
            if !m.absorbs(healthy, error) {
                continue;
            }
            absorbed += 1;
            let mut after = m.clone();
            let flip = after.observe(healthy, error, 3, 2, 99);
            assert_eq!((flip, &after), (None, &m), "{healthy} {error:?}");
        }
        // Up passing, whatever the last error (3 of them, each met in 3 iterations of the
        // error loop, which a pass ignores): 9. Down failing with no message (3) or with the
        // message it already has (2): 5.
        assert_eq!(absorbed, 9 + 5, "absorbed cases");
    }

    /// A check that only counts moves `fails` or `oks` and nothing else: no flip, the same
    /// state, last error, last change and first-check flag. Checked over every state, counter,
    /// flag, last error and outcome (rise 3, fall 3); and every check that changes only a
    /// counter is recognised.
    #[test]
    fn a_check_that_only_counts_changes_a_counter_alone() {
        let (mut counted, mut missed) = (0, Vec::new());
        for (m, healthy, error) in every_check(3) {
            let mut after = m.clone();
            let flip = after.observe(healthy, error, 3, 3, 99);
            let same_but_counters = flip.is_none()
                && after.state == m.state
                && after.last_error == m.last_error
                && after.last_change == m.last_change
                && after.unconfirmed == m.unconfirmed;
            let moved = (after.fails, after.oks) != (m.fails, m.oks);
            if m.only_counts(healthy, error, 3, 3) {
                assert!(
                    same_but_counters && moved,
                    "{m:?} {healthy} {error:?} -> {after:?}"
                );
                counted += 1;
            } else if same_but_counters && moved && matches!(m.state, Falling | Rising) {
                missed.push((m, healthy, error));
            }
        }
        assert!(missed.is_empty(), "not recognised: {missed:?}");
        // Falling, confirmed, fails 0 or 1, failing again with no message or its own: 2 × (3 +
        // 2) = 10; Rising, confirmed, oks 0 or 1, passing (3 errors × 3 error-loop turns): 2 × 9
        // = 18 — each over 3 values of the other counter.
        assert_eq!(counted, (10 + 18) * 3, "counted cases");
    }
}
