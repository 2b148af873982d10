//! The command line: every flag also reads an environment variable, so the same image
//! is configured on Cloud Run (env) and on a laptop (flags) alike.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;

use bytesize::ByteSize;
use clap::{Args, Parser, Subcommand};

use super::workers::WorkerCount;
use crate::load::source::AppSource;
use crate::observe::telemetry::LogFormat;
use crate::sandbox::outbound::{IdTokenAudience, OutboundPattern, ResolveOverride};

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

/// Default wait for a worker's answer to the first process: time to compile a large
/// component on one CPU, as a worker does when it reads a Spin application itself.
pub const DEFAULT_WORKER_CONTROL_TIMEOUT: &str = "60s";

/// Default concurrency cap: Cloud Run's default `containerConcurrency`.
pub const DEFAULT_MAX_CONCURRENCY: u32 = 80;

/// Default connect timeout of a guest's outbound request (DNS, TCP and TLS).
pub const DEFAULT_OUTBOUND_CONNECT_TIMEOUT: &str = "10s";

/// Default wait for an outbound response's head.
pub const DEFAULT_OUTBOUND_FIRST_BYTE_TIMEOUT: &str = "60s";

/// Default limit on one outbound request, response body included.
pub const DEFAULT_OUTBOUND_TOTAL_TIMEOUT: &str = "120s";

/// Default time an idle instance is kept for reuse: `wasmtime serve`'s.
pub const DEFAULT_IDLE_INSTANCE_TIMEOUT: &str = "1s";

/// Default limit on one registry call, body included.
pub const DEFAULT_REGISTRY_TIMEOUT: &str = "120s";

/// Where Google publishes the keys that sign its ID tokens (a JWKS).
pub const DEFAULT_ID_TOKEN_JWKS_URL: &str = "https://www.googleapis.com/oauth2/v3/certs";

/// Default deadline of a Redis store's connection and of each command.
pub const DEFAULT_KV_TIMEOUT: &str = "5s";

/// Default largest outbound response body.
pub const DEFAULT_OUTBOUND_MAX_RESPONSE_BODY: &str = "64MiB";

/// What `--version` prints: this host's version and the wasmtime it embeds, which a
/// `.cwasm` must have been compiled by.
static VERSION: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{} (wasmtime {})",
        env!("CARGO_PKG_VERSION"),
        wasmtime_environ::VERSION
    )
});

/// Default wait for a new connection's first request: a client that connects and says
/// nothing holds a file descriptor for this long.
pub const DEFAULT_FIRST_REQUEST_TIMEOUT: &str = "10s";

/// Default time a connection with no request in flight stays open (HTTP/2; HTTP/1
/// keep-alive connections close at the header read timeout).
pub const DEFAULT_IDLE_CONNECTION_TIMEOUT: &str = "60s";

/// Default wait for a client to take more of a response it is not reading.
pub const DEFAULT_RESPONSE_WRITE_TIMEOUT: &str = "30s";

/// Default wait for more of a request body that has stopped arriving.
pub const DEFAULT_BODY_IDLE_TIMEOUT: &str = "30s";

/// Default time over which repeated warnings are summed into one log line.
pub const DEFAULT_LOG_SUMMARY_INTERVAL: &str = "10s";

/// A Cloud Run-ready host for WebAssembly HTTP components.
#[derive(Debug, Parser)]
#[command(name = "wasi-host", version = VERSION.as_str(), about, long_about = None)]
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

/// Flags of `wasi-host serve`, grouped as `--help` shows them.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The component to serve: a `.wasm` exporting `wasi:http/incoming-handler`, or a
    /// `.cwasm` from `wasi-host compile`. A `.cwasm` beside a `.wasm`, compiled from
    /// that `.wasm` (it records the `.wasm`'s SHA-256), is loaded instead of compiling. Or a Spin application: its `spin.toml` (or the
    /// folder holding it), whose components are served on its routes. Or a component in
    /// an OCI registry, as `wkg oci push` stores it: `oci://REGISTRY/REPOSITORY:TAG`, or
    /// `@sha256:DIGEST` after the repository or the tag to pin the manifest; it is
    /// pulled at startup and again on SIGHUP.
    #[arg(value_name = "COMPONENT", env = "WASI_HOST_COMPONENT")]
    pub component: AppSource,

    #[command(flatten, next_help_heading = "Listening")]
    pub(super) listen: ListenArgs,

    #[command(flatten, next_help_heading = "Requests")]
    pub(super) requests: RequestArgs,

    #[command(flatten, next_help_heading = "Guest instances")]
    pub(super) instances: InstanceArgs,

    #[command(flatten, next_help_heading = "Callers")]
    pub(super) callers: CallerArgs,

    #[command(flatten, next_help_heading = "Key-value stores")]
    pub(super) key_value: KeyValueArgs,

    #[command(flatten, next_help_heading = "Outbound requests")]
    pub(super) outbound: OutboundArgs,

    #[command(flatten, next_help_heading = "Swapping the component")]
    pub(super) swap: SwapArgs,

    #[command(flatten, next_help_heading = "Registries")]
    pub(super) registry: RegistryArgs,

    #[command(flatten, next_help_heading = "Processes")]
    pub(super) processes: ProcessArgs,

    #[command(flatten, next_help_heading = "Observability")]
    pub(super) observe: ObserveArgs,
}

/// Where and how requests are received.
#[derive(Debug, Args)]
pub struct ListenArgs {
    /// Port to listen on, on all interfaces. Cloud Run sets `$PORT`.
    #[arg(long, env = "PORT", default_value_t = DEFAULT_PORT)]
    pub port: u16,
    /// Full socket address to listen on; overrides `--port` (e.g. `127.0.0.1:0`).
    #[arg(long, value_name = "ADDR", env = "WASI_HOST_ADDR")]
    pub addr: Option<SocketAddr>,
    /// Path the host answers itself with `200` for startup and liveness probes; it never
    /// reaches the guest. An empty value turns it off.
    #[arg(long, env = "WASI_HOST_HEALTH_PATH", default_value = DEFAULT_HEALTH_PATH)]
    pub health_path: String,
    /// Longest a new connection may stay open before its first request head has
    /// arrived: a client that connects and sends nothing, part of the HTTP/2 preface, or
    /// only HTTP/2 settings is disconnected then. The admin and metrics ports too.
    #[arg(long, env = "WASI_HOST_FIRST_REQUEST_TIMEOUT", default_value = DEFAULT_FIRST_REQUEST_TIMEOUT, value_parser = humantime::parse_duration)]
    pub first_request_timeout: Duration,
    /// Longest a connection with no request in flight stays open after its last
    /// response: what closes an idle HTTP/2 connection (HTTP/1 keep-alive connections
    /// close sooner, at `--header-read-timeout`).
    #[arg(long, env = "WASI_HOST_IDLE_CONNECTION_TIMEOUT", default_value = DEFAULT_IDLE_CONNECTION_TIMEOUT, value_parser = humantime::parse_duration)]
    pub idle_connection_timeout: Duration,
    /// Longest a response may wait for a client that does not read it (over HTTP/2, also
    /// a stream the client grants no flow-control window); then the connection is closed
    /// and the request's slot freed.
    #[arg(long, env = "WASI_HOST_RESPONSE_WRITE_TIMEOUT", default_value = DEFAULT_RESPONSE_WRITE_TIMEOUT, value_parser = humantime::parse_duration)]
    pub response_write_timeout: Duration,
    /// Connections open at once on the serving port, per process; past it a new
    /// connection gets `503` and is closed. Default: the open-file limit (`ulimit -n`)
    /// less 128 kept for the host's own files, the admin and metrics ports (16 each) and
    /// guests' outbound connections.
    #[arg(long, value_name = "N", env = "WASI_HOST_MAX_CONNECTIONS", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: Option<u32>,
}

/// What one request may take, and how many run at once.
#[derive(Debug, Args)]
pub struct RequestArgs {
    /// Longest a request may run; a guest still running then is interrupted and, if it
    /// has not answered yet, the client gets `504`. Cloud Run's default is 300s.
    #[arg(long, env = "WASI_HOST_REQUEST_TIMEOUT", default_value = DEFAULT_REQUEST_TIMEOUT, value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,
    /// Requests that run at once; more wait in the queue. Match Cloud Run's
    /// `containerConcurrency` (default 80).
    #[arg(long, env = "WASI_HOST_MAX_CONCURRENCY", default_value_t = DEFAULT_MAX_CONCURRENCY)]
    pub max_concurrency: u32,
    /// Requests that may wait for a free slot; beyond this they get `503` at once.
    /// Default: the same as `--max-concurrency`.
    #[arg(long, env = "WASI_HOST_MAX_QUEUE")]
    pub max_queue: Option<u32>,
    /// Longest a request waits in the queue before it gets `503` with `Retry-After`.
    #[arg(long, env = "WASI_HOST_QUEUE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub queue_timeout: Duration,
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
    /// Longest a request body may stop arriving; a client that stalls longer gets
    /// `408` (if its guest has not answered yet), so a trickling upload cannot hold a
    /// slot for the whole request timeout.
    #[arg(long, env = "WASI_HOST_BODY_IDLE_TIMEOUT", default_value = DEFAULT_BODY_IDLE_TIMEOUT, value_parser = humantime::parse_duration)]
    pub body_idle_timeout: Duration,
}

/// What one guest instance gets.
#[derive(Debug, Args)]
pub struct InstanceArgs {
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
    /// A variable for the guest's environment, `KEY=VALUE`; repeat the flag for more.
    /// In `WASI_HOST_ENV`, one `KEY=VALUE` per line. Besides these the guest sees only
    /// `K_SERVICE`, `K_REVISION` and `K_CONFIGURATION`, when the host has them, and each
    /// host variable `WASI_GUEST_NAME` as `NAME` (how secrets reach a guest).
    #[arg(
        long = "env",
        value_name = "KEY=VALUE",
        env = "WASI_HOST_ENV",
        value_delimiter = '\n'
    )]
    pub env: Vec<String>,

    /// A value a component reads through `wasi:config/store`, `KEY=VALUE`; repeat the
    /// flag for more. In `WASI_HOST_CONFIG`, one `KEY=VALUE` per line. It wins over a
    /// host variable `WASI_CONFIG_KEY`, which wins over `--config-file`. Not for a Spin
    /// application, whose components read its variables.
    #[arg(
        long = "config",
        value_name = "KEY=VALUE",
        env = "WASI_HOST_CONFIG",
        value_delimiter = '\n'
    )]
    pub config: Vec<String>,

    /// A TOML file of `key = "value"` lines (every value a string) a component reads
    /// through `wasi:config/store`, read at startup.
    #[arg(long, value_name = "FILE", env = "WASI_HOST_CONFIG_FILE")]
    pub config_file: Option<PathBuf>,

    /// Requests one instance serves before it is dropped; 1 is a fresh instance per
    /// request. Default: 128 for WASI 0.3 components, 1 for WASI 0.2 ones, as `wasmtime
    /// serve`. A reused instance keeps its memory from one request to the next.
    #[arg(long, value_name = "N", env = "WASI_HOST_MAX_INSTANCE_REUSE_COUNT", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_instance_reuse_count: Option<u32>,

    /// Requests one WASI 0.3 instance serves at once, each until its response body has
    /// ended. Default: 16. A WASI 0.2 instance serves one at a time.
    #[arg(long, value_name = "N", env = "WASI_HOST_MAX_INSTANCE_CONCURRENT_REUSE_COUNT", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_instance_concurrent_reuse_count: Option<u32>,

    /// How long an instance with nothing to do is kept for the next request.
    #[arg(long, env = "WASI_HOST_IDLE_INSTANCE_TIMEOUT", default_value = DEFAULT_IDLE_INSTANCE_TIMEOUT, value_parser = humantime::parse_duration)]
    pub idle_instance_timeout: Duration,

    /// Refuse a component that imports what this host does not implement (Spin's
    /// SQLite, Redis, MQTT, databases and LLM interfaces, WASI release candidates) instead of loading it with those imports failing when called.
    #[arg(long, env = "WASI_HOST_STRICT_IMPORTS")]
    pub strict_imports: bool,
}

/// Who may call the guest, where no platform checks callers (GKE, a VM).
#[derive(Debug, Args)]
pub struct CallerArgs {
    /// Lets a request reach the guest only with `Authorization: Bearer` and a
    /// Google-signed OIDC ID token for AUDIENCE (issued by accounts.google.com, not
    /// expired, signed by a key from `--id-token-jwks-url`); others get `401`. The health
    /// path never needs one. Cloud Run checks tokens itself for a private service.
    #[arg(long, value_name = "AUDIENCE", env = "WASI_HOST_REQUIRE_ID_TOKEN")]
    pub require_id_token: Option<String>,
    /// With `--require-id-token`, only tokens of this service account (its email,
    /// verified) pass. Repeatable; the variable takes a comma-separated list.
    #[arg(
        long,
        value_name = "EMAIL",
        env = "WASI_HOST_ALLOWED_SERVICE_ACCOUNT",
        value_delimiter = ','
    )]
    pub allowed_service_account: Vec<String>,
    /// Where the keys that sign ID tokens are fetched (a JWKS), for `--require-id-token`;
    /// they are kept for an hour, and fetched again sooner for an unknown key.
    #[arg(long, value_name = "URL", env = "WASI_HOST_ID_TOKEN_JWKS_URL", default_value = DEFAULT_ID_TOKEN_JWKS_URL)]
    pub id_token_jwks_url: http::Uri,
}

/// Where guests' key-value stores keep their data, and what a request may ask of them.
#[derive(Debug, Args)]
pub struct KeyValueArgs {
    /// A key-value store guests open by NAME: `redis://[:PASSWORD@]HOST[:PORT][/DB]`
    /// (`rediss://` for TLS) for a store every instance shares, or the path of a local
    /// SQLite file. Repeatable; the variable takes a comma-separated list. A single
    /// component may open every store; a Spin application's components, those their
    /// `key_value_stores` list. `default` is a local file unless given here.
    #[arg(
        long = "kv-store",
        value_name = "NAME=URL",
        env = "WASI_HOST_KV_STORE",
        value_delimiter = ','
    )]
    pub kv_store: Vec<String>,
    /// Spin's runtime config file: its `[key_value_store.NAME]` tables define stores
    /// (`type = "redis"` with `url`, or `type = "spin"` with an optional `path`,
    /// relative to the file), as `spin up --runtime-config-file` reads them.
    #[arg(long, value_name = "FILE", env = "WASI_HOST_RUNTIME_CONFIG_FILE")]
    pub runtime_config_file: Option<PathBuf>,
    /// The local file of the `default` store, and of `type = "spin"` stores without a
    /// path. Default: `.spin/sqlite_key_value.db` beside the manifest or component file,
    /// where `spin up` keeps it; in a read-only container, a file on a writable mount.
    #[arg(long, value_name = "FILE", env = "WASI_HOST_KV_LOCAL_FILE")]
    pub kv_local_file: Option<PathBuf>,
    /// A file holding the AUTH password of Redis stores whose URL carries none (a
    /// mounted secret). `$WASI_HOST_KV_REDIS_PASSWORD` gives the password itself.
    #[arg(long, value_name = "FILE", env = "WASI_HOST_KV_REDIS_PASSWORD_FILE")]
    pub kv_redis_password_file: Option<PathBuf>,
    /// PEM certificates that Redis stores over TLS (`rediss://`) are verified against,
    /// instead of the built-in public roots: a Memorystore instance's server CA.
    #[arg(long, value_name = "FILE", env = "WASI_HOST_KV_REDIS_CA_FILE")]
    pub kv_redis_ca_file: Option<PathBuf>,
    /// Longest a Redis store may take to connect, or to answer one command; the guest
    /// then gets its interface's error.
    #[arg(long, env = "WASI_HOST_KV_TIMEOUT", default_value = DEFAULT_KV_TIMEOUT, value_parser = humantime::parse_duration)]
    pub kv_timeout: Duration,
    /// Longest key a guest may use; a longer one gets an error (Spin's limit).
    #[arg(long, env = "WASI_HOST_KV_MAX_KEY_SIZE", default_value = "255B")]
    pub kv_max_key_size: ByteSize,
    /// Largest value a guest may store; a larger one gets an error (Spin's limit).
    #[arg(long, env = "WASI_HOST_KV_MAX_VALUE_SIZE", default_value = "1MiB")]
    pub kv_max_value_size: ByteSize,
    /// Most key-value operations one request may run, opening a store included; past
    /// it every call gets an error.
    #[arg(long, env = "WASI_HOST_KV_MAX_OPERATIONS", default_value_t = 1000)]
    pub kv_max_operations: u32,
}

/// What guests may reach, and how long they may wait for it.
#[derive(Debug, Args)]
pub struct OutboundArgs {
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
    /// PEM certificates trusted besides the built-in public roots by every HTTPS
    /// connection the host makes: guests' outbound requests and registry pulls (an
    /// internal service's or a private registry's CA).
    #[arg(long, value_name = "FILE", env = "WASI_HOST_CA_FILE")]
    pub ca_file: Option<PathBuf>,
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
    /// Adds a Google ID token for ORIGIN (e.g. `https://svc-x.a.run.app`, the audience)
    /// to guests' requests to exactly that origin, unless the guest sets its own
    /// `Authorization`. The host fetches it from the metadata server (`$GCE_METADATA_HOST`
    /// moves it) and keeps it until shortly before it expires; guests never reach the
    /// metadata server. The origin must also be allowed by `--allow-outbound`.
    /// Repeatable; the variable takes a comma-separated list.
    #[arg(
        long,
        value_name = "ORIGIN",
        env = "WASI_HOST_OUTBOUND_ID_TOKEN",
        value_delimiter = ','
    )]
    pub outbound_id_token: Vec<IdTokenAudience>,
}

/// How a new version replaces the one serving.
#[derive(Debug, Args)]
pub struct SwapArgs {
    /// Reload COMPONENT when its file changes (written in place, renamed over, or
    /// swapped by a volume update). A file that fails to load is rejected and the
    /// running version keeps serving. SIGHUP reloads it too, with or without this flag.
    /// Not for registry references: send SIGHUP to pull those again.
    #[arg(long, env = "WASI_HOST_WATCH")]
    pub watch: bool,
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
}

/// How components are pulled from OCI registries.
#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// Pull from the registry HOST[:PORT] over plain HTTP; every other registry is
    /// reached over HTTPS. Repeatable; the variable takes a comma-separated list. For a
    /// registry on a trusted network only: it may also send calls (redirects, its token
    /// service) to plain HTTP and internal addresses, which other registries may not.
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
    /// A Docker `config.json`-style file of registry credentials (`{"auths": {"HOST[:PORT]":
    /// {"auth": BASE64(USER:PASSWORD)}}}`), read at startup. Each login goes only to its
    /// own registry and the token service that registry's challenge names; a registry
    /// without one is pulled from anonymously.
    #[arg(long, value_name = "FILE", env = "WASI_HOST_REGISTRY_AUTH_FILE")]
    pub registry_auth_file: Option<PathBuf>,
    /// Resolves HOST to ADDR for registry pulls without asking DNS, like
    /// `--outbound-resolve` for guests (`registry.internal:10.0.0.7`). Repeatable; the
    /// variable takes a comma-separated list.
    #[arg(
        long,
        value_name = "HOST:ADDR",
        env = "WASI_HOST_REGISTRY_RESOLVE",
        value_delimiter = ','
    )]
    pub registry_resolve: Vec<ResolveOverride>,
    /// Longest one registry call may take (a manifest, a token, a component), from
    /// connecting to the last byte of its answer. A pull never holds up a swap or an
    /// admin request while it waits.
    #[arg(long, env = "WASI_HOST_REGISTRY_TIMEOUT", default_value = DEFAULT_REGISTRY_TIMEOUT, value_parser = humantime::parse_duration)]
    pub registry_timeout: Duration,
}

/// How many processes serve, and how they stop.
#[derive(Debug, Args)]
pub struct ProcessArgs {
    /// Serving processes, each with one thread, sharing the port: a number, or `auto`
    /// for one per CPU of the cgroup's CPU limit (rounded up), else one per CPU the
    /// process may run on. The first process loads each version and hands it to the
    /// others. Guests in separate processes never slow each other down with
    /// TLB shootdowns, which matters most for large guests (CPython) on several cores.
    /// `--max-concurrency` and `--max-queue` are shared out among them; the first
    /// process serves the admin and metrics endpoints for all.
    #[arg(long, env = "WASI_HOST_WORKERS", default_value = "1")]
    pub workers: WorkerCount,
    /// Longest the first process waits for another's answer: to load a new version, to
    /// serve it, to say what it serves or to send its metrics. A swap that a worker does
    /// not load in time fails; a worker that does not serve it in time is stopped, and
    /// the host with it, so that no two versions are ever served side by side.
    #[arg(long, env = "WASI_HOST_WORKER_CONTROL_TIMEOUT", default_value = DEFAULT_WORKER_CONTROL_TIMEOUT, value_parser = humantime::parse_duration)]
    pub worker_control_timeout: Duration,
    /// How long SIGTERM waits for in-flight requests before exiting; keep it under the
    /// platform's grace period (Cloud Run: 10s).
    #[arg(long, env = "WASI_HOST_SHUTDOWN_TIMEOUT", default_value = DEFAULT_SHUTDOWN_TIMEOUT, value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,
}

/// What is measured and logged besides errors.
#[derive(Debug, Args)]
pub struct ObserveArgs {
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
    /// Warnings that repeat under load (requests turned away with `503`, connections
    /// refused) are summed over this long into one line each, instead of a line per
    /// event; the metrics count every one.
    #[arg(long, env = "WASI_HOST_LOG_SUMMARY_INTERVAL", default_value = DEFAULT_LOG_SUMMARY_INTERVAL, value_parser = humantime::parse_duration)]
    pub log_summary_interval: Duration,
}
