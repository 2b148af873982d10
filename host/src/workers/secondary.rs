//! A secondary's side: its listening socket, taken from stdin, and the control
//! requests the primary sends over stdout: load a version, publish it or drop it, say
//! which version it serves, metrics, stop.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, OnceLock};

use anyhow::{Context, Result, anyhow};
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tokio::sync::{Mutex, Notify};

use super::protocol::{
    CODE_HEADER, CODE_PRECOMPILED, CODE_READ_AGAIN, GENERATION_HEADER, METRICS_PATH, ORIGIN_HEADER,
    PUBLISH_PATH, SHA256_HEADER, STAGED_PATH, STOP_PATH, VERSION_PATH,
};
use crate::load::registry::{LazyRegistry, RegistryConfig};
use crate::load::source::AppSource;
use crate::observe::metrics::Metrics;
use crate::swap::active::{ActiveComponent, FollowerVersion, Version};
use crate::swap::loader::{Handoff, Loader};

/// The listening socket the primary gave this secondary, as its stdin. The primary
/// bound it but left it to this secondary to listen once it has its first version, so
/// that no connection waits for a worker still loading.
pub fn inherited_socket() -> Result<OwnedFd> {
    std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .context("cannot take the listening socket from stdin")
}

/// What this secondary serves once the primary has handed it its first version.
pub struct Following {
    pub active: Arc<ActiveComponent>,
    /// Notified when the primary asks this worker to stop, or goes away.
    pub stop: Arc<Notify>,
}

/// What a secondary follows the primary with.
struct Follower {
    number: u32,
    loader: Arc<Loader>,
    /// Where a Spin application is read again.
    source: AppSource,
    registry: RegistryConfig,
    metrics: Arc<Metrics>,
    /// The version loaded by the last `PUT`, not yet published.
    staged: Mutex<Option<Version>>,
    /// The version served, from the first publish on.
    active: OnceLock<Arc<ActiveComponent>>,
    first_published: Notify,
    stop: Arc<Notify>,
}

/// Serves the primary's control requests on this process's stdout, the primary's end of
/// a socket pair, and waits for the first version the primary hands over. `None` if the
/// primary asked this secondary to stop, or went away, before that.
pub async fn follow(
    number: u32,
    loader: Arc<Loader>,
    source: AppSource,
    registry: RegistryConfig,
    metrics: Arc<Metrics>,
) -> Result<Option<Following>> {
    let socket = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .map(std::os::unix::net::UnixStream::from)
        .and_then(|control| {
            control.set_nonblocking(true)?;
            UnixStream::from_std(control)
        })
        .context("stdout is not the control socket a primary worker passes")?;
    let follower = Arc::new(Follower {
        number,
        loader,
        source,
        registry,
        metrics,
        staged: Mutex::new(None),
        active: OnceLock::new(),
        first_published: Notify::new(),
        stop: Arc::new(Notify::new()),
    });
    let serving = follower.clone();
    let service = service_fn(move |request: Request<Incoming>| {
        let follower = serving.clone();
        async move { Ok::<_, std::convert::Infallible>(follower.control(request).await) }
    });
    let connection_closed = follower.clone();
    tokio::spawn(async move {
        if let Err(error) = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(socket), service)
            .await
        {
            tracing::warn!("the primary's control connection failed: {error}");
        }
        connection_closed.stop.notify_one();
    });
    tokio::select! {
        () = follower.first_published.notified() => {}
        () = follower.stop.notified() => return Ok(None),
    }
    let active = follower
        .active
        .get()
        .cloned()
        .context("published without a version")?;
    Ok(Some(Following {
        active,
        stop: follower.stop.clone(),
    }))
}

impl Follower {
    /// Answers one control request.
    async fn control(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let (head, body) = request.into_parts();
        match (head.method, head.uri.path()) {
            (Method::GET, METRICS_PATH) => answer(StatusCode::OK, self.metrics.encode()),
            (Method::GET, VERSION_PATH) => self.version(),
            (Method::POST, STOP_PATH) => {
                self.stop.notify_one();
                answer(StatusCode::OK, "stopping".into())
            }
            (Method::PUT, STAGED_PATH) => match body.collect().await {
                Ok(collected) => self.stage(&head.headers, collected.to_bytes()).await,
                Err(error) => answer(StatusCode::BAD_REQUEST, error.to_string()),
            },
            (Method::DELETE, STAGED_PATH) => {
                self.staged.lock().await.take();
                answer(StatusCode::OK, "dropped".into())
            }
            (Method::POST, PUBLISH_PATH) => self.publish().await,
            _ => answer(StatusCode::NOT_FOUND, "no such control request".into()),
        }
    }

    /// Loads the version the primary sent, to publish when it says so.
    async fn stage(&self, headers: &HeaderMap, body: Bytes) -> Response<Full<Bytes>> {
        let handoff = match handoff(headers, body) {
            Ok(handoff) => handoff,
            Err(error) => return answer(StatusCode::BAD_REQUEST, format!("{error:#}")),
        };
        let generation = handoff.generation;
        match Version::handed(&self.loader, handoff, self.source.clone()).await {
            Ok(version) => {
                *self.staged.lock().await = Some(version);
                answer(StatusCode::OK, format!("loaded generation {generation}"))
            }
            Err(error) => {
                tracing::error!("cannot load generation {generation}: {error:#}");
                answer(StatusCode::UNPROCESSABLE_ENTITY, format!("{error:#}"))
            }
        }
    }

    /// Serves the version loaded last.
    async fn publish(&self) -> Response<Full<Bytes>> {
        let Some(version) = self.staged.lock().await.take() else {
            return answer(StatusCode::CONFLICT, "no version loaded to publish".into());
        };
        let generation = version.generation;
        match self.active.get() {
            Some(active) => {
                active.publish_handed(version);
            }
            None => {
                // The primary read the same auth file moments ago; a failure here is rare.
                let registry = match LazyRegistry::new(self.registry.clone()) {
                    Ok(registry) => registry,
                    Err(error) => {
                        return answer(StatusCode::INTERNAL_SERVER_ERROR, format!("{error:#}"));
                    }
                };
                let active = ActiveComponent::following(
                    self.loader.clone(),
                    version,
                    self.source.clone(),
                    registry,
                    self.metrics.clone(),
                );
                let _ = self.active.set(Arc::new(active));
                self.first_published.notify_one();
            }
        }
        answer(StatusCode::OK, format!("generation {generation}"))
    }

    /// The version served, as JSON.
    fn version(&self) -> Response<Full<Bytes>> {
        let current = self.active.get().map(|active| active.current());
        let version = FollowerVersion {
            worker: self.number,
            generation: current.as_ref().map(|version| version.generation),
            sha256: current.and_then(|version| version.sha256.get().cloned()),
            error: None,
        };
        match serde_json::to_string(&version) {
            Ok(json) => answer(StatusCode::OK, json),
            Err(error) => answer(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()),
        }
    }
}

/// The version a `PUT` of [`STAGED_PATH`] describes.
fn handoff(headers: &HeaderMap, body: Bytes) -> Result<Handoff> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .with_context(|| format!("no `{name}` header"))
    };
    let artifact = match header(CODE_HEADER)? {
        CODE_PRECOMPILED => Some(body),
        CODE_READ_AGAIN => None,
        other => return Err(anyhow!("unknown code `{other}`")),
    };
    Ok(Handoff {
        generation: header(GENERATION_HEADER)?
            .parse()
            .context("the generation is not a number")?,
        sha256: header(SHA256_HEADER)?.to_owned(),
        origin: headers
            .get(ORIGIN_HEADER)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
            .with_context(|| format!("no `{ORIGIN_HEADER}` header"))?,
        artifact,
    })
}

fn answer(status: StatusCode, text: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    response
}
