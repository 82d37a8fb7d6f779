//! Accounts in use: login (with lockout), refresh-token rotation (reuse revokes the family),
//! logout, and the first start's `admin` user.
//!
//! A login whose user needs a second factor ([`mfa::required`]) must carry `totp_code`:
//! without one it is answered 401 `mfa_required`; a wrong one counts as a failed login.
//! Enrolment proves the password the same way, so a role that demands MFA can enrol first.
//!
//! Timing parity: every login attempt — unknown user, locked account, wrong or right
//! password — verifies one argon2id hash before answering, and unknown users get the same
//! 401 `invalid_credentials` as a wrong password.

use std::time::Duration;

use chrono::Utc;
use kailash_actors::{
    GatewayError,
    accounts::{AccountError, Outcome, RefreshRecord, RefreshUse, RevokedId, UserRecord},
};
use serde::{Deserialize, Serialize};

use super::{
    mfa,
    token::{MintRequest, TokenKeys, TokenType},
};
use crate::{
    access::{Credential, Principal, audit::AuditEvent},
    app::AppState,
    http::{ApiError, ErrorCode},
};

#[derive(Debug, Deserialize)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
    /// The tenant the user belongs to; the deployment's default tenant when absent.
    #[serde(default)]
    pub tenant_id: Option<String>,
    #[serde(default)]
    pub totp_code: Option<String>,
}

/// Which second factor an attempt must show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecondFactor {
    /// A login: a code when [`mfa::required`] says so.
    Login,
    /// Starting enrolment: the password alone.
    None,
    /// Confirming enrolment: a code of the pending secret.
    Pending,
}

#[derive(Debug, Serialize)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub token_type: &'static str,
    /// Seconds the access token is valid for.
    pub expires_in: i64,
}

/// An accounts failure as an answer: the database being away is the same 503
/// `store_unavailable` (with `Retry-After`) every other route gives; anything else is a bug.
pub fn store_error(error: AccountError) -> ApiError {
    match error {
        AccountError::Unavailable(reason) => GatewayError::StoreUnavailable(reason).into(),
        other => ApiError::internal(other),
    }
}

fn keys(state: &AppState) -> Result<&TokenKeys, ApiError> {
    state.auth.keys().ok_or_else(|| {
        ApiError::new(ErrorCode::InvalidRequest)
            .with_detail("Logins need gated mode: this gateway runs with auth_mode=open")
    })
}

fn locked(retry_after: chrono::Duration) -> ApiError {
    ApiError::new(ErrorCode::AccountLocked)
        .with_retry_after(retry_after.to_std().unwrap_or(Duration::from_secs(1)))
}

pub async fn login(
    state: &AppState,
    request: LoginRequest,
    client_ip: Option<&str>,
) -> Result<TokenPair, ApiError> {
    keys(state)?;
    let user = authenticate(state, request, SecondFactor::Login, client_ip).await?;
    let pair = issue_pair(state, &user, &uuid::Uuid::new_v4().to_string()).await?;
    state
        .access
        .audit
        .record(AuditEvent {
            tenant_id: &user.tenant_id,
            user_id: &user.username,
            action: "auth.login",
            outcome: Outcome::Success,
            resource: None,
            client_ip,
        })
        .await;
    Ok(pair)
}

/// Checks the password and the `factor` the attempt needs, with lockout; the user on
/// success. Failures are audited as `auth.login`.
pub async fn authenticate(
    state: &AppState,
    request: LoginRequest,
    factor: SecondFactor,
    client_ip: Option<&str>,
) -> Result<UserRecord, ApiError> {
    let settings = &state.settings;
    let tenant_id = request
        .tenant_id
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| settings.default_tenant.clone());
    let user = state
        .accounts
        .user(&tenant_id, &request.username)
        .await
        .map_err(store_error)?;
    let now = state.clock.now();
    let matched = state
        .passwords
        .verify_or_dummy(
            request.password,
            user.as_ref().map(|u| u.password_hash.clone()),
        )
        .await;
    let audit = |action: &'static str, outcome: Outcome| AuditEvent {
        tenant_id: &tenant_id,
        user_id: &request.username,
        action,
        outcome,
        resource: None,
        client_ip,
    };
    if let Some(until) = user.as_ref().and_then(|u| u.locked_until)
        && until > now
    {
        state
            .access
            .audit
            .record(audit("auth.login", Outcome::Denied))
            .await;
        return Err(locked(until - now));
    }
    let code = request.totp_code.as_deref();
    let verdict = match &user {
        Some(user) if matched && !user.disabled => second_factor(settings, user, factor, code, now),
        _ => Verdict::Wrong,
    };
    match (verdict, user) {
        (Verdict::Passed, Some(user)) => {
            if user.failed_logins > 0 || user.locked_until.is_some() {
                state
                    .accounts
                    .clear_failed_logins(&tenant_id, &user.username)
                    .await
                    .map_err(store_error)?;
            }
            Ok(user)
        }
        (Verdict::CodeMissing(detail), _) => {
            state
                .access
                .audit
                .record(audit("auth.login", Outcome::Failure))
                .await;
            Err(ApiError::new(ErrorCode::MfaRequired).with_detail(detail))
        }
        (_, known) => {
            if known.is_some() {
                let locked_now = state
                    .accounts
                    .record_failed_login(
                        &tenant_id,
                        &request.username,
                        settings.max_login_attempts,
                        now + settings.lockout(),
                    )
                    .await
                    .map_err(store_error)?;
                if locked_now.is_some() {
                    state
                        .access
                        .audit
                        .record(audit("auth.lockout", Outcome::Success))
                        .await;
                }
            }
            state
                .access
                .audit
                .record(audit("auth.login", Outcome::Failure))
                .await;
            Err(ApiError::new(ErrorCode::InvalidCredentials))
        }
    }
}

enum Verdict {
    Passed,
    /// The password was right; the second factor is missing (the detail says which).
    CodeMissing(&'static str),
    Wrong,
}

fn second_factor(
    settings: &crate::config::Settings,
    user: &UserRecord,
    factor: SecondFactor,
    code: Option<&str>,
    now: chrono::DateTime<Utc>,
) -> Verdict {
    let secret = match factor {
        SecondFactor::None => return Verdict::Passed,
        SecondFactor::Login if !mfa::required(settings, user) => return Verdict::Passed,
        SecondFactor::Login if !user.totp_enabled => {
            return Verdict::CodeMissing(
                "Your role requires a second factor: enrol at /api/auth/mfa/enroll first",
            );
        }
        SecondFactor::Pending if user.totp_enabled => {
            return Verdict::CodeMissing("MFA is already enabled for this account");
        }
        SecondFactor::Login | SecondFactor::Pending => user.totp_secret.as_deref(),
    };
    match (secret, code) {
        (None, _) => Verdict::CodeMissing("Start enrolment at /api/auth/mfa/enroll first"),
        (Some(_), None) => Verdict::CodeMissing(ErrorCode::MfaRequired.default_detail()),
        (Some(secret), Some(code)) if mfa::code_matches(secret, code, now) => Verdict::Passed,
        _ => Verdict::Wrong,
    }
}

/// A new access and refresh token of `family` for `user`.
async fn issue_pair(
    state: &AppState,
    user: &UserRecord,
    family: &str,
) -> Result<TokenPair, ApiError> {
    let keys = keys(state)?;
    // A deactivated tenant's users cannot log in or refresh either.
    state.tenants.admit(&user.tenant_id)?;
    let grants = state.access.grants(&user.tenant_id, &user.roles);
    let request = |token_type, lifetime| MintRequest {
        subject: user.username.clone(),
        tenant_id: Some(user.tenant_id.clone()),
        roles: grants.roles.clone(),
        permissions: grants.permissions.iter().cloned().collect(),
        lifetime,
        token_type,
    };
    let access_lifetime = state.settings.access_token_lifetime();
    let access = keys.issue(&request(TokenType::Access, access_lifetime), Some(family));
    let refresh = keys.issue(
        &request(TokenType::Refresh, state.settings.refresh_token_lifetime()),
        Some(family),
    );
    state
        .accounts
        .insert_refresh(RefreshRecord {
            jti: refresh.jti,
            family_id: family.to_owned(),
            tenant_id: user.tenant_id.clone(),
            username: user.username.clone(),
            expires_at: refresh.expires_at,
            used_at: None,
        })
        .await
        .map_err(store_error)?;
    Ok(TokenPair {
        access_token: access.token,
        refresh_token: refresh.token,
        token_type: "bearer",
        expires_in: access_lifetime.num_seconds(),
    })
}

/// Exchanges a refresh token for a new pair. A token exchanged before is reuse: someone
/// holds a stolen copy, so the whole family (every token of that login) is revoked.
pub async fn refresh(
    state: &AppState,
    token: &str,
    client_ip: Option<&str>,
) -> Result<TokenPair, ApiError> {
    let invalid = || ApiError::new(ErrorCode::InvalidToken);
    let verified = keys(state)?.verify_refresh(token).map_err(|_| invalid())?;
    let family = verified.family.clone().ok_or_else(invalid)?;
    if state
        .accounts
        .any_revoked(&[&verified.jti, &family])
        .await
        .map_err(store_error)?
    {
        return Err(invalid());
    }
    let record = match state
        .accounts
        .use_refresh(&verified.jti, state.clock.now())
        .await
        .map_err(store_error)?
    {
        RefreshUse::Unknown => return Err(invalid()),
        RefreshUse::Reused(record) => {
            revoke_family(state, &family).await?;
            state
                .access
                .audit
                .record(AuditEvent {
                    tenant_id: &record.tenant_id,
                    user_id: &record.username,
                    action: "auth.refresh_reuse",
                    outcome: Outcome::Denied,
                    resource: Some(&family),
                    client_ip,
                })
                .await;
            return Err(invalid());
        }
        RefreshUse::Fresh(record) => record,
    };
    let user = state
        .accounts
        .user(&record.tenant_id, &record.username)
        .await
        .map_err(store_error)?
        .filter(|u| !u.disabled)
        .ok_or_else(invalid)?;
    issue_pair(state, &user, &family).await
}

async fn revoke_family(state: &AppState, family: &str) -> Result<(), ApiError> {
    state
        .accounts
        .revoke(RevokedId {
            id: family.to_owned(),
            expires_at: Utc::now() + state.settings.refresh_token_lifetime(),
        })
        .await
        .map_err(store_error)
}

/// Revokes the caller's token and, for a login's token, its whole family.
pub async fn logout(
    state: &AppState,
    principal: &Principal,
    client_ip: Option<&str>,
) -> Result<(), ApiError> {
    let Credential::Token {
        jti,
        family,
        expires_at,
    } = &principal.credential
    else {
        return Err(ApiError::new(ErrorCode::InvalidRequest)
            .with_detail("An API key is not logged out; revoke it under /api/auth/api-keys"));
    };
    state
        .accounts
        .revoke(RevokedId {
            id: jti.clone(),
            expires_at: chrono::DateTime::from_timestamp(*expires_at, 0).unwrap_or_else(Utc::now),
        })
        .await
        .map_err(store_error)?;
    if let Some(family) = family {
        revoke_family(state, family).await?;
    }
    state
        .access
        .audit
        .record(AuditEvent {
            tenant_id: &principal.caller.tenant_id,
            user_id: &principal.caller.user_id,
            action: "auth.logout",
            outcome: Outcome::Success,
            resource: None,
            client_ip,
        })
        .await;
    Ok(())
}

/// Creates `admin` (role `admin`, default tenant) when it does not exist. The password is
/// `admin_password`, else generated and returned so the caller can print it once.
pub async fn bootstrap_admin(state: &AppState) -> Result<Option<String>, ApiError> {
    let tenant_id = &state.settings.default_tenant;
    if state
        .accounts
        .user(tenant_id, "admin")
        .await
        .map_err(store_error)?
        .is_some()
    {
        return Ok(None);
    }
    let (password, generated) = match &state.settings.admin_password {
        Some(password) => (password.expose().to_owned(), false),
        None => (super::api_keys::generate().secret[4..28].to_owned(), true),
    };
    let password_hash = state
        .passwords
        .hash(password.clone())
        .await
        .map_err(ApiError::internal)?;
    let created = state
        .accounts
        .insert_user(UserRecord {
            tenant_id: tenant_id.clone(),
            username: "admin".into(),
            password_hash,
            roles: vec!["admin".into()],
            attributes: Default::default(),
            disabled: false,
            failed_logins: 0,
            locked_until: None,
            totp_secret: None,
            totp_enabled: false,
            created_at: Utc::now(),
        })
        .await;
    match created {
        // Another node created it first: its password stands.
        Err(AccountError::Conflict) => Ok(None),
        Err(error) => Err(store_error(error)),
        Ok(()) => Ok(generated.then_some(password)),
    }
}
