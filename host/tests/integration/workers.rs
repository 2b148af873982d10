//! `--workers`: several serving processes on one port. Connections reach all of them,
//! the metrics are their sum, every swap reaches every worker, SIGTERM drains them all,
//! and losing one stops the host rather than leaving part of the port unanswered.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::metrics::{assert_sample, metrics_url, scrape};
use crate::swap::{Build, TOKEN, active_version, component_copy, put_component, start_with_admin};
use crate::util::{
    TestServer, cpu_time, guests, in_test_environment, send, serve_refused, sha256_of, wait_for,
};

/// A client that opens a new connection for every request, so the kernel spreads them
/// over the workers.
pub fn fresh_connections() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// The process id of worker 2, once it serves.
fn secondary_pid(server: &TestServer) -> u32 {
    server.assert_logged("worker 2 of 2 serving on http://");
    let pid = server.logged_after("started worker 2 of 2 (pid ");
    pid.trim_end_matches(')').parse().expect("worker 2's pid")
}

fn is_running(pid: u32) -> bool {
    std::fs::metadata(format!("/proc/{pid}")).is_ok()
}

/// Sends `count` requests for `/build`, each on a new connection, and checks each got
/// `build`.
pub async fn assert_all_served(server: &TestServer, build: &str, count: usize) {
    let http = fresh_connections();
    for _ in 0..count {
        let reply = send(http.get(server.url("/build"))).await;
        assert_eq!((reply.status, reply.text()), (StatusCode::OK, build));
    }
}

/// Established connections to local `port` whose sockets process `pid` holds: the
/// connections that worker accepted.
fn connections_held(pid: u32, port: u16) -> usize {
    sockets_held(pid, port, ESTABLISHED)
}

/// The states of `/proc/net/tcp` counted here.
const ESTABLISHED: &str = "01";
const LISTENING: &str = "0A";

/// Sockets on local `port` in `state` that process `pid` holds.
fn sockets_held(pid: u32, port: u16, state: &str) -> usize {
    let sockets: HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the worker's file descriptors")
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_str()?;
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_owned(),
            )
        })
        .collect();
    // Columns: slot, local address:port, remote address:port, state (01: established),
    // queues, timer, retransmits, uid, timeout, inode.
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    table
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .filter(|fields| {
            let local_port = fields[1].rsplit(':').next().expect("address:port");
            u16::from_str_radix(local_port, 16) == Ok(port)
                && fields[3] == state
                && sockets.contains(fields[9])
        })
        .count()
}

#[tokio::test]
async fn connections_reach_every_worker_and_the_metrics_add_up() {
    let server = TestServer::start_with(
        &guests().testbed,
        &[
            "--workers",
            "2",
            "--metrics-addr",
            "127.0.0.1:0",
            "--request-timeout",
            "300ms",
        ],
    );
    let secondary = secondary_pid(&server);
    let before = (server.cpu_time(), cpu_time(secondary));

    // Each looping guest burns its 300 ms on whichever worker accepted its connection.
    let http = fresh_connections();
    for _ in 0..8 {
        let pair = [
            http.get(server.url("/loop")).send(),
            http.get(server.url("/loop")).send(),
        ];
        for response in futures_util::future::join_all(pair).await {
            assert_eq!(response.expect("GET /loop").status(), 504);
        }
    }
    let busy = Duration::from_millis(100);
    assert!(server.cpu_time() - before.0 >= busy, "the primary served");
    assert!(cpu_time(secondary) - before.1 >= busy, "worker 2 served");

    for _ in 0..20 {
        assert_eq!(
            send(http.get(server.url("/echo"))).await.status,
            StatusCode::OK
        );
    }
    let metrics = metrics_url(&server);
    assert_sample(
        &metrics,
        "wasi_host_requests_total{status_class=\"2xx\"}",
        20.0,
    )
    .await;
    assert_sample(
        &metrics,
        "wasi_host_requests_total{status_class=\"5xx\"}",
        16.0,
    )
    .await;
    let summed = scrape(&metrics).await;
    assert_eq!(
        summed.matches("# TYPE wasi_host_requests counter").count(),
        1
    );
}

/// Asks the admin endpoint what the primary and each other worker serve, and checks
/// that all `workers` serve generation `generation` of the bytes whose SHA-256 is
/// `sha256`.
pub async fn assert_workers_serve(admin: &str, workers: usize, generation: u64, sha256: &str) {
    let version = active_version(admin).await;
    assert_eq!(version["generation"], generation, "{version}");
    assert_eq!(version["sha256"], sha256, "{version}");
    let others = version["workers"].as_array().expect("the other workers");
    assert_eq!(others.len(), workers - 1, "{version}");
    for (number, worker) in (2..).zip(others) {
        assert_eq!(worker["worker"], number, "{version}");
        assert_eq!(worker["generation"], generation, "{version}");
        assert_eq!(worker["sha256"], sha256, "{version}");
    }
}

#[tokio::test]
async fn every_swap_reaches_every_worker() {
    let (_dir, path) = component_copy();
    let (server, admin) = start_with_admin(&path, &["--workers", "2"]);
    secondary_pid(&server);
    assert_all_served(&server, "v1", 20).await;
    assert_workers_serve(&admin, 2, 1, &sha256_of(Build::V1.file())).await;

    let reply = put_component(&admin, Some(TOKEN), Build::V2.bytes()).await;
    assert_eq!(reply.status, StatusCode::OK);
    server.assert_logged("worker 2 follows: generation 2");
    assert_all_served(&server, "v2", 20).await;
    assert_workers_serve(&admin, 2, 2, &sha256_of(Build::V2.file())).await;

    std::fs::write(&path, Build::V1.bytes()).expect("replace component");
    server.signal("HUP");
    server.assert_logged("worker 2 follows: generation 3");
    assert_all_served(&server, "v1", 20).await;
    assert_workers_serve(&admin, 2, 3, &sha256_of(Build::V1.file())).await;

    // A version the primary rejects is never offered to the others.
    let reply = put_component(&admin, Some(TOKEN), b"\0asm\x01\0\0\0".to_vec()).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_all_served(&server, "v1", 20).await;
    let log = server.log();
    assert!(!log.contains("could not load"), "{log}");
    assert!(!log.contains("did not publish"), "{log}");
}

#[tokio::test]
async fn a_worker_listens_only_once_it_has_the_primarys_version() {
    let server = TestServer::start_with(&guests().testbed, &["--workers", "2"]);
    let pid = server.logged_after("started worker 2 of 2 (pid ");
    let secondary: u32 = pid.trim_end_matches(')').parse().expect("worker 2's pid");
    let port = server.addr.port();
    // Sampled from the moment worker 2 runs: until it says it serves, it has loaded
    // nothing, and a listening socket of its own would take a share of the connections
    // for it to answer only once it has.
    let mut early = 0;
    while !server.log().contains("worker 2 of 2 serving on") {
        assert_eq!(
            sockets_held(secondary, port, LISTENING),
            0,
            "worker 2 listens before it has a version: {}",
            server.log()
        );
        early += 1;
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(sockets_held(secondary, port, LISTENING) >= 1);
    eprintln!("{early} samples before worker 2 served");
    server.assert_logged("serving generation 1: ");
    server.assert_logged("as the primary does");
    assert_all_served(&server, "v1", 20).await;
}

#[tokio::test]
async fn wasi_0_3_components_are_served_by_every_worker() {
    let (server, admin) = start_with_admin(&guests().p3_testbed, &["--workers", "2"]);
    secondary_pid(&server);
    assert_workers_serve(&admin, 2, 1, &sha256_of(&guests().p3_testbed)).await;
    let http = fresh_connections();
    for _ in 0..20 {
        let reply = send(http.post(server.url("/echo")).body("ping")).await;
        assert_eq!((reply.status, reply.text()), (StatusCode::OK, "ping"));
    }
    assert!(!server.log().contains("ERROR"), "{}", server.log());
}

#[tokio::test]
async fn sigterm_drains_every_worker_and_exits_0() {
    let mut server = TestServer::start_with(
        &guests().testbed,
        &["--workers", "2", "--metrics-addr", "127.0.0.1:0"],
    );
    let secondary = secondary_pid(&server);
    let metrics = metrics_url(&server);
    let http = fresh_connections();
    // Slow requests, each on a new connection and each in flight (summed over both
    // workers) before the next, until worker 2 holds at least one.
    let mut slow = Vec::new();
    while slow.len() < 8 || connections_held(secondary, server.addr.port()) == 0 {
        assert!(
            slow.len() < 64,
            "the kernel gave worker 2 none of {} connections",
            slow.len()
        );
        slow.push(tokio::spawn(send(http.get(server.url("/sleep?ms=3000")))));
        assert_sample(&metrics, "wasi_host_requests_in_flight", slow.len() as f64).await;
    }
    server.signal("TERM");
    for request in slow {
        let reply = request.await.expect("task");
        assert_eq!((reply.status, reply.text()), (StatusCode::OK, "slept"));
    }
    assert!(server.wait_exit(Duration::from_secs(10)).success());
    assert!(
        wait_for(Duration::from_secs(5), || (!is_running(secondary))
            .then_some(()))
        .is_some(),
        "worker 2 outlived the host"
    );
}

#[tokio::test]
async fn the_concurrency_cap_and_queue_are_shared_out_over_the_workers() {
    // Two at once and two waiting, all told: each worker runs one and queues one, and
    // a request still waiting after 300 ms is turned away.
    let server = TestServer::start_with(
        &guests().testbed,
        &[
            "--workers",
            "2",
            "--max-concurrency",
            "2",
            "--max-queue",
            "2",
            "--queue-timeout",
            "300ms",
        ],
    );
    secondary_pid(&server);
    let http = fresh_connections();
    let tasks: Vec<_> = (0..12)
        .map(|_| tokio::spawn(send(http.get(server.url("/sleep?ms=1500")))))
        .collect();
    let (mut ok, mut busy) = (0, 0);
    for task in tasks {
        let reply = task.await.expect("task");
        match reply.status {
            StatusCode::OK => ok += 1,
            StatusCode::SERVICE_UNAVAILABLE => busy += 1,
            status => panic!("unexpected {status}: {}", reply.text()),
        }
    }
    // Two if the kernel gave each worker some of the connections, one if it gave them
    // all to one; never the four that two workers admitting two each would run.
    assert!((1..=2).contains(&ok), "{ok} ran at once");
    assert_eq!(ok + busy, 12);
}

/// Sends `signal` (a name such as `STOP`) to process `pid`.
fn signal_pid(pid: u32, signal: &str) {
    let sent = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill -{signal} {pid} failed");
}

#[tokio::test]
async fn a_worker_that_does_not_answer_fails_the_swap_in_time() {
    let (_dir, path) = component_copy();
    let (server, admin) =
        start_with_admin(&path, &["--workers", "2", "--worker-control-timeout", "1s"]);
    let secondary = secondary_pid(&server);
    signal_pid(secondary, "STOP");
    let started = Instant::now();
    let reply = put_component(&admin, Some(TOKEN), Build::V2.bytes()).await;
    let took = started.elapsed();
    signal_pid(secondary, "CONT");
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.text()
    );
    assert!(
        reply
            .text()
            .contains("worker 2 could not load generation 2: no answer within 1s"),
        "{}",
        reply.text()
    );
    assert!(took < Duration::from_secs(10), "the swap took {took:?}");
    assert_all_served(&server, "v1", 10).await;
    assert_workers_serve(&admin, 2, 1, &sha256_of(Build::V1.file())).await;
    // Once it answers again, the next swap reaches it.
    let reply = put_component(&admin, Some(TOKEN), Build::V2.bytes()).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_all_served(&server, "v2", 20).await;
    assert_workers_serve(&admin, 2, 2, &sha256_of(Build::V2.file())).await;
}

#[tokio::test]
async fn losing_a_worker_stops_the_host() {
    let mut server = TestServer::start_with(&guests().testbed, &["--workers", "2"]);
    let secondary = secondary_pid(&server);
    signal_pid(secondary, "KILL");
    let status = server.wait_exit(Duration::from_secs(15));
    assert!(!status.success(), "{status}");
    server.assert_logged("worker 2 exited (signal: 9 (SIGKILL)); stopping");
}

/// A cgroup of its own with a CPU limit of `quota_us` every 100 ms, on cgroup v1's `cpu`
/// controller or v2's, whichever this machine has; removed when dropped.
struct CpuLimit {
    folder: PathBuf,
}

impl CpuLimit {
    fn new(quota_us: u64) -> Self {
        let name = format!("wasi-host-test-{}-{quota_us}", std::process::id());
        let v1 = Path::new("/sys/fs/cgroup/cpu");
        let v2 = Path::new("/sys/fs/cgroup");
        let v2_has_cpu = std::fs::read_to_string(v2.join("cgroup.subtree_control"))
            .is_ok_and(|controllers| controllers.split_whitespace().any(|c| c == "cpu"));
        let (folder, files) = if v1.join("cpu.cfs_quota_us").exists() {
            let files = vec![
                ("cpu.cfs_period_us", "100000".to_owned()),
                ("cpu.cfs_quota_us", quota_us.to_string()),
            ];
            (v1.join(name), files)
        } else if v2_has_cpu {
            (
                v2.join(name),
                vec![("cpu.max", format!("{quota_us} 100000"))],
            )
        } else {
            panic!(
                "no cgroup CPU controller to make a cgroup in: run the tests as root, with \
                 cgroup v1's `cpu` mounted at /sys/fs/cgroup/cpu or cgroup v2 at \
                 /sys/fs/cgroup with `cpu` in cgroup.subtree_control"
            )
        };
        std::fs::create_dir(&folder)
            .unwrap_or_else(|error| panic!("cannot create {}: {error}", folder.display()));
        let limit = Self { folder };
        for (file, value) in files {
            std::fs::write(limit.folder.join(file), value).expect("set the CPU limit");
        }
        limit
    }

    /// Serves `component` with `flags` in this cgroup, from its first instruction.
    fn serve(&self, component: &Path, flags: &[&str]) -> TestServer {
        let mut command = in_test_environment(Command::new("sh"));
        command
            .args(["-c", "echo $$ > \"$0\" && exec \"$@\""])
            .arg(self.folder.join("cgroup.procs"))
            .args([env!("CARGO_BIN_EXE_wasi-host"), "serve"])
            .arg(component)
            .args(["--addr", "127.0.0.1:0"])
            .args(flags);
        TestServer::spawn(command, "wasi-host", "listening on http://")
    }
}

impl Drop for CpuLimit {
    fn drop(&mut self) {
        // Busy until its processes have exited.
        let removed = wait_for(Duration::from_secs(10), || {
            std::fs::remove_dir(&self.folder).ok()
        });
        if removed.is_none() {
            eprintln!("cannot remove the cgroup {}", self.folder.display());
        }
    }
}

#[test]
fn auto_starts_one_worker_per_cpu_of_the_cgroup_limit_rounded_up() {
    let available = std::thread::available_parallelism().map_or(1, usize::from);
    assert!(available >= 2, "this test needs two CPUs, not {available}");
    for (quota_us, workers, cpus) in [(150_000, 2, "1.50"), (50_000, 1, "0.50")] {
        let limit = CpuLimit::new(quota_us);
        let server = limit.serve(&guests().testbed, &["--workers", "auto"]);
        server.assert_logged(&format!(
            "{workers} serving process(es), one per CPU of the cgroup"
        ));
        server.assert_logged(&format!(
            "CPU limit of {cpus} CPUs ({quota_us} µs every 100000 µs), rounded up"
        ));
        if workers == 2 {
            server.assert_logged("worker 2 of 2 serving on");
        } else {
            assert!(!server.log().contains("started worker"), "{}", server.log());
        }
        drop(server);
    }
}

#[test]
fn the_worker_count_is_checked() {
    for (count, message) in [
        ("0", "at least one worker is needed"),
        ("many", "expected a number of workers or `auto`"),
    ] {
        let stderr = serve_refused(&guests().testbed, &["--workers", count], &[]);
        assert!(stderr.contains(message), "{count}: {stderr}");
    }
}
