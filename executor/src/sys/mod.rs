//! The host layer's operating-system calls: every call the executor, the
//! runtime and the linker's executors make into the kernel or the C
//! library goes through this folder, and nothing outside it names `libc`.
//! Porting the host to another operating system means editing this folder
//! (and only this folder).
//!
//! Each function is a small wrapper named for what it does, with a typed
//! result; it is safe unless its caller must promise something the
//! compiler cannot check (which memory a page operation touches, that the
//! process is single-threaded before a fork, that a signal handler is
//! async-signal-safe), and then its `# Safety` section says what. Calls go
//! through `nix` where it wraps them safely, and through `libc` where it
//! does not (raw addresses, `clone` without glibc's fork handlers, the
//! dynamic loader, ucontext registers, stdio).
//!
//! - [`cpu`]: which CPU a thread is on, and keeping a helper off one;
//! - [`memory`]: reserving, protecting, discarding and releasing pages,
//!   the memfd behind a shared slab, and reading this process's memory
//!   without faulting;
//! - [`process`]: fork and checkpoint clones, waiting for children, process
//!   ids, the parent-death signal, the call timer, exit hooks and leaving at
//!   once;
//! - [`fs`]: files named within a directory opened once;
//! - [`io`]: descriptors: reads, writes that never raise `SIGPIPE`, polls,
//!   pipes and descriptor flags;
//! - [`signal`]: signal numbers and names, fatal-signal handlers on an
//!   alternate stack and the crash context they are given;
//! - [`dl`]: the dynamic loader (opening libraries, looking names up, the
//!   loaded objects and their program headers);
//! - [`unwind`]: `.eh_frame` registration with the host unwinder;
//! - [`exit`]: the C runtime's exits, stdio flushing and fork handlers;
//! - [`spawn`]: child processes: starting one with inherited descriptors,
//!   watching, waiting for and killing it;
//! - [`tls`]: thread-local blocks owned by the dynamic loader (TLS
//!   carriers), `__tls_get_addr` and the thread pointer.

#[cfg(not(target_os = "linux"))]
compile_error!(
    "solder-executor's host layer (the `host` feature: the runtime, the \
     executor's server and src/sys/) supports Linux only; the portable core \
     builds on any OS with `--no-default-features`"
);

pub mod cpu;
pub mod dl;
pub mod exit;
pub mod fs;
pub mod io;
pub mod memory;
pub mod process;
pub mod signal;
pub mod spawn;
pub mod tls;
pub mod unwind;
