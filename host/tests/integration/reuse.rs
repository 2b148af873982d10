//! WASI 0.3 components (`wasi:http/service`) served beside 0.2 ones, and instance reuse
//! for both: what is reused, as far as the flags say, and what never is: an instance
//! whose guest trapped, ran out of memory or passed its deadline. Everything a 0.2
//! component gets holds for a 0.3 one: streaming both ways, the outbound policy, output
//! as log lines of its request, deadlines, limits, metrics and swaps.

use std::time::{Duration, Instant};

use futures_util::future::join;
use reqwest::StatusCode;

use crate::logs::entry;
use crate::metrics::{assert_sample, metrics_url};
use crate::outbound::{UPSTREAM_BODY, Upstream, UpstreamReply, fetch};
use crate::swap::{active_version, start_with_admin};
use crate::util::{TestServer, client, guests, run_host};

/// `GET path` on `server`: its status and body.
async fn get(server: &TestServer, path: &str) -> (StatusCode, String) {
    let reply = crate::util::get(server, path).await;
    (reply.status, reply.text().to_owned())
}

/// Serves `component` with `flags`, keeping an idle instance for an hour instead of a
/// second: a pause on a busy machine must not end the reuse a test counts on.
fn reusing(component: &std::path::Path, flags: &[&str]) -> TestServer {
    let flags: Vec<&str> = flags
        .iter()
        .copied()
        .chain(["--idle-instance-timeout", "1h"])
        .collect();
    TestServer::start_with(component, &flags)
}

/// `GET first`, and `GET second` 300 ms into it, while the first is still served: both
/// answers.
async fn get_meanwhile(
    server: &TestServer,
    first: &str,
    second: &str,
) -> ((StatusCode, String), (StatusCode, String)) {
    let later = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        get(server, second).await
    };
    join(get(server, first), later).await
}

/// What `/count` says in turn, `times` times: how many requests each answering instance
/// had served.
async fn counts(server: &TestServer, times: usize) -> Vec<u64> {
    let mut seen = Vec::new();
    for _ in 0..times {
        let (status, body) = get(server, "/count").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        seen.push(body.parse().expect("a count"));
    }
    seen
}

#[tokio::test]
async fn a_wasi_0_3_component_is_served_streaming_both_ways() {
    let server = TestServer::start(&guests().p3_testbed);
    server.assert_logged("wasi:http/service@0.3 (WASI 0.3)");
    let response = client()
        .post(server.url("/echo?status=201"))
        .header("x-test", "yes")
        .body("ping")
        .send()
        .await
        .expect("POST /echo");
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["x-echo-method"], "POST");
    assert_eq!(response.headers()["x-test"], "yes");
    assert_eq!(response.text().await.expect("body"), "ping");
    let streamed = crate::util::get(&server, "/stream?bytes=300000").await;
    assert_eq!(
        (streamed.status, streamed.body.len()),
        (StatusCode::OK, 300_000)
    );
    let (status, body) = get(&server, "/slow-body?chunks=3&ms=50").await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "chunk 0\nchunk 1\nchunk 2\n")
    );
}

#[tokio::test]
async fn instances_are_reused_as_far_as_the_flags_say() {
    // WASI 0.3's default: one instance serves request after request.
    let server = reusing(&guests().p3_testbed, &[]);
    assert_eq!(counts(&server, 4).await, [1, 2, 3, 4]);
    let reused_twice = reusing(&guests().p3_testbed, &["--max-instance-reuse-count", "2"]);
    assert_eq!(counts(&reused_twice, 4).await, [1, 2, 1, 2]);
    // WASI 0.2's default: a fresh instance per request; reuse when asked.
    let fresh = TestServer::start(&guests().testbed);
    assert_eq!(counts(&fresh, 3).await, [1, 1, 1]);
    let sequential = reusing(&guests().testbed, &["--max-instance-reuse-count", "3"]);
    assert_eq!(counts(&sequential, 4).await, [1, 2, 3, 1]);
    // An idle instance is dropped after the idle timeout.
    let short = TestServer::start_with(&guests().p3_testbed, &["--idle-instance-timeout", "100ms"]);
    assert_eq!(counts(&short, 2).await, [1, 2]);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(counts(&short, 1).await, [1]);
}

#[tokio::test]
async fn requests_at_once_are_served_at_once() {
    // Which instance takes a request is the pool's choice (requests that find none ready
    // each start one), so this checks the concurrency a client sees.
    let server = reusing(&guests().p3_testbed, &[]);
    let started = Instant::now();
    let sleeps = (0..5).map(|_| get(&server, "/sleep?ms=1000"));
    for (status, body) in futures_util::future::join_all(sleeps).await {
        assert_eq!((status, body.as_str()), (StatusCode::OK, "slept"));
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_trap_fails_the_requests_of_its_instance_and_the_instance_is_dropped() {
    let server = reusing(&guests().p3_testbed, &[]);
    assert_eq!(counts(&server, 1).await, [1]);
    // The sleeper waits in the instance while the trap lands in it too.
    let ((sleeper_status, _), (trap_status, _)) =
        get_meanwhile(&server, "/sleep?ms=2000", "/trap").await;
    assert_eq!(trap_status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(sleeper_status, StatusCode::INTERNAL_SERVER_ERROR);
    server.assert_logged("instance retired after a failure");
    // A new instance serves the next request.
    assert_eq!(counts(&server, 1).await, [1]);
}

#[tokio::test]
async fn an_instance_serving_one_at_a_time_takes_no_request_while_a_body_streams() {
    let server = reusing(
        &guests().p3_testbed,
        &["--max-instance-concurrent-reuse-count", "1"],
    );
    // The head of the slow body comes back at once, its chunks over 1.2 s; a trap sent
    // meanwhile must find another instance, or it would cut the body off.
    let ((slow_status, slow_body), (trap_status, _)) =
        get_meanwhile(&server, "/slow-body?chunks=4&ms=400", "/trap").await;
    assert_eq!(trap_status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        (slow_status, slow_body.as_str()),
        (StatusCode::OK, "chunk 0\nchunk 1\nchunk 2\nchunk 3\n")
    );
    server.assert_logged("instance retired after a failure");
}

#[tokio::test]
async fn a_trap_in_a_reused_wasi_0_2_instance_drops_it() {
    let server = reusing(&guests().testbed, &["--max-instance-reuse-count", "10"]);
    assert_eq!(counts(&server, 2).await, [1, 2]);
    assert_eq!(
        get(&server, "/trap").await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(counts(&server, 2).await, [1, 2]);
}

#[tokio::test]
async fn a_guest_past_its_deadline_gets_504_and_its_instance_is_dropped() {
    let server = TestServer::start_with(&guests().p3_testbed, &["--request-timeout", "1s"]);
    let started = Instant::now();
    assert_eq!(get(&server, "/loop").await.0, StatusCode::GATEWAY_TIMEOUT);
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(900), "early: {elapsed:?}");
    assert!(elapsed < Duration::from_secs(4), "late: {elapsed:?}");
    // The busy instance is gone: its CPU is freed, and a fresh one answers.
    let before = server.cpu_time();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let used = server.cpu_time() - before;
    assert!(
        used < Duration::from_millis(200),
        "still busy: {used:?} in 1s"
    );
    assert_eq!(counts(&server, 1).await, [1]);
    assert_eq!(
        get(&server, "/sleep?ms=5000").await.0,
        StatusCode::GATEWAY_TIMEOUT
    );
}

#[tokio::test]
async fn a_memory_bomb_kills_only_its_own_instance() {
    let server = TestServer::start_with(
        &guests().p3_testbed,
        &[
            "--max-memory",
            "16MiB",
            "--max-instance-concurrent-reuse-count",
            "1",
        ],
    );
    let (_, limit) = get(&server, "/memory-limit").await;
    assert_eq!(
        limit,
        (16u64 << 20).to_string(),
        "the cap reached the guest"
    );
    // One concurrent request per instance: the sleeper and the hog get one each.
    let ((sleeper_status, sleeper_body), (hog_status, _)) =
        get_meanwhile(&server, "/sleep?ms=1500", "/hog").await;
    assert_eq!(hog_status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        (sleeper_status, sleeper_body.as_str()),
        (StatusCode::OK, "slept")
    );
}

#[tokio::test]
async fn a_trap_after_the_head_aborts_the_body() {
    let server = reusing(&guests().p3_testbed, &[]);
    // The head goes out with the first body bytes; if the trap comes first the
    // connection is cut before any head. Either way nothing looks complete.
    match client().get(server.url("/trap-after-headers")).send().await {
        Ok(response) => {
            assert_eq!(response.status(), StatusCode::OK);
            assert!(
                response.bytes().await.is_err(),
                "a truncated body must not look complete"
            );
        }
        Err(error) => assert!(error.is_request(), "{error:?}"),
    }
    assert_eq!(counts(&server, 1).await, [1]);
}

#[tokio::test]
async fn outbound_calls_of_wasi_0_3_guests_go_through_the_policy() {
    let upstream = Upstream::start(UpstreamReply::Hello).await;
    let url = format!("{}/hello", upstream.origin());
    let allowed = TestServer::start_with(
        &guests().p3_testbed,
        &["--allow-outbound", &upstream.origin()],
    );
    assert_eq!(
        fetch(&allowed, &url).await,
        (StatusCode::OK, UPSTREAM_BODY.to_owned())
    );
    let denied = TestServer::start(&guests().p3_testbed);
    let (status, body) = fetch(&denied, &url).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(body.contains("HttpRequestDenied"), "{body}");
    denied.assert_logged("no --allow-outbound pattern matches");
}

#[tokio::test]
async fn output_lines_are_whole_and_tagged_with_request_and_instance() {
    let server = TestServer::start_with(&guests().p3_testbed, &["--log-format", "json"]);
    assert_eq!(get(&server, "/print").await.0, StatusCode::OK);
    for (stream, text) in [
        ("stdout", "hello from p3 stdout"),
        ("stderr", "hello from p3 stderr"),
    ] {
        let entry = entry(&server, |entry| entry["message"] == text);
        assert_eq!(entry["target"], "guest");
        assert_eq!(entry["stream"], stream);
        assert!(entry["request_id"].is_u64(), "{entry}");
        assert!(entry["instance_id"].is_u64(), "{entry}");
    }
}

#[tokio::test]
async fn metrics_and_the_admin_endpoint_show_the_world_and_the_instances() {
    let (server, admin) =
        start_with_admin(&guests().p3_testbed, &["--metrics-addr", "127.0.0.1:0"]);
    let metrics = metrics_url(&server);
    assert_sample(&metrics, "wasi_host_components{wasi=\"0.3\"}", 1.0).await;
    assert_sample(&metrics, "wasi_host_components{wasi=\"0.2\"}", 0.0).await;
    assert_eq!(counts(&server, 1).await, [1]);
    assert_sample(&metrics, "wasi_host_instances", 1.0).await;
    let version = active_version(&admin).await;
    assert_eq!(
        version["components"][0]["world"], "wasi:http/service@0.3",
        "{version}"
    );
}

/// `/build` from `url`: `Some("v1")` or `Some("v2")` from the WASI 0.2 testbed,
/// `None` from the 0.3 one, which has no such route; a panic on anything else.
async fn build_at(http: &reqwest::Client, url: &str) -> Option<String> {
    let response = http.get(url).send().await.expect("GET /build");
    let status = response.status();
    let body = response.text().await.expect("body");
    match status {
        StatusCode::OK => Some(body),
        StatusCode::NOT_FOUND => None,
        other => panic!("GET /build: {other}: {body}"),
    }
}

#[tokio::test]
async fn a_swap_between_worlds_under_load_loses_nothing_and_drains_the_old_instances() {
    let (server, admin) =
        start_with_admin(&guests().p3_testbed, &["--metrics-addr", "127.0.0.1:0"]);
    let url = server.url("/build");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = (0..16)
        .map(|_| {
            let (url, stop) = (url.clone(), stop.clone());
            tokio::spawn(async move {
                let http = client();
                let mut answers = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    build_at(&http, &url).await;
                    answers += 1;
                }
                answers
            })
        })
        .collect();
    let http = client();
    for (component, expected) in [
        (&guests().testbed, Some("v1".to_owned())),
        (&guests().p3_testbed, None),
        (&guests().testbed_v2, Some("v2".to_owned())),
    ] {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let bytes = std::fs::read(component).expect("component");
        let response = crate::swap::put_component(&admin, Some(crate::swap::TOKEN), bytes).await;
        assert_eq!(response.status, StatusCode::OK);
        // Published: no request sent from now on reaches the old version.
        for _ in 0..20 {
            assert_eq!(build_at(&http, &url).await, expected);
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in load {
        assert!(task.await.expect("load task") > 0);
    }
    // Every instance of the old versions is dropped once idle; the version served now
    // makes a fresh one per request, so none is left.
    assert_sample(&metrics_url(&server), "wasi_host_instances", 0.0).await;
    assert!(!server.log().contains("instance retired after a failure"));
}

#[tokio::test]
async fn a_precompiled_wasi_0_3_component_is_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wasm = dir.path().join("service.wasm");
    std::fs::copy(&guests().p3_testbed, &wasm).expect("copy the 0.3 testbed");
    let output = run_host(&["compile", wasm.to_str().expect("UTF-8 path")]);
    assert!(output.status.success(), "{output:?}");
    let server = reusing(&dir.path().join("service.cwasm"), &[]);
    server.assert_logged("wasi:http/service@0.3 (WASI 0.3)");
    assert_eq!(counts(&server, 3).await, [1, 2, 3]);
}

#[tokio::test]
async fn workers_serve_a_wasi_0_3_component_each_with_its_own_instances() {
    let server = reusing(&guests().p3_testbed, &["--workers", "2"]);
    let seen = counts(&server, 40).await;
    // One instance per worker that got requests, each reused for the ones that followed.
    let instances = seen.iter().filter(|&&count| count == 1).count();
    assert!((1..=2).contains(&instances), "{seen:?}");
    assert!(seen.iter().max() >= Some(&20), "{seen:?}");
}
