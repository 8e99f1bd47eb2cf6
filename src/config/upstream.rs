//! Compiling upstream identity-provider connectors (`type: oidc` and its presets).

use std::time::Duration;

use super::compile::Ctx;
use super::model::OidcConnectorConfig;
use super::source::ConfigPath;
use crate::connectors::oidc::{OidcConnector, OidcSettings, Preset};
use crate::secrets::SecretString;

fn check_url(s: &str, path: &ConfigPath, ctx: &mut Ctx<'_>, what: &str) -> bool {
    match url::Url::parse(s) {
        Ok(u) if u.scheme() == "https" => true,
        Ok(u)
            if u.scheme() == "http"
                && u.host_str()
                    .is_some_and(|h| h == "localhost" || h == "127.0.0.1" || h == "[::1]") =>
        {
            true
        }
        Ok(_) => {
            ctx.diags.error_hint(
                path,
                format!("{what} `{s}` must use https"),
                "http is accepted only for localhost (development)",
            );
            false
        }
        Err(e) => {
            ctx.diags
                .error(path, format!("{what} `{s}` is not a valid URL: {e}"));
            false
        }
    }
}

pub(super) fn compile_oidc_connector(
    kind: &str,
    cfg: OidcConnectorConfig,
    p: &ConfigPath,
    ctx: &mut Ctx<'_>,
) -> Option<OidcConnector> {
    let before = ctx.diags.items.len();
    let preset = Preset::parse(kind)?;
    // Presets accept the issuer URL as well as the discovery URL.
    let well_known = if cfg.oidcWellKnownURL.contains("/.well-known/") {
        cfg.oidcWellKnownURL.clone()
    } else {
        format!(
            "{}/.well-known/openid-configuration",
            cfg.oidcWellKnownURL.trim_end_matches('/')
        )
    };
    check_url(
        &well_known,
        &p.key("oidcWellKnownURL"),
        ctx,
        "discovery URL",
    );
    check_url(
        &cfg.oauthRedirectURL,
        &p.key("oauthRedirectURL"),
        ctx,
        "redirect URL",
    );
    if let Some(l) = &cfg.oidcLogoutCallbackURL {
        check_url(
            l,
            &p.key("oidcLogoutCallbackURL"),
            ctx,
            "logout callback URL",
        );
    }
    let callback = url::Url::parse(&cfg.oauthRedirectURL)
        .map(|u| u.path().to_string())
        .unwrap_or_default();
    if let Some(b) = &cfg.oidcBackchannelLogoutURL {
        let at = p.key("oidcBackchannelLogoutURL");
        check_url(b, &at, ctx, "back-channel logout URL");
        let path = url::Url::parse(b)
            .map(|u| u.path().to_string())
            .unwrap_or_default();
        if path == "/" || path.starts_with(crate::login::PREFIX) || path == callback {
            ctx.diags.error_hint(
                &at,
                "the back-channel logout endpoint needs its own path",
                "use e.g. https://gateway.example.com/okta/backchannel-logout",
            );
        }
    }
    if callback == "/" || callback.starts_with(crate::login::PREFIX) {
        ctx.diags.error_hint(
            &p.key("oauthRedirectURL"),
            "the callback needs its own path",
            "use e.g. https://gateway.example.com/okta/callback",
        );
    }
    if cfg.oauthClientID.is_empty() {
        ctx.diags
            .error(&p.key("oauthClientID"), "oauthClientID must not be empty");
    }
    let scopes: Vec<String> = cfg
        .scopes
        .as_deref()
        .unwrap_or(preset.default_scopes())
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if !scopes.iter().any(|s| s == "openid") {
        ctx.diags.error_hint(
            &p.key("scopes"),
            "the scopes must include openid",
            "e.g. scopes: openid profile email",
        );
    }
    let auth_post = match cfg
        .clientAuthMethod
        .as_deref()
        .unwrap_or("client_secret_basic")
    {
        "client_secret_basic" => false,
        "client_secret_post" => true,
        other => {
            ctx.diags.error_hint(
                &p.key("clientAuthMethod"),
                format!("unsupported client authentication `{other}`"),
                "use client_secret_basic or client_secret_post",
            );
            false
        }
    };
    let refuse = match cfg.onDiscoveryFailure.as_deref().unwrap_or("refuse") {
        "refuse" => true,
        "degrade" => false,
        other => {
            ctx.diags.error_hint(
                &p.key("onDiscoveryFailure"),
                format!("unknown value `{other}`"),
                "use refuse or degrade",
            );
            true
        }
    };
    let tls_cfg = super::compile::client_tls(cfg.tls.as_deref(), &p.key("tls"), ctx);
    let throttle = super::compile::throttle(cfg.throttle.as_ref(), &p.key("throttle"), ctx);
    if ctx.diags.items.len() > before {
        return None;
    }
    let settings = OidcSettings {
        name: cfg.name,
        preset,
        well_known,
        client_id: cfg.oauthClientID,
        client_secret: SecretString::new(cfg.oauthClientSecret),
        redirect_url: cfg.oauthRedirectURL,
        logout_callback_url: cfg.oidcLogoutCallbackURL,
        backchannel_logout_url: cfg.oidcBackchannelLogoutURL,
        scopes,
        pkce: !cfg.disablePKCE,
        extra_params: cfg.oauthExtraParams.into_iter().collect(),
        auth_post,
        refresh_tokens: cfg.refreshTokens,
        refuse_start_without_idp: refuse,
        discovery_refresh: Duration::from_secs(cfg.discoveryRefreshSeconds.unwrap_or(3600).max(60)),
        timeout: Duration::from_millis(cfg.timeoutMillis.unwrap_or(5000).max(100)),
        tls: tls_cfg?,
        throttle,
    };
    match OidcConnector::new(settings) {
        Ok(c) => Some(c),
        Err(e) => {
            ctx.diags.error(p, e);
            None
        }
    }
}
