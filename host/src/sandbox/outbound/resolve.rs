//! Name resolution for outbound requests: fixed answers from `--outbound-resolve`
//! (like curl's `--resolve`) first, the system resolver otherwise. The connector checks
//! and connects to exactly the addresses returned here, so a second lookup can never
//! answer differently (DNS rebinding).

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::IpAddr;
use std::str::FromStr;

use super::allowlist::Host;

/// One `HOST:ADDR` entry: `HOST` resolves to `ADDR` without asking DNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveOverride {
    host: String,
    address: IpAddr,
}

impl FromStr for ResolveOverride {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let invalid = |why: &str| {
            format!(
                "invalid resolve override `{text}`: {why} (expected HOST:ADDR, e.g. `api.internal:10.0.0.7`)"
            )
        };
        let (host, address) = text.split_once(':').ok_or_else(|| invalid("no `:`"))?;
        let host = match Host::parse(host) {
            Some(Host::Name(name)) => name,
            _ => return Err(invalid(&format!("`{host}` is not a host name"))),
        };
        let address = address.strip_prefix('[').unwrap_or(address);
        let address = address.strip_suffix(']').unwrap_or(address);
        let address = address
            .parse()
            .map_err(|_| invalid(&format!("`{address}` is not an IP address")))?;
        Ok(Self { host, address })
    }
}

impl fmt::Display for ResolveOverride {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.address)
    }
}

/// Resolves host names, overrides first.
#[derive(Debug, Default)]
pub struct Resolver {
    overrides: HashMap<String, Vec<IpAddr>>,
}

impl Resolver {
    /// A resolver that answers the names in `overrides` itself; a name given more than
    /// once resolves to all its addresses, in order.
    pub fn new(overrides: &[ResolveOverride]) -> Self {
        let mut map: HashMap<String, Vec<IpAddr>> = HashMap::new();
        for entry in overrides {
            map.entry(entry.host.clone())
                .or_default()
                .push(entry.address);
        }
        Self { overrides: map }
    }

    /// Every address `host` resolves to; an address literal resolves to itself.
    pub async fn resolve(&self, host: &Host, port: u16) -> io::Result<Vec<IpAddr>> {
        let name = match host {
            Host::Address(address) => return Ok(vec![*address]),
            Host::Name(name) => name,
        };
        if let Some(addresses) = self.overrides.get(name) {
            return Ok(addresses.clone());
        }
        let mut addresses: Vec<IpAddr> = tokio::net::lookup_host((name.as_str(), port))
            .await?
            .map(|socket| socket.ip())
            .collect();
        addresses.dedup();
        Ok(addresses)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_with_ipv4_and_ipv6_addresses() {
        let entry: ResolveOverride = "Metadata.Google.Internal:169.254.169.254"
            .parse()
            .expect("valid");
        assert_eq!(
            entry.to_string(),
            "metadata.google.internal:169.254.169.254"
        );
        for text in ["api.internal:[fd00::7]", "api.internal:fd00::7"] {
            let entry: ResolveOverride = text.parse().expect(text);
            assert_eq!(entry.address, "fd00::7".parse::<IpAddr>().unwrap());
        }
    }

    #[test]
    fn refuses_what_is_not_host_colon_address() {
        for (text, why) in [
            ("api.internal", "no `:`"),
            ("api.internal:nowhere", "`nowhere` is not an IP address"),
            ("10.0.0.1:10.0.0.2", "`10.0.0.1` is not a host name"),
            (":10.0.0.1", "`` is not a host name"),
        ] {
            let error = text.parse::<ResolveOverride>().expect_err(text);
            assert!(error.contains(why), "{text}: {error}");
            assert!(error.contains(&format!("`{text}`")), "{text}: {error}");
        }
    }

    #[tokio::test]
    async fn overrides_answer_before_dns() {
        let resolver = Resolver::new(&[
            "svc.test:127.0.0.2".parse().unwrap(),
            "svc.test:::1".parse().unwrap(),
        ]);
        let host = Host::parse("SVC.test").unwrap();
        let addresses = resolver.resolve(&host, 80).await.expect("resolved");
        assert_eq!(
            addresses,
            [
                "127.0.0.2".parse::<IpAddr>().unwrap(),
                "::1".parse().unwrap()
            ]
        );
    }
}
