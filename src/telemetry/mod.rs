//! Logs (tracing) and metrics (Prometheus).

pub mod metrics;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `RUST_LOG` (if set) wins over the configured level.
/// Called once per process; later calls (tests, reload) are no-ops.
pub fn init_logging(level: &str, json: bool) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.compact().try_init()
    };
}
