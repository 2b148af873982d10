//! `GET /metrics` on its own address (`--metrics-addr`), apart from the application's
//! port: a scrape never waits behind admission, and the guest's routes never collide
//! with it. The server itself is `server`'s; this is what it answers.

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};

use crate::body::ResponseBody;
use crate::handler::plain_response;
use crate::metrics::{self, Metrics};
use crate::workers::Followers;

/// The one path served.
pub const METRICS_PATH: &str = "/metrics";

/// Content type of the OpenMetrics text format, which Prometheus reads.
const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The answer to one request to the metrics address: this process's metrics, summed
/// with those of the secondary workers in `followers`, if any.
pub async fn respond<B>(
    metrics: &Metrics,
    followers: Option<&Followers>,
    request: &Request<B>,
) -> Response<ResponseBody> {
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
    let text = match followers {
        None => metrics.encode(),
        Some(followers) => match followers.metrics().await {
            Ok(mut texts) => {
                texts.insert(0, metrics.encode());
                metrics::merge(&texts)
            }
            // A partial sum would look like counters going backwards.
            Err(error) => {
                tracing::warn!("cannot serve metrics: {error:#}");
                return plain_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "a worker did not send its metrics",
                );
            }
        },
    };
    let mut response = Response::new(ResponseBody::host(Bytes::from(text)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(OPENMETRICS_CONTENT_TYPE),
    );
    response
}
