//! A proxy app's own pages: `unauthorizedPage` (a redirect target, or a page served with
//! 403) and `errorPage` (served with the gateway's own 5xx status). Page files are read once,
//! when the configuration loads (and a change to one triggers a reload like a certificate's).

use std::sync::Arc;

use serde_yaml_ng::Value;

use super::apps::check_target;
use super::Ctx;
use crate::config::decode::decode;
use crate::config::model::StaticPageConfig;
use crate::config::source::ConfigPath;
use crate::proxy::Unauthorized;

/// The largest page file the gateway serves (it is held in memory).
const MAX_PAGE_BYTES: u64 = 256 << 10;

/// `unauthorizedPage`: a string is a redirect target (as `check_target` accepts), a mapping
/// a page. Err when it is invalid (reported).
pub(super) fn unauthorized_page(
    v: Option<&Value>,
    p: &ConfigPath,
    ctx: &mut Ctx<'_>,
) -> Result<Unauthorized, ()> {
    match v {
        None => Ok(Unauthorized::Default),
        Some(Value::String(s)) => match check_target(s, p, ctx) {
            true => Ok(Unauthorized::Redirect(s.clone())),
            false => Err(()),
        },
        Some(m @ Value::Mapping(_)) => {
            let cfg = decode::<StaticPageConfig>(m, p, ctx.diags).ok_or(())?;
            static_page(&cfg, p, ctx).map(Unauthorized::Page).ok_or(())
        }
        Some(_) => {
            ctx.diags.error_hint(
                p,
                "unauthorizedPage is a URL to redirect to, or a page",
                "write unauthorizedPage: /403.html, or { file: pages/403.html }, or { html: \"<h1>…</h1>\" }",
            );
            Err(())
        }
    }
}

/// `errorPage`: a page (a redirect would lose the status). Err when invalid (reported).
pub(super) fn error_page(
    v: Option<&Value>,
    p: &ConfigPath,
    ctx: &mut Ctx<'_>,
) -> Result<Option<Arc<str>>, ()> {
    match v {
        None => Ok(None),
        Some(m @ Value::Mapping(_)) => {
            let cfg = decode::<StaticPageConfig>(m, p, ctx.diags).ok_or(())?;
            static_page(&cfg, p, ctx).map(Some).ok_or(())
        }
        Some(_) => {
            ctx.diags.error_hint(
                p,
                "errorPage is a page: `{ file: … }` or `{ html: … }`",
                "a redirect would hide the error's status from the client",
            );
            Err(())
        }
    }
}

/// A page given as `file` or `html` (exactly one): its HTML. None when invalid (reported).
pub(super) fn static_page(
    cfg: &StaticPageConfig,
    p: &ConfigPath,
    ctx: &mut Ctx<'_>,
) -> Option<Arc<str>> {
    match (&cfg.file, &cfg.html) {
        (Some(_), Some(_)) | (None, None) => {
            ctx.diags.error_hint(
                p,
                "a page is either `file` or `html`",
                "file: pages/error.html, or html: \"<h1>…</h1>\"",
            );
            None
        }
        (None, Some(html)) => Some(Arc::from(html.as_str())),
        (Some(file), None) => {
            let at = p.key("file");
            let path = ctx.file(file);
            let read = std::fs::metadata(&path)
                .map_err(|e| e.to_string())
                .and_then(|m| match m.len() {
                    n if n > MAX_PAGE_BYTES => Err(format!(
                        "it has {n} bytes, more than the {MAX_PAGE_BYTES} a page may have"
                    )),
                    _ => std::fs::read(&path).map_err(|e| e.to_string()),
                })
                .and_then(|bytes| {
                    String::from_utf8(bytes).map_err(|_| "it is not UTF-8 text".to_string())
                });
            match read {
                Ok(html) => Some(Arc::from(html)),
                Err(why) => {
                    ctx.diags
                        .error(&at, format!("cannot serve `{}`: {why}", path.display()));
                    None
                }
            }
        }
    }
}
