//! The host layer's operating-system calls: every `libc` (and `nix`) call
//! of the runtime, the executor and the linker's executors lives under
//! this module, as small wrappers with typed results named for what they
//! do. The rest of the host layer calls these, and keeps no `unsafe` of its
//! own for an operating-system call.
//!
//! - [`signal`]: signal numbers and names, fatal-signal handlers on an
//!   alternate stack and the crash context they are given;
//! - [`dl`]: the dynamic loader (opening libraries, looking names up, the
//!   loaded objects and their program headers);
//! - [`unwind`]: `.eh_frame` registration with the host unwinder;
//! - [`exit`]: the C runtime's exits, stdio flushing and fork handlers;
//! - [`spawn`]: child processes: starting one with inherited descriptors,
//!   watching, waiting for and killing it.

pub mod dl;
pub mod exit;
pub mod signal;
pub mod spawn;
pub mod unwind;
