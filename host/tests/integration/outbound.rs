//! Outbound HTTP from guests: denied by default, allowed by pattern, never to a private
//! address through a wildcard, with the header rules, every limit, and pooled
//! connections. The testbed's `/fetch?url=` route makes the call and answers with the
//! upstream's status and body, or `502` and the failure; the upstreams are small hyper
//! servers on 127.0.0.1 started by each test.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use reqwest::StatusCode;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpSocket};

use crate::test_ca::TestCa;
use crate::util::{Reply, TestServer, assert_still_serving, client, guests, send, serve_refused};

/// What the upstream answers.
#[derive(Clone, Copy)]
pub enum UpstreamReply {
    /// `200` with [`UPSTREAM_BODY`].
    Hello,
    /// [`UpstreamReply::Hello`] after a pause.
    After(Duration),
    /// `200` with `len` bytes of [`pattern`], chunked unless `declared`.
    Large { len: usize, declared: bool },
    /// `200` at once, then one byte every 100 ms, forever.
    Trickle,
    /// [`UpstreamReply::Hello`] with these headers.
    WithHeaders(&'static [(&'static str, &'static str)]),
}

pub const UPSTREAM_BODY: &str = "hello from upstream";

/// A local upstream that counts its TCP connections and keeps every request's headers.
pub struct Upstream {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<HeaderMap>>>,
}

impl Upstream {
    pub async fn start(reply: UpstreamReply) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("upstream address");
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (accepted, seen) = (connections.clone(), requests.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                accepted.fetch_add(1, Ordering::SeqCst);
                let seen = seen.clone();
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    seen.lock().unwrap().push(request.headers().clone());
                    respond(reply)
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        Self {
            addr,
            connections,
            requests,
        }
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// The headers of every request received so far.
    pub fn requests(&self) -> Vec<HeaderMap> {
        self.requests.lock().unwrap().clone()
    }
}

async fn respond(reply: UpstreamReply) -> Result<Response<BoxBody<Bytes, Infallible>>, Infallible> {
    let body = match reply {
        UpstreamReply::Hello => Full::new(Bytes::from(UPSTREAM_BODY)).boxed(),
        UpstreamReply::After(pause) => {
            tokio::time::sleep(pause).await;
            Full::new(Bytes::from(UPSTREAM_BODY)).boxed()
        }
        UpstreamReply::Large { len, declared } => {
            let bytes = Bytes::from(pattern(len));
            if declared {
                Full::new(bytes).boxed()
            } else {
                let chunks = (0..len)
                    .step_by(65536)
                    .map(move |start| Ok(Frame::data(bytes.slice(start..len.min(start + 65536)))));
                StreamBody::new(futures_util::stream::iter(chunks)).boxed()
            }
        }
        UpstreamReply::Trickle => {
            let bytes = futures_util::stream::unfold((), |()| async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Some((Ok(Frame::data(Bytes::from_static(b"."))), ()))
            });
            StreamBody::new(bytes).boxed()
        }
        UpstreamReply::WithHeaders(headers) => {
            let mut response = Response::new(Full::new(Bytes::from(UPSTREAM_BODY)).boxed());
            for (name, value) in headers {
                response
                    .headers_mut()
                    .insert(*name, http::HeaderValue::from_static(value));
            }
            return Ok(response);
        }
    };
    Ok(Response::new(body))
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Calls `/fetch?QUERY` with extra request headers.
pub async fn fetch_with(server: &TestServer, query: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = client().get(server.url(&format!("/fetch?{query}")));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    send(request).await
}

/// Calls `/fetch?QUERY` and returns the status and the body as text.
async fn fetch_query(server: &TestServer, query: &str) -> (StatusCode, String) {
    let reply = fetch_with(server, query, &[]).await;
    (
        reply.status,
        String::from_utf8_lossy(&reply.body).into_owned(),
    )
}

/// Asks the guest to fetch `url` and returns the status and the body as text.
pub async fn fetch(server: &TestServer, url: &str) -> (StatusCode, String) {
    fetch_query(server, &format!("url={url}")).await
}

/// Fetches `url` and checks that the guest saw the call fail with `failure`.
async fn assert_fails(server: &TestServer, url: &str, failure: &str) {
    let (status, body) = fetch(server, url).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{url}: {body}");
    assert_eq!(body, failure, "{url}");
}

#[tokio::test]
async fn denied_by_default_and_logged_with_the_request() {
    let upstream = Upstream::start(UpstreamReply::Hello).await;
    let server = TestServer::start(&guests().testbed);
    server.assert_logged("outbound: denied (no --allow-outbound)");

    assert_fails(&server, &upstream.origin(), "ErrorCode::HttpRequestDenied").await;
    let refusal = format!(
        "outbound request refused: GET {}: no --allow-outbound pattern matches",
        upstream.origin()
    );
    server.assert_logged(&refusal);
    let log = server.log();
    let line = log
        .lines()
        .find(|line| line.contains(&refusal))
        .expect("logged");
    assert!(
        line.contains("WARN") && line.contains("request_id=1"),
        "{line}"
    );
    assert_eq!(upstream.connections(), 0);

    // The host serves on as before.
    let (status, body) = fetch(&server, "https://example.com/").await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::BAD_GATEWAY, "ErrorCode::HttpRequestDenied")
    );
    assert_still_serving(&server).await;
}

#[tokio::test]
async fn an_allowed_origin_is_reached_end_to_end() {
    let upstream = Upstream::start(UpstreamReply::Hello).await;
    let allow = upstream.origin();
    let server = TestServer::start_with(&guests().testbed, &["--allow-outbound", &allow]);
    server.assert_logged(&format!(
        "outbound: allowed to {allow}; connect timeout 10s"
    ));

    let (status, body) = fetch(&server, &format!("{allow}/some/path?q=1")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, UPSTREAM_BODY));
    let requests = upstream.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0]["host"], upstream.addr.to_string());
}

#[tokio::test]
async fn the_environment_variable_allows_a_list_of_origins() {
    let upstream = Upstream::start(UpstreamReply::Hello).await;
    let allow = format!("https://api.example.com,{}", upstream.origin());
    let server = TestServer::start_with_env(
        &guests().testbed,
        &[],
        &[("WASI_HOST_ALLOW_OUTBOUND", &allow)],
    );
    server.assert_logged(&format!(
        "outbound: allowed to https://api.example.com, {};",
        upstream.origin()
    ));

    let (status, body) = fetch(&server, &upstream.origin()).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, UPSTREAM_BODY));
    assert_eq!(upstream.requests().len(), 1);
}

#[tokio::test]
async fn another_port_or_scheme_is_refused() {
    let upstream = Upstream::start(UpstreamReply::Hello).await;
    let other = Upstream::start(UpstreamReply::Hello).await;
    let server =
        TestServer::start_with(&guests().testbed, &["--allow-outbound", &upstream.origin()]);

    assert_fails(&server, &other.origin(), "ErrorCode::HttpRequestDenied").await;
    let https = format!("https://{}", upstream.addr);
    assert_fails(&server, &https, "ErrorCode::HttpRequestDenied").await;
    let by_name = format!("http://localhost:{}", upstream.port());
    assert_fails(&server, &by_name, "ErrorCode::HttpRequestDenied").await;
    assert_eq!(upstream.connections() + other.connections(), 0);
}

#[tokio::test]
async fn a_wildcard_never_reaches_loopback_or_the_metadata_server() {
    let upstream = Upstream::start(UpstreamReply::Hello).await;
    let server = TestServer::start_with(
        &guests().testbed,
        &[
            "--allow-outbound",
            "*://*:*",
            "--outbound-resolve",
            "upstream.test:127.0.0.1",
            "--outbound-resolve",
            "metadata.google.internal:169.254.169.254",
            "--outbound-resolve",
            "mixed.test:8.8.8.8",
            "--outbound-resolve",
            "mixed.test:::ffff:10.0.0.1",
        ],
    );
    server.assert_logged(
        "resolving upstream.test:127.0.0.1, metadata.google.internal:169.254.169.254",
    );

    let port = upstream.port();
    for (url, refusal) in [
        (
            format!("http://upstream.test:{port}/"),
            "upstream.test resolves to 127.0.0.1, a loopback address",
        ),
        (
            "http://metadata.google.internal/computeMetadata/v1/".to_string(),
            "metadata.google.internal resolves to 169.254.169.254, a link-local address",
        ),
        (
            "http://mixed.test/".to_string(),
            "mixed.test resolves to ::ffff:10.0.0.1, a private address",
        ),
        (
            format!("http://127.0.0.1:{port}/"),
            "127.0.0.1 resolves to 127.0.0.1, a loopback address",
        ),
        (
            format!("http://[::ffff:127.0.0.1]:{port}/"),
            "[::ffff:127.0.0.1] resolves to ::ffff:127.0.0.1, a loopback address",
        ),
        (
            "http://169.254.169.254/".to_string(),
            "169.254.169.254 resolves to 169.254.169.254, a link-local address",
        ),
    ] {
        assert_fails(&server, &url, "ErrorCode::DestinationIpProhibited").await;
        server.assert_logged(refusal);
    }
    assert_eq!(upstream.connections(), 0);
}

#[tokio::test]
async fn a_pattern_naming_the_host_reaches_its_private_address() {
    let upstream = Upstream::start(UpstreamReply::Hello).await;
    let exact = format!("http://upstream.test:{}", upstream.port());
    let server = TestServer::start_with(
        &guests().testbed,
        &[
            "--allow-outbound",
            "*://*:*",
            "--allow-outbound",
            &exact,
            "--outbound-resolve",
            "upstream.test:127.0.0.1",
        ],
    );
    let (status, body) = fetch(&server, &format!("{exact}/")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, UPSTREAM_BODY));
    assert_eq!(
        upstream.requests()[0]["host"],
        format!("upstream.test:{}", upstream.port())
    );
}

#[tokio::test]
async fn guests_cannot_set_metadata_hop_by_hop_or_host_headers() {
    let upstream = Upstream::start(UpstreamReply::Hello).await;
    let server =
        TestServer::start_with(&guests().testbed, &["--allow-outbound", &upstream.origin()]);
    let url = format!("url={}/", upstream.origin());
    for name in [
        "metadata-flavor",
        "x-google-metadata-request",
        "host",
        "connection",
        "keep-alive",
        "proxy-authorization",
        "proxy-anything",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "http2-settings",
    ] {
        let forward = format!("x-forward-{name}");
        let reply = fetch_with(&server, &url, &[(forward.as_str(), "Google")]).await;
        assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{name}");
        assert_eq!(
            reply.text(),
            format!("header {name}: HeaderError::Forbidden")
        );
    }
    assert_eq!(
        upstream.requests().len(),
        0,
        "a refused header sent nothing"
    );

    let reply = fetch_with(&server, &url, &[("x-forward-x-trace", "abc")]).await;
    assert_eq!(reply.status, StatusCode::OK);
    let seen = &upstream.requests()[0];
    assert_eq!(seen["x-trace"], "abc");
    assert_eq!(seen["host"], upstream.addr.to_string());
    assert!(!seen.contains_key("metadata-flavor"));
}

#[tokio::test]
async fn guests_do_not_see_the_metadata_headers_of_incoming_requests() {
    let server = TestServer::start(&guests().testbed);
    let reply = send(
        client()
            .get(server.url("/echo"))
            .header("x-google-metadata-request", "True")
            .header("x-kept", "yes"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("x-kept"), Some("yes"));
    assert_eq!(reply.header("x-google-metadata-request"), None);
}

#[tokio::test]
async fn guests_do_not_see_metadata_or_hop_by_hop_headers_of_upstream_responses() {
    const STRIPPED: [&str; 8] = [
        "metadata-flavor",
        "x-google-metadata-request",
        "keep-alive",
        "proxy-authenticate",
        "te",
        "trailer",
        "upgrade",
        "http2-settings",
    ];
    let upstream = Upstream::start(UpstreamReply::WithHeaders(&[
        ("metadata-flavor", "Google"),
        ("x-google-metadata-request", "True"),
        ("keep-alive", "timeout=5"),
        ("proxy-authenticate", "Basic"),
        ("te", "trailers"),
        ("trailer", "x-checksum"),
        ("upgrade", "h2c"),
        ("http2-settings", "AAMAAABkAAQAoAAAAAIAAAAA"),
        ("x-kept", "yes"),
    ]))
    .await;
    let server =
        TestServer::start_with(&guests().testbed, &["--allow-outbound", &upstream.origin()]);
    let reply = fetch_with(&server, &format!("url={}/", upstream.origin()), &[]).await;
    assert_eq!(
        (reply.status, reply.text()),
        (StatusCode::OK, UPSTREAM_BODY)
    );
    // The testbed passes on each header it saw as `x-upstream-NAME`.
    assert_eq!(reply.header("x-upstream-x-kept"), Some("yes"));
    for name in STRIPPED {
        assert_eq!(
            reply.header(&format!("x-upstream-{name}")),
            None,
            "{name} reached the guest"
        );
    }
}

#[tokio::test]
async fn connect_timeout() {
    // A listener whose backlog is full: the kernel drops further SYNs, so a connect
    // hangs as it would against a black-holed address.
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind("127.0.0.1:0".parse().unwrap()).expect("bind");
    let listener = socket.listen(0).expect("listen");
    let addr = listener.local_addr().expect("address");
    let _queued = std::net::TcpStream::connect(addr).expect("the one queued connection");
    let origin = format!("http://{addr}");
    let server = TestServer::start_with(
        &guests().testbed,
        &[
            "--allow-outbound",
            &origin,
            "--outbound-connect-timeout",
            "500ms",
        ],
    );
    let started = Instant::now();
    assert_fails(&server, &origin, "ErrorCode::ConnectionTimeout").await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn first_byte_timeout_which_a_guest_cannot_lengthen() {
    let upstream = Upstream::start(UpstreamReply::After(Duration::from_secs(10))).await;
    let server = TestServer::start_with(
        &guests().testbed,
        &[
            "--allow-outbound",
            &upstream.origin(),
            "--outbound-first-byte-timeout",
            "500ms",
        ],
    );
    // The guest's own request options ask for no timeout, then for 60 s: the host's
    // 500 ms holds either way.
    for query in ["", "first_byte_ms=60000&"] {
        let started = Instant::now();
        let (status, body) =
            fetch_query(&server, &format!("{query}url={}", upstream.origin())).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::BAD_GATEWAY, "ErrorCode::ConnectionReadTimeout"),
            "{query}"
        );
        let elapsed = started.elapsed();
        assert!(
            (Duration::from_millis(500)..Duration::from_secs(5)).contains(&elapsed),
            "{query}: {elapsed:?}"
        );
    }
}

#[tokio::test]
async fn a_guest_may_ask_for_shorter_timeouts() {
    let silent = Upstream::start(UpstreamReply::After(Duration::from_secs(10))).await;
    let trickle = Upstream::start(UpstreamReply::Trickle).await;
    let server = TestServer::start_with(
        &guests().testbed,
        &["--allow-outbound", "http://127.0.0.1:*"],
    );
    let started = Instant::now();
    let url = format!("first_byte_ms=300&url={}", silent.origin());
    let (status, body) = fetch_query(&server, &url).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::BAD_GATEWAY, "ErrorCode::ConnectionReadTimeout")
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // The trickle sends a byte every 100 ms.
    let url = format!("between_bytes_ms=30&url={}", trickle.origin());
    let (status, body) = fetch_query(&server, &url).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::BAD_GATEWAY, "body: connection read timeout")
    );
}

#[tokio::test]
async fn an_outbound_request_ends_at_the_incoming_requests_deadline() {
    // An upstream that takes the request, never answers, and notes when the caller
    // hangs up.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let origin = format!("http://{}", listener.local_addr().expect("address"));
    let hung_up = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        let mut buffer = [0u8; 4096];
        while stream.read(&mut buffer).await.is_ok_and(|read| read > 0) {}
        Instant::now()
    });
    // The outbound total timeout stays at its 120 s default.
    let server = TestServer::start_with(
        &guests().testbed,
        &["--allow-outbound", &origin, "--request-timeout", "1s"],
    );
    let started = Instant::now();
    let (status, body) = fetch(&server, &origin).await;
    let answered = started.elapsed();
    assert!(
        status == StatusCode::GATEWAY_TIMEOUT
            || (status, body.as_str())
                == (StatusCode::BAD_GATEWAY, "ErrorCode::HttpResponseTimeout"),
        "{status}: {body}"
    );
    assert!(
        (Duration::from_millis(900)..Duration::from_secs(5)).contains(&answered),
        "answered after {answered:?}"
    );
    let hung_up = tokio::time::timeout(Duration::from_secs(5), hung_up)
        .await
        .expect("the outbound request outlived the incoming one")
        .expect("upstream task");
    assert!(hung_up - started < Duration::from_secs(5));
}

#[tokio::test]
async fn total_timeout_before_and_during_the_body() {
    let silent = Upstream::start(UpstreamReply::After(Duration::from_secs(10))).await;
    let trickle = Upstream::start(UpstreamReply::Trickle).await;
    let server = TestServer::start_with(
        &guests().testbed,
        &[
            "--allow-outbound",
            "http://127.0.0.1:*",
            "--outbound-total-timeout",
            "1s",
        ],
    );
    let started = Instant::now();
    assert_fails(&server, &silent.origin(), "ErrorCode::HttpResponseTimeout").await;
    assert!(started.elapsed() < Duration::from_secs(5));

    let started = Instant::now();
    assert_fails(&server, &trickle.origin(), "body: HTTP response timeout").await;
    let elapsed = started.elapsed();
    assert!(
        (Duration::from_secs(1)..Duration::from_secs(5)).contains(&elapsed),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn response_bodies_stream_up_to_the_limit() {
    const LEN: usize = 3 << 20;
    let chunked = Upstream::start(UpstreamReply::Large {
        len: LEN,
        declared: false,
    })
    .await;
    let declared = Upstream::start(UpstreamReply::Large {
        len: LEN,
        declared: true,
    })
    .await;
    let generous = TestServer::start_with(
        &guests().testbed,
        &[
            "--allow-outbound",
            "http://127.0.0.1:*",
            "--outbound-max-response-body",
            "4MiB",
        ],
    );
    for upstream in [&chunked, &declared] {
        let reply = fetch_with(&generous, &format!("url={}", upstream.origin()), &[]).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert!(
            reply.body == pattern(LEN),
            "the body arrived changed ({} bytes)",
            reply.body.len()
        );
    }

    let strict = TestServer::start_with(
        &guests().testbed,
        &[
            "--allow-outbound",
            "http://127.0.0.1:*",
            "--outbound-max-response-body",
            "1MiB",
        ],
    );
    // A declared length over the limit fails the response; a chunked body fails where
    // it passes the limit. (wasmtime-wasi-http 48 gives a body's error to the guest as
    // text only: `http-error-code` finds no code in it.)
    assert_fails(
        &strict,
        &declared.origin(),
        "ErrorCode::HttpResponseBodySize(Some(1048576))",
    )
    .await;
    assert_fails(
        &strict,
        &chunked.origin(),
        "body: HTTP response body size exceeds limit: 1048576 bytes",
    )
    .await;
    assert_still_serving(&strict).await;
}

#[tokio::test]
async fn sequential_requests_share_one_connection() {
    let upstream = Upstream::start(UpstreamReply::Hello).await;
    let server =
        TestServer::start_with(&guests().testbed, &["--allow-outbound", &upstream.origin()]);
    for _ in 0..4 {
        let (status, body) = fetch(&server, &upstream.origin()).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, UPSTREAM_BODY));
        // Let the finished exchange hand its connection back to the pool.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(upstream.requests().len(), 4);
    assert_eq!(upstream.connections(), 1);
}

#[tokio::test]
async fn https_speaks_tls() {
    // A cleartext upstream cannot complete a TLS handshake: the attempt shows that
    // `https` is never sent in the clear.
    let upstream = Upstream::start(UpstreamReply::Hello).await;
    let https = format!("https://{}", upstream.addr);
    let server = TestServer::start_with(&guests().testbed, &["--allow-outbound", &https]);
    assert_fails(&server, &https, "ErrorCode::TlsProtocolError").await;
    assert_eq!(upstream.requests().len(), 0);
}

#[tokio::test]
async fn connection_refused() {
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let origin = format!("http://{}", closed.local_addr().expect("address"));
    drop(closed);
    let server = TestServer::start_with(&guests().testbed, &["--allow-outbound", &origin]);
    assert_fails(&server, &origin, "ErrorCode::ConnectionRefused").await;
}

#[tokio::test]
async fn a_certificate_is_trusted_only_through_a_known_ca() {
    let ca = TestCa::new();
    let acceptor = ca.acceptor();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let handshakes = Arc::new(AtomicUsize::new(0));
    let completed = handshakes.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let Ok(stream) = acceptor.accept(stream).await else {
                continue;
            };
            completed.fetch_add(1, Ordering::SeqCst);
            let service = hyper::service::service_fn(|_| respond(UpstreamReply::Hello));
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });

    let https = format!("https://{addr}");
    let server = TestServer::start_with(&guests().testbed, &["--allow-outbound", &https]);
    assert_fails(&server, &https, "ErrorCode::TlsCertificateError").await;
    assert_eq!(handshakes.load(Ordering::SeqCst), 0);

    let ca_file = ca.ca_file();
    let trusting = TestServer::start_with(
        &guests().testbed,
        &[
            "--allow-outbound",
            &https,
            "--ca-file",
            ca_file.to_str().unwrap(),
        ],
    );
    assert_eq!(
        fetch(&trusting, &https).await,
        (StatusCode::OK, UPSTREAM_BODY.to_owned())
    );
    assert_eq!(handshakes.load(Ordering::SeqCst), 1);
}

#[test]
fn invalid_patterns_and_overrides_are_refused_at_startup() {
    let stderr = serve_refused(
        &guests().testbed,
        &["--allow-outbound", "ftp://files.example.com"],
        &[],
    );
    assert!(
        stderr.contains("invalid outbound pattern `ftp://files.example.com`"),
        "{stderr}"
    );
    assert!(stderr.contains("unsupported scheme `ftp`"), "{stderr}");

    let stderr = serve_refused(
        &guests().testbed,
        &[],
        &[(
            "WASI_HOST_ALLOW_OUTBOUND",
            "https://ok.example.com,https://bad.example.com/path",
        )],
    );
    assert!(
        stderr.contains("`https://bad.example.com/path`"),
        "{stderr}"
    );
    assert!(stderr.contains("no path"), "{stderr}");

    let stderr = serve_refused(
        &guests().testbed,
        &["--outbound-resolve", "api.internal"],
        &[],
    );
    assert!(
        stderr.contains("invalid resolve override `api.internal`"),
        "{stderr}"
    );

    let stderr = serve_refused(
        &guests().testbed,
        &["--outbound-connect-timeout", "0s"],
        &[],
    );
    assert!(
        stderr.contains("--outbound-connect-timeout must be more than zero"),
        "{stderr}"
    );
}
