//! Which origins a guest may call. Patterns follow Spin's `allowed_outbound_hosts`:
//! `https://api.example.com`, `https://*.example.com:8443`, `http://localhost:3000`,
//! `*://*:*`. A pattern matches on scheme, host and port; a port left out means the
//! scheme's default port. The type knows nothing of the command line, so a Spin
//! manifest's entries can be parsed into it as well.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use http::Uri;

/// The allow patterns in force; empty denies everything.
#[derive(Debug, Clone, Default)]
pub struct Allowlist {
    patterns: Vec<OutboundPattern>,
}

/// Which addresses an allowed origin may resolve to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Only public ones: the origin is allowed through a wildcard.
    PublicOnly,
    /// Any address: a pattern names the host exactly.
    AnyAddress,
}

/// One allowed origin pattern: `SCHEME://HOST[:PORT]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundPattern {
    scheme: SchemePattern,
    host: HostPattern,
    port: PortPattern,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum SchemePattern {
    Any,
    Exact(Scheme),
}

/// The schemes an outbound request can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Cleartext HTTP, default port 80.
    Http,
    /// HTTP over TLS, default port 443.
    Https,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    /// `*`: every host.
    Any,
    /// `*.example.com`: every subdomain of `example.com`, not `example.com` itself.
    Subdomains(String),
    /// `api.example.com`: exactly that name (lower case, without a trailing dot).
    Name(String),
    /// `10.0.0.1` or `[fd00::1]`: exactly that address.
    Address(IpAddr),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortPattern {
    Any,
    /// No port written: the default port of the request's scheme.
    SchemeDefault,
    Exact(u16),
}

/// The origin of one outbound request, as the policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// Its scheme.
    pub scheme: Scheme,
    /// Its host: a lower-case name without a trailing dot, or an address.
    pub host: Host,
    /// Its port, the scheme's default when the request names none.
    pub port: u16,
}

/// The host part of an [`Origin`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A DNS name, lower case, without a trailing dot.
    Name(String),
    /// An IP address literal.
    Address(IpAddr),
}

/// Why a pattern cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError {
    pattern: String,
    reason: String,
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid outbound pattern `{}`: {} (expected SCHEME://HOST[:PORT], e.g. \
             `https://api.example.com`, `https://*.example.com:8443`, `*://*:*`)",
            self.pattern, self.reason
        )
    }
}

impl std::error::Error for PatternError {}

impl Allowlist {
    /// An allowlist of `patterns`.
    pub fn new(patterns: Vec<OutboundPattern>) -> Self {
        Self { patterns }
    }

    /// Whether `origin` may be called at all (`None`: denied), and if so, which
    /// addresses it may resolve to.
    pub fn reach(&self, origin: &Origin) -> Option<Reach> {
        let mut matching = self
            .patterns
            .iter()
            .filter(|p| p.matches(origin))
            .peekable();
        matching.peek()?;
        Some(if matching.any(OutboundPattern::names_host_exactly) {
            Reach::AnyAddress
        } else {
            Reach::PublicOnly
        })
    }
}

impl Origin {
    /// The origin of an absolute `http` or `https` URI; `None` for any other URI,
    /// including one with user information.
    pub fn from_uri(uri: &Uri) -> Option<Self> {
        let scheme = Scheme::parse(uri.scheme_str()?)?;
        let authority = uri.authority()?;
        if authority.as_str().contains('@') {
            return None;
        }
        Some(Origin {
            scheme,
            host: Host::parse(authority.host())?,
            port: authority.port_u16().unwrap_or(scheme.default_port()),
        })
    }
}

impl Scheme {
    /// The port a request of this scheme uses when it names none.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "http" => Some(Scheme::Http),
            "https" => Some(Scheme::Https),
            _ => None,
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        })
    }
}

impl Host {
    /// Reads a host as a URI carries it: a name, an IPv4 address, or an IPv6 address in
    /// brackets. Names are compared in lower case and without a trailing dot.
    pub fn parse(text: &str) -> Option<Self> {
        if let Some(inner) = text.strip_prefix('[') {
            let address = inner.strip_suffix(']')?.parse().ok()?;
            return Some(Host::Address(IpAddr::V6(address)));
        }
        if let Ok(address) = text.parse() {
            return Some(Host::Address(IpAddr::V4(address)));
        }
        let name = text.strip_suffix('.').unwrap_or(text).to_ascii_lowercase();
        is_dns_name(&name).then_some(Host::Name(name))
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(name) => f.write_str(name),
            Host::Address(IpAddr::V4(address)) => write!(f, "{address}"),
            Host::Address(IpAddr::V6(address)) => write!(f, "[{address}]"),
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

impl OutboundPattern {
    /// Whether a request to `origin` is allowed by this pattern.
    pub fn matches(&self, origin: &Origin) -> bool {
        let scheme = match self.scheme {
            SchemePattern::Any => true,
            SchemePattern::Exact(scheme) => scheme == origin.scheme,
        };
        let host = match (&self.host, &origin.host) {
            (HostPattern::Any, _) => true,
            (HostPattern::Subdomains(suffix), Host::Name(name)) => name
                .strip_suffix(suffix.as_str())
                .is_some_and(|labels| !labels.is_empty()),
            (HostPattern::Name(pattern), Host::Name(name)) => pattern == name,
            (HostPattern::Address(pattern), Host::Address(address)) => pattern == address,
            _ => false,
        };
        let port = match self.port {
            PortPattern::Any => true,
            PortPattern::SchemeDefault => origin.port == origin.scheme.default_port(),
            PortPattern::Exact(port) => port == origin.port,
        };
        scheme && host && port
    }

    /// Whether this pattern names one host or address exactly, rather than through a
    /// wildcard. Only such a pattern lets a request reach a private or local address.
    pub fn names_host_exactly(&self) -> bool {
        matches!(self.host, HostPattern::Name(_) | HostPattern::Address(_))
    }
}

impl FromStr for OutboundPattern {
    type Err = PatternError;

    fn from_str(pattern: &str) -> Result<Self, PatternError> {
        let error = |reason: &str| PatternError {
            pattern: pattern.to_owned(),
            reason: reason.to_owned(),
        };
        let (scheme, rest) = pattern
            .split_once("://")
            .ok_or_else(|| error("no scheme"))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "*" => SchemePattern::Any,
            other => SchemePattern::Exact(Scheme::parse(other).ok_or_else(|| {
                error(&format!(
                    "unsupported scheme `{other}` (use http, https or *)"
                ))
            })?),
        };
        // A lone trailing slash is harmless; a path is a mistake the user should hear of.
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#']) {
            return Err(error("a pattern has no path, query or fragment"));
        }
        if authority.contains('@') {
            return Err(error("a pattern has no user information"));
        }
        let (host, port) = split_host_port(authority).ok_or_else(|| error("malformed port"))?;
        let port = match port {
            None => PortPattern::SchemeDefault,
            Some("*") => PortPattern::Any,
            Some(port) => match port.parse::<u16>() {
                Ok(port) if port > 0 => PortPattern::Exact(port),
                _ => return Err(error(&format!("`{port}` is not a port (1-65535 or *)"))),
            },
        };
        let host = if host == "*" {
            HostPattern::Any
        } else if let Some(suffix) = host.strip_prefix("*.") {
            match Host::parse(suffix) {
                Some(Host::Name(name)) => HostPattern::Subdomains(format!(".{name}")),
                _ => return Err(error("`*.` must be followed by a domain name")),
            }
        } else {
            match Host::parse(host) {
                Some(Host::Name(name)) => HostPattern::Name(name),
                Some(Host::Address(address)) => HostPattern::Address(address),
                None => return Err(error(&format!("`{host}` is not a host name or address"))),
            }
        };
        Ok(OutboundPattern { scheme, host, port })
    }
}

impl fmt::Display for OutboundPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.scheme {
            SchemePattern::Any => f.write_str("*")?,
            SchemePattern::Exact(scheme) => write!(f, "{scheme}")?,
        }
        f.write_str("://")?;
        match &self.host {
            HostPattern::Any => f.write_str("*")?,
            HostPattern::Subdomains(suffix) => write!(f, "*{suffix}")?,
            HostPattern::Name(name) => write!(f, "{}", Host::Name(name.clone()))?,
            HostPattern::Address(address) => write!(f, "{}", Host::Address(*address))?,
        }
        match self.port {
            PortPattern::Any => f.write_str(":*"),
            PortPattern::SchemeDefault => Ok(()),
            PortPattern::Exact(port) => write!(f, ":{port}"),
        }
    }
}

/// Splits `host[:port]`, where an IPv6 host is in brackets.
fn split_host_port(authority: &str) -> Option<(&str, Option<&str>)> {
    if authority.starts_with('[') {
        let end = authority.find(']')? + 1;
        let (host, rest) = authority.split_at(end);
        return match rest {
            "" => Some((host, None)),
            _ => Some((host, Some(rest.strip_prefix(':')?))),
        };
    }
    match authority.split_once(':') {
        Some((host, port)) if !port.contains(':') => Some((host, Some(port))),
        Some(_) => None,
        None => Some((authority, None)),
    }
}

/// Letters, digits, `-` and `_` in dot-separated, non-empty labels.
fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(scheme: Scheme, host: &str, port: u16) -> Origin {
        Origin {
            scheme,
            host: Host::parse(host).expect("valid host"),
            port,
        }
    }

    fn pattern(text: &str) -> OutboundPattern {
        text.parse().unwrap_or_else(|error| panic!("{error}"))
    }

    #[test]
    fn exact_origin_with_default_port() {
        let allowed = pattern("https://api.example.com");
        assert!(allowed.matches(&origin(Scheme::Https, "api.example.com", 443)));
        assert!(allowed.matches(&origin(Scheme::Https, "API.Example.COM.", 443)));
        assert!(!allowed.matches(&origin(Scheme::Https, "api.example.com", 8443)));
        assert!(!allowed.matches(&origin(Scheme::Http, "api.example.com", 443)));
        assert!(!allowed.matches(&origin(Scheme::Https, "example.com", 443)));
        assert!(allowed.names_host_exactly());
    }

    #[test]
    fn subdomain_wildcard_excludes_the_domain_itself() {
        let allowed = pattern("https://*.example.com:8443");
        assert!(allowed.matches(&origin(Scheme::Https, "a.example.com", 8443)));
        assert!(allowed.matches(&origin(Scheme::Https, "a.b.example.com", 8443)));
        assert!(!allowed.matches(&origin(Scheme::Https, "example.com", 8443)));
        assert!(!allowed.matches(&origin(Scheme::Https, "badexample.com", 8443)));
        assert!(!allowed.matches(&origin(Scheme::Https, "a.example.com", 443)));
        assert!(!allowed.names_host_exactly());
    }

    #[test]
    fn wildcards_everywhere() {
        let allowed = pattern("*://*:*");
        assert!(allowed.matches(&origin(Scheme::Http, "anything", 1)));
        assert!(allowed.matches(&origin(Scheme::Https, "10.0.0.1", 443)));
        assert!(!allowed.names_host_exactly());
        let default_port = pattern("*://example.com");
        assert!(default_port.matches(&origin(Scheme::Http, "example.com", 80)));
        assert!(default_port.matches(&origin(Scheme::Https, "example.com", 443)));
        assert!(!default_port.matches(&origin(Scheme::Http, "example.com", 443)));
    }

    #[test]
    fn addresses_match_addresses_only() {
        let v4 = pattern("http://127.0.0.1:3000");
        assert!(v4.matches(&origin(Scheme::Http, "127.0.0.1", 3000)));
        assert!(!v4.matches(&origin(Scheme::Http, "localhost", 3000)));
        let v6 = pattern("http://[::1]:3000");
        assert!(v6.matches(&origin(Scheme::Http, "[0:0::1]", 3000)));
        assert!(v6.names_host_exactly());
        assert_eq!(v6.to_string(), "http://[::1]:3000");
    }

    #[test]
    fn an_exact_pattern_widens_the_reach_of_a_wildcard() {
        let wildcard = Allowlist::new(vec![pattern("*://*:*")]);
        let both = Allowlist::new(vec![pattern("*://*:*"), pattern("http://localhost:*")]);
        let local = origin(Scheme::Http, "localhost", 3000);
        assert_eq!(wildcard.reach(&local), Some(Reach::PublicOnly));
        assert_eq!(both.reach(&local), Some(Reach::AnyAddress));
        let other = origin(Scheme::Http, "other", 3000);
        assert_eq!(both.reach(&other), Some(Reach::PublicOnly));
        assert_eq!(Allowlist::default().reach(&local), None);
    }

    #[test]
    fn origins_from_uris() {
        let uri = |text: &str| text.parse::<Uri>().expect("uri");
        assert_eq!(
            Origin::from_uri(&uri("https://API.example.com/x")),
            Some(origin(Scheme::Https, "api.example.com", 443))
        );
        assert_eq!(
            Origin::from_uri(&uri("http://[::1]:8080/")),
            Some(origin(Scheme::Http, "[::1]", 8080))
        );
        assert_eq!(Origin::from_uri(&uri("http://user@example.com/")), None);
        assert_eq!(Origin::from_uri(&uri("ftp://example.com/")), None);
        assert_eq!(Origin::from_uri(&uri("/relative")), None);
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "https://api.example.com",
            "https://*.example.com:8443",
            "http://localhost:3000",
            "*://*:*",
            "http://10.1.2.3:*",
        ] {
            assert_eq!(pattern(text).to_string(), text);
        }
    }

    #[test]
    fn invalid_patterns_are_refused_with_a_reason() {
        for (text, reason) in [
            ("api.example.com", "no scheme"),
            ("ftp://example.com", "unsupported scheme `ftp`"),
            ("https://example.com/path", "no path"),
            ("https://user@example.com", "no user information"),
            ("https://example.com:0", "`0` is not a port"),
            ("https://example.com:99999", "`99999` is not a port"),
            ("https://example.com:http", "`http` is not a port"),
            ("https://*example.com", "is not a host name"),
            ("https://*.*.com", "must be followed by a domain name"),
            ("https://", "is not a host name"),
            ("https://[::1", "malformed port"),
        ] {
            let error = text.parse::<OutboundPattern>().expect_err(text).to_string();
            assert!(error.contains(reason), "{text}: {error}");
            assert!(error.contains(&format!("`{text}`")), "{text}: {error}");
        }
    }
}
