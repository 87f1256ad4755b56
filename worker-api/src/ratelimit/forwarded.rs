//! The standard `Forwarded` header (RFC 7239): the `for=` node of each
//! element, nearest proxy last, as addresses where they are addresses.
//!
//! `for=192.0.2.60`, `for="192.0.2.60:4711"`, `for="[2001:db8::1]"` and
//! `for="[2001:db8::1]:4711"` are addresses; `for=unknown` and obfuscated
//! identifiers (`for=_hidden`) are not, and come back as [`Node::Hidden`]: a
//! proxy that hides who sent it a request vouches for no address.

use axum::http::HeaderMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// One element's `for=` node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Node {
    /// An address (a port, when given, is dropped).
    Addr(IpAddr),
    /// `unknown`, an obfuscated identifier, or a value that is neither.
    Hidden,
}

/// The `for=` nodes of every `Forwarded` header, in order (the client's
/// first, the nearest proxy's last); `None` when no element has a `for=`.
pub fn for_nodes(headers: &HeaderMap) -> Option<Vec<Node>> {
    let mut nodes = Vec::new();
    for value in headers.get_all("forwarded") {
        // A header that is not text is one whose hops cannot be read.
        let Ok(value) = value.to_str() else {
            nodes.push(Node::Hidden);
            continue;
        };
        for element in split_outside_quotes(value, ',') {
            let node = split_outside_quotes(element, ';')
                .into_iter()
                .filter_map(|pair| pair.split_once('='))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("for"))
                .map(|(_, value)| parse_node(value));
            if let Some(node) = node {
                nodes.push(node);
            }
        }
    }
    (!nodes.is_empty()).then_some(nodes)
}

/// Splits at `sep` where it is not inside a quoted string.
fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut quoted, mut escaped, mut start) = (false, false, 0);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

/// One node: a token or a quoted string holding an address, maybe with a port.
fn parse_node(raw: &str) -> Node {
    let raw = raw.trim();
    let value = raw
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(raw);
    let addr = if let Some(rest) = value.strip_prefix('[') {
        // `[v6]` or `[v6]:port`.
        rest.split_once(']')
            .filter(|(_, port)| port.is_empty() || port_ok(port))
            .and_then(|(v6, _)| Ipv6Addr::from_str(v6).ok())
            .map(IpAddr::V6)
    } else {
        // A bare IPv6 address is not valid here: it must be bracketed.
        IpAddr::from_str(value)
            .ok()
            .filter(IpAddr::is_ipv4)
            .or_else(|| SocketAddr::from_str(value).ok().map(|s| s.ip()))
            .filter(IpAddr::is_ipv4)
    };
    addr.map_or(Node::Hidden, |ip| Node::Addr(ip.to_canonical()))
}

fn port_ok(port: &str) -> bool {
    port.strip_prefix(':')
        .is_some_and(|p| p.parse::<u16>().is_ok() || p.starts_with('_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(values: &[&str]) -> Option<Vec<Node>> {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append("forwarded", v.parse().unwrap());
        }
        for_nodes(&headers)
    }

    fn addr(s: &str) -> Node {
        Node::Addr(s.parse().unwrap())
    }

    #[test]
    fn the_examples_of_rfc_7239_parse() {
        assert_eq!(
            nodes(&[r#"for="_gazonk""#]),
            Some(vec![Node::Hidden]),
            "an obfuscated identifier"
        );
        assert_eq!(
            nodes(&[r#"For="[2001:db8:cafe::17]:4711""#]),
            Some(vec![addr("2001:db8:cafe::17")])
        );
        assert_eq!(
            nodes(&["for=192.0.2.60;proto=http;by=203.0.113.43"]),
            Some(vec![addr("192.0.2.60")])
        );
        assert_eq!(
            nodes(&["for=192.0.2.43, for=198.51.100.17"]),
            Some(vec![addr("192.0.2.43"), addr("198.51.100.17")])
        );
        assert_eq!(
            nodes(&["for=unknown, for=\"[2001:db8::1]\""]),
            Some(vec![Node::Hidden, addr("2001:db8::1")])
        );
    }

    #[test]
    fn repeated_headers_quotes_ports_and_other_parameters_are_handled() {
        assert_eq!(
            nodes(&[
                "for=192.0.2.1",
                r#"by=x;for="198.51.100.2:8080";proto=https"#
            ]),
            Some(vec![addr("192.0.2.1"), addr("198.51.100.2")])
        );
        // A comma inside a quoted value of another parameter splits nothing.
        assert_eq!(
            nodes(&[r#"host="a,b";for=192.0.2.9"#]),
            Some(vec![addr("192.0.2.9")])
        );
        assert_eq!(
            nodes(&[r#"for="[::ffff:192.0.2.5]:_port""#]),
            Some(vec![addr("192.0.2.5")]),
            "mapped IPv6 is IPv4; an obfuscated port is fine"
        );
        assert_eq!(nodes(&["proto=https;by=203.0.113.43"]), None, "no for=");
        assert_eq!(nodes(&[]), None);
    }

    #[test]
    fn malformed_nodes_are_hidden_not_believed() {
        for bad in [
            "for=2001:db8::1",
            "for=\"[2001:db8::1\"",
            "for=\"[2001:db8::1]:x\"",
            "for=example.com",
            "for=",
            "for=\"192.0.2.1:99999\"",
        ] {
            assert_eq!(nodes(&[bad]), Some(vec![Node::Hidden]), "{bad}");
        }
    }
}
