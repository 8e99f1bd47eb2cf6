//! The trust boundary: everything a request says about itself is made canonical or refused
//! here, once, before routing. Routing, policies, extensions and the upstream all see the
//! result, so the gateway and the app can never disagree about which resource was asked for
//! or who asked.
//!
//! - [`path`]: the request target's path → one canonical path (or a 400);
//! - [`forwarded`]: who the client is (IP, scheme) — from the TCP peer, or from
//!   `X-Forwarded-For`/`-Proto` only when the peer is a trusted proxy;
//! - [`names`]: header names as CGI/WSGI/Rack/PHP read them (`X_User` = `X-User`), so no
//!   variant of a protected header reaches an upstream.

pub mod forwarded;
pub mod names;
pub mod path;

use forwarded::TrustedProxies;

/// `session.cookie.secure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecureCookies {
    /// `Secure` when the client reached the gateway over HTTPS.
    #[default]
    Auto,
    /// Always `Secure` (TLS ends in front of the gateway).
    Always,
}

/// The compiled edge settings of a runtime.
#[derive(Debug, Clone, Default)]
pub struct EdgeSettings {
    pub trusted_proxies: TrustedProxies,
    pub secure_cookies: SecureCookies,
}
