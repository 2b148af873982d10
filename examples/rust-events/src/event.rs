//! The three shapes an event reaches a Cloud Run service in, read from a request's
//! headers and body without I/O. A request that is none of them, or one of them with a
//! part missing or unreadable, is a [`Rejection`] with a `4xx` status: it will never be
//! understood, however often it is sent again.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

/// The CloudEvents type of an Eventarc event for a message published to a topic; its
/// data is a Pub/Sub push envelope.
pub const PUBSUB_MESSAGE_PUBLISHED: &str = "google.cloud.pubsub.topic.v1.messagePublished";

/// An event, whatever shape it came in.
#[derive(Debug, Serialize)]
pub struct Event {
    /// `pubsub-push`, `pubsub-push-unwrapped` or `cloudevent`.
    pub shape: &'static str,
    /// The message id (Pub/Sub) or the event id (CloudEvents).
    pub id: String,
    /// The subscription (Pub/Sub) or the event's source (CloudEvents).
    pub source: String,
    /// The CloudEvents type, for a CloudEvent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub r#type: Option<String>,
    /// When it was published (Pub/Sub) or happened (CloudEvents `time`), if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// The message's attributes (wrapped Pub/Sub messages, and Eventarc's Pub/Sub
    /// events).
    pub attributes: BTreeMap<String, String>,
    /// The message's data, decoded (as UTF-8 text where it is; this example's messages
    /// are text), or a CloudEvent's JSON data as it came.
    pub data: String,
}

/// Why a request is not an event this handler understands.
#[derive(Debug)]
pub struct Rejection {
    pub status: u16,
    pub reason: String,
}

impl Rejection {
    fn bad_request(reason: impl Into<String>) -> Self {
        Self {
            status: 400,
            reason: reason.into(),
        }
    }
}

/// A Pub/Sub push request's body (the default, wrapped, format).
#[derive(Deserialize)]
struct PushEnvelope {
    message: PubsubMessage,
    subscription: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PubsubMessage {
    /// Base64; absent when the message has attributes only.
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    message_id: String,
    publish_time: String,
}

/// The event a POST with `headers` (lower-case names) and `body` carries.
pub fn parse(headers: &[(String, Vec<u8>)], body: &[u8]) -> Result<Event, Rejection> {
    let header = |name: &str| {
        headers
            .iter()
            .find(|(known, _)| known == name)
            .map(|(_, value)| String::from_utf8_lossy(value).into_owned())
    };
    if headers.iter().any(|(name, _)| name.starts_with("ce-")) {
        cloud_event(&header, body)
    } else if header("x-goog-pubsub-message-id").is_some() {
        unwrapped_push(&header, body)
    } else {
        wrapped_push(body)
    }
}

/// Pub/Sub's default push: a JSON envelope with the message inside, its data in base64.
fn wrapped_push(body: &[u8]) -> Result<Event, Rejection> {
    let envelope: PushEnvelope = serde_json::from_slice(body)
        .map_err(|error| Rejection::bad_request(format!("not a Pub/Sub push message: {error}")))?;
    let message = envelope.message;
    Ok(Event {
        shape: "pubsub-push",
        data: decode(message.data.as_deref())?,
        id: message.message_id,
        source: envelope.subscription,
        r#type: None,
        time: Some(message.publish_time),
        attributes: message.attributes,
    })
}

/// Pub/Sub's unwrapped push (`--push-no-wrapper-write-metadata`): the data is the body,
/// the metadata in `x-goog-pubsub-*` headers and the attributes in headers of their own
/// names.
fn unwrapped_push(
    header: &impl Fn(&str) -> Option<String>,
    body: &[u8],
) -> Result<Event, Rejection> {
    let required = |name: &str| {
        header(name).ok_or_else(|| Rejection::bad_request(format!("no `{name}` header")))
    };
    Ok(Event {
        shape: "pubsub-push-unwrapped",
        id: required("x-goog-pubsub-message-id")?,
        source: required("x-goog-pubsub-subscription-name")?,
        r#type: None,
        time: Some(required("x-goog-pubsub-publish-time")?),
        attributes: BTreeMap::new(),
        data: String::from_utf8_lossy(body).into_owned(),
    })
}

/// A CloudEvent in binary mode, as Eventarc delivers it: the attributes in `ce-*`
/// headers, the data as the JSON body. For a Pub/Sub message the data is the push
/// envelope, whose message is decoded.
fn cloud_event(header: &impl Fn(&str) -> Option<String>, body: &[u8]) -> Result<Event, Rejection> {
    let required = |name: &str| {
        header(name).ok_or_else(|| Rejection::bad_request(format!("no `{name}` header")))
    };
    let specversion = required("ce-specversion")?;
    if specversion != "1.0" {
        return Err(Rejection::bad_request(format!(
            "CloudEvents specversion `{specversion}`: only 1.0 is understood"
        )));
    }
    let content_type = header("content-type").unwrap_or_default();
    if !content_type.starts_with("application/json") {
        return Err(Rejection {
            status: 415,
            reason: format!("content type `{content_type}`: the event data must be JSON"),
        });
    }
    let (id, source, r#type) = (
        required("ce-id")?,
        required("ce-source")?,
        required("ce-type")?,
    );
    let time = header("ce-time");
    if r#type == PUBSUB_MESSAGE_PUBLISHED {
        let message = wrapped_push(body)?;
        return Ok(Event {
            shape: "cloudevent",
            r#type: Some(r#type),
            time,
            id,
            source,
            ..message
        });
    }
    serde_json::from_slice::<serde_json::Value>(body)
        .map_err(|error| Rejection::bad_request(format!("the event data is not JSON: {error}")))?;
    Ok(Event {
        shape: "cloudevent",
        id,
        source,
        r#type: Some(r#type),
        time,
        attributes: BTreeMap::new(),
        data: String::from_utf8_lossy(body).into_owned(),
    })
}

/// A message's base64 data as text; none is empty.
fn decode(data: Option<&str>) -> Result<String, Rejection> {
    let bytes = STANDARD.decode(data.unwrap_or_default()).map_err(|error| {
        Rejection::bad_request(format!("the message data is not base64: {error}"))
    })?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}
