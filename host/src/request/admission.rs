//! Admission control: at most `max_concurrency` requests run at once, a bounded number
//! wait for a bounded time, and the rest are turned away at once. This keeps the instance
//! pool from ever running dry, whatever the load.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::AdmissionLimits;
use crate::observe::metrics::Rejection;

/// The shared gate every request passes before it gets an instance.
pub struct Admission {
    slots: Arc<Semaphore>,
    waiting: AtomicU32,
    limits: AdmissionLimits,
}

/// A running request's slot; dropping it lets the next request in.
pub type Slot = OwnedSemaphorePermit;

impl Admission {
    /// A gate with `limits`.
    pub fn new(limits: AdmissionLimits) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(limits.max_concurrency as usize)),
            waiting: AtomicU32::new(0),
            limits,
        }
    }

    /// Waits for a slot, within the queue's bounds.
    pub async fn admit(&self) -> Result<Slot, Rejection> {
        if let Ok(slot) = self.slots.clone().try_acquire_owned() {
            return Ok(slot);
        }
        let _waiting = QueuePlace::take(&self.waiting, self.limits.max_queue)?;
        match tokio::time::timeout(
            self.limits.queue_timeout,
            self.slots.clone().acquire_owned(),
        )
        .await
        {
            Ok(Ok(slot)) => Ok(slot),
            // The semaphore is never closed, so only the timeout lands here.
            Ok(Err(_)) | Err(_) => Err(Rejection::QueueTimeout),
        }
    }

    /// Requests holding a slot right now.
    pub fn in_flight(&self) -> u32 {
        self.limits.max_concurrency - self.slots.available_permits() as u32
    }
}

/// A place in the queue, given back on drop.
struct QueuePlace<'a>(&'a AtomicU32);

impl<'a> QueuePlace<'a> {
    fn take(waiting: &'a AtomicU32, max_queue: u32) -> Result<Self, Rejection> {
        waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max_queue).then_some(n + 1)
            })
            .map(|_| Self(waiting))
            .map_err(|_| Rejection::QueueFull)
    }
}

impl Drop for QueuePlace<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn gate(max_concurrency: u32, max_queue: u32) -> Admission {
        Admission::new(AdmissionLimits {
            max_concurrency,
            max_queue,
            queue_timeout: Duration::from_millis(50),
        })
    }

    #[tokio::test]
    async fn full_gate_with_no_queue_rejects_at_once() {
        let gate = gate(1, 0);
        let _running = gate.admit().await.expect("first request runs");
        assert_eq!(gate.admit().await.unwrap_err(), Rejection::QueueFull);
        assert_eq!(gate.in_flight(), 1);
    }

    #[tokio::test]
    async fn queued_request_times_out_then_a_freed_slot_is_reused() {
        let gate = gate(1, 1);
        let running = gate.admit().await.expect("first request runs");
        assert_eq!(gate.admit().await.unwrap_err(), Rejection::QueueTimeout);
        drop(running);
        assert!(gate.admit().await.is_ok());
    }
}
