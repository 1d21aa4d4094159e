//! Ends a TCP session whose controller is gone, even while JIT'd code runs.
//!
//! A serving process reads its socket only between requests: while JIT'd
//! code spins in a call, a controller that was killed, gave up on a timed
//! out call, or lost the network would otherwise leave it (and the
//! checkpoint that takes over from it) running forever. Over pipes the
//! kernel's parent-death signal covers this; over TCP the session has a
//! **watchdog**: a small child process, made when the session starts (and
//! again by a checkpoint that takes over), that sleeps in `poll` on the
//! session's socket for its hang-up alone (`POLLRDHUP`, `POLLHUP`,
//! `POLLERR`: the peer closed or reset the connection, or TCP keepalive
//! gave up on it) and then kills the serving process with `SIGKILL`, which
//! JIT'd code can neither block nor handle. A live checkpoint then takes
//! over, finds the connection gone and exits with it.
//!
//! The watchdog is a clone with no exit signal (like a checkpoint, see
//! [`crate::snapshot`]), so JIT'd code that waits for its own children
//! never sees it; it dies with the serving process (`PR_SET_PDEATHSIG`)
//! and keeps only the socket and the executor's own stderr open (closing
//! the rest, so it holds none of the program's pipes or files, forwarded
//! output's included). Costs nothing per request.

use std::ffi::c_int;

use crate::sys;
use crate::sys::process::ForkResult;

/// Starts the watchdog of the session on socket `fd`, served by this
/// process. A failure leaves the session unwatched (it still ends at the
/// next read that finds the connection gone).
pub fn watch(fd: c_int) {
    let server = sys::process::id();
    let diag = crate::transport::diag_fd();
    // SAFETY: the child calls only async-signal-safe functions (prctl,
    // getppid, close_range, poll, write, kill, _exit) and allocates
    // nothing, so it does not matter which locks other threads held.
    match unsafe { sys::process::checkpoint() } {
        Ok(ForkResult::Child) => {
            if sys::process::die_with_parent().is_ok() && sys::process::parent_id() == server {
                sys::io::close_all_except(&[fd, diag]);
                if sys::io::wait_hang_up(fd).is_ok() {
                    let _ = sys::signal::write_in_handler(
                        diag,
                        b"solder-executor: the controller is gone; ending its session\n",
                    );
                    let _ = sys::spawn::kill(server.as_raw());
                }
            }
            sys::exit::exit_immediately(0)
        }
        Ok(ForkResult::Parent { .. }) => {}
        Err(err) => crate::transport::diag(&format!(
            "cannot start the session's watchdog ({err}): a vanished controller is noticed \
             only between requests"
        )),
    }
}
