//! `--workers`: several serving processes on one port. Connections reach all of them,
//! the metrics are their sum, every swap reaches every worker, SIGTERM drains them all,
//! and losing one stops the host rather than leaving part of the port unanswered.

use std::time::Duration;

use reqwest::StatusCode;

use crate::swap::{Build, TOKEN, component_copy, put_component, start_with_admin};
use crate::util::{TestServer, cpu_time, guests, serve_refused, wait_for};

/// A client that opens a new connection for every request, so the kernel spreads them
/// over the workers.
fn fresh_connections() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// The process id of worker 2, once it serves.
fn secondary_pid(server: &TestServer) -> u32 {
    server.assert_logged("worker 2 of 2 serving on http://");
    let pid = server.logged_after("started worker 2 of 2 (pid ");
    pid.trim_end_matches(')').parse().expect("worker 2's pid")
}

fn is_running(pid: u32) -> bool {
    std::fs::metadata(format!("/proc/{pid}")).is_ok()
}

/// Sends `count` requests for `/build`, each on a new connection, and checks each got
/// `build`.
async fn assert_all_served(server: &TestServer, build: &str, count: usize) {
    let http = fresh_connections();
    for _ in 0..count {
        let response = http.get(server.url("/build")).send().await.expect("GET");
        assert_eq!(response.text().await.expect("body"), build);
    }
}

#[tokio::test]
async fn connections_reach_every_worker_and_the_metrics_add_up() {
    let server = TestServer::start_with(
        &guests().testbed,
        &[
            "--workers",
            "2",
            "--metrics-addr",
            "127.0.0.1:0",
            "--request-timeout",
            "300ms",
        ],
    );
    let secondary = secondary_pid(&server);
    let before = (server.cpu_time(), cpu_time(secondary));

    // Each looping guest burns its 300 ms on whichever worker accepted its connection.
    let http = fresh_connections();
    for _ in 0..8 {
        let pair = [
            http.get(server.url("/loop")).send(),
            http.get(server.url("/loop")).send(),
        ];
        for response in futures_util::future::join_all(pair).await {
            assert_eq!(response.expect("GET /loop").status(), 504);
        }
    }
    let busy = Duration::from_millis(100);
    assert!(server.cpu_time() - before.0 >= busy, "the primary served");
    assert!(cpu_time(secondary) - before.1 >= busy, "worker 2 served");

    for _ in 0..20 {
        let response = http.get(server.url("/echo")).send().await.expect("GET");
        assert_eq!(response.status(), StatusCode::OK);
    }
    let metrics = server.logged_after("serving metrics at ");
    // The last responses' metrics are recorded as their bodies end: allow a moment.
    let mut summed = None;
    for _ in 0..100 {
        let text = http
            .get(&metrics)
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics");
        if text.contains("wasi_host_requests_total{status_class=\"2xx\"} 20\n")
            && text.contains("wasi_host_requests_total{status_class=\"5xx\"} 16\n")
        {
            summed = Some(text);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let summed = summed.unwrap_or_else(|| panic!("metrics never summed both workers"));
    assert!(summed.ends_with("# EOF\n"), "{summed}");
    assert_eq!(
        summed.matches("# TYPE wasi_host_requests counter").count(),
        1
    );
}

#[tokio::test]
async fn every_swap_reaches_every_worker() {
    let (_dir, path) = component_copy();
    let (server, admin) = start_with_admin(&path, &["--workers", "2"]);
    secondary_pid(&server);
    assert_all_served(&server, "v1", 20).await;

    let response = put_component(&admin, Some(TOKEN), Build::V2.bytes()).await;
    assert_eq!(response.status(), StatusCode::OK);
    server.assert_logged("worker 2 follows: generation 2");
    assert_all_served(&server, "v2", 20).await;

    std::fs::write(&path, Build::V1.bytes()).expect("replace component");
    server.signal("HUP");
    server.assert_logged("worker 2 follows: generation 3");
    assert_all_served(&server, "v1", 20).await;

    // A version the primary rejects is never offered to the others.
    let response = put_component(&admin, Some(TOKEN), b"\0asm\x01\0\0\0".to_vec()).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_all_served(&server, "v1", 20).await;
    assert!(!server.log().contains("did not follow"), "{}", server.log());
}

#[tokio::test]
async fn sigterm_drains_every_worker_and_exits_0() {
    let mut server = TestServer::start_with(&guests().testbed, &["--workers", "2"]);
    let secondary = secondary_pid(&server);
    let http = fresh_connections();
    let slow: Vec<_> = (0..8)
        .map(|_| tokio::spawn(http.get(server.url("/sleep?ms=1500")).send()))
        .collect();
    // Let every request reach its guest.
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.signal("TERM");
    for request in slow {
        let response = request.await.expect("task").expect("slow request");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.text().await.expect("body"), "slept");
    }
    assert!(server.wait_exit(Duration::from_secs(10)).success());
    assert!(
        wait_for(Duration::from_secs(5), || (!is_running(secondary))
            .then_some(()))
        .is_some(),
        "worker 2 outlived the host"
    );
}

#[tokio::test]
async fn losing_a_worker_stops_the_host() {
    let mut server = TestServer::start_with(&guests().testbed, &["--workers", "2"]);
    let secondary = secondary_pid(&server);
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &secondary.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = server.wait_exit(Duration::from_secs(15));
    assert!(!status.success(), "{status}");
    server.assert_logged("worker 2 exited (signal: 9 (SIGKILL)); stopping");
}

#[test]
fn the_worker_count_is_checked() {
    for (count, message) in [
        ("0", "at least one worker is needed"),
        ("many", "expected a number of workers or `auto`"),
    ] {
        let stderr = serve_refused(&guests().testbed, &["--workers", count], &[]);
        assert!(stderr.contains(message), "{count}: {stderr}");
    }
}
