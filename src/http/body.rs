//! [`JsonBody`]: the JSON request-body extractor every route uses, so that size limits,
//! malformed JSON and wrong field types all answer with the gateway's JSON errors (413,
//! `invalid_json`, `invalid_request` with `errors[]` naming the field).
//!
//! Kailash clients post JSON with or without a `Content-Type`, and sometimes no body at all
//! where every field is optional: an empty body reads as `{}`.

use actix_web::{
    FromRequest, HttpRequest,
    dev::Payload,
    error::PayloadError,
    web::{self, Bytes},
};
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;
use serde_json::error::Category;

use super::error::{ApiError, ErrorCode, FieldError};

/// A request body parsed as JSON into `T`.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        // Reads at most the configured limit (`web::PayloadConfig` in app data).
        let bytes = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            let bytes = bytes
                .await
                .map_err(|error| match error.as_error::<PayloadError>() {
                    Some(PayloadError::Overflow) => ApiError::new(ErrorCode::PayloadTooLarge),
                    _ => ApiError::new(ErrorCode::InvalidRequest)
                        .with_detail("The request body could not be read"),
                })?;
            parse(&bytes).map(JsonBody)
        })
    }
}

fn parse<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    let mut deserializer = serde_json::Deserializer::from_slice(text);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        match inner.classify() {
            Category::Data => ApiError::new(ErrorCode::InvalidRequest)
                .with_detail("The request body has invalid fields")
                .with_errors(vec![FieldError {
                    path: if path == "." { String::new() } else { path },
                    message: strip_position(&inner.to_string()),
                }]),
            Category::Syntax | Category::Eof | Category::Io => not_json(&inner),
        }
    })?;
    deserializer.end().map_err(|error| not_json(&error))?;
    Ok(value)
}

fn not_json(error: &serde_json::Error) -> ApiError {
    ApiError::new(ErrorCode::InvalidJson)
        .with_detail(format!("The request body is not valid JSON: {error}"))
}

/// serde's data errors end in " at line 1 column 42", which means nothing next to a path.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    struct Body {
        #[serde(default)]
        name: Option<String>,
    }

    #[test]
    fn empty_means_empty_object_and_errors_name_the_field() {
        assert!(
            parse::<Body>(&Bytes::from_static(b"  "))
                .unwrap()
                .name
                .is_none()
        );
        let error = parse::<Body>(&Bytes::from_static(br#"{"name": 5}"#)).unwrap_err();
        assert_eq!(error.code(), ErrorCode::InvalidRequest);
        let error = parse::<Body>(&Bytes::from_static(b"{nope")).unwrap_err();
        assert_eq!(error.code(), ErrorCode::InvalidJson);
        let error = parse::<Body>(&Bytes::from_static(b"{} trailing")).unwrap_err();
        assert_eq!(error.code(), ErrorCode::InvalidJson);
    }
}
