//! Service extensions: operators' code as WebAssembly components, called at named hooks.
//!
//! - `engine`: the process-wide wasmtime engine (pooling allocator, epoch ticker) and the
//!   on-disk cache of compiled components;
//! - `load`: reading a component, checking its imports and exports against the contract
//!   (`extensions/wit/`), preparing its `InstancePre`;
//! - `host`: the host API a guest imports (log, session, secrets, attributes, cache, http);
//! - `cache`: the opt-in cache of a hook position's answers (`cacheSeconds`);
//! - `call`: one hook call — a fresh instance, a deadline, a memory cap — and what its
//!   result means (claims checked, headers checked);
//! - `request`: the request view a guest receives;
//! - `wasi`: the deny-by-default WASI of guests built with standard toolchains.
//!
//! Every failure of a call (trap, deadline, memory cap, invalid result) is an `Err` the caller
//! turns into a closed decision; it is logged with the extension's name and the request id and
//! counted in `tessera_extension_calls_total`.

pub mod cache;
pub mod call;
pub mod engine;
pub mod host;
pub mod load;
pub mod request;
pub mod wasi;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub use call::{CallError, ClaimsOut, HookCall, ModifiedRequest};
pub use load::{Extension, Services};

/// Bindings generated from the WIT contract. Every import and export is async: host
/// functions may wait on the network, and a guest yields at every epoch tick.
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "extensions/wit",
        world: "all-hooks",
        imports: { default: async },
        exports: { default: async },
    });
}

pub use bindings::exports::tessera::extension::modify_request::UpstreamRequest;
pub use bindings::exports::tessera::extension::modify_response::HttpResponse;
pub use bindings::exports::tessera::extension::serve::HttpResponse as ServedResponse;
pub use bindings::tessera::extension::types::{
    AuthenticateAction, Request as GuestRequest, Response as GuestResponse, TokenContext,
};

/// The contract's package, as it appears in import and export names.
pub const PACKAGE: &str = "tessera:extension";
/// The contract version this host implements; guests built against any 0.1.x load.
pub const VERSION: &str = "0.1.0";

/// The hooks of the contract: one WIT interface each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HookKind {
    IsAuthenticated,
    Authenticate,
    BackchannelAuthenticate,
    BuildIdTokenClaims,
    BuildAccessTokenClaims,
    BuildUserInfoClaims,
    IsAuthorized,
    LoadAttributes,
    CreateHeaders,
    ModifyResponse,
    ModifyRequest,
    HandleUnauthorized,
    EvalMaxLifetime,
    EvalIdleTimeout,
    Serve,
    UpstreamLogin,
}

impl HookKind {
    /// The hooks whose answers a proxy app may cache (`cacheSeconds`).
    pub const CACHEABLE: [HookKind; 4] = [
        HookKind::IsAuthenticated,
        HookKind::IsAuthorized,
        HookKind::LoadAttributes,
        HookKind::CreateHeaders,
    ];

    pub const ALL: [HookKind; 16] = [
        HookKind::IsAuthenticated,
        HookKind::Authenticate,
        HookKind::BackchannelAuthenticate,
        HookKind::BuildIdTokenClaims,
        HookKind::BuildAccessTokenClaims,
        HookKind::BuildUserInfoClaims,
        HookKind::IsAuthorized,
        HookKind::LoadAttributes,
        HookKind::CreateHeaders,
        HookKind::ModifyResponse,
        HookKind::ModifyRequest,
        HookKind::HandleUnauthorized,
        HookKind::EvalMaxLifetime,
        HookKind::EvalIdleTimeout,
        HookKind::Serve,
        HookKind::UpstreamLogin,
    ];

    /// The WIT interface name (`is-authenticated`).
    pub fn interface(self) -> &'static str {
        match self {
            HookKind::IsAuthenticated => "is-authenticated",
            HookKind::Authenticate => "authenticate",
            HookKind::BackchannelAuthenticate => "backchannel-authenticate",
            HookKind::BuildIdTokenClaims => "build-id-token-claims",
            HookKind::BuildAccessTokenClaims => "build-access-token-claims",
            HookKind::BuildUserInfoClaims => "build-userinfo-claims",
            HookKind::IsAuthorized => "is-authorized",
            HookKind::LoadAttributes => "load-attributes",
            HookKind::CreateHeaders => "create-headers",
            HookKind::ModifyResponse => "modify-response",
            HookKind::ModifyRequest => "modify-request",
            HookKind::HandleUnauthorized => "handle-unauthorized",
            HookKind::EvalMaxLifetime => "eval-max-lifetime",
            HookKind::EvalIdleTimeout => "eval-idle-timeout",
            HookKind::Serve => "serve",
            HookKind::UpstreamLogin => "upstream-login",
        }
    }

    /// The name configs use in `funcName` (the reference product's function names).
    pub fn func_name(self) -> &'static str {
        match self {
            HookKind::IsAuthenticated => "IsAuthenticated",
            HookKind::Authenticate => "Authenticate",
            HookKind::BackchannelAuthenticate => "BackchannelAuthenticate",
            HookKind::BuildIdTokenClaims => "BuildIDTokenClaims",
            HookKind::BuildAccessTokenClaims => "BuildAccessTokenClaims",
            HookKind::BuildUserInfoClaims => "BuildUserInfoClaims",
            HookKind::IsAuthorized => "IsAuthorized",
            HookKind::LoadAttributes => "LoadAttributes",
            HookKind::CreateHeaders => "CreateHeaders",
            HookKind::ModifyResponse => "ModifyResponse",
            HookKind::ModifyRequest => "ModifyRequest",
            HookKind::HandleUnauthorized => "HandleUnauthorized",
            HookKind::EvalMaxLifetime => "EvalMaxLifetime",
            HookKind::EvalIdleTimeout => "EvalIdleTimeout",
            HookKind::Serve => "Serve",
            HookKind::UpstreamLogin => "UpstreamLogin",
        }
    }

    /// `IsAuthenticated` or `is-authenticated` (any case for the former).
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        Self::ALL
            .into_iter()
            .find(|k| k.func_name().eq_ignore_ascii_case(s) || k.interface() == s)
    }

    /// The export name of the hook's interface: `tessera:extension/is-authenticated@0.1.0`.
    pub fn export_name(self) -> String {
        format!("{PACKAGE}/{}@{VERSION}", self.interface())
    }
}

impl fmt::Display for HookKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.func_name())
    }
}

/// A configured hook position: which hook of which extension.
#[derive(Clone)]
pub struct Hook {
    pub extension: Arc<Extension>,
    pub kind: HookKind,
    /// `cacheSeconds`: answers reused per session, policy and attribute version.
    pub cache: Option<Arc<cache::DecisionCache>>,
}

impl fmt::Debug for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.kind, self.extension.name)
    }
}

/// Per-call limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub timeout: Duration,
    pub memory_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_millis(50),
            memory_bytes: 64 << 20,
        }
    }
}

/// The response an Authenticate hook chose (checked when the call returned).
pub fn guest_response(
    r: GuestResponse,
    ctx: &crate::web::respond::RequestCtx,
) -> http::Response<crate::web::body::Body> {
    let mut resp = http::Response::new(crate::web::body::full(r.body));
    *resp.status_mut() =
        http::StatusCode::from_u16(r.status).unwrap_or(http::StatusCode::FORBIDDEN);
    for (k, v) in r.headers {
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            http::HeaderValue::from_str(&v),
        ) {
            resp.headers_mut().append(n, v);
        }
    }
    if let Ok(v) = http::HeaderValue::from_str(&ctx.request_id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::HookKind;

    /// Per-hook tables (e.g. an extension's metric series) are indexed by `kind as usize`:
    /// `ALL` must list every hook once, in declaration order.
    #[test]
    fn all_lists_every_hook_in_declaration_order() {
        for (i, kind) in HookKind::ALL.into_iter().enumerate() {
            assert_eq!(kind as usize, i, "{kind}");
        }
    }
}
