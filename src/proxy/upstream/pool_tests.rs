//! The connection pool against a real HTTP/1.1 server on loopback that counts its
//! connections.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use tokio::net::TcpListener;

use super::*;
use crate::web::body::full;

#[derive(Default)]
struct Seen {
    accepted: AtomicUsize,
    open: AtomicUsize,
    requests: AtomicUsize,
}

struct Server {
    addr: SocketAddr,
    seen: Arc<Seen>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An upstream answering `ok` (or closing every connection after one response when
/// `one_per_connection`), on `addr` (port 0: any).
async fn server(addr: SocketAddr, one_per_connection: bool) -> Server {
    let listener = TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let counts = seen.clone();
    let task = tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            counts.accepted.fetch_add(1, Ordering::SeqCst);
            counts.open.fetch_add(1, Ordering::SeqCst);
            let counts = counts.clone();
            connections.spawn(async move {
                let svc_counts = counts.clone();
                let svc = service_fn(move |_req| {
                    svc_counts.requests.fetch_add(1, Ordering::SeqCst);
                    async {
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(
                            "ok",
                        ))))
                    }
                });
                let io = TokioIo::new(stream);
                let conn = hyper::server::conn::http1::Builder::new()
                    .keep_alive(!one_per_connection)
                    .serve_connection(io, svc);
                let _ = conn.await;
                counts.open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    Server { addr, seen, task }
}

fn upstream(addr: SocketAddr, idle_timeout: Duration) -> Upstream {
    let uri: Uri = format!("http://{addr}/base").parse().unwrap();
    let tls = crate::tls::client_config(None, None).unwrap();
    Upstream::with_pool(
        &uri,
        tls,
        Duration::from_secs(2),
        Duration::from_secs(5),
        idle_timeout,
    )
    .unwrap()
}

fn get(up: &Upstream) -> Request<Body> {
    Request::builder()
        .uri("/base/x")
        .header(header::HOST, up.host_header().unwrap())
        .body(full(""))
        .unwrap()
}

async fn fetch(up: &Upstream) -> Result<String, UpstreamError> {
    let resp = up.exchange(get(up)).await?;
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Ok(String::from_utf8(body.to_vec()).unwrap())
}

/// Waits (bounded) until `cond` holds.
async fn eventually(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..200 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what} never happened");
}

#[tokio::test]
async fn sequential_requests_share_one_connection() {
    let srv = server("127.0.0.1:0".parse().unwrap(), false).await;
    let up = upstream(srv.addr, Duration::from_secs(60));
    for _ in 0..10 {
        assert_eq!(fetch(&up).await.unwrap(), "ok");
    }
    assert_eq!(srv.seen.requests.load(Ordering::SeqCst), 10);
    assert_eq!(srv.seen.accepted.load(Ordering::SeqCst), 1);
    assert_eq!(up.pool.idle_count(), 1);
}

#[tokio::test]
async fn a_body_dropped_before_its_end_closes_its_connection() {
    let srv = server("127.0.0.1:0".parse().unwrap(), false).await;
    let up = upstream(srv.addr, Duration::from_secs(60));
    let resp = up.exchange(get(&up)).await.unwrap();
    // the head has been read, the body not: the connection cannot serve another request
    drop(resp);
    assert_eq!(up.pool.idle_count(), 0);
    eventually("the upstream connection closing", || {
        srv.seen.open.load(Ordering::SeqCst) == 0
    })
    .await;
    assert_eq!(fetch(&up).await.unwrap(), "ok");
    assert_eq!(srv.seen.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn connections_idle_past_the_timeout_are_closed() {
    let srv = server("127.0.0.1:0".parse().unwrap(), false).await;
    let up = upstream(srv.addr, Duration::from_millis(200));
    assert_eq!(fetch(&up).await.unwrap(), "ok");
    assert_eq!(up.pool.idle_count(), 1);
    assert_eq!(srv.seen.open.load(Ordering::SeqCst), 1);
    // closed by the sweep, without any request asking for it
    eventually("the idle connection closing", || {
        srv.seen.open.load(Ordering::SeqCst) == 0
    })
    .await;
    assert_eq!(up.pool.idle_count(), 0);
    assert_eq!(fetch(&up).await.unwrap(), "ok");
    assert_eq!(srv.seen.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_connection_the_upstream_closed_is_replaced() {
    // The upstream closes each connection after its response (`Connection: close`).
    let srv = server("127.0.0.1:0".parse().unwrap(), true).await;
    let up = upstream(srv.addr, Duration::from_secs(60));
    for _ in 0..3 {
        assert_eq!(fetch(&up).await.unwrap(), "ok");
    }
    assert_eq!(srv.seen.accepted.load(Ordering::SeqCst), 3);
    assert_eq!(up.pool.idle_count(), 0);
}

#[tokio::test]
async fn an_idle_connection_closed_by_the_upstream_is_not_reused() {
    let srv = server("127.0.0.1:0".parse().unwrap(), false).await;
    let addr = srv.addr;
    let up = upstream(addr, Duration::from_secs(60));
    assert_eq!(fetch(&up).await.unwrap(), "ok");
    assert_eq!(up.pool.idle_count(), 1);
    // The upstream restarts on the same port: its connections are gone.
    drop(srv);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let srv = server(addr, false).await;
    for _ in 0..3 {
        assert_eq!(fetch(&up).await.unwrap(), "ok");
    }
    assert_eq!(srv.seen.accepted.load(Ordering::SeqCst), 1);
    assert_eq!(srv.seen.requests.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_dead_upstream_is_unreachable() {
    let srv = server("127.0.0.1:0".parse().unwrap(), false).await;
    let addr = srv.addr;
    drop(srv);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let up = upstream(addr, Duration::from_secs(60));
    let err = fetch(&up).await.unwrap_err();
    assert_eq!(err.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(err.kind(), "connect");
}
