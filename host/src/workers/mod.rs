//! `--workers N`: N serving processes on one port, so that guests running on different
//! cores never share an address space.
//!
//! Why processes rather than threads: a guest's first write to a page of its
//! copy-on-write heap image, and every `madvise` that recycles a pool slot, changes the
//! page tables of the whole process, and the kernel then interrupts every other core
//! running that process to flush its TLB. On a 2-core VM a Python guest at 80
//! connections spent half of its CPU time in those interrupts. Each process here runs
//! one async thread, so its page-table changes interrupt no other core.
//!
//! The process the user started is the primary. It loads the component (pulls, checks
//! and compiles it), binds the port, starts the secondaries (the same executable and
//! arguments, told their role by [`crate::config::SECONDARY_ENV`]) and serves like any of
//! them. Each secondary gets its socket as its stdin: a socket of its own bound to the
//! same port with `SO_REUSEPORT`, so the kernel spreads new connections evenly, or, where
//! that is refused (gVisor), a copy of the primary's, which every process accepts from.
//! Its stdout is the primary's private HTTP/1 connection to it. A secondary never reads
//! or pulls the code: the primary hands it every version it publishes, a single
//! component as the primary compiled it, so every worker serves the very bytes the
//! primary checked. A secondary listens on its socket only once it has its first
//! version, so no connection waits for a worker still loading. Only the primary has the
//! admin and metrics endpoints, SIGHUP and `--watch`; over that connection it has every
//! secondary load each new version before any serves it, reads their metrics to serve
//! the sum, and tells them to stop when it stops. A secondary also stops when that
//! connection closes, so none outlives the primary; the primary stops, with an error,
//! when a secondary exits on its own or cannot load the first version.

mod primary;
mod protocol;
mod secondary;

pub use self::primary::{Secondaries, SecondaryLinks};
pub use self::secondary::{follow, inherited_socket};
