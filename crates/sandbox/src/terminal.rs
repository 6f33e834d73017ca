//! The agent's terminal: when `run` is started from one, the agent gets a pseudo-terminal of
//! the sandbox's own `devpts` as its controlling terminal, and the supervisor relays bytes
//! between it and the user's terminal (in raw mode while the session runs, restored after).
//!
//! So a TUI agent works as it would outside (`tty`, `/dev/tty`, window size, Ctrl-C through the
//! line discipline), while the user's real terminal never becomes the agent's: a keystroke
//! injected from the sandbox could only reach the sandbox's own terminal.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::thread::JoinHandle;

use rustix::event::{PollFd, PollFlags, poll};
use rustix::termios::{OptionalActions, Termios, tcgetattr, tcgetwinsize, tcsetattr, tcsetwinsize};

/// True when both stdin and stdout are terminals, so a relay makes sense.
pub fn interactive() -> bool {
    rustix::termios::isatty(std::io::stdin()) && rustix::termios::isatty(std::io::stdout())
}

/// Copies the user's window size to the agent's terminal (the kernel then sends `SIGWINCH` to
/// the agent's foreground process group).
pub fn copy_window_size(master: BorrowedFd<'_>) {
    if let Ok(size) = tcgetwinsize(std::io::stdin()) {
        let _ = tcsetwinsize(master, size);
    }
}

/// A running relay. Dropping it stops the copying and restores the user's terminal.
#[derive(Debug)]
pub struct Relay {
    saved: Option<Termios>,
    stop: Option<OwnedFd>,
    thread: Option<JoinHandle<()>>,
}

impl Relay {
    /// Puts the user's terminal in raw mode and starts copying: stdin to `master`, `master` to
    /// stdout, until the agent's side closes.
    pub fn start(master: OwnedFd) -> io::Result<Relay> {
        copy_window_size(master.as_fd());
        let saved = tcgetattr(std::io::stdin()).ok();
        if let Some(saved) = &saved {
            let mut raw = saved.clone();
            raw.make_raw();
            tcsetattr(std::io::stdin(), OptionalActions::Now, &raw)?;
        }
        let (stop_read, stop_write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        let thread =
            std::thread::Builder::new().name("terminal".into()).spawn(move || copy_loop(&master, &stop_read))?;
        Ok(Relay { saved, stop: Some(stop_write), thread: Some(thread) })
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // Let the relay drain what the agent wrote last, then stop it.
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        if let Some(saved) = &self.saved {
            let _ = tcsetattr(std::io::stdin(), OptionalActions::Now, saved);
        }
    }
}

fn copy_loop(master: &OwnedFd, stop: &OwnedFd) {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut buf = [0u8; 16 * 1024];
    let mut stdin_open = true;
    loop {
        let mut fds = vec![PollFd::new(master, PollFlags::IN), PollFd::new(stop, PollFlags::IN)];
        if stdin_open {
            fds.push(PollFd::new(&stdin, PollFlags::IN));
        }
        match poll(&mut fds, None) {
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return,
            Ok(_) => {}
        }
        let (agent, stopped) = (fds[0].revents(), fds[1].revents());
        let user = fds.get(2).map_or(PollFlags::empty(), PollFd::revents);
        if agent.intersects(PollFlags::IN) {
            match rustix::io::read(master, &mut buf) {
                Ok(n) if n > 0 => {
                    if write_all(stdout.as_fd(), &buf[..n]).is_err() {
                        return;
                    }
                    continue;
                }
                _ => return,
            }
        }
        if agent.intersects(PollFlags::HUP | PollFlags::ERR) || !stopped.is_empty() {
            return;
        }
        if user.intersects(PollFlags::IN | PollFlags::HUP) {
            match rustix::io::read(&stdin, &mut buf) {
                Ok(n) if n > 0 => {
                    if write_all(master.as_fd(), &buf[..n]).is_err() {
                        return;
                    }
                }
                _ => stdin_open = false,
            }
        }
    }
}

fn write_all(fd: BorrowedFd<'_>, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match rustix::io::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
