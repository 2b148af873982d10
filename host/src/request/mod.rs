//! One request through the host: the caller check, admission, the request span and
//! access log, the route, a fresh guest instance and the call into it, and every
//! failure turned into a response. Imports `swap`, `config`, `load`, `sandbox`, `observe` and `http`.

pub mod admission;
pub mod caller_token;
pub mod failure;
pub mod guest_call;
pub mod handler;
pub mod service;
pub mod span;
