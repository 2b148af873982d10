//! One guest run for one admitted request: a fresh store from the active version, the
//! request handed over as wasi:http resources, the call into the guest's
//! `wasi:http/incoming-handler`, and how the run ended, as a [`Failure`] when it did not
//! answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::Request;
use tokio::sync::oneshot;
use tokio::task::JoinError;
use tokio::time::Instant;
use wasmtime::Store;
use wasmtime::component::Resource;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::p2::types::{HostIncomingRequest, HostResponseOutparam};

use super::admission::Slot;
use super::failure::Failure;
use crate::observe::metrics::{GuestFailure, Metrics};
use crate::sandbox::deadline;
use crate::sandbox::limits::InstanceLimits;
use crate::sandbox::store::{InstanceState, new_store};
use crate::swap::active::Version;

/// What the guest answers through its response outparam.
pub type GuestAnswer = Result<http::Response<HyperOutgoingBody>, ErrorCode>;

/// A store for request `request_id` to run component `index` of `version` in, with that
/// component's environment, files and outbound rules.
pub fn store_for(
    version: &Version,
    index: usize,
    request_id: u64,
    limits: &InstanceLimits,
    deadline: Instant,
) -> Result<Store<InstanceState>, Failure> {
    let component = version.app.component(index);
    let state = InstanceState::new(
        request_id,
        limits,
        &component.env,
        component.files.as_ref().map(|files| files.path()),
        component.outbound.hooks(request_id, deadline),
    )
    .map_err(Failure::Setup)?;
    Ok(new_store(component.proxy.engine(), state, deadline))
}

/// Puts `request` and the channel its answer comes back on into `store`, as the
/// resources the guest's handler is called with.
pub fn hand_over<B>(
    store: &mut Store<InstanceState>,
    request: Request<B>,
    answer: oneshot::Sender<GuestAnswer>,
    request_id: u64,
) -> Result<
    (
        Resource<HostIncomingRequest>,
        Resource<HostResponseOutparam>,
    ),
    Failure,
>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    let mut http = store.data_mut().http();
    match (
        http.new_incoming_request(Scheme::Http, request),
        http.new_response_outparam(answer),
    ) {
        (Ok(incoming), Ok(outparam)) => Ok((incoming, outparam)),
        (Err(error), _) | (_, Err(error)) => {
            tracing::debug!(request_id, "request refused: {error:#}");
            Err(Failure::BadRequest("malformed request"))
        }
    }
}

/// A guest about to run, with everything its run holds until it ends.
pub struct GuestRun {
    pub version: Arc<Version>,
    pub index: usize,
    pub store: Store<InstanceState>,
    /// Freed when the instance is gone, not when the response head is sent: the guest
    /// may still be streaming the body.
    pub slot: Slot,
    pub deadline: Instant,
    pub request_id: u64,
    pub metrics: Arc<Metrics>,
    /// Set when the run failed, before the store (and with it the response body's
    /// sender) is dropped, so the body sees it when it ends.
    pub failed: Arc<AtomicBool>,
}

impl GuestRun {
    /// Instantiates the component and calls its handler, to the end of the guest's work
    /// or the deadline; then frees the instance and its slot.
    pub async fn call(
        mut self,
        incoming: Resource<HostIncomingRequest>,
        outparam: Resource<HostResponseOutparam>,
    ) -> Result<(), Failure> {
        let request_id = self.request_id;
        let run = async {
            let instantiating = Instant::now();
            let proxy = &self.version.app.component(self.index).proxy;
            let instance = proxy.instantiate_async(&mut self.store).await?;
            self.metrics.instantiated(instantiating.elapsed());
            instance
                .wasi_http_incoming_handler()
                .call_handle(&mut self.store, incoming, outparam)
                .await
        };
        // The epoch callback stops a guest that computes past its deadline; this
        // timeout stops one that waits past it.
        let outcome = match tokio::time::timeout_at(self.deadline, run).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) if deadline::is_interrupt(&error) => Err(Failure::DeadlineExceeded),
            Err(_elapsed) => Err(Failure::DeadlineExceeded),
            Ok(Err(error)) => {
                tracing::warn!(request_id, "guest failed: {error:?}");
                Err(Failure::Guest)
            }
        };
        match outcome {
            Err(Failure::DeadlineExceeded) => {
                tracing::warn!(request_id, "guest interrupted at the request deadline");
                self.metrics.guest_failed(GuestFailure::Timeout);
            }
            Err(_) => self.metrics.guest_failed(GuestFailure::Trap),
            Ok(()) => {}
        }
        self.failed.store(outcome.is_err(), Ordering::Release);
        drop(self.store);
        drop(self.slot);
        outcome
    }
}

/// Why a guest that dropped its response outparam gave no answer: it trapped, timed
/// out, or returned without answering. Its run's outcome says which.
pub fn why_unanswered(
    run: Result<Result<(), Failure>, JoinError>,
    request_id: u64,
    metrics: &Metrics,
) -> Failure {
    match run {
        Ok(Ok(())) => {
            tracing::warn!(request_id, "guest returned without setting a response");
            metrics.guest_failed(GuestFailure::NoResponse);
            Failure::Guest
        }
        Ok(Err(failure)) => failure,
        Err(join_error) => {
            tracing::error!(request_id, "guest task failed: {join_error}");
            Failure::Guest
        }
    }
}
