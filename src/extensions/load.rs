//! Loading a component: read, compile (or reuse cached code), check it against the contract,
//! and prepare the `InstancePre` every call instantiates from.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use wasmtime::component::{HasSelf, InstancePre, Linker};

use super::bindings::exports::tessera::extension as ex;
use super::bindings::AllHooks;
use super::host::{HostState, HttpClient};
use super::{engine, HookKind, Limits, PACKAGE};
use crate::connectors::Connectors;
use crate::secrets::SecretProvider;
use crate::store::Store;
use crate::telemetry::metrics::Metrics;

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

/// A loaded component with its settings.
pub struct Extension {
    /// The `serviceExtensions` name, or the file as written for a component named only by
    /// file. Logs, metrics and the cache namespace use it.
    pub name: String,
    pub file: PathBuf,
    pub limits: Limits,
    pub allowed_hosts: Vec<HostPattern>,
    pub metadata: Vec<(String, String)>,
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
        }
    }
}

/// Settings of one extension, from `serviceExtensions` or defaults.
pub struct Settings {
    pub name: String,
    pub limits: Limits,
    pub allowed_hosts: Vec<HostPattern>,
    pub metadata: Vec<(String, String)>,
}

impl Extension {
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
            if !allowed_import(name) {
                return Err(format!(
                    "`{shown}` imports `{name}`, which Tessera does not provide: extensions may import only {PACKAGE}/host (build with WASI stubbed or disabled, see extensions/README.md)"
                ));
            }
        }
        let mut linker: Linker<HostState> = Linker::new(engine);
        AllHooks::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(|e| format!("cannot link the host API: {e}"))?;
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
            pre,
            indices,
            services,
        })
    }

    pub fn exports(&self, kind: HookKind) -> bool {
        self.indices.has(kind)
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
