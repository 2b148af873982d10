//! A small HTTP/1 server on 127.0.0.1 standing in for a Google endpoint a test needs
//! (the metadata server, a JWKS URL): it answers each request with what the test's
//! function returns and keeps every request's URI and headers.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// What the server received: each request's URI and headers.
type Received = Arc<Mutex<Vec<(Uri, HeaderMap)>>>;

/// A running fake, stopped with the test's runtime.
pub struct FakeServer {
    addr: SocketAddr,
    received: Received,
}

impl FakeServer {
    /// Serves `answer(uri, headers)`'s status and body for every request.
    pub async fn start<F>(answer: F) -> Self
    where
        F: Fn(&Uri, &HeaderMap) -> (StatusCode, String) + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let received: Received = Arc::default();
        let (answer, seen) = (Arc::new(answer), received.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (answer, seen) = (answer.clone(), seen.clone());
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let (status, body) = (*answer)(request.uri(), request.headers());
                    let entry = (request.uri().clone(), request.headers().clone());
                    seen.lock().unwrap().push(entry);
                    let mut response = Response::new(Full::new(Bytes::from(body)));
                    *response.status_mut() = status;
                    async move { Ok::<_, Infallible>(response) }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        Self { addr, received }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Every request received so far.
    pub fn received(&self) -> Vec<(Uri, HeaderMap)> {
        self.received.lock().unwrap().clone()
    }
}
