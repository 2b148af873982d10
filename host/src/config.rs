//! The command line: every flag also reads an environment variable, so the same image
//! is configured on Cloud Run (env) and on a laptop (flags) alike.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail, ensure};
use bytesize::ByteSize;
use clap::{Args, Parser, Subcommand};

use crate::admin::{ADMIN_TOKEN_ENV, MIN_TOKEN_LENGTH};
use crate::admission::AdmissionLimits;
use crate::app::AppSource;
use crate::guest_env::GuestEnv;
use crate::limits::{ClientLimits, InstanceLimits, OutboundLimits};
use crate::outbound::{OutboundConfig, OutboundPattern, ResolveOverride};
use crate::registry::{PASSWORD_ENV, RegistryConfig, USERNAME_ENV};
use crate::telemetry::LogFormat;
use crate::workers::{SecondaryRole, WorkerCount};

/// Port used when neither `--addr` nor `$PORT` is given (Cloud Run's default too).
pub const DEFAULT_PORT: u16 = 8080;

/// Host-owned path answering startup and liveness probes. It sits under `/.well-known/`
/// where no application route lives, and does not end in `z`: Cloud Run reserves some
/// such paths (`/healthz`).
pub const DEFAULT_HEALTH_PATH: &str = "/.well-known/wasi-host/health";

/// Default request deadline: Cloud Run's default request timeout.
pub const DEFAULT_REQUEST_TIMEOUT: &str = "300s";

/// Default drain time on SIGTERM: under Cloud Run's 10 s between SIGTERM and SIGKILL.
pub const DEFAULT_SHUTDOWN_TIMEOUT: &str = "8s";

/// Where the Google Cloud project id is found (Cloud Run does not set it; the deployment
/// does). Log entries name their trace as `projects/PROJECT/traces/TRACE` with it.
pub const PROJECT_VARIABLE: &str = "GOOGLE_CLOUD_PROJECT";

/// Ports Knative's queue-proxy and its sidecars use inside a Cloud Run or Knative pod;
/// a server of ours must not take them.
pub const KNATIVE_RESERVED_PORTS: [u16; 6] = [8008, 8012, 8013, 8022, 9090, 9091];

/// Largest `--max-memory`: a 32-bit linear memory cannot grow past 4 GiB.
const MAX_MEMORY_CAP: u64 = 4 << 30;

/// Default concurrency cap: Cloud Run's default `containerConcurrency`.
pub const DEFAULT_MAX_CONCURRENCY: u32 = 80;

/// Default connect timeout of a guest's outbound request (DNS, TCP and TLS).
pub const DEFAULT_OUTBOUND_CONNECT_TIMEOUT: &str = "10s";

/// Default wait for an outbound response's head.
pub const DEFAULT_OUTBOUND_FIRST_BYTE_TIMEOUT: &str = "60s";

/// Default limit on one outbound request, response body included.
pub const DEFAULT_OUTBOUND_TOTAL_TIMEOUT: &str = "120s";

/// Default largest outbound response body.
pub const DEFAULT_OUTBOUND_MAX_RESPONSE_BODY: &str = "64MiB";

/// A Cloud Run-ready host for WebAssembly HTTP components.
#[derive(Debug, Parser)]
#[command(name = "wasi-host", version, about, long_about = None)]
pub struct Cli {
    /// The subcommand to run.
    #[command(subcommand)]
    pub command: Command,

    /// How logs are written to stderr: `text` for people, `json` for one Cloud Logging
    /// entry per line, `auto` for JSON on Cloud Run (where `K_SERVICE` is set).
    #[arg(long, global = true, env = "WASI_HOST_LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,
}

/// What `wasi-host` can do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve a wasi:http/proxy component over HTTP, a fresh instance per request.
    Serve(Box<ServeArgs>),
    /// Compile a component ahead of time into a `.cwasm` that `serve` loads in
    /// milliseconds. The file is tied to this build of wasi-host: a different version
    /// refuses it.
    Compile(CompileArgs),
}

/// Flags of `wasi-host compile`.
#[derive(Debug, Args)]
pub struct CompileArgs {
    /// The component to compile (`.wasm`).
    #[arg(value_name = "COMPONENT")]
    pub component: PathBuf,

    /// Where to write the precompiled component. Default: beside COMPONENT, as `.cwasm`,
    /// where `serve COMPONENT` finds it.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Flags of `wasi-host serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The component to serve: a `.wasm` exporting `wasi:http/incoming-handler`, or a
    /// `.cwasm` from `wasi-host compile`. A `.cwasm` beside a `.wasm`, at least as new,
    /// is loaded instead of compiling. Or a Spin application: its `spin.toml` (or the
    /// folder holding it), whose components are served on its routes. Or a component in
    /// an OCI registry, as `wkg oci push` stores it: `oci://REGISTRY/REPOSITORY:TAG`, or
    /// `@sha256:DIGEST` after the repository or the tag to pin the manifest; it is
    /// pulled at startup and again on SIGHUP.
    #[arg(value_name = "COMPONENT", env = "WASI_HOST_COMPONENT")]
    pub component: AppSource,

    /// Port to listen on, on all interfaces. Cloud Run sets `$PORT`.
    #[arg(long, env = "PORT", default_value_t = DEFAULT_PORT)]
    pub port: u16,

    /// Full socket address to listen on; overrides `--port` (e.g. `127.0.0.1:0`).
    #[arg(long, value_name = "ADDR", env = "WASI_HOST_ADDR")]
    pub addr: Option<SocketAddr>,

    /// Longest a request may run; a guest still running then is interrupted and, if it
    /// has not answered yet, the client gets `504`. Cloud Run's default is 300s.
    #[arg(long, env = "WASI_HOST_REQUEST_TIMEOUT", default_value = DEFAULT_REQUEST_TIMEOUT, value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,

    /// How long SIGTERM waits for in-flight requests before exiting; keep it under the
    /// platform's grace period (Cloud Run: 10s).
    #[arg(long, env = "WASI_HOST_SHUTDOWN_TIMEOUT", default_value = DEFAULT_SHUTDOWN_TIMEOUT, value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,

    /// Requests that run at once; more wait in the queue. Match Cloud Run's
    /// `containerConcurrency` (default 80).
    #[arg(long, env = "WASI_HOST_MAX_CONCURRENCY", default_value_t = DEFAULT_MAX_CONCURRENCY)]
    pub max_concurrency: u32,

    /// Requests that may wait for a free slot; beyond this they get `503` at once.
    /// Default: the same as `--max-concurrency`.
    #[arg(long, env = "WASI_HOST_MAX_QUEUE")]
    pub max_queue: Option<u32>,

    /// Serving processes, each with one thread, sharing the port: a number, or `auto`
    /// for one per CPU. Guests in separate processes never slow each other down with
    /// TLB shootdowns, which matters most for large guests (CPython) on several cores.
    /// `--max-concurrency` and `--max-queue` are shared out among them; the first
    /// process serves the admin and metrics endpoints for all.
    #[arg(long, env = "WASI_HOST_WORKERS", default_value = "1")]
    pub workers: WorkerCount,

    /// Longest a request waits in the queue before it gets `503` with `Retry-After`.
    #[arg(long, env = "WASI_HOST_QUEUE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub queue_timeout: Duration,

    /// Largest linear memory one guest instance may grow to; growing past it fails
    /// inside the guest.
    #[arg(long, env = "WASI_HOST_MAX_MEMORY", default_value = "128MiB")]
    pub max_memory: ByteSize,

    /// Largest table one guest instance may have, in elements.
    #[arg(long, env = "WASI_HOST_MAX_TABLE_ELEMENTS", default_value_t = 20_000)]
    pub max_table_elements: usize,

    /// Most host resources (streams, fields, pollables, ...) one request's guest may
    /// hold at once.
    #[arg(long, env = "WASI_HOST_MAX_RESOURCES", default_value_t = 10_000)]
    pub max_resources: usize,

    /// Largest request body; a larger one gets `413` (Cloud Run's HTTP/1 limit: 32 MiB).
    #[arg(long, env = "WASI_HOST_MAX_BODY_SIZE", default_value = "32MiB")]
    pub max_body_size: ByteSize,

    /// Largest request header block; a larger one gets `431`.
    #[arg(long, env = "WASI_HOST_MAX_HEADER_SIZE", default_value = "64KiB")]
    pub max_header_size: ByteSize,

    /// Longest a client may take to send a request's headers (slowloris defence). It also
    /// closes HTTP/1 keep-alive connections idle for that long.
    #[arg(long, env = "WASI_HOST_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_read_timeout: Duration,

    /// Path the host answers itself with `200` for startup and liveness probes; it never
    /// reaches the guest. An empty value turns it off.
    #[arg(long, env = "WASI_HOST_HEALTH_PATH", default_value = DEFAULT_HEALTH_PATH)]
    pub health_path: String,

    /// Lets guests call origins matching PATTERN: `SCHEME://HOST[:PORT]`, where SCHEME is
    /// `http`, `https` or `*`, HOST a name, an address, `*.domain` or `*`, and PORT a
    /// number or `*` (default: the scheme's). Repeatable; the variable takes a
    /// comma-separated list. Without it guests reach nothing. Private, loopback and
    /// link-local addresses (such as the metadata server) need a pattern that names the
    /// host exactly.
    #[arg(
        long,
        value_name = "PATTERN",
        env = "WASI_HOST_ALLOW_OUTBOUND",
        value_delimiter = ','
    )]
    pub allow_outbound: Vec<OutboundPattern>,

    /// Resolves HOST to ADDR for guests' outbound requests without asking DNS, like
    /// curl's `--resolve` (`api.internal:10.0.0.7`). Repeatable; the variable takes a
    /// comma-separated list. The address rules still apply.
    #[arg(
        long,
        value_name = "HOST:ADDR",
        env = "WASI_HOST_OUTBOUND_RESOLVE",
        value_delimiter = ','
    )]
    pub outbound_resolve: Vec<ResolveOverride>,

    /// Longest an outbound request may take to resolve, connect and finish the TLS
    /// handshake. A guest may ask for less.
    #[arg(long, env = "WASI_HOST_OUTBOUND_CONNECT_TIMEOUT", default_value = DEFAULT_OUTBOUND_CONNECT_TIMEOUT, value_parser = humantime::parse_duration)]
    pub outbound_connect_timeout: Duration,

    /// Longest an outbound request waits for the response head, counted once its
    /// connection is ready. A guest may ask for less.
    #[arg(long, env = "WASI_HOST_OUTBOUND_FIRST_BYTE_TIMEOUT", default_value = DEFAULT_OUTBOUND_FIRST_BYTE_TIMEOUT, value_parser = humantime::parse_duration)]
    pub outbound_first_byte_timeout: Duration,

    /// Longest one outbound request may take, response body included; never past the
    /// incoming request's own deadline.
    #[arg(long, env = "WASI_HOST_OUTBOUND_TOTAL_TIMEOUT", default_value = DEFAULT_OUTBOUND_TOTAL_TIMEOUT, value_parser = humantime::parse_duration)]
    pub outbound_total_timeout: Duration,

    /// Largest outbound response body a guest may read; past it the body fails.
    #[arg(long, env = "WASI_HOST_OUTBOUND_MAX_RESPONSE_BODY", default_value = DEFAULT_OUTBOUND_MAX_RESPONSE_BODY)]
    pub outbound_max_response_body: ByteSize,

    /// Reload COMPONENT when its file changes (written in place, renamed over, or
    /// swapped by a volume update). A file that fails to load is rejected and the
    /// running version keeps serving. SIGHUP reloads it too, with or without this flag.
    /// Not for registry references: send SIGHUP to pull those again.
    #[arg(long, env = "WASI_HOST_WATCH")]
    pub watch: bool,

    /// Pull from the registry HOST[:PORT] over plain HTTP; every other registry is
    /// reached over HTTPS. Repeatable; the variable takes a comma-separated list. For a
    /// registry on a trusted network only. Credentials, if the registry needs any, come
    /// from `$WASI_HOST_REGISTRY_USERNAME` and `$WASI_HOST_REGISTRY_PASSWORD` (on Artifact
    /// Registry: `oauth2accesstoken` and an access token).
    #[arg(
        long,
        value_name = "HOST[:PORT]",
        env = "WASI_HOST_INSECURE_REGISTRY",
        value_delimiter = ','
    )]
    pub insecure_registry: Vec<String>,

    /// Largest component pulled from a registry; a larger one is refused before it is
    /// downloaded.
    #[arg(long, env = "WASI_HOST_MAX_PULL_SIZE", default_value = "64MiB")]
    pub max_pull_size: ByteSize,

    /// Serve the admin endpoint on this address (off by default): `GET /component`
    /// shows the active version, `PUT /component` swaps in the `.wasm` sent, or pulls
    /// the reference sent as `{"reference": "oci://..."}` (`Content-Type:
    /// application/json`), which SIGHUP then pulls again. Every
    /// request needs `Authorization: Bearer TOKEN`, with TOKEN (16 characters or more)
    /// taken from `$WASI_HOST_ADMIN_TOKEN`. Keep it off the public network.
    #[arg(long, value_name = "ADDR", env = "WASI_HOST_ADMIN_ADDR")]
    pub admin_addr: Option<SocketAddr>,

    /// Largest component the admin endpoint accepts; a larger upload gets `413`.
    #[arg(long, env = "WASI_HOST_ADMIN_MAX_UPLOAD", default_value = "64MiB")]
    pub admin_max_upload: ByteSize,

    /// A variable for the guest's environment, `KEY=VALUE`; repeat the flag for more.
    /// In `WASI_HOST_ENV`, one `KEY=VALUE` per line. Besides these the guest sees only
    /// `K_SERVICE`, `K_REVISION` and `K_CONFIGURATION`, when the host has them.
    #[arg(
        long = "env",
        value_name = "KEY=VALUE",
        env = "WASI_HOST_ENV",
        value_delimiter = '\n'
    )]
    pub env: Vec<String>,

    /// Address to serve Prometheus metrics on, at `/metrics` (e.g. `0.0.0.0:9464`); off
    /// unless set. Knative's reserved ports (8008, 8012, 8013, 8022, 9090, 9091) are
    /// refused.
    #[arg(long, value_name = "ADDR", env = "WASI_HOST_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// Log one entry per request (with Cloud Logging's `httpRequest` in JSON mode). Off
    /// by default: Cloud Run and most load balancers keep a request log of their own,
    /// and a line per request costs throughput.
    #[arg(long, env = "WASI_HOST_ACCESS_LOG")]
    pub access_log: bool,
}

/// The validated settings `serve` runs with.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The component or application to serve.
    pub source: AppSource,
    /// Where to listen.
    pub addr: SocketAddr,
    /// Longest a request may run.
    pub request_timeout: Duration,
    /// Longest the drain after SIGTERM may take.
    pub shutdown_timeout: Duration,
    /// What one guest instance may use.
    pub instance: InstanceLimits,
    /// How many requests run and wait.
    pub admission: AdmissionLimits,
    /// What a client may send.
    pub client: ClientLimits,
    /// The probe path, if any.
    pub health_path: Option<String>,
    /// What every guest finds in its environment.
    pub guest_env: GuestEnv,
    /// The Google Cloud project that log entries name traces in, if known.
    pub trace_project: Option<String>,
    /// Where to serve metrics, if anywhere.
    pub metrics_addr: Option<SocketAddr>,
    /// Whether to log one entry per request.
    pub access_log: bool,
    /// What guests may reach.
    pub outbound: OutboundConfig,
    /// Whether to reload the component when its file changes.
    pub watch: bool,
    /// How to reach registries.
    pub registry: RegistryConfig,
    /// The admin endpoint, if enabled.
    pub admin: Option<AdminConfig>,
    /// How many serving processes there are.
    pub workers: u32,
    /// Set when this process is a secondary worker, started by the primary.
    pub secondary: Option<SecondaryRole>,
}

/// The settings of the admin endpoint.
#[derive(Clone)]
pub struct AdminConfig {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The bearer token every request must carry.
    pub token: String,
    /// Largest upload, in bytes.
    pub max_upload: u64,
}

// The token stays out of debug output.
impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig")
            .field("addr", &self.addr)
            .field("max_upload", &self.max_upload)
            .finish_non_exhaustive()
    }
}

/// The port of `addr`, or 0 when there is none.
fn port_or_zero(addr: Option<SocketAddr>) -> u16 {
    addr.map_or(0, |addr| addr.port())
}

impl ServeArgs {
    /// Checks the flags against each other and resolves defaults.
    pub fn into_config(self) -> Result<ServeConfig> {
        ensure!(
            self.max_concurrency > 0,
            "--max-concurrency must be at least 1"
        );
        ensure!(
            (64 * 1024..=MAX_MEMORY_CAP).contains(&self.max_memory.as_u64()),
            "--max-memory must be between 64KiB (one wasm page) and 4GiB (the 32-bit address space)"
        );
        ensure!(
            self.max_header_size.as_u64() >= 8192,
            "--max-header-size must be at least 8KiB"
        );
        ensure!(
            self.health_path.is_empty() || self.health_path.starts_with('/'),
            "--health-path must start with `/`"
        );
        for (timeout, flag) in [
            (self.outbound_connect_timeout, "--outbound-connect-timeout"),
            (
                self.outbound_first_byte_timeout,
                "--outbound-first-byte-timeout",
            ),
            (self.outbound_total_timeout, "--outbound-total-timeout"),
        ] {
            ensure!(!timeout.is_zero(), "{flag} must be more than zero");
        }
        ensure!(
            !self.watch || self.component.file().is_some(),
            "--watch needs a component file, and `{}` is a registry reference; send SIGHUP \
             to pull it again",
            self.component
        );
        let admin = match self.admin_addr {
            Some(addr) => Some(AdminConfig {
                addr,
                token: admin_token()?,
                max_upload: self.admin_max_upload.as_u64(),
            }),
            None => None,
        };
        ensure!(
            !matches!(self.component, AppSource::Manifest(_)) || self.allow_outbound.is_empty(),
            "--allow-outbound does not apply to a Spin application: each component's \
             `allowed_outbound_hosts` in the manifest says what it may reach"
        );
        let secondary = SecondaryRole::from_env()?;
        let addr = self
            .addr
            .unwrap_or_else(|| SocketAddr::from((Ipv4Addr::UNSPECIFIED, self.port)));
        let workers = self.workers.0;
        // Each process admits its share; together they admit what was asked.
        let max_concurrency = self.max_concurrency.div_ceil(workers);
        let max_queue = self
            .max_queue
            .unwrap_or(self.max_concurrency)
            .div_ceil(workers);
        for (side_addr, flag, example) in [
            (self.metrics_addr, "--metrics-addr", 9464),
            (self.admin_addr, "--admin-addr", 9465),
        ] {
            let Some(side_addr) = side_addr else { continue };
            let port = side_addr.port();
            ensure!(
                !KNATIVE_RESERVED_PORTS.contains(&port),
                "{flag} port {port} is reserved on Cloud Run and Knative (ports {}); choose another, such as {example}",
                KNATIVE_RESERVED_PORTS
                    .map(|port| port.to_string())
                    .join(", ")
            );
            ensure!(
                port == 0 || port != addr.port(),
                "{flag} port {port} is the port requests are served on; choose another"
            );
        }
        ensure!(
            port_or_zero(self.metrics_addr) == 0
                || port_or_zero(self.metrics_addr) != port_or_zero(self.admin_addr),
            "--metrics-addr and --admin-addr must be on different ports"
        );
        if self.health_path.ends_with('z') {
            // Cloud Run answers some paths ending in `z` itself; the request never
            // reaches the container there.
            tracing::warn!(
                "--health-path `{}` ends in `z`: Cloud Run reserves such paths, so probes \
                 there may never reach this host",
                self.health_path
            );
        }
        Ok(ServeConfig {
            source: self.component,
            addr,
            request_timeout: self.request_timeout,
            shutdown_timeout: self.shutdown_timeout,
            instance: InstanceLimits {
                max_memory: saturating_usize(self.max_memory),
                max_table_elements: self.max_table_elements,
                max_resources: self.max_resources,
                max_concurrency,
                ..InstanceLimits::default()
            },
            admission: AdmissionLimits {
                max_concurrency,
                max_queue,
                queue_timeout: self.queue_timeout,
            },
            client: ClientLimits {
                max_body_size: self.max_body_size.as_u64(),
                max_header_size: saturating_usize(self.max_header_size),
                header_read_timeout: self.header_read_timeout,
            },
            health_path: Some(self.health_path).filter(|path| !path.is_empty()),
            guest_env: GuestEnv::build(&self.env, |name| std::env::var(name).ok())?,
            trace_project: std::env::var(PROJECT_VARIABLE)
                .ok()
                .filter(|project| !project.is_empty()),
            metrics_addr: self.metrics_addr,
            access_log: self.access_log,
            outbound: OutboundConfig {
                allow: self.allow_outbound,
                resolve: self.outbound_resolve,
                limits: OutboundLimits {
                    connect_timeout: self.outbound_connect_timeout,
                    first_byte_timeout: self.outbound_first_byte_timeout,
                    total_timeout: self.outbound_total_timeout,
                    max_response_body: self.outbound_max_response_body.as_u64(),
                },
            },
            watch: self.watch,
            registry: RegistryConfig {
                insecure: self.insecure_registry,
                credentials: registry_credentials()?,
                max_size: self.max_pull_size.as_u64(),
            },
            admin,
            workers,
            secondary,
        })
    }
}

/// The admin token from the environment, checked for length.
fn admin_token() -> Result<String> {
    let token = std::env::var(ADMIN_TOKEN_ENV).unwrap_or_default();
    ensure!(
        token.chars().count() >= MIN_TOKEN_LENGTH,
        "--admin-addr needs a bearer token of at least {MIN_TOKEN_LENGTH} characters in \
         ${ADMIN_TOKEN_ENV}"
    );
    Ok(token)
}

/// The registry user name and password from the environment: both, or neither.
fn registry_credentials() -> Result<Option<(String, String)>> {
    let read = |name| {
        std::env::var(name)
            .ok()
            .filter(|value: &String| !value.is_empty())
    };
    match (read(USERNAME_ENV), read(PASSWORD_ENV)) {
        (Some(username), Some(password)) => Ok(Some((username, password))),
        (None, None) => Ok(None),
        _ => bail!("registry credentials need both ${USERNAME_ENV} and ${PASSWORD_ENV}"),
    }
}

fn saturating_usize(size: ByteSize) -> usize {
    usize::try_from(size.as_u64()).unwrap_or(usize::MAX)
}
