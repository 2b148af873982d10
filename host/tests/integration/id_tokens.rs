//! `--outbound-id-token`: the host fetches a Google ID token for the named origin from
//! the metadata server (a local fake, found through `GCE_METADATA_HOST`), keeps it until
//! shortly before it expires, and adds it to guests' requests to that origin only,
//! unless the guest sets its own `Authorization`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;

use crate::fake_server::FakeServer;
use crate::outbound::{Upstream, UpstreamReply, fetch, fetch_with};
use crate::util::{TestServer, guests, serve_refused};

const IDENTITY_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/identity";

/// A metadata server minting token number N (`token-N` in its claims) that expires
/// `lifetime` after it is minted; or answering `500` when `lifetime` is `None`.
async fn metadata_server(lifetime: Option<Duration>) -> FakeServer {
    let minted = Arc::new(AtomicU64::new(0));
    FakeServer::start(move |uri, _| {
        let Some(lifetime) = lifetime else {
            return (StatusCode::INTERNAL_SERVER_ERROR, "broken".into());
        };
        if uri.path() != IDENTITY_PATH {
            return (StatusCode::NOT_FOUND, "no such path".into());
        }
        let number = minted.fetch_add(1, Ordering::SeqCst) + 1;
        let exp = (SystemTime::now() + lifetime)
            .duration_since(UNIX_EPOCH)
            .unwrap();
        let claims = format!(r#"{{"jti":"token-{number}","exp":{}}}"#, exp.as_secs());
        let token = format!(
            "{}.{}.c2lnbmF0dXJl",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256"}"#),
            URL_SAFE_NO_PAD.encode(claims)
        );
        (StatusCode::OK, token)
    })
    .await
}

/// The wasi-host serving the testbed, allowed to reach `named` and `other`, with ID
/// tokens for `named` from `metadata`.
fn host(named: &Upstream, other: &Upstream, metadata: &FakeServer) -> TestServer {
    TestServer::start_with_env(
        &guests().testbed,
        &[
            "--allow-outbound",
            &named.origin(),
            "--allow-outbound",
            &other.origin(),
            "--outbound-id-token",
            &named.origin(),
        ],
        // A project of its own, so that the metadata server is asked for tokens only.
        &[
            ("GCE_METADATA_HOST", &metadata.host()),
            ("GOOGLE_CLOUD_PROJECT", "test-project"),
        ],
    )
}

/// The claims of the bearer token upstream request `index` carried, if any.
fn token_claims(upstream: &Upstream, index: usize) -> Option<String> {
    let headers = upstream.requests().get(index)?.clone();
    let value = headers.get("authorization")?.to_str().unwrap().to_owned();
    let token = value.strip_prefix("Bearer ").expect("a bearer token");
    let payload = token.split('.').nth(1).expect("a JWT");
    Some(String::from_utf8(URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap())
}

#[tokio::test]
async fn the_named_origin_gets_a_cached_token_and_no_other_origin_does() {
    let metadata = metadata_server(Some(Duration::from_secs(3600))).await;
    let named = Upstream::start(UpstreamReply::Hello).await;
    let other = Upstream::start(UpstreamReply::Hello).await;
    let server = host(&named, &other, &metadata);
    server.assert_logged(&format!(
        "ID tokens from {} for {}",
        metadata.host(),
        named.origin()
    ));

    for _ in 0..2 {
        let (status, _) = fetch(&server, &format!("{}/", named.origin())).await;
        assert_eq!(status, StatusCode::OK);
    }
    assert!(token_claims(&named, 0).unwrap().contains("\"token-1\""));
    assert!(
        token_claims(&named, 1).unwrap().contains("\"token-1\""),
        "cached"
    );

    let asked = metadata.received();
    assert_eq!(asked.len(), 1, "one fetch for both requests");
    let (uri, headers) = &asked[0];
    assert_eq!(uri.path(), IDENTITY_PATH);
    let audience: String = form_urlencoded::byte_serialize(named.origin().as_bytes()).collect();
    assert_eq!(
        uri.query(),
        Some(format!("audience={audience}&format=full").as_str())
    );
    assert_eq!(headers["metadata-flavor"], "Google");

    let (status, _) = fetch(&server, &format!("{}/", other.origin())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(other.requests().len(), 1);
    assert!(
        other.requests()[0].get("authorization").is_none(),
        "never to another origin"
    );
}

#[tokio::test]
async fn a_guests_own_authorization_is_kept() {
    let metadata = metadata_server(Some(Duration::from_secs(3600))).await;
    let named = Upstream::start(UpstreamReply::Hello).await;
    let other = Upstream::start(UpstreamReply::Hello).await;
    let server = host(&named, &other, &metadata);
    let query = format!("url={}/", named.origin());
    let own = [("x-forward-authorization", "Bearer the-guests-own")];
    let reply = fetch_with(&server, &query, &own).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        named.requests()[0]["authorization"],
        "Bearer the-guests-own"
    );
    assert!(metadata.received().is_empty(), "no token was needed");
}

#[tokio::test]
async fn a_token_near_its_expiry_is_fetched_again() {
    // Inside the host's five-minute margin: never worth keeping.
    let metadata = metadata_server(Some(Duration::from_secs(120))).await;
    let named = Upstream::start(UpstreamReply::Hello).await;
    let other = Upstream::start(UpstreamReply::Hello).await;
    let server = host(&named, &other, &metadata);
    for _ in 0..2 {
        let (status, _) = fetch(&server, &format!("{}/", named.origin())).await;
        assert_eq!(status, StatusCode::OK);
    }
    assert!(token_claims(&named, 0).unwrap().contains("\"token-1\""));
    assert!(token_claims(&named, 1).unwrap().contains("\"token-2\""));
    assert_eq!(metadata.received().len(), 2);
}

#[tokio::test]
async fn without_a_token_the_request_fails_and_the_host_serves_on() {
    let metadata = metadata_server(None).await;
    let named = Upstream::start(UpstreamReply::Hello).await;
    let other = Upstream::start(UpstreamReply::Hello).await;
    let server = host(&named, &other, &metadata);
    let (status, body) = fetch(&server, &format!("{}/", named.origin())).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(body.contains("cannot get an ID token"), "{body}");
    assert!(body.contains("the metadata server answered 500"), "{body}");
    assert!(
        named.requests().is_empty(),
        "nothing sent without its token"
    );
    server.assert_logged("cannot get an ID token for");
    let (status, _) = fetch(&server, &format!("{}/", other.origin())).await;
    assert_eq!(status, StatusCode::OK);
}

#[test]
fn an_audience_that_is_not_an_origin_is_refused() {
    let stderr = serve_refused(
        &guests().testbed,
        &["--outbound-id-token", "https://svc.example/path"],
        &[],
    );
    assert!(
        stderr.contains("invalid ID token audience `https://svc.example/path`"),
        "{stderr}"
    );
}
