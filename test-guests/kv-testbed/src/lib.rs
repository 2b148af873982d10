//! An HTTP handler with one route per `wasi:keyvalue@0.2.0-draft2` operation, for the
//! host's tests. Every route takes the store as `?store=NAME` (default `default`) and
//! most a key as `&key=KEY`; it answers `200` with the result, or `500` with the
//! interface's error as Rust debug-prints it (`Error::AccessDenied`,
//! `Error::Other("...")`).
//!
//! - `/increment`: adds one to the counter at the key; answers the new count.
//! - `/cas`: the same by compare-and-swap, retrying until the swap holds.
//! - `/get`, `/set` (the request body is the value), `/delete`, `/keys` (sorted, one a
//!   line).
//! - `/batch`: sets `a` and `b`, reads `a`, `b` and `c`, deletes `a`; answers what it read.
//! - `/ops?n=N`: N `exists` calls; answers `ok` or the first failure and its number.

wit_bindgen::generate!({
    path: "../../wit/keyvalue",
    world: "wasi:keyvalue/imports@0.2.0-draft2",
});

use wasi::keyvalue::{atomics, batch, store};
use wasip2::http::types::{
    Fields, IncomingBody, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Testbed;

/// What a route answers: its text, or the store's error.
type Answer = Result<String, store::Error>;

fn route(path: &str, query: &Query, body: Vec<u8>) -> Answer {
    let bucket = store::open(query.get("store").unwrap_or("default"))?;
    let key = query.get("key").unwrap_or("counter");
    match path {
        "/increment" => Ok(atomics::increment(&bucket, key, 1)?.to_string()),
        "/cas" => cas_increment(&bucket, key),
        "/get" => Ok(match bucket.get(key)? {
            Some(value) => String::from_utf8_lossy(&value).into_owned(),
            None => "absent".to_owned(),
        }),
        "/set" => bucket.set(key, &body).map(|()| "set".to_owned()),
        "/delete" => bucket.delete(key).map(|()| "deleted".to_owned()),
        "/keys" => {
            let mut keys = bucket.list_keys(None)?.keys;
            keys.sort();
            Ok(keys.join("\n"))
        }
        "/batch" => batch_round(&bucket),
        "/ops" => {
            let n: u32 = query.get("n").and_then(|n| n.parse().ok()).unwrap_or(1);
            for i in 1..=n {
                if let Err(error) = bucket.exists(key) {
                    return Ok(format!("operation {i} failed: {error:?}"));
                }
            }
            Ok("ok".to_owned())
        }
        _ => Ok("no such route".to_owned()),
    }
}

/// Adds one to the counter at `key` by compare-and-swap.
fn cas_increment(bucket: &store::Bucket, key: &str) -> Answer {
    let mut cas = atomics::Cas::new(bucket, key)?;
    loop {
        let current = cas.current()?.unwrap_or_else(|| b"0".to_vec());
        let next = String::from_utf8_lossy(&current)
            .parse::<i64>()
            .unwrap_or(0)
            + 1;
        match atomics::swap(cas, next.to_string().as_bytes()) {
            Ok(()) => return Ok(next.to_string()),
            Err(atomics::CasError::CasFailed(again)) => cas = again,
            Err(atomics::CasError::StoreError(error)) => return Err(error),
        }
    }
}

fn batch_round(bucket: &store::Bucket) -> Answer {
    batch::set_many(
        bucket,
        &[("a".into(), b"1".to_vec()), ("b".into(), b"2".to_vec())],
    )?;
    let read = batch::get_many(bucket, &["a".into(), "b".into(), "c".into()])?;
    batch::delete_many(bucket, &["a".into()])?;
    let shown: Vec<String> = read
        .into_iter()
        .map(|(key, value)| match value {
            Some(value) => format!("{key}={}", String::from_utf8_lossy(&value)),
            None => format!("{key} absent"),
        })
        .collect();
    Ok(shown.join(","))
}

/// A request's query parameters.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(path_with_query: &str) -> (String, Self) {
        let (path, query) = path_with_query
            .split_once('?')
            .unwrap_or((path_with_query, ""));
        let pairs = query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect();
        (path.to_owned(), Self(pairs))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(known, _)| known == name)
            .map(|(_, value)| value.as_str())
    }
}

fn read_body(request: &IncomingRequest) -> Vec<u8> {
    let body = request.consume().expect("body");
    let stream = body.stream().expect("stream");
    let mut bytes = Vec::new();
    while let Ok(chunk) = stream.blocking_read(64 * 1024) {
        bytes.extend(chunk);
    }
    drop(stream);
    IncomingBody::finish(body);
    bytes
}

impl wasip2::exports::http::incoming_handler::Guest for Testbed {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let (path, query) = Query::parse(&request.path_with_query().unwrap_or_default());
        let body = read_body(&request);
        let (status, text) = match route(&path, &query, body) {
            Ok(text) => (200, text),
            Err(error) => (500, format!("{error:?}")),
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

wasip2::http::proxy::export!(Testbed);
