//! The host's defences and the commands that switch them off: audit and logging, firewalls,
//! mandatory access control, endpoint agents and kernel hardening.

use crate::shell::parse::Command;

/// Services whose stopping blinds the host's logs and audit.
const LOGGING_SERVICES: &[&str] = &[
    "auditd",
    "audit",
    "rsyslog",
    "syslog",
    "syslogd",
    "syslog-ng",
    "systemd-journald",
    "journald",
    "auditbeat",
    "filebeat",
    "osqueryd",
    "sysmon",
    "wazuh-agent",
    "ossec",
    "splunkd",
    "splunkforwarder",
    "fluentd",
    "fluent-bit",
    "td-agent",
    "metricbeat",
    "com.apple.syslogd",
    "com.apple.auditd",
];

/// Services whose stopping lowers the host's walls: firewalls, mandatory access control, EDR.
const DEFENCE_SERVICES: &[&str] = &[
    "firewalld",
    "ufw",
    "iptables",
    "ip6tables",
    "nftables",
    "netfilter-persistent",
    "apparmor",
    "selinux",
    "fail2ban",
    "falcon-sensor",
    "falcond",
    "cbagentd",
    "cbdaemon",
    "sentinelone",
    "sentinelagent",
    "mdatp",
    "wdavdaemon",
    "clamav-daemon",
    "clamd",
    "crowdstrike",
    "com.apple.alf",
    "pf",
];

/// Which of the host's defences a command switches off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Defence {
    /// The audit subsystem or the system logs.
    Logging,
    /// A firewall, mandatory access control, an endpoint agent or kernel hardening (ASLR).
    Walls,
}

/// Kernel settings that harden the host; writing them (usually to `0`) weakens it.
const HARDENING_KEYS: &[&str] = &[
    "kernel.randomize_va_space",
    "kernel.yama.ptrace_scope",
    "kernel.kptr_restrict",
    "kernel.dmesg_restrict",
    "kernel.perf_event_paranoid",
    "kernel.unprivileged_bpf_disabled",
    "kernel.unprivileged_userns_clone",
    "kernel.kexec_load_disabled",
    "kernel.modules_disabled",
    "fs.protected_symlinks",
    "fs.protected_hardlinks",
    "fs.protected_regular",
    "fs.protected_fifos",
    "fs.suid_dumpable",
    "vm.mmap_min_addr",
];

/// True for a path whose writing weakens the kernel or switches off MAC: the `/proc/sys` files
/// of [`HARDENING_KEYS`], SELinux's `enforce`, AppArmor's `enabled`.
pub(crate) fn is_defence_file(path: &str) -> bool {
    let path = path.trim_end_matches('/');
    path.strip_prefix("/proc/sys/").is_some_and(|key| HARDENING_KEYS.contains(&key.replace('/', ".").as_str()))
        || matches!(path, "/sys/fs/selinux/enforce" | "/selinux/enforce" | "/sys/module/apparmor/parameters/enabled")
}

/// The service or unit names a service manager acts on, when the action stops or disables them.
fn stopped_services(cmd: &Command) -> Vec<String> {
    let words: Vec<String> = cmd.args().iter().map(|w| w.text.to_ascii_lowercase()).collect();
    let stops = |w: &str| {
        matches!(
            w,
            "stop"
                | "force-stop"
                | "disable"
                | "mask"
                | "kill"
                | "unload"
                | "bootout"
                | "remove"
                | "delete"
                | "off"
                | "down"
        )
    };
    let unit = |w: &str| {
        w.rsplit('/')
            .next()
            .unwrap_or(w)
            .trim_end_matches(".service")
            .trim_end_matches(".socket")
            .trim_end_matches(".plist")
            .to_owned()
    };
    // `/etc/init.d/auditd stop`: the script is the service.
    let script = cmd.argv.first().is_some_and(|w| w.text.contains("/init.d/") || w.text.contains("/rc.d/"));
    if script {
        return if words.iter().any(|w| stops(w)) { vec![unit(cmd.name())] } else { Vec::new() };
    }
    match cmd.name() {
        // `systemctl stop X`, `launchctl unload …/X.plist`, `rc-service X stop`, `service X stop`.
        "systemctl" | "launchctl" | "initctl" | "sv" | "update-rc.d" | "chkconfig" | "rc-update" => {
            if words.iter().any(|w| stops(w)) {
                words.iter().filter(|w| !w.starts_with('-') && !stops(w)).map(|w| unit(w)).collect()
            } else {
                Vec::new()
            }
        }
        "service" | "rc-service" | "invoke-rc.d" => {
            if words.iter().skip(1).any(|w| stops(w)) {
                words.iter().filter(|w| !w.starts_with('-')).take(1).map(|w| unit(w)).collect()
            } else {
                Vec::new()
            }
        }
        _ => Vec::new(),
    }
}

/// Commands that manage services or processes, or that switch a defence on and off.
fn is_defence_tool(name: &str) -> bool {
    matches!(
        name,
        "systemctl"
            | "launchctl"
            | "initctl"
            | "sv"
            | "update-rc.d"
            | "chkconfig"
            | "rc-update"
            | "service"
            | "rc-service"
            | "invoke-rc.d"
            | "kill"
            | "pkill"
            | "killall"
            | "auditctl"
            | "dmesg"
            | "wevtutil"
            | "ufw"
            | "ebtables"
            | "arptables"
            | "nft"
            | "pfctl"
            | "firewall-cmd"
            | "netsh"
            | "socketfilterfw"
            | "setenforce"
            | "aa-teardown"
            | "aa-disable"
            | "aa-complain"
            | "apparmor_parser"
            | "csrutil"
            | "spctl"
            | "set-mppreference"
            | "setarch"
            | "sysctl"
            | "modprobe"
            | "rmmod"
    ) || name.starts_with("iptables")
        || name.starts_with("ip6tables")
        || name.ends_with("-eventlog")
}

/// The defence a command switches off, if any.
pub(crate) fn switches_off_defence(cmd: &Command) -> Option<Defence> {
    if cmd.args().iter().any(|w| matches!(w.text.as_str(), "-h" | "--help" | "--version" | "-V")) {
        return None;
    }
    // PowerShell cmdlets and Windows tools ignore case.
    let name = cmd.name().to_ascii_lowercase();
    let name = name.as_str();
    let init_script = cmd.argv.first().is_some_and(|w| w.text.contains("/init.d/") || w.text.contains("/rc.d/"));
    if !init_script && !is_defence_tool(name) {
        return None;
    }
    let exact: Vec<&str> = cmd.args().iter().map(|w| w.text.as_str()).collect();
    let words: Vec<String> = cmd.args().iter().map(|w| w.text.to_ascii_lowercase()).collect();
    let has = |t: &str| words.iter().any(|w| w == t);
    let pairs = |a: &str, b: &str| words.windows(2).any(|p| p[0] == a && p[1].starts_with(b));
    let service_in = |services: &[String], list: &[&str]| {
        services
            .iter()
            .any(|s| list.iter().any(|l| s == l || s.strip_suffix('d') == Some(l) || s.starts_with(&format!("{l}-"))))
    };
    // `kill $(pgrep auditd)`, `pkill -f rsyslogd`: the process named anywhere in a word.
    let killed: Vec<String> = if matches!(name, "kill" | "pkill" | "killall") {
        words
            .iter()
            .flat_map(|w| w.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')))
            .map(str::to_owned)
            .collect()
    } else {
        Vec::new()
    };
    let services = stopped_services(cmd);
    if service_in(&services, LOGGING_SERVICES) || service_in(&killed, LOGGING_SERVICES) {
        return Some(Defence::Logging);
    }
    if service_in(&services, DEFENCE_SERVICES) || service_in(&killed, DEFENCE_SERVICES) {
        return Some(Defence::Walls);
    }
    let logging = match name {
        // `-D` deletes every rule, `-e 0` switches auditing off, `never` rules suppress records.
        "auditctl" => has("-d") || pairs("-e", "0") || has("-e0") || words.iter().any(|w| w.contains("never")),
        "dmesg" => has("-c") || has("--clear") || has("--read-clear"),
        "wevtutil" => has("cl") || has("clear-log"),
        "clear-eventlog" | "remove-eventlog" | "limit-eventlog" => true,
        _ => false,
    };
    if logging {
        return Some(Defence::Logging);
    }
    let walls = match name {
        "ufw" => has("disable") || has("reset") || (pairs("default", "allow") && !has("outgoing") && !has("routed")),
        // `-F` flushes, `-X` deletes chains, `-P CHAIN ACCEPT` opens a chain (`-f` and `-p`
        // are matches, not commands: case matters here).
        n if n.starts_with("iptables") || n.starts_with("ip6tables") || matches!(n, "ebtables" | "arptables") => {
            exact.iter().any(|w| matches!(*w, "-F" | "--flush" | "-X" | "--delete-chain"))
                || exact.windows(3).any(|p| matches!(p[0], "-P" | "--policy") && p[2].eq_ignore_ascii_case("accept"))
        }
        "nft" => has("flush") || pairs("delete", "table") || pairs("delete", "ruleset"),
        "pfctl" => has("-d") || pairs("-f", "all") || pairs("-f", "rules"),
        "firewall-cmd" => words
            .iter()
            .any(|w| w == "--panic-off" || w.starts_with("--set-default-zone=trusted") || w == "--set-target=accept"),
        "netsh" => words.iter().any(|w| w == "off" || w == "disable") && words.iter().any(|w| w.contains("firewall")),
        "socketfilterfw" => pairs("--setglobalstate", "off"),
        "setenforce" => has("0") || has("permissive"),
        "aa-teardown" | "aa-disable" | "aa-complain" => true,
        "apparmor_parser" => exact.iter().any(|w| *w == "-R" || *w == "--remove"),
        "csrutil" | "spctl" => words.iter().any(|w| w == "disable" || w.ends_with("-disable")),
        "set-mppreference" => words.iter().any(|w| w.starts_with("-disable")),
        "setarch" => has("-r") || has("--addr-no-randomize"),
        "sysctl" => {
            let key = |w: &str| w.split('=').next().unwrap_or(w).replace('/', ".");
            let writes = has("-w") || has("--write") || words.iter().any(|w| w.contains('='));
            writes && words.iter().any(|w| HARDENING_KEYS.contains(&key(w).as_str()))
        }
        "modprobe" | "rmmod" => {
            (name == "rmmod" || has("-r") || has("--remove")) && words.iter().any(|w| w == "apparmor" || w == "selinux")
        }
        _ => false,
    };
    walls.then_some(Defence::Walls)
}
