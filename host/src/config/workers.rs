//! How many serving processes run, and which one this is: parsed without looking at the
//! machine, resolved against it by [`super::HostEnv`].

use std::str::FromStr;

use anyhow::{Result, anyhow, bail};

use super::cpus::Cpus;

/// Set in a secondary's environment: its number. It is internal to the host, not a
/// setting.
pub const SECONDARY_ENV: &str = "WASI_HOST_SECONDARY";

/// `--workers`: a number of serving processes, or one per CPU this process may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerCount {
    /// Exactly this many, at least one.
    Fixed(u32),
    /// One per CPU.
    Auto,
}

impl FromStr for WorkerCount {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Self> {
        if text == "auto" {
            return Ok(Self::Auto);
        }
        let count: u32 = text
            .parse()
            .map_err(|_| anyhow!("expected a number of workers or `auto`"))?;
        if count == 0 {
            bail!("at least one worker is needed");
        }
        Ok(Self::Fixed(count))
    }
}

impl WorkerCount {
    /// The number of processes, given the CPUs this process may use, and how it was
    /// chosen, for the log.
    pub fn resolve(self, cpus: &Cpus) -> (u32, String) {
        match self {
            Self::Fixed(count) => (count, "as --workers says".to_owned()),
            Self::Auto => (cpus.count(), format!("one per CPU of {cpus}")),
        }
    }
}

/// What a secondary is told by the primary that started it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecondaryRole {
    /// 2 for the first secondary; the primary is 1.
    pub number: u32,
}

impl SecondaryRole {
    /// The role `value` of [`SECONDARY_ENV`] names; `None` when unset, as in the
    /// process a user started.
    pub fn parse(value: Option<&str>) -> Result<Option<Self>> {
        let Some(value) = value else {
            return Ok(None);
        };
        match value.parse() {
            Ok(number) if number >= 2 => Ok(Some(Self { number })),
            _ => bail!("${SECONDARY_ENV} is `{value}`, not a worker number"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_counts() {
        assert_eq!("3".parse::<WorkerCount>().unwrap(), WorkerCount::Fixed(3));
        assert_eq!("auto".parse::<WorkerCount>().unwrap(), WorkerCount::Auto);
        for bad in ["0", "-1", "many", ""] {
            assert!(bad.parse::<WorkerCount>().is_err(), "{bad}");
        }
    }

    #[test]
    fn auto_is_one_per_cpu_and_never_none() {
        let available = |available| Cpus {
            available,
            quota: None,
        };
        assert_eq!(WorkerCount::Auto.resolve(&available(6)).0, 6);
        assert_eq!(WorkerCount::Auto.resolve(&available(0)).0, 1);
        let (count, chosen) = WorkerCount::Fixed(3).resolve(&available(6));
        assert_eq!((count, chosen.as_str()), (3, "as --workers says"));
        let (_, chosen) = WorkerCount::Auto.resolve(&available(6));
        assert_eq!(
            chosen,
            "one per CPU of the 6 CPUs available (no cgroup CPU limit)"
        );
    }

    #[test]
    fn secondary_roles() {
        assert_eq!(SecondaryRole::parse(None).unwrap(), None);
        assert_eq!(
            SecondaryRole::parse(Some("2")).unwrap(),
            Some(SecondaryRole { number: 2 })
        );
        for bad in ["1", "0", "x", ""] {
            let error = SecondaryRole::parse(Some(bad)).unwrap_err().to_string();
            assert!(error.contains("not a worker number"), "{bad}: {error}");
        }
    }
}
