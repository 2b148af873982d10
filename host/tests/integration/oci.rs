//! Components pulled from an OCI registry: a real registry (Debian's `docker-registry`)
//! on 127.0.0.1, components pushed to it in the layout `wkg oci push` writes (by a small
//! client here, and once by `wkg` itself, to prove the two agree), and the real binary
//! pulling them at startup, on SIGHUP and on an admin request. `scripts/setup.sh`
//! installs both tools; without them these tests fail, saying how to install them.

use std::convert::Infallible;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::swap::{
    Build, TOKEN, active_version, assert_swapped_to, start_with_admin, version_json,
};
use crate::util::{
    TestServer, assert_get, assert_hello, client, free_port, guests, send, serve_refused,
    sha256_hex, sha256_of, tool_runs, wait_for,
};
use crate::workers::{assert_all_served, assert_workers_serve};

/// The Wasm artifact's media types, as `wkg oci push` writes them.
const WASM_CONFIG: &str = "application/vnd.wasm.config.v0+json";
const WASM_LAYER: &str = "application/wasm";

/// The media type of the manifests pushed here, and of those `wkg` pushes.
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// The `wkg` release `scripts/setup.sh` installs.
const WKG_VERSION: &str = "0.16.1";

/// A registry serving the distribution API on 127.0.0.1 with storage in a temporary
/// folder; stopped when dropped.
struct LocalRegistry {
    child: Child,
    dir: tempfile::TempDir,
    /// `127.0.0.1:PORT`, the registry's name in references.
    host: String,
}

impl LocalRegistry {
    /// Starts a registry; fails, saying how to install it, without `docker-registry`.
    fn start() -> Self {
        assert!(
            tool_runs("docker-registry"),
            "`docker-registry` is not installed: scripts/setup.sh installs it \
             (`apt-get install docker-registry` on Debian)"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let host = format!("127.0.0.1:{}", free_port());
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    \
                 rootdirectory: {}\nhttp:\n  addr: {host}\n",
                dir.path().join("data").display()
            ),
        )
        .expect("write the registry config");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        let registry = Self { child, dir, host };
        let up = wait_for(Duration::from_secs(10), || {
            TcpStream::connect(&registry.host).ok()
        });
        assert!(
            up.is_some(),
            "the registry did not start on {}",
            registry.host
        );
        registry
    }

    /// `oci://127.0.0.1:PORT/NAME`.
    fn reference(&self, name: &str) -> String {
        format!("oci://{}/{name}", self.host)
    }

    /// `http://127.0.0.1:PORT/v2/NAME/PATH`: a call of the distribution API.
    fn api(&self, name: &str, path: &str) -> String {
        format!("http://{}/v2/{name}/{path}", self.host)
    }

    /// Pushes `component` as `NAME:TAG` in the layout `wkg oci push` writes: an OCI image
    /// manifest whose config is a Wasm config and whose one layer is the component.
    /// Returns the manifest's digest.
    async fn push(&self, name_and_tag: &str, component: &Path) -> String {
        let (name, tag) = name_and_tag.split_once(':').expect("NAME:TAG");
        let bytes = std::fs::read(component).expect("read the component");
        // What wkg writes, less the component's imports and exports: the host reads only
        // the media types.
        let config = json!({
            "created": "2026-01-01T00:00:00Z",
            "architecture": "wasm",
            "os": "wasip2",
            "layerDigests": [format!("sha256:{}", sha256_hex(&bytes))],
        });
        self.push_manifest(
            name,
            tag,
            (WASM_CONFIG, config.to_string().as_bytes()),
            (WASM_LAYER, &bytes),
        )
        .await
    }

    /// Pushes a container image (an OCI image config and a tar layer) as `NAME:TAG`.
    async fn push_container_image(&self, name: &str, tag: &str) {
        let config =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
        self.push_manifest(
            name,
            tag,
            ("application/vnd.oci.image.config.v1+json", config),
            (
                "application/vnd.oci.image.layer.v1.tar+gzip",
                b"not really a tarball",
            ),
        )
        .await;
    }

    /// Pushes the `config` blob and the `layer` blob, each as (media type, bytes), and a
    /// manifest naming them as `NAME:TAG`; returns the manifest's digest.
    async fn push_manifest(
        &self,
        name: &str,
        tag: &str,
        config: (&str, &[u8]),
        layer: (&str, &[u8]),
    ) -> String {
        let descriptor = |(media_type, bytes): (&str, &[u8]), digest: String| json!({ "mediaType": media_type, "digest": digest, "size": bytes.len() });
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(config, self.push_blob(name, config.1).await),
            "layers": [descriptor(layer, self.push_blob(name, layer.1).await)],
        })
        .to_string();
        let digest = format!("sha256:{}", sha256_hex(manifest.as_bytes()));
        let reply = send(
            client()
                .put(self.api(name, &format!("manifests/{tag}")))
                .header("content-type", OCI_MANIFEST)
                .body(manifest),
        )
        .await;
        assert_eq!(reply.status, StatusCode::CREATED, "manifest push");
        assert_eq!(reply.header("docker-content-digest"), Some(digest.as_str()));
        digest
    }

    /// Uploads `bytes` as a blob of repository `name` (a monolithic upload: POST, then
    /// PUT with the digest); returns its digest.
    async fn push_blob(&self, name: &str, bytes: &[u8]) -> String {
        let digest = format!("sha256:{}", sha256_hex(bytes));
        let started = send(client().post(self.api(name, "blobs/uploads/"))).await;
        assert_eq!(started.status, StatusCode::ACCEPTED, "upload start");
        let location = started.header("location").expect("an upload location");
        let location = if location.starts_with('/') {
            format!("http://{}{location}", self.host)
        } else {
            location.to_owned()
        };
        let separator = if location.contains('?') { '&' } else { '?' };
        let finished = send(
            client()
                .put(format!("{location}{separator}digest={digest}"))
                .body(bytes.to_vec()),
        )
        .await;
        assert_eq!(finished.status, StatusCode::CREATED, "upload finish");
        digest
    }

    /// Pushes `component` as `NAME:TAG` with `wkg oci push`; returns the manifest digest.
    fn push_with_wkg(&self, name: &str, component: &Path) -> String {
        let version = Command::new("wkg").arg("--version").output();
        assert!(
            version.is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains(WKG_VERSION)),
            "wkg {WKG_VERSION} is not installed: `cargo install wkg --version {WKG_VERSION} \
             --locked` (scripts/setup.sh does; it compiles for about seven minutes)"
        );
        let target = format!("{}/{name}", self.host);
        let output = Command::new("wkg")
            .args(["oci", "push", "--insecure", &self.host, &target])
            .arg(component)
            // No docker credentials or wkg config from the machine's user.
            .env("HOME", self.dir.path())
            .env_remove("XDG_CONFIG_HOME")
            .output()
            .expect("run wkg");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "wkg oci push {target} failed: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
            .lines()
            .find_map(|line| line.strip_prefix("digest: "))
            .unwrap_or_else(|| panic!("no digest in wkg's output: {stdout}"))
            .trim()
            .to_owned()
    }

    /// The manifest `NAME@DIGEST` (or `NAME:TAG`), as the registry holds it.
    async fn manifest(&self, name: &str, reference: &str) -> Value {
        let reply = send(
            client()
                .get(self.api(name, &format!("manifests/{reference}")))
                .header("accept", OCI_MANIFEST),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        serde_json::from_slice(&reply.body).expect("manifest JSON")
    }

    /// Where the registry stores the blob `digest` (`sha256:HEX`).
    fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nothing listens on right now.
/// `serve REFERENCE` with `flags` must refuse to start, with one error line naming
/// `names` (the reference) and saying `reason`.
fn assert_refused(reference: &str, flags: &[&str], names: &str, reason: &str) {
    let stderr = serve_refused(Path::new(reference), flags, &[]);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "one error line expected: {stderr}");
    assert!(errors[0].contains(names), "does not name {names}: {stderr}");
    assert!(errors[0].contains(reason), "expected {reason:?}: {stderr}");
}

#[tokio::test]
async fn serves_a_component_pulled_by_tag_and_by_digest() {
    let registry = LocalRegistry::start();
    let hello_digest = registry.push("hello:v1", &guests().hello).await;
    let insecure = ["--insecure-registry", registry.host.as_str()];

    let by_tag = registry.reference("hello:v1");
    let started = Instant::now();
    let server = TestServer::start_with(Path::new(&by_tag), &insecure);
    eprintln!("pulled, compiled and listening in {:?}", started.elapsed());
    assert_hello(&server).await;
    server.assert_logged(&format!("serving generation 1: `{by_tag}@{hello_digest}`"));
    server.assert_logged(&format!(
        "generation 1 has sha256 {}",
        sha256_of(&guests().hello)
    ));
    drop(server);

    let testbed_digest = registry.push("testbed:v1", Build::V1.file()).await;
    for reference in [
        registry.reference(&format!("testbed@{testbed_digest}")),
        registry.reference(&format!("testbed:v1@{testbed_digest}")),
    ] {
        let server = TestServer::start_with(Path::new(&reference), &insecure);
        assert_swapped_to(&server, Build::V1).await;
        server.assert_logged(&format!("serving generation 1: `{reference}`"));
    }
}

#[tokio::test]
async fn refuses_to_start_on_what_it_cannot_pull() {
    let registry = LocalRegistry::start();
    let digest = registry.push("testbed:v1", Build::V1.file()).await;
    let host = registry.host.as_str();
    let insecure = ["--insecure-registry", host];
    let missing = "no such repository, tag or digest in the registry";

    let tag = registry.reference("testbed:v1");
    assert_refused(
        &tag,
        &[],
        &tag,
        &format!("if it serves plain HTTP, name it with --insecure-registry {host}"),
    );
    let absent = registry.reference("testbed:nope");
    assert_refused(&absent, &insecure, &absent, missing);
    let other_digest = format!("sha256:{}", sha256_of(Build::V2.file()));
    let wrong = registry.reference(&format!("testbed@{other_digest}"));
    assert_refused(&wrong, &insecure, &wrong, missing);
    let closed = format!("127.0.0.1:{}", free_port());
    let nowhere = format!("oci://{closed}/testbed:v1");
    assert_refused(
        &nowhere,
        &["--insecure-registry", &closed],
        &nowhere,
        "cannot reach the registry",
    );
    assert_refused(
        &tag,
        &["--insecure-registry", host, "--max-pull-size", "64KiB"],
        &tag,
        "bytes, more than the limit of 65536 (--max-pull-size)",
    );
    assert_refused(
        &tag,
        &["--insecure-registry", host, "--watch"],
        &tag,
        "--watch needs a component file",
    );

    registry.push_container_image("image", "latest").await;
    let image = registry.reference("image:latest");
    assert_refused(
        &image,
        &insecure,
        &image,
        &format!(
            "it is not a Wasm component: its config is `application/vnd.oci.image.config.v1+json` \
             and its layers are [application/vnd.oci.image.layer.v1.tar+gzip]; expected a Wasm \
             component: config `{WASM_CONFIG}`"
        ),
    );

    // Bytes changed behind the registry's back: served under the old digest, refused.
    let manifest = registry.manifest("testbed", &digest).await;
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .expect("layer digest");
    let mut tampered = Build::V1.bytes();
    tampered[100] ^= 1;
    std::fs::write(registry.blob_file(layer), &tampered).expect("tamper with the layer");
    assert_refused(&tag, &insecure, &tag, "does not match its digest");

    // The same for the manifest, when the reference pins its digest.
    let pinned = registry.reference(&format!("testbed@{digest}"));
    let mut manifest_bytes = serde_json::to_vec_pretty(&manifest).expect("serialize");
    manifest_bytes.push(b'\n');
    std::fs::write(registry.blob_file(&digest), manifest_bytes).expect("tamper with the manifest");
    assert_refused(&pinned, &insecure, &pinned, "does not match its digest");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_pulls_the_tag_again_and_swaps_when_it_names_new_bytes() {
    let registry = LocalRegistry::start();
    registry.push("testbed:live", Build::V1.file()).await;
    let live = registry.reference("testbed:live");
    let (server, admin) =
        start_with_admin(Path::new(&live), &["--insecure-registry", &registry.host]);
    assert_swapped_to(&server, Build::V1).await;
    server.assert_logged("generation 1 has sha256");

    let v2_digest = registry.push("testbed:live", Build::V2.file()).await;
    server.signal("HUP");
    assert_swapped_to(&server, Build::V2).await;
    let version = active_version(&admin).await;
    assert_eq!(version["generation"], 2);
    assert_eq!(version["origin"], format!("{live}@{v2_digest}"));
    assert_eq!(version["sha256"], sha256_of(Build::V2.file()));
    server.assert_logged("Hangup");

    // The tag still names the active bytes: nothing is downloaded. The layer is made
    // unreadable to prove it; a download would fail its digest check.
    let v2_sha256 = sha256_of(Build::V2.file());
    std::fs::write(
        registry.blob_file(&format!("sha256:{v2_sha256}")),
        b"tampered",
    )
    .expect("tamper with the layer");
    server.signal("HUP");
    server.assert_logged("component unchanged; nothing to swap");
    assert!(!server.log().contains("rejected"), "{}", server.log());
    assert_eq!(active_version(&admin).await["generation"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_endpoint_swaps_to_a_new_reference_that_sighup_then_pulls() {
    let registry = LocalRegistry::start();
    registry.push("testbed:v1", Build::V1.file()).await;
    let v2_digest = registry.push("testbed:v2", Build::V2.file()).await;
    let (server, admin) = start_with_admin(
        Path::new(&registry.reference("testbed:v1")),
        &["--insecure-registry", &registry.host],
    );
    let put = |body: String| {
        send(
            client()
                .put(&admin)
                .bearer_auth(TOKEN)
                .header("content-type", "application/json")
                .body(body),
        )
    };

    let v2 = registry.reference("testbed:v2");
    let reply = put(json!({ "reference": v2 }).to_string()).await;
    assert_eq!(reply.status, StatusCode::OK);
    let version = version_json(&reply);
    assert_eq!(version["generation"], 2);
    assert_eq!(version["origin"], format!("{v2}@{v2_digest}"));
    assert_swapped_to(&server, Build::V2).await;
    server.assert_logged("NewReference");

    // Not a reference, and a reference to nothing: refused, nothing changes.
    let reply = put(r#"{"reference": "testbed.wasm"}"#.to_owned()).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let absent = registry.reference("testbed:absent");
    let reply = put(json!({ "reference": absent }).to_string()).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    let message = reply.text();
    assert!(
        message.contains("the old version keeps serving"),
        "{message}"
    );
    assert!(message.contains(&absent), "{message}");

    // SIGHUP pulls the reference the admin endpoint set, not the one the host started
    // with (nor the rejected one).
    registry.push("testbed:v2", Build::V1.file()).await;
    server.signal("HUP");
    assert_swapped_to(&server, Build::V1).await;
    let version = active_version(&admin).await;
    assert_eq!(version["generation"], 3);
    assert!(
        version["origin"]
            .as_str()
            .is_some_and(|origin| origin.starts_with(&format!("{v2}@sha256:"))),
        "{version}"
    );
}

/// A proxy in front of a registry that can move a tag between two reads: armed, it
/// answers the next `GET` of the tag's manifest as the registry has it, and then points
/// the tag at another manifest.
struct MovingTag {
    /// `127.0.0.1:PORT`, the registry's name in references through the proxy.
    host: String,
    /// The tag's manifest path and the manifest path it is moved to, once armed.
    armed: Arc<Mutex<Option<(String, String)>>>,
    accepting: tokio::task::JoinHandle<()>,
}

impl MovingTag {
    async fn start(registry: &LocalRegistry) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let host = listener.local_addr().expect("address").to_string();
        let armed = Arc::new(Mutex::new(None));
        let (upstream, moves) = (registry.host.clone(), armed.clone());
        let accepting = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (upstream, moves) = (upstream.clone(), moves.clone());
                let service = service_fn(move |request| {
                    let (upstream, moves) = (upstream.clone(), moves.clone());
                    async move { Ok::<_, Infallible>(forward(&upstream, &moves, request).await) }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        Self {
            host,
            armed,
            accepting,
        }
    }

    /// Right after the next read of `NAME:TAG`, makes `TAG` name what `NAME:SOURCE` names.
    fn move_after_next_read(&self, name: &str, tag: &str, source: &str) {
        let path = |reference: &str| format!("/v2/{name}/manifests/{reference}");
        *self.armed.lock().unwrap() = Some((path(tag), path(source)));
    }

    fn reference(&self, name: &str) -> String {
        format!("oci://{}/{name}", self.host)
    }

    /// Whether the armed move has happened.
    fn moved(&self) -> bool {
        self.armed.lock().unwrap().is_none()
    }
}

impl Drop for MovingTag {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

/// Sends `request` on to the registry at `upstream`, and moves the armed tag if this
/// was its read.
async fn forward(
    upstream: &str,
    moves: &Mutex<Option<(String, String)>>,
    request: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let path = request.uri().path().to_owned();
    let mut forwarded = client().request(
        request.method().clone(),
        format!("http://{upstream}{}", request.uri()),
    );
    for (name, value) in request.headers() {
        if name != "host" {
            forwarded = forwarded.header(name, value);
        }
    }
    let reply = send(forwarded).await;
    let is_read = request.method() == "GET";
    let moving = {
        let mut armed = moves.lock().unwrap();
        match &*armed {
            Some((tag, _)) if is_read && *tag == path => armed.take(),
            _ => None,
        }
    };
    if let Some((tag, source)) = moving {
        let manifest = send(
            client()
                .get(format!("http://{upstream}{source}"))
                .header("accept", OCI_MANIFEST),
        )
        .await;
        let moved = send(
            client()
                .put(format!("http://{upstream}{tag}"))
                .header("content-type", OCI_MANIFEST)
                .body(manifest.body),
        )
        .await;
        assert_eq!(moved.status, StatusCode::CREATED, "moving the tag");
    }
    let mut response = hyper::Response::new(Full::new(reply.body));
    *response.status_mut() = reply.status;
    let mut headers = reply.headers;
    // The body is sent whole, with its length.
    headers.remove("transfer-encoding");
    *response.headers_mut() = headers;
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_worker_serves_the_digest_the_primary_pulled_though_the_tag_moves() {
    let registry = LocalRegistry::start();
    registry.push("testbed:live", Build::V1.file()).await;
    registry.push("testbed:v1", Build::V1.file()).await;
    registry.push("testbed:v2", Build::V2.file()).await;
    let proxy = MovingTag::start(&registry).await;
    let live = proxy.reference("testbed:live");
    let flags = ["--insecure-registry", &proxy.host, "--workers", "2"];

    // The tag moves to v2 once the primary has read it: every worker serves v1.
    proxy.move_after_next_read("testbed", "live", "v2");
    let (server, admin) = start_with_admin(Path::new(&live), &flags);
    server.assert_logged("worker 2 of 2 serving on");
    assert!(proxy.moved());
    assert_workers_serve(&admin, 2, 1, &sha256_of(Build::V1.file())).await;
    assert_all_served(&server, "v1", 20).await;

    // A reload reads v2, and the tag moves back to v1 behind it: every worker swaps
    // to v2.
    proxy.move_after_next_read("testbed", "live", "v1");
    server.signal("HUP");
    server.assert_logged("worker 2 follows: generation 2");
    assert!(proxy.moved());
    assert_workers_serve(&admin, 2, 2, &sha256_of(Build::V2.file())).await;
    assert_all_served(&server, "v2", 20).await;
}

#[tokio::test]
async fn a_component_pushed_with_wkg_is_served() {
    let registry = LocalRegistry::start();
    let digest = registry.push_with_wkg("hello:v1", &guests().hello);
    // wkg's layout is the one the tests' own pushes write.
    let manifest = registry.manifest("hello", &digest).await;
    assert_eq!(manifest["mediaType"], OCI_MANIFEST, "{manifest}");
    assert_eq!(manifest["config"]["mediaType"], WASM_CONFIG, "{manifest}");
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 1, "{manifest}");
    assert_eq!(layers[0]["mediaType"], WASM_LAYER, "{manifest}");
    assert_eq!(
        layers[0]["digest"],
        format!("sha256:{}", sha256_of(&guests().hello))
    );

    let by_tag = registry.reference("hello:v1");
    let server = TestServer::start_with(
        Path::new(&by_tag),
        &["--insecure-registry", registry.host.as_str()],
    );
    assert_hello(&server).await;
    server.assert_logged(&format!("serving generation 1: `{by_tag}@{digest}`"));
}

#[tokio::test]
async fn a_wasi_0_3_component_is_pulled_and_served() {
    let registry = LocalRegistry::start();
    registry.push("service:v1", &guests().p3_testbed).await;
    let reference = registry.reference("service:v1");
    let server = TestServer::start_with(
        Path::new(&reference),
        &["--insecure-registry", registry.host.as_str()],
    );
    server.assert_logged("wasi:http/service@0.3 (WASI 0.3)");
    assert_get(&server, "/count", StatusCode::OK, "1").await;
    assert_get(&server, "/count", StatusCode::OK, "2").await;
}
