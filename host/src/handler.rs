//! One request, start to finish: admission, a fresh store and instance, the call into
//! the guest's `wasi:http/incoming-handler`, and the mapping of every way that can fail
//! onto a status code. Nothing a guest or a client does here can take the host down.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Version, header};
use tokio::time::Instant;
use tracing::Instrument;
use wasmtime::{Store, Trap, UpdateDeadline};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};

use crate::admission::{Admission, Rejection, Slot};
use crate::body::{LimitedBody, ResponseBody};
use crate::limits::{FIRST_SLICE_TICKS, InstanceLimits};
use crate::metrics::{GuestFailure, Metrics};
use crate::reload::ActiveComponent;
use crate::state::RequestState;

/// Seconds a client told `503` should wait before retrying.
const RETRY_AFTER_SECONDS: &str = "1";

/// What the handler needs besides the component.
pub struct HandlerSettings {
    /// Longest a request may run.
    pub request_timeout: Duration,
    /// Largest request body, in bytes.
    pub max_body_size: u64,
    /// What one instance may use.
    pub instance: InstanceLimits,
    /// Where instantiation times, rejections and guest failures are counted.
    pub metrics: Arc<Metrics>,
}

/// Serves requests with the active version of the component.
pub struct Handler {
    active: Arc<ActiveComponent>,
    settings: HandlerSettings,
    admission: Arc<Admission>,
    next_request_id: AtomicU64,
}

/// Why a request got no response from the guest.
#[derive(Debug)]
enum Failure {
    /// The request cannot be handed to a guest at all.
    BadRequest(&'static str),
    /// No route of the application matches the path.
    NoRoute,
    /// The guest's store could not be set up.
    Setup(anyhow::Error),
    /// The request body is larger than allowed.
    BodyTooLarge,
    /// No slot came free.
    Overloaded(Rejection),
    /// The guest trapped, or returned without setting a response.
    Guest,
    /// The guest answered with a wasi:http error code instead of a response.
    GuestErrorCode(ErrorCode),
    /// The guest was still running at the request deadline.
    DeadlineExceeded,
}

impl Handler {
    /// A handler for whichever version of the component is active, admitting requests
    /// through `admission`.
    pub fn new(
        active: Arc<ActiveComponent>,
        settings: HandlerSettings,
        admission: Arc<Admission>,
    ) -> Self {
        Self {
            active,
            settings,
            admission,
            next_request_id: AtomicU64::new(1),
        }
    }

    /// Runs `request` through a fresh guest instance and returns its response, or the
    /// host's own error response when the guest fails.
    pub async fn handle<B>(&self, request: Request<B>) -> Response<ResponseBody>
    where
        B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let request_id = self.next_request_id.fetch_add(1, Ordering::Relaxed);
        let version = request.version();
        let result = match self.check(&request) {
            Ok(()) => match self.admission.admit().await {
                Ok(slot) => self.call_guest(request_id, request, slot).await,
                Err(rejection) => {
                    self.settings.metrics.admission_rejected(rejection);
                    Err(Failure::Overloaded(rejection))
                }
            },
            Err(failure) => Err(failure),
        };
        result.unwrap_or_else(|failure| failure.into_response(request_id, version))
    }

    /// Refuses what no guest should see, before taking a slot.
    fn check<B>(&self, request: &Request<B>) -> Result<(), Failure> {
        if request.uri().authority().is_none() && !request.headers().contains_key(header::HOST) {
            return Err(Failure::BadRequest("missing Host header"));
        }
        let declared_length = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
        if declared_length.is_some_and(|length| length > self.settings.max_body_size) {
            return Err(Failure::BodyTooLarge);
        }
        Ok(())
    }

    async fn call_guest<B>(
        &self,
        request_id: u64,
        mut request: Request<B>,
        slot: Slot,
    ) -> Result<Response<ResponseBody>, Failure>
    where
        B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let deadline = Instant::now() + self.settings.request_timeout;
        // Taken once: a swap during this request does not change the code it runs.
        let version = self.active.current();
        let index = version.app.route(&mut request).ok_or(Failure::NoRoute)?;
        let component = version.app.component(index);
        let state = RequestState::new(
            request_id,
            &self.settings.instance,
            &component.env,
            component.files.as_ref().map(|files| files.path()),
            component.outbound.hooks(request_id, deadline),
        )
        .map_err(Failure::Setup)?;
        let mut store = Store::new(component.proxy.engine(), state);
        store.limiter(|state| state.limits());
        // After its first slice, a running guest yields to the other requests on this
        // thread at every epoch tick; past the deadline, it is interrupted.
        store.epoch_deadline_callback(move |_| {
            Ok(if Instant::now() >= deadline {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Yield(1)
            })
        });
        store.set_epoch_deadline(FIRST_SLICE_TICKS);

        let body_too_large = Arc::new(AtomicBool::new(false));
        let request = request.map(|body| {
            LimitedBody::request(body, self.settings.max_body_size, body_too_large.clone())
        });
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

        let metrics = self.settings.metrics.clone();
        let guest_failed = Arc::new(AtomicBool::new(false));
        let guest_failed_in_task = guest_failed.clone();
        // The guest runs in its own task so it can keep streaming the body after the
        // response head has gone out. The task owns the slot and the store, so a slot is
        // free exactly when its instance is gone.
        let task = async move {
            let run = async {
                let instantiating = Instant::now();
                let proxy = &version.app.component(index).proxy;
                let instance = proxy.instantiate_async(&mut store).await?;
                metrics.instantiated(instantiating.elapsed());
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
            match outcome {
                Err(Failure::DeadlineExceeded) => {
                    tracing::warn!(request_id, "guest interrupted at the request deadline");
                    metrics.guest_failed(GuestFailure::Timeout);
                }
                Err(_) => metrics.guest_failed(GuestFailure::Trap),
                Ok(()) => {}
            }
            // Recorded before the store (and with it the response body's sender) is
            // dropped, so the body sees it when it ends.
            guest_failed_in_task.store(outcome.is_err(), Ordering::Release);
            drop(store);
            drop(slot);
            outcome
        };
        // In the request's span, so the guest's output and failures join its trace.
        let guest = tokio::spawn(task.in_current_span());

        let failure = match response_rx.await {
            Ok(Ok(response)) => {
                return Ok(response.map(|body| ResponseBody::from_guest(body, guest_failed)));
            }
            Ok(Err(code)) => {
                self.settings.metrics.guest_failed(GuestFailure::ErrorCode);
                Failure::GuestErrorCode(code)
            }
            // The guest dropped the response outparam: it trapped, timed out, or returned
            // without answering. Its task says which.
            Err(_) => match guest.await {
                Ok(Ok(())) => {
                    tracing::warn!(request_id, "guest returned without setting a response");
                    self.settings.metrics.guest_failed(GuestFailure::NoResponse);
                    Failure::Guest
                }
                Ok(Err(failure)) => failure,
                Err(join_error) => {
                    tracing::error!(request_id, "guest task failed: {join_error}");
                    Failure::Guest
                }
            },
        };
        // A guest that failed because its body was cut off at the limit failed because
        // of the request, not because of itself.
        if body_too_large.load(Ordering::Acquire) {
            return Err(Failure::BodyTooLarge);
        }
        Err(failure)
    }
}

fn is_interrupt(error: &wasmtime::Error) -> bool {
    error.downcast_ref::<Trap>() == Some(&Trap::Interrupt)
}

impl Failure {
    fn into_response(self, request_id: u64, version: Version) -> Response<ResponseBody> {
        let (status, message) = match self {
            Failure::BadRequest(why) => (StatusCode::BAD_REQUEST, why),
            Failure::NoRoute => (StatusCode::NOT_FOUND, "no route matches this path"),
            Failure::Setup(error) => {
                tracing::error!(request_id, "cannot set up the guest: {error:#}");
                (StatusCode::INTERNAL_SERVER_ERROR, "the handler failed")
            }
            Failure::BodyTooLarge => {
                let mut response = plain_response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "the request body is too large",
                );
                // The rest of the body is never read, so an HTTP/1 connection cannot
                // carry another request: say so, or the client may reuse it and lose
                // its next request to the close.
                if version < Version::HTTP_2 {
                    response
                        .headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                return response;
            }
            Failure::Overloaded(rejection) => {
                tracing::warn!(request_id, ?rejection, "request turned away: server busy");
                let mut response =
                    plain_response(StatusCode::SERVICE_UNAVAILABLE, "the server is busy");
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from_static(RETRY_AFTER_SECONDS),
                );
                return response;
            }
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
    let mut response = Response::new(ResponseBody::host(Bytes::from(format!("{message}\n"))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
