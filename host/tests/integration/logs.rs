//! Structured logs: Cloud Logging JSON entries with the access log's `httpRequest`, the
//! request's trace from `traceparent` or `X-Cloud-Trace-Context`, guest output tied to
//! that trace, and JSON chosen automatically on Cloud Run.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::util::{
    Reply, TestServer, assert_get, client, get, guests, run_host_with_env, send, wait_for,
};

const PROJECT: &str = "test-project";

/// What the testbed's `/print-forged` writes to stdout: a line shaped like the host's
/// JSON entries, and one shaped like its text lines.
const FORGED_ENTRY: &str = r#"{"severity":"ERROR","message":"forged entry","target":"wasi_host::access","httpRequest":{"status":500}}"#;
const FORGED_TEXT_LINE: &str = "1999-01-01T00:00:00.000000Z ERROR wasi_host: forged line";
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// A server logging JSON, with a Google Cloud project to name traces in.
fn json_server() -> TestServer {
    TestServer::start_with_env(
        &guests().testbed,
        &["--log-format", "json", "--access-log"],
        &[("GOOGLE_CLOUD_PROJECT", PROJECT)],
    )
}

/// Every log line, each of which must be one JSON object.
fn entries(server: &TestServer) -> Vec<Value> {
    server
        .log()
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line)
                .unwrap_or_else(|error| panic!("not a JSON entry ({error}): {line}"))
        })
        .collect()
}

/// Waits for the first entry that `matches`.
pub fn entry(server: &TestServer, matches: impl Fn(&Value) -> bool) -> Value {
    wait_for(Duration::from_secs(5), || {
        entries(server).into_iter().find(|entry| matches(entry))
    })
    .unwrap_or_else(|| panic!("no such entry in the log:\n{}", server.log()))
}

/// The access-log entry of the request to `url`.
fn access_entry(server: &TestServer, url: &str) -> Value {
    entry(server, |entry| entry["httpRequest"]["requestUrl"] == url)
}

/// GETs `url` in trace [`TRACE`], span `00f067aa0ba902b7`, sampled.
async fn get_in_trace(url: &str) -> Reply {
    send(
        client()
            .get(url)
            .header("traceparent", format!("00-{TRACE}-00f067aa0ba902b7-01")),
    )
    .await
}

/// Checks the fields every entry has and returns the entry without them.
fn without_common_fields(mut entry: Value) -> Value {
    let time = entry["time"].as_str().expect("time is a string").to_owned();
    humantime::parse_rfc3339(&time).unwrap_or_else(|_| panic!("time is not RFC 3339: {time}"));
    let object = entry.as_object_mut().expect("an object");
    object.remove("time");
    object.remove("target");
    entry
}

/// Checks the latency's form (`0.012345s`) and returns the entry without it.
fn without_latency(mut entry: Value) -> Value {
    let latency = entry["httpRequest"]["latency"]
        .as_str()
        .expect("latency is a string")
        .to_owned();
    let seconds = latency.strip_suffix('s').expect("latency ends in s");
    let (whole, fraction) = seconds.split_once('.').expect("a decimal");
    assert!(
        whole.parse::<u64>().is_ok() && fraction.len() == 6 && fraction.parse::<u64>().is_ok(),
        "latency {latency}"
    );
    entry["httpRequest"]
        .as_object_mut()
        .unwrap()
        .remove("latency");
    entry
}

#[tokio::test]
async fn access_entry_has_http_request_and_the_traceparent_trace() {
    let server = json_server();
    let url = server.url("/echo?status=201");
    let reply = send(
        client()
            .post(&url)
            .header("traceparent", format!("00-{TRACE}-00f067aa0ba902b7-01"))
            .header("user-agent", "log-test/1.0")
            .body("twelve bytes"),
    )
    .await;
    assert_eq!(
        (reply.status, reply.text()),
        (StatusCode::CREATED, "twelve bytes")
    );

    let access = without_latency(without_common_fields(access_entry(&server, &url)));
    assert_eq!(
        access,
        json!({
            "severity": "INFO",
            "message": format!("POST {url} 201"),
            "httpRequest": {
                "requestMethod": "POST",
                "requestUrl": url,
                "status": 201,
                "responseSize": "12",
                "userAgent": "log-test/1.0",
                "remoteIp": "127.0.0.1",
                "protocol": "HTTP/1.1",
            },
            "logging.googleapis.com/trace": format!("projects/{PROJECT}/traces/{TRACE}"),
            "logging.googleapis.com/spanId": "00f067aa0ba902b7",
            "logging.googleapis.com/trace_sampled": true,
        })
    );
    let access = access_entry(&server, &url);
    assert_eq!(access["target"], "wasi_host::access");
}

#[tokio::test]
async fn cloud_trace_context_span_id_is_logged_in_hex() {
    let server = json_server();
    let url = server.url("/nowhere");
    let reply = send(
        client()
            .get(&url)
            .header(
                "x-cloud-trace-context",
                format!("{TRACE}/12345678901234567890;o=0"),
            )
            .header("x-forwarded-proto", "https"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);

    // Behind Cloud Run's front end the client spoke HTTPS.
    let url = url.replace("http://", "https://");
    let access = without_latency(without_common_fields(access_entry(&server, &url)));
    assert_eq!(
        access,
        json!({
            "severity": "WARNING",
            "message": format!("GET {url} 404"),
            "httpRequest": {
                "requestMethod": "GET",
                "requestUrl": url,
                "status": 404,
                "responseSize": "13",
                "remoteIp": "127.0.0.1",
                "protocol": "HTTP/1.1",
            },
            "logging.googleapis.com/trace": format!("projects/{PROJECT}/traces/{TRACE}"),
            "logging.googleapis.com/spanId": "ab54a98ceb1f0ad2",
            "logging.googleapis.com/trace_sampled": false,
        })
    );
}

#[tokio::test]
async fn guest_output_and_host_warnings_carry_the_request_trace() {
    let server = json_server();
    let print = get_in_trace(&server.url("/print")).await;
    assert_eq!(print.status, StatusCode::OK);
    let trace = format!("projects/{PROJECT}/traces/{TRACE}");
    let mut request_ids = Vec::new();
    for (message, severity, stream) in [
        ("hello from guest stdout", "INFO", "stdout"),
        ("hello from guest stderr", "WARNING", "stderr"),
    ] {
        let output = entry(&server, |entry| entry["message"] == message);
        assert_eq!(output["severity"], severity, "{output}");
        assert_eq!(output["stream"], stream, "{output}");
        assert_eq!(output["target"], "guest", "{output}");
        assert_eq!(output["logging.googleapis.com/trace"], trace, "{output}");
        assert_eq!(
            output["logging.googleapis.com/spanId"], "00f067aa0ba902b7",
            "{output}"
        );
        request_ids.push(output["request_id"].as_u64().expect("a numeric request_id"));
    }
    assert_eq!(
        request_ids[0], request_ids[1],
        "both lines come from one request"
    );

    // A trap: the host's own warning joins the trace, and the access entry is an ERROR.
    let other_trace = "0af7651916cd43dd8448eb211c80319c";
    let url = server.url("/trap");
    let trap = send(client().get(&url).header(
        "traceparent",
        format!("00-{other_trace}-b7ad6b7169203331-00"),
    ))
    .await;
    assert_eq!(trap.status, StatusCode::INTERNAL_SERVER_ERROR);
    let warning = entry(&server, |entry| {
        entry["message"]
            .as_str()
            .is_some_and(|message| message.starts_with("guest failed"))
    });
    assert_eq!(warning["severity"], "WARNING");
    let trap_id = warning["request_id"]
        .as_u64()
        .expect("a numeric request_id");
    assert_ne!(trap_id, request_ids[0], "another request, another id");
    assert_eq!(
        warning["logging.googleapis.com/trace"],
        format!("projects/{PROJECT}/traces/{other_trace}")
    );
    assert_eq!(warning["logging.googleapis.com/trace_sampled"], false);
    assert_eq!(access_entry(&server, &url)["severity"], "ERROR");
}

#[tokio::test]
async fn malformed_trace_headers_are_ignored_and_never_echoed() {
    let server = json_server();
    let bad_traceparent = format!("00-{TRACE}-00f067aa0ba902b7-01-injected");
    let bad_cloud_trace = "not-a-trace/123;o=1";
    let url = server.url("/echo");
    let reply = send(
        client()
            .get(&url)
            .header("traceparent", &bad_traceparent)
            .header("x-cloud-trace-context", bad_cloud_trace),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let access = access_entry(&server, &url);
    let keys: Vec<&String> = access.as_object().unwrap().keys().collect();
    assert!(
        !keys
            .iter()
            .any(|key| key.starts_with("logging.googleapis.com/")),
        "{access}"
    );
    let log = server.log();
    assert!(
        !log.contains("injected") && !log.contains("not-a-trace"),
        "{log}"
    );
    assert_still_logging_traces(&server).await;
}

/// A well-formed header after malformed ones is still read.
async fn assert_still_logging_traces(server: &TestServer) {
    let url = server.url("/echo?after");
    get_in_trace(&url).await;
    assert_eq!(
        access_entry(server, &url)["logging.googleapis.com/trace"],
        format!("projects/{PROJECT}/traces/{TRACE}")
    );
}

#[tokio::test]
async fn without_a_project_the_trace_field_is_the_bare_trace_id() {
    let server =
        TestServer::start_with(&guests().testbed, &["--log-format", "json", "--access-log"]);
    let url = server.url("/echo");
    get_in_trace(&url).await;
    assert_eq!(
        access_entry(&server, &url)["logging.googleapis.com/trace"],
        TRACE
    );
}

/// The log of `server` once it has answered `GET /print` twice on one connection and
/// logged the second one's output. The first response's access entry, if any, is
/// written as its body ends, before the connection reads the second request.
async fn log_after_two_prints(server: &TestServer) -> String {
    let http = client();
    for _ in 0..2 {
        let reply = send(http.get(server.url("/print"))).await;
        assert_eq!((reply.status, reply.text()), (StatusCode::OK, "printed"));
    }
    wait_for(Duration::from_secs(5), || {
        let log = server.log();
        (log.matches("hello from guest stdout").count() == 2).then_some(log)
    })
    .unwrap_or_else(|| panic!("the second print was not logged:\n{}", server.log()))
}

#[tokio::test]
async fn on_cloud_run_logs_are_json_without_being_asked() {
    let server = TestServer::start_with_env(&guests().testbed, &[], &[("K_SERVICE", "shop")]);
    let log = log_after_two_prints(&server).await;
    let printed = entry(&server, |entry| {
        entry["message"] == "hello from guest stdout"
    });
    assert_eq!(printed["severity"], "INFO");
    let listening = entry(&server, |entry| {
        entry["message"]
            .as_str()
            .is_some_and(|message| message.starts_with("listening on"))
    });
    assert_eq!(listening["severity"], "INFO");
    // The access log is off unless asked for.
    assert!(!log.contains("wasi_host::access"), "{log}");

    // Asked for, the first request's entry is in the log by the same point.
    let asked = TestServer::start_with_env(
        &guests().testbed,
        &["--access-log"],
        &[("K_SERVICE", "shop")],
    );
    let log = log_after_two_prints(&asked).await;
    let before_second_print = log
        .rsplit_once("hello from guest stdout")
        .expect("printed")
        .0;
    assert!(before_second_print.contains("wasi_host::access"), "{log}");

    // An explicit choice wins over the platform's.
    let text = TestServer::start_with_env(
        &guests().testbed,
        &["--log-format", "text"],
        &[("K_SERVICE", "shop")],
    );
    assert!(!text.log().trim_start().starts_with('{'), "{}", text.log());
}

#[tokio::test]
async fn probe_requests_are_not_in_the_access_log() {
    let server = json_server();
    // On one connection: the probe's response is over before the next request is read,
    // so once that request's entry is written, the probe's would have been.
    let http = client();
    let probe = send(http.get(server.url("/.well-known/wasi-host/health"))).await;
    assert_eq!((probe.status, probe.text()), (StatusCode::OK, "ok\n"));
    let url = server.url("/build");
    let next = send(http.get(&url)).await;
    assert_eq!((next.status, next.text()), (StatusCode::OK, "v1"));
    access_entry(&server, &url);
    let logged: Vec<Value> = entries(&server)
        .into_iter()
        .filter(|entry| entry["target"] == "wasi_host::access")
        .collect();
    assert_eq!(logged.len(), 1, "only /build is logged: {logged:?}");
}

#[tokio::test]
async fn a_guest_cannot_forge_host_entries() {
    let server = json_server();
    assert_get(&server, "/print-forged", StatusCode::OK, "printed").await;
    let url = server.url("/print-forged");
    access_entry(&server, &url);
    // Each line the guest wrote is only the message of an entry of the guest's.
    for line in [FORGED_ENTRY, FORGED_TEXT_LINE] {
        let output = entry(&server, |entry| entry["message"] == line);
        assert_eq!(output["target"], "guest", "{output}");
        assert_eq!(output["severity"], "INFO", "{output}");
        assert_eq!(output["stream"], "stdout", "{output}");
    }
    let all = entries(&server);
    assert!(
        !all.iter().any(|entry| entry["message"] == "forged entry"),
        "{all:?}"
    );
    let access: Vec<&Value> = all
        .iter()
        .filter(|entry| entry["target"] == "wasi_host::access")
        .collect();
    assert_eq!(access.len(), 1, "{access:?}");
    assert_eq!(access[0]["httpRequest"]["status"], 200);

    // In text the line follows the host's own fields, never in their place.
    let text = TestServer::start_with(&guests().testbed, &["--log-format", "text"]);
    assert_get(&text, "/print-forged", StatusCode::OK, "printed").await;
    text.assert_logged("forged line");
    let log = text.log();
    let line = log
        .lines()
        .find(|line| line.contains("forged line"))
        .expect("logged");
    assert_ne!(line, FORGED_TEXT_LINE);
    assert!(line.contains("guest"), "{line}");
    assert!(
        !log.lines().any(|line| line.starts_with("1999-01-01")),
        "{log}"
    );
}

#[test]
fn json_startup_errors_are_entries_and_bad_formats_are_refused() {
    let output = run_host_with_env(
        &["serve", "/nonexistent/app.wasm", "--log-format", "json"],
        &[],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let entries: Vec<Value> = stderr
        .lines()
        .map(|line| serde_json::from_str(line).expect("every line a JSON entry"))
        .collect();
    let error = entries
        .iter()
        .find(|entry| entry["severity"] == "ERROR")
        .unwrap_or_else(|| panic!("no ERROR entry in {stderr}"));
    assert_eq!(error["severity"], "ERROR");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .starts_with("cannot read component `/nonexistent/app.wasm`"),
        "{error}"
    );

    let output = run_host_with_env(
        &["serve", "/nonexistent/app.wasm"],
        &[("WASI_HOST_LOG_FORMAT", "xml")],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("invalid value 'xml' for '--log-format <LOG_FORMAT>'"),
        "{stderr}"
    );
    assert!(
        stderr.contains("[possible values: text, json, auto]"),
        "{stderr}"
    );
}

/// A trap's error, wasm backtrace and all, is one line in text mode: continuation lines
/// would read as entries of their own.
#[tokio::test]
async fn a_guest_failure_is_one_line_in_text_mode() {
    let server = TestServer::start_with(&guests().testbed, &["--log-format", "text"]);
    assert_eq!(
        get(&server, "/trap").await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    let marker = "instance retired after a failure: ";
    server.assert_logged(marker);
    let log = server.log();
    let line = log
        .lines()
        .find(|line| line.contains(marker))
        .expect("the failure's line");
    assert!(line.contains("wasm backtrace"), "{log}");
    assert!(line.contains("wasm trap"), "{log}");
    assert!(
        log.lines().all(|line| !line.starts_with(' ')),
        "a line continues an entry:\n{log}"
    );
}
