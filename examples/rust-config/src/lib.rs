//! Configuration and a secret, the two ways a component gets them from wasi-host:
//!
//! - `GET /config/KEY` answers the value of KEY from `wasi:config/store` (`--config`,
//!   `WASI_CONFIG_KEY`, `--config-file`), or `404` when there is none.
//! - `GET /` greets with the `greeting` value, or `Hello` without one.
//! - `GET /private` answers `200` only to `Authorization: Bearer API_KEY`, where
//!   `API_KEY` is the guest's environment variable (on Cloud Run, a secret passed as
//!   the host variable `WASI_GUEST_API_KEY`); `401` otherwise, `500` when it is unset.

#[cfg(not(feature = "draft"))]
wit_bindgen::generate!({
    inline: r#"
        package wasi:config@0.2.0-rc.1;
        interface store {
            variant error { upstream(string), io(string) }
            get: func(key: string) -> result<option<string>, error>;
            get-all: func() -> result<list<tuple<string, string>>, error>;
        }
        world imports { import store; }
    "#,
});

#[cfg(feature = "draft")]
wit_bindgen::generate!({
    inline: r#"
        package wasi:config@0.2.0-draft-2024-09-27;
        interface store {
            variant error { upstream(string), io(string) }
            get: func(key: string) -> result<option<string>, error>;
            get-all: func() -> result<list<tuple<string, string>>, error>;
        }
        world imports { import store; }
    "#,
});

use wasi::config::store;
use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Handler;

impl wasip2::exports::http::incoming_handler::Guest for Handler {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let (status, body) = match path.as_str() {
            "/" => (
                200,
                format!(
                    "{}, World!",
                    config("greeting").unwrap_or_else(|| "Hello".into())
                ),
            ),
            "/private" => private(&request),
            other => match other.strip_prefix("/config/") {
                Some(key) => match config(key) {
                    Some(value) => (200, value),
                    None => (404, format!("no config value `{key}`")),
                },
                None => (404, "no such route".into()),
            },
        };
        respond(response_out, status, &body);
    }
}

/// The config value of `key`, if there is one.
fn config(key: &str) -> Option<String> {
    match store::get(key) {
        Ok(value) => value,
        Err(error) => panic!("the config store failed: {error:?}"),
    }
}

/// Compares the request's bearer token with the `API_KEY` secret.
fn private(request: &IncomingRequest) -> (u16, String) {
    let Ok(secret) = std::env::var("API_KEY") else {
        return (500, "API_KEY is not set".into());
    };
    let expected = format!("Bearer {secret}");
    let authorized = request
        .headers()
        .get("authorization")
        .iter()
        .any(|value| *value == expected.as_bytes());
    if authorized {
        (200, "welcome".into())
    } else {
        (401, "a valid bearer token is needed".into())
    }
}

fn respond(response_out: ResponseOutparam, status: u16, body: &str) {
    let response = OutgoingResponse::new(Fields::new());
    response.set_status_code(status).expect("valid status");
    let outgoing = response.body().expect("body");
    ResponseOutparam::set(response_out, Ok(response));
    let stream = outgoing.write().expect("stream");
    stream
        .blocking_write_and_flush(body.as_bytes())
        .expect("write");
    drop(stream);
    OutgoingBody::finish(outgoing, None).expect("finish");
}

wasip2::http::proxy::export!(Handler);
