//! Checking a username and password at a password connector (local users or LDAP): the one
//! function the login form and the provider's password grant share, so both count attempts
//! the same way and both reach the directory.
//!
//! The attempt is reserved against the throttle *before* the password is checked (a burst
//! gets at most `maxFailures` checks), under the user as the connector knows them: the
//! directory entry found with the service account, or the username folded as the connector
//! would fold it, so spelling variants of one user share one budget.

use std::net::IpAddr;
use std::time::Duration;

use super::throttle::{self, Reservation};
use crate::claims::Attributes;
use crate::connectors::{username, Connector};
use crate::runtime::Runtime;
use crate::store::StoreError;

/// What a check found.
#[derive(Debug)]
pub enum Checked {
    /// The password is right: the user's attributes from the connector.
    Verified(Attributes),
    /// Wrong username or password. The attempt is reserved: the caller settles it with
    /// `failed()` (and waits the delay it returns) or, when another connector then knows the
    /// user, with `refund`.
    Wrong(Reservation),
    /// Too many failed attempts for this user or client: refused without checking.
    Throttled { retry_after: Duration },
    /// The directory could not be asked: not the user's fault, nothing counted.
    DirectoryDown(String),
    /// The connector does not check passwords (or does not exist).
    NotAPasswordConnector,
}

/// Checks `username`/`password` at the connector `idp` for a client at `ip`.
pub async fn check(
    rt: &Runtime,
    idp: &str,
    username: &str,
    password: &str,
    ip: IpAddr,
) -> Result<Checked, StoreError> {
    let connector = rt.connectors.get(idp).map(|c| c.as_ref());
    let limits = match connector {
        Some(Connector::Local(c)) => c.throttle,
        Some(Connector::Ldap(c)) => c.throttle,
        _ => return Ok(Checked::NotAPasswordConnector),
    };
    let (throttle_user, entry) = match connector {
        Some(Connector::Ldap(c)) => match c.find_login(username).await {
            Ok(Some(entry)) => (entry.throttle_key(), Some(entry)),
            Ok(None) => (format!("name:{}", username::fold(username)), None),
            Err(e) => return Ok(Checked::DirectoryDown(e.to_string())),
        },
        _ => (username::fold(username), None),
    };
    let store = rt.sessions.store().as_ref();
    let Some(reservation) = throttle::reserve(store, &limits, idp, &throttle_user, ip).await?
    else {
        return Ok(Checked::Throttled {
            retry_after: limits.window,
        });
    };
    let verified = match (connector, &entry) {
        (Some(Connector::Local(c)), _) => c.verify(username, password).await,
        (Some(Connector::Ldap(c)), Some(entry)) => match c.bind(entry, password).await {
            Ok(attrs) => attrs,
            Err(e) => {
                reservation.refund(store).await?;
                return Ok(Checked::DirectoryDown(e.to_string()));
            }
        },
        // An LDAP user the directory does not have: a wrong username.
        _ => None,
    };
    match verified {
        Some(attrs) => {
            // A store failure here only leaves the counters to expire.
            let _ = reservation.succeeded(store).await;
            Ok(Checked::Verified(attrs))
        }
        None => Ok(Checked::Wrong(reservation)),
    }
}
