//! Components pulled from an OCI registry: a real registry (Debian's `docker-registry`)
//! on 127.0.0.1, components pushed to it with `wkg oci push`, and the real binary pulling
//! them at startup, on SIGHUP and on an admin request. `scripts/setup.sh` installs both
//! tools; without them these tests are skipped, saying so (and fail in CI).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use sha2::{Digest, Sha256};

use crate::swap::{
    Build, TOKEN, active_version, assert_swapped_to, start_with_admin, version_json,
};
use crate::util::{
    TestServer, assert_hello, client, guests, in_ci, report_skipped, serve_refused, tool_runs,
    wait_for,
};

/// The Wasm artifact's media types, as `wkg oci push` writes them.
const WASM_CONFIG: &str = "application/vnd.wasm.config.v0+json";

/// A registry serving the distribution API on 127.0.0.1 with storage in a temporary
/// folder; stopped when dropped.
struct LocalRegistry {
    child: Child,
    dir: tempfile::TempDir,
    /// `127.0.0.1:PORT`, the registry's name in references.
    host: String,
}

impl LocalRegistry {
    /// Starts a registry, or returns `None` (after saying why) when the tools these
    /// tests need are missing outside CI.
    fn start(test: &str) -> Option<Self> {
        if let Some(missing) = ["docker-registry", "wkg"]
            .into_iter()
            .find(|tool| !tool_runs(tool))
        {
            let why = format!("`{missing}` is not installed (scripts/setup.sh installs it)");
            assert!(!in_ci(), "{test}: {why}");
            report_skipped(test, &why);
            return None;
        }
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
        Some(registry)
    }

    /// `oci://127.0.0.1:PORT/NAME`.
    fn reference(&self, name: &str) -> String {
        format!("oci://{}/{name}", self.host)
    }

    /// Pushes `component` as `NAME:TAG` with `wkg oci push`; returns the manifest digest.
    fn push(&self, name: &str, component: &Path) -> String {
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

    /// Pushes a container image (an OCI image config and a tar layer) as `NAME:TAG`,
    /// straight through the distribution API.
    async fn push_container_image(&self, name: &str, tag: &str) {
        let config =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let layer = b"not really a tarball";
        let config_digest = self.push_blob(name, config).await;
        let layer_digest = self.push_blob(name, layer).await;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": config.len(),
            },
            "layers": [{
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": layer_digest,
                "size": layer.len(),
            }],
        });
        let response = client()
            .put(format!("http://{}/v2/{name}/manifests/{tag}", self.host))
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(manifest.to_string())
            .send()
            .await
            .expect("PUT manifest");
        assert_eq!(response.status(), StatusCode::CREATED, "manifest push");
    }

    async fn push_blob(&self, name: &str, bytes: &[u8]) -> String {
        let digest = format!("sha256:{:x}", Sha256::digest(bytes));
        let http = client();
        let started = http
            .post(format!("http://{}/v2/{name}/blobs/uploads/", self.host))
            .send()
            .await
            .expect("start upload");
        assert_eq!(started.status(), StatusCode::ACCEPTED, "upload start");
        let location = started.headers()["location"].to_str().expect("location");
        let location = if location.starts_with('/') {
            format!("http://{}{location}", self.host)
        } else {
            location.to_owned()
        };
        let separator = if location.contains('?') { '&' } else { '?' };
        let finished = http
            .put(format!("{location}{separator}digest={digest}"))
            .body(bytes.to_vec())
            .send()
            .await
            .expect("finish upload");
        assert_eq!(finished.status(), StatusCode::CREATED, "upload finish");
        digest
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

fn sha256_of(path: &Path) -> String {
    format!("{:x}", Sha256::digest(std::fs::read(path).expect("read")))
}

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
    let Some(registry) = LocalRegistry::start("serves_a_component_pulled_by_tag_and_by_digest")
    else {
        return;
    };
    let hello_digest = registry.push("hello:v1", &guests().hello);
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

    let testbed_digest = registry.push("testbed:v1", Build::V1.file());
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
    let Some(registry) = LocalRegistry::start("refuses_to_start_on_what_it_cannot_pull") else {
        return;
    };
    let digest = registry.push("testbed:v1", Build::V1.file());
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
    let manifest = client()
        .get(format!("http://{host}/v2/testbed/manifests/{digest}"))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .expect("GET manifest")
        .bytes()
        .await
        .expect("manifest");
    let manifest: serde_json::Value = serde_json::from_slice(&manifest).expect("manifest JSON");
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
    let Some(registry) = LocalRegistry::start("sighup_pulls_the_tag_again") else {
        return;
    };
    registry.push("testbed:live", Build::V1.file());
    let live = registry.reference("testbed:live");
    let (server, admin) =
        start_with_admin(Path::new(&live), &["--insecure-registry", &registry.host]);
    assert_swapped_to(&server, Build::V1).await;
    server.assert_logged("generation 1 has sha256");

    let v2_digest = registry.push("testbed:live", Build::V2.file());
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
    let Some(registry) = LocalRegistry::start("the_admin_endpoint_swaps_to_a_new_reference") else {
        return;
    };
    registry.push("testbed:v1", Build::V1.file());
    let v2_digest = registry.push("testbed:v2", Build::V2.file());
    let (server, admin) = start_with_admin(
        Path::new(&registry.reference("testbed:v1")),
        &["--insecure-registry", &registry.host],
    );
    let put = |body: String| {
        client()
            .put(&admin)
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    let v2 = registry.reference("testbed:v2");
    let response = put(serde_json::json!({ "reference": v2 }).to_string())
        .await
        .expect("PUT reference");
    assert_eq!(response.status(), StatusCode::OK);
    let version = version_json(response).await;
    assert_eq!(version["generation"], 2);
    assert_eq!(version["origin"], format!("{v2}@{v2_digest}"));
    assert_swapped_to(&server, Build::V2).await;
    server.assert_logged("NewReference");

    // Not a reference, and a reference to nothing: refused, nothing changes.
    let response = put(r#"{"reference": "testbed.wasm"}"#.to_owned())
        .await
        .expect("PUT");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let absent = registry.reference("testbed:absent");
    let response = put(serde_json::json!({ "reference": absent }).to_string())
        .await
        .expect("PUT");
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let message = response.text().await.expect("body");
    assert!(
        message.contains("the old version keeps serving"),
        "{message}"
    );
    assert!(message.contains(&absent), "{message}");

    // SIGHUP pulls the reference the admin endpoint set, not the one the host started
    // with (nor the rejected one).
    registry.push("testbed:v2", Build::V1.file());
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
