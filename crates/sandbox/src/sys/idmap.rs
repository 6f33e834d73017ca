//! Idmapped mounts: a detached copy of a tree whose files appear owned through a user
//! namespace's map, attached later inside the sandbox's mount namespace.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const OPEN_TREE_CLONE: libc::c_uint = 1;
const AT_RECURSIVE: libc::c_uint = 0x8000;
const MOUNT_ATTR_RDONLY: u64 = 0x0000_0001;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// `open_tree(path, OPEN_TREE_CLONE | AT_RECURSIVE)`: a detached copy of the mounts at `path`.
pub(crate) fn clone_tree(path: &CStr) -> io::Result<OwnedFd> {
    let flags = OPEN_TREE_CLONE | AT_RECURSIVE | libc::O_CLOEXEC as libc::c_uint;
    // SAFETY: `path` is NUL-terminated and outlives the call; the flags are integers.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, path.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}

/// `mount_setattr(tree, "", AT_EMPTY_PATH | AT_RECURSIVE, ...)` on every mount in `tree`:
/// read-only, and with `idmap`, files appear owned as that user namespace maps their on-disk
/// owners. Nothing to set is no call.
pub(crate) fn set_attributes(tree: &OwnedFd, read_only: bool, idmap: Option<&OwnedFd>) -> io::Result<()> {
    let mut attr_set = if read_only { MOUNT_ATTR_RDONLY } else { 0 };
    if idmap.is_some() {
        attr_set |= MOUNT_ATTR_IDMAP;
    }
    if attr_set == 0 {
        return Ok(());
    }
    let userns_fd = idmap.map_or(0, |u| u.as_raw_fd() as u64);
    let attr = MountAttr { attr_set, attr_clr: 0, propagation: 0, userns_fd };
    let flags = libc::AT_EMPTY_PATH as libc::c_uint | AT_RECURSIVE;
    // SAFETY: `attr` is a mount_attr of the size passed, only read by the kernel; the path is a
    // static empty string.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            flags,
            &raw const attr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if ret < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// `move_mount(tree, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH)`: attaches a detached tree.
pub(crate) fn attach_tree(tree: &OwnedFd, target: &CStr) -> io::Result<()> {
    // SAFETY: both paths are NUL-terminated and outlive the call; the rest are integers.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if ret < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}
