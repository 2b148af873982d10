//! What one request's `Store` holds: its WASI context, its wasi:http context and the
//! resource table both share. A new one is built for every request and dropped with it,
//! so no state leaks from one request to the next.

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::guest_output::{GuestOutput, Stream};

/// The data of one request's `Store`.
pub struct RequestState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
}

impl RequestState {
    /// A fresh state for request `request_id`: no arguments, no environment, no files, no
    /// sockets; stdout and stderr go to the host's log, tagged with the request.
    pub fn new(request_id: u64) -> Self {
        let wasi = WasiCtx::builder()
            .stdout(GuestOutput::new(Stream::Stdout, request_id))
            .stderr(GuestOutput::new(Stream::Stderr, request_id))
            .build();
        Self {
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
        }
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
            hooks: Default::default(),
        }
    }
}
