//! The C runtime's side of a process's end: `exit`, `_exit`, flushing C
//! stdio, and the handlers `fork` runs (`pthread_atfork`).

use std::ffi::c_int;

/// Ends the process as C's `exit(code)` does: the host's `atexit`
/// handlers run and C stdio is flushed (Rust's own stdout buffer is not,
/// unlike `std::process::exit`).
pub fn exit(code: c_int) -> ! {
    // SAFETY: exit has no preconditions; what it runs are the host's own
    // handlers, registered for exactly this.
    unsafe { libc::exit(code) }
}

/// Ends the process at once, as `_exit(code)`: no handler runs and
/// nothing is flushed. Async-signal-safe.
pub fn exit_immediately(code: c_int) -> ! {
    // SAFETY: _exit has no preconditions.
    unsafe { libc::_exit(code) }
}

/// Flushes every C stdio output stream (`fflush(NULL)`): what JIT'd code
/// printed through `printf` reaches its file.
pub fn flush_c_stdio() {
    // SAFETY: fflush(NULL) flushes all open output streams; always valid.
    unsafe { libc::fflush(std::ptr::null_mut()) };
}

/// `pthread_atfork(prepare, parent, child)`: `fork` calls `prepare` in the
/// parent before it forks, then `parent` in the parent and `child` in the
/// child. The error is the error number `pthread_atfork` returned.
pub fn on_fork(
    prepare: extern "C" fn(),
    parent: extern "C" fn(),
    child: extern "C" fn(),
) -> Result<(), c_int> {
    // SAFETY: the three handlers have the `void (void)` signature
    // pthread_atfork expects and, being functions, live for the whole
    // process.
    match unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) } {
        0 => Ok(()),
        error => Err(error),
    }
}
