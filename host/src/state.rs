//! What one request's `Store` holds: its WASI context, its wasi:http context and the
//! resource table both share. A new one is built for every request and dropped with it,
//! so no state leaks from one request to the next.

use std::path::Path;

use anyhow::{Context, Result};
use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::guest_env::GuestEnv;
use crate::guest_output::{GuestOutput, Stream};
use crate::limits::InstanceLimits;
use crate::outbound::OutboundHooks;

/// The data of one request's `Store`.
pub struct RequestState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    limits: StoreLimits,
    outbound: OutboundHooks,
}

impl RequestState {
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

    /// The memory and table caps the store's limiter enforces.
    pub fn limits(&mut self) -> &mut StoreLimits {
        &mut self.limits
    }
}

impl WasiView for RequestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for RequestState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}
