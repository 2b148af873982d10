//! An HTTP handler that also imports `test:unsupported/secrets`, an interface no
//! wasi:http host provides: a host must refuse it at load time.

wit_bindgen::generate!({
    inline: r#"
        package test:unsupported;
        interface secrets {
            get: func() -> string;
        }
        world needs-secrets {
            import secrets;
        }
    "#,
});

use wasip2::http::types::{Fields, IncomingRequest, OutgoingResponse, ResponseOutparam};

struct Handler;

impl wasip2::exports::http::incoming_handler::Guest for Handler {
    fn handle(_request: IncomingRequest, response_out: ResponseOutparam) {
        // Calling the import keeps it in the component; an unused one is linked away.
        let secret = test::unsupported::secrets::get();
        let response = OutgoingResponse::new(Fields::new());
        let body = response.body().expect("body");
        ResponseOutparam::set(response_out, Ok(response));
        let stream = body.write().expect("stream");
        stream
            .blocking_write_and_flush(secret.as_bytes())
            .expect("write");
        drop(stream);
        wasip2::http::types::OutgoingBody::finish(body, None).expect("finish");
    }
}

wasip2::http::proxy::export!(Handler);
