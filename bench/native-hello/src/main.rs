//! The native baseline: the hello guest's behaviour (`GET /` answers `Hello, World!`
//! as `text/plain; charset=utf-8`, anything else `404`) on plain hyper 1 and tokio,
//! with the same runtime and connection settings as wasi-host, and no WebAssembly.
//!
//! Usage: `native-hello [--addr 127.0.0.1:PORT]` (default 127.0.0.1:8080). Logs
//! `listening on http://ADDR/` on stderr once bound, like wasi-host.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

fn hello(request: Request<Incoming>) -> Response<Full<Bytes>> {
    let (status, body) = if request.method() == Method::GET && request.uri().path() == "/" {
        (StatusCode::OK, "Hello, World!")
    } else {
        (StatusCode::NOT_FOUND, "Not Found")
    };
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn parse_addr() -> Result<SocketAddr, String> {
    let mut args = std::env::args().skip(1);
    match (args.next().as_deref(), args.next()) {
        (None, _) => Ok(SocketAddr::from(([127, 0, 0, 1], 8080))),
        (Some("--addr"), Some(addr)) => addr.parse().map_err(|e| format!("bad --addr: {e}")),
        _ => Err("usage: native-hello [--addr IP:PORT]".to_string()),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = parse_addr()?;
    let listener = TcpListener::bind(addr).await?;
    eprintln!("listening on http://{}/", listener.local_addr()?);
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                eprintln!("accept failed: {error}");
                continue;
            }
        };
        // Same as wasi-host: small responses must not wait for the client's delayed ACK.
        stream.set_nodelay(true)?;
        let builder = builder.clone();
        tokio::spawn(async move {
            let service = service_fn(|request| async { Ok::<_, Infallible>(hello(request)) });
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
