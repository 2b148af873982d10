//! How many CPUs this process may use, for `--workers auto`: the CPU limit of its
//! cgroup when it has one, else the CPUs the kernel lets it run on. Everything here
//! parses the text of `/proc/self/cgroup`, `/proc/self/mountinfo` and the cgroup files,
//! handed in by [`super::HostEnv`], which reads them.
//!
//! Rust's `available_parallelism` reads the same quota, but rounds it down and cannot
//! say where its number came from, so the CPUs the process may run on are read from its
//! affinity instead (`Cpus_allowed_list` in `/proc/self/status`). A pod with no CPU
//! limit (on GKE, a plain Deployment) has no quota, and then sees every core of the node.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// A cgroup's CPU bandwidth limit: `quota` microseconds of CPU time every `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuQuota {
    pub quota_us: u64,
    pub period_us: u64,
    pub version: CgroupVersion,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

impl CpuQuota {
    /// A cgroup v2 `cpu.max`: `QUOTA PERIOD`, or `max PERIOD` for no limit (`None`).
    pub fn from_cpu_max(text: &str) -> Result<Option<Self>> {
        let mut fields = text.split_whitespace();
        let (Some(quota), period, None) = (fields.next(), fields.next(), fields.next()) else {
            bail!(
                "expected `QUOTA PERIOD` in cpu.max, found `{}`",
                text.trim()
            );
        };
        if quota == "max" {
            return Ok(None);
        }
        // The period is optional when written, and 100 ms by default.
        let period = period.unwrap_or("100000");
        Self::new(quota, period, CgroupVersion::V2).map(Some)
    }

    /// A cgroup v1 `cpu.cfs_quota_us` and `cpu.cfs_period_us`; a quota of `-1` is no
    /// limit (`None`).
    pub fn from_cfs(quota: &str, period: &str) -> Result<Option<Self>> {
        if quota.trim() == "-1" {
            return Ok(None);
        }
        Self::new(quota.trim(), period.trim(), CgroupVersion::V1).map(Some)
    }

    fn new(quota: &str, period: &str, version: CgroupVersion) -> Result<Self> {
        let number = |text: &str| {
            text.parse::<u64>()
                .ok()
                .filter(|value| *value > 0)
                .with_context(|| format!("`{text}` is not a number of microseconds"))
        };
        Ok(Self {
            quota_us: number(quota)?,
            period_us: number(period)?,
            version,
        })
    }

    /// The processes that can use all of it: whole CPUs, rounded up.
    pub fn cpus(self) -> u32 {
        u32::try_from(self.quota_us.div_ceil(self.period_us)).unwrap_or(u32::MAX)
    }

    /// The tighter of two limits.
    fn min(self, other: Self) -> Self {
        // quota / period < other.quota / other.period, without division.
        let ours = u128::from(self.quota_us) * u128::from(other.period_us);
        let theirs = u128::from(other.quota_us) * u128::from(self.period_us);
        if ours <= theirs { self } else { other }
    }
}

impl fmt::Display for CpuQuota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let version = match self.version {
            CgroupVersion::V1 => "v1",
            CgroupVersion::V2 => "v2",
        };
        let cpus = self.quota_us as f64 / self.period_us as f64;
        write!(
            f,
            "the cgroup {version} CPU limit of {cpus:.2} CPUs ({} µs every {} µs)",
            self.quota_us, self.period_us
        )
    }
}

/// The CPUs this process may use, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cpus {
    /// The CPUs the kernel lets this process run on.
    pub available: u32,
    /// Its cgroup's CPU limit, if any.
    pub quota: Option<CpuQuota>,
}

impl Cpus {
    /// One process per CPU of the quota, never more than the CPUs available, and at
    /// least one.
    pub fn count(&self) -> u32 {
        let count = match self.quota {
            Some(quota) => quota.cpus().min(self.available),
            None => self.available,
        };
        count.max(1)
    }
}

impl fmt::Display for Cpus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.quota {
            Some(quota) if quota.cpus() <= self.available => write!(f, "{quota}, rounded up"),
            Some(quota) => write!(
                f,
                "the {} CPUs available, fewer than {quota}",
                self.available
            ),
            None => write!(
                f,
                "the {} CPUs available (no cgroup CPU limit)",
                self.available
            ),
        }
    }
}

/// The number of CPUs in a kernel CPU list (`0-3,8,10-11`), as `Cpus_allowed_list` in
/// `/proc/self/status` gives the CPUs a process may run on.
pub fn cpus_in_list(list: &str) -> Result<u32> {
    let mut count = 0u32;
    for range in list.trim().split(',') {
        let number = |text: &str| {
            text.parse::<u32>()
                .with_context(|| format!("`{range}` is not a CPU or a range of CPUs"))
        };
        let (first, last) = match range.split_once('-') {
            Some((first, last)) => (number(first)?, number(last)?),
            None => (number(range)?, number(range)?),
        };
        if last < first {
            bail!("`{range}` is not a range of CPUs");
        }
        count = count.saturating_add(last - first + 1);
    }
    Ok(count)
}

/// The `Cpus_allowed_list` of a `/proc/PID/status`.
pub fn allowed_cpus(proc_self_status: &str) -> Option<u32> {
    let list = proc_self_status
        .lines()
        .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))?;
    cpus_in_list(list).ok()
}

/// Where this process's CPU controller is, as `/proc/self/cgroup` and
/// `/proc/self/mountinfo` tell: the folder of its own cgroup, and of every cgroup above
/// it up to the mount, each of which may limit it.
#[derive(Debug, PartialEq, Eq)]
pub struct CpuCgroup {
    pub version: CgroupVersion,
    /// The process's cgroup first, then its parents, up to the mount point.
    pub folders: Vec<PathBuf>,
}

impl CpuCgroup {
    /// Finds the CPU controller: a cgroup v1 hierarchy that has it, else the v2 one.
    pub fn locate(proc_self_cgroup: &str, mountinfo: &str) -> Option<Self> {
        [CgroupVersion::V1, CgroupVersion::V2]
            .into_iter()
            .find_map(|version| {
                let path = membership(proc_self_cgroup, version)?;
                let (root, mount_point) = mount(mountinfo, version)?;
                // Within a cgroup namespace, or a mount of a subtree, the path is
                // relative to the mount's root.
                let relative = Path::new(path).strip_prefix(root).ok()?;
                let mut folder = Path::new(mount_point).join(relative);
                let mut folders = vec![folder.clone()];
                while folder != Path::new(mount_point) && folder.pop() {
                    folders.push(folder.clone());
                }
                Some(Self { version, folders })
            })
    }

    /// The tightest of the limits read from the cgroups' files, as `read` returns
    /// them (the text of one file in one folder, `None` if it is absent).
    pub fn quota(&self, mut read: impl FnMut(&Path) -> Option<String>) -> Option<CpuQuota> {
        let limits = self.folders.iter().filter_map(|folder| {
            let parsed = match self.version {
                CgroupVersion::V2 => CpuQuota::from_cpu_max(&read(&folder.join("cpu.max"))?),
                CgroupVersion::V1 => CpuQuota::from_cfs(
                    &read(&folder.join("cpu.cfs_quota_us"))?,
                    &read(&folder.join("cpu.cfs_period_us"))?,
                ),
            };
            parsed.ok().flatten()
        });
        limits.reduce(CpuQuota::min)
    }
}

/// The cgroup path of this process in the hierarchy of `version` (v1: the one with the
/// `cpu` controller).
fn membership(proc_self_cgroup: &str, version: CgroupVersion) -> Option<&str> {
    proc_self_cgroup.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (id, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        let found = match version {
            CgroupVersion::V2 => id == "0" && controllers.is_empty(),
            CgroupVersion::V1 => controllers.split(',').any(|name| name == "cpu"),
        };
        found.then_some(path)
    })
}

/// The root and mount point of the hierarchy of `version` (v1: the one with the `cpu`
/// controller).
fn mount(mountinfo: &str, version: CgroupVersion) -> Option<(&str, &str)> {
    mountinfo.lines().find_map(|line| {
        // ID PARENT MAJOR:MINOR ROOT MOUNT-POINT OPTIONS [OPTIONAL...] - TYPE SOURCE SUPER-OPTIONS
        let (mount, filesystem) = line.split_once(" - ")?;
        let mount: Vec<&str> = mount.split(' ').collect();
        let filesystem: Vec<&str> = filesystem.split(' ').collect();
        let found = match version {
            CgroupVersion::V2 => filesystem.first() == Some(&"cgroup2"),
            CgroupVersion::V1 => {
                filesystem.first() == Some(&"cgroup")
                    && filesystem
                        .get(2)
                        .is_some_and(|options| options.split(',').any(|option| option == "cpu"))
            }
        };
        found.then(|| Some((*mount.get(3)?, *mount.get(4)?)))?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(quota_us: u64, period_us: u64) -> CpuQuota {
        CpuQuota {
            quota_us,
            period_us,
            version: CgroupVersion::V2,
        }
    }

    #[test]
    fn cpu_max_as_cgroup_v2_writes_it() {
        assert_eq!(CpuQuota::from_cpu_max("max 100000\n").unwrap(), None);
        assert_eq!(
            CpuQuota::from_cpu_max("150000 100000\n").unwrap(),
            Some(v2(150000, 100000))
        );
        assert_eq!(
            CpuQuota::from_cpu_max("50000\n").unwrap(),
            Some(v2(50000, 100000))
        );
        for bad in ["", "\n", "lots 100000", "0 100000", "100000 0", "1 2 3"] {
            assert!(CpuQuota::from_cpu_max(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cfs_files_as_cgroup_v1_writes_them() {
        assert_eq!(CpuQuota::from_cfs("-1\n", "100000\n").unwrap(), None);
        let quota = CpuQuota::from_cfs("250000\n", "100000\n").unwrap().unwrap();
        assert_eq!((quota.quota_us, quota.period_us), (250000, 100000));
        assert_eq!(quota.version, CgroupVersion::V1);
        assert!(CpuQuota::from_cfs("x\n", "100000\n").is_err());
    }

    #[test]
    fn a_quota_counts_whole_cpus_rounded_up() {
        assert_eq!(v2(150000, 100000).cpus(), 2);
        assert_eq!(v2(100000, 100000).cpus(), 1);
        assert_eq!(v2(25000, 100000).cpus(), 1);
        assert_eq!(v2(400000, 100000).cpus(), 4);
        let cpus = |quota| Cpus {
            available: 2,
            quota,
        };
        assert_eq!(cpus(Some(v2(150000, 100000))).count(), 2);
        assert_eq!(cpus(Some(v2(50000, 100000))).count(), 1);
        // A limit above the CPUs the process may run on does not make more workers.
        assert_eq!(cpus(Some(v2(800000, 100000))).count(), 2);
        assert_eq!(cpus(None).count(), 2);
        assert_eq!(
            cpus(Some(v2(150000, 100000))).to_string(),
            "the cgroup v2 CPU limit of 1.50 CPUs (150000 µs every 100000 µs), rounded up"
        );
        assert_eq!(
            cpus(None).to_string(),
            "the 2 CPUs available (no cgroup CPU limit)"
        );
    }

    #[test]
    fn cpu_lists_as_the_kernel_writes_them() {
        assert_eq!(cpus_in_list("0-1\n").unwrap(), 2);
        assert_eq!(cpus_in_list("0").unwrap(), 1);
        assert_eq!(cpus_in_list("0-3,8,10-11").unwrap(), 7);
        for bad in ["", "3-1", "a-b", "0-"] {
            assert!(cpus_in_list(bad).is_err(), "{bad:?}");
        }
        let status = "Name:\tcat\nThreads:\t1\nCpus_allowed:\t3\nCpus_allowed_list:\t0-1\n\
                      Mems_allowed_list:\t0\n";
        assert_eq!(allowed_cpus(status), Some(2));
        assert_eq!(allowed_cpus("Name:\tcat\n"), None);
    }

    /// `/proc/self/cgroup` and `/proc/self/mountinfo` of a process in a cgroup v1
    /// hierarchy (a VM with every controller mounted on its own).
    const V1_CGROUP: &str = "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/3a5c\n\
                             3:cpuset:/\n2:cpuacct:/\n1:cpu:/serving/host\n0::/\n";
    const V1_MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    /// The same in a container on a cgroup v2 host (GKE's COS), in its own namespace.
    const V2_CGROUP: &str = "0::/\n";
    const V2_MOUNTINFO: &str = "\
1260 1259 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - cgroup2 cgroup ro
";

    #[test]
    fn the_cpu_controller_is_found_in_either_version() {
        let v1 = CpuCgroup::locate(V1_CGROUP, V1_MOUNTINFO).unwrap();
        assert_eq!(v1.version, CgroupVersion::V1);
        let expected: Vec<PathBuf> = [
            "/sys/fs/cgroup/cpu/serving/host",
            "/sys/fs/cgroup/cpu/serving",
            "/sys/fs/cgroup/cpu",
        ]
        .map(PathBuf::from)
        .to_vec();
        assert_eq!(v1.folders, expected);

        let v2 = CpuCgroup::locate(V2_CGROUP, V2_MOUNTINFO).unwrap();
        assert_eq!(v2.version, CgroupVersion::V2);
        assert_eq!(v2.folders, vec![PathBuf::from("/sys/fs/cgroup")]);

        // A subtree mounted as the root, as Docker does without a cgroup namespace.
        let subtree = "1 0 0:26 /kubepods/pod1 /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let inside = CpuCgroup::locate("0::/kubepods/pod1/c1\n", subtree).unwrap();
        assert_eq!(
            inside.folders,
            ["/sys/fs/cgroup/c1", "/sys/fs/cgroup"]
                .map(PathBuf::from)
                .to_vec()
        );
        assert_eq!(CpuCgroup::locate("", V2_MOUNTINFO), None);
    }

    #[test]
    fn the_tightest_limit_on_the_way_up_wins() {
        let cgroup = CpuCgroup::locate(V1_CGROUP, V1_MOUNTINFO).unwrap();
        let files = |path: &Path| {
            let text = match path.to_str()? {
                "/sys/fs/cgroup/cpu/serving/host/cpu.cfs_quota_us" => "-1\n",
                "/sys/fs/cgroup/cpu/serving/cpu.cfs_quota_us" => "150000\n",
                "/sys/fs/cgroup/cpu/cpu.cfs_quota_us" => "-1\n",
                name if name.ends_with("cpu.cfs_period_us") => "100000\n",
                _ => return None,
            };
            Some(text.to_owned())
        };
        let quota = cgroup.quota(files).unwrap();
        assert_eq!((quota.quota_us, quota.cpus()), (150000, 2));
        assert_eq!(cgroup.quota(|_| Some("-1\n".to_owned())), None);
        assert_eq!(cgroup.quota(|_| None), None);

        let v2 = CpuCgroup::locate(V2_CGROUP, V2_MOUNTINFO).unwrap();
        assert_eq!(v2.quota(|_| Some("max 100000\n".to_owned())), None);
        assert_eq!(
            v2.quota(|_| Some("200000 100000\n".to_owned())),
            Some(super::tests::v2(200000, 100000))
        );
    }
}
