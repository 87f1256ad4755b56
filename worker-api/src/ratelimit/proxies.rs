//! Which address a request comes from: the TCP peer, unless the peer is a
//! configured proxy (`SPOTCHECK_TRUSTED_PROXIES`), in which case the client
//! is the rightmost forwarded hop that is not itself a trusted proxy.
//!
//! The hops are read from the one header the deployment's proxies write,
//! `SPOTCHECK_FORWARDED_HEADER`: `X-Forwarded-For` (the default; what most
//! ingress controllers write) or the standard `Forwarded` (RFC 7239, its `for=`
//! nodes). The other header is ignored whatever it says: a proxy that writes
//! one passes a client's own copy of the other through untouched, so reading
//! it would let a client choose its address.
//!
//! Anything left of the client's hop was written by the client and could be
//! anything, so it is never believed; a request straight from the internet
//! cannot choose its rate-limit key by sending either header. A hop that is
//! not an address (garbled, `unknown`, an obfuscated identifier) ends the
//! walk: the client is then the last trusted hop, which vouched for nothing
//! further.

use super::forwarded::{self, Node};
use axum::http::HeaderMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;

/// An address block such as `10.0.0.0/8`, `fd00::/8` or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Whether `ip` lies in this block (IPv4-mapped IPv6 counts as IPv4).
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

impl FromStr for IpNet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not an IP address or CIDR block");
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s.trim(), None),
        };
        let addr = IpAddr::from_str(addr).map_err(|_| bad())?.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
        };
        Ok(Self { addr, prefix })
    }
}

/// Which header the trusted proxies write the client's address in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For`.
    #[default]
    XForwardedFor,
    /// `Forwarded` (RFC 7239).
    Forwarded,
}

/// The proxies whose forwarding header is believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl FromStr for TrustedProxies {
    type Err = String;

    /// Comma-separated blocks; empty entries (and an empty setting) are ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let blocks = s
            .split(',')
            .filter(|b| !b.trim().is_empty())
            .map(IpNet::from_str)
            .collect::<Result<_, _>>()?;
        Ok(Self(blocks))
    }
}

impl TrustedProxies {
    /// Trusts exactly these blocks (none: only the TCP peer counts).
    pub fn new(blocks: Vec<IpNet>) -> Self {
        Self(blocks)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(ip))
    }

    /// The client's address for `peer` (the TCP peer, when known) and
    /// `headers`, reading only the forwarding header `header`.
    pub fn client_ip(
        &self,
        peer: Option<IpAddr>,
        headers: &HeaderMap,
        header: ForwardedHeader,
    ) -> IpAddr {
        let mut client = peer
            .map(|ip| ip.to_canonical())
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        if peer.is_none() || !self.trusts(client) {
            return client;
        }
        // Hops in order, across repeated headers; walked from the nearest one.
        let hops: Vec<Option<IpAddr>> = match header {
            ForwardedHeader::Forwarded => forwarded::for_nodes(headers)
                .unwrap_or_default()
                .into_iter()
                .map(|node| match node {
                    Node::Addr(ip) => Some(ip),
                    Node::Hidden => None,
                })
                .collect(),
            ForwardedHeader::XForwardedFor => headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(parse_hop)
                .collect(),
        };
        for hop in hops.into_iter().rev() {
            let Some(ip) = hop else {
                // Not an address: nothing left of it can be believed.
                return client;
            };
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        client
    }
}

/// One `X-Forwarded-For` entry: an address, possibly with a port.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    IpAddr::from_str(hop)
        .or_else(|_| SocketAddr::from_str(hop).map(|s| s.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(blocks: &[&str]) -> TrustedProxies {
        blocks.join(",").parse().unwrap()
    }

    fn xff(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", value.parse().unwrap());
        headers
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn blocks_parse_and_contain_their_addresses_only() {
        let net: IpNet = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains(ip("10.1.200.3")));
        assert!(!net.contains(ip("10.2.0.1")));
        assert!(net.contains(ip("::ffff:10.1.0.9")), "IPv4-mapped IPv6");
        let one: IpNet = "::1".parse().unwrap();
        assert!(one.contains(ip("::1")) && !one.contains(ip("::2")));
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.9")));
        for bad in ["", "10.0.0.0/33", "example.com", "10.0.0.0/x", "::/129"] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad:?}");
        }
        let list: TrustedProxies = " 10.0.0.0/8, ,fd00::/8,".parse().unwrap();
        assert_eq!(list.0.len(), 2);
        assert!("".parse::<TrustedProxies>().unwrap().0.is_empty());
        assert!("10.0.0.0/8,nonsense".parse::<TrustedProxies>().is_err());
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let p = proxies(&["10.0.0.0/8"]);
        let got = p.client_ip(
            Some(ip("203.0.113.7")),
            &xff("198.51.100.1"),
            ForwardedHeader::XForwardedFor,
        );
        assert_eq!(got, ip("203.0.113.7"));
        let none = TrustedProxies::default();
        assert_eq!(
            none.client_ip(
                Some(ip("127.0.0.1")),
                &xff("1.2.3.4"),
                ForwardedHeader::XForwardedFor
            ),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn behind_trusted_proxies_the_rightmost_untrusted_hop_is_the_client() {
        let p = proxies(&["10.0.0.0/8"]);
        let peer = Some(ip("10.0.0.2"));
        // The client forged the first entry; the proxies appended the rest.
        let got = p.client_ip(
            peer,
            &xff("1.1.1.1, 198.51.100.4, 10.0.0.9"),
            ForwardedHeader::XForwardedFor,
        );
        assert_eq!(got, ip("198.51.100.4"));
        assert_eq!(
            p.client_ip(peer, &HeaderMap::new(), ForwardedHeader::XForwardedFor),
            ip("10.0.0.2")
        );
        assert_eq!(
            p.client_ip(
                peer,
                &xff("198.51.100.4:5555"),
                ForwardedHeader::XForwardedFor
            ),
            ip("198.51.100.4")
        );
        assert_eq!(
            p.client_ip(
                peer,
                &xff("198.51.100.4, garbage"),
                ForwardedHeader::XForwardedFor
            ),
            ip("10.0.0.2"),
            "a garbled hop stops the walk at the last trusted one"
        );
        assert_eq!(
            p.client_ip(None, &xff("198.51.100.4"), ForwardedHeader::XForwardedFor),
            ip("0.0.0.0")
        );
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, value.parse().unwrap());
        }
        headers
    }

    #[test]
    fn forwarded_is_read_like_x_forwarded_for_when_it_is_the_configured_header() {
        let p = proxies(&["10.0.0.0/8", "fd00::/8"]);
        let peer = Some(ip("10.0.0.2"));
        let fwd = |v: &str| headers(&[("forwarded", v)]);
        let client = |peer, h: &HeaderMap| p.client_ip(peer, h, ForwardedHeader::Forwarded);
        assert_eq!(
            client(
                peer,
                &fwd(r#"for=1.1.1.1, for="[2001:db8::7]:4711", for=10.0.0.9"#)
            ),
            ip("2001:db8::7"),
            "the rightmost hop that is not a trusted proxy"
        );
        assert_eq!(
            client(peer, &fwd(r#"for="[fd00::3]";proto=https, for=192.0.2.8"#)),
            ip("192.0.2.8")
        );
        assert_eq!(
            client(Some(ip("203.0.113.7")), &fwd("for=192.0.2.60")),
            ip("203.0.113.7"),
            "an untrusted peer's Forwarded is ignored"
        );
    }

    #[test]
    fn only_the_configured_header_is_read_so_a_client_cannot_send_the_other() {
        let p = proxies(&["10.0.0.0/8"]);
        let peer = Some(ip("10.0.0.2"));
        // An ingress that writes X-Forwarded-For passed the client's own
        // Forwarded through: the address it claims is not believed.
        let both = headers(&[
            ("x-forwarded-for", "192.0.2.10"),
            ("forwarded", "for=1.2.3.4"),
        ]);
        assert_eq!(
            p.client_ip(peer, &both, ForwardedHeader::XForwardedFor),
            ip("192.0.2.10")
        );
        assert_eq!(
            p.client_ip(peer, &both, ForwardedHeader::Forwarded),
            ip("1.2.3.4")
        );
        let only_forwarded = headers(&[("forwarded", "for=1.2.3.4")]);
        assert_eq!(
            p.client_ip(peer, &only_forwarded, ForwardedHeader::XForwardedFor),
            ip("10.0.0.2"),
            "without its header, the proxy itself is the client"
        );
    }

    #[test]
    fn an_unknown_or_obfuscated_forwarded_hop_ends_the_walk_at_the_last_trusted_one() {
        let p = proxies(&["10.0.0.0/8"]);
        let peer = Some(ip("10.0.0.2"));
        let fwd = |v: &str| headers(&[("forwarded", v)]);
        assert_eq!(
            p.client_ip(
                peer,
                &fwd("for=192.0.2.1, for=unknown"),
                ForwardedHeader::Forwarded
            ),
            ip("10.0.0.2")
        );
        assert_eq!(
            p.client_ip(
                peer,
                &fwd("for=192.0.2.1, for=_hidden, for=10.0.0.5"),
                ForwardedHeader::Forwarded
            ),
            ip("10.0.0.5")
        );
        assert_eq!(
            p.client_ip(
                peer,
                &fwd("for=_hidden, for=192.0.2.1"),
                ForwardedHeader::Forwarded
            ),
            ip("192.0.2.1"),
            "a hidden hop left of the client does not matter"
        );
    }
}
