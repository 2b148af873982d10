//! Key-value stores for guests: a real `redis-server` started, stopped and restarted by
//! the tests (the `kv` tier of `scripts/setup.sh` installs it), and the local SQLite
//! store; counters hammered by concurrent requests across worker processes, a Redis
//! outage in the middle of a load, data kept across a host restart, stores a component
//! may not open, and every limit.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::future::join_all;
use reqwest::StatusCode;

use crate::metrics::{metrics_url, sample, scrape};
use crate::test_ca::TestCa;
use crate::util::{
    Reply, TestServer, client, free_port, get, guests, send, serve_refused, tool_runs, wait_for,
};

/// The AUTH password of the tests' Redis.
const PASSWORD: &str = "kv-test-password";

/// A `redis-server` on a port of its own, with a password and no persistence, killed
/// when dropped.
struct Redis {
    child: Option<Child>,
    port: u16,
    /// Its certificate and key, and their CA's certificate, when it speaks TLS only.
    tls: Option<TestCa>,
}

impl Redis {
    /// Starts one; fails, saying how to install it, without `redis-server`.
    fn start() -> Self {
        Self::start_with(None)
    }

    /// Starts one that speaks only TLS, with a certificate for `127.0.0.1` signed by a
    /// CA of its own, whose certificate is [`Redis::ca_file`].
    fn start_tls() -> Self {
        Self::start_with(Some(TestCa::new()))
    }

    fn start_with(tls: Option<TestCa>) -> Self {
        assert!(
            tool_runs("redis-server"),
            "`redis-server` is not installed: `scripts/setup.sh kv` installs it \
             (`apt-get install redis-server` on Debian)"
        );
        let mut redis = Self {
            child: None,
            port: free_port(),
            tls,
        };
        redis.resume();
        redis
    }

    /// The PEM file of the CA that signed its certificate.
    fn ca_file(&self) -> PathBuf {
        self.tls.as_ref().expect("a TLS server").ca_file()
    }

    /// Where it listens, on which port: only TLS, or only plain TCP.
    fn listen_args(&self) -> Vec<String> {
        let port = self.port.to_string();
        let Some(tls) = &self.tls else {
            return vec!["--port".into(), port];
        };
        let file = |name: &str| tls.folder().join(name).display().to_string();
        vec![
            "--port".into(),
            "0".into(),
            "--tls-port".into(),
            port,
            "--tls-cert-file".into(),
            file("server.pem"),
            "--tls-key-file".into(),
            file("server.key"),
            "--tls-auth-clients".into(),
            "no".into(),
        ]
    }

    /// Starts it again on its port, empty, and waits until it answers.
    fn resume(&mut self) {
        let child = Command::new("redis-server")
            .args(self.listen_args())
            .args(["--bind", "127.0.0.1"])
            .args([
                "--requirepass",
                PASSWORD,
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let up = wait_for(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()
        });
        assert!(up.is_some(), "redis-server did not start on {}", self.port);
    }

    /// Kills it and waits until it is gone.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill redis-server");
            child.wait().expect("reap redis-server");
        }
    }

    /// Its URL, without the password.
    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Its URL with the password in it, as the host logs it.
    fn shown(&self) -> String {
        format!("redis://:***@127.0.0.1:{}", self.port)
    }

    /// `--kv-store NAME=URL` with the password in the URL.
    fn store_flag(&self, name: &str) -> String {
        format!("{name}=redis://:{PASSWORD}@127.0.0.1:{}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A folder holding a Spin application whose component is `source`, with `stores` as
/// its `key_value_stores`.
fn spin_app(source: &Path, stores: &str) -> tempfile::TempDir {
    let folder = tempfile::tempdir().expect("temporary folder");
    let manifest = format!(
        "spin_manifest_version = 2\n[application]\nname = \"kv\"\n\
         [[trigger.http]]\nroute = \"/...\"\ncomponent = \"c\"\n\
         [component.c]\nsource = {:?}\nkey_value_stores = {stores}\n",
        source.to_str().expect("utf-8 path")
    );
    std::fs::write(folder.path().join("spin.toml"), manifest).expect("write spin.toml");
    folder
}

fn manifest(folder: &tempfile::TempDir) -> PathBuf {
    folder.path().join("spin.toml")
}

/// `count` requests for `path`, `concurrency` at a time; their answers in order.
async fn hammer(server: &TestServer, path: &str, count: usize, concurrency: usize) -> Vec<Reply> {
    let client = client();
    let mut replies = Vec::with_capacity(count);
    for wave in 0..count.div_ceil(concurrency) {
        let size = concurrency.min(count - wave * concurrency);
        let requests = (0..size).map(|_| send(client.get(server.url(path))));
        replies.extend(join_all(requests).await);
    }
    replies
}

/// The numbers the guest answered, each reply checked to be a `200`.
fn counts(replies: &[Reply], strip: &str) -> BTreeSet<i64> {
    replies
        .iter()
        .map(|reply| {
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
            let number = reply.text().trim().trim_start_matches(strip);
            number
                .parse()
                .unwrap_or_else(|_| panic!("{:?}", reply.text()))
        })
        .collect()
}

#[tokio::test]
async fn concurrent_increments_against_redis_lose_nothing_across_workers() {
    let redis = Redis::start();
    for workers in ["1", "2"] {
        let store = redis.store_flag(&format!("w{workers}"));
        let flags = ["--kv-store", &store, "--workers", workers];
        let server = TestServer::start_with(&guests().kv_testbed, &flags);
        let path = format!("/increment?store=w{workers}&key=hits{workers}");
        let seen = counts(&hammer(&server, &path, 300, 30).await, "");
        // Every request got a different count, and together they are 1..=300. (Both
        // runs' stores are the same Redis database: a store name is no namespace.)
        assert_eq!(seen, (1..=300).collect(), "--workers {workers}");
        let path = format!("/cas?store=w{workers}&key=swapped{workers}");
        let seen = counts(&hammer(&server, &path, 60, 10).await, "");
        assert_eq!(
            seen,
            (1..=60).collect(),
            "compare-and-swap, --workers {workers}"
        );
    }

    // The example, served by a manifest whose `default` store is Redis.
    let app = spin_app(&guests().kv_counter, "[\"default\"]");
    let store = redis.store_flag("default");
    let server = TestServer::start_with(&manifest(&app), &["--kv-store", &store]);
    let seen = counts(&hammer(&server, "/", 200, 40).await, "Visit number ");
    assert_eq!(seen, (1..=200).collect());
    server.assert_logged(&format!(
        "key-value store `default`: Redis at {}",
        redis.shown()
    ));
    assert!(!server.log().contains(PASSWORD), "{}", server.log());
}

#[tokio::test]
async fn a_redis_restart_mid_load_fails_requests_then_recovers() {
    let mut redis = Redis::start();
    let secret = tempfile::NamedTempFile::new().expect("temporary file");
    std::fs::write(secret.path(), format!("{PASSWORD}\n")).expect("write the secret");
    let store = format!("default={}", redis.url());
    let password_file = secret.path().to_str().expect("utf-8 path");
    let flags = [
        "--kv-store",
        &store,
        "--kv-redis-password-file",
        password_file,
        "--kv-timeout",
        "1s",
        "--metrics-addr",
        "127.0.0.1:0",
    ];
    let server = TestServer::start_with(&guests().kv_testbed, &flags);
    let metrics = metrics_url(&server);
    assert_eq!(
        counts(&hammer(&server, "/increment", 20, 5).await, "").len(),
        20
    );

    redis.stop();
    for reply in hammer(&server, "/increment", 10, 5).await {
        assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(
            reply.text().starts_with("Error::Other(\"store `default`: "),
            "{}",
            reply.text()
        );
    }
    server.assert_logged("key-value `increment` in store `default` failed");
    let health = get(&server, "/.well-known/wasi-host/health").await;
    assert_eq!(health.status, StatusCode::OK, "the host stays up");
    let text = scrape(&metrics).await;
    let errors = r#"wasi_host_key_value_errors_total{store="default",operation="increment"}"#;
    assert!(sample(&text, errors) >= Some(10.0), "{text}");

    // Back, empty: the connection is remade, and counting starts again.
    redis.resume();
    let first = until_ok(&server, "/increment?key=after", Duration::from_secs(30)).await;
    assert_eq!(first.text(), "1");
    let seen = counts(&hammer(&server, "/increment?key=after", 40, 10).await, "");
    assert_eq!(seen, (2..=41).collect());
}

/// `GET path` again every 50 ms until it answers `200`; that answer.
async fn until_ok(server: &TestServer, path: &str, patience: Duration) -> Reply {
    let deadline = std::time::Instant::now() + patience;
    loop {
        let reply = get(server, path).await;
        if reply.status == StatusCode::OK {
            return reply;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no `200` for {path} within {patience:?}: {}\n{}",
            reply.text(),
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_local_store_persists_across_a_host_restart() {
    let app = spin_app(&guests().kv_counter, "[\"default\"]");
    let file = app.path().join(".spin/sqlite_key_value.db");
    for (run, visits) in [(1, 1..=3), (2, 4..=6)] {
        let mut server = TestServer::start(&manifest(&app));
        server.assert_logged("key-value store `default`: local to this instance");
        server.assert_logged(&file.display().to_string());
        let seen = counts(&hammer(&server, "/", 3, 1).await, "Visit number ");
        assert_eq!(seen, visits.collect(), "run {run}");
        server.signal("TERM");
        assert!(server.wait_exit(Duration::from_secs(10)).success());
    }
    assert!(file.is_file(), "beside the manifest, as `spin up` keeps it");

    // Elsewhere by flag, and shared by every worker process.
    let elsewhere = tempfile::tempdir().expect("temporary folder");
    let local = elsewhere.path().join("kv.db");
    let flags = ["--kv-local-file", local.to_str().unwrap(), "--workers", "2"];
    let server = TestServer::start_with(&manifest(&app), &flags);
    let seen = counts(&hammer(&server, "/", 100, 20).await, "Visit number ");
    assert_eq!(seen, (1..=100).collect());
    assert!(local.is_file());
}

#[tokio::test]
async fn a_store_the_component_does_not_list_is_denied() {
    let other = tempfile::tempdir().expect("temporary folder");
    let other_store = format!("other={}", other.path().join("other.db").display());
    let app = spin_app(&guests().kv_testbed, "[\"default\"]");
    let server = TestServer::start_with(&manifest(&app), &["--kv-store", &other_store]);
    let denied = get(&server, "/increment?store=other").await;
    assert_eq!(
        (denied.status, denied.text()),
        (StatusCode::INTERNAL_SERVER_ERROR, "Error::AccessDenied")
    );
    assert_eq!(
        get(&server, "/increment").await.text(),
        "1",
        "its own store opens"
    );

    // A single component may open every configured store, and no other.
    let server = TestServer::start_with(&guests().kv_testbed, &["--kv-store", &other_store]);
    assert_eq!(get(&server, "/increment?store=other").await.text(), "1");
    assert_eq!(
        get(&server, "/increment?store=nope").await.text(),
        "Error::AccessDenied"
    );

    // A manifest listing a store nobody configured does not start.
    let app = spin_app(&guests().kv_testbed, "[\"sessions\"]");
    let stderr = serve_refused(&manifest(&app), &[], &[]);
    assert!(
        stderr.contains("key-value store `sessions` is not configured"),
        "{stderr}"
    );
}

#[tokio::test]
async fn the_runtime_config_file_picks_each_stores_backend() {
    let redis = Redis::start();
    let app = spin_app(&guests().kv_testbed, "[\"default\", \"notes\"]");
    let config = app.path().join("runtime-config.toml");
    let url = format!("redis://:{PASSWORD}@127.0.0.1:{}", redis.port);
    std::fs::write(
        &config,
        format!(
            "[key_value_store.default]\ntype = \"redis\"\nurl = \"{url}\"\n\
             [key_value_store.notes]\ntype = \"spin\"\npath = \"data/notes.db\"\n"
        ),
    )
    .expect("write the runtime config");
    let flags = ["--runtime-config-file", config.to_str().unwrap()];
    let server = TestServer::start_with(&manifest(&app), &flags);
    assert_eq!(get(&server, "/increment").await.text(), "1");
    assert_eq!(get(&server, "/increment?store=notes").await.text(), "1");
    assert!(
        app.path().join("data/notes.db").is_file(),
        "relative to the file"
    );
    server.assert_logged(&format!(
        "key-value store `default`: Redis at {}",
        redis.shown()
    ));

    std::fs::write(
        &config,
        "[key_value_store.default]\ntype = \"azure_cosmos\"\n",
    )
    .unwrap();
    let stderr = serve_refused(&manifest(&app), &flags, &[]);
    assert!(stderr.contains("runtime-config.toml"), "{stderr}");
    assert!(stderr.contains("azure_cosmos"), "{stderr}");
}

#[tokio::test]
async fn every_wasi_keyvalue_operation_works_on_the_local_store() {
    let folder = tempfile::tempdir().expect("temporary folder");
    let local = folder.path().join("kv.db");
    let server = TestServer::start_with(
        &guests().kv_testbed,
        &["--kv-local-file", local.to_str().unwrap()],
    );
    let set = send(client().put(server.url("/set?key=greeting")).body("hello")).await;
    assert_eq!(set.text(), "set");
    assert_eq!(get(&server, "/get?key=greeting").await.text(), "hello");
    assert_eq!(get(&server, "/cas?key=n").await.text(), "1");
    assert_eq!(get(&server, "/increment?key=n").await.text(), "2");
    assert_eq!(get(&server, "/batch").await.text(), "a=1,b=2,c absent");
    assert_eq!(get(&server, "/keys").await.text(), "b\ngreeting\nn");
    assert_eq!(get(&server, "/delete?key=greeting").await.text(), "deleted");
    assert_eq!(get(&server, "/get?key=greeting").await.text(), "absent");
    assert_eq!(
        get(&server, "/increment?key=b").await.text(),
        "3",
        "b held `2`"
    );
    send(client().put(server.url("/set?key=word")).body("two")).await;
    let failed = get(&server, "/increment?key=word").await;
    assert!(
        failed.text().contains("not an integer"),
        "{}",
        failed.text()
    );
}

#[tokio::test]
async fn a_redis_store_over_tls_is_verified_against_the_ca_file() {
    let redis = Redis::start_tls();
    let store = format!("default=rediss://:{PASSWORD}@127.0.0.1:{}", redis.port);
    let ca_file = redis.ca_file();
    let server = TestServer::start_with(
        &guests().kv_testbed,
        &[
            "--kv-store",
            &store,
            "--kv-redis-ca-file",
            ca_file.to_str().unwrap(),
        ],
    );
    let set = send(client().put(server.url("/set?key=greeting")).body("hello")).await;
    assert_eq!(set.text(), "set");
    assert_eq!(get(&server, "/get?key=greeting").await.text(), "hello");

    // Without the CA, the server's certificate is not trusted: the guest gets an error
    // and the log says why.
    let untrusting = TestServer::start_with(&guests().kv_testbed, &["--kv-store", &store]);
    let refused = get(&untrusting, "/get?key=greeting").await;
    assert_ne!(refused.text(), "hello");
    untrusting.assert_logged("certificate");

    // A CA file that cannot be read stops the host at startup, naming it.
    let missing = ca_file.with_file_name("missing.pem");
    let stderr = serve_refused(
        &guests().kv_testbed,
        &[
            "--kv-store",
            &store,
            "--kv-redis-ca-file",
            missing.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        stderr.contains("cannot read the Redis CA file") && stderr.contains("missing.pem"),
        "{stderr}"
    );
}

#[tokio::test]
async fn key_value_limits_answer_the_guest_with_an_error() {
    let folder = tempfile::tempdir().expect("temporary folder");
    let local = folder.path().join("kv.db");
    let local = local.to_str().unwrap();
    let server = TestServer::start_with(&guests().kv_testbed, &["--kv-local-file", local]);
    // Spin's limits by default: 255-byte keys, 1 MiB values, and 1000 operations.
    let long_key = "k".repeat(256);
    let refused = get(&server, &format!("/get?key={long_key}")).await;
    assert!(
        refused.text().contains("a key is at most 255 bytes"),
        "{}",
        refused.text()
    );
    assert_eq!(
        get(&server, &format!("/get?key={}", &long_key[1..]))
            .await
            .text(),
        "absent"
    );
    let big = vec![b'v'; (1 << 20) + 1];
    let refused = send(client().put(server.url("/set?key=big")).body(big)).await;
    assert!(
        refused.text().contains("a value is at most 1048576 bytes"),
        "{}",
        refused.text()
    );
    let fits = send(
        client()
            .put(server.url("/set?key=big"))
            .body(vec![b'v'; 1 << 20]),
    )
    .await;
    assert_eq!(fits.text(), "set");
    assert_eq!(get(&server, "/ops?n=900").await.text(), "ok");
    let over = get(&server, "/ops?n=1000").await;
    assert!(
        over.text().starts_with("operation 1000 failed"),
        "{}",
        over.text()
    );

    let flags = [
        "--kv-local-file",
        local,
        "--kv-max-key-size",
        "300B",
        "--kv-max-value-size",
        "16B",
        "--kv-max-operations",
        "5",
    ];
    let server = TestServer::start_with(&guests().kv_testbed, &flags);
    assert_eq!(
        get(&server, &format!("/get?key={long_key}")).await.text(),
        "absent"
    );
    let refused = send(
        client()
            .put(server.url("/set?key=v"))
            .body("seventeen bytes!!"),
    )
    .await;
    assert!(
        refused.text().contains("--kv-max-value-size"),
        "{}",
        refused.text()
    );
    assert_eq!(get(&server, "/ops?n=4").await.text(), "ok");
    let over = get(&server, "/ops?n=5").await;
    assert!(
        over.text().contains("operation 5 failed"),
        "{}",
        over.text()
    );
    assert!(
        over.text().contains("--kv-max-operations"),
        "{}",
        over.text()
    );
    // The budget is the request's: the next one starts afresh.
    assert_eq!(get(&server, "/ops?n=4").await.text(), "ok");
}

/// The Spin 4 Python app (spin-sdk 5) with the `default` store, its variables given.
fn spin_python_app(component: &Path) -> tempfile::TempDir {
    let folder = spin_app(component, "[\"default\"]");
    let path = manifest(&folder);
    let text = std::fs::read_to_string(&path).expect("read spin.toml");
    let text = text.replace(
        "[[trigger.http]]",
        "[variables]\ngreeting = { default = \"hi\" }\n\
         upstream_url = { default = \"http://127.0.0.1:1\" }\n[[trigger.http]]",
    ) + "[component.c.variables]\ngreeting = \"{{ greeting }}\"\n\
         upstream_url = \"{{ upstream_url }}\"\n";
    std::fs::write(&path, text).expect("write spin.toml");
    folder
}

#[tokio::test]
async fn the_spin_python_app_counts_and_keeps_notes_in_redis() {
    let redis = Redis::start();
    let app = spin_python_app(crate::examples::spin_python());
    let store = redis.store_flag("default");
    let flags = ["--kv-store", &store, "--workers", "2"];
    let server = TestServer::start_with(&manifest(&app), &flags);
    // `wasi:keyvalue`'s atomic increment, across two worker processes.
    let seen = counts(&hammer(&server, "/visits", 120, 20).await, "Visit number ");
    assert_eq!(seen, (1..=120).collect());

    // `spin:key-value@3.0.0`: async functions, and the keys as a stream.
    for (key, note) in [("first", "one"), ("second", "two")] {
        let path = format!("/notes/{key}");
        let stored = send(client().put(server.url(&path)).body(note)).await;
        assert_eq!((stored.status, stored.text()), (StatusCode::OK, "stored"));
        assert_eq!(get(&server, &path).await.text(), note);
    }
    let missing = get(&server, "/notes/third").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(get(&server, "/notes").await.text(), "first\nsecond\nvisits");
}
