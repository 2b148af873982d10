//! Clients that hold the host's resources without using them: sockets that never speak,
//! bodies that trickle in, responses never read, clients that leave, floods of `503`s.
//! Each must cost the host a bounded time, and everyone else must still be served.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::hardening::closed_after;
use crate::metrics::{assert_sample, metrics_url, sample, scrape};
use crate::util::{
    TestServer, assert_get, assert_still_serving, client, get, guests,
    host_binary_with_open_file_limit, read_until_closed, send, wait_for,
};

/// What the testbed answers on `/build`.
const BUILD: &str = "v1";

/// Waits up to `timeout` for `series` to reach at least `value`, and returns it.
async fn sample_reaching(url: &str, series: &str, value: f64, timeout: Duration) -> f64 {
    let deadline = Instant::now() + timeout;
    loop {
        let text = scrape(url).await;
        let found = sample(&text, series).unwrap_or_default();
        if found >= value {
            return found;
        }
        assert!(Instant::now() < deadline, "{series} is {found}:\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Checks that `GET /build` is answered `200` within `limit`.
pub async fn assert_answered_within(server: &TestServer, limit: Duration) {
    let started = Instant::now();
    assert_get(server, "/build", StatusCode::OK, BUILD).await;
    let took = started.elapsed();
    assert!(took < limit, "answered after {took:?}");
}

#[tokio::test]
async fn three_hundred_silent_sockets_under_an_open_file_limit_of_256_leave_the_host_serving() {
    const SILENT: usize = 300;
    let server = TestServer::start_by(
        host_binary_with_open_file_limit(256),
        &guests().testbed,
        &[
            "--first-request-timeout",
            "3s",
            "--metrics-addr",
            "127.0.0.1:0",
            "--log-summary-interval",
            "1s",
        ],
        &[],
    );
    let metrics = metrics_url(&server);
    let addr = server.addr;
    let silent = tokio::task::spawn_blocking(move || {
        (0..SILENT)
            .map(|_| TcpStream::connect(addr).expect("connect"))
            .collect::<Vec<_>>()
    })
    .await
    .expect("task");
    // The default cap (256 open files less 128) turns the rest away at once, and the
    // files it keeps let the metrics port answer meanwhile.
    let refused = "wasi_host_connections_refused_total";
    let expected = (SILENT - 128) as f64;
    sample_reaching(&metrics, refused, expected, Duration::from_secs(10)).await;
    server.assert_logged("connections refused: too many open (--max-connections)");
    // The silent ones are closed at the first-request timeout; then requests are served.
    let closed = tokio::task::spawn_blocking(move || {
        silent
            .into_iter()
            .filter_map(|mut stream| read_until_closed(&mut stream, Duration::from_secs(10)))
            .count()
    })
    .await
    .expect("task");
    assert_eq!(closed, SILENT, "the server closed every silent socket");
    assert_answered_within(&server, Duration::from_secs(2)).await;
    // Only the scrape's own connection is left.
    assert_sample(&metrics, "wasi_host_connections_open", 1.0).await;
}

fn assert_closed_at_about_one_second(closed_after: Duration, what: &str) {
    assert!(
        (Duration::from_millis(900)..Duration::from_secs(5)).contains(&closed_after),
        "{what}: closed after {closed_after:?}"
    );
}

#[tokio::test]
async fn connections_that_never_send_a_request_are_closed_on_every_port() {
    let token = "0123456789abcdef";
    let server = TestServer::start_with_env(
        &guests().testbed,
        &[
            "--first-request-timeout",
            "1s",
            "--metrics-addr",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
        ],
        &[("WASI_HOST_ADMIN_TOKEN", token)],
    );
    let side_port = |marker: &str| -> SocketAddr {
        let url = server.logged_after(marker);
        let rest = url.strip_prefix("http://").expect("an http URL");
        rest.split('/').next().unwrap().parse().expect("an address")
    };
    let ports = [
        ("serving", server.addr),
        ("metrics", side_port("serving metrics at ")),
        ("admin", side_port("serving the admin endpoint at ")),
    ];
    for (port, addr) in ports {
        assert_closed_at_about_one_second(closed_after(addr, b"").await, port);
    }
    // Half the HTTP/2 preface: hyper-util still waits to choose the protocol.
    let half_preface = closed_after(server.addr, b"PRI * HTTP/2.0\r\n").await;
    assert_closed_at_about_one_second(half_preface, "half a preface");
    assert_still_serving(&server).await;
}

/// Sends one request on a new connection: `head`, then the body one byte at a time,
/// a byte every `pause`, until the server answers; returns the answer.
fn trickle(addr: SocketAddr, head: String, pause: Duration) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.write_all(head.as_bytes()).expect("write head");
    stream.set_read_timeout(Some(pause)).expect("read timeout");
    let mut answer = Vec::new();
    let mut buffer = [0u8; 1024];
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        if stream.write_all(b"x").is_err() {
            break;
        }
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => answer.extend_from_slice(&buffer[..read]),
            Err(_) if !answer.is_empty() => break,
            Err(_) => {}
        }
    }
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn eighty_trickling_uploads_get_408_and_a_normal_request_is_served_at_once() {
    const TRICKLING: usize = 80;
    let server = TestServer::start_with(
        &guests().testbed,
        &["--body-idle-timeout", "1s", "--metrics-addr", "127.0.0.1:0"],
    );
    let metrics = metrics_url(&server);
    let head = "POST /consume HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n";
    let uploads: Vec<_> = (0..TRICKLING)
        .map(|_| {
            let addr = server.addr;
            tokio::task::spawn_blocking(move || {
                trickle(addr, head.to_owned(), Duration::from_millis(1500))
            })
        })
        .collect();
    // Every slot is taken by an upload...
    let in_flight = "wasi_host_requests_in_flight";
    sample_reaching(
        &metrics,
        in_flight,
        TRICKLING as f64,
        Duration::from_secs(10),
    )
    .await;
    // ...yet a normal request is served within about the body idle timeout.
    assert_answered_within(&server, Duration::from_secs(3)).await;
    for upload in uploads {
        let answer = upload.await.expect("upload");
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(
            answer.to_ascii_lowercase().contains("connection: close"),
            "{answer}"
        );
    }
    assert_still_serving(&server).await;
}

/// The testbed with one request at a time, a 1 s write timeout and room to queue
/// behind it for 5 s, and `flags`.
pub fn one_slot_with_write_timeout(flags: &[&str]) -> TestServer {
    let mut all_flags = vec![
        "--max-concurrency",
        "1",
        "--response-write-timeout",
        "1s",
        "--queue-timeout",
        "5s",
    ];
    all_flags.extend_from_slice(flags);
    TestServer::start_with(&guests().testbed, &all_flags)
}

#[tokio::test]
async fn a_client_that_never_reads_its_response_frees_its_slot() {
    let server = one_slot_with_write_timeout(&["--metrics-addr", "127.0.0.1:0"]);
    let metrics = metrics_url(&server);
    let mut unread = TcpStream::connect(server.addr).expect("connect");
    unread
        .write_all(b"GET /stream?bytes=268435456 HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    sample_reaching(
        &metrics,
        "wasi_host_requests_in_flight",
        1.0,
        Duration::from_secs(10),
    )
    .await;
    // The one slot is held by a response no one reads, until the write timeout.
    assert_answered_within(&server, Duration::from_secs(4)).await;
    drop(unread);
}

#[tokio::test]
async fn a_guest_is_stopped_when_its_client_goes_away() {
    let server = TestServer::start_with(
        &guests().testbed,
        &["--request-timeout", "60s", "--metrics-addr", "127.0.0.1:0"],
    );
    let metrics = metrics_url(&server);
    let instances = "wasi_host_instances";
    let mut leaving = TcpStream::connect(server.addr).expect("connect");
    leaving
        .write_all(b"GET /loop HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    assert_sample(&metrics, instances, 1.0).await;
    drop(leaving);
    // Long before the 60 s request timeout, the looping guest is gone.
    let started = Instant::now();
    assert_sample(&metrics, instances, 0.0).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_still_serving(&server).await;
}

/// The total of the summary lines `what: N in the last ...` logged so far.
fn summarized(server: &TestServer, what: &str) -> (usize, u64) {
    let marker = format!("{what}: ");
    let counts: Vec<u64> = server
        .log()
        .lines()
        .filter_map(|line| line.split(&marker).nth(1)?.split(' ').next()?.parse().ok())
        .collect();
    (counts.len(), counts.iter().sum())
}

#[tokio::test]
async fn a_flood_of_503s_is_logged_as_a_few_summary_lines_and_counted_exactly() {
    const FLOOD: usize = 300;
    let server = TestServer::start_with(
        &guests().testbed,
        &[
            "--max-concurrency",
            "1",
            "--max-queue",
            "0",
            "--log-summary-interval",
            "1s",
            "--metrics-addr",
            "127.0.0.1:0",
        ],
    );
    let metrics = metrics_url(&server);
    let running = tokio::spawn(send(client().get(server.url("/sleep?ms=5000"))));
    assert_sample(&metrics, "wasi_host_requests_in_flight", 1.0).await;
    for _ in 0..FLOOD {
        assert_eq!(
            get(&server, "/build").await.status,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
    let series = "wasi_host_admission_rejections_total{reason=\"queue_full\"}";
    assert_sample(&metrics, series, FLOOD as f64).await;
    let what = "requests turned away with 503: queue full";
    let (lines, total) = wait_for(Duration::from_secs(5), || {
        let (lines, total) = summarized(&server, what);
        (total == FLOOD as u64).then_some((lines, total))
    })
    .unwrap_or_else(|| {
        panic!(
            "{FLOOD} rejections not summed in the log:\n{}",
            server.log()
        )
    });
    assert_eq!(total, FLOOD as u64);
    assert!(lines <= 6, "{lines} summary lines for {FLOOD} rejections");
    let log = server.log();
    let warnings = log.lines().filter(|line| line.contains("WARN")).count();
    assert!(warnings <= 6, "{warnings} warnings:\n{log}");
    assert_eq!(running.await.expect("task").status, StatusCode::OK);
}
