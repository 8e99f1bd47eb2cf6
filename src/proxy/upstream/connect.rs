//! Opening a connection to an upstream: name resolution, a TCP connect bounded by the app's
//! connect timeout, and for https a rustls handshake whose ALPN says which HTTP version the
//! connection speaks.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// A connected byte stream to the upstream, plain or TLS.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// The HTTP version a new connection speaks: HTTP/2 only when TLS negotiated `h2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
}

struct Tls {
    /// Offers `h2` and `http/1.1`, for requests that may share a multiplexed connection.
    any: TlsConnector,
    /// Offers `http/1.1` only: an upgrade (WebSocket) needs an HTTP/1.1 connection.
    http1_only: TlsConnector,
    server_name: ServerName<'static>,
}

pub struct Connector {
    host: String,
    port: u16,
    tls: Option<Tls>,
    connect_timeout: Duration,
}

impl Connector {
    pub fn new(
        authority: &http::uri::Authority,
        https: bool,
        tls: rustls::ClientConfig,
        connect_timeout: Duration,
    ) -> Result<Self, String> {
        // The brackets of an IPv6 literal belong to the URL, not to the address.
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tls = if https {
            let server_name = ServerName::try_from(host.clone())
                .map_err(|e| format!("`{host}` cannot be a TLS server name: {e}"))?;
            let with_alpn = |protocols: &[&[u8]]| {
                let mut cfg = tls.clone();
                cfg.alpn_protocols = protocols.iter().map(|p| p.to_vec()).collect();
                TlsConnector::from(Arc::new(cfg))
            };
            Some(Tls {
                any: with_alpn(&[b"h2", b"http/1.1"]),
                http1_only: with_alpn(&[b"http/1.1"]),
                server_name,
            })
        } else {
            None
        };
        Ok(Self {
            host,
            port,
            tls,
            connect_timeout,
        })
    }

    /// Opens a connection; `http1_only` keeps TLS from negotiating HTTP/2.
    pub async fn connect(&self, http1_only: bool) -> io::Result<(Stream, Protocol)> {
        let tcp = tokio::time::timeout(self.connect_timeout, self.tcp())
            .await
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("connect timed out after {:?}", self.connect_timeout),
                )
            })??;
        let Some(tls) = &self.tls else {
            return Ok((Stream::Plain(tcp), Protocol::Http1));
        };
        let connector = if http1_only {
            &tls.http1_only
        } else {
            &tls.any
        };
        let stream = connector.connect(tls.server_name.clone(), tcp).await?;
        let protocol = match stream.get_ref().1.alpn_protocol() {
            Some(b"h2") => Protocol::Http2,
            _ => Protocol::Http1,
        };
        Ok((Stream::Tls(Box::new(stream)), protocol))
    }

    /// The first address of the host that accepts a connection.
    async fn tcp(&self) -> io::Result<TcpStream> {
        let mut last = None;
        for addr in tokio::net::lookup_host((self.host.as_str(), self.port)).await? {
            match TcpStream::connect(addr).await {
                Ok(s) => {
                    s.set_nodelay(true)?;
                    return Ok(s);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("`{}` resolves to no address", self.host),
            )
        }))
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
