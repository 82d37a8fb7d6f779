//! The one table of error codes (status, stable `code`, default message) and [`ApiError`],
//! the JSON error every route, extractor and middleware answers with:
//! `{"detail", "code", "request_id", "errors"?}`.
//!
//! `code` strings are a public contract: add rows, never rename them.

use std::{borrow::Cow, fmt, time::Duration};

use actix_web::{
    HttpResponse, ResponseError,
    http::{StatusCode, header},
};
use kailash_actors::GatewayError;
use serde::Serialize;

use super::request_id::current_request_id;

macro_rules! error_codes {
    ($($variant:ident => $status:ident, $code:literal, $detail:literal;)*) => {
        /// Every error the gateway answers with.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum ErrorCode { $($variant,)* }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            pub fn status(self) -> StatusCode {
                match self { $(ErrorCode::$variant => StatusCode::$status,)* }
            }

            /// The stable machine-readable code.
            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $code,)* }
            }

            /// The code whose stable string is `code`, if there is one.
            pub fn from_code(code: &str) -> Option<ErrorCode> {
                Self::ALL.iter().copied().find(|c| c.as_str() == code)
            }

            /// The human sentence used when no more specific one is given.
            pub fn default_detail(self) -> &'static str {
                match self { $(ErrorCode::$variant => $detail,)* }
            }
        }
    };
}

error_codes! {
    InvalidJson => BAD_REQUEST, "invalid_json", "The request body is not valid JSON";
    InvalidRequest => BAD_REQUEST, "invalid_request", "The request is invalid";
    InvalidEventTypes => BAD_REQUEST, "invalid_event_types", "Unknown event type";
    InvalidMessage => BAD_REQUEST, "invalid_message", "The WebSocket message is invalid";
    InvalidWorkflow => BAD_REQUEST, "invalid_workflow", "The workflow is invalid";
    DynamicWorkflowsDisabled => FORBIDDEN, "dynamic_workflows_disabled", "Dynamic workflow creation is disabled on this gateway";
    Forbidden => FORBIDDEN, "forbidden", "You are not allowed to do this";
    MissingCredentials => UNAUTHORIZED, "missing_credentials", "Not authenticated";
    InvalidToken => UNAUTHORIZED, "invalid_token", "Invalid authentication credentials";
    TokenExpired => UNAUTHORIZED, "token_expired", "The token has expired";
    NotFound => NOT_FOUND, "not_found", "Not Found";
    SessionNotFound => NOT_FOUND, "session_not_found", "Session not found";
    WorkflowNotFound => NOT_FOUND, "workflow_not_found", "Workflow not found";
    ExecutionNotFound => NOT_FOUND, "execution_not_found", "Execution not found";
    NodeTypeNotFound => NOT_FOUND, "node_type_not_found", "Unknown node type";
    MethodNotAllowed => METHOD_NOT_ALLOWED, "method_not_allowed", "Method Not Allowed";
    ExecutionNotRunning => CONFLICT, "execution_not_running", "The execution is not running";
    PayloadTooLarge => PAYLOAD_TOO_LARGE, "payload_too_large", "The request body is too large";
    MaxSessionsReached => TOO_MANY_REQUESTS, "max_sessions_reached", "Maximum number of sessions reached";
    TooManyExecutions => TOO_MANY_REQUESTS, "too_many_executions", "Too many executions are running";
    RequestsPerSecondExceeded => TOO_MANY_REQUESTS, "requests_per_second_exceeded", "The tenant's requests per second are spent";
    UserRequestsPerSecondExceeded => TOO_MANY_REQUESTS, "user_requests_per_second_exceeded", "Your requests per second are spent";
    IpRequestsPerSecondExceeded => TOO_MANY_REQUESTS, "ip_requests_per_second_exceeded", "This address's requests per second are spent";
    ApiCallsPerDayExceeded => TOO_MANY_REQUESTS, "api_calls_per_day_exceeded", "The tenant's API calls for today are spent";
    EventsPerSecondExceeded => TOO_MANY_REQUESTS, "events_per_second_exceeded", "The tenant's events per second are spent";
    NotReady => SERVICE_UNAVAILABLE, "not_ready", "The gateway is not ready";
    Draining => SERVICE_UNAVAILABLE, "draining", "The gateway is shutting down";
    Unavailable => SERVICE_UNAVAILABLE, "unavailable", "A gateway component did not answer in time";
    StoreUnavailable => SERVICE_UNAVAILABLE, "store_unavailable", "The database is unavailable; nothing was changed, retry later";
    RequestTimeout => GATEWAY_TIMEOUT, "request_timeout", "The request took too long";
    RoomNotJoined => CONFLICT, "room_not_joined", "This connection has not joined the room";
    RoomFull => CONFLICT, "room_full", "The room is full";
    TooManyRooms => CONFLICT, "too_many_rooms", "This connection has joined too many rooms";
    WebhookNotFound => NOT_FOUND, "webhook_not_found", "Webhook not found";
    TooManyWebhooks => CONFLICT, "too_many_webhooks", "Too many webhooks registered";
    EgressDenied => BAD_REQUEST, "egress_denied", "The target address is not allowed";
    Internal => INTERNAL_SERVER_ERROR, "internal_error", "Internal server error";
    PythonUnavailable => BAD_REQUEST, "python_unavailable", "Python is not available on this gateway";
    InvalidCredentials => UNAUTHORIZED, "invalid_credentials", "Invalid username or password";
    MfaRequired => UNAUTHORIZED, "mfa_required", "A valid totp_code is required for this account";
    AccountLocked => TOO_MANY_REQUESTS, "account_locked", "Too many failed logins; the account is locked for a while";
    UserNotFound => NOT_FOUND, "user_not_found", "User not found";
    UserExists => CONFLICT, "user_exists", "A user with this name already exists";
    RoleNotFound => NOT_FOUND, "role_not_found", "Role not found";
    RoleInUse => CONFLICT, "role_in_use", "The role is built in or still assigned";
    ApiKeyNotFound => NOT_FOUND, "api_key_not_found", "API key not found";
    PolicyNotFound => NOT_FOUND, "policy_not_found", "Policy not found";
    InvalidPolicy => BAD_REQUEST, "invalid_policy", "The policy is invalid";
    MaxWorkflowsReached => TOO_MANY_REQUESTS, "max_workflows_reached", "Maximum number of workflows reached";
    TooManyConnections => TOO_MANY_REQUESTS, "too_many_connections", "Too many WebSocket connections";
    TenantNotFound => NOT_FOUND, "tenant_not_found", "Tenant not found";
    TenantExists => CONFLICT, "tenant_exists", "A tenant with this id already exists";
    DefaultTenant => CONFLICT, "default_tenant", "The default tenant cannot be deactivated";
    TenantInactive => FORBIDDEN, "tenant_inactive", "The tenant is deactivated";
    TooManySessions => TOO_MANY_REQUESTS, "too_many_sessions", "You have too many open sessions";
}

/// What a client is told to wait when the database is away: long enough for a restart or
/// failover to show, short enough to notice its return.
const STORE_RETRY_AFTER: Duration = Duration::from_secs(2);

/// One problem with one part of the input (`path` like `metadata` or `nodes[1].type`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

/// An error answer. Build with [`ApiError::new`] and the `with_*` methods.
#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    detail: Cow<'static, str>,
    errors: Vec<FieldError>,
    retry_after: Option<Duration>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    detail: &'a str,
    code: &'static str,
    request_id: String,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    errors: &'a [FieldError],
}

impl ErrorCode {
    /// The code of the rate limit named `limit` (see `limits`): `<limit>_exceeded`.
    pub fn rate_limit(limit: &str) -> ErrorCode {
        ErrorCode::from_code(&format!("{limit}_exceeded"))
            .unwrap_or(ErrorCode::RequestsPerSecondExceeded)
    }
}

impl ApiError {
    pub fn new(code: ErrorCode) -> Self {
        Self {
            code,
            detail: Cow::Borrowed(code.default_detail()),
            errors: Vec::new(),
            retry_after: None,
        }
    }

    pub fn with_detail(mut self, detail: impl Into<Cow<'static, str>>) -> Self {
        self.detail = detail.into();
        self
    }

    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.errors = errors;
        self
    }

    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// An internal failure: the cause is logged with the request id, never sent.
    pub fn internal(cause: impl fmt::Display) -> Self {
        tracing::error!(request_id = %current_request_id(), error = %cause, "internal error");
        Self::new(ErrorCode::Internal)
    }

    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The error object alone, as WebSocket and SSE error frames carry it.
    pub fn body(&self) -> serde_json::Value {
        serde_json::to_value(self.error_body()).expect("an error body is plain data")
    }

    fn error_body(&self) -> ErrorBody<'_> {
        ErrorBody {
            detail: &self.detail,
            code: self.code.as_str(),
            request_id: current_request_id(),
            errors: &self.errors,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.detail)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code.status()
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let mut response = HttpResponse::build(status);
        if status == StatusCode::UNAUTHORIZED {
            let challenge = match self.code {
                ErrorCode::MissingCredentials => r#"Bearer realm="kailash""#,
                _ => r#"Bearer realm="kailash", error="invalid_token""#,
            };
            response.insert_header((header::WWW_AUTHENTICATE, challenge));
        }
        let retry_after = self.retry_after.or(match status {
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                Some(Duration::from_secs(1))
            }
            _ => None,
        });
        if let Some(after) = retry_after {
            let seconds = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            response.insert_header((header::RETRY_AFTER, seconds.max(1)));
        }
        response.json(self.error_body())
    }
}

impl From<GatewayError> for ApiError {
    fn from(error: GatewayError) -> Self {
        match error {
            GatewayError::SessionNotFound => ApiError::new(ErrorCode::SessionNotFound),
            GatewayError::MaxSessionsReached { limit, retry_after } => {
                ApiError::new(ErrorCode::MaxSessionsReached)
                    .with_detail(format!("Maximum number of sessions ({limit}) reached"))
                    .with_retry_after(retry_after)
            }
            GatewayError::TenantMaxWorkflows { max } => {
                ApiError::new(ErrorCode::MaxWorkflowsReached).with_detail(format!(
                    "The tenant allows at most {max} workflows in its live sessions"
                ))
            }
            GatewayError::TenantMaxSessions { max, retry_after } => {
                ApiError::new(ErrorCode::MaxSessionsReached)
                    .with_detail(format!("The tenant allows at most {max} live sessions"))
                    .with_retry_after(retry_after)
            }
            GatewayError::Draining => {
                ApiError::new(ErrorCode::Draining).with_retry_after(Duration::from_secs(5))
            }
            GatewayError::Unavailable => ApiError::new(ErrorCode::Unavailable),
            GatewayError::BrokerUnavailable(reason) => {
                tracing::warn!(request_id = %current_request_id(), %reason, "broker unavailable");
                ApiError::new(ErrorCode::Unavailable)
                    .with_detail("The node serving this session cannot be found while Redis is unavailable; retry")
                    .with_retry_after(Duration::from_secs(1))
            }
            GatewayError::ServedElsewhere => ApiError::new(ErrorCode::Unavailable)
                .with_detail("This session is served by another node; send this request over HTTP"),
            GatewayError::StoreUnavailable(reason) => {
                // The reason names hosts and database errors: logged, not sent.
                tracing::warn!(request_id = %current_request_id(), %reason, "store unavailable");
                ApiError::new(ErrorCode::StoreUnavailable).with_retry_after(STORE_RETRY_AFTER)
            }
            GatewayError::InvalidOverride {
                node_id,
                parameter,
                message,
            } => {
                let path = match parameter {
                    Some(parameter) => format!("config_overrides.{node_id}.{parameter}"),
                    None => format!("config_overrides.{node_id}"),
                };
                ApiError::new(ErrorCode::InvalidRequest)
                    .with_detail(format!("Invalid {path}: {message}"))
                    .with_errors(vec![FieldError { path, message }])
            }
            GatewayError::TooManySessions { limit } => ApiError::new(ErrorCode::TooManySessions)
                .with_detail(format!(
                    "You already have {limit} open sessions; close one first"
                )),
            GatewayError::WorkflowNotFound => ApiError::new(ErrorCode::WorkflowNotFound),
            GatewayError::ExecutionNotFound => ApiError::new(ErrorCode::ExecutionNotFound),
            GatewayError::ExecutionNotRunning => ApiError::new(ErrorCode::ExecutionNotRunning),
            GatewayError::TooManyExecutions { limit, scope } => {
                ApiError::new(ErrorCode::TooManyExecutions)
                    .with_detail(format!(
                        "At most {limit} executions may run at once per {scope}"
                    ))
                    .with_retry_after(Duration::from_secs(1))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn codes_are_unique_snake_case() {
        let codes: HashSet<_> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(codes.len(), ErrorCode::ALL.len());
        for code in codes {
            assert!(
                code.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{code}"
            );
        }
        for code in ErrorCode::ALL {
            assert!(code.status().is_client_error() || code.status().is_server_error());
        }
    }
}
