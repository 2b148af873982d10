//! Prometheus metrics on their own address: counts by status class, guest failures,
//! admission rejections, in-flight requests and the component generation, scraped over
//! real HTTP; reserved and clashing ports refused before anything binds.

use std::time::Duration;

use reqwest::StatusCode;

use crate::util::{TestServer, client, get, guests, run_host, send, serve_refused};

/// The metrics URL the server logged.
pub fn metrics_url(server: &TestServer) -> String {
    server.logged_after("serving metrics at ")
}

pub async fn scrape(url: &str) -> String {
    let reply = send(client().get(url)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let text = reply.text();
    assert!(text.ends_with("# EOF\n"), "{text}");
    text.to_owned()
}

/// The value of the sample written exactly as `series` (name and labels).
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Scrapes until `series` has `value` (a response's metrics are recorded when its body
/// has been sent, which can trail the client's read by a moment; a swap takes a compile).
pub async fn assert_sample(url: &str, series: &str, value: f64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = scrape(url).await;
        let found = sample(&text, series);
        if found == Some(value) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{series} is {found:?}, expected {value}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn requests_failures_and_generation_are_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let component = dir.path().join("app.wasm");
    std::fs::copy(&guests().testbed, &component).expect("copy guest");
    let mut server = TestServer::start_with(
        &component,
        &["--metrics-addr", "127.0.0.1:0", "--request-timeout", "1s"],
    );
    let url = metrics_url(&server);
    for (path, expected) in [
        ("/echo", StatusCode::OK),
        ("/echo", StatusCode::OK),
        ("/echo", StatusCode::OK),
        ("/nope", StatusCode::NOT_FOUND),
        ("/trap", StatusCode::INTERNAL_SERVER_ERROR),
        ("/no-response", StatusCode::INTERNAL_SERVER_ERROR),
        ("/sleep?ms=60000", StatusCode::GATEWAY_TIMEOUT),
        // Probes are the platform's, not traffic: not counted.
        ("/.well-known/wasi-host/health", StatusCode::OK),
    ] {
        assert_eq!(get(&server, path).await.status, expected, "{path}");
    }

    // Each series is waited for: any response's metrics may trail its client's read.
    for (series, value) in [
        ("wasi_host_requests_total{status_class=\"2xx\"}", 3.0),
        ("wasi_host_requests_total{status_class=\"3xx\"}", 0.0),
        ("wasi_host_requests_total{status_class=\"4xx\"}", 1.0),
        ("wasi_host_requests_total{status_class=\"5xx\"}", 3.0),
        (
            "wasi_host_request_duration_seconds_count{status_class=\"2xx\"}",
            3.0,
        ),
        (
            "wasi_host_request_duration_seconds_count{status_class=\"5xx\"}",
            3.0,
        ),
        (
            "wasi_host_request_duration_seconds_bucket{le=\"+Inf\",status_class=\"4xx\"}",
            1.0,
        ),
        ("wasi_host_instantiation_duration_seconds_count", 7.0),
        ("wasi_host_guest_failures_total{kind=\"trap\"}", 1.0),
        ("wasi_host_guest_failures_total{kind=\"no_response\"}", 1.0),
        ("wasi_host_guest_failures_total{kind=\"timeout\"}", 1.0),
        ("wasi_host_guest_failures_total{kind=\"error_code\"}", 0.0),
        ("wasi_host_requests_in_flight", 0.0),
        ("wasi_host_component_generation", 1.0),
    ] {
        assert_sample(&url, series, value).await;
    }

    // Only /metrics, only read.
    let other = send(client().get(url.replace("/metrics", "/other"))).await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    let post = send(client().post(&url)).await;
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);

    // A swap shows in the generation.
    std::fs::copy(&guests().testbed_v2, &component).expect("replace guest");
    server.signal("HUP");
    assert_sample(&url, "wasi_host_component_generation", 2.0).await;

    // The metrics server stops with the host.
    server.signal("TERM");
    assert!(server.wait_exit(Duration::from_secs(5)).success());
    assert!(client().get(&url).send().await.is_err(), "still serving");
}

#[tokio::test]
async fn rejections_by_reason_and_requests_in_flight() {
    let server = TestServer::start_with(
        &guests().testbed,
        &[
            "--metrics-addr",
            "127.0.0.1:0",
            "--max-concurrency",
            "1",
            "--max-queue",
            "1",
            "--queue-timeout",
            "1s",
        ],
    );
    let url = metrics_url(&server);
    let slow = tokio::spawn(send(client().get(server.url("/sleep?ms=3000"))));
    assert_sample(&url, "wasi_host_requests_in_flight", 1.0).await;

    // One request waits in the queue and times out; the other finds the queue full.
    let (first, second) = tokio::join!(get(&server, "/echo"), async {
        // Once the first holds the queue's one place (queued requests are in flight).
        assert_sample(&url, "wasi_host_requests_in_flight", 2.0).await;
        get(&server, "/echo").await
    });
    assert_eq!(first.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(second.status, StatusCode::SERVICE_UNAVAILABLE);
    for (series, value) in [
        (
            "wasi_host_admission_rejections_total{reason=\"queue_full\"}",
            1.0,
        ),
        (
            "wasi_host_admission_rejections_total{reason=\"queue_timeout\"}",
            1.0,
        ),
        ("wasi_host_requests_total{status_class=\"5xx\"}", 2.0),
        ("wasi_host_requests_in_flight", 1.0),
    ] {
        assert_sample(&url, series, value).await;
    }

    let slow = slow.await.expect("join");
    assert_eq!((slow.status, slow.text()), (StatusCode::OK, "slept"));
    assert_sample(&url, "wasi_host_requests_in_flight", 0.0).await;
    assert_sample(&url, "wasi_host_requests_total{status_class=\"2xx\"}", 1.0).await;
}

#[test]
fn metrics_are_off_unless_asked_for() {
    // The metrics server would say so before the main server's `listening on` line.
    let server = TestServer::start(&guests().testbed);
    assert!(
        !server.log().contains("serving metrics"),
        "{}",
        server.log()
    );
}

#[test]
fn reserved_and_clashing_side_ports_are_refused() {
    let testbed = guests().testbed.to_str().expect("utf-8 path");
    let token = [("WASI_HOST_ADMIN_TOKEN", crate::swap::TOKEN)];
    for port in [8008, 8012, 8013, 8022, 9090, 9091] {
        let addr = format!("0.0.0.0:{port}");
        for flag in ["--metrics-addr", "--admin-addr"] {
            let stderr = serve_refused(&guests().testbed, &[flag, &addr], &token);
            assert!(
                stderr.contains(&format!(
                    "error: {flag} port {port} is reserved on Cloud Run and Knative"
                )),
                "{stderr}"
            );
        }
    }
    let stderr = serve_refused(
        &guests().testbed,
        &[
            "--metrics-addr",
            "127.0.0.1:19464",
            "--admin-addr",
            "127.0.0.1:19464",
        ],
        &token,
    );
    assert!(
        stderr.contains("error: --metrics-addr and --admin-addr must be on different ports"),
        "{stderr}"
    );

    let output = run_host(&[
        "serve",
        testbed,
        "--port",
        "18080",
        "--metrics-addr",
        "127.0.0.1:18080",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("error: --metrics-addr port 18080 is the port requests are served on"),
        "{stderr}"
    );

    // A port that is already taken: the host says so and does not start.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let stderr = serve_refused(&guests().testbed, &["--metrics-addr", &addr], &[]);
    assert!(
        stderr.contains(&format!("error: cannot listen for metrics on {addr}")),
        "{stderr}"
    );
}
