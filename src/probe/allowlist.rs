//! Confinement at run time: which addresses the prober may contact at all.
//!
//! The rules are [`crate::validation::confine`]'s (one copy for `check`, `simulate`, the
//! controller and the prober); this module only says which of them applies to a target. A
//! policy's own endpoint addresses need no allowlist entry but still obey the deny rules: the
//! IPs of its trusted EndpointSlices (those Kubernetes' EndpointSlice controller manages, unless
//! the operator runs with `--trust-unmanaged-endpointslices`) and the IPs of its static
//! addresses, which the policy's author writes freely, so it is the deny rules, not the
//! allowlist, that keep these from the operator's own pod, the node and the API server. Any
//! other address (a health URL's) needs an entry; a name needs an entry before it is resolved,
//! and every address it resolves to obeys the deny rules.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;

pub use crate::validation::confine::{Allowlist, AllowlistError, Refusal};

/// The allowlist as seen by one policy: operator-wide entries plus the policy's own endpoints.
#[derive(Debug, Clone, Default)]
pub struct Confinement {
    pub operator: Arc<Allowlist>,
    pub own: HashSet<IpAddr>,
}

impl Confinement {
    /// An IP target, before connecting to it.
    pub fn judge_ip(&self, ip: IpAddr) -> Result<(), Refusal> {
        let ip = ip.to_canonical();
        if self.own.contains(&ip) {
            self.operator.judge_backend_ip(ip)
        } else {
            self.operator.judge_listed_ip(ip)
        }
    }

    /// A name target, before resolving it.
    pub fn judge_name(&self, name: &str) -> Result<(), Refusal> {
        self.operator.judge_name(name)
    }

    /// An address a permitted name resolved to, before connecting to it.
    pub fn judge_resolved(&self, ip: IpAddr) -> Result<(), Refusal> {
        self.operator.judge_resolved(ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn own_endpoints_need_no_entry_but_obey_the_deny_rules() {
        let c = Confinement {
            operator: Arc::new(Allowlist::parse(["10.0.0.0/24", "lb.x"]).unwrap()),
            own: [ip("172.16.0.9"), ip("127.0.0.1"), ip("169.254.169.254")]
                .into_iter()
                .collect(),
        };
        assert!(c.judge_ip(ip("172.16.0.9")).is_ok());
        assert!(
            c.judge_ip(ip("172.16.0.10")).is_err(),
            "not own, not listed"
        );
        assert!(c.judge_ip(ip("10.0.0.7")).is_ok(), "listed");
        assert!(c.judge_ip(ip("127.0.0.1")).is_err(), "own but loopback");
        assert!(
            c.judge_ip(ip("169.254.169.254")).is_err(),
            "own but metadata"
        );
        assert!(c.judge_name("lb.x").is_ok());
        assert!(c.judge_name("other.x").is_err());
        assert!(c.judge_resolved(ip("10.0.0.200")).is_ok());
        assert!(c.judge_resolved(ip("127.0.0.1")).is_err());
    }
}
