//! The only way a guest's request reaches the network: resolve the host once, check
//! every address it resolved to, connect to a checked address (never resolving again),
//! and speak TLS for `https`. The pooled client calls this for each new connection, so
//! a reused connection is one that passed these checks.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use crate::http::tls::TrustedRoots;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::{self, pki_types::ServerName};
use wasmtime_wasi_http::Error;

use super::address::{NonPublic, non_public};
use super::allowlist::{Allowlist, Host, Origin, Reach, Scheme};
use super::resolve::Resolver;

tokio::task_local! {
    /// The outbound request on whose behalf the client is connecting, if any.
    static ATTEMPT: Attempt;
}

/// What one outbound request lends the connector while the pooled client serves it.
#[derive(Clone)]
pub struct Attempt {
    /// The connect timeout for this request (DNS, TCP and TLS together).
    pub connect_timeout: Duration,
    /// Where the connector reports a new connection for this request.
    pub progress: Arc<watch::Sender<Progress>>,
}

/// Where a request stands in getting a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// No connection is being made for it (yet): it may get a pooled one.
    Waiting,
    /// A new connection is being made for it.
    Connecting,
    /// A new connection for it was ready at this instant.
    Connected(Instant),
}

impl Attempt {
    /// Runs `future` (a request on the pooled client) with this attempt in scope, so a
    /// connection the client makes for it uses its timeout and reports its progress.
    pub fn scope<F: Future>(self, future: F) -> impl Future<Output = F::Output> {
        ATTEMPT.scope(self, future)
    }
}

/// Why no connection was made.
#[derive(Debug)]
pub enum ConnectError {
    /// No allow pattern matches the origin.
    Denied,
    /// The resolver failed.
    Resolve(io::Error),
    /// The resolver did not answer within the connect timeout.
    ResolveTimeout,
    /// The name resolved to no address.
    NoAddress,
    /// The host resolved to an address that only an exact pattern may reach.
    NonPublic {
        /// The host as the guest wrote it.
        host: Host,
        /// The address it resolved to.
        address: IpAddr,
        /// What kind of address that is.
        class: NonPublic,
    },
    /// No TCP connection or TLS session within the connect timeout.
    Timeout,
    /// Every address refused or failed; the last error.
    Connect(io::Error),
    /// The TLS handshake failed.
    Tls(io::Error),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Denied => f.write_str("no allow pattern matches"),
            ConnectError::Resolve(error) => write!(f, "cannot resolve the host: {error}"),
            ConnectError::ResolveTimeout => f.write_str("resolving the host timed out"),
            ConnectError::NoAddress => f.write_str("the host resolves to no address"),
            ConnectError::NonPublic {
                host,
                address,
                class,
            } => write!(
                f,
                "{host} resolves to {address}, a {class} address, which only a pattern naming \
                 the host exactly allows"
            ),
            ConnectError::Timeout => f.write_str("connect timeout"),
            ConnectError::Connect(error) => write!(f, "cannot connect: {error}"),
            ConnectError::Tls(error) => write!(f, "TLS handshake failed: {error}"),
        }
    }
}

impl std::error::Error for ConnectError {}

impl ConnectError {
    /// The wasi:http error the guest sees.
    pub fn to_wasi(&self) -> Error {
        match self {
            ConnectError::Denied => Error::HttpRequestDenied,
            ConnectError::Resolve(error) => Error::DnsError {
                rcode: Some(error.to_string()),
                info_code: None,
            },
            ConnectError::ResolveTimeout => Error::DnsTimeout,
            ConnectError::NoAddress => Error::DnsError {
                rcode: Some("no address".into()),
                info_code: None,
            },
            ConnectError::NonPublic { .. } => Error::DestinationIpProhibited,
            ConnectError::Timeout => Error::ConnectionTimeout,
            ConnectError::Connect(error) => match error.kind() {
                io::ErrorKind::HostUnreachable => Error::DestinationUnavailable,
                io::ErrorKind::NetworkUnreachable => Error::DestinationIpUnroutable,
                _ => Error::ConnectionRefused,
            },
            ConnectError::Tls(error) => tls_error(error),
        }
    }
}

fn tls_error(error: &io::Error) -> Error {
    match error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidCertificate(_)) => Error::TlsCertificateError,
        Some(rustls::Error::AlertReceived(alert)) => Error::TlsAlertReceived {
            alert_id: Some(u8::from(*alert)),
            alert_message: Some(format!("{alert:?}")),
        },
        _ => Error::TlsProtocolError,
    }
}

/// Makes checked connections for the pooled client. Cheap to clone.
#[derive(Clone)]
pub struct Connector {
    inner: Arc<ConnectorInner>,
}

struct ConnectorInner {
    allowlist: Arc<Allowlist>,
    resolver: Resolver,
    tls: TlsConnector,
    connect_timeout: Duration,
}

impl Connector {
    /// A connector enforcing `allowlist`, resolving with `resolver`, verifying servers
    /// against `roots`, and giving up after `connect_timeout` unless the request asks
    /// for less.
    pub fn new(
        allowlist: Arc<Allowlist>,
        resolver: Resolver,
        roots: &TrustedRoots,
        connect_timeout: Duration,
    ) -> Self {
        Self {
            inner: Arc::new(ConnectorInner {
                allowlist,
                resolver,
                tls: roots.connector(),
                connect_timeout,
            }),
        }
    }
}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<Stream>;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let inner = self.inner.clone();
        // Read now: the client may finish this connection in a task of its own.
        let attempt = ATTEMPT.try_with(Attempt::clone).ok();
        Box::pin(async move {
            let timeout = attempt
                .as_ref()
                .map_or(inner.connect_timeout, |attempt| attempt.connect_timeout);
            let report = |progress| {
                if let Some(attempt) = &attempt {
                    attempt.progress.send_replace(progress);
                }
            };
            report(Progress::Connecting);
            let connected = inner.connect(&uri, Instant::now() + timeout).await;
            report(match connected {
                Ok(_) => Progress::Connected(Instant::now()),
                Err(_) => Progress::Waiting,
            });
            connected.map(TokioIo::new)
        })
    }
}

impl ConnectorInner {
    async fn connect(&self, uri: &Uri, deadline: Instant) -> Result<Stream, ConnectError> {
        let origin = Origin::from_uri(uri).ok_or(ConnectError::Denied)?;
        let reach = self.allowlist.reach(&origin).ok_or(ConnectError::Denied)?;
        let addresses =
            tokio::time::timeout_at(deadline, self.resolver.resolve(&origin.host, origin.port))
                .await
                .map_err(|_| ConnectError::ResolveTimeout)?
                .map_err(ConnectError::Resolve)?;
        if addresses.is_empty() {
            return Err(ConnectError::NoAddress);
        }
        if reach == Reach::PublicOnly {
            // One bad address refuses the name: a name that mixes public and private
            // answers is either misconfigured or an attack.
            if let Some((address, class)) = addresses
                .iter()
                .find_map(|&address| Some((address, non_public(address)?)))
            {
                return Err(ConnectError::NonPublic {
                    host: origin.host,
                    address,
                    class,
                });
            }
        }
        let tcp = connect_any(&addresses, origin.port, deadline).await?;
        match origin.scheme {
            Scheme::Http => Ok(Stream::Plain(tcp)),
            Scheme::Https => {
                let server_name = match &origin.host {
                    Host::Name(name) => ServerName::try_from(name.clone())
                        .map_err(|error| ConnectError::Tls(io::Error::other(error)))?,
                    Host::Address(address) => ServerName::IpAddress((*address).into()),
                };
                let tls = tokio::time::timeout_at(deadline, self.tls.connect(server_name, tcp))
                    .await
                    .map_err(|_| ConnectError::Timeout)?
                    .map_err(ConnectError::Tls)?;
                Ok(Stream::Tls(Box::new(tls)))
            }
        }
    }
}

/// Connects to the first of `addresses` that accepts, in order.
async fn connect_any(
    addresses: &[IpAddr],
    port: u16,
    deadline: Instant,
) -> Result<TcpStream, ConnectError> {
    let mut last_error = None;
    for &address in addresses {
        let connecting = TcpStream::connect(SocketAddr::new(address, port));
        match tokio::time::timeout_at(deadline, connecting).await {
            Ok(Ok(stream)) => {
                // Requests are often written in one piece; Nagle would hold the last
                // segment back waiting for an ACK.
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Ok(Err(error)) => last_error = Some(error),
            Err(_) => return Err(ConnectError::Timeout),
        }
    }
    Err(ConnectError::Connect(last_error.unwrap_or_else(|| {
        io::Error::new(io::ErrorKind::NotFound, "no address")
    })))
}

/// A connection to an upstream: cleartext or TLS.
pub enum Stream {
    /// `http`.
    Plain(TcpStream),
    /// `https`.
    Tls(Box<TlsStream<TcpStream>>),
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Stream::Tls(stream) => Pin::new(stream).poll_read(cx, buf),
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
            Stream::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Stream::Tls(stream) => Pin::new(stream).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Stream::Tls(stream) => Pin::new(stream).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Stream::Tls(stream) => Pin::new(stream).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            Stream::Tls(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(stream) => stream.is_write_vectored(),
            Stream::Tls(stream) => stream.is_write_vectored(),
        }
    }
}
