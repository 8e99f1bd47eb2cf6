//! An LDAP directory (`type: ldap`, on the async `ldap3` crate): an *attribute provider* that
//! apps consult by username (`attrProviders`), and a *login source* (bind as the user).
//!
//! - Searches run on connections bound with the service account (`bindDN`/`bindPassword`),
//!   kept in a small bounded pool: a lookup on a warm pool is one round trip, not a TCP (+TLS)
//!   handshake and a bind each time.
//! - The username is escaped per RFC 4515 before it enters `searchFilter`, so `*`, `(`, `)`,
//!   `\` and NUL match themselves and cannot change the filter (no LDAP injection).
//! - A user's password is checked by binding as the DN found, on a separate connection that is
//!   never pooled (it carries the user's identity). Empty passwords are refused before any
//!   bind: in LDAP a simple bind with a DN and no password is an *unauthenticated* bind that
//!   many servers answer with success.
//! - Every call (waiting for a connection included) is bounded by `timeoutMillis`; a
//!   directory that is down or slow is an error that callers turn into a 503: fail closed.
//! - `ldaps://` and StartTLS use rustls (ring) with the trust of the connector's `tls` profile.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ldap3::{LdapConnAsync, LdapConnSettings, Scope, SearchEntry, SearchOptions};
use serde_json::Value;
use tokio::sync::Semaphore;

use crate::claims::Attributes;
use crate::connectors::local::Throttle;
use crate::secrets::SecretString;

/// Where `searchFilter` takes the (escaped) username.
pub const USERNAME_PLACEHOLDER: &str = "{username}";

/// Attribute names the connector sets itself (`<name>.dn` …): not configurable in `attributes`.
pub const RESERVED_ATTRIBUTES: [&str; 4] = ["dn", "username", "sub", "authenticated"];

/// The compiled settings of one LDAP connector.
#[derive(Debug, Clone)]
pub struct LdapSettings {
    /// `ldap://host:port` or `ldaps://host:port`.
    pub url: String,
    /// Upgrade `ldap://` connections with the StartTLS extended operation.
    pub start_tls: bool,
    /// rustls configuration for `ldaps://` and StartTLS (`None` for plain `ldap://`).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub bind_dn: String,
    pub bind_password: SecretString,
    pub base_dn: String,
    /// A filter with `{username}` placeholders, e.g. `(mail={username})`.
    pub search_filter: String,
    /// Attributes fetched, as configured (the session keys use these spellings).
    pub attributes: Vec<String>,
    /// Bound on every directory call, including the wait for a pooled connection.
    pub timeout: Duration,
    /// Most calls at once (searches and user binds together); also the most idle service
    /// connections kept between calls.
    pub pool_size: usize,
    /// How long looked-up attributes stay valid in a session; `None` = the session's life.
    pub refresh: Option<Duration>,
}

/// Why a directory call did not give an answer. Every variant means "unknown": callers
/// fail closed (503), they never treat it as "no such user".
#[derive(Debug, thiserror::Error)]
pub enum LdapError {
    #[error("the directory did not answer within {0} ms")]
    Timeout(u128),
    #[error("the directory is not reachable: {0}")]
    Unreachable(String),
    #[error("the directory refused the service account (bindDN): {0}")]
    ServiceBind(String),
    #[error("the directory answered with an error: {0}")]
    Directory(String),
}

/// An LDAP connector: settings, login throttling, and the pool of service connections.
pub struct LdapConnector {
    pub name: String,
    pub settings: LdapSettings,
    pub throttle: Throttle,
    /// Bounds the connections open at once (pooled ones and user binds).
    permits: Semaphore,
    /// Idle connections bound as the service account, ready for searches.
    idle: Mutex<Vec<ldap3::Ldap>>,
    /// The attributes `searchFilter` compares the username with (`uid` in `(uid={username})`):
    /// where an entry's canonical username is read.
    username_attrs: Vec<String>,
    /// What searches fetch: the configured attributes and `username_attrs`.
    search_attrs: Vec<String>,
}

/// An entry found for a login, before the password is checked.
#[derive(Debug)]
pub struct LoginEntry {
    entry: SearchEntry,
    /// The username as the directory stores it (the value of a `username_attrs` attribute).
    canonical: String,
}

impl LoginEntry {
    /// The login throttle's key for this user: its DN, whatever spelling was typed.
    pub fn throttle_key(&self) -> String {
        format!("dn:{}", crate::connectors::username::fold(&self.entry.dn))
    }

    /// The username as stored in the directory.
    pub fn canonical(&self) -> &str {
        &self.canonical
    }
}

/// How a typed username must relate to the entry's stored one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Match {
    /// As the directory compares (case, width, spaces): a login takes the stored spelling.
    Folded,
    /// Byte for byte: an attribute provider maps another connector's username, and a
    /// spelling variant of it is another user of that connector, not this entry.
    Exact,
}

impl std::fmt::Debug for LdapConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdapConnector")
            .field("name", &self.name)
            .field("url", &self.settings.url)
            .field("base_dn", &self.settings.base_dn)
            .finish_non_exhaustive()
    }
}

/// Escapes a value for use inside an LDAP search filter (RFC 4515 section 3): `*`, `(`, `)`,
/// `\` and NUL become `\2a`, `\28`, `\29`, `\5c`, `\00`.
pub fn escape_filter_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '*' => out.push_str("\\2a"),
            '(' => out.push_str("\\28"),
            ')' => out.push_str("\\29"),
            '\\' => out.push_str("\\5c"),
            '\0' => out.push_str("\\00"),
            c => out.push(c),
        }
    }
    out
}

/// `searchFilter` with every `{username}` replaced by the escaped username.
pub fn user_filter(template: &str, username: &str) -> String {
    template.replace(USERNAME_PLACEHOLDER, &escape_filter_value(username))
}

/// The attributes a `searchFilter` template compares `{username}` with for equality, i.e.
/// the `attr` of each `(attr={username})` item (options such as `;lang-en` dropped).
/// Approximate, ordering, substring and extensible matches are not counted: they do not say
/// which stored value the username is.
pub fn username_attributes(template: &str) -> Vec<String> {
    let needle = format!("={USERNAME_PLACEHOLDER})");
    let mut out: Vec<String> = Vec::new();
    let mut from = 0;
    while let Some(i) = template[from..].find(&needle) {
        let eq = from + i;
        from = eq + needle.len();
        let Some(open) = template[..eq].rfind('(') else {
            continue;
        };
        let desc = &template[open + 1..eq];
        if desc.ends_with(['~', '>', '<', ':']) {
            continue;
        }
        let attr = desc.split(';').next().unwrap_or("");
        let valid = attr.starts_with(|c: char| c.is_ascii_alphabetic())
            && attr.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            || !attr.is_empty() && attr.chars().all(|c| c.is_ascii_digit() || c == '.');
        if valid && !out.iter().any(|a| a.eq_ignore_ascii_case(attr)) {
            out.push(attr.to_string());
        }
    }
    out
}

/// Checks a `searchFilter` template: has `{username}` and parses as an RFC 4515 filter.
pub fn check_filter(template: &str) -> Result<(), String> {
    if !template.contains(USERNAME_PLACEHOLDER) {
        return Err(format!(
            "searchFilter `{template}` has no `{USERNAME_PLACEHOLDER}` placeholder"
        ));
    }
    if username_attributes(template).is_empty() {
        return Err(format!(
            "searchFilter `{template}` never compares `{USERNAME_PLACEHOLDER}` with an attribute for equality, as in `(uid={USERNAME_PLACEHOLDER})`: the gateway reads the user's canonical name from that attribute"
        ));
    }
    let sample = user_filter(template, "sample");
    if !sample.starts_with('(') || ldap3::parse_filter(&sample).is_err() {
        return Err(format!(
            "searchFilter `{template}` is not a valid LDAP filter (RFC 4515)"
        ));
    }
    Ok(())
}

/// A light syntax check of a distinguished name (RFC 4514): comma-separated `type=value`
/// pairs (escaped commas allowed), each type an attribute name or an OID.
pub fn check_dn(dn: &str) -> Result<(), String> {
    if dn.trim().is_empty() {
        return Err("the DN is empty".into());
    }
    let mut rdns = Vec::new();
    let mut current = String::new();
    let mut escaped = false;
    for c in dn.chars() {
        match c {
            _ if escaped => {
                current.push(c);
                escaped = false;
            }
            '\\' => {
                current.push(c);
                escaped = true;
            }
            ',' => rdns.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    rdns.push(current);
    for rdn in &rdns {
        for ava in rdn.split('+') {
            let Some((ty, value)) = ava.split_once('=') else {
                return Err(format!("`{dn}` is not a DN: `{}` has no `=`", ava.trim()));
            };
            let ty = ty.trim();
            let type_ok = !ty.is_empty()
                && (ty.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && ty.starts_with(|c: char| c.is_ascii_alphabetic())
                    || ty.chars().all(|c| c.is_ascii_digit() || c == '.'));
            if !type_ok || value.trim().is_empty() {
                return Err(format!(
                    "`{dn}` is not a DN: write it like `cn=svc,dc=example,dc=com`"
                ));
            }
        }
    }
    Ok(())
}

/// Errors of the connection itself (as opposed to an LDAP result code): the connection is
/// not reused, and a pooled connection that fails this way is retried on a fresh one.
fn connection_level(e: &ldap3::LdapError) -> bool {
    !matches!(
        e,
        ldap3::LdapError::LdapResult { .. } | ldap3::LdapError::FilterParsing
    )
}

fn classify(e: ldap3::LdapError) -> LdapError {
    match e {
        ldap3::LdapError::LdapResult { result } => LdapError::Directory(result.to_string()),
        ldap3::LdapError::FilterParsing => LdapError::Directory("bad search filter".into()),
        other => LdapError::Unreachable(other.to_string()),
    }
}

/// LDAP result codes of a user bind that mean "the directory is in trouble", not "refused".
fn bind_trouble(rc: u32) -> bool {
    // operationsError, timeLimitExceeded, adminLimitExceeded, busy, unavailable, other
    matches!(rc, 1 | 3 | 11 | 51 | 52 | 80)
}

impl LdapConnector {
    pub fn new(name: String, settings: LdapSettings, throttle: Throttle) -> Self {
        let size = settings.pool_size.max(1);
        let username_attrs = username_attributes(&settings.search_filter);
        let mut search_attrs = settings.attributes.clone();
        for a in &username_attrs {
            if !search_attrs.iter().any(|s| s.eq_ignore_ascii_case(a)) {
                search_attrs.push(a.clone());
            }
        }
        Self {
            name,
            permits: Semaphore::new(size),
            idle: Mutex::new(Vec::with_capacity(size)),
            settings,
            throttle,
            username_attrs,
            search_attrs,
        }
    }

    /// The entry's stored username matching `typed` (per `how`), from the attributes the
    /// filter compares the username with; `None` when no stored value matches — the
    /// directory matched by a rule the gateway does not share, and it fails closed.
    fn canonical(&self, entry: &SearchEntry, typed: &str, how: Match) -> Option<String> {
        let folded = (how == Match::Folded).then(|| crate::connectors::username::fold(typed));
        let found = self
            .username_attrs
            .iter()
            .filter_map(|a| {
                entry
                    .attrs
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(a))
                    .map(|(_, v)| v)
            })
            .flatten()
            .find(|v| match &folded {
                Some(f) => crate::connectors::username::fold(v) == *f,
                None => v.as_str() == typed,
            })
            .cloned();
        if found.is_none() {
            tracing::warn!(connector = %self.name, user = typed, dn = %entry.dn, how = ?how,
                "the directory matched an entry whose stored username is not the one asked for: refused");
        }
        found
    }

    /// `refreshSeconds`: how long looked-up attributes stay valid (`None` = session's life).
    pub fn refresh(&self) -> Option<Duration> {
        self.settings.refresh
    }

    fn timeout_error(&self) -> LdapError {
        LdapError::Timeout(self.settings.timeout.as_millis())
    }

    /// A new connection (TCP, then TLS for `ldaps://` or StartTLS), not yet bound.
    async fn connect(&self) -> Result<ldap3::Ldap, LdapError> {
        let mut conn_settings = LdapConnSettings::new()
            .set_conn_timeout(self.settings.timeout)
            .set_starttls(self.settings.start_tls);
        if let Some(tls) = &self.settings.tls {
            conn_settings = conn_settings.set_config(tls.clone());
        }
        let (conn, ldap) = LdapConnAsync::with_settings(conn_settings, &self.settings.url)
            .await
            .map_err(|e| LdapError::Unreachable(e.to_string()))?;
        let name = self.name.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                tracing::debug!(connector = %name, error = %e, "LDAP connection closed");
            }
        });
        Ok(ldap)
    }

    /// A new connection bound as the service account.
    async fn connect_service(&self) -> Result<ldap3::Ldap, LdapError> {
        let mut ldap = self.connect().await?;
        let res = ldap
            .with_timeout(self.settings.timeout)
            .simple_bind(&self.settings.bind_dn, self.settings.bind_password.expose())
            .await
            .map_err(classify)?;
        match res.rc {
            0 => Ok(ldap),
            rc if bind_trouble(rc) => Err(LdapError::Directory(res.to_string())),
            _ => Err(LdapError::ServiceBind(res.to_string())),
        }
    }

    fn take_idle(&self) -> Option<ldap3::Ldap> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(mut ldap) = idle.pop() {
            if !ldap.is_closed() {
                return Some(ldap);
            }
        }
        None
    }

    fn put_idle(&self, ldap: ldap3::Ldap) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.settings.pool_size {
            idle.push(ldap);
        }
    }

    /// Runs `op` on a service connection from the pool (or a new one), within the timeout.
    /// A pooled connection that turns out to be dead (the server restarted or dropped it) is
    /// replaced once by a fresh connection.
    async fn with_service<T, F, Fut>(&self, op: F) -> Result<T, LdapError>
    where
        F: Fn(ldap3::Ldap) -> Fut,
        Fut: Future<Output = Result<T, ldap3::LdapError>>,
    {
        let work = async {
            let _permit = self
                .permits
                .acquire()
                .await
                .map_err(|_| LdapError::Unreachable("connector closed".into()))?;
            if let Some(ldap) = self.take_idle() {
                match op(ldap.clone()).await {
                    Ok(v) => {
                        self.put_idle(ldap);
                        return Ok(v);
                    }
                    Err(e) if connection_level(&e) => {
                        tracing::debug!(connector = %self.name, error = %e,
                            "pooled LDAP connection failed; reconnecting");
                    }
                    Err(e) => {
                        self.put_idle(ldap);
                        return Err(classify(e));
                    }
                }
            }
            let ldap = self.connect_service().await?;
            match op(ldap.clone()).await {
                Ok(v) => {
                    self.put_idle(ldap);
                    Ok(v)
                }
                Err(e) => {
                    if !connection_level(&e) {
                        self.put_idle(ldap);
                    }
                    Err(classify(e))
                }
            }
        };
        let r = tokio::time::timeout(self.settings.timeout, work)
            .await
            .map_err(|_| self.timeout_error())
            .and_then(|r| r);
        if let Err(e) = &r {
            // once per interval with a count: a directory that is down fails every login
            crate::telemetry::failures::failed("ldap", &self.name, "directory unavailable", e);
        }
        r
    }

    /// The entry of `username`: `Ok(None)` when no entry matches, or several do (an ambiguous
    /// filter must not pick one at random).
    async fn find(&self, username: &str) -> Result<Option<SearchEntry>, LdapError> {
        if username.is_empty() {
            return Ok(None);
        }
        let filter = user_filter(&self.settings.search_filter, username);
        let timeout = self.settings.timeout;
        let base = self.settings.base_dn.as_str();
        let attrs = &self.search_attrs;
        let (entries, rc) = self
            .with_service(|mut ldap| {
                let filter = filter.clone();
                async move {
                    let res = ldap
                        .with_search_options(SearchOptions::new().sizelimit(2))
                        .with_timeout(timeout)
                        .search(base, Scope::Subtree, &filter, attrs)
                        .await?;
                    Ok((res.0, res.1))
                }
            })
            .await?;
        // 4 = sizeLimitExceeded: more than one entry matched
        if rc.rc != 0 && rc.rc != 4 {
            return Err(LdapError::Directory(rc.to_string()));
        }
        if entries.len() > 1 || rc.rc == 4 {
            tracing::warn!(connector = %self.name, user = username,
                "LDAP search matched several entries: refused (make searchFilter match one)");
            return Ok(None);
        }
        let Some(raw) = entries.into_iter().next() else {
            return Ok(None);
        };
        // `construct` panics on malformed BER; a broken server must not take the task down.
        let entry =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| SearchEntry::construct(raw)))
                .map_err(|_| LdapError::Directory("malformed search result entry".into()))?;
        if entry.dn.is_empty() {
            return Ok(None);
        }
        Ok(Some(entry))
    }

    /// The configured attributes of `entry` as session attributes `<name>.<attribute>` (one
    /// value: a string; several: a list), plus `<name>.dn`. Attribute names match
    /// case-insensitively (LDAP's rule) and are stored with the configured spelling.
    fn attributes_of(&self, entry: &SearchEntry) -> Attributes {
        let mut out = Attributes::new();
        for wanted in &self.settings.attributes {
            let Some(values) = entry
                .attrs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(wanted))
                .map(|(_, v)| v)
            else {
                continue;
            };
            let value = match values.as_slice() {
                [] => continue,
                [one] => Value::String(one.clone()),
                many => Value::Array(many.iter().cloned().map(Value::String).collect()),
            };
            out.insert(format!("{}.{wanted}", self.name), value);
        }
        out.insert(format!("{}.dn", self.name), Value::String(entry.dn.clone()));
        out
    }

    /// The attributes of the user named `username` (attribute-provider use), or `None` when
    /// the directory has no (single) such user. The entry must store `username` exactly:
    /// `ALICE` or `ａlice` of another connector are not the directory's `alice`, although the
    /// directory's matching rule finds her for them (a warning is logged; no attributes).
    pub async fn lookup(&self, username: &str) -> Result<Option<Attributes>, LdapError> {
        let Some(entry) = self.find(username).await? else {
            return Ok(None);
        };
        Ok(self
            .canonical(&entry, username, Match::Exact)
            .map(|_| self.attributes_of(&entry)))
    }

    /// The entry a login names, before any password is checked (the throttle keys on it).
    /// `Ok(None)`: no such user (or no single one, or only by a rule the gateway does not
    /// share).
    pub async fn find_login(&self, username: &str) -> Result<Option<LoginEntry>, LdapError> {
        if username.is_empty() {
            return Ok(None);
        }
        let Some(entry) = self.find(username).await? else {
            return Ok(None);
        };
        Ok(self
            .canonical(&entry, username, Match::Folded)
            .map(|canonical| LoginEntry { entry, canonical }))
    }

    /// Checks `password` by binding as the user's DN (found with the service account) on a
    /// separate connection. `Ok(None)`: unknown user or wrong password (or an empty one).
    /// On success: the attributes, plus `<name>.username` (as the directory stores it, not
    /// as typed) and `<name>.sub` (the DN).
    pub async fn authenticate(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Option<Attributes>, LdapError> {
        if username.is_empty() || password.is_empty() {
            return Ok(None);
        }
        match self.find_login(username).await? {
            Some(entry) => self.bind(&entry, password).await,
            None => Ok(None),
        }
    }

    /// Checks `password` for a found entry by binding as its DN on a separate connection.
    pub async fn bind(
        &self,
        found: &LoginEntry,
        password: &str,
    ) -> Result<Option<Attributes>, LdapError> {
        // An empty password would be an unauthenticated bind (RFC 4513 5.1.2), which many
        // servers answer with success: never send one.
        if password.is_empty() {
            return Ok(None);
        }
        let entry = &found.entry;
        let bind = async {
            let _permit = self
                .permits
                .acquire()
                .await
                .map_err(|_| LdapError::Unreachable("connector closed".into()))?;
            let mut ldap = self.connect().await?;
            let res = ldap
                .with_timeout(self.settings.timeout)
                .simple_bind(&entry.dn, password)
                .await
                .map_err(classify)?;
            // The connection carries the user's identity: close it, never pool it.
            let _ = ldap.unbind().await;
            match res.rc {
                0 => Ok(true),
                rc if bind_trouble(rc) => Err(LdapError::Directory(res.to_string())),
                rc => {
                    tracing::debug!(connector = %self.name, rc, "LDAP user bind refused");
                    Ok(false)
                }
            }
        };
        let ok = tokio::time::timeout(self.settings.timeout, bind)
            .await
            .map_err(|_| self.timeout_error())
            .and_then(|r| r)
            .inspect_err(|e| {
                crate::telemetry::failures::failed("ldap", &self.name, "directory unavailable", e)
            })?;
        if !ok {
            return Ok(None);
        }
        let mut attrs = self.attributes_of(entry);
        attrs.insert(
            format!("{}.username", self.name),
            found.canonical.clone().into(),
        );
        attrs.insert(format!("{}.sub", self.name), entry.dn.clone().into());
        Ok(Some(attrs))
    }

    /// Readiness: a base-scope search of `baseDN` with the service account.
    pub async fn ping(&self) -> Result<(), LdapError> {
        let timeout = self.settings.timeout;
        let base = self.settings.base_dn.as_str();
        self.with_service(|mut ldap| async move {
            ldap.with_timeout(timeout)
                .search(base, Scope::Base, "(objectClass=*)", vec!["1.1"])
                .await?
                .success()?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_values_are_escaped_per_rfc4515() {
        assert_eq!(escape_filter_value("alice"), "alice");
        assert_eq!(
            escape_filter_value("*)(uid=*))(|(uid=*"),
            "\\2a\\29\\28uid=\\2a\\29\\29\\28|\\28uid=\\2a"
        );
        assert_eq!(escape_filter_value("a\\b\0c"), "a\\5cb\\00c");
        assert_eq!(escape_filter_value("jörg"), "jörg", "UTF-8 is kept as is");
        let f = user_filter("(&(objectClass=person)(uid={username}))", "*)(uid=*");
        assert_eq!(f, "(&(objectClass=person)(uid=\\2a\\29\\28uid=\\2a))");
        // the escaped filter is one equality match: it still parses, with no wildcard left
        assert!(ldap3::parse_filter(&f).is_ok());
        assert!(!f.contains("=*"));
    }

    #[tokio::test]
    async fn empty_passwords_never_reach_the_directory() {
        // port 1 refuses connections: any attempt to contact it would be an error
        let c = LdapConnector::new(
            "ldap".into(),
            LdapSettings {
                url: "ldap://127.0.0.1:1".into(),
                start_tls: false,
                tls: None,
                bind_dn: "cn=svc,dc=x".into(),
                bind_password: SecretString::new("pw".into()),
                base_dn: "dc=x".into(),
                search_filter: "(uid={username})".into(),
                attributes: vec!["mail".into()],
                timeout: Duration::from_millis(500),
                pool_size: 1,
                refresh: None,
            },
            Throttle {
                window: Duration::from_secs(60),
                ..Throttle::default()
            },
        );
        assert!(matches!(c.authenticate("alice", "").await, Ok(None)));
        assert!(matches!(c.authenticate("", "pw").await, Ok(None)));
        assert!(matches!(c.lookup("").await, Ok(None)));
        assert!(matches!(
            c.authenticate("alice", "pw").await,
            Err(LdapError::Unreachable(_))
        ));
        assert!(matches!(c.ping().await, Err(LdapError::Unreachable(_))));
    }

    #[test]
    fn the_username_attributes_are_the_equality_matches_of_the_filter() {
        assert_eq!(username_attributes("(uid={username})"), ["uid"]);
        assert_eq!(
            username_attributes(
                "(&(objectClass=person)(|(uid={username})(mail={username})(UID={username})))"
            ),
            ["uid", "mail"]
        );
        assert_eq!(username_attributes("(cn;lang-en={username})"), ["cn"]);
        assert!(username_attributes("(uid~={username})").is_empty());
        assert!(username_attributes("(uid>={username})").is_empty());
        assert!(username_attributes("(uid:caseExactMatch:={username})").is_empty());
        assert!(username_attributes("(mail={username}@example.com)").is_empty());
        assert!(username_attributes("(cn=*{username})").is_empty());
    }

    #[test]
    fn filter_templates_and_dns_are_checked() {
        assert!(check_filter("(mail={username})").is_ok());
        assert!(
            check_filter("(&(objectClass=person)(|(uid={username})(mail={username})))").is_ok()
        );
        assert!(check_filter("(mail=alice)").is_err());
        assert!(check_filter("mail={username}").is_err());
        assert!(check_filter("(mail={username}").is_err());
        // the username must be compared with an attribute for equality somewhere
        assert!(check_filter("(cn=*{username}*)").is_err());
        assert!(check_filter("(uid~={username})").is_err());
        assert!(check_dn("cn=svc,dc=example,dc=com").is_ok());
        assert!(check_dn("cn=Smith\\, John,ou=people,dc=example,dc=com").is_ok());
        assert!(check_dn("cn=a+uid=b,dc=x").is_ok());
        assert!(check_dn("2.5.4.3=svc,dc=x").is_ok());
        assert!(check_dn("").is_err());
        assert!(check_dn("example.com").is_err());
        assert!(check_dn("cn=,dc=x").is_err());
        assert!(check_dn("cn=a,,dc=x").is_err());
    }
}
