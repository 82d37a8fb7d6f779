//! Kailash-compatible JWTs: the claims, verification (signature, `exp`/`nbf`, `iss`, `aud`,
//! `token_type`) and minting. A token minted by another program with the same secret and
//! claims verifies here, so Kailash deployments switch without re-issuing tokens.
//!
//! RFC 8725: the algorithm is pinned per key (HS256 here), so `alg: none` and any other
//! algorithm are refused before the signature is looked at. Tokens the gateway mints at login
//! carry `fam`, the id of their login's token family, so a logout or a refresh-token reuse
//! can revoke every token of the family at once.

use jsonwebtoken::{
    Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode, errors::ErrorKind,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// `iss` of every token the gateway mints and accepts.
pub const ISSUER: &str = "kailash-gateway";
/// `aud` of every token the gateway mints and accepts.
pub const AUDIENCE: &str = "kailash-api";
/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECONDS: u64 = 30;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenType {
    Access,
    Refresh,
}

/// The claims of a Kailash token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Older Kailash tokens name the principal here or in `uid` instead of `sub`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    pub iss: String,
    pub aud: serde_json::Value,
    pub exp: i64,
    pub iat: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    pub jti: String,
    pub token_type: TokenType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub permissions: Vec<String>,
    /// The token family (one login and its refreshes); absent on tokens minted elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fam: Option<String>,
}

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub user_id: String,
    /// `None`: the token names no tenant (as the Python gateway minted them).
    pub tenant_id: Option<String>,
    pub roles: Vec<String>,
    pub jti: String,
    pub family: Option<String>,
    /// `exp`, seconds since the epoch.
    pub expires_at: i64,
}

/// A freshly signed token and the ids it carries.
#[derive(Debug, Clone)]
pub struct Minted {
    pub token: String,
    pub jti: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid: {0}")]
    Invalid(&'static str),
}

/// What to put in a minted token.
#[derive(Debug, Clone)]
pub struct MintRequest {
    pub subject: String,
    pub tenant_id: Option<String>,
    pub roles: Vec<String>,
    pub permissions: Vec<String>,
    pub lifetime: chrono::Duration,
    pub token_type: TokenType,
}

/// The HS256 keys made from the gateway's secret.
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl TokenKeys {
    pub fn hs256(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECONDS;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// Verifies an access token and names its principal.
    pub fn verify_access(&self, token: &str) -> Result<Verified, TokenError> {
        self.verify(token, TokenType::Access)
    }

    /// Verifies a refresh token (never accepted where an access token is expected).
    pub fn verify_refresh(&self, token: &str) -> Result<Verified, TokenError> {
        self.verify(token, TokenType::Refresh)
    }

    fn verify(&self, token: &str, expected: TokenType) -> Result<Verified, TokenError> {
        // The HS256 key has no id: a token naming one was signed with a key we do not hold.
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| TokenError::Invalid("malformed token"))?;
        if header.kid.is_some() {
            return Err(TokenError::Invalid("unknown key id"));
        }
        let claims = decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|error| match error.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::InvalidSignature => TokenError::Invalid("bad signature"),
                ErrorKind::InvalidAudience => TokenError::Invalid("wrong audience"),
                ErrorKind::InvalidIssuer => TokenError::Invalid("wrong issuer"),
                ErrorKind::ImmatureSignature => TokenError::Invalid("not valid yet"),
                ErrorKind::InvalidAlgorithm => TokenError::Invalid("algorithm not allowed"),
                ErrorKind::MissingRequiredClaim(_) => {
                    TokenError::Invalid("a required claim is missing")
                }
                ErrorKind::Json(_) => TokenError::Invalid("malformed claims"),
                _ => TokenError::Invalid("malformed token"),
            })?
            .claims;
        if claims.token_type != expected {
            return Err(TokenError::Invalid(match expected {
                TokenType::Access => "a refresh token is not an access token",
                TokenType::Refresh => "an access token is not a refresh token",
            }));
        }
        let user_id = [claims.sub, claims.user_id, claims.uid]
            .into_iter()
            .flatten()
            .find(|id| !id.is_empty())
            .ok_or(TokenError::Invalid("the token names no principal"))?;
        Ok(Verified {
            user_id,
            tenant_id: claims.tenant_id.filter(|t| !t.is_empty()),
            roles: claims.roles,
            jti: claims.jti,
            family: claims.fam,
            expires_at: claims.exp,
        })
    }

    /// Signs a token with the Kailash claims.
    pub fn mint(&self, request: &MintRequest) -> String {
        self.issue(request, None).token
    }

    /// Signs a token of the login family `family`.
    pub fn issue(&self, request: &MintRequest, family: Option<&str>) -> Minted {
        let now = chrono::Utc::now();
        let jti = Uuid::new_v4().to_string();
        let expires_at = now + request.lifetime;
        let claims = Claims {
            sub: Some(request.subject.clone()),
            user_id: None,
            uid: None,
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            exp: expires_at.timestamp(),
            iat: now.timestamp(),
            nbf: None,
            jti: jti.clone(),
            token_type: request.token_type.clone(),
            tenant_id: request.tenant_id.clone(),
            roles: request.roles.clone(),
            permissions: request.permissions.clone(),
            fam: family.map(str::to_owned),
        };
        let token = encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing of plain claims cannot fail");
        Minted {
            token,
            jti,
            expires_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(subject: &str) -> MintRequest {
        MintRequest {
            subject: subject.into(),
            tenant_id: None,
            roles: vec!["user".into()],
            permissions: vec![],
            lifetime: chrono::Duration::minutes(5),
            token_type: TokenType::Access,
        }
    }

    #[test]
    fn minted_tokens_verify_and_refresh_tokens_do_not() {
        let keys = TokenKeys::hs256(&[7; 32]);
        let principal = keys.verify_access(&keys.mint(&access("alice"))).unwrap();
        assert_eq!(principal.user_id, "alice");
        let refresh = MintRequest {
            token_type: TokenType::Refresh,
            ..access("alice")
        };
        assert!(matches!(
            keys.verify_access(&keys.mint(&refresh)),
            Err(TokenError::Invalid(_))
        ));
        assert_eq!(
            keys.verify_refresh(&keys.mint(&refresh)).unwrap().user_id,
            "alice"
        );
        assert!(keys.verify_refresh(&keys.mint(&access("alice"))).is_err());
        let expired = MintRequest {
            lifetime: chrono::Duration::minutes(-5),
            ..access("alice")
        };
        assert_eq!(
            keys.verify_access(&keys.mint(&expired)),
            Err(TokenError::Expired)
        );
        let other = TokenKeys::hs256(&[8; 32]);
        assert!(other.verify_access(&keys.mint(&access("alice"))).is_err());
    }
}
