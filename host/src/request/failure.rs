//! Every way a request can end without a guest's response, and the response the host
//! sends instead.

use http::{HeaderValue, Response, StatusCode, Version, header};

use crate::http::body::ResponseBody;
use crate::http::response::plain_response;
use crate::observe::metrics::Rejection;
use crate::observe::summary::RepeatedWarnings;

/// Seconds a client told `503` should wait before retrying.
const RETRY_AFTER_SECONDS: &str = "1";

/// Why a request got no response from the guest.
#[derive(Debug)]
pub enum Failure {
    /// The request cannot be handed to a guest at all.
    BadRequest(&'static str),
    /// No route of the application matches the path.
    NoRoute,
    /// The guest's store could not be set up.
    Setup(anyhow::Error),
    BodyTooLarge,
    /// The client stopped sending the request body for longer than allowed.
    BodyStalled,
    /// No slot came free.
    Overloaded(Rejection),
    /// Every instance the pool can hold is in use.
    NoInstance,
    /// The guest trapped, or returned without setting a response.
    Guest,
    /// The guest answered with a wasi:http error code instead of a response.
    GuestErrorCode(String),
    /// The guest was still running at the request deadline.
    DeadlineExceeded,
}

impl Failure {
    /// The host's response to request `request_id`, sent over HTTP `version`; failures
    /// a flood repeats are counted in `warnings` rather than logged one by one.
    pub fn into_response(
        self,
        request_id: u64,
        version: Version,
        warnings: &RepeatedWarnings,
    ) -> Response<ResponseBody> {
        let (status, message) = match self {
            Failure::BadRequest(why) => (StatusCode::BAD_REQUEST, why),
            Failure::NoRoute => (StatusCode::NOT_FOUND, "no route matches this path"),
            Failure::Setup(error) => {
                tracing::error!(request_id, "cannot set up the guest: {error:#}");
                (StatusCode::INTERNAL_SERVER_ERROR, "the handler failed")
            }
            Failure::BodyTooLarge => {
                let response = plain_response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "the request body is too large",
                );
                return closing_http1(response, version);
            }
            Failure::BodyStalled => {
                let response = plain_response(
                    StatusCode::REQUEST_TIMEOUT,
                    "the request body stopped arriving",
                );
                return closing_http1(response, version);
            }
            Failure::Overloaded(rejection) => {
                warnings.record(match rejection {
                    Rejection::QueueFull => "requests turned away with 503: queue full",
                    Rejection::QueueTimeout => {
                        "requests turned away with 503: no slot came free in the queue timeout"
                    }
                });
                return overloaded();
            }
            Failure::NoInstance => {
                warnings.record("requests turned away with 503: no instance free");
                return overloaded();
            }
            Failure::Guest => (StatusCode::INTERNAL_SERVER_ERROR, "the handler failed"),
            Failure::GuestErrorCode(code) => {
                tracing::warn!(request_id, "guest answered with an error: {code}");
                (StatusCode::INTERNAL_SERVER_ERROR, "the handler failed")
            }
            Failure::DeadlineExceeded => (
                StatusCode::GATEWAY_TIMEOUT,
                "the handler did not answer in time",
            ),
        };
        plain_response(status, message)
    }
}

/// `response` to a request whose body was left unread.
fn closing_http1(mut response: Response<ResponseBody>, version: Version) -> Response<ResponseBody> {
    // The rest of the body is never read, so an HTTP/1 connection cannot carry another
    // request: say so, or the client may reuse it and lose its next request to the close.
    if version < Version::HTTP_2 {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

fn overloaded() -> Response<ResponseBody> {
    let mut response = plain_response(StatusCode::SERVICE_UNAVAILABLE, "the server is busy");
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from_static(RETRY_AFTER_SECONDS),
    );
    response
}
