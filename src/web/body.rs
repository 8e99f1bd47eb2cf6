//! The one body type every response (and every upstream request) uses, and the one way the
//! gateway reads a request body itself ([`read_limited`]: size cap and read deadline).

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = BoxBody<Bytes, BoxError>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// A request's body as every handler takes it: from the client's connection, or built in
/// process (tests drive the whole request path without a socket this way). One concrete type,
/// so handlers stay non-generic and the wire case costs one match per frame.
#[derive(Debug)]
pub enum RequestBody {
    Wire(hyper::body::Incoming),
    Local(Full<Bytes>),
}

impl RequestBody {
    /// An in-process body holding `bytes`.
    pub fn local(bytes: impl Into<Bytes>) -> Self {
        RequestBody::Local(Full::new(bytes.into()))
    }
}

impl From<hyper::body::Incoming> for RequestBody {
    fn from(body: hyper::body::Incoming) -> Self {
        RequestBody::Wire(body)
    }
}

impl hyper::body::Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, BoxError>>> {
        use std::pin::Pin;
        // Both variants are `Unpin`, so each can be polled through a plain `&mut`.
        match self.get_mut() {
            RequestBody::Wire(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            RequestBody::Local(b) => Pin::new(b).poll_frame(cx).map_err(|never| match never {}),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Wire(b) => b.is_end_stream(),
            RequestBody::Local(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match self {
            RequestBody::Wire(b) => b.size_hint(),
            RequestBody::Local(b) => b.size_hint(),
        }
    }
}

/// The deadline for reading a whole request body the gateway reads itself
/// (`http.limits.bodyReadTimeoutSeconds`), put in each request's extensions by the listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyReadTimeout(pub std::time::Duration);

/// Used when a request carries no [`BodyReadTimeout`] (never from the listener): the
/// configuration's default, so a missing setting still bounds the read.
const DEFAULT_BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Why a request body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadError {
    /// Over the endpoint's size cap (by `Content-Length` or by what arrived): 413.
    TooLarge,
    /// Not complete within the body read timeout (a slow or stalled client): 408.
    TimedOut,
    /// The connection broke or the framing was invalid before the end: 400.
    Incomplete,
}

impl ReadError {
    pub fn status(self) -> http::StatusCode {
        match self {
            ReadError::TooLarge => http::StatusCode::PAYLOAD_TOO_LARGE,
            ReadError::TimedOut => http::StatusCode::REQUEST_TIMEOUT,
            ReadError::Incomplete => http::StatusCode::BAD_REQUEST,
        }
    }

    /// A sentence for the client (no detail of the gateway's internals).
    pub fn message(self) -> &'static str {
        match self {
            ReadError::TooLarge => "the request body is too large",
            ReadError::TimedOut => "the request body did not arrive in time",
            ReadError::Incomplete => "the request body was cut off",
        }
    }
}

/// Reads a request's whole body, at most `max` bytes, within the request's
/// [`BodyReadTimeout`]. The one way the gateway reads a body itself (sign-in form, the
/// provider's endpoints): a client that drips its body cannot hold the request longer than
/// the deadline, one that announces or sends more than `max` is refused without reading on.
pub async fn read_limited<B>(
    req: http::Request<B>,
    max: usize,
) -> Result<(http::request::Parts, Bytes), ReadError>
where
    B: hyper::body::Body,
    B::Error: Into<BoxError>,
{
    let (parts, body) = req.into_parts();
    let announced = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > max as u64) {
        return Err(ReadError::TooLarge);
    }
    let deadline = parts
        .extensions
        .get::<BodyReadTimeout>()
        .map_or(DEFAULT_BODY_READ_TIMEOUT, |t| t.0);
    match tokio::time::timeout(deadline, http_body_util::Limited::new(body, max).collect()).await {
        Err(_) => {
            tracing::info!(
                timeout_s = deadline.as_secs(),
                "request body not received in time"
            );
            Err(ReadError::TimedOut)
        }
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(ReadError::TooLarge),
        Ok(Err(_)) => Err(ReadError::Incomplete),
        Ok(Ok(collected)) => Ok((parts, collected.to_bytes())),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use bytes::Bytes;
    use http_body_util::StreamBody;
    use hyper::body::Frame;

    use super::*;

    type Chunk = Result<Frame<Bytes>, std::io::Error>;

    /// A body that sends `chunks`, each after `gap`.
    fn dripping(
        chunks: Vec<&'static [u8]>,
        gap: Duration,
    ) -> StreamBody<impl futures_util::Stream<Item = Chunk>> {
        let s = futures_util::stream::unfold(chunks.into_iter(), move |mut it| async move {
            let c = it.next()?;
            tokio::time::sleep(gap).await;
            Some((Ok(Frame::data(Bytes::from_static(c))), it))
        });
        StreamBody::new(s)
    }

    fn request<B>(body: B, timeout: Option<Duration>, length: Option<&str>) -> http::Request<B> {
        let mut req = http::Request::new(body);
        if let Some(t) = timeout {
            req.extensions_mut().insert(BodyReadTimeout(t));
        }
        if let Some(l) = length {
            req.headers_mut()
                .insert(http::header::CONTENT_LENGTH, l.parse().unwrap());
        }
        req
    }

    #[tokio::test]
    async fn a_body_within_the_deadline_is_read() {
        let body = dripping(vec![b"a=1", b"&b=2"], Duration::from_millis(20));
        let (_, bytes) = read_limited(request(body, Some(Duration::from_secs(5)), None), 64)
            .await
            .unwrap();
        assert_eq!(&bytes[..], b"a=1&b=2");
        // without a setting (never from the listener) the default deadline applies
        let body = dripping(vec![b"x=y"], Duration::from_millis(1));
        let (_, bytes) = read_limited(request(body, None, None), 64).await.unwrap();
        assert_eq!(&bytes[..], b"x=y");
    }

    #[tokio::test]
    async fn a_dripping_body_times_out_at_the_deadline() {
        let body = dripping(vec![b"a"; 100], Duration::from_millis(50));
        let started = Instant::now();
        let err = read_limited(request(body, Some(Duration::from_millis(300)), None), 1024)
            .await
            .unwrap_err();
        let took = started.elapsed();
        assert_eq!(err, ReadError::TimedOut);
        assert_eq!(err.status(), http::StatusCode::REQUEST_TIMEOUT);
        assert!(took >= Duration::from_millis(300), "{took:?}");
        assert!(took < Duration::from_millis(1500), "{took:?}");
    }

    #[tokio::test]
    async fn too_large_bodies_are_refused() {
        // announced: refused before anything is read (the body would never end)
        let body = dripping(vec![b"never"], Duration::from_secs(3600));
        let err = read_limited(request(body, None, Some("65")), 64)
            .await
            .unwrap_err();
        assert_eq!(err, ReadError::TooLarge);
        assert_eq!(err.status(), http::StatusCode::PAYLOAD_TOO_LARGE);
        // sent (no length announced)
        let body = dripping(vec![b"0123456789"; 7], Duration::from_millis(1));
        let err = read_limited(request(body, None, None), 64)
            .await
            .unwrap_err();
        assert_eq!(err, ReadError::TooLarge);
        // exactly the cap is fine
        let body = dripping(vec![b"0123456789"; 6], Duration::from_millis(1));
        let (_, bytes) = read_limited(request(body, None, Some("60")), 60)
            .await
            .unwrap();
        assert_eq!(bytes.len(), 60);
    }

    #[tokio::test]
    async fn a_broken_body_is_incomplete() {
        let s = futures_util::stream::iter(vec![
            Ok(Frame::data(Bytes::from_static(b"a="))),
            Err(std::io::Error::other("reset")),
        ]);
        let err = read_limited(request(StreamBody::new(s), None, None), 64)
            .await
            .unwrap_err();
        assert_eq!(err, ReadError::Incomplete);
        assert_eq!(err.status(), http::StatusCode::BAD_REQUEST);
    }
}
