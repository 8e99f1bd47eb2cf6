//! Listener: TCP (+ rustls with ALPN h2/http1.1), HTTP/1.1 and HTTP/2 on one port, and
//! graceful shutdown (stop accepting, let in-flight requests finish within a bound).
//!
//! The runtime is read from [`Live`] at each request (and the TLS configuration at each new
//! connection), so a reload applies to the next request and the next handshake.

pub mod body;
pub mod reload;
pub mod respond;
pub mod router;
pub mod service;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::runtime::{Live, Runtime};

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Binds the configured address.
pub async fn bind(rt: &Runtime) -> std::io::Result<TcpListener> {
    TcpListener::bind(rt.listen.address).await
}

fn scheme_of(rt: &Runtime) -> &'static str {
    if rt.listen.tls.is_some() {
        "https"
    } else {
        "http"
    }
}

/// Serves until `shutdown` completes, then drains connections for at most the configured
/// shutdown timeout.
pub async fn serve(
    live: Arc<Live>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    tracing::info!(address = %local, scheme = scheme_of(&live.load()), "listening");
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(64 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        // TLS as configured now: a reloaded certificate serves from the next handshake.
        let (scheme, acceptor) = {
            let rt = live.load();
            (scheme_of(&rt), rt.listen.tls.clone().map(TlsAcceptor::from))
        };
        let conn_live = live.clone();
        let svc = service_fn(move |req| {
            // One runtime per request, kept to its end (a reload does not change it midway).
            let rt = conn_live.load();
            async move {
                Ok::<_, std::convert::Infallible>(service::handle(rt, req, peer, scheme).await)
            }
        });
        match acceptor {
            None => {
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
                let conn = graceful.watch(conn.into_owned());
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            Some(acceptor) => {
                let builder = builder.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
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
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), svc);
                    let _ = watcher.watch(conn.into_owned()).await;
                });
            }
        }
    }
    drop(listener);
    let bound = live.load().listen.shutdown_timeout;
    tracing::info!(
        timeout_s = bound.as_secs(),
        "shutting down: draining connections"
    );
    match tokio::time::timeout(bound, graceful.shutdown()).await {
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
