//! `apis`: endpoints an extension's Serve hook answers (`crate::apis`). An api's routes are
//! matched before apps, so they must not overlap what the gateway serves itself, any proxy
//! app's routes, or another api's: a route that did would silently take requests from them.

use serde_yaml_ng::Value;

use super::{check_name, hook, unknown_ref, Ctx};
use crate::apis::{Access, Api, Apis, Methods, DEFAULT_MAX_BODY, MAX_MAX_BODY};
use crate::config::decode::decode;
use crate::config::model::ApiConfig;
use crate::config::source::ConfigPath;
use crate::connectors::Connectors;
use crate::edge::path::{fold_case, under_prefix};
use crate::extensions::HookKind;
use crate::proxy::ProxyApp;
use crate::server::router::{RoutePattern, Router};

/// What an api's routes are checked against.
pub(super) struct Claimed<'a> {
    pub(super) health: &'a str,
    pub(super) metrics: Option<&'a str>,
    pub(super) provider: Option<&'a crate::provider::Provider>,
    pub(super) connectors: &'a Connectors,
    pub(super) apps: &'a [ProxyApp],
    pub(super) app_router: &'a Router,
}

pub(super) fn compile_apis(v: Option<&Value>, claimed: &Claimed<'_>, ctx: &mut Ctx<'_>) -> Apis {
    let path = ConfigPath::root().key("apis");
    let Some(list) = v.and_then(|v| decode::<Vec<ApiConfig>>(v, &path, ctx.diags)) else {
        return Apis::default();
    };
    let own = gateway_paths(claimed);
    let mut names = std::collections::HashSet::new();
    let mut apis = Vec::new();
    let mut routes: Vec<(RoutePattern, usize)> = Vec::new();
    // Every api's patterns, compiled or not, so two broken apis still meet each other.
    let mut api_patterns: Vec<(RoutePattern, String)> = Vec::new();
    for (i, cfg) in list.into_iter().enumerate() {
        let p = path.index(i);
        let mut ok = check_name(&cfg.name, &p.key("name"), &mut names, "api", ctx);
        if let Some(app) = claimed.apps.iter().find(|a| a.name == cfg.name) {
            ctx.diags.error_hint(
                &p.key("name"),
                format!("`{}` is also the name of app `{}`", cfg.name, app.name),
                "logs and metrics name apis and apps alike: give the api a name of its own",
            );
            ok = false;
        }
        let mut own_routes = Vec::new();
        if cfg.routePatterns.is_empty() {
            ctx.diags.error_hint(
                &p.key("routePatterns"),
                "an api needs at least one route pattern",
                "e.g. routePatterns: [\"/api/whoami\"]",
            );
            ok = false;
        }
        for (j, rp) in cfg.routePatterns.iter().enumerate() {
            let at = p.key("routePatterns").index(j);
            match route(rp, &own, claimed, &api_patterns) {
                Ok(r) => {
                    api_patterns.push((r.clone(), cfg.name.clone()));
                    own_routes.push(r);
                }
                Err((message, hint)) => {
                    ctx.diags.error_hint(&at, message, hint);
                    ok = false;
                }
            }
        }
        let methods = methods(cfg.methods.as_deref(), &p.key("methods"), ctx);
        let max_body = match cfg.maxRequestBodyBytes {
            None => Some(DEFAULT_MAX_BODY),
            Some(n) if n <= MAX_MAX_BODY as u64 => Some(n as usize),
            Some(n) => {
                ctx.diags.error(
                    &p.key("maxRequestBodyBytes"),
                    format!("maxRequestBodyBytes must be 0..={MAX_MAX_BODY}, not {n}"),
                );
                None
            }
        };
        let access = access(&cfg, &p, ctx);
        let serve = hook(Some(&cfg.serveSE), HookKind::Serve, &p.key("serveSE"), ctx);
        if cfg.serveSE.cacheSeconds.is_some() {
            ctx.diags.error_hint(
                &p.key("serveSE").key("cacheSeconds"),
                "an api's Serve hook is called on every request",
                "remove cacheSeconds",
            );
            ok = false;
        }
        if let (true, Ok(Some(serve)), Some(methods), Some(max_body), Some(access)) =
            (ok, serve, methods, max_body, access)
        {
            let idx = apis.len();
            routes.extend(own_routes.into_iter().map(|r| (r, idx)));
            apis.push(Api {
                name: cfg.name,
                serve,
                methods,
                max_body,
                access,
            });
        }
    }
    Apis {
        list: apis,
        router: Router::new(routes),
    }
}

/// A route pattern of an api, unless it is unusable or overlaps something already claimed:
/// `Err((message, hint))`.
fn route(
    rp: &str,
    own: &[(String, &'static str)],
    claimed: &Claimed<'_>,
    apis: &[(RoutePattern, String)],
) -> Result<RoutePattern, (String, String)> {
    let r = RoutePattern::parse(rp).map_err(|e| (e, "e.g. /api/whoami".to_string()))?;
    if let Some((path, what)) = own.iter().find(|(path, _)| nested(&r.prefix, path)) {
        return Err((
            format!("route pattern `{rp}` overlaps the gateway's {what} `{path}`"),
            "the gateway answers its own paths on every host: give the api another path".into(),
        ));
    }
    for (app_route, i) in claimed.app_router.patterns() {
        if overlap(&r, app_route) {
            return Err((
                format!(
                    "route pattern `{rp}` overlaps app `{}` (`{}`)",
                    claimed.apps[i].name,
                    shown(app_route)
                ),
                "apis are matched before apps: give the api a host or path prefix no app claims"
                    .into(),
            ));
        }
    }
    if let Some((other, name)) = apis.iter().find(|(other, _)| overlap(&r, other)) {
        return Err((
            format!(
                "route pattern `{rp}` overlaps api `{name}` (`{}`)",
                shown(other)
            ),
            "give each api its own host or path prefix".into(),
        ));
    }
    Ok(r)
}

/// The paths the gateway answers itself, on every host, and what each is. `/.tessera` is a
/// prefix (login, logout, forward-auth, the sign-in pages' assets); the others are exact.
fn gateway_paths(c: &Claimed<'_>) -> Vec<(String, &'static str)> {
    let mut out = vec![
        (
            crate::login::PREFIX.trim_end_matches('/').to_string(),
            "own paths",
        ),
        (c.health.to_string(), "health endpoint"),
    ];
    if let Some(m) = c.metrics {
        out.push((m.to_string(), "metrics endpoint"));
    }
    if let Some(p) = c.provider {
        // Destructured whole: a new endpoint of the provider does not compile until it is
        // listed here too.
        let crate::provider::Endpoints {
            discovery,
            oauth_metadata,
            authorization,
            authorization_resume,
            token,
            userinfo,
            jwks,
            introspection,
            revocation,
            end_session,
            consent,
            connected_apps,
            par,
        } = &p.endpoints;
        for e in [
            discovery,
            oauth_metadata,
            authorization,
            authorization_resume,
            token,
            userinfo,
            jwks,
            introspection,
            revocation,
            end_session,
            consent,
            connected_apps,
            par,
        ] {
            out.push((e.clone(), "OpenID provider endpoint"));
        }
    }
    for idp in c.connectors.oidc() {
        out.push((idp.callback_path.clone(), "sign-in callback"));
        for p in [&idp.logout_callback_path, &idp.backchannel_logout_path]
            .into_iter()
            .flatten()
        {
            out.push((p.clone(), "logout callback"));
        }
    }
    out
}

/// One path lies under the other (on segment boundaries).
fn nested(a: &str, b: &str) -> bool {
    under_prefix(a, b) || under_prefix(b, a)
}

/// Two patterns can match the same request: hosts that can be the same, nested prefixes
/// (compared in lowercase when either side is case-insensitive).
fn overlap(a: &RoutePattern, b: &RoutePattern) -> bool {
    if !hosts_meet(a.host.as_deref(), b.host.as_deref()) {
        return false;
    }
    if a.case_insensitive || b.case_insensitive {
        nested(&fold_case(&a.prefix), &fold_case(&b.prefix))
    } else {
        nested(&a.prefix, &b.prefix)
    }
}

/// Whether two route hosts (`None` = any, `*.domain`, `host`, `host:port`) can name the same
/// request's host. Unsure is yes: the check refuses, it never lets an overlap through.
fn hosts_meet(a: Option<&str>, b: Option<&str>) -> bool {
    let (Some(a), Some(b)) = (a, b) else {
        return true;
    };
    // `host` matches any port; `host:port` one: compare ports only when both name one.
    let split = |h: &str| match h.rfind(':') {
        Some(i) if !h[i..].contains(']') => (h[..i].to_string(), Some(h[i + 1..].to_string())),
        _ => (h.to_string(), None),
    };
    let ((ha, pa), (hb, pb)) = (split(a), split(b));
    if let (Some(pa), Some(pb)) = (&pa, &pb) {
        if pa != pb {
            return false;
        }
    }
    let covers = |wild: &str, h: &str| match wild.strip_prefix("*.") {
        Some(suffix) => h.ends_with(&format!(".{suffix}")) || h == wild,
        None => wild == h,
    };
    covers(&ha, &hb) || covers(&hb, &ha)
}

fn shown(r: &RoutePattern) -> String {
    format!("{}{}", r.host.as_deref().unwrap_or(""), r.prefix)
}

fn methods(list: Option<&[String]>, p: &ConfigPath, ctx: &mut Ctx<'_>) -> Option<Methods> {
    let Some(list) = list else {
        return Some(Methods::all());
    };
    if list.is_empty() {
        ctx.diags.error_hint(
            p,
            "an api needs at least one method",
            "leave `methods` out to answer every method",
        );
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    for (i, m) in list.iter().enumerate() {
        match http::Method::from_bytes(m.as_bytes()) {
            Ok(method) if m.bytes().all(|b| b.is_ascii_uppercase()) => {
                if !out.contains(&method) {
                    out.push(method);
                }
            }
            _ => {
                ctx.diags.error_hint(
                    &p.index(i),
                    format!("`{m}` is not an HTTP method"),
                    "write methods in capitals, e.g. GET, POST",
                );
                ok = false;
            }
        }
    }
    ok.then(|| Methods::only(out))
}

fn access(cfg: &ApiConfig, p: &ConfigPath, ctx: &mut Ctx<'_>) -> Option<Access> {
    match cfg.authentication.as_deref().unwrap_or("session") {
        "public" => {
            if !cfg.idps.is_empty() {
                ctx.diags.error_hint(
                    &p.key("idps"),
                    "a public api reads no session: `idps` has no effect",
                    "remove idps, or use authentication: session",
                );
                return None;
            }
            Some(Access::Public)
        }
        "session" => {
            let mut ok = true;
            for (i, idp) in cfg.idps.iter().enumerate() {
                if !ctx.connectors.contains(idp) {
                    let known = ctx.connectors.iter().cloned().collect();
                    unknown_ref(ctx, &p.key("idps").index(i), "connector", idp, known);
                    ok = false;
                }
            }
            ok.then(|| Access::Session {
                idps: cfg.idps.clone(),
            })
        }
        other => {
            ctx.diags.error_hint(
                &p.key("authentication"),
                format!("unknown authentication `{other}`"),
                "use session (a signed-in gateway session) or public",
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_meet_unless_provably_different() {
        assert!(hosts_meet(None, Some("a.example.com")));
        assert!(hosts_meet(
            Some("a.example.com"),
            Some("a.example.com:8443")
        ));
        assert!(hosts_meet(Some("*.example.com"), Some("a.example.com")));
        assert!(hosts_meet(Some("*.example.com"), Some("*.example.com")));
        assert!(!hosts_meet(Some("a.example.com"), Some("b.example.com")));
        assert!(!hosts_meet(
            Some("a.example.com:1"),
            Some("a.example.com:2")
        ));
        assert!(!hosts_meet(Some("*.example.com"), Some("example.org")));
    }

    #[test]
    fn nested_prefixes_overlap_on_segment_boundaries() {
        let p = |s| RoutePattern::parse(s).unwrap();
        assert!(overlap(&p("/api"), &p("/api/v1")));
        assert!(overlap(&p("/"), &p("h.example.com/x")));
        assert!(!overlap(&p("/api"), &p("/apix")));
        assert!(!overlap(&p("a.example.com/"), &p("b.example.com/")));
        assert!(overlap(&p("/Legacy").case_insensitive(), &p("/legacy/x")));
    }
}
