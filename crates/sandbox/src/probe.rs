//! What this kernel and this user can enforce, checked live. A sandbox is applied in full or
//! not at all: `run` refuses when any feature is missing unless told, by a flag named
//! `--dangerously-…`, to run degraded.

use std::fmt;

use serde::Serialize;

/// One kernel feature the sandbox relies on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Feature {
    /// User, mount, PID, network, IPC and UTS namespaces for this user.
    Namespaces,
    /// Landlock, for filesystem and TCP rules that mirror the mounts.
    Landlock,
    /// seccomp filters with user notification (the exec monitor).
    Seccomp,
    /// overlayfs, for the ephemeral workdir.
    Overlayfs,
    /// A cgroup hierarchy with the memory, pids and cpu controllers (v2, or v1).
    Cgroups,
}

impl Feature {
    /// Every feature, in the order the sandbox applies them.
    pub const ALL: [Feature; 5] =
        [Feature::Namespaces, Feature::Overlayfs, Feature::Landlock, Feature::Seccomp, Feature::Cgroups];

    /// The name used in messages, in `--json` and in `PORTCULLIS_SIMULATE_MISSING`.
    pub fn as_str(self) -> &'static str {
        match self {
            Feature::Namespaces => "namespaces",
            Feature::Landlock => "landlock",
            Feature::Seccomp => "seccomp",
            Feature::Overlayfs => "overlayfs",
            Feature::Cgroups => "cgroups",
        }
    }
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Feature::Namespaces => "namespaces",
            Feature::Landlock => "Landlock",
            Feature::Seccomp => "seccomp user notification",
            Feature::Overlayfs => "overlayfs",
            Feature::Cgroups => "cgroups (memory, pids, cpu)",
        })
    }
}

/// Which cgroup hierarchy would carry the limits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CgroupBackend {
    /// The unified hierarchy with the needed controllers enabled.
    V2,
    /// Legacy per-controller hierarchies.
    V1,
}

/// The result for one feature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    /// The feature.
    pub feature: Feature,
    /// Whether it can be enforced.
    pub available: bool,
    /// What was found: a version, a backend, or why it is missing.
    pub detail: String,
}

/// Everything the probe found.
#[derive(Clone, Debug, Serialize)]
pub struct Probe {
    /// One entry per feature, in [`Feature::ALL`] order.
    pub checks: Vec<Check>,
    /// The Landlock ABI, when available.
    pub landlock_abi: Option<u32>,
    /// The cgroup backend the limits would use.
    pub cgroups: Option<CgroupBackend>,
}

impl Probe {
    /// Probes the running kernel as the current user.
    ///
    /// `PORTCULLIS_SIMULATE_MISSING` (a comma-separated list of feature names) makes the probe
    /// report those features as missing. It exists for tests of the refusal path: it can only
    /// make Portcullis refuse more, never enforce less.
    pub fn run() -> Probe {
        Probe::collect(true)
    }

    /// As [`Probe::run`], without the two live trials (a child in new namespaces, a probe
    /// cgroup): for `run`, whose own session start is that trial and fails naming the feature.
    pub fn without_trials() -> Probe {
        Probe::collect(false)
    }

    fn collect(live: bool) -> Probe {
        let simulated: Vec<String> = std::env::var("PORTCULLIS_SIMULATE_MISSING")
            .map(|v| v.split(',').map(|s| s.trim().to_ascii_lowercase()).collect())
            .unwrap_or_default();
        let mut landlock_abi = None;
        let mut cgroups = None;
        let checks = Feature::ALL
            .iter()
            .map(|&feature| {
                if simulated.iter().any(|s| s == feature.as_str()) {
                    return Check {
                        feature,
                        available: false,
                        detail: "reported missing by PORTCULLIS_SIMULATE_MISSING".into(),
                    };
                }
                let found = match feature {
                    Feature::Namespaces if !live => Ok("checked when the session starts".to_owned()),
                    Feature::Cgroups if !live => {
                        cgroup_backend().inspect(|(b, _)| cgroups = Some(b.clone())).map(|(_, d)| d)
                    }
                    Feature::Namespaces => crate::sys::try_namespaces()
                        .map(|()| "user, mount, pid, net, ipc and uts namespaces".to_owned())
                        .map_err(|e| e.to_string()),
                    Feature::Landlock => landlock().inspect(|(abi, _)| landlock_abi = Some(*abi)).map(|(_, d)| d),
                    Feature::Seccomp => seccomp(),
                    Feature::Overlayfs => overlayfs(),
                    Feature::Cgroups => cgroup_backend()
                        .and_then(|(backend, detail)| {
                            // A hierarchy this user cannot write (v1 without delegation) is no use.
                            // Unique per call: probes may run at the same time in one process.
                            static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let name = format!("portcullis-probe-{}-{n}", std::process::id());
                            // Every controller, with limits that bind nothing (the cgroup stays empty).
                            let limits = crate::cgroup::CgroupLimits {
                                memory: Some(1 << 40),
                                pids: Some(1 << 20),
                                cpu_quota_us: Some(100_000),
                            };
                            crate::cgroup::Cgroup::create(backend.clone(), &name, limits)
                                .map(|_| (backend, detail))
                                .map_err(|e| {
                                    let cause =
                                        std::error::Error::source(&e).map(|s| format!(": {s}")).unwrap_or_default();
                                    format!("cannot create a cgroup as this user ({e}{cause})")
                                })
                        })
                        .inspect(|(b, _)| cgroups = Some(b.clone()))
                        .map(|(_, d)| d),
                };
                match found {
                    Ok(detail) => Check { feature, available: true, detail },
                    Err(detail) => Check { feature, available: false, detail },
                }
            })
            .collect();
        Probe { checks, landlock_abi, cgroups }
    }

    /// The features that are missing.
    pub fn missing(&self) -> Vec<Feature> {
        self.checks.iter().filter(|c| !c.available).map(|c| c.feature).collect()
    }
}

fn landlock() -> Result<(u32, String), String> {
    match crate::sys::landlock_abi() {
        Ok(abi) => {
            let abi = u32::try_from(abi).map_err(|_| "the kernel returned a negative ABI".to_owned())?;
            Ok((abi, format!("ABI {abi}")))
        }
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::OPNOTSUPP.raw_os_error()) => {
            Err("built into the kernel but not enabled at boot (add `landlock` to the `lsm=` list)".into())
        }
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOSYS.raw_os_error()) => {
            Err("not built into this kernel".into())
        }
        Err(e) => Err(format!("the probe failed: {e}")),
    }
}

fn seccomp() -> Result<String, String> {
    match crate::sys::seccomp_user_notif_available() {
        Ok(true) => Ok("filters with user notification".into()),
        Ok(false) => Err("user notification is not available (a kernel before 5.0?)".into()),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) || e.raw_os_error() == Some(libc::ENOSYS) => {
            Err("not built into this kernel".into())
        }
        Err(e) => Err(format!("the probe failed: {e}")),
    }
}

fn overlayfs() -> Result<String, String> {
    let filesystems =
        crate::read_kernel_file("/proc/filesystems").map_err(|e| format!("cannot read /proc/filesystems: {e}"))?;
    if filesystems.lines().any(|l| l.split_whitespace().last() == Some("overlay")) {
        Ok("overlay filesystem registered".into())
    } else {
        Err("the overlay filesystem is not registered (modprobe overlay)".into())
    }
}

const NEEDED: [&str; 3] = ["memory", "pids", "cpu"];

/// v2 when its controllers are enabled, else v1 when each needed controller is mounted.
fn cgroup_backend() -> Result<(CgroupBackend, String), String> {
    let mounts = crate::read_kernel_file("/proc/self/mounts").map_err(|e| format!("cannot read mounts: {e}"))?;
    let v2_root = mounts
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.get(2) == Some(&"cgroup2"))
        .and_then(|f| f.get(1).map(|s| (*s).to_owned()));
    if let Some(root) = &v2_root {
        let controllers = crate::read_kernel_file(format!("{root}/cgroup.controllers")).unwrap_or_default();
        let have: Vec<&str> = controllers.split_whitespace().collect();
        if NEEDED.iter().all(|c| have.contains(c)) {
            return Ok((CgroupBackend::V2, format!("cgroup v2 at {root}")));
        }
    }
    let v1: Vec<&str> = mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&"cgroup")).then(|| f.get(3).copied().unwrap_or_default())
        })
        .flat_map(|opts| opts.split(','))
        .collect();
    let missing: Vec<&str> = NEEDED.iter().filter(|c| !v1.contains(c)).copied().collect();
    if missing.is_empty() {
        return Ok((CgroupBackend::V1, "cgroup v1 controllers memory, pids, cpu".into()));
    }
    Err(format!(
        "no hierarchy offers {}: {}",
        missing.join(", "),
        if v2_root.is_some() {
            "cgroup v2 is mounted without these controllers, and v1 lacks them"
        } else {
            "no cgroup v2 and no v1 controllers"
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On CI (`PORTCULLIS_REQUIRE_SANDBOX=1`) every feature must be present.
    #[test]
    fn every_feature_is_present_where_the_sandbox_is_required() {
        let probe = Probe::run();
        let missing = probe.missing();
        if std::env::var("PORTCULLIS_REQUIRE_SANDBOX").as_deref() == Ok("1") {
            assert!(missing.is_empty(), "missing: {:?}", probe.checks);
            assert!(probe.landlock_abi.is_some_and(|abi| abi >= 1));
            assert!(probe.cgroups.is_some());
        } else if !missing.is_empty() {
            eprintln!("skipping the presence check here: missing {missing:?}");
        }
        assert_eq!(probe.checks.len(), Feature::ALL.len());
    }
}
