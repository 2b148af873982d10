//! The WASI 0.3 guest of the host's tests: one route per behaviour, like `testbed` is
//! for WASI 0.2. It exports `wasi:http/handler@0.3.0` (world `wasi:http/service`, the
//! vendored WIT in `wit/p3`): echoing and streaming bodies, outbound calls through
//! `wasi:http/client`, every way of misbehaving (trap before and after the response,
//! busy loop, memory hog, sleeping), output on stdout and stderr, how far its memory
//! can grow, and how many requests its instance has served (`/count`), which shows
//! whether a host reuses instances.

use std::sync::atomic::{AtomicU64, Ordering};

wit_bindgen::generate!({
    path: "../../wit/p3",
    world: "wasi-host:hello-p3/service",
    generate_all,
});

use exports::wasi::http::handler::Guest;
use testbed_query::{FetchQuery, param};
use wasi::http::types::{
    ErrorCode, Fields, Method, Request, RequestOptions, Response, Scheme, Trailers,
};
use wit_bindgen::StreamResult;

/// Requests this instance has served, this one included.
static REQUESTS: AtomicU64 = AtomicU64::new(0);

/// Bytes of one read or write of a body.
const CHUNK: usize = 64 * 1024;

struct P3Testbed;

impl Guest for P3Testbed {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let served = REQUESTS.fetch_add(1, Ordering::Relaxed) + 1;
        let path_with_query = request.get_path_with_query().unwrap_or_default();
        let (path, query) = path_with_query
            .split_once('?')
            .unwrap_or((&path_with_query, ""));
        match path {
            "/echo" => Ok(echo(request, query)),
            "/fetch" => Ok(fetch(request, query).await),
            "/consume" => {
                let (body, trailers) = consume(request);
                let total = body.collect().await.len();
                match trailers.await {
                    Ok(_) => Ok(text(200, total.to_string())),
                    Err(code) => Ok(text(502, format!("body: {code:?}"))),
                }
            }
            "/stream" => {
                let bytes = param(query, "bytes").unwrap_or(0);
                let pattern: Vec<u8> = (0..CHUNK as u32).map(|i| (i % 251) as u8).collect();
                Ok(streamed(200, Fields::new(), move |mut out| async move {
                    let mut left = bytes as usize;
                    while left > 0 {
                        let n = left.min(pattern.len());
                        if !out.write_all(pattern[..n].to_vec()).await.is_empty() {
                            return;
                        }
                        left -= n;
                    }
                }))
            }
            "/slow-body" => {
                let chunks = param(query, "chunks").unwrap_or(3);
                let ms = param(query, "ms").unwrap_or(100);
                Ok(streamed(200, Fields::new(), move |mut out| async move {
                    for index in 0..chunks {
                        if index > 0 {
                            sleep_ms(ms).await;
                        }
                        let chunk = format!("chunk {index}\n").into_bytes();
                        if !out.write_all(chunk).await.is_empty() {
                            return;
                        }
                    }
                }))
            }
            "/sleep" => {
                sleep_ms(param(query, "ms").unwrap_or(1000)).await;
                Ok(text(200, "slept".into()))
            }
            "/trap" => panic!("trap requested"),
            "/trap-after-headers" => Ok(streamed(200, Fields::new(), |mut out| async move {
                out.write_all(vec![b'x'; 1000]).await;
                panic!("trap after the response started");
            })),
            "/loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "/hog" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "/memory-limit" => Ok(text(200, memory_limit().to_string())),
            "/print" => {
                print_in_pieces(Output::Stdout, &["hello ", "from p3 ", "stdout\n"]).await;
                print_in_pieces(Output::Stderr, &["hello ", "from p3 ", "stderr\n"]).await;
                Ok(text(200, "printed".into()))
            }
            "/count" => Ok(text(200, served.to_string())),
            "/env" => {
                let vars: String = std::env::vars()
                    .map(|(key, value)| format!("{key}={value}\n"))
                    .collect();
                Ok(text(200, vars))
            }
            _ => Ok(text(404, "no such route".into())),
        }
    }
}

/// Answers with `?status=` (default 200), the method and path in `x-echo-*` headers,
/// every `x-*` and `spin-*` request header copied back, and the request body streamed
/// back as it arrives.
fn echo(request: Request, query: &str) -> Response {
    let status = param(query, "status").unwrap_or(200) as u16;
    let mut headers: Vec<(String, Vec<u8>)> = vec![
        (
            "x-echo-method".into(),
            method_name(request.get_method()).into_bytes(),
        ),
        (
            "x-echo-path".into(),
            request
                .get_path_with_query()
                .unwrap_or_default()
                .into_bytes(),
        ),
    ];
    headers.extend(
        request
            .get_headers()
            .copy_all()
            .into_iter()
            .filter(|(name, _)| name.starts_with("x-") || name.starts_with("spin-")),
    );
    let headers = Fields::from_list(&headers).expect("request headers are valid");
    let (mut input, trailers) = consume(request);
    let (mut output, output_rx) = wit_stream::new();
    let (trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
    let (response, _sent) = Response::new(headers, Some(output_rx), trailers_rx);
    response.set_status_code(status).expect("valid status");
    wit_bindgen::spawn_local(async move {
        loop {
            let (result, chunk) = input.read(Vec::with_capacity(CHUNK)).await;
            if let StreamResult::Dropped | StreamResult::Cancelled = result {
                break;
            }
            if !output.write_all(chunk).await.is_empty() {
                return;
            }
        }
        drop(output);
        // A body that failed on the way in fails on the way out.
        let _ = trailers_tx.write(trailers.await).await;
    });
    response
}

/// `?url=URL` (the rest of the query): calls URL with GET through `wasi:http/client`,
/// sending each `x-forward-NAME` request header as `NAME`, and answers with the
/// upstream's status and body. Before `url=`, `first_byte_ms=` and `between_bytes_ms=`
/// set the request's own timeouts. When the call fails the answer is `502` with the
/// failure in the body: `header NAME: ...` for a header the host refuses, the error
/// code's debug text for a failed request, and `body: ...` for a body that failed
/// while being read.
async fn fetch(request: Request, query: &str) -> Response {
    let FetchQuery {
        options,
        scheme,
        authority,
        path,
    } = FetchQuery::parse(query);
    let scheme = match scheme {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => Scheme::Other(other.to_string()),
    };

    let headers = Fields::new();
    for (name, value) in request.get_headers().copy_all() {
        if let Some(forwarded) = name.strip_prefix("x-forward-")
            && let Err(error) = headers.append(forwarded, &value)
        {
            return text(502, format!("header {forwarded}: {error:?}"));
        }
    }
    let timeouts = RequestOptions::new();
    let nanos = |name| param(options, name).map(|ms| ms * 1_000_000);
    timeouts
        .set_first_byte_timeout(nanos("first_byte_ms"))
        .expect("first-byte timeout");
    timeouts
        .set_between_bytes_timeout(nanos("between_bytes_ms"))
        .expect("between-bytes timeout");
    let (_, no_trailers) = wit_future::new(|| Ok(None));
    let (outgoing, _sent) = Request::new(headers, None, no_trailers, Some(timeouts));
    outgoing.set_scheme(Some(&scheme)).expect("scheme");
    outgoing.set_authority(Some(authority)).expect("authority");
    outgoing.set_path_with_query(Some(path)).expect("path");

    let response = match wasi::http::client::send(outgoing).await {
        Ok(response) => response,
        Err(code) => return text(502, format!("{code:?}")),
    };
    let status = response.get_status_code();
    let (body, trailers) = consume_response(response);
    let received = body.collect().await;
    match trailers.await {
        Ok(_) => bytes(status, received),
        Err(code) => text(502, format!("body: {code:?}")),
    }
}

type Body = wit_bindgen::StreamReader<u8>;
type TrailersResult = wit_bindgen::FutureReader<Result<Option<Trailers>, ErrorCode>>;

fn consume(request: Request) -> (Body, TrailersResult) {
    let (_, done) = wit_future::new(|| Ok(()));
    Request::consume_body(request, done)
}

fn consume_response(response: Response) -> (Body, TrailersResult) {
    let (_, done) = wit_future::new(|| Ok(()));
    Response::consume_body(response, done)
}

/// A response whose body `write` writes after the response has been returned.
fn streamed<F, Fut>(status: u16, headers: Fields, write: F) -> Response
where
    F: FnOnce(wit_bindgen::StreamWriter<u8>) -> Fut,
    Fut: Future<Output = ()> + 'static,
{
    let (output, output_rx) = wit_stream::new();
    let (_, no_trailers) = wit_future::new(|| Ok(None));
    let (response, _sent) = Response::new(headers, Some(output_rx), no_trailers);
    response.set_status_code(status).expect("valid status");
    wit_bindgen::spawn_local(write(output));
    response
}

fn text(status: u16, body: String) -> Response {
    bytes(status, body.into_bytes())
}

fn bytes(status: u16, body: Vec<u8>) -> Response {
    streamed(status, Fields::new(), move |mut out| async move {
        out.write_all(body).await;
    })
}

async fn sleep_ms(ms: u64) {
    wasi::clocks::monotonic_clock::wait_for(ms * 1_000_000).await;
}

#[derive(Clone, Copy)]
enum Output {
    Stdout,
    Stderr,
}

/// Writes `pieces` to one `wasi:cli` output stream, one write each, so a host sees a
/// line arrive in several writes.
async fn print_in_pieces(output: Output, pieces: &[&str]) {
    let (mut tx, rx) = wit_stream::new();
    let done = match output {
        Output::Stdout => wasi::cli::stdout::write_via_stream(rx),
        Output::Stderr => wasi::cli::stderr::write_via_stream(rx),
    };
    for piece in pieces {
        tx.write_all(piece.as_bytes().to_vec()).await;
    }
    drop(tx);
    let _ = done.await;
}

/// Grows linear memory a page at a time until the host refuses, and returns the size
/// reached in bytes. The instance keeps that memory for the requests it serves next.
#[cfg(target_arch = "wasm32")]
fn memory_limit() -> usize {
    const PAGE: usize = 64 * 1024;
    while core::arch::wasm32::memory_grow(0, 1) != usize::MAX {}
    core::arch::wasm32::memory_size(0) * PAGE
}

/// Outside WebAssembly there is no linear memory to grow.
#[cfg(not(target_arch = "wasm32"))]
fn memory_limit() -> usize {
    0
}

fn method_name(method: Method) -> String {
    match method {
        Method::Get => "GET".into(),
        Method::Head => "HEAD".into(),
        Method::Post => "POST".into(),
        Method::Put => "PUT".into(),
        Method::Delete => "DELETE".into(),
        Method::Connect => "CONNECT".into(),
        Method::Options => "OPTIONS".into(),
        Method::Trace => "TRACE".into(),
        Method::Patch => "PATCH".into(),
        Method::Other(other) => other,
    }
}

export!(P3Testbed);
