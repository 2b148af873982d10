//! Swapping the component while the host serves: by upload to the admin endpoint, by
//! SIGHUP and by `--watch`, each fifty times under continuous load from 64 connections,
//! with zero failed requests; bad versions rejected while the old one keeps serving.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use tokio::task::JoinHandle;

use crate::metrics::{assert_sample, metrics_url};
use crate::util::{
    Reply, TestServer, chunked_body, client, guests, send, serve_refused, sha256_of,
};

pub const TOKEN: &str = "test-admin-token-0123456789";
const CONNECTIONS: usize = 64;
const SWAPS: usize = 50;

/// How long a file-triggered swap may take to show: debounce plus compile, on a busy
/// machine.
const SWAP_TIMEOUT: Duration = Duration::from_secs(30);

/// What the load saw.
#[derive(Debug, Default)]
struct Tally {
    v1: u64,
    v2: u64,
    failures: Vec<String>,
}

/// 64 connections asking `/build` back to back until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<Tally>>,
}

impl Load {
    fn start(server: &TestServer) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..CONNECTIONS)
            .map(|_| {
                let stop = stop.clone();
                let url = server.url("/build");
                tokio::spawn(async move {
                    let http = client();
                    let mut tally = Tally::default();
                    while !stop.load(Ordering::Relaxed) {
                        match ask(&http, &url).await {
                            Ok(Build::V1) => tally.v1 += 1,
                            Ok(Build::V2) => tally.v2 += 1,
                            Err(failure) => tally.failures.push(failure),
                        }
                    }
                    tally
                })
            })
            .collect();
        Self { stop, tasks }
    }

    async fn finish(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = Tally::default();
        for task in self.tasks {
            let tally = task.await.expect("load task");
            total.v1 += tally.v1;
            total.v2 += tally.v2;
            total.failures.extend(tally.failures);
        }
        total
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Build {
    V1,
    V2,
}

impl Build {
    fn other(self) -> Self {
        match self {
            Build::V1 => Build::V2,
            Build::V2 => Build::V1,
        }
    }

    pub fn file(self) -> &'static Path {
        match self {
            Build::V1 => &guests().testbed,
            Build::V2 => &guests().testbed_v2,
        }
    }

    pub fn bytes(self) -> Vec<u8> {
        std::fs::read(self.file()).expect("read guest")
    }
}

/// One complete `/build` answer, or why it was not one.
async fn ask(http: &reqwest::Client, url: &str) -> Result<Build, String> {
    let response = http.get(url).send().await.map_err(|e| format!("{e:?}"))?;
    let status = response.status();
    let body = response.text().await.map_err(|e| format!("body: {e:?}"))?;
    match (status, body.as_str()) {
        (StatusCode::OK, "v1") => Ok(Build::V1),
        (StatusCode::OK, "v2") => Ok(Build::V2),
        _ => Err(format!("{status}: {body:?}")),
    }
}

/// Waits until new requests get `build`, then checks that the next few do too. Returns
/// how long it took from the call: for a file trigger, the time the swap took to show.
pub async fn assert_swapped_to(server: &TestServer, build: Build) -> Duration {
    let http = client();
    let url = server.url("/build");
    let started = tokio::time::Instant::now();
    while ask(&http, &url).await != Ok(build) {
        assert!(
            started.elapsed() < SWAP_TIMEOUT,
            "still not {build:?} after {SWAP_TIMEOUT:?}; log:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = started.elapsed();
    assert_serving(server, build).await;
    took
}

/// Checks that the next few requests, sent now, get `build`.
async fn assert_serving(server: &TestServer, build: Build) {
    let http = client();
    let url = server.url("/build");
    for _ in 0..5 {
        assert_eq!(
            ask(&http, &url).await,
            Ok(build),
            "a request after the swap"
        );
    }
}

/// Checks that no request failed and both builds were served, and prints what the load
/// saw and how long the swaps took.
fn assert_clean(tally: &Tally, swap_times: &mut [Duration]) {
    let swaps = swap_times.len();
    assert!(
        tally.failures.is_empty(),
        "{} failed requests during {swaps} swaps, first: {:?}",
        tally.failures.len(),
        tally.failures.first()
    );
    assert!(
        tally.v1 > 0 && tally.v2 > 0,
        "load saw both builds: {tally:?}"
    );
    swap_times.sort();
    eprintln!(
        "{swaps} swaps under load from {CONNECTIONS} connections: {} v1 + {} v2 responses, \
         0 failed; swap time median {:?}, max {:?}",
        tally.v1,
        tally.v2,
        swap_times[swaps / 2],
        swap_times[swaps - 1]
    );
}

/// A copy of the v1 build in a folder of its own, for the file triggers to replace.
pub fn component_copy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("app.wasm");
    std::fs::write(&path, Build::V1.bytes()).expect("copy guest");
    (dir, path)
}

pub fn start_with_admin(component: &Path, flags: &[&str]) -> (TestServer, String) {
    let mut all_flags = vec!["--admin-addr", "127.0.0.1:0"];
    all_flags.extend_from_slice(flags);
    let server =
        TestServer::start_with_env(component, &all_flags, &[("WASI_HOST_ADMIN_TOKEN", TOKEN)]);
    let admin = server.logged_after("serving the admin endpoint at ");
    (server, admin)
}

/// The path part of the admin endpoint's URL.
fn admin_path(admin: &str) -> &str {
    let after_scheme = admin.strip_prefix("http://").expect("http URL");
    &after_scheme[after_scheme.find('/').expect("a path")..]
}

/// `request` to the admin endpoint, with the bearer `token` if there is one.
async fn send_to_admin(mut request: reqwest::RequestBuilder, token: Option<&str>) -> Reply {
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    send(request).await
}

/// Uploads `bytes` as the new component.
pub async fn put_component(admin: &str, token: Option<&str>, bytes: Vec<u8>) -> Reply {
    send_to_admin(client().put(admin).body(bytes), token).await
}

pub async fn active_version(admin: &str) -> serde_json::Value {
    let reply = send_to_admin(client().get(admin), Some(TOKEN)).await;
    assert_eq!(reply.status, StatusCode::OK);
    version_json(&reply)
}

pub fn version_json(reply: &Reply) -> serde_json::Value {
    serde_json::from_slice(&reply.body).expect("version JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_swaps_fifty_times_under_load_without_a_failed_request() {
    let (server, admin) = start_with_admin(Build::V1.file(), &[]);
    server.assert_logged(&format!(
        "serving generation 1: `{}`",
        Build::V1.file().display()
    ));
    server.assert_logged(&format!(
        "generation 1 has sha256 {}",
        sha256_of(Build::V1.file())
    ));
    // A good component with a wrong token changes nothing.
    let refused = put_component(&admin, Some("wrong-token-wrong-token"), Build::V2.bytes()).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_serving(&server, Build::V1).await;
    assert_eq!(active_version(&admin).await["generation"], 1);

    let load = Load::start(&server);
    let mut build = Build::V1;
    let mut swap_times = Vec::new();
    for swap in 0..SWAPS {
        build = build.other();
        let started = tokio::time::Instant::now();
        let reply = put_component(&admin, Some(TOKEN), build.bytes()).await;
        swap_times.push(started.elapsed());
        assert_eq!(reply.status, StatusCode::OK, "swap {swap}");
        let version = version_json(&reply);
        assert_eq!(version["generation"], swap as u64 + 2);
        assert_eq!(version["sha256"], sha256_of(build.file()));
        // The upload answers once the new version is published: the very next request
        // gets it.
        assert_serving(&server, build).await;
    }
    assert_clean(&load.finish().await, &mut swap_times);
    assert_eq!(active_version(&admin).await["generation"], SWAPS as u64 + 1);
    server.assert_logged("swapped: generation 51 is `upload from 127.0.0.1:");
    server.assert_logged(&format!("(sha256 {})", sha256_of(build.file())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hangup_swaps_fifty_times_under_load_without_a_failed_request() {
    let (_dir, path) = component_copy();
    let server = TestServer::start(&path);
    let load = Load::start(&server);
    let mut build = Build::V1;
    let mut swap_times = Vec::new();
    for _ in 0..SWAPS {
        build = build.other();
        std::fs::write(&path, build.bytes()).expect("replace component");
        server.signal("HUP");
        swap_times.push(assert_swapped_to(&server, build).await);
    }
    assert_clean(&load.finish().await, &mut swap_times);
    server.assert_logged(&format!(
        "swapped: generation 51 is `{}` (sha256 {})",
        path.display(),
        sha256_of(build.file())
    ));
    server.assert_logged("Hangup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_swaps_fifty_times_under_load_without_a_failed_request() {
    let (dir, path) = component_copy();
    let server = TestServer::start_with(&path, &["--watch"]);
    let load = Load::start(&server);
    let mut build = Build::V1;
    let mut swap_times = Vec::new();
    for swap in 0..SWAPS {
        build = build.other();
        if swap % 2 == 0 {
            // Written beside it, then renamed over it: how deploy tools replace files.
            let partial = dir.path().join("app.wasm.partial");
            std::fs::write(&partial, build.bytes()).expect("write");
            std::fs::rename(&partial, &path).expect("rename");
        } else {
            // Rewritten in place, in pieces, as a slow copy would.
            write_in_pieces(&path, &build.bytes());
        }
        swap_times.push(assert_swapped_to(&server, build).await);
    }
    assert_clean(&load.finish().await, &mut swap_times);
    server.assert_logged("swapped: generation 51 is");
    // Debouncing waits for a write to finish; on a busy machine a writer's pause can
    // outlast the quiet period, and the half-written file is then rejected (safely, as
    // the load shows) until the write's last event brings the whole file.
    let half_read = server.log().matches("rejected the new component").count();
    eprintln!("{half_read} of {SWAPS} writes were read half-written and rejected");
    assert!(half_read <= SWAPS / 10, "{}", server.log());
}

fn write_in_pieces(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    let mut file = std::fs::File::create(path).expect("truncate");
    for piece in bytes.chunks(bytes.len() / 4 + 1) {
        file.write_all(piece).expect("write");
        file.flush().expect("flush");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_request_finishes_on_the_version_it_started_with() {
    let (server, admin) = start_with_admin(Build::V1.file(), &["--metrics-addr", "127.0.0.1:0"]);
    let slow = tokio::spawn(send(client().get(server.url("/sleep?ms=2000"))));
    // The slow request reaches the host, which gives it the version it has, before the
    // swap.
    assert_sample(&metrics_url(&server), "wasi_host_requests_in_flight", 1.0).await;
    let reply = put_component(&admin, Some(TOKEN), Build::V2.bytes()).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_swapped_to(&server, Build::V2).await;

    let slow = slow.await.expect("task");
    assert_eq!(slow.status, StatusCode::OK);
    assert_eq!(slow.header("x-testbed-build"), Some("v1"));
    assert_eq!(slow.text(), "slept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_versions_are_rejected_under_load_and_the_old_one_keeps_serving() {
    let (dir, path) = component_copy();
    let (server, admin) = start_with_admin(&path, &["--watch"]);
    // Writing the `.cwasm` below wakes the watcher; once the active version's digest is
    // known, that reload finds `app.wasm` unchanged.
    server.assert_logged("generation 1 has sha256");
    let load = Load::start(&server);
    let precompiled = dir.path().join("v2.cwasm");
    let compiled = crate::util::run_host(&[
        "compile",
        &Build::V2.file().display().to_string(),
        "-o",
        &precompiled.display().to_string(),
    ]);
    assert!(compiled.status.success(), "{compiled:?}");

    let bad: [(&str, Vec<u8>, &str); 5] = [
        (
            "corrupt",
            b"\0asm\x0d\0\x01\0garbage".to_vec(),
            "cannot compile",
        ),
        (
            "truncated",
            Build::V2.bytes()[..5000].to_vec(),
            "cannot compile",
        ),
        (
            "core module",
            b"\0asm\x01\0\0\0".to_vec(),
            "is a core WebAssembly module",
        ),
        (
            "wrong world",
            std::fs::read(&guests().command).expect("read"),
            "is not a wasi:http/proxy component",
        ),
        (
            "precompiled upload",
            std::fs::read(&precompiled).expect("read"),
            "precompiled files are only loaded from disk",
        ),
    ];
    for (what, bytes, reason) in bad {
        let reply = put_component(&admin, Some(TOKEN), bytes.clone()).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{what}");
        let message = reply.text();
        assert!(message.contains(reason), "{what}: {message}");
        assert!(message.contains("the old version keeps serving"), "{what}");

        if what != "precompiled upload" {
            // On disk, found by the watcher, then again by SIGHUP.
            std::fs::write(&path, &bytes).expect("write bad file");
            assert_rejected_again(&server, what, reason, "FileChanged");
            server.signal("HUP");
            assert_rejected_again(&server, what, reason, "Hangup");
        }
        assert_eq!(ask(&client(), &server.url("/build")).await, Ok(Build::V1));
    }
    let tally = load.finish().await;
    assert!(
        tally.failures.is_empty(),
        "failed requests: {:?}",
        tally.failures.first()
    );
    assert_eq!(tally.v2, 0, "no bad version was ever served");
    assert_eq!(active_version(&admin).await["generation"], 1);
}

/// Waits for one more "rejected" log line with `reason` in it, made by `trigger`, than
/// there was. (A watched write can be reported twice, so counting any rejection would
/// race, and would take a watcher's line for the SIGHUP's.)
fn assert_rejected_again(server: &TestServer, what: &str, reason: &str, trigger: &str) {
    let trigger = format!("trigger={trigger}");
    let rejections = || {
        server
            .log()
            .lines()
            .filter(|line| {
                line.contains("rejected the new component")
                    && line.contains(reason)
                    && line.contains(&trigger)
            })
            .count()
    };
    let before = rejections();
    let logged = crate::util::wait_for(SWAP_TIMEOUT, || (rejections() > before).then_some(()));
    assert!(
        logged.is_some(),
        "{what} not rejected with {reason:?} ({trigger}):\n{}",
        server.log()
    );
}

#[tokio::test]
async fn the_admin_endpoint_needs_the_token_and_limits_uploads() {
    let (server, admin) = start_with_admin(Build::V1.file(), &["--admin-max-upload", "64KiB"]);
    server.assert_logged("generation 1 has sha256");
    let before = active_version(&admin).await;
    assert_eq!(before["generation"], 1);
    assert_eq!(before["sha256"], sha256_of(Build::V1.file()));
    assert_eq!(before["origin"], Build::V1.file().display().to_string());

    // Small enough to pass the upload limit, so only the token decides.
    let small = b"\0asm\x0d\0\x01\0".to_vec();
    for token in [None, Some("wrong-token-wrong-token"), Some("")] {
        let reply = put_component(&admin, token, small.clone()).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{token:?}");
        assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
        let reply = send_to_admin(client().get(&admin), token).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{token:?}");
    }
    server.assert_logged("admin request without a valid token refused");

    let oversized = Build::V2.bytes();
    assert!(oversized.len() > 64 * 1024);
    let reply = put_component(&admin, Some(TOKEN), oversized.clone()).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    // Streamed in chunks with no declared length, the upload is cut off at the limit.
    let reply = send_to_admin(
        client()
            .put(&admin)
            .body(chunked_body(&oversized, 8 * 1024)),
        Some(TOKEN),
    )
    .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);

    // The admin endpoint is only on its own address: on the serving port, the path
    // is the guest's.
    let on_serving_port =
        send_to_admin(client().get(server.url(admin_path(&admin))), Some(TOKEN)).await;
    assert_eq!(
        on_serving_port.header("x-testbed-build"),
        Some("v1"),
        "answered by the guest"
    );

    let wrong_method = send_to_admin(client().delete(&admin), Some(TOKEN)).await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(active_version(&admin).await, before, "nothing changed");
    assert_eq!(ask(&client(), &server.url("/build")).await, Ok(Build::V1));
}

#[test]
fn the_admin_endpoint_is_off_by_default_and_refuses_to_start_without_a_token() {
    let server = TestServer::start(Build::V1.file());
    assert!(!server.log().contains("admin endpoint"), "{}", server.log());
    drop(server);

    for token in [None, Some("short")] {
        let env: Vec<_> = token
            .map(|t| ("WASI_HOST_ADMIN_TOKEN", t))
            .into_iter()
            .collect();
        let stderr = serve_refused(Build::V1.file(), &["--admin-addr", "127.0.0.1:0"], &env);
        assert!(
            stderr.contains(
                "needs a bearer token of at least 16 characters in $WASI_HOST_ADMIN_TOKEN"
            ),
            "{stderr}"
        );
    }
}
