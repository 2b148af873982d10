//! `--require-id-token`: only requests with a Google-signed ID token for the audience
//! reach the guest. The tokens are signed by RSA keys made for this test run (with the
//! `openssl` command), the first served as a JWKS by a local server; Google's issuer is
//! what the host expects.

use std::process::Command;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::fake_server::FakeServer;
use crate::util::{Reply, TestServer, client, guests, send, serve_refused};

const AUDIENCE: &str = "https://wasi-host.example.com";
const KEY_ID: &str = "test-key-1";
const CALLER: &str = "caller@shop.iam.gserviceaccount.com";

/// A 2048-bit RSA key, as Google's: the private key in PKCS#1 DER, and the public
/// modulus, big-endian (the exponent is OpenSSL's, 65537).
struct TestKey {
    der: Vec<u8>,
    modulus: Vec<u8>,
}

/// Test key `which` (0 or 1), made once per run.
fn key(which: usize) -> &'static TestKey {
    static KEYS: OnceLock<[TestKey; 2]> = OnceLock::new();
    &KEYS.get_or_init(|| [make_key(), make_key()])[which]
}

fn make_key() -> TestKey {
    let folder = tempfile::tempdir().expect("a temporary folder");
    let pem = folder.path().join("key.pem");
    let pem = pem.to_str().expect("utf-8 path");
    let openssl = |args: &[&str]| {
        let output = Command::new("openssl")
            .args(args)
            .output()
            .expect("the openssl command (Debian package openssl)");
        assert!(output.status.success(), "openssl {args:?}: {output:?}");
        output.stdout
    };
    openssl(&["genrsa", "-traditional", "-out", pem, "2048"]);
    let der = openssl(&["rsa", "-in", pem, "-traditional", "-outform", "DER"]);
    let line = String::from_utf8(openssl(&["rsa", "-in", pem, "-noout", "-modulus"])).unwrap();
    let hex = line.trim().strip_prefix("Modulus=").expect("Modulus=HEX");
    let modulus = (0..hex.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&hex[at..at + 2], 16).expect("hex"))
        .collect();
    TestKey { der, modulus }
}

/// The JWKS publishing the first key's public half.
fn jwks() -> String {
    json!({"keys": [{
        "kty": "RSA", "alg": "RS256", "use": "sig", "kid": KEY_ID,
        "n": URL_SAFE_NO_PAD.encode(&key(0).modulus),
        "e": "AQAB",
    }]})
    .to_string()
}

/// Good claims for a token issued now, with `changes` applied.
fn claims(changes: Value) -> Value {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut claims = json!({
        "iss": "https://accounts.google.com",
        "aud": AUDIENCE,
        "sub": "1234567890",
        "email": CALLER,
        "email_verified": true,
        "iat": now,
        "exp": now + 3600,
    });
    for (name, value) in changes.as_object().expect("an object") {
        claims[name] = value.clone();
    }
    claims
}

/// `claims` signed with key `which`, naming `kid`.
fn token_signed(claims: &Value, which: usize, kid: &str) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_rsa_der(&key(which).der))
        .expect("a token")
}

fn token(claims: &Value) -> String {
    token_signed(claims, 0, KEY_ID)
}

/// A JWKS server and the testbed behind the token check, with `flags` added.
async fn checked_host(flags: &[&str]) -> (FakeServer, TestServer) {
    let jwks = jwks();
    let keys = FakeServer::start(move |_, _| (StatusCode::OK, jwks.clone())).await;
    let url = format!("http://{}/oauth2/v3/certs", keys.host());
    let mut all = vec!["--require-id-token", AUDIENCE, "--id-token-jwks-url", &url];
    all.extend_from_slice(flags);
    let server = TestServer::start_with(&guests().testbed, &all);
    (keys, server)
}

async fn call(server: &TestServer, token: Option<&str>) -> Reply {
    let request = client().post(server.url("/echo")).body("to the guest");
    send(match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    })
    .await
}

/// Checks that `reply` is the host's `401`, and that the log says `reason`.
fn assert_refused(server: &TestServer, reply: &Reply, reason: &str) {
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text());
    assert_eq!(
        reply.header("www-authenticate"),
        Some("Bearer error=\"invalid_token\"")
    );
    assert!(
        reply.header("x-testbed-build").is_none(),
        "the guest never ran"
    );
    server.assert_logged(&format!("refused a caller: {reason}"));
}

#[tokio::test]
async fn a_valid_token_reaches_the_guest_and_the_keys_are_cached() {
    let (keys, server) = checked_host(&[]).await;
    for _ in 0..3 {
        let reply = call(&server, Some(&token(&claims(json!({}))))).await;
        assert_eq!(
            (reply.status, reply.text()),
            (StatusCode::OK, "to the guest")
        );
    }
    let other_issuer = claims(json!({"iss": "accounts.google.com"}));
    assert_eq!(
        call(&server, Some(&token(&other_issuer))).await.status,
        StatusCode::OK
    );
    assert_eq!(keys.received().len(), 1, "the keys are fetched once");
    assert_eq!(keys.received()[0].0.path(), "/oauth2/v3/certs");
}

#[tokio::test]
async fn missing_expired_and_misdirected_tokens_are_refused() {
    let (_keys, server) = checked_host(&[]).await;
    assert_refused(&server, &call(&server, None).await, "no bearer token");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expired = claims(json!({"iat": now - 7200, "exp": now - 3600}));
    let reply = call(&server, Some(&token(&expired))).await;
    assert_refused(&server, &reply, "invalid token: ExpiredSignature");
    let elsewhere = claims(json!({"aud": "https://other.example.com"}));
    let reply = call(&server, Some(&token(&elsewhere))).await;
    assert_refused(&server, &reply, "invalid token: InvalidAudience");
    let forged_issuer = claims(json!({"iss": "https://accounts.example.com"}));
    let reply = call(&server, Some(&token(&forged_issuer))).await;
    assert_refused(&server, &reply, "invalid token: InvalidIssuer");
    let reply = call(&server, Some("not-a-token")).await;
    assert_refused(&server, &reply, "malformed token");
}

#[tokio::test]
async fn a_token_signed_by_another_key_is_refused() {
    let (_keys, server) = checked_host(&[]).await;
    let forged = token_signed(&claims(json!({})), 1, KEY_ID);
    assert_refused(
        &server,
        &call(&server, Some(&forged)).await,
        "invalid token: InvalidSignature",
    );
    let unknown = token_signed(&claims(json!({})), 1, "other-key");
    let reply = call(&server, Some(&unknown)).await;
    assert_refused(&server, &reply, "unknown signing key `other-key`");
}

#[tokio::test]
async fn the_health_path_needs_no_token() {
    let (keys, server) = checked_host(&[]).await;
    let reply = send(client().get(server.url("/.well-known/wasi-host/health"))).await;
    assert_eq!((reply.status, reply.text()), (StatusCode::OK, "ok\n"));
    assert!(keys.received().is_empty());
}

#[tokio::test]
async fn only_the_allowed_service_accounts_pass() {
    let (_keys, server) = checked_host(&["--allowed-service-account", CALLER]).await;
    assert_eq!(
        call(&server, Some(&token(&claims(json!({}))))).await.status,
        StatusCode::OK
    );
    let stranger = claims(json!({"email": "other@shop.iam.gserviceaccount.com"}));
    let reply = call(&server, Some(&token(&stranger))).await;
    assert_refused(
        &server,
        &reply,
        "`other@shop.iam.gserviceaccount.com` is not an allowed service account",
    );
    let unverified = claims(json!({"email_verified": false}));
    let reply = call(&server, Some(&token(&unverified))).await;
    assert_refused(
        &server,
        &reply,
        &format!("`{CALLER}` is not an allowed service account"),
    );
}

#[tokio::test]
async fn without_the_keys_callers_get_503_and_the_host_serves_on() {
    let keys = FakeServer::start(|_, _| (StatusCode::NOT_FOUND, "gone".into())).await;
    let url = format!("http://{}/certs", keys.host());
    let flags = ["--require-id-token", AUDIENCE, "--id-token-jwks-url", &url];
    let server = TestServer::start_with(&guests().testbed, &flags);
    let reply = call(&server, Some(&token(&claims(json!({}))))).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    server.assert_logged("cannot check a caller's ID token");
    let health = send(client().get(server.url("/.well-known/wasi-host/health"))).await;
    assert_eq!(health.status, StatusCode::OK);
}

#[test]
fn an_allowed_account_without_an_audience_is_refused() {
    let stderr = serve_refused(
        &guests().testbed,
        &["--allowed-service-account", CALLER],
        &[],
    );
    assert!(
        stderr.contains("--allowed-service-account needs --require-id-token"),
        "{stderr}"
    );
}
