//! What one instance's `Store` holds: its WASI context, its wasi:http context and the
//! resource table both share, under the instance limits and the request's deadline. A
//! new one is built for every request and dropped with it, so no state leaks from one
//! request to the next.

use std::path::Path;

use anyhow::{Context, Result};
use tokio::time::Instant;
use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store, StoreLimits};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::deadline;
use super::env::GuestEnv;
use super::limits::InstanceLimits;
use super::outbound::OutboundHooks;
use super::output::{GuestOutput, Stream};

/// The data of one instance's `Store`.
pub struct InstanceState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    limits: StoreLimits,
    outbound: OutboundHooks,
}

impl InstanceState {
    /// A fresh state for request `request_id`: `env` as its environment, no arguments,
    /// no sockets, and no files but `files`, read-only at `/`, if given; stdout and
    /// stderr go to the host's log, tagged with the request; outgoing HTTP requests go
    /// through `outbound`, the egress policy of the component.
    pub fn new(
        request_id: u64,
        limits: &InstanceLimits,
        env: &GuestEnv,
        files: Option<&Path>,
        outbound: OutboundHooks,
    ) -> Result<Self> {
        let mut wasi = WasiCtx::builder();
        wasi.envs(env.vars())
            .stdout(GuestOutput::new(Stream::Stdout, request_id))
            .stderr(GuestOutput::new(Stream::Stderr, request_id));
        if let Some(files) = files {
            wasi.preopened_dir(files, "/", FsPerms::ReadOnly)
                .map_err(anyhow::Error::from)
                .with_context(|| {
                    format!("cannot open the component's files in `{}`", files.display())
                })?;
        }
        let mut table = ResourceTable::new();
        table.set_max_capacity(limits.max_resources);
        Ok(Self {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table,
            limits: limits.store_limits(),
            outbound,
        })
    }
}

/// A store on `engine` holding `state`, its limiter enforcing the instance limits, its
/// guest interrupted at `deadline`.
pub fn new_store(engine: &Engine, state: InstanceState, deadline: Instant) -> Store<InstanceState> {
    let mut store = Store::new(engine, state);
    store.limiter(|state| &mut state.limits);
    deadline::arm(&mut store, deadline);
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
