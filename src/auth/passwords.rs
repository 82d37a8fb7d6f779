//! Password hashing: argon2id (the crate's defaults: 19 MiB, 2 passes, 1 lane — OWASP's
//! minimum), always on the blocking pool so a login never stalls an HTTP worker.
//!
//! [`Passwords::verify_or_dummy`] gives logins for unknown users the same cost as real ones:
//! it verifies against a hash made at start, so timing does not tell whether a user exists.

use argon2::{Argon2, PasswordHasher, PasswordVerifier};

/// Hashes and verifies passwords.
pub struct Passwords {
    /// A hash of a random password, verified against when the user is unknown.
    dummy_hash: String,
}

#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

fn hash_now(password: &str) -> Result<String, HashError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| HashError(e.to_string()))
}

impl Passwords {
    pub fn new() -> Self {
        let dummy = uuid::Uuid::new_v4().to_string();
        Self {
            dummy_hash: hash_now(&dummy).expect("argon2 hashes a short password"),
        }
    }

    /// The PHC string of `password`'s argon2id hash.
    pub async fn hash(&self, password: String) -> Result<String, HashError> {
        actix_web::web::block(move || hash_now(&password))
            .await
            .map_err(|e| HashError(e.to_string()))?
    }

    /// Whether `password` matches `hash`; with no hash, spends the same time and says no.
    pub async fn verify_or_dummy(&self, password: String, hash: Option<String>) -> bool {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy_hash.clone());
        let matched = actix_web::web::block(move || {
            Argon2::default()
                .verify_password(password.as_bytes(), hash.as_str())
                .is_ok()
        })
        .await
        .unwrap_or(false);
        known && matched
    }
}

impl Default for Passwords {
    fn default() -> Self {
        Self::new()
    }
}
