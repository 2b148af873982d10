//! An event handler for Cloud Run, as a wasi:http component: it accepts the three shapes
//! events are delivered in (see [`event`]), logs each event on stdout and acknowledges
//! it with `200` and the event as JSON. A request it can never understand gets a `4xx`
//! (`400` malformed, `405` not a POST, `413` too large, `415` not JSON); a handler that
//! failed for a passing reason would answer `5xx` so that the event is delivered again.
//! See docs/events.md for what each status means to Pub/Sub and Eventarc.

mod event;

use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use wasip2::io::streams::StreamError;

use event::Rejection;

/// Largest body read: a Pub/Sub message is at most 10 MB, and base64 adds a third.
const MAX_BODY: usize = 14 << 20;

struct Handler;

impl wasip2::exports::http::incoming_handler::Guest for Handler {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let (status, body) = match handle_event(request) {
            Ok(event) => {
                let json = serde_json::to_string(&event).expect("an event serializes");
                println!("event {json}");
                (200, json)
            }
            Err(rejection) => {
                eprintln!("rejected ({}): {}", rejection.status, rejection.reason);
                (rejection.status, rejection.reason)
            }
        };
        respond(response_out, status, &body);
    }
}

fn handle_event(request: IncomingRequest) -> Result<event::Event, Rejection> {
    if !matches!(request.method(), Method::Post) {
        return Err(Rejection {
            status: 405,
            reason: "events are delivered with POST".into(),
        });
    }
    let headers = request.headers().entries();
    let body = read_body(request)?;
    event::parse(&headers, &body)
}

fn read_body(request: IncomingRequest) -> Result<Vec<u8>, Rejection> {
    let incoming = request.consume().expect("request body");
    let stream = incoming.stream().expect("request stream");
    let mut body = Vec::new();
    loop {
        match stream.blocking_read(65536) {
            Ok(bytes) => body.extend_from_slice(&bytes),
            Err(StreamError::Closed) => return Ok(body),
            Err(StreamError::LastOperationFailed(error)) => {
                return Err(Rejection {
                    status: 400,
                    reason: format!("reading the body failed: {}", error.to_debug_string()),
                });
            }
        }
        if body.len() > MAX_BODY {
            return Err(Rejection {
                status: 413,
                reason: format!("the body is over {MAX_BODY} bytes"),
            });
        }
    }
}

fn respond(response_out: ResponseOutparam, status: u16, body: &str) {
    let headers = Fields::new();
    let content_type: &[u8] = if status == 200 {
        b"application/json"
    } else {
        b"text/plain; charset=utf-8"
    };
    headers
        .append("content-type", content_type)
        .expect("valid header");
    let response = OutgoingResponse::new(headers);
    response.set_status_code(status).expect("valid status");
    let outgoing = response.body().expect("body");
    ResponseOutparam::set(response_out, Ok(response));
    let stream = outgoing.write().expect("stream");
    // blocking_write_and_flush takes at most 4096 bytes at a time.
    for chunk in body.as_bytes().chunks(4096) {
        stream.blocking_write_and_flush(chunk).expect("write");
    }
    drop(stream);
    OutgoingBody::finish(outgoing, None).expect("finish");
}

wasip2::http::proxy::export!(Handler);
