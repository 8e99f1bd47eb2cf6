//! What the access log line says about a request beyond its status: the gateway's decision
//! and who the user was. Handlers note them on the request's `RequestCtx` as they decide;
//! the entry point writes them out once, after the response.
//!
//! Only the user's subject is ever noted (`<idp>.sub`), never a cookie, token or password.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::OnceLock;

/// The gateway's decision on a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Decision {
    /// Nothing noted (the entry point then derives one from the outcome).
    Unset = 0,
    /// Forwarded to the app's upstream (authenticated, or a public location).
    Allowed,
    /// Refused by the app's policy (authorization rules, no policy for the path).
    Denied,
    /// Not signed in: sent to a login (redirect or IdP picker).
    LoginRequired,
    /// Failed: a store, directory, IdP or the upstream did not answer.
    Error,
    /// Served by the gateway itself: health, metrics, login pages, the OIDC provider.
    Gateway,
    /// No app is served at this host and path.
    NoRoute,
    /// Refused before routing: malformed path, oversized headers or cookies.
    Invalid,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Unset => "-",
            Decision::Allowed => "allowed",
            Decision::Denied => "denied",
            Decision::LoginRequired => "login_required",
            Decision::Error => "error",
            Decision::Gateway => "gateway",
            Decision::NoRoute => "no_route",
            Decision::Invalid => "invalid",
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            1 => Decision::Allowed,
            2 => Decision::Denied,
            3 => Decision::LoginRequired,
            4 => Decision::Error,
            5 => Decision::Gateway,
            6 => Decision::NoRoute,
            7 => Decision::Invalid,
            _ => Decision::Unset,
        }
    }
}

/// Noted while a request is handled (shared by reference across its awaits).
#[derive(Debug, Default)]
pub struct AccessNote {
    decision: AtomicU8,
    user: OnceLock<String>,
    /// The request carried a bearer token (the access line says `auth: bearer`).
    bearer: AtomicBool,
}

impl Clone for AccessNote {
    fn clone(&self) -> Self {
        let note = AccessNote::default();
        note.decide(self.decision());
        if let Some(u) = self.user() {
            note.user_is(u);
        }
        if self.is_bearer() {
            note.by_bearer();
        }
        note
    }
}

impl AccessNote {
    /// Records the decision; a later one replaces it (an allowed request whose upstream then
    /// fails ends as `error`).
    pub fn decide(&self, d: Decision) {
        self.decision.store(d as u8, Ordering::Relaxed);
    }

    pub fn decision(&self) -> Decision {
        Decision::from_u8(self.decision.load(Ordering::Relaxed))
    }

    /// Records the user's subject (the first one noted stays).
    pub fn user_is(&self, subject: &str) {
        let _ = self.user.set(subject.to_string());
    }

    pub fn user(&self) -> Option<&str> {
        self.user.get().map(String::as_str)
    }

    /// Notes that the request authenticated (or tried to) with a bearer token.
    pub fn by_bearer(&self) {
        self.bearer.store(true, Ordering::Relaxed);
    }

    pub fn is_bearer(&self) -> bool {
        self.bearer.load(Ordering::Relaxed)
    }

    /// How the request authenticated, for the access line: `bearer` or `-`.
    pub fn auth(&self) -> &'static str {
        if self.is_bearer() {
            "bearer"
        } else {
            "-"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_round_trip_and_the_last_wins() {
        let n = AccessNote::default();
        assert_eq!(n.decision(), Decision::Unset);
        for d in [
            Decision::Allowed,
            Decision::Denied,
            Decision::LoginRequired,
            Decision::Gateway,
            Decision::NoRoute,
            Decision::Invalid,
            Decision::Error,
        ] {
            n.decide(d);
            assert_eq!(n.decision(), d);
        }
        n.user_is("alice");
        n.user_is("mallory");
        assert_eq!(n.clone().user(), Some("alice"));
        assert_eq!(n.clone().decision(), Decision::Error);
    }
}
