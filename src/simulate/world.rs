//! The simulated world: backends with behaviours, the probe schedule, the emergency
//! Deployment's pods, the primary load balancer and its ingress controller.
//!
//! The world produces exactly the facts the real controller would observe — check outcomes
//! (delivered when the check completes, so a timeout costs `timeoutSeconds`), EndpointSlice
//! membership and readiness, ready replicas — and reacts to the engine's desired state the way
//! Kubernetes would (a scale-up creates pods that become ready `readyAfter` later). It never
//! peeks at the engine's internals, so what the replay shows is what the operator would do.

use crate::api::{FailoverPolicySpec, StatusRange};
use crate::engine::{CheckFact, DeploymentFact, EndpointFact, Millis, Observation, Pool};
use crate::health::{CheckOutcome, FailureKind};

use super::scenario::{Behaviour, Change, Event, PodTemplate, Scenario, WatchedObject};

/// The parts of the probe spec that decide an outcome.
#[derive(Debug, Clone)]
pub struct ProbeModel {
    pub interval_ms: Millis,
    pub timeout_ms: Millis,
    /// ± share of the interval (HAProxy-style spread), 0.0..=0.5.
    pub jitter: f64,
    /// None for a TCP probe, which sees neither status nor latency limits.
    pub http: Option<HttpModel>,
}

#[derive(Debug, Clone)]
pub struct HttpModel {
    pub max_latency_ms: Option<u32>,
    pub expected: Vec<(u16, u16)>,
    /// The expected set as written, for messages.
    pub expected_text: String,
}

impl ProbeModel {
    pub fn backends(spec: &FailoverPolicySpec) -> Self {
        let p = &spec.probe;
        let http = if p.tcp.is_some() && p.http.is_none() {
            None
        } else {
            let (max_latency_ms, statuses) = match &p.http {
                Some(h) => (h.max_latency_ms, h.expected_statuses.as_slice()),
                None => (None, &[][..]),
            };
            Some(HttpModel::new(max_latency_ms, statuses))
        };
        ProbeModel {
            interval_ms: i64::from(p.interval_seconds.max(1)) * 1000,
            timeout_ms: i64::from(p.timeout_seconds.max(1)) * 1000,
            jitter: f64::from(p.jitter_percent.min(50)) / 100.0,
            http,
        }
    }

    /// The load balancer's health URL: the probe's timing, the tier's own expected statuses,
    /// no latency limit.
    pub fn load_balancer(spec: &FailoverPolicySpec) -> Self {
        let statuses = spec
            .ingress
            .as_ref()
            .map(|i| i.health.expected_statuses.as_slice())
            .unwrap_or(&[]);
        ProbeModel::health_url(spec, statuses)
    }

    /// The backup load balancer's health URL, likewise with its own expected statuses.
    pub fn backup_load_balancer(spec: &FailoverPolicySpec) -> Self {
        let statuses = spec
            .ingress
            .as_ref()
            .and_then(|i| i.backup_health.as_ref())
            .map(|b| b.expected_statuses.as_slice())
            .unwrap_or(&[]);
        ProbeModel::health_url(spec, statuses)
    }

    fn health_url(spec: &FailoverPolicySpec, statuses: &[StatusRange]) -> Self {
        let mut m = ProbeModel::backends(spec);
        m.http = Some(HttpModel::new(None, statuses));
        m
    }

    /// Whether a check against `behaviour` passes; [`ProbeModel::outcome`] without building
    /// the failure message, for per-step questions.
    pub fn passes(&self, behaviour: Behaviour) -> bool {
        match behaviour {
            Behaviour::Down | Behaviour::Flapping { .. } | Behaviour::Refusing => false,
            Behaviour::Answers { latency_ms } => {
                Millis::from(latency_ms) < self.timeout_ms
                    && self
                        .http
                        .as_ref()
                        .and_then(|h| h.max_latency_ms)
                        .is_none_or(|max| latency_ms <= max)
            }
            Behaviour::Status { code } => self
                .http
                .as_ref()
                .is_none_or(|h| h.expected.iter().any(|&(lo, hi)| (lo..=hi).contains(&code))),
        }
    }

    /// What a check fired now against `behaviour` observes, and how long it takes.
    pub fn outcome(&self, behaviour: Behaviour) -> (Millis, CheckOutcome) {
        let timeout = || {
            (
                self.timeout_ms,
                CheckOutcome::unhealthy(
                    FailureKind::Timeout,
                    format!("no answer within {}s", self.timeout_ms / 1000),
                ),
            )
        };
        match behaviour {
            Behaviour::Down | Behaviour::Flapping { .. } => timeout(),
            Behaviour::Refusing => (
                0,
                CheckOutcome::unhealthy(FailureKind::Refused, "connection refused"),
            ),
            Behaviour::Answers { latency_ms } => {
                let latency = Millis::from(latency_ms);
                if latency >= self.timeout_ms {
                    return timeout();
                }
                match self.http.as_ref().and_then(|h| h.max_latency_ms) {
                    Some(max) if latency_ms > max => (
                        latency,
                        CheckOutcome::unhealthy(
                            FailureKind::TooSlow,
                            format!("answered in {latency_ms}ms, over maxLatencyMs {max}"),
                        ),
                    ),
                    _ => (latency, CheckOutcome::Healthy),
                }
            }
            Behaviour::Status { code } => {
                let latency = Millis::from(super::scenario::DEFAULT_LATENCY_MS);
                match &self.http {
                    Some(h) if !h.expected.iter().any(|&(lo, hi)| (lo..=hi).contains(&code)) => (
                        latency,
                        CheckOutcome::unhealthy(
                            FailureKind::BadStatus,
                            format!("status {code} not in {}", h.expected_text),
                        ),
                    ),
                    // A TCP check only sees the accepted connection.
                    _ => (latency, CheckOutcome::Healthy),
                }
            }
        }
    }
}

impl HttpModel {
    fn new(max_latency_ms: Option<u32>, statuses: &[StatusRange]) -> Self {
        let mut expected: Vec<(u16, u16)> =
            statuses.iter().filter_map(StatusRange::bounds).collect();
        let mut expected_text = statuses
            .iter()
            .map(|s| s.0.as_str())
            .collect::<Vec<_>>()
            .join(",");
        if expected.is_empty() {
            expected = vec![(200, 399)];
            expected_text = "200-399".to_string();
        }
        HttpModel {
            max_latency_ms,
            expected,
            expected_text,
        }
    }
}

/// splitmix64: tiny, fast, and fixed forever — the goldens depend on this exact sequence,
/// which a library PRNG could change in a minor release.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64, salt: &str) -> Self {
        // FNV-1a over the salt, so every target has its own stream whatever the order of
        // creation.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in salt.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        Rng(seed ^ h)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One probed target and its schedule.
#[derive(Debug, Clone)]
struct Target {
    address: String,
    pool: Pool,
    ready: bool,
    terminating: bool,
    behaviour: Behaviour,
    next_fire: Millis,
    /// The check in flight: (completes at, outcome). At most one, as `timeout <= interval`.
    in_flight: Option<(Millis, CheckOutcome)>,
    rng: Rng,
}

impl Target {
    fn new(
        address: String,
        pool: Pool,
        ready: bool,
        behaviour: Behaviour,
        now: Millis,
        seed: u64,
        model: &ProbeModel,
    ) -> Self {
        let mut rng = Rng::new(seed, &address);
        // First checks spread uniformly over one interval, like the real scheduler, so a cold
        // start never probes everything in one burst.
        let next_fire = now + (rng.unit() * model.interval_ms as f64) as Millis;
        Target {
            address,
            pool,
            ready,
            terminating: false,
            behaviour,
            next_fire,
            in_flight: None,
            rng,
        }
    }

    /// Fires and completes checks up to `now`, handing completed outcomes to `deliver`.
    fn advance(
        &mut self,
        now: Millis,
        model: &ProbeModel,
        mut deliver: impl FnMut(Millis, CheckOutcome),
    ) {
        loop {
            if let Some((done, _)) = &self.in_flight {
                if *done > now {
                    return;
                }
                let (done, outcome) = self.in_flight.take().expect("checked above");
                deliver(done, outcome);
            }
            if self.next_fire > now {
                return;
            }
            let fired = self.next_fire;
            let (latency, outcome) = model.outcome(self.behaviour.at(fired));
            self.in_flight = Some((fired + latency, outcome));
            let factor = 1.0 + model.jitter * (2.0 * self.rng.unit() - 1.0);
            self.next_fire = fired + ((model.interval_ms as f64 * factor) as Millis).max(1);
        }
    }
}

/// An emergency pod.
#[derive(Debug, Clone)]
struct Pod {
    ordinal: u32,
    ready_at: Millis,
    ready: bool,
}

/// Something the world did on its own (not scripted, not decided by the engine).
#[derive(Debug, Clone, PartialEq)]
pub enum WorldFact {
    /// A scripted scenario fact took effect.
    Scripted(Event),
    /// An emergency pod passed its readiness delay.
    PodReady {
        address: String,
    },
    /// An emergency pod was created (scale-up) or deleted (scale-down).
    PodCreated {
        address: String,
    },
    PodDeleted {
        address: String,
    },
}

/// The whole simulated world.
#[derive(Debug)]
pub struct World {
    seed: u64,
    model: ProbeModel,
    lb_model: ProbeModel,
    /// Sorted by (pool, address).
    targets: Vec<Target>,
    lb: Option<Target>,
    /// The primary ingress controller Deployment, when the policy watches one.
    controller: Option<DeploymentFact>,
    backup_lb_model: ProbeModel,
    backup_lb: Option<Target>,
    backup_controller: Option<DeploymentFact>,
    pods: Vec<Pod>,
    template: PodTemplate,
    has_deployment: bool,
    /// Whether the emergency Deployment exists (a scenario can delete and recreate it).
    deployment_exists: bool,
    events: Vec<Event>,
    next_event: usize,
    inventory_dirty: bool,
    /// See [`World::next_due`]; `Millis::MIN` forces the next advance to do the full work.
    next_due: Millis,
    /// Scratch buffer for checks completed in one advance, sorted before delivery.
    completed: Vec<(Millis, usize, CheckOutcome)>,
}

impl World {
    pub fn new(spec: &FailoverPolicySpec, scenario: &Scenario) -> Self {
        let model = ProbeModel::backends(spec);
        let lb_model = ProbeModel::load_balancer(spec);
        let start = scenario.start;
        let mut targets: Vec<Target> = scenario
            .primary
            .iter()
            .map(|b| (b, Pool::Primary))
            .chain(
                scenario
                    .emergency_static
                    .iter()
                    .map(|b| (b, Pool::Emergency)),
            )
            .map(|(b, pool)| {
                Target::new(
                    b.address.clone(),
                    pool,
                    b.ready,
                    b.behaviour,
                    start,
                    scenario.seed,
                    &model,
                )
            })
            .collect();
        targets.sort_by(|a, b| (a.pool, &a.address).cmp(&(b.pool, &b.address)));
        let ingress = spec.ingress.as_ref();
        let lb = ingress.filter(|i| i.health.url.is_some()).map(|_| {
            Target::new(
                "load-balancer".into(),
                Pool::Primary,
                true,
                Behaviour::HEALTHY,
                start,
                scenario.seed,
                &lb_model,
            )
        });
        let controller = ingress
            .filter(|i| i.health.controller_deployment.is_some())
            .map(|_| DeploymentFact::Ready);
        let backup = ingress.and_then(|i| i.backup_health.as_ref());
        let backup_lb_model = ProbeModel::backup_load_balancer(spec);
        let backup_lb = backup.filter(|b| b.url.is_some()).map(|_| {
            Target::new(
                "backup-load-balancer".into(),
                Pool::Primary,
                true,
                Behaviour::HEALTHY,
                start,
                scenario.seed,
                &backup_lb_model,
            )
        });
        let backup_controller = backup
            .filter(|b| b.controller_deployment.is_some())
            .map(|_| DeploymentFact::Ready);
        World {
            seed: scenario.seed,
            model,
            lb_model,
            targets,
            lb,
            controller,
            backup_lb_model,
            backup_lb,
            backup_controller,
            pods: Vec::new(),
            template: scenario.emergency_pods.clone(),
            has_deployment: spec
                .backends
                .emergency
                .as_ref()
                .is_some_and(|e| e.deployment.is_some()),
            deployment_exists: true,
            events: scenario.events.clone(),
            next_event: 0,
            inventory_dirty: true,
            next_due: Millis::MIN,
            completed: Vec::new(),
        }
    }

    /// Moves the world to `now`: applies scripted facts, readiness delays and probes, and
    /// writes what the controller would observe into `obs`. Facts that happened are appended
    /// to `facts` for the timeline.
    pub fn advance(
        &mut self,
        now: Millis,
        obs: &mut Observation,
        facts: &mut Vec<(Millis, WorldFact)>,
    ) {
        if now < self.next_due && !self.inventory_dirty {
            // Nothing scheduled before `now`: the facts that persist are already in `obs`.
            return;
        }
        while let Some(ev) = self.events.get(self.next_event).filter(|e| e.at <= now) {
            let ev = ev.clone();
            self.next_event += 1;
            self.apply(&ev);
            facts.push((ev.at, WorldFact::Scripted(ev)));
        }
        for pod in self
            .pods
            .iter_mut()
            .filter(|p| !p.ready && p.ready_at <= now)
        {
            pod.ready = true;
            let address = self.template.address(pod.ordinal);
            if let Some(t) = self
                .targets
                .iter_mut()
                .find(|t| t.pool == Pool::Emergency && t.address == address)
            {
                t.ready = true;
                // A pod that turns ready is listening: it answers from now on.
                t.behaviour = Behaviour::HEALTHY;
                self.inventory_dirty = true;
                facts.push((pod.ready_at, WorldFact::PodReady { address }));
            }
        }
        if self.inventory_dirty {
            self.inventory_dirty = false;
            obs.set_endpoints(
                self.targets
                    .iter()
                    .map(|t| EndpointFact {
                        address: t.address.clone(),
                        pool: t.pool,
                        ready: t.ready,
                        terminating: t.terminating,
                    })
                    .collect(),
            );
        }

        self.completed.clear();
        let model = &self.model;
        for (i, t) in self.targets.iter_mut().enumerate() {
            let completed = &mut self.completed;
            t.advance(now, model, |done, outcome| {
                completed.push((done, i, outcome))
            });
        }
        // In the order they completed; address order breaks ties deterministically.
        self.completed.sort_by_key(|(done, i, _)| (*done, *i));
        for (_, i, outcome) in self.completed.drain(..) {
            let t = &self.targets[i];
            obs.checks.push(CheckFact {
                address: t.address.clone(),
                pool: t.pool,
                outcome,
            });
        }
        if let Some(lb) = &mut self.lb {
            lb.advance(now, &self.lb_model, |_, outcome| {
                obs.lb_checks.push(outcome)
            });
        }
        if let Some(lb) = &mut self.backup_lb {
            lb.advance(now, &self.backup_lb_model, |_, outcome| {
                obs.backup_lb_checks.push(outcome)
            });
        }
        obs.lb_controller = self.controller;
        obs.backup_controller = self.backup_controller;
        if self.has_deployment {
            obs.emergency_ready_replicas =
                self.deployment_exists.then_some(self.ready_pods() as i32);
        }
        self.next_due = self.next_due();
    }

    /// The earliest time anything in the world happens on its own: a check fires or completes,
    /// a scripted fact applies, a pod turns ready. Steps before it are skipped, which makes an
    /// idle step nearly free (most of a day is idle).
    fn next_due(&self) -> Millis {
        let mut due = self
            .events
            .get(self.next_event)
            .map_or(Millis::MAX, |e| e.at);
        for t in self
            .targets
            .iter()
            .chain(self.lb.iter())
            .chain(self.backup_lb.iter())
        {
            due = due.min(t.next_fire);
            if let Some((done, _)) = &t.in_flight {
                due = due.min(*done);
            }
        }
        for p in self.pods.iter().filter(|p| !p.ready) {
            due = due.min(p.ready_at);
        }
        due
    }

    fn apply(&mut self, ev: &Event) {
        match &ev.change {
            Change::Backend {
                address, behaviour, ..
            } => {
                if let Some(t) = self.target_mut(address) {
                    t.behaviour = *behaviour;
                }
            }
            Change::Readiness { address, ready, .. } => {
                if let Some(t) = self.target_mut(address)
                    && t.ready != *ready
                {
                    t.ready = *ready;
                    self.inventory_dirty = true;
                }
            }
            Change::LoadBalancer { behaviour } => {
                if let Some(lb) = &mut self.lb {
                    lb.behaviour = *behaviour;
                }
            }
            Change::BackupLoadBalancer { behaviour } => {
                if let Some(lb) = &mut self.backup_lb {
                    lb.behaviour = *behaviour;
                }
            }
            Change::BackupIngressController { ready } => {
                if self.backup_controller.is_some() {
                    self.backup_controller = Some(if *ready {
                        DeploymentFact::Ready
                    } else {
                        DeploymentFact::NotReady
                    });
                }
            }
            Change::Terminating { address } => {
                if let Some(t) = self.target_mut(address)
                    && !t.terminating
                {
                    t.terminating = true;
                    t.ready = false;
                    self.inventory_dirty = true;
                }
            }
            Change::IngressController { ready } => {
                if self.controller == Some(DeploymentFact::Missing) {
                    return;
                }
                if self.controller.is_some() {
                    self.controller = Some(if *ready {
                        DeploymentFact::Ready
                    } else {
                        DeploymentFact::NotReady
                    });
                }
            }
            Change::Object {
                object: WatchedObject::IngressController,
                exists,
            } => {
                if self.controller.is_some() {
                    self.controller = Some(if *exists {
                        DeploymentFact::Ready
                    } else {
                        DeploymentFact::Missing
                    });
                }
            }
            Change::Object {
                object: WatchedObject::EmergencyDeployment,
                exists,
            } => {
                self.deployment_exists = *exists;
                self.next_due = Millis::MIN;
            }
            // These act on the operator, not on the world: the replay handles them.
            Change::Restart
            | Change::Edit { .. }
            | Change::ClockStep { .. }
            | Change::ResetFlapBudget => {}
        }
    }

    /// Makes the next advance report every level fact again (inventory, readiness, replicas),
    /// as a restarted controller re-lists everything.
    pub fn resend(&mut self) {
        self.inventory_dirty = true;
        self.next_due = Millis::MIN;
    }

    /// Whether the emergency Deployment exists.
    pub fn deployment_exists(&self) -> bool {
        self.deployment_exists
    }

    /// Scripted facts only name primary and static emergency addresses (the scenario parser
    /// checks this, and keeps them out of the pod range), so the address is unique.
    fn target_mut(&mut self, address: &str) -> Option<&mut Target> {
        self.targets.iter_mut().find(|t| t.address == address)
    }

    /// Scales the emergency Deployment to `replicas` the way a ReplicaSet would: new pods get the
    /// lowest free ordinals and become ready `readyAfter` later; scale-down removes the highest.
    pub fn scale_emergency(
        &mut self,
        replicas: i32,
        now: Millis,
        facts: &mut Vec<(Millis, WorldFact)>,
    ) {
        let want = replicas.max(0) as usize;
        self.next_due = Millis::MIN;
        while self.pods.len() < want {
            let ordinal = self.pods.len() as u32;
            let address = self.template.address(ordinal);
            self.pods.push(Pod {
                ordinal,
                ready_at: now + self.template.ready_after_ms,
                ready: false,
            });
            // Not listening until ready: checks are refused, like a container still starting.
            let target = Target::new(
                address.clone(),
                Pool::Emergency,
                false,
                Behaviour::Refusing,
                now,
                self.seed,
                &self.model,
            );
            let pos = self.targets.partition_point(|t| {
                (t.pool, t.address.as_str()) < (Pool::Emergency, address.as_str())
            });
            self.targets.insert(pos, target);
            self.inventory_dirty = true;
            facts.push((now, WorldFact::PodCreated { address }));
        }
        while self.pods.len() > want {
            let pod = self.pods.pop().expect("len > want >= 0");
            let address = self.template.address(pod.ordinal);
            self.targets
                .retain(|t| !(t.pool == Pool::Emergency && t.address == address));
            self.inventory_dirty = true;
            facts.push((now, WorldFact::PodDeleted { address }));
        }
    }

    pub fn pods(&self) -> usize {
        self.pods.len()
    }

    pub fn ready_pods(&self) -> usize {
        self.pods.iter().filter(|p| p.ready).count()
    }

    /// Whether the world's load balancer answers its health URL (the truth, not the verdict).
    pub fn lb_up(&self, now: Millis) -> bool {
        let lb_ok = self
            .lb
            .as_ref()
            .is_none_or(|lb| self.lb_model.passes(lb.behaviour.at(now)));
        lb_ok && self.controller.is_none_or(|c| c == DeploymentFact::Ready)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(max_latency_ms: Option<u32>) -> ProbeModel {
        ProbeModel {
            interval_ms: 10_000,
            timeout_ms: 5_000,
            jitter: 0.1,
            http: Some(HttpModel::new(
                max_latency_ms,
                &[StatusRange("200-299".into())],
            )),
        }
    }

    #[test]
    fn outcomes_follow_the_probe_limits() {
        let m = model(Some(500));
        let kind = |b| match m.outcome(b) {
            (lat, CheckOutcome::Healthy) => (lat, None),
            (lat, CheckOutcome::Unhealthy { kind, .. }) => (lat, Some(kind)),
        };
        assert_eq!(kind(Behaviour::HEALTHY), (5, None));
        assert_eq!(
            kind(Behaviour::Answers { latency_ms: 900 }),
            (900, Some(FailureKind::TooSlow))
        );
        assert_eq!(
            kind(Behaviour::Answers { latency_ms: 7000 }),
            (5000, Some(FailureKind::Timeout))
        );
        assert_eq!(kind(Behaviour::Down), (5000, Some(FailureKind::Timeout)));
        assert_eq!(kind(Behaviour::Refusing), (0, Some(FailureKind::Refused)));
        assert_eq!(
            kind(Behaviour::Status { code: 503 }),
            (5, Some(FailureKind::BadStatus))
        );
        assert_eq!(kind(Behaviour::Status { code: 204 }), (5, None));
        // A TCP probe sees neither status codes nor latency limits, only the timeout.
        let tcp = ProbeModel {
            http: None,
            ..m.clone()
        };
        assert!(tcp.outcome(Behaviour::Status { code: 503 }).1.is_healthy());
        assert!(
            tcp.outcome(Behaviour::Answers { latency_ms: 900 })
                .1
                .is_healthy()
        );
        for b in [
            Behaviour::HEALTHY,
            Behaviour::Answers { latency_ms: 900 },
            Behaviour::Answers { latency_ms: 7000 },
            Behaviour::Down,
            Behaviour::Refusing,
            Behaviour::Status { code: 503 },
            Behaviour::Status { code: 204 },
        ] {
            for m in [&m, &tcp] {
                assert_eq!(m.passes(b), m.outcome(b).1.is_healthy(), "{b:?}");
            }
        }
    }

    #[test]
    fn checks_complete_after_their_latency_and_stay_on_a_jittered_interval() {
        let m = model(None);
        let mut t = Target::new(
            "10.0.1.1:80".into(),
            Pool::Primary,
            true,
            Behaviour::Down,
            0,
            1,
            &m,
        );
        let mut fired = Vec::new();
        let mut done = Vec::new();
        for now in (0..600_000).step_by(1000) {
            let before = t.next_fire;
            t.advance(now, &m, |at, outcome| {
                assert!(!outcome.is_healthy());
                done.push(at);
            });
            if t.next_fire != before {
                fired.push(before);
            }
        }
        assert!(fired[0] < m.interval_ms, "first check within one interval");
        for pair in fired.windows(2) {
            let gap = pair[1] - pair[0];
            assert!((9_000..=11_000).contains(&gap), "gap {gap}");
        }
        for (f, d) in fired.iter().zip(&done) {
            assert_eq!(d - f, m.timeout_ms, "a timeout costs timeoutSeconds");
        }
    }

    #[test]
    fn rng_is_fixed_forever() {
        // The goldens depend on this exact sequence.
        let mut r = Rng::new(1, "");
        assert_eq!(r.next_u64(), 0xadd5_9ec7_95ad_7f61);
    }
}
