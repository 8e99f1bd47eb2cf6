//! Per-connection limits (`http.limits`): the cap on concurrent connections with its 503,
//! and the idle watchdog that closes a connection on which no request is in flight.
//!
//! hyper bounds the time to read an HTTP/1.1 request head (`header_read_timeout`, which also
//! bounds the idle time between keep-alive requests), but not the time before the first
//! byte (protocol detection waits for it) nor an idle HTTP/2 connection. The watchdog covers
//! both: a connection with no request in flight for `headerReadTimeout` is shut down
//! gracefully (HTTP/2 GOAWAY; an HTTP/1.1 connection closes).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// `http.limits` as compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Time to send a request head, and the longest idle time of a connection.
    pub header_read_timeout: Duration,
    /// Time to send a whole body the gateway reads itself (see `body::read_limited`).
    pub body_read_timeout: Duration,
    /// Concurrent connections on the main listener.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            max_connections: 10_000,
        }
    }
}

/// The open connections of a listener.
#[derive(Debug, Default, Clone)]
pub struct Counter(Arc<AtomicUsize>);

/// One counted connection; released when dropped (when the connection's task ends).
#[derive(Debug)]
pub struct Slot(Arc<AtomicUsize>);

impl Counter {
    /// A slot when fewer than `cap` are taken.
    pub fn try_take(&self, cap: usize) -> Option<Slot> {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < cap).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(self.0.clone()))
    }

    pub fn open(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a connection over the cap gets: an answer a client, a load balancer and a human can
/// read, then the end of the connection.
pub const OVER_CAPACITY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: text/plain; charset=utf-8\r\n\
retry-after: 1\r\n\
connection: close\r\n\
cache-control: no-store\r\n\
content-length: 52\r\n\
\r\n\
The gateway is at its connection limit; retry soon.\n";

/// How many refused connections may be in their short goodbye at once; beyond it a refused
/// connection is closed without an answer (a flood must not turn the refusals into a cost).
const MAX_REFUSING: usize = 256;

/// Refuses a connection over the cap: a plain-HTTP client gets [`OVER_CAPACITY`]; a TLS
/// client's connection is closed at once (answering would first cost a TLS handshake, which
/// is what an overloaded gateway must not spend).
pub fn refuse(stream: TcpStream, tls: bool, refusing: &Counter) {
    if tls {
        return;
    }
    let Some(slot) = refusing.try_take(MAX_REFUSING) else {
        return;
    };
    tokio::spawn(async move {
        let _slot = slot;
        let mut stream = stream;
        let goodbye = async {
            stream.write_all(OVER_CAPACITY).await?;
            stream.shutdown().await?;
            // Read what the client sent before closing: closing with unread data makes the
            // kernel send a reset, which can destroy the answer before the client reads it.
            let mut sink = [0u8; 4096];
            let mut drained = 0usize;
            while drained < 64 * 1024 {
                match stream.read(&mut sink).await? {
                    0 => break,
                    n => drained += n,
                }
            }
            Ok::<_, std::io::Error>(())
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), goodbye).await;
    });
}

/// Requests in flight on one connection, and when the last one ended.
#[derive(Debug)]
pub struct Activity {
    started: Instant,
    in_flight: AtomicUsize,
    /// Microseconds from `started` to the end of the last request (0: none yet).
    last_end_us: AtomicU64,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            started: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_end_us: AtomicU64::new(0),
        })
    }

    /// A request starts; it is in flight until the returned guard is dropped (with the
    /// response body, see [`Guarded`]).
    pub fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone())
    }

    /// Completes once no request has been in flight for `timeout`.
    async fn idle_for(&self, timeout: Duration) {
        loop {
            if self.in_flight.load(Ordering::Acquire) > 0 {
                tokio::time::sleep(timeout).await;
                continue;
            }
            let last =
                self.started + Duration::from_micros(self.last_end_us.load(Ordering::Acquire));
            let deadline = last + timeout;
            if Instant::now() >= deadline {
                if self.in_flight.load(Ordering::Acquire) == 0 {
                    return;
                }
                continue;
            }
            tokio::time::sleep_until(deadline.into()).await;
        }
    }
}

/// A request in flight (see [`Activity::begin`]).
#[derive(Debug)]
pub struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let a = &self.0;
        let us = u64::try_from(a.started.elapsed().as_micros()).unwrap_or(u64::MAX);
        // The end time first: the watchdog reads it only when nothing is in flight.
        a.last_end_us.store(us, Ordering::Release);
        a.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request counted as in flight until it is sent (a long
/// download is not an idle connection).
pub struct Guarded<B> {
    inner: B,
    _busy: Busy,
}

impl<B> Guarded<B> {
    pub fn new(inner: B, busy: Busy) -> Self {
        Self { inner, _busy: busy }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Guarded<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Drives one connection to its end: shut down gracefully when the listener stops
/// (`drain` changes) or when it has been idle for `idle`; a connection that does not finish
/// within `idle` after an idle shutdown is dropped. `conn` is the connection as watched by
/// `trigger` (`trigger.watch(conn)`): the shutdown goes through it. (Boxed: the compiler
/// cannot prove hyper's connection futures `Send` through a generic function.)
pub async fn drive(
    conn: Pin<Box<dyn Future<Output = ()> + Send>>,
    trigger: GracefulShutdown,
    activity: Arc<Activity>,
    idle: Duration,
    mut drain: watch::Receiver<()>,
) {
    let mut conn = conn;
    let cut_off = tokio::select! {
        () = conn.as_mut() => return,
        _ = drain.changed() => None,
        () = activity.idle_for(idle) => {
            tracing::debug!(idle_s = idle.as_secs(), "closing an idle connection");
            Some(idle)
        }
    };
    let finished = futures_util::future::join(conn, trigger.shutdown());
    match cut_off {
        // Stopping: the listener's drain bounds the wait (its receiver is held until then).
        None => {
            finished.await;
        }
        Some(bound) => {
            let _ = tokio::time::timeout(bound, finished).await;
        }
    }
    drop(drain);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counter_caps_and_releases() {
        let c = Counter::default();
        let a = c.try_take(2).unwrap();
        let _b = c.try_take(2).unwrap();
        assert!(c.try_take(2).is_none());
        assert_eq!(c.open(), 2);
        drop(a);
        assert_eq!(c.open(), 1);
        assert!(c.try_take(2).is_some());
    }

    #[test]
    fn the_refusal_is_a_complete_response() {
        let text = std::str::from_utf8(OVER_CAPACITY).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(head.contains("\r\nretry-after: 1"));
        assert!(head.contains("\r\nconnection: close"));
        assert!(head.contains(&format!("\r\ncontent-length: {}", body.len())));
    }

    #[tokio::test]
    async fn idle_is_measured_from_the_last_request() {
        let t = Duration::from_millis(200);
        let a = Activity::new();
        let t0 = Instant::now();
        // nothing ever: idle once the timeout has passed since the start
        a.idle_for(t).await;
        assert!(t0.elapsed() >= t);
        // a request in flight is never idle
        let busy = a.begin();
        let watch = tokio::time::timeout(Duration::from_millis(700), a.idle_for(t));
        assert!(watch.await.is_err());
        drop(busy);
        // ... and the timeout counts from its end
        let ended = Instant::now();
        a.idle_for(t).await;
        assert!(ended.elapsed() >= t - Duration::from_millis(5));
        assert!(
            ended.elapsed() < Duration::from_millis(600),
            "{:?}",
            ended.elapsed()
        );
    }
}
