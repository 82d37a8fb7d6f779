//! API keys: `kgw_` + 32 random bytes (hex). Only the SHA-256 of a key is stored; the key
//! itself is shown once, when created. A lookup hashes the presented key and finds the row
//! by hash, so comparing secrets never happens in application code.

use sha2::{Digest, Sha256};

const PREFIX: &str = "kgw_";
/// Characters of a key kept in listings (`kgw_` and 8 hex digits).
const SHOWN_CHARS: usize = 12;

/// A new key: the secret to hand out once, its hash and its shown prefix.
pub struct NewKey {
    pub secret: String,
    pub hash: String,
    pub prefix: String,
}

pub fn generate() -> NewKey {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS provides randomness");
    let secret = format!("{PREFIX}{}", hex(&bytes));
    NewKey {
        hash: hash(&secret),
        prefix: secret[..SHOWN_CHARS].to_owned(),
        secret,
    }
}

/// Hex SHA-256 of a presented key.
pub fn hash(key: &str) -> String {
    hex(&Sha256::digest(key.as_bytes()))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_are_unique_and_hash_stably() {
        let (a, b) = (super::generate(), super::generate());
        assert_ne!(a.secret, b.secret);
        assert_eq!(super::hash(&a.secret), a.hash);
        assert!(a.secret.starts_with(&a.prefix) && a.prefix.len() == 12);
    }
}
