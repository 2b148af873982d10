//! The primary's side: starting the secondaries, each with its socket and a control
//! connection, handing them every version (load it, then publish it, or drop it when
//! another could not load it), asking what they serve, reading their metrics, and
//! stopping them.

use std::os::fd::OwnedFd;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustix::process::{Pid, Signal, kill_process};
use tokio::net::UnixStream;
use tokio::process::Command;
use tokio::sync::{Mutex, mpsc};

use super::protocol::{
    CODE_HEADER, CODE_PRECOMPILED, CODE_READ_AGAIN, GENERATION_HEADER, METRICS_PATH, ORIGIN_HEADER,
    PUBLISH_PATH, SHA256_HEADER, STAGED_PATH, STOP_PATH, VERSION_PATH,
};
use crate::config::SECONDARY_ENV;
use crate::swap::active::{FollowerFuture, FollowerVersion, Followers};
use crate::swap::loader::Handoff;

/// How long after its own drain time the primary waits for secondaries to exit.
const EXIT_GRACE: Duration = Duration::from_secs(1);

/// The control request that has a secondary load `handoff`.
fn prepare_request(handoff: &Handoff) -> Request<Full<Bytes>> {
    let (code, body) = match &handoff.artifact {
        Some(artifact) => (CODE_PRECOMPILED, artifact.clone()),
        None => (CODE_READ_AGAIN, Bytes::new()),
    };
    // Paths need not be ASCII; the secondary reads the bytes back as UTF-8.
    let origin = HeaderValue::from_bytes(handoff.origin.as_bytes())
        .unwrap_or_else(|_| HeaderValue::from_static("an origin with control characters"));
    Request::put(STAGED_PATH)
        .header(ORIGIN_HEADER, origin)
        .header(GENERATION_HEADER, handoff.generation)
        .header(SHA256_HEADER, &handoff.sha256)
        .header(CODE_HEADER, code)
        .body(Full::new(body))
        .expect("control requests are well formed")
}

/// A control request with no body.
fn bare_request(method: Method, path: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri(path)
        .body(Full::default())
        .expect("control requests are well formed")
}

/// The primary's connection to one secondary.
struct Link {
    number: u32,
    pid: Option<Pid>,
    sender: Arc<Mutex<SendRequest<Full<Bytes>>>>,
    /// Longest one exchange may take, waiting for the connection included.
    timeout: Duration,
}

impl Link {
    /// Sends `request` and reads the whole answer, within the link's timeout.
    async fn send(&self, request: Request<Full<Bytes>>) -> Result<(StatusCode, String)> {
        // An exchange given up on still runs to its end: dropped midway, it would close
        // the control connection, which the secondary takes for the primary gone.
        let exchange = tokio::spawn(exchange(self.sender.clone(), request));
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(finished) => finished.context("the control task failed")?,
            Err(_elapsed) => bail!(
                "no answer within {} (--worker-control-timeout)",
                humantime::format_duration(self.timeout)
            ),
        }
    }

    fn kill(&self) {
        let Some(pid) = self.pid else { return };
        if let Err(error) = kill_process(pid, Signal::KILL) {
            tracing::warn!("cannot kill worker {}: {error}", self.number);
        }
    }
}

/// Sends `request` on `sender` once the answer to the one before has come, and reads
/// the whole answer.
async fn exchange(
    sender: Arc<Mutex<SendRequest<Full<Bytes>>>>,
    request: Request<Full<Bytes>>,
) -> Result<(StatusCode, String)> {
    let mut sender = sender.lock().await;
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// The secondaries, as the primary reaches them.
pub struct SecondaryLinks {
    links: Vec<Link>,
}

impl SecondaryLinks {
    /// Has every secondary load `handoff`, one after the other; on the first that
    /// cannot, has those that did drop it, and fails naming that one.
    async fn prepare_each(&self, handoff: &Handoff) -> Result<()> {
        for (index, link) in self.links.iter().enumerate() {
            let failure = match link.send(prepare_request(handoff)).await {
                Ok((StatusCode::OK, _)) => continue,
                Ok((status, message)) => format!("({status}) {message}"),
                Err(error) => format!("{error:#}"),
            };
            let failure = format!(
                "worker {} could not load generation {}: {failure}",
                link.number, handoff.generation
            );
            tracing::error!("{failure}");
            for prepared in &self.links[..index] {
                let discard = bare_request(Method::DELETE, STAGED_PATH);
                if let Err(error) = prepared.send(discard).await {
                    tracing::warn!("worker {} did not drop it: {error:#}", prepared.number);
                }
            }
            bail!("{failure}");
        }
        Ok(())
    }

    /// Has every secondary serve the version it loaded last. One that does not is
    /// killed: the host then stops, as for any lost worker, rather than serve two versions.
    async fn publish_each(&self) {
        for link in &self.links {
            let failure = match link.send(bare_request(Method::POST, PUBLISH_PATH)).await {
                Ok((StatusCode::OK, outcome)) => {
                    tracing::info!("worker {} follows: {outcome}", link.number);
                    continue;
                }
                Ok((status, message)) => format!("({status}) {message}"),
                Err(error) => format!("{error:#}"),
            };
            tracing::error!(
                "worker {} did not publish the new version: {failure}; stopping it, so \
                 that no two versions are served",
                link.number
            );
            link.kill();
        }
    }

    /// What every secondary says it serves.
    async fn versions_each(&self) -> Vec<FollowerVersion> {
        let mut versions = Vec::with_capacity(self.links.len());
        for link in &self.links {
            let asked = link.send(bare_request(Method::GET, VERSION_PATH)).await;
            let told = asked.and_then(|(status, text)| {
                ensure!(status == StatusCode::OK, "answered {status}: {text}");
                Ok(serde_json::from_str::<FollowerVersion>(&text)?)
            });
            versions.push(match told {
                Ok(version) => FollowerVersion {
                    worker: link.number,
                    ..version
                },
                Err(error) => FollowerVersion {
                    worker: link.number,
                    generation: None,
                    sha256: None,
                    error: Some(format!("{error:#}")),
                },
            });
        }
        versions
    }

    /// Every secondary's metrics, in the OpenMetrics text format.
    pub async fn metrics(&self) -> Result<Vec<String>> {
        let mut texts = Vec::with_capacity(self.links.len());
        for link in &self.links {
            let request = bare_request(Method::GET, METRICS_PATH);
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
            let request = bare_request(Method::POST, STOP_PATH);
            // One that already stopped has closed its connection: nothing more to do.
            if let Err(error) = link.send(request).await {
                tracing::debug!("worker {} did not take the stop: {error:#}", link.number);
            }
        }
    }
}

/// The secondaries the primary started.
pub struct Secondaries {
    followers: Arc<SecondaryLinks>,
    exits: mpsc::UnboundedReceiver<(u32, std::io::Result<ExitStatus>)>,
    running: usize,
}

impl Secondaries {
    /// Starts a secondary for each of `listeners`, numbered from 2: the sockets they
    /// accept connections from. Each answers the primary within `control_timeout`.
    pub async fn start(listeners: Vec<OwnedFd>, control_timeout: Duration) -> Result<Self> {
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
                pid: Pid::from_raw(i32::try_from(pid).unwrap_or_default()),
                sender: Arc::new(Mutex::new(sender)),
                timeout: control_timeout,
            });
        }
        let running = links.len();
        Ok(Self {
            followers: Arc::new(SecondaryLinks { links }),
            exits,
            running,
        })
    }

    /// The secondaries, to tell them of changes and read their metrics.
    pub fn followers(&self) -> Arc<SecondaryLinks> {
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

impl Followers for SecondaryLinks {
    fn prepare<'a>(&'a self, handoff: &'a Handoff) -> FollowerFuture<'a, Result<()>> {
        Box::pin(self.prepare_each(handoff))
    }

    fn publish(&self) -> FollowerFuture<'_, ()> {
        Box::pin(self.publish_each())
    }

    fn versions(&self) -> FollowerFuture<'_, Vec<FollowerVersion>> {
        Box::pin(self.versions_each())
    }
}
