//! TOTP second factor (RFC 6238: SHA-1, 6 digits, 30 s steps, one step of skew), the
//! secrets enrolled per user, and which logins must present a code: the user's, once they
//! confirmed enrolment, and everyone's whose role is in `mfa_required_roles`.

use chrono::{DateTime, Utc};
use kailash_actors::accounts::UserRecord;
use totp_rs::{Builder, Secret, Totp};

use crate::config::Settings;

fn totp(base32: &str) -> Option<Totp> {
    let secret = Secret::try_from_base32(base32).ok()?;
    Builder::new().with_secret(secret).build().ok()
}

/// A new secret, base32.
pub fn new_secret() -> String {
    Secret::generate().to_base32()
}

/// The `otpauth://` URL authenticator apps import (usually as a QR code).
pub fn otpauth_url(issuer: &str, account: &str, secret: &str) -> String {
    let encode = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    format!(
        "otpauth://totp/{}:{}?secret={secret}&issuer={}&algorithm=SHA1&digits=6&period=30",
        encode(issuer),
        encode(account),
        encode(issuer)
    )
}

/// Whether `code` is valid for the base32 `secret` at `now`.
pub fn code_matches(secret: &str, code: &str, now: DateTime<Utc>) -> bool {
    let Ok(time) = u64::try_from(now.timestamp()) else {
        return false;
    };
    totp(secret).is_some_and(|t| t.check(code.trim(), time).is_some())
}

/// The code valid at `now` (for tests and tooling that play the authenticator app).
pub fn code_at(secret: &str, now: DateTime<Utc>) -> Option<String> {
    Some(
        totp(secret)?
            .generate(u64::try_from(now.timestamp()).ok()?)
            .to_string(),
    )
}

/// Whether `user`'s logins need a second factor.
pub fn required(settings: &Settings, user: &UserRecord) -> bool {
    user.totp_enabled
        || user
            .roles
            .iter()
            .any(|r| settings.mfa_required_roles.contains(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_their_step_and_not_others() {
        let secret = new_secret();
        let now = Utc::now();
        let code = code_at(&secret, now).unwrap();
        assert!(code_matches(&secret, &code, now));
        assert!(!code_matches(
            &secret,
            &code,
            now + chrono::Duration::minutes(5)
        ));
        assert!(!code_matches("not base32!", &code, now));
        assert!(otpauth_url("Kailash Gateway", "ann", &secret).contains("Kailash%20Gateway"));
    }
}
