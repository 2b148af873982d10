//! What configuration reads besides the command line: environment variables that are
//! settings but not flags (tokens, credentials, the platform's names), and the CPUs this
//! process may use. Injected, so that checking a configuration does no I/O and every
//! check has a unit test.

/// Reads one environment variable.
type VarReader = Box<dyn Fn(&str) -> Option<String>>;

/// The outside world as configuration sees it.
pub struct HostEnv {
    var: VarReader,
    available_cpus: u32,
}

impl HostEnv {
    /// This process's environment and CPUs.
    pub fn of_this_process() -> Self {
        let available_cpus = std::thread::available_parallelism()
            .map_or(1, |cpus| u32::try_from(cpus.get()).unwrap_or(u32::MAX));
        Self {
            var: Box::new(|name| {
                std::env::var_os(name).map(|value| value.to_string_lossy().into_owned())
            }),
            available_cpus,
        }
    }

    /// A made-up world: `vars` as the environment, `available_cpus` CPUs.
    #[cfg(test)]
    pub fn fake(vars: &[(&str, &str)], available_cpus: u32) -> Self {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        Self {
            var: Box::new(move |name| {
                vars.iter()
                    .find(|(known, _)| known == name)
                    .map(|(_, value)| value.clone())
            }),
            available_cpus,
        }
    }

    /// The variable `name`, if set.
    pub fn var(&self, name: &str) -> Option<String> {
        (self.var)(name)
    }

    /// The variable `name`, if set and not empty.
    pub fn non_empty(&self, name: &str) -> Option<String> {
        self.var(name).filter(|value| !value.is_empty())
    }

    /// How many CPUs this process may use.
    pub fn available_cpus(&self) -> u32 {
        self.available_cpus
    }
}
