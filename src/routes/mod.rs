//! The HTTP routes. Every resource answers unknown methods with 405 and the app answers
//! unknown paths with 404, both in the gateway's JSON error shape.

mod events;
mod health;
mod meta;
mod sessions;

use actix_web::{HttpRequest, HttpResponse, Resource, web};

use crate::http::{ApiError, ErrorCode};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::QueryConfig::default().error_handler(|error, _| {
        ApiError::new(ErrorCode::InvalidRequest)
            .with_detail(format!("Invalid query string: {error}"))
            .into()
    }))
    .service(resource("/").get(meta::root))
    .service(resource("/ready").get(meta::ready))
    .service(resource("/metrics").get(meta::metrics))
    .service(resource("/api/stats").get(meta::stats))
    .service(resource("/health").get(health::health))
    .service(resource("/health/detailed").get(health::detailed))
    .service(
        resource("/api/sessions")
            .get(sessions::list)
            .post(sessions::create),
    )
    .service(
        resource("/api/sessions/{session_id}")
            .get(sessions::get)
            .delete(sessions::close),
    )
    .service(resource("/api/events/recent").get(events::recent))
    .default_service(web::to(not_found));
}

fn resource(path: &str) -> Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(ErrorCode::NotFound)
        .with_detail(format!("No route for {}", sanitize(req.path()))))
}

async fn method_not_allowed(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(ErrorCode::MethodNotAllowed)
        .with_detail(format!("{} is not allowed on this route", req.method())))
}

/// A caller-supplied path, shortened and stripped of control characters before it is echoed.
fn sanitize(path: &str) -> String {
    path.chars().filter(|c| !c.is_control()).take(200).collect()
}
