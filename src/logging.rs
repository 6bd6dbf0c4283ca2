//! `tracing` output: human-readable on stderr, JSON when
//! `LETTERPRESS_LOG_FORMAT=json`; the level from `LETTERPRESS_LOG` (an
//! `EnvFilter` string), default `warn` so that command output stays clean.

use tracing_subscriber::EnvFilter;

/// Whether `LETTERPRESS_LOG_FORMAT=json` asks for one JSON object per line.
pub fn json_format() -> bool {
    std::env::var("LETTERPRESS_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"))
}

/// Installs the global subscriber. Safe to call once per process.
pub fn init() {
    let filter =
        EnvFilter::try_from_env("LETTERPRESS_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json_format() {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// A line for the operator on stderr whatever the log level (`listening on
/// …`, `stopping`, `stopped`): plain text, or with JSON logs a JSON object
/// shaped like the log lines, so that every stderr line of a long-running
/// process parses as JSON for a log shipper.
pub fn notice(message: &str) {
    if json_format() {
        // Written out rather than through a map so the keys come in the
        // order tracing's own JSON lines use.
        eprintln!(
            r#"{{"timestamp":"{}","level":"INFO","fields":{{"message":{}}},"target":"letterpress"}}"#,
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            serde_json::Value::from(message)
        );
    } else {
        eprintln!("{message}");
    }
}
