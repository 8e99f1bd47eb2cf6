//! The demo's protected app: "whoami" echoes the request it receives, so a newcomer sees the
//! identity headers the gateway injected. Started only by `tessera demo`, never by `run`.

use std::net::SocketAddr;

use http::header::{self, HeaderValue};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::pages::escape;
use crate::web::body::{full, Body};

/// Starts whoami on `authority` (`host:port`); returns the bound address.
pub async fn start_whoami(authority: &str) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(authority).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc =
                    service_fn(|req| async move { Ok::<_, std::convert::Infallible>(whoami(req)) });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}

const IDENTITY_PREFIXES: [&str; 2] = ["x-user", "x-email"];

fn whoami(req: Request<Incoming>) -> Response<Body> {
    let mut rows = String::new();
    let mut names: Vec<_> = req
        .headers()
        .keys()
        .map(|k| k.as_str().to_string())
        .collect();
    names.sort();
    names.dedup();
    for name in names {
        for v in req.headers().get_all(name.as_str()) {
            let injected =
                IDENTITY_PREFIXES.iter().any(|p| name.starts_with(p)) || name == "x-groups";
            rows.push_str(&format!(
                "<tr{}><th scope=\"row\">{}</th><td>{}</td></tr>",
                if injected { " class=\"id\"" } else { "" },
                escape(&name),
                escape(&String::from_utf8_lossy(v.as_bytes()))
            ));
        }
    }
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>whoami</title>\
<style>body{{font:15px/1.5 system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem}}\
table{{border-collapse:collapse;width:100%}}th,td{{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #ddd;vertical-align:top;word-break:break-all}}\
tr.id{{background:#e8f0ff;font-weight:600}}</style></head><body>\
<h1>whoami — the demo app behind Tessera</h1>\
<p>This page is served by the protected app. Highlighted rows are the identity headers Tessera injected.</p>\
<p><strong>{} {}</strong></p><table>{rows}</table>\
<p><a href=\"/admin\">/admin</a> (admins only) · <a href=\"/public\">/public</a> (no login) · <a href=\"/logout\">Sign out</a></p>\
</body></html>",
        escape(req.method().as_str()),
        escape(&req.uri().to_string()),
    );
    let mut resp = Response::new(full(body));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp
}
