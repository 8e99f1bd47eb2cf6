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
//! A client with `refreshToken.survivesLogout` keeps its refresh tokens: at their first use
//! after the session ended, the grant is unbound (`sid` dropped), so the tokens minted from
//! then on no longer die with it. A bound family's JWT access tokens and the unbound ones
//! have separate grant records (see `mint`), so unbinding never revives a token the
//! sign-out ended.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::errors::OAuthError;
use super::grants::Grant;
use super::{Client, Provider};
use crate::session::{now_unix, EndListener, EndReason, SessionData};
use crate::store::{Store, StoreError};

/// The mark of an ended session.
pub fn ended_key(sid: &str) -> String {
    format!("oidc:session-ended:{sid}")
}

/// How long a code lives (the longest a session's code may wait for its redemption).
pub const CODE_TTL: Duration = Duration::from_secs(60);

/// Marks ended sessions in the provider's store (the sessions' listener).
#[derive(Debug)]
pub struct SessionEnds {
    store: Arc<dyn Store>,
    /// How long a mark stays: the longest any token bound to a session may live.
    horizon: Duration,
}

impl SessionEnds {
    pub fn new<'a>(store: Arc<dyn Store>, clients: impl Iterator<Item = &'a Client>) -> Self {
        let horizon = clients
            .flat_map(|c| [c.access_token.lifetime, c.refresh.lifetime])
            .fold(CODE_TTL, Duration::max)
            + Duration::from_secs(60);
        Self { store, horizon }
    }
}

#[async_trait::async_trait]
impl EndListener for SessionEnds {
    async fn session_ended(&self, data: &SessionData, why: EndReason) -> Result<(), StoreError> {
        let at = Bytes::from(now_unix().to_string());
        self.store
            .put(&ended_key(&data.sid), at, self.horizon)
            .await?;
        tracing::debug!(reason = why.as_str(), "the session's grants are ended");
        Ok(())
    }
}

impl Provider {
    /// Has the session `grant` was issued in ended? Never, for a grant bound to no session
    /// (client credentials, the password grant, unbound survivors).
    pub async fn session_ended(&self, grant: &Grant) -> Result<bool, OAuthError> {
        match &grant.sid {
            None => Ok(false),
            Some(sid) => Ok(self.store.get(&ended_key(sid)).await?.is_some()),
        }
    }
}
