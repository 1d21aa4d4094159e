//! Where linked code lives and runs: the one interface between the linker
//! and an executor (the analogue of ORC's `ExecutorProcessControl`).
//!
//! The linker keeps every decision — layout, allocation bookkeeping,
//! symbol tables — and asks the executor only for what must happen in the
//! process that runs the code: reserve and protect pages, copy bytes in,
//! look host names up, run initializers, calls and deinitializers.
//!
//! - [`InProcess`]: this process (the CLI default and the fastest path).
//! - [`Remote`]: a `solder-executor` process over pipes or TCP, optionally
//!   with shared memory; crashes come back as [`Outcome::Crashed`].

#[cfg(feature = "host")]
mod inprocess;
#[cfg(feature = "host")]
mod remote;

use solder_executor::abi::CallingConvention;
use std::time::Duration;

#[cfg(feature = "host")]
pub use inprocess::InProcess;
#[cfg(feature = "host")]
pub use remote::{DEFAULT_PEER_TIMEOUT, Remote, RemoteConfig, Transport, executor_program};

/// Where the program's stdout and stderr go when it runs in an executor
/// process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutorOutput {
    /// On the executor's side: its own stdout and stderr (with the pipe
    /// transport, this process's, which the executor inherits).
    Local,
    /// Forwarded over the connection and written to this process's
    /// stdout and stderr as it arrives, in order with the calls' outcomes.
    Forward,
}
pub use solder_executor::protocol::{PlacementCode, Prot, Recovery, SymbolInfo, SymbolKind};

use solder_executor::module::Finalizers;
pub use solder_executor::tls_carrier::{HostThreadLocal, TlsTemplate};

use crate::error::LinkError;
use crate::graph::Protection;

/// How JIT'd code that was asked to run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It returned this value (rax; a removal's load-order position).
    Returned(u64),
    /// It called `exit(status)`; the executor is gone.
    Exited(i32),
    /// It died of a signal.
    Crashed(Crash),
    /// It outlived its timeout (the call's, or what was left of the
    /// run's, [`Executor::set_deadline`]) and was stopped: by the
    /// executor's timer, which says where it was (`pc`), or killed.
    TimedOut {
        /// The time it was given.
        after: Duration,
        /// Where it was running when the timer stopped it, if known.
        pc: Option<u64>,
    },
    /// The executor vanished without a record (killed from outside, or the
    /// connection dropped).
    Lost(String),
}

/// What the executor's signal handler (or `waitpid`) said about a crash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crash {
    pub signal: i32,
    /// `si_code`; 0 when only the wait status is known.
    pub code: i32,
    pub fault_address: Option<u64>,
    pub pc: Option<u64>,
    pub stack_overflow: bool,
    /// The crashed thread's frames from `pc` outwards (return addresses
    /// after the first), when the executor walked them; empty otherwise.
    pub backtrace: Vec<u64>,
}

/// A module's thread-local block as the executor's dynamic loader holds
/// it ([`Executor::load_thread_locals`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadLocals {
    /// For [`Executor::drop_thread_locals`].
    pub id: u64,
    /// The loader's module id: the first word of a general-dynamic pair.
    pub module: u64,
    /// The block's thread-pointer offset when fixed (negative on x86-64);
    /// 0 otherwise.
    pub tp_offset: i64,
}

/// The executor interface. Methods that run JIT'd code return an
/// [`Outcome`]; everything else either succeeds or is a [`LinkError`].
pub trait Executor {
    /// Page size of the executor's machine.
    fn page_size(&self) -> u64;
    /// Reserves the session's address space.
    fn reserve(
        &mut self,
        size: u64,
        placement: PlacementCode,
        address: u64,
    ) -> Result<u64, LinkError>;
    /// Copies a staged module (pages become read-write until [`Executor::protect`]).
    fn write(&mut self, address: u64, bytes: &[u8]) -> Result<(), LinkError>;
    /// When the executor's memory is this process's own: makes the newly
    /// allocated `[address, address + size)` read-write (until
    /// [`Executor::protect`]) and returns its start, so the linker writes
    /// the module in place instead of staging it for [`Executor::write`].
    /// The first `written` bytes (code and data; the zero-fill after them
    /// is not written) are about to be written, so their pages may be
    /// backed at once. `None` when the memory is elsewhere (another process).
    fn writable_in_place(
        &mut self,
        _address: u64,
        _size: u64,
        _written: u64,
    ) -> Result<Option<std::ptr::NonNull<u8>>, LinkError> {
        Ok(None)
    }
    /// `len` zero bytes to stage a module in, for [`Executor::write`]
    /// (when it is not written in place): all of them about to be written.
    fn staging_image(&mut self, len: usize) -> Vec<u8> {
        vec![0u8; len]
    }
    /// Sets the final protection of whole pages.
    fn protect(&mut self, address: u64, size: u64, protection: Protection)
    -> Result<(), LinkError>;
    /// Writes into live pages and gives them `restore` protection again.
    fn patch(&mut self, address: u64, bytes: &[u8], restore: Protection) -> Result<(), LinkError>;
    /// Discards pages; they read as zero when allocated again.
    fn release(&mut self, address: u64, size: u64) -> Result<(), LinkError>;
    /// Reads executor memory (host data that is copied into a module).
    fn read(&mut self, address: u64, size: u64) -> Result<Vec<u8>, LinkError>;
    /// Looks names up: runtime interposers, then host libraries.
    fn lookup(&mut self, names: &[String]) -> Result<Vec<SymbolInfo>, LinkError>;
    /// `-l NAME`.
    fn link_library(&mut self, name: &str) -> Result<(), LinkError>;
    /// `--preload PATH`.
    fn preload(&mut self, path: &str) -> Result<(), LinkError>;
    fn register_frames(&mut self, address: u64) -> Result<(), LinkError>;
    fn deregister_frames(&mut self, address: u64) -> Result<(), LinkError>;
    /// Hands a module's thread-local template to the dynamic loader of the
    /// process that runs the code (a TLS carrier): every thread gets its
    /// own copy, initialized from the template; with `fixed`, at one
    /// thread-pointer offset in every thread (static TLS).
    fn load_thread_locals(
        &mut self,
        template: &TlsTemplate<'_>,
        fixed: bool,
    ) -> Result<ThreadLocals, LinkError>;
    /// Closes what [`Executor::load_thread_locals`] loaded as `id`.
    fn drop_thread_locals(&mut self, id: u64) -> Result<(), LinkError>;
    /// Where the host's thread-local variable `name` lives, as the dynamic
    /// loader of the process that runs the code says; with `fixed`, also
    /// its thread-pointer offset (its library placed in static TLS if
    /// possible), which initial-exec code needs.
    fn host_thread_local(&mut self, name: &str, fixed: bool) -> Result<HostThreadLocal, LinkError>;
    fn register_module(
        &mut self,
        dso: u64,
        finalizers: &Finalizers,
        position: Option<usize>,
    ) -> Result<(), LinkError>;
    /// `argv` for initializers and `main`.
    fn set_args(&mut self, args: &[String]) -> Result<(), LinkError>;
    /// Makes sure every request made so far has been carried out, reporting
    /// the first that failed. An executor that may defer requests answered
    /// by a bare acknowledgement (a [`Remote`] sends them with the next
    /// request that needs an answer) sends them now.
    fn flush(&mut self) -> Result<(), LinkError> {
        Ok(())
    }
    /// Runs initializers in order, in the module's calling convention.
    fn run_initializers(
        &mut self,
        addresses: &[u64],
        convention: CallingConvention,
    ) -> Result<Outcome, LinkError>;
    /// Calls `address` with six integer arguments, or as `main` (argc, argv,
    /// envp) when `main` is set, in the function's calling convention.
    fn call(
        &mut self,
        address: u64,
        args: [u64; 6],
        main: bool,
        convention: CallingConvention,
        timeout: Option<Duration>,
    ) -> Result<Outcome, LinkError>;
    /// Runs a module's deinitializers as `dlclose` would;
    /// `Returned(position)` (`u64::MAX`: not registered).
    fn remove_module(&mut self, dso: u64) -> Result<Outcome, LinkError>;
    fn end_modules(&mut self, dsos: &[u64]) -> Result<Outcome, LinkError>;
    /// Bounds every later request that runs JIT'd code by `deadline` (a
    /// run's limit, across its initializers, calls and deinitializers):
    /// each gets what is left of it, the shorter of that and its own
    /// timeout, and one that outlives it ends as [`Outcome::TimedOut`].
    /// `None` lifts the bound. Nothing in process, where the caller arms
    /// its own timer ([`solder_executor::crash::arm_run_timeout`]).
    fn set_deadline(&mut self, _deadline: Option<std::time::Instant>) {}
    /// Adds the symbols of the module at `base` to what crash reports name
    /// (only an in-process executor needs them; a remote crash is
    /// symbolized by the session).
    fn add_crash_symbols(
        &mut self,
        _base: u64,
        _symbols: &std::sync::Arc<solder_executor::module::CrashSymbols>,
    ) {
    }
    /// Registers an in-memory object with the debugger interface of the
    /// process that runs the code (the GDB JIT interface); the token
    /// [`Executor::unregister_debug_object`] takes. The image is shared
    /// with the session's record of the module (in process, no copy).
    fn register_debug_object(&mut self, _image: std::sync::Arc<[u8]>) -> Result<u64, LinkError> {
        Err(LinkError::Executor(
            "this executor cannot register objects with a debugger (in process only, for now)"
                .into(),
        ))
    }
    /// Unregisters what [`Executor::register_debug_object`] gave `token`
    /// for.
    fn unregister_debug_object(&mut self, _token: u64) -> Result<(), LinkError> {
        Ok(())
    }
    /// Maps the first page of the jitdump at `path` read-execute in the
    /// process that runs the code: the marker by which `perf record`
    /// learns where that process's dump is.
    fn map_profiler_marker(&mut self, path: &std::path::Path) -> Result<(), LinkError> {
        Err(LinkError::Executor(format!(
            "this executor cannot map the jitdump marker {}",
            path.display()
        )))
    }
    /// Forgets the symbols of the module at `base`.
    fn remove_crash_symbols(&mut self, _base: u64) {}
    /// False once the executor is gone for good (no checkpoint took over).
    fn alive(&self) -> bool {
        true
    }
    /// The executor's process id, when it is a separate process.
    fn pid(&self) -> Option<u32> {
        None
    }
    /// A short description for messages: `in-process`, `pipe (pid 42)`.
    fn describe(&self) -> String;
}

/// The protocol's protection for a segment's.
pub fn prot_of(protection: Protection) -> Prot {
    match protection {
        Protection::Code => Prot::ReadExecute,
        Protection::ReadOnly => Prot::ReadOnly,
        Protection::Data | Protection::Zero => Prot::ReadWrite,
    }
}
