//! Signals: their numbers and names, handlers for fatal signals that run on
//! an alternate stack, and what the kernel tells such a handler about the
//! crash (the [`CrashContext`]).
//!
//! Everything documented as async-signal-safe here allocates nothing and
//! takes no lock: a crash handler may call it.

use std::ffi::{c_int, c_void};
use std::io;
use std::os::fd::RawFd;

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};

pub const SIGSEGV: c_int = libc::SIGSEGV;
pub const SIGBUS: c_int = libc::SIGBUS;
pub const SIGILL: c_int = libc::SIGILL;
pub const SIGFPE: c_int = libc::SIGFPE;
pub const SIGABRT: c_int = libc::SIGABRT;
pub const SIGTRAP: c_int = libc::SIGTRAP;
pub const SIGKILL: c_int = libc::SIGKILL;
pub const SIGTERM: c_int = libc::SIGTERM;
pub const SIGINT: c_int = libc::SIGINT;
pub const SIGPIPE: c_int = libc::SIGPIPE;
pub const SIGALRM: c_int = libc::SIGALRM;

/// The name of a signal, as shells and `kill -l` spell it ("signal" for
/// one without a name here). Async-signal-safe.
pub fn name(signal: c_int) -> &'static str {
    match signal {
        SIGSEGV => "SIGSEGV",
        SIGBUS => "SIGBUS",
        SIGILL => "SIGILL",
        SIGFPE => "SIGFPE",
        SIGABRT => "SIGABRT",
        SIGTRAP => "SIGTRAP",
        SIGKILL => "SIGKILL",
        SIGTERM => "SIGTERM",
        SIGINT => "SIGINT",
        SIGPIPE => "SIGPIPE",
        SIGALRM => "SIGALRM",
        _ => "signal",
    }
}

/// What the kernel tells a fatal-signal handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrashContext {
    pub signal: c_int,
    /// `si_code`: how the signal came about (e.g. `SEGV_ACCERR`).
    pub code: c_int,
    /// `si_addr`: the faulting address for `SIGSEGV`, `SIGBUS`, `SIGILL`,
    /// `SIGFPE` and `SIGTRAP`; for other signals the kernel's union holds
    /// other fields there and the value means nothing.
    pub fault_address: u64,
    /// The interrupted code's program counter and stack pointer.
    pub pc: u64,
    pub sp: u64,
}

/// A handler for fatal signals, installed by [`handle_fatal`].
pub trait FatalSignalHandler {
    /// Runs in signal context, on the alternate stack when one is
    /// installed ([`install_alternate_stack`]), with the signal's action
    /// already reset to the default: it must be async-signal-safe. When it
    /// returns, the signal handler returns.
    fn on_signal(context: &CrashContext);
}

/// Handles `signal` with `H`, once: on the alternate stack
/// (`SA_ONSTACK`; the thread's own stack when none is installed), with
/// the action reset to the default as the handler starts
/// (`SA_RESETHAND`), so a handler that re-raises the signal dies of it.
///
/// # Safety
/// `H::on_signal` must be async-signal-safe: it may interrupt any code,
/// the allocator's and lock holders' included.
pub unsafe fn handle_fatal<H: FatalSignalHandler>(signal: c_int) -> io::Result<()> {
    let action = SigAction::new(
        SigHandler::SigAction(trampoline::<H>),
        SaFlags::SA_SIGINFO | SaFlags::SA_ONSTACK | SaFlags::SA_RESETHAND,
        SigSet::empty(),
    );
    // SAFETY: the trampoline only calls the async-signal-safe steps below
    // and `H::on_signal`, which the caller vouches for.
    unsafe { set_action(signal, &action) }
}

/// Restores the default action of `signal`.
pub fn restore_default(signal: c_int) -> io::Result<()> {
    let action = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: the default action runs no code of ours.
    unsafe { set_action(signal, &action) }
}

/// `sigaction(signal, action)`, the previous action discarded.
///
/// # Safety
/// A handler in `action` must be async-signal-safe.
unsafe fn set_action(signal: c_int, action: &SigAction) -> io::Result<()> {
    let signal = Signal::try_from(signal)?;
    // SAFETY: the caller vouches for the handler; the previous action that
    // nix returns is dropped unused (never called through).
    unsafe { nix::sys::signal::sigaction(signal, action) }?;
    Ok(())
}

/// The entry point the kernel calls: reads the context, then hands over to
/// `H`. Async-signal-safe when `H::on_signal` is.
extern "C" fn trampoline<H: FatalSignalHandler>(
    signal: c_int,
    info: *mut libc::siginfo_t,
    context: *mut c_void,
) {
    clear_alignment_check();
    // SAFETY: the kernel passes a valid siginfo and ucontext to an
    // SA_SIGINFO handler; reading `si_addr` reads bytes of the siginfo
    // union whatever the signal (its meaning is the handler's concern).
    let context = unsafe {
        let (pc, sp) = pc_and_sp(&*(context as *const libc::ucontext_t));
        CrashContext {
            signal,
            code: (*info).si_code,
            fault_address: (*info).si_addr() as u64,
            pc,
            sp,
        }
    };
    H::on_signal(&context);
}

/// The kernel delivers a signal with the interrupted code's EFLAGS.AC
/// (alignment check) still set; any misaligned access in the handler would
/// then raise a second SIGBUS and kill the process unreported. Runs first
/// in the trampoline, before anything else is read.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn clear_alignment_check() {
    // SAFETY: clears one flag bit through the stack; touches nothing else.
    unsafe {
        std::arch::asm!(
            "pushfq",
            "and qword ptr [rsp], {mask}",
            "popfq",
            mask = const !(1i64 << 18),
        );
    }
}

/// The interrupted code's program counter and stack pointer, from the
/// machine context: the one CPU-specific read of a crash (a port adds an
/// arm for its architecture).
#[cfg(target_arch = "x86_64")]
fn pc_and_sp(context: &libc::ucontext_t) -> (u64, u64) {
    let registers = &context.uc_mcontext.gregs;
    (
        registers[libc::REG_RIP as usize] as u64,
        registers[libc::REG_RSP as usize] as u64,
    )
}

/// Maps `size` bytes (never unmapped) and makes them this thread's
/// alternate signal stack. The pages cost nothing until a signal arrives.
pub fn install_alternate_stack(size: usize) -> io::Result<()> {
    // SAFETY: an anonymous private mapping at an address of the kernel's
    // choosing; nothing else refers to it.
    let stack = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if stack == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let ss = libc::stack_t {
        ss_sp: stack,
        ss_flags: 0,
        ss_size: size,
    };
    // SAFETY: `ss` describes a mapping that is never unmapped.
    if unsafe { libc::sigaltstack(&ss, std::ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Blocks `signal` in the calling thread. Async-signal-safe.
pub fn block_in_this_thread(signal: c_int) -> io::Result<()> {
    let mut set = SigSet::empty();
    set.add(Signal::try_from(signal)?);
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
    Ok(())
}

/// Runs `f` with every signal blocked in the calling thread (the mask is
/// restored after it): threads that `f` starts inherit the blocked mask,
/// so process-directed signals (the call timer's `SIGALRM`, `SIGINT`) go
/// to the threads that run JIT'd code, never to them.
pub fn with_all_blocked<T>(f: impl FnOnce() -> T) -> T {
    let old = SigSet::all().thread_swap_mask(SigmaskHow::SIG_BLOCK).ok();
    let result = f();
    if let Some(old) = old {
        let _ = old.thread_set_mask();
    }
    result
}

/// Sends `signal` to the calling thread. Async-signal-safe.
pub fn raise(signal: c_int) -> io::Result<()> {
    nix::sys::signal::raise(Signal::try_from(signal)?)?;
    Ok(())
}

/// One `write(2)` of `bytes` to `fd`: how many bytes went out. For signal
/// handlers, which cannot use `std::io` (its stdio locks); async-signal-safe
/// (an error is the errno value, nothing is allocated).
pub fn write_in_handler(fd: RawFd, bytes: &[u8]) -> io::Result<usize> {
    // SAFETY: `bytes` is a valid buffer of its length; a bad descriptor is
    // an error return, not undefined behaviour.
    let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_signals_shells_name() {
        assert_eq!(name(SIGSEGV), "SIGSEGV");
        assert_eq!(name(SIGALRM), "SIGALRM");
        assert_eq!(name(0), "signal");
    }
}
