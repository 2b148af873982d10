//! Limits, deadlines, admission and graceful drain: what hostile guests and clients do,
//! and that the host keeps serving afterwards.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::util::{TestServer, client, guests};

async fn assert_still_serving(server: &TestServer) {
    let response = client()
        .post(server.url("/echo"))
        .body("alive")
        .send()
        .await
        .expect("follow-up request");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.expect("body"), "alive");
}

#[tokio::test]
async fn looping_guest_gets_504_at_the_deadline_and_its_cpu_is_freed() {
    let server = TestServer::start_with(&guests().testbed, &["--request-timeout", "1s"]);
    let started = Instant::now();
    let response = client()
        .get(server.url("/loop"))
        .send()
        .await
        .expect("GET /loop");
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
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
    let response = client()
        .get(server.url("/sleep?ms=60000"))
        .send()
        .await
        .expect("GET /sleep");
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_still_serving(&server).await;
}

#[tokio::test]
async fn memory_hog_gets_500_and_the_host_is_unaffected() {
    let server = TestServer::start_with(&guests().testbed, &["--max-memory", "16MiB"]);
    let response = client()
        .get(server.url("/hog"))
        .send()
        .await
        .expect("GET /hog");
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_still_serving(&server).await;
    // The failed growth stayed inside the guest: the host never held the memory.
    assert!(
        server.rss_kib() < 200 * 1024,
        "host RSS {} KiB",
        server.rss_kib()
    );
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
async fn slowloris_connection_is_closed_at_the_header_read_timeout() {
    let server = TestServer::start_with(&guests().testbed, &["--header-read-timeout", "1s"]);
    let addr = server.addr;
    let started = Instant::now();
    let closed_after = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        stream
            .write_all(b"GET /echo HTTP/1.1\r\nHost: x\r\n")
            .expect("write");
        // Never finish the headers; the server must hang up on us.
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => continue,
            }
        }
    })
    .await
    .expect("task");
    assert!(
        closed_after < Duration::from_secs(5),
        "held open {closed_after:?}"
    );
    assert_still_serving(&server).await;
}

#[tokio::test]
async fn oversized_headers_get_431() {
    let server = TestServer::start_with(&guests().testbed, &["--max-header-size", "16KiB"]);
    let response = client()
        .get(server.url("/echo"))
        .header("x-big", "a".repeat(32 * 1024))
        .send()
        .await
        .expect("GET with big header");
    assert_eq!(
        response.status(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
    assert_still_serving(&server).await;
}

#[tokio::test]
async fn oversized_bodies_get_413_with_content_length_and_chunked() {
    let server = TestServer::start_with(&guests().testbed, &["--max-body-size", "1MiB"]);
    let big = vec![7u8; 2 * 1024 * 1024];

    // A declared length over the limit is refused before any of the body is read, and
    // the connection is closed since the unread body cannot be skipped. (A client still
    // uploading may see the close before the response, so the head is checked raw.)
    let addr = server.addr;
    let head = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream
            .write_all(b"POST /consume HTTP/1.1\r\nHost: x\r\nContent-Length: 2097152\r\n\r\n")
            .expect("write head");
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        response
    })
    .await
    .expect("task");
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );

    // A streamed body has no Content-Length: it is cut off as it arrives.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        big.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
    let chunked = client()
        .post(server.url("/consume"))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .expect("POST chunked");
    assert_eq!(chunked.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let within = client()
        .post(server.url("/consume"))
        .body(vec![1u8; 1024 * 1024])
        .send()
        .await
        .expect("POST within the limit");
    assert_eq!(within.status(), StatusCode::OK);
    assert_eq!(
        within.text().await.expect("body"),
        (1024 * 1024).to_string()
    );
}

#[tokio::test]
async fn h2c_with_prior_knowledge_is_served_on_the_same_port() {
    let server = TestServer::start(&guests().hello);
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("client");
    let response = h2.get(server.url("/")).send().await.expect("h2c GET /");
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.expect("body"), "Hello, World!");
    let h1 = client()
        .get(server.url("/"))
        .send()
        .await
        .expect("HTTP/1.1 GET /");
    assert_eq!(h1.version(), reqwest::Version::HTTP_11);
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
    let mut server = TestServer::start(&guests().testbed);
    let mut tasks = Vec::new();
    for _ in 0..IN_FLIGHT {
        let url = server.url("/sleep?ms=1500");
        tasks.push(tokio::spawn(async move {
            let response = client().get(url).send().await?;
            Ok::<_, reqwest::Error>((response.status(), response.text().await?))
        }));
    }
    // Let every request reach the guest before asking the host to stop.
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.signal("TERM");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        TcpStream::connect(server.addr).is_err(),
        "new connections must be refused once draining"
    );
    for task in tasks {
        let (status, body) = task.await.expect("task").expect("in-flight request");
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "slept");
    }
    let status = server.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "exit status {status}");
    server.assert_logged("all connections drained");
}

#[tokio::test]
async fn requests_still_running_at_the_shutdown_timeout_are_cancelled() {
    let mut server = TestServer::start_with(&guests().testbed, &["--shutdown-timeout", "500ms"]);
    let url = server.url("/sleep?ms=30000");
    let stuck = tokio::spawn(async move { client().get(url).send().await });
    tokio::time::sleep(Duration::from_millis(300)).await;
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
