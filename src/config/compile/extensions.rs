//! `serviceExtensions` and the hook positions that refer to them: every component loaded
//! once, checked against the hooks its positions name.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_yaml_ng::Value;

use super::{check_name, resolve_file, unknown_ref, Ctx};
use crate::config::decode::decode;
use crate::config::model::{HookConfig, ServiceExtensionConfig};
use crate::config::source::ConfigPath;
use crate::extensions::load::{HostPattern, SecretPattern, Settings};
use crate::extensions::{cache, engine, Extension, Hook, HookKind, Limits, Services};

/// Components by file, loaded on first reference; `None` = failed (already reported).
#[derive(Default)]
pub(in crate::config) struct Registry {
    services: Option<Arc<Services>>,
    by_name: HashMap<String, PathBuf>,
    settings: HashMap<PathBuf, Settings>,
    loaded: HashMap<PathBuf, Option<Arc<Extension>>>,
}

/// Decodes `serviceExtensions`, loads each component, and remembers their settings.
pub(in crate::config) fn compile_service_extensions(
    v: Option<&Value>,
    services: Services,
    ctx: &mut Ctx<'_>,
) {
    ctx.extensions.services = Some(Arc::new(services));
    let path = ConfigPath::root().key("serviceExtensions");
    let Some(v) = v else { return };
    let Some(list) = decode::<Vec<ServiceExtensionConfig>>(v, &path, ctx.diags) else {
        return;
    };
    let mut names = std::collections::HashSet::new();
    for (i, cfg) in list.into_iter().enumerate() {
        let p = path.index(i);
        if !check_name(
            &cfg.name,
            &p.key("name"),
            &mut names,
            "service extension",
            ctx,
        ) {
            continue;
        }
        // The name is the extension's attribute namespace: it must not be a connector's, or
        // the extension could write that connector's attributes (`local.groups`).
        if let Some(c) = ctx
            .connectors
            .iter()
            .find(|c| c.eq_ignore_ascii_case(&cfg.name))
        {
            ctx.diags.error_hint(
                &p.key("name"),
                format!("`{}` is also the name of connector `{c}`", cfg.name),
                "an extension writes attributes only under its own name (`<name>.<attribute>`); give it a name no connector has",
            );
            continue;
        }
        let file = resolve_file(ctx.base, &cfg.file);
        if ctx.extensions.settings.contains_key(&file) {
            ctx.diags.error_hint(
                &p.key("file"),
                format!("`{}` is configured by two service extensions", cfg.file),
                "give each component one serviceExtensions entry and refer to it by name",
            );
            continue;
        }
        let Some(settings) = settings(&cfg, &p, ctx) else {
            continue;
        };
        ctx.extension_names.insert(cfg.name.clone());
        ctx.extensions.by_name.insert(cfg.name, file.clone());
        ctx.extensions.settings.insert(file.clone(), settings);
        load(&file, &p.key("file"), ctx);
    }
}

fn settings(cfg: &ServiceExtensionConfig, p: &ConfigPath, ctx: &mut Ctx<'_>) -> Option<Settings> {
    let mut ok = true;
    let mut limits = Limits::default();
    if let Some(l) = &cfg.limits {
        if let Some(ms) = l.timeoutMillis {
            if (1..=60_000).contains(&ms) {
                limits.timeout = Duration::from_millis(ms);
            } else {
                ctx.diags.error(
                    &p.key("limits").key("timeoutMillis"),
                    "timeoutMillis must be 1..=60000",
                );
                ok = false;
            }
        }
        if let Some(mib) = l.memoryMiB {
            if (1..=engine::MAX_MEMORY_MIB).contains(&mib) {
                limits.memory_bytes = (mib as usize) << 20;
            } else {
                ctx.diags.error(
                    &p.key("limits").key("memoryMiB"),
                    format!("memoryMiB must be 1..={}", engine::MAX_MEMORY_MIB),
                );
                ok = false;
            }
        }
    }
    let mut allowed_hosts = Vec::new();
    for (j, h) in cfg.allowedHosts.iter().enumerate() {
        match HostPattern::parse(h) {
            Ok(p) => allowed_hosts.push(p),
            Err(e) => {
                ctx.diags.error(&p.key("allowedHosts").index(j), e);
                ok = false;
            }
        }
    }
    let mut secrets = Vec::new();
    for (j, name) in cfg.secrets.iter().enumerate() {
        match SecretPattern::parse(name) {
            Ok(p) => secrets.push(p),
            Err(e) => {
                ctx.diags.error(&p.key("secrets").index(j), e);
                ok = false;
            }
        }
    }
    ok.then(|| Settings {
        name: cfg.name.clone(),
        limits,
        allowed_hosts,
        secrets,
        namespace: Some(cfg.name.clone()),
        metadata: cfg
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    })
}

fn load(file: &PathBuf, at: &ConfigPath, ctx: &mut Ctx<'_>) -> Option<Arc<Extension>> {
    if let Some(done) = ctx.extensions.loaded.get(file) {
        return done.clone();
    }
    let services = ctx.extensions.services.clone()?;
    let settings = ctx
        .extensions
        .settings
        .remove(file)
        .unwrap_or_else(|| Settings {
            // Named only by file: default limits, no outbound hosts, no metadata, no secrets,
            // no attribute namespace (declare it in serviceExtensions for those).
            name: file
                .strip_prefix(ctx.base)
                .unwrap_or(file)
                .display()
                .to_string(),
            limits: Limits::default(),
            allowed_hosts: Vec::new(),
            metadata: Vec::new(),
            secrets: Vec::new(),
            namespace: None,
        });
    let loaded = match Extension::load(file, settings, services) {
        Ok(e) => Some(Arc::new(e)),
        Err(e) => {
            ctx.diags.error_hint(
                at,
                e,
                "build the component against extensions/wit (see extensions/README.md)",
            );
            None
        }
    };
    ctx.extensions.loaded.insert(file.clone(), loaded.clone());
    loaded
}

/// Resolves a hook position: `Ok(None)` when not configured, `Err(())` when broken (reported).
pub(in crate::config) fn hook(
    cfg: Option<&HookConfig>,
    expected: HookKind,
    p: &ConfigPath,
    ctx: &mut Ctx<'_>,
) -> Result<Option<Hook>, ()> {
    let Some(cfg) = cfg else { return Ok(None) };
    let mut ok = true;
    match HookKind::parse(&cfg.funcName) {
        Some(k) if k == expected => {}
        Some(k) => {
            ctx.diags.error_hint(
                &p.key("funcName"),
                format!("this position calls the {expected} hook, not {k}"),
                format!("write funcName: {expected}"),
            );
            ok = false;
        }
        None => {
            ctx.diags.error_hint(
                &p.key("funcName"),
                format!("unknown hook `{}`", cfg.funcName),
                format!("this position calls the {expected} hook: write funcName: {expected}"),
            );
            ok = false;
        }
    }
    let (file, at) = match (&cfg.file, &cfg.extension) {
        (Some(_), Some(_)) | (None, None) => {
            ctx.diags.error_hint(
                p,
                "name the component with either `file` or `extension`",
                "file: extensions/auth.wasm, or extension: <serviceExtensions name>",
            );
            return Err(());
        }
        (Some(f), None) => (resolve_file(ctx.base, f), p.key("file")),
        (None, Some(name)) => match ctx.extensions.by_name.get(name) {
            Some(f) => (f.clone(), p.key("extension")),
            None => {
                let known = ctx.extensions.by_name.keys().cloned().collect();
                unknown_ref(ctx, &p.key("extension"), "service extension", name, known);
                return Err(());
            }
        },
    };
    let ext = load(&file, &at, ctx).ok_or(())?;
    if !ok {
        return Err(());
    }
    if !ext.exports(expected) {
        let has: Vec<String> = ext.exported().iter().map(|k| k.to_string()).collect();
        ctx.diags.error_hint(
            &at,
            format!(
                "`{}` does not export the {expected} hook (interface `{}`)",
                ext.file.display(),
                expected.export_name()
            ),
            if has.is_empty() {
                "it exports no hook of tessera:extension@0.1".to_string()
            } else {
                format!("it exports: {}", has.join(", "))
            },
        );
        return Err(());
    }
    let cache = match cfg.cacheSeconds {
        None => None,
        Some(_) if !HookKind::CACHEABLE.contains(&expected) => {
            ctx.diags.error_hint(
                &p.key("cacheSeconds"),
                format!("the answer of {expected} cannot be cached"),
                "cacheSeconds applies to IsAuthenticated, IsAuthorized, LoadAttributes and CreateHeaders of proxy apps",
            );
            return Err(());
        }
        Some(s) if !(1..=cache::MAX_SECONDS).contains(&s) => {
            ctx.diags.error_hint(
                &p.key("cacheSeconds"),
                format!("cacheSeconds must be 1..={}, not {s}", cache::MAX_SECONDS),
                "leave it out to call the hook on every request",
            );
            return Err(());
        }
        Some(s) => Some(Arc::new(cache::DecisionCache::new(Duration::from_secs(s)))),
    };
    Ok(Some(Hook {
        extension: ext,
        kind: expected,
        cache,
    }))
}
