//! The request id: taken from a well-formed incoming `X-Request-ID` or generated, echoed in
//! the response header, carried by every log line of the request, and put into every error
//! body — so a user's report and the server's log meet.
//!
//! It lives in a task-local for the duration of the request's service future, which is where
//! handlers, extractors and error rendering all run.

use uuid::Uuid;

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The header that carries it both ways.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The incoming id if it is short and plain (so it is safe to log), else a new one.
pub fn accept_or_generate(incoming: Option<&str>) -> String {
    match incoming {
        Some(id)
            if !id.is_empty()
                && id.len() <= 64
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            id.to_owned()
        }
        _ => Uuid::new_v4().to_string(),
    }
}

/// Runs `future` with `id` as the current request id.
pub async fn scope<F: Future>(id: String, future: F) -> F::Output {
    REQUEST_ID.scope(id, future).await
}

/// The current request's id, or a fresh one outside any request.
pub fn current_request_id() -> String {
    REQUEST_ID
        .try_with(Clone::clone)
        .unwrap_or_else(|_| Uuid::new_v4().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_ids_are_accepted() {
        assert_eq!(accept_or_generate(Some("abc-123_X")), "abc-123_X");
        for bad in ["", "has space", "new\nline", &"x".repeat(65)] {
            assert_ne!(accept_or_generate(Some(bad)), bad);
        }
    }
}
