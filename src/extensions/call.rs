//! One hook call: a fresh instance from the extension's `InstancePre` in a store of its own,
//! a memory cap, a wall-clock deadline (the guest yields at every epoch tick, so a busy guest
//! shares its worker thread and is dropped at the deadline), and a checked result.

use std::borrow::Borrow;
use std::time::Instant;

use tracing::Instrument;

use http::HeaderName;
use serde_json::Value;
use wasmtime::component::Instance;
use wasmtime::Store;

use super::host::{HostState, MemoryLimiter};
use super::load::Indices;
use super::{
    AuthenticateAction, GuestRequest, GuestResponse, Hook, HookKind, HttpResponse, ServedResponse,
    TokenContext, UpstreamRequest,
};
use crate::claims::{AttrRef, Attributes};

/// Why a call failed. Every variant means "fail closed".
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("deadline of {0} ms exceeded")]
    Timeout(u128),
    #[error("memory limit of {0} MiB reached")]
    Memory(usize),
    #[error("trapped: {0}")]
    Trap(String),
    #[error("returned an invalid result: {0}")]
    Invalid(String),
    #[error("could not be instantiated: {0}")]
    Unavailable(String),
}

impl CallError {
    /// The `outcome` label of `tessera_extension_calls_total`.
    pub fn outcome(&self) -> &'static str {
        match self {
            CallError::Timeout(_) => "timeout",
            CallError::Memory(_) => "memory",
            CallError::Trap(_) => "trap",
            CallError::Invalid(_) => "invalid",
            CallError::Unavailable(_) => "unavailable",
        }
    }
}

/// Claims an extension returned, parsed and checked.
pub type ClaimsOut = Vec<(String, Value)>;

/// Claims an extension may not set: they carry the token's security properties.
pub const RESERVED_CLAIMS: [&str; 15] = [
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "nbf",
    "jti",
    "auth_time",
    "nonce",
    "azp",
    "at_hash",
    "c_hash",
    "sid",
    "client_id",
    "cnf",
];

/// The input of a call: the request under decision (owned, or borrowed when one view serves
/// several hooks of a request) and the session's attributes.
pub struct HookCall<R: Borrow<GuestRequest> = GuestRequest> {
    pub request: R,
    pub attrs: Attributes,
}

/// Response headers a ModifyResponse hook may not set: they describe one connection.
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "te",
    "trailer",
    "upgrade",
];

/// A successful call's answer, with the attributes as the guest left them.
pub struct Called<T> {
    pub value: T,
    pub attrs: Attributes,
    /// The guest wrote attributes (`session-set`): the caller persists `attrs` where it can.
    pub wrote: bool,
}

enum Ret {
    Bool(bool),
    Action(AuthenticateAction),
    Subject(Result<String, String>),
    Claims(Vec<(String, String)>),
    Attributes(Vec<(String, Vec<String>)>),
    Fields(Vec<(String, String)>),
    Response(HttpResponse),
    Upstream(UpstreamRequest),
    Respond(GuestResponse),
    Seconds(u32),
    Served(ServedResponse),
    Login(Result<Vec<(String, String)>, String>),
}

/// A hook's argument beside the request.
enum Extra {
    None,
    Token(TokenContext),
    Response(HttpResponse),
    Upstream(UpstreamRequest),
    /// The request body (Serve).
    Body(Vec<u8>),
    /// UpstreamLogin: the app's upstream URL, and the client `http-fetch` reaches it with.
    UpstreamUrl(String, Box<super::host::HttpClient>),
}

/// A ModifyRequest answer whose headers passed the generic checks (valid, none the gateway
/// manages); the app's own checks (path, identity headers) come after.
pub struct ModifiedRequest {
    pub path: String,
    pub query: Option<String>,
    pub headers: Vec<(HeaderName, http::HeaderValue)>,
}

/// Headers a guest wants on the upstream request (CreateHeaders, ModifyRequest): valid names
/// and values, none the gateway manages (`edge::names::reserved`).
fn upstream_fields(
    fields: Vec<(String, String)>,
) -> Result<Vec<(HeaderName, http::HeaderValue)>, String> {
    let mut out = Vec::with_capacity(fields.len());
    for (name, value) in fields {
        let Ok(n) = HeaderName::from_bytes(name.as_bytes()) else {
            return Err(format!("`{name}` is not a valid header name"));
        };
        if crate::edge::names::reserved(&n) {
            return Err(format!("header `{name}` is managed by the gateway"));
        }
        let Ok(v) = http::HeaderValue::from_str(&value) else {
            return Err(format!("header `{name}` has a value a header cannot carry"));
        };
        out.push((n, v));
    }
    Ok(out)
}

/// A response a guest built (Authenticate's `respond`, HandleUnauthorized): a status of
/// 100–599 and headers a response can carry.
fn check_guest_response(resp: &GuestResponse) -> Result<(), String> {
    if !(100..=599).contains(&resp.status) {
        return Err(format!("response status {} is not 100..=599", resp.status));
    }
    for (name, value) in &resp.headers {
        if HeaderName::from_bytes(name.as_bytes()).is_err()
            || http::HeaderValue::from_str(value).is_err()
        {
            return Err(format!("response header `{name}` is not a valid header"));
        }
    }
    Ok(())
}

/// A whole response a guest returned (ModifyResponse, Serve): status 100–599, valid header
/// names and values, no hop-by-hop header; `content-length` and `transfer-encoding` are
/// dropped (the gateway frames the body it sends).
fn built_response(
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
) -> Result<http::Response<bytes::Bytes>, String> {
    let status = http::StatusCode::from_u16(status)
        .ok()
        .filter(|s| (100..=599).contains(&s.as_u16()))
        .ok_or_else(|| format!("response status {status} is not 100..=599"))?;
    let mut resp = http::Response::new(bytes::Bytes::from(body));
    *resp.status_mut() = status;
    for (name, value) in headers {
        let Ok(n) = HeaderName::from_bytes(name.as_bytes()) else {
            return Err(format!("`{name}` is not a valid header name"));
        };
        if HOP_BY_HOP.contains(&n.as_str()) {
            return Err(format!("header `{name}` is hop-by-hop"));
        }
        if n == http::header::CONTENT_LENGTH || n == http::header::TRANSFER_ENCODING {
            continue;
        }
        let Ok(v) = http::HeaderValue::from_str(&value) else {
            return Err(format!("header `{name}` has a value a header cannot carry"));
        };
        resp.headers_mut().append(n, v);
    }
    Ok(resp)
}

/// The largest body a Serve answer may have.
pub const MAX_SERVED_BODY: usize = 1 << 20;

/// At most this many upstream cookies from one UpstreamLogin call.
pub const MAX_UPSTREAM_COOKIES: usize = 20;
/// At most this many bytes of them in all (`name=value` each, as the `cookie` header carries
/// them): they ride in the session record and in every upstream request of the app.
pub const MAX_UPSTREAM_COOKIE_BYTES: usize = 4096;

/// The cookies an UpstreamLogin call returned, checked: 1..=20 of them, 4096 bytes in all,
/// names RFC 6265 tokens (no two alike), values cookie-octets, optionally in double quotes.
/// A name the gateway uses for its own cookies is refused too (`own`).
pub fn check_upstream_cookies(cookies: &[(String, String)], own: &[&str]) -> Result<(), String> {
    if cookies.is_empty() {
        return Err("the login returned no cookie".into());
    }
    if cookies.len() > MAX_UPSTREAM_COOKIES {
        return Err(format!(
            "{} cookies, more than the {MAX_UPSTREAM_COOKIES} an upstream login may keep",
            cookies.len()
        ));
    }
    let total: usize = cookies.iter().map(|(n, v)| n.len() + 1 + v.len()).sum();
    if total > MAX_UPSTREAM_COOKIE_BYTES {
        return Err(format!(
            "{total} bytes of cookies, more than the {MAX_UPSTREAM_COOKIE_BYTES} an upstream login may keep"
        ));
    }
    // RFC 9110 tchar: visible ASCII except separators.
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    // RFC 6265 cookie-octet: visible ASCII except DQUOTE, comma, semicolon, backslash.
    let octet = |b: u8| (0x21..=0x7e).contains(&b) && !b"\",;\\".contains(&b);
    for (i, (name, value)) in cookies.iter().enumerate() {
        if name.is_empty() || !name.bytes().all(tchar) {
            return Err(format!(
                "cookie name `{}` is not a token",
                name.escape_debug()
            ));
        }
        if own.contains(&name.as_str()) {
            return Err(format!(
                "cookie `{name}` is one of the gateway's own cookies"
            ));
        }
        if cookies[..i].iter().any(|(n, _)| n == name) {
            return Err(format!("cookie `{name}` is returned twice"));
        }
        let bare = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        if !bare.bytes().all(octet) {
            return Err(format!(
                "the value of cookie `{name}` has a character a cookie cannot carry"
            ));
        }
    }
    Ok(())
}

/// Unpacks the `Ret` variant a hook returns (the dispatcher guarantees it).
macro_rules! expect {
    ($r:expr, $p:pat => $v:expr) => {
        match $r {
            $p => $v,
            _ => return Err("internal: unexpected result kind".to_string()),
        }
    };
}

impl Hook {
    pub async fn is_authenticated<R: Borrow<GuestRequest> + Send>(
        &self,
        call: HookCall<R>,
    ) -> Result<Called<bool>, CallError> {
        self.run(call, Extra::None, |r, _| Ok(expect!(r, Ret::Bool(b) => b)))
            .await
    }

    pub async fn is_authorized<R: Borrow<GuestRequest> + Send>(
        &self,
        call: HookCall<R>,
    ) -> Result<Called<bool>, CallError> {
        self.run(call, Extra::None, |r, _| Ok(expect!(r, Ret::Bool(b) => b)))
            .await
    }

    pub async fn authenticate<R: Borrow<GuestRequest> + Send>(
        &self,
        call: HookCall<R>,
    ) -> Result<Called<AuthenticateAction>, CallError> {
        self.run(call, Extra::None, |r, _| {
            let action = expect!(r, Ret::Action(a) => a);
            if let AuthenticateAction::Respond(resp) = &action {
                check_guest_response(resp)?;
            }
            Ok(action)
        })
        .await
    }

    /// Ok(Ok(subject)) accepts, Ok(Err(message)) refuses the credentials.
    pub async fn backchannel_authenticate<R: Borrow<GuestRequest> + Send>(
        &self,
        call: HookCall<R>,
    ) -> Result<Called<Result<String, String>>, CallError> {
        self.run(call, Extra::None, |r, _| {
            let verdict = expect!(r, Ret::Subject(s) => s);
            if matches!(&verdict, Ok(s) if s.trim().is_empty()) {
                return Err("accepted the credentials with an empty subject".into());
            }
            Ok(verdict)
        })
        .await
    }

    /// BuildIDTokenClaims, BuildAccessTokenClaims or BuildUserInfoClaims (per `self.kind`).
    /// Malformed JSON and reserved claims refuse the whole answer.
    pub async fn build_claims<R: Borrow<GuestRequest> + Send>(
        &self,
        call: HookCall<R>,
        token: TokenContext,
    ) -> Result<Called<ClaimsOut>, CallError> {
        self.run(call, Extra::Token(token), |r, _| {
            let raw = expect!(r, Ret::Claims(c) => c);
            let mut out = Vec::with_capacity(raw.len());
            for (name, json) in raw {
                if RESERVED_CLAIMS.contains(&name.as_str()) {
                    return Err(format!(
                        "claim `{name}` is reserved and cannot be set by an extension"
                    ));
                }
                if name.is_empty() {
                    return Err("a claim has an empty name".into());
                }
                match serde_json::from_str::<Value>(&json) {
                    Ok(v) => out.push((name, v)),
                    Err(e) => return Err(format!("claim `{name}` is not valid JSON ({e})")),
                }
            }
            Ok(out)
        })
        .await
    }

    /// LoadAttributes: the returned attributes are merged into the call's attributes (and
    /// `wrote` is set when they change anything). An attribute outside the extension's own
    /// namespace (a connector's, `local.groups`) makes the whole answer invalid: the call
    /// fails closed (500 on the proxy path), nothing is merged.
    pub async fn load_attributes<R: Borrow<GuestRequest> + Send>(
        &self,
        call: HookCall<R>,
    ) -> Result<Called<()>, CallError> {
        let ext = self.extension.clone();
        self.run(call, Extra::None, move |r, view| {
            let loaded = expect!(r, Ret::Attributes(a) => a);
            // Checked before anything is merged: a refused answer writes nothing.
            let mut checked = Vec::with_capacity(loaded.len());
            for (name, values) in loaded {
                let attr = AttrRef::parse(&name)?;
                ext.may_write(&attr)?;
                checked.push((attr.key().to_string(), values));
            }
            for (name, values) in checked {
                let v = match <[String; 1]>::try_from(values) {
                    Ok([one]) => Value::String(one),
                    Err(many) => Value::Array(many.into_iter().map(Value::String).collect()),
                };
                if view.attrs.get(&name) != Some(&v) {
                    view.attrs.insert(name, v);
                    view.wrote = true;
                }
            }
            Ok(())
        })
        .await
    }

    /// CreateHeaders: names and values checked; the gateway's own headers refused.
    pub async fn create_headers<R: Borrow<GuestRequest> + Send>(
        &self,
        call: HookCall<R>,
    ) -> Result<Called<Vec<(HeaderName, http::HeaderValue)>>, CallError> {
        self.run(call, Extra::None, |r, _| {
            let fields = expect!(r, Ret::Fields(f) => f);
            upstream_fields(fields)
        })
        .await
    }

    /// ModifyResponse: the response to send instead of `upstream`. Status 100–599, valid
    /// headers, no hop-by-hop header; `content-length` and `transfer-encoding` are dropped
    /// (the gateway frames the body it sends).
    pub async fn modify_response<R: Borrow<GuestRequest> + Send>(
        &self,
        call: HookCall<R>,
        upstream: HttpResponse,
    ) -> Result<Called<http::Response<bytes::Bytes>>, CallError> {
        self.run(call, Extra::Response(upstream), |r, _| {
            let out = expect!(r, Ret::Response(r) => r);
            built_response(out.status, out.headers, out.body)
        })
        .await
    }

    /// ModifyRequest: the upstream request to send instead of `upstream`. Header names and
    /// values must be valid and none may be one the gateway manages (`edge::names::reserved`);
    /// then `check` applies the app's rules (the path, the identity headers): an `Err` from
    /// it makes the answer invalid like any other.
    pub async fn modify_request<T, R: Borrow<GuestRequest> + Send>(
        &self,
        call: HookCall<R>,
        upstream: UpstreamRequest,
        check: impl FnOnce(ModifiedRequest) -> Result<T, String> + Send,
    ) -> Result<Called<T>, CallError> {
        self.run(call, Extra::Upstream(upstream), |r, _| {
            let out = expect!(r, Ret::Upstream(u) => u);
            check(ModifiedRequest {
                path: out.path,
                query: out.query,
                headers: upstream_fields(out.headers)?,
            })
        })
        .await
    }

    /// HandleUnauthorized: the answer to a denied request (status 100–599, valid headers).
    pub async fn handle_unauthorized<R: Borrow<GuestRequest> + Send>(
        &self,
        call: HookCall<R>,
    ) -> Result<Called<GuestResponse>, CallError> {
        self.run(call, Extra::None, |r, _| {
            let resp = expect!(r, Ret::Respond(r) => r);
            check_guest_response(&resp)?;
            Ok(resp)
        })
        .await
    }

    /// EvalMaxLifetime or EvalIdleTimeout (per `self.kind`): a number of seconds, at least 1
    /// (0 is an invalid result). The caller caps it at the configured maximum.
    pub async fn eval_seconds<R: Borrow<GuestRequest> + Send>(
        &self,
        call: HookCall<R>,
    ) -> Result<Called<std::time::Duration>, CallError> {
        self.run(
            call,
            Extra::None,
            |r, _| match expect!(r, Ret::Seconds(s) => s) {
                0 => Err("returned 0 seconds (a session must live at least 1 s)".into()),
                s => Ok(std::time::Duration::from_secs(u64::from(s))),
            },
        )
        .await
    }

    /// Serve: the answer of an `apis[]` endpoint to the request and its `body`. Checked as a
    /// ModifyResponse answer is, its body at most [`MAX_SERVED_BODY`]; then `check` applies
    /// the caller's rules (the gateway's own cookies): an `Err` makes the answer invalid.
    pub async fn serve<R: Borrow<GuestRequest> + Send>(
        &self,
        call: HookCall<R>,
        body: Vec<u8>,
        check: impl FnOnce(&mut http::Response<bytes::Bytes>) -> Result<(), String> + Send,
    ) -> Result<Called<http::Response<bytes::Bytes>>, CallError> {
        self.run(call, Extra::Body(body), |r, _| {
            let out = expect!(r, Ret::Served(s) => s);
            if out.body.len() > MAX_SERVED_BODY {
                return Err(format!(
                    "the response body has {} bytes, more than {MAX_SERVED_BODY}",
                    out.body.len()
                ));
            }
            let mut resp = built_response(out.status, out.headers, out.body)?;
            check(&mut resp)?;
            Ok(resp)
        })
        .await
    }

    /// UpstreamLogin: the upstream cookies to keep for the app, checked
    /// (`check_upstream_cookies`, with the gateway's own cookie names `own`). The guest's Err
    /// is a failed call like an invalid answer. During the call `http-fetch` may also reach
    /// `upstream_url`'s origin.
    pub async fn upstream_login<R: Borrow<GuestRequest> + Send>(
        &self,
        call: HookCall<R>,
        upstream_url: String,
        client: super::host::HttpClient,
        own: &[&str],
    ) -> Result<Called<Vec<(String, String)>>, CallError> {
        self.run(
            call,
            Extra::UpstreamUrl(upstream_url, Box::new(client)),
            |r, _| {
                let cookies = expect!(r, Ret::Login(l) => l)
                    .map_err(|why| format!("the guest reported a failed login: {why}"))?;
                check_upstream_cookies(&cookies, own)?;
                Ok(cookies)
            },
        )
        .await
    }

    /// Runs the call, then `check` on its result; counts and logs the outcome. The call's
    /// future (a wasm instantiation and call) is several KiB: boxed, so that it is not part
    /// of every caller's future, which is moved whole on every request, hook or not.
    async fn run<T, R: Borrow<GuestRequest> + Send>(
        &self,
        call: HookCall<R>,
        extra: Extra,
        check: impl FnOnce(Ret, &mut View) -> Result<T, String>,
    ) -> Result<Called<T>, CallError> {
        Box::pin(self.call_guest(call, extra, check)).await
    }

    async fn call_guest<T, R: Borrow<GuestRequest> + Send>(
        &self,
        call: HookCall<R>,
        extra: Extra,
        check: impl FnOnce(Ret, &mut View) -> Result<T, String>,
    ) -> Result<Called<T>, CallError> {
        let ext = self.extension.clone();
        let request_id = call.request.borrow().id.clone();
        let started = Instant::now();
        let limits = ext.limits;
        let state = HostState {
            limiter: MemoryLimiter::new(limits.memory_bytes),
            ext: ext.clone(),
            hook: self.kind,
            request_id: request_id.clone(),
            attrs: call.attrs,
            wrote: false,
            deadline: started + limits.timeout,
            wasi: None,
            upstream_origin: match &extra {
                Extra::UpstreamUrl(u, client) => {
                    super::host::Origin::of(u).map(|o| (o, (**client).clone()))
                }
                _ => None,
            },
        };
        let mut store = Store::new(ext.pre.engine(), state);
        store.limiter(|s| &mut s.limiter);
        // Yield to the async runtime at every tick; the deadline itself is the timeout below.
        store.set_epoch_deadline(1);
        store.epoch_deadline_async_yield_and_update(1);
        let kind = self.kind;
        let request = call.request.borrow();
        let span = crate::telemetry::traces::extension_span(&ext.name, kind.func_name());
        let outcome = tokio::time::timeout(limits.timeout, async {
            let instance = ext
                .pre
                .instantiate_async(&mut store)
                .await
                .map_err(Failure::Instantiate)?;
            invoke(&ext.indices, kind, &mut store, &instance, request, extra)
                .await
                .map_err(Failure::Call)
        })
        .instrument(span)
        .await;
        let seconds = started.elapsed().as_secs_f64();
        let result = match outcome {
            Err(_) => Err(CallError::Timeout(limits.timeout.as_millis())),
            Ok(Err(_)) if store.data().limiter.exceeded => {
                Err(CallError::Memory(limits.memory_bytes >> 20))
            }
            // Pool exhaustion and traps in start functions end up here.
            Ok(Err(Failure::Instantiate(e))) => Err(CallError::Unavailable(first_line(&e))),
            // `wasi:cli/exit` ends the call, never the gateway: a failed call like a trap.
            Ok(Err(Failure::Call(e))) => match e.downcast_ref::<wasmtime_wasi::I32Exit>() {
                Some(exit) => Err(CallError::Trap(format!(
                    "the guest called exit (status {})",
                    exit.0
                ))),
                None => Err(CallError::Trap(first_line(&e))),
            },
            Ok(Ok(ret)) => {
                let data = store.into_data();
                let mut view = View {
                    attrs: data.attrs,
                    wrote: data.wrote,
                };
                check(ret, &mut view)
                    .map(|value| Called {
                        value,
                        attrs: view.attrs,
                        wrote: view.wrote,
                    })
                    .map_err(CallError::Invalid)
            }
        };
        match &result {
            Ok(_) => ext.ok_series(kind).record_ok(seconds),
            Err(e) => {
                let outcome = e.outcome();
                ext.services
                    .metrics
                    .extension_call(&ext.name, kind.func_name(), outcome, seconds);
                tracing::error!(
                extension = %ext.name,
                hook = kind.func_name(),
                request_id = %request_id,
                outcome,
                error = %e,
                elapsed_ms = (seconds * 1000.0) as u64,
                    "extension call failed; failing closed"
                );
            }
        }
        result
    }
}

/// The attributes a call left, for `check` to amend.
pub struct View {
    pub attrs: Attributes,
    pub wrote: bool,
}

enum Failure {
    Instantiate(wasmtime::Error),
    Call(wasmtime::Error),
}

fn first_line(e: &wasmtime::Error) -> String {
    // The root cause carries the trap message ("wasm trap: unreachable", ...).
    let root = e.root_cause().to_string();
    let top = e.to_string();
    let s = if root == top {
        top
    } else {
        format!("{top}: {root}")
    };
    s.lines().next().unwrap_or_default().to_string()
}

macro_rules! call_hook {
    ($indices:expr, $field:ident, $method:ident, $store:expr, $instance:expr, $($arg:expr),+) => {{
        let idx = $indices
            .$field
            .as_ref()
            .ok_or_else(|| wasmtime::format_err!("the component does not export this hook"))?;
        let guest = idx.load(&mut *$store, $instance)?;
        guest.$method(&mut *$store, $($arg),+).await?
    }};
}

async fn invoke(
    indices: &Indices,
    kind: HookKind,
    store: &mut Store<HostState>,
    instance: &Instance,
    req: &GuestRequest,
    extra: Extra,
) -> wasmtime::Result<Ret> {
    let token = || match &extra {
        Extra::Token(t) => Ok(t.clone()),
        _ => Err(wasmtime::format_err!("internal: token context missing")),
    };
    Ok(match kind {
        HookKind::IsAuthenticated => Ret::Bool(call_hook!(
            indices,
            is_authenticated,
            call_is_authenticated,
            store,
            instance,
            req
        )),
        HookKind::IsAuthorized => Ret::Bool(call_hook!(
            indices,
            is_authorized,
            call_is_authorized,
            store,
            instance,
            req
        )),
        HookKind::Authenticate => Ret::Action(call_hook!(
            indices,
            authenticate,
            call_authenticate,
            store,
            instance,
            req
        )),
        HookKind::BackchannelAuthenticate => Ret::Subject(call_hook!(
            indices,
            backchannel_authenticate,
            call_backchannel_authenticate,
            store,
            instance,
            req
        )),
        HookKind::BuildIdTokenClaims => {
            let t = token()?;
            Ret::Claims(call_hook!(
                indices,
                build_id_token_claims,
                call_build_id_token_claims,
                store,
                instance,
                req,
                &t
            ))
        }
        HookKind::BuildAccessTokenClaims => {
            let t = token()?;
            Ret::Claims(call_hook!(
                indices,
                build_access_token_claims,
                call_build_access_token_claims,
                store,
                instance,
                req,
                &t
            ))
        }
        HookKind::BuildUserInfoClaims => {
            let t = token()?;
            Ret::Claims(call_hook!(
                indices,
                build_userinfo_claims,
                call_build_userinfo_claims,
                store,
                instance,
                req,
                &t
            ))
        }
        HookKind::LoadAttributes => Ret::Attributes(call_hook!(
            indices,
            load_attributes,
            call_load_attributes,
            store,
            instance,
            req
        )),
        HookKind::CreateHeaders => Ret::Fields(call_hook!(
            indices,
            create_headers,
            call_create_headers,
            store,
            instance,
            req
        )),
        HookKind::ModifyResponse => {
            let Extra::Response(resp) = &extra else {
                return Err(wasmtime::format_err!("internal: response missing"));
            };
            Ret::Response(call_hook!(
                indices,
                modify_response,
                call_modify_response,
                store,
                instance,
                req,
                resp
            ))
        }
        HookKind::ModifyRequest => {
            let Extra::Upstream(up) = &extra else {
                return Err(wasmtime::format_err!("internal: upstream request missing"));
            };
            Ret::Upstream(call_hook!(
                indices,
                modify_request,
                call_modify_request,
                store,
                instance,
                req,
                up
            ))
        }
        HookKind::HandleUnauthorized => Ret::Respond(call_hook!(
            indices,
            handle_unauthorized,
            call_handle_unauthorized,
            store,
            instance,
            req
        )),
        HookKind::EvalMaxLifetime => Ret::Seconds(call_hook!(
            indices,
            eval_max_lifetime,
            call_eval_max_lifetime,
            store,
            instance,
            req
        )),
        HookKind::UpstreamLogin => {
            let Extra::UpstreamUrl(url, _) = &extra else {
                return Err(wasmtime::format_err!("internal: upstream URL missing"));
            };
            Ret::Login(call_hook!(
                indices,
                upstream_login,
                call_upstream_login,
                store,
                instance,
                req,
                url
            ))
        }
        HookKind::EvalIdleTimeout => Ret::Seconds(call_hook!(
            indices,
            eval_idle_timeout,
            call_eval_idle_timeout,
            store,
            instance,
            req
        )),
        HookKind::Serve => {
            let Extra::Body(body) = &extra else {
                return Err(wasmtime::format_err!("internal: request body missing"));
            };
            Ret::Served(call_hook!(
                indices, serve, call_serve, store, instance, req, body
            ))
        }
    })
}

#[cfg(test)]
mod upstream_cookie_tests {
    use super::*;

    fn c(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn upstream_cookies_are_tokens_with_cookie_octets_within_bounds() {
        let own = ["tessera_session", "tessera_login"];
        let ok = |pairs: &[(&str, &str)]| check_upstream_cookies(&c(pairs), &own);
        assert!(ok(&[
            ("JSESSIONID", "A1b2-._~+/="),
            ("q", "\"quoted\""),
            ("e", "")
        ])
        .is_ok());
        for (pairs, why) in [
            (vec![], "the login returned no cookie"),
            (vec![("a b", "1")], "cookie name `a b` is not a token"),
            (vec![("a=b", "1")], "cookie name `a=b` is not a token"),
            (vec![("", "1")], "cookie name `` is not a token"),
            (vec![("a\n", "1")], "cookie name `a\\n` is not a token"),
            (
                vec![("a", "x;y")],
                "the value of cookie `a` has a character",
            ),
            (
                vec![("a", "x,y")],
                "the value of cookie `a` has a character",
            ),
            (
                vec![("a", "x y")],
                "the value of cookie `a` has a character",
            ),
            (
                vec![("a", "\"x")],
                "the value of cookie `a` has a character",
            ),
            (vec![("a", "é")], "the value of cookie `a` has a character"),
            (vec![("a", "1"), ("a", "2")], "cookie `a` is returned twice"),
            (
                vec![("tessera_login", "1")],
                "cookie `tessera_login` is one of the gateway's own cookies",
            ),
        ] {
            let err = ok(&pairs).unwrap_err();
            assert!(err.starts_with(why), "{pairs:?}: {err}");
        }
        let names: Vec<String> = (0..21).map(|i| format!("c{i}")).collect();
        let many: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "1")).collect();
        assert!(ok(&many[..20]).is_ok());
        assert_eq!(
            ok(&many).unwrap_err(),
            "21 cookies, more than the 20 an upstream login may keep"
        );
        // 4096 bytes of `name=value` pass, one more does not.
        let fits = "v".repeat(4096 - 2);
        assert!(ok(&[("a", &fits)]).is_ok());
        let over = "v".repeat(4096 - 1);
        assert!(ok(&[("a", &over)])
            .unwrap_err()
            .starts_with("4097 bytes of cookies"));
    }
}
