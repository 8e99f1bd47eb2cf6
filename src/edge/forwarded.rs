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

/// The request an ingress asks the gateway to decide on (forward-auth), as the ingress
/// reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginalRequest {
    pub method: http::Method,
    /// "http" or "https".
    pub scheme: &'static str,
    /// The `Host` the client sent (with a port, if any).
    pub host: String,
    /// Path and query, as the client sent them (not yet canonical).
    pub path_and_query: String,
}

/// Why a forward-auth request can't be decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OriginalError {
    #[error("forward-auth requests are answered only for a trusted proxy (http.trustedProxies)")]
    UntrustedPeer,
    #[error("the original request is missing: send X-Original-URL, or X-Forwarded-Host and X-Forwarded-Uri")]
    Missing,
    #[error("the original request is malformed")]
    Malformed,
}

/// The original request of a forward-auth call: `X-Original-URL` (+ `X-Original-Method`), as
/// nginx `auth_request` and ingress-nginx send it, or `X-Forwarded-Proto`/`-Host`/`-Uri`
/// (+ `X-Forwarded-Method`), as Traefik and Caddy do. Believed only from a trusted peer: from
/// anyone else they are what a client wrote, and the call is refused.
pub fn original_request(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &TrustedProxies,
) -> Result<OriginalRequest, OriginalError> {
    if !trusted.contains(canonical_ip(peer)) {
        return Err(OriginalError::UntrustedPeer);
    }
    // Exactly one value per header: two would be two opinions about the same request.
    let one = |name: &str| -> Result<Option<&str>, OriginalError> {
        let mut values = headers.get_all(name).iter();
        match (values.next(), values.next()) {
            (None, _) => Ok(None),
            (Some(v), None) => v.to_str().map(Some).map_err(|_| OriginalError::Malformed),
            (Some(_), Some(_)) => Err(OriginalError::Malformed),
        }
    };
    let method = |name: &str| -> Result<http::Method, OriginalError> {
        match one(name)? {
            None => Ok(http::Method::GET),
            Some(m) => m.parse().map_err(|_| OriginalError::Malformed),
        }
    };
    if let Some(url) = one("x-original-url")? {
        let url = url::Url::parse(url).map_err(|_| OriginalError::Malformed)?;
        let scheme = match url.scheme() {
            "https" => "https",
            "http" => "http",
            _ => return Err(OriginalError::Malformed),
        };
        let host = url.host_str().ok_or(OriginalError::Malformed)?;
        let host = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        };
        let path_and_query = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        return Ok(OriginalRequest {
            method: method("x-original-method")?,
            scheme,
            host,
            path_and_query,
        });
    }
    let (Some(host), Some(uri)) = (one("x-forwarded-host")?, one("x-forwarded-uri")?) else {
        return Err(OriginalError::Missing);
    };
    let scheme = match one("x-forwarded-proto")? {
        Some(p) if p.eq_ignore_ascii_case("https") => "https",
        Some(p) if p.eq_ignore_ascii_case("http") => "http",
        None => "http",
        Some(_) => return Err(OriginalError::Malformed),
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    if !host_ok || !uri.starts_with('/') || uri.starts_with("//") {
        return Err(OriginalError::Malformed);
    }
    Ok(OriginalRequest {
        method: method("x-forwarded-method")?,
        scheme,
        host: host.to_ascii_lowercase(),
        path_and_query: uri.to_string(),
    })
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

    fn forward_auth_headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                http::HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn the_original_request_comes_only_from_a_trusted_proxy() {
        let trusted = TrustedProxies::parse(&["10.0.0.0/8".to_string()]).unwrap();
        let nginx = forward_auth_headers(&[
            ("x-original-url", "https://app.example.com:8443/a/b?x=1"),
            ("x-original-method", "POST"),
        ]);
        let from_proxy: IpAddr = "10.1.2.3".parse().unwrap();
        let from_client: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(
            original_request(from_proxy, &nginx, &trusted),
            Ok(OriginalRequest {
                method: http::Method::POST,
                scheme: "https",
                host: "app.example.com:8443".into(),
                path_and_query: "/a/b?x=1".into(),
            })
        );
        assert_eq!(
            original_request(from_client, &nginx, &trusted),
            Err(OriginalError::UntrustedPeer)
        );
        let traefik = forward_auth_headers(&[
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "App.Example.com"),
            ("x-forwarded-uri", "/docs?p=2"),
        ]);
        assert_eq!(
            original_request(from_proxy, &traefik, &trusted),
            Ok(OriginalRequest {
                method: http::Method::GET,
                scheme: "https",
                host: "app.example.com".into(),
                path_and_query: "/docs?p=2".into(),
            })
        );
        let none = TrustedProxies::parse(&[]).unwrap();
        assert_eq!(
            original_request(from_proxy, &traefik, &none),
            Err(OriginalError::UntrustedPeer)
        );
    }

    #[test]
    fn an_ambiguous_or_malformed_original_request_is_refused() {
        let trusted = TrustedProxies::parse(&["10.0.0.0/8".to_string()]).unwrap();
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        for (pairs, want) in [
            (vec![], OriginalError::Missing),
            (
                vec![("x-forwarded-host", "a.example")],
                OriginalError::Missing,
            ),
            (
                vec![
                    ("x-original-url", "https://a.example/"),
                    ("x-original-url", "https://b.example/"),
                ],
                OriginalError::Malformed,
            ),
            (
                vec![("x-original-url", "/relative")],
                OriginalError::Malformed,
            ),
            (
                vec![("x-original-url", "ftp://a.example/")],
                OriginalError::Malformed,
            ),
            (
                vec![
                    ("x-forwarded-host", "a.example"),
                    ("x-forwarded-uri", "//evil"),
                ],
                OriginalError::Malformed,
            ),
            (
                vec![
                    ("x-forwarded-host", "a.example/x"),
                    ("x-forwarded-uri", "/"),
                ],
                OriginalError::Malformed,
            ),
            (
                vec![
                    ("x-forwarded-host", "a.example"),
                    ("x-forwarded-uri", "/"),
                    ("x-forwarded-proto", "gopher"),
                ],
                OriginalError::Malformed,
            ),
        ] {
            let h = forward_auth_headers(&pairs);
            assert_eq!(original_request(peer, &h, &trusted), Err(want), "{pairs:?}");
        }
    }
}
