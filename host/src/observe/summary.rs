//! Warnings that an attacker can repeat at will (a request turned away, a connection
//! refused) are summed into one line per kind and interval, so that the log, and what
//! Cloud Logging charges for it, does not grow with the attack. The metrics still count
//! every event.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// Counts of repeated warnings since the last summary, by message.
#[derive(Debug)]
pub struct RepeatedWarnings {
    interval: Duration,
    counts: Mutex<Vec<(&'static str, u64)>>,
}

impl RepeatedWarnings {
    /// Warnings summed over `interval`; a task logs each interval's sums while the
    /// returned value lives. Must be called inside the async runtime.
    pub fn start(interval: Duration) -> Arc<Self> {
        let warnings = Arc::new(Self {
            interval,
            counts: Mutex::new(Vec::new()),
        });
        tokio::spawn(log_every_interval(Arc::downgrade(&warnings), interval));
        warnings
    }

    /// One more `what` (such as "requests turned away with 503: queue full"), logged
    /// with the others of its kind at the end of the interval.
    pub fn record(&self, what: &'static str) {
        let mut counts = self.lock();
        match counts.iter_mut().find(|(known, _)| *known == what) {
            Some((_, count)) => *count += 1,
            None => counts.push((what, 1)),
        }
    }

    /// Logs one line per kind counted since the last time, and starts counting afresh.
    fn log_summary(&self) {
        let counts = std::mem::take(&mut *self.lock());
        let interval = humantime::format_duration(self.interval);
        for (what, count) in counts {
            tracing::warn!(count, "{what}: {count} in the last {interval}");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(&'static str, u64)>> {
        // Counts left half-updated by a panic are still counts.
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for RepeatedWarnings {
    fn drop(&mut self) {
        self.log_summary();
    }
}

async fn log_every_interval(warnings: Weak<RepeatedWarnings>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    // The first tick is at once.
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(warnings) = warnings.upgrade() else {
            return;
        };
        warnings.log_summary();
    }
}
