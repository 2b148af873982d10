//! What one instance's `Store` holds: its WASI context, its wasi:http context and the
//! resource table both share, its variables, its key-value stores, and its limits. A new
//! one is built for every instance and dropped with it; an instance serves one request,
//! or several when it is reused (see [`super::instances`]).

use std::sync::Arc;

use anyhow::{Context, Result};
use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store, StoreLimits};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::deadline;
use super::env::GuestEnv;
use super::keyvalue::guest::KeyValueContext;
use super::keyvalue::stores::StoreGrant;
use super::limits::InstanceLimits;
use super::occupancy::Occupancy;
use super::outbound::{Outbound, OutboundHooks};
use super::output::{GuestOutput, Stream};
use super::variables::{Variables, WithVariables};

/// What every instance of one component is made with.
#[derive(Clone)]
pub struct InstanceRecipe {
    pub env: GuestEnv,
    /// The folder the guest sees read-only at `/`; each instance keeps it alive.
    pub files: Option<Arc<tempfile::TempDir>>,
    /// The component's egress policy and connection pool.
    pub outbound: Arc<Outbound>,
    pub variables: Variables,
    /// The key-value stores the component may open.
    pub key_value: StoreGrant,
    pub limits: InstanceLimits,
}

/// The data of one instance's `Store`.
pub struct InstanceState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    limits: StoreLimits,
    outbound: OutboundHooks,
    variables: Variables,
    key_value: KeyValueContext,
    _files: Option<Arc<tempfile::TempDir>>,
}

impl InstanceState {
    /// A fresh state from `recipe`: its environment, no arguments, no sockets, no files
    /// but the recipe's; stdout and stderr go to the host's log, tagged with the
    /// requests `occupancy` says the instance serves; outgoing HTTP requests go through
    /// the component's egress policy.
    pub fn new(recipe: &InstanceRecipe, occupancy: &Arc<Occupancy>) -> Result<Self> {
        let mut wasi = WasiCtx::builder();
        wasi.envs(recipe.env.vars())
            .stdout(GuestOutput::new(Stream::Stdout, occupancy.clone()))
            .stderr(GuestOutput::new(Stream::Stderr, occupancy.clone()));
        if let Some(files) = &recipe.files {
            let path = files.path();
            wasi.preopened_dir(path, "/", FsPerms::ReadOnly)
                .map_err(anyhow::Error::from)
                .with_context(|| {
                    format!("cannot open the component's files in `{}`", path.display())
                })?;
        }
        let mut table = ResourceTable::new();
        table.set_max_capacity(recipe.limits.max_resources);
        Ok(Self {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table,
            limits: recipe.limits.store_limits(),
            outbound: recipe.outbound.hooks(occupancy.clone()),
            variables: recipe.variables.clone(),
            key_value: KeyValueContext::new(
                recipe.key_value.clone(),
                recipe.limits.key_value,
                occupancy.clone(),
            ),
            _files: recipe.files.clone(),
        })
    }
}

impl InstanceState {
    /// The instance's key-value state, and the table its opened stores live in.
    pub fn key_value(&mut self) -> (&mut KeyValueContext, &mut ResourceTable) {
        (&mut self.key_value, &mut self.table)
    }
}

impl WithVariables for InstanceState {
    fn variables(&self) -> &Variables {
        &self.variables
    }
}

/// A store on `engine` holding `state`, its limiter enforcing the instance limits, its
/// guest yielding when it computes for long.
pub fn new_store(engine: &Engine, state: InstanceState) -> Store<InstanceState> {
    let mut store = Store::new(engine, state);
    store.limiter(|state| &mut state.limits);
    deadline::yield_when_busy(&mut store);
    store
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for InstanceState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}
