//! What the serving port answers: the probe path, from the host itself, and every other
//! request through the caller check (when on) and the handler, inside its span, with
//! its access-log entry and metrics.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use tracing::Instrument;

use super::caller_token::CallerCheck;
use super::handler::Handler;
use super::span::{ObservedBody, Observer};
use crate::http::response::plain_response;

/// The serving port's one service, shared by every connection.
pub struct RequestService {
    handler: Handler,
    observer: Observer,
    /// Answered `200` by the host, never seen by a guest, never logged or counted.
    health_path: Option<Arc<str>>,
    /// Refuses callers without a valid ID token, before any guest runs.
    caller_check: Option<CallerCheck>,
}

impl RequestService {
    /// A service running requests through `handler`, observed by `observer`, once
    /// `caller_check` (if any) lets them through.
    pub fn new(
        handler: Handler,
        observer: Observer,
        health_path: Option<&str>,
        caller_check: Option<CallerCheck>,
    ) -> Self {
        Self {
            handler,
            observer,
            health_path: health_path.map(Arc::from),
            caller_check,
        }
    }

    /// Answers `request`, which came from `peer`.
    pub async fn serve(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<ObservedBody> {
        if self.health_path.as_deref() == Some(request.uri().path()) {
            return ObservedBody::unobserved_response(plain_response(StatusCode::OK, "ok"));
        }
        let exchange = self.observer.begin(&request, peer);
        if let Some(check) = &self.caller_check
            && let Some(refusal) = check
                .refusal(request.headers())
                .instrument(exchange.span())
                .await
        {
            return exchange.finish(refusal);
        }
        let response = self
            .handler
            .handle(request)
            .instrument(exchange.span())
            .await;
        exchange.finish(response)
    }
}
