//! Descriptors: reads and writes on raw descriptor numbers (the channel to
//! the controller, the crash record, a checkpoint's wake pipe), writes that
//! never raise `SIGPIPE`, polls, pipes, descriptor flags, and stdio.
//!
//! Descriptors are raw numbers ([`RawFd`]) where the executor got them as
//! numbers (from its command line, or kept in an atomic for signal and
//! exit paths); pipes made here come back as [`OwnedFd`]s.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};
use std::time::Duration;

use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal};

/// Lends the descriptor number `fd` to one call.
fn with_fd<T>(fd: RawFd, call: impl FnOnce(BorrowedFd<'_>) -> nix::Result<T>) -> io::Result<T> {
    if fd < 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    // SAFETY: `fd` is not -1 (checked above). The borrow lasts for one
    // call on the number, which fails with EBADF if nothing is open there,
    // and nothing takes ownership of it (it is never closed through it).
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    call(fd).map_err(io::Error::from)
}

/// Reads what is there (up to `buf.len()` bytes) from `fd`, waiting for
/// something if it blocks; `Ok(0)` at end of input. `EINTR` is returned
/// as [`io::ErrorKind::Interrupted`], not retried.
pub fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    with_fd(fd, |fd| nix::unistd::read(fd, buf))
}

/// Reads exactly `len` bytes from `fd` into the memory at `address`,
/// waiting for them as they come (`EINTR` retried). Ending first is
/// [`io::ErrorKind::UnexpectedEof`]; what came before stays written.
///
/// # Safety
/// `[address, address + len)` must be writable memory of this process
/// that no Rust reference points into.
pub unsafe fn read_exact_to(fd: RawFd, address: u64, len: usize) -> io::Result<()> {
    let mut done = 0usize;
    while done < len {
        // SAFETY: the caller's range; `read` writes at most `len - done`
        // bytes from `address + done`, which stays inside it.
        let n = unsafe {
            libc::read(
                fd,
                (address as usize + done) as *mut libc::c_void,
                len - done,
            )
        };
        match n {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n if n > 0 => done += n as usize,
            _ => {
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::Interrupted {
                    return Err(err);
                }
            }
        }
    }
    Ok(())
}

/// Fills the spare capacity of `bytes` from `file` (one `read` when the
/// file has that much), stopping early at end of file. Reading into the
/// uninitialized capacity spares zeroing it first, which would touch every
/// page twice; asking for all of it at once spares the growing reads of
/// `read_to_end`.
pub fn read_into_spare(file: &std::fs::File, bytes: &mut Vec<u8>) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    populate_spare(bytes);
    while bytes.len() < bytes.capacity() {
        let filled = bytes.len();
        let spare = bytes.spare_capacity_mut();
        // SAFETY: `spare` is writable memory of `spare.len()` bytes owned by
        // the vector; `read` writes at most that many into it.
        let n = unsafe { libc::read(file.as_raw_fd(), spare.as_mut_ptr().cast(), spare.len()) };
        match n {
            0 => break,
            // SAFETY: `read` initialized the first `n` spare bytes (`n` is at
            // most `spare.len()`, so the length stays within capacity).
            n if n > 0 => unsafe { bytes.set_len(filled + n as usize) },
            _ => {
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::Interrupted {
                    return Err(err);
                }
            }
        }
    }
    Ok(())
}

/// Backs the whole pages of `bytes`' spare capacity now, when there are
/// many: the kernel then copies a large object into memory that is
/// already there, instead of taking a page fault per page of it (most of a
/// read's cost on a virtual machine). Only memory the vector owns, and is
/// about to be written, is touched; a kernel without `MADV_POPULATE_WRITE`
/// leaves the faults to happen as before.
fn populate_spare(bytes: &mut Vec<u8>) {
    const WORTH_IT: u64 = 16;
    let spare = bytes.spare_capacity_mut();
    let page = crate::sys::memory::page_size();
    let start = spare.as_ptr() as u64;
    let first = start.next_multiple_of(page);
    let last = (start + spare.len() as u64) & !(page - 1);
    if last >= first + WORTH_IT * page {
        let _ = crate::sys::memory::populate(first, last - first);
    }
}

/// Writes some of `bytes` to `fd` (one `write`); how many went.
pub fn write(fd: RawFd, bytes: &[u8]) -> io::Result<usize> {
    with_fd(fd, |fd| nix::unistd::write(fd, bytes))
}

/// Writes all of `bytes` to `fd` with `SIGPIPE` blocked in this thread, so
/// a vanished reader is an `EPIPE` error ([`io::ErrorKind::BrokenPipe`])
/// rather than death by signal, whatever the process's `SIGPIPE`
/// disposition. `EINTR` is retried. Async-signal-safe and allocation-free,
/// so signal handlers and exit paths may use it.
pub fn write_all(fd: RawFd, mut bytes: &[u8]) -> io::Result<()> {
    let mut sigpipe = SigSet::empty();
    sigpipe.add(Signal::SIGPIPE);
    // `None` if the mask could not be changed (it cannot fail with these
    // arguments): then there is nothing to restore.
    let old = sigpipe.thread_swap_mask(SigmaskHow::SIG_BLOCK).ok();
    let mut result = Ok(());
    while !bytes.is_empty() {
        match write(fd, bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => {
                result = Err(err);
                break;
            }
        }
    }
    if let Some(old) = old {
        if result.is_err() && !old.contains(Signal::SIGPIPE) {
            // A SIGPIPE raised by the failed write is pending: consume it
            // (zero timeout) before the old mask, which does not block it,
            // returns.
            let zero = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: `sigpipe` and `zero` are valid for the call; the
            // signal's details are not wanted (null).
            unsafe { libc::sigtimedwait(sigpipe.as_ref(), std::ptr::null_mut(), &zero) };
        }
        let _ = old.thread_set_mask();
    }
    result
}

/// Whether `fd` has an event now (readable, end of input, or an error),
/// without blocking: a zero-timeout `poll` for input.
pub fn ready_now(fd: RawFd) -> io::Result<bool> {
    with_fd(fd, |fd| {
        poll(&mut [PollFd::new(fd, PollFlags::POLLIN)], PollTimeout::ZERO).map(|n| n > 0)
    })
}

/// Waits up to `timeout` (`None`: no limit) until one of `fds` is
/// readable, at end of input, hung up or in error (`poll` for input);
/// which ones are, in order. An interrupted wait is an
/// [`io::ErrorKind::Interrupted`] error.
pub fn wait_readable(fds: &[BorrowedFd<'_>], timeout: Option<Duration>) -> io::Result<Vec<bool>> {
    let mut polled: Vec<PollFd<'_>> = fds
        .iter()
        .map(|fd| PollFd::new(*fd, PollFlags::POLLIN))
        .collect();
    let timeout = match timeout {
        // Rounded up, so a wait for a deadline never ends just before it.
        Some(t) => PollTimeout::try_from(t.as_micros().div_ceil(1000)).unwrap_or(PollTimeout::MAX),
        None => PollTimeout::NONE,
    };
    poll(&mut polled, timeout)?;
    Ok(polled
        .iter()
        .map(|p| p.revents().is_some_and(|r| !r.is_empty()))
        .collect())
}

/// Waits until the peer of socket `fd` is gone: it closed its end or shut
/// it down for writing (`POLLRDHUP`), the connection was reset, or it
/// failed (a keepalive that went unanswered, `POLLHUP`/`POLLERR`). Data
/// that arrives does not end the wait. Retries when a signal interrupts;
/// `EBADF` when `fd` is not open.
/// Async-signal-safe and allocation-free, so a freshly forked child of any
/// process may call it.
pub fn wait_hang_up(fd: RawFd) -> io::Result<()> {
    // Through libc: nix's poll flags have no POLLRDHUP (and refuse to
    // report revents holding it).
    let mut polled = libc::pollfd {
        fd,
        events: libc::POLLRDHUP,
        revents: 0,
    };
    let gone = libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR;
    loop {
        // SAFETY: one valid pollfd, for the duration of the call.
        let rc = unsafe { libc::poll(&mut polled, 1, -1) };
        if rc < 0 {
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        } else if polled.revents & libc::POLLNVAL != 0 {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        } else if polled.revents & gone != 0 {
            return Ok(());
        }
    }
}

/// Closes every descriptor of this process except those in `keep`
/// (`close_range`, Linux 5.9; one `close` per descriptor number below
/// 65,536 on older kernels). Async-signal-safe and allocation-free.
pub fn close_all_except(keep: &[RawFd]) {
    let close_range = |first: RawFd, last: RawFd| {
        if first > last {
            return;
        }
        // SAFETY: closing descriptors is sound for a process that does not
        // use them afterwards, which the caller promises by keeping only
        // `keep`; the call has no memory arguments.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_close_range,
                first as libc::c_uint,
                last as libc::c_uint,
                0 as libc::c_uint,
            )
        };
        if rc != 0 {
            for fd in first..=last.min(65_535) {
                // SAFETY: as above; a number that is not open is EBADF.
                unsafe { libc::close(fd) };
            }
        }
    };
    let mut first = 0;
    // `keep` is small: visit its numbers in increasing order without
    // sorting (which would need a copy).
    loop {
        let next = keep.iter().copied().filter(|&k| k >= first).min();
        match next {
            Some(kept) => {
                close_range(first, kept - 1);
                first = kept + 1;
            }
            None => {
                close_range(first, RawFd::MAX);
                return;
            }
        }
    }
}

/// Makes the TCP connection on socket `fd` fail (`ETIMEDOUT`: reads
/// and writes fail, `poll` reports an error) once the peer has been silent
/// for about `silence` (at least a second): no answer to keepalive probes
/// while the connection is idle (`SO_KEEPALIVE` with the first probe after
/// a third of it and then every sixth), or to data sent
/// (`TCP_USER_TIMEOUT`, which also bounds the probing). A host that powers
/// off or is cut off sends nothing, and without this a side that waits for
/// it waits forever. A peer that is merely busy still answers: its kernel
/// acknowledges the probes.
pub fn fail_when_silent(fd: RawFd, silence: Duration) -> io::Result<()> {
    use nix::sys::socket::{setsockopt, sockopt};
    let seconds = silence.as_secs().max(1);
    let secs = |s: u64| u32::try_from(s.max(1)).unwrap_or(u32::MAX);
    let idle = secs(seconds / 3);
    let interval = secs(seconds / 6);
    let probes = secs(
        seconds
            .saturating_sub(u64::from(idle))
            .div_ceil(u64::from(interval)),
    );
    let millis = u32::try_from(silence.as_millis().max(1000)).unwrap_or(u32::MAX);
    with_fd(fd, |fd| {
        setsockopt(&fd, sockopt::KeepAlive, &true)?;
        setsockopt(&fd, sockopt::TcpKeepIdle, &idle)?;
        setsockopt(&fd, sockopt::TcpKeepInterval, &interval)?;
        setsockopt(&fd, sockopt::TcpKeepCount, &probes)?;
        setsockopt(&fd, sockopt::TcpUserTimeout, &millis)
    })
}

/// A pipe, `(read end, write end)`, both close-on-exec.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(nix::unistd::pipe2(OFlag::O_CLOEXEC)?)
}

/// Asks for a pipe buffer of `bytes` (`F_SETPIPE_SZ`); the kernel rounds
/// it up to a power of two of pages and refuses more than
/// `/proc/sys/fs/pipe-max-size` for an unprivileged process. Returns the
/// size the pipe now has.
pub fn set_pipe_size(fd: BorrowedFd<'_>, bytes: usize) -> io::Result<usize> {
    let bytes = std::ffi::c_int::try_from(bytes)
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    Ok(fcntl(fd, FcntlArg::F_SETPIPE_SZ(bytes))? as usize)
}

/// Marks `fd` close-on-exec, so programs that JIT'd code executes do not
/// inherit it. Fails (`EBADF`) when `fd` is not open.
pub fn set_close_on_exec(fd: RawFd) -> io::Result<()> {
    with_fd(fd, |fd| {
        let flags = FdFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFD)?);
        fcntl(fd, FcntlArg::F_SETFD(flags | FdFlag::FD_CLOEXEC)).map(drop)
    })
}

/// Makes reads on `fd` return at once (`O_NONBLOCK`): an empty pipe is a
/// [`io::ErrorKind::WouldBlock`] error.
pub fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    with_fd(fd, |fd| {
        let status = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL)?);
        fcntl(fd, FcntlArg::F_SETFL(status | OFlag::O_NONBLOCK)).map(drop)
    })
}

/// A close-on-exec duplicate of `fd`, numbered 3 or above (so it never
/// takes the place of a standard stream).
pub fn duplicate(fd: RawFd) -> io::Result<OwnedFd> {
    with_fd(fd, |fd| {
        let new = fcntl(fd, FcntlArg::F_DUPFD_CLOEXEC(3))?;
        // SAFETY: fcntl just opened `new`, and nothing else owns it.
        Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(new) })
    })
}

/// Makes descriptors 1 and 2 (stdout and stderr) refer to what `stdout`
/// and `stderr` refer to (`dup2`), closing what they referred to. Both are
/// inherited by programs that JIT'd code executes (not close-on-exec).
pub fn redirect_standard_output(stdout: BorrowedFd<'_>, stderr: BorrowedFd<'_>) -> io::Result<()> {
    nix::unistd::dup2_stdout(stdout)?;
    nix::unistd::dup2_stderr(stderr)?;
    Ok(())
}

/// Makes reads and writes on `fd` wait (clears `O_NONBLOCK`, if set).
pub fn set_blocking(fd: RawFd) -> io::Result<()> {
    with_fd(fd, |fd| {
        let status = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL)?);
        if status.contains(OFlag::O_NONBLOCK) {
            fcntl(fd, FcntlArg::F_SETFL(status - OFlag::O_NONBLOCK))?;
        }
        Ok(())
    })
}

/// Whether `err` says the process or the system has no descriptor to spare
/// (`EMFILE`, `ENFILE`).
pub fn out_of_descriptors(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// Restores the default `SIGPIPE` disposition (the Rust runtime ignores the
/// signal): JIT'd code gets the behaviour of a native program, a write to a
/// closed pipe kills it. The executor's own writes use [`write_all`].
pub fn restore_default_sigpipe() -> io::Result<()> {
    // SAFETY: installing the default disposition runs no handler code, so
    // it cannot break any invariant of this process.
    unsafe { nix::sys::signal::signal(Signal::SIGPIPE, SigHandler::SigDfl) }?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsFd, AsRawFd};

    /// A pipe grows to the size asked (a power of two of pages), and a
    /// size past `c_int` is refused before the kernel sees it.
    #[test]
    fn a_pipe_takes_the_size_it_is_given() {
        let (read_end, write_end) = pipe().unwrap();
        assert_eq!(set_pipe_size(write_end.as_fd(), 1 << 20).unwrap(), 1 << 20);
        assert_eq!(set_pipe_size(read_end.as_fd(), 5000).unwrap(), 8192);
        let err = set_pipe_size(write_end.as_fd(), usize::MAX).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn descriptors_that_are_not_open_are_errors() {
        let mut byte = [0u8; 1];
        for fd in [-1, 1 << 20] {
            let err = read(fd, &mut byte).unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::EBADF), "{fd}");
            assert!(set_close_on_exec(fd).is_err());
            assert!(write_all(fd, b"x").is_err());
        }
    }

    #[test]
    fn a_hang_up_ends_the_wait_and_data_does_not() {
        use std::io::Write;
        use std::sync::atomic::{AtomicBool, Ordering};
        let (watched, mut peer) = std::os::unix::net::UnixStream::pair().unwrap();
        static CLOSING: AtomicBool = AtomicBool::new(false);
        let closer = std::thread::spawn(move || {
            peer.write_all(b"data is not a hang-up").unwrap();
            std::thread::sleep(std::time::Duration::from_millis(200));
            CLOSING.store(true, Ordering::SeqCst);
            drop(peer);
        });
        wait_hang_up(watched.as_raw_fd()).unwrap();
        assert!(CLOSING.load(Ordering::SeqCst), "woke up before the hang-up");
        closer.join().unwrap();
        let err = wait_hang_up(1 << 20).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EBADF), "{err}");
    }

    #[test]
    fn all_descriptors_but_the_kept_ones_are_closed() {
        let (kept_read, kept) = pipe().unwrap();
        let (_other_read, other) = pipe().unwrap();
        let (kept_fd, other_fd) = (kept.as_raw_fd(), other.as_raw_fd());
        // SAFETY: the child calls only async-signal-safe functions (close,
        // fcntl, write, _exit), so other test threads' locks do not matter.
        match unsafe { crate::sys::process::checkpoint() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                close_all_except(&[kept_fd]);
                // SAFETY: fcntl on a descriptor number has no memory
                // arguments; a closed one is EBADF.
                let closed = unsafe { libc::fcntl(other_fd, libc::F_GETFD) } < 0;
                let _ = write(kept_fd, if closed { b"y" } else { b"n" });
                crate::sys::exit::exit_immediately(0)
            }
            nix::unistd::ForkResult::Parent { child } => {
                drop((kept, other));
                let mut answer = [0u8; 1];
                assert_eq!(read(kept_read.as_raw_fd(), &mut answer).unwrap(), 1);
                assert_eq!(&answer, b"y", "the other descriptor stayed open");
                crate::sys::process::reap(child).unwrap();
            }
        }
    }

    #[test]
    fn silent_peers_are_given_a_deadline() {
        use nix::sys::socket::{getsockopt, sockopt};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        fail_when_silent(stream.as_raw_fd(), Duration::from_secs(30)).unwrap();
        assert!(getsockopt(&stream, sockopt::KeepAlive).unwrap());
        assert_eq!(getsockopt(&stream, sockopt::TcpKeepIdle).unwrap(), 10);
        assert_eq!(getsockopt(&stream, sockopt::TcpKeepInterval).unwrap(), 5);
        assert_eq!(getsockopt(&stream, sockopt::TcpKeepCount).unwrap(), 4);
        assert_eq!(
            getsockopt(&stream, sockopt::TcpUserTimeout).unwrap(),
            30_000
        );
        // The shortest: a second, probed every second.
        fail_when_silent(stream.as_raw_fd(), Duration::from_millis(10)).unwrap();
        assert_eq!(getsockopt(&stream, sockopt::TcpKeepIdle).unwrap(), 1);
        assert_eq!(getsockopt(&stream, sockopt::TcpKeepInterval).unwrap(), 1);
        assert_eq!(getsockopt(&stream, sockopt::TcpUserTimeout).unwrap(), 1000);
        let (read_end, _write_end) = pipe().unwrap();
        assert!(fail_when_silent(read_end.as_raw_fd(), Duration::from_secs(1)).is_err());
    }

    #[test]
    fn flags_are_set_and_cleared() {
        let (read_end, write_end) = pipe().unwrap();
        let fd = read_end.as_raw_fd();
        fcntl(&read_end, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).unwrap();
        fcntl(&read_end, FcntlArg::F_SETFD(FdFlag::empty())).unwrap();
        set_close_on_exec(fd).unwrap();
        set_blocking(fd).unwrap();
        let flags = FdFlag::from_bits_retain(fcntl(&read_end, FcntlArg::F_GETFD).unwrap());
        assert!(flags.contains(FdFlag::FD_CLOEXEC));
        let status = OFlag::from_bits_retain(fcntl(&read_end, FcntlArg::F_GETFL).unwrap());
        assert!(!status.contains(OFlag::O_NONBLOCK));
        drop(write_end);
    }
}
