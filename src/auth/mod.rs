//! Authentication: turns a request's credential into an [`Identity`] before any route runs,
//! then asks [`crate::access`] whether the route is allowed.
//!
//! The [`gate`] middleware is the one place this happens: every path not listed in
//! `public_paths` (and not the login and refresh routes) needs a credential in gated mode, so
//! a new route is protected by default. A credential is a bearer token (refused when its
//! `jti` or its login family is revoked) or an `X-API-Key`. Handlers take the [`Identity`]
//! extractor and derive the actors' [`Caller`] from it; in gated mode the principal always
//! comes from the credential, never from a body or query. Open mode checks nothing.

pub mod api_keys;
pub mod login;
pub mod mfa;
pub mod passwords;
pub mod secret;
pub mod token;

use std::sync::Arc;

use actix_web::{
    Error, FromRequest, HttpMessage, HttpRequest, ResponseError,
    body::{BoxBody, MessageBody},
    dev::{Payload, ServiceRequest, ServiceResponse},
    http::header,
    middleware::Next,
    web,
};
use futures_util::future::{Ready, ready};
use kailash_actors::Caller;

use crate::{
    access::{self, Credential, Principal},
    app::AppState,
    config::{AuthMode, Secret, Settings},
    http::{ApiError, ErrorCode},
};
use token::{TokenError, TokenKeys};

/// The user open-mode requests act for when they name none.
pub const ANONYMOUS_USER: &str = "anonymous";

/// Paths always served without a header credential: the login routes (credentials in the
/// body) and the public keys.
const LOGIN_PATHS: &[&str] = &[
    "/api/auth/login",
    "/api/auth/refresh",
    "/api/auth/mfa/enroll",
    "/api/auth/mfa/confirm",
    "/.well-known/jwks.json",
];

/// Paths where browsers, which cannot set headers on WebSocket/EventSource, may pass the
/// token as `?access_token=`.
const QUERY_TOKEN_PATHS: &[&str] = &["/ws", "/events"];

/// Who is calling, as established by the gate.
#[derive(Debug, Clone)]
pub enum Identity {
    /// Gated mode: a verified credential.
    Authenticated(Principal),
    /// Open mode: the request names its own user.
    Open { tenant_id: Arc<str> },
}

impl Identity {
    /// Whether this caller may read other users' records of its tenant (execution history
    /// by `user_id`): holders of `user:manage`, and everyone in open mode (which trusts the
    /// request).
    pub fn may_read_other_users(&self) -> bool {
        match self {
            Identity::Authenticated(principal) => {
                principal.grants.permissions.contains("user:manage")
            }
            Identity::Open { .. } => true,
        }
    }

    /// The caller to act for. `claimed_user` (a body or query `user_id`) counts only in open
    /// mode.
    pub fn caller(&self, claimed_user: Option<&str>) -> Caller {
        match self {
            Identity::Authenticated(principal) => principal.caller.clone(),
            Identity::Open { tenant_id } => Caller::open(
                tenant_id.clone(),
                claimed_user
                    .filter(|u| !u.is_empty())
                    .unwrap_or(ANONYMOUS_USER),
            ),
        }
    }
}

impl FromRequest for Identity {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(req.extensions().get::<Identity>().cloned().ok_or_else(|| {
            ApiError::internal(format!(
                "route {} has no identity: is it public?",
                req.path()
            ))
        }))
    }
}

/// Verifies credentials for the configured mode.
pub struct Authenticator {
    mode: AuthMode,
    keys: Option<TokenKeys>,
    default_tenant: Arc<str>,
    public_paths: Vec<String>,
}

impl Authenticator {
    /// `keys` must be present in gated mode.
    pub fn new(settings: &Settings, keys: Option<TokenKeys>) -> Self {
        assert!(
            settings.auth_mode == AuthMode::Open || keys.is_some(),
            "gated mode needs signing keys"
        );
        Self {
            mode: settings.auth_mode,
            keys,
            default_tenant: settings.default_tenant.as_str().into(),
            public_paths: settings.public_paths.clone(),
        }
    }

    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// The signing keys (gated mode only).
    pub fn keys(&self) -> Option<&TokenKeys> {
        self.keys.as_ref().filter(|_| self.mode == AuthMode::Gated)
    }

    fn is_public(&self, path: &str) -> bool {
        self.public_paths.iter().any(|p| p == path) || LOGIN_PATHS.contains(&path)
    }
}

/// The identity of a request to a non-public path.
async fn identify(state: &AppState, req: &ServiceRequest) -> Result<Identity, ApiError> {
    let auth = &state.auth;
    let Some(keys) = auth.keys() else {
        return Ok(Identity::Open {
            tenant_id: auth.default_tenant.clone(),
        });
    };
    if let Some(key) = req.headers().get("x-api-key")
        && bearer_token(req.request()).is_none()
    {
        let key = key
            .to_str()
            .map_err(|_| ApiError::new(ErrorCode::InvalidToken))?;
        return api_key_identity(state, key).await;
    }
    let token = bearer_token(req.request())
        .or_else(|| {
            QUERY_TOKEN_PATHS
                .contains(&req.path())
                .then(|| query_token(req.request()))
                .flatten()
        })
        .ok_or_else(|| ApiError::new(ErrorCode::MissingCredentials))?;
    let verified = keys.verify_access(&token).map_err(|error| match error {
        TokenError::Expired => ApiError::new(ErrorCode::TokenExpired),
        TokenError::Invalid(why) => ApiError::new(ErrorCode::InvalidToken)
            .with_detail(format!("Invalid authentication credentials: {why}")),
    })?;
    let credential = Credential::Token {
        jti: verified.jti,
        family: verified.family,
        expires_at: verified.expires_at,
    };
    ensure_live(state, &credential).await?;
    let tenant_id = verified
        .tenant_id
        .map_or_else(|| auth.default_tenant.clone(), Arc::from);
    state.tenants.admit(&tenant_id)?;
    let grants = state.access.grants(&tenant_id, &verified.roles);
    Ok(Identity::Authenticated(Principal {
        caller: Caller::authenticated(tenant_id, verified.user_id),
        grants: Arc::new(grants),
        credential,
    }))
}

/// Refuses a token whose `jti` or login family has been revoked (logout, refresh reuse).
pub async fn ensure_live(state: &AppState, credential: &Credential) -> Result<(), ApiError> {
    let Credential::Token { jti, family, .. } = credential else {
        return Ok(());
    };
    let mut ids = vec![jti.as_str()];
    ids.extend(family.as_deref());
    if state
        .accounts
        .any_revoked(&ids)
        .await
        .map_err(login::store_error)?
    {
        return Err(ApiError::new(ErrorCode::InvalidToken)
            .with_detail("Invalid authentication credentials: the token has been revoked"));
    }
    Ok(())
}

/// The owner of a live API key, limited to the key's scopes.
async fn api_key_identity(state: &AppState, key: &str) -> Result<Identity, ApiError> {
    let invalid = || {
        ApiError::new(ErrorCode::InvalidToken)
            .with_detail("Invalid authentication credentials: unknown or revoked API key")
    };
    let record = state
        .accounts
        .api_key_by_hash(&api_keys::hash(key))
        .await
        .map_err(login::store_error)?
        .filter(|k| k.revoked_at.is_none())
        .filter(|k| k.expires_at.is_none_or(|at| at > state.clock.now()))
        .ok_or_else(invalid)?;
    let owner = state
        .accounts
        .user(&record.tenant_id, &record.username)
        .await
        .map_err(login::store_error)?
        .filter(|u| !u.disabled)
        .ok_or_else(invalid)?;
    state.tenants.admit(&owner.tenant_id)?;
    let mut grants = state.access.grants(&owner.tenant_id, &owner.roles);
    if !record.scopes.is_empty() {
        grants.permissions.retain(|p| record.scopes.contains(p));
    }
    Ok(Identity::Authenticated(Principal {
        caller: Caller::authenticated(owner.tenant_id, owner.username),
        grants: Arc::new(grants),
        credential: Credential::ApiKey {
            key_id: record.key_id,
        },
    }))
}

fn bearer_token(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
        .filter(|t| !t.is_empty())
}

fn query_token(req: &HttpRequest) -> Option<String> {
    web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
        .ok()?
        .get("access_token")
        .cloned()
}

/// The credential a request presented, as the gate took it, to present again when a
/// WebSocket message is served by another node (the owner authenticates it as if the
/// client had sent the message's HTTP twin itself). Never logged: `Secret` hides it.
#[derive(Debug, Clone)]
pub enum Presented {
    Bearer(Secret),
    ApiKey(Secret),
}

impl Presented {
    pub fn of(req: &HttpRequest) -> Option<Self> {
        match (bearer_token(req), req.headers().get("x-api-key")) {
            (Some(token), _) => Some(Self::Bearer(Secret::new(token))),
            (None, Some(key)) => Some(Self::ApiKey(Secret::new(key.to_str().ok()?))),
            (None, None) => query_token(req).map(|token| Self::Bearer(Secret::new(token))),
        }
    }

    /// The header that presents it.
    pub fn header(&self) -> (&'static str, String) {
        match self {
            Self::Bearer(token) => ("authorization", format!("Bearer {}", token.expose())),
            Self::ApiKey(key) => ("x-api-key", key.expose().to_owned()),
        }
    }
}

/// The authentication gate: public paths pass, everything else gets an [`Identity`] or a
/// 401 with `WWW-Authenticate`.
pub async fn gate(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let state = crate::app::state_of(&req);
    // CORS preflights carry no credentials; the CORS middleware outside answers them.
    if state.auth.is_public(req.path()) || req.method() == actix_web::http::Method::OPTIONS {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    }
    let identity = match identify(&state, &req).await {
        Ok(identity) => identity,
        Err(error) => return Ok(req.into_response(error.error_response())),
    };
    if let Identity::Authenticated(principal) = &identity {
        let pattern = req.match_pattern();
        let requirement = access::required(req.method(), pattern.as_deref());
        let target = access::abac::Target::Route {
            method: req.method().as_str(),
            pattern: pattern.as_deref().unwrap_or("unmatched"),
        };
        let resource = format!("{} {}", req.method(), req.path());
        let client_ip = client_ip(req.request());
        let request = access::Request {
            resource: &resource,
            client_ip: client_ip.as_deref(),
        };
        if let Err(error) = state
            .access
            .authorize(principal, requirement, &target, request)
            .await
        {
            return Ok(req.into_response(error.error_response()));
        }
    }
    req.extensions_mut().insert(identity);
    next.call(req)
        .await
        .map(ServiceResponse::map_into_boxed_body)
}

/// The client's address, for decisions and audit entries: the peer's, or the one the
/// `trusted_proxies` recorded (see `limits::TrustedProxies`).
pub fn client_ip(req: &HttpRequest) -> Option<String> {
    let state = req.app_data::<web::Data<crate::app::AppState>>()?;
    state.limits.proxies.client_ip(req).map(|ip| ip.to_string())
}
