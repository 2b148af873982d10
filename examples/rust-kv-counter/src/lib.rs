//! A visit counter: every request adds one to `visits` in the `default` key-value store
//! with `wasi:keyvalue`'s atomic increment, so that concurrent requests, in any number
//! of instances sharing the store, never lose a visit. Answers `Visit number N`, or
//! `500` with the store's error.

wit_bindgen::generate!({
    path: "../../wit/keyvalue",
    world: "wasi:keyvalue/imports@0.2.0-draft2",
});

use wasi::keyvalue::{atomics, store};
use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Counter;

/// Adds this visit to the count and returns the new count.
fn count_visit() -> Result<i64, store::Error> {
    let bucket = store::open("default")?;
    atomics::increment(&bucket, "visits", 1)
}

impl wasip2::exports::http::incoming_handler::Guest for Counter {
    fn handle(_request: IncomingRequest, response_out: ResponseOutparam) {
        let (status, text) = match count_visit() {
            Ok(count) => (200, format!("Visit number {count}\n")),
            Err(error) => (500, format!("the store failed: {error:?}\n")),
        };
        let response = OutgoingResponse::new(Fields::new());
        response.set_status_code(status).expect("a valid status");
        let body = response.body().expect("body");
        ResponseOutparam::set(response_out, Ok(response));
        let stream = body.write().expect("stream");
        stream
            .blocking_write_and_flush(text.as_bytes())
            .expect("write");
        drop(stream);
        OutgoingBody::finish(body, None).expect("finish");
    }
}

wasip2::http::proxy::export!(Counter);
