//! The runtime that JIT'd code runs against, and (later) the `solder-executor`
//! process that hosts it.
//!
//! This crate depends on nothing of Solder's: it must stay small enough to
//! reason about and to re-implement elsewhere. Today it provides the
//! in-process pieces:
//!
//! - [`host`]: host symbols by name (`dlsym`), with the default libraries a
//!   compiler driver would link and user preloads; [`dynsym`] reads their
//!   sizes and types through the libraries' GNU hash tables;
//! - [`lifecycle`]: the interposed `atexit` family, per-module handler lists
//!   and deinitializers, and the `exit()` sequence;
//! - [`unwind`]: `.eh_frame` registration with the host unwinder;
//! - [`thread_exit`]: C++ `thread_local` destructors, per thread and
//!   per module;
//! - [`tls_carrier`]: the shared object that hands a module's
//!   thread-local template to the platform's dynamic loader, which then
//!   owns the module's TLS block in every thread (loaded by `sys::tls`);
//! - [`abi`]: calls into JIT'd code in its calling convention (System V
//!   or Microsoft x64) and the platform routines foreign objects expect;
//! - [`crash`]: a signal handler that reports a crash in JIT'd code as
//!   `symbol+offset` before letting the signal kill the process;
//! - [`debugger`]: the GDB JIT interface (in-memory objects with debug
//!   information, registered for debuggers);
//! - [`output`]: the program's stdout and stderr forwarded to the
//!   controller over the connection, in order with the replies;
//! - [`sys`]: every operating-system call of the host layer (and of the
//!   linker's executors), as small typed wrappers: all there is to port to
//!   another OS.

// The portable core: plain values shared with the linker.
pub mod abi;
pub mod module;
pub mod protocol;
pub mod tls_carrier;

// The host layer.
#[cfg(feature = "host")]
pub mod calls;
#[cfg(feature = "host")]
pub mod crash;
#[cfg(feature = "host")]
pub mod debugger;
#[cfg(feature = "host")]
pub mod dynsym;
#[cfg(feature = "host")]
pub mod host;
#[cfg(feature = "host")]
pub mod lifecycle;
#[cfg(feature = "host")]
pub mod listener;
#[cfg(feature = "host")]
pub mod output;
#[cfg(feature = "host")]
pub mod pages;
#[cfg(feature = "host")]
pub mod server;
#[cfg(feature = "host")]
pub mod shm;
#[cfg(feature = "host")]
pub mod snapshot;
#[cfg(feature = "host")]
pub mod sys;
#[cfg(feature = "host")]
pub mod thread_exit;
#[cfg(feature = "host")]
pub mod thread_locals;
#[cfg(feature = "host")]
pub mod transport;
#[cfg(feature = "host")]
pub mod unwind;
#[cfg(feature = "host")]
pub mod watchdog;
