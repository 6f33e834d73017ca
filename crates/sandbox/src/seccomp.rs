//! The seccomp filter: a deny-list kept as data, compiled to classic BPF.
//!
//! The filter first checks the architecture (anything but the native one is killed, so no
//! i386 or x32 entry point reaches the table), then refuses x32 syscall numbers, then walks the
//! table. Argument checks cover `ioctl(TIOCSTI)`, sockets outside `AF_UNIX`/`AF_INET`/
//! `AF_INET6` and routing netlink, `clone` with `CLONE_NEWUSER`, and every way to give a file
//! the setuid or setgid bit (`chmod`, `creat`, `open` with `O_CREAT`, `mknod`). Everything not
//! listed is allowed: the mounts and Landlock are the walls, the filter removes the kernel
//! interfaces an escape would use.

use std::fmt;

/// What the filter does with a matching call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Fail with this errno.
    Errno(i32),
    /// Kill the process.
    Kill,
    /// Hand the call to the supervisor (seccomp user notification).
    Notify,
}

/// A condition on one argument (the low 32 bits), checked after the syscall number matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgCheck {
    /// The argument equals the value.
    Equals(u8, u32),
    /// The argument has any of these bits.
    AnyBits(u8, u32),
    /// The argument is none of the listed values.
    NoneOf(u8, &'static [u32]),
    /// The first argument equals the value and the second is not the other value.
    EqualsAndNot(u8, u32, u8, u32),
    /// The first argument has any of the first bits and the second any of the second.
    BothAnyBits(u8, u32, u8, u32),
}

/// One entry of the table.
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    /// The syscall's name, for messages and tests.
    pub name: &'static str,
    /// Its number on this architecture.
    pub nr: i64,
    /// The condition, if the entry applies to some calls only.
    pub check: Option<ArgCheck>,
    /// What to do.
    pub action: Action,
}

const EPERM: i32 = libc::EPERM;
const TIOCSTI: u32 = 0x5412;
const ALLOWED_FAMILIES: &[u32] =
    &[libc::AF_UNIX as u32, libc::AF_INET as u32, libc::AF_INET6 as u32, libc::AF_NETLINK as u32];
const NETLINK_ROUTE: u32 = 0;
// INVARIANT: CLONE_NEWUSER fits in 32 bits (0x10000000).
const CLONE_NEWUSER: u32 = libc::CLONE_NEWUSER as u32;
/// The setuid and setgid mode bits.
const SET_ID: u32 = libc::S_ISUID | libc::S_ISGID;
/// The `open` flags under which the mode argument is used: `O_CREAT`, and `O_TMPFILE`'s own bit
/// (`O_TMPFILE` is it plus `O_DIRECTORY`, which alone takes no mode).
const TAKES_MODE: u32 = (libc::O_CREAT | (libc::O_TMPFILE & !libc::O_DIRECTORY)) as u32;

/// SECURITY: a refusal of the setuid and setgid bits on a file. Started as root, what the agent
/// writes in the workdir lands on disk with the workdir owner's ids (root's, often): a setuid
/// copy of a shell there would be a root shell for every other user of the host.
const fn no_set_id(name: &'static str, nr: i64, check: ArgCheck) -> Entry {
    Entry { name, nr, check: Some(check), action: Action::Errno(EPERM) }
}

const fn deny(name: &'static str, nr: i64) -> Entry {
    Entry { name, nr, check: None, action: Action::Errno(EPERM) }
}

/// Calls that are refused outright: debugging other processes, mounting, kernel extension
/// points, keyrings, namespaces, and io_uring (which would bypass the table).
pub const DENIED: &[Entry] = &[
    deny("ptrace", libc::SYS_ptrace),
    deny("process_vm_readv", libc::SYS_process_vm_readv),
    deny("process_vm_writev", libc::SYS_process_vm_writev),
    deny("mount", libc::SYS_mount),
    deny("umount2", libc::SYS_umount2),
    deny("pivot_root", libc::SYS_pivot_root),
    deny("move_mount", libc::SYS_move_mount),
    deny("open_tree", libc::SYS_open_tree),
    deny("fsopen", libc::SYS_fsopen),
    deny("fsconfig", libc::SYS_fsconfig),
    deny("fsmount", libc::SYS_fsmount),
    deny("fspick", libc::SYS_fspick),
    deny("mount_setattr", libc::SYS_mount_setattr),
    deny("bpf", libc::SYS_bpf),
    deny("perf_event_open", libc::SYS_perf_event_open),
    deny("keyctl", libc::SYS_keyctl),
    deny("add_key", libc::SYS_add_key),
    deny("request_key", libc::SYS_request_key),
    deny("userfaultfd", libc::SYS_userfaultfd),
    deny("kexec_load", libc::SYS_kexec_load),
    deny("kexec_file_load", libc::SYS_kexec_file_load),
    deny("init_module", libc::SYS_init_module),
    deny("finit_module", libc::SYS_finit_module),
    deny("delete_module", libc::SYS_delete_module),
    deny("io_uring_setup", libc::SYS_io_uring_setup),
    deny("io_uring_enter", libc::SYS_io_uring_enter),
    deny("io_uring_register", libc::SYS_io_uring_register),
    deny("unshare", libc::SYS_unshare),
    deny("setns", libc::SYS_setns),
    deny("swapon", libc::SYS_swapon),
    deny("swapoff", libc::SYS_swapoff),
    deny("reboot", libc::SYS_reboot),
    deny("syslog", libc::SYS_syslog),
    deny("acct", libc::SYS_acct),
    deny("quotactl", libc::SYS_quotactl),
    deny("open_by_handle_at", libc::SYS_open_by_handle_at),
    deny("name_to_handle_at", libc::SYS_name_to_handle_at),
    deny("personality", libc::SYS_personality),
    #[cfg(target_arch = "x86_64")]
    deny("iopl", libc::SYS_iopl),
    #[cfg(target_arch = "x86_64")]
    deny("ioperm", libc::SYS_ioperm),
];

/// Calls refused only with certain arguments.
pub const CONDITIONAL: &[Entry] = &[
    Entry {
        name: "ioctl",
        nr: libc::SYS_ioctl,
        check: Some(ArgCheck::Equals(1, TIOCSTI)),
        action: Action::Errno(EPERM),
    },
    Entry {
        name: "socket",
        nr: libc::SYS_socket,
        check: Some(ArgCheck::NoneOf(0, ALLOWED_FAMILIES)),
        action: Action::Errno(libc::EAFNOSUPPORT),
    },
    // Netlink for routing queries only (`ip link`, `getifaddrs`), in the sandbox's own network
    // namespace, where the agent has no capability to change anything.
    Entry {
        name: "socket",
        nr: libc::SYS_socket,
        check: Some(ArgCheck::EqualsAndNot(0, libc::AF_NETLINK as u32, 2, NETLINK_ROUTE)),
        action: Action::Errno(libc::EPROTONOSUPPORT),
    },
    Entry {
        name: "clone",
        nr: libc::SYS_clone,
        check: Some(ArgCheck::AnyBits(0, CLONE_NEWUSER)),
        action: Action::Errno(EPERM),
    },
    // clone3 passes its flags in memory a filter cannot read; ENOSYS makes libc fall back to
    // clone, whose flags the entry above checks.
    Entry { name: "clone3", nr: libc::SYS_clone3, check: None, action: Action::Errno(libc::ENOSYS) },
    #[cfg(target_arch = "x86_64")]
    no_set_id("chmod", libc::SYS_chmod, ArgCheck::AnyBits(1, SET_ID)),
    no_set_id("fchmod", libc::SYS_fchmod, ArgCheck::AnyBits(1, SET_ID)),
    no_set_id("fchmodat", libc::SYS_fchmodat, ArgCheck::AnyBits(2, SET_ID)),
    no_set_id("fchmodat2", libc::SYS_fchmodat2, ArgCheck::AnyBits(2, SET_ID)),
    #[cfg(target_arch = "x86_64")]
    no_set_id("creat", libc::SYS_creat, ArgCheck::AnyBits(1, SET_ID)),
    #[cfg(target_arch = "x86_64")]
    no_set_id("open", libc::SYS_open, ArgCheck::BothAnyBits(1, TAKES_MODE, 2, SET_ID)),
    no_set_id("openat", libc::SYS_openat, ArgCheck::BothAnyBits(2, TAKES_MODE, 3, SET_ID)),
    #[cfg(target_arch = "x86_64")]
    no_set_id("mknod", libc::SYS_mknod, ArgCheck::AnyBits(1, SET_ID)),
    no_set_id("mknodat", libc::SYS_mknodat, ArgCheck::AnyBits(2, SET_ID)),
    // openat2 passes its mode in memory; ENOSYS makes callers fall back to openat.
    Entry { name: "openat2", nr: libc::SYS_openat2, check: None, action: Action::Errno(libc::ENOSYS) },
];

/// The architecture this filter is built for, as the kernel reports it in `seccomp_data.arch`
/// (`AUDIT_ARCH_X86_64`).
#[cfg(target_arch = "x86_64")]
pub const NATIVE_ARCH: u32 = 0xC000_003E;
/// The architecture this filter is built for, as the kernel reports it in `seccomp_data.arch`
/// (`AUDIT_ARCH_AARCH64`).
#[cfg(target_arch = "aarch64")]
pub const NATIVE_ARCH: u32 = 0xC000_00B7;

/// One classic BPF instruction, laid out as the kernel's `struct sock_filter`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    /// Opcode.
    pub code: u16,
    /// Jump offset if true.
    pub jt: u8,
    /// Jump offset if false.
    pub jf: u8,
    /// Operand.
    pub k: u32,
}

const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JEQ_K: u16 = 0x15;
const BPF_JGE_K: u16 = 0x35;
const BPF_JSET_K: u16 = 0x45;
const BPF_RET_K: u16 = 0x06;
const BPF_JA: u16 = 0x05;

const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_USER_NOTIF: u32 = 0x7fc0_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_ALLOW: u32 = 0x7fff_0000;

const OFFSET_NR: u32 = 0;
const OFFSET_ARCH: u32 = 4;

const fn offset_arg(i: u8) -> u32 {
    16 + 8 * i as u32
}

fn ld(offset: u32) -> Insn {
    Insn { code: BPF_LD_W_ABS, jt: 0, jf: 0, k: offset }
}

fn ret(action: Action) -> Insn {
    let k = match action {
        Action::Errno(e) => RET_ERRNO | (e.unsigned_abs() & 0xffff),
        Action::Kill => RET_KILL_PROCESS,
        Action::Notify => RET_USER_NOTIF,
    };
    Insn { code: BPF_RET_K, jt: 0, jf: 0, k }
}

/// A filter program that cannot be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the seccomp program is too long: {0} instructions")]
pub struct TooLong(pub usize);

/// Compiles the table (and, when `notify_exec`, user notification for `execve` and
/// `execveat`) into a BPF program.
///
/// The numbers are tested as a balanced binary search (`JGE` at each node, then at most
/// [`LEAF`] `JEQ`s), not one after another. Besides costing a syscall about six comparisons
/// instead of one per entry, this is what makes the filter cheap to install: the kernel runs the
/// program once for every syscall number when it attaches it (to learn which calls it may let
/// through without running it again), so the install took time in proportion to the table's
/// length times the number of syscalls: 140 µs for the linear list of 47 entries, on the path
/// of every session's start.
pub fn compile(notify_exec: bool) -> Result<Vec<Insn>, TooLong> {
    let mut prog = vec![
        // SECURITY: a syscall made through another architecture's entry point (i386 `int 0x80`)
        // has other numbers; kill it rather than read it with this table.
        ld(OFFSET_ARCH),
        Insn { code: BPF_JEQ_K, jt: 1, jf: 0, k: NATIVE_ARCH },
        ret(Action::Kill),
        ld(OFFSET_NR),
        // SECURITY: x32 numbers carry bit 30 on x86-64; they would miss every entry below.
        Insn { code: BPF_JGE_K, jt: 0, jf: 1, k: 0x4000_0000 },
        ret(Action::Kill),
    ];
    let mut entries: Vec<Entry> = DENIED.iter().chain(CONDITIONAL).copied().collect();
    if notify_exec {
        entries.push(Entry { name: "execve", nr: libc::SYS_execve, check: None, action: Action::Notify });
        entries.push(Entry { name: "execveat", nr: libc::SYS_execveat, check: None, action: Action::Notify });
    }
    // Each number's entries, in table order (the first that matches decides).
    let mut numbers: Vec<(u32, Vec<Entry>)> = Vec::new();
    for entry in entries {
        // INVARIANT: syscall numbers are small positive integers.
        let nr = u32::try_from(entry.nr).map_err(|_| TooLong(prog.len()))?;
        match numbers.iter_mut().find(|(n, _)| *n == nr) {
            Some((_, list)) => list.push(entry),
            None => numbers.push((nr, vec![entry])),
        }
    }
    numbers.sort_by_key(|(nr, _)| *nr);
    prog.extend(search(&numbers)?);
    if prog.len() > 4096 {
        return Err(TooLong(prog.len()));
    }
    Ok(prog)
}

/// Most numbers a leaf of the search tests one after another.
const LEAF: usize = 4;

/// The search over `numbers` (sorted), with the number in the accumulator; every path ends in
/// a return.
fn search(numbers: &[(u32, Vec<Entry>)]) -> Result<Vec<Insn>, TooLong> {
    if numbers.len() <= LEAF {
        let mut code = Vec::new();
        for (nr, entries) in numbers {
            let body = block(entries)?;
            let skip = u8::try_from(body.len()).map_err(|_| TooLong(body.len()))?;
            code.push(Insn { code: BPF_JEQ_K, jt: 0, jf: skip, k: *nr });
            code.extend(body);
        }
        code.push(Insn { code: BPF_RET_K, jt: 0, jf: 0, k: RET_ALLOW });
        return Ok(code);
    }
    let mid = numbers.len() / 2;
    let (below, above) = (search(&numbers[..mid])?, search(&numbers[mid..])?);
    // At or above the middle number: the `JA` over the lower half (whose length may exceed
    // what a conditional jump's 8-bit offset reaches); below it: skip the `JA`.
    let over = u32::try_from(below.len()).map_err(|_| TooLong(below.len()))?;
    let mut code =
        vec![Insn { code: BPF_JGE_K, jt: 0, jf: 1, k: numbers[mid].0 }, Insn { code: BPF_JA, jt: 0, jf: 0, k: over }];
    code.extend(below);
    code.extend(above);
    Ok(code)
}

/// The code for one number's entries (the accumulator holds the number): each entry's check
/// and action in turn, then allow.
fn block(entries: &[Entry]) -> Result<Vec<Insn>, TooLong> {
    let mut code = Vec::new();
    for entry in entries {
        let Some(check) = entry.check else {
            // Unconditional: nothing after it is reached.
            code.push(ret(entry.action));
            return Ok(code);
        };
        // Each check loads its argument and, when it does not apply, falls through to just
        // after its own return.
        match check {
            ArgCheck::Equals(i, v) => {
                code.push(ld(offset_arg(i)));
                code.push(Insn { code: BPF_JEQ_K, jt: 0, jf: 1, k: v });
            }
            ArgCheck::AnyBits(i, bits) => {
                code.push(ld(offset_arg(i)));
                code.push(Insn { code: BPF_JSET_K, jt: 0, jf: 1, k: bits });
            }
            ArgCheck::EqualsAndNot(i, v, j, w) => {
                code.push(ld(offset_arg(i)));
                code.push(Insn { code: BPF_JEQ_K, jt: 0, jf: 3, k: v });
                code.push(ld(offset_arg(j)));
                code.push(Insn { code: BPF_JEQ_K, jt: 1, jf: 0, k: w });
            }
            ArgCheck::BothAnyBits(i, bits, j, other) => {
                code.push(ld(offset_arg(i)));
                code.push(Insn { code: BPF_JSET_K, jt: 0, jf: 3, k: bits });
                code.push(ld(offset_arg(j)));
                code.push(Insn { code: BPF_JSET_K, jt: 0, jf: 1, k: other });
            }
            ArgCheck::NoneOf(i, values) => {
                code.push(ld(offset_arg(i)));
                let n = values.len();
                for (j, v) in values.iter().enumerate() {
                    let past = u8::try_from(n - j).map_err(|_| TooLong(n))?;
                    code.push(Insn { code: BPF_JEQ_K, jt: past, jf: 0, k: *v });
                }
            }
        }
        code.push(ret(entry.action));
    }
    code.push(Insn { code: BPF_RET_K, jt: 0, jf: 0, k: RET_ALLOW });
    Ok(code)
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.nr)
    }
}

/// Makes `command`'s child install `prog` (with `no_new_privs`) before it execs. The filter is
/// inherited across exec and by every descendant.
pub fn apply_on_exec(command: &mut std::process::Command, prog: &[Insn]) -> std::io::Result<()> {
    crate::Walls { seccomp: Some(prog.to_vec()), ..crate::Walls::default() }.apply_on_exec(command)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a BPF program over a fake `seccomp_data`, as the kernel would.
    fn run(prog: &[Insn], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        steps(prog, arch, nr, args).0
    }

    /// As [`run`], with the number of instructions it ran.
    fn steps(prog: &[Insn], arch: u32, nr: u32, args: [u64; 6]) -> (u32, usize) {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_le_bytes());
        data[4..8].copy_from_slice(&arch.to_le_bytes());
        for (i, a) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
        }
        let (mut pc, mut acc, mut count) = (0usize, 0u32, 0usize);
        loop {
            let insn = prog[pc];
            count += 1;
            match insn.code {
                BPF_LD_W_ABS => {
                    acc = u32::from_le_bytes(data[insn.k as usize..insn.k as usize + 4].try_into().unwrap())
                }
                BPF_JEQ_K | BPF_JGE_K | BPF_JSET_K => {
                    let hit = match insn.code {
                        BPF_JEQ_K => acc == insn.k,
                        BPF_JGE_K => acc >= insn.k,
                        _ => acc & insn.k != 0,
                    };
                    pc += usize::from(if hit { insn.jt } else { insn.jf });
                }
                BPF_JA => pc += insn.k as usize,
                BPF_RET_K => return (insn.k, count),
                other => panic!("unknown opcode {other:#x}"),
            }
            pc += 1;
        }
    }

    fn errno(e: i32) -> u32 {
        RET_ERRNO | e.unsigned_abs()
    }

    /// What the table says of a call, read directly: the first entry for the number whose
    /// check holds decides; no entry, allow.
    fn reference(nr: u32, args: [u64; 6], notify_exec: bool) -> u32 {
        let exec = [
            Entry { name: "execve", nr: libc::SYS_execve, check: None, action: Action::Notify },
            Entry { name: "execveat", nr: libc::SYS_execveat, check: None, action: Action::Notify },
        ];
        let extra: &[Entry] = if notify_exec { &exec } else { &[] };
        let arg = |i: u8| args[usize::from(i)] as u32;
        for entry in DENIED.iter().chain(CONDITIONAL).chain(extra).filter(|e| e.nr == i64::from(nr)) {
            let holds = match entry.check {
                None => true,
                Some(ArgCheck::Equals(i, v)) => arg(i) == v,
                Some(ArgCheck::AnyBits(i, bits)) => arg(i) & bits != 0,
                Some(ArgCheck::EqualsAndNot(i, v, j, w)) => arg(i) == v && arg(j) != w,
                Some(ArgCheck::BothAnyBits(i, bits, j, other)) => arg(i) & bits != 0 && arg(j) & other != 0,
                Some(ArgCheck::NoneOf(i, values)) => !values.contains(&arg(i)),
            };
            if holds {
                return ret(entry.action).k;
            }
        }
        RET_ALLOW
    }

    #[test]
    fn the_search_agrees_with_the_table_for_every_number() {
        // Argument values that the checks test, in the first three arguments.
        let values: Vec<u64> = [0, TIOCSTI, 0x5401, NETLINK_ROUTE, 9, CLONE_NEWUSER, libc::SIGCHLD as u32, 0o4755]
            .into_iter()
            .chain([(libc::O_CREAT | libc::O_WRONLY) as u32])
            .chain(ALLOWED_FAMILIES.iter().copied())
            .chain([libc::AF_PACKET as u32])
            .map(u64::from)
            .collect();
        for notify_exec in [false, true] {
            let prog = compile(notify_exec).unwrap();
            for nr in 0..=1024u32 {
                for &a in &values {
                    for &b in &values {
                        for &c in &values {
                            let args = [a, b, c, 0, 0, 0];
                            let (got, want) = (run(&prog, NATIVE_ARCH, nr, args), reference(nr, args, notify_exec));
                            assert_eq!(got, want, "nr {nr}, args {args:?}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn no_call_gives_a_file_the_setuid_or_setgid_bit() {
        let prog = compile(true).unwrap();
        let call = |nr: i64, args: [u64; 6]| run(&prog, NATIVE_ARCH, nr as u32, args);
        let (creat, tmpfile, plain) =
            ((libc::O_CREAT | libc::O_WRONLY) as u64, libc::O_TMPFILE as u64, libc::O_RDONLY as u64);
        for mode in [0o4755u64, 0o2755, 0o6777] {
            assert_eq!(call(libc::SYS_chmod, [0, mode, 0, 0, 0, 0]), errno(EPERM), "{mode:o}");
            assert_eq!(call(libc::SYS_fchmod, [3, mode, 0, 0, 0, 0]), errno(EPERM));
            assert_eq!(call(libc::SYS_fchmodat, [3, 0, mode, 0, 0, 0]), errno(EPERM));
            assert_eq!(call(libc::SYS_fchmodat2, [3, 0, mode, 0, 0, 0]), errno(EPERM));
            assert_eq!(call(libc::SYS_creat, [0, mode, 0, 0, 0, 0]), errno(EPERM));
            assert_eq!(call(libc::SYS_open, [0, creat, mode, 0, 0, 0]), errno(EPERM));
            assert_eq!(call(libc::SYS_openat, [3, 0, creat, mode, 0, 0]), errno(EPERM));
            assert_eq!(call(libc::SYS_openat, [3, 0, tmpfile, mode, 0, 0]), errno(EPERM));
            assert_eq!(call(libc::SYS_mknodat, [3, 0, u64::from(libc::S_IFREG) | mode, 0, 0, 0]), errno(EPERM));
            // Without O_CREAT the mode argument is not used, whatever it holds.
            assert_eq!(call(libc::SYS_openat, [3, 0, plain, mode, 0, 0]), RET_ALLOW);
        }
        for mode in [0o755u64, 0o644, 0o1777] {
            assert_eq!(call(libc::SYS_chmod, [0, mode, 0, 0, 0, 0]), RET_ALLOW, "{mode:o}");
            assert_eq!(call(libc::SYS_fchmodat, [3, 0, mode, 0, 0, 0]), RET_ALLOW);
            assert_eq!(call(libc::SYS_openat, [3, 0, creat, mode, 0, 0]), RET_ALLOW);
        }
        assert_eq!(call(libc::SYS_openat2, [3, 0, 0, 24, 0, 0]), errno(libc::ENOSYS));
    }

    #[test]
    fn no_syscall_walks_more_than_a_few_comparisons() {
        // The search's depth for this many numbers, then a leaf and one block: far below one
        // comparison per entry, which is what the install cost grew with.
        let prog = compile(true).unwrap();
        let entries = DENIED.len() + CONDITIONAL.len() + 2;
        let longest = (0..=1024u32).map(|nr| steps(&prog, NATIVE_ARCH, nr, [0; 6]).1).max().unwrap();
        assert!(longest <= 30, "{longest} instructions run for one call of {} ({entries} entries)", prog.len());
    }

    #[test]
    fn the_program_decides_as_the_table_says() {
        let prog = compile(true).unwrap();
        let call = |nr: i64, args: [u64; 6]| run(&prog, NATIVE_ARCH, nr as u32, args);
        assert_eq!(call(libc::SYS_getpid, [0; 6]), RET_ALLOW);
        for entry in DENIED {
            assert_eq!(call(entry.nr, [0; 6]), errno(EPERM), "{entry}");
        }
        assert_eq!(call(libc::SYS_ioctl, [0, u64::from(TIOCSTI), 0, 0, 0, 0]), errno(EPERM));
        assert_eq!(call(libc::SYS_ioctl, [0, 0x5401, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(call(libc::SYS_socket, [libc::AF_INET as u64, 1, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(call(libc::SYS_socket, [libc::AF_UNIX as u64, 1, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(call(libc::SYS_socket, [libc::AF_INET6 as u64, 1, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(call(libc::SYS_socket, [libc::AF_NETLINK as u64, 3, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(call(libc::SYS_socket, [libc::AF_NETLINK as u64, 3, 9, 0, 0, 0]), errno(libc::EPROTONOSUPPORT));
        assert_eq!(call(libc::SYS_socket, [libc::AF_INET as u64, 3, 9, 0, 0, 0]), RET_ALLOW);
        assert_eq!(call(libc::SYS_socket, [libc::AF_PACKET as u64, 3, 0, 0, 0, 0]), errno(libc::EAFNOSUPPORT));
        assert_eq!(call(libc::SYS_clone, [libc::CLONE_NEWUSER as u64, 0, 0, 0, 0, 0]), errno(EPERM));
        assert_eq!(call(libc::SYS_clone, [libc::SIGCHLD as u64, 0, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(call(libc::SYS_clone3, [0; 6]), errno(libc::ENOSYS));
        assert_eq!(call(libc::SYS_execve, [0; 6]), RET_USER_NOTIF);
        // Another architecture's entry point and x32 numbers are killed.
        assert_eq!(run(&prog, 0x4000_0003, libc::SYS_getpid as u32, [0; 6]), RET_KILL_PROCESS);
        assert_eq!(call(0x4000_0000 + 39, [0; 6]), RET_KILL_PROCESS);
        // Without the exec monitor, execs pass.
        assert_eq!(run(&compile(false).unwrap(), NATIVE_ARCH, libc::SYS_execve as u32, [0; 6]), RET_ALLOW);
    }
}
