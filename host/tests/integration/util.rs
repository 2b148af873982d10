//! Test support: the guests built once per run, a `TestServer` that runs the real
//! `wasi-host` binary (or another server, such as `wasmtime serve`) on `127.0.0.1:0` and
//! reads the bound address from its log, one way to send a request and check its whole
//! answer ([`send`], [`get`], [`assert_get`]), and the answers every hello must give.

use std::io::{BufRead, BufReader, ErrorKind, Read};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use sha2::{Digest, Sha256};

/// How long a server may take from spawn to its `listening on` line.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);

/// Paths of the guest components, built for this test run.
pub struct Guests {
    /// The hello guest built with plain `cargo build --target wasm32-wasip2`.
    pub hello: PathBuf,
    /// The hello guest built with `cargo component build`.
    pub hello_component: PathBuf,
    /// The guest with one route per test behaviour; its `/build` answers `v1`.
    pub testbed: PathBuf,
    /// The same guest built with its `v2` feature: `/build` answers `v2`.
    pub testbed_v2: PathBuf,
    /// The testbed as a WASI 0.3 component (`wasi:http/service`).
    pub p3_testbed: PathBuf,
    /// A `wasi:cli/run` command: the wrong world.
    pub command: PathBuf,
    /// An HTTP handler that imports an interface no host provides.
    pub unsupported_import: PathBuf,
    /// The same handler importing Spin's SQLite interface instead.
    pub spin_import: PathBuf,
    /// A handler with one route per `wasi:keyvalue` operation.
    pub kv_testbed: PathBuf,
    /// The visit counter example (`examples/rust-kv-counter`).
    pub kv_counter: PathBuf,
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

/// Builds every guest the first time it is called; later calls reuse the result.
pub fn guests() -> &'static Guests {
    static GUESTS: OnceLock<Guests> = OnceLock::new();
    GUESTS.get_or_init(build_guests)
}

fn build_guests() -> Guests {
    let root = workspace();
    let target_dir = root.join("target").join("test-guests");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run_build(
        Command::new(&cargo)
            .current_dir(&root)
            .args(["build", "--release", "--target", "wasm32-wasip2"])
            .args([
                "-p",
                "hello",
                "-p",
                "testbed",
                "-p",
                "p3-testbed",
                "-p",
                "command",
            ])
            .args([
                "-p",
                "unsupported-import",
                "-p",
                "kv-testbed",
                "-p",
                "rust-kv-counter",
            ])
            .arg("--target-dir")
            .arg(&target_dir),
        "guests for wasm32-wasip2 (rustup target add wasm32-wasip2)",
    );
    let v2_dir = target_dir.join("v2");
    run_build(
        Command::new(&cargo)
            .current_dir(&root)
            .args(["build", "--release", "--target", "wasm32-wasip2"])
            .args(["-p", "testbed", "--features", "v2"])
            .args([
                "-p",
                "unsupported-import",
                "--features",
                "unsupported-import/spin",
            ])
            .arg("--target-dir")
            .arg(&v2_dir),
        "the guests' feature builds",
    );
    let component_dir = target_dir.join("cargo-component");
    run_build(
        Command::new(&cargo)
            .current_dir(&root)
            .args([
                "component",
                "build",
                "--release",
                "-p",
                "hello",
                "--target-dir",
            ])
            .arg(&component_dir),
        "the hello guest with cargo-component (scripts/test.sh installs it)",
    );
    let wasip2 = target_dir.join("wasm32-wasip2").join("release");
    Guests {
        hello: wasip2.join("hello.wasm"),
        hello_component: component_dir
            .join("wasm32-wasip1")
            .join("release")
            .join("hello.wasm"),
        testbed: wasip2.join("testbed.wasm"),
        testbed_v2: v2_dir.join("wasm32-wasip2/release/testbed.wasm"),
        p3_testbed: wasip2.join("p3_testbed.wasm"),
        command: wasip2.join("command.wasm"),
        unsupported_import: wasip2.join("unsupported_import.wasm"),
        spin_import: v2_dir.join("wasm32-wasip2/release/unsupported_import.wasm"),
        kv_testbed: wasip2.join("kv_testbed.wasm"),
        kv_counter: wasip2.join("rust_kv_counter.wasm"),
    }
}

/// Runs a build to completion; panics, naming `what`, if it cannot start or fails.
pub fn run_build(command: &mut Command, what: &str) {
    let status = command
        .status()
        .unwrap_or_else(|error| panic!("cannot start the build of {what}: {error}"));
    assert!(status.success(), "building {what} failed: {status}");
}

/// Host variables that change what `wasi-host` does; tests set them explicitly.
const PLATFORM_VARIABLES: [&str; 11] = [
    "K_SERVICE",
    "K_REVISION",
    "K_CONFIGURATION",
    "GOOGLE_CLOUD_PROJECT",
    "GCE_METADATA_HOST",
    "WASI_HOST_LOG_FORMAT",
    "WASI_HOST_ENV",
    "WASI_HOST_REGISTRY_USERNAME",
    "WASI_HOST_REGISTRY_PASSWORD",
    "WASI_HOST_REGISTRY_HOST",
    "WASI_HOST_REGISTRY_AUTH_FILE",
];

/// The `wasi-host` binary under test, in an environment without platform variables.
pub fn host_binary() -> Command {
    in_test_environment(Command::new(env!("CARGO_BIN_EXE_wasi-host")))
}

/// The `wasi-host` binary under test, as [`host_binary`], allowed at most `limit` open
/// files (run by util-linux's `prlimit`).
pub fn host_binary_with_open_file_limit(limit: u32) -> Command {
    let mut command = Command::new("prlimit");
    command
        .arg(format!("--nofile={limit}:{limit}"))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_wasi-host"));
    in_test_environment(command)
}

/// `command` (the host, or what starts it) in the environment tests run the host in:
/// without platform variables.
pub fn in_test_environment(mut command: Command) -> Command {
    // A backtrace per guest trap only slows the tests down.
    command.env_remove("RUST_BACKTRACE").env("RUST_LOG", "info");
    for name in PLATFORM_VARIABLES {
        command.env_remove(name);
    }
    command
}

/// A running server, `wasi-host serve` unless made with `spawn`, killed when dropped.
pub struct TestServer {
    child: Child,
    name: &'static str,
    /// The address it listens on.
    pub addr: SocketAddr,
    log: Arc<Mutex<String>>,
}

impl TestServer {
    /// Serves `component` with default settings.
    pub fn start(component: &Path) -> Self {
        Self::start_with(component, &[])
    }

    /// Serves `component` with extra `serve` flags.
    pub fn start_with(component: &Path, flags: &[&str]) -> Self {
        Self::start_with_env(component, flags, &[])
    }

    /// Serves `component` with extra `serve` flags and environment variables.
    pub fn start_with_env(component: &Path, flags: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_by(host_binary(), component, flags, env)
    }

    /// Serves `component` with `command`, which runs `wasi-host` (see
    /// [`host_binary`]), with extra `serve` flags and environment variables.
    pub fn start_by(
        mut command: Command,
        component: &Path,
        flags: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        command
            .arg("serve")
            .arg(component)
            .args(["--addr", "127.0.0.1:0"])
            .args(flags)
            .envs(env.iter().copied());
        Self::spawn(command, "wasi-host", "listening on http://")
    }

    /// Runs `command`, a server called `name` that logs `ready_marker` followed by its
    /// address (`127.0.0.1:PORT/`) once it listens, and waits for that line.
    pub fn spawn(mut command: Command, name: &'static str, ready_marker: &'static str) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {name}: {error}"));
        let log = Arc::new(Mutex::new(String::new()));
        let (addr_tx, addr_rx) = mpsc::channel();
        collect_lines(child.stdout.take().expect("stdout"), log.clone(), None);
        collect_lines(
            child.stderr.take().expect("stderr"),
            log.clone(),
            Some((ready_marker, addr_tx)),
        );
        let addr = match addr_rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "{name} did not report its address; its log:\n{}",
                    log.lock().unwrap()
                );
            }
        };
        Self {
            child,
            name,
            addr,
            log,
        }
    }

    /// `http://ADDR` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (a name such as `TERM`) to the server.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits up to `timeout` for the server to exit and returns its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let child = &mut self.child;
        let status = wait_for(timeout, || child.try_wait().expect("wait"));
        status.unwrap_or_else(|| {
            panic!(
                "{} did not exit within {timeout:?}; its log:\n{}",
                self.name,
                self.log()
            )
        })
    }

    /// Resident memory of the server process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmRSS:")
    }

    /// CPU time the server process has used so far.
    pub fn cpu_time(&self) -> Duration {
        cpu_time(self.pid())
    }

    /// Waits up to five seconds for a log line containing `needle` (the log is read by
    /// another thread, so a line can trail the response it belongs to).
    pub fn assert_logged(&self, needle: &str) {
        let found = wait_for(Duration::from_secs(5), || {
            self.log().contains(needle).then_some(())
        });
        assert!(
            found.is_some(),
            "expected {needle:?} in the log:\n{}",
            self.log()
        );
    }

    /// The word logged right after `marker` (once it is logged): the address of a side
    /// server, as in "serving metrics at http://127.0.0.1:PORT/metrics".
    pub fn logged_after(&self, marker: &str) -> String {
        self.assert_logged(marker);
        let log = self.log();
        log.split(marker)
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("nothing after {marker:?} in the log:\n{log}"))
            .to_owned()
    }

    /// Everything the server has logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- {} log ---\n{}", self.name, self.log());
        }
    }
}

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

fn collect_lines(
    stream: impl std::io::Read + Send + 'static,
    log: Arc<Mutex<String>>,
    addr_tx: Option<(&'static str, mpsc::Sender<SocketAddr>)>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if let Some((ready_marker, tx)) = &addr_tx
                && let Some(addr) = parse_address(&line, ready_marker)
            {
                let _ = tx.send(addr);
            }
            let mut log = log.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
}

fn parse_address(line: &str, ready_marker: &str) -> Option<SocketAddr> {
    let rest = line.split(ready_marker).nth(1)?;
    rest.split('/').next()?.parse().ok()
}

/// Runs `serve` on `component` with `flags` and `env`, expecting it to refuse to start:
/// checks that it failed without ever listening and returns its stderr.
pub fn serve_refused(component: &Path, flags: &[&str], env: &[(&str, &str)]) -> String {
    let component = component.to_str().expect("utf-8 path");
    let mut args = vec!["serve", component, "--addr", "127.0.0.1:0"];
    args.extend_from_slice(flags);
    let output = run_host_with_env(&args, env);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !output.status.success(),
        "{flags:?} {env:?} was accepted: {stderr}"
    );
    assert!(!stderr.contains("listening on"), "bound anyway: {stderr}");
    stderr
}

/// Runs `wasi-host` with `args` to completion (it must exit within a minute).
pub fn run_host(args: &[&str]) -> Output {
    run_host_with_env(args, &[])
}

/// Runs `wasi-host` with `args` and the extra environment variables `env` to completion
/// (it must exit within a minute).
pub fn run_host_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut child = host_binary()
        .envs(env.iter().copied())
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wasi-host");
    if wait_for(Duration::from_secs(60), || child.try_wait().expect("wait")).is_none() {
        let _ = child.kill();
        panic!("wasi-host {args:?} did not exit");
    }
    child.wait_with_output().expect("output")
}

/// Reads `stream` until the server closes it (or resets it) and returns all it sent, or
/// `None` if a read waited `patience` for nothing: the server held the connection open.
pub fn read_until_closed(stream: &mut TcpStream, patience: Duration) -> Option<Vec<u8>> {
    stream
        .set_read_timeout(Some(patience))
        .expect("set a read timeout");
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return Some(received),
            Ok(read) => received.extend_from_slice(&buffer[..read]),
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return None;
            }
            Err(_) => return Some(received),
        }
    }
}

/// A port free on 127.0.0.1 a moment ago, for a server that cannot bind port 0 itself.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

/// Calls `check` every 20 ms until it returns something or `timeout` has passed.
pub fn wait_for<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(found) = check() {
            return Some(found);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// CPU time process `pid` has used so far.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the parenthesised command name; utime and stime are the 12th and
    // 13th of them, in clock ticks (100 per second on Linux).
    let after_name = stat.rsplit_once(')').expect("stat format").1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    Duration::from_millis(ticks * 10)
}

/// A client that speaks HTTP/1.1 and keeps one connection alive.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// A server's whole answer to one request.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The body as text.
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("the body is UTF-8")
    }

    /// The value of header `name`, if the answer has it.
    pub fn header(&self, name: &str) -> Option<&str> {
        let value = self.headers.get(name)?;
        Some(value.to_str().expect("the header value is text"))
    }
}

/// Sends `request` and reads its whole answer; panics, naming the request, when either
/// fails.
pub async fn send(request: reqwest::RequestBuilder) -> Reply {
    let (http, request) = request.build_split();
    let request = request.expect("a well-formed request");
    let what = format!("{} {}", request.method(), request.url());
    let response = http
        .execute(request)
        .await
        .unwrap_or_else(|error| panic!("{what}: {error}"));
    let (status, headers) = (response.status(), response.headers().clone());
    let body = response
        .bytes()
        .await
        .unwrap_or_else(|error| panic!("{what}: reading the body: {error}"));
    Reply {
        status,
        headers,
        body,
    }
}

/// `GET path` from `server`, answered in full.
pub async fn get(server: &TestServer, path: &str) -> Reply {
    send(client().get(server.url(path))).await
}

/// Checks that `GET path` from `server` gets `status` with exactly `body`.
pub async fn assert_get(server: &TestServer, path: &str, status: StatusCode, body: &str) {
    let reply = get(server, path).await;
    assert_eq!((reply.status, reply.text()), (status, body), "GET {path}");
}

/// Checks that `server` still serves the testbed: a `POST /echo` comes back whole.
pub async fn assert_still_serving(server: &TestServer) {
    let reply = send(client().post(server.url("/echo")).body("alive")).await;
    assert_eq!((reply.status, reply.text()), (StatusCode::OK, "alive"));
}

/// `bytes` as a streamed body of `chunk`-byte pieces, with no declared length.
pub fn chunked_body(bytes: &[u8], chunk: usize) -> reqwest::Body {
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> = bytes
        .chunks(chunk)
        .map(|piece| Ok(piece.to_vec()))
        .collect();
    reqwest::Body::wrap_stream(futures_util::stream::iter(pieces))
}

/// The SHA-256 of `bytes`, in lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// The SHA-256 of the file at `path`, in lower-case hex.
pub fn sha256_of(path: &Path) -> String {
    sha256_hex(&std::fs::read(path).expect("read"))
}

/// What a server answered to one request: what the hello guests must agree on.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: String,
}

/// Sends `method path` to `server` and collects its answer.
pub async fn answer(server: &TestServer, method: &str, path: &str) -> Answer {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let reply = send(client().request(method, server.url(path))).await;
    Answer {
        status: reply.status.as_u16(),
        content_type: reply.header("content-type").map(str::to_owned),
        body: reply.text().to_owned(),
    }
}

/// The requests every hello guest is checked with, whatever built it, and the status
/// and body each must get (always as `text/plain; charset=utf-8`). The hello routes
/// `GET` only, so `HEAD /` is a `404` too, without a body.
pub const HELLO_EXCHANGES: &[(&str, &str, u16, &str)] = &[
    ("GET", "/", 200, "Hello, World!"),
    ("GET", "/?name=wasm", 200, "Hello, World!"),
    ("GET", "/nope", 404, "Not Found"),
    ("POST", "/", 404, "Not Found"),
    ("HEAD", "/", 404, ""),
];

/// Checks that `server` answers every request of `HELLO_EXCHANGES` as the hello must.
pub async fn assert_hello(server: &TestServer) {
    for &(method, path, status, body) in HELLO_EXCHANGES {
        let expected = Answer {
            status,
            content_type: Some("text/plain; charset=utf-8".to_owned()),
            body: body.to_owned(),
        };
        assert_eq!(
            answer(server, method, path).await,
            expected,
            "{method} {path}"
        );
    }
}

/// Whether `tool` runs (`tool --version` can be started).
pub fn tool_runs(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}
