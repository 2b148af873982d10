//! `GET /metrics` on its own address (`--metrics-addr`), apart from the application's
//! port: a scrape never waits behind admission, and the guest's routes never collide
//! with it. The server itself is `server`'s; this is what it answers.

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};

use crate::body::ResponseBody;
use crate::handler::plain_response;
use crate::metrics::Metrics;

/// The one path served.
pub const METRICS_PATH: &str = "/metrics";

/// Content type of the OpenMetrics text format, which Prometheus reads.
const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The answer to one request to the metrics address.
pub fn respond<B>(metrics: &Metrics, request: &Request<B>) -> Response<ResponseBody> {
    if request.uri().path() != METRICS_PATH {
        return plain_response(StatusCode::NOT_FOUND, "not found: metrics are at /metrics");
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = plain_response(StatusCode::METHOD_NOT_ALLOWED, "use GET");
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let mut response = Response::new(ResponseBody::host(Bytes::from(metrics.encode())));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(OPENMETRICS_CONTENT_TYPE),
    );
    response
}
