//! The edge settings: trusted proxies, cookie security, and each proxy app's path rules and
//! upgrade protocols.

use crate::config::model::ProxyAppConfig;
use crate::config::source::ConfigPath;
use crate::edge::forwarded::TrustedProxies;
use crate::edge::path::{Parameters, PathRules};
use crate::edge::SecureCookies;

use super::Ctx;

/// `http.trustedProxies`.
pub(super) fn trusted_proxies(items: &[String], ctx: &mut Ctx<'_>) -> Option<TrustedProxies> {
    match TrustedProxies::parse(items) {
        Ok(t) => Some(t),
        Err(errors) => {
            for (i, msg) in errors {
                ctx.diags.error_hint(
                    &ConfigPath::root()
                        .key("http")
                        .key("trustedProxies")
                        .index(i),
                    msg,
                    "list the proxies in front of the gateway, e.g. 10.0.0.0/8 or 192.168.1.10",
                );
            }
            None
        }
    }
}

/// `session.cookie.secure`.
pub(super) fn secure_cookies(value: Option<&str>, ctx: &mut Ctx<'_>) -> Option<SecureCookies> {
    match value {
        None | Some("auto") => Some(SecureCookies::Auto),
        Some("always") => Some(SecureCookies::Always),
        Some(v) => {
            ctx.diags.error_hint(
                &ConfigPath::root()
                    .key("session")
                    .key("cookie")
                    .key("secure"),
                format!("invalid secure `{v}`"),
                "use auto or always",
            );
            None
        }
    }
}

/// A proxy app's `pathParameters`, `caseInsensitivePaths`, `allowTrailingDotOrSpace`.
pub(super) fn path_rules(
    cfg: &ProxyAppConfig,
    p: &ConfigPath,
    ctx: &mut Ctx<'_>,
) -> Option<PathRules> {
    let parameters = match cfg.pathParameters.as_deref() {
        None | Some("refuse") => Parameters::Refuse,
        Some("strip") => Parameters::Strip,
        Some(v) => {
            ctx.diags.error_hint(
                &p.key("pathParameters"),
                format!("invalid pathParameters `{v}`"),
                "use refuse (400 for any `;` in the path) or strip (removed before matching)",
            );
            return None;
        }
    };
    Some(PathRules {
        parameters,
        case_insensitive: cfg.caseInsensitivePaths,
        allow_trailing_dot_or_space: cfg.allowTrailingDotOrSpace,
    })
}

/// A proxy app's `upgrades`: lowercase protocol tokens; `h2c` is never allowed (it would
/// turn the connection into a tunnel past every policy).
pub(super) fn upgrades(
    cfg: &ProxyAppConfig,
    p: &ConfigPath,
    ctx: &mut Ctx<'_>,
) -> Option<Vec<String>> {
    let Some(list) = &cfg.upgrades else {
        return Some(vec!["websocket".to_string()]);
    };
    let mut ok = true;
    let mut out = Vec::with_capacity(list.len());
    for (i, proto) in list.iter().enumerate() {
        let token = proto.trim().to_ascii_lowercase();
        let valid = !token.is_empty()
            && token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._/".contains(&b));
        if !valid {
            ctx.diags.error_hint(
                &p.key("upgrades").index(i),
                format!("`{proto}` is not a protocol name"),
                "e.g. websocket",
            );
            ok = false;
        } else if token.starts_with("h2") || token.starts_with("http/2") {
            ctx.diags.error_hint(
                &p.key("upgrades").index(i),
                format!("upgrading to `{proto}` cannot be allowed"),
                "an h2c upgrade makes the connection a tunnel that no policy sees; remove it",
            );
            ok = false;
        } else {
            out.push(token);
        }
    }
    ok.then_some(out)
}
