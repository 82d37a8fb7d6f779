//! HTTP plumbing shared by every route: the error table, the JSON body extractor, request
//! ids and the observing middleware.

pub mod body;
pub mod error;
pub mod observe;
pub mod request_id;

pub use body::JsonBody;
pub use error::{ApiError, ErrorCode, FieldError};
