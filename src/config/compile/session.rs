//! `session`: cookie, lifetimes, the store; and location settings (`health.location`, metrics).

use crate::config::source::ConfigPath;
use crate::session::cookie::{CookieSpec, SameSite};
use crate::session::SessionSettings;
use std::time::Duration;

use super::*;

pub(super) fn location_setting(
    value: Option<&str>,
    default: &str,
    path: &ConfigPath,
    ctx: &mut Ctx<'_>,
) -> String {
    let v = value.unwrap_or(default);
    if !v.starts_with('/') || v.starts_with(crate::login::PREFIX) {
        ctx.diags.error_hint(
            path,
            format!("`{v}` is not a usable path"),
            "use an absolute path like /status (not under /.tessera/)",
        );
    }
    v.to_string()
}

pub(super) fn compile_session(
    s: Option<&SessionConfig>,
    tls_on: bool,
    always_secure: bool,
    ctx: &mut Ctx<'_>,
) -> Option<SessionSettings> {
    let path = ConfigPath::root().key("session");
    let cookie = s.and_then(|s| s.cookie.as_ref());
    let name = cookie
        .and_then(|c| c.name.clone())
        .unwrap_or_else(|| "tessera_session".into());
    let mut ok = true;
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        ctx.diags.error_hint(
            &path.key("cookie").key("name"),
            format!("`{name}` is not a valid cookie name"),
            "use letters, digits, `-`, `_` or `.`",
        );
        ok = false;
    }
    if name == crate::login::FLOW_COOKIE {
        ctx.diags.error(
            &path.key("cookie").key("name"),
            format!("`{name}` is reserved by the login flow"),
        );
        ok = false;
    }
    let same_site = match cookie.and_then(|c| c.sameSite.as_deref()) {
        None => SameSite::Lax,
        Some(v) => match SameSite::parse(v) {
            Some(s) => s,
            None => {
                ctx.diags.error_hint(
                    &path.key("cookie").key("sameSite"),
                    format!("invalid sameSite `{v}`"),
                    "use Lax, Strict or None",
                );
                ok = false;
                SameSite::Lax
            }
        },
    };
    if same_site == SameSite::None && !tls_on && !always_secure {
        ctx.diags.error_hint(
            &path.key("cookie").key("sameSite"),
            "sameSite None needs TLS (browsers drop such cookies unless Secure)",
            "use Lax, configure http.tls, or set session.cookie.secure: always behind TLS",
        );
        ok = false;
    }
    let domain = cookie
        .and_then(|c| c.domain.clone())
        .filter(|d| !d.is_empty());
    let max = s.and_then(|s| s.maxLifetimeSeconds).unwrap_or(28800);
    let idle = s.and_then(|s| s.idleTimeoutSeconds).unwrap_or(1800);
    for (k, v) in [("maxLifetimeSeconds", max), ("idleTimeoutSeconds", idle)] {
        if v == 0 {
            ctx.diags
                .error(&path.key(k), format!("`{k}` must be greater than 0"));
            ok = false;
        }
    }
    // `store` is resolved by `store_ref` in `compile`
    ok.then(|| SessionSettings {
        cookie: CookieSpec {
            name,
            path: "/",
            domain,
            same_site,
            secure: tls_on || always_secure,
        },
        max_lifetime: Duration::from_secs(max),
        idle_timeout: Duration::from_secs(idle),
    })
}
