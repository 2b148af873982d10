//! The hello handler as a WASI 0.3 component: `GET /` answers `Hello, World!`, every
//! other path `404`, the same answers as the WASI 0.2 hello in `guest/`.
//!
//! It exports `wasi:http/handler@0.3.0` from the `wasi:http/service` world (the vendored
//! WIT in `wit/p3`), so it runs on any WASI 0.3 HTTP host.

wit_bindgen::generate!({
    path: "../../wit/p3",
    world: "wasi-host:hello-p3/service",
    generate_all,
});

use exports::wasi::http::handler::Guest;
use wasi::http::types::{ErrorCode, Fields, Method, Request, Response};

struct Hello;

impl Guest for Hello {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let path = request.get_path_with_query();
        let is_root = path
            .as_deref()
            .is_some_and(|path| path == "/" || path.starts_with("/?"));
        let (status, body): (u16, &'static [u8]) = match request.get_method() {
            Method::Get if is_root => (200, b"Hello, World!"),
            _ => (404, b"Not Found"),
        };
        respond(status, body)
    }
}

fn respond(status: u16, body: &'static [u8]) -> Result<Response, ErrorCode> {
    let headers = Fields::from_list(&[
        (
            "content-type".to_string(),
            b"text/plain; charset=utf-8".to_vec(),
        ),
        ("content-length".to_string(), body.len().to_string().into()),
    ])
    .expect("static headers are valid");
    let (mut body_tx, body_rx) = wit_stream::new();
    // No trailers: the future resolves to `Ok(None)` as its writer is dropped.
    let (_, trailers_rx) = wit_future::new(|| Ok(None));
    let (response, _sent) = Response::new(headers, Some(body_rx), trailers_rx);
    response
        .set_status_code(status)
        .expect("status code is valid");
    // The host reads the body only once it has the response: the write runs after
    // `handle` returns, in the same task.
    wit_bindgen::spawn_local(async move {
        let unwritten = body_tx.write_all(body.to_vec()).await;
        debug_assert!(unwritten.is_empty(), "the host stopped reading the body");
    });
    Ok(response)
}

export!(Hello);
