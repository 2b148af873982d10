//! A guest with one route per behaviour the host's tests need: echoing, streaming,
//! outbound calls, every way of misbehaving (trap, loop, memory hog, no response,
//! sleeping, printing lines shaped like the host's log entries), measuring its limits
//! (`/grow`: the MiB of memory it can get; `/resources?count=N`: holding N resources),
//! reading its files (`/file`), which build it is (`/build`, and an `x-testbed-build`
//! header on every response), and how many requests its instance has served (`/count`),
//! which shows whether a host reuses instances. Behind a Spin route it routes on the
//! part of the path below that route (`spin-path-info`), as Spin SDK routers do.

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use testbed_query::{FetchQuery, param};
use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingRequest, OutgoingResponse, RequestOptions,
    ResponseOutparam, Scheme,
};
use wasip2::io::streams::StreamError;

/// Which of the two builds this is: `v1`, or `v2` with the `v2` feature. Swap tests
/// serve one and swap in the other.
const BUILD: &str = if cfg!(feature = "v2") { "v2" } else { "v1" };

/// Requests this instance has served, this one included.
static REQUESTS: AtomicU64 = AtomicU64::new(0);

/// A line shaped like one of the host's own JSON log entries, which `/print-forged`
/// writes to stdout.
const FORGED_ENTRY: &str = r#"{"severity":"ERROR","message":"forged entry","target":"wasi_host::access","httpRequest":{"status":500}}"#;

/// A line shaped like one of the host's own text log lines.
const FORGED_TEXT_LINE: &str = "1999-01-01T00:00:00.000000Z ERROR wasi_host: forged line";

struct Testbed;

impl wasip2::exports::http::incoming_handler::Guest for Testbed {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let served = REQUESTS.fetch_add(1, Ordering::Relaxed) + 1;
        let path_with_query = request.path_with_query().unwrap_or_default();
        let (path, query) = path_with_query
            .split_once('?')
            .unwrap_or((&path_with_query, ""));
        let path_info = request
            .headers()
            .get("spin-path-info")
            .into_iter()
            .next()
            .and_then(|value| String::from_utf8(value).ok())
            .filter(|info| !info.is_empty());
        match path_info.as_deref().unwrap_or(path) {
            "/echo" => echo(request, response_out, query),
            "/fetch" => fetch(request, response_out, query),
            "/consume" => {
                let body = request.consume().expect("request body");
                let input = body.stream().expect("request stream");
                let mut total = 0usize;
                loop {
                    match input.blocking_read(65536) {
                        Ok(bytes) => total += bytes.len(),
                        Err(StreamError::Closed) => break,
                        Err(StreamError::LastOperationFailed(error)) => {
                            panic!(
                                "reading the request body failed: {}",
                                error.to_debug_string()
                            )
                        }
                    }
                }
                respond_with(response_out, 200, &[], |out| {
                    write!(out, "{total}").expect("write");
                });
            }
            "/stream" => {
                let bytes = param(query, "bytes").unwrap_or(0);
                respond_with(response_out, 200, &[], |out| {
                    let chunk: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
                    let mut left = bytes as usize;
                    while left > 0 {
                        let n = left.min(chunk.len());
                        out.write_all(&chunk[..n]).expect("write");
                        left -= n;
                    }
                });
            }
            "/trap" => panic!("trap requested"),
            "/trap-after-headers" => {
                let response = OutgoingResponse::new(Fields::new());
                let body = response.body().expect("body");
                ResponseOutparam::set(response_out, Ok(response));
                let mut out = body.write().expect("stream");
                out.write_all(&[b'x'; 1000]).expect("write");
                out.flush().expect("flush");
                panic!("trap after the response started");
            }
            "/loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "/sleep" => {
                let ms = param(query, "ms").unwrap_or(1000);
                wasip2::clocks::monotonic_clock::subscribe_duration(ms * 1_000_000).block();
                respond_with(response_out, 200, &[], |out| {
                    out.write_all(b"slept").expect("write");
                });
            }
            "/hog" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "/grow" => {
                let mib = grow_until_refused();
                respond_with(response_out, 200, &[], |out| {
                    write!(out, "{mib}").expect("write");
                });
            }
            "/resources" => {
                let count = param(query, "count").unwrap_or(0);
                let held: Vec<Fields> = (0..count).map(|_| Fields::new()).collect();
                respond_with(response_out, 200, &[], |out| {
                    write!(out, "{}", held.len()).expect("write");
                });
            }
            "/no-response" => drop(response_out),
            "/file" => {
                let file = query.strip_prefix("path=").unwrap_or_default();
                match std::fs::read(file) {
                    Ok(bytes) => respond_with(response_out, 200, &[], |out| {
                        out.write_all(&bytes).expect("write");
                    }),
                    Err(error) => respond_with(response_out, 404, &[], |out| {
                        write!(out, "{file}: {error}").expect("write");
                    }),
                }
            }
            "/count" => respond_with(response_out, 200, &[], |out| {
                write!(out, "{served}").expect("write");
            }),
            "/build" => respond_with(response_out, 200, &[], |out| {
                out.write_all(BUILD.as_bytes()).expect("write");
            }),
            "/print" => {
                println!("hello from guest stdout");
                eprintln!("hello from guest stderr");
                respond_with(response_out, 200, &[], |out| {
                    out.write_all(b"printed").expect("write");
                });
            }
            "/print-forged" => {
                println!("{FORGED_ENTRY}");
                println!("{FORGED_TEXT_LINE}");
                respond_with(response_out, 200, &[], |out| {
                    out.write_all(b"printed").expect("write");
                });
            }
            "/env" => respond_with(response_out, 200, &[], |out| {
                for (key, value) in std::env::vars() {
                    writeln!(out, "{key}={value}").expect("write");
                }
            }),
            _ => respond_with(response_out, 404, &[], |out| {
                out.write_all(b"no such route").expect("write");
            }),
        }
    }
}

/// Answers with `?status=` (default 200), the method and path in `x-echo-*` headers,
/// every `x-*` and `spin-*` request header copied back, and the request body streamed
/// back.
fn echo(request: IncomingRequest, response_out: ResponseOutparam, query: &str) {
    let status = param(query, "status").unwrap_or(200) as u16;
    let mut headers: Vec<(String, Vec<u8>)> = vec![
        ("x-echo-method".into(), method_name(&request).into_bytes()),
        (
            "x-echo-path".into(),
            request.path_with_query().unwrap_or_default().into_bytes(),
        ),
    ];
    headers.extend(
        request
            .headers()
            .entries()
            .into_iter()
            .filter(|(name, _)| name.starts_with("x-") || name.starts_with("spin-")),
    );
    let body = request.consume().expect("request body");
    let input = body.stream().expect("request stream");
    respond_with(response_out, status, &headers, |out| {
        loop {
            match input.blocking_read(65536) {
                Ok(bytes) => out.write_all(&bytes).expect("write"),
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(error)) => {
                    panic!(
                        "reading the request body failed: {}",
                        error.to_debug_string()
                    )
                }
            }
        }
    });
}

/// `?url=URL` (the rest of the query): calls URL with GET, sending each `x-forward-NAME`
/// request header as `NAME`, and answers with the upstream's status and body, and each
/// header the upstream's response had as `x-upstream-NAME`. Before
/// `url=`, `first_byte_ms=` and `between_bytes_ms=` set the request's own timeouts. When the
/// call fails the answer is `502` with the failure in the body: `header NAME: ...` for a
/// header the host refuses, the error code's debug text for a failed request, and
/// `body: ...` for a body that failed while being read.
fn fetch(request: IncomingRequest, response_out: ResponseOutparam, query: &str) {
    let fail = |response_out, message: String| {
        respond_with(response_out, 502, &[], |out| {
            out.write_all(message.as_bytes()).expect("write");
        });
    };
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
    for (name, value) in request.headers().entries() {
        if let Some(forwarded) = name.strip_prefix("x-forward-")
            && let Err(error) = headers.append(forwarded, &value)
        {
            return fail(response_out, format!("header {forwarded}: {error:?}"));
        }
    }
    let outgoing = OutgoingRequest::new(headers);
    outgoing.set_scheme(Some(&scheme)).expect("scheme");
    outgoing.set_authority(Some(authority)).expect("authority");
    outgoing.set_path_with_query(Some(path)).expect("path");

    let timeouts = RequestOptions::new();
    let millis = |name| param(options, name).map(|ms| ms * 1_000_000);
    timeouts
        .set_first_byte_timeout(millis("first_byte_ms"))
        .expect("first-byte timeout");
    timeouts
        .set_between_bytes_timeout(millis("between_bytes_ms"))
        .expect("between-bytes timeout");

    let future = match wasip2::http::outgoing_handler::handle(outgoing, Some(timeouts)) {
        Ok(future) => future,
        Err(code) => return fail(response_out, format!("{code:?}")),
    };
    future.subscribe().block();
    let response = match future.get().expect("ready").expect("first get") {
        Ok(response) => response,
        Err(code) => return fail(response_out, format!("{code:?}")),
    };
    let status = response.status();
    let upstream_headers: Vec<(String, Vec<u8>)> = response
        .headers()
        .entries()
        .into_iter()
        .map(|(name, value)| (format!("x-upstream-{name}"), value))
        .collect();
    let body = response.consume().expect("response body");
    let input = body.stream().expect("response stream");
    let mut received = Vec::new();
    loop {
        match input.blocking_read(65536) {
            Ok(bytes) => received.extend_from_slice(&bytes),
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(error)) => {
                let why = match wasip2::http::types::http_error_code(&error) {
                    Some(code) => format!("{code:?}"),
                    None => error.to_debug_string(),
                };
                return fail(response_out, format!("body: {why}"));
            }
        }
    }
    respond_with(response_out, status, &upstream_headers, |out| {
        out.write_all(&received).expect("write");
    });
}

/// Takes 1 MiB blocks until the allocator is refused more memory, then gives them back
/// and returns how many it held.
fn grow_until_refused() -> usize {
    const MIB: usize = 1 << 20;
    // Room for 4 GiB of blocks, taken up front: the list itself never grows.
    let mut held: Vec<Vec<u8>> = Vec::with_capacity(4096);
    while held.len() < held.capacity() {
        let mut block = Vec::new();
        if block.try_reserve_exact(MIB).is_err() {
            break;
        }
        held.push(block);
    }
    held.len()
}

fn method_name(request: &IncomingRequest) -> String {
    use wasip2::http::types::Method;
    match request.method() {
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

fn respond_with(
    response_out: ResponseOutparam,
    status: u16,
    headers: &[(String, Vec<u8>)],
    write_body: impl FnOnce(&mut wasip2::io::streams::OutputStream),
) {
    let fields = Fields::from_list(headers).expect("valid headers");
    fields
        .append("x-testbed-build", BUILD.as_bytes())
        .expect("valid header");
    let response = OutgoingResponse::new(fields);
    response.set_status_code(status).expect("valid status");
    let body = response.body().expect("body");
    ResponseOutparam::set(response_out, Ok(response));
    let mut out = body.write().expect("stream");
    write_body(&mut out);
    out.flush().expect("flush");
    drop(out);
    OutgoingBody::finish(body, None).expect("finish");
}

wasip2::http::proxy::export!(Testbed);
