//! Kailash-compatible JWTs: the claims, verification (signature, `exp`/`nbf`, `iss`, `aud`,
//! `token_type`) and minting. A token minted by another program with the same secret and
//! claims verifies here, so Kailash deployments switch without re-issuing tokens.
//!
//! Signing is HS256 with the gateway's secret by default, or RS256/EdDSA with the newest of a
//! set of key-id'd private keys (`jwt_keys_dir`); every key of the set still verifies, so a
//! rotation keeps older tokens valid until they expire, and the HS256 secret keeps verifying
//! tokens minted by Kailash programs. RFC 8725: each key verifies only its own algorithm and
//! is picked by the token's (`alg`, `kid`), so `alg: none`, an HS256 token "signed" with an RSA
//! public key, or an unknown `kid` never reach a signature check that could pass. Tokens the gateway mints at login
//! carry `fam`, the id of their login's token family, so a logout or a refresh-token reuse
//! can revoke every token of the family at once.

use jsonwebtoken::{
    Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode,
    errors::ErrorKind,
    jwk::{Jwk, JwkSet, PublicKeyUse},
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

/// One key that verifies: its id (none for the HS256 secret) and its pinned algorithm.
struct Verifier {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
    validation: Validation,
}

/// A private key of the set, as read from `<kid>.pem`.
#[derive(Clone)]
pub struct PrivateKey {
    pub kid: String,
    pub pem: Vec<u8>,
}

/// Why a key set could not be built.
#[derive(Debug, thiserror::Error)]
#[error("signing key '{kid}': {why}")]
pub struct KeyError {
    kid: String,
    why: String,
}

/// DER prefix of a PKCS#8 v1 Ed25519 private key (RFC 8410), before the 32-byte seed.
const ED25519_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// An Ed25519 key from PKCS#8 PEM. OpenSSL writes v1 (the seed alone); other tools write v2
/// (seed and public key), which the JWT library cannot derive a JWK from, so a v2 key is
/// rewritten as v1 — same seed, same key.
fn ed25519_key(pem_text: &[u8]) -> jsonwebtoken::errors::Result<EncodingKey> {
    let invalid = || jsonwebtoken::errors::Error::from(ErrorKind::InvalidEddsaKey);
    let der = pem::parse(pem_text).map_err(|_| invalid())?.into_contents();
    // v1 and v2 share the first 16 bytes but the outer length and version.
    let seed = der.get(16..48).ok_or_else(invalid)?;
    if der.get(5..16) != Some(&ED25519_V1_PREFIX[5..]) {
        return Err(invalid());
    }
    let mut v1 = ED25519_V1_PREFIX.to_vec();
    v1.extend_from_slice(seed);
    Ok(EncodingKey::from_ed_der(&v1))
}

/// The signing key and every key that verifies.
pub struct TokenKeys {
    header: Header,
    encoding: EncodingKey,
    verifiers: Vec<Verifier>,
    /// The public halves of the asymmetric keys, as JWKs.
    public: Vec<Jwk>,
}

fn validation(algorithm: Algorithm) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&[AUDIENCE]);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    validation.validate_nbf = true;
    validation.leeway = LEEWAY_SECONDS;
    validation
}

impl TokenKeys {
    pub fn hs256(secret: &[u8]) -> Self {
        Self {
            header: Header::new(Algorithm::HS256),
            encoding: EncodingKey::from_secret(secret),
            verifiers: vec![Verifier {
                kid: None,
                algorithm: Algorithm::HS256,
                key: DecodingKey::from_secret(secret),
                validation: validation(Algorithm::HS256),
            }],
            public: Vec::new(),
        }
    }

    /// Signs with the last of `keys` in key-id order (RS256 or EdDSA); verifies with all of
    /// them and with the HS256 `secret`.
    pub fn asymmetric(
        secret: &[u8],
        algorithm: Algorithm,
        mut keys: Vec<PrivateKey>,
    ) -> Result<Self, KeyError> {
        keys.sort_by(|a, b| a.kid.cmp(&b.kid));
        let mut set = Self::hs256(secret);
        for key in keys {
            let fail = |why: String| KeyError {
                kid: key.kid.clone(),
                why,
            };
            let encoding = match algorithm {
                Algorithm::RS256 => EncodingKey::from_rsa_pem(&key.pem),
                Algorithm::EdDSA => ed25519_key(&key.pem),
                other => return Err(fail(format!("{other:?} is not an asymmetric algorithm"))),
            }
            .map_err(|e| fail(format!("not a PKCS#8 {algorithm:?} private key: {e}")))?;
            let mut jwk = Jwk::from_encoding_key(&encoding, algorithm)
                .map_err(|e| fail(format!("no public key: {e}")))?;
            jwk.common.key_id = Some(key.kid.clone());
            jwk.common.public_key_use = Some(PublicKeyUse::Signature);
            let decoding = DecodingKey::from_jwk(&jwk).map_err(|e| fail(e.to_string()))?;
            set.verifiers.push(Verifier {
                kid: Some(key.kid.clone()),
                algorithm,
                key: decoding,
                validation: validation(algorithm),
            });
            set.public.push(jwk);
            let mut header = Header::new(algorithm);
            header.kid = Some(key.kid);
            set.header = header;
            set.encoding = encoding;
        }
        Ok(set)
    }

    /// `{"keys": [...]}`: the public keys that verify tokens, for `/.well-known/jwks.json`.
    pub fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: self.public.clone(),
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
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| TokenError::Invalid("malformed token"))?;
        let verifier = self
            .verifiers
            .iter()
            .find(|v| v.kid == header.kid && v.algorithm == header.alg)
            .ok_or_else(|| {
                if self.verifiers.iter().any(|v| v.kid == header.kid) {
                    TokenError::Invalid("algorithm not allowed")
                } else {
                    TokenError::Invalid("unknown key id")
                }
            })?;
        let claims = decode::<Claims>(token, &verifier.key, &verifier.validation)
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
        let token = encode(&self.header, &claims, &self.encoding)
            .expect("signing plain claims with a loaded key cannot fail");
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
