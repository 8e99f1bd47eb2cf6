//! A proxy app's `upstreamLoginSE`: the UpstreamLogin hook position and its `reloginOn`.

use super::hook;
use super::Ctx;
use crate::config::model::{HookConfig, UpstreamLoginConfig};
use crate::config::source::ConfigPath;
use crate::extensions::HookKind;
use crate::proxy::upstream_login::{Relogin, UpstreamLogin};

/// `upstreamLoginSE`, or Err when it is invalid (reported).
pub(super) fn compile_upstream_login(
    cfg: Option<&UpstreamLoginConfig>,
    p: &ConfigPath,
    ctx: &mut Ctx<'_>,
) -> Result<Option<UpstreamLogin>, ()> {
    let Some(cfg) = cfg else { return Ok(None) };
    let position = HookConfig {
        funcName: cfg.funcName.clone(),
        file: cfg.file.clone(),
        extension: cfg.extension.clone(),
        cacheSeconds: None,
    };
    let hook = hook(Some(&position), HookKind::UpstreamLogin, p, ctx);
    let relogin = match &cfg.reloginOn {
        None => Ok(Relogin::default()),
        Some(r) => relogin(&r.status, r.redirectTo.as_deref(), &p.key("reloginOn"), ctx),
    };
    match (hook, relogin) {
        (Ok(Some(hook)), Ok(relogin)) => Ok(Some(UpstreamLogin { hook, relogin })),
        _ => Err(()),
    }
}

/// `reloginOn`: statuses of 400..=599 and an absolute path, at least one of them.
fn relogin(
    status: &[u16],
    redirect_to: Option<&str>,
    p: &ConfigPath,
    ctx: &mut Ctx<'_>,
) -> Result<Relogin, ()> {
    let mut ok = true;
    if status.is_empty() && redirect_to.is_none() {
        ctx.diags.error_hint(
            p,
            "reloginOn needs `status` or `redirectTo`",
            "e.g. reloginOn: { status: [401], redirectTo: /login }",
        );
        return Err(());
    }
    let mut statuses = Vec::with_capacity(status.len());
    for (i, s) in status.iter().enumerate() {
        match http::StatusCode::from_u16(*s) {
            // A success or a redirect is how the app answers while signed in: re-login on
            // one would log in again on every request (redirects are `redirectTo`'s).
            Ok(code) if (400..=599).contains(s) => statuses.push(code),
            _ => {
                ctx.diags.error_hint(
                    &p.key("status").index(i),
                    format!("{s} is not an error status (400..=599)"),
                    "a redirect to the login page is `redirectTo: /login`",
                );
                ok = false;
            }
        }
    }
    if let Some(path) = redirect_to {
        if !path.starts_with('/') || path.starts_with("//") || path.contains(['?', '#']) {
            ctx.diags.error_hint(
                &p.key("redirectTo"),
                format!("`{path}` is not an absolute path"),
                "the path of the upstream's login page, e.g. /login (without query)",
            );
            ok = false;
        }
    }
    ok.then(|| Relogin {
        status: statuses,
        redirect_to: redirect_to.map(str::to_string),
    })
    .ok_or(())
}
