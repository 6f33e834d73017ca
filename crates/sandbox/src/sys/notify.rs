//! The supervisor's side of seccomp user notification: receive a trapped call, check that it is
//! still pending, answer it.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

// _IOWR('!', 0, struct seccomp_notif), _IOWR('!', 1, struct seccomp_notif_resp),
// _IOW('!', 2, __u64) from <linux/seccomp.h>.
const IOCTL_RECV: libc::c_ulong = 0xC050_2100;
const IOCTL_SEND: libc::c_ulong = 0xC018_2101;
const IOCTL_ID_VALID: libc::c_ulong = 0x4008_2102;
const FLAG_CONTINUE: u32 = 1;

/// One trapped system call.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Notification {
    pub(crate) id: u64,
    pub(crate) pid: u32,
    pub(crate) nr: i32,
    pub(crate) args: [u64; 6],
}

/// Waits for the next notification. `Ok(None)` when no process uses the filter any more.
pub(crate) fn receive(fd: BorrowedFd<'_>) -> io::Result<Option<Notification>> {
    use rustix::event::{PollFd, PollFlags, poll};
    loop {
        // The listener reports HUP once no process uses the filter; RECV would fail at once.
        let mut fds = [PollFd::from_borrowed_fd(fd, PollFlags::IN)];
        match poll(&mut fds, None) {
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(_) => {}
        }
        let revents = fds[0].revents();
        if !revents.contains(PollFlags::IN) && revents.intersects(PollFlags::HUP | PollFlags::ERR) {
            return Ok(None);
        }
        // SAFETY: seccomp_notif is plain data and must be zeroed before RECV.
        let mut notif: libc::seccomp_notif = unsafe { std::mem::zeroed() };
        // SAFETY: `notif` is a seccomp_notif the kernel fills in; the size matches the request.
        let ret = unsafe { libc::ioctl(fd.as_raw_fd(), IOCTL_RECV, &raw mut notif) };
        if ret == 0 {
            return Ok(Some(Notification { id: notif.id, pid: notif.pid, nr: notif.data.nr, args: notif.data.args }));
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            // The call was interrupted before we took it (the caller got a signal): wait again.
            Some(libc::EINTR) | Some(libc::ENOENT) => continue,
            // The filter has no users left.
            Some(libc::ENOTCONN) => return Ok(None),
            _ => return Err(err),
        }
    }
}

/// True while `id` is still waiting for an answer (its process has not died or been
/// interrupted, so its memory still belongs to the call).
pub(crate) fn still_pending(fd: BorrowedFd<'_>, id: u64) -> bool {
    let mut id = id;
    // SAFETY: ID_VALID reads one u64.
    unsafe { libc::ioctl(fd.as_raw_fd(), IOCTL_ID_VALID, &raw mut id) == 0 }
}

/// Answers `id`: let the call run (`None`) or fail it with `errno`.
pub(crate) fn answer(fd: BorrowedFd<'_>, id: u64, errno: Option<i32>) -> io::Result<()> {
    let mut resp = libc::seccomp_notif_resp {
        id,
        val: 0,
        error: errno.map_or(0, |e| -e),
        flags: if errno.is_none() { FLAG_CONTINUE } else { 0 },
    };
    // SAFETY: `resp` is a seccomp_notif_resp the kernel only reads.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), IOCTL_SEND, &raw mut resp) };
    if ret == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}
