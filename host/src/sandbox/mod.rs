//! What one guest instance gets, and nothing more: its store (WASI and wasi:http
//! contexts over one resource table), its environment, its stdout and stderr as log
//! lines, its memory and table caps, the epoch deadline that stops it, and its outbound
//! requests under the host's policy. Imports only `observe` and `http`.

pub mod deadline;
pub mod env;
pub mod limits;
pub mod outbound;
pub mod output;
pub mod store;
