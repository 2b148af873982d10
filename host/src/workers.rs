//! `--workers N`: N serving processes on one port, so that guests running on different
//! cores never share an address space.
//!
//! Why processes rather than threads: a guest's first write to a page of its
//! copy-on-write heap image, and every `madvise` that recycles a pool slot, changes the
//! page tables of the whole process, and the kernel then interrupts every other core
//! running that process to flush its TLB. On a 2-core VM a Python guest at 80
//! connections spent half of its CPU time in those interrupts. Each process here runs
//! one async thread, so its page-table changes interrupt no other core.
//!
//! The process the user started is the primary. It loads the component, binds the port,
//! starts the secondaries (the same executable and arguments, told their role by
//! [`SECONDARY_ENV`]) and serves like any of them. Each secondary gets its listening
//! socket as its stdin: a socket of its own bound to the same port with `SO_REUSEPORT`,
//! so the kernel spreads new connections evenly, or, where that is refused (gVisor), a
//! copy of the primary's, which every process accepts from. Its stdout is the primary's
//! private HTTP/1 connection to it. Only the primary has the admin and metrics
//! endpoints and `--watch`; over that connection it has every secondary make each
//! change it made (reload, upload, new reference), reads their metrics to serve the
//! sum, and tells them to stop when it stops. A secondary also stops when that
//! connection closes, so none outlives the primary; the primary stops, with an error,
//! when a secondary exits on its own.

use std::os::fd::{AsFd, OwnedFd};
use std::process::{ExitStatus, Stdio};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, UnixStream};
use tokio::process::Command;
use tokio::sync::{Mutex, Notify, mpsc};

use crate::metrics::Metrics;
use crate::registry::ComponentReference;
use crate::reload::{ActiveComponent, SwapError, Trigger};

/// Set in a secondary's environment: its number. It is internal to the host, not a
/// setting.
pub const SECONDARY_ENV: &str = "WASI_HOST_SECONDARY";

/// Control paths a secondary answers on its stdin and stdout.
const RELOAD_PATH: &str = "/reload";
const UPLOAD_PATH: &str = "/component";
const REFERENCE_PATH: &str = "/reference";
const METRICS_PATH: &str = "/metrics";
const STOP_PATH: &str = "/stop";

/// The header that carries an upload's origin to a secondary.
const ORIGIN_HEADER: &str = "x-wasi-host-origin";

/// How long after its own drain time the primary waits for secondaries to exit.
const EXIT_GRACE: Duration = Duration::from_secs(1);

/// How many serving processes to run: a number, or `auto` for one per CPU this process
/// may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerCount(pub u32);

impl FromStr for WorkerCount {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Self> {
        let count = if text == "auto" {
            std::thread::available_parallelism()
                .map_or(1, |cores| u32::try_from(cores.get()).unwrap_or(u32::MAX))
        } else {
            text.parse()
                .map_err(|_| anyhow!("expected a number of workers or `auto`"))?
        };
        if count == 0 {
            bail!("at least one worker is needed");
        }
        Ok(Self(count))
    }
}

/// What a secondary is told by the primary that started it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecondaryRole {
    /// 2 for the first secondary; the primary is 1.
    pub number: u32,
}

impl SecondaryRole {
    /// The role in this process's environment, if it was started as a secondary.
    pub fn from_env() -> Result<Option<Self>> {
        let Some(value) = std::env::var_os(SECONDARY_ENV) else {
            return Ok(None);
        };
        let value = value.to_string_lossy();
        match value.parse() {
            Ok(number) if number >= 2 => Ok(Some(Self { number })),
            _ => bail!("${SECONDARY_ENV} is `{value}`, not a worker number"),
        }
    }

    /// The listening socket the primary gave this secondary, as its stdin.
    pub fn listener(&self) -> Result<TcpListener> {
        let socket = std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .context("cannot take the listening socket from stdin")?;
        let listener = std::net::TcpListener::from(socket);
        listener
            .set_nonblocking(true)
            .and_then(|()| TcpListener::from_std(listener))
            .context("stdin is not the listening socket a primary worker passes")
    }
}

/// A change the primary made, for the secondaries to make too.
pub enum Change {
    /// Read the code again from its source.
    Reload,
    /// Serve uploaded bytes.
    Upload {
        /// The component, as uploaded.
        bytes: Vec<u8>,
        /// Where it came from, for the log and the admin `GET`.
        origin: String,
    },
    /// Pull and serve this reference.
    Reference(ComponentReference),
}

impl Change {
    fn request(&self) -> Request<Full<Bytes>> {
        let builder = Request::builder();
        let request = match self {
            Change::Reload => builder
                .method(Method::POST)
                .uri(RELOAD_PATH)
                .body(Full::default()),
            Change::Upload { bytes, origin } => builder
                .method(Method::PUT)
                .uri(UPLOAD_PATH)
                .header(ORIGIN_HEADER, origin)
                .body(Full::new(Bytes::from(bytes.clone()))),
            Change::Reference(reference) => builder
                .method(Method::PUT)
                .uri(REFERENCE_PATH)
                .body(Full::new(Bytes::from(reference.to_string()))),
        };
        request.expect("control requests are well formed")
    }
}

/// The primary's connection to one secondary.
struct Link {
    number: u32,
    sender: Mutex<SendRequest<Full<Bytes>>>,
}

impl Link {
    /// Sends `request` and reads the whole answer.
    async fn send(&self, request: Request<Full<Bytes>>) -> Result<(StatusCode, String)> {
        let mut sender = self.sender.lock().await;
        sender.ready().await?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}

/// The secondaries, as the primary reaches them.
pub struct Followers {
    links: Vec<Link>,
}

impl Followers {
    /// Has every secondary make `change`, which the primary has just made. A secondary
    /// that cannot is logged: it keeps serving its current version.
    pub async fn follow(&self, change: &Change) {
        for link in &self.links {
            match link.send(change.request()).await {
                Ok((StatusCode::OK, outcome)) => {
                    tracing::info!("worker {} follows: {outcome}", link.number);
                }
                Ok((status, message)) => tracing::error!(
                    "worker {} did not follow the change ({status}): {message}",
                    link.number
                ),
                Err(error) => tracing::error!(
                    "worker {} did not follow the change: {error:#}",
                    link.number
                ),
            }
        }
    }

    /// Every secondary's metrics, in the OpenMetrics text format.
    pub async fn metrics(&self) -> Result<Vec<String>> {
        let mut texts = Vec::with_capacity(self.links.len());
        for link in &self.links {
            let request = Request::get(METRICS_PATH)
                .body(Full::default())
                .expect("a well-formed request");
            let (status, text) = link
                .send(request)
                .await
                .with_context(|| format!("worker {} did not send its metrics", link.number))?;
            if status != StatusCode::OK {
                bail!("worker {} answered {status} for its metrics", link.number);
            }
            texts.push(text);
        }
        Ok(texts)
    }

    async fn stop(&self) {
        for link in &self.links {
            let request = Request::post(STOP_PATH)
                .body(Full::default())
                .expect("a well-formed request");
            // One that already stopped has closed its connection: nothing more to do.
            if let Err(error) = link.send(request).await {
                tracing::debug!("worker {} did not take the stop: {error:#}", link.number);
            }
        }
    }
}

/// The secondaries the primary started.
pub struct Secondaries {
    followers: Arc<Followers>,
    exits: mpsc::UnboundedReceiver<(u32, std::io::Result<ExitStatus>)>,
    running: usize,
}

impl Secondaries {
    /// Starts a secondary for each of `listeners`, numbered from 2: the sockets they
    /// accept connections from.
    pub async fn start(listeners: Vec<OwnedFd>) -> Result<Self> {
        let executable =
            std::env::current_exe().context("cannot find this executable to start workers")?;
        let count = listeners.len() + 1;
        let (exits_tx, exits) = mpsc::unbounded_channel();
        let mut links = Vec::new();
        for (number, listener) in (2..).zip(listeners) {
            let (control, theirs) =
                std::os::unix::net::UnixStream::pair().context("cannot create a socket pair")?;
            let mut child = Command::new(&executable)
                .args(std::env::args_os().skip(1))
                .env(SECONDARY_ENV, number.to_string())
                .stdin(Stdio::from(listener))
                .stdout(Stdio::from(OwnedFd::from(theirs)))
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("cannot start worker {number}"))?;
            control
                .set_nonblocking(true)
                .context("cannot set up a control socket")?;
            let control =
                UnixStream::from_std(control).context("cannot set up a control socket")?;
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(control))
                .await
                .with_context(|| format!("cannot reach worker {number}"))?;
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!("control connection to worker {number} failed: {error}");
                }
            });
            let exits_tx = exits_tx.clone();
            let pid = child.id().unwrap_or_default();
            tokio::spawn(async move {
                let _ = exits_tx.send((number, child.wait().await));
            });
            tracing::info!("started worker {number} of {count} (pid {pid})");
            links.push(Link {
                number,
                sender: Mutex::new(sender),
            });
        }
        let running = links.len();
        Ok(Self {
            followers: Arc::new(Followers { links }),
            exits,
            running,
        })
    }

    /// The secondaries, to tell them of changes and read their metrics.
    pub fn followers(&self) -> Arc<Followers> {
        self.followers.clone()
    }

    /// Resolves when a secondary exits while the primary still serves: an error, since
    /// its share of the connections would go unanswered.
    pub async fn exited(&mut self) -> anyhow::Error {
        match self.exits.recv().await {
            Some((number, status)) => {
                self.running -= 1;
                match status {
                    Ok(status) => anyhow!("worker {number} exited ({status}); stopping"),
                    Err(error) => anyhow!("lost worker {number}: {error}; stopping"),
                }
            }
            None => std::future::pending().await,
        }
    }

    /// Tells every secondary to drain and stop, and waits for them up to `drain` and a
    /// moment more. Fails if one does not exit cleanly in time.
    pub async fn stop(mut self, drain: Duration) -> Result<()> {
        self.followers.stop().await;
        let all_exited = async {
            let mut failed = Vec::new();
            while self.running > 0 {
                let Some((number, status)) = self.exits.recv().await else {
                    break;
                };
                self.running -= 1;
                match status {
                    Ok(status) if status.success() => {}
                    Ok(status) => failed.push(format!("worker {number} exited ({status})")),
                    Err(error) => failed.push(format!("lost worker {number}: {error}")),
                }
            }
            failed
        };
        match tokio::time::timeout(drain + EXIT_GRACE, all_exited).await {
            Ok(failed) if failed.is_empty() => Ok(()),
            Ok(failed) => bail!("{}", failed.join("; ")),
            // The runtime's shutdown drops the exit watchers, whose children are killed.
            Err(_) => bail!("{} worker(s) did not stop in time", self.running),
        }
    }
}

/// Serves the primary's control requests on this process's stdout, the primary's end of
/// a socket pair, until the primary asks this secondary to stop or goes away; then
/// `stop` is notified.
pub fn serve_control(
    active: Arc<ActiveComponent>,
    metrics: Arc<Metrics>,
    stop: Arc<Notify>,
) -> Result<()> {
    let socket = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .map(std::os::unix::net::UnixStream::from)
        .and_then(|control| {
            control.set_nonblocking(true)?;
            UnixStream::from_std(control)
        })
        .context("stdout is not the control socket a primary worker passes")?;
    let connection = TokioIo::new(socket);
    let stop_requested = stop.clone();
    let service = service_fn(move |request: Request<Incoming>| {
        let (active, metrics, stop) = (active.clone(), metrics.clone(), stop_requested.clone());
        async move {
            Ok::<_, std::convert::Infallible>(control(&active, &metrics, &stop, request).await)
        }
    });
    tokio::spawn(async move {
        if let Err(error) = hyper::server::conn::http1::Builder::new()
            .serve_connection(connection, service)
            .await
        {
            tracing::warn!("the primary's control connection failed: {error}");
        }
        stop.notify_one();
    });
    Ok(())
}

/// Answers one control request.
async fn control(
    active: &ActiveComponent,
    metrics: &Metrics,
    stop: &Notify,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (head, body) = request.into_parts();
    let outcome = match (head.method.clone(), head.uri.path()) {
        (Method::GET, METRICS_PATH) => return answer(StatusCode::OK, metrics.encode()),
        (Method::POST, STOP_PATH) => {
            stop.notify_one();
            return answer(StatusCode::OK, "stopping".into());
        }
        (Method::POST, RELOAD_PATH) => active.reload(Trigger::Primary).await,
        (Method::PUT, UPLOAD_PATH | REFERENCE_PATH) => {
            let bytes = match body.collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(error) => return answer(StatusCode::BAD_REQUEST, error.to_string()),
            };
            if head.uri.path() == UPLOAD_PATH {
                let origin = head
                    .headers
                    .get(ORIGIN_HEADER)
                    .and_then(|value| value.to_str().ok())
                    .unwrap_or("upload")
                    .to_owned();
                active.upload(Vec::from(bytes), origin).await
            } else {
                match String::from_utf8_lossy(&bytes).parse::<ComponentReference>() {
                    Ok(reference) => active.pull_reference(reference).await,
                    Err(error) => return answer(StatusCode::BAD_REQUEST, format!("{error:#}")),
                }
            }
        }
        _ => return answer(StatusCode::NOT_FOUND, "no such control request".into()),
    };
    match outcome {
        Ok(version) => answer(StatusCode::OK, format!("generation {}", version.generation)),
        Err(SwapError::Unchanged) => answer(
            StatusCode::OK,
            format!("generation {}, unchanged", active.current().generation),
        ),
        Err(SwapError::Rejected(error)) => {
            answer(StatusCode::UNPROCESSABLE_ENTITY, format!("{error:#}"))
        }
    }
}

fn answer(status: StatusCode, text: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_counts() {
        assert_eq!("3".parse::<WorkerCount>().unwrap(), WorkerCount(3));
        assert!("auto".parse::<WorkerCount>().unwrap().0 >= 1);
        for bad in ["0", "-1", "many", ""] {
            assert!(bad.parse::<WorkerCount>().is_err(), "{bad}");
        }
    }
}
