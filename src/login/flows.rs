//! Bounds on what anonymous requests may make the gateway store. Every anonymous request to a
//! protected location starts a login flow (a store record living 600 s), so without bounds a
//! flood of them could grow memory without limit and push real logins out:
//!
//! - a client IP (IPv6: its /64) may start `session.loginFlows.maxPerClientIP` flows per
//!   window (default 120 per 60 s); past it: 429 with `Retry-After` and a page saying so;
//! - the return URL a flow keeps is at most [`MAX_RETURN_BYTES`]: a longer one keeps only
//!   its path (the query is dropped, logged at debug); a path alone that long is refused
//!   with 414;
//! - flows are written *evictable* (see `store::memory`): at the memory store's byte budget
//!   they make room for sessions, soonest-expiring first.

use std::net::IpAddr;
use std::time::Duration;

use http::StatusCode;

use crate::runtime::Runtime;
use crate::web::rejection::Rejection;
use crate::web::respond::RequestCtx;

/// Longest return URL (path and query) a login flow keeps.
pub const MAX_RETURN_BYTES: usize = 2048;
/// Default `session.loginFlows.maxPerClientIP`.
pub const DEFAULT_MAX_PER_IP: u32 = 120;
/// Default `session.loginFlows.windowSeconds`.
pub const DEFAULT_WINDOW_SECONDS: u64 = 60;

/// `session.loginFlows`, compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowLimits {
    pub max_per_ip: u32,
    pub window: Duration,
}

impl Default for FlowLimits {
    fn default() -> Self {
        Self {
            max_per_ip: DEFAULT_MAX_PER_IP,
            window: Duration::from_secs(DEFAULT_WINDOW_SECONDS),
        }
    }
}

/// The per-IP counter's key (IPv6: per /64, as the login throttle counts).
fn ip_key(ip: IpAddr) -> String {
    format!("flows:ip:{}", super::throttle::ip_bucket(ip))
}

/// Counts one more flow for the client's IP; the 429 page when it is over its limit (or
/// the 503 page when the store fails).
pub async fn admit(rt: &Runtime, ctx: &RequestCtx) -> Result<(), Rejection> {
    let limits = rt.login_flows;
    let n = match rt
        .sessions
        .store()
        .increment(&ip_key(ctx.client_ip), limits.window)
        .await
    {
        Ok(n) => n,
        Err(e) => return Err(super::store_down(e)),
    };
    if n <= u64::from(limits.max_per_ip) {
        return Ok(());
    }
    if n == u64::from(limits.max_per_ip) + 1 {
        tracing::warn!(client_ip = %ctx.client_ip, limit = limits.max_per_ip,
            window_seconds = limits.window.as_secs(), "too many sign-ins started from one client IP: refused for now");
    }
    Err(Rejection::TooMany {
        message: "Too many sign-ins were started from your network in a short time. Wait a minute, then try again.",
        retry_after_secs: limits.window.as_secs(),
    })
}

/// The return URL a flow may keep: as is up to [`MAX_RETURN_BYTES`], else its path alone;
/// `None` when even the path is longer (the caller answers 414).
pub fn bounded_return(return_to: &str) -> Option<&str> {
    if return_to.len() <= MAX_RETURN_BYTES {
        return Some(return_to);
    }
    let path = return_to.split('?').next().unwrap_or("/");
    if path.len() > MAX_RETURN_BYTES {
        return None;
    }
    tracing::debug!(
        length = return_to.len(),
        limit = MAX_RETURN_BYTES,
        "return URL too long: the login flow keeps its path only"
    );
    Some(path)
}

/// 414 for a protected path too long to come back to after sign-in.
pub fn too_long() -> Rejection {
    Rejection::page(
        StatusCode::URI_TOO_LONG,
        "This address is too long to return to after sign-in.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn long_return_urls_keep_their_path_only() {
        assert_eq!(bounded_return("/a?b=1"), Some("/a?b=1"));
        let long_query = format!("/reports/x?q={}", "a".repeat(3000));
        assert_eq!(bounded_return(&long_query), Some("/reports/x"));
        let long_path = format!("/{}", "p".repeat(3000));
        assert_eq!(bounded_return(&long_path), None);
        let exact = format!("/{}", "p".repeat(MAX_RETURN_BYTES - 1));
        assert_eq!(bounded_return(&exact), Some(exact.as_str()));
    }

    #[test]
    fn ipv6_counts_per_slash_64() {
        let a = ip_key("2001:db8:0:1::1".parse().unwrap());
        assert_eq!(a, ip_key("2001:db8:0:1:ffff::2".parse().unwrap()));
        assert_ne!(a, ip_key("2001:db8:0:2::1".parse().unwrap()));
        assert_eq!(
            ip_key("::ffff:10.0.0.1".parse().unwrap()),
            "flows:ip:10.0.0.1"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        // Invariant: what a flow keeps is never longer than the bound, and is always a
        // prefix of what was asked for that ends at the path or at the end (never a cut
        // in the middle of a query or a path).
        #[test]
        fn kept_return_urls_are_bounded_prefixes(path in "/[a-z/]{0,3000}", query in proptest::option::of("[a-z=&]{0,3000}")) {
            let url = match &query { Some(q) => format!("{path}?{q}"), None => path.clone() };
            match bounded_return(&url) {
                Some(kept) => {
                    prop_assert!(kept.len() <= MAX_RETURN_BYTES);
                    prop_assert!(kept == url || kept == path);
                }
                None => prop_assert!(path.len() > MAX_RETURN_BYTES),
            }
        }
    }
}
