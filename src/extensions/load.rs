//! Loading a component: read, compile (or reuse cached code), check it against the contract,
//! and prepare the `InstancePre` every call instantiates from.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use wasmtime::component::{HasSelf, InstancePre, Linker};

use super::bindings::exports::tessera::extension as ex;
use super::bindings::AllHooks;
use super::host::{HostState, HttpClient};
use super::{engine, HookKind, Limits, PACKAGE};
use crate::claims::AttrRef;
use crate::connectors::Connectors;
use crate::secrets::SecretProvider;
use crate::store::Store;
use crate::telemetry::metrics::{HookCallSeries, Metrics};

/// What the host API reaches: shared by all extensions of one configuration.
pub struct Services {
    pub secrets: Arc<SecretProvider>,
    /// The shared store (the session store: memory or Redis) behind `cache-get`/`cache-set`.
    pub cache: Arc<dyn Store>,
    pub connectors: Connectors,
    pub metrics: Arc<Metrics>,
    pub http: HttpClient,
}

/// An allowed outbound host: `api.example.com` (any port), `api.example.com:8443`, or
/// `*.example.com` (any subdomain, not the domain itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    host: String,
    wildcard: bool,
    port: Option<u16>,
}

impl HostPattern {
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim().to_ascii_lowercase();
        let bad = || {
            format!("`{s}` is not a host: write `api.example.com`, `api.example.com:8443` or `*.example.com`")
        };
        let (host, port) = match t.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => {
                (h.to_string(), Some(p.parse().map_err(|_| bad())?))
            }
            _ => (t.clone(), None),
        };
        let (wildcard, host) = match host.strip_prefix("*.") {
            Some(rest) => (true, rest.to_string()),
            None => (false, host),
        };
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        if host.is_empty() || !host.split('.').all(label_ok) {
            return Err(bad());
        }
        Ok(Self {
            host,
            wildcard,
            port,
        })
    }

    pub fn matches(&self, host: &str, port: u16) -> bool {
        let host = host.to_ascii_lowercase();
        let host_ok = if self.wildcard {
            host.strip_suffix(&self.host)
                .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.'))
        } else {
            host == self.host
        };
        host_ok && self.port.is_none_or(|p| p == port)
    }
}

/// A secret an extension may read: `okta.clientSecret`, or with `*` standing for one or more
/// whole segments, never the first (`users.*.sha256`). Names are compared as written, before
/// the provider maps them (`env://`: `users.alice.sha256` -> `USERS_ALICE_SHA256`); a fixed
/// first segment keeps every match under one prefix of environment variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretPattern {
    segments: Vec<Option<String>>,
}

impl SecretPattern {
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let bad = |why: &str| {
            format!(
                "`{s}` is not a secret name: {why} (write `okta.clientSecret` or `users.*.sha256`)"
            )
        };
        let mut segments = Vec::new();
        for seg in t.split('.') {
            match seg {
                "" => return Err(bad("it has an empty segment")),
                "*" => segments.push(None),
                _ if seg.contains('*') => {
                    return Err(bad("`*` must be a whole segment"));
                }
                _ if seg.chars().any(|c| c.is_control() || c.is_whitespace()) => {
                    return Err(bad("it contains white space or a control character"));
                }
                _ => segments.push(Some(seg.to_string())),
            }
        }
        if segments.first().is_some_and(Option::is_none) {
            return Err(bad("the first segment must be a name, not `*`"));
        }
        Ok(Self { segments })
    }

    pub fn matches(&self, name: &str) -> bool {
        let parts: Vec<&str> = name.split('.').collect();
        !parts.iter().any(|p| p.is_empty()) && matches_from(&self.segments, &parts)
    }
}

/// `*` takes one or more segments (backtracking; patterns are a few segments long).
fn matches_from(pattern: &[Option<String>], name: &[&str]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((Some(lit), rest)) => name
            .split_first()
            .is_some_and(|(n, tail)| n == lit && matches_from(rest, tail)),
        Some((None, rest)) => (1..=name.len()).any(|k| matches_from(rest, &name[k..])),
    }
}

/// How many refusals an extension logs (each name once); a guest asking for ever new names
/// must not grow memory or flood the log.
const MAX_REFUSALS_LOGGED: usize = 256;

/// A loaded component with its settings.
pub struct Extension {
    /// The `serviceExtensions` name, or the file as written for a component named only by
    /// file. Logs, metrics and the cache namespace use it.
    pub name: String,
    pub file: PathBuf,
    pub limits: Limits,
    pub allowed_hosts: Vec<HostPattern>,
    pub metadata: Vec<(String, String)>,
    /// The secrets `host.secret` may read; empty: none.
    pub secrets: Vec<SecretPattern>,
    /// The attribute namespace the extension may write (`<namespace>.<name>`): its
    /// `serviceExtensions` name; `None` for a component named only by file (it may write none).
    pub namespace: Option<String>,
    /// Refusals already logged (`secret:<name>`, `attribute:<name>`), to log each once.
    refusals_logged: Mutex<HashSet<String>>,
    /// How many stdout/stderr lines of WASI guests may still be logged this second.
    pub(super) output_budget: super::wasi::OutputBudget,
    /// Per hook (indexed by `HookKind as usize`), the metric series of a successful call,
    /// resolved at the first one.
    ok_series: Box<[OnceLock<HookCallSeries>]>,
    pub(super) pre: InstancePre<HostState>,
    pub(super) indices: Indices,
    pub(super) services: Arc<Services>,
}

/// Where each exported hook's functions are, looked up once at load.
#[derive(Default)]
pub(super) struct Indices {
    pub is_authenticated: Option<ex::is_authenticated::GuestIndices>,
    pub authenticate: Option<ex::authenticate::GuestIndices>,
    pub backchannel_authenticate: Option<ex::backchannel_authenticate::GuestIndices>,
    pub build_id_token_claims: Option<ex::build_id_token_claims::GuestIndices>,
    pub build_access_token_claims: Option<ex::build_access_token_claims::GuestIndices>,
    pub build_userinfo_claims: Option<ex::build_userinfo_claims::GuestIndices>,
    pub is_authorized: Option<ex::is_authorized::GuestIndices>,
    pub load_attributes: Option<ex::load_attributes::GuestIndices>,
    pub create_headers: Option<ex::create_headers::GuestIndices>,
    pub modify_response: Option<ex::modify_response::GuestIndices>,
    pub modify_request: Option<ex::modify_request::GuestIndices>,
    pub handle_unauthorized: Option<ex::handle_unauthorized::GuestIndices>,
    pub eval_max_lifetime: Option<ex::eval_max_lifetime::GuestIndices>,
    pub eval_idle_timeout: Option<ex::eval_idle_timeout::GuestIndices>,
    pub serve: Option<ex::serve::GuestIndices>,
    pub upstream_login: Option<ex::upstream_login::GuestIndices>,
}

impl Indices {
    fn find(pre: &InstancePre<HostState>) -> Self {
        Indices {
            is_authenticated: ex::is_authenticated::GuestIndices::new(pre).ok(),
            authenticate: ex::authenticate::GuestIndices::new(pre).ok(),
            backchannel_authenticate: ex::backchannel_authenticate::GuestIndices::new(pre).ok(),
            build_id_token_claims: ex::build_id_token_claims::GuestIndices::new(pre).ok(),
            build_access_token_claims: ex::build_access_token_claims::GuestIndices::new(pre).ok(),
            build_userinfo_claims: ex::build_userinfo_claims::GuestIndices::new(pre).ok(),
            is_authorized: ex::is_authorized::GuestIndices::new(pre).ok(),
            load_attributes: ex::load_attributes::GuestIndices::new(pre).ok(),
            create_headers: ex::create_headers::GuestIndices::new(pre).ok(),
            modify_response: ex::modify_response::GuestIndices::new(pre).ok(),
            modify_request: ex::modify_request::GuestIndices::new(pre).ok(),
            handle_unauthorized: ex::handle_unauthorized::GuestIndices::new(pre).ok(),
            eval_max_lifetime: ex::eval_max_lifetime::GuestIndices::new(pre).ok(),
            eval_idle_timeout: ex::eval_idle_timeout::GuestIndices::new(pre).ok(),
            serve: ex::serve::GuestIndices::new(pre).ok(),
            upstream_login: ex::upstream_login::GuestIndices::new(pre).ok(),
        }
    }

    fn has(&self, kind: HookKind) -> bool {
        match kind {
            HookKind::IsAuthenticated => self.is_authenticated.is_some(),
            HookKind::Authenticate => self.authenticate.is_some(),
            HookKind::BackchannelAuthenticate => self.backchannel_authenticate.is_some(),
            HookKind::BuildIdTokenClaims => self.build_id_token_claims.is_some(),
            HookKind::BuildAccessTokenClaims => self.build_access_token_claims.is_some(),
            HookKind::BuildUserInfoClaims => self.build_userinfo_claims.is_some(),
            HookKind::IsAuthorized => self.is_authorized.is_some(),
            HookKind::LoadAttributes => self.load_attributes.is_some(),
            HookKind::CreateHeaders => self.create_headers.is_some(),
            HookKind::ModifyResponse => self.modify_response.is_some(),
            HookKind::ModifyRequest => self.modify_request.is_some(),
            HookKind::HandleUnauthorized => self.handle_unauthorized.is_some(),
            HookKind::EvalMaxLifetime => self.eval_max_lifetime.is_some(),
            HookKind::EvalIdleTimeout => self.eval_idle_timeout.is_some(),
            HookKind::Serve => self.serve.is_some(),
            HookKind::UpstreamLogin => self.upstream_login.is_some(),
        }
    }
}

/// Settings of one extension, from `serviceExtensions` or defaults.
pub struct Settings {
    pub name: String,
    pub limits: Limits,
    pub allowed_hosts: Vec<HostPattern>,
    pub metadata: Vec<(String, String)>,
    pub secrets: Vec<SecretPattern>,
    /// `Some(name)` for a `serviceExtensions` entry; `None` for a component named by file only.
    pub namespace: Option<String>,
}

impl Extension {
    /// The metric series a successful call of `kind` counts into.
    pub(super) fn ok_series(&self, kind: HookKind) -> &HookCallSeries {
        self.ok_series[kind as usize].get_or_init(|| {
            self.services
                .metrics
                .extension_ok_series(&self.name, kind.func_name())
        })
    }

    /// Reads, compiles and checks the component at `file`. The error names the file and says
    /// what is wrong; it becomes a configuration error at the referring position.
    pub fn load(file: &Path, settings: Settings, services: Arc<Services>) -> Result<Self, String> {
        let shown = file.display();
        let engine =
            engine::engine().map_err(|e| format!("WebAssembly engine unavailable: {e}"))?;
        let bytes = std::fs::read(file).map_err(|e| format!("cannot read `{shown}`: {e}"))?;
        check_kind(&bytes).map_err(|e| format!("`{shown}` {e}"))?;
        let component = engine::compile(engine, &bytes)
            .map_err(|e| format!("`{shown}` is not a valid component: {}", first_line(&e)))?;
        let ty = component.component_type();
        for (name, _) in ty.imports(engine) {
            if !allowed_import(name) && !super::wasi::allowed_import(name) {
                return Err(format!(
                    "`{shown}` imports `{name}`, which Tessera does not provide: extensions may import only {PACKAGE}/host and the WASI 0.2 interfaces of wasi:cli, wasi:clocks, wasi:random, wasi:io, wasi:filesystem and wasi:sockets (see extensions/README.md)"
                ));
            }
        }
        let mut linker: Linker<HostState> = Linker::new(engine);
        AllHooks::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(|e| format!("cannot link the host API: {e}"))?;
        // Deny-by-default WASI (see `wasi`): linked for every component, used only by those
        // that import it.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| format!("cannot link WASI: {e}"))?;
        let pre = linker.instantiate_pre(&component).map_err(|e| {
            format!(
                "`{shown}` does not match the host API: {}",
                first_line(&e.to_string())
            )
        })?;
        let indices = Indices::find(&pre);
        Ok(Extension {
            name: settings.name,
            file: file.to_path_buf(),
            limits: settings.limits,
            allowed_hosts: settings.allowed_hosts,
            metadata: settings.metadata,
            secrets: settings.secrets,
            namespace: settings.namespace,
            refusals_logged: Mutex::new(HashSet::new()),
            output_budget: Default::default(),
            ok_series: HookKind::ALL.iter().map(|_| OnceLock::new()).collect(),
            pre,
            indices,
            services,
        })
    }

    pub fn exports(&self, kind: HookKind) -> bool {
        self.indices.has(kind)
    }

    /// Whether the configuration lets this extension read secret `name`.
    pub fn may_read_secret(&self, name: &str) -> bool {
        self.secrets.iter().any(|p| p.matches(name))
    }

    /// Whether this extension may write attribute `attr` (its own namespace only); the error
    /// says why not, for the guest and the log.
    pub fn may_write(&self, attr: &AttrRef) -> Result<(), String> {
        match &self.namespace {
            Some(ns) if attr.connector() == ns => Ok(()),
            Some(ns) => Err(format!(
                "attribute `{}` is outside this extension's namespace: extension `{ns}` may set only `{ns}.<name>`",
                attr.key()
            )),
            None => Err(format!(
                "attribute `{}` refused: `{}` is named only by `file`, so it has no attribute namespace; declare it in serviceExtensions and set `<its name>.<name>`",
                attr.key(),
                self.name
            )),
        }
    }

    /// True the first time `what` is refused (bounded), so each refusal is logged once.
    pub(super) fn first_refusal(&self, what: String) -> bool {
        let mut seen = self
            .refusals_logged
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        seen.len() < MAX_REFUSALS_LOGGED && seen.insert(what)
    }

    /// The hooks this component exports, for error messages.
    pub fn exported(&self) -> BTreeSet<HookKind> {
        HookKind::ALL
            .into_iter()
            .filter(|k| self.exports(*k))
            .collect()
    }
}

impl std::fmt::Debug for Extension {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Extension")
            .field("name", &self.name)
            .field("file", &self.file)
            .field("limits", &self.limits)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

/// `tessera:extension/host@0.1.x` and the type-only `types` interface.
fn allowed_import(name: &str) -> bool {
    ["host", "types"].iter().any(|iface| {
        name.strip_prefix(&format!("{PACKAGE}/{iface}@"))
            .is_some_and(|v| v.starts_with("0.1."))
    })
}

/// A component, or WAT text (tests); a core module gets a precise message.
fn check_kind(bytes: &[u8]) -> Result<(), String> {
    const MAGIC: &[u8] = b"\0asm";
    if !bytes.starts_with(MAGIC) {
        let text = std::str::from_utf8(bytes).ok().map(str::trim_start);
        if text.is_some_and(|t| t.starts_with('(') || t.starts_with(";;")) {
            return Ok(());
        }
        return Err("is not a WebAssembly file".into());
    }
    match bytes.get(4..8) {
        Some([1, 0, 0, 0]) => Err(
            "is a core WebAssembly module, not a component: wrap it with `wasm-tools component new` or `jco new` (see extensions/README.md)"
                .into(),
        ),
        Some([_, _, 1, 0]) => Ok(()),
        _ => Err("is a WebAssembly file of an unknown version".into()),
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::SecretPattern;

    #[test]
    fn secret_patterns() {
        let p = SecretPattern::parse("users.*.sha256").unwrap();
        assert!(p.matches("users.alice.sha256"));
        assert!(p.matches("users.alice.smith.sha256"));
        assert!(!p.matches("users.sha256"));
        assert!(!p.matches("users..sha256"));
        assert!(!p.matches("users.alice.sha256.x"));
        assert!(!p.matches("aws.secret_access_key"));
        let exact = SecretPattern::parse("okta.secret").unwrap();
        assert!(exact.matches("okta.secret"));
        assert!(!exact.matches("OKTA.secret"));
        assert!(!exact.matches("okta.secret.x"));
        let tail = SecretPattern::parse("hr.*").unwrap();
        assert!(tail.matches("hr.a") && tail.matches("hr.a.b") && !tail.matches("hr"));
        for bad in ["*", "*.x", "a..b", "a.b*", "", "a. b"] {
            assert!(SecretPattern::parse(bad).is_err(), "{bad}");
        }
    }
}
