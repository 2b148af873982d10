//! `serve`'s flags checked against each other and resolved into the settings the host
//! runs with. Nothing here does I/O: the environment comes in through [`HostEnv`], and
//! what deserves a warning comes back in [`ServeConfig::notices`] for the caller to log.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail, ensure};
use bytesize::ByteSize;

use super::cli::{
    CallerArgs, InstanceArgs, KeyValueArgs, ListenArgs, OutboundArgs, ProcessArgs, RegistryArgs,
    RequestArgs, ServeArgs, SwapArgs,
};
use super::environment::HostEnv;
use super::workers::{SECONDARY_ENV, SecondaryRole};
use crate::load::app::ReuseSettings;
use crate::load::guest_config::{ENV_PREFIX as CONFIG_PREFIX, GuestConfig};
use crate::load::imports::UnimplementedImports;
use crate::load::key_value::KeyValueConfig;
use crate::load::registry::{
    Credentials, DEFAULT_METADATA_HOST, HOST_ENV, Login, METADATA_HOST_ENV, PASSWORD_ENV,
    RegistryConfig, USERNAME_ENV,
};
use crate::load::source::AppSource;
use crate::load::spin::variables::{self, ENV_PREFIX as SPIN_VARIABLE_PREFIX};
use crate::sandbox::env::{GuestEnv, PASSTHROUGH_PREFIX};
use crate::sandbox::keyvalue::{BackendSpec, KeyValueLimits, StoreSpec};
use crate::sandbox::limits::InstanceLimits;
use crate::sandbox::outbound::{OutboundConfig, OutboundLimits};

/// Where the Google Cloud project id is found (Cloud Run does not set it; the deployment
/// does). Log entries name their trace as `projects/PROJECT/traces/TRACE` with it.
pub const PROJECT_VARIABLE: &str = "GOOGLE_CLOUD_PROJECT";

/// The environment variable that holds the Redis stores' AUTH password.
pub const REDIS_PASSWORD_ENV: &str = "WASI_HOST_KV_REDIS_PASSWORD";

/// The environment variable that holds the admin bearer token. It is not a flag, so it
/// never shows in a process listing.
pub const ADMIN_TOKEN_ENV: &str = "WASI_HOST_ADMIN_TOKEN";

/// Shortest admin token accepted: guessing must stay out of reach.
const MIN_TOKEN_LENGTH: usize = 16;

/// Ports Knative's queue-proxy and its sidecars use inside a Cloud Run or Knative pod;
/// a server of ours must not take them.
const KNATIVE_RESERVED_PORTS: [u16; 6] = [8008, 8012, 8013, 8022, 9090, 9091];

/// Largest `--max-memory`: a 32-bit linear memory cannot grow past 4 GiB.
const MAX_MEMORY_CAP: u64 = 4 << 30;

/// Open files the default `--max-connections` leaves to the rest of the process: its
/// own files and pipes, the admin and metrics ports' connections, guests' outbound
/// connections, registry pulls.
const RESERVED_FILES: u64 = 128;

/// `--max-connections` when the open-file limit is unknown or unlimited.
const FALLBACK_MAX_CONNECTIONS: u32 = 10_000;

/// Connections open at once on the admin port, and on the metrics port: each needs
/// one or two, and a flood of them must not take the serving port's files.
pub const SIDE_SERVER_MAX_CONNECTIONS: u32 = 16;

/// The validated settings `serve` runs with.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub source: AppSource,
    pub addr: SocketAddr,
    pub request_timeout: Duration,
    /// Longest the drain after SIGTERM may take.
    pub shutdown_timeout: Duration,
    /// Longest the primary waits for a secondary's answer.
    pub worker_control_timeout: Duration,
    pub instance: InstanceLimits,
    pub reuse: ReuseSettings,
    /// What becomes of imports the host does not implement.
    pub imports: UnimplementedImports,
    /// A Spin application's variables set in the environment, by lower-case name.
    pub spin_variables: BTreeMap<String, String>,
    /// This process's share of the concurrency and queue.
    pub admission: AdmissionLimits,
    pub client: ClientLimits,
    pub connections: ConnectionLimits,
    /// How long repeated warnings are summed before they are logged.
    pub log_summary_interval: Duration,
    /// The probe path; `None` when turned off.
    pub health_path: Option<String>,
    /// The caller check of `--require-id-token`, if on.
    pub caller_check: Option<CallerCheckConfig>,
    /// What every guest finds in its environment.
    pub guest_env: GuestEnv,
    /// What a single component reads through `wasi:config/store`.
    pub guest_config: GuestConfig,
    /// The Google Cloud project that log entries name traces in, if known.
    pub trace_project: Option<String>,
    /// The metadata server to ask for the project id, when it is not known and the host
    /// runs where one is (Cloud Run, or `$GCE_METADATA_HOST` set).
    pub project_from_metadata: Option<String>,
    pub metrics_addr: Option<SocketAddr>,
    /// Whether to log one entry per request.
    pub access_log: bool,
    pub outbound: OutboundConfig,
    /// Where guests' key-value stores are.
    pub key_value: KeyValueConfig,
    /// Whether to reload the component when its file changes.
    pub watch: bool,
    pub registry: RegistryConfig,
    /// The admin endpoint, if enabled.
    pub admin: Option<AdminConfig>,
    /// How many serving processes there are, this one included.
    pub workers: u32,
    /// How that count was chosen, for the log.
    pub workers_chosen: String,
    /// Set when this process is a secondary worker, started by the primary.
    pub secondary: Option<SecondaryRole>,
    /// Settings that are allowed but probably not what the user meant, for the log.
    pub notices: Vec<String>,
}

/// How many requests run and wait, in one process.
#[derive(Debug, Clone)]
pub struct AdmissionLimits {
    pub max_concurrency: u32,
    /// Requests that may wait for a slot.
    pub max_queue: u32,
    /// Longest a request waits for a slot.
    pub queue_timeout: Duration,
}

/// What a client may send.
#[derive(Debug, Clone)]
pub struct ClientLimits {
    /// Largest request body, in bytes.
    pub max_body_size: u64,
    /// Largest request header block, in bytes.
    pub max_header_size: usize,
    /// Longest a client may take to send its request headers.
    pub header_read_timeout: Duration,
    /// Longest a request body may stop arriving.
    pub body_idle_timeout: Duration,
}

/// What one connection may hold, on every port.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Longest a new connection may take to send its first request head.
    pub first_request_timeout: Duration,
    /// Longest a connection with no request in flight stays open after a response.
    pub idle_timeout: Duration,
    /// Longest a write may wait for a client that does not read.
    pub write_timeout: Duration,
    /// Connections open at once on the serving port.
    pub max_connections: u32,
}

/// Which callers' ID tokens let a request through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerCheckConfig {
    /// The `aud` a token must carry.
    pub audience: String,
    /// Emails of the service accounts that may call; empty lets any account call.
    pub allowed_accounts: Vec<String>,
    /// Where the signing keys are fetched.
    pub jwks_url: http::Uri,
}

/// The settings of the admin endpoint.
#[derive(Clone)]
pub struct AdminConfig {
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

impl ServeArgs {
    /// Checks the flags against each other and against `env`, and resolves defaults.
    pub fn into_config(self, env: &HostEnv) -> Result<ServeConfig> {
        let (workers, workers_chosen) = self.processes.workers.resolve(&env.cpus());
        let addr = self.listen.addr();
        check_side_ports(addr, self.observe.metrics_addr, self.swap.admin_addr)?;
        check_source(&self.component, &self.swap, &self.outbound)?;
        let mut notices = Vec::new();
        let guest_config = self
            .instances
            .guest_config(env, &self.component, &mut notices)?;
        let admission = self.requests.admission(workers)?;
        let instance = InstanceLimits {
            key_value: self.key_value.limits()?,
            ..self.instances.limits(admission.max_concurrency)?
        };
        Ok(ServeConfig {
            addr,
            request_timeout: self.requests.request_timeout,
            shutdown_timeout: self.processes.shutdown_timeout,
            worker_control_timeout: self.processes.worker_control_timeout()?,
            instance,
            reuse: self.instances.reuse(),
            imports: if self.instances.strict_imports {
                UnimplementedImports::Refuse
            } else {
                UnimplementedImports::Stub
            },
            spin_variables: variables::from_environment(&env.with_prefix(SPIN_VARIABLE_PREFIX)),
            client: self.requests.client()?,
            connections: self
                .listen
                .connections(env.open_files_limit(), &mut notices)?,
            log_summary_interval: self.observe.log_summary_interval,
            admission,
            health_path: self.listen.health_path(&mut notices)?,
            caller_check: self.callers.check()?,
            guest_env: GuestEnv::build(
                &self.instances.env,
                &env.with_prefix(PASSTHROUGH_PREFIX),
                |name| env.var(name),
            )?,
            guest_config,
            trace_project: env.non_empty(PROJECT_VARIABLE),
            project_from_metadata: project_from_metadata(env),
            metrics_addr: self.observe.metrics_addr,
            access_log: self.observe.access_log,
            outbound: self.outbound.config(env)?,
            key_value: self.key_value.config(env)?,
            watch: self.swap.watch,
            registry: self.registry.config(env, &self.outbound.ca_file)?,
            admin: self.swap.admin(env)?,
            workers,
            workers_chosen,
            secondary: SecondaryRole::parse(env.var(SECONDARY_ENV).as_deref())?,
            source: self.component,
            notices,
        })
    }
}

/// Refuses settings that do not apply to what is served.
fn check_source(source: &AppSource, swap: &SwapArgs, outbound: &OutboundArgs) -> Result<()> {
    ensure!(
        !swap.watch || source.file().is_some(),
        "--watch needs a component file, and `{source}` is a registry reference; send SIGHUP \
         to pull it again"
    );
    ensure!(
        !matches!(source, AppSource::Manifest(_)) || outbound.allow_outbound.is_empty(),
        "--allow-outbound does not apply to a Spin application: each component's \
         `allowed_outbound_hosts` in the manifest says what it may reach"
    );
    Ok(())
}

/// Refuses side servers (metrics, admin) on a port Knative reserves, on the serving
/// port, or on one port together.
fn check_side_ports(
    addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    admin_addr: Option<SocketAddr>,
) -> Result<()> {
    for (side_addr, flag, example) in [
        (metrics_addr, "--metrics-addr", 9464),
        (admin_addr, "--admin-addr", 9465),
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
    let port_or_zero = |addr: Option<SocketAddr>| addr.map_or(0, |addr| addr.port());
    ensure!(
        port_or_zero(metrics_addr) == 0 || port_or_zero(metrics_addr) != port_or_zero(admin_addr),
        "--metrics-addr and --admin-addr must be on different ports"
    );
    Ok(())
}

impl ListenArgs {
    fn addr(&self) -> SocketAddr {
        self.addr
            .unwrap_or_else(|| SocketAddr::from((Ipv4Addr::UNSPECIFIED, self.port)))
    }

    fn health_path(&self, notices: &mut Vec<String>) -> Result<Option<String>> {
        let path = &self.health_path;
        ensure!(
            path.is_empty() || path.starts_with('/'),
            "--health-path must start with `/`"
        );
        if path.ends_with('z') {
            // Cloud Run answers some paths ending in `z` itself; the request never
            // reaches the container there.
            notices.push(format!(
                "--health-path `{path}` ends in `z`: Cloud Run reserves such paths, so probes \
                 there may never reach this host"
            ));
        }
        Ok(Some(path.clone()).filter(|path| !path.is_empty()))
    }

    /// The connection limits, the cap fitted to `open_files` (the process's limit on
    /// open files, if it has one) unless given.
    fn connections(
        &self,
        open_files: Option<u64>,
        notices: &mut Vec<String>,
    ) -> Result<ConnectionLimits> {
        for (timeout, flag) in [
            (self.first_request_timeout, "--first-request-timeout"),
            (self.idle_connection_timeout, "--idle-connection-timeout"),
            (self.response_write_timeout, "--response-write-timeout"),
        ] {
            ensure!(!timeout.is_zero(), "{flag} must be more than zero");
        }
        let fitting = open_files.map(|limit| limit.saturating_sub(RESERVED_FILES));
        let max_connections = match (self.max_connections, fitting) {
            (Some(max), Some(fitting)) if u64::from(max) > fitting => {
                notices.push(format!(
                    "--max-connections {max} is more than the open-file limit ({}) leaves room \
                     for; past about {fitting} connections, accepting fails until some close",
                    open_files.unwrap_or_default()
                ));
                max
            }
            (Some(max), _) => max,
            (None, Some(fitting)) => {
                ensure!(
                    fitting > 0,
                    "the open-file limit ({}) leaves no room for connections: raise it \
                     (`ulimit -n`) or set --max-connections",
                    open_files.unwrap_or_default()
                );
                u32::try_from(fitting).unwrap_or(u32::MAX)
            }
            (None, None) => FALLBACK_MAX_CONNECTIONS,
        };
        Ok(ConnectionLimits {
            first_request_timeout: self.first_request_timeout,
            idle_timeout: self.idle_connection_timeout,
            write_timeout: self.response_write_timeout,
            max_connections,
        })
    }
}

impl RequestArgs {
    /// Each of `workers` processes admits its share; together they admit what was asked.
    fn admission(&self, workers: u32) -> Result<AdmissionLimits> {
        ensure!(
            self.max_concurrency > 0,
            "--max-concurrency must be at least 1"
        );
        Ok(AdmissionLimits {
            max_concurrency: self.max_concurrency.div_ceil(workers),
            max_queue: self
                .max_queue
                .unwrap_or(self.max_concurrency)
                .div_ceil(workers),
            queue_timeout: self.queue_timeout,
        })
    }

    fn client(&self) -> Result<ClientLimits> {
        ensure!(
            self.max_header_size.as_u64() >= 8192,
            "--max-header-size must be at least 8KiB"
        );
        ensure!(
            !self.body_idle_timeout.is_zero(),
            "--body-idle-timeout must be more than zero"
        );
        Ok(ClientLimits {
            max_body_size: self.max_body_size.as_u64(),
            max_header_size: saturating_usize(self.max_header_size),
            header_read_timeout: self.header_read_timeout,
            body_idle_timeout: self.body_idle_timeout,
        })
    }
}

impl InstanceArgs {
    /// The caps of one instance, the pool sized for `max_concurrency` at once.
    fn limits(&self, max_concurrency: u32) -> Result<InstanceLimits> {
        ensure!(
            (64 * 1024..=MAX_MEMORY_CAP).contains(&self.max_memory.as_u64()),
            "--max-memory must be between 64KiB (one wasm page) and 4GiB (the 32-bit address space)"
        );
        Ok(InstanceLimits {
            max_memory: saturating_usize(self.max_memory),
            max_table_elements: self.max_table_elements,
            max_resources: self.max_resources,
            max_concurrency,
            ..InstanceLimits::default()
        })
    }

    /// The config values of a single component. A Spin application's components read
    /// its variables: `--config` and `--config-file` are refused there, and
    /// `WASI_CONFIG_*` variables ignored with a notice.
    fn guest_config(
        &self,
        env: &HostEnv,
        source: &AppSource,
        notices: &mut Vec<String>,
    ) -> Result<GuestConfig> {
        let prefixed = env.with_prefix(CONFIG_PREFIX);
        let config = GuestConfig::build(&self.config, &prefixed, self.config_file.clone())?;
        if !matches!(source, AppSource::Manifest(_)) {
            return Ok(config);
        }
        ensure!(
            self.config.iter().all(String::is_empty) && self.config_file.is_none(),
            "--config and --config-file do not apply to a Spin application: its components \
             read its variables (`[variables]`, set with SPIN_VARIABLE_NAME)"
        );
        if !config.is_empty() {
            notices.push(format!(
                "{CONFIG_PREFIX}* variables are ignored: a Spin application's components \
                 read its variables"
            ));
        }
        Ok(GuestConfig::default())
    }

    /// How far instances are reused; unset counts follow each component's world.
    fn reuse(&self) -> ReuseSettings {
        let count = |flag: Option<u32>| flag.map(|count| count as usize);
        ReuseSettings {
            max_requests: count(self.max_instance_reuse_count),
            max_concurrent: count(self.max_instance_concurrent_reuse_count),
            idle_timeout: self.idle_instance_timeout,
        }
    }
}

impl CallerArgs {
    /// The caller check, when `--require-id-token` asks for it.
    fn check(&self) -> Result<Option<CallerCheckConfig>> {
        let Some(audience) = self.require_id_token.clone().filter(|a| !a.is_empty()) else {
            ensure!(
                self.allowed_service_account.is_empty(),
                "--allowed-service-account needs --require-id-token"
            );
            return Ok(None);
        };
        let url = &self.id_token_jwks_url;
        ensure!(
            matches!(url.scheme_str(), Some("http" | "https")) && url.authority().is_some(),
            "--id-token-jwks-url `{url}` must be an http or https URL"
        );
        Ok(Some(CallerCheckConfig {
            audience,
            allowed_accounts: self.allowed_service_account.clone(),
            jwks_url: url.clone(),
        }))
    }
}

impl OutboundArgs {
    /// The outbound rules, the metadata server's address from `env`.
    fn config(&self, env: &HostEnv) -> Result<OutboundConfig> {
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
        Ok(OutboundConfig {
            allow: self.allow_outbound.clone(),
            resolve: self.outbound_resolve.clone(),
            limits: OutboundLimits {
                connect_timeout: self.outbound_connect_timeout,
                first_byte_timeout: self.outbound_first_byte_timeout,
                total_timeout: self.outbound_total_timeout,
                max_response_body: self.outbound_max_response_body.as_u64(),
            },
            id_tokens: self.outbound_id_token.clone(),
            ca_file: self.ca_file.clone(),
            metadata_host: env
                .non_empty(METADATA_HOST_ENV)
                .unwrap_or_else(|| DEFAULT_METADATA_HOST.to_owned()),
        })
    }
}

impl KeyValueArgs {
    fn limits(&self) -> Result<KeyValueLimits> {
        ensure!(
            self.kv_max_key_size.as_u64() > 0 && self.kv_max_operations > 0,
            "--kv-max-key-size and --kv-max-operations must be more than zero"
        );
        Ok(KeyValueLimits {
            max_key_size: saturating_usize(self.kv_max_key_size),
            max_value_size: saturating_usize(self.kv_max_value_size),
            max_operations: self.kv_max_operations,
        })
    }

    fn config(&self, env: &HostEnv) -> Result<KeyValueConfig> {
        ensure!(
            !self.kv_timeout.is_zero(),
            "--kv-timeout must be more than zero"
        );
        Ok(KeyValueConfig {
            stores: self
                .kv_store
                .iter()
                .map(|entry| store_spec(entry))
                .collect::<Result<_>>()?,
            runtime_config_file: self.runtime_config_file.clone(),
            local_file: self.kv_local_file.clone(),
            redis_password: env.non_empty(REDIS_PASSWORD_ENV),
            redis_password_file: self.kv_redis_password_file.clone(),
            redis_ca_file: self.kv_redis_ca_file.clone(),
            timeout: self.kv_timeout,
        })
    }
}

/// A `--kv-store NAME=URL`: a Redis URL, or the path of a local file.
fn store_spec(entry: &str) -> Result<StoreSpec> {
    let Some((name, url)) = entry.split_once('=') else {
        bail!("--kv-store `{entry}` is not NAME=URL");
    };
    ensure!(
        !name.is_empty() && !url.is_empty(),
        "--kv-store `{entry}` needs both a NAME and a URL"
    );
    let backend = match url.split_once("://") {
        Some(("redis" | "rediss", _)) => BackendSpec::Redis {
            url: url.to_owned(),
        },
        Some((scheme, _)) => bail!(
            "--kv-store `{name}`: `{scheme}://` is not a store this host has; use \
             `redis://`, `rediss://` or the path of a local file"
        ),
        None => BackendSpec::Local {
            path: Some(url.into()),
        },
    };
    Ok(StoreSpec {
        name: name.to_owned(),
        backend,
    })
}

impl ProcessArgs {
    fn worker_control_timeout(&self) -> Result<Duration> {
        ensure!(
            !self.worker_control_timeout.is_zero(),
            "--worker-control-timeout must be more than zero"
        );
        Ok(self.worker_control_timeout)
    }
}

impl SwapArgs {
    /// The admin endpoint's settings, its token from `env`; `None` when it is off.
    fn admin(&self, env: &HostEnv) -> Result<Option<AdminConfig>> {
        let Some(addr) = self.admin_addr else {
            return Ok(None);
        };
        let token = env.secret(ADMIN_TOKEN_ENV).unwrap_or_default();
        ensure!(
            token.chars().count() >= MIN_TOKEN_LENGTH,
            "--admin-addr needs a bearer token of at least {MIN_TOKEN_LENGTH} characters in \
             ${ADMIN_TOKEN_ENV}"
        );
        Ok(Some(AdminConfig {
            addr,
            token,
            max_upload: self.admin_max_upload.as_u64(),
        }))
    }
}

/// The metadata server to ask for the project id: only where one is expected, so that
/// a host elsewhere never waits on an address that does not answer.
fn project_from_metadata(env: &HostEnv) -> Option<String> {
    if env.non_empty(PROJECT_VARIABLE).is_some() {
        return None;
    }
    env.non_empty(METADATA_HOST_ENV).or_else(|| {
        env.non_empty("K_SERVICE")
            .map(|_| DEFAULT_METADATA_HOST.to_owned())
    })
}

impl RegistryArgs {
    /// How to reach registries, with the login from `env`: a user name, a password and
    /// the registry they are for, all three or none; trusting `ca_file` too.
    fn config(&self, env: &HostEnv, ca_file: &Option<PathBuf>) -> Result<RegistryConfig> {
        let mut credentials = Credentials::default();
        match (
            env.secret(USERNAME_ENV),
            env.secret(PASSWORD_ENV),
            env.non_empty(HOST_ENV),
        ) {
            (Some(username), Some(password), Some(registry)) => {
                credentials
                    .insert(&registry, Login { username, password })
                    .map_err(|error| error.context(format!("${HOST_ENV}")))?;
            }
            (None, None, _) => {}
            (Some(_), Some(_), None) => bail!(
                "${USERNAME_ENV} and ${PASSWORD_ENV} need ${HOST_ENV}: the registry \
                 (HOST[:PORT]) they are for, the only one they are sent to"
            ),
            _ => bail!("registry credentials need both ${USERNAME_ENV} and ${PASSWORD_ENV}"),
        }
        ensure!(
            !self.registry_timeout.is_zero(),
            "--registry-timeout must be more than zero"
        );
        Ok(RegistryConfig {
            insecure: self.insecure_registry.clone(),
            credentials,
            auth_file: self.registry_auth_file.clone(),
            ca_file: ca_file.clone(),
            resolve: self.registry_resolve.clone(),
            metadata_host: env
                .non_empty(METADATA_HOST_ENV)
                .unwrap_or_else(|| DEFAULT_METADATA_HOST.to_owned()),
            timeout: self.registry_timeout,
            max_size: self.max_pull_size.as_u64(),
        })
    }
}

fn saturating_usize(size: ByteSize) -> usize {
    usize::try_from(size.as_u64()).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::config::cli::{Cli, Command};

    /// `serve COMPONENT FLAGS...` as the command line gives it, checked against `env`.
    fn configure(component: &str, flags: &[&str], env: &HostEnv) -> Result<ServeConfig> {
        let command_line = ["wasi-host", "serve", component]
            .into_iter()
            .chain(flags.iter().copied());
        let Command::Serve(args) = Cli::try_parse_from(command_line)?.command else {
            unreachable!("the command line names `serve`")
        };
        args.into_config(env)
    }

    fn serve(flags: &[&str]) -> Result<ServeConfig> {
        configure("hello.wasm", flags, &HostEnv::fake(&[], 2))
    }

    fn refused(flags: &[&str]) -> String {
        format!("{:#}", serve(flags).expect_err("refused"))
    }

    #[test]
    fn key_value_stores_and_limits() {
        let config = serve(&[]).unwrap();
        assert_eq!(config.instance.key_value, KeyValueLimits::default());
        assert_eq!(config.instance.key_value.max_key_size, 255);
        assert_eq!(config.instance.key_value.max_value_size, 1 << 20);
        assert_eq!(config.key_value.timeout, Duration::from_secs(5));
        let config = serve(&[
            "--kv-store",
            "cache=rediss://:pw@10.0.0.3:6378",
            "--kv-store",
            "notes=data/notes.db",
            "--kv-max-operations",
            "7",
            "--kv-max-value-size",
            "4KiB",
        ])
        .unwrap();
        assert_eq!(
            config.key_value.stores,
            [
                StoreSpec {
                    name: "cache".into(),
                    backend: BackendSpec::Redis {
                        url: "rediss://:pw@10.0.0.3:6378".into()
                    }
                },
                StoreSpec {
                    name: "notes".into(),
                    backend: BackendSpec::Local {
                        path: Some("data/notes.db".into())
                    }
                },
            ]
        );
        assert_eq!(config.instance.key_value.max_operations, 7);
        assert_eq!(config.instance.key_value.max_value_size, 4096);
        let env = HostEnv::fake(&[(REDIS_PASSWORD_ENV, "s3cret")], 2);
        let config = configure("hello.wasm", &[], &env).unwrap();
        assert_eq!(config.key_value.redis_password.as_deref(), Some("s3cret"));

        for (flags, named) in [
            (&["--kv-store", "cache"][..], "not NAME=URL"),
            (&["--kv-store", "=redis://h"], "needs both"),
            (&["--kv-store", "c=memcached://h"], "`memcached://`"),
            (&["--kv-max-operations", "0"], "--kv-max-operations"),
            (&["--kv-timeout", "0s"], "--kv-timeout"),
        ] {
            assert!(
                refused(flags).contains(named),
                "{named}: {}",
                refused(flags)
            );
        }
    }

    #[test]
    fn defaults_are_cloud_runs() {
        let config = serve(&[]).unwrap();
        assert_eq!(config.addr, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(config.request_timeout, Duration::from_secs(300));
        assert_eq!(config.shutdown_timeout, Duration::from_secs(8));
        assert_eq!(config.admission.max_concurrency, 80);
        assert_eq!(config.admission.max_queue, 80);
        assert_eq!(config.admission.queue_timeout, Duration::from_secs(10));
        assert_eq!(config.client.max_body_size, 32 << 20);
        assert_eq!(config.client.max_header_size, 64 << 10);
        assert_eq!(config.instance.max_memory, 128 << 20);
        assert_eq!(
            config.health_path.as_deref(),
            Some("/.well-known/wasi-host/health")
        );
        assert_eq!((config.workers, config.secondary), (1, None));
        assert!(config.admin.is_none() && config.metrics_addr.is_none());
        assert!(config.notices.is_empty());
    }

    #[test]
    fn side_servers_never_share_a_port() {
        assert!(
            refused(&["--port", "9464", "--metrics-addr", "0.0.0.0:9464"])
                .contains("--metrics-addr port 9464 is the port requests are served on")
        );
        let env = HostEnv::fake(&[(ADMIN_TOKEN_ENV, "0123456789abcdef")], 2);
        let clash = configure(
            "hello.wasm",
            &[
                "--metrics-addr",
                "127.0.0.1:9464",
                "--admin-addr",
                "127.0.0.1:9464",
            ],
            &env,
        );
        assert!(format!("{:#}", clash.unwrap_err()).contains("must be on different ports"));
        // Port 0 asks the system for a free port: two of them never clash.
        let any = configure(
            "hello.wasm",
            &[
                "--addr",
                "127.0.0.1:0",
                "--metrics-addr",
                "127.0.0.1:0",
                "--admin-addr",
                "127.0.0.1:0",
            ],
            &env,
        );
        assert!(any.is_ok());
    }

    #[test]
    fn knatives_ports_are_refused_with_another_suggested() {
        for port in KNATIVE_RESERVED_PORTS {
            let error = refused(&["--metrics-addr", &format!("0.0.0.0:{port}")]);
            assert!(
                error.contains(&format!("port {port} is reserved")),
                "{error}"
            );
            assert!(error.contains("such as 9464"), "{error}");
        }
    }

    #[test]
    fn workers_share_out_the_concurrency_and_the_queue() {
        let env = HostEnv::fake(&[], 3);
        let auto = configure("hello.wasm", &["--workers", "auto"], &env).unwrap();
        assert_eq!(auto.workers, 3);
        assert_eq!(auto.admission.max_concurrency, 27);
        assert_eq!(auto.admission.max_queue, 27);
        assert_eq!(auto.instance.max_concurrency, 27);
        let fixed = configure("hello.wasm", &["--workers", "2", "--max-queue", "5"], &env).unwrap();
        assert_eq!(fixed.workers, 2);
        assert_eq!(fixed.admission.max_concurrency, 40);
        assert_eq!(fixed.admission.max_queue, 3);
        assert!(refused(&["--workers", "0"]).contains("at least one worker"));
    }

    #[test]
    fn limits_are_checked() {
        assert!(refused(&["--max-concurrency", "0"]).contains("at least 1"));
        assert!(refused(&["--max-memory", "32KiB"]).contains("between 64KiB"));
        assert!(refused(&["--max-memory", "5GiB"]).contains("4GiB"));
        assert!(refused(&["--max-header-size", "4KiB"]).contains("at least 8KiB"));
        for flag in [
            "--outbound-connect-timeout",
            "--outbound-first-byte-timeout",
            "--outbound-total-timeout",
        ] {
            assert!(refused(&[flag, "0s"]).contains(&format!("{flag} must be more than zero")));
        }
        let config = serve(&["--max-memory", "16MiB", "--max-header-size", "8KiB"]).unwrap();
        assert_eq!(config.instance.max_memory, 16 << 20);
        assert_eq!(config.client.max_header_size, 8 << 10);
    }

    #[test]
    fn probe_paths() {
        assert!(refused(&["--health-path", "health"]).contains("must start with `/`"));
        assert_eq!(serve(&["--health-path", ""]).unwrap().health_path, None);
        let config = serve(&["--health-path", "/healthz"]).unwrap();
        assert_eq!(config.health_path.as_deref(), Some("/healthz"));
        assert_eq!(config.notices.len(), 1);
        assert!(
            config.notices[0].contains("ends in `z`"),
            "{:?}",
            config.notices
        );
    }

    #[test]
    fn the_admin_endpoint_needs_a_long_token_from_the_environment() {
        let flags = ["--admin-addr", "127.0.0.1:9465"];
        assert!(refused(&flags).contains(ADMIN_TOKEN_ENV));
        let short = HostEnv::fake(&[(ADMIN_TOKEN_ENV, "too-short")], 2);
        let error = configure("hello.wasm", &flags, &short).unwrap_err();
        assert!(format!("{error:#}").contains("at least 16 characters"));
        let long = HostEnv::fake(&[(ADMIN_TOKEN_ENV, "0123456789abcdef")], 2);
        let admin = configure("hello.wasm", &flags, &long)
            .unwrap()
            .admin
            .unwrap();
        assert_eq!(admin.token, "0123456789abcdef");
        assert_eq!(admin.max_upload, 64 << 20);
        assert!(!format!("{admin:?}").contains("0123456789abcdef"));
    }

    #[test]
    fn registry_credentials_name_their_registry() {
        let one = HostEnv::fake(&[(USERNAME_ENV, "user")], 2);
        let error = configure("hello.wasm", &[], &one).unwrap_err();
        assert!(format!("{error:#}").contains("need both"));
        let unscoped = HostEnv::fake(&[(USERNAME_ENV, "user"), (PASSWORD_ENV, "secret")], 2);
        let error = configure("hello.wasm", &[], &unscoped).unwrap_err();
        assert!(
            format!("{error:#}").contains(&format!("need ${HOST_ENV}")),
            "{error:#}"
        );
        let scoped = HostEnv::fake(
            &[
                (USERNAME_ENV, "user"),
                (PASSWORD_ENV, "secret"),
                (HOST_ENV, "Registry.Example:5000"),
            ],
            2,
        );
        let registry = configure("hello.wasm", &[], &scoped).unwrap().registry;
        let login = registry.credentials.for_registry("registry.example:5000");
        assert_eq!(login.map(|login| login.password.as_str()), Some("secret"));
        assert_eq!(registry.credentials.for_registry("ghcr.io"), None);
        assert!(!format!("{registry:?}").contains("secret"));
        let empty = HostEnv::fake(&[(USERNAME_ENV, ""), (PASSWORD_ENV, "")], 2);
        let registry = configure("hello.wasm", &[], &empty).unwrap().registry;
        assert_eq!(registry.credentials, Credentials::default());
        assert!(refused(&["--registry-timeout", "0s"]).contains("more than zero"));
        assert!(refused(&["--worker-control-timeout", "0s"]).contains("more than zero"));
    }

    #[test]
    fn the_project_is_asked_of_the_metadata_server_only_where_there_is_one() {
        let ask = |vars: &[(&str, &str)]| {
            configure("hello.wasm", &[], &HostEnv::fake(vars, 2))
                .unwrap()
                .project_from_metadata
        };
        assert_eq!(ask(&[]), None);
        assert_eq!(
            ask(&[("K_SERVICE", "shop")]).as_deref(),
            Some("169.254.169.254")
        );
        assert_eq!(
            ask(&[(METADATA_HOST_ENV, "127.0.0.1:8999")]).as_deref(),
            Some("127.0.0.1:8999")
        );
        assert_eq!(ask(&[("K_SERVICE", "shop"), (PROJECT_VARIABLE, "p")]), None);
    }

    #[test]
    fn secrets_lose_the_line_ending_a_secret_file_gives_them() {
        let env = HostEnv::fake(
            &[
                (ADMIN_TOKEN_ENV, "0123456789abcdef\n"),
                (USERNAME_ENV, "user\r\n"),
                (PASSWORD_ENV, "secret\n"),
                (HOST_ENV, "ghcr.io"),
            ],
            2,
        );
        let config = configure("hello.wasm", &["--admin-addr", "127.0.0.1:9465"], &env).unwrap();
        assert_eq!(config.admin.unwrap().token, "0123456789abcdef");
        let login = Login {
            username: "user".to_owned(),
            password: "secret".to_owned(),
        };
        assert_eq!(
            config.registry.credentials.for_registry("ghcr.io"),
            Some(&login)
        );
        let only_a_newline = HostEnv::fake(&[(USERNAME_ENV, "\n"), (PASSWORD_ENV, "\n")], 2);
        let registry = configure("hello.wasm", &[], &only_a_newline)
            .unwrap()
            .registry;
        assert_eq!(registry.credentials, Credentials::default());
    }

    #[test]
    fn client_limits_default_to_short_timeouts() {
        let config = serve(&[]).unwrap();
        let connections = &config.connections;
        assert_eq!(connections.first_request_timeout, Duration::from_secs(10));
        assert_eq!(connections.idle_timeout, Duration::from_secs(60));
        assert_eq!(connections.write_timeout, Duration::from_secs(30));
        assert_eq!(config.client.body_idle_timeout, Duration::from_secs(30));
        assert_eq!(config.log_summary_interval, Duration::from_secs(10));
        for flag in [
            "--first-request-timeout",
            "--idle-connection-timeout",
            "--response-write-timeout",
            "--body-idle-timeout",
        ] {
            assert!(refused(&[flag, "0s"]).contains(&format!("{flag} must be more than zero")));
        }
    }

    #[test]
    fn connections_are_capped_below_the_open_file_limit() {
        let limited = |limit: Option<u64>, flags: &[&str]| {
            let env = HostEnv::fake(&[], 2).with_open_files_limit(limit);
            configure("hello.wasm", flags, &env)
        };
        let fitted = limited(Some(1024), &[]).unwrap();
        assert_eq!(fitted.connections.max_connections, 1024 - 128);
        let unlimited = limited(None, &[]).unwrap();
        assert_eq!(unlimited.connections.max_connections, 10_000);
        let no_room = limited(Some(100), &[]).unwrap_err();
        assert!(format!("{no_room:#}").contains("leaves no room for connections"));
        let explicit = limited(Some(100), &["--max-connections", "50"]).unwrap();
        assert_eq!(explicit.connections.max_connections, 50);
        assert!(
            explicit.notices[0].contains("more than the open-file limit (100) leaves room for"),
            "{:?}",
            explicit.notices
        );
        assert!(refused(&["--max-connections", "0"]).contains("0"));
    }

    #[test]
    fn platform_settings_come_from_the_environment() {
        let env = HostEnv::fake(
            &[
                (PROJECT_VARIABLE, "shop-prod"),
                ("K_SERVICE", "shop"),
                ("HOME", "/root"),
                (SECONDARY_ENV, "3"),
            ],
            2,
        );
        let config = configure("hello.wasm", &["--env", "A=1"], &env).unwrap();
        assert_eq!(config.trace_project.as_deref(), Some("shop-prod"));
        assert_eq!(
            config.guest_env.vars(),
            [
                ("K_SERVICE".into(), "shop".into()),
                ("A".into(), "1".into())
            ]
        );
        assert_eq!(config.secondary, Some(SecondaryRole { number: 3 }));
        let bad = HostEnv::fake(&[(SECONDARY_ENV, "one")], 2);
        assert!(configure("hello.wasm", &[], &bad).is_err());
        let unnamed = HostEnv::fake(&[(PROJECT_VARIABLE, "")], 2);
        assert_eq!(
            configure("hello.wasm", &[], &unnamed)
                .unwrap()
                .trace_project,
            None
        );
    }

    #[test]
    fn settings_that_do_not_fit_the_source_are_refused() {
        let env = HostEnv::fake(&[], 2);
        let watch = configure("oci://ghcr.io/org/hello:v1", &["--watch"], &env).unwrap_err();
        assert!(format!("{watch:#}").contains("--watch needs a component file"));
        let allow =
            configure("app/spin.toml", &["--allow-outbound", "https://*"], &env).unwrap_err();
        assert!(format!("{allow:#}").contains("does not apply to a Spin application"));
        assert!(
            configure(
                "app.wasm",
                &["--watch", "--allow-outbound", "https://*"],
                &env
            )
            .is_ok()
        );
    }

    #[test]
    fn guest_config_comes_from_flags_the_environment_and_a_file() {
        let env = HostEnv::fake(
            &[
                ("WASI_CONFIG_greeting", "from env"),
                ("WASI_CONFIG_region", "eu"),
                ("WASI_GUEST_API_KEY", "s3cret"),
            ],
            2,
        );
        let flags = ["--config", "greeting=hello", "--config-file", "app.toml"];
        let config = configure("hello.wasm", &flags, &env).unwrap();
        assert_eq!(
            config.guest_config.values,
            BTreeMap::from([
                ("greeting".into(), "hello".into()),
                ("region".into(), "eu".into())
            ])
        );
        assert_eq!(
            config.guest_config.file.as_deref(),
            Some(std::path::Path::new("app.toml"))
        );
        assert_eq!(
            config.guest_env.vars(),
            [("API_KEY".into(), "s3cret".into())]
        );
    }

    #[test]
    fn a_spin_application_reads_its_variables_not_the_config() {
        let env = HostEnv::fake(&[("WASI_CONFIG_greeting", "hello")], 2);
        for flags in [&["--config", "a=1"][..], &["--config-file", "app.toml"]] {
            let error = configure("app/spin.toml", flags, &env).unwrap_err();
            assert!(
                format!("{error:#}").contains("do not apply to a Spin application"),
                "{error:#}"
            );
        }
        let config = configure("app/spin.toml", &[], &env).unwrap();
        assert!(config.guest_config.is_empty());
        assert!(config.notices[0].contains("WASI_CONFIG_* variables are ignored"));
    }

    #[test]
    fn id_tokens_come_from_the_metadata_server_the_environment_names() {
        let flags = ["--outbound-id-token", "https://svc-x.a.run.app"];
        let outbound = serve(&flags).unwrap().outbound;
        assert_eq!(outbound.metadata_host, "169.254.169.254");
        assert_eq!(outbound.id_tokens[0].to_string(), "https://svc-x.a.run.app");
        let env = HostEnv::fake(&[("GCE_METADATA_HOST", "127.0.0.1:8099")], 2);
        let moved = configure("hello.wasm", &flags, &env).unwrap().outbound;
        assert_eq!(moved.metadata_host, "127.0.0.1:8099");
        assert!(refused(&["--outbound-id-token", "https://svc/path"]).contains("no path"));
    }

    #[test]
    fn the_caller_check_needs_an_audience() {
        assert_eq!(serve(&[]).unwrap().caller_check, None);
        let check = serve(&[
            "--require-id-token",
            "https://svc.example",
            "--allowed-service-account",
            "a@p.iam.gserviceaccount.com,b@p.iam.gserviceaccount.com",
        ])
        .unwrap()
        .caller_check
        .unwrap();
        assert_eq!(check.audience, "https://svc.example");
        assert_eq!(check.allowed_accounts.len(), 2);
        assert_eq!(
            check.jwks_url.to_string(),
            "https://www.googleapis.com/oauth2/v3/certs"
        );
        assert!(
            refused(&["--allowed-service-account", "a@p.iam.gserviceaccount.com"])
                .contains("needs --require-id-token")
        );
        let bad = ["--require-id-token", "x", "--id-token-jwks-url", "/certs"];
        assert!(refused(&bad).contains("must be an http or https URL"));
    }
}
