//! Confinement: which addresses the prober may contact at all.
//!
//! A namespaced user writes probe URLs into a policy; without confinement the operator (which
//! runs with cluster network reach) would probe anything they name — server-side request
//! forgery. The operator-wide allowlist names what is permitted beyond each policy's own
//! endpoints, which the controller passes alongside the targets. CIDR matching is a dozen lines,
//! so it is written here rather than pulling a crate into the trust boundary.

use super::config::Host;
use std::collections::HashSet;
use std::net::IpAddr;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllowlistError {
    #[error("allowlist entry {0:?}: expected a CIDR (10.0.0.0/8), an IP, a host name or *.domain")]
    BadEntry(String),
    #[error("allowlist entry {0:?}: prefix length too long for the address family")]
    BadPrefix(String),
}

/// An IP network. Stored as a masked address + prefix so `contains` is two integer operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = AllowlistError;

    fn from_str(s: &str) -> Result<Self, AllowlistError> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse::<IpAddr>()
            .map_err(|_| AllowlistError::BadEntry(s.to_string()))?
            .to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .map_err(|_| AllowlistError::BadEntry(s.to_string()))?,
            None => max,
        };
        if prefix > max {
            return Err(AllowlistError::BadPrefix(s.to_string()));
        }
        Ok(Cidr { addr, prefix })
    }
}

/// Operator-wide permitted destinations: CIDRs, exact host names and `*.suffix` wildcards.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowlist {
    cidrs: Vec<Cidr>,
    names: HashSet<String>,
    /// Stored with the leading dot (".example.com") so a match is a plain `ends_with`.
    suffixes: Vec<String>,
}

impl Allowlist {
    /// An allowlist that permits nothing beyond each policy's own endpoints (the safe default).
    pub fn empty() -> Self {
        Allowlist::default()
    }

    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Self, AllowlistError> {
        let mut list = Allowlist::default();
        for raw in entries {
            let e = raw.trim();
            if e.is_empty() {
                continue;
            }
            if let Some(domain) = e.strip_prefix("*.") {
                match Host::from_str(domain) {
                    Ok(Host::Name(d)) => list.suffixes.push(format!(".{d}")),
                    _ => return Err(AllowlistError::BadEntry(raw.to_string())),
                }
            } else if e.contains('/') || e.parse::<IpAddr>().is_ok() {
                list.cidrs.push(e.parse()?);
            } else {
                match Host::from_str(e) {
                    Ok(Host::Name(n)) => {
                        list.names.insert(n);
                    }
                    _ => return Err(AllowlistError::BadEntry(raw.to_string())),
                }
            }
        }
        Ok(list)
    }

    pub fn permits_ip(&self, ip: IpAddr) -> bool {
        self.cidrs.iter().any(|c| c.contains(ip))
    }

    /// A name is permitted by name only; its resolved addresses are judged separately by
    /// [`Confinement::permits_resolved`] so a DNS answer cannot smuggle in a forbidden address.
    pub fn permits_name(&self, name: &str) -> bool {
        self.names.contains(name) || self.suffixes.iter().any(|s| name.ends_with(s.as_str()))
    }
}

/// The allowlist as seen by one policy: operator-wide entries plus the policy's own endpoint
/// addresses (which the controller derives from the policy's Service, so a user cannot widen it).
#[derive(Debug, Clone, Default)]
pub struct Confinement {
    pub operator: std::sync::Arc<Allowlist>,
    pub own: HashSet<IpAddr>,
}

impl Confinement {
    pub fn permits_ip(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.own.contains(&ip) || self.operator.permits_ip(ip)
    }

    /// Whether a host may be contacted before resolution. IPs are decided now; names that
    /// the allowlist names are permitted; other names must pass [`Self::permits_resolved`].
    pub fn permits_host(&self, host: &Host) -> Option<bool> {
        match host {
            Host::Ip(ip) => Some(self.permits_ip(*ip)),
            Host::Name(n) if self.operator.permits_name(n) => Some(true),
            Host::Name(_) => None,
        }
    }

    /// For a name not listed by name: permitted only if the address we will connect to is.
    pub fn permits_resolved(&self, ip: IpAddr) -> bool {
        self.permits_ip(ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_matching() {
        let l = Allowlist::parse(["10.0.0.0/8", "192.168.1.7", "fd00::/8"]).unwrap();
        assert!(l.permits_ip(ip("10.255.1.2")));
        assert!(!l.permits_ip(ip("11.0.0.1")));
        assert!(l.permits_ip(ip("192.168.1.7")));
        assert!(!l.permits_ip(ip("192.168.1.8")));
        assert!(l.permits_ip(ip("fd12::1")));
        assert!(!l.permits_ip(ip("fe80::1")));
        // IPv4-mapped IPv6 is the same host as its IPv4 form.
        assert!(l.permits_ip(ip("::ffff:10.1.2.3")));
        let all = Allowlist::parse(["0.0.0.0/0"]).unwrap();
        assert!(all.permits_ip(ip("8.8.8.8")));
        assert!(!all.permits_ip(ip("::1")));
    }

    #[test]
    fn names_and_wildcards() {
        let l = Allowlist::parse(["lb.example.com", "*.corp.internal"]).unwrap();
        assert!(l.permits_name("lb.example.com"));
        assert!(!l.permits_name("evil.example.com"));
        assert!(l.permits_name("a.b.corp.internal"));
        assert!(!l.permits_name("corp.internal"));
        assert!(!l.permits_name("xcorp.internal"));
    }

    #[test]
    fn rejects_garbage() {
        assert!(Allowlist::parse(["10.0.0.0/33"]).is_err());
        assert!(Allowlist::parse(["10.0.0.0/x"]).is_err());
        assert!(Allowlist::parse(["not a host"]).is_err());
        assert!(Allowlist::parse(["*.-bad"]).is_err());
    }

    #[test]
    fn confinement_combines_own_and_operator() {
        let c = Confinement {
            operator: std::sync::Arc::new(Allowlist::parse(["10.0.0.0/24", "lb.x"]).unwrap()),
            own: [ip("172.16.0.9")].into_iter().collect(),
        };
        assert_eq!(c.permits_host(&Host::Ip(ip("172.16.0.9"))), Some(true));
        assert_eq!(c.permits_host(&Host::Ip(ip("172.16.0.10"))), Some(false));
        assert_eq!(c.permits_host(&Host::Name("lb.x".into())), Some(true));
        assert_eq!(c.permits_host(&Host::Name("other.x".into())), None);
        assert!(c.permits_resolved(ip("10.0.0.200")));
        assert!(!c.permits_resolved(ip("127.0.0.1")));
    }
}
