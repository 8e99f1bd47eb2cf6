//! Configuration: the YAML contract (`model`), how a file is read into it with every problem
//! reported at `FILE:LINE:COL` (`source`, `decode`, `interpolate`), and how it becomes the
//! immutable runtime the server reads (`compile`). `schema` publishes the JSON schema.

pub mod client_auth;
pub mod compile;
pub mod decode;
pub mod interpolate;
pub mod model;
pub mod oidc;
pub mod schema;
pub mod source;
pub mod upstream;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_yaml_ng::Value;

use crate::runtime::Runtime;
use crate::secrets::SecretProvider;
use crate::store::StorePool;
use crate::telemetry::metrics::Metrics;
use source::{ConfigPath, Diagnostics, Position, Report, SpanIndex};

/// What a configuration is compiled against: things that outlive a reload. The stores and
/// the metrics are made once per process and handed to every compile, so sessions, counters
/// and Redis connections survive a reload.
pub struct Environment<'a> {
    pub secrets: &'a SecretProvider,
    pub stores: Arc<StorePool>,
    pub metrics: Arc<Metrics>,
}

/// Reads, validates and compiles the configuration file at `path`.
pub fn load_file(path: &Path, env: &Environment<'_>) -> Result<Runtime, Report> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Report::single(
            path,
            Position { line: 1, col: 1 },
            format!("cannot read the configuration file: {e}"),
            Some("check the path given with --config or TESSERA_CONFIG".into()),
        )
    })?;
    let base = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    load_str(&text, path, &base, env)
}

/// Validates and compiles configuration `text`; `file` names it in messages and relative
/// file paths in it are resolved against `base_dir`.
pub fn load_str(
    text: &str,
    file: &Path,
    base_dir: &Path,
    env: &Environment<'_>,
) -> Result<Runtime, Report> {
    let spans = SpanIndex::build(text);
    let mut doc: Value = serde_yaml_ng::from_str(text).map_err(|e| {
        let pos = e
            .location()
            .map(|l| Position {
                line: l.line(),
                col: l.column(),
            })
            .unwrap_or(Position { line: 1, col: 1 });
        let msg = e.to_string();
        let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
        Report::single(
            file,
            pos,
            format!("invalid YAML: {msg}"),
            Some("check indentation and quoting near this position".into()),
        )
    })?;
    let mut diags = Diagnostics::default();
    if doc.is_null() {
        diags.error_hint(
            &ConfigPath::root(),
            "the configuration is empty",
            "start from config.example.yaml",
        );
        return Err(Report::new(file, &spans, diags.items));
    }
    interpolate::interpolate(&mut doc, &ConfigPath::root(), env.secrets, &mut diags);
    let runtime = compile::compile(&doc, base_dir, env, &mut diags);
    match runtime {
        Some(rt) if diags.is_empty() => Ok(rt),
        _ => Err(Report::new(file, &spans, diags.items)),
    }
}
