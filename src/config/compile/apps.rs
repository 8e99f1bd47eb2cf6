//! `apps`: proxy apps (upstream, routes, policies, rules, identity headers); OIDC apps are
//! collected here and compiled by `config::oidc`.

use crate::claims::Template;
use crate::config::decode::decode;
use crate::config::source::ConfigPath;
use crate::connectors::Connectors;
use crate::edge::names::reserved;
use crate::extensions::HookKind;
use crate::proxy::forward_auth::Settings as ForwardAuthSettings;
use crate::proxy::headers::InjectedHeader;
use crate::proxy::policy::{Authorization, Location, Policy, PolicySet};
use crate::proxy::rules::parse_rule;
use crate::proxy::upstream::Upstream;
use crate::proxy::{AppKind, AppLogout, ProxyApp};
use crate::server::router::{RoutePattern, Router};
use http::HeaderName;
use serde_yaml_ng::Value;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

use super::*;

/// A redirect target in config: an absolute path or an http(s) URL.
pub(super) fn check_target(s: &str, path: &ConfigPath, ctx: &mut Ctx<'_>) -> bool {
    let ok = (s.starts_with('/') && !s.starts_with("//"))
        || url::Url::parse(s)
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
    if !ok {
        ctx.diags.error_hint(
            path,
            format!("`{s}` is not a valid URL"),
            "use an absolute path like /403.html or an https:// URL",
        );
    }
    ok
}

/// Where requests find their app: proxied requests by their own host and path, forward-auth
/// calls by the original request's.
pub(super) struct Routers {
    pub(super) proxy: Router,
    pub(super) forward_auth: Router,
}

pub(super) fn compile_apps(
    v: Option<&Value>,
    connectors: &Connectors,
    ctx: &mut Ctx<'_>,
) -> (Vec<ProxyApp>, Routers, Vec<(ConfigPath, OidcAppConfig)>) {
    let path = ConfigPath::root().key("apps");
    let mut apps = Vec::new();
    let mut oidc_apps = Vec::new();
    let mut routes = Vec::new();
    let mut forward_routes = Vec::new();
    let mut seen = HashSet::new();
    let mut patterns: HashMap<RoutePattern, String> = HashMap::new();
    for (i, item) in list(v, &path, ctx).iter().enumerate() {
        let p = path.index(i);
        let Some((t, rest)) = tagged(item, &p, &APP_TYPES, &[], "app", ctx) else {
            continue;
        };
        if t == "oidc" {
            if let Some(cfg) = decode::<OidcAppConfig>(&rest, &p, ctx.diags) {
                if check_name(&cfg.name, &p.key("name"), &mut seen, "app", ctx) {
                    oidc_apps.push((p, cfg));
                }
            }
            continue;
        }
        let Some(cfg) = decode::<ProxyAppConfig>(&rest, &p, ctx.diags) else {
            continue;
        };
        if !check_name(&cfg.name, &p.key("name"), &mut seen, "app", ctx) {
            continue;
        }
        let mut app_routes = Vec::new();
        if cfg.routePatterns.is_empty() {
            ctx.diags.error_hint(
                &p.key("routePatterns"),
                "an app needs at least one route pattern",
                "e.g. routePatterns: [\"app.example.com/\"] or [\"/legacy\"]",
            );
        }
        for (j, rp) in cfg.routePatterns.iter().enumerate() {
            let rpath = p.key("routePatterns").index(j);
            match RoutePattern::parse(rp) {
                Err(e) => ctx.diags.error(&rpath, e),
                Ok(r) if r.prefix.starts_with(crate::login::PREFIX.trim_end_matches('/')) => {
                    ctx.diags.error(&rpath, "paths under /.tessera/ are reserved for the gateway")
                }
                Ok(r) => match patterns.get(&r) {
                    Some(other) if *other == cfg.name => ctx.diags.error(
                        &rpath,
                        format!("route pattern `{rp}` repeats another pattern of this app"),
                    ),
                    Some(other) => ctx.diags.error_hint(
                        &rpath,
                        format!("route pattern `{rp}` overlaps app `{other}`: both claim the same host and path"),
                        "give each app its own host or path prefix",
                    ),
                    None => {
                        patterns.insert(r.clone(), cfg.name.clone());
                        app_routes.push(if cfg.caseInsensitivePaths {
                            r.case_insensitive()
                        } else {
                            r
                        });
                    }
                },
            }
        }
        let forward_auth = t == "forwardAuth";
        if let Some(app) = compile_proxy_app(cfg, forward_auth, &p, connectors, ctx) {
            let idx = apps.len();
            let table = if forward_auth {
                &mut forward_routes
            } else {
                &mut routes
            };
            table.extend(app_routes.into_iter().map(|r| (r, idx)));
            apps.push(app);
        }
    }
    let routers = Routers {
        proxy: Router::new(routes),
        forward_auth: Router::new(forward_routes),
    };
    (apps, routers, oidc_apps)
}

pub(super) fn compile_proxy_app(
    cfg: ProxyAppConfig,
    forward_auth: bool,
    p: &ConfigPath,
    connectors: &Connectors,
    ctx: &mut Ctx<'_>,
) -> Option<ProxyApp> {
    let kind = if forward_auth {
        compile_forward_auth(&cfg, p, ctx).map(AppKind::ForwardAuth)
    } else {
        compile_upstream(&cfg, p, ctx).map(|u| AppKind::Proxy(Box::new(u)))
    };
    let unauthorized = pages::unauthorized_page(
        cfg.unauthorizedPage.as_ref(),
        &p.key("unauthorizedPage"),
        ctx,
    );
    let mut ok = unauthorized.is_ok();
    let error_page = pages::error_page(cfg.errorPage.as_ref(), &p.key("errorPage"), ctx);
    ok &= error_page.is_ok();
    let handle_unauthorized_se = hook(
        cfg.handleUnauthorizedSE.as_ref(),
        HookKind::HandleUnauthorized,
        &p.key("handleUnauthorizedSE"),
        ctx,
    );
    ok &= handle_unauthorized_se.is_ok();
    let modify_request_se = hook(
        cfg.modifyRequestSE.as_ref(),
        HookKind::ModifyRequest,
        &p.key("modifyRequestSE"),
        ctx,
    );
    ok &= modify_request_se.is_ok();
    let upstream_login = upstream_login::compile_upstream_login(
        cfg.upstreamLoginSE.as_ref(),
        &p.key("upstreamLoginSE"),
        ctx,
    );
    ok &= upstream_login.is_ok();
    let headers = compile_headers(&cfg, p, ctx);
    let policies = compile_policies(&cfg, p, connectors, ctx);
    let logout = compile_logout(&cfg, p, ctx);
    let attr_providers = compile_attr_providers(&cfg.attrProviders, p, connectors, ctx);
    ok &= attr_providers.is_some();
    let load_attrs_se = hook(
        cfg.loadAttrsSE.as_ref(),
        HookKind::LoadAttributes,
        &p.key("loadAttrsSE"),
        ctx,
    );
    ok &= load_attrs_se.is_ok();
    let modify_response_se = hook(
        cfg.modifyResponseSE.as_ref(),
        HookKind::ModifyResponse,
        &p.key("modifyResponseSE"),
        ctx,
    );
    ok &= modify_response_se.is_ok();
    let modify_response_max_body = match cfg.modifyResponseMaxBodyKiB {
        None => 1 << 20,
        Some(k @ 1..=65536) => (k as usize) << 10,
        Some(k) => {
            ctx.diags.error(
                &p.key("modifyResponseMaxBodyKiB"),
                format!("modifyResponseMaxBodyKiB must be 1..=65536, not {k}"),
            );
            ok = false;
            0
        }
    };
    let paths = edge::path_rules(&cfg, p, ctx);
    let upgrades = edge::upgrades(&cfg, p, ctx);
    let (kind, headers, policies, logout) = (kind?, headers?, policies?, logout?);
    let protected = crate::edge::names::ProtectedNames::with_trust_headers(
        headers
            .injected
            .iter()
            .map(|h| h.name.as_str())
            .chain(headers.hook_names.iter().map(HeaderName::as_str)),
    );
    let hook_header_names = headers.hook_names;
    let (paths, upgrades) = (paths?, upgrades?);
    ok.then(|| ProxyApp {
        paths,
        upgrades,
        protected,
        load_attrs_se: load_attrs_se.ok().flatten(),
        modify_response_se: modify_response_se.ok().flatten(),
        modify_response_max_body,
        header_hooks: headers.hooks,
        hook_header_names,
        attr_providers: attr_providers.unwrap_or_default(),
        name: cfg.name,
        kind,
        preserve_host: cfg.preserveHost,
        unauthorized: unauthorized.unwrap_or_default(),
        error_page: error_page.ok().flatten(),
        handle_unauthorized_se: handle_unauthorized_se.ok().flatten(),
        modify_request_se: modify_request_se.ok().flatten(),
        upstream_login: upstream_login.ok().flatten(),
        headers: headers.injected,
        policies: PolicySet::new(policies),
        logout,
    })
}

/// A `forwardAuth` app: no upstream (the ingress forwards), the gateway's URL for sign-in
/// redirects, and trusted proxies to believe the original request from.
fn compile_forward_auth(
    cfg: &ProxyAppConfig,
    p: &ConfigPath,
    ctx: &mut Ctx<'_>,
) -> Option<ForwardAuthSettings> {
    let mut ok = true;
    let upstream_only = [
        ("upstream", cfg.upstream.is_some()),
        ("tls", cfg.tls.is_some()),
        ("timeouts", cfg.timeouts.is_some()),
        ("preserveHost", cfg.preserveHost),
        ("upgrades", cfg.upgrades.is_some()),
        ("logout", cfg.logout.is_some()),
        ("modifyResponseSE", cfg.modifyResponseSE.is_some()),
        ("modifyRequestSE", cfg.modifyRequestSE.is_some()),
        ("upstreamLoginSE", cfg.upstreamLoginSE.is_some()),
    ];
    for (key, set) in upstream_only {
        if set {
            ctx.diags.error_hint(
                &p.key(key),
                format!("a forwardAuth app has no `{key}`: the ingress forwards the request"),
                "remove it (sign-out is the gateway's /.tessera/logout)",
            );
            ok = false;
        }
    }
    if cfg.handleUnauthorizedSE.is_some() {
        // The ingress reads a 2xx answer of the auth endpoint as "allowed": a guest's
        // response could open the app.
        ctx.diags.error_hint(
            &p.key("handleUnauthorizedSE"),
            "a forwardAuth app has no `handleUnauthorizedSE`: the ingress would read a 2xx answer as allowed",
            "use unauthorizedPage: { file: … } or { html: … } (served with 403)",
        );
        ok = false;
    }
    if !ctx.trusted_proxies_set {
        ctx.diags.error_hint(
            p,
            "a forwardAuth app needs `http.trustedProxies`: the original request is believed only from the ingress",
            "list the ingress's addresses, e.g. http: { trustedProxies: [10.0.0.0/8] }",
        );
        ok = false;
    }
    let gateway_url = match cfg.gatewayURL.as_deref() {
        None => {
            ctx.diags.error_hint(
                p,
                "a forwardAuth app needs `gatewayURL`: where browsers reach the gateway to sign in",
                "e.g. gatewayURL: https://auth.example.com",
            );
            None
        }
        Some(u) => match url::Url::parse(u) {
            Ok(url)
                if matches!(url.scheme(), "http" | "https")
                    && url.host().is_some()
                    && url.query().is_none()
                    && url.fragment().is_none() =>
            {
                Some(u.trim_end_matches('/').to_string())
            }
            _ => {
                ctx.diags.error_hint(
                    &p.key("gatewayURL"),
                    format!("`{u}` is not an http(s) URL without query or fragment"),
                    "e.g. gatewayURL: https://auth.example.com",
                );
                None
            }
        },
    };
    let gateway_url = gateway_url?;
    ok.then_some(ForwardAuthSettings { gateway_url })
}

/// `upstream`, `tls` and `timeouts`: the app's upstream client.
fn compile_upstream(cfg: &ProxyAppConfig, p: &ConfigPath, ctx: &mut Ctx<'_>) -> Option<Upstream> {
    let Some(upstream) = cfg.upstream.as_deref() else {
        ctx.diags.error_hint(
            p,
            "missing required key `upstream`",
            "the URL of the protected app, e.g. upstream: http://127.0.0.1:9000",
        );
        return None;
    };
    let upstream_uri = match url::Url::parse(upstream) {
        Ok(u) if !matches!(u.scheme(), "http" | "https") => {
            ctx.diags.error_hint(
                &p.key("upstream"),
                format!("upstream scheme `{}` is not supported", u.scheme()),
                "use http:// or https://",
            );
            None
        }
        Ok(u) if u.host().is_none() => {
            ctx.diags
                .error(&p.key("upstream"), "upstream URL has no host");
            None
        }
        Ok(u) if u.query().is_some() || u.fragment().is_some() => {
            ctx.diags.error(
                &p.key("upstream"),
                "upstream URL must not have a query or fragment",
            );
            None
        }
        Ok(u) => u.as_str().parse::<http::Uri>().ok(),
        Err(e) => {
            ctx.diags.error_hint(
                &p.key("upstream"),
                format!("`{upstream}` is not a valid URL: {e}"),
                "write e.g. http://127.0.0.1:9000",
            );
            None
        }
    };
    let client_tls = client_tls(cfg.tls.as_deref(), &p.key("tls"), ctx);
    let timeouts = cfg.timeouts.as_ref();
    let connect = Duration::from_millis(
        timeouts
            .and_then(|t| t.connectMillis)
            .unwrap_or(5000)
            .max(1),
    );
    let response = Duration::from_millis(
        timeouts
            .and_then(|t| t.responseHeaderMillis)
            .unwrap_or(60000)
            .max(1),
    );
    match (upstream_uri, client_tls) {
        (Some(u), Some(t)) => match Upstream::new(&u, t, connect, response) {
            Ok(up) => Some(up),
            Err(e) => {
                ctx.diags.error(&p.key("upstream"), e);
                None
            }
        },
        _ => None,
    }
}

/// An app's `headers`: identity headers from templates, and CreateHeader hooks.
struct Headers {
    injected: Vec<InjectedHeader>,
    hooks: Vec<crate::extensions::Hook>,
    /// Headers a createHeaderSE hook sets (`name` beside it): protected like identity headers.
    hook_names: Vec<HeaderName>,
}

fn compile_headers(cfg: &ProxyAppConfig, p: &ConfigPath, ctx: &mut Ctx<'_>) -> Option<Headers> {
    let mut ok = true;
    let mut headers = Vec::new();
    let mut header_hooks = Vec::new();
    let mut header_names = HashSet::new();
    let mut hook_header_names: Vec<HeaderName> = Vec::new();
    for (j, h) in cfg.headers.iter().enumerate() {
        let hp = p.key("headers").index(j);
        let (raw, value) = match (&h.name, &h.value, &h.createHeaderSE) {
            (name, None, Some(se)) => {
                if let Some(raw) = name {
                    match HeaderName::from_bytes(raw.as_bytes()) {
                        Ok(n) if !reserved(&n) => hook_header_names.push(n),
                        _ => {
                            ctx.diags.error_hint(
                                &hp.key("name"),
                                format!("`{raw}` cannot be a header a hook sets"),
                                "use letters, digits and `-`; not a header the gateway manages",
                            );
                            ok = false;
                        }
                    }
                }
                match hook(
                    Some(se),
                    HookKind::CreateHeaders,
                    &hp.key("createHeaderSE"),
                    ctx,
                ) {
                    Ok(Some(hk)) => header_hooks.push(hk),
                    _ => ok = false,
                }
                continue;
            }
            (Some(n), Some(v), None) => (n.as_str(), v),
            _ => {
                ctx.diags.error_hint(
                    &hp,
                    "a header entry has either `name` and `value`, or `createHeaderSE` (with an optional `name`)",
                    "e.g. { name: X-User, value: \"{{ okta.email }}\" }",
                );
                ok = false;
                continue;
            }
        };
        let name = match HeaderName::from_bytes(raw.as_bytes()) {
            Ok(n) => n,
            Err(_) => {
                ctx.diags.error_hint(
                    &hp.key("name"),
                    format!("`{raw}` is not a valid header name"),
                    "use letters, digits and `-`",
                );
                ok = false;
                continue;
            }
        };
        if reserved(&name) {
            ctx.diags.error(
                &hp.key("name"),
                format!("`{raw}` is managed by the gateway and cannot be configured"),
            );
            ok = false;
            continue;
        }
        if !header_names.insert(name.clone()) {
            ctx.diags.error(
                &hp.key("name"),
                format!("header `{raw}` is configured twice"),
            );
            ok = false;
            continue;
        }
        match Template::parse(value) {
            Ok(t) => {
                for r in t.refs() {
                    check_attr_ref(r, &hp.key("value"), ctx);
                }
                headers.push(InjectedHeader { name, template: t });
            }
            Err(e) => {
                ctx.diags.error_hint(
                    &hp.key("value"),
                    e,
                    "write placeholders as {{ connector.attribute }}",
                );
                ok = false;
            }
        }
    }
    ok.then_some(Headers {
        injected: headers,
        hooks: header_hooks,
        hook_names: hook_header_names,
    })
}

/// `policies`: at least one, each location once.
fn compile_policies(
    cfg: &ProxyAppConfig,
    p: &ConfigPath,
    connectors: &Connectors,
    ctx: &mut Ctx<'_>,
) -> Option<Vec<Policy>> {
    let mut ok = true;
    let mut policies = Vec::new();
    let mut locations = HashSet::new();
    if cfg.policies.is_empty() {
        ctx.diags.error_hint(
            &p.key("policies"),
            "an app needs at least one policy",
            "add a policy with `location: /`",
        );
        ok = false;
    }
    for (j, pol) in cfg.policies.iter().enumerate() {
        let pp = p.key("policies").index(j);
        match compile_policy(pol, &pp, connectors, ctx) {
            Some(mut policy) => {
                if cfg.caseInsensitivePaths {
                    policy.location = policy.location.folded();
                }
                if !locations.insert(pol.location.trim().to_string()) {
                    ctx.diags.error(
                        &pp.key("location"),
                        format!("location `{}` appears twice in this app", pol.location),
                    );
                    ok = false;
                }
                policies.push(policy);
            }
            None => ok = false,
        }
    }
    ok.then_some(policies)
}

/// `logout`: the app's own sign-out location and where it sends the browser afterwards.
fn compile_logout(
    cfg: &ProxyAppConfig,
    p: &ConfigPath,
    ctx: &mut Ctx<'_>,
) -> Option<Option<AppLogout>> {
    let Some(l) = &cfg.logout else {
        return Some(None);
    };
    let mut ok = true;
    if !l.location.starts_with('/') {
        ctx.diags.error(
            &p.key("logout").key("location"),
            "logout location must be a path starting with `/`",
        );
        ok = false;
    }
    let redirect = l.redirectURL.clone().unwrap_or_else(|| "/".into());
    ok &= check_target(&redirect, &p.key("logout").key("redirectURL"), ctx);
    let location = if cfg.caseInsensitivePaths {
        crate::edge::path::fold_case(&l.location)
    } else {
        l.location.clone()
    };
    let upstream_url = l.upstreamURL.clone();
    if let Some(u) = &upstream_url {
        let valid = url::Url::parse(u)
            .is_ok_and(|p| matches!(p.scheme(), "http" | "https") && p.host_str().is_some());
        if !valid {
            ctx.diags.error(
                &p.key("logout").key("upstreamURL"),
                format!("`{u}` must be an absolute http or https URL"),
            );
            ok = false;
        }
    }
    ok.then_some(Some(AppLogout {
        location,
        redirect,
        upstream_url,
    }))
}

pub(super) fn compile_policy(
    pol: &PolicyConfig,
    pp: &ConfigPath,
    connectors: &Connectors,
    ctx: &mut Ctx<'_>,
) -> Option<Policy> {
    let mut ok = true;
    let location = match Location::parse(&pol.location) {
        Ok(l) => Some(l),
        Err(e) => {
            ctx.diags.error(&pp.key("location"), e);
            None
        }
    };
    let authn = &pol.authentication;
    for (k, idp) in authn.idps.iter().enumerate() {
        if !ctx.connectors.contains(idp) {
            let known = ctx.connectors.iter().cloned().collect();
            unknown_ref(
                ctx,
                &pp.key("authentication").key("idps").index(k),
                "IdP",
                idp,
                known,
            );
            ok = false;
        } else if connectors.get(idp).is_some_and(|c| !c.can_login()) {
            ctx.diags.error(
                &pp.key("authentication").key("idps").index(k),
                format!("connector `{idp}` cannot log users in"),
            );
            ok = false;
        }
    }
    let is_authenticated_se = hook(
        authn.isAuthenticatedSE.as_ref(),
        HookKind::IsAuthenticated,
        &pp.key("authentication").key("isAuthenticatedSE"),
        ctx,
    );
    let authenticate_se = hook(
        authn.authenticateSE.as_ref(),
        HookKind::Authenticate,
        &pp.key("authentication").key("authenticateSE"),
        ctx,
    );
    ok &= is_authenticated_se.is_ok() && authenticate_se.is_ok();
    let (is_authenticated_se, authenticate_se) = (
        is_authenticated_se.ok().flatten(),
        authenticate_se.ok().flatten(),
    );
    let bearer = match &authn.bearer {
        None => None,
        Some(b) => {
            let compiled = super::bearer::compile_bearer(
                b,
                &pp.key("authentication").key("bearer"),
                connectors,
                ctx,
            );
            ok &= compiled.is_some();
            compiled
        }
    };
    if !authn.allowUnauthenticated
        && authn.idps.is_empty()
        && authenticate_se.is_none()
        && is_authenticated_se.is_none()
        && authn.bearer.is_none()
    {
        ctx.diags.error_hint(
            &pp.key("authentication"),
            "say how users sign in here",
            "add `idps: [<connector>]`, `bearer:` for API clients, or `allowUnauthenticated: true` for a public location",
        );
        ok = false;
    }
    let authz = &pol.authorization;
    let authorization = match (authz.allowAll, &authz.rules, &authz.isAuthorizedSE) {
        (true, Some(_), _) | (true, _, Some(_)) | (_, Some(_), Some(_)) => {
            ctx.diags.error(
                &pp.key("authorization"),
                "use one of `allowAll: true`, `rules` or `isAuthorizedSE`",
            );
            None
        }
        (false, None, Some(se)) => hook(
            Some(se),
            HookKind::IsAuthorized,
            &pp.key("authorization").key("isAuthorizedSE"),
            ctx,
        )
        .ok()
        .flatten()
        .map(Authorization::Extension),
        (true, None, None) => Some(Authorization::AllowAll),
        (false, Some(r), None) => {
            let rp = pp.key("authorization").key("rules");
            parse_rule(r, &rp, ctx.diags).map(|rule| {
                for a in rule.refs() {
                    check_attr_ref(a, &rp, ctx);
                }
                Authorization::Rules(rule)
            })
        }
        (false, None, None) => {
            ctx.diags.error_hint(
                &pp.key("authorization"),
                "say who may enter",
                "add `allowAll: true`, `rules:` or `isAuthorizedSE:`",
            );
            None
        }
    };
    if !ok {
        return None;
    }
    Some(Policy {
        location_text: pol.location.trim().to_string(),
        location: location?,
        allow_unauthenticated: authn.allowUnauthenticated,
        idps: if authn.idps.is_empty() && authenticate_se.is_some() {
            // The Authenticate hook picks the IdP: any connector that can log users in.
            connectors.login_capable()
        } else {
            authn.idps.clone()
        },
        authorization: authorization?,
        is_authenticated_se,
        authenticate_se,
        bearer,
    })
}
