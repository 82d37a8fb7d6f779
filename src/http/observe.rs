//! The outermost middleware: gives each request its id, a tracing span, a deadline
//! (`request_timeout_seconds`), and records it in the HTTP metrics when it is answered.

use std::time::Instant;

use actix_web::{
    Error, ResponseError,
    body::{BoxBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    error::InternalError,
    http::header::{HeaderName, HeaderValue},
    middleware::Next,
};
use tracing::Instrument;

use super::{
    error::{ApiError, ErrorCode},
    request_id::{self, REQUEST_ID_HEADER},
};

pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let started = Instant::now();
    let state = crate::app::state_of(&req);
    let id = request_id::accept_or_generate(
        req.headers()
            .get(REQUEST_ID_HEADER)
            .and_then(|value| value.to_str().ok()),
    );
    // Resolved before routing: the request cannot be cloned and kept across the call.
    let route = req.match_pattern().unwrap_or_else(|| "unmatched".into());
    let method = req.method().clone();
    let span = tracing::debug_span!("request", request_id = %id, %method, %route);
    let deadline = state.settings.request_timeout();

    // Errors are rendered inside the scope so their bodies carry this request's id.
    let outcome = request_id::scope(id.clone(), async {
        match tokio::time::timeout(deadline, next.call(req)).await {
            Ok(Ok(response)) => Ok(response.map_into_boxed_body()),
            Ok(Err(error)) => Err(error.error_response()),
            Err(_) => Err(ApiError::new(ErrorCode::RequestTimeout).error_response()),
        }
    })
    .instrument(span)
    .await;

    let status = match &outcome {
        Ok(response) => response.status(),
        Err(response) => response.status(),
    };
    state
        .metrics
        .observe_request(method.as_str(), &route, status.as_u16(), started.elapsed());
    if status.is_server_error() {
        tracing::warn!(request_id = %id, %method, %route, status = status.as_u16(), "request failed");
    } else {
        tracing::debug!(request_id = %id, %method, %route, status = status.as_u16(), "request answered");
    }
    let request_id_header = (
        HeaderName::from_static(REQUEST_ID_HEADER),
        HeaderValue::from_str(&id).expect("request ids are plain ASCII"),
    );
    match outcome {
        Ok(mut response) => {
            response
                .headers_mut()
                .insert(request_id_header.0, request_id_header.1);
            Ok(response)
        }
        Err(mut response) => {
            response
                .headers_mut()
                .insert(request_id_header.0, request_id_header.1);
            Err(InternalError::from_response("request failed", response).into())
        }
    }
}
