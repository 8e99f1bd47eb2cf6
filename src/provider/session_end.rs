//! The grants of a gateway session end with it.
//!
//! A code, refresh token or access token issued to a user in a browser session is bound to
//! that session by its `sid` (`Grant::sid`). When the session ends (a sign-out anywhere, an
//! expired session seen, the upstream IdP's logout), [`SessionEnds`] leaves a mark,
//! `oidc:session-ended:<sid>`, for as long as any token of the session may live; every check
//! of a bound code or token looks for it. The mark is in the provider's store, so a sign-out
//! at one replica is seen by every replica at once, and a token minted while the sign-out
//! ran is dead at its first use. One mark per session, whatever the number of its tokens.
//!
//! The clients that got a code in the session (`SessionData::rps`) and registered a
//! `backchannelLogoutURI` are told, in the background (`backchannel`); the URIs of those
//! with a `frontchannelLogoutURI` are returned for the signed-out page to load.
//!
//! A client with `refreshToken.survivesLogout` keeps its refresh tokens: at their first use
//! after the session ended, the grant is unbound (`sid` dropped), so the tokens minted from
//! then on no longer die with it. A bound family's JWT access tokens and the unbound ones
//! have separate grant records (see `mint`), so unbinding never revives a token the
//! sign-out ended.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use std::collections::HashMap;

use super::backchannel::{Notice, Notifier, Registration};
use super::errors::OAuthError;
use super::grants::Grant;
use super::{Client, Provider};
use crate::session::{now_unix, EndListener, EndReason, SessionData};
use crate::store::{Store, StoreError};

/// The mark of an ended session.
pub fn ended_key(sid: &str) -> String {
    format!("oidc:session-ended:{sid}")
}

/// The shortest horizon of an ended session's mark (a client's code lifetime, access and
/// refresh token lifetimes lengthen it).
pub const CODE_TTL: Duration = Duration::from_secs(60);

/// Marks ended sessions in the provider's store and tells their clients (the sessions'
/// listener).
#[derive(Debug)]
pub struct SessionEnds {
    store: Arc<dyn Store>,
    /// How long a mark stays: the longest any token bound to a session may live.
    horizon: Duration,
    /// Clients with a `backchannelLogoutURI`, by client ID.
    backchannel: HashMap<String, Registration>,
    /// Clients with a `frontchannelLogoutURI`, by client ID.
    frontchannel: HashMap<String, Registration>,
    notifier: Notifier,
    issuer: String,
}

impl SessionEnds {
    pub fn new<'a>(
        store: Arc<dyn Store>,
        clients: impl Iterator<Item = &'a Client> + Clone,
        notifier: Notifier,
        issuer: String,
    ) -> Self {
        let horizon = clients
            .clone()
            .flat_map(|c| [c.access_token.lifetime, c.refresh.lifetime, c.code_lifetime])
            .fold(CODE_TTL, Duration::max)
            + Duration::from_secs(60);
        let backchannel = clients
            .clone()
            .filter_map(|c| Some((c.id.clone(), c.backchannel_logout.clone()?)))
            .collect();
        let frontchannel = clients
            .filter_map(|c| Some((c.id.clone(), c.frontchannel_logout.clone()?)))
            .collect();
        Self {
            store,
            horizon,
            backchannel,
            frontchannel,
            notifier,
            issuer,
        }
    }
}

#[async_trait::async_trait]
impl EndListener for SessionEnds {
    async fn session_ended(
        &self,
        data: &SessionData,
        why: EndReason,
    ) -> Result<Vec<String>, StoreError> {
        let at = Bytes::from(now_unix().to_string());
        self.store
            .put(&ended_key(&data.sid), at, self.horizon)
            .await?;
        tracing::debug!(reason = why.as_str(), "the session's grants are ended");
        for (client_id, sub) in &data.rps {
            if let Some(reg) = self.backchannel.get(client_id) {
                self.notifier.send(Notice {
                    client_id: client_id.clone(),
                    uri: reg.uri.clone(),
                    sub: sub.clone(),
                    sid: data.sid.clone(),
                });
            }
        }
        // Front-channel logout 1.0: the page the browser loads, with `iss` and `sid` when
        // the client asked for them.
        let frames = data
            .rps
            .keys()
            .filter_map(|client_id| self.frontchannel.get(client_id))
            .filter_map(|reg| {
                let mut url = url::Url::parse(&reg.uri).ok()?;
                if reg.session_required {
                    url.query_pairs_mut()
                        .append_pair("iss", &self.issuer)
                        .append_pair("sid", &data.sid);
                }
                Some(url.to_string())
            })
            .collect();
        Ok(frames)
    }
}

impl Provider {
    /// Has the session `grant` was issued in ended? Never, for a grant bound to no session
    /// (client credentials, the password grant, unbound survivors). Ended means signed out
    /// (the mark) or gone from the sessions' store: a session that reached its idle timeout
    /// or lifetime is dropped by the store's TTL, with nothing run at that moment, so its
    /// absence is what ends its grants.
    pub async fn session_ended(&self, grant: &Grant) -> Result<bool, OAuthError> {
        let Some(sid) = &grant.sid else {
            return Ok(false);
        };
        if self.store.get(&ended_key(sid)).await?.is_some() {
            return Ok(true);
        }
        match &self.session_store {
            Some(sessions) => Ok(!crate::session::is_alive(sessions.as_ref(), sid).await?),
            None => Ok(false),
        }
    }
}
