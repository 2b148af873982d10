//! Registry credentials, redirects, deadlines and the metadata server, against registries
//! that ask for authorization in each way real ones do: small HTTP servers started here
//! (on 127.0.0.1, .2, .3, ... so that each is another host) that answer the distribution
//! API for one component and record every request they get, headers included.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use serde_json::json;

use tokio_rustls::TlsAcceptor;

use crate::swap::{Build, TOKEN, assert_swapped_to, put_component, start_with_admin};
use crate::test_ca::TestCa;
use crate::util::{
    TestServer, assert_hello, client, guests, send, serve_refused, sha256_hex, wait_for,
};

/// The login the tests give, and how it looks on the wire.
const USER: &str = "alice";
const PASSWORD: &str = "s3cret-registry-password";

fn basic_of(user: &str, password: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

/// One request a fake server got.
#[derive(Debug, Clone)]
struct Seen {
    /// The server's name in the test.
    server: &'static str,
    path: String,
    authorization: Option<String>,
    metadata_flavor: Option<String>,
}

type Body = BoxBody<Bytes, Infallible>;
type Handler = Arc<dyn Fn(&Seen) -> Response<Body> + Send + Sync>;

/// Everything every fake server of one test saw, in order.
#[derive(Clone, Default)]
struct Seens(Arc<Mutex<Vec<Seen>>>);

impl Seens {
    fn all(&self) -> Vec<Seen> {
        self.0.lock().unwrap().clone()
    }

    fn at(&self, server: &str) -> Vec<Seen> {
        self.all()
            .into_iter()
            .filter(|s| s.server == server)
            .collect()
    }

    /// Asserts that no request to any server carried a login (a `Basic` header, or the
    /// password in any form).
    fn assert_no_login_sent(&self) {
        for seen in self.all() {
            let authorization = seen.authorization.clone().unwrap_or_default();
            assert!(
                !authorization.starts_with("Basic"),
                "a login was sent: {seen:?}"
            );
        }
    }
}

/// A listener on `IP:0`.
fn bind(ip: &str) -> std::net::TcpListener {
    std::net::TcpListener::bind((ip, 0)).expect("bind a fake server")
}

/// An HTTP server on `IP:0` answering with `handler`, on a thread of its own; stopped
/// when dropped.
struct FakeServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeServer {
    fn start(ip: &str, server: &'static str, seens: &Seens, handler: Handler) -> Self {
        Self::start_on(bind(ip), server, seens, handler)
    }

    /// [`FakeServer::start`], over HTTPS with the server certificate `ca` signed.
    fn start_tls(
        ip: &str,
        server: &'static str,
        seens: &Seens,
        handler: Handler,
        ca: &TestCa,
    ) -> Self {
        Self::serve(bind(ip), server, seens, handler, Some(ca.acceptor()))
    }

    /// Serves on `listener`, bound before the handler was made (it may need the port).
    fn start_on(
        listener: std::net::TcpListener,
        server: &'static str,
        seens: &Seens,
        handler: Handler,
    ) -> Self {
        Self::serve(listener, server, seens, handler, None)
    }

    fn serve(
        listener: std::net::TcpListener,
        server: &'static str,
        seens: &Seens,
        handler: Handler,
        tls: Option<TlsAcceptor>,
    ) -> Self {
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("address");
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let seens = seens.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                tokio::select! {
                    _ = stopped => {}
                    () = accept(listener, server, seens, handler, tls) => {}
                }
            });
        });
        Self {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `IP:PORT`.
    fn host(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        let _ = self.stop.take().map(|stop| stop.send(()));
        let _ = self.thread.take().map(std::thread::JoinHandle::join);
    }
}

async fn accept(
    listener: tokio::net::TcpListener,
    server: &'static str,
    seens: Seens,
    handler: Handler,
    tls: Option<TlsAcceptor>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (seens, handler) = (seens.clone(), handler.clone());
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let header = |name: &str| {
                request
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let seen = Seen {
                server,
                path: request
                    .uri()
                    .path_and_query()
                    .map_or("/", |p| p.as_str())
                    .to_owned(),
                authorization: header("authorization"),
                metadata_flavor: header("metadata-flavor"),
            };
            seens.0.lock().unwrap().push(seen.clone());
            let response = handler(&seen);
            async move { Ok::<_, Infallible>(response) }
        });
        let http = hyper::server::conn::http1::Builder::new();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => drop(http.serve_connection(TokioIo::new(stream), service).await),
                Some(tls) => {
                    if let Ok(stream) = tls.accept(stream).await {
                        drop(http.serve_connection(TokioIo::new(stream), service).await);
                    }
                }
            }
        });
    }
}

/// An answer with `status`, `headers` and `body`.
fn respond(status: StatusCode, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()).boxed());
    *response.status_mut() = status;
    for (name, value) in headers {
        let name = http::HeaderName::from_bytes(name.as_bytes()).expect("a header name");
        response
            .headers_mut()
            .insert(name, value.parse().expect("a header value"));
    }
    response
}

/// A `200` whose body starts with one byte and never goes on.
fn stalled() -> Response<Body> {
    use futures_util::stream::{self, StreamExt};
    let first = stream::once(async { Ok(Frame::data(Bytes::from_static(b"{"))) });
    let body = StreamBody::new(first.chain(stream::pending()));
    let mut response = Response::new(BodyExt::boxed(body));
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    response
}

/// A `401` asking for a bearer token from `realm`.
fn bearer_challenge(realm: &str) -> Response<Body> {
    respond(
        StatusCode::UNAUTHORIZED,
        &[(
            "www-authenticate",
            &format!(r#"Bearer realm="{realm}",service="fake-registry""#),
        )],
        "",
    )
}

/// A token service's answer.
fn token(token: &str) -> Response<Body> {
    respond(
        StatusCode::OK,
        &[("content-type", "application/json")],
        json!({ "token": token }).to_string(),
    )
}

/// One component in a registry: its manifest and blobs, as `wkg oci push` lays them out.
struct Artifact {
    manifest: Bytes,
    blobs: Vec<(String, Bytes)>,
}

impl Artifact {
    fn of(component: &[u8]) -> Arc<Self> {
        let config = Bytes::from_static(br#"{"architecture":"wasm","os":"wasip2"}"#);
        let layer = Bytes::copy_from_slice(component);
        let digest = |bytes: &[u8]| format!("sha256:{}", sha256_hex(bytes));
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": { "mediaType": "application/vnd.wasm.config.v0+json",
                        "digest": digest(&config), "size": config.len() },
            "layers": [{ "mediaType": "application/wasm",
                         "digest": digest(&layer), "size": layer.len() }],
        });
        Arc::new(Self {
            manifest: manifest.to_string().into(),
            blobs: vec![(digest(&config), config), (digest(&layer), layer)],
        })
    }

    /// The answer to `path` (`/v2/NAME/manifests/TAG` or `/v2/NAME/blobs/DIGEST`).
    fn answer(&self, path: &str) -> Response<Body> {
        if path.contains("/manifests/") {
            let media_type = "application/vnd.oci.image.manifest.v1+json";
            return respond(
                StatusCode::OK,
                &[("content-type", media_type)],
                self.manifest.clone(),
            );
        }
        let found = self
            .blobs
            .iter()
            .find(|(digest, _)| path.ends_with(digest.as_str()));
        match found {
            Some((_, bytes)) => respond(StatusCode::OK, &[], bytes.clone()),
            None => respond(StatusCode::NOT_FOUND, &[], ""),
        }
    }
}

/// A Docker `config.json` giving the test's login for `registry`, in a temporary folder.
fn auth_file(registry: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.json");
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    let config = json!({ "auths": { registry: { "auth": auth } } });
    std::fs::write(&path, config.to_string()).expect("write the auth file");
    (dir, path.to_str().expect("a UTF-8 path").to_owned())
}

/// The environment giving the test's login for `registry`.
fn login_env(registry: &str) -> [(&'static str, String); 3] {
    [
        ("WASI_HOST_REGISTRY_USERNAME", USER.to_owned()),
        ("WASI_HOST_REGISTRY_PASSWORD", PASSWORD.to_owned()),
        ("WASI_HOST_REGISTRY_HOST", registry.to_owned()),
    ]
}

fn env_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect()
}

/// A registry that serves `artifact` to calls with `Bearer GOOD-TOKEN` and challenges
/// every other call for a token from `realm`.
fn token_registry(artifact: Arc<Artifact>, realm: String) -> Handler {
    Arc::new(move |seen| match seen.authorization.as_deref() {
        Some("Bearer GOOD-TOKEN") => artifact.answer(&seen.path),
        _ => bearer_challenge(&realm),
    })
}

#[test]
fn a_login_goes_to_the_realm_a_registry_names_only_over_tls_or_to_an_insecure_host() {
    let seens = Seens::default();
    let tokens = FakeServer::start(
        "127.0.0.2",
        "tokens",
        &seens,
        Arc::new(|_| token("GOOD-TOKEN")),
    );
    let realm = format!("http://{}/token", tokens.host());
    let artifact = Artifact::of(&std::fs::read(&guests().hello).unwrap());
    let registry = FakeServer::start(
        "127.0.0.1",
        "registry",
        &seens,
        token_registry(artifact, realm),
    );
    let (_dir, file) = auth_file(&registry.host());
    let reference = format!("oci://{}/apps/hello:v1", registry.host());

    // The realm is on another host, over plain HTTP, not named insecure: it gets asked
    // for an anonymous token, and never sees the login.
    let flags = [
        "--insecure-registry",
        &registry.host(),
        "--registry-auth-file",
        &file,
    ];
    let server = TestServer::start_with(Path::new(&reference), &flags);
    server.assert_logged("asking it for an anonymous token, without credentials");
    let asked = seens.at("tokens");
    assert!(!asked.is_empty(), "the token service was asked");
    assert!(asked.iter().all(|s| s.authorization.is_none()), "{asked:?}");
    drop(server);

    // Named insecure too, it is trusted with the login, on its other host as Docker
    // Hub's `auth.docker.io` is.
    let both = format!("{},{}", registry.host(), tokens.host());
    let flags = ["--insecure-registry", &both, "--registry-auth-file", &file];
    let _server = TestServer::start_with(Path::new(&reference), &flags);
    let last = seens
        .at("tokens")
        .pop()
        .expect("the token service was asked");
    assert_eq!(last.authorization, Some(basic_of(USER, PASSWORD)));
}

#[tokio::test]
async fn a_login_answers_only_a_challenge_from_the_registry_itself() {
    let seens = Seens::default();
    let artifact = Artifact::of(&std::fs::read(&guests().hello).unwrap());
    let basic = basic_of(USER, PASSWORD);
    let handler: Handler = Arc::new(move |seen| {
        if seen.path.starts_with("/v2/silent/") {
            // A `401` that asks for nothing in particular.
            return respond(StatusCode::UNAUTHORIZED, &[], "");
        }
        match seen.authorization.as_deref() {
            Some(authorization) if authorization == basic => artifact.answer(&seen.path),
            _ => respond(
                StatusCode::UNAUTHORIZED,
                &[("www-authenticate", r#"Basic realm="fake-registry""#)],
                "",
            ),
        }
    });
    let registry = FakeServer::start("127.0.0.1", "registry", &seens, handler);
    let env = login_env(&registry.host());
    let insecure = ["--insecure-registry", &registry.host()];

    let silent = format!("oci://{}/silent/hello:v1", registry.host());
    let stderr = serve_refused(Path::new(&silent), &insecure, &env_refs(&env));
    assert!(stderr.contains("refused access"), "{stderr}");
    seens.assert_no_login_sent();

    let asking = format!("oci://{}/basic/hello:v1", registry.host());
    let server = TestServer::start_with_env(Path::new(&asking), &insecure, &env_refs(&env));
    assert_hello(&server).await;
}

#[test]
fn no_login_goes_to_a_host_that_asks_after_a_redirect() {
    let seens = Seens::default();
    let tokens = FakeServer::start("127.0.0.2", "tokens", &seens, Arc::new(|_| token("STOLEN")));
    let realm = format!("http://{}/token", tokens.host());
    let storage = FakeServer::start(
        "127.0.0.3",
        "storage",
        &seens,
        Arc::new(move |_| bearer_challenge(&realm)),
    );
    let artifact = Artifact::of(&std::fs::read(&guests().hello).unwrap());
    let blob_store = format!("http://{}/blob", storage.host());
    let handler: Handler = Arc::new(move |seen| {
        if seen.path.contains("/blobs/") {
            return respond(
                StatusCode::TEMPORARY_REDIRECT,
                &[("location", &blob_store)],
                "",
            );
        }
        artifact.answer(&seen.path)
    });
    let registry = FakeServer::start("127.0.0.1", "registry", &seens, handler);
    let env = login_env(&registry.host());
    // Every host is named insecure: only the redirect keeps the login from the realm.
    let insecure = format!("{},{},{}", registry.host(), tokens.host(), storage.host());
    let reference = format!("oci://{}/apps/hello:v1", registry.host());

    let stderr = serve_refused(
        Path::new(&reference),
        &["--insecure-registry", &insecure],
        &env_refs(&env),
    );
    assert!(stderr.contains("refused access"), "{stderr}");
    assert!(stderr.contains("no credentials are sent to it"), "{stderr}");
    seens.assert_no_login_sent();
    assert!(seens.at("tokens").is_empty(), "{:?}", seens.all());
}

#[tokio::test]
async fn a_registry_over_https_is_trusted_through_the_ca_file_and_kept_to_https() {
    let ca = TestCa::new();
    let ca_file = ca.ca_file();
    let trust = ["--ca-file", ca_file.to_str().unwrap()];
    let seens = Seens::default();
    let artifact = Artifact::of(&std::fs::read(&guests().hello).unwrap());
    let served = artifact.clone();
    let registry = FakeServer::start_tls(
        "127.0.0.1",
        "registry",
        &seens,
        Arc::new(move |seen| served.answer(&seen.path)),
        &ca,
    );
    let reference = format!("oci://{}/apps/hello:v1", registry.host());
    let server = TestServer::start_with(Path::new(&reference), &trust);
    assert_hello(&server).await;
    // Without the CA the registry's certificate is not trusted.
    let stderr = serve_refused(Path::new(&reference), &[], &[]);
    assert!(stderr.contains("UnknownIssuer"), "{stderr}");

    // Trusted, it still may not send the download over plain HTTP, even to a host
    // that would serve it.
    let served = artifact.clone();
    let storage = FakeServer::start(
        "127.0.0.3",
        "storage",
        &seens,
        Arc::new(move |seen| served.answer(&seen.path)),
    );
    let plain_store = format!("http://{}", storage.host());
    let redirecting = FakeServer::start_tls(
        "127.0.0.1",
        "redirecting",
        &seens,
        Arc::new(move |seen| {
            if seen.path.contains("/blobs/") {
                let location = format!("{plain_store}{}", seen.path);
                return respond(
                    StatusCode::TEMPORARY_REDIRECT,
                    &[("location", &location)],
                    "",
                );
            }
            artifact.answer(&seen.path)
        }),
        &ca,
    );
    let reference = format!("oci://{}/apps/hello:v1", redirecting.host());
    let stderr = serve_refused(Path::new(&reference), &trust, &[]);
    assert!(
        stderr.contains(&format!(
            "sent the call to `{}` over plain HTTP",
            storage.host()
        )),
        "{stderr}"
    );
    assert!(seens.at("storage").is_empty(), "{:?}", seens.all());

    // A CA file that is not one stops the host, naming it.
    let not_pem = ca.folder().join("not.pem");
    std::fs::write(&not_pem, "not a certificate").unwrap();
    let stderr = serve_refused(
        Path::new(&reference),
        &["--ca-file", not_pem.to_str().unwrap()],
        &[],
    );
    assert!(stderr.contains("holds no PEM certificate"), "{stderr}");
}

#[tokio::test]
async fn a_registry_without_credentials_gets_none_while_another_registry_has_some() {
    let seens = Seens::default();
    let tokens = FakeServer::start(
        "127.0.0.2",
        "tokens",
        &seens,
        Arc::new(|_| token("GOOD-TOKEN")),
    );
    let realm = format!("http://{}/token", tokens.host());
    let artifact = Artifact::of(&std::fs::read(&guests().hello).unwrap());
    let public = FakeServer::start(
        "127.0.0.1",
        "public",
        &seens,
        token_registry(artifact, realm),
    );
    // Logins for another registry, from the file and from the environment.
    let (_dir, file) = auth_file("private.registry.example:5000");
    let env = login_env("private.registry.example:5000");
    let insecure = format!("{},{}", public.host(), tokens.host());
    let reference = format!("oci://{}/library/hello:v1", public.host());

    let flags = [
        "--insecure-registry",
        &insecure,
        "--registry-auth-file",
        &file,
    ];
    let server = TestServer::start_with_env(Path::new(&reference), &flags, &env_refs(&env));
    assert_hello(&server).await;
    assert!(
        !seens.at("tokens").is_empty(),
        "an anonymous token was asked for"
    );
    seens.assert_no_login_sent();
}

#[tokio::test]
async fn artifact_registry_is_pulled_from_with_a_token_from_the_metadata_server() {
    const ACCESS_TOKEN: &str = "ya29.from-the-metadata-server";
    let seens = Seens::default();
    let metadata = FakeServer::start(
        "127.0.0.4",
        "metadata",
        &seens,
        Arc::new(
            |seen| match (seen.metadata_flavor.as_deref(), seen.path.as_str()) {
                (Some("Google"), "/computeMetadata/v1/instance/service-accounts/default/token") => {
                    let body = json!({ "access_token": ACCESS_TOKEN, "expires_in": 3599, "token_type": "Bearer" });
                    respond(
                        StatusCode::OK,
                        &[("content-type", "application/json")],
                        body.to_string(),
                    )
                }
                (Some("Google"), "/computeMetadata/v1/project/project-id") => {
                    respond(StatusCode::OK, &[], "shop-prod")
                }
                _ => respond(StatusCode::FORBIDDEN, &[], "missing Metadata-Flavor"),
            },
        ),
    );
    let listener = bind("127.0.0.1");
    let port = listener.local_addr().unwrap().port();
    let registry_name = format!("us-docker.pkg.dev:{port}");
    let artifact = Artifact::of(&std::fs::read(&guests().hello).unwrap());
    let realm = format!("http://{registry_name}/v2/token");
    let expected = basic_of("oauth2accesstoken", ACCESS_TOKEN);
    let handler: Handler = Arc::new(move |seen| match seen.authorization.as_deref() {
        Some(login) if seen.path.starts_with("/v2/token") && login == expected => {
            token("GOOD-TOKEN")
        }
        Some("Bearer GOOD-TOKEN") => artifact.answer(&seen.path),
        _ => bearer_challenge(&realm),
    });
    let registry = FakeServer::start_on(listener, "registry", &seens, handler);
    let reference = format!("oci://{registry_name}/shop-prod/apps/hello:v1");
    let flags = [
        "--registry-resolve",
        "us-docker.pkg.dev:127.0.0.1",
        "--insecure-registry",
        &registry_name,
        "--log-format",
        "json",
        "--access-log",
    ];
    let metadata_host = metadata.host();
    let server = TestServer::start_with_env(
        Path::new(&reference),
        &flags,
        &[("GCE_METADATA_HOST", &metadata_host)],
    );
    assert_hello(&server).await;
    let asked = seens.at("metadata");
    assert!(
        asked
            .iter()
            .all(|s| s.metadata_flavor.as_deref() == Some("Google")),
        "{asked:?}"
    );
    drop(registry);

    // The project id for trace links, too, since GOOGLE_CLOUD_PROJECT is unset.
    server.assert_logged("traces are named in project `shop-prod`, from the metadata server");
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let reply = send(
        client()
            .get(server.url("/"))
            .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01")),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    server.assert_logged(&format!("projects/shop-prod/traces/{trace}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_token_service_never_holds_up_an_admin_swap() {
    let seens = Seens::default();
    let tokens = FakeServer::start("127.0.0.2", "tokens", &seens, Arc::new(|_| stalled()));
    let realm = format!("http://{}/token", tokens.host());
    let artifact = Artifact::of(&Build::V1.bytes());
    let locked = Arc::new(AtomicBool::new(false));
    let lock = locked.clone();
    let handler: Handler = Arc::new(move |seen| match lock.load(Ordering::SeqCst) {
        false => artifact.answer(&seen.path),
        true => bearer_challenge(&realm),
    });
    let registry = FakeServer::start("127.0.0.1", "registry", &seens, handler);
    let reference = format!("oci://{}/apps/testbed:live", registry.host());
    let insecure = format!("{},{}", registry.host(), tokens.host());
    let (server, admin) = start_with_admin(
        Path::new(&reference),
        &[
            "--insecure-registry",
            &insecure,
            "--registry-timeout",
            "20s",
        ],
    );
    assert_swapped_to(&server, Build::V1).await;

    // The reload's token call gets one byte, then nothing.
    locked.store(true, Ordering::SeqCst);
    server.signal("HUP");
    let stalled = wait_for(Duration::from_secs(10), || {
        (!seens.at("tokens").is_empty()).then_some(())
    });
    assert!(
        stalled.is_some(),
        "the reload never asked for a token: {}",
        server.log()
    );

    let started = Instant::now();
    let reply = put_component(&admin, Some(TOKEN), Build::V2.bytes()).await;
    let took = started.elapsed();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    // Well under the registry's deadline (compiling the upload takes a moment on a busy
    // machine): the upload did not wait for the stalled pull.
    assert!(
        took < Duration::from_secs(10),
        "the upload waited {took:?} for the stalled pull"
    );
    eprintln!("the upload answered in {took:?} while the pull was stalled");
    assert_swapped_to(&server, Build::V2).await;

    // The stalled call ends at its deadline, and changes nothing.
    let ended = wait_for(Duration::from_secs(45), || {
        server
            .log()
            .contains("did not finish sending in time")
            .then_some(())
    });
    assert!(
        ended.is_some(),
        "the stalled token call never timed out: {}",
        server.log()
    );
    assert_swapped_to(&server, Build::V2).await;
}

#[tokio::test]
async fn the_admin_422_does_not_say_why_a_registry_could_not_be_reached() {
    let (server, admin) = start_with_admin(Build::V1.file(), &[]);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host = closed.local_addr().unwrap().to_string();
    drop(closed);
    let reply = send(
        client()
            .put(&admin)
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(json!({ "reference": format!("oci://{host}/apps/hello:v1") }).to_string()),
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    let message = reply.text();
    assert!(
        message.contains(&format!("cannot reach the registry `{host}`")),
        "{message}"
    );
    for detail in ["refused", "os error", "TLS", "handshake"] {
        assert!(!message.contains(detail), "{detail:?} in {message}");
    }
    // The operator still finds the cause, in the log.
    server.assert_logged("Connection refused");
    assert_swapped_to(&server, Build::V1).await;
}
