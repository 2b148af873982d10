//! What configuration reads besides the command line: environment variables that are
//! settings but not flags (tokens, credentials, the platform's names, Spin variables),
//! and the CPUs this process may use. Read once and handed in, so that checking a
//! configuration does no I/O and every check has a unit test.

use std::path::Path;

use super::cpus::{CpuCgroup, Cpus, allowed_cpus};

/// The outside world as configuration sees it.
pub struct HostEnv {
    vars: Vec<(String, String)>,
    cpus: Cpus,
    open_files_limit: Option<u64>,
}

impl HostEnv {
    /// This process's environment and CPUs.
    pub fn of_this_process() -> Self {
        // `available_parallelism` would do, but for the quota it already applies.
        let available = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|status| allowed_cpus(&status))
            .unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map_or(1, |cpus| u32::try_from(cpus.get()).unwrap_or(u32::MAX))
            });
        let cpus = Cpus {
            available,
            quota: cgroup_cpu_quota(),
        };
        let vars = std::env::vars_os()
            .map(|(name, value)| {
                let lossy = |text: std::ffi::OsString| text.to_string_lossy().into_owned();
                (lossy(name), lossy(value))
            })
            .collect();
        // `None` when unlimited.
        let open_files_limit =
            rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
        Self {
            vars,
            cpus,
            open_files_limit,
        }
    }

    /// A made-up world: `vars` as the environment, `available_cpus` CPUs.
    #[cfg(test)]
    pub fn fake(vars: &[(&str, &str)], available_cpus: u32) -> Self {
        Self {
            vars: vars
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
            cpus: Cpus {
                available: available_cpus,
                quota: None,
            },
            open_files_limit: Some(1024),
        }
    }

    /// The same world with an open-file limit of `limit` (`None`: unlimited).
    #[cfg(test)]
    pub fn with_open_files_limit(self, limit: Option<u64>) -> Self {
        Self {
            open_files_limit: limit,
            ..self
        }
    }

    /// The variable `name`, if set.
    pub fn var(&self, name: &str) -> Option<String> {
        self.vars
            .iter()
            .find(|(known, _)| known == name)
            .map(|(_, value)| value.clone())
    }

    /// The variable `name`, if set and not empty.
    pub fn non_empty(&self, name: &str) -> Option<String> {
        self.var(name).filter(|value| !value.is_empty())
    }

    /// The secret in variable `name`, if set and not empty, without the line ending a
    /// secret file often has (a secret mounted or stored from `echo TOKEN > file`).
    pub fn secret(&self, name: &str) -> Option<String> {
        let value = self.var(name)?;
        let trimmed = value.strip_suffix('\n').unwrap_or(&value);
        let trimmed = trimmed.strip_suffix('\r').unwrap_or(trimmed);
        Some(trimmed.to_owned()).filter(|secret| !secret.is_empty())
    }

    /// Every variable whose name starts with `prefix`.
    pub fn with_prefix(&self, prefix: &str) -> Vec<(String, String)> {
        self.vars
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// The CPUs this process may use.
    pub fn cpus(&self) -> Cpus {
        self.cpus
    }

    /// How many files this process may have open at once, if it is limited.
    pub fn open_files_limit(&self) -> Option<u64> {
        self.open_files_limit
    }
}

/// The CPU limit of this process's cgroup, if it has one; none where the cgroup files
/// cannot be read (not Linux, no `/proc`).
fn cgroup_cpu_quota() -> Option<super::cpus::CpuQuota> {
    let read = |path: &Path| std::fs::read_to_string(path).ok();
    let cgroup = CpuCgroup::locate(
        &read(Path::new("/proc/self/cgroup"))?,
        &read(Path::new("/proc/self/mountinfo"))?,
    )?;
    cgroup.quota(read)
}
