//! Logs (tracing), metrics (Prometheus) and traces (OpenTelemetry over OTLP).

pub mod access;
pub mod escape;
pub mod failures;
pub mod metrics;
pub mod traces;

use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::{Level, Metadata};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{filter, reload, EnvFilter, Layer};

type SetLevel = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// The process's telemetry, installed once by `run`: the log level can be changed by a
/// reload; the log format and the trace exporter are fixed until restart.
pub struct Telemetry {
    set_level: Option<SetLevel>,
    /// `RUST_LOG` is set: it wins over `logger.level`, also on reload.
    level_from_env: bool,
    tracer: Option<SdkTracerProvider>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("level_from_env", &self.level_from_env)
            .field("traces", &self.tracer.is_some())
            .finish()
    }
}

fn level_filter(level: &str) -> EnvFilter {
    EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Only Tessera's spans (and its warnings and errors, as span events) go to the exporter.
fn exported(meta: &Metadata<'_>) -> bool {
    meta.target().starts_with("tessera") && (meta.is_span() || *meta.level() <= Level::WARN)
}

/// Installs the global subscriber: logs on stderr at `level` (`RUST_LOG` wins) as JSON lines
/// or compact text, and, with `traces`, the OpenTelemetry layer. A second call (tests) leaves
/// the first subscriber in place. Must run inside the tokio runtime when `traces` is set.
pub fn init(level: &str, json: bool, traces: Option<&traces::Settings>) -> Telemetry {
    let env = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let level_from_env = env.is_some();
    let initial = match &env {
        Some(v) => EnvFilter::try_new(v).unwrap_or_else(|_| level_filter(level)),
        None => level_filter(level),
    };
    let (log_filter, handle) = reload::Layer::new(initial);
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let logs = if json {
        fmt.json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_filter(log_filter)
            .boxed()
    } else {
        // Attacker-controlled text must not split or forge lines: see `escape`.
        fmt.compact()
            .fmt_fields(escape::EscapedFields)
            .with_filter(log_filter)
            .boxed()
    };
    let mut export_error = None;
    let tracer = traces.and_then(|s| match traces::provider(s) {
        Ok(p) => Some(p),
        Err(e) => {
            export_error = Some(e);
            None
        }
    });
    let otel = tracer.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(traces::tracer(p))
            .with_filter(filter::filter_fn(exported))
    });
    let installed = tracing_subscriber::registry()
        .with(otel)
        .with(logs)
        .try_init()
        .is_ok();
    if let Some(e) = export_error {
        tracing::error!(error = %e, "traces are off");
    }
    if let (Some(s), true) = (traces, tracer.is_some()) {
        tracing::info!(
            endpoint = s.endpoint.as_deref().unwrap_or("(from OTEL_EXPORTER_OTLP_* or default)"),
            service = %s.service_name,
            sample_ratio = s.sample_ratio,
            "exporting traces over OTLP/HTTP"
        );
    }
    let set_level: Option<SetLevel> = installed.then(|| {
        Box::new(move |level: &str| {
            handle
                .reload(level_filter(level))
                .map_err(|e| e.to_string())
        }) as SetLevel
    });
    Telemetry {
        set_level,
        level_from_env,
        tracer,
    }
}

impl Telemetry {
    /// Applies a reloaded `logger.level` (ignored while `RUST_LOG` is set).
    pub fn set_level(&self, level: &str) {
        if self.level_from_env {
            return;
        }
        if let Some(set) = &self.set_level {
            if let Err(e) = set(level) {
                tracing::warn!(error = %e, "cannot change the log level");
            }
        }
    }

    /// Exports the spans still buffered (bounded), at exit. Blocks: call it off the async
    /// workers (`spawn_blocking`).
    pub fn shutdown(&self) {
        if let Some(p) = &self.tracer {
            let _ = p.shutdown_with_timeout(std::time::Duration::from_secs(5));
        }
    }
}
