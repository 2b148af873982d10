//! An HTTP handler that also imports `test:unsupported/secrets`, an interface no
//! wasi:http host provides: a host must refuse it at load time. With the `spin` feature it
//! imports Spin's `fermyon:spin/key-value@2.0.0` instead, which only Spin implements,
//! opens the `default` store on every request and answers with what the host said.

#[cfg(not(feature = "spin"))]
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

#[cfg(feature = "spin")]
wit_bindgen::generate!({
    inline: r#"
        package fermyon:spin@2.0.0;
        interface key-value {
            resource store {
                open: static func(label: string) -> result<store, error>;
                get: func(key: string) -> result<option<list<u8>>, error>;
            }
            variant error {
                store-table-full,
                no-such-store,
                access-denied,
                other(string),
            }
        }
        world needs-key-value {
            import key-value;
        }
    "#,
});

/// What the imported function said.
#[cfg(feature = "spin")]
fn imported_secret() -> String {
    match fermyon::spin::key_value::Store::open("default") {
        Ok(_) => "opened the default store".to_owned(),
        // wit-bindgen 0.62 names the type in its `Debug` output; the variant is enough.
        Err(fermyon::spin::key_value::Error::Other(message)) => {
            format!("open failed: Other({message:?})")
        }
        Err(error) => format!("open failed: {error:?}"),
    }
}
#[cfg(not(feature = "spin"))]
use test::unsupported::secrets::get as imported_secret;

use wasip2::http::types::{Fields, IncomingRequest, OutgoingResponse, ResponseOutparam};

struct Handler;

impl wasip2::exports::http::incoming_handler::Guest for Handler {
    fn handle(_request: IncomingRequest, response_out: ResponseOutparam) {
        // Calling the import keeps it in the component; an unused one is linked away.
        let secret = imported_secret();
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
