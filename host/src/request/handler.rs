//! One request, start to finish: admission, the route, the call through its component's
//! pool of instances, and the mapping of every way that can fail onto a status code.
//! Nothing a guest or a client does here can take the host down.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, header};
use http_body_util::BodyExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Span;

use super::admission::{Admission, Slot};
use super::failure::Failure;
use super::guest_call::failure_of;
use crate::http::body::{GuestSource, IdleTimeoutBody, LimitedBody, ResponseBody};
use crate::http::response::declared_length;
use crate::observe::metrics::{GuestFailure, Metrics};
use crate::observe::summary::RepeatedWarnings;
use crate::sandbox::instances::Ticket;
use crate::sandbox::occupancy::Visitor;
use crate::swap::active::ActiveComponent;

/// What the handler needs besides the component.
pub struct HandlerSettings {
    /// Longest a request may run.
    pub request_timeout: Duration,
    /// Largest request body, in bytes.
    pub max_body_size: u64,
    /// Longest a request body may stop arriving.
    pub body_idle_timeout: Duration,
    /// Where rejections and guest failures are counted.
    pub metrics: Arc<Metrics>,
    /// Where rejections are summed for the log.
    pub warnings: Arc<RepeatedWarnings>,
}

/// Serves requests with the active version of the component.
pub struct Handler {
    active: Arc<ActiveComponent>,
    settings: HandlerSettings,
    admission: Arc<Admission>,
    next_request_id: AtomicU64,
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

    /// Runs `request` in an instance of its component and returns its response, or the
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
        result.unwrap_or_else(|failure| {
            failure.into_response(request_id, version, &self.settings.warnings)
        })
    }

    /// Refuses what no guest should see, before taking a slot.
    fn check<B>(&self, request: &Request<B>) -> Result<(), Failure> {
        if request.uri().authority().is_none() && !request.headers().contains_key(header::HOST) {
            return Err(Failure::BadRequest("missing Host header"));
        }
        if declared_length(request.headers())
            .is_some_and(|length| length > self.settings.max_body_size)
        {
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
        let body_too_large = Arc::new(AtomicBool::new(false));
        let body_stalled = Arc::new(AtomicBool::new(false));
        let request = request.map(|body| {
            let body =
                IdleTimeoutBody::new(body, self.settings.body_idle_timeout, body_stalled.clone());
            LimitedBody::request(body, self.settings.max_body_size, body_too_large.clone())
                .boxed_unsync()
        });
        // Fires when this future or the response body is dropped before the end: the
        // client went away, and its guest is stopped.
        let abandoned = CancellationToken::new();
        let client_present = abandoned.clone().drop_guard();
        let ticket = Ticket::new(
            Visitor {
                request_id,
                deadline,
                span: Span::current(),
            },
            abandoned,
        );
        let pool = &version.app.component(index).pool;
        let metrics = &self.settings.metrics;
        // The pool stops a guest at the deadline; this stops the wait for one whose
        // instance cannot be reached, for whatever reason.
        let error =
            match tokio::time::timeout_at(deadline, pool.handle(ticket.clone(), request)).await {
                Ok(Ok(response)) => {
                    let source = ticket
                        .landing()
                        .map(|landing| Box::new(landing) as Box<dyn GuestSource>);
                    return Ok(response
                        .map(|body| ResponseBody::from_guest(body, source, slot, client_present)));
                }
                Ok(Err(error)) => error,
                // Dropping `client_present` here stops an instance serving this
                // request alone at once.
                Err(_elapsed) => {
                    tracing::warn!(request_id, "guest interrupted at the request deadline");
                    metrics.guest_failed(GuestFailure::Timeout);
                    return Err(Failure::DeadlineExceeded);
                }
            };
        // The client is still there for the host's own answer.
        client_present.disarm();
        // A guest that failed because its body was cut off (at the limit, or stalled)
        // failed because of the request, not because of itself.
        if body_too_large.load(Ordering::Acquire) {
            return Err(Failure::BodyTooLarge);
        }
        if body_stalled.load(Ordering::Acquire) {
            return Err(Failure::BodyStalled);
        }
        Err(failure_of(error, &ticket, metrics))
    }
}
