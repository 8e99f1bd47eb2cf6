//! Idle HTTP/1.1 upstream connections, and the response body that drives its connection.
//!
//! A pooled connection has no task of its own: whoever holds it polls it — the request while
//! it waits for the response head, then the response body while the client reads it. So a
//! byte from the upstream wakes the very task that serves the client, on its own worker,
//! instead of a connection task that hands the response over through a channel (a second
//! task and a cross-thread wake-up per request). Once the response has been read to its end
//! the connection goes back to the pool; a connection is lent out again only when it is
//! ready (it answered, nothing arrived since, the upstream has not closed it).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper::client::conn::TrySendError;
use hyper_util::rt::TokioIo;

use super::connect::Stream;
use crate::web::body::{Body, BoxError};

type Connection = http1::Connection<TokioIo<Stream>, Body>;

/// One HTTP/1.1 connection: the sending half and the connection itself, driven by its holder.
pub struct Http1 {
    send: http1::SendRequest<Body>,
    /// `None` once the connection has finished (closed by either side, or failed).
    conn: Option<Connection>,
}

impl Http1 {
    pub async fn handshake(io: Stream) -> hyper::Result<Self> {
        let (send, conn) = http1::Builder::new()
            .max_buf_size(64 * 1024)
            .handshake(TokioIo::new(io))
            .await?;
        Ok(Self {
            send,
            conn: Some(conn),
        })
    }

    /// Lets the connection do what it can now: write the request, read the response.
    fn drive(&mut self, cx: &mut Context<'_>) {
        if let Some(conn) = self.conn.as_mut() {
            if Pin::new(conn).poll(cx).is_ready() {
                self.conn = None;
            }
        }
    }

    /// Whether the connection can take a request now (driven once first, so a close by the
    /// upstream is seen).
    fn poll_reusable(&mut self, cx: &mut Context<'_>) -> bool {
        self.drive(cx);
        self.conn.is_some() && matches!(self.send.poll_ready(cx), Poll::Ready(Ok(())))
    }

    /// Sends `req` and drives the connection until the response head arrives. An error that
    /// carries the request back means none of it was written.
    pub async fn exchange(
        &mut self,
        req: http::Request<Body>,
    ) -> Result<http::Response<Incoming>, TrySendError<http::Request<Body>>> {
        let mut response = std::pin::pin!(self.send.try_send_request(req));
        std::future::poll_fn(|cx| {
            self.drive(cx);
            response.as_mut().poll(cx)
        })
        .await
    }
}

struct Idle {
    conn: Http1,
    since: Instant,
}

/// The idle connections to one upstream, most recently used last.
pub struct Pool {
    idle: Mutex<Vec<Idle>>,
    max_idle: usize,
    idle_timeout: Duration,
    /// Whether a task closes connections idle for longer than `idle_timeout`.
    swept: std::sync::atomic::AtomicBool,
}

impl Pool {
    pub fn new(max_idle: usize, idle_timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            idle: Mutex::new(Vec::new()),
            max_idle,
            idle_timeout,
            swept: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The most recently used connection that is ready; connections that are not (closed by
    /// the upstream, idle too long) are closed on the way.
    pub async fn checkout(&self) -> Option<Http1> {
        std::future::poll_fn(|cx| Poll::Ready(self.take_ready(cx))).await
    }

    fn take_ready(&self, cx: &mut Context<'_>) -> Option<Http1> {
        loop {
            let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()?;
            if idle.since.elapsed() >= self.idle_timeout {
                // The rest are older still.
                self.evict_expired();
                return None;
            }
            let mut conn = idle.conn;
            if conn.poll_reusable(cx) {
                return Some(conn);
            }
        }
    }

    /// Keeps a connection that finished its exchange for the next request.
    fn checkin(self: &Arc<Self>, conn: Http1) {
        let refused = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < self.max_idle {
                idle.push(Idle {
                    conn,
                    since: Instant::now(),
                });
                None
            } else {
                Some(conn)
            }
        };
        // Closed outside the lock.
        drop(refused);
        if !self.swept.swap(true, std::sync::atomic::Ordering::Relaxed) {
            self.start_sweeping();
        }
    }

    /// Closes connections idle for longer than the idle timeout, every half of it, for as
    /// long as the pool exists (a reload drops the pool and with it every idle connection).
    fn start_sweeping(self: &Arc<Self>) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            self.swept
                .store(false, std::sync::atomic::Ordering::Relaxed);
            return;
        };
        let pool: Weak<Self> = Arc::downgrade(self);
        let every = (self.idle_timeout / 2).max(Duration::from_millis(10));
        handle.spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match pool.upgrade() {
                    Some(p) => p.evict_expired(),
                    None => return,
                }
            }
        });
    }

    fn evict_expired(&self) {
        let expired: Vec<Idle> = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            let fresh = idle.partition_point(|i| i.since.elapsed() >= self.idle_timeout);
            idle.drain(..fresh).collect()
        };
        drop(expired);
    }

    /// How many connections are idle (for tests).
    #[cfg(test)]
    pub fn idle_count(&self) -> usize {
        self.idle.lock().unwrap().len()
    }
}

/// A response body from a pooled connection: reading it drives the connection, and its end
/// returns the connection to the pool. Dropped before its end, it closes the connection (the
/// rest of the response would be in the way of the next one).
pub struct Leased {
    body: Incoming,
    conn: Option<Http1>,
    pool: Arc<Pool>,
}

impl Leased {
    pub fn new(body: Incoming, conn: Http1, pool: Arc<Pool>) -> Self {
        Self {
            body,
            conn: Some(conn),
            pool,
        }
    }

    /// The response is complete: the connection goes back if it can take another request.
    fn release(&mut self, cx: &mut Context<'_>) {
        if let Some(mut conn) = self.conn.take() {
            if conn.poll_reusable(cx) {
                self.pool.checkin(conn);
            }
        }
    }
}

impl HttpBody for Leased {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(conn) = this.conn.as_mut() {
            conn.drive(cx);
        }
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        match &frame {
            Poll::Ready(Some(Ok(_))) if this.body.is_end_stream() => this.release(cx),
            Poll::Ready(None) => this.release(cx),
            Poll::Ready(Some(Err(_))) => this.conn = None,
            _ => {}
        }
        frame.map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Leased {
    fn drop(&mut self) {
        // A server does not read a body it knows to be empty (or complete) to its end.
        if self.conn.is_some() && self.body.is_end_stream() {
            self.release(&mut Context::from_waker(Waker::noop()));
        }
    }
}
