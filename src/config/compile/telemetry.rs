//! `logger` and `telemetry.tracing`: how the gateway logs and where it sends traces.

use crate::config::source::ConfigPath;
use crate::runtime::Logging;
use crate::telemetry::traces::{traces_url, Settings as TracesSettings};

use super::*;

/// `telemetry.tracing`: endpoint URL, service name, sampling ratio, collector trust.
pub(super) fn compile_tracing(t: &TracingConfig, ctx: &mut Ctx<'_>) -> Option<TracesSettings> {
    let path = ConfigPath::root().key("telemetry").key("tracing");
    let mut ok = true;
    let endpoint = match t.otlpEndpoint.as_deref() {
        None => None,
        Some(e) => match traces_url(e) {
            Ok(u) => Some(u),
            Err(msg) => {
                ctx.diags.error_hint(
                    &path.key("otlpEndpoint"),
                    msg,
                    "write the collector's OTLP/HTTP base URL, e.g. http://collector:4318",
                );
                ok = false;
                None
            }
        },
    };
    let ratio = t.sampleRatio.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&ratio) {
        ctx.diags.error_hint(
            &path.key("sampleRatio"),
            format!("sampleRatio {ratio} is outside 0.0 ..= 1.0"),
            "1.0 records every trace, 0.1 one in ten",
        );
        ok = false;
    }
    let service_name = t
        .serviceName
        .clone()
        .or_else(|| std::env::var("OTEL_SERVICE_NAME").ok())
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "tessera".to_string());
    let tls = client_tls(t.tls.as_deref(), &path.key("tls"), ctx);
    Some(TracesSettings {
        endpoint,
        service_name,
        sample_ratio: ratio,
        tls: tls?,
        tls_profile: t.tls.clone(),
    })
    .filter(|_| ok)
}

pub(super) fn compile_logging(l: Option<&LoggerConfig>, ctx: &mut Ctx<'_>) -> Option<Logging> {
    let path = ConfigPath::root().key("logger");
    let level = l
        .and_then(|l| l.level.clone())
        .unwrap_or_else(|| "info".into());
    let known = ["trace", "debug", "info", "warn", "error", "off"];
    let plain_ok = known.contains(&level.to_ascii_lowercase().as_str());
    let directive_ok =
        level.contains('=') && tracing_subscriber::EnvFilter::try_new(&level).is_ok();
    let level_ok = plain_ok || directive_ok;
    if !level_ok {
        ctx.diags.error_hint(
            &path.key("level"),
            format!("invalid log level `{level}`"),
            "use trace, debug, info, warn or error",
        );
    }
    let json = match l.and_then(|l| l.format.as_deref()).unwrap_or("json") {
        "json" => true,
        "text" => false,
        other => {
            ctx.diags.error_hint(
                &path.key("format"),
                format!("invalid log format `{other}`"),
                "use json or text",
            );
            return None;
        }
    };
    if !level_ok {
        return None;
    }
    Some(Logging { level, json })
}
