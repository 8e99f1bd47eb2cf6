//! Listener: TCP (+ rustls with ALPN h2/http1.1), HTTP/1.1 and HTTP/2 on one port, the
//! operators' listener (`http.adminAddress`), per-connection limits (`http.limits`), and
//! graceful shutdown (stop accepting, let in-flight requests finish within a bound).
//!
//! The runtime is read from [`Live`] at each request (and the TLS configuration and the
//! limits at each new connection), so a reload applies to the next request and the next
//! connection.

pub mod admin;
pub mod conn;
pub mod health;
pub mod reload;
pub mod router;
pub mod service;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use self::conn::{Activity, Counter, Guarded, Limits};
use crate::runtime::{Live, Runtime};
use crate::web::body::{BodyReadTimeout, RequestBody};

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The admin listener serves probes and scrapes: a few connections are plenty, and a cap
/// keeps it from being a way to exhaust file descriptors.
const ADMIN_MAX_CONNECTIONS: usize = 64;

/// Binds the configured address.
pub async fn bind(rt: &Runtime) -> std::io::Result<TcpListener> {
    TcpListener::bind(rt.listen.address).await
}

/// Binds `http.adminAddress`, when set.
pub async fn bind_admin(rt: &Runtime) -> std::io::Result<Option<TcpListener>> {
    match rt.listen.admin {
        None => Ok(None),
        Some(addr) => TcpListener::bind(addr).await.map(Some),
    }
}

fn scheme_of(rt: &Runtime) -> &'static str {
    if rt.listen.tls.is_some() {
        "https"
    } else {
        "http"
    }
}

/// The connection settings; rebuilt only when the header read timeout changes by a reload.
fn builder(header_read_timeout: Duration) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .max_buf_size(64 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256);
    builder
}

async fn accept_from(listener: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// Serves the main listener (and the admin listener, when given) until `shutdown`
/// completes, then drains connections of both for at most the configured shutdown timeout.
pub async fn serve(
    live: Arc<Live>,
    listener: TcpListener,
    admin: Option<TcpListener>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    tracing::info!(address = %local, scheme = scheme_of(&live.load()), "listening");
    if let Some(a) = &admin {
        tracing::info!(address = %a.local_addr()?, "admin listener ready");
    }
    let mut header_timeout = live.load().listen.limits.header_read_timeout;
    let mut builder = builder(header_timeout);
    let admin_builder = self::builder(Limits::default().header_read_timeout);
    // Every connection holds a receiver; the drain waits until all are dropped.
    let (drain_tx, _) = watch::channel(());
    let (connections, admin_connections, refusing) =
        (Counter::default(), Counter::default(), Counter::default());
    let mut last_cap_warning: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let (stream, peer, is_admin) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((s, p)) => (s, p, false),
                Err(e) => {
                    // Out of file descriptors and the like: wait a little, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            accepted = accept_from(admin.as_ref()) => match accepted {
                Ok((s, p)) => (s, p, true),
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        if is_admin {
            let Some(slot) = admin_connections.try_take(ADMIN_MAX_CONNECTIONS) else {
                conn::refuse(stream, false, &refusing);
                continue;
            };
            let admin_live = live.clone();
            let svc = service_fn(move |req| {
                let rt = admin_live.load();
                async move { Ok::<_, std::convert::Infallible>(admin::handle(rt, req).await) }
            });
            let conn = admin_builder
                .serve_connection(TokioIo::new(stream), svc)
                .into_owned();
            let (activity, idle) = (Activity::new(), Limits::default().header_read_timeout);
            let drain = drain_tx.subscribe();
            let trigger = GracefulShutdown::new();
            let conn = trigger.watch(conn);
            tokio::spawn(async move {
                let _slot = slot;
                conn::drive(Box::pin(conn.map(drop)), trigger, activity, idle, drain).await;
            });
            continue;
        }
        // TLS and limits as configured now: a reload applies from the next connection.
        let (scheme, acceptor, limits) = {
            let rt = live.load();
            (
                scheme_of(&rt),
                rt.listen.tls.clone().map(TlsAcceptor::from),
                rt.listen.limits,
            )
        };
        let Some(slot) = connections.try_take(limits.max_connections) else {
            if last_cap_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                last_cap_warning = Some(Instant::now());
                tracing::warn!(
                    max_connections = limits.max_connections,
                    "connection limit reached: refusing new connections (http.limits.maxConnections)"
                );
            }
            conn::refuse(stream, acceptor.is_some(), &refusing);
            continue;
        };
        if limits.header_read_timeout != header_timeout {
            header_timeout = limits.header_read_timeout;
            builder = self::builder(header_timeout);
        }
        let activity = Activity::new();
        let conn_live = live.clone();
        let conn_activity = activity.clone();
        let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
            let mut req = req.map(RequestBody::Wire);
            // One runtime per request, kept to its end (a reload does not change it midway).
            let rt = conn_live.load();
            let busy = conn_activity.begin();
            req.extensions_mut()
                .insert(BodyReadTimeout(rt.listen.limits.body_read_timeout));
            async move {
                let resp = service::handle(rt, req, peer, scheme).await;
                Ok::<_, std::convert::Infallible>(resp.map(|b| Guarded::new(b, busy)))
            }
        });
        let drain = drain_tx.subscribe();
        let idle = limits.header_read_timeout;
        match acceptor {
            None => {
                let conn = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                    .into_owned();
                let trigger = GracefulShutdown::new();
                let conn = trigger.watch(conn);
                tokio::spawn(async move {
                    let _slot = slot;
                    conn::drive(Box::pin(conn.map(drop)), trigger, activity, idle, drain).await;
                });
            }
            Some(acceptor) => {
                let builder = builder.clone();
                tokio::spawn(async move {
                    let _slot = slot;
                    let tls =
                        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream))
                            .await
                        {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::debug!(client = %peer, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => return,
                        };
                    let conn = builder
                        .serve_connection_with_upgrades(TokioIo::new(tls), svc)
                        .into_owned();
                    let trigger = GracefulShutdown::new();
                    let conn = trigger.watch(conn);
                    conn::drive(Box::pin(conn.map(drop)), trigger, activity, idle, drain).await;
                });
            }
        }
    }
    drop(listener);
    drop(admin);
    let bound = live.load().listen.shutdown_timeout;
    tracing::info!(
        timeout_s = bound.as_secs(),
        "shutting down: draining connections"
    );
    let _ = drain_tx.send(());
    match tokio::time::timeout(bound, drain_tx.closed()).await {
        Ok(()) => tracing::info!("all connections closed"),
        Err(_) => tracing::warn!("shutdown timeout reached; closing remaining connections"),
    }
    Ok(())
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The address a runtime listens on, for banners.
pub fn display_address(addr: SocketAddr, tls: bool) -> String {
    let host = if addr.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        addr.ip().to_string()
    };
    format!(
        "{}://{}:{}",
        if tls { "https" } else { "http" },
        host,
        addr.port()
    )
}
