//! Server-side sessions. The browser holds only a 256-bit random id; the store holds the
//! session under the SHA-256 of that id (a leaked store dump yields no usable cookies).
//! Lifetime and idle rules are enforced here; the id is replaced at every login.

mod clock;
pub mod cookie;
mod decoded;
mod upstream;

pub use clock::Clock;
pub use upstream::{is_alive, UpstreamSession};

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http::HeaderMap;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::claims::Attributes;
pub use crate::connectors::assurance::Authentication;
pub use crate::connectors::oidc::UpstreamTokens;
use crate::store::{Store, StoreError};
use cookie::{cookie_values, CookieSpec};
use decoded::{Decoded, DecodedSessions};
use std::collections::BTreeMap;

/// Format version of stored sessions, so a rolling upgrade can read older ones.
const SESSION_FORMAT: u8 = 1;

#[derive(Debug, Clone)]
pub struct SessionSettings {
    pub cookie: CookieSpec,
    pub max_lifetime: Duration,
    pub idle_timeout: Duration,
}

/// How stale `seen` may get before it is written back: at most a tenth of the idle timeout
/// (`idle` seconds; and at most a minute), so most requests cost one store read and no write.
fn touch_interval(idle: u64) -> u64 {
    (idle / 10).clamp(1, 60)
}

/// A session's own lifetime and idle timeout, chosen at login by `session.lifetime` hooks
/// (seconds). They only shorten: `Sessions` caps them at the configured ones when it judges
/// the session.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Lifetime {
    pub max_secs: u64,
    pub idle_secs: u64,
}

/// What the store keeps for a session.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SessionData {
    pub v: u8,
    /// The session's public id: random, kept by the logins that extend the session (a second
    /// IdP), the `sid` of the ID tokens issued in it, and what its grants are ended by.
    /// Empty in records written before it existed (their grants are bound to no session).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sid: String,
    /// Unix seconds of the login that created it.
    pub created: u64,
    /// Unix seconds of the last request seen (updated coarsely, see `touch_interval`).
    pub seen: u64,
    /// `<connector>.<name>` attributes, including `<connector>.authenticated`.
    pub attrs: Attributes,
    /// Tokens of upstream IdPs, by connector (kept apart from attributes so no template or
    /// claim mapping can leak them).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tokens: BTreeMap<String, UpstreamTokens>,
    /// Attribute providers (`attrProviders`) consulted for this session, by connector: when,
    /// and for which username. Their attributes are derived, so a new login drops them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub lookups: BTreeMap<String, Lookup>,
    /// The OIDC clients that got a code in this session, with the subject each knows the
    /// user by: told when the session ends (back-channel logout).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rps: BTreeMap<String, String>,
    /// Set when a `session.lifetime` hook chose this session's limits; `None`: the configured
    /// `maxLifetimeSeconds` / `idleTimeoutSeconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime: Option<Lifetime>,
    /// Each connector's login in this session: when, and the `acr`/`amr` it achieved (what
    /// the provider reports for it). Missing in records written before it existed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub logins: BTreeMap<String, Authentication>,
    /// Cookies of legacy upstreams an `upstreamLoginSE` signed the user in to, by app name:
    /// sent to that app's upstream only, never to the browser, and kept apart from the
    /// attributes so no hook, template or claim can read them. A new login drops them (they
    /// belong to the previous sign-in).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub upstream_cookies: BTreeMap<String, Vec<(String, String)>>,
}

/// One attribute-provider lookup cached in a session.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Lookup {
    /// Unix seconds of the lookup.
    pub at: u64,
    /// The username it was made for (the value of the app's `usernameMapping`).
    pub key: String,
}

/// The result of one attribute-provider lookup, to merge into a session.
#[derive(Debug, Clone)]
pub struct AttrUpdate {
    pub connector: String,
    /// `Some(key)`: looked up for `key`; `None`: there is nothing to look up by any more,
    /// so the provider's attributes and lookup record are removed.
    pub key: Option<String>,
    /// The attributes found (`<connector>.<name>`); `None` = no such user (cached as such).
    pub attrs: Option<Attributes>,
    pub at: u64,
}

impl AttrUpdate {
    /// Replaces the provider's attributes in `data` (its `<connector>.authenticated`, if the
    /// user also logged in with it, stays) and records the lookup.
    pub fn apply(&self, data: &mut SessionData) {
        let prefix = format!("{}.", self.connector);
        let keep = format!("{}.authenticated", self.connector);
        data.attrs
            .retain(|k, _| !k.starts_with(&prefix) || *k == keep);
        if let Some(a) = &self.attrs {
            data.attrs.extend(
                a.iter()
                    .filter(|(k, _)| k.starts_with(&prefix) && **k != keep)
                    .map(|(k, v)| (k.clone(), v.clone())),
            );
        }
        match &self.key {
            Some(key) => {
                data.lookups.insert(
                    self.connector.clone(),
                    Lookup {
                        at: self.at,
                        key: key.clone(),
                    },
                );
            }
            None => {
                data.lookups.remove(&self.connector);
            }
        }
    }
}

impl SessionData {
    /// Has the user logged in with any of `idps`?
    pub fn authenticated_by_any(&self, idps: &[String]) -> bool {
        idps.iter().any(|idp| {
            crate::claims::qualified(&self.attrs, idp, "authenticated")
                .is_some_and(|v| v == &serde_json::Value::Bool(true))
        })
    }
}

/// Told when a session ends, before its record is deleted: the OpenID provider ends the
/// grants issued in it and tells its apps. It returns the pages the browser should load to
/// tell the apps that can only be told there (front-channel logout). An error keeps the
/// session (fail closed: a sign-out that could not end the grants is refused, and the user
/// may try again).
#[async_trait::async_trait]
pub trait EndListener: Send + Sync + std::fmt::Debug {
    async fn session_ended(
        &self,
        data: &SessionData,
        why: EndReason,
    ) -> Result<Vec<String>, StoreError>;
}

/// What ending a session gives the browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    /// The `Set-Cookie` value that clears the session cookie.
    pub clear: String,
    /// Front-channel logout URLs to load in iframes of the signed-out page.
    pub frames: Vec<String>,
}

/// Why a session ended (logged, and told to the listener).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The user signed out (an app's or the gateway's logout, the provider's end-session).
    Logout,
    /// Found past its lifetime or idle timeout.
    Expired,
    /// The upstream IdP ended its session (back-channel logout, a refused refresh).
    Upstream,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Logout => "logout",
            Self::Expired => "expired",
            Self::Upstream => "upstream",
        }
    }
}

/// A loaded session. Its data is shared with the decoded-session cache until a change is
/// made to it (`Arc::make_mut` copies it then).
#[derive(Debug, Clone)]
pub struct Session {
    id: String,
    /// The store key (a hash of `id`), computed once: it keys the session's cached answers
    /// on every request.
    key: Arc<str>,
    pub data: Arc<SessionData>,
}

impl Session {
    /// The key of this session in the store (safe to log: it is a hash).
    pub fn store_key(&self) -> String {
        self.key.to_string()
    }

    /// The store key, shared (no copy).
    pub fn key(&self) -> &Arc<str> {
        &self.key
    }

    /// The CSRF token of forms that act on this session (sign-out confirmation). It is
    /// derived from the secret session id, so only a page the gateway rendered for this
    /// browser can carry it, and it dies with the session. Domain-separated from the store
    /// key, which is logged.
    pub fn csrf_token(&self) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(format!("tessera-csrf\0{}", self.id)))
    }

    /// Does `given` equal this session's CSRF token (compared in constant time)?
    pub fn csrf_matches(&self, given: Option<&str>) -> bool {
        use subtle::ConstantTimeEq;
        given.is_some_and(|g| bool::from(g.as_bytes().ct_eq(self.csrf_token().as_bytes())))
    }
}

/// Seconds since the Unix epoch (the system clock).
pub fn now_unix() -> u64 {
    Clock::System.now()
}

/// A fresh random token: `bytes` from the OS CSPRNG, base64url without padding.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

fn store_key(id: &str) -> String {
    format!(
        "session:{}",
        URL_SAFE_NO_PAD.encode(Sha256::digest(id.as_bytes()))
    )
}

/// A well-formed session id: 43 base64url characters (256 bits).
fn well_formed(id: &str) -> bool {
    id.len() == 43
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[derive(Debug)]
pub struct Sessions {
    store: Arc<dyn Store>,
    pub settings: SessionSettings,
    clock: Clock,
    decoded: DecodedSessions,
    /// Told of every session that ends (the provider, when there is one).
    listener: Option<Arc<dyn EndListener>>,
}

impl Sessions {
    pub fn new(store: Arc<dyn Store>, settings: SessionSettings) -> Self {
        Self::with_clock(store, settings, Clock::System)
    }

    /// Sessions judged by `clock` (tests: a manual one).
    pub fn with_clock(store: Arc<dyn Store>, settings: SessionSettings, clock: Clock) -> Self {
        Self {
            store,
            settings,
            clock,
            decoded: DecodedSessions::default(),
            listener: None,
        }
    }

    /// The same sessions, telling `listener` of every session that ends.
    pub fn ending_with(mut self, listener: Option<Arc<dyn EndListener>>) -> Self {
        self.listener = listener;
        self
    }

    /// Tells the listener that the session `data` ends (before its record goes); returns
    /// its front-channel logout URLs.
    async fn ended(&self, data: &SessionData, why: EndReason) -> Result<Vec<String>, StoreError> {
        match &self.listener {
            Some(l) if !data.sid.is_empty() => l.session_ended(data, why).await,
            _ => Ok(Vec::new()),
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The request's live session, if any. Malformed, unknown, expired and idle ids all
    /// mean "no session"; expired ones are deleted.
    pub async fn load(&self, headers: &HeaderMap) -> Result<Option<Session>, StoreError> {
        let now = self.clock.now();
        for id in cookie_values(headers, &self.settings.cookie.name) {
            if !well_formed(id) {
                continue;
            }
            let known = self.decoded.get(id);
            let key = known
                .as_ref()
                .map_or_else(|| Arc::from(store_key(id)), |d| d.key.clone());
            let Some(bytes) = self.store.get(&key).await? else {
                continue;
            };
            // The same bytes as decoded before: the same record (see `decoded`).
            let data = match known.filter(|d| d.raw == bytes) {
                Some(d) => d.data,
                None => match serde_json::from_slice::<SessionData>(&bytes) {
                    Ok(data) => {
                        let data = Arc::new(data);
                        self.remember(id, &key, bytes.clone(), &data);
                        data
                    }
                    Err(_) => {
                        tracing::warn!(session = %key, "unreadable session record dropped");
                        self.decoded.forget(id);
                        self.store.delete(&key).await?;
                        continue;
                    }
                },
            };
            let age = now.saturating_sub(data.created);
            let idle = now.saturating_sub(data.seen);
            let (max_secs, idle_secs) = self.limits(&data);
            if age >= max_secs || idle >= idle_secs {
                self.decoded.forget(id);
                // Seen expired (a record the store let expire is never seen: see README,
                // "Sessions and logout").
                self.ended(&data, EndReason::Expired).await?;
                self.store.delete(&key).await?;
                continue;
            }
            let mut data = data;
            if idle >= touch_interval(idle_secs) {
                Arc::make_mut(&mut data).seen = now;
                let ttl = self.ttl(&data, now);
                let new = Bytes::from(serde_json::to_vec(&*data).unwrap_or_default());
                // Lost races only mean another request touched it first.
                if self
                    .store
                    .compare_and_set(&key, &bytes, new.clone(), ttl)
                    .await?
                {
                    self.remember(id, &key, new, &data);
                }
            }
            return Ok(Some(Session {
                id: id.to_string(),
                key,
                data,
            }));
        }
        Ok(None)
    }

    fn remember(&self, id: &str, key: &Arc<str>, raw: Bytes, data: &Arc<SessionData>) {
        self.decoded.put(
            id,
            Decoded {
                key: key.clone(),
                raw,
                data: data.clone(),
            },
        );
    }

    /// The lifetime and idle timeout (seconds) `data` is judged by: its own (from a
    /// `session.lifetime` hook) capped at the configured ones, or the configured ones.
    pub fn limits(&self, data: &SessionData) -> (u64, u64) {
        let max = self.settings.max_lifetime.as_secs();
        let idle = self.settings.idle_timeout.as_secs();
        match data.lifetime {
            Some(l) => (l.max_secs.clamp(1, max), l.idle_secs.clamp(1, idle)),
            None => (max, idle),
        }
    }

    fn ttl(&self, data: &SessionData, now: u64) -> Duration {
        let (max, idle) = self.limits(data);
        let left = (data.created + max).saturating_sub(now);
        Duration::from_secs(left.min(idle).max(1))
    }

    /// Logs a user in with `connector`: a *new* session id (no fixation) carrying the
    /// attributes of other connectors from `previous`, whose id is deleted.
    /// Returns the `Set-Cookie` value.
    pub async fn login(
        &self,
        previous: Option<&Session>,
        connector: &str,
        attrs: Attributes,
    ) -> Result<String, StoreError> {
        self.login_with_tokens(previous, connector, attrs, None, None)
            .await
    }

    /// `login`, also keeping the upstream IdP's tokens (for refresh and logout at the IdP)
    /// and, with `upstream`, listing the session under the IdP session it came from (for the
    /// IdP's back-channel logout).
    pub async fn login_with_tokens(
        &self,
        previous: Option<&Session>,
        connector: &str,
        attrs: Attributes,
        tokens: Option<UpstreamTokens>,
        upstream: Option<&UpstreamSession>,
    ) -> Result<String, StoreError> {
        let data = self.new_record(previous, connector, attrs, tokens);
        self.start(data, previous, connector, upstream).await
    }

    /// The record a login with `connector` makes (not stored yet: see `start`): the
    /// attributes of other connectors from `previous`, `attrs`, `<connector>.authenticated`.
    pub fn new_record(
        &self,
        previous: Option<&Session>,
        connector: &str,
        attrs: Attributes,
        tokens: Option<UpstreamTokens>,
    ) -> SessionData {
        let now = self.clock.now();
        let prefix = format!("{connector}.");
        let mut data = match previous {
            Some(p) => SessionData {
                v: SESSION_FORMAT,
                sid: if p.data.sid.is_empty() {
                    random_token(16)
                } else {
                    p.data.sid.clone()
                },
                created: now,
                seen: now,
                attrs: p
                    .data
                    .attrs
                    .iter()
                    .filter(|(k, _)| !k.starts_with(&prefix))
                    // looked-up attributes belong to the previous identity: fetched anew
                    .filter(|(k, _)| {
                        !p.data.lookups.keys().any(|c| {
                            k.strip_prefix(c.as_str())
                                .is_some_and(|rest| rest.starts_with('.'))
                        })
                    })
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                tokens: p
                    .data
                    .tokens
                    .iter()
                    .filter(|(k, _)| k.as_str() != connector)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                lookups: BTreeMap::new(),
                rps: p.data.rps.clone(),
                lifetime: None,
                logins: p
                    .data
                    .logins
                    .iter()
                    .filter(|(k, _)| k.as_str() != connector)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                upstream_cookies: Default::default(),
            },
            None => SessionData {
                v: SESSION_FORMAT,
                sid: random_token(16),
                created: now,
                seen: now,
                attrs: Attributes::new(),
                tokens: BTreeMap::new(),
                lookups: BTreeMap::new(),
                rps: BTreeMap::new(),
                lifetime: None,
                logins: BTreeMap::new(),
                upstream_cookies: Default::default(),
            },
        };
        data.attrs.extend(attrs);
        if let Some(t) = tokens {
            data.tokens.insert(connector.to_string(), t);
        }
        data.attrs.insert(
            format!("{connector}.authenticated"),
            serde_json::Value::Bool(true),
        );
        data
    }

    /// Stores `data` (from `new_record`) under a *new* session id (no fixation), deletes
    /// `previous`, and returns the `Set-Cookie` value.
    pub async fn start(
        &self,
        data: SessionData,
        previous: Option<&Session>,
        connector: &str,
        upstream: Option<&UpstreamSession>,
    ) -> Result<String, StoreError> {
        let now = data.created;
        let (max_secs, _) = self.limits(&data);
        let id = random_token(32);
        let ttl = self.ttl(&data, now);
        let bytes = Bytes::from(serde_json::to_vec(&data).unwrap_or_default());
        let key = store_key(&id);
        self.store.put(&key, bytes, ttl).await?;
        self.store
            .put(
                &upstream::pointer_key(&data.sid),
                Bytes::from(key),
                Duration::from_secs(max_secs),
            )
            .await?;
        if let Some(up) = upstream {
            self.index_upstream(connector, &data.sid, up).await?;
        }
        if let Some(p) = previous {
            self.decoded.forget(&p.id);
            self.store.delete(&p.store_key()).await?;
        }
        Ok(self.settings.cookie.set(&id, Some(max_secs)))
    }

    /// Merges attribute-provider results into `session` (already applied to `session.data`
    /// by the caller) and into its stored record.
    pub async fn update_attrs(
        &self,
        session: &Session,
        updates: &[AttrUpdate],
    ) -> Result<(), StoreError> {
        if updates.is_empty() {
            return Ok(());
        }
        self.modify(session, |data| {
            for u in updates {
                u.apply(data);
            }
        })
        .await
    }

    /// Makes `attrs` the attributes of `session` (an extension's answer: the session's own
    /// plus what the hook set) and stores the ones that changed, by compare-and-set.
    pub async fn take_attrs(
        &self,
        session: &mut Session,
        attrs: Attributes,
    ) -> Result<(), StoreError> {
        let changes: Vec<(String, serde_json::Value)> = attrs
            .iter()
            .filter(|(k, v)| session.data.attrs.get(*k) != Some(*v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Arc::make_mut(&mut session.data).attrs = attrs;
        if changes.is_empty() {
            return Ok(());
        }
        self.modify(session, |data| {
            for (k, v) in &changes {
                data.attrs.insert(k.clone(), v.clone());
            }
        })
        .await
    }

    /// Applies `change` to the stored record of `session` by compare-and-set, so a concurrent
    /// request's write is never lost: on a conflict the record is read again and `change`
    /// re-applied. A session ended meanwhile is left alone.
    pub async fn modify(
        &self,
        session: &Session,
        change: impl Fn(&mut SessionData),
    ) -> Result<(), StoreError> {
        let key = session.store_key();
        for _ in 0..8 {
            let Some(bytes) = self.store.get(&key).await? else {
                return Ok(());
            };
            let Ok(mut data) = serde_json::from_slice::<SessionData>(&bytes) else {
                return Ok(());
            };
            change(&mut data);
            let ttl = self.ttl(&data, self.clock.now());
            let new = Bytes::from(serde_json::to_vec(&data).unwrap_or_default());
            if self.store.compare_and_set(&key, &bytes, new, ttl).await? {
                return Ok(());
            }
        }
        tracing::debug!(session = %key, "session update lost every race; it will be redone");
        Ok(())
    }

    /// Ends a session server-side (the listener first, so the grants issued in it end
    /// with it); returns the `Set-Cookie` value that clears it and the front-channel pages.
    pub async fn end(&self, session: Option<&Session>) -> Result<Ended, StoreError> {
        self.end_for(session, EndReason::Logout).await
    }

    /// `end`, for `why`.
    pub async fn end_for(
        &self,
        session: Option<&Session>,
        why: EndReason,
    ) -> Result<Ended, StoreError> {
        let mut frames = Vec::new();
        if let Some(s) = session {
            self.decoded.forget(&s.id);
            frames = self.ended(&s.data, why).await?;
            self.store.delete(&s.store_key()).await?;
            if !s.data.sid.is_empty() {
                self.store
                    .delete(&upstream::pointer_key(&s.data.sid))
                    .await?;
            }
            tracing::debug!(session = %s.store_key(), reason = why.as_str(), "session ended");
        }
        Ok(Ended {
            clear: self.settings.cookie.clear(),
            frames,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use cookie::SameSite;
    use http::header::COOKIE;
    use http::HeaderValue;

    fn sessions(max: u64, idle: u64) -> Sessions {
        Sessions::new(
            Arc::new(MemoryStore::new()),
            SessionSettings {
                cookie: CookieSpec {
                    name: "sid".into(),
                    path: "/",
                    domain: None,
                    same_site: SameSite::Lax,
                    secure: false,
                },
                max_lifetime: Duration::from_secs(max),
                idle_timeout: Duration::from_secs(idle),
            },
        )
    }

    fn headers_for(set_cookie: &str) -> HeaderMap {
        let pair = set_cookie.split(';').next().unwrap();
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_str(pair).unwrap());
        h
    }

    #[tokio::test]
    async fn login_rotates_and_logout_deletes() {
        let s = sessions(100, 50);
        let mut attrs = Attributes::new();
        attrs.insert("local.email".into(), "a@x".into());
        let c1 = s.login(None, "local", attrs.clone()).await.unwrap();
        let h1 = headers_for(&c1);
        let s1 = s.load(&h1).await.unwrap().unwrap();
        assert!(s1.data.authenticated_by_any(&["local".into()]));
        assert!(!s1.data.authenticated_by_any(&["okta".into()]));
        let c2 = s
            .login(Some(&s1), "other", Attributes::new())
            .await
            .unwrap();
        assert_ne!(c1, c2);
        assert!(s.load(&h1).await.unwrap().is_none(), "old id must be dead");
        let s2 = s.load(&headers_for(&c2)).await.unwrap().unwrap();
        assert_eq!(s2.data.attrs["local.email"], "a@x");
        assert!(s2.data.authenticated_by_any(&["other".into()]));
        s.end(Some(&s2)).await.unwrap();
        assert!(s.load(&headers_for(&c2)).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn forged_and_malformed_ids_are_no_session() {
        let s = sessions(100, 50);
        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            HeaderValue::from_static("sid=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        );
        assert!(s.load(&h).await.unwrap().is_none());
        h.insert(COOKIE, HeaderValue::from_static("sid=../../etc/passwd"));
        assert!(s.load(&h).await.unwrap().is_none());
    }

    /// Sessions of `max` seconds' lifetime and `idle` seconds' idle timeout on a manual clock.
    fn sessions_at(max: u64, idle: u64) -> (Sessions, Clock) {
        let clock = Clock::manual(1_700_000_000);
        let s = sessions(max, idle);
        (
            Sessions::with_clock(s.store, s.settings, clock.clone()),
            clock,
        )
    }

    #[tokio::test]
    async fn a_session_ends_exactly_at_its_lifetime() {
        let (s, clock) = sessions_at(100, 1000);
        let h = headers_for(&s.login(None, "local", Attributes::new()).await.unwrap());
        for _ in 0..9 {
            clock.advance(11); // used often: never idle
            assert!(s.load(&h).await.unwrap().is_some());
        }
        // 99 seconds old: alive; 100: gone, and gone for good
        assert!(s.load(&h).await.unwrap().is_some(), "99 s old");
        clock.advance(1);
        assert!(s.load(&h).await.unwrap().is_none(), "100 s old");
        clock.advance(1000);
        assert!(s.load(&h).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_session_ends_exactly_when_idle_and_use_keeps_it_alive() {
        let (s, clock) = sessions_at(10_000, 50);
        let h = headers_for(&s.login(None, "local", Attributes::new()).await.unwrap());
        // used every 49 s for far longer than the idle timeout: alive (each use is seen)
        for _ in 0..10 {
            clock.advance(49);
            assert!(s.load(&h).await.unwrap().is_some());
        }
        // 50 s without use: gone
        clock.advance(50);
        assert!(s.load(&h).await.unwrap().is_none());
    }

    /// A session's own lifetime (`session.lifetime` hooks) ends it earlier, and never later
    /// than the configured lifetime and idle timeout.
    #[tokio::test]
    async fn a_sessions_own_lifetime_only_shortens() {
        let (s, clock) = sessions_at(100, 40);
        let start = |max_secs, idle_secs| {
            let mut data = s.new_record(None, "local", Attributes::new(), None);
            data.lifetime = Some(Lifetime {
                max_secs,
                idle_secs,
            });
            s.start(data, None, "local", None)
        };
        let short = start(30, 1000).await.unwrap();
        assert!(short.contains("Max-Age=30"), "{short}");
        let greedy = start(1_000_000, 1_000_000).await.unwrap();
        assert!(greedy.contains("Max-Age=100"), "{greedy}");
        let dozy = start(1000, 20).await.unwrap();
        let (short, greedy, dozy) = (
            headers_for(&short),
            headers_for(&greedy),
            headers_for(&dozy),
        );
        clock.advance(19);
        assert!(s.load(&dozy).await.unwrap().is_some(), "19 s unused");
        clock.advance(10);
        assert!(s.load(&short).await.unwrap().is_some(), "29 s old");
        assert!(s.load(&greedy).await.unwrap().is_some());
        clock.advance(1);
        assert!(s.load(&short).await.unwrap().is_none(), "30 s old");
        // 11 s since dozy's last use: alive (its idle timeout is 20 s) …
        assert!(s.load(&dozy).await.unwrap().is_some());
        clock.advance(20);
        assert!(s.load(&dozy).await.unwrap().is_none(), "20 s unused");
        // … greedy (last used at 29 s) asked for 1,000,000 s idle: the configured 40 s holds.
        clock.advance(20);
        assert!(s.load(&greedy).await.unwrap().is_none(), "41 s unused");
    }

    /// The decoded-session cache never hides the store: a record changed or deleted behind
    /// this process's back (another replica) is seen at the next load.
    #[tokio::test]
    async fn the_store_stays_the_truth_under_the_decoded_cache() {
        let s = sessions(1000, 500);
        let mut attrs = Attributes::new();
        attrs.insert("local.level".into(), 1.into());
        let h = headers_for(&s.login(None, "local", attrs).await.unwrap());
        let first = s.load(&h).await.unwrap().unwrap();
        let again = s.load(&h).await.unwrap().unwrap();
        assert!(
            Arc::ptr_eq(&first.data, &again.data),
            "the same record is decoded once"
        );
        // Changed elsewhere: written straight to the store, as another replica would.
        let mut changed = (*again.data).clone();
        changed.attrs.insert("local.level".into(), 2.into());
        let key = again.store_key();
        s.store
            .put(
                &key,
                Bytes::from(serde_json::to_vec(&changed).unwrap()),
                Duration::from_secs(100),
            )
            .await
            .unwrap();
        let seen = s.load(&h).await.unwrap().unwrap();
        assert_eq!(seen.data.attrs["local.level"], 2);
        // Ended elsewhere.
        s.store.delete(&key).await.unwrap();
        assert!(s.load(&h).await.unwrap().is_none());
        // A change made through a loaded session does not leak into the cached decoding.
        let h = headers_for(&s.login(None, "local", Attributes::new()).await.unwrap());
        let mut mine = s.load(&h).await.unwrap().unwrap();
        Arc::make_mut(&mut mine.data)
            .attrs
            .insert("local.x".into(), 1.into());
        assert!(!s
            .load(&h)
            .await
            .unwrap()
            .unwrap()
            .data
            .attrs
            .contains_key("local.x"));
    }
}
