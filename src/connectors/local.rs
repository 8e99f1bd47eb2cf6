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

/// Failed-login throttling settings.
#[derive(Debug, Clone, Copy)]
pub struct Throttle {
    /// Failures per username in `window` before further attempts are refused.
    pub max_failures: u32,
    pub window: Duration,
}

impl Throttle {
    /// A client IP may fail for several usernames (shared NAT) before it is refused.
    pub fn max_ip_failures(&self) -> u32 {
        self.max_failures.saturating_mul(4)
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
                max_failures: 5,
                window: Duration::from_secs(60),
            },
        );
        let a = c.verify("alice", "pw").await.unwrap();
        assert_eq!(a["local.email"], "a@x");
        assert_eq!(a["local.username"], "alice");
        assert!(c.verify("alice", "wrong").await.is_none());
        assert!(c.verify("nobody", "pw").await.is_none());
    }
}
