//! `session.lifetime`: the EvalMaxLifetime and EvalIdleTimeout hooks (see `login::lifetime`).

use crate::config::source::ConfigPath;
use crate::extensions::HookKind;
use crate::login::lifetime::LifetimeHooks;

use super::*;

pub(super) fn compile(s: Option<&SessionConfig>, ctx: &mut Ctx<'_>) -> LifetimeHooks {
    let Some(cfg) = s.and_then(|s| s.lifetime.as_ref()) else {
        return LifetimeHooks::default();
    };
    let p = ConfigPath::root().key("session").key("lifetime");
    LifetimeHooks {
        max_lifetime: hook(
            cfg.evalMaxLifetimeSE.as_ref(),
            HookKind::EvalMaxLifetime,
            &p.key("evalMaxLifetimeSE"),
            ctx,
        )
        .ok()
        .flatten(),
        idle_timeout: hook(
            cfg.evalIdleTimeoutSE.as_ref(),
            HookKind::EvalIdleTimeout,
            &p.key("evalIdleTimeoutSE"),
            ctx,
        )
        .ok()
        .flatten(),
    }
}
