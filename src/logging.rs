//! `tracing` output: human-readable on stderr, JSON when
//! `LETTERPRESS_LOG_FORMAT=json`; the level from `LETTERPRESS_LOG` (an
//! `EnvFilter` string), default `warn` so that command output stays clean.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Safe to call once per process.
pub fn init() {
    let filter =
        EnvFilter::try_from_env("LETTERPRESS_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    let json =
        std::env::var("LETTERPRESS_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
