#![allow(non_snake_case)] // field names are the YAML keys, e.g. `redirectURL`
//! The YAML contract as Rust types. They mirror the file (camelCase keys) and carry no
//! behaviour: `compile` turns them into the runtime types the hot path reads.
//! The JSON schema published for editors is generated from these same types.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

/// A whole Tessera configuration file.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Format version of this file; must be 1.
    pub version: u32,
    pub http: Option<HttpConfig>,
    /// Named TLS profiles, referenced by `http.tls` and by apps' `tls`.
    #[serde(default)]
    pub tls: BTreeMap<String, TlsProfile>,
    pub logger: Option<LoggerConfig>,
    pub health: Option<HealthConfig>,
    pub telemetry: Option<TelemetryConfig>,
    pub session: Option<SessionConfig>,
    #[serde(default)]
    pub connectors: Vec<ConnectorConfig>,
    #[serde(default)]
    pub apps: Vec<AppConfig>,
}

/// The listener.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// `host:port` or `:port` (all interfaces). Env `TESSERA_HTTP_ADDRESS` overrides it.
    pub address: Option<String>,
    /// Name of a TLS profile with `certFile` and `keyFile`; omit for plain HTTP (dev only).
    pub tls: Option<String>,
    /// How long in-flight requests may take to finish after SIGTERM/SIGINT (default 10).
    pub shutdownTimeoutSeconds: Option<u64>,
}

/// Certificates and trust for one TLS use.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsProfile {
    /// PEM certificate chain (server side).
    pub certFile: Option<String>,
    /// PEM private key (server side).
    pub keyFile: Option<String>,
    /// PEM CA bundle trusted for upstream connections (client side).
    pub caFile: Option<String>,
    /// Lowest TLS version accepted: "1.2" (default) or "1.3".
    pub minVersion: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoggerConfig {
    /// trace | debug | info (default) | warn | error, or an `EnvFilter` directive.
    pub level: Option<String>,
    /// json (default) | text
    pub format: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// Path answering `{"status":"up"}` on every host (default `/status`).
    pub location: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    pub metrics: Option<MetricsConfig>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Path serving Prometheus metrics (text format), e.g. `/metrics`.
    pub location: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    pub cookie: Option<CookieConfig>,
    /// Absolute session lifetime (default 28800 = 8 h).
    pub maxLifetimeSeconds: Option<u64>,
    /// A session unused this long ends (default 1800 = 30 min).
    pub idleTimeoutSeconds: Option<u64>,
    /// `default` = in memory.
    pub store: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CookieConfig {
    /// Cookie name (default `tessera_session`).
    pub name: Option<String>,
    /// Cookie domain; empty = host-only cookie (default).
    pub domain: Option<String>,
    /// Lax (default) | Strict | None (None requires TLS).
    pub sameSite: Option<String>,
}

/// An identity source. `type` selects the kind.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ConnectorConfig {
    /// Built-in user store: users with argon2id password hashes and attributes.
    Local(LocalConnectorConfig),
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LocalConnectorConfig {
    /// Unique name; the session attributes of its users are `<name>.<attribute>`.
    pub name: String,
    #[serde(default)]
    pub users: Vec<LocalUserConfig>,
    pub throttle: Option<ThrottleConfig>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LocalUserConfig {
    pub username: String,
    /// PHC string made by `tessera hash-password` (`$argon2id$v=19$...`).
    pub passwordHash: String,
    /// Attributes put in the session (strings, numbers, booleans or lists of strings).
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, serde_json::Value>")]
    pub attributes: BTreeMap<String, serde_yaml_ng::Value>,
}

/// Failed-login throttling.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ThrottleConfig {
    /// Failed attempts per username allowed in the window (default 5; per client IP: 4×).
    pub maxFailures: Option<u32>,
    /// Length of the counting window, and of the lock-out after it is exceeded (default 900).
    pub windowSeconds: Option<u64>,
}

/// An application behind the gateway. `type` selects the kind.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum AppConfig {
    /// A web app fronted as a reverse proxy.
    Proxy(ProxyAppConfig),
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProxyAppConfig {
    pub name: String,
    /// `host/path`, `host` or `/path`: requests whose host and path prefix match go to this app.
    pub routePatterns: Vec<String>,
    /// `http://` or `https://` origin (optionally with a base path) of the protected app.
    pub upstream: String,
    /// TLS profile whose `caFile` is trusted for an `https` upstream.
    pub tls: Option<String>,
    /// Send the client's Host header upstream instead of the upstream's.
    #[serde(default)]
    pub preserveHost: bool,
    /// Where a denied user is redirected; default: a 403 page.
    pub unauthorizedPage: Option<String>,
    /// Identity headers injected into upstream requests; client-sent copies are removed.
    #[serde(default)]
    pub headers: Vec<HeaderConfig>,
    pub policies: Vec<PolicyConfig>,
    pub logout: Option<LogoutConfig>,
    pub timeouts: Option<TimeoutsConfig>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeaderConfig {
    pub name: String,
    /// Text with `{{ connector.attribute }}` placeholders; lists are joined with `,`.
    pub value: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// A path prefix (`/admin`; longest wins) or a regex (`~ \.css$`, `~* ...` case-insensitive;
    /// regexes are tried first, in order).
    pub location: String,
    pub authentication: AuthenticationConfig,
    pub authorization: AuthorizationConfig,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthenticationConfig {
    /// Serve this location without login (headers are still injected when a session exists).
    #[serde(default)]
    pub allowUnauthenticated: bool,
    /// Connectors a user may log in with; several show a picker.
    #[serde(default)]
    pub idps: Vec<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationConfig {
    /// Every authenticated user is allowed.
    #[serde(default)]
    pub allowAll: bool,
    /// A rule tree over session attributes.
    #[schemars(with = "Option<RuleSchema>")]
    pub rules: Option<serde_yaml_ng::Value>,
}

/// An authorization rule: `and` / `or` / `not` of rules, or one condition on an attribute.
/// Only for the schema: rules are decoded by hand so each error can point at its position.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum RuleSchema {
    And {
        and: Vec<RuleSchema>,
    },
    Or {
        or: Vec<RuleSchema>,
    },
    Not {
        not: Box<RuleSchema>,
    },
    Condition {
        /// `connector.attribute`
        attribute: String,
        /// The attribute (a single value) equals this.
        equals: Option<String>,
        /// A list attribute has this element; a string attribute has this substring.
        contains: Option<String>,
        /// The attribute (or one of its elements) is one of these.
        #[serde(rename = "in")]
        in_: Option<Vec<String>>,
        /// The attribute (or one of its elements) fully matches this regex.
        matches: Option<String>,
    },
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogoutConfig {
    /// Path under the app that ends the session.
    pub location: String,
    /// Where to go afterwards (default `/`).
    pub redirectURL: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsConfig {
    /// TCP+TLS connect to the upstream (default 5000) -> 502 when exceeded.
    pub connectMillis: Option<u64>,
    /// Wait for the upstream's response headers (default 60000) -> 504 when exceeded.
    pub responseHeaderMillis: Option<u64>,
}
