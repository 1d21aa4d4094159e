//! Processes: this one's id and environment, and the children the linker
//! starts (an executor, a trial): pipes for them, descriptors they inherit,
//! watching them die (pidfd, `poll`), waiting for them (`waitpid`) and
//! killing them.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

/// Makes the program `command` starts inherit `fds` (clears their
/// close-on-exec flag in the child, between `fork` and `exec`; spawning
/// fails if that does). The descriptors must stay open until it is spawned.
pub fn inherit_descriptors(command: &mut Command, fds: &[BorrowedFd<'_>]) {
    let fds: Vec<RawFd> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
    // SAFETY: between fork and exec only fcntl runs, which is
    // async-signal-safe; the closure allocates nothing.
    unsafe {
        command.pre_exec(move || {
            for &fd in &fds {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// Makes the program `command` starts die (`SIGKILL`) when this process
/// does (`PR_SET_PDEATHSIG`, set between `fork` and `exec`).
pub fn child_dies_with_parent(command: &mut Command) {
    // SAFETY: the closure only sets a process attribute with prctl, which
    // is async-signal-safe, and allocates nothing.
    unsafe {
        command.pre_exec(|| {
            // As before this wrapper: a failure leaves the child unbound.
            let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
            Ok(())
        });
    }
}

/// Makes this process the reaper of its orphaned descendants
/// (`PR_SET_CHILD_SUBREAPER`): it can wait for a grandchild whose parent
/// died.
pub fn become_subreaper() -> io::Result<()> {
    nix::sys::prctl::set_child_subreaper(true)?;
    Ok(())
}

/// A descriptor that becomes readable when process `pid` ends
/// (`pidfd_open`; an error on kernels before 5.3).
pub fn open_pidfd(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the syscall returned a fresh descriptor that we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// How a child ended, from its wait status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitStatus {
    /// It exited with this status.
    Exited(i32),
    /// A signal (this number) killed it.
    Signaled(i32),
    /// Neither (the raw status).
    Other(i32),
}

impl WaitStatus {
    /// Decodes a raw `waitpid` status.
    pub fn from_raw(status: i32) -> WaitStatus {
        if libc::WIFEXITED(status) {
            WaitStatus::Exited(libc::WEXITSTATUS(status))
        } else if libc::WIFSIGNALED(status) {
            WaitStatus::Signaled(libc::WTERMSIG(status))
        } else {
            WaitStatus::Other(status)
        }
    }
}

/// `waitpid(pid, WNOHANG | __WALL)`: how child `pid` ended, or `None`
/// while it runs. `__WALL`: a child cloned without an exit signal (a
/// checkpoint that took over) is waited for too.
pub fn try_wait(pid: i32) -> io::Result<Option<WaitStatus>> {
    let mut status = 0;
    // SAFETY: waitpid writes the status of our own child into `status`.
    let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG | libc::__WALL) };
    match rc {
        _ if rc < 0 => Err(io::Error::last_os_error()),
        0 => Ok(None),
        _ => Ok(Some(WaitStatus::from_raw(status))),
    }
}

/// Sends `SIGKILL` to process `pid`.
pub fn kill(pid: i32) -> io::Result<()> {
    nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL)?;
    Ok(())
}

/// Whether process `pid` exists and may be signalled (`kill(pid, 0)`).
pub fn exists(pid: i32) -> bool {
    nix::sys::signal::kill(Pid::from_raw(pid), None).is_ok()
}

/// Waits up to `timeout_ms` (-1: no limit; 0: just looks) until one of
/// `fds` is readable, hung up or in error (`poll`); which ones are. A
/// `None` is ignored. An interrupted wait is an `Interrupted` error.
pub fn poll_readable<const N: usize>(
    fds: [Option<BorrowedFd<'_>>; N],
    timeout_ms: i32,
) -> io::Result<[bool; N]> {
    let mut pollfds = fds.map(|fd| libc::pollfd {
        // A negative descriptor is ignored by poll.
        fd: fd.map_or(-1, |fd| fd.as_raw_fd()),
        events: libc::POLLIN,
        revents: 0,
    });
    // SAFETY: `pollfds` is a valid array of N pollfds.
    let rc = unsafe { libc::poll(pollfds.as_mut_ptr(), N as libc::nfds_t, timeout_ms) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(pollfds.map(|p| p.revents != 0))
}

/// The path through which another process of this machine opens
/// descriptor `fd` of process `pid` (`/proc/PID/fd/FD`).
pub fn descriptor_path(pid: u32, fd: i32) -> String {
    format!("/proc/{pid}/fd/{fd}")
}
