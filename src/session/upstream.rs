//! Which gateway sessions came from which upstream IdP session, so that the IdP's
//! back-channel logout can end them.
//!
//! At a sign-in through an OIDC connector, the gateway session's `sid` is listed under the
//! IdP's `sid` and under its `sub` (`upstream-session:<connector>:{sid,sub}:<hash>`, a short
//! JSON list updated by compare-and-set, kept as long as a session may live). Every login
//! also points the session's `sid` at its current store key (`session-by-sid:<sid>`): the
//! key changes when a second IdP extends the session, the `sid` does not.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{EndReason, SessionData, Sessions};
use crate::store::{Store, StoreError};

/// Most gateway sessions listed under one IdP session or subject (the oldest go first).
const MAX_LISTED: usize = 32;

/// The IdP session a gateway session came from (from the ID token of the sign-in).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamSession {
    pub sid: Option<String>,
    pub sub: Option<String>,
}

/// One gateway session listed under an IdP session or subject.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Listed {
    /// The gateway session's `sid`.
    sid: String,
    /// The IdP's subject of the sign-in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sub: Option<String>,
}

fn hashed(v: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(v.as_bytes()))
}

fn by_sid_key(connector: &str, sid: &str) -> String {
    format!("upstream-session:{connector}:sid:{}", hashed(sid))
}

fn by_sub_key(connector: &str, sub: &str) -> String {
    format!("upstream-session:{connector}:sub:{}", hashed(sub))
}

/// Where a gateway session (by `sid`) is stored now.
pub(super) fn pointer_key(sid: &str) -> String {
    format!("session-by-sid:{sid}")
}

/// Is the session `sid` still in `store` (not ended, not expired)? Its pointer names its
/// current record, whose TTL follows the idle timeout and the lifetime.
pub async fn is_alive(store: &dyn Store, sid: &str) -> Result<bool, StoreError> {
    let Some(key) = store.get(&pointer_key(sid)).await? else {
        return Ok(false);
    };
    let Ok(key) = std::str::from_utf8(&key) else {
        return Ok(false);
    };
    Ok(store.get(key).await?.is_some())
}

impl Sessions {
    /// Lists the gateway session `our_sid` under the IdP session `up` of `connector`.
    pub(super) async fn index_upstream(
        &self,
        connector: &str,
        our_sid: &str,
        up: &UpstreamSession,
    ) -> Result<(), StoreError> {
        let entry = Listed {
            sid: our_sid.to_string(),
            sub: up.sub.clone(),
        };
        let keys = [
            up.sid.as_deref().map(|s| by_sid_key(connector, s)),
            up.sub.as_deref().map(|s| by_sub_key(connector, s)),
        ];
        for key in keys.into_iter().flatten() {
            self.add_listed(&key, &entry).await?;
        }
        Ok(())
    }

    async fn add_listed(&self, key: &str, entry: &Listed) -> Result<(), StoreError> {
        let ttl = self.settings.max_lifetime;
        for _ in 0..8 {
            let old = self.store.get(key).await?;
            let mut list: Vec<Listed> = old
                .as_ref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or_default();
            if list.contains(entry) {
                return Ok(());
            }
            list.push(entry.clone());
            if list.len() > MAX_LISTED {
                list.drain(..list.len() - MAX_LISTED);
            }
            let new = Bytes::from(serde_json::to_vec(&list).unwrap_or_default());
            let stored = match &old {
                None => self.store.put_if_absent(key, new, ttl).await?,
                Some(old) => self.store.compare_and_set(key, old, new, ttl).await?,
            };
            if stored {
                return Ok(());
            }
        }
        tracing::warn!("upstream session index: every update lost its race");
        Ok(())
    }

    /// Ends every gateway session that came from the IdP session `sid` of `connector` (only
    /// those of subject `sub` when both are given), or from any session of subject `sub`
    /// when there is no `sid`. Returns how many sessions ended.
    pub async fn end_upstream(
        &self,
        connector: &str,
        sid: Option<&str>,
        sub: Option<&str>,
    ) -> Result<usize, StoreError> {
        let key = match (sid, sub) {
            (Some(s), _) => by_sid_key(connector, s),
            (None, Some(s)) => by_sub_key(connector, s),
            (None, None) => return Ok(0),
        };
        let Some(bytes) = self.store.get(&key).await? else {
            return Ok(0);
        };
        let list: Vec<Listed> = serde_json::from_slice(&bytes).unwrap_or_default();
        let mut ended = 0;
        for entry in list
            .iter()
            .filter(|e| sid.is_none() || sub.is_none() || e.sub.as_deref() == sub)
        {
            if self.end_by_sid(&entry.sid).await? {
                ended += 1;
            }
        }
        self.store.delete(&key).await?;
        Ok(ended)
    }

    /// Ends the gateway session `sid`, wherever it is stored now; `false` if it is gone.
    async fn end_by_sid(&self, sid: &str) -> Result<bool, StoreError> {
        let pointer = pointer_key(sid);
        let Some(key) = self.store.get(&pointer).await? else {
            return Ok(false);
        };
        let key = String::from_utf8_lossy(&key).to_string();
        let Some(bytes) = self.store.get(&key).await? else {
            return Ok(false);
        };
        let Ok(data) = serde_json::from_slice::<SessionData>(&bytes) else {
            return Ok(false);
        };
        if data.sid != sid {
            return Ok(false);
        }
        // No browser is there to load front-channel pages: back-channel only.
        self.ended(&data, EndReason::Upstream).await?;
        self.store.delete(&key).await?;
        self.store.delete(&pointer).await?;
        tracing::info!(session = %key, "session ended by the identity provider's logout");
        Ok(true)
    }
}
