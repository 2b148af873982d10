//! HTTP pieces every stage shares: body wrappers, the host's own short responses, and
//! the TLS settings of outgoing connections. A leaf: it imports nothing of the crate.

pub mod body;
pub mod response;
pub mod tls;
