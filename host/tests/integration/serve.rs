//! Serving: the hello guest built both ways, requests and responses carried intact, a
//! trapping guest contained, and many keep-alive connections at once.

use reqwest::StatusCode;

use crate::util::{
    TestServer, assert_get, assert_hello, assert_still_serving, client, get, guests, send,
};

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
    let reply = send(
        client()
            .put(server.url("/echo?status=201&flavour=plain"))
            .header("x-custom", "value one")
            .header("x-other", "2")
            .body("request body bytes"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    let headers = &reply.headers;
    assert_eq!(headers["x-echo-method"], "PUT");
    assert_eq!(headers["x-echo-path"], "/echo?status=201&flavour=plain");
    assert_eq!(headers["x-custom"], "value one");
    assert_eq!(headers["x-other"], "2");
    assert_eq!(reply.text(), "request body bytes");
}

#[tokio::test]
async fn multi_megabyte_bodies_stream_both_ways() {
    let server = TestServer::start(&guests().testbed);
    let upload: Vec<u8> = (0..5_000_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let echoed = send(client().post(server.url("/echo")).body(upload.clone())).await;
    assert_eq!(echoed.status, StatusCode::OK);
    assert!(echoed.body == upload, "echoed body differs");

    let size = 8 * 1024 * 1024 + 3;
    let streamed = get(&server, &format!("/stream?bytes={size}")).await;
    assert_eq!(streamed.status, StatusCode::OK);
    let body = streamed.body;
    assert_eq!(body.len(), size);
    let expected = (0..size).map(|i| ((i % 65536) % 251) as u8);
    assert!(body.iter().copied().eq(expected), "streamed body differs");
}

#[tokio::test]
async fn trapping_guest_gets_500_and_the_next_request_is_served() {
    let server = TestServer::start(&guests().testbed);
    assert_eq!(
        get(&server, "/trap").await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_still_serving(&server).await;
    server.assert_logged("trap requested");
}

#[tokio::test]
async fn guest_returning_without_a_response_gets_500() {
    let server = TestServer::start(&guests().testbed);
    assert_eq!(
        get(&server, "/no-response").await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    server.assert_logged("without setting a response");
}

#[tokio::test]
async fn guest_output_reaches_the_host_log() {
    let server = TestServer::start(&guests().testbed);
    assert_get(&server, "/print", StatusCode::OK, "printed").await;
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
                let reply = send(http.get(&url)).await;
                assert_eq!(
                    (reply.status, reply.text()),
                    (StatusCode::OK, "Hello, World!")
                );
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

/// The probe path the README documents.
const PROBE: &str = "/.well-known/wasi-host/health";

#[tokio::test]
async fn the_probe_path_is_answered_by_the_host_and_can_be_turned_off() {
    let server = TestServer::start(&guests().testbed);
    assert_get(&server, PROBE, StatusCode::OK, "ok\n").await;
    // Not the guest: the testbed marks every answer of its own.
    assert_eq!(get(&server, PROBE).await.header("x-testbed-build"), None);

    let without = TestServer::start_with(&guests().testbed, &["--health-path", ""]);
    let reply = get(&without, PROBE).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "the guest answers it");
    assert_eq!(reply.header("x-testbed-build"), Some("v1"));

    let moved = TestServer::start_with(&guests().testbed, &["--health-path", "/ready"]);
    assert_get(&moved, "/ready", StatusCode::OK, "ok\n").await;
    let reply = get(&moved, PROBE).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "now the guest's");
    assert_eq!(reply.header("x-testbed-build"), Some("v1"));
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
