//! Limits on what clients may make the gateway count and keep: connectors' `throttle`
//! (failed logins), `session.loginFlows` (flows per client IP) and `session.memoryStore`
//! (the in-memory store's byte budget).

use std::time::Duration;

use super::Ctx;
use crate::config::model::{SessionConfig, ThrottleConfig};
use crate::config::source::ConfigPath;
use crate::connectors::local::{
    Throttle, DEFAULT_MAX_FAILURES, DEFAULT_MAX_USERS_PER_IP, DEFAULT_WINDOW_SECONDS,
};
use crate::login::flows::{FlowLimits, DEFAULT_MAX_PER_IP, DEFAULT_WINDOW_SECONDS as FLOW_WINDOW};
use crate::store::memory_default_mib;

/// Largest `memoryStore.maxMiB` (1 TiB): beyond it the number is a typo.
const MAX_MEMORY_MIB: u64 = 1 << 20;
/// Longest window of a counter (a day): beyond it a lock-out is a denial of service.
const MAX_WINDOW_SECONDS: u64 = 86_400;

/// A positive count: 0 would refuse everything (or, for a window, count nothing).
fn positive<T: Copy + Into<u64>>(
    v: Option<T>,
    default: T,
    path: &ConfigPath,
    hint: &str,
    ctx: &mut Ctx<'_>,
) -> T {
    match v {
        Some(n) if n.into() == 0 => {
            ctx.diags
                .error_hint(path, "must be greater than 0", hint.to_string());
            default
        }
        Some(n) => n,
        None => default,
    }
}

fn window(v: Option<u64>, default: u64, path: &ConfigPath, ctx: &mut Ctx<'_>) -> Duration {
    let secs = positive(v, default, path, "a window of seconds, e.g. 60", ctx);
    if secs > MAX_WINDOW_SECONDS {
        ctx.diags.error_hint(
            path,
            format!("{secs} seconds is longer than a day"),
            "use at most 86400",
        );
    }
    Duration::from_secs(secs.min(MAX_WINDOW_SECONDS))
}

/// A connector's `throttle` (at `p`, the `throttle` key).
pub(in crate::config) fn throttle(
    t: Option<&ThrottleConfig>,
    p: &ConfigPath,
    ctx: &mut Ctx<'_>,
) -> Throttle {
    Throttle {
        max_failures: positive(
            t.and_then(|t| t.maxFailures),
            DEFAULT_MAX_FAILURES,
            &p.key("maxFailures"),
            "attempts allowed per user in the window, e.g. 5",
            ctx,
        ),
        window: window(
            t.and_then(|t| t.windowSeconds),
            DEFAULT_WINDOW_SECONDS,
            &p.key("windowSeconds"),
            ctx,
        ),
        max_users_per_ip: positive(
            t.and_then(|t| t.maxUsersPerClientIP),
            DEFAULT_MAX_USERS_PER_IP,
            &p.key("maxUsersPerClientIP"),
            "distinct users one client IP may fail for, e.g. 50",
            ctx,
        ),
    }
}

/// `session.loginFlows`.
pub(super) fn login_flows(s: Option<&SessionConfig>, ctx: &mut Ctx<'_>) -> FlowLimits {
    let p = ConfigPath::root().key("session").key("loginFlows");
    let f = s.and_then(|s| s.loginFlows.as_ref());
    FlowLimits {
        max_per_ip: positive(
            f.and_then(|f| f.maxPerClientIP),
            DEFAULT_MAX_PER_IP,
            &p.key("maxPerClientIP"),
            "login flows one client IP may start in the window, e.g. 120",
            ctx,
        ),
        window: window(
            f.and_then(|f| f.windowSeconds),
            FLOW_WINDOW,
            &p.key("windowSeconds"),
            ctx,
        ),
    }
}

/// `session.memoryStore.maxMiB`, in bytes.
pub(super) fn memory_store_bytes(s: Option<&SessionConfig>, ctx: &mut Ctx<'_>) -> usize {
    let p = ConfigPath::root()
        .key("session")
        .key("memoryStore")
        .key("maxMiB");
    let mib = positive(
        s.and_then(|s| s.memoryStore.as_ref())
            .and_then(|m| m.maxMiB),
        memory_default_mib(),
        &p,
        "MiB for the in-memory store, e.g. 256",
        ctx,
    );
    if mib > MAX_MEMORY_MIB {
        ctx.diags.error_hint(
            &p,
            format!("{mib} MiB is more than this can mean"),
            "use at most 1048576 (1 TiB)",
        );
    }
    usize::try_from(mib.min(MAX_MEMORY_MIB) * 1024 * 1024).unwrap_or(usize::MAX)
}
