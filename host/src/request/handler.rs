//! One request, start to finish: admission, a fresh store and instance, the call into
//! the guest's `wasi:http/incoming-handler`, and the mapping of every way that can fail
//! onto a status code. Nothing a guest or a client does here can take the host down.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, header};
use tokio::time::Instant;
use tracing::Instrument;

use super::admission::{Admission, Slot};
use super::failure::Failure;
use super::guest_call::{GuestRun, hand_over, store_for, why_unanswered};
use crate::http::body::{LimitedBody, ResponseBody};
use crate::http::response::declared_length;
use crate::observe::metrics::{GuestFailure, Metrics};
use crate::sandbox::limits::InstanceLimits;
use crate::swap::active::ActiveComponent;

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
        let limits = &self.settings.instance;
        let mut store = store_for(&version, index, request_id, limits, deadline)?;
        let body_too_large = Arc::new(AtomicBool::new(false));
        let request = request.map(|body| {
            LimitedBody::request(body, self.settings.max_body_size, body_too_large.clone())
        });
        let (answer_tx, answer_rx) = tokio::sync::oneshot::channel();
        let (incoming, outparam) = hand_over(&mut store, request, answer_tx, request_id)?;
        let metrics = &self.settings.metrics;
        let failed = Arc::new(AtomicBool::new(false));
        let run = GuestRun {
            version,
            index,
            store,
            slot,
            deadline,
            request_id,
            metrics: metrics.clone(),
            failed: failed.clone(),
        };
        // In its own task, so the guest can keep streaming the body after the response
        // head has gone out; in the request's span, so its output joins the trace.
        let guest = tokio::spawn(run.call(incoming, outparam).in_current_span());
        let failure = match answer_rx.await {
            Ok(Ok(response)) => {
                return Ok(response.map(|body| ResponseBody::from_guest(body, failed)));
            }
            Ok(Err(code)) => {
                metrics.guest_failed(GuestFailure::ErrorCode);
                Failure::GuestErrorCode(code)
            }
            Err(_) => why_unanswered(guest.await, request_id, metrics),
        };
        // A guest that failed because its body was cut off at the limit failed because
        // of the request, not because of itself.
        if body_too_large.load(Ordering::Acquire) {
            return Err(Failure::BodyTooLarge);
        }
        Err(failure)
    }
}
