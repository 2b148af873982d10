//! Chaos: ten thousand requests at 64 concurrency mixing good requests with traps,
//! infinite loops, memory bombs, oversized bodies and slowloris clients, under tight
//! client limits (timeouts of seconds, a cap on connections). Every good request must
//! succeed, every bad one must get its own clear status, and the host's
//! memory must come back down afterwards.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::util::{TestServer, assert_still_serving, guests, read_until_closed, wait_for};

const REQUESTS: usize = 10_000;
const CONCURRENCY: usize = 64;
const SLOW_CLIENTS: usize = 8;

/// Resident memory may grow by at most this much over the run: allocator caches and
/// the instance pool's bookkeeping, but nothing per request.
const RSS_GROWTH_BOUND_KIB: u64 = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Good,
    Trap,
    Loop,
    MemoryBomb,
    OversizedBody,
}

impl Kind {
    fn of(index: usize) -> Self {
        match index {
            i if i % 1000 == 7 => Kind::Loop,
            i if i % 100 == 3 => Kind::MemoryBomb,
            i if i % 100 == 11 => Kind::OversizedBody,
            i if i % 20 == 5 => Kind::Trap,
            _ => Kind::Good,
        }
    }

    fn expected(self) -> StatusCode {
        match self {
            Kind::Good => StatusCode::OK,
            Kind::Trap | Kind::MemoryBomb => StatusCode::INTERNAL_SERVER_ERROR,
            Kind::Loop => StatusCode::GATEWAY_TIMEOUT,
            Kind::OversizedBody => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }
}

/// What a request got: its status, or `None` for a good request whose response was cut
/// off (the connection ended before the whole body).
type Outcome = (Kind, Option<StatusCode>);

async fn send(http: &reqwest::Client, server_url: &str, index: usize) -> Outcome {
    let kind = Kind::of(index);
    let request = match kind {
        Kind::Good => http
            .post(format!("{server_url}/echo"))
            .body(format!("good {index}")),
        Kind::Trap => http.get(format!("{server_url}/trap")),
        Kind::Loop => http.get(format!("{server_url}/loop")),
        Kind::MemoryBomb => http.get(format!("{server_url}/hog")),
        Kind::OversizedBody => http
            .post(format!("{server_url}/consume"))
            .body(vec![0u8; 2 * 1024 * 1024]),
    };
    let response = match request.send().await {
        Ok(response) => response,
        Err(error) if kind == Kind::Good && error.is_request() => return (kind, None),
        Err(error) => panic!("request {index} ({kind:?}) failed: {error:?}"),
    };
    let status = response.status();
    if kind == Kind::Good {
        let Ok(body) = response.text().await else {
            return (kind, None);
        };
        assert_eq!(body, format!("good {index}"), "request {index}");
    }
    (kind, Some(status))
}

/// A client that keeps one connection alive, but never one idle for half a second: the
/// server closes a connection idle for the header read timeout (1 s), and a request sent
/// on it just then would be lost with the connection.
fn keep_alive_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .pool_idle_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// What the slowloris clients saw.
#[derive(Default)]
struct Slowloris {
    opened: AtomicUsize,
    /// Connections the server hung up on; one still open after five seconds is not.
    closed: AtomicUsize,
}

/// Opens connections that never finish their headers, each held until the server's
/// header read timeout closes it, until told to stop.
fn slowloris(addr: std::net::SocketAddr, stop: Arc<AtomicBool>, seen: Arc<Slowloris>) {
    while !stop.load(Ordering::Relaxed) {
        if let Ok(mut stream) = TcpStream::connect(addr) {
            seen.opened.fetch_add(1, Ordering::Relaxed);
            let _ = stream.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\n");
            if read_until_closed(&mut stream, Duration::from_secs(5)).is_some() {
                seen.closed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_mixed_requests_leave_the_host_healthy() {
    chaos(&guests().testbed, &[]).await;
}

/// The same against a WASI 0.3 guest whose instances are reused, one request at a time.
/// An echo's response is returned before its body is streamed: the instance counts the
/// request as served only when the body has ended, so a bad request that takes its
/// instance down never takes a good response with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_mixed_requests_to_reused_wasi_0_3_instances_leave_the_host_healthy() {
    chaos(
        &guests().p3_testbed,
        &["--max-instance-concurrent-reuse-count", "1"],
    )
    .await;
}

/// Sends [`REQUESTS`] mixed requests to `component`, served with `flags`, and checks
/// every outcome and the host's health afterwards.
async fn chaos(component: &Path, flags: &[&str]) {
    let mut all_flags = vec![
        // Generous enough that a memory bomb on a loaded machine still fails by
        // running out of memory, not by running out of time.
        "--request-timeout",
        "2s",
        "--max-memory",
        "32MiB",
        "--max-body-size",
        "1MiB",
        "--header-read-timeout",
        "1s",
        // The client limits, tight: a good request, which never stalls, never meets them.
        // Two seconds, since a client on this loaded machine may wait a second between
        // connecting and writing its request.
        "--first-request-timeout",
        "2s",
        "--idle-connection-timeout",
        "2s",
        "--body-idle-timeout",
        "2s",
        "--response-write-timeout",
        "2s",
        "--max-connections",
        "200",
    ];
    all_flags.extend_from_slice(flags);
    let server = TestServer::start_with(component, &all_flags);
    let url = server.url("");
    let warm = keep_alive_client();
    for index in (0..200).map(|i| i * 20) {
        assert_eq!(send(&warm, &url, index).await.1, Some(StatusCode::OK));
    }
    let rss_before = server.rss_kib();

    let stop = Arc::new(AtomicBool::new(false));
    let slow_seen = Arc::new(Slowloris::default());
    let slow: Vec<_> = (0..SLOW_CLIENTS)
        .map(|_| {
            let (addr, stop, seen) = (server.addr, stop.clone(), slow_seen.clone());
            std::thread::spawn(move || slowloris(addr, stop, seen))
        })
        .collect();

    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let (url, next) = (url.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let http = keep_alive_client();
            let mut seen = Vec::new();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= REQUESTS {
                    return seen;
                }
                seen.push(send(&http, &url, index).await);
            }
        }));
    }
    let mut outcomes: BTreeMap<Outcome, usize> = BTreeMap::new();
    for worker in workers {
        for outcome in worker.await.expect("worker") {
            *outcomes.entry(outcome).or_default() += 1;
        }
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for thread in slow {
        thread.join().expect("slowloris thread");
    }

    // The last instances go back to the pool as their responses end.
    let rss_bound = rss_before + RSS_GROWTH_BOUND_KIB;
    let rss_after = wait_for(Duration::from_secs(5), || {
        let rss = server.rss_kib();
        (rss <= rss_bound).then_some(rss)
    })
    .unwrap_or_else(|| server.rss_kib());
    let (slow_opened, slow_closed) = (
        slow_seen.opened.load(Ordering::Relaxed),
        slow_seen.closed.load(Ordering::Relaxed),
    );
    eprintln!(
        "chaos ({}): {REQUESTS} requests in {elapsed:.1?}, {slow_opened} slowloris \
         connections ({slow_closed} closed by the server); outcomes {outcomes:?}; RSS \
         before {rss_before} KiB, after {rss_after} KiB",
        component.display()
    );

    let total: usize = outcomes.values().sum();
    assert_eq!(total, REQUESTS);
    for ((kind, status), count) in &outcomes {
        let status = status.unwrap_or_else(|| panic!("{count} good requests were cut off"));
        assert_eq!(
            status,
            kind.expected(),
            "{count} {kind:?} requests got {status}"
        );
    }
    assert!(slow_opened >= SLOW_CLIENTS);
    assert_eq!(
        slow_closed, slow_opened,
        "the server closed every slowloris connection"
    );
    assert!(
        rss_after <= rss_bound,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
    assert_still_serving(&server).await;
}
