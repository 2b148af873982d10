//! Which IP addresses a guest may reach through a wildcard pattern: public unicast ones
//! only. Everything local to the machine, the cloud network or the link (the metadata
//! server at 169.254.169.254 above all) needs a pattern that names the host exactly.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is not public.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonPublic {
    /// `0.0.0.0/8`, `::`.
    Unspecified,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// `169.254.0.0/16` (the cloud metadata server), `fe80::/10`.
    LinkLocal,
    /// RFC 1918 (`10/8`, `172.16/12`, `192.168/16`), carrier-grade NAT (`100.64/10`),
    /// unique-local (`fc00::/7`), the old site-local (`fec0::/10`) and NAT64 local-use
    /// (`64:ff9b:1::/48`).
    Private,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255` and the rest of the reserved `240.0.0.0/4`, IETF protocol
    /// assignments (`192.0.0.0/24`), documentation (`192.0.2.0/24`, `198.51.100.0/24`,
    /// `203.0.113.0/24`, `2001:db8::/32`), benchmarking (`198.18.0.0/15`) and
    /// discard-only (`100::/64`).
    Reserved,
}

impl fmt::Display for NonPublic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NonPublic::Unspecified => "unspecified",
            NonPublic::Loopback => "loopback",
            NonPublic::LinkLocal => "link-local",
            NonPublic::Private => "private",
            NonPublic::Multicast => "multicast",
            NonPublic::Reserved => "reserved or broadcast",
        })
    }
}

/// Classifies `address`: `None` for a public address, otherwise why it is not.
/// IPv6 forms that carry an IPv4 address (mapped, compatible, NAT64, 6to4, Teredo) are
/// judged by that IPv4 address.
pub fn non_public(address: IpAddr) -> Option<NonPublic> {
    match address {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => non_public_v4(v4),
            None => non_public_v6(v6),
        },
    }
}

fn non_public_v4(address: Ipv4Addr) -> Option<NonPublic> {
    let [a, b, c, _] = address.octets();
    if a == 0 {
        Some(NonPublic::Unspecified)
    } else if address.is_loopback() {
        Some(NonPublic::Loopback)
    } else if address.is_link_local() {
        Some(NonPublic::LinkLocal)
    } else if address.is_private() || (a == 100 && (b & 0b1100_0000) == 64) {
        Some(NonPublic::Private)
    } else if address.is_multicast() {
        Some(NonPublic::Multicast)
    } else if a >= 240
        || address.is_documentation()
        || (a, b, c) == (192, 0, 0)
        || (a == 198 && (b & 0b1111_1110) == 18)
    {
        Some(NonPublic::Reserved)
    } else {
        None
    }
}

fn non_public_v6(address: Ipv6Addr) -> Option<NonPublic> {
    let segments = address.segments();
    if address.is_unspecified() {
        Some(NonPublic::Unspecified)
    } else if address.is_loopback() {
        Some(NonPublic::Loopback)
    } else if address.is_unicast_link_local() {
        Some(NonPublic::LinkLocal)
    } else if address.is_unique_local()
        || (segments[0] & 0xffc0) == 0xfec0
        || segments[..3] == [0x64, 0xff9b, 1]
    {
        Some(NonPublic::Private)
    } else if address.is_multicast() {
        Some(NonPublic::Multicast)
    } else if segments[..2] == [0x2001, 0xdb8] || segments[..4] == [0x100, 0, 0, 0] {
        Some(NonPublic::Reserved)
    } else {
        None
    }
}

/// The IPv4 address an IPv6 address carries: IPv4-mapped (`::ffff:a.b.c.d`),
/// IPv4-compatible (`::a.b.c.d`), NAT64 (`64:ff9b::a.b.c.d`), 6to4 (`2002::/16`, in bits
/// 16..48) or Teredo (`2001:0::/32`, the client's address inverted in the last 32 bits).
/// `::` and `::1` are IPv6's own unspecified and loopback addresses.
fn embedded_v4(address: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = address.to_ipv4_mapped() {
        return Some(v4);
    }
    let bits = address.to_bits();
    let low = bits as u32;
    let v4 = match address.segments() {
        [0, 0, 0, 0, 0, 0, ..] if low > 1 => low,
        [0x64, 0xff9b, 0, 0, 0, 0, ..] => low,
        [0x2002, ..] => (bits >> 80) as u32,
        [0x2001, 0, ..] => !low,
        _ => return None,
    };
    Some(Ipv4Addr::from_bits(v4))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(text: &str) -> Option<NonPublic> {
        non_public(text.parse().expect("address"))
    }

    #[test]
    fn public_addresses_pass() {
        for text in [
            "8.8.8.8",
            "1.1.1.1",
            "100.128.0.1",
            "172.32.0.1",
            "2001:4860:4860::8888",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "2001:0:4136:e378:8000:63bf:f7f7:f7f7",
            "192.0.1.1",
            "198.17.255.255",
            "198.20.0.1",
            "203.0.114.1",
            "2001:db9::1",
            "100:0:0:1::1",
        ] {
            assert_eq!(class(text), None, "{text}");
        }
    }

    #[test]
    fn local_and_private_addresses_are_named() {
        for (text, expected) in [
            ("0.0.0.0", NonPublic::Unspecified),
            ("0.1.2.3", NonPublic::Unspecified),
            ("::", NonPublic::Unspecified),
            ("127.0.0.1", NonPublic::Loopback),
            ("127.5.6.7", NonPublic::Loopback),
            ("::1", NonPublic::Loopback),
            ("169.254.169.254", NonPublic::LinkLocal),
            ("fe80::1", NonPublic::LinkLocal),
            ("10.1.2.3", NonPublic::Private),
            ("172.16.0.1", NonPublic::Private),
            ("192.168.1.1", NonPublic::Private),
            ("100.64.0.1", NonPublic::Private),
            ("100.127.255.255", NonPublic::Private),
            ("fd00::1", NonPublic::Private),
            ("fc00::1", NonPublic::Private),
            ("fec0::1", NonPublic::Private),
            ("224.0.0.1", NonPublic::Multicast),
            ("ff02::1", NonPublic::Multicast),
            ("255.255.255.255", NonPublic::Reserved),
            ("240.0.0.1", NonPublic::Reserved),
            ("192.0.0.8", NonPublic::Reserved),
            ("192.0.2.1", NonPublic::Reserved),
            ("198.51.100.7", NonPublic::Reserved),
            ("203.0.113.255", NonPublic::Reserved),
            ("198.18.0.1", NonPublic::Reserved),
            ("198.19.255.255", NonPublic::Reserved),
            ("2001:db8::1", NonPublic::Reserved),
            ("100::1", NonPublic::Reserved),
            ("64:ff9b:1::a", NonPublic::Private),
            ("64:ff9b:1:ffff::808:808", NonPublic::Private),
        ] {
            assert_eq!(class(text), Some(expected), "{text}");
        }
    }

    #[test]
    fn ipv6_forms_of_ipv4_are_judged_by_their_ipv4_address() {
        for (text, expected) in [
            ("::ffff:169.254.169.254", NonPublic::LinkLocal),
            ("::ffff:127.0.0.1", NonPublic::Loopback),
            ("::127.0.0.1", NonPublic::Loopback),
            ("::169.254.169.254", NonPublic::LinkLocal),
            ("::ffff:10.0.0.1", NonPublic::Private),
            ("64:ff9b::a9fe:a9fe", NonPublic::LinkLocal),
            ("::ffff:0.0.0.0", NonPublic::Unspecified),
            ("::0.0.1.2", NonPublic::Unspecified),
            ("2002:a9fe:a9fe::1", NonPublic::LinkLocal),
            ("2002:7f00:1::", NonPublic::Loopback),
            ("2002:c0a8:101:1::1", NonPublic::Private),
            ("2002:c000:201::", NonPublic::Reserved),
            // Teredo clients 127.0.0.1, 169.254.169.254 and 10.0.0.1, inverted.
            ("2001:0:4136:e378:8000:63bf:80ff:fffe", NonPublic::Loopback),
            ("2001::ffff:5601:5601", NonPublic::LinkLocal),
            ("2001::f5ff:fffe", NonPublic::Private),
        ] {
            assert_eq!(class(text), Some(expected), "{text}");
        }
    }
}
