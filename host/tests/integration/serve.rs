//! Serving: the hello guest built both ways, requests and responses carried intact, a
//! trapping guest contained, and many keep-alive connections at once.

use reqwest::StatusCode;

use crate::util::{TestServer, assert_hello, client, guests};

#[tokio::test]
async fn hello_built_for_wasm32_wasip2() {
    let server = TestServer::start(&guests().hello);
    assert_hello(&server).await;
}

#[tokio::test]
async fn hello_built_with_cargo_component() {
    let server = TestServer::start(&guests().hello_component);
    assert_hello(&server).await;
}

#[tokio::test]
async fn request_parts_reach_the_guest_and_come_back() {
    let server = TestServer::start(&guests().testbed);
    let response = client()
        .put(server.url("/echo?status=201&flavour=plain"))
        .header("x-custom", "value one")
        .header("x-other", "2")
        .body("request body bytes")
        .send()
        .await
        .expect("PUT /echo");
    assert_eq!(response.status(), StatusCode::CREATED);
    let headers = response.headers();
    assert_eq!(headers["x-echo-method"], "PUT");
    assert_eq!(headers["x-echo-path"], "/echo?status=201&flavour=plain");
    assert_eq!(headers["x-custom"], "value one");
    assert_eq!(headers["x-other"], "2");
    assert_eq!(response.text().await.expect("body"), "request body bytes");
}

#[tokio::test]
async fn multi_megabyte_bodies_stream_both_ways() {
    let server = TestServer::start(&guests().testbed);
    let upload: Vec<u8> = (0..5_000_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let echoed = client()
        .post(server.url("/echo"))
        .body(upload.clone())
        .send()
        .await
        .expect("POST /echo");
    assert_eq!(echoed.status(), StatusCode::OK);
    assert!(
        echoed.bytes().await.expect("body") == upload,
        "echoed body differs"
    );

    let size = 8 * 1024 * 1024 + 3;
    let streamed = client()
        .get(server.url(&format!("/stream?bytes={size}")))
        .send()
        .await
        .expect("GET /stream");
    assert_eq!(streamed.status(), StatusCode::OK);
    let body = streamed.bytes().await.expect("body");
    assert_eq!(body.len(), size);
    let expected = (0..size).map(|i| ((i % 65536) % 251) as u8);
    assert!(body.iter().copied().eq(expected), "streamed body differs");
}

#[tokio::test]
async fn trapping_guest_gets_500_and_the_next_request_is_served() {
    let server = TestServer::start(&guests().testbed);
    let http = client();
    let trapped = http
        .get(server.url("/trap"))
        .send()
        .await
        .expect("GET /trap");
    assert_eq!(trapped.status(), StatusCode::INTERNAL_SERVER_ERROR);

    let next = http
        .get(server.url("/echo"))
        .body("still here")
        .send()
        .await
        .expect("GET");
    assert_eq!(next.status(), StatusCode::OK);
    assert_eq!(next.text().await.expect("body"), "still here");
    server.assert_logged("trap requested");
}

#[tokio::test]
async fn guest_returning_without_a_response_gets_500() {
    let server = TestServer::start(&guests().testbed);
    let response = client()
        .get(server.url("/no-response"))
        .send()
        .await
        .expect("GET /no-response");
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    server.assert_logged("without setting a response");
}

#[tokio::test]
async fn guest_output_reaches_the_host_log() {
    let server = TestServer::start(&guests().testbed);
    let response = client()
        .get(server.url("/print"))
        .send()
        .await
        .expect("GET /print");
    assert_eq!(response.status(), StatusCode::OK);
    server.assert_logged("hello from guest stdout");
    server.assert_logged("hello from guest stderr");
}

#[tokio::test]
async fn a_thousand_requests_over_32_keep_alive_connections() {
    const CONNECTIONS: usize = 32;
    const REQUESTS: usize = 1000;
    let server = TestServer::start(&guests().hello);
    let url = server.url("/");
    let mut tasks = Vec::new();
    for connection in 0..CONNECTIONS {
        let url = url.clone();
        // Each task has its own client and so its own keep-alive connection.
        let http = client();
        let count = REQUESTS / CONNECTIONS + usize::from(connection < REQUESTS % CONNECTIONS);
        tasks.push(tokio::spawn(async move {
            let mut ok = 0;
            for _ in 0..count {
                let response = http.get(&url).send().await.expect("GET /");
                assert_eq!(response.status(), StatusCode::OK);
                assert_eq!(response.text().await.expect("body"), "Hello, World!");
                ok += 1;
            }
            ok
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.expect("task");
    }
    assert_eq!(total, REQUESTS);
}

#[tokio::test]
async fn the_probe_path_is_answered_by_the_host_and_can_be_turned_off() {
    let probe = wasi_host::config::DEFAULT_HEALTH_PATH;
    let server = TestServer::start(&guests().testbed);
    let response = client().get(server.url(probe)).send().await.expect("probe");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.expect("body"), "ok\n");

    assert!(probe.starts_with("/.well-known/") && !probe.ends_with('z'));

    let without = TestServer::start_with(&guests().testbed, &["--health-path", ""]);
    let response = client().get(without.url(probe)).send().await.expect("GET");
    assert_eq!(
        response.status(),
        StatusCode::NOT_FOUND,
        "the guest answers it"
    );

    let moved = TestServer::start_with(&guests().testbed, &["--health-path", "/ready"]);
    let response = client().get(moved.url("/ready")).send().await.expect("GET");
    assert_eq!(response.text().await.expect("body"), "ok\n");
    let response = client().get(moved.url(probe)).send().await.expect("GET");
    assert_eq!(response.status(), StatusCode::NOT_FOUND, "now the guest's");
}

#[tokio::test]
async fn the_component_may_come_from_the_environment() {
    let mut command = crate::util::host_binary();
    command
        .args(["serve", "--addr", "127.0.0.1:0"])
        .env("WASI_HOST_COMPONENT", &guests().hello);
    let server = TestServer::spawn(command, "wasi-host", "listening on http://");
    assert_hello(&server).await;
}
