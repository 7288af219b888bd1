//! Where the operator may send a probe: the operator-wide allowlist and the deny rules, in one
//! place for every source of an address (static addresses, EndpointSlices, DNS names, health
//! URLs) and every user of the rules (`check`, `simulate`, the controller and the prober).
//!
//! Why deny rules at all: the operator runs with cluster network reach, and whoever may write a
//! policy or an EndpointSlice in a namespace decides what it connects to. Without the rules a
//! namespaced user gets a port scanner with the operator's reach (server-side request forgery,
//! the class of CVE-2021-25740): the operator's own pod on loopback, the node's metadata
//! service, the API server. So these addresses are refused unless the allowlist names them:
//!
//! - loopback (`127.0.0.0/8`, `::1`) and the `localhost` names;
//! - link-local (`169.254.0.0/16`, `fe80::/10`), which includes the cloud metadata services
//!   `169.254.169.254` and `fd00:ec2::254` (the latter named explicitly: it is not link-local);
//! - unspecified (`0.0.0.0`, `::`) and multicast;
//! - the API server's own addresses (its Service IP and endpoints), given at run time.
//!
//! Only an allowlist entry inside a denied range lifts its rule (see [`Allowlist::denies`]), so a
//! broad entry written for backends never opens these addresses by accident.
//!
//! Names are judged by name *before* they are resolved (a name the allowlist does not name is
//! never looked up), and every address a name resolves to is judged by the deny rules before a
//! connection is opened, so a DNS answer cannot smuggle a forbidden address in. CIDR matching is
//! `ipnet`'s; the rules themselves are a dozen lines and stay readable here.

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

use ipnet::IpNet;

use super::address::AllowlistEntry;
pub use super::address::AllowlistError;

/// Why an address may not be probed without the allowlist's explicit permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenyRule {
    Loopback,
    LinkLocal,
    /// A cloud metadata service (169.254.169.254, fd00:ec2::254).
    Metadata,
    Unspecified,
    Multicast,
    /// One of the Kubernetes API server's addresses.
    ApiServer,
}

impl DenyRule {
    pub fn as_str(self) -> &'static str {
        match self {
            DenyRule::Loopback => "loopback",
            DenyRule::LinkLocal => "link-local",
            DenyRule::Metadata => "cloud metadata",
            DenyRule::Unspecified => "unspecified",
            DenyRule::Multicast => "multicast",
            DenyRule::ApiServer => "API server",
        }
    }
}

impl fmt::Display for DenyRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the operator will not contact a destination. The message names the destination and the
/// rule, never anything learned by contacting it (there was no contact).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// An address the deny rules cover and the allowlist does not permit.
    #[error("{ip} is a {rule} address not permitted by --probe-allowlist")]
    Denied { ip: IpAddr, rule: DenyRule },
    /// A host name the allowlist does not name: it is not even resolved.
    #[error(
        "host name {name:?} is not in --probe-allowlist (names are checked before they are resolved)"
    )]
    NameNotAllowed { name: String },
    /// An address that only the allowlist could permit (a health URL's) and it does not.
    #[error("{ip} is not in --probe-allowlist")]
    NotAllowed { ip: IpAddr },
}

/// The special class of an address, if any; API server addresses are judged apart (they are
/// only known at run time). IPv4-mapped IPv6 addresses are judged as the IPv4 address they are.
pub fn deny_rule(ip: IpAddr) -> Option<DenyRule> {
    let ip = ip.to_canonical();
    match ip {
        IpAddr::V4(v4) if v4.octets() == [169, 254, 169, 254] => Some(DenyRule::Metadata),
        IpAddr::V6(v6) if v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) => {
            Some(DenyRule::Metadata)
        }
        _ if ip.is_loopback() => Some(DenyRule::Loopback),
        _ if ip.is_unspecified() => Some(DenyRule::Unspecified),
        _ if ip.is_multicast() => Some(DenyRule::Multicast),
        IpAddr::V4(v4) if v4.is_link_local() => Some(DenyRule::LinkLocal),
        IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80 => Some(DenyRule::LinkLocal),
        _ => None,
    }
}

/// The operator-wide allowlist (`--probe-allowlist`) plus the API server's addresses: what every
/// confinement decision is made from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowlist {
    nets: Vec<IpNet>,
    names: HashSet<String>,
    /// With the leading dot (".example.com"), so a match is a plain `ends_with`.
    suffixes: Vec<String>,
    api_server: Vec<IpAddr>,
}

impl Allowlist {
    /// Permits nothing special (the safe default).
    pub fn empty() -> Self {
        Allowlist::default()
    }

    /// Parses entries in the forms [`super::address`] documents: CIDRs (`10.0.0.0/8`), IPs,
    /// exact host names (`lb.example.com`) and domain suffixes (`.example.com` or
    /// `*.example.com`, matching any name below it). Blanks are ignored.
    pub fn parse<I>(entries: I) -> Result<Self, AllowlistError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let mut list = Allowlist::default();
        for raw in entries {
            if raw.as_ref().trim().is_empty() {
                continue;
            }
            match raw.as_ref().parse::<AllowlistEntry>()? {
                AllowlistEntry::Net(net) => list.nets.push(net),
                AllowlistEntry::Name(name) => {
                    list.names.insert(name);
                }
                AllowlistEntry::Suffix(suffix) => list.suffixes.push(suffix),
            }
        }
        Ok(list)
    }

    /// The API server's addresses, refused unless an allowlist entry permits them.
    pub fn with_api_server(mut self, addresses: impl IntoIterator<Item = IpAddr>) -> Self {
        self.api_server = addresses.into_iter().map(|ip| ip.to_canonical()).collect();
        self.api_server.sort();
        self.api_server.dedup();
        self
    }

    pub fn api_server(&self) -> &[IpAddr] {
        &self.api_server
    }

    /// Whether an entry names this address (a CIDR or IP entry).
    pub fn permits_ip(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// Whether an entry names this host name (exact or by suffix). A name permitted here is
    /// still judged by the address it resolves to ([`Self::judge_resolved`]).
    pub fn permits_name(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        self.names.contains(&name) || self.suffixes.iter().any(|s| name.ends_with(s.as_str()))
    }

    /// The deny rule that refuses `ip`, if any: a special or API server address that no entry
    /// lifts. Ordinary addresses pass (a backend's own address needs no entry).
    ///
    /// Only an entry that lies wholly inside the denied range lifts a rule (`127.0.0.0/8` or
    /// `127.0.0.1` for loopback; the exact address for the metadata services and the API
    /// server): `10.0.0.0/8` written for backends, or `0.0.0.0/0`, never opens the API server's
    /// Service IP or the node's metadata service by accident.
    pub fn denies(&self, ip: IpAddr) -> Option<DenyRule> {
        let ip = ip.to_canonical();
        let api_server = self.api_server.contains(&ip).then_some(DenyRule::ApiServer);
        deny_rule(ip)
            .into_iter()
            .chain(api_server)
            .find(|rule| !self.nets.iter().any(|n| n.contains(&ip) && lifts(n, *rule)))
    }

    /// A backend address (static, or from an EndpointSlice): refused only by the deny rules.
    pub fn judge_backend_ip(&self, ip: IpAddr) -> Result<(), Refusal> {
        match self.denies(ip) {
            Some(rule) => Err(Refusal::Denied { ip, rule }),
            None => Ok(()),
        }
    }

    /// A host name anywhere (static address or health URL): the allowlist must name it, and
    /// this is decided before any resolution.
    pub fn judge_name(&self, name: &str) -> Result<(), Refusal> {
        if self.permits_name(name) {
            Ok(())
        } else {
            Err(Refusal::NameNotAllowed {
                name: name.to_string(),
            })
        }
    }

    /// An address a permitted name resolved to: the deny rules apply to it as to any other.
    pub fn judge_resolved(&self, ip: IpAddr) -> Result<(), Refusal> {
        self.judge_backend_ip(ip)
    }

    /// An address that only the allowlist can permit (a health URL outside the policy's own
    /// endpoints): it must be named, and the deny rules still apply unless it is named.
    pub fn judge_listed_ip(&self, ip: IpAddr) -> Result<(), Refusal> {
        if let Some(rule) = self.denies(ip) {
            Err(Refusal::Denied { ip, rule })
        } else if self.permits_ip(ip) {
            Ok(())
        } else {
            Err(Refusal::NotAllowed { ip })
        }
    }
}

/// Whether the entry `net` may lift `rule`: it must lie wholly inside the rule's range (its
/// first and last address fall under the same rule), and for the API server, whose addresses
/// are single hosts in ordinary ranges, it must be one address.
fn lifts(net: &IpNet, rule: DenyRule) -> bool {
    match rule {
        DenyRule::ApiServer => net.prefix_len() == net.max_prefix_len(),
        class => {
            deny_rule(net.network()) == Some(class) && deny_rule(net.broadcast()) == Some(class)
        }
    }
}

/// A shared, immutable allowlist: cloned into every prober task and reconcile.
pub type SharedAllowlist = Arc<Allowlist>;

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn deny_rules_cover_every_special_class() {
        for (addr, rule) in [
            ("127.0.0.1", DenyRule::Loopback),
            ("127.0.9.9", DenyRule::Loopback),
            ("::1", DenyRule::Loopback),
            ("::ffff:127.0.0.1", DenyRule::Loopback),
            ("169.254.1.1", DenyRule::LinkLocal),
            ("fe80::1", DenyRule::LinkLocal),
            ("169.254.169.254", DenyRule::Metadata),
            ("::ffff:169.254.169.254", DenyRule::Metadata),
            ("fd00:ec2::254", DenyRule::Metadata),
            ("0.0.0.0", DenyRule::Unspecified),
            ("::", DenyRule::Unspecified),
            ("224.0.0.1", DenyRule::Multicast),
            ("ff02::1", DenyRule::Multicast),
        ] {
            assert_eq!(deny_rule(ip(addr)), Some(rule), "{addr}");
        }
        for ordinary in ["10.0.1.5", "192.168.1.1", "2001:db8::1", "fd00:ec2::253"] {
            assert_eq!(deny_rule(ip(ordinary)), None, "{ordinary}");
        }
    }

    #[test]
    fn the_allowlist_lifts_a_deny_rule_only_for_what_it_names() {
        let l = Allowlist::parse(["127.0.8.0/24"]).unwrap();
        assert!(l.judge_backend_ip(ip("127.0.8.7")).is_ok());
        assert_eq!(
            l.judge_backend_ip(ip("127.0.9.9")),
            Err(Refusal::Denied {
                ip: ip("127.0.9.9"),
                rule: DenyRule::Loopback
            })
        );
        assert!(l.judge_backend_ip(ip("10.0.0.1")).is_ok());
        // Metadata stays refused under a broad entry that does not name it.
        let broad = Allowlist::parse(["10.0.0.0/8"]).unwrap();
        assert!(broad.judge_backend_ip(ip("169.254.169.254")).is_err());
    }

    #[test]
    fn only_an_entry_inside_a_denied_range_lifts_it() {
        let everything = Allowlist::parse(["0.0.0.0/0", "::/0"]).unwrap();
        for special in [
            "127.0.0.1",
            "169.254.169.254",
            "169.254.1.1",
            "::1",
            "fe80::1",
        ] {
            assert!(
                everything.judge_listed_ip(ip(special)).is_err(),
                "{special} under 0.0.0.0/0"
            );
        }
        assert!(everything.judge_listed_ip(ip("8.8.8.8")).is_ok());
        // The link-local range does not open the metadata address inside it; the address does.
        let link_local = Allowlist::parse(["169.254.0.0/16"]).unwrap();
        assert!(link_local.judge_backend_ip(ip("169.254.1.1")).is_ok());
        assert!(link_local.judge_backend_ip(ip("169.254.169.254")).is_err());
        let metadata = Allowlist::parse(["169.254.169.254"]).unwrap();
        assert!(metadata.judge_backend_ip(ip("169.254.169.254")).is_ok());
        // The API server: its exact address, never the range around it.
        let ranges = Allowlist::parse(["10.0.0.0/8"])
            .unwrap()
            .with_api_server([ip("10.96.0.1")]);
        assert_eq!(ranges.denies(ip("10.96.0.1")), Some(DenyRule::ApiServer));
        assert!(ranges.judge_listed_ip(ip("10.96.0.1")).is_err());
        assert!(ranges.judge_listed_ip(ip("10.96.0.2")).is_ok());
        let exact = Allowlist::parse(["10.0.0.0/8", "10.96.0.1"])
            .unwrap()
            .with_api_server([ip("10.96.0.1")]);
        assert_eq!(exact.denies(ip("10.96.0.1")), None);
        // An API server on loopback needs both rules lifted.
        let both = Allowlist::parse(["127.0.0.0/8"])
            .unwrap()
            .with_api_server([ip("127.0.0.1")]);
        assert_eq!(both.denies(ip("127.0.0.1")), Some(DenyRule::ApiServer));
        assert_eq!(both.denies(ip("127.0.0.2")), None);
    }

    #[test]
    fn api_server_addresses_are_refused_unless_allowed() {
        let l = Allowlist::parse(["192.168.0.0/16", "192.168.5.5"])
            .unwrap()
            .with_api_server([ip("10.96.0.1"), ip("192.168.5.5")]);
        assert_eq!(
            l.denies(ip("10.96.0.1")),
            Some(DenyRule::ApiServer),
            "the Service IP of kubernetes.default"
        );
        assert_eq!(l.denies(ip("192.168.5.5")), None, "explicitly allowed");
        assert_eq!(l.denies(ip("10.96.0.2")), None);
    }

    #[test]
    fn names_are_judged_by_name_only() {
        let l = Allowlist::parse(["lb.example.com", "*.corp.internal", ".svc.example"]).unwrap();
        assert!(l.judge_name("lb.example.com").is_ok());
        assert!(l.judge_name("LB.Example.com.").is_ok());
        assert!(l.judge_name("a.b.corp.internal").is_ok());
        assert!(l.judge_name("x.svc.example").is_ok());
        assert!(l.judge_name("corp.internal").is_err());
        assert!(l.judge_name("xcorp.internal").is_err());
        assert_eq!(
            l.judge_name("kubernetes.default.svc"),
            Err(Refusal::NameNotAllowed {
                name: "kubernetes.default.svc".into()
            })
        );
        // An allowed name resolving to a metadata address is still refused.
        assert!(l.judge_resolved(ip("169.254.169.254")).is_err());
    }

    #[test]
    fn listed_ips_need_an_entry() {
        let l = Allowlist::parse(["10.0.0.0/24", "::ffff:192.168.0.0/112"]).unwrap();
        assert!(l.judge_listed_ip(ip("10.0.0.9")).is_ok());
        assert!(l.judge_listed_ip(ip("192.168.0.9")).is_ok());
        assert_eq!(
            l.judge_listed_ip(ip("10.0.1.1")),
            Err(Refusal::NotAllowed { ip: ip("10.0.1.1") })
        );
        assert!(matches!(
            l.judge_listed_ip(ip("127.0.0.1")),
            Err(Refusal::Denied {
                rule: DenyRule::Loopback,
                ..
            })
        ));
    }

    #[test]
    fn parsing() {
        assert!(
            Allowlist::parse(["10.0.0.0/8", "10.1.1.1", "a.example", ".example", "*.x"]).is_ok()
        );
        for bad in [
            "10.0.0.0/33",
            "10.0.0.0/x",
            "not a host",
            "*.-bad",
            "not/a/cidr",
            ".",
        ] {
            assert!(Allowlist::parse([bad]).is_err(), "{bad}");
        }
        assert!(Allowlist::parse(["", "  "]).unwrap() == Allowlist::empty());
    }
}
