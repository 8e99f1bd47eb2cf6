//! Who the client is. The TCP peer is the client, unless the peer is a trusted proxy
//! (`http.trustedProxies`): then `X-Forwarded-For` is read from the right, skipping trusted
//! hops, and the first address that is not trusted is the client (the hops to its left were
//! written by whoever the client is, so they are never believed). `X-Forwarded-Proto` from a
//! trusted peer gives the scheme the client used. Nothing a client says about itself is
//! believed when it connects directly.

use std::net::IpAddr;

use http::HeaderMap;
use ipnet::IpNet;

/// CIDR ranges of proxies allowed to report the client's address and scheme.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    /// Parses `10.0.0.0/8`, `::1/128` or a bare address (a /32 or /128); every bad item is
    /// reported with its index.
    pub fn parse(items: &[String]) -> Result<Self, Vec<(usize, String)>> {
        let mut nets = Vec::with_capacity(items.len());
        let mut errors = Vec::new();
        for (i, s) in items.iter().enumerate() {
            let s = s.trim();
            let Ok(net) = s
                .parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
            else {
                errors.push((i, format!("`{s}` is not an IP address or CIDR range")));
                continue;
            };
            // `10.1.2.3/8` is almost always a typo for `10.0.0.0/8`; say so rather than guess.
            if net.trunc() != net {
                errors.push((
                    i,
                    format!("`{s}` has host bits set: write `{}`", net.trunc()),
                ));
                continue;
            }
            nets.push(net);
        }
        if errors.is_empty() {
            Ok(Self { nets })
        } else {
            Err(errors)
        }
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        self.nets.iter().any(|n| n.contains(&ip))
    }
}

/// IPv4-mapped IPv6 (`::ffff:10.0.0.1`, what a dual-stack socket reports) as IPv4.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// The client as the gateway believes it to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub client_ip: IpAddr,
    /// "http" or "https": as the client reached the first trusted hop.
    pub scheme: &'static str,
    /// The trusted part of the hop chain, client first, the peer last (for the upstream's
    /// `X-Forwarded-For`); `None` when the peer is the client.
    pub chain: Option<String>,
}

/// Works out the client from the peer address and, when the peer is trusted, its headers.
pub fn origin(
    peer: IpAddr,
    conn_scheme: &'static str,
    headers: &HeaderMap,
    trusted: &TrustedProxies,
) -> Origin {
    let peer = canonical_ip(peer);
    if trusted.is_empty() || !trusted.contains(peer) {
        return Origin {
            client_ip: peer,
            scheme: conn_scheme,
            chain: None,
        };
    }
    // Every X-Forwarded-For line, in order, as one list of hops.
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    let mut believed: Vec<IpAddr> = vec![peer];
    for hop in hops.iter().rev() {
        // An entry that is not an address ends the walk: nothing left of it can be believed.
        let Some(ip) = parse_hop(hop) else { break };
        client = ip;
        believed.push(ip);
        if !trusted.contains(ip) {
            break;
        }
    }
    let scheme = match headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .map(str::trim)
    {
        Some(p) if p.eq_ignore_ascii_case("https") => "https",
        Some(p) if p.eq_ignore_ascii_case("http") => "http",
        _ => conn_scheme,
    };
    let chain = believed
        .iter()
        .rev()
        .map(IpAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    Origin {
        client_ip: client,
        scheme,
        chain: Some(chain),
    }
}

/// `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]:443`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(canonical_ip(ip));
    }
    if let Ok(sa) = hop.parse::<std::net::SocketAddr>() {
        return Some(canonical_ip(sa.ip()));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn trusted(list: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn a_direct_client_is_the_peer_whatever_it_says() {
        let h = headers(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-proto", "https"),
        ]);
        let o = origin(
            "9.9.9.9".parse().unwrap(),
            "http",
            &h,
            &trusted(&["10.0.0.0/8"]),
        );
        assert_eq!(o.client_ip.to_string(), "9.9.9.9");
        assert_eq!(o.scheme, "http");
        assert_eq!(o.chain, None);
        let o = origin("10.0.0.1".parse().unwrap(), "http", &h, &trusted(&[]));
        assert_eq!(o.client_ip.to_string(), "10.0.0.1");
    }

    #[test]
    fn a_trusted_peer_reports_the_first_untrusted_hop_from_the_right() {
        let t = trusted(&["10.0.0.0/8", "192.168.1.1"]);
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6, 203.0.113.7"),
            ("x-forwarded-for", "192.168.1.1"),
            ("x-forwarded-proto", "https"),
        ]);
        let o = origin("10.1.1.1".parse().unwrap(), "http", &h, &t);
        assert_eq!(o.client_ip.to_string(), "203.0.113.7");
        assert_eq!(o.scheme, "https");
        assert_eq!(
            o.chain.as_deref(),
            Some("203.0.113.7, 192.168.1.1, 10.1.1.1")
        );
        // garbage stops the walk at the last believable hop
        let h = headers(&[("x-forwarded-for", "1.1.1.1, junk, 10.2.2.2")]);
        let o = origin("10.1.1.1".parse().unwrap(), "https", &h, &t);
        assert_eq!(o.client_ip.to_string(), "10.2.2.2");
        assert_eq!(o.scheme, "https");
        // no header: the peer
        let o = origin(
            "::ffff:10.1.1.1".parse().unwrap(),
            "http",
            &HeaderMap::new(),
            &t,
        );
        assert_eq!(o.client_ip.to_string(), "10.1.1.1");
        let h = headers(&[
            ("x-forwarded-for", "[2001:db8::1]:443"),
            ("x-forwarded-proto", "ftp"),
        ]);
        let o = origin("10.1.1.1".parse().unwrap(), "http", &h, &t);
        assert_eq!(o.client_ip.to_string(), "2001:db8::1");
        assert_eq!(o.scheme, "http");
    }

    #[test]
    fn bad_ranges_are_refused() {
        let p = |s: &str| TrustedProxies::parse(&[s.to_string()]);
        assert!(p("10.0.0.0/8").is_ok());
        assert!(p("::1").is_ok());
        assert_eq!(
            p("10.1.2.3/8").unwrap_err()[0].1,
            "`10.1.2.3/8` has host bits set: write `10.0.0.0/8`"
        );
        assert_eq!(
            p("example.com").unwrap_err()[0].1,
            "`example.com` is not an IP address or CIDR range"
        );
    }
}
