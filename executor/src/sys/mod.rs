//! The host layer's operating-system calls: every call the executor makes
//! into the kernel or the C library goes through this folder, and nothing
//! outside it names `libc`. Porting the host to another operating system
//! means editing this folder (and only this folder).
//!
//! Each function is a small wrapper named for what it does, with a typed
//! result (`std::io::Result`); it is safe unless its caller must promise
//! something the compiler cannot check (which memory a page operation
//! touches, that the process is single-threaded before a fork), and then
//! its `# Safety` section says what. Calls go through `nix` where it wraps
//! them safely, and through `libc` where it does not (raw addresses,
//! `clone` without glibc's fork handlers, stdio).
//!
//! - [`memory`]: reserving, protecting, discarding and releasing pages,
//!   the memfd behind a shared slab, and reading this process's memory
//!   without faulting;
//! - [`process`]: fork and checkpoint clones, waiting for children, process
//!   ids, the parent-death signal, the call timer, exit hooks and leaving at
//!   once;
//! - [`io`]: descriptors: reads, writes that never raise `SIGPIPE`, polls,
//!   pipes and descriptor flags.

#[cfg(not(target_os = "linux"))]
compile_error!(
    "solder-executor's host layer (the `host` feature: the runtime, the \
     executor's server and src/sys/) supports Linux only; the portable core \
     builds on any OS with `--no-default-features`"
);

pub mod io;
pub mod memory;
pub mod process;
