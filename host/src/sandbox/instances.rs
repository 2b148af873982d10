//! How instances are made, reused and retired, for both WASI versions alike, through
//! wasmtime-wasi-http's `ProxyHandler`: a worker task per instance drives its store,
//! takes requests from a shared queue while [`ReusePolicy`] allows, and drops the
//! instance when it has been idle for long, has served its share, has a request past
//! its deadline, or failed, or when the client of the one request it serves went away.
//! A WASI 0.3 request counts against [`ReusePolicy::max_concurrent`] until its response
//! has ended, not only until its guest answered: a guest still streaming a body is still
//! serving it, and a trap cuts off every response the instance streams.
//! A failure (a trap, a memory cap reached) is the instance's:
//! every request it holds fails, and it is never used again.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant as StdInstant};

use atomic_waker::AtomicWaker;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use wasmtime::component::GuestTaskId;
use wasmtime::{Engine, Store, StoreContextMut};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::handler::{
    HandlerState, Instance, ProxyHandler, ProxyPre, ShouldAccept, WorkerExpiration, WorkerState,
    WorkerStatus,
};

use super::occupancy::{Occupancy, Presence, Visitor};
use super::store::{InstanceRecipe, InstanceState, new_store};
use crate::http::body::GuestSource;
use crate::observe::metrics::Metrics;
use crate::observe::telemetry::one_line;

/// Every instance gets a number, unique in the process, for the log.
static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(1);

/// The instances of one component of one version, and the queue requests wait in.
pub type InstancePool = ProxyHandler<Instances>;

/// How far one instance is reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReusePolicy {
    /// Requests one instance serves in all; 1 is a fresh instance per request.
    pub max_requests: usize,
    /// Requests one instance serves at once.
    pub max_concurrent: usize,
    /// How long an instance with nothing to do is kept.
    pub idle_timeout: Duration,
}

/// What the pool makes instances from.
pub struct Instances {
    engine: Engine,
    pre: ProxyPre<InstanceState>,
    recipe: InstanceRecipe,
    reuse: ReusePolicy,
    /// Longest a request may take; an instance still working on one past it is retired.
    request_timeout: Duration,
    metrics: Arc<Metrics>,
}

/// A request on its way into an instance.
#[derive(Debug, Clone)]
pub struct Ticket {
    pub visitor: Visitor,
    /// Cancelled when the request's client went away before the end of its response.
    abandoned: CancellationToken,
    /// Filled when the request lands in an instance.
    landed: Arc<OnceLock<Landing>>,
}

/// What an instance's requests share of its fate.
#[derive(Debug, Default)]
struct Health {
    /// Set when the instance failed: bodies it is still streaming end in an error
    /// rather than looking complete, and it takes no more requests.
    failed: AtomicBool,
    /// Requests landed in the instance whose response has not ended yet.
    open: AtomicUsize,
    /// Whether the instance serves a request until its body has ended, not only until
    /// the guest answered: a WASI 0.3 guest streams the body after `handle` returned, a
    /// 0.2 guest has written it all by then.
    serves_bodies: bool,
    /// The instance's worker, woken when a response ends if it serves bodies: it may
    /// take the next request.
    worker: AtomicWaker,
}

/// A request's place in the instance it landed in, held until its response has ended
/// (or it got none).
#[derive(Debug, Clone)]
pub struct Landing(Arc<Landed>);

#[derive(Debug)]
struct Landed(Arc<Health>);

impl Landing {
    fn new(health: &Arc<Health>) -> Self {
        health.open.fetch_add(1, Ordering::AcqRel);
        Self(Arc::new(Landed(health.clone())))
    }
}

impl Drop for Landed {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        if self.0.serves_bodies {
            self.0.worker.wake();
        }
    }
}

impl GuestSource for Landing {
    fn failed(&self) -> bool {
        self.0.0.failed.load(Ordering::Acquire)
    }
}

impl Ticket {
    pub fn new(visitor: Visitor, abandoned: CancellationToken) -> Self {
        Self {
            visitor,
            abandoned,
            landed: Arc::new(OnceLock::new()),
        }
    }

    /// The request's place in the instance it landed in, once it has.
    pub fn landing(&self) -> Option<Landing> {
        self.landed.get().cloned()
    }

    /// Whether the instance the request landed in has failed.
    pub fn instance_failed(&self) -> bool {
        self.landed.get().is_some_and(GuestSource::failed)
    }

    /// Retires the instance the request landed in: its guest trapped while serving it.
    pub fn fail_instance(&self) {
        if let Some(landing) = self.landed.get() {
            landing.0.0.failed.store(true, Ordering::Release);
        }
    }
}

impl Instances {
    pub fn pool(
        engine: Engine,
        pre: ProxyPre<InstanceState>,
        recipe: InstanceRecipe,
        reuse: ReusePolicy,
        request_timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> InstancePool {
        ProxyHandler::new(Self {
            engine,
            pre,
            recipe,
            reuse,
            request_timeout,
            metrics,
        })
    }
}

impl HandlerState for Instances {
    type StoreData = InstanceState;
    type WorkerExpiration = Expiry;
    type WorkerState = Worker;

    async fn instantiate(&self) -> wasmtime::Result<Instance<InstanceState, Expiry, Worker>> {
        let id = NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed);
        let occupancy = Occupancy::new(id);
        let state =
            InstanceState::new(&self.recipe, &occupancy).map_err(wasmtime::Error::from_anyhow)?;
        let mut store = new_store(&self.engine, state);
        let client = ClientWatch::default();
        let health = Arc::new(Health {
            serves_bodies: matches!(self.pre, ProxyPre::P3(_)),
            ..Health::default()
        });
        let instantiating = StdInstant::now();
        let proxy = self.pre.instantiate_async(&mut store).await?;
        self.metrics.instantiated(instantiating.elapsed());
        self.metrics.instance_started();
        Ok(Instance {
            store,
            proxy,
            view: <InstanceState as WasiHttpView>::http,
            expiration: Expiry {
                idle_timeout: self.reuse.idle_timeout,
                request_timeout: self.request_timeout,
                sleep: Box::pin(tokio::time::sleep(self.request_timeout)),
                client: client.clone(),
                health: health.clone(),
            },
            state: Worker {
                occupancy,
                client,
                health,
                reuse: self.reuse,
                metrics: self.metrics.clone(),
            },
        })
    }
}

/// One instance's part in the pool.
pub struct Worker {
    occupancy: Arc<Occupancy>,
    client: ClientWatch,
    health: Arc<Health>,
    reuse: ReusePolicy,
    metrics: Arc<Metrics>,
}

impl WorkerState for Worker {
    type StoreData = InstanceState;
    type RequestData = Ticket;

    fn should_accept_request(&self, concurrent: usize, total: usize) -> ShouldAccept {
        // `concurrent` counts the guest calls still to answer; a request whose client
        // went away is no longer open, but its guest may still be working.
        let open = self.health.open.load(Ordering::Acquire);
        let serving = if self.health.serves_bodies {
            concurrent.max(open)
        } else {
            concurrent
        };
        if self.health.failed.load(Ordering::Acquire) || total >= self.reuse.max_requests {
            ShouldAccept::Never
        } else if serving >= self.reuse.max_concurrent {
            ShouldAccept::No
        } else {
            ShouldAccept::Yes
        }
    }

    fn on_request_start(
        &self,
        _store: StoreContextMut<'_, InstanceState>,
        ticket: Ticket,
        _task: GuestTaskId,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + Sync>> {
        let _ = ticket.landed.set(Landing::new(&self.health));
        let deadline = ticket.visitor.deadline;
        // An instance serving requests one at a time works for this client alone, and
        // is stopped when the client goes away. One serving several at once finishes
        // the others.
        if self.reuse.max_concurrent == 1 {
            *lock(&self.client) = Some(Box::pin(ticket.abandoned.cancelled_owned()));
        }
        let presence: Presence = self.occupancy.enter(ticket.visitor);
        // The request is the instance's until it is answered or its deadline passes,
        // when this future ends.
        Box::pin(async move {
            let _presence = presence;
            tokio::time::sleep_until(deadline).await;
        })
    }

    fn drop(&self, store: Store<InstanceState>, result: wasmtime::Result<()>) {
        let instance_id = self.occupancy.instance_id();
        match result {
            Ok(()) => tracing::debug!(instance_id, "instance retired"),
            Err(error) => {
                // Before the store goes, so that a body it was streaming ends in an error.
                self.health.failed.store(true, Ordering::Release);
                let error = one_line(&format!("{error:#}"));
                tracing::warn!(instance_id, "instance retired after a failure: {error}");
            }
        }
        drop(store);
        self.metrics.instance_stopped();
    }
}

/// When an instance is dropped: idle for [`ReusePolicy::idle_timeout`], serving alone a
/// request whose client went away, or working on a request for longer than the request
/// timeout (a guest that computes without end is stopped this way, since the epoch
/// callback makes it yield).
pub struct Expiry {
    idle_timeout: Duration,
    request_timeout: Duration,
    sleep: Pin<Box<Sleep>>,
    client: ClientWatch,
    health: Arc<Health>,
}

/// Ready when the client of the request an instance serves alone has gone away. It is
/// watched by the instance's expiry, which is polled even while the guest computes.
type ClientWatch = Arc<Mutex<Option<Pin<Box<WaitForCancellationFutureOwned>>>>>;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl WorkerExpiration for Expiry {
    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        status: WorkerStatus,
        start: StdInstant,
    ) -> Poll<()> {
        // Polled from outside the guest's event loop whenever it waits: the place a
        // response's end can wake the worker to take another request.
        self.health.worker.register(cx.waker());
        if let Some(client_gone) = lock(&self.client).as_mut()
            && client_gone.as_mut().poll(cx).is_ready()
        {
            tracing::debug!("the client went away; stopping its instance");
            return Poll::Ready(());
        }
        let timeout = match status {
            WorkerStatus::Idle => self.idle_timeout,
            WorkerStatus::Requests | WorkerStatus::PostReturn => self.request_timeout,
        };
        let deadline = Instant::from_std(start + timeout);
        if self.sleep.deadline() != deadline {
            self.sleep.as_mut().reset(deadline);
        }
        self.sleep.as_mut().poll(cx)
    }
}
