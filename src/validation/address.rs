//! Addresses as people write them, parsed by one set of rules: host names, IP addresses,
//! `host:port`, HTTP Host headers, health URLs, CIDRs and `--probe-allowlist` entries.
//! Validation (`check`, the controller's reconcile), the prober's targets, the simulator and the
//! allowlist all parse through here, so a form one of them accepts is accepted by all of them.
//!
//! The forms:
//!
//! - **host name**: RFC 1123 labels of letters, digits and `-` (`lb.example.com`), compared
//!   lower-cased; one trailing dot (the absolute form, `lb.example.com.`) is dropped. Dotted
//!   numbers that are not an IP address (`10.0.1.300`) are typos, not names, and are refused.
//! - **IP address**: IPv4 (`10.0.1.5`) or IPv6 (`2001:db8::1`, also `[2001:db8::1]`);
//!   IPv4-mapped IPv6 addresses are the IPv4 address they carry.
//! - **`host:port`**: a host name or IPv4 address, or an IPv6 address in brackets
//!   (`[2001:db8::1]:8080`); the port is 1–65535.
//! - **`--probe-allowlist` entry** ([`AllowlistEntry`]): a CIDR (`10.0.0.0/8`, `fd00::/8`), an IP
//!   address, an exact host name (`lb.example.com`), or a domain suffix written `.example.com`
//!   or `*.example.com` (the same thing: any name *below* `example.com`, not `example.com`
//!   itself). Anything else (`*`, `host:port`, a URL, `10.0.0.0/33`) is refused with
//!   [`AllowlistError`].

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

use ipnet::IpNet;

/// A malformed `--probe-allowlist` entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "--probe-allowlist entry {0:?} is not a CIDR (10.0.0.0/8), an IP address, a host name (lb.example.com) or a domain suffix (.example.com or *.example.com)"
)]
pub struct AllowlistError(pub String);

/// A host as written in an address, a URL or an allowlist entry: an IP literal or a host name
/// (lower-cased, without a trailing dot, so comparisons are exact).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    Ip(IpAddr),
    Name(String),
}

impl Host {
    /// The one host rule (see the module documentation); None when `text` is neither an IP
    /// address nor a host name.
    pub fn parse(text: &str) -> Option<Host> {
        if let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            return inner
                .parse::<Ipv6Addr>()
                .ok()
                .map(|ip| Host::Ip(IpAddr::V6(ip).to_canonical()));
        }
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Some(Host::Ip(ip.to_canonical()));
        }
        let name = text.strip_suffix('.').unwrap_or(text);
        // Dotted-decimal look-alikes such as 10.0.1.300 are typos, not host names.
        if name
            .split('.')
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()))
        {
            return None;
        }
        let lower = name.to_ascii_lowercase();
        is_hostname(&lower).then_some(Host::Name(lower))
    }

    /// The `--probe-allowlist` entry that permits exactly this host.
    pub fn allowlist_entry(&self) -> String {
        match self {
            Host::Ip(ip) => ip.to_string(),
            Host::Name(name) => name.clone(),
        }
    }
}

/// A malformed host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an IP address or host name")]
pub struct HostError(pub String);

impl FromStr for Host {
    type Err = HostError;

    fn from_str(s: &str) -> Result<Self, HostError> {
        Host::parse(s).ok_or_else(|| HostError(s.to_string()))
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Name(name) => f.write_str(name),
        }
    }
}

/// `host:port` with IPv6 in brackets; the port must be 1–65535. The message says what is wrong
/// in words a policy author can act on.
pub fn parse_host_port(text: &str) -> Result<(Host, u16), String> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (ip, port) = rest.split_once("]:").ok_or("must be [IPv6]:port")?;
        let ip: Ipv6Addr = ip
            .parse()
            .map_err(|_| format!("\"{ip}\" is not an IPv6 address"))?;
        (Host::Ip(IpAddr::V6(ip).to_canonical()), port)
    } else {
        let (host, port) = text.rsplit_once(':').ok_or("must be host:port")?;
        if host.contains(':') {
            return Err("IPv6 addresses must be written in brackets: [2001:db8::1]:8080".into());
        }
        (
            Host::parse(host)
                .ok_or_else(|| format!("\"{host}\" is not an IP address or host name"))?,
            port,
        )
    };
    let port: u32 = port
        .parse()
        .map_err(|_| format!("port \"{port}\" is not a number"))?;
    if !(1..=65535).contains(&port) {
        return Err(format!("port {port} is outside 1-65535"));
    }
    Ok((host, port as u16))
}

/// An HTTP Host header: a host name or IP, optionally with a port.
pub fn parse_host_header(value: &str) -> Option<Host> {
    if let Some(bracketed) = value.strip_prefix('[') {
        let (ip, rest) = bracketed.split_once(']')?;
        let ip: Ipv6Addr = ip.parse().ok()?;
        if !rest.is_empty() {
            rest.strip_prefix(':')?.parse::<u16>().ok()?;
        }
        return Some(Host::Ip(IpAddr::V6(ip).to_canonical()));
    }
    match value.rsplit_once(':') {
        Some((host, port)) => {
            port.parse::<u16>().ok()?;
            Host::parse(host)
        }
        None => Host::parse(value),
    }
}

/// A load balancer's health URL as the prober uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthUrl {
    pub host: Host,
    /// The URL's port, 80 when it names none.
    pub port: u16,
    /// The request target (`/healthz?full=1`; `/` when the URL has no path).
    pub path: String,
}

/// `http://host[:port]/path`. User info is refused: `http://ok@evil/` has the host `evil` and
/// exists mostly to fool allowlists and readers.
pub fn parse_health_url(url: &str) -> Result<HealthUrl, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err("https health URLs are not probed in v1alpha1; use the load balancer's plain-HTTP health check".into());
        }
        Some(other) => return Err(format!("scheme \"{other}\" is not http")),
        None => return Err("must start with http://".into()),
    }
    let authority = uri.authority().ok_or("has no host")?;
    if authority.as_str().contains('@') {
        return Err("must not contain user information (user@host)".into());
    }
    let host = authority.host();
    if host.is_empty() {
        return Err("has no host".into());
    }
    let host = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6
            .parse::<Ipv6Addr>()
            .map(|ip| Host::Ip(IpAddr::V6(ip).to_canonical()))
            .map_err(|_| format!("\"{host}\" is not an IPv6 address"))?,
        None => Host::parse(host)
            .ok_or_else(|| format!("\"{host}\" is not an IP address or host name"))?,
    };
    if authority.port_u16() == Some(0) {
        return Err("port 0 is not a port".into());
    }
    Ok(HealthUrl {
        host,
        port: authority.port_u16().unwrap_or(80),
        path: uri.path_and_query().map_or("/", |p| p.as_str()).to_string(),
    })
}

/// One `--probe-allowlist` entry (forms in the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowlistEntry {
    /// A CIDR or a single address (as a /32 or /128), IPv4-mapped networks as IPv4.
    Net(IpNet),
    /// An exact host name.
    Name(String),
    /// A domain suffix with its leading dot (`.example.com`), so a match is an `ends_with`.
    Suffix(String),
}

impl FromStr for AllowlistEntry {
    type Err = AllowlistError;

    fn from_str(raw: &str) -> Result<Self, AllowlistError> {
        let entry = raw.trim();
        let bad = || AllowlistError(entry.to_string());
        if let Ok(net) = entry.parse::<IpNet>() {
            return Ok(AllowlistEntry::Net(canonical_net(net)));
        }
        if let Some(domain) = entry.strip_prefix("*.").or_else(|| entry.strip_prefix('.')) {
            return match Host::parse(domain) {
                Some(Host::Name(domain)) => Ok(AllowlistEntry::Suffix(format!(".{domain}"))),
                _ => Err(bad()),
            };
        }
        match Host::parse(entry) {
            Some(Host::Ip(ip)) => Ok(AllowlistEntry::Net(IpNet::from(ip))),
            Some(Host::Name(name)) => Ok(AllowlistEntry::Name(name)),
            None => Err(bad()),
        }
    }
}

/// `::ffff:10.0.0.0/104` and `10.0.0.0/8` are one network; store the IPv4 form.
fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) => match v6.addr().to_ipv4_mapped() {
            Some(v4) if v6.prefix_len() >= 96 => {
                IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96).unwrap_or(net)
            }
            _ => net,
        },
        IpNet::V4(_) => net,
    }
}

/// RFC 1123 host name, lower-cased: dot-separated labels of letters, digits and `-`.
pub fn is_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(s: &str) -> Result<AllowlistEntry, AllowlistError> {
        s.parse()
    }

    #[test]
    fn allowlist_entries_accept_exactly_the_documented_forms() {
        use AllowlistEntry::*;
        let net = |s: &str| Net(s.parse().unwrap());
        for (input, want) in [
            ("10.0.0.0/8", net("10.0.0.0/8")),
            ("fd00::/8", net("fd00::/8")),
            ("::ffff:10.0.0.0/104", net("10.0.0.0/8")),
            ("10.0.1.5", net("10.0.1.5/32")),
            ("2001:db8::1", net("2001:db8::1/128")),
            ("[2001:db8::1]", net("2001:db8::1/128")),
            (" lb.example.com ", Name("lb.example.com".into())),
            ("LB.Example.COM.", Name("lb.example.com".into())),
            ("localhost", Name("localhost".into())),
            (".example.com", Suffix(".example.com".into())),
            ("*.example.com", Suffix(".example.com".into())),
            ("*.Example.com.", Suffix(".example.com".into())),
        ] {
            assert_eq!(entry(input), Ok(want), "{input}");
        }
        for input in [
            "",
            "*",
            ".",
            "*.",
            "**.example.com",
            "*example.com",
            "..example.com",
            "*.10.0.0",
            ".10.0.0.1",
            "10.0.1.300",
            "10.0.0.0/33",
            "x/1",
            "a b",
            "lb.example.com:8080",
            "http://lb.example.com/",
            "[10.0.0.1]",
            "-lb.example.com",
        ] {
            assert_eq!(
                entry(input),
                Err(AllowlistError(input.trim().into())),
                "{input}"
            );
        }
    }

    #[test]
    fn hosts() {
        assert_eq!(
            Host::parse("10.0.1.5"),
            Some(Host::Ip([10, 0, 1, 5].into()))
        );
        assert_eq!(
            Host::parse("[::1]"),
            Some(Host::Ip(Ipv6Addr::LOCALHOST.into()))
        );
        assert_eq!(
            Host::parse("::ffff:10.0.0.1"),
            Some(Host::Ip([10, 0, 0, 1].into()))
        );
        assert_eq!(
            Host::parse("LB.Example.com."),
            Some(Host::Name("lb.example.com".into()))
        );
        for bad in ["bad host", "-x.com", "10.0.1.300", "", ".", "[10.0.0.1]"] {
            assert_eq!(Host::parse(bad), None, "{bad}");
        }
        assert_eq!(
            Host::Ip("2001:db8::1".parse().unwrap()).to_string(),
            "[2001:db8::1]"
        );
    }

    #[test]
    fn host_ports() {
        assert_eq!(
            parse_host_port("[2001:db8::1]:8080"),
            Ok((Host::Ip("2001:db8::1".parse().unwrap()), 8080))
        );
        assert_eq!(
            parse_host_port("Backend.Local:80"),
            Ok((Host::Name("backend.local".into()), 80))
        );
        assert!(
            parse_host_port("2001:db8::1:80")
                .unwrap_err()
                .contains("brackets")
        );
        assert!(
            parse_host_port("10.0.0.1:0")
                .unwrap_err()
                .contains("outside")
        );
        assert!(parse_host_port("10.0.0.1").is_err());
        assert!(parse_host_port("10.0.1.300:80").is_err());
    }

    #[test]
    fn health_urls() {
        let url = parse_health_url("http://LB.example.com:8080/healthz?x=1").unwrap();
        assert_eq!(url.host, Host::Name("lb.example.com".into()));
        assert_eq!((url.port, url.path.as_str()), (8080, "/healthz?x=1"));
        let url = parse_health_url("http://[fd00::1]").unwrap();
        assert_eq!((url.port, url.path.as_str()), (80, "/"));
        for bad in [
            "https://lb/",
            "lb.example.com/healthz",
            "http://user@lb/",
            "http://lb:0/",
            "http://10.0.1.300/",
        ] {
            assert!(parse_health_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn host_headers() {
        assert!(parse_host_header("shop.example.com:443").is_some());
        assert!(parse_host_header("[::1]:80").is_some());
        assert!(parse_host_header("a b").is_none());
        assert!(parse_host_header("x:port").is_none());
    }
}
