//! A proxy app's own logout URL (`logout.upstreamURL`), called by the gateway when the user
//! signs out at that app's logout location, so the app ends its own session too.
//!
//! The call is a GET made in the background once the gateway session has ended (never for
//! a sign-out that was not confirmed), with the browser's cookies for the app — the request's
//! `Cookie` header without the gateway's own cookies — and a 3-second timeout. The user's
//! page never waits for it; a failure is counted (`tessera_logout_notices_total`,
//! `channel="upstream"`) and logged once per interval per app.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;

use crate::telemetry::metrics::Metrics;

const TIMEOUT: Duration = Duration::from_secs(3);

/// What to call after the sign-out: the app, its logout URL, the browser's cookies for it.
#[derive(Debug, Clone)]
pub struct AppLogoutCall {
    pub app: String,
    pub url: String,
    pub cookies: Option<String>,
}

impl AppLogoutCall {
    /// The call for `app` at `url`, keeping the request's cookies except `own` ones.
    pub fn new(app: &str, url: &str, headers: &HeaderMap, own: &[&str]) -> Self {
        let kept: Vec<&str> = headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .map(str::trim)
            .filter(|pair| {
                let name = pair.split('=').next().unwrap_or("").trim();
                !pair.is_empty() && !own.contains(&name)
            })
            .collect();
        Self {
            app: app.to_string(),
            url: url.to_string(),
            cookies: (!kept.is_empty()).then(|| kept.join("; ")),
        }
    }

    /// Calls the URL in the background.
    pub fn spawn(self, metrics: Arc<Metrics>) {
        tokio::spawn(async move {
            let failures = crate::telemetry::failures::dependency("upstream-logout", &self.app);
            let http = client();
            let mut req = http.get(&self.url);
            if let Some(c) = &self.cookies {
                req = req.header("cookie", c);
            }
            match req.send().await {
                Ok(r) if r.status().is_success() || r.status().is_redirection() => {
                    metrics.logout_notice(&self.app, "upstream", "delivered");
                    tracing::debug!(app = %self.app, "the app's own logout was called");
                }
                Ok(r) => {
                    metrics.logout_notice(&self.app, "upstream", "refused");
                    failures.failed(
                        "the app's logout URL answered an error",
                        &format!("HTTP {}", r.status().as_u16()),
                    );
                }
                Err(e) => {
                    metrics.logout_notice(&self.app, "upstream", "failed");
                    failures.failed("the app's logout URL could not be called", &e);
                }
            }
        });
    }
}

/// One client for every call (redirects are not followed: a 3xx counts as done).
fn client() -> openidconnect::reqwest::Client {
    static CLIENT: std::sync::OnceLock<openidconnect::reqwest::Client> = std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            openidconnect::reqwest::ClientBuilder::new()
                .redirect(openidconnect::reqwest::redirect::Policy::none())
                .timeout(TIMEOUT)
                .build()
                .unwrap_or_default()
        })
        .clone()
}
