//! What configuration reads besides the command line: environment variables that are
//! settings but not flags (tokens, credentials, the platform's names, Spin variables),
//! and the CPUs this process may use. Read once and handed in, so that checking a
//! configuration does no I/O and every check has a unit test.

/// The outside world as configuration sees it.
pub struct HostEnv {
    vars: Vec<(String, String)>,
    available_cpus: u32,
    open_files_limit: Option<u64>,
}

impl HostEnv {
    /// This process's environment and CPUs.
    pub fn of_this_process() -> Self {
        let available_cpus = std::thread::available_parallelism()
            .map_or(1, |cpus| u32::try_from(cpus.get()).unwrap_or(u32::MAX));
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
            available_cpus,
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
            available_cpus,
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

    /// How many files this process may have open at once, if it is limited.
    pub fn open_files_limit(&self) -> Option<u64> {
        self.open_files_limit
    }

    /// How many CPUs this process may use.
    pub fn available_cpus(&self) -> u32 {
        self.available_cpus
    }
}
