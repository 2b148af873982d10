//! What configuration reads besides the command line: environment variables that are
//! settings but not flags (tokens, credentials, the platform's names, Spin variables),
//! and the CPUs this process may use. Read once and handed in, so that checking a
//! configuration does no I/O and every check has a unit test.

/// The outside world as configuration sees it.
pub struct HostEnv {
    vars: Vec<(String, String)>,
    available_cpus: u32,
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
        Self {
            vars,
            available_cpus,
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

    /// Every variable whose name starts with `prefix`.
    pub fn with_prefix(&self, prefix: &str) -> Vec<(String, String)> {
        self.vars
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// How many CPUs this process may use.
    pub fn available_cpus(&self) -> u32 {
        self.available_cpus
    }
}
