//! Guest egress: what a guest may reach through `wasi:http/outgoing-handler` (WASI 0.2)
//! or `wasi:http/client` (WASI 0.3).
//!
//! Nothing, unless `--allow-outbound` says so: every request is refused with
//! `HttpRequestDenied` and logged. An allowed origin is resolved once, every address it
//! resolves to is checked, and the connection goes to a checked address; private, local
//! and link-local addresses (the cloud metadata server, whose tokens an SSRF would leak)
//! need a pattern that names the host exactly. Connections are pooled per origin and
//! shared by all requests; every request runs under connect, first-byte, overall and
//! body-size limits. Guests cannot set hop-by-hop headers, `Host`, or the headers the
//! metadata server trusts. Requests to the origins named with `--outbound-id-token` get
//! the host's Google ID token for that origin (see [`id_token`]).

mod address;
mod allowlist;
mod connector;
mod id_token;
mod resolve;
mod upstream_body;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use bytesize::ByteSize;
use http::{HeaderName, Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty};
use hyper::body::Body;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{Instrument, Span};
use wasmtime_wasi_http::{Error, ForbiddenHeaderFilter, RequestOptions, WasiBody, WasiHttpHooks};

pub use self::address::non_public;
pub use self::allowlist::{Host, OutboundPattern};
pub use self::id_token::{DEFAULT_METADATA_HOST, IdTokenAudience, METADATA_HOST_ENV};
pub use self::resolve::{ResolveOverride, Resolver};

use self::allowlist::{Allowlist, Origin};
use self::connector::{Attempt, ConnectError, Connector, Progress};
use self::id_token::IdTokens;
use self::upstream_body::UpstreamBody;
use super::occupancy::Occupancy;
use crate::http::tls::TrustedRoots;

/// How long an idle pooled connection is kept for the next request to the same origin.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Idle connections kept per origin.
const POOL_MAX_IDLE_PER_ORIGIN: usize = 32;

/// Request headers a guest may not set (and response headers it does not see): those
/// that belong to one connection rather than to the message (RFC 9110 7.6.1, plus
/// `Proxy-*`), `Host` (always the request's authority), and the headers the cloud
/// metadata servers require as proof that a request is not a forwarded one.
const FORBIDDEN_HEADERS: [HeaderName; 11] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::HOST,
    HeaderName::from_static("http2-settings"),
    HeaderName::from_static("metadata-flavor"),
    HeaderName::from_static("x-google-metadata-request"),
];

/// Whether a guest may not set header `name` (see [`FORBIDDEN_HEADERS`]; every
/// `Proxy-*` header too).
pub fn is_forbidden_header(name: &HeaderName) -> bool {
    FORBIDDEN_HEADERS.contains(name) || name.as_str().starts_with("proxy-")
}

/// The outbound rules, as configured.
#[derive(Debug, Clone)]
pub struct OutboundConfig {
    /// Origins a guest may call; empty denies every request.
    pub allow: Vec<OutboundPattern>,
    /// Fixed name resolutions.
    pub resolve: Vec<ResolveOverride>,
    /// Timeouts and sizes.
    pub limits: OutboundLimits,
    /// The origins whose requests carry the host's ID token.
    pub id_tokens: Vec<IdTokenAudience>,
    /// Where the metadata server that mints them is (`HOST[:PORT]`).
    pub metadata_host: String,
    /// Certificates (PEM) trusted besides the built-in roots.
    pub ca_file: Option<PathBuf>,
}

/// What a guest's outbound requests may take.
#[derive(Debug, Clone)]
pub struct OutboundLimits {
    /// Longest to resolve, connect and finish the TLS handshake of a new connection.
    pub connect_timeout: Duration,
    /// Longest to wait for the response head once the request is on its way.
    pub first_byte_timeout: Duration,
    /// Longest one outbound request may take, response body included.
    pub total_timeout: Duration,
    /// Largest response body a guest may read, in bytes.
    pub max_response_body: u64,
}

impl fmt::Display for OutboundConfig {
    /// The one startup log line that says what guests may reach.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.allow.is_empty() {
            return f.write_str("denied (no --allow-outbound)");
        }
        let join = |items: Vec<String>| items.join(", ");
        let limits = &self.limits;
        write!(
            f,
            "allowed to {}; connect timeout {:?}, first byte {:?}, total {:?}, response body up to {}",
            join(self.allow.iter().map(ToString::to_string).collect()),
            limits.connect_timeout,
            limits.first_byte_timeout,
            limits.total_timeout,
            ByteSize(limits.max_response_body).display().iec(),
        )?;
        if !self.resolve.is_empty() {
            write!(
                f,
                "; resolving {}",
                join(self.resolve.iter().map(ToString::to_string).collect())
            )?;
        }
        if !self.id_tokens.is_empty() {
            write!(
                f,
                "; ID tokens from {} for {}",
                self.metadata_host,
                join(self.id_tokens.iter().map(ToString::to_string).collect())
            )?;
        }
        Ok(())
    }
}

/// The host's outbound side: the allowlist and one pooled client for all requests.
pub struct Outbound {
    allowlist: Arc<Allowlist>,
    limits: OutboundLimits,
    client: Client<Connector, WasiBody>,
    id_tokens: IdTokens,
}

impl Outbound {
    /// Builds the pooled client for `config`, reading its CA file if it has one.
    pub fn new(config: &OutboundConfig) -> anyhow::Result<Self> {
        let allowlist = Arc::new(Allowlist::new(config.allow.clone()));
        let roots = TrustedRoots::with_file(config.ca_file.as_deref())
            .context("cannot set up TLS for outbound requests (--ca-file)")?;
        let connector = Connector::new(
            allowlist.clone(),
            Resolver::new(&config.resolve),
            &roots,
            config.limits.connect_timeout,
        );
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(POOL_MAX_IDLE_PER_ORIGIN)
            .build(connector);
        Ok(Self {
            allowlist,
            limits: config.limits.clone(),
            client,
            id_tokens: IdTokens::new(&config.id_tokens, &config.metadata_host),
        })
    }

    /// The hooks of one instance, whose requests `occupancy` tracks: an outbound call is
    /// logged with its request when the instance serves one, and ends by the deadline
    /// of the requests it serves.
    pub fn hooks(self: &Arc<Self>, occupancy: Arc<Occupancy>) -> OutboundHooks {
        OutboundHooks {
            outbound: self.clone(),
            occupancy,
        }
    }

    async fn send(
        &self,
        request_id: Option<u64>,
        request_deadline: Instant,
        request: Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> Result<Response<WasiBody>, Error> {
        let method = request.method().clone();
        let origin = self.allowed_origin(request_id, &request)?;
        let request = self.with_id_token(request_id, &origin, request).await?;
        let options = options.unwrap_or_default();
        let start = Instant::now();
        let deadline = request_deadline.min(start + self.limits.total_timeout);
        let response = match tokio::time::timeout_at(
            deadline,
            self.exchange(request, &options, start),
        )
        .await
        {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => {
                let error = client_error(&error);
                match &error {
                    ClientError::Connect(refused @ ConnectError::NonPublic { .. }) => {
                        tracing::warn!(
                            request_id,
                            "outbound request refused: {method} {origin}: {refused}"
                        );
                    }
                    other => tracing::info!(
                        request_id,
                        "outbound request failed: {method} {origin}: {other}"
                    ),
                }
                return Err(error.to_wasi());
            }
            Err(_elapsed) => {
                tracing::info!(request_id, "outbound request timed out: {method} {origin}");
                return Err(Error::HttpResponseTimeout);
            }
        };
        // The client knows the length from `Content-Length`: refuse at once what would
        // only fail after the guest had read the limit's worth.
        let limit = self.limits.max_response_body;
        let declared = response.body().size_hint().exact();
        if declared.is_some_and(|length| length > limit) {
            tracing::info!(
                request_id,
                "outbound response refused: {method} {origin}: body of {} bytes over the limit",
                declared.unwrap_or_default()
            );
            return Err(Error::HttpResponseBodySize(Some(limit)));
        }
        Ok(response.map(|body| {
            UpstreamBody::new(body, limit, deadline, options.between_bytes_timeout).boxed_unsync()
        }))
    }

    /// `GET uri` on the host's own behalf (to fetch signing keys), under the same rules,
    /// connector and limits as a guest's request: its status and whole body.
    pub async fn get(&self, uri: &Uri) -> anyhow::Result<(StatusCode, Bytes)> {
        let body: WasiBody = Empty::new().map_err(|never| match never {}).boxed_unsync();
        let request = Request::get(uri.clone()).body(body)?;
        let deadline = Instant::now() + self.limits.total_timeout;
        let response = self
            .send(None, deadline, request, None)
            .await
            .map_err(|error| anyhow::anyhow!("GET {uri} failed: {error:?}"))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|error| anyhow::anyhow!("reading the body of {uri} failed: {error:?}"))?
            .to_bytes();
        Ok((status, body))
    }

    /// The origin `request` goes to, if the allowlist lets guests call it.
    fn allowed_origin(
        &self,
        request_id: Option<u64>,
        request: &Request<WasiBody>,
    ) -> Result<Origin, Error> {
        let Some(origin) = Origin::from_uri(request.uri()) else {
            tracing::warn!(
                request_id,
                "outbound request refused: invalid URI `{}`",
                request.uri()
            );
            return Err(Error::HttpRequestUriInvalid);
        };
        if self.allowlist.reach(&origin).is_none() {
            tracing::warn!(
                request_id,
                "outbound request refused: {} {origin}: no --allow-outbound pattern matches",
                request.method()
            );
            return Err(Error::HttpRequestDenied);
        }
        Ok(origin)
    }

    /// `request`, with the host's ID token for `origin` when the operator named it and
    /// the guest set no `Authorization` of its own.
    async fn with_id_token(
        &self,
        request_id: Option<u64>,
        origin: &Origin,
        mut request: Request<WasiBody>,
    ) -> Result<Request<WasiBody>, Error> {
        if request.headers().contains_key(header::AUTHORIZATION) {
            return Ok(request);
        }
        match self.id_tokens.authorization(origin).await {
            None => {}
            Some(Ok(value)) => {
                request.headers_mut().insert(header::AUTHORIZATION, value);
            }
            Some(Err(error)) => {
                tracing::warn!(
                    request_id,
                    "outbound request failed: {} {origin}: {error:#}",
                    request.method()
                );
                return Err(Error::InternalError(Some(format!("{error:#}"))));
            }
        }
        Ok(request)
    }

    /// Sends `request` through the pooled client and waits for the response head, under
    /// the connect and first-byte timeouts (the guest's, where shorter than the host's).
    async fn exchange(
        &self,
        request: Request<WasiBody>,
        options: &RequestOptions,
        start: Instant,
    ) -> Result<Response<hyper::body::Incoming>, FirstByteError> {
        let limits = &self.limits;
        let shorter = |host: Duration, guest: Option<Duration>| guest.map_or(host, |g| g.min(host));
        let first_byte_timeout = shorter(limits.first_byte_timeout, options.first_byte_timeout);
        let (progress, progress_rx) = watch::channel(Progress::Waiting);
        let attempt = Attempt {
            connect_timeout: shorter(limits.connect_timeout, options.connect_timeout),
            progress: Arc::new(progress),
        };
        let response = attempt.scope(self.client.request(request));
        first_byte(response, progress_rx, start, first_byte_timeout).await
    }
}

/// Waits for `response` with the first-byte timeout running from `start`, or, when a
/// new connection is made for the request, from the moment it is ready (the connect
/// timeout covers the time before).
async fn first_byte<F, T>(
    response: F,
    mut progress: watch::Receiver<Progress>,
    start: Instant,
    timeout: Duration,
) -> Result<T, FirstByteError>
where
    F: Future<Output = Result<T, hyper_util::client::legacy::Error>>,
{
    tokio::pin!(response);
    loop {
        let deadline = match *progress.borrow_and_update() {
            Progress::Waiting => Some(start + timeout),
            Progress::Connecting => None,
            Progress::Connected(at) => Some(at + timeout),
        };
        tokio::select! {
            result = &mut response => return result.map_err(FirstByteError::Client),
            // The sender lives in the request's `Attempt`, as long as `response`.
            _ = progress.changed() => continue,
            _ = tokio::time::sleep_until(deadline.unwrap_or(start)), if deadline.is_some() => {
                return Err(FirstByteError::Timeout);
            }
        }
    }
}

/// Why the pooled client returned no response.
enum FirstByteError {
    Client(hyper_util::client::legacy::Error),
    Timeout,
}

/// A failed exchange, sorted by what the guest should be told.
enum ClientError<'a> {
    Connect(&'a ConnectError),
    FirstByteTimeout,
    Http(&'a hyper::Error),
    Other(&'a hyper_util::client::legacy::Error),
}

fn client_error(error: &FirstByteError) -> ClientError<'_> {
    let error = match error {
        FirstByteError::Timeout => return ClientError::FirstByteTimeout,
        FirstByteError::Client(error) => error,
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(connect) = cause.downcast_ref::<ConnectError>() {
            return ClientError::Connect(connect);
        }
        if let Some(http) = cause.downcast_ref::<hyper::Error>() {
            return ClientError::Http(http);
        }
        source = cause.source();
    }
    ClientError::Other(error)
}

impl ClientError<'_> {
    fn to_wasi(&self) -> Error {
        match self {
            ClientError::Connect(error) => error.to_wasi(),
            ClientError::FirstByteTimeout => Error::ConnectionReadTimeout,
            ClientError::Http(error) if error.is_incomplete_message() || error.is_closed() => {
                Error::ConnectionTerminated
            }
            ClientError::Http(error) if error.is_timeout() => Error::HttpResponseTimeout,
            ClientError::Http(_) => Error::HttpProtocolError,
            ClientError::Other(_) => Error::InternalError(Some(self.to_string())),
        }
    }
}

impl fmt::Display for ClientError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Connect(error) => write!(f, "{error}"),
            ClientError::FirstByteTimeout => {
                f.write_str("no response within the first-byte timeout")
            }
            ClientError::Http(error) => write!(f, "{error}"),
            ClientError::Other(error) => write!(f, "{error}"),
        }
    }
}

/// The wasi:http hooks of one instance: its outbound requests go through the host's
/// [`Outbound`].
pub struct OutboundHooks {
    outbound: Arc<Outbound>,
    occupancy: Arc<Occupancy>,
}

impl WasiHttpHooks for OutboundHooks {
    fn is_forbidden_header(&mut self, name: &HeaderName) -> bool {
        is_forbidden_header(name)
    }

    fn forbidden_header_filter(&mut self) -> ForbiddenHeaderFilter {
        Arc::new(is_forbidden_header)
    }

    fn send_request(
        &mut self,
        request: Request<WasiBody>,
        options: Option<RequestOptions>,
        _request_done: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        Response<WasiBody>,
                        Box<dyn Future<Output = Result<(), Error>> + Send>,
                    ),
                    Error,
                >,
            > + Send,
    > {
        let outbound = self.outbound.clone();
        let visitor = self.occupancy.sole();
        let request_id = visitor.as_ref().map(|visitor| visitor.request_id);
        // In the request's span, so its log lines join the request's trace.
        let span = visitor.map_or_else(Span::none, |visitor| visitor.span);
        let deadline = self
            .occupancy
            .deadline()
            .unwrap_or_else(|| Instant::now() + outbound.limits.total_timeout);
        let exchange = async move {
            let response = outbound
                .send(request_id, deadline, request, options)
                .await?;
            // The pooled client drives the connection in a task of its own.
            let connection_done: Box<dyn Future<Output = Result<(), Error>> + Send> =
                Box::new(async { Ok(()) });
            Ok((response, connection_done))
        };
        Box::new(exchange.instrument(span))
    }
}
