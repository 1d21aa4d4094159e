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
//! - [`abi`]: calls into JIT'd code in its calling convention (System V
//!   or Microsoft x64) and the platform routines foreign objects expect;
//! - [`crash`]: a signal handler that reports a crash in JIT'd code as
//!   `symbol+offset` before letting the signal kill the process.

pub mod abi;
pub mod calls;
pub mod crash;
pub mod dynsym;
pub mod host;
pub mod lifecycle;
pub mod module;
pub mod pages;
pub mod protocol;
pub mod server;
pub mod shm;
pub mod snapshot;
pub mod transport;
pub mod unwind;
