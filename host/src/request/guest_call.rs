//! How a request that went into an instance ended, when its guest gave no response: the
//! errors of the instance pool, sorted into [`Failure`]s and counted.

use tokio::time::Instant;
use wasmtime::{PoolConcurrencyLimitError, Trap};
use wasmtime_wasi_http::handler::{ExpirationError, InstantiationError, TrapOrPanicError};
use wasmtime_wasi_http::{p2, p3};

use super::failure::Failure;
use crate::observe::metrics::{GuestFailure, Metrics};
use crate::observe::telemetry::one_line;
use crate::sandbox::instances::Ticket;

/// What went wrong with the request `ticket` names, from `error` (the pool's answer)
/// and the time against its `deadline`.
pub fn failure_of(error: wasmtime::Error, ticket: &Ticket, metrics: &Metrics) -> Failure {
    let request_id = ticket.visitor.request_id;
    if let Some(instantiation) = error.downcast_ref::<InstantiationError<Ticket>>() {
        return instantiation_failure(&instantiation.error, request_id);
    }
    if let Some(code) = error_code(&error) {
        metrics.guest_failed(GuestFailure::ErrorCode);
        return Failure::GuestErrorCode(code);
    }
    // A guest still busy at its deadline is stopped by retiring its instance, which the
    // pool reports as a failure of the instance (a trap, or a 0.2 guest that never set
    // its response); the clock tells it from a failure of the guest's own.
    let timed_out = error.is::<ExpirationError>() || Instant::now() >= ticket.visitor.deadline;
    if timed_out {
        tracing::warn!(request_id, "guest interrupted at the request deadline");
        metrics.guest_failed(GuestFailure::Timeout);
        return Failure::DeadlineExceeded;
    }
    // A 0.2 guest that traps drops its response outparam with its instance, so the
    // request sees only the missing response; the instance's flag says why.
    let instance_failed = ticket.instance_failed();
    let trapped = error.is::<TrapOrPanicError>() || error.chain().any(|cause| cause.is::<Trap>());
    if trapped || instance_failed {
        let error = one_line(&format!("{error:#}"));
        tracing::warn!(request_id, "guest failed: {error}");
        ticket.fail_instance();
        metrics.guest_failed(GuestFailure::Trap);
        return Failure::Guest;
    }
    tracing::warn!(request_id, "guest returned without setting a response");
    metrics.guest_failed(GuestFailure::NoResponse);
    Failure::Guest
}

/// A request that found no instance: the pool full (`503`, the next may find one), or
/// the component could not be instantiated.
fn instantiation_failure(error: &wasmtime::Error, request_id: u64) -> Failure {
    if error.is::<PoolConcurrencyLimitError>() {
        return Failure::NoInstance;
    }
    let error = one_line(&format!("{error:#}"));
    tracing::error!(request_id, "cannot instantiate the component: {error}");
    Failure::Setup(anyhow::anyhow!("{error}"))
}

/// The wasi:http error code a guest answered with instead of a response, either version's.
fn error_code(error: &wasmtime::Error) -> Option<String> {
    if let Some(code) = error.downcast_ref::<p2::bindings::http::types::ErrorCode>() {
        return Some(format!("{code:?}"));
    }
    let code = error.downcast_ref::<p3::bindings::http::types::ErrorCode>()?;
    Some(format!("{code:?}"))
}
