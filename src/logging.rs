//! Log output: `pretty` (human, development) or `json` (one object per line, production),
//! filtered by `log_filter` / `RUST_LOG`. Tokens and secrets are never passed to a log call.

use tracing_subscriber::{EnvFilter, fmt};

use crate::config::{LogFormat, Settings};

/// Installs the global subscriber; a second call (as in tests) leaves the first in place.
pub fn init(settings: &Settings) {
    let filter =
        EnvFilter::try_new(&settings.log_filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt().with_env_filter(filter).with_target(true);
    let _already_installed = match settings.log_format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}
