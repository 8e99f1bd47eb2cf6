//! The operators' listener (`http.adminAddress`, plain HTTP): the Prometheus metrics and
//! the detailed readiness status (which stores, directories and IdPs are down, and why).
//! Nothing else is served there, and none of it is served to the public once it is set.

use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};

use super::health::Readiness;
use crate::runtime::Runtime;
use crate::web::body::{full, Body};
use crate::web::respond;

/// Where the metrics are served on the admin listener: `telemetry.metrics.location`, else
/// `/metrics` (setting an admin listener is asking for them).
pub fn metrics_location(rt: &Runtime) -> &str {
    rt.metrics_location.as_deref().unwrap_or("/metrics")
}

pub async fn handle<B>(rt: Arc<Runtime>, req: Request<B>) -> Response<Body> {
    let path = req.uri().path();
    let known = path == rt.health_location || path == metrics_location(&rt);
    if !known {
        return respond::json(
            StatusCode::NOT_FOUND,
            r#"{"error":"not found"}"#.to_string(),
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut resp = respond::json(
            StatusCode::METHOD_NOT_ALLOWED,
            r#"{"error":"method not allowed"}"#.to_string(),
        );
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    if path == rt.health_location {
        return Readiness::check(&rt).await.detailed();
    }
    let mut resp = Response::new(full(rt.metrics.render()));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}
