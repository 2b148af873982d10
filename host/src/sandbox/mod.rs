//! What one guest instance gets, and nothing more: its store (WASI and wasi:http
//! contexts over one resource table), its environment and variables, its key-value stores, its stdout and
//! stderr as log lines, its memory and table caps, the epoch callback that makes it
//! yield, its outbound requests under the host's policy, and how instances are made,
//! reused and retired. Imports only `observe` and `http`.

pub mod deadline;
pub mod env;
pub mod instances;
pub mod keyvalue;
pub mod limits;
pub mod occupancy;
pub mod outbound;
pub mod output;
pub mod store;
pub mod variables;
