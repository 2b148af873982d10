//! Spin application manifests: a `spin.toml` with several components is served on its
//! routes, each component with its own environment, files and outbound rules; what
//! needs Spin itself is refused at startup by name; the hello guest's own `spin.toml`
//! serves the hello; and an application is swapped as a whole.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::StatusCode;

use crate::examples::spin_python;
use crate::outbound::{UPSTREAM_BODY, Upstream, UpstreamReply};
use crate::swap::{TOKEN, active_version, put_component, start_with_admin};
use crate::util::{
    TestServer, assert_hello, client, guests, run_host_with_env, send, serve_refused, wait_for,
    workspace,
};
use crate::workers::{assert_workers_serve, fresh_connections};

/// A folder holding a manifest and the files it names.
struct AppFolder {
    folder: tempfile::TempDir,
}

impl AppFolder {
    fn new(manifest: &str) -> Self {
        let folder = tempfile::tempdir().expect("temporary folder");
        let app = Self { folder };
        app.write("spin.toml", manifest);
        app
    }

    fn write(&self, path: &str, text: &str) {
        let path = self.folder.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn manifest(&self) -> PathBuf {
        self.folder.path().join("spin.toml")
    }
}

/// An application whose one component imports Spin's key-value interface.
fn key_value_app() -> AppFolder {
    let spin_import = quoted(&guests().spin_import);
    AppFolder::new(&format!(
        "spin_manifest_version = 2\n[application]\nname = \"a\"\n\
         [[trigger.http]]\nroute = \"/...\"\ncomponent = \"kv\"\n\
         [component.kv]\nsource = {spin_import}\n"
    ))
}

/// A TOML string holding `path`.
fn quoted(path: &Path) -> String {
    format!("{:?}", path.to_str().expect("utf-8 path"))
}

/// The shop: the hello at `/` exactly; `api` (testbed v1, with environment, files and
/// one allowed origin) under `/api/...` and at `/users/:id/...`; `fallback` (testbed
/// v2, with nothing) for every other path.
fn shop(allowed_origin: &str) -> AppFolder {
    let guests = guests();
    let manifest = format!(
        r#"
spin_manifest_version = 2

[application]
name = "shop"
version = "1.0.0"

[[trigger.http]]
route = "/"
component = "hello"

[[trigger.http]]
route = "/api/..."
component = "api"

[[trigger.http]]
route = "/users/:id/..."
component = "api"

[[trigger.http]]
route = "/..."
component = "fallback"

[component.hello]
source = {hello}

[component.api]
source = {testbed}
environment = {{ GREETING = "hi", MODE = "manifest" }}
files = ["static/*.txt", {{ source = "assets", destination = "/pictures" }}]
exclude_files = ["static/secret.txt"]
allowed_outbound_hosts = ["{allowed_origin}"]
[component.api.build]
command = "cargo build --release --target wasm32-wasip2"

[component.fallback]
source = {testbed_v2}
"#,
        hello = quoted(&guests.hello),
        testbed = quoted(&guests.testbed),
        testbed_v2 = quoted(&guests.testbed_v2),
    );
    let app = AppFolder::new(&manifest);
    app.write("static/a.txt", "static file");
    app.write("static/secret.txt", "excluded");
    app.write("assets/cat.txt", "a picture of a cat");
    app
}

/// The status, `x-testbed-build` header and body of `GET path`.
async fn get(server: &TestServer, path: &str) -> (StatusCode, String, String) {
    let reply = crate::util::get(server, path).await;
    let build = reply
        .header("x-testbed-build")
        .unwrap_or_default()
        .to_owned();
    (reply.status, build, reply.text().to_owned())
}

/// A loopback origin nothing listens on: connecting to it is refused at once.
fn closed_origin() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    format!("http://{}", listener.local_addr().unwrap())
}

#[tokio::test]
async fn a_manifest_with_three_components_routes_each_path_to_its_component() {
    let origin = closed_origin();
    let app = shop(&origin);
    let server = TestServer::start_with(&app.manifest(), &["--env", "MODE=operator"]);
    server.assert_logged(
        "application `shop`: / -> hello, /api/... -> api, /users/:id/... -> api, /... -> fallback",
    );

    let (status, _, body) = get(&server, "/").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "Hello, World!"));
    // Below a wildcard route the testbed routes on `spin-path-info`.
    assert_eq!(get(&server, "/api/build").await.2, "v1");
    assert_eq!(get(&server, "/build").await.2, "v2", "the `/...` fallback");
    assert_eq!(
        get(&server, "/api").await.1,
        "v1",
        "`/api/...` matches `/api`"
    );

    let reply = send(
        client()
            .get(server.url("/users/42/echo?x=1"))
            .header("spin-path-match-id", "forged")
            .header("spin-path-match-admin", "true"),
    )
    .await;
    let header = |name: &str| reply.header(name).expect(name).to_owned();
    assert_eq!(header("x-testbed-build"), "v1");
    assert_eq!(header("spin-path-match-id"), "42");
    assert!(
        reply.header("spin-path-match-admin").is_none(),
        "a client's spin-* headers never reach the component"
    );
    assert_eq!(header("spin-path-info"), "/echo");
    assert_eq!(header("spin-matched-route"), "/users/:id/...");
    assert_eq!(header("spin-component-route"), "/users/:id");
    assert_eq!(
        header("x-echo-path"),
        "/users/42/echo?x=1",
        "the full path reaches the guest"
    );
    assert!(header("spin-full-url").ends_with("/users/42/echo?x=1"));
}

#[tokio::test]
async fn each_component_has_its_own_environment_files_and_outbound_rules() {
    let origin = closed_origin();
    let app = shop(&origin);
    let server = TestServer::start_with(&app.manifest(), &["--env", "MODE=operator"]);
    server.assert_logged(&format!("component `api`: outbound allowed to {origin}"));
    server.assert_logged("component `fallback`: outbound denied");

    let env = get(&server, "/api/env").await.2;
    assert!(env.contains("GREETING=hi\n"), "{env}");
    assert!(
        env.contains("MODE=operator\n"),
        "--env wins over the manifest: {env}"
    );
    let env = get(&server, "/env").await.2;
    assert!(
        !env.contains("GREETING"),
        "the fallback has no environment: {env}"
    );

    let file = |path: &str| format!("/api/file?path={path}");
    assert_eq!(get(&server, &file("/static/a.txt")).await.2, "static file");
    assert_eq!(
        get(&server, &file("/pictures/cat.txt")).await.2,
        "a picture of a cat"
    );
    assert_eq!(
        get(&server, &file("/static/secret.txt")).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&server, &file("/spin.toml")).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&server, "/file?path=/static/a.txt").await.0,
        StatusCode::NOT_FOUND,
        "the fallback sees no files"
    );
    // The originals may change: a version sees the files it was loaded with.
    app.write("static/a.txt", "changed on disk");
    assert_eq!(get(&server, &file("/static/a.txt")).await.2, "static file");

    let (status, _, body) = get(&server, &format!("/api/fetch?url={origin}/")).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(
        body.contains("ConnectionRefused"),
        "allowed, so it connected: {body}"
    );
    let (status, _, body) = get(&server, &format!("/fetch?url={origin}/")).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(body.contains("HttpRequestDenied"), "{body}");
}

#[tokio::test]
async fn a_path_no_route_matches_gets_404_from_the_host() {
    let hello = quoted(&guests().hello);
    let app = AppFolder::new(&format!(
        "spin_manifest_version = 2\n[application]\nname = \"one\"\n\
         [[trigger.http]]\nroute = \"/hello\"\ncomponent = {{ source = {hello} }}\n"
    ));
    let server = TestServer::start(&app.manifest());
    let (status, _, body) = get(&server, "/other").await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::NOT_FOUND, "no route matches this path\n")
    );
    assert_eq!(get(&server, "/hello/more").await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        get(&server, "/hello").await.0,
        StatusCode::NOT_FOUND,
        "the hello's own 404"
    );
    assert_eq!(
        get(&server, "/.well-known/wasi-host/health").await.0,
        StatusCode::OK,
        "the probe path is the host's"
    );
}

#[test]
fn what_needs_spin_is_refused_at_startup_by_name() {
    let testbed = quoted(&guests().testbed);
    let manifest = |trigger: &str, component: &str| {
        format!(
            "spin_manifest_version = 2\n[application]\nname = \"a\"\n{trigger}\n\
             [component.c]\nsource = {testbed}\n{component}\n"
        )
    };
    for (text, named) in [
        (
            manifest(
                "[[trigger.redis]]\nchannel = \"orders\"\ncomponent = \"c\"",
                "",
            ),
            "`[[trigger.redis]]` triggers need Spin",
        ),
        (
            manifest(
                "[[trigger.http]]\nroute = \"/...\"\ncomponent = \"c\"",
                "key_value_stores = [\"default\"]",
            ),
            "component `c` uses key-value stores (`key_value_stores`)",
        ),
        (
            manifest(
                "[[trigger.http]]\nroute = \"/...\"\ncomponent = \"c\"\nexecutor = { type = \"wagi\" }",
                "",
            ),
            "executor",
        ),
        (
            "spin_manifest_version = \"1\"\nname = \"a\"\n".to_owned(),
            "version 1 manifest",
        ),
        (
            manifest(
                "[[trigger.http]]\nroute = \"/...\"\ncomponent = \"c\"\n\
                 [[trigger.http]]\nroute = \"/ping\"\n\
                 static_response = { status_code = 200, body = \"pong\" }",
                "",
            ),
            "route `/ping`: `static_response` is not supported",
        ),
        (
            manifest(
                "[[trigger.http]]\nroute = \"/...\"\ncomponent = \"c\"",
                "[component.c.dependencies]\n\"acme:lib/util\" = { path = \"lib.wasm\" }",
            ),
            "component `c` uses component dependencies (`dependencies`)",
        ),
        (
            manifest("[[trigger.http]]\nroute = \"/...\"\ncomponent = \"c\"", "").replace(
                &format!("source = {testbed}"),
                "source = { registry = \"ttl.sh\", package = \"acme:app\", version = \"1.0.0\" }",
            ),
            "component `c`: registry sources (`acme:app@1.0.0`) are not supported",
        ),
        (
            manifest("[[trigger.http]]\nroute = \"/...\"\ncomponent = \"c\"", "").replace(
                &format!("source = {testbed}"),
                "source = { url = \"https://example.com/c.wasm\", digest = \"sha256:00\" }",
            ),
            "component `c`: sources downloaded from a URL (`https://example.com/c.wasm`)",
        ),
    ] {
        let app = AppFolder::new(&text);
        let stderr = serve_refused(&app.manifest(), &[], &[]);
        assert!(stderr.contains(named), "{named}: {stderr}");
        assert!(stderr.contains("spin.toml"), "names the manifest: {stderr}");
    }

    let stderr = serve_refused(&key_value_app().manifest(), &["--strict-imports"], &[]);
    assert!(stderr.contains("component `kv`"), "{stderr}");
    assert!(stderr.contains("fermyon:spin/key-value@2.0.0"), "{stderr}");
    assert!(stderr.contains("does not implement"), "{stderr}");
    let stderr = serve_refused(&guests().spin_import, &["--strict-imports"], &[]);
    assert!(stderr.contains("does not implement"), "alone too: {stderr}");

    let stderr = serve_refused(
        &shop("http://127.0.0.1:1").manifest(),
        &["--allow-outbound", "https://example.com"],
        &[],
    );
    assert!(stderr.contains("allowed_outbound_hosts"), "{stderr}");
}

#[tokio::test]
async fn the_hello_guests_own_manifest_serves_the_hello() {
    let shipped =
        std::fs::read_to_string(workspace().join("guest/spin.toml")).expect("guest/spin.toml");
    // Spin builds the guest where the manifest points; the tests build it elsewhere.
    let source = r#"source = "../target/wasm32-wasip2/release/hello.wasm""#;
    assert!(shipped.contains(source), "{shipped}");
    let app =
        AppFolder::new(&shipped.replace(source, &format!("source = {}", quoted(&guests().hello))));
    let server = TestServer::start(&app.manifest());
    assert_hello(&server).await;
}

#[tokio::test]
async fn an_application_is_swapped_whole_and_not_by_upload() {
    let app = shop(&closed_origin());
    let (server, admin) = start_with_admin(&app.manifest(), &[]);
    assert_eq!(get(&server, "/api/build").await.2, "v1");

    let manifest = std::fs::read_to_string(app.manifest()).unwrap();
    let v2 = manifest.replacen(&quoted(&guests().testbed), &quoted(&guests().testbed_v2), 1);
    assert_ne!(v2, manifest);
    app.write("spin.toml", &v2);
    server.signal("HUP");
    let swapped = wait_for(Duration::from_secs(30), || {
        server.log().contains("swapped: generation 2").then_some(())
    });
    assert!(swapped.is_some(), "{}", server.log());
    assert_eq!(get(&server, "/api/build").await.2, "v2");
    assert_eq!(get(&server, "/").await.2, "Hello, World!");

    // An edit that breaks the application is rejected whole; the old one serves on.
    app.write(
        "spin.toml",
        &v2.replace(
            "route = \"/api/...\"",
            "route = \"/api/...\"\nexecutor = { type = \"wagi\" }",
        ),
    );
    server.signal("HUP");
    let rejected = wait_for(Duration::from_secs(30), || {
        server
            .log()
            .contains("rejected the new component")
            .then_some(())
    });
    assert!(rejected.is_some(), "{}", server.log());
    assert_eq!(get(&server, "/api/build").await.2, "v2");

    let testbed = std::fs::read(&guests().testbed).unwrap();
    let reply = put_component(&admin, Some(TOKEN), testbed).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(reply.text().contains("Spin application"));
}

/// Makes `static/environ.txt` of the shop a link to `/proc/self/environ`: a file each
/// process that reads it finds different (a secondary worker's names its number).
fn link_to_each_readers_environment(app: &AppFolder) {
    std::os::unix::fs::symlink(
        "/proc/self/environ",
        app.folder.path().join("static/environ.txt"),
    )
    .expect("symlink");
}

#[tokio::test]
async fn every_worker_serves_the_application_the_primary_read_or_none_changes() {
    let app = shop(&closed_origin());
    let (server, admin) = start_with_admin(&app.manifest(), &["--workers", "2"]);
    server.assert_logged("worker 2 of 2 serving on");
    let sha256 = active_version(&admin).await["sha256"]
        .as_str()
        .expect("the application's digest")
        .to_owned();
    assert_workers_serve(&admin, 2, 1, &sha256).await;
    let fresh = fresh_connections();
    for _ in 0..10 {
        let reply = send(fresh.get(server.url("/api/build"))).await;
        assert_eq!((reply.status, reply.text()), (StatusCode::OK, "v1"));
    }

    // A version worker 2 reads differently from the primary is served by none.
    link_to_each_readers_environment(&app);
    server.signal("HUP");
    let refused = wait_for(Duration::from_secs(30), || {
        server
            .log()
            .contains("rejected the new component")
            .then_some(())
    });
    assert!(refused.is_some(), "{}", server.log());
    server.assert_logged("worker 2 could not load generation 2");
    assert_workers_serve(&admin, 2, 1, &sha256).await;
    let reply = send(fresh.get(server.url("/api/build"))).await;
    assert_eq!((reply.status, reply.text()), (StatusCode::OK, "v1"));
}

#[test]
fn workers_that_cannot_serve_the_primarys_first_version_stop_the_host() {
    let app = shop(&closed_origin());
    link_to_each_readers_environment(&app);
    let manifest = app.manifest();
    let args = ["serve", manifest.to_str().unwrap(), "--addr", "127.0.0.1:0"];
    let output = run_host_with_env(&[&args[..], &["--workers", "2"]].concat(), &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("worker 2 could not load generation 1"),
        "{stderr}"
    );
    assert!(
        stderr.contains("the workers cannot serve the first version; stopping"),
        "{stderr}"
    );
}

#[tokio::test]
async fn an_unimplemented_spin_import_loads_and_a_call_gets_its_error() {
    let message =
        "`fermyon:spin/key-value@2.0.0#[static]store.open` is not implemented by this host";
    for server in [
        TestServer::start(&key_value_app().manifest()),
        TestServer::start(&guests().spin_import),
    ] {
        server.assert_logged("imports what this host does not implement");
        for _ in 0..2 {
            let response = client().get(server.url("/")).send().await.expect("GET /");
            assert_eq!(response.status(), StatusCode::OK);
            let body = response.text().await.expect("body");
            // The interface's own error, its `other(string)` case.
            assert_eq!(body, format!("open failed: Other({message:?})"));
        }
        // Logged once however often it is called.
        assert_eq!(
            server.log().matches("a guest called").count(),
            1,
            "{}",
            server.log()
        );
    }
}

/// A Spin application serving the Spin 4 Python app, its variables as the example's
/// manifest declares them, allowed to call `origin`.
fn spin_python_app(component: &Path, origin: &str) -> AppFolder {
    let source = quoted(component);
    AppFolder::new(&format!(
        "spin_manifest_version = 2\n[application]\nname = \"spin-python\"\n\
         [variables]\ngreeting = {{ default = \"Hello from Spin 4 Python!\" }}\n\
         upstream_url = {{ required = true }}\n\
         [[trigger.http]]\nroute = \"/...\"\ncomponent = \"py\"\n\
         [component.py]\nsource = {source}\nallowed_outbound_hosts = [\"{origin}\"]\n\
         [component.py.variables]\ngreeting = \"{{{{ greeting }}}}\"\n\
         upstream_url = \"{{{{ upstream_url }}}}/hello\"\n"
    ))
}

#[tokio::test]
async fn a_spin_4_sdk_app_reads_its_variables_from_the_environment_and_calls_out() {
    let component = spin_python();
    let upstream = Upstream::start(UpstreamReply::Hello).await;
    let app = spin_python_app(component, &upstream.origin());
    let stderr = serve_refused(&app.manifest(), &[], &[]);
    assert!(
        stderr.contains("`upstream_url` (set $SPIN_VARIABLE_UPSTREAM_URL)"),
        "{stderr}"
    );
    let origin = upstream.origin();
    let server = TestServer::start_with_env(
        &app.manifest(),
        &[],
        &[("SPIN_VARIABLE_UPSTREAM_URL", origin.as_str())],
    );
    server.assert_logged("wasi:http/service@0.3 (WASI 0.3)");
    let answer = |path: &'static str| {
        let url = server.url(path);
        async move {
            let response = client().get(url).send().await.expect("GET");
            (response.status(), response.text().await.expect("body"))
        }
    };
    assert_eq!(
        answer("/").await,
        (StatusCode::OK, "Hello from Spin 4 Python!".into())
    );
    assert_eq!(
        answer("/upstream").await,
        (StatusCode::OK, UPSTREAM_BODY.into())
    );
    assert_eq!(answer("/nope").await.0, StatusCode::NOT_FOUND);
    let greeted = TestServer::start_with_env(
        &app.manifest(),
        &[],
        &[
            ("SPIN_VARIABLE_UPSTREAM_URL", origin.as_str()),
            ("SPIN_VARIABLE_GREETING", "Hello from the environment"),
        ],
    );
    let response = client().get(greeted.url("/")).send().await.expect("GET /");
    assert_eq!(
        response.text().await.expect("body"),
        "Hello from the environment"
    );
}
