//! This process and its children: ids, fork and the checkpoint clone,
//! waiting for children, the parent-death signal, the call timer, the
//! process's environment, exit hooks and libraries loaded into it,
//! starting again and leaving at once.

use std::ffi::{c_char, c_int, c_void};
use std::io;
use std::time::Duration;

use nix::sys::signal::{SigHandler, Signal};
use nix::sys::wait::{WaitPidFlag, waitpid};

pub use nix::unistd::{ForkResult, Pid};

/// This process's id.
pub fn id() -> Pid {
    nix::unistd::getpid()
}

/// `CLOCK_MONOTONIC` in nanoseconds (the clock profilers record with).
pub fn monotonic_ns() -> Option<u64> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `now`.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) } != 0 {
        return None;
    }
    u64::try_from(now.tv_sec)
        .ok()?
        .checked_mul(1_000_000_000)?
        .checked_add(u64::try_from(now.tv_nsec).ok()?)
}

/// The calling thread's id (`gettid`). Async-signal-safe.
pub fn thread_id() -> i32 {
    nix::unistd::gettid().as_raw()
}

/// Whether thread `tid` of this process still exists (its
/// `/proc/self/task` entry): a joined thread is gone from the kernel's
/// count of the process's threads once this is false.
pub fn thread_exists(tid: i32) -> bool {
    std::path::Path::new(&format!("/proc/self/task/{tid}")).exists()
}

/// The parent process's id.
pub fn parent_id() -> Pid {
    nix::unistd::getppid()
}

/// Forks (`fork`): returns in the parent with the child's id and in the
/// child, a copy of this process with only the calling thread.
///
/// # Safety
/// The process must have one thread, or the child must call only
/// async-signal-safe functions until it execs or exits (another thread may
/// have held a lock at the fork).
pub unsafe fn fork() -> io::Result<ForkResult> {
    // SAFETY: guaranteed by the caller.
    Ok(unsafe { nix::unistd::fork() }?)
}

/// Forks a checkpoint: a raw `clone` with no flags, which is a fork that
/// runs none of the C library's fork handlers (`pthread_atfork`) and sends
/// its parent no signal when it ends (exit signal 0), so code that waits
/// for its own children never sees it. Such a child is reaped with
/// [`reap`]; the copy keeps the C library's cached thread id.
///
/// # Safety
/// As for [`fork`]: the child copies only the calling thread, so the
/// process must have one thread, or the child must call only
/// async-signal-safe functions until it exits.
pub unsafe fn checkpoint() -> io::Result<ForkResult> {
    // SAFETY: guaranteed by the caller. With no flags the child gets a
    // copy-on-write copy of this address space, this stack included, and
    // returns here with 0.
    let pid = unsafe { libc::syscall(libc::SYS_clone, 0 as libc::c_ulong, 0, 0, 0, 0) };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(ForkResult::Child),
        pid => Ok(ForkResult::Parent {
            child: Pid::from_raw(pid as libc::pid_t),
        }),
    }
}

/// Waits for the child `pid` to end, whatever its exit signal (`__WALL`,
/// for [`checkpoint`] children), retrying when a signal interrupts.
pub fn reap(pid: Pid) -> io::Result<()> {
    loop {
        match waitpid(pid, Some(WaitPidFlag::__WALL)) {
            Err(nix::errno::Errno::EINTR) => {}
            result => return result.map(drop).map_err(io::Error::from),
        }
    }
}

/// Whether the kernel reaps this process's children as they end (`SIGCHLD`
/// ignored) or leaves them for a wait (the default disposition).
pub fn reap_children_automatically(automatically: bool) -> io::Result<()> {
    let handler = if automatically {
        SigHandler::SigIgn
    } else {
        SigHandler::SigDfl
    };
    // SAFETY: ignoring or defaulting a signal installs no handler code, so
    // it cannot break any invariant of this process.
    unsafe { nix::sys::signal::signal(Signal::SIGCHLD, handler) }?;
    Ok(())
}

/// Asks the kernel to kill this process (`SIGKILL`) when the thread that
/// forked it ends (`PR_SET_PDEATHSIG`).
pub fn die_with_parent() -> io::Result<()> {
    Ok(nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?)
}

/// Replaces this process with a new run of its own program
/// (`/proc/self/exe`, as `argv[0]` named it), with the same arguments and
/// the environment variable `name` set to `value`; returns only if that
/// fails. The real-time timer ([`set_alarm`]) is disarmed first: it would
/// outlive the exec, and its signal would end the new run before that
/// installs a handler. Descriptors opened close-on-exec (every one the
/// standard library and this layer open) do not pass to the new run.
pub fn restart_with(name: &str, value: &std::ffi::OsStr) -> io::Error {
    use std::os::unix::process::CommandExt;
    if let Err(err) = set_alarm(Duration::ZERO) {
        return err;
    }
    let mut args = std::env::args_os();
    let program = args.next().unwrap_or_default();
    std::process::Command::new("/proc/self/exe")
        .arg0(program)
        .args(args)
        .env(name, value)
        .exec()
}

/// Arms the real-time timer (`ITIMER_REAL`) to send `SIGALRM` once, `after`
/// from now (to the microsecond); a zero duration disarms it.
pub fn set_alarm(after: Duration) -> io::Result<()> {
    let value = libc::itimerval {
        it_interval: libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        },
        it_value: libc::timeval {
            tv_sec: after.as_secs() as libc::time_t,
            tv_usec: after.subsec_micros() as libc::suseconds_t,
        },
    };
    // SAFETY: `value` is a valid itimerval; the old value is not wanted.
    if unsafe { libc::setitimer(libc::ITIMER_REAL, &value, std::ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The process's environment as the C library keeps it (`environ`): the
/// third argument of `main`.
pub fn environ() -> *const *const c_char {
    // SAFETY: reads the pointer value of the C library's `environ`, which
    // only `setenv` and friends change, and not concurrently here.
    unsafe { libc::environ as *const *const c_char }
}

unsafe extern "C" {
    /// glibc: run `f(status, arg)` during `exit`, like `atexit`.
    #[link_name = "on_exit"]
    fn c_on_exit(f: extern "C" fn(c_int, *mut c_void), arg: *mut c_void) -> c_int;
}

/// Has `exit` call `f(status, NULL)` (glibc's `on_exit`), after the
/// handlers registered later, as `atexit` would.
pub fn on_exit(f: extern "C" fn(c_int, *mut c_void)) -> io::Result<()> {
    // SAFETY: `f` is a function (it lives for the whole process) with the
    // callback signature glibc expects, and it ignores its null argument.
    if unsafe { c_on_exit(f, std::ptr::null_mut()) } != 0 {
        return Err(io::Error::other("on_exit failed"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_child_is_reaped_and_ids_differ() {
        let me = id();
        assert_ne!(me, parent_id());
        // SAFETY: the child calls only async-signal-safe functions (getpid
        // and _exit), so other test threads' locks do not matter.
        match unsafe { checkpoint() }.unwrap() {
            ForkResult::Child => crate::sys::exit::exit_immediately(0),
            ForkResult::Parent { child } => {
                assert_ne!(child, me);
                reap(child).unwrap();
                // Reaped: waiting again finds no such child.
                assert!(reap(child).is_err());
            }
        }
    }

    #[test]
    fn the_alarm_arms_and_disarms() {
        set_alarm(Duration::from_secs(3600)).unwrap();
        set_alarm(Duration::ZERO).unwrap();
    }
}
