//! A container of the test image, started the way a platform would start it and removed
//! when dropped.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::image::{Image, podman};

/// Longest a container may take to answer its probe path; gVisor starts slowly.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// The OCI runtime a container runs under.
#[derive(Debug, Clone, Copy)]
pub enum Runtime {
    /// The ordinary runtime, as on GKE and Cloud Run's second generation.
    Runc,
    /// gVisor, the sandbox of Cloud Run's first generation.
    Runsc,
}

impl Runtime {
    fn podman_flags(self) -> &'static [&'static str] {
        match self {
            Self::Runc => &["--runtime", "runc"],
            // gVisor hands sockets to the host kernel instead of its own network stack,
            // which needs a network podman does not set up for it.
            Self::Runsc => &["--runtime", "runsc", "--runtime-flag", "network=host"],
        }
    }
}

/// A running container.
pub struct Container {
    name: String,
    /// The port the container was told to listen on with `$PORT`.
    pub port: u16,
}

impl Container {
    /// Starts `image` under `runtime` with a read-only root file system, no capabilities,
    /// as the image's own user, and `$PORT` set to a free port. It shares the host's
    /// network, so the tests reach it on loopback only.
    pub fn start(image: &Image, runtime: Runtime) -> Self {
        let port = free_port();
        // Tests run in parallel: each container gets a name of its own.
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "wasi-host-test-{}-{}-{}",
            std::process::id(),
            format!("{runtime:?}").to_lowercase(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        );
        podman(
            Command::new("podman")
                .args(["run", "--detach", "--name", &name])
                .args(runtime.podman_flags())
                .args([
                    "--network",
                    "host",
                    "--read-only",
                    "--read-only-tmpfs=false",
                ])
                .args(["--cap-drop", "all", "--security-opt", "no-new-privileges"])
                .args(["--env", &format!("PORT={port}")])
                .arg(&image.id),
        );
        Self { name, port }
    }

    /// Waits until `path` answers `200`, failing with the container's log if it stops or
    /// takes too long.
    pub fn wait_ready(&self, path: &str) {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Ok((200, _)) = self.get(path) {
                return;
            }
            assert!(
                self.inspect("{{.State.Running}}") == "true",
                "the container stopped before answering {path}"
            );
            assert!(
                Instant::now() < deadline,
                "{path} did not answer 200 within {STARTUP_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `GET path` over HTTP/1.0 (so the body ends with the connection): status and body.
    pub fn get(&self, path: &str) -> std::io::Result<(u16, String)> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {head:?}")))?;
        Ok((status, body.to_owned()))
    }

    /// `podman stop` (SIGTERM, then SIGKILL after the 10 s grace Cloud Run also gives);
    /// returns how long the container took to stop.
    pub fn stop(&self) -> Duration {
        let start = Instant::now();
        podman(Command::new("podman").args(["stop", "--time", "10", &self.name]));
        start.elapsed()
    }

    /// `podman inspect --format FORMAT` of the container.
    pub fn inspect(&self, format: &str) -> String {
        podman(Command::new("podman").args(["inspect", "--format", format, &self.name]))
            .trim()
            .to_owned()
    }

    /// What the container has logged so far.
    pub fn logs(&self) -> String {
        let output = Command::new("podman")
            .args(["logs", &self.name])
            .output()
            .expect("run podman logs");
        String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr)
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- {} log ---\n{}", self.name, self.logs());
        }
        let _ = Command::new("podman")
            .args(["rm", "--force", "--time", "0", &self.name])
            .output();
    }
}

/// A port nothing on the loopback interface listens on right now.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("bind a free port")
        .port()
}
