//! Limits, deadlines, admission and graceful drain: what hostile guests and clients do,
//! and that the host keeps serving afterwards.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::metrics::{assert_sample, metrics_url};
use crate::util::{
    TestServer, assert_get, assert_still_serving, chunked_body, client, get, guests,
    read_until_closed, send,
};

#[tokio::test]
async fn looping_guest_gets_504_at_the_deadline_and_its_cpu_is_freed() {
    let server = TestServer::start_with(&guests().testbed, &["--request-timeout", "1s"]);
    let started = Instant::now();
    assert_eq!(
        get(&server, "/loop").await.status,
        StatusCode::GATEWAY_TIMEOUT
    );
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900),
        "answered early: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(3),
        "answered late: {elapsed:?}"
    );

    // With the guest interrupted, the idle server burns (almost) no CPU.
    let before = server.cpu_time();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let used = server.cpu_time() - before;
    assert!(
        used < Duration::from_millis(200),
        "still busy: {used:?} of CPU in 1s"
    );
    assert_still_serving(&server).await;
    server.assert_logged("interrupted at the request deadline");
}

#[tokio::test]
async fn waiting_guest_gets_504_at_the_deadline() {
    let server = TestServer::start_with(&guests().testbed, &["--request-timeout", "500ms"]);
    let started = Instant::now();
    assert_eq!(
        get(&server, "/sleep?ms=60000").await.status,
        StatusCode::GATEWAY_TIMEOUT
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_still_serving(&server).await;
}

/// The MiB of linear memory the testbed could allocate before its growth failed.
async fn memory_a_guest_gets(server: &TestServer) -> u64 {
    let reply = get(server, "/grow").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    reply.text().parse().expect("a number of MiB")
}

#[tokio::test]
async fn memory_hog_gets_500_and_the_host_is_unaffected() {
    let server = TestServer::start_with(&guests().testbed, &["--max-memory", "16MiB"]);
    assert_eq!(
        get(&server, "/hog").await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_still_serving(&server).await;
    // The failed growth stayed inside the guest: the host never held the memory.
    assert!(
        server.rss_kib() < 200 * 1024,
        "host RSS {} KiB",
        server.rss_kib()
    );
    // The cap, not the 128 MiB default, is what stopped it (the guest's own image and
    // stack take part of the 16 MiB).
    let got = memory_a_guest_gets(&server).await;
    assert!((8..16).contains(&got), "the guest got {got} MiB");
}

#[tokio::test]
async fn the_default_memory_cap_is_128_mib() {
    let server = TestServer::start(&guests().testbed);
    let got = memory_a_guest_gets(&server).await;
    assert!((100..128).contains(&got), "the guest got {got} MiB");
    assert_still_serving(&server).await;
}

#[tokio::test]
async fn over_cap_load_gets_503_with_retry_after_and_admitted_requests_succeed() {
    let server = TestServer::start_with(
        &guests().testbed,
        &[
            "--max-concurrency",
            "2",
            "--max-queue",
            "2",
            "--queue-timeout",
            "300ms",
        ],
    );
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let url = server.url("/sleep?ms=1500");
        tasks.push(tokio::spawn(async move {
            let response = client().get(url).send().await.expect("GET /sleep");
            let retry_after = response.headers().get("retry-after").cloned();
            (
                response.status(),
                retry_after,
                response.text().await.expect("body"),
            )
        }));
    }
    let (mut ok, mut busy) = (0, 0);
    for task in tasks {
        match task.await.expect("task") {
            (StatusCode::OK, _, body) => {
                assert_eq!(body, "slept");
                ok += 1;
            }
            (StatusCode::SERVICE_UNAVAILABLE, retry_after, _) => {
                assert_eq!(retry_after.expect("Retry-After"), "1");
                busy += 1;
            }
            (status, _, body) => panic!("unexpected {status}: {body}"),
        }
    }
    assert_eq!(ok, 2, "exactly the admitted requests succeed");
    assert_eq!(busy, 10);
    assert_still_serving(&server).await;
}

#[tokio::test]
async fn the_queue_defaults_to_the_concurrency_cap() {
    let server = TestServer::start_with(
        &guests().testbed,
        &["--max-concurrency", "1", "--metrics-addr", "127.0.0.1:0"],
    );
    let metrics = metrics_url(&server);
    let in_flight = "wasi_host_requests_in_flight";
    // One request runs; by default one more may wait for its slot...
    let running = tokio::spawn(send(client().get(server.url("/sleep?ms=1500"))));
    assert_sample(&metrics, in_flight, 1.0).await;
    let waiting = tokio::spawn(send(client().get(server.url("/sleep?ms=10"))));
    assert_sample(&metrics, in_flight, 2.0).await;
    // ...and the next finds the queue full.
    assert_eq!(
        get(&server, "/build").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_sample(
        &metrics,
        "wasi_host_admission_rejections_total{reason=\"queue_full\"}",
        1.0,
    )
    .await;
    for task in [running, waiting] {
        let reply = task.await.expect("task");
        assert_eq!((reply.status, reply.text()), (StatusCode::OK, "slept"));
    }
}

#[tokio::test]
async fn a_guest_holding_more_resources_than_allowed_fails_alone() {
    let server = TestServer::start_with(&guests().testbed, &["--max-resources", "100"]);
    assert_get(&server, "/resources?count=50", StatusCode::OK, "50").await;
    assert_eq!(
        get(&server, "/resources?count=200").await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_still_serving(&server).await;
}

#[tokio::test]
async fn by_default_a_guest_may_hold_10000_resources() {
    let server = TestServer::start(&guests().testbed);
    assert_get(&server, "/resources?count=9900", StatusCode::OK, "9900").await;
    assert_eq!(
        get(&server, "/resources?count=10000").await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_still_serving(&server).await;
}

/// How long after `started` the server closed a connection on which the client wrote
/// `sent` and then waited; fails if it was held open for ten seconds.
pub async fn closed_after(addr: SocketAddr, sent: &'static [u8]) -> Duration {
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream.write_all(sent).expect("write");
        read_until_closed(&mut stream, Duration::from_secs(10)).expect("held open");
        started.elapsed()
    })
    .await
    .expect("task")
}

#[tokio::test]
async fn slowloris_connection_is_closed_at_the_header_read_timeout() {
    let server = TestServer::start_with(&guests().testbed, &["--header-read-timeout", "1s"]);
    // Never finish the headers; the server must hang up on us, at the timeout.
    let closed_after = closed_after(server.addr, b"GET /echo HTTP/1.1\r\nHost: x\r\n").await;
    assert!(
        (Duration::from_millis(900)..Duration::from_secs(5)).contains(&closed_after),
        "closed after {closed_after:?}"
    );
    assert_still_serving(&server).await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_at_the_header_read_timeout() {
    let server = TestServer::start_with(&guests().testbed, &["--header-read-timeout", "1s"]);
    // One whole request, answered, then nothing: the connection waits for the next head.
    let closed_after = closed_after(
        server.addr,
        b"GET /build HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert!(
        (Duration::from_millis(900)..Duration::from_secs(5)).contains(&closed_after),
        "closed after {closed_after:?}"
    );
    assert_still_serving(&server).await;
}

/// The status of `GET /build` with a header `x-big` of `size` bytes.
async fn status_with_header_of(server: &TestServer, size: usize) -> StatusCode {
    let request = client()
        .get(server.url("/build"))
        .header("x-big", "a".repeat(size));
    send(request).await.status
}

#[tokio::test]
async fn oversized_headers_get_431() {
    let server = TestServer::start_with(&guests().testbed, &["--max-header-size", "16KiB"]);
    assert_eq!(
        status_with_header_of(&server, 32 * 1024).await,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
    assert_still_serving(&server).await;
}

#[tokio::test]
async fn by_default_headers_may_take_64_kib() {
    let server = TestServer::start(&guests().testbed);
    assert_eq!(
        status_with_header_of(&server, 60 * 1024).await,
        StatusCode::OK
    );
    assert_eq!(
        status_with_header_of(&server, 65 * 1024).await,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
    assert_still_serving(&server).await;
}

/// Writes `head` (a request without its body) on a new connection and returns all the
/// server sent before it closed the connection. A client still uploading may see the
/// close before the response, so a refusal is read this way.
async fn answer_to_head(addr: SocketAddr, head: String) -> String {
    tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream.write_all(head.as_bytes()).expect("write head");
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        response
    })
    .await
    .expect("task")
}

/// `POST /consume` with a declared `Content-Length` of `length` and no body yet.
fn consume_head(length: u64) -> String {
    format!("POST /consume HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n")
}

#[tokio::test]
async fn by_default_bodies_may_take_32_mib() {
    const LIMIT: usize = 32 * 1024 * 1024;
    let server = TestServer::start(&guests().testbed);
    let head = answer_to_head(server.addr, consume_head(LIMIT as u64 + 1)).await;
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    let within = send(client().post(server.url("/consume")).body(vec![1u8; LIMIT])).await;
    assert_eq!(
        (within.status, within.text()),
        (StatusCode::OK, LIMIT.to_string().as_str())
    );
}

#[tokio::test]
async fn oversized_bodies_get_413_with_content_length_and_chunked() {
    let server = TestServer::start_with(&guests().testbed, &["--max-body-size", "1MiB"]);
    let big = vec![7u8; 2 * 1024 * 1024];

    // A declared length over the limit is refused before any of the body is read, and
    // the connection is closed since the unread body cannot be skipped.
    let head = answer_to_head(server.addr, consume_head(2 * 1024 * 1024)).await;
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );

    // A streamed body has no Content-Length: it is cut off as it arrives.
    let chunked = send(
        client()
            .post(server.url("/consume"))
            .body(chunked_body(&big, 64 * 1024)),
    )
    .await;
    assert_eq!(chunked.status, StatusCode::PAYLOAD_TOO_LARGE);

    let within = send(
        client()
            .post(server.url("/consume"))
            .body(vec![1u8; 1024 * 1024]),
    )
    .await;
    assert_eq!(
        (within.status, within.text()),
        (StatusCode::OK, (1024 * 1024).to_string().as_str())
    );
}

#[tokio::test]
async fn trap_after_the_response_started_aborts_the_body() {
    let server = TestServer::start(&guests().testbed);
    // The guest traps right after its first write, so the connection may be cut before
    // or after the head; either way the client must never see a complete response.
    let outcome = match client().get(server.url("/trap-after-headers")).send().await {
        Ok(response) => response.bytes().await.map(|body| body.len()),
        Err(error) => Err(error),
    };
    assert!(
        outcome.is_err(),
        "a truncated body must not look complete: {outcome:?}"
    );
    server.assert_logged("trap after the response started");
    assert_still_serving(&server).await;
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests_and_exits_0() {
    const IN_FLIGHT: usize = 50;
    let mut server = TestServer::start_with(&guests().testbed, &["--metrics-addr", "127.0.0.1:0"]);
    let tasks: Vec<_> = (0..IN_FLIGHT)
        .map(|_| tokio::spawn(send(client().get(server.url("/sleep?ms=1500")))))
        .collect();
    // Every request reaches the host before it is asked to stop.
    let metrics = metrics_url(&server);
    assert_sample(&metrics, "wasi_host_requests_in_flight", IN_FLIGHT as f64).await;
    server.signal("TERM");
    server.assert_logged("stopped accepting; draining");
    assert!(
        TcpStream::connect(server.addr).is_err(),
        "new connections must be refused once draining"
    );
    for task in tasks {
        let reply = task.await.expect("task");
        assert_eq!((reply.status, reply.text()), (StatusCode::OK, "slept"));
    }
    let status = server.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "exit status {status}");
    server.assert_logged("all connections drained");
}

#[tokio::test]
async fn requests_still_running_at_the_shutdown_timeout_are_cancelled() {
    let mut server = TestServer::start_with(
        &guests().testbed,
        &[
            "--shutdown-timeout",
            "500ms",
            "--metrics-addr",
            "127.0.0.1:0",
        ],
    );
    let stuck = tokio::spawn(client().get(server.url("/sleep?ms=30000")).send());
    assert_sample(&metrics_url(&server), "wasi_host_requests_in_flight", 1.0).await;
    let started = Instant::now();
    server.signal("TERM");
    let status = server.wait_exit(Duration::from_secs(5));
    assert!(status.success(), "exit status {status}");
    assert!(started.elapsed() < Duration::from_secs(3));
    server.assert_logged("cancelling the requests still in flight");
    assert!(
        stuck.await.expect("task").is_err(),
        "the stuck request was cut off"
    );
}
