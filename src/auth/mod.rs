//! Authentication: turns a request's credential into an [`Identity`] before any route runs.
//!
//! The [`gate`] middleware is the one place this happens: every path not listed in
//! `public_paths` needs a credential in gated mode, so a new route is protected by default.
//! Handlers take the [`Identity`] extractor and derive the actors' [`Caller`] from it; in
//! gated mode the principal always comes from the token, never from a body or query.

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
    app::AppState,
    config::{AuthMode, Settings},
    http::{ApiError, ErrorCode},
};
use token::{TokenError, TokenKeys};

/// The user open-mode requests act for when they name none.
pub const ANONYMOUS_USER: &str = "anonymous";

/// Paths where browsers, which cannot set headers on WebSocket/EventSource, may pass the
/// token as `?access_token=`.
const QUERY_TOKEN_PATHS: &[&str] = &["/ws", "/events"];

/// Who is calling, as established by the gate.
#[derive(Debug, Clone)]
pub enum Identity {
    /// Gated mode: a verified credential; `admin` when its roles include `admin`.
    Authenticated { caller: Caller, admin: bool },
    /// Open mode: the request names its own user.
    Open { tenant_id: Arc<str> },
}

impl Identity {
    /// The caller to act for. `claimed_user` (a body or query `user_id`) counts only in open
    /// mode.
    pub fn caller(&self, claimed_user: Option<&str>) -> Caller {
        match self {
            Identity::Authenticated { caller, .. } => caller.clone(),
            Identity::Open { tenant_id } => Caller::open(
                tenant_id.clone(),
                claimed_user
                    .filter(|u| !u.is_empty())
                    .unwrap_or(ANONYMOUS_USER),
            ),
        }
    }
}

impl Identity {
    /// Whether this caller may read other users' records of its tenant (execution history
    /// by `user_id`): admins, and everyone in open mode (which trusts the request).
    pub fn may_read_other_users(&self) -> bool {
        match self {
            Identity::Authenticated { admin, .. } => *admin,
            Identity::Open { .. } => true,
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

    fn is_public(&self, path: &str) -> bool {
        self.public_paths.iter().any(|p| p == path)
    }

    /// The identity of a request to a non-public path.
    fn identify(&self, req: &ServiceRequest) -> Result<Identity, ApiError> {
        let Some(keys) = self.keys.as_ref().filter(|_| self.mode == AuthMode::Gated) else {
            return Ok(Identity::Open {
                tenant_id: self.default_tenant.clone(),
            });
        };
        let token = bearer_token(req)
            .or_else(|| {
                QUERY_TOKEN_PATHS
                    .contains(&req.path())
                    .then(|| query_token(req))
                    .flatten()
            })
            .ok_or_else(|| {
                if req.headers().contains_key("x-api-key") {
                    ApiError::new(ErrorCode::InvalidToken).with_detail(
                        "API keys are not enabled on this gateway yet; use a bearer token",
                    )
                } else {
                    ApiError::new(ErrorCode::MissingCredentials)
                }
            })?;
        let principal = keys.verify_access(&token).map_err(|error| match error {
            TokenError::Expired => ApiError::new(ErrorCode::TokenExpired),
            TokenError::Invalid(why) => ApiError::new(ErrorCode::InvalidToken)
                .with_detail(format!("Invalid authentication credentials: {why}")),
        })?;
        let tenant_id = principal
            .tenant_id
            .map_or_else(|| self.default_tenant.clone(), Arc::from);
        Ok(Identity::Authenticated {
            caller: Caller::authenticated(tenant_id, principal.user_id),
            admin: principal.admin,
        })
    }
}

fn bearer_token(req: &ServiceRequest) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
        .filter(|t| !t.is_empty())
}

fn query_token(req: &ServiceRequest) -> Option<String> {
    web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
        .ok()?
        .get("access_token")
        .cloned()
}

/// The authentication gate: public paths pass, everything else gets an [`Identity`] or a
/// 401 with `WWW-Authenticate`.
pub async fn gate(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .cloned()
        .expect("AppState is registered on the App");
    // CORS preflights carry no credentials; the CORS middleware outside answers them.
    if state.auth.is_public(req.path()) || req.method() == actix_web::http::Method::OPTIONS {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    }
    match state.auth.identify(&req) {
        Ok(identity) => {
            req.extensions_mut().insert(identity);
            next.call(req)
                .await
                .map(ServiceResponse::map_into_boxed_body)
        }
        Err(error) => Ok(req.into_response(error.error_response())),
    }
}
