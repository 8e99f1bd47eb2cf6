//! How an OIDC app (`type: oidc`) authenticates as a client: `tokenEndpointAuthMethod` and,
//! for `private_key_jwt`, its keys (`jwks` inline or `jwksURI`). Checked with the app's
//! `clientSecret` and `public` (`oidc::client_auth`), every mistake at its position.
//! Also `oidcProvider.pushedAuthorizationRequests` (what authenticated clients may push) and
//! a client's `tokenExchange` (RFC 8693), which only authenticated clients may use.

use std::sync::Arc;

use super::compile::Ctx;
use super::decode::closest;
use super::model::{OidcAppConfig, PushedAuthorizationRequestsConfig};
use super::source::ConfigPath;
use crate::connectors::access_tokens::AccessKeys;
use crate::provider::client_auth::{AuthMethod, ClientKeys, RemoteJwks};
use crate::provider::ClientAuth;

/// Members of a JWK that hold private key material (RFC 7518 section 6).
const PRIVATE_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "k"];
/// The shortest secret `client_secret_jwt` accepts: an HMAC key at least as long as the
/// SHA-256 output (RFC 7518 section 3.2).
const MIN_HMAC_SECRET: usize = 32;

/// Does the app authenticate with keys instead of a secret?
pub(super) fn uses_keys(cfg: &OidcAppConfig) -> bool {
    cfg.tokenEndpointAuthMethod.as_deref() == Some(AuthMethod::PrivateKeyJwt.name())
}

/// The client's authentication (`auth`: what `clientSecret`/`public` said) and its one
/// registered method, if `tokenEndpointAuthMethod` is set.
pub(super) fn compile(
    cfg: &OidcAppConfig,
    auth: ClientAuth,
    p: &ConfigPath,
    ctx: &mut Ctx<'_>,
) -> (ClientAuth, Option<AuthMethod>) {
    if cfg.public && cfg.requirePushedAuthorizationRequests {
        ctx.diags.error_hint(
            &p.key("requirePushedAuthorizationRequests"),
            "a public client cannot push authorization requests: only authenticated clients may",
            "remove this, or give the client a way to authenticate",
        );
    }
    let mp = p.key("tokenEndpointAuthMethod");
    let method = match cfg.tokenEndpointAuthMethod.as_deref() {
        None => None,
        Some(name) => match AuthMethod::parse(name) {
            Some(m) => Some(m),
            None => {
                let names: Vec<String> = AuthMethod::ALL
                    .iter()
                    .map(|m| m.name().to_string())
                    .collect();
                let hint = match closest(name, &names) {
                    Some(b) => format!("did you mean `{b}`?"),
                    None => format!("use {}", names.join(", ")),
                };
                ctx.diags.error_hint(
                    &mp,
                    format!("unknown client authentication method `{name}`"),
                    hint,
                );
                return (auth, None);
            }
        },
    };
    if method != Some(AuthMethod::PrivateKeyJwt) {
        for (key, given) in [
            ("jwks", cfg.jwks.is_some()),
            ("jwksURI", cfg.jwksURI.is_some()),
        ] {
            if given {
                ctx.diags.error_hint(
                    &p.key(key),
                    format!("`{key}` is used only by private_key_jwt clients"),
                    "set `tokenEndpointAuthMethod: private_key_jwt`, or remove this",
                );
            }
        }
    }
    match method {
        None => {}
        Some(AuthMethod::None) if !cfg.public => {
            ctx.diags.error_hint(
                &mp,
                "`none` is the method of public clients",
                "set `public: true`, or choose a method that uses the client's secret",
            );
        }
        Some(AuthMethod::None) => {}
        Some(m) if cfg.public => {
            ctx.diags.error_hint(
                &mp,
                format!("a public client cannot use {}", m.name()),
                "use `none`, or remove `public: true`",
            );
        }
        Some(AuthMethod::SecretJwt)
            if cfg
                .clientSecret
                .as_ref()
                .is_some_and(|s| s.len() < MIN_HMAC_SECRET) =>
        {
            ctx.diags.error_hint(
                &p.key("clientSecret"),
                "client_secret_jwt uses the secret as an HMAC key: it is too short",
                format!("use at least {MIN_HMAC_SECRET} random characters"),
            );
        }
        Some(AuthMethod::SecretJwt | AuthMethod::SecretBasic | AuthMethod::SecretPost) => {}
        Some(AuthMethod::PrivateKeyJwt) => {
            if cfg.clientSecret.is_some() {
                ctx.diags.error_hint(
                    &p.key("clientSecret"),
                    "a private_key_jwt client has no clientSecret",
                    "remove it: the client signs with its private key",
                );
            }
            if let Some(keys) = client_keys(cfg, p, ctx) {
                return (ClientAuth::Keys(Arc::new(keys)), method);
            }
        }
    }
    (auth, method)
}

/// `jwks` or `jwksURI`, exactly one.
fn client_keys(cfg: &OidcAppConfig, p: &ConfigPath, ctx: &mut Ctx<'_>) -> Option<ClientKeys> {
    match (&cfg.jwks, &cfg.jwksURI) {
        (Some(_), Some(_)) => {
            ctx.diags.error_hint(
                &p.key("jwksURI"),
                "set jwks or jwksURI, not both",
                "keep the one the client publishes its keys in",
            );
            None
        }
        (None, None) => {
            ctx.diags.error_hint(
                &p.key("tokenEndpointAuthMethod"),
                "a private_key_jwt client needs its public keys",
                "add `jwksURI: https://…` or `jwks: { keys: [...] }`",
            );
            None
        }
        (Some(jwks), None) => inline_keys(jwks, &p.key("jwks"), ctx).map(ClientKeys::Inline),
        (None, Some(uri)) => {
            let up = p.key("jwksURI");
            if !(uri.starts_with("https://") || uri.starts_with("http://")) {
                ctx.diags
                    .error(&up, format!("`{uri}` must be an http or https URL"));
                return None;
            }
            if !super::oidc::check_redirect(uri, &up, ctx) {
                return None;
            }
            match RemoteJwks::new(uri.clone()) {
                Ok(r) => Some(ClientKeys::Remote(r)),
                Err(e) => {
                    ctx.diags.error(&up, e);
                    None
                }
            }
        }
    }
}

/// An inline JWK Set: public signing keys only, at least one usable.
fn inline_keys(jwks: &serde_json::Value, p: &ConfigPath, ctx: &mut Ctx<'_>) -> Option<AccessKeys> {
    let Some(list) = jwks.get("keys").and_then(|k| k.as_array()) else {
        ctx.diags.error_hint(
            p,
            "jwks must be a JWK Set",
            "write `jwks: { keys: [ { kty: EC, crv: P-256, x: …, y: … } ] }`",
        );
        return None;
    };
    let mut ok = true;
    for (i, key) in list.iter().enumerate() {
        if let Some(m) = PRIVATE_MEMBERS.iter().find(|m| key.get(**m).is_some()) {
            ctx.diags.error_hint(
                &p.key("keys").index(i),
                format!("this key holds private key material (`{m}`)"),
                "register the client's public keys only",
            );
            ok = false;
        }
    }
    if !ok {
        return None;
    }
    let keys = AccessKeys::from_jwks(jwks);
    if keys.is_empty() {
        ctx.diags.error_hint(
            p,
            "jwks has no usable signing key",
            "use RSA, EC (P-256, P-384) or Ed25519 public keys, not marked `use: enc`",
        );
        return None;
    }
    Some(keys)
}

/// `oidcProvider.pushedAuthorizationRequests`: each bound in range.
pub(super) fn par_settings(
    cfg: Option<&PushedAuthorizationRequestsConfig>,
    p: &ConfigPath,
    ctx: &mut Ctx<'_>,
) -> crate::provider::par::Settings {
    let mut settings = crate::provider::par::Settings::default();
    let Some(cfg) = cfg else {
        return settings;
    };
    let mut bounded = |v: Option<u64>, key: &str, max: u64, default: u64| {
        let n = v.unwrap_or(default);
        if !(1..=max).contains(&n) {
            ctx.diags.error_hint(
                &p.key(key),
                format!("{n} is out of range"),
                format!("use 1 to {max}"),
            );
        }
        n.clamp(1, max)
    };
    settings.lifetime = std::time::Duration::from_secs(bounded(
        cfg.lifetimeSeconds,
        "lifetimeSeconds",
        600,
        settings.lifetime.as_secs(),
    ));
    settings.per_client_limit = bounded(
        cfg.perClientLimit,
        "perClientLimit",
        100_000,
        settings.per_client_limit,
    );
    settings
}

/// `tokenExchange`: for a client that authenticates, with at least one audience.
pub(super) fn token_exchange(
    cfg: &OidcAppConfig,
    p: &ConfigPath,
    ctx: &mut Ctx<'_>,
) -> Option<Vec<String>> {
    let te = cfg.tokenExchange.as_ref()?;
    let tp = p.key("tokenExchange");
    if cfg.public {
        ctx.diags.error_hint(
            &tp,
            "a public client cannot exchange tokens: only authenticated clients may",
            "remove this, or give the client a way to authenticate",
        );
    }
    if te.audiences.is_empty() {
        ctx.diags.error_hint(
            &tp.key("audiences"),
            "list the audiences this client may ask tokens for",
            "e.g. `audiences: [https://api.example.com]`",
        );
    }
    for (i, a) in te.audiences.iter().enumerate() {
        if a.trim().is_empty() || a.contains(' ') {
            ctx.diags.error(
                &tp.key("audiences").index(i),
                format!("`{a}` cannot be an audience"),
            );
        }
    }
    Some(te.audiences.clone())
}
