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
    /// Hot reload: SIGHUP always re-reads the file; `watch` also reloads when it changes.
    pub reload: Option<ReloadConfig>,
    pub session: Option<SessionConfig>,
    /// Shared stores (Redis), named; `session.store` and `oidcProvider.cache` refer to them.
    #[serde(default)]
    pub caches: Vec<CacheConfig>,
    #[serde(default)]
    pub connectors: Vec<ConnectorConfig>,
    #[serde(default)]
    pub apps: Vec<AppConfig>,
    /// The built-in OpenID Connect provider for `type: oidc` apps.
    pub oidcProvider: Option<OidcProviderConfig>,
    /// Service extensions (WebAssembly components) with their settings, referenced by name
    /// (`extension:`) or by file (`file:`) from hook positions.
    #[serde(default)]
    pub serviceExtensions: Vec<ServiceExtensionConfig>,
    /// Custom endpoints whose answers a service extension computes (its Serve hook). Matched
    /// before apps; they may not overlap the gateway's own paths, an app or another api.
    #[serde(default)]
    pub apis: Vec<ApiConfig>,
}

/// A service extension: a WebAssembly component implementing hooks of the
/// `tessera:extension` WIT contract (see extensions/README.md).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceExtensionConfig {
    /// Name, unique, and not the name of a connector; hook positions refer to it with
    /// `extension: <name>`. It is also the only namespace the extension may write attributes
    /// in (`<name>.<attribute>`, with `session-set` or LoadAttributes).
    pub name: String,
    /// The component (`.wasm`), relative to the configuration file's directory.
    pub file: String,
    pub limits: Option<ExtensionLimitsConfig>,
    /// Hosts (`api.example.com`, `api.example.com:8443`, or `*.example.com`) the extension may
    /// reach with `http-fetch`; none by default.
    #[serde(default)]
    pub allowedHosts: Vec<String>,
    /// Free-form strings handed to the extension (`host.metadata()`).
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Secrets the extension may read with `host.secret`, by name as in `<name>` references
    /// (`okta.clientSecret`). `*` stands for one or more whole name segments, never the first
    /// (`users.*.sha256`). None by default: any other name reads as "not found" (and is logged
    /// once). A component named only by `file` in a hook position may read no secret.
    #[serde(default)]
    pub secrets: Vec<String>,
}

/// Per-call limits of an extension.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtensionLimitsConfig {
    /// Wall-clock deadline of one call, instantiation included (default 50, 1..=60000).
    pub timeoutMillis: Option<u64>,
    /// Memory cap of one call's instance, all its linear memories and tables together
    /// (default 64, 1..=1024).
    pub memoryMiB: Option<u64>,
}

/// A hook position: which hook of which component runs here. Name the component either by
/// `file` (its settings come from the `serviceExtensions` entry with the same file, if any)
/// or by `extension` (a `serviceExtensions` name).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HookConfig {
    /// The hook this position calls, e.g. `IsAuthenticated` (or `is-authenticated`); it must
    /// be the hook of the position.
    pub funcName: String,
    /// A component file (`.wasm`), relative to the configuration file's directory.
    pub file: Option<String>,
    /// The name of a `serviceExtensions` entry.
    pub extension: Option<String>,
    /// Reuse the hook's answer for this many seconds (1..=3600) for the same session, policy
    /// and session attributes (proxy apps' IsAuthenticated, IsAuthorized, LoadAttributes and
    /// CreateHeaders only). Off by default: the hook runs on every request.
    pub cacheSeconds: Option<u64>,
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
    /// Limits on what one client may hold: header and body read timeouts, concurrent
    /// connections.
    pub limits: Option<HttpLimitsConfig>,
    /// `host:port` of a separate plain-HTTP listener for operators: it serves the metrics
    /// and the detailed health status (stores, directories, IdPs), and the main listener no
    /// longer serves the metrics. Bind it to loopback or an internal interface, e.g.
    /// `127.0.0.1:9090`. Changing it takes effect at the next restart.
    pub adminAddress: Option<String>,
    /// Proxies (CIDR ranges or addresses) whose `X-Forwarded-For` and `X-Forwarded-Proto`
    /// are believed: the client address and scheme for logs, throttling, upstream headers
    /// and cookies. Empty (default): the TCP peer is the client, whatever it sends.
    #[serde(default)]
    pub trustedProxies: Vec<String>,
}

/// `http.limits`: bounds on slow or numerous clients.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpLimitsConfig {
    /// Seconds a client has to send a request's headers (HTTP/1.1), and how long a
    /// connection may stay idle between requests (default 10, 1 ..= 300).
    pub headerReadTimeoutSeconds: Option<u64>,
    /// Seconds a client has to send the whole body of a request the gateway reads itself
    /// (sign-in form, the provider's token, introspection, revocation, authorization and
    /// end-session endpoints); over it the answer is 408 (default 10, 1 ..= 300). Bodies
    /// streamed to an upstream app are not subject to it.
    pub bodyReadTimeoutSeconds: Option<u64>,
    /// Concurrent client connections (default 10000); at the cap a new connection gets an
    /// immediate 503 with `Retry-After` and is closed.
    pub maxConnections: Option<u64>,
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
    /// OpenTelemetry traces over OTLP/HTTP (protobuf). Off unless this section is present.
    /// Changing it takes effect at the next restart.
    pub tracing: Option<TracingConfig>,
}

/// Where and how spans are exported.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TracingConfig {
    /// Base URL of the OTLP/HTTP receiver, e.g. `http://collector:4318`; spans are posted to
    /// `<otlpEndpoint>/v1/traces`. Default: env `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (as is),
    /// else env `OTEL_EXPORTER_OTLP_ENDPOINT` + `/v1/traces`, else `http://localhost:4318`.
    pub otlpEndpoint: Option<String>,
    /// `service.name` of the spans (default: env `OTEL_SERVICE_NAME`, else `tessera`).
    pub serviceName: Option<String>,
    /// Share of new traces recorded, 0.0 ..= 1.0 (default 1.0). A request that arrives with
    /// a W3C `traceparent` follows its caller's sampling decision.
    pub sampleRatio: Option<f64>,
    /// TLS profile whose `caFile` is trusted for an `https` endpoint (default: public web PKI).
    pub tls: Option<String>,
}

/// Hot reload. A reload re-reads and validates the file (and the secret file); a valid one
/// replaces the running configuration at once (requests in flight finish on the old one,
/// sessions are kept), an invalid one is logged and the running configuration stays.
/// `http.address`, `logger.format` and `telemetry.tracing` need a restart to change.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReloadConfig {
    /// Reload when the file, or a file it refers to (certificates, keys), changes (default
    /// true). Changes are found by content, so Kubernetes ConfigMap and Secret volumes
    /// (symlinks swapped atomically) are followed.
    pub watch: Option<bool>,
    /// How often the files are checked, in milliseconds (default 1000, at least 100).
    pub intervalMillis: Option<u64>,
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
    /// `default` = in memory (one process), or the name of a cache (shared by replicas).
    pub store: Option<String>,
    /// Login flows started by anonymous requests, per client IP.
    pub loginFlows: Option<LoginFlowsConfig>,
    /// Bounds of the in-memory store (`default`), whatever uses it.
    pub memoryStore: Option<MemoryStoreConfig>,
    /// Extensions that choose a new session's lifetime and idle timeout at login.
    pub lifetime: Option<SessionLifetimeConfig>,
}

/// `session.lifetime`: hooks evaluated when a login creates a session. Their answers can only
/// shorten the configured `maxLifetimeSeconds` / `idleTimeoutSeconds`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionLifetimeConfig {
    /// An extension's EvalMaxLifetime hook: the session's lifetime in seconds.
    pub evalMaxLifetimeSE: Option<HookConfig>,
    /// An extension's EvalIdleTimeout hook: the session's idle timeout in seconds.
    pub evalIdleTimeoutSE: Option<HookConfig>,
}

/// How many login flows one client IP may start (each anonymous request to a protected
/// location starts one); past it: 429 with `Retry-After`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginFlowsConfig {
    /// Flows per client IP (IPv6: per /64) in the window (default 120).
    pub maxPerClientIP: Option<u32>,
    /// The counting window (default 60).
    pub windowSeconds: Option<u64>,
}

/// The in-memory store's byte budget. Login flows and parked authorization requests are
/// evicted (soonest-expiring first) to stay within it; sessions never are.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemoryStoreConfig {
    /// Most memory for keys and values, in MiB (default 256, 1 to 1048576).
    pub maxMiB: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CookieConfig {
    /// Cookie name (default `tessera_session`).
    pub name: Option<String>,
    /// Cookie domain; empty = host-only cookie (default).
    pub domain: Option<String>,
    /// Lax (default) | Strict | None (None requires TLS or `secure: always`).
    pub sameSite: Option<String>,
    /// `auto` (default): `Secure` when the client reached the gateway over HTTPS (its own TLS,
    /// or `X-Forwarded-Proto: https` from a trusted proxy); `always`: every cookie is
    /// `Secure` (a gateway behind a TLS-terminating ingress).
    pub secure: Option<String>,
}

/// A shared store. `type` selects the kind.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum CacheConfig {
    /// Redis: one server, or a Redis Cluster when several addresses are given.
    Redis(RedisCacheEntry),
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedisCacheEntry {
    /// Unique name, referenced by `session.store` and `oidcProvider.cache`.
    pub name: String,
    pub redis: RedisConfig,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `host:port` (port 6379 when omitted). Several = the seed nodes of a Redis Cluster.
    pub addresses: Vec<String>,
    /// ACL user (Redis 6+); omit for the `default` user.
    pub username: Option<String>,
    /// Password: a secret reference such as `<redis.password>`.
    pub password: Option<String>,
    /// Database number (default 0; a Redis Cluster has only 0).
    pub db: Option<u32>,
    /// TLS profile for the connection: its `caFile` is trusted for the server certificate
    /// (else the public web PKI roots); its `certFile`/`keyFile`, if set, are presented as the
    /// client certificate. Omit for plain TCP.
    pub tls: Option<String>,
    /// Prefix of every key Tessera writes (default `tessera:`), so several deployments can
    /// share one Redis.
    pub keyPrefix: Option<String>,
    /// Longest wait for one store operation, connecting included (default 500). Past it the
    /// request fails closed with a 503 page.
    pub timeoutMillis: Option<u64>,
    /// Local cache of session records, kept exact by Redis (RESP3 client tracking): a cached
    /// session needs no Redis round trip, and a logout on any replica ends it everywhere as
    /// soon as Redis's invalidation arrives. On by default for a single server; a Redis
    /// Cluster is never cached.
    pub clientCache: Option<RedisClientCacheConfig>,
    /// While Redis is known down, store calls fail at once (503) instead of each waiting
    /// `timeoutMillis`; Redis is probed in the background until it answers.
    pub circuitBreaker: Option<CircuitBreakerConfig>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedisClientCacheConfig {
    /// Default true (single server). `false`: every request reads its session from Redis.
    pub enabled: Option<bool>,
    /// Most session records held (default 10000).
    pub maxEntries: Option<u64>,
    /// Most memory for them, in MiB (default 16).
    pub maxMiB: Option<u64>,
    /// How long the cache is trusted without Redis answering a heartbeat (default 500; one
    /// every leaseMillis/5). A dropped tracking connection empties the cache at once; a
    /// silent one (hung Redis, partition) stops the cache being used after this long.
    pub leaseMillis: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreakerConfig {
    /// Default true.
    pub enabled: Option<bool>,
    /// Consecutive failures (timeouts, refused or dropped connections, authentication
    /// errors) that open the breaker (default 5).
    pub failures: Option<u32>,
    /// ...each within this many seconds of the first (default 10).
    pub windowSeconds: Option<u64>,
    /// While open, Redis is probed (PING) this often; the first answer closes the breaker
    /// (default 500).
    pub probeIntervalMillis: Option<u64>,
}

/// An identity source. `type` selects the kind.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ConnectorConfig {
    /// Built-in user store: users with argon2id password hashes and attributes.
    Local(LocalConnectorConfig),
    /// Any OpenID Connect provider.
    Oidc(OidcConnectorConfig),
    /// Okta (preset of `oidc`: groups from the `groups` claim).
    Okta(OidcConnectorConfig),
    /// Microsoft Entra ID (preset of `oidc`).
    Azure(OidcConnectorConfig),
    /// Auth0 (preset of `oidc`).
    Auth0(OidcConnectorConfig),
    /// Keycloak (preset of `oidc`: groups from the `groups` claim).
    Keycloak(OidcConnectorConfig),
    /// An LDAP directory: attribute provider (`attrProviders`) and login source (`idps`).
    Ldap(LdapConnectorConfig),
}

/// An LDAP directory. Searches run as the service account; a login binds as the user found.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LdapConnectorConfig {
    /// Unique name; attributes land in the session as `<name>.<attribute>`, plus `<name>.dn`.
    pub name: String,
    /// `ldaps://host:636` or `ldap://host:389` (with `startTLS: true` outside development).
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS (default false).
    #[serde(default)]
    pub startTLS: bool,
    /// TLS profile whose `caFile` is trusted for `ldaps://` and StartTLS (default: public
    /// web PKI roots).
    pub tls: Option<String>,
    /// DN of the service account searches run as, e.g. `cn=svc,dc=example,dc=com`.
    pub bindDN: String,
    /// Its password: a secret reference such as `<ldap.password>`.
    pub bindPassword: String,
    /// Where users are searched (whole subtree), e.g. `ou=people,dc=example,dc=com`.
    pub baseDN: String,
    /// Filter finding one user; `{username}` is replaced by the username, escaped per RFC 4515.
    pub searchFilter: String,
    /// Attributes fetched into the session (one value: a string; several: a list).
    pub attributes: Vec<String>,
    /// Longest wait for one directory call, connecting included (default 2000). Past it the
    /// request fails closed with a 503 page.
    pub timeoutMillis: Option<u64>,
    /// Most directory calls at once, and most idle service connections kept (default 8).
    pub poolSize: Option<usize>,
    /// Looked-up attributes are fetched again after this long (default 0 = kept for the
    /// session's life).
    pub refreshSeconds: Option<u64>,
    /// Failed-login throttling when used as a login source (same defaults as `local`).
    pub throttle: Option<ThrottleConfig>,
    /// `acr` (OpenID Connect Core §2): the Authentication Context Class Reference a login
    /// here achieves, e.g. `urn:example:mfa`; the provider steers `acr_values` by it.
    pub acr: Option<String>,
    /// `amr` (RFC 8176): the authentication methods a login here uses (default `[pwd]`).
    pub amr: Option<Vec<String>>,
}

/// Attributes from a directory for the users of an app.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AttrProviderConfig {
    /// An `ldap` connector.
    pub connector: String,
    /// `connector.attribute` whose value is the username looked up (e.g. `local.username`).
    pub usernameMapping: String,
}

/// An upstream OpenID Connect identity provider (the gateway is its relying party).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OidcConnectorConfig {
    /// Unique name; claims land in the session as `<name>.<claim>`.
    pub name: String,
    /// The IdP's discovery document URL (`.../.well-known/openid-configuration`).
    pub oidcWellKnownURL: String,
    pub oauthClientID: String,
    /// The client secret (use a `<secret>` reference).
    pub oauthClientSecret: String,
    /// The gateway's callback URL registered at the IdP; its path is served by the gateway.
    pub oauthRedirectURL: String,
    /// Where the IdP returns after RP-initiated logout (registered at the IdP).
    pub oidcLogoutCallbackURL: Option<String>,
    /// Back-channel logout: the URL registered at the IdP as this client's
    /// `backchannel_logout_uri`; its path is served by the gateway, and a valid logout token
    /// POSTed there ends every gateway session that came from the IdP session it names.
    pub oidcBackchannelLogoutURL: Option<String>,
    /// Space-separated scopes (default: `openid profile email`, plus preset extras).
    pub scopes: Option<String>,
    /// Turn PKCE (S256) off for IdPs that reject it.
    #[serde(default)]
    pub disablePKCE: bool,
    /// Extra authorization request parameters (e.g. `{ domain_hint: example.com }`).
    #[serde(default)]
    pub oauthExtraParams: BTreeMap<String, String>,
    /// client_secret_basic (default) | client_secret_post
    pub clientAuthMethod: Option<String>,
    /// TLS profile whose caFile is trusted for the IdP (default: public web PKI).
    pub tls: Option<String>,
    /// What to do when the IdP cannot be reached at start: refuse (default) | degrade
    /// (start, mark the IdP unavailable, retry in the background).
    pub onDiscoveryFailure: Option<String>,
    /// How often discovery and keys are refreshed (default 3600).
    pub discoveryRefreshSeconds: Option<u64>,
    /// Refresh upstream tokens when they expire while the session lives (default false).
    #[serde(default)]
    pub refreshTokens: bool,
    /// Timeout of each call to the IdP (default 5000).
    pub timeoutMillis: Option<u64>,
    pub throttle: Option<ThrottleConfig>,
    /// `acr` (OpenID Connect Core §2): the Authentication Context Class Reference a login
    /// here achieves, e.g. `urn:example:mfa`; the provider steers `acr_values` by it.
    pub acr: Option<String>,
    /// `amr` (RFC 8176): the authentication methods a login here uses (default none; the IdP's own ID token `acr`/`amr` are believed over these).
    pub amr: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LocalConnectorConfig {
    /// Unique name; the session attributes of its users are `<name>.<attribute>`.
    pub name: String,
    #[serde(default)]
    pub users: Vec<LocalUserConfig>,
    pub throttle: Option<ThrottleConfig>,
    /// `acr` (OpenID Connect Core §2): the Authentication Context Class Reference a login
    /// here achieves, e.g. `urn:example:mfa`; the provider steers `acr_values` by it.
    pub acr: Option<String>,
    /// `amr` (RFC 8176): the authentication methods a login here uses (default `[pwd]`).
    pub amr: Option<Vec<String>>,
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

/// Failed-login throttling. Each attempt is counted *before* the password is checked.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ThrottleConfig {
    /// Attempts per user allowed in the window, from any client IP (default 5). The user is
    /// the canonical one: the username folded as the directory compares it (case, width,
    /// surrounding spaces), or the LDAP entry.
    pub maxFailures: Option<u32>,
    /// Length of the counting window, and of the lock-out after it is exceeded (default 900).
    pub windowSeconds: Option<u64>,
    /// Distinct users that may fail from one client IP (IPv6: one /64) in the window before
    /// that IP may not try other users (default 50). Users it already tried keep their own
    /// `maxFailures`.
    pub maxUsersPerClientIP: Option<u32>,
}

/// An application behind the gateway. `type` selects the kind.
// Decoded once at start-up and dropped: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum AppConfig {
    /// A web app fronted as a reverse proxy.
    Proxy(ProxyAppConfig),
    /// A web app behind an ingress that asks the gateway for the decision (forward-auth):
    /// the same policies and identity headers as a proxy app, without an upstream.
    #[serde(rename = "forwardAuth")]
    ForwardAuth(ProxyAppConfig),
    /// A downstream app (OAuth client) of the built-in OpenID Connect provider.
    Oidc(OidcAppConfig),
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProxyAppConfig {
    pub name: String,
    /// `host/path`, `host` or `/path`: requests whose host and path prefix match go to this app.
    pub routePatterns: Vec<String>,
    /// `http://` or `https://` origin (optionally with a base path) of the protected app
    /// (`type: proxy`; a `forwardAuth` app has none: the ingress forwards).
    pub upstream: Option<String>,
    /// `type: forwardAuth`: the URL where browsers reach the gateway's own pages (sign-in,
    /// logout), e.g. `https://auth.example.com`.
    pub gatewayURL: Option<String>,
    /// TLS profile whose `caFile` is trusted for an `https` upstream.
    pub tls: Option<String>,
    /// Send the client's Host header upstream instead of the upstream's.
    #[serde(default)]
    pub preserveHost: bool,
    /// What a denied user gets (default: the gateway's 403 page): a URL or absolute path to
    /// redirect to (`/403.html`), or a page served with status 403 (`{ file: … }` or
    /// `{ html: … }`).
    #[schemars(with = "Option<UnauthorizedPageSchema>")]
    pub unauthorizedPage: Option<serde_yaml_ng::Value>,
    /// Identity headers injected into upstream requests; client-sent copies are removed.
    #[serde(default)]
    pub headers: Vec<HeaderConfig>,
    pub policies: Vec<PolicyConfig>,
    pub logout: Option<LogoutConfig>,
    pub timeouts: Option<TimeoutsConfig>,
    /// Directories consulted after login for more attributes (cached in the session).
    #[serde(default)]
    pub attrProviders: Vec<AttrProviderConfig>,
    /// An extension's LoadAttributes hook, called after authentication on each request.
    pub loadAttrsSE: Option<HookConfig>,
    /// An extension's ModifyResponse hook: rewrites the upstream's answer (status, headers,
    /// body) before the client gets it.
    pub modifyResponseSE: Option<HookConfig>,
    /// The largest upstream body (KiB) read for `modifyResponseSE` (default 1024, 1..=65536);
    /// a larger body fails the request closed (502).
    pub modifyResponseMaxBodyKiB: Option<u64>,
    /// The page of the gateway's own 5xx answers on this app (an extension failed, the
    /// session store or a directory is down, the upstream failed or timed out), served with
    /// that status: `{ file: … }` or `{ html: … }`. Default: the gateway's error page.
    #[schemars(with = "Option<StaticPageConfig>")]
    pub errorPage: Option<serde_yaml_ng::Value>,
    /// An extension's HandleUnauthorized hook: its response answers a denied request (a
    /// failed call falls back to `unauthorizedPage`, else the 403 page).
    pub handleUnauthorizedSE: Option<HookConfig>,
    /// An extension's ModifyRequest hook: rewrites the headers, path (within the app and the
    /// policy) and query the upstream receives.
    pub modifyRequestSE: Option<HookConfig>,
    /// An extension's UpstreamLogin hook: signs the user in at a legacy upstream with its own
    /// login form and keeps the upstream's cookies in the gateway session for this app (sent
    /// upstream, never to the browser). `reloginOn` says how the upstream shows that its
    /// session expired.
    pub upstreamLoginSE: Option<UpstreamLoginConfig>,
    /// `;` path parameters (`/admin;jsessionid=1`): `refuse` (default, 400) or `strip` (removed
    /// before matching; the upstream receives the path without them).
    pub pathParameters: Option<String>,
    /// Match policies on, and forward, the lowercase path (for case-insensitive upstreams
    /// such as IIS). Locations and route prefixes are compared lowercase too.
    #[serde(default)]
    pub caseInsensitivePaths: bool,
    /// Accept path segments ending in `.` or white space (refused by default: Windows servers
    /// strip them, so `/admin.` would reach `/admin`).
    #[serde(default)]
    pub allowTrailingDotOrSpace: bool,
    /// Protocols a client may upgrade to on GET (default `[websocket]`); others (`h2c`) are
    /// never forwarded.
    pub upgrades: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeaderConfig {
    /// Header name (with `value`; with `createHeaderSE`, a header the hook sets, so the
    /// client's copies are removed even when the hook does not return it).
    pub name: Option<String>,
    /// Text with `{{ connector.attribute }}` placeholders; lists are joined with `,`.
    pub value: Option<String>,
    /// Instead of `name`/`value`: an extension's CreateHeaders hook returns the headers.
    pub createHeaderSE: Option<HookConfig>,
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
    /// An extension's IsAuthenticated hook decides whether the request is authenticated.
    pub isAuthenticatedSE: Option<HookConfig>,
    /// An extension's Authenticate hook decides how an unauthenticated user logs in.
    pub authenticateSE: Option<HookConfig>,
    /// API clients may authenticate with an `Authorization: Bearer` access token instead of
    /// a session. Alone (no `idps`), the location is for tokens only.
    pub bearer: Option<BearerConfig>,
}

/// Bearer access tokens (RFC 6750) a policy accepts.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BearerConfig {
    /// Who may have issued the token: `oidcProvider` (the built-in provider: its JWT and
    /// opaque access tokens) and/or names of `type: oidc` connectors (JWT access tokens,
    /// verified with the IdP's published keys).
    pub issuers: Vec<String>,
    /// The token's `aud` must name one of these (e.g. `https://api.example.com`).
    pub audiences: Vec<String>,
    /// Scopes the token must all carry; otherwise 403 `insufficient_scope`.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Connectors of `issuers` whose JWT access tokens are not typed `at+jwt` (RFC 9068):
    /// their tokens typed `JWT` or untyped are accepted, unless they carry an ID token's
    /// `nonce`, `at_hash` or `c_hash`. Any other issuer's token must be typed `at+jwt`.
    #[serde(default)]
    pub untypedTokensFrom: Vec<String>,
    /// Send the `Authorization` header on to the upstream (default: removed, so the upstream
    /// cannot replay the token; set it when the upstream checks the token itself).
    #[serde(default)]
    pub forwardToken: bool,
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
    /// An extension's IsAuthorized hook decides (instead of `allowAll`/`rules`).
    pub isAuthorizedSE: Option<HookConfig>,
}

/// `upstreamLoginSE`: the hook position (as `HookConfig`, without `cacheSeconds`) and when
/// the upstream's session is over.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamLoginConfig {
    /// `UpstreamLogin` (or `upstream-login`).
    pub funcName: String,
    /// A component file (`.wasm`), relative to the configuration file's directory.
    pub file: Option<String>,
    /// The name of a `serviceExtensions` entry.
    pub extension: Option<String>,
    /// The upstream answers that mean its session expired: the stored cookies are dropped
    /// and the login runs again (a GET or HEAD without a body is then sent once more).
    /// Without it the cookies are kept as long as the gateway session.
    pub reloginOn: Option<ReloginOnConfig>,
}

/// `upstreamLoginSE.reloginOn`: at least one of the two.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReloginOnConfig {
    /// Statuses (400..=599) the upstream answers when its session is over, e.g. `[401]`.
    #[serde(default)]
    pub status: Vec<u16>,
    /// The upstream's login page: a redirect (3xx) whose `Location` has this path (an
    /// absolute path; the query and the URL's origin are ignored), e.g. `/login`.
    pub redirectTo: Option<String>,
}

/// A page the gateway serves as is: one of `file` or `html`. `{{ requestId }}` in it is
/// replaced by the request id.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StaticPageConfig {
    /// An HTML file (UTF-8, at most 256 KiB), relative to the configuration file; read when
    /// the configuration loads.
    pub file: Option<String>,
    /// The HTML itself.
    pub html: Option<String>,
}

/// `unauthorizedPage`: a redirect target or a page. Only for the schema: decoded by hand.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum UnauthorizedPageSchema {
    /// An absolute path or an `http(s)://` URL to redirect a denied user to (302).
    Redirect(String),
    /// A page served with status 403.
    Page(StaticPageConfig),
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
        /// List membership: an element of the attribute (a single value counts as a
        /// one-element list) equals this exactly. Never a substring test.
        contains: Option<String>,
        /// Substring test: the attribute (or one of its elements) contains this text.
        containsText: Option<String>,
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
    /// The app's own logout URL: called by the gateway (GET, in the background, 3 s
    /// timeout, with the browser's cookies for the app) after a sign-out here.
    pub upstreamURL: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsConfig {
    /// TCP+TLS connect to the upstream (default 5000) -> 502 when exceeded.
    pub connectMillis: Option<u64>,
    /// Wait for the upstream's response headers (default 60000) -> 504 when exceeded.
    pub responseHeaderMillis: Option<u64>,
}

/// The built-in OpenID Connect provider.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OidcProviderConfig {
    /// The issuer URL (`https://gateway.example.com`, optionally with a path). Endpoints are
    /// served under its path on the gateway.
    pub issuer: String,
    /// Store for codes, refresh tokens and revocations: `default` (memory) or a cache name.
    pub cache: Option<String>,
    /// PEM private keys (PKCS#8); the first signs, all are published.
    pub signingKeys: Vec<SigningKeyConfig>,
    /// Endpoint paths, relative to the issuer's path (defaults under `/oauth2/`).
    pub endpoints: Option<EndpointsConfig>,
    /// Secret salt for pairwise subjects.
    pub pairwiseSalt: Option<String>,
    /// An extension's BuildUserInfoClaims hook adds claims to userinfo responses.
    pub buildUserInfoClaimsSE: Option<HookConfig>,
    /// MiB of token state (opaque tokens, users' grants, refresh tokens, revocations) one
    /// process may write to the store; past it tokens are refused (503), never logins.
    /// Default: half of `session.memoryStore.maxMiB`.
    pub tokenStateMiB: Option<u64>,
    /// Token introspection answers (RFC 7662).
    pub introspection: Option<ProviderIntrospectionConfig>,
    /// Pushed authorization requests (RFC 9126): how long a `request_uri` lives and how many
    /// a client may push per lifetime.
    pub pushedAuthorizationRequests: Option<PushedAuthorizationRequestsConfig>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderIntrospectionConfig {
    /// The attribute (of the IdP the user signed in with) answered as `username`
    /// (default: `username`, else `preferred_username`).
    pub usernameAttribute: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PushedAuthorizationRequestsConfig {
    /// Seconds a pushed request's `request_uri` may be used (default 60, 1..=600).
    pub lifetimeSeconds: Option<u64>,
    /// Requests one client may push per lifetime (default 100, 1..=100000); past it: 429.
    pub perClientLimit: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SigningKeyConfig {
    /// PEM file, made by `tessera keys generate`.
    pub file: String,
    /// ES256 | RS256 | EdDSA
    pub alg: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointsConfig {
    pub authorization: Option<String>,
    pub token: Option<String>,
    pub userinfo: Option<String>,
    pub jwks: Option<String>,
    pub introspection: Option<String>,
    pub revocation: Option<String>,
    pub endSession: Option<String>,
    /// The signed-in user's "connected apps" page (default `/connected-apps`).
    pub connectedApps: Option<String>,
    /// The pushed authorization request endpoint (default `/oauth2/par`).
    pub pushedAuthorizationRequest: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OidcAppConfig {
    pub name: String,
    pub clientID: String,
    /// The client secret (use a `<secret>` reference); omit with `public: true`.
    pub clientSecret: Option<String>,
    /// A public client (SPA, native app): no secret, PKCE required.
    #[serde(default)]
    pub public: bool,
    /// Redirect URIs, matched exactly.
    pub redirectURLs: Vec<String>,
    /// Where RP-initiated logout may return, matched exactly.
    #[serde(default)]
    pub logoutRedirectURLs: Vec<String>,
    /// Back-channel logout (OpenID Connect Back-Channel Logout 1.0): where a signed logout
    /// token is POSTed when a session this app got a code in ends.
    pub backchannelLogoutURI: Option<String>,
    /// The app needs `sid` in logout tokens (always sent; default false).
    #[serde(default)]
    pub backchannelLogoutSessionRequired: bool,
    /// Front-channel logout (OpenID Connect Front-Channel Logout 1.0): a page of the app the
    /// signed-out page loads in an iframe when a session this app got a code in ends.
    pub frontchannelLogoutURI: Option<String>,
    /// Add `iss` and `sid` to the front-channel logout URI's query (default false).
    #[serde(default)]
    pub frontchannelLogoutSessionRequired: bool,
    /// authorization_code (default), refresh_token, client_credentials, password.
    pub grantTypes: Option<Vec<String>>,
    /// Scopes beyond openid/profile/email/address/phone/offline_access this client may request.
    #[serde(default)]
    pub scopes: Vec<String>,
    pub authentication: Option<OidcAuthenticationConfig>,
    /// claim name -> `connector.attribute`.
    #[serde(default)]
    pub claimsMapping: BTreeMap<String, String>,
    pub accessToken: Option<AccessTokenConfig>,
    pub refreshToken: Option<RefreshTokenConfig>,
    pub idToken: Option<IdTokenConfig>,
    pub subject: Option<SubjectConfig>,
    /// Directories consulted for more attributes before claims are issued.
    #[serde(default)]
    pub attrProviders: Vec<AttrProviderConfig>,
    /// An extension's BuildIDTokenClaims hook adds claims to ID tokens.
    pub buildIDTokenClaimsSE: Option<HookConfig>,
    /// An extension's BuildAccessTokenClaims hook adds claims to access tokens.
    pub buildAccessTokenClaimsSE: Option<HookConfig>,
    /// Token introspection by this client as a resource server. Without it, a client's
    /// introspection answers `active: true` only for its own tokens.
    pub introspection: Option<IntrospectionConfig>,
    /// A token bucket for this client's `client_credentials` and `password` requests,
    /// shared by the replicas through the provider's store; past it: 429 with `Retry-After`.
    pub rateLimit: Option<ClientRateLimitConfig>,
    /// `trusted` (default): no consent page. `required`: the user allows the app's scopes
    /// on a consent page once (remembered, revocable at the connected apps page).
    pub consent: Option<String>,
    /// Refuse scopes this client may not have (`invalid_scope`) instead of ignoring them
    /// (the default, OpenID Connect Core 3.1.2.1); the granted `scope` is always returned.
    #[serde(default)]
    pub strictScopes: bool,
    /// Compatibility settings of this client's token requests.
    pub tokenEndpoint: Option<TokenEndpointConfig>,
    /// Algorithm of this client's ID tokens (OpenID Dynamic Registration
    /// `id_token_signed_response_alg`): one of the provider's signing keys' algorithms
    /// (default: the first key's).
    pub idTokenSignedResponseAlg: Option<String>,
    /// Algorithm of this client's JWT access tokens (`access_token_signed_response_alg`),
    /// chosen the same way.
    pub accessTokenSignedResponseAlg: Option<String>,
    /// Require PKCE (S256) from this confidential client too (public clients always need it).
    #[serde(default)]
    pub requirePKCE: bool,
    /// How long an authorization code may wait for its redemption (default 60, 1..=600).
    pub authorizationCodeLifetimeSeconds: Option<u64>,
    /// How the client authenticates wherever it must (token, introspection, revocation,
    /// pushed authorization requests); OAuth Dynamic Client Registration
    /// `token_endpoint_auth_method`: `client_secret_basic`, `client_secret_post`,
    /// `client_secret_jwt`, `private_key_jwt` or `none` (public clients). Default: basic or
    /// post for a client with a secret, none for a public one.
    pub tokenEndpointAuthMethod: Option<String>,
    /// `private_key_jwt`: the client's public keys, a JWK Set written inline
    /// (`{keys: [...]}`; registration name `jwks`).
    pub jwks: Option<serde_json::Value>,
    /// `private_key_jwt`: the URL of the client's JWK Set (`jwks_uri`), https (http only on
    /// loopback); fetched when needed, cached, fetched again for an unknown `kid`.
    pub jwksURI: Option<String>,
    /// Authorization requests must be pushed first (RFC 9126,
    /// `require_pushed_authorization_requests`); a plain request is refused. Default false.
    #[serde(default)]
    pub requirePushedAuthorizationRequests: bool,
    /// Token exchange (RFC 8693): this client may exchange access tokens of this provider
    /// for tokens of these audiences (an `act` claim names it).
    pub tokenExchange: Option<TokenExchangeConfig>,
    /// An extension's LoadAttributes hook, called at the authorization endpoint once the user
    /// is authenticated; its attributes (`<extension>.<name>`) feed `claimsMapping`.
    pub loadAttrsSE: Option<HookConfig>,
    /// Who may get a code for this app, decided at the authorization endpoint.
    pub authorization: Option<OidcAuthorizationConfig>,
}

/// The authorization of an OIDC app (no declarative rules: the extension decides).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OidcAuthorizationConfig {
    /// An extension's IsAuthorized hook: false answers `access_denied` to the app.
    pub isAuthorizedSE: Option<HookConfig>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenEndpointConfig {
    /// Accept this client's token request parameters in the query string (an empty form
    /// body and HTTP Basic client authentication; never the same parameter in both). For
    /// clients that cannot be changed: the code and other parameters then land in access
    /// logs. Default false.
    #[serde(default)]
    pub acceptQueryParameters: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenExchangeConfig {
    /// The audiences (`audience` or `resource` values) it may ask for; at least one.
    pub audiences: Vec<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientRateLimitConfig {
    /// Sustained token requests per second (1..1000000).
    pub requestsPerSecond: u32,
    /// Requests that may come at once (default: requestsPerSecond).
    pub burst: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionConfig {
    /// Names of the `type: oidc` apps whose access and refresh tokens this client may
    /// introspect (RFC 7662 section 4), besides its own; `["*"]`: every app's.
    #[serde(default)]
    pub tokensOf: Vec<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OidcAuthenticationConfig {
    /// Connectors users of this app sign in with (several: a picker).
    #[serde(default)]
    pub idps: Vec<String>,
    /// An extension's IsAuthenticated hook decides whether the user's session counts.
    pub isAuthenticatedSE: Option<HookConfig>,
    /// An extension's Authenticate hook decides how an unauthenticated user logs in.
    pub authenticateSE: Option<HookConfig>,
    /// Back-channel flows (the password grant).
    pub backchannel: Option<BackchannelConfig>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackchannelConfig {
    /// An extension's BackchannelAuthenticate hook checks password-grant credentials (instead
    /// of the local connectors).
    pub authenticateSE: Option<HookConfig>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessTokenConfig {
    /// jwt (RFC 9068, default) | opaque
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Length of opaque tokens, 22..256 (default 28).
    pub length: Option<usize>,
    /// Default 3600.
    pub lifetimeSeconds: Option<u64>,
    /// Audiences a token may be issued for; checked against the `resource` parameter.
    #[serde(default)]
    pub allowedAudiences: Vec<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshTokenConfig {
    /// Refresh tokens are issued only with scope offline_access and this set.
    #[serde(default)]
    pub allowOfflineAccess: bool,
    /// 22..256 (default 28).
    pub length: Option<usize>,
    /// Default 2592000 (30 days).
    pub lifetimeSeconds: Option<u64>,
    /// A replay of a rotated token within this window gets the same answer (default 10).
    pub reuseGraceSeconds: Option<u64>,
    /// Refresh tokens outlive the sign-in session they were issued in (default false: a
    /// sign-out or the session's end ends them).
    #[serde(default)]
    pub survivesLogout: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdTokenConfig {
    /// Default 3600.
    pub lifetimeSeconds: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubjectConfig {
    /// `connector.attribute` that `sub` comes from (default: `<idp>.sub`).
    pub attribute: Option<String>,
    /// public (default) | pairwise
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

/// An endpoint (or a tree of them) answered by an extension's Serve hook: no upstream.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// The api's name: in logs, metrics, and the `app` the guest sees.
    pub name: String,
    /// `host/path`, `host` or `/path`, as apps' (a path prefix on segment boundaries:
    /// `/api/whoami` also answers `/api/whoami/x`). Matched before apps.
    pub routePatterns: Vec<String>,
    /// The Serve hook that answers: `{ funcName: Serve, extension: <name> }` or `file:`.
    pub serveSE: HookConfig,
    /// The methods the api answers (default: all); others get 405 with `Allow`.
    pub methods: Option<Vec<String>>,
    /// The largest request body passed to the extension (default 65536, 0..=1048576); a
    /// larger one gets 413 and the extension is not called.
    pub maxRequestBodyBytes: Option<u64>,
    /// `session` (default): only for a signed-in gateway session (else 401, JSON); the
    /// guest reads the user's attributes with `session-get`. `public`: no session needed
    /// (and none is read).
    pub authentication: Option<String>,
    /// With `authentication: session`: the session must be signed in at one of these
    /// connectors (default: any).
    #[serde(default)]
    pub idps: Vec<String>,
}
