//! Swapping the code while the host serves: the active version every request reads
//! once, how a version is loaded and handed to the other workers, the triggers that load
//! a new one (SIGHUP, `--watch`), and the admin endpoint that shows it and takes uploads.
//! Imports `load`, `sandbox`, `observe` and `http`.

pub mod active;
pub mod admin;
pub mod loader;
pub mod triggers;
