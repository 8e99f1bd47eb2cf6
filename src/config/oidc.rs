//! Compiling the OpenID Connect provider (`oidcProvider`) and its clients (`type: oidc`
//! apps): keys loaded, URLs checked, every setting resolved to its default.

use std::collections::HashMap;
use std::time::Duration;

use serde_yaml_ng::Value;

use super::compile::{check_attr_ref, unknown_ref, Ctx};
use super::decode::{closest, decode};
use super::model::{ClientRateLimitConfig, IntrospectionConfig, OidcAppConfig, OidcProviderConfig};
use super::source::ConfigPath;
use crate::claims::oidc::RESERVED;
use crate::claims::AttrRef;
use crate::connectors::{Connector, Connectors};
use crate::extensions::HookKind;
use crate::provider::keys::{SigningAlg, SigningKey};
use crate::provider::limits::RateLimit;
use crate::provider::{
    AccessTokenFormat, AccessTokenSettings, Client, ClientAuth, ClientHooks, Endpoints, GrantTypes,
    Introspects, Provider, RefreshSettings,
};
use crate::secrets::SecretString;

const GRANTS: [&str; 4] = [
    "authorization_code",
    "refresh_token",
    "client_credentials",
    "password",
];

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host == "127.0.0.1" || host == "[::1]" || host.ends_with(".localhost")
}

/// A redirect URI a client may register: absolute, no fragment; `http` only on loopback
/// (RFC 9700 2.1 / RFC 8252 7.3); private-use schemes (`com.example.app:/cb`) for native apps.
pub(super) fn check_redirect(uri: &str, path: &ConfigPath, ctx: &mut Ctx<'_>) -> bool {
    let problem = match url::Url::parse(uri) {
        Err(e) => Some(format!("`{uri}` is not an absolute URL: {e}")),
        Ok(u) if u.fragment().is_some() => Some(format!("`{uri}` must not have a fragment")),
        Ok(u) if u.scheme() == "http" && !u.host_str().is_some_and(is_loopback) => Some(format!(
            "`{uri}` uses http on a non-loopback host: use https"
        )),
        Ok(_) => None,
    };
    match problem {
        Some(p) => {
            ctx.diags.error(path, p);
            false
        }
        None => true,
    }
}

fn length(v: Option<usize>, path: &ConfigPath, ctx: &mut Ctx<'_>) -> usize {
    let n = v.unwrap_or(28);
    if !(22..=256).contains(&n) {
        ctx.diags.error_hint(
            path,
            format!("length {n} is out of range"),
            "use 22 to 256 characters",
        );
    }
    n.clamp(22, 256)
}

fn seconds(v: Option<u64>, default: u64, path: &ConfigPath, ctx: &mut Ctx<'_>) -> Duration {
    let n = v.unwrap_or(default);
    if n == 0 {
        ctx.diags.error(path, "must be greater than 0");
    }
    Duration::from_secs(n.max(1))
}

/// `introspection.tokensOf`: app names resolved to client IDs (`client_ids`: the client ID
/// of every `type: oidc` app, by name). Unknown names are errors.
fn compile_introspects(
    cfg: Option<&IntrospectionConfig>,
    p: &ConfigPath,
    client_ids: &HashMap<String, String>,
    ctx: &mut Ctx<'_>,
) -> Introspects {
    let Some(cfg) = cfg else {
        return Introspects::Own;
    };
    let p = p.key("introspection").key("tokensOf");
    if cfg.tokensOf.iter().any(|n| n == "*") {
        if cfg.tokensOf.len() > 1 {
            ctx.diags.error_hint(
                &p,
                "`*` already means every app",
                "write `tokensOf: [\"*\"]` alone, or list app names",
            );
        }
        return Introspects::All;
    }
    let mut ids = Vec::new();
    for (i, name) in cfg.tokensOf.iter().enumerate() {
        match client_ids.get(name) {
            Some(id) => ids.push(id.clone()),
            None => {
                let mut known: Vec<String> = client_ids.keys().cloned().collect();
                known.sort();
                unknown_ref(ctx, &p.index(i), "OIDC app", name, known);
            }
        }
    }
    Introspects::Clients(ids)
}

fn compile_client(
    cfg: OidcAppConfig,
    p: &ConfigPath,
    connectors: &Connectors,
    client_ids: &HashMap<String, String>,
    key_algs: &[Option<SigningAlg>],
    ctx: &mut Ctx<'_>,
) -> Option<Client> {
    let errors_before = ctx.diags.items.len();
    if cfg.clientID.trim().is_empty() {
        ctx.diags
            .error(&p.key("clientID"), "clientID must not be empty");
    }
    let (auth, auth_method) = super::client_auth::compile(&cfg, client_auth(&cfg, p, ctx), p, ctx);
    let token_exchange = super::client_auth::token_exchange(&cfg, p, ctx);
    let grants = grant_types(&cfg, p, ctx);
    let mut idps = client_idps(&cfg, p, ctx);
    let hooks = client_hooks(&cfg, p, ctx);
    if idps.is_empty() && hooks.authenticate.is_some() {
        // The Authenticate hook picks the IdP: any connector that can log users in (the
        // reference product's configurations name none).
        idps = connectors.login_capable();
    }
    check_sign_in(&grants, &idps, &hooks, connectors, p, ctx);
    check_uris(&cfg, &grants, p, ctx);
    check_custom_scopes(&cfg.scopes, p, ctx);
    let mapping = claims_mapping(&cfg, p, ctx);
    let access_token = access_token_settings(&cfg, p, ctx);
    let refresh = refresh_settings(&cfg, &grants, p, ctx);
    let id_token_lifetime = seconds(
        cfg.idToken.as_ref().and_then(|i| i.lifetimeSeconds),
        3600,
        &p.key("idToken").key("lifetimeSeconds"),
        ctx,
    );
    let (subject_attribute, pairwise) = subject_settings(&cfg, p, ctx);
    let attr_providers =
        super::compile::compile_attr_providers(&cfg.attrProviders, p, connectors, ctx);
    let introspects = compile_introspects(cfg.introspection.as_ref(), p, client_ids, ctx);
    let rate_limit = rate_limit(cfg.rateLimit.as_ref(), &grants, p, ctx);
    let consent = consent_policy(cfg.consent.as_deref(), p, ctx);
    let backchannel_logout = logout_uri(
        cfg.backchannelLogoutURI.as_deref(),
        cfg.backchannelLogoutSessionRequired,
        ("backchannelLogoutURI", "backchannelLogoutSessionRequired"),
        p,
        ctx,
    );
    let frontchannel_logout = logout_uri(
        cfg.frontchannelLogoutURI.as_deref(),
        cfg.frontchannelLogoutSessionRequired,
        ("frontchannelLogoutURI", "frontchannelLogoutSessionRequired"),
        p,
        ctx,
    );
    let compat = compatibility(&cfg, key_algs, p, ctx);
    if ctx.diags.items.len() > errors_before {
        return None;
    }
    Some(Client {
        app: cfg.name,
        id: cfg.clientID,
        auth,
        auth_method,
        redirect_uris: cfg.redirectURLs,
        logout_redirect_uris: cfg.logoutRedirectURLs,
        grants,
        custom_scopes: cfg.scopes,
        idps,
        claims_mapping: mapping,
        access_token,
        refresh,
        id_token_lifetime,
        subject_attribute,
        pairwise,
        attr_providers: attr_providers.unwrap_or_default(),
        hooks,
        introspects,
        rate_limit,
        backchannel_logout,
        frontchannel_logout,
        consent,
        strict_scopes: compat.strict_scopes,
        token_query_parameters: compat.token_query_parameters,
        id_token_key: compat.id_token_key,
        access_token_key: compat.access_token_key,
        require_pkce: compat.require_pkce,
        code_lifetime: compat.code_lifetime,
        require_par: cfg.requirePushedAuthorizationRequests,
        token_exchange,
    })
}

/// `consent`: whether users allow the app's scopes on a consent page.
fn consent_policy(
    value: Option<&str>,
    p: &ConfigPath,
    ctx: &mut Ctx<'_>,
) -> crate::provider::consent::ConsentPolicy {
    use crate::provider::consent::ConsentPolicy;
    match value.unwrap_or("trusted") {
        "trusted" => ConsentPolicy::Trusted,
        "required" => ConsentPolicy::Required,
        other => {
            ctx.diags.error_hint(
                &p.key("consent"),
                format!("unknown consent setting `{other}`"),
                "use trusted or required",
            );
            ConsentPolicy::Trusted
        }
    }
}

/// The settings that fit a client's expectations (issue 18): scopes, token request form,
/// signing algorithms, PKCE and code lifetime.
struct Compatibility {
    strict_scopes: bool,
    token_query_parameters: bool,
    id_token_key: usize,
    access_token_key: usize,
    require_pkce: bool,
    code_lifetime: Duration,
}

/// Longest `authorizationCodeLifetimeSeconds`: a code is a bearer secret in a URL.
const MAX_CODE_LIFETIME: u64 = 600;

fn compatibility(
    cfg: &OidcAppConfig,
    key_algs: &[Option<SigningAlg>],
    p: &ConfigPath,
    ctx: &mut Ctx<'_>,
) -> Compatibility {
    let token_query_parameters = cfg
        .tokenEndpoint
        .as_ref()
        .is_some_and(|t| t.acceptQueryParameters);
    if token_query_parameters && cfg.public {
        ctx.diags.error_hint(
            &p.key("tokenEndpoint").key("acceptQueryParameters"),
            "query parameters are accepted only from a client that authenticates with HTTP Basic, and a public client has no secret",
            "remove it, or give the client a clientSecret",
        );
    }
    let lifetime = cfg.authorizationCodeLifetimeSeconds.unwrap_or(60);
    if !(1..=MAX_CODE_LIFETIME).contains(&lifetime) {
        ctx.diags.error_hint(
            &p.key("authorizationCodeLifetimeSeconds"),
            format!("{lifetime} is out of range"),
            format!("use 1 to {MAX_CODE_LIFETIME} seconds"),
        );
    }
    Compatibility {
        strict_scopes: cfg.strictScopes,
        token_query_parameters,
        id_token_key: signing_key_index(
            cfg.idTokenSignedResponseAlg.as_deref(),
            key_algs,
            &p.key("idTokenSignedResponseAlg"),
            ctx,
        ),
        access_token_key: signing_key_index(
            cfg.accessTokenSignedResponseAlg.as_deref(),
            key_algs,
            &p.key("accessTokenSignedResponseAlg"),
            ctx,
        ),
        require_pkce: cfg.requirePKCE,
        code_lifetime: Duration::from_secs(lifetime.clamp(1, MAX_CODE_LIFETIME)),
    }
}

/// The first configured signing key of algorithm `alg` (`None`: the first key). `key_algs`:
/// the algorithm of each configured key (`None` where it is not one Tessera signs with,
/// already reported).
fn signing_key_index(
    alg: Option<&str>,
    key_algs: &[Option<SigningAlg>],
    p: &ConfigPath,
    ctx: &mut Ctx<'_>,
) -> usize {
    let Some(name) = alg else { return 0 };
    let Some(wanted) = SigningAlg::parse(name) else {
        ctx.diags.error_hint(
            p,
            format!("unsupported algorithm `{name}`"),
            "use ES256, RS256 or EdDSA",
        );
        return 0;
    };
    match key_algs.iter().position(|a| *a == Some(wanted)) {
        Some(i) => i,
        None => {
            let mut have: Vec<&str> = Vec::new();
            for a in key_algs.iter().flatten() {
                if !have.contains(&a.name()) {
                    have.push(a.name());
                }
            }
            ctx.diags.error_hint(
                p,
                format!("no signing key of the provider has algorithm {name}"),
                format!(
                    "add a {name} key to oidcProvider.signingKeys (configured: {})",
                    if have.is_empty() {
                        "none".to_string()
                    } else {
                        have.join(", ")
                    }
                ),
            );
            0
        }
    }
}

/// `backchannelLogoutURI` / `frontchannelLogoutURI` and their `…SessionRequired` (`keys`).
fn logout_uri(
    uri: Option<&str>,
    session_required: bool,
    keys: (&str, &str),
    p: &ConfigPath,
    ctx: &mut Ctx<'_>,
) -> Option<crate::provider::backchannel::Registration> {
    let channel = if keys.0.starts_with("back") {
        "back-channel"
    } else {
        "front-channel"
    };
    let Some(uri) = uri else {
        if session_required {
            ctx.diags.error_hint(
                &p.key(keys.1),
                format!("the session is required for {channel} logout, which is not configured"),
                format!("set {}, or remove this", keys.0),
            );
        }
        return None;
    };
    let path = p.key(keys.0);
    if !(uri.starts_with("https://") || uri.starts_with("http://")) {
        ctx.diags
            .error(&path, format!("`{uri}` must be an http or https URL"));
        return None;
    }
    check_redirect(uri, &path, ctx).then(|| crate::provider::backchannel::Registration {
        uri: uri.to_string(),
        session_required,
    })
}

/// `clientSecret` / `public`.
fn client_auth(cfg: &OidcAppConfig, p: &ConfigPath, ctx: &mut Ctx<'_>) -> ClientAuth {
    match (&cfg.clientSecret, cfg.public) {
        (Some(_), true) => {
            ctx.diags.error(
                &p.key("public"),
                "a public client has no clientSecret: remove one of them",
            );
            ClientAuth::Public
        }
        (Some(s), false) => {
            if s.len() < 16 {
                ctx.diags.error_hint(
                    &p.key("clientSecret"),
                    "the client secret is too short",
                    "use at least 16 random characters",
                );
            }
            ClientAuth::Secret(SecretString::new(s.clone()))
        }
        (None, true) => ClientAuth::Public,
        // `private_key_jwt` (checked in `client_auth`): keys instead of a secret.
        (None, false) if super::client_auth::uses_keys(cfg) => ClientAuth::Public,
        (None, false) => {
            ctx.diags.error_hint(
                p,
                "the client needs a secret",
                "set `clientSecret: <app.secret>`, or `public: true` for a browser or native app",
            );
            ClientAuth::Public
        }
    }
}

/// `grantTypes` (default: authorization_code).
fn grant_types(cfg: &OidcAppConfig, p: &ConfigPath, ctx: &mut Ctx<'_>) -> GrantTypes {
    let mut grants = GrantTypes::default();
    let requested = cfg
        .grantTypes
        .clone()
        .unwrap_or_else(|| vec!["authorization_code".into()]);
    for (i, g) in requested.iter().enumerate() {
        match g.as_str() {
            "authorization_code" => grants.authorization_code = true,
            "refresh_token" => grants.refresh_token = true,
            "client_credentials" => grants.client_credentials = true,
            "password" => grants.password = true,
            other => {
                let hint = match closest(other, &strings(&GRANTS)) {
                    Some(b) => format!("did you mean `{b}`?"),
                    None => format!("use {}", GRANTS.join(", ")),
                };
                ctx.diags.error_hint(
                    &p.key("grantTypes").index(i),
                    format!("unknown grant type `{other}`"),
                    hint,
                );
            }
        }
    }
    if cfg.public && grants.client_credentials {
        ctx.diags.error(
            &p.key("grantTypes"),
            "a public client cannot use client_credentials",
        );
    }
    grants
}

/// `authentication.idps`, each a known connector.
fn client_idps(cfg: &OidcAppConfig, p: &ConfigPath, ctx: &mut Ctx<'_>) -> Vec<String> {
    let idps = cfg
        .authentication
        .as_ref()
        .map(|a| a.idps.clone())
        .unwrap_or_default();
    for (i, idp) in idps.iter().enumerate() {
        if !ctx.connectors.contains(idp) {
            let known = ctx.connectors.iter().cloned().collect();
            unknown_ref(
                ctx,
                &p.key("authentication").key("idps").index(i),
                "IdP",
                idp,
                known,
            );
        }
    }
    idps
}

/// The extension hooks of the app.
fn client_hooks(cfg: &OidcAppConfig, p: &ConfigPath, ctx: &mut Ctx<'_>) -> ClientHooks {
    let authn = cfg.authentication.as_ref();
    let ap = p.key("authentication");
    ClientHooks {
        is_authenticated: client_hook(
            authn.and_then(|a| a.isAuthenticatedSE.as_ref()),
            HookKind::IsAuthenticated,
            &ap.key("isAuthenticatedSE"),
            ctx,
        ),
        authenticate: client_hook(
            authn.and_then(|a| a.authenticateSE.as_ref()),
            HookKind::Authenticate,
            &ap.key("authenticateSE"),
            ctx,
        ),
        backchannel: client_hook(
            authn
                .and_then(|a| a.backchannel.as_ref())
                .and_then(|b| b.authenticateSE.as_ref()),
            HookKind::BackchannelAuthenticate,
            &ap.key("backchannel").key("authenticateSE"),
            ctx,
        ),
        id_token_claims: client_hook(
            cfg.buildIDTokenClaimsSE.as_ref(),
            HookKind::BuildIdTokenClaims,
            &p.key("buildIDTokenClaimsSE"),
            ctx,
        ),
        access_token_claims: client_hook(
            cfg.buildAccessTokenClaimsSE.as_ref(),
            HookKind::BuildAccessTokenClaims,
            &p.key("buildAccessTokenClaimsSE"),
            ctx,
        ),
        load_attributes: client_hook(
            cfg.loadAttrsSE.as_ref(),
            HookKind::LoadAttributes,
            &p.key("loadAttrsSE"),
            ctx,
        ),
        is_authorized: client_hook(
            cfg.authorization
                .as_ref()
                .and_then(|a| a.isAuthorizedSE.as_ref()),
            HookKind::IsAuthorized,
            &p.key("authorization").key("isAuthorizedSE"),
            ctx,
        ),
        keep_attributes: false,
    }
}

/// Grants with a user need a way for users to sign in (a password grant: a `local`
/// connector, or a backchannel extension).
fn check_sign_in(
    grants: &GrantTypes,
    idps: &[String],
    hooks: &ClientHooks,
    connectors: &Connectors,
    p: &ConfigPath,
    ctx: &mut Ctx<'_>,
) {
    let extension_password = hooks.backchannel.is_some();
    if (grants.authorization_code || (grants.password && !extension_password)) && idps.is_empty() {
        ctx.diags.error_hint(
            &p.key("authentication"),
            "say how users of this app sign in",
            "add `authentication: { idps: [<connector>] }`",
        );
    }
    let has_password_connector = idps.iter().any(|i| {
        matches!(
            connectors.get(i).map(|c| c.as_ref()),
            Some(Connector::Local(_) | Connector::Ldap(_))
        )
    });
    if grants.password && !extension_password && !has_password_connector {
        ctx.diags.error_hint(
            &p.key("grantTypes"),
            "the password grant needs a password connector (`local` or `ldap`) among authentication.idps",
            "add one, add `authentication.backchannel.authenticateSE`, or remove `password`",
        );
    }
}

/// `redirectURLs` and `logoutRedirectURLs`.
fn check_uris(cfg: &OidcAppConfig, grants: &GrantTypes, p: &ConfigPath, ctx: &mut Ctx<'_>) {
    if grants.authorization_code && cfg.redirectURLs.is_empty() {
        ctx.diags.error(
            &p.key("redirectURLs"),
            "the authorization code flow needs at least one redirect URL",
        );
    }
    for (i, u) in cfg.redirectURLs.iter().enumerate() {
        check_redirect(u, &p.key("redirectURLs").index(i), ctx);
    }
    for (i, u) in cfg.logoutRedirectURLs.iter().enumerate() {
        check_redirect(u, &p.key("logoutRedirectURLs").index(i), ctx);
    }
}

/// `scopes`: custom scopes only, each a single token.
fn check_custom_scopes(scopes: &[String], p: &ConfigPath, ctx: &mut Ctx<'_>) {
    const STANDARD: [&str; 6] = [
        "openid",
        "profile",
        "email",
        "address",
        "phone",
        "offline_access",
    ];
    for (i, s) in scopes.iter().enumerate() {
        if s.is_empty()
            || s.contains(' ')
            || s.contains('"')
            || s.contains('\\')
            || STANDARD.contains(&s.as_str())
        {
            ctx.diags.error(
                &p.key("scopes").index(i),
                format!("`{s}` cannot be a custom scope"),
            );
        }
    }
}

/// `claimsMapping`: claim name to attribute, never a claim the provider sets.
fn claims_mapping(
    cfg: &OidcAppConfig,
    p: &ConfigPath,
    ctx: &mut Ctx<'_>,
) -> Vec<(String, AttrRef)> {
    let mut mapping = Vec::new();
    for (claim, attr) in &cfg.claimsMapping {
        let cp = p.key("claimsMapping").key(claim);
        if RESERVED.contains(&claim.as_str()) {
            ctx.diags.error(
                &cp,
                format!("claim `{claim}` is set by the provider and cannot be mapped"),
            );
            continue;
        }
        match AttrRef::parse(attr) {
            Ok(a) => {
                check_attr_ref(&a, &cp, ctx);
                mapping.push((claim.clone(), a));
            }
            Err(e) => ctx.diags.error(&cp, e),
        }
    }
    mapping
}

/// `accessToken`: format, length, lifetime, audiences.
fn access_token_settings(
    cfg: &OidcAppConfig,
    p: &ConfigPath,
    ctx: &mut Ctx<'_>,
) -> AccessTokenSettings {
    let at = cfg.accessToken.as_ref();
    let atp = p.key("accessToken");
    let format = match at.and_then(|a| a.kind.as_deref()).unwrap_or("jwt") {
        "jwt" => AccessTokenFormat::Jwt,
        "opaque" => AccessTokenFormat::Opaque,
        other => {
            ctx.diags.error_hint(
                &atp.key("type"),
                format!("unknown access token type `{other}`"),
                "use jwt or opaque",
            );
            AccessTokenFormat::Jwt
        }
    };
    let allowed_audiences = at.map(|a| a.allowedAudiences.clone()).unwrap_or_default();
    for (i, a) in allowed_audiences.iter().enumerate() {
        if url::Url::parse(a).is_err() {
            ctx.diags.error(
                &atp.key("allowedAudiences").index(i),
                format!("audience `{a}` must be an absolute URI (RFC 8707)"),
            );
        }
    }
    AccessTokenSettings {
        format,
        length: length(at.and_then(|a| a.length), &atp.key("length"), ctx),
        lifetime: seconds(
            at.and_then(|a| a.lifetimeSeconds),
            3600,
            &atp.key("lifetimeSeconds"),
            ctx,
        ),
        allowed_audiences,
    }
}

/// `refreshToken`.
fn refresh_settings(
    cfg: &OidcAppConfig,
    grants: &GrantTypes,
    p: &ConfigPath,
    ctx: &mut Ctx<'_>,
) -> RefreshSettings {
    let rt = cfg.refreshToken.as_ref();
    let rtp = p.key("refreshToken");
    let refresh = RefreshSettings {
        allow_offline_access: rt.is_some_and(|r| r.allowOfflineAccess),
        length: length(rt.and_then(|r| r.length), &rtp.key("length"), ctx),
        lifetime: seconds(
            rt.and_then(|r| r.lifetimeSeconds),
            2_592_000,
            &rtp.key("lifetimeSeconds"),
            ctx,
        ),
        reuse_grace: Duration::from_secs(rt.and_then(|r| r.reuseGraceSeconds).unwrap_or(10)),
        survives_logout: rt.is_some_and(|r| r.survivesLogout),
    };
    if refresh.survives_logout && !refresh.allow_offline_access {
        ctx.diags.error_hint(
            &rtp.key("survivesLogout"),
            "refresh tokens may survive logout but none are issued",
            "set refreshToken.allowOfflineAccess: true, or remove survivesLogout",
        );
    }
    if refresh.allow_offline_access && !grants.refresh_token {
        ctx.diags.error_hint(
            &rtp.key("allowOfflineAccess"),
            "refresh tokens are allowed but the refresh_token grant is not",
            "add refresh_token to grantTypes",
        );
    }
    refresh
}

/// `subject`: the attribute `sub` comes from, and whether it is pairwise.
fn subject_settings(
    cfg: &OidcAppConfig,
    p: &ConfigPath,
    ctx: &mut Ctx<'_>,
) -> (Option<AttrRef>, bool) {
    let sp = p.key("subject");
    let attribute = match cfg.subject.as_ref().and_then(|s| s.attribute.as_deref()) {
        None => None,
        Some(a) => match AttrRef::parse(a) {
            Ok(r) => {
                check_attr_ref(&r, &sp.key("attribute"), ctx);
                Some(r)
            }
            Err(e) => {
                ctx.diags.error(&sp.key("attribute"), e);
                None
            }
        },
    };
    let pairwise = match cfg
        .subject
        .as_ref()
        .and_then(|s| s.kind.as_deref())
        .unwrap_or("public")
    {
        "public" => false,
        "pairwise" => true,
        other => {
            ctx.diags.error_hint(
                &sp.key("type"),
                format!("unknown subject type `{other}`"),
                "use public or pairwise",
            );
            false
        }
    };
    (attribute, pairwise)
}

/// Largest `rateLimit.requestsPerSecond` / `burst`.
const MAX_RATE: u32 = 1_000_000;

/// `rateLimit`: a token bucket for the grants a client calls at machine speed.
fn rate_limit(
    cfg: Option<&ClientRateLimitConfig>,
    grants: &GrantTypes,
    p: &ConfigPath,
    ctx: &mut Ctx<'_>,
) -> Option<RateLimit> {
    let cfg = cfg?;
    let rp = p.key("rateLimit");
    let burst = cfg.burst.unwrap_or(cfg.requestsPerSecond);
    let given = [
        ("requestsPerSecond", Some(cfg.requestsPerSecond)),
        ("burst", cfg.burst),
    ];
    for (key, n) in given.into_iter().filter_map(|(k, n)| Some((k, n?))) {
        if !(1..=MAX_RATE).contains(&n) {
            ctx.diags.error_hint(
                &rp.key(key),
                format!("{n} is out of range"),
                "use 1 to 1000000",
            );
        }
    }
    if !grants.client_credentials && !grants.password {
        ctx.diags.error_hint(
            &rp,
            "rateLimit applies to client_credentials and password requests, which this app does not use",
            "remove it, or add one of these grant types",
        );
    }
    Some(RateLimit {
        per_second: cfg.requestsPerSecond.clamp(1, MAX_RATE),
        burst: burst.clamp(1, MAX_RATE),
    })
}

/// A hook position of an OIDC app (errors reported; the app then fails to compile).
fn client_hook(
    cfg: Option<&crate::config::model::HookConfig>,
    kind: HookKind,
    p: &ConfigPath,
    ctx: &mut Ctx<'_>,
) -> Option<crate::extensions::Hook> {
    if cfg.is_some_and(|c| c.cacheSeconds.is_some()) {
        // The cache is keyed by a proxy policy; an OIDC app's hooks run once per login or
        // token anyway.
        ctx.diags.error_hint(
            &p.key("cacheSeconds"),
            "cacheSeconds applies to hooks of proxy apps, not of OIDC apps",
            "leave it out",
        );
        return None;
    }
    super::compile::hook(cfg, kind, p, ctx).ok().flatten()
}

/// `tokenStateMiB` in bytes (default: half the memory store's budget). On the memory store
/// it must leave room for sessions and login flows: at most three quarters of its budget.
fn token_state_bytes(
    cfg: &OidcProviderConfig,
    path: &ConfigPath,
    memory_store_bytes: usize,
    ctx: &mut Ctx<'_>,
) -> usize {
    const MIB: usize = 1024 * 1024;
    let Some(mib) = cfg.tokenStateMiB else {
        return memory_store_bytes / 2;
    };
    let p = path.key("tokenStateMiB");
    let on_memory = cfg.cache.as_deref().is_none_or(|c| c == "default");
    let bytes = usize::try_from(mib)
        .unwrap_or(usize::MAX)
        .saturating_mul(MIB);
    if mib == 0 {
        ctx.diags.error(&p, "must be greater than 0");
    } else if on_memory && bytes > memory_store_bytes / 4 * 3 {
        ctx.diags.error_hint(
            &p,
            format!(
                "{mib} MiB of tokens would leave too little of the memory store ({} MiB) to sessions and login flows",
                memory_store_bytes / MIB
            ),
            "use at most three quarters of session.memoryStore.maxMiB, or raise it",
        );
    }
    bytes
}

/// `introspection.usernameAttribute`: an attribute name, looked up under the IdP the user
/// signed in with (`<idp>.<name>`), so one setting serves every connector.
fn username_attribute(
    cfg: &OidcProviderConfig,
    path: &ConfigPath,
    ctx: &mut Ctx<'_>,
) -> Option<String> {
    let name = cfg.introspection.as_ref()?.usernameAttribute.clone()?;
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-:".contains(c));
    if !valid {
        ctx.diags.error_hint(
            &path.key("introspection").key("usernameAttribute"),
            format!("`{name}` is not an attribute name"),
            "name the attribute without its connector, e.g. `username` or `mail`",
        );
    }
    Some(name)
}

/// Endpoint `path` under the issuer's base path.
fn under(base: &str, path: Option<&str>, default: &str) -> String {
    let p = path.unwrap_or(default);
    let p = if p.starts_with('/') {
        p.to_string()
    } else {
        format!("/{p}")
    };
    format!("{base}{p}")
}

pub(super) fn compile_provider(
    section: Option<&Value>,
    apps: Vec<(ConfigPath, OidcAppConfig)>,
    connectors: &Connectors,
    memory_store_bytes: usize,
    metrics: std::sync::Arc<crate::telemetry::metrics::Metrics>,
    ctx: &mut Ctx<'_>,
) -> Option<Provider> {
    let path = ConfigPath::root().key("oidcProvider");
    let Some(section) = section else {
        for (p, _) in &apps {
            ctx.diags.error_hint(
                &p.key("type"),
                "`type: oidc` apps need the built-in provider",
                "add an `oidcProvider:` section with issuer and signingKeys",
            );
        }
        return None;
    };
    let cfg: OidcProviderConfig = decode(section, &path, ctx.diags)?;
    let errors_before = ctx.diags.items.len();
    let issuer = cfg.issuer.trim_end_matches('/').to_string();
    let base = match url::Url::parse(&issuer) {
        Ok(u) if u.query().is_some() || u.fragment().is_some() => {
            ctx.diags.error(
                &path.key("issuer"),
                "the issuer must not have a query or fragment",
            );
            String::new()
        }
        Ok(u)
            if u.scheme() == "https"
                || (u.scheme() == "http" && u.host_str().is_some_and(is_loopback)) =>
        {
            u.path().trim_end_matches('/').to_string()
        }
        Ok(_) => {
            ctx.diags.error_hint(
                &path.key("issuer"),
                format!("issuer `{issuer}` must use https"),
                "http is accepted only for localhost (development)",
            );
            String::new()
        }
        Err(e) => {
            ctx.diags.error(
                &path.key("issuer"),
                format!("`{issuer}` is not a valid URL: {e}"),
            );
            String::new()
        }
    };
    let e = cfg.endpoints.as_ref();
    let authorization = under(
        &base,
        e.and_then(|e| e.authorization.as_deref()),
        "/oauth2/authorize",
    );
    let endpoints = Endpoints {
        discovery: format!("{base}/.well-known/openid-configuration"),
        oauth_metadata: format!("/.well-known/oauth-authorization-server{base}"),
        authorization_resume: format!("{authorization}/resume"),
        consent: format!("{authorization}/consent"),
        authorization,
        token: under(&base, e.and_then(|e| e.token.as_deref()), "/oauth2/token"),
        userinfo: under(
            &base,
            e.and_then(|e| e.userinfo.as_deref()),
            "/oauth2/userinfo",
        ),
        jwks: under(&base, e.and_then(|e| e.jwks.as_deref()), "/oauth2/jwks"),
        introspection: under(
            &base,
            e.and_then(|e| e.introspection.as_deref()),
            "/oauth2/introspect",
        ),
        revocation: under(
            &base,
            e.and_then(|e| e.revocation.as_deref()),
            "/oauth2/revoke",
        ),
        end_session: under(
            &base,
            e.and_then(|e| e.endSession.as_deref()),
            "/oauth2/logout",
        ),
        connected_apps: under(
            &base,
            e.and_then(|e| e.connectedApps.as_deref()),
            "/connected-apps",
        ),
        par: under(
            &base,
            e.and_then(|e| e.pushedAuthorizationRequest.as_deref()),
            "/oauth2/par",
        ),
    };
    if cfg.signingKeys.is_empty() {
        ctx.diags.error_hint(
            &path.key("signingKeys"),
            "the provider needs a signing key",
            "make one with `tessera keys generate --alg ES256 --out keys/es256.pem`",
        );
    }
    let mut keys = Vec::new();
    let key_algs: Vec<Option<SigningAlg>> = cfg
        .signingKeys
        .iter()
        .map(|k| SigningAlg::parse(&k.alg))
        .collect();
    for (i, k) in cfg.signingKeys.iter().enumerate() {
        let kp = path.key("signingKeys").index(i);
        let Some(alg) = SigningAlg::parse(&k.alg) else {
            ctx.diags.error_hint(
                &kp.key("alg"),
                format!("unsupported algorithm `{}`", k.alg),
                "use ES256, RS256 or EdDSA",
            );
            continue;
        };
        match SigningKey::from_file(&ctx.file(&k.file), alg) {
            Ok(key) => keys.push(key),
            Err(err) => ctx.diags.error(&kp.key("file"), err),
        }
    }
    let state_budget = token_state_bytes(&cfg, &path, memory_store_bytes, ctx);
    let par_settings = super::client_auth::par_settings(
        cfg.pushedAuthorizationRequests.as_ref(),
        &path.key("pushedAuthorizationRequests"),
        ctx,
    );
    // `None`: the reference was wrong and is already reported.
    let store = super::compile::store_ref(cfg.cache.as_deref(), &path.key("cache"), ctx);
    let client_ids: HashMap<String, String> = apps
        .iter()
        .map(|(_, a)| (a.name.clone(), a.clientID.clone()))
        .collect();
    let mut clients = HashMap::new();
    for (p, app) in apps {
        let id = app.clientID.clone();
        if let Some(client) = compile_client(app, &p, connectors, &client_ids, &key_algs, ctx) {
            if clients.contains_key(&id) {
                ctx.diags.error(
                    &p.key("clientID"),
                    format!("clientID `{id}` is used by another app"),
                );
                continue;
            }
            clients.insert(id, client);
        }
    }
    let userinfo_se = client_hook(
        cfg.buildUserInfoClaimsSE.as_ref(),
        HookKind::BuildUserInfoClaims,
        &path.key("buildUserInfoClaimsSE"),
        ctx,
    );
    let username_attribute = username_attribute(&cfg, &path, ctx);
    let pairwise_salt = cfg.pairwiseSalt.map(SecretString::new);
    if userinfo_se.is_some() {
        for c in clients.values_mut() {
            c.hooks.keep_attributes = true;
        }
    }
    if clients.values().any(|c| c.pairwise) && pairwise_salt.is_none() {
        ctx.diags.error_hint(
            &path,
            "pairwise subjects need a salt",
            "add `pairwiseSalt: <oidc.pairwiseSalt>`",
        );
    }
    if ctx.diags.items.len() > errors_before {
        return None;
    }
    let acr_advertised = crate::provider::acr::Advertised::of(clients.values(), connectors);
    let mut provider = Provider::new(
        issuer,
        endpoints,
        keys,
        clients,
        store?,
        state_budget,
        pairwise_salt,
        metrics,
        acr_advertised,
    );
    provider.userinfo_se = userinfo_se;
    provider.username_attribute = username_attribute;
    provider.par = par_settings;
    Some(provider)
}
