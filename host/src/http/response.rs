//! Responses the host writes itself (errors, probes, the admin and metrics endpoints),
//! and the one reading of a request's `Content-Length` every size check shares.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use serde::Serialize;

use super::body::ResponseBody;

/// A short `text/plain` response; `message` gets a trailing newline.
pub fn plain_response(status: StatusCode, message: &str) -> Response<ResponseBody> {
    typed_response(
        status,
        "text/plain; charset=utf-8",
        Bytes::from(format!("{message}\n")),
    )
}

/// `value` as an `application/json` response.
pub fn json_response(status: StatusCode, value: &impl Serialize) -> Response<ResponseBody> {
    let json = serde_json::to_vec(value).expect("the host's own answers always serialize");
    typed_response(status, "application/json", Bytes::from(json))
}

/// `body` with `content_type` and `status`.
pub fn typed_response(
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::host(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// `response` with an `Allow` header listing `methods`, for a `405`.
pub fn with_allow(
    mut response: Response<ResponseBody>,
    methods: &'static str,
) -> Response<ResponseBody> {
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(methods));
    response
}

/// The body length a request declares, when its `Content-Length` is a number.
pub fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}
