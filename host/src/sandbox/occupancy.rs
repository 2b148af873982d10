//! Which requests an instance is serving. A reused instance serves many requests, one
//! after another or at once, so what its guest does (a line of output, an outbound
//! call) belongs to a request only when the instance holds just one: then it is tagged
//! with that request and joins its trace, and an outbound call never outlives its
//! deadline. With several at once it is tagged with the instance alone.

use std::sync::{Arc, Mutex};

use tokio::time::Instant;
use tracing::Span;

/// A request, as the instance serving it knows it.
#[derive(Debug, Clone)]
pub struct Visitor {
    pub request_id: u64,
    pub deadline: Instant,
    /// The request's span: the guest's output joins its trace.
    pub span: Span,
}

/// The requests one instance serves.
#[derive(Debug)]
pub struct Occupancy {
    instance_id: u64,
    requests: Mutex<Requests>,
}

#[derive(Debug, Default)]
struct Requests {
    /// Those whose guest has not answered yet, in arrival order.
    current: Vec<Visitor>,
    /// The last to arrive: the one a guest still streaming a body works for, when no
    /// other came since.
    last: Option<Visitor>,
}

/// A request's stay in an instance; dropping it ends the stay.
#[derive(Debug)]
pub struct Presence {
    occupancy: Arc<Occupancy>,
    request_id: u64,
}

impl Occupancy {
    pub fn new(instance_id: u64) -> Arc<Self> {
        Arc::new(Self {
            instance_id,
            requests: Mutex::new(Requests::default()),
        })
    }

    pub fn instance_id(&self) -> u64 {
        self.instance_id
    }

    /// Records that `visitor` is in the instance until the returned presence is dropped.
    pub fn enter(self: &Arc<Self>, visitor: Visitor) -> Presence {
        let request_id = visitor.request_id;
        let mut requests = self.lock();
        requests.last = Some(visitor.clone());
        requests.current.push(visitor);
        Presence {
            occupancy: self.clone(),
            request_id,
        }
    }

    /// The request the guest's activity belongs to: the only one in the instance, or,
    /// when none is, the last that was (its body may still be streaming). `None` while
    /// several are.
    pub fn sole(&self) -> Option<Visitor> {
        let requests = self.lock();
        match requests.current.as_slice() {
            [only] => Some(only.clone()),
            [] => requests.last.clone(),
            _ => None,
        }
    }

    /// The latest deadline of the requests in the instance (or of the last one): an
    /// outbound call made now must end by then.
    pub fn deadline(&self) -> Option<Instant> {
        let requests = self.lock();
        let current = requests
            .current
            .iter()
            .map(|visitor| visitor.deadline)
            .max();
        current.or_else(|| requests.last.as_ref().map(|visitor| visitor.deadline))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Requests> {
        // A panic while the lock was held leaves the list as it was: still usable.
        self.requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for Presence {
    fn drop(&mut self) {
        let mut requests = self.occupancy.lock();
        requests
            .current
            .retain(|visitor| visitor.request_id != self.request_id);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn visitor(request_id: u64, seconds: u64) -> Visitor {
        Visitor {
            request_id,
            deadline: Instant::now() + Duration::from_secs(seconds),
            span: Span::none(),
        }
    }

    #[test]
    fn one_request_owns_the_instance_until_another_arrives() {
        let occupancy = Occupancy::new(7);
        assert!(occupancy.sole().is_none() && occupancy.deadline().is_none());
        let first = occupancy.enter(visitor(1, 10));
        assert_eq!(occupancy.sole().map(|v| v.request_id), Some(1));
        let second = occupancy.enter(visitor(2, 30));
        assert!(occupancy.sole().is_none(), "two at once belong to neither");
        let latest = occupancy.deadline().unwrap();
        assert!(
            latest > Instant::now() + Duration::from_secs(20),
            "the later deadline"
        );
        drop(first);
        assert_eq!(occupancy.sole().map(|v| v.request_id), Some(2));
        drop(second);
        // Answered, perhaps still streaming its body: the guest still works for it.
        assert_eq!(occupancy.sole().map(|v| v.request_id), Some(2));
        assert_eq!(occupancy.instance_id(), 7);
    }
}
