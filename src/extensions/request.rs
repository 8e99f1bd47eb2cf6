//! The request view a guest receives: what the client sent, minus the gateway's secrets
//! (its own cookies, client credentials).

use http::header::{AUTHORIZATION, COOKIE};
use http::{HeaderMap, Method, Uri};

use super::GuestRequest;
use crate::session::cookie::without_cookie;
use crate::web::respond::RequestCtx;

/// Form fields a guest never sees.
const HIDDEN_FORM_FIELDS: [&str; 2] = ["client_secret", "client_assertion"];

/// The parts of an HTTP request a hook looks at.
pub struct RequestParts<'a> {
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub headers: &'a HeaderMap,
}

/// Builds the guest's view. `own_cookies` are removed from `cookie`; `form` is the decoded
/// body of a form post (token endpoint), with client credentials removed along with the
/// `authorization` header.
pub fn guest_request(
    ctx: &RequestCtx,
    app: &str,
    parts: RequestParts<'_>,
    own_cookies: &[&str],
    form: Option<&[(String, String)]>,
) -> GuestRequest {
    let authority = ctx
        .host_header
        .as_ref()
        .and_then(|h| h.to_str().ok())
        .unwrap_or(&ctx.host);
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut headers = Vec::with_capacity(parts.headers.len());
    for (name, value) in parts.headers {
        if name == COOKIE || (form.is_some() && name == AUTHORIZATION) {
            continue;
        }
        if let Ok(v) = value.to_str() {
            headers.push((name.as_str().to_string(), v.to_string()));
        }
    }
    if let Some(c) = without_cookie(parts.headers, own_cookies) {
        headers.push(("cookie".to_string(), c));
    }
    let form = form
        .unwrap_or_default()
        .iter()
        .filter(|(k, _)| !HIDDEN_FORM_FIELDS.contains(&k.as_str()))
        .cloned()
        .collect();
    GuestRequest {
        id: ctx.request_id.clone(),
        method: parts.method.as_str().to_string(),
        url: format!("{}://{authority}{path}", ctx.scheme),
        headers,
        form,
        app: app.to_string(),
        client_ip: ctx.client_ip.to_string(),
    }
}
