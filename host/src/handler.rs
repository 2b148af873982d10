//! One request, start to finish: a fresh store and instance, the call into the guest's
//! `wasi:http/incoming-handler`, and the mapping of every way that can fail onto a status
//! code. Nothing a guest does here can take the host down.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use tokio::time::Instant;
use wasmtime::{Store, Trap, UpdateDeadline};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::state::RequestState;

/// The body type of every response the host sends.
pub type ResponseBody = HyperOutgoingBody;

/// Serves requests with one pre-instantiated component.
pub struct Handler {
    proxy: ProxyPre<RequestState>,
    request_timeout: Duration,
    next_request_id: AtomicU64,
}

/// Why a request got no response from the guest.
#[derive(Debug)]
enum Failure {
    /// The request cannot be handed to a guest at all.
    BadRequest(&'static str),
    /// The guest trapped, or returned without setting a response.
    Guest,
    /// The guest answered with a wasi:http error code instead of a response.
    GuestErrorCode(ErrorCode),
    /// The guest was still running at the request deadline.
    DeadlineExceeded,
}

impl Handler {
    /// A handler for `proxy` that interrupts guests after `request_timeout`.
    pub fn new(proxy: ProxyPre<RequestState>, request_timeout: Duration) -> Self {
        Self {
            proxy,
            request_timeout,
            next_request_id: AtomicU64::new(1),
        }
    }

    /// Runs `request` through a fresh guest instance and returns its response, or the
    /// host's own error response when the guest fails.
    pub async fn handle<B>(&self, request: Request<B>) -> Response<ResponseBody>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let request_id = self.next_request_id.fetch_add(1, Ordering::Relaxed);
        match self.call_guest(request_id, request).await {
            Ok(response) => response,
            Err(failure) => failure.into_response(request_id),
        }
    }

    async fn call_guest<B>(
        &self,
        request_id: u64,
        request: Request<B>,
    ) -> Result<Response<ResponseBody>, Failure>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        if request.uri().authority().is_none() && !request.headers().contains_key(header::HOST) {
            return Err(Failure::BadRequest("missing Host header"));
        }
        let deadline = Instant::now() + self.request_timeout;
        let mut store = Store::new(self.proxy.engine(), RequestState::new(request_id));
        // Every epoch tick a running guest yields to the other requests on this thread;
        // past the deadline, it is interrupted.
        store.epoch_deadline_callback(move |_| {
            Ok(if Instant::now() >= deadline {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Yield(1)
            })
        });
        store.set_epoch_deadline(1);

        let (response_tx, response_rx) = tokio::sync::oneshot::channel();
        let mut http = store.data_mut().http();
        let (incoming, outparam) = match (
            http.new_incoming_request(Scheme::Http, request),
            http.new_response_outparam(response_tx),
        ) {
            (Ok(incoming), Ok(outparam)) => (incoming, outparam),
            (Err(error), _) | (_, Err(error)) => {
                tracing::debug!(request_id, "request refused: {error:#}");
                return Err(Failure::BadRequest("malformed request"));
            }
        };

        let proxy = self.proxy.clone();
        // The guest runs in its own task so it can keep streaming the body after the
        // response head has gone out.
        let guest = tokio::spawn(async move {
            let run = async {
                let instance = proxy.instantiate_async(&mut store).await?;
                instance
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, incoming, outparam)
                    .await
            };
            // The epoch callback stops a guest that computes past its deadline; this
            // timeout stops one that waits past it.
            let outcome = match tokio::time::timeout_at(deadline, run).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(error)) if is_interrupt(&error) => Err(Failure::DeadlineExceeded),
                Err(_elapsed) => Err(Failure::DeadlineExceeded),
                Ok(Err(error)) => {
                    tracing::warn!(request_id, "guest failed: {error:?}");
                    Err(Failure::Guest)
                }
            };
            if let Err(Failure::DeadlineExceeded) = outcome {
                tracing::warn!(request_id, "guest interrupted at the request deadline");
            }
            outcome
        });

        match response_rx.await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(code)) => Err(Failure::GuestErrorCode(code)),
            // The guest dropped the response outparam: it trapped, timed out, or returned
            // without answering. Its task says which.
            Err(_) => match guest.await {
                Ok(Ok(())) => {
                    tracing::warn!(request_id, "guest returned without setting a response");
                    Err(Failure::Guest)
                }
                Ok(Err(failure)) => Err(failure),
                Err(join_error) => {
                    tracing::error!(request_id, "guest task failed: {join_error}");
                    Err(Failure::Guest)
                }
            },
        }
    }
}

fn is_interrupt(error: &wasmtime::Error) -> bool {
    error.downcast_ref::<Trap>() == Some(&Trap::Interrupt)
}

impl Failure {
    fn into_response(self, request_id: u64) -> Response<ResponseBody> {
        let (status, message) = match self {
            Failure::BadRequest(why) => (StatusCode::BAD_REQUEST, why),
            Failure::Guest => (StatusCode::INTERNAL_SERVER_ERROR, "the handler failed"),
            Failure::GuestErrorCode(code) => {
                tracing::warn!(request_id, "guest answered with an error: {code:?}");
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

/// A short `text/plain` response written by the host itself.
pub fn plain_response(status: StatusCode, message: &str) -> Response<ResponseBody> {
    let body = Full::new(Bytes::from(format!("{message}\n")))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
