//! `GET /metrics` on its own address (`--metrics-addr`), apart from the application's
//! port: a scrape never waits behind admission, and the guest's routes never collide
//! with it. This is what it answers.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};

use crate::http::body::ResponseBody;
use crate::http::response::{plain_response, typed_response, with_allow};
use crate::observe::exposition;
use crate::observe::metrics::Metrics;
use crate::workers::SecondaryLinks;

/// The one path served.
pub const METRICS_PATH: &str = "/metrics";

/// Content type of the OpenMetrics text format, which Prometheus reads.
const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The answer to one request to the metrics address: this process's metrics, summed
/// with those of the secondary workers in `followers`, if any.
pub async fn respond<B>(
    metrics: &Metrics,
    followers: Option<&SecondaryLinks>,
    request: &Request<B>,
) -> Response<ResponseBody> {
    if request.uri().path() != METRICS_PATH {
        return plain_response(StatusCode::NOT_FOUND, "not found: metrics are at /metrics");
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return with_allow(
            plain_response(StatusCode::METHOD_NOT_ALLOWED, "use GET"),
            "GET, HEAD",
        );
    }
    let text = match followers {
        None => metrics.encode(),
        Some(followers) => match followers.metrics().await {
            Ok(mut texts) => {
                texts.insert(0, metrics.encode());
                exposition::merge(&texts)
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
    typed_response(StatusCode::OK, OPENMETRICS_CONTENT_TYPE, Bytes::from(text))
}
