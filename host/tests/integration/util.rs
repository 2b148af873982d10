//! Test support: the guests built once per run, and a `TestServer` that runs the real
//! `wasi-host` binary on `127.0.0.1:0` and reads the bound address from its log.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// How long a server may take from spawn to its `listening on` line.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);

/// Paths of the guest components, built for this test run.
pub struct Guests {
    /// The hello guest built with plain `cargo build --target wasm32-wasip2`.
    pub hello: PathBuf,
    /// The hello guest built with `cargo component build`.
    pub hello_component: PathBuf,
    /// The guest with one route per test behaviour.
    pub testbed: PathBuf,
    /// A `wasi:cli/run` command: the wrong world.
    pub command: PathBuf,
    /// An HTTP handler that imports an interface no host provides.
    pub unsupported_import: PathBuf,
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
            .args(["-p", "hello", "-p", "testbed", "-p", "command"])
            .args(["-p", "unsupported-import", "--target-dir"])
            .arg(&target_dir),
        "guests for wasm32-wasip2 (rustup target add wasm32-wasip2)",
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
        command: wasip2.join("command.wasm"),
        unsupported_import: wasip2.join("unsupported_import.wasm"),
    }
}

fn run_build(command: &mut Command, what: &str) {
    let status = command
        .status()
        .unwrap_or_else(|error| panic!("cannot run cargo to build {what}: {error}"));
    assert!(status.success(), "building {what} failed: {status}");
}

/// Host variables that change what `wasi-host` does; tests set them explicitly.
const PLATFORM_VARIABLES: [&str; 6] = [
    "K_SERVICE",
    "K_REVISION",
    "K_CONFIGURATION",
    "GOOGLE_CLOUD_PROJECT",
    "WASI_HOST_LOG_FORMAT",
    "WASI_HOST_ENV",
];

/// The `wasi-host` binary under test, in an environment without platform variables.
pub fn host_binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wasi-host"));
    // A backtrace per guest trap only slows the tests down.
    command.env_remove("RUST_BACKTRACE").env("RUST_LOG", "info");
    for name in PLATFORM_VARIABLES {
        command.env_remove(name);
    }
    command
}

/// A running `wasi-host serve`, killed when dropped.
pub struct TestServer {
    child: Child,
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
        Self::start_in_env(component, flags, &[])
    }

    /// Serves `component` with extra `serve` flags and host environment variables.
    pub fn start_in_env(component: &Path, flags: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = host_binary()
            .envs(env.iter().copied())
            .arg("serve")
            .arg(component)
            .args(["--addr", "127.0.0.1:0"])
            .args(flags)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn wasi-host");
        let log = Arc::new(Mutex::new(String::new()));
        let (addr_tx, addr_rx) = mpsc::channel();
        collect_lines(child.stdout.take().expect("stdout"), log.clone(), None);
        collect_lines(
            child.stderr.take().expect("stderr"),
            log.clone(),
            Some(addr_tx),
        );
        let addr = match addr_rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "wasi-host did not report its address; its log:\n{}",
                    log.lock().unwrap()
                );
            }
        };
        Self { child, addr, log }
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
                "wasi-host did not exit within {timeout:?}; its log:\n{}",
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
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).expect("stat");
        // Fields after the parenthesised command name; utime and stime are the 12th and
        // 13th of them, in clock ticks (100 per second on Linux).
        let after_name = stat.rsplit_once(')').expect("stat format").1;
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let ticks: u64 =
            fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
        Duration::from_millis(ticks * 10)
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
            eprintln!("--- wasi-host log ---\n{}", self.log());
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
    addr_tx: Option<mpsc::Sender<SocketAddr>>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if let Some(tx) = &addr_tx
                && let Some(addr) = parse_listening(&line)
            {
                let _ = tx.send(addr);
            }
            let mut log = log.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
}

fn parse_listening(line: &str) -> Option<SocketAddr> {
    let rest = line.split("listening on http://").nth(1)?;
    rest.split('/').next()?.parse().ok()
}

/// Runs `wasi-host` with `args` to completion (it must exit within a minute).
pub fn run_host(args: &[&str]) -> Output {
    run_host_in_env(args, &[])
}

/// Runs `wasi-host` with `args` and host environment variables to completion.
pub fn run_host_in_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut child = host_binary()
        .envs(env.iter().copied())
        .args(args)
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

/// A client that speaks HTTP/1.1 and keeps one connection alive.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}
