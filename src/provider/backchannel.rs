//! Back-channel logout to relying parties (OpenID Connect Back-Channel Logout 1.0).
//!
//! When a session ends, every client that got a code in it and registered a
//! `backchannelLogoutURI` is sent a signed logout token (`typ: logout+jwt`, `sid` and `sub`,
//! the logout event, never a `nonce`) as `logout_token=` in a form POST. Sending is in the
//! background: the user's sign-out page never waits for an RP. Each notice is tried at most
//! `ATTEMPTS` times, with a doubling pause after a network error or a 5xx (a 4xx is the RP
//! refusing this token: not retried); at most `MAX_IN_FLIGHT` notices are pending at once,
//! past that a notice is dropped. Every outcome is counted (`tessera_logout_notices_total`)
//! and failures are logged once per interval per client (`telemetry::failures`).

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::Semaphore;

use super::keys::{SigningKey, TokenType};
use crate::session::{now_unix, random_token};
use crate::telemetry::metrics::Metrics;

/// The `events` member a logout token carries.
pub const LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// Tries per notice.
pub const ATTEMPTS: u32 = 5;
/// Notices pending at once (their retries included); a notice past it is dropped.
pub const MAX_IN_FLIGHT: usize = 1024;
/// How long one try may take.
const TIMEOUT: Duration = Duration::from_secs(5);
/// How long a logout token is valid: long enough for every retry.
const TOKEN_LIFETIME: u64 = 120;

/// The pause before the second try (then doubled): 1 s, or
/// `TESSERA_BACKCHANNEL_RETRY_MS` (read once; tests shorten it).
fn first_pause() -> Duration {
    static PAUSE: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *PAUSE.get_or_init(|| {
        std::env::var("TESSERA_BACKCHANNEL_RETRY_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis)
            .unwrap_or(Duration::from_secs(1))
    })
}

/// A client's logout URI registration (back- or front-channel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub uri: String,
    /// `…LogoutSessionRequired`: the RP needs `sid` (back-channel: always sent; front-channel:
    /// `iss` and `sid` are added to the URI's query).
    pub session_required: bool,
}

/// Who is told: a client, about the user it knows as `sub`, in session `sid`.
#[derive(Debug, Clone)]
pub struct Notice {
    pub client_id: String,
    pub uri: String,
    pub sub: String,
    pub sid: String,
}

/// Signs and sends logout tokens.
pub struct Notifier {
    issuer: String,
    keys: Arc<Vec<SigningKey>>,
    http: openidconnect::reqwest::Client,
    in_flight: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl Notifier {
    pub fn new(issuer: String, keys: Arc<Vec<SigningKey>>, metrics: Arc<Metrics>) -> Self {
        let http = openidconnect::reqwest::ClientBuilder::new()
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .build()
            .unwrap_or_default();
        Self {
            issuer,
            keys,
            http,
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            metrics,
        }
    }

    /// The logout token for `n`, signed with the first key.
    pub fn logout_token(&self, n: &Notice) -> Result<String, String> {
        let now = now_unix();
        let claims = json!({
            "iss": self.issuer,
            "aud": n.client_id,
            "iat": now,
            "exp": now + TOKEN_LIFETIME,
            "jti": random_token(16),
            "sub": n.sub,
            "sid": n.sid,
            "events": { LOGOUT_EVENT: {} },
        });
        let bytes = serde_json::to_vec(&claims).map_err(|e| e.to_string())?;
        self.keys[0].sign(TokenType::Logout, &bytes)
    }

    /// Sends `n` in the background (never waits); dropped, counted and logged when
    /// `MAX_IN_FLIGHT` notices are pending already.
    pub fn send(&self, n: Notice) {
        let failures = crate::telemetry::failures::dependency("backchannel-logout", &n.client_id);
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            self.metrics.logout_notice(&n.client_id, "back", "dropped");
            failures.failed(
                "back-channel logout dropped: too many notices pending",
                &MAX_IN_FLIGHT,
            );
            return;
        };
        let token = match self.logout_token(&n) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "signing a logout token failed");
                self.metrics.logout_notice(&n.client_id, "back", "failed");
                return;
            }
        };
        let http = self.http.clone();
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let result = deliver(&http, &n.uri, &token).await;
            let label = match &result {
                Ok(()) => "delivered",
                Err(Failure::Refused(_)) => "refused",
                Err(Failure::Unreachable(_)) => "failed",
            };
            metrics.logout_notice(&n.client_id, "back", label);
            match result {
                Ok(()) => {
                    tracing::debug!(client = %n.client_id, "back-channel logout delivered")
                }
                Err(Failure::Refused(why)) => {
                    failures.failed("back-channel logout refused by the app", &why)
                }
                Err(Failure::Unreachable(why)) => failures.failed(
                    &format!("back-channel logout failed after {ATTEMPTS} tries"),
                    &why,
                ),
            }
        });
    }
}

enum Failure {
    /// A 4xx: the RP refused this token (retrying the same token would not help).
    Refused(String),
    /// Every try met a network error or a 5xx.
    Unreachable(String),
}

async fn deliver(
    http: &openidconnect::reqwest::Client,
    uri: &str,
    token: &str,
) -> Result<(), Failure> {
    let mut pause = first_pause();
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        if attempt > 1 {
            tokio::time::sleep(pause).await;
            pause *= 2;
        }
        let sent = http
            .post(uri)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cache-control", "no-cache, no-store")
            .body(format!("logout_token={token}"))
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) if r.status().is_client_error() => {
                return Err(Failure::Refused(format!("HTTP {}", r.status().as_u16())))
            }
            Ok(r) => last = format!("HTTP {}", r.status().as_u16()),
            Err(e) => last = e.to_string(),
        }
    }
    Err(Failure::Unreachable(last))
}
