//! One request as an operator sees it, from its arrival to the last byte of its response:
//! a `request` span that ties every log entry of the request (the guest's output
//! included) to the caller's trace, and, when the response is over, one access-log entry
//! and the request's metrics (count, duration and in-flight gauge).
//!
//! Access-log entries (with `--access-log`) have the target [`ACCESS_LOG_TARGET`] and
//! carry Cloud Logging's `httpRequest` fields; their level follows the status: `5xx`
//! ERROR, `4xx` WARN, the rest INFO.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, Version, header};
use hyper::body::{Body, Frame, SizeHint};
use tracing::{Level, Span};
use wasmtime_wasi_http::Error;

use crate::http::body::ResponseBody;
use crate::observe::metrics::Metrics;
use crate::observe::trace_context::TraceContext;

/// The log target of access-log entries.
pub const ACCESS_LOG_TARGET: &str = "wasi_host::access";

/// Starts an [`Exchange`] for each request; shared by all connections.
#[derive(Debug, Clone)]
pub struct Observer {
    /// Set once known: at startup, or later from the metadata server.
    trace_project: Arc<OnceLock<String>>,
    access_log: bool,
    metrics: Arc<Metrics>,
}

impl Observer {
    /// An observer naming traces in `trace_project` (`projects/P/traces/T`; until a
    /// project is set, the trace field holds the bare trace id), writing access-log
    /// entries if `access_log`, and counting in `metrics`.
    pub fn new(
        trace_project: Arc<OnceLock<String>>,
        access_log: bool,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            trace_project,
            access_log,
            metrics,
        }
    }

    /// Starts observing `request`, which came from `peer`.
    pub fn begin<B>(&self, request: &Request<B>, peer: SocketAddr) -> Exchange {
        let span = match TraceContext::from_headers(request.headers()) {
            // At ERROR level, the span is enabled whenever any event is, so every entry
            // of the request carries its trace whatever `RUST_LOG` filters out.
            Some(trace) => tracing::error_span!(
                "request",
                trace = %self.trace_name(&trace.trace_id),
                span_id = trace.span_id.as_deref(),
                trace_sampled = trace.sampled,
            ),
            None => tracing::error_span!("request"),
        };
        Exchange {
            span,
            started: Instant::now(),
            request: self.access_log.then(|| RequestSummary::of(request, peer)),
            in_flight: InFlight::new(self.metrics.clone()),
        }
    }

    fn trace_name(&self, trace_id: &str) -> String {
        match self.trace_project.get() {
            Some(project) => format!("projects/{project}/traces/{trace_id}"),
            None => trace_id.to_owned(),
        }
    }
}

/// One request being served.
#[derive(Debug)]
pub struct Exchange {
    span: Span,
    started: Instant,
    /// What the access-log entry says, when there is one.
    request: Option<RequestSummary>,
    in_flight: InFlight,
}

/// Counts a request in flight from its arrival until it is dropped, however it ends
/// (a client that goes away before the response drops it unanswered).
#[derive(Debug)]
struct InFlight(Arc<Metrics>);

impl InFlight {
    fn new(metrics: Arc<Metrics>) -> Self {
        metrics.request_arrived();
        Self(metrics)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_left();
    }
}

impl Exchange {
    /// The span to run the request's work in.
    pub fn span(&self) -> Span {
        self.span.clone()
    }

    /// Hands over `response`, whose body writes the access-log entry when it ends or is
    /// dropped.
    pub fn finish(self, response: Response<ResponseBody>) -> Response<ObservedBody> {
        let status = response.status();
        response.map(|inner| ObservedBody {
            inner,
            exchange: Some((self, status)),
            sent: 0,
        })
    }

    /// Counts the answered request and writes its access-log entry, if any.
    fn end(self, status: StatusCode, response_size: u64) {
        let elapsed = self.started.elapsed();
        self.in_flight.0.request_answered(status, elapsed);
        let Some(request) = &self.request else {
            return;
        };
        let latency = format!("{:.6}s", elapsed.as_secs_f64());
        macro_rules! access_entry {
            ($level:expr) => {
                tracing::event!(
                    target: ACCESS_LOG_TARGET,
                    parent: &self.span,
                    $level,
                    httpRequest.requestMethod = %request.method,
                    httpRequest.requestUrl = %request.url,
                    httpRequest.status = status.as_u16(),
                    httpRequest.responseSize = %response_size,
                    httpRequest.latency = %latency,
                    httpRequest.userAgent = request.user_agent.as_deref(),
                    httpRequest.remoteIp = %request.remote_ip,
                    httpRequest.protocol = request.protocol,
                    "{} {} {}",
                    request.method,
                    request.url,
                    status.as_u16(),
                )
            };
        }
        if status.is_server_error() {
            access_entry!(Level::ERROR)
        } else if status.is_client_error() {
            access_entry!(Level::WARN)
        } else {
            access_entry!(Level::INFO)
        }
    }
}

/// What the access log says about a request, taken before the request moves on.
#[derive(Debug)]
struct RequestSummary {
    method: http::Method,
    url: String,
    user_agent: Option<String>,
    remote_ip: IpAddr,
    protocol: &'static str,
}

impl RequestSummary {
    fn of<B>(request: &Request<B>, peer: SocketAddr) -> Self {
        let headers = request.headers();
        let user_agent = headers
            .get(header::USER_AGENT)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        Self {
            method: request.method().clone(),
            url: full_url(request),
            user_agent,
            remote_ip: peer.ip(),
            protocol: protocol_name(request.version()),
        }
    }
}

/// `SCHEME://HOST/PATH?QUERY`. Behind a proxy that terminates TLS (Cloud Run's front
/// end, a load balancer) the scheme is the one it reports in `X-Forwarded-Proto`.
fn full_url<B>(request: &Request<B>) -> String {
    let uri = request.uri();
    let path = uri.path_and_query().map_or("/", |path| path.as_str());
    let host = uri
        .authority()
        .map(|authority| authority.as_str())
        .or_else(|| header_str(request.headers(), header::HOST));
    let Some(host) = host else {
        return path.to_owned();
    };
    let scheme = match header_str(request.headers(), "x-forwarded-proto") {
        Some(forwarded @ ("http" | "https")) => forwarded,
        _ => uri.scheme_str().unwrap_or("http"),
    };
    format!("{scheme}://{host}{path}")
}

fn header_str(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    headers.get(name)?.to_str().ok()
}

fn protocol_name(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

/// A response body that counts what it sends and ends its exchange when it ends, fails,
/// or is dropped (the client went away, or the body was never read, as for `HEAD`).
pub struct ObservedBody {
    inner: ResponseBody,
    exchange: Option<(Exchange, StatusCode)>,
    sent: u64,
}

impl ObservedBody {
    /// A response outside any exchange (the probe path's): nothing is logged.
    pub fn unobserved_response(response: Response<ResponseBody>) -> Response<Self> {
        response.map(|inner| Self {
            inner,
            exchange: None,
            sent: 0,
        })
    }

    fn end(&mut self) {
        if let Some((exchange, status)) = self.exchange.take() {
            exchange.end(status, self.sent);
        }
    }
}

impl Drop for ObservedBody {
    fn drop(&mut self) {
        self.end();
    }
}

impl Body for ObservedBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                self.sent += frame.data_ref().map_or(0, |data| data.len() as u64);
            }
            Poll::Ready(None | Some(Err(_))) => self.end(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
