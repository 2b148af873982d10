//! The event handler example (`examples/rust-events`) served by the host: each shape
//! Cloud Run delivers events in (Pub/Sub push wrapped and unwrapped, Eventarc
//! CloudEvents in binary mode) is acknowledged with `200` and read correctly; each
//! malformed one gets the `4xx` that stops it being taken for a passing failure.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::examples::rust_events;
use crate::util::{Reply, TestServer, client, send};

const SUBSCRIPTION: &str = "projects/shop/subscriptions/orders-push";
const PUBLISH_TIME: &str = "2026-12-01T10:00:00.123Z";

/// Posts `body` with `headers` to the handler.
async fn post(
    server: &TestServer,
    headers: &[(&str, &str)],
    body: impl Into<reqwest::Body>,
) -> Reply {
    let mut request = client().post(server.url("/")).body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    send(request).await
}

/// The event the handler acknowledged, as it reported it.
fn acknowledged(reply: &Reply) -> Value {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    serde_json::from_slice(&reply.body).expect("the handler answers JSON")
}

/// A Pub/Sub push envelope (the wrapped format) for a message with `data`.
fn envelope(data: &str) -> Value {
    json!({
        "message": {
            "data": STANDARD.encode(data),
            "attributes": {"kind": "order"},
            "messageId": "1001",
            "message_id": "1001",
            "publishTime": PUBLISH_TIME,
            "publish_time": PUBLISH_TIME,
            "orderingKey": ""
        },
        "subscription": SUBSCRIPTION,
        "deliveryAttempt": 1
    })
}

#[tokio::test]
async fn a_wrapped_pubsub_push_is_acknowledged() {
    let server = TestServer::start(rust_events());
    let body = envelope("order 42 shipped").to_string();
    let reply = post(&server, &[("content-type", "application/json")], body).await;
    assert_eq!(
        acknowledged(&reply),
        json!({
            "shape": "pubsub-push",
            "id": "1001",
            "source": SUBSCRIPTION,
            "time": PUBLISH_TIME,
            "attributes": {"kind": "order"},
            "data": "order 42 shipped"
        })
    );
    server.assert_logged("event {\"shape\":\"pubsub-push\"");
}

#[tokio::test]
async fn an_unwrapped_pubsub_push_is_acknowledged() {
    let server = TestServer::start(rust_events());
    let metadata = [
        ("x-goog-pubsub-message-id", "2002"),
        ("x-goog-pubsub-publish-time", PUBLISH_TIME),
        ("x-goog-pubsub-subscription-name", SUBSCRIPTION),
        ("kind", "order"),
    ];
    let reply = post(&server, &metadata, "raw order 7").await;
    assert_eq!(
        acknowledged(&reply),
        json!({
            "shape": "pubsub-push-unwrapped",
            "id": "2002",
            "source": SUBSCRIPTION,
            "time": PUBLISH_TIME,
            "attributes": {},
            "data": "raw order 7"
        })
    );
}

/// The `ce-*` headers of an Eventarc event of `ty`, with a JSON body.
fn cloud_event_headers(ty: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![
        ("ce-id", "evt-3003"),
        (
            "ce-source",
            "//pubsub.googleapis.com/projects/shop/topics/orders",
        ),
        ("ce-specversion", "1.0"),
        ("ce-type", ty),
        ("ce-time", PUBLISH_TIME),
        ("content-type", "application/json; charset=utf-8"),
    ]
}

#[tokio::test]
async fn eventarc_cloud_events_are_acknowledged() {
    let server = TestServer::start(rust_events());
    let published = cloud_event_headers("google.cloud.pubsub.topic.v1.messagePublished");
    let reply = post(&server, &published, envelope("via eventarc").to_string()).await;
    assert_eq!(
        acknowledged(&reply),
        json!({
            "shape": "cloudevent",
            "id": "evt-3003",
            "source": "//pubsub.googleapis.com/projects/shop/topics/orders",
            "type": "google.cloud.pubsub.topic.v1.messagePublished",
            "time": PUBLISH_TIME,
            "attributes": {"kind": "order"},
            "data": "via eventarc"
        })
    );
    let storage = cloud_event_headers("google.cloud.storage.object.v1.finalized");
    let object = json!({"bucket": "uploads", "name": "a.png"}).to_string();
    let event = acknowledged(&post(&server, &storage, object.clone()).await);
    assert_eq!(event["type"], "google.cloud.storage.object.v1.finalized");
    assert_eq!(event["data"], object);
}

/// Checks that `reply` refuses the event with `status`, saying `reason`.
fn assert_refused(reply: &Reply, status: StatusCode, reason: &str) {
    assert_eq!(reply.status, status, "{}", reply.text());
    assert!(
        reply.text().contains(reason),
        "{reason:?} in {:?}",
        reply.text()
    );
}

#[tokio::test]
async fn malformed_pubsub_pushes_are_refused_with_4xx() {
    let server = TestServer::start(rust_events());
    let json = [("content-type", "application/json")];
    let reply = post(&server, &json, "{not json").await;
    assert_refused(
        &reply,
        StatusCode::BAD_REQUEST,
        "not a Pub/Sub push message",
    );
    let reply = post(
        &server,
        &json,
        json!({"subscription": SUBSCRIPTION}).to_string(),
    )
    .await;
    assert_refused(&reply, StatusCode::BAD_REQUEST, "missing field `message`");
    let mut no_id = envelope("x");
    no_id["message"]
        .as_object_mut()
        .unwrap()
        .remove("messageId");
    let reply = post(&server, &json, no_id.to_string()).await;
    assert_refused(&reply, StatusCode::BAD_REQUEST, "missing field `messageId`");
    let mut bad_data = envelope("x");
    bad_data["message"]["data"] = json!("%%% not base64");
    let reply = post(&server, &json, bad_data.to_string()).await;
    assert_refused(
        &reply,
        StatusCode::BAD_REQUEST,
        "the message data is not base64",
    );
    let unwrapped = [("x-goog-pubsub-message-id", "2002")];
    let reply = post(&server, &unwrapped, "raw").await;
    assert_refused(
        &reply,
        StatusCode::BAD_REQUEST,
        "no `x-goog-pubsub-subscription-name` header",
    );
    let reply = send(client().get(server.url("/"))).await;
    assert_refused(
        &reply,
        StatusCode::METHOD_NOT_ALLOWED,
        "delivered with POST",
    );
    // The handler stays well: a good push after the bad ones is acknowledged.
    acknowledged(&post(&server, &json, envelope("still here").to_string()).await);
}

#[tokio::test]
async fn malformed_cloud_events_are_refused_with_4xx() {
    let server = TestServer::start(rust_events());
    let ty = "google.cloud.storage.object.v1.finalized";
    let without = |name: &str| {
        let mut headers = cloud_event_headers(ty);
        headers.retain(|(known, _)| *known != name);
        headers
    };
    let body = || json!({"bucket": "uploads"}).to_string();
    for missing in ["ce-id", "ce-source", "ce-type", "ce-specversion"] {
        let reply = post(&server, &without(missing), body()).await;
        assert_refused(
            &reply,
            StatusCode::BAD_REQUEST,
            &format!("no `{missing}` header"),
        );
    }
    let mut old = without("ce-specversion");
    old.push(("ce-specversion", "0.3"));
    let reply = post(&server, &old, body()).await;
    assert_refused(&reply, StatusCode::BAD_REQUEST, "specversion `0.3`");
    let mut text = without("content-type");
    text.push(("content-type", "text/plain"));
    let reply = post(&server, &text, body()).await;
    assert_refused(&reply, StatusCode::UNSUPPORTED_MEDIA_TYPE, "must be JSON");
    let reply = post(&server, &cloud_event_headers(ty), "{broken").await;
    assert_refused(
        &reply,
        StatusCode::BAD_REQUEST,
        "the event data is not JSON",
    );
    let published = cloud_event_headers("google.cloud.pubsub.topic.v1.messagePublished");
    let reply = post(&server, &published, json!({"message": {}}).to_string()).await;
    assert_refused(
        &reply,
        StatusCode::BAD_REQUEST,
        "not a Pub/Sub push message",
    );
}
