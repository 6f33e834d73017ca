//! Zero-copy relaying between two sockets: `splice` from one into a pipe and from the pipe into
//! the other, so bulk bytes (large bodies, tunnels) never pass through the proxy's memory.
//! Each chunk is counted before it leaves the pipe, so the outbound ceiling still stops bytes
//! before they are sent.

use std::io;
use std::os::fd::OwnedFd;
use std::time::Duration;

use rustix::pipe::{PipeFlags, SpliceFlags};
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::timeout;

/// The pipe's capacity: one `splice` moves up to this much.
const PIPE_SIZE: usize = 1 << 20;

/// Outbound bytes move at most this much at a time, so the ceiling cuts within this of its
/// value (a chunk that would cross it is not sent at all).
const OUTBOUND_CHUNK: usize = 64 * 1024;

/// Which way bytes go: toward the destination (counted against the ceiling) or back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dir {
    Up,
    Down,
}

/// A pipe for relaying.
pub(crate) struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    /// The most one `splice` moves.
    size: usize,
}

impl Pipe {
    pub(crate) fn new(dir: Dir) -> io::Result<Pipe> {
        let (read, write) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
        // Larger pipes move more per call; the default (64 KiB) still works.
        let size = rustix::pipe::fcntl_setpipe_size(&write, PIPE_SIZE).unwrap_or(64 * 1024);
        let size = if dir == Dir::Up { size.min(OUTBOUND_CHUNK) } else { size };
        Ok(Pipe { read, write, size })
    }
}

/// Moves bytes from `from` to `to` until `limit` bytes have moved (`None`: until `from` ends),
/// calling `account` with each chunk before it is sent; an error from it stops the relay with
/// that chunk unsent. Returns the bytes sent. A read or write that waits longer than `idle`
/// ends the relay with `TimedOut`; `from` ending before `limit` is `UnexpectedEof`.
///
/// The pipe is filled only when empty: a `splice` into a pipe without free slots fails with
/// `EAGAIN` like an empty socket, and taking that for the socket's would wait for data that
/// has already arrived. The socket buffers on both sides keep the transfer flowing meanwhile.
pub(crate) async fn relay(
    pipe: &Pipe,
    from: &TcpStream,
    to: &TcpStream,
    limit: Option<u64>,
    idle: Duration,
    account: &mut (dyn FnMut(usize) -> io::Result<()> + Send),
) -> io::Result<u64> {
    let flags = SpliceFlags::NONBLOCK | SpliceFlags::MOVE;
    let mut sent = 0u64;
    loop {
        let left = limit.map(|l| l - sent);
        if left == Some(0) {
            return Ok(sent);
        }
        let want = left.map_or(pipe.size, |l| usize::try_from(l).unwrap_or(usize::MAX).min(pipe.size));
        let moved = loop {
            match from.try_io(Interest::READABLE, || {
                rustix::pipe::splice(from, None, &pipe.write, None, want, flags).map_err(io::Error::from)
            }) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    timeout(idle, from.readable()).await.map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
                }
                Err(e) => return Err(e),
            }
        };
        if moved == 0 {
            return if limit.is_none() { Ok(sent) } else { Err(io::ErrorKind::UnexpectedEof.into()) };
        }
        // Counted before it leaves; refused, it stays in the pipe, which is then dropped.
        account(moved)?;
        let mut in_pipe = moved;
        while in_pipe > 0 {
            match to.try_io(Interest::WRITABLE, || {
                rustix::pipe::splice(&pipe.read, None, to, None, in_pipe, flags).map_err(io::Error::from)
            }) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    in_pipe -= n;
                    sent += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    timeout(idle, to.writable()).await.map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Shuts the sending side of `stream` down (the peer sees the end of the stream).
pub(crate) fn shutdown_write(stream: &TcpStream) {
    let _ = rustix::net::shutdown(stream, rustix::net::Shutdown::Write);
}
