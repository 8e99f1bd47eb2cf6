//! Attribute providers: `attrProviders: [{connector, usernameMapping}]` on an app. After a
//! user is authenticated and before anything is authorized, the provider (an LDAP connector)
//! is asked for the user named by the mapped session attribute, and what it returns lands in
//! the session as `<connector>.<attribute>` (plus `<connector>.dn`).
//!
//! Results are cached in the session — for the session's life, or `refreshSeconds` — so a
//! request with cached attributes costs no directory call and no extra store operation. A
//! user the directory does not know is cached as such too. A directory that cannot answer
//! fails the request closed (503): never a request authorized on half the attributes.
//!
//! The cache is keyed by the username looked up: if the mapped attribute changes (another
//! login), the lookup is made again; a new login drops looked-up attributes altogether.
//!
//! The match must be exact: a directory finds `alice` for `ALICE`, ` alice` or `ａlice`
//! (its matching rule ignores case, width and surrounding spaces), but those are other users
//! of the mapped connector. An entry whose stored username (the attribute `searchFilter`
//! compares) is not byte for byte the mapped value is refused — the provider yields no
//! entry (cached like an unknown user) and a warning is logged — so no user is given
//! another's directory attributes.

use serde_json::Value;

use super::ldap::LdapError;
use super::{Connector, Connectors};
use crate::claims::{AttrRef, Attributes};
use crate::session::{now_unix, AttrUpdate, Session, SessionData, Sessions};
use crate::store::StoreError;

use crate::web::rejection::Rejection;

/// One `attrProviders` entry of an app.
#[derive(Debug, Clone)]
pub struct AttrProvider {
    /// An LDAP connector.
    pub connector: String,
    /// The session attribute whose value is the username to look up (`local.username`).
    pub username: AttrRef,
    /// `<connector>.authenticated`, computed once (the per-request check allocates nothing).
    authenticated_key: String,
}

impl AttrProvider {
    pub fn new(connector: String, username: AttrRef) -> Self {
        Self {
            authenticated_key: format!("{connector}.authenticated"),
            connector,
            username,
        }
    }
}

/// Why the attributes could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("attribute provider `{connector}` failed: {error}")]
    Directory { connector: String, error: LdapError },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ProviderError {
    /// The refusal a request gets when its attributes cannot be loaded (logged here).
    pub fn rejection(&self) -> Rejection {
        tracing::error!(error = %self, "attributes unavailable: request refused");
        match self {
            ProviderError::Directory { .. } => Rejection::DirectoryUnavailable,
            ProviderError::Store(_) => Rejection::StoreUnavailable,
        }
    }
}

enum Due {
    /// Look the user up by this username.
    Lookup(String),
    /// The mapped attribute is gone: forget what was looked up before.
    Forget,
}

/// What `p` needs for `data`, if anything.
fn due(p: &AttrProvider, refresh: Option<u64>, data: &SessionData, now: u64) -> Option<Due> {
    // The user signed in with this connector: its attributes came with the login.
    if data.attrs.get(&p.authenticated_key) == Some(&Value::Bool(true)) {
        return None;
    }
    let key: std::borrow::Cow<'_, str> = match p.username.get(&data.attrs) {
        Some(Value::String(s)) if !s.is_empty() => s.into(),
        Some(Value::Number(n)) => n.to_string().into(),
        _ => {
            return data
                .lookups
                .contains_key(&p.connector)
                .then_some(Due::Forget);
        }
    };
    let fresh = data
        .lookups
        .get(&p.connector)
        .is_some_and(|l| l.key == key && refresh.is_none_or(|r| now.saturating_sub(l.at) < r));
    (!fresh).then(|| Due::Lookup(key.into_owned()))
}

/// Brings the providers' attributes in `data` up to date (in order, so a provider's mapping
/// may use an earlier provider's attribute); returns the updates made, for the store. `data`
/// is copied only when an update is made (it may be shared with the decoded-session cache).
pub async fn resolve(
    connectors: &Connectors,
    providers: &[AttrProvider],
    data: &mut std::sync::Arc<SessionData>,
) -> Result<Vec<AttrUpdate>, ProviderError> {
    let mut updates = Vec::new();
    let now = now_unix();
    for p in providers {
        let Some(Connector::Ldap(ldap)) = connectors.get(&p.connector).map(|c| c.as_ref()) else {
            continue;
        };
        let refresh = ldap.refresh().map(|d| d.as_secs());
        let update = match due(p, refresh, data, now) {
            None => continue,
            Some(Due::Forget) => AttrUpdate {
                connector: p.connector.clone(),
                key: None,
                attrs: None,
                at: now,
            },
            Some(Due::Lookup(key)) => {
                let found = ldap
                    .lookup(&key)
                    .await
                    .map_err(|error| ProviderError::Directory {
                        connector: p.connector.clone(),
                        error,
                    })?;
                if found.is_none() {
                    tracing::info!(connector = %p.connector, user = %key,
                        "attribute provider has no such user");
                }
                AttrUpdate {
                    connector: p.connector.clone(),
                    key: Some(key),
                    attrs: found,
                    at: now,
                }
            }
        };
        update.apply(std::sync::Arc::make_mut(data));
        updates.push(update);
    }
    Ok(updates)
}

/// Makes sure `session` has its providers' attributes (fetching and storing them when they
/// are missing, stale, or were fetched for another username). Cheap when they are cached.
pub async fn ensure(
    connectors: &Connectors,
    sessions: &Sessions,
    providers: &[AttrProvider],
    session: &mut Session,
) -> Result<(), ProviderError> {
    if providers.is_empty() {
        return Ok(());
    }
    let updates = resolve(connectors, providers, &mut session.data).await?;
    sessions.update_attrs(session, &updates).await?;
    Ok(())
}

/// Adds the providers' attributes to `attrs` that are not in a session (the password grant).
pub async fn resolve_attrs(
    connectors: &Connectors,
    providers: &[AttrProvider],
    attrs: &mut Attributes,
) -> Result<(), ProviderError> {
    if providers.is_empty() {
        return Ok(());
    }
    let mut data = std::sync::Arc::new(SessionData {
        v: 1,
        sid: String::new(),
        created: 0,
        seen: 0,
        attrs: std::mem::take(attrs),
        tokens: Default::default(),
        lookups: Default::default(),
        rps: Default::default(),
        lifetime: None,
        logins: Default::default(),
        upstream_cookies: Default::default(),
    });
    let result = resolve(connectors, providers, &mut data).await;
    *attrs = std::mem::take(&mut std::sync::Arc::make_mut(&mut data).attrs);
    result.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Lookup;
    use serde_json::json;

    fn data(attrs: Attributes) -> SessionData {
        SessionData {
            v: 1,
            sid: String::new(),
            created: 0,
            seen: 0,
            attrs,
            tokens: Default::default(),
            lookups: Default::default(),
            rps: Default::default(),
            lifetime: None,
            logins: Default::default(),
            upstream_cookies: Default::default(),
        }
    }

    fn provider() -> AttrProvider {
        AttrProvider::new("ldap".into(), AttrRef::parse("local.username").unwrap())
    }

    #[test]
    fn lookups_are_cached_per_username_and_refreshed() {
        let p = provider();
        let mut d = data(Attributes::from([(
            "local.username".into(),
            json!("alice"),
        )]));
        assert!(matches!(due(&p, None, &d, 100), Some(Due::Lookup(k)) if k == "alice"));
        AttrUpdate {
            connector: "ldap".into(),
            key: Some("alice".into()),
            attrs: Some(Attributes::from([
                ("ldap.mail".into(), json!("a@x")),
                ("ldap.dn".into(), json!("uid=alice,dc=x")),
                ("other.x".into(), json!("ignored: not this connector's")),
            ])),
            at: 100,
        }
        .apply(&mut d);
        assert_eq!(d.attrs["ldap.mail"], "a@x");
        assert!(!d.attrs.contains_key("other.x"));
        assert_eq!(
            d.lookups["ldap"],
            Lookup {
                at: 100,
                key: "alice".into()
            }
        );
        assert!(
            due(&p, None, &d, 1_000_000).is_none(),
            "cached for the session's life"
        );
        assert!(due(&p, Some(60), &d, 159).is_none());
        assert!(
            matches!(due(&p, Some(60), &d, 160), Some(Due::Lookup(_))),
            "refreshed"
        );
        // another username (a new login) is looked up again
        d.attrs.insert("local.username".into(), json!("bob"));
        assert!(matches!(due(&p, None, &d, 101), Some(Due::Lookup(k)) if k == "bob"));
        // not found: cached as such, the old attributes are gone
        AttrUpdate {
            connector: "ldap".into(),
            key: Some("bob".into()),
            attrs: None,
            at: 101,
        }
        .apply(&mut d);
        assert!(!d.attrs.keys().any(|k| k.starts_with("ldap.")));
        assert!(due(&p, None, &d, 102).is_none());
        // the mapped attribute disappears: forget
        d.attrs.remove("local.username");
        assert!(matches!(due(&p, None, &d, 103), Some(Due::Forget)));
        // signed in with the provider itself: nothing to look up
        let d = data(Attributes::from([
            ("local.username".into(), json!("alice")),
            ("ldap.authenticated".into(), json!(true)),
        ]));
        assert!(due(&p, None, &d, 100).is_none());
    }

    fn sessions() -> Sessions {
        use crate::session::cookie::{CookieSpec, SameSite};
        Sessions::new(
            std::sync::Arc::new(crate::store::MemoryStore::new()),
            crate::session::SessionSettings {
                cookie: CookieSpec {
                    name: "sid".into(),
                    path: "/",
                    domain: None,
                    same_site: SameSite::Lax,
                    secure: false,
                },
                max_lifetime: std::time::Duration::from_secs(100),
                idle_timeout: std::time::Duration::from_secs(50),
            },
        )
    }

    fn headers_for(set_cookie: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::COOKIE,
            set_cookie.split(';').next().unwrap().parse().unwrap(),
        );
        h
    }

    fn update(connector: &str, key: &str, attrs: &[(&str, Value)]) -> AttrUpdate {
        AttrUpdate {
            connector: connector.into(),
            key: Some(key.into()),
            attrs: Some(
                attrs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect(),
            ),
            at: 1,
        }
    }

    #[tokio::test]
    async fn concurrent_updates_are_not_lost_and_a_new_login_drops_them() {
        let s = sessions();
        let attrs = Attributes::from([("local.username".into(), json!("alice"))]);
        let h = headers_for(&s.login(None, "local", attrs).await.unwrap());
        // two requests loaded the same session; each stores its own lookup
        let first = s.load(&h).await.unwrap().unwrap();
        let second = s.load(&h).await.unwrap().unwrap();
        s.update_attrs(
            &first,
            &[update("ldap", "alice", &[("ldap.mail", json!("a@x"))])],
        )
        .await
        .unwrap();
        s.update_attrs(
            &second,
            &[update("hr", "alice", &[("hr.grade", json!("7"))])],
        )
        .await
        .unwrap();
        let now = s.load(&h).await.unwrap().unwrap();
        assert_eq!(
            now.data.attrs["ldap.mail"], "a@x",
            "the first write survived the second"
        );
        assert_eq!(now.data.attrs["hr.grade"], "7");
        assert_eq!(now.data.lookups.len(), 2);
        // signing in again (another user, same browser): looked-up attributes are dropped
        let bob = Attributes::from([("local.username".into(), json!("bob"))]);
        let h2 = headers_for(&s.login(Some(&now), "local", bob).await.unwrap());
        let after = s.load(&h2).await.unwrap().unwrap();
        assert!(!after
            .data
            .attrs
            .keys()
            .any(|k| k.starts_with("ldap.") || k.starts_with("hr.")));
        assert!(after.data.lookups.is_empty());
        assert_eq!(after.data.attrs["local.username"], "bob");
    }
}
