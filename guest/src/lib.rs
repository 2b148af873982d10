//! The hello handler: `GET /` answers `Hello, World!`, every other path `404`.
//!
//! It exports `wasi:http/incoming-handler` and imports nothing beyond the
//! `wasi:http/proxy` world, so it runs unchanged on any wasi:http host.

#[allow(warnings)]
mod bindings;

use bindings::exports::wasi::http::incoming_handler::Guest;
use bindings::wasi::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Hello;

impl Guest for Hello {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let (status, body): (u16, &[u8]) = match (request.method(), request.path_with_query()) {
            (Method::Get, Some(path)) if path == "/" || path.starts_with("/?") => {
                (200, b"Hello, World!")
            }
            _ => (404, b"Not Found"),
        };
        respond(response_out, status, body);
    }
}

fn respond(response_out: ResponseOutparam, status: u16, body: &[u8]) {
    let headers = Fields::from_list(&[
        (
            "content-type".to_string(),
            b"text/plain; charset=utf-8".to_vec(),
        ),
        ("content-length".to_string(), body.len().to_string().into()),
    ])
    .expect("static headers are valid");
    let response = OutgoingResponse::new(headers);
    response
        .set_status_code(status)
        .expect("status code is valid");
    let outgoing_body = response.body().expect("body is taken once");
    ResponseOutparam::set(response_out, Ok(response));
    let stream = outgoing_body.write().expect("stream is taken once");
    // The body is 13 bytes, well under the 4 KiB a single write may carry.
    stream
        .blocking_write_and_flush(body)
        .expect("response body write");
    drop(stream);
    OutgoingBody::finish(outgoing_body, None).expect("response body finish");
}

bindings::export!(Hello with_types_in bindings);
