//! A secondary's side: its listening socket, taken from stdin, and the control
//! requests the primary sends over stdout: reload, upload, new reference, metrics, stop.

use std::os::fd::AsFd;
use std::sync::Arc;

use anyhow::{Context, Result};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, UnixStream};
use tokio::sync::Notify;

use super::protocol::{
    METRICS_PATH, ORIGIN_HEADER, REFERENCE_PATH, RELOAD_PATH, STOP_PATH, UPLOAD_PATH,
};
use crate::load::registry::ComponentReference;
use crate::observe::metrics::Metrics;
use crate::swap::active::{ActiveComponent, SwapError, Trigger};

/// The listening socket the primary gave this secondary, as its stdin.
pub fn inherited_listener() -> Result<TcpListener> {
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
        Err(SwapError::Superseded) => answer(StatusCode::CONFLICT, "superseded".into()),
    }
}

fn answer(status: StatusCode, text: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    response
}
