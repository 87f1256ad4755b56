//! The key that per-client limits use: the client's network rather than its
//! exact address. An IPv4 address is its own key (/32), but one IPv6 host
//! usually holds a whole /64 (SLAAC, privacy addresses), so keying on the full
//! address would let it rotate through 2^64 keys; the key is its /64 instead.
//! An IPv4-mapped IPv6 address (`::ffff:192.0.2.1`) is the IPv4 address.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A client's network: an IPv4 address, or the first 64 bits of an IPv6 one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientNet {
    /// An IPv4 client, keyed by its address (/32).
    V4(Ipv4Addr),
    /// An IPv6 client, keyed by its /64 (the upper 64 bits).
    V6(u64),
}

impl ClientNet {
    /// The network of `ip`.
    pub fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Self::V4(v4),
            IpAddr::V6(v6) => Self::V6((u128::from(v6) >> 64) as u64),
        }
    }
}

impl From<IpAddr> for ClientNet {
    fn from(ip: IpAddr) -> Self {
        Self::of(ip)
    }
}

/// `192.0.2.7` or `2001:db8:1:2::/64`: stable, so it can name a Redis key.
impl fmt::Display for ClientNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::V4(v4) => write!(f, "{v4}"),
            Self::V6(prefix) => write!(f, "{}/64", Ipv6Addr::from(u128::from(*prefix) << 64)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> ClientNet {
        ClientNet::of(s.parse().unwrap())
    }

    #[test]
    fn ipv6_addresses_in_one_slash_64_share_a_key_and_others_do_not() {
        let a = net("2001:db8:1:2::1");
        assert_eq!(a, net("2001:db8:1:2:ffff:ffff:ffff:ffff"));
        assert_eq!(a, net("2001:db8:1:2:abcd::17"));
        assert_ne!(a, net("2001:db8:1:3::1"), "the next /64");
        assert_ne!(a, net("2001:db8:2:2::1"));
        assert_eq!(a.to_string(), "2001:db8:1:2::/64");
    }

    #[test]
    fn ipv4_is_keyed_per_address_and_mapped_ipv6_is_ipv4() {
        let a = net("192.0.2.1");
        assert_ne!(a, net("192.0.2.2"), "IPv4 is /32");
        assert_eq!(a, net("::ffff:192.0.2.1"), "IPv4-mapped IPv6 is IPv4");
        assert_eq!(a.to_string(), "192.0.2.1");
        // Not every IPv4 address shares the /64 of the mapped range.
        assert_ne!(net("::ffff:192.0.2.1"), net("::ffff:192.0.2.9"));
        assert_eq!(net("::1"), net("::2"), "loopback's /64 is one key");
    }
}
