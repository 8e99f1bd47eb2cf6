//! The built-in user store: users with argon2id password hashes and static attributes.
//! Runs offline (demos, tests, break-glass accounts).

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

use crate::claims::Attributes;

#[derive(Debug, Clone)]
pub struct LocalUser {
    pub password_hash: String,
    pub attributes: Attributes,
}

/// Failed-login throttling settings (see `login::throttle` for the buckets).
#[derive(Debug, Clone, Copy)]
pub struct Throttle {
    /// Failures per user (the canonical user: folded username, or the directory entry) in
    /// `window`, from any client IP, before further attempts are refused.
    pub max_failures: u32,
    pub window: Duration,
    /// Distinct users that may have failures from one client IP in `window`: past it, that IP
    /// may not try *other* users (password spraying), while users who already tried from it
    /// keep their own budget — one user's typos behind a shared ingress never lock out the
    /// others.
    pub max_users_per_ip: u32,
}

/// Default `throttle.maxFailures`.
pub const DEFAULT_MAX_FAILURES: u32 = 5;
/// Default `throttle.windowSeconds`.
pub const DEFAULT_WINDOW_SECONDS: u64 = 900;
/// Default `throttle.maxUsersPerClientIP`.
pub const DEFAULT_MAX_USERS_PER_IP: u32 = 50;

impl Default for Throttle {
    fn default() -> Self {
        Self {
            max_failures: DEFAULT_MAX_FAILURES,
            window: Duration::from_secs(DEFAULT_WINDOW_SECONDS),
            max_users_per_ip: DEFAULT_MAX_USERS_PER_IP,
        }
    }
}

#[derive(Debug)]
pub struct LocalConnector {
    pub name: String,
    users: HashMap<String, LocalUser>,
    pub throttle: Throttle,
}

/// Hashes a password as argon2id with the crate's defaults (the OWASP-recommended
/// m=19 MiB, t=2, p=1) and a random salt; the PHC string is what `passwordHash` takes.
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// Checks that `phc` is an argon2 PHC string this build can verify.
pub fn check_hash(phc: &str) -> Result<(), String> {
    let parsed = PasswordHash::new(phc).map_err(|e| format!("not a PHC hash string: {e}"))?;
    match parsed.algorithm.as_str() {
        "argon2id" | "argon2i" | "argon2d" => Ok(()),
        other => Err(format!(
            "`{other}` hashes are not supported (argon2id expected)"
        )),
    }
}

fn hashing_permits() -> &'static tokio::sync::Semaphore {
    static PERMITS: OnceLock<tokio::sync::Semaphore> = OnceLock::new();
    PERMITS.get_or_init(|| {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        tokio::sync::Semaphore::new(cores)
    })
}

/// Verifying against this when the user does not exist keeps the answer time the same,
/// so response timing does not reveal which usernames exist.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_password("tessera-dummy-password").unwrap_or_default())
}

impl LocalConnector {
    pub fn new(name: String, users: HashMap<String, LocalUser>, throttle: Throttle) -> Self {
        Self {
            name,
            users,
            throttle,
        }
    }

    /// Checks the password off the async runtime (argon2 is deliberately slow); on success
    /// returns the attributes for the session, namespaced with the connector's name.
    pub async fn verify(&self, username: &str, password: &str) -> Option<Attributes> {
        let user = self.users.get(username).cloned();
        let hash = user
            .as_ref()
            .map(|u| u.password_hash.clone())
            .unwrap_or_else(|| dummy_hash().to_string());
        let password = password.to_string();
        // At most one hash per core at a time: each argon2id verification takes ~19 MiB and
        // a core for tens of ms, so unbounded parallel logins would inflate memory (measured
        // 925 MiB under 8 concurrent sign-ins) and starve everything else.
        let _permit = hashing_permits().acquire().await.ok();
        let ok = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash)
                .map(|h| {
                    Argon2::default()
                        .verify_password(password.as_bytes(), &h)
                        .is_ok()
                })
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        let user = user.filter(|_| ok)?;
        let mut attrs: Attributes = user
            .attributes
            .iter()
            .map(|(k, v)| (format!("{}.{}", self.name, k), v.clone()))
            .collect();
        attrs
            .entry(format!("{}.username", self.name))
            .or_insert_with(|| username.into());
        attrs
            .entry(format!("{}.sub", self.name))
            .or_insert_with(|| username.into());
        Some(attrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn verifies_and_namespaces() {
        let hash = hash_password("pw").unwrap();
        assert!(hash.starts_with("$argon2id$v=19$"));
        check_hash(&hash).unwrap();
        assert!(check_hash("plain").is_err());
        let mut users = HashMap::new();
        let mut attributes = Attributes::new();
        attributes.insert("email".into(), "a@x".into());
        users.insert(
            "alice".into(),
            LocalUser {
                password_hash: hash,
                attributes,
            },
        );
        let c = LocalConnector::new(
            "local".into(),
            users,
            Throttle {
                window: Duration::from_secs(60),
                ..Throttle::default()
            },
        );
        let a = c.verify("alice", "pw").await.unwrap();
        assert_eq!(a["local.email"], "a@x");
        assert_eq!(a["local.username"], "alice");
        assert!(c.verify("alice", "wrong").await.is_none());
        assert!(c.verify("nobody", "pw").await.is_none());
    }
}
