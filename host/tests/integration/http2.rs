//! HTTP/2 over cleartext with prior knowledge (h2c, what Cloud Run's end-to-end HTTP/2
//! speaks) on the serving port, with a stream limit the host announces and the
//! rapid-reset defence. The limits are read from frames written and parsed by hand
//! (RFC 9113), as a hostile client would send them.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::metrics::{assert_sample, metrics_url};
use crate::slow_clients::{assert_answered_within, one_slot_with_write_timeout};
use crate::util::{TestServer, assert_get, client, guests};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Frame types and flags used here.
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;

/// `SETTINGS_MAX_CONCURRENT_STREAMS`.
const MAX_CONCURRENT_STREAMS: u16 = 0x3;
/// `SETTINGS_INITIAL_WINDOW_SIZE`.
const INITIAL_WINDOW_SIZE: u16 = 0x4;

/// Error codes.
const CANCEL: u32 = 0x8;
const ENHANCE_YOUR_CALM: u32 = 0xb;

/// Cloud Run sends an instance at most 1000 requests at once.
const CLOUD_RUN_MAX_CONCURRENCY: u32 = 1000;

/// One frame as it goes over the wire.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let length = u32::try_from(payload.len()).expect("a short payload");
    let mut bytes = length.to_be_bytes()[1..].to_vec();
    bytes.extend_from_slice(&[kind, flags]);
    bytes.extend_from_slice(&stream.to_be_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

/// A received frame.
struct Frame {
    kind: u8,
    flags: u8,
    payload: Vec<u8>,
}

/// The next frame, or `None` once the server has closed the connection.
fn read_frame(stream: &mut TcpStream) -> Option<Frame> {
    let mut head = [0u8; 9];
    stream.read_exact(&mut head).ok()?;
    let length = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0u8; length];
    stream.read_exact(&mut payload).ok()?;
    Some(Frame {
        kind: head[3],
        flags: head[4],
        payload,
    })
}

/// A connection that has sent the preface and empty settings, and the settings the
/// server sent back: `(identifier, value)` pairs.
fn handshake(server: &TestServer) -> (TcpStream, Vec<(u16, u32)>) {
    handshake_with(server, &[])
}

/// [`handshake`], sending `settings` of the client's own.
fn handshake_with(server: &TestServer, settings: &[(u16, u32)]) -> (TcpStream, Vec<(u16, u32)>) {
    let mut stream = TcpStream::connect(server.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    stream.write_all(PREFACE).expect("preface");
    let ours: Vec<u8> = settings
        .iter()
        .flat_map(|(id, value)| [id.to_be_bytes().as_slice(), &value.to_be_bytes()].concat())
        .collect();
    stream
        .write_all(&frame(SETTINGS, 0, 0, &ours))
        .expect("settings");
    loop {
        let frame = read_frame(&mut stream).expect("the server's settings");
        if frame.kind == SETTINGS && frame.flags & ACK == 0 {
            let settings = frame
                .payload
                .chunks_exact(6)
                .map(|entry| {
                    (
                        u16::from_be_bytes([entry[0], entry[1]]),
                        u32::from_be_bytes([entry[2], entry[3], entry[4], entry[5]]),
                    )
                })
                .collect();
            return (stream, settings);
        }
    }
}

/// A header block (HPACK) for `GET http://localhost/`, from the static table and one
/// literal.
fn get_root_headers() -> Vec<u8> {
    let mut block = vec![0x82, 0x86, 0x84, 0x01, 9];
    block.extend_from_slice(b"localhost");
    block
}

/// A header block (HPACK) for `GET http://localhost{path}`: `:path` as a literal.
fn get_headers(path: &str) -> Vec<u8> {
    let length = u8::try_from(path.len()).expect("a path under 127 bytes");
    assert!(length < 127);
    let mut block = vec![0x82, 0x86, 0x04, length];
    block.extend_from_slice(path.as_bytes());
    block.extend_from_slice(&[0x01, 9]);
    block.extend_from_slice(b"localhost");
    block
}

#[tokio::test]
async fn a_stream_granted_no_window_frees_its_slot_at_the_write_timeout() {
    let server = one_slot_with_write_timeout(&[]);
    // The client lets the server send no byte of any stream's body.
    let (mut stream, _) = handshake_with(&server, &[(INITIAL_WINDOW_SIZE, 0)]);
    let headers = get_headers("/stream?bytes=1000000");
    stream
        .write_all(&frame(HEADERS, END_STREAM | END_HEADERS, 1, &headers))
        .expect("request");
    while read_frame(&mut stream).expect("the response's head").kind != HEADERS {}
    let started = Instant::now();
    // The one slot is held by the stalled stream until the write timeout.
    assert_answered_within(&server, Duration::from_secs(4)).await;
    let freed_after = started.elapsed();
    assert!(freed_after >= Duration::from_millis(900), "{freed_after:?}");
    // The connection was closed, and no body byte was ever sent on it.
    while let Some(frame) = read_frame(&mut stream) {
        assert!(frame.kind != DATA || frame.payload.is_empty(), "body sent");
    }
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
async fn the_stream_limit_is_announced() {
    let server = TestServer::start(&guests().hello);
    let (_stream, settings) = handshake(&server);
    let limit = settings
        .iter()
        .find_map(|&(id, value)| (id == MAX_CONCURRENT_STREAMS).then_some(value))
        .unwrap_or_else(|| panic!("no stream limit in the settings {settings:?}"));
    assert!(
        (1..=CLOUD_RUN_MAX_CONCURRENCY).contains(&limit),
        "{limit} streams"
    );
}

#[tokio::test]
async fn a_rapid_reset_client_is_sent_away_and_the_host_serves_on() {
    let server = TestServer::start(&guests().hello);
    let (mut stream, _) = handshake(&server);
    // Streams opened and at once cancelled (CVE-2023-44487), all in one burst.
    let mut burst = Vec::new();
    for stream_id in (1..2000u32).step_by(2) {
        let headers = get_root_headers();
        burst.extend(frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            stream_id,
            &headers,
        ));
        burst.extend(frame(RST_STREAM, 0, stream_id, &CANCEL.to_be_bytes()));
    }
    // The server may hang up before it has read the whole burst.
    let _ = stream.write_all(&burst);
    let goaway = std::iter::from_fn(|| read_frame(&mut stream))
        .find(|frame| frame.kind == GOAWAY)
        .expect("a GOAWAY before the connection closed");
    let code = u32::from_be_bytes(goaway.payload[4..8].try_into().expect("an error code"));
    assert_eq!(code, ENHANCE_YOUR_CALM);

    assert_get(&server, "/", StatusCode::OK, "Hello, World!").await;
}

/// Reads frames until the server closes the connection; returns how long that took, or
/// fails if the connection was still open after ten seconds.
fn time_until_closed(stream: &mut TcpStream) -> Duration {
    let started = Instant::now();
    while read_frame(stream).is_some() {}
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "held open for {took:?}");
    took
}

#[tokio::test]
async fn an_http2_connection_with_no_stream_is_closed() {
    let server = TestServer::start_with(
        &guests().hello,
        &[
            "--first-request-timeout",
            "1s",
            "--idle-connection-timeout",
            "1s",
        ],
    );
    // Settings, and never a stream: closed at the first-request timeout.
    let (mut settings_only, _) = handshake(&server);
    time_until_closed(&mut settings_only);

    // A stream answered, and then nothing: closed at the idle timeout.
    let (mut stream, _) = handshake(&server);
    let headers = get_root_headers();
    let request = frame(HEADERS, END_HEADERS | END_STREAM, 1, &headers);
    stream.write_all(&request).expect("request");
    std::iter::from_fn(|| read_frame(&mut stream))
        .find(|frame| frame.kind == DATA && frame.flags & END_STREAM != 0)
        .expect("the whole response");
    let idle = time_until_closed(&mut stream);
    assert!(idle >= Duration::from_millis(800), "closed after {idle:?}");
    assert_get(&server, "/", StatusCode::OK, "Hello, World!").await;
}

/// A header block (HPACK) for `POST http://localhost/consume`.
fn post_consume_headers() -> Vec<u8> {
    let mut block = vec![0x83, 0x86, 0x04, 8];
    block.extend_from_slice(b"/consume");
    block.extend_from_slice(&[0x01, 9]);
    block.extend_from_slice(b"localhost");
    block
}

#[tokio::test]
async fn eighty_stalled_uploads_on_one_h2c_connection_free_their_slots() {
    const STREAMS: u32 = 80;
    let server = TestServer::start_with(
        &guests().testbed,
        &["--body-idle-timeout", "1s", "--metrics-addr", "127.0.0.1:0"],
    );
    let metrics = metrics_url(&server);
    let (mut stream, _) = handshake(&server);
    // Every stream sends one byte of its body, and then nothing.
    let mut burst = Vec::new();
    for stream_id in (0..STREAMS).map(|n| 2 * n + 1) {
        burst.extend(frame(
            HEADERS,
            END_HEADERS,
            stream_id,
            &post_consume_headers(),
        ));
        burst.extend(frame(DATA, 0, stream_id, b"x"));
    }
    stream.write_all(&burst).expect("the uploads");
    assert_sample(&metrics, "wasi_host_requests_in_flight", f64::from(STREAMS)).await;
    let started = Instant::now();
    assert_get(&server, "/build", StatusCode::OK, "v1").await;
    assert!(started.elapsed() < Duration::from_secs(3));
    let series = "wasi_host_requests_total{status_class=\"4xx\"}";
    assert_sample(&metrics, series, f64::from(STREAMS)).await;
}
