//! The in-process executor: JIT'd code runs in this process, against the
//! runtime linked into it. Memory operations are direct system calls; a
//! crash is reported by the in-process crash handler and kills the process
//! (use a remote executor to survive it).

use solder_executor::abi::CallingConvention;
use std::collections::HashMap;
use std::ffi::{CString, c_char, c_int};
use std::time::Duration;

use solder_executor::calls;
use solder_executor::crash::{self, CrashSymbols};
use solder_executor::host::HostLibraries;
use solder_executor::lifecycle;
use solder_executor::module::Finalizers;
use solder_executor::pages;
use solder_executor::sys;
use solder_executor::thread_locals::ThreadLocalBlocks;
use solder_executor::unwind::{RegisteredFrames, SlabCeiling};
use std::sync::Arc;

use super::{
    Executor, HostThreadLocal, Outcome, PlacementCode, SymbolInfo, ThreadLocals, TlsTemplate,
    prot_of,
};
use crate::error::LinkError;
use crate::graph::Protection;

pub struct InProcess {
    host: HostLibraries,
    page: u64,
    /// Reservations made by this executor, unmapped when it is dropped.
    reservations: Vec<(u64, u64)>,
    frames: HashMap<u64, RegisteredFrames>,
    /// Each reservation's hold on the unwinder's ceiling (by base), taken
    /// with its first frames and dropped after all of them.
    ceilings: HashMap<u64, SlabCeiling>,
    /// Modules' thread-local blocks (TLS carriers) by id.
    thread_locals: ThreadLocalBlocks,
    args: ProgramArgs,
}

/// `argc`, `argv` as C sees them, kept alive for the session.
struct ProgramArgs {
    _strings: Vec<CString>,
    argv: Vec<*const c_char>,
}

impl ProgramArgs {
    fn new(args: &[String]) -> Self {
        let strings: Vec<CString> = args
            .iter()
            .map(|a| CString::new(a.replace('\0', "")).expect("NULs removed"))
            .collect();
        let mut argv: Vec<*const c_char> = strings.iter().map(|s| s.as_ptr()).collect();
        argv.push(std::ptr::null());
        ProgramArgs {
            _strings: strings,
            argv,
        }
    }

    fn argc(&self) -> c_int {
        (self.argv.len() - 1) as c_int
    }
}

impl InProcess {
    pub fn new() -> Result<Self, LinkError> {
        Ok(InProcess {
            host: HostLibraries::with_defaults()?,
            page: pages::page_size(),
            reservations: Vec::new(),
            frames: HashMap::new(),
            ceilings: HashMap::new(),
            thread_locals: ThreadLocalBlocks::default(),
            args: ProgramArgs::new(&["solder".to_string()]),
        })
    }

    /// The reservation holding all of `[address, address + size)`: its
    /// base and size.
    fn reservation_of(&self, address: u64, size: u64) -> Result<(u64, u64), LinkError> {
        let end = address.checked_add(size);
        self.reservations
            .iter()
            .copied()
            .find(|&(base, len)| address >= base && end.is_some_and(|e| e <= base + len))
            .ok_or_else(|| {
                LinkError::Memory(format!(
                    "range {address:#x}+{size:#x} lies outside the session's slab"
                ))
            })
    }

    /// Whether `[address, address + size)` lies inside one reservation.
    fn owns(&self, address: u64, size: u64) -> Result<(), LinkError> {
        self.reservation_of(address, size).map(drop)
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.frames.clear();
        self.ceilings.clear();
        for &(base, size) in &self.reservations {
            // SAFETY: the reservation is this executor's; the session that
            // used it has ended (it owns this executor) and nothing runs in
            // it any more.
            unsafe { pages::unreserve(base, size) };
        }
    }
}

fn memory_error(err: pages::PageError) -> LinkError {
    LinkError::Memory(err.to_string())
}

impl Executor for InProcess {
    fn page_size(&self) -> u64 {
        self.page
    }

    fn reserve(
        &mut self,
        size: u64,
        placement: PlacementCode,
        address: u64,
    ) -> Result<u64, LinkError> {
        let base = pages::reserve(size, placement, address).map_err(memory_error)?;
        self.reservations
            .push((base, size.div_ceil(self.page) * self.page));
        Ok(base)
    }

    fn write(&mut self, address: u64, bytes: &[u8]) -> Result<(), LinkError> {
        self.owns(address, bytes.len() as u64)?;
        // SAFETY: the range lies in this executor's reservation (checked),
        // which no Rust reference points into.
        unsafe { pages::write(address, bytes, self.page) }.map_err(memory_error)
    }

    fn writable_in_place(
        &mut self,
        address: u64,
        size: u64,
        written: u64,
    ) -> Result<Option<std::ptr::NonNull<u8>>, LinkError> {
        self.owns(address, size)?;
        // SAFETY: the range lies in this executor's reservation (checked),
        // which no Rust reference points into; read-write, not executable.
        // The populated pages are a prefix of it, read-write from here on.
        unsafe {
            pages::make_writable(address, size, self.page).map_err(memory_error)?;
            pages::populate(address, written.min(size), self.page);
        }
        Ok(std::ptr::NonNull::new(address as *mut u8))
    }

    fn protect(
        &mut self,
        address: u64,
        size: u64,
        protection: Protection,
    ) -> Result<(), LinkError> {
        self.owns(address, size)?;
        // SAFETY: as for `write`; the linker passes page-aligned ranges.
        unsafe { pages::protect(address, size, prot_of(protection)) }.map_err(memory_error)
    }

    fn patch(&mut self, address: u64, bytes: &[u8], restore: Protection) -> Result<(), LinkError> {
        self.owns(address, bytes.len() as u64)?;
        // SAFETY: as for `write`; the pages keep their other contents.
        unsafe { pages::patch(address, bytes, prot_of(restore), self.page) }.map_err(memory_error)
    }

    fn release(&mut self, address: u64, size: u64) -> Result<(), LinkError> {
        self.owns(address, size)?;
        // SAFETY: the range is in our reservation and its module is gone.
        unsafe { pages::release(address, size) }.map_err(memory_error)
    }

    fn read(&mut self, address: u64, size: u64) -> Result<Vec<u8>, LinkError> {
        // SAFETY: the linker reads only host data symbols of `size` bytes
        // (their dynamic symbols say so), mapped while their library is.
        Ok(unsafe { std::slice::from_raw_parts(address as *const u8, size as usize) }.to_vec())
    }

    fn lookup(&mut self, names: &[String]) -> Result<Vec<SymbolInfo>, LinkError> {
        Ok(names.iter().map(|n| self.host.resolve_for_jit(n)).collect())
    }

    fn link_library(&mut self, name: &str) -> Result<(), LinkError> {
        Ok(self.host.link_library(name)?)
    }

    fn preload(&mut self, path: &str) -> Result<(), LinkError> {
        Ok(self.host.preload(path)?)
    }

    fn register_frames(&mut self, address: u64) -> Result<(), LinkError> {
        let (base, size) = self.reservation_of(address, 1)?;
        let ceiling = self
            .ceilings
            .entry(base)
            .or_insert_with(|| SlabCeiling::hold(base, size));
        // SAFETY: the linker registers a module's merged `.eh_frame` after
        // the module is finalized; it ends with a zero terminator and stays
        // mapped until `deregister_frames`, which the session calls before
        // it releases the memory. The module's code comes before it, in the
        // same reservation, whose hold is dropped only after every frame.
        let frames = unsafe { RegisteredFrames::register(address, ceiling)? };
        self.frames.insert(address, frames);
        Ok(())
    }

    fn deregister_frames(&mut self, address: u64) -> Result<(), LinkError> {
        self.frames.remove(&address);
        Ok(())
    }

    fn load_thread_locals(
        &mut self,
        template: &TlsTemplate<'_>,
        fixed: bool,
    ) -> Result<ThreadLocals, LinkError> {
        let block =
            self.thread_locals
                .load(template, fixed)
                .map_err(|reason| LinkError::ThreadLocal {
                    what: "the load's thread-local block".into(),
                    reason,
                })?;
        Ok(ThreadLocals {
            id: block.id,
            module: block.module,
            tp_offset: block.tp_offset,
        })
    }

    fn drop_thread_locals(&mut self, id: u64) -> Result<(), LinkError> {
        if self.thread_locals.close(id) {
            Ok(())
        } else {
            Err(LinkError::Memory(format!(
                "no thread-local block has id {id}"
            )))
        }
    }

    fn host_thread_local(&mut self, name: &str, fixed: bool) -> Result<HostThreadLocal, LinkError> {
        self.host
            .thread_local(name, fixed)
            .map_err(|reason| LinkError::ThreadLocal {
                what: format!("host thread-local variable `{name}`"),
                reason,
            })
    }

    fn register_module(
        &mut self,
        dso: u64,
        finalizers: &Finalizers,
        position: Option<usize>,
    ) -> Result<(), LinkError> {
        lifecycle::register_module(dso, finalizers.clone(), position);
        Ok(())
    }

    fn set_args(&mut self, args: &[String]) -> Result<(), LinkError> {
        self.args = ProgramArgs::new(args);
        Ok(())
    }

    fn run_initializers(
        &mut self,
        addresses: &[u64],
        convention: CallingConvention,
    ) -> Result<Outcome, LinkError> {
        for &init in addresses {
            let envp = sys::process::environ();
            // SAFETY: the address comes from a relocated initializer array
            // of a finalized module (zero entries are dropped by the linker);
            // glibc calls these as `void (int, char **, char **)`, and so do
            // we, in the module's calling convention.
            unsafe {
                calls::call_initializer(
                    init,
                    convention,
                    self.args.argc(),
                    self.args.argv.as_ptr(),
                    envp,
                )
            };
        }
        Ok(Outcome::Returned(0))
    }

    fn call(
        &mut self,
        address: u64,
        args: [u64; 6],
        main: bool,
        convention: CallingConvention,
        _timeout: Option<Duration>,
    ) -> Result<Outcome, LinkError> {
        if main {
            let envp = sys::process::environ();
            // SAFETY: the entry point is a JIT'd function with C's `main`
            // signature in the module's convention (a function taking fewer
            // arguments ignores the rest).
            let status = unsafe {
                calls::call_main(
                    address,
                    convention,
                    self.args.argc(),
                    self.args.argv.as_ptr(),
                    envp,
                )
            };
            return Ok(Outcome::Returned(status as i64 as u64));
        }
        // SAFETY: the session's caller promised (`Session::call` is unsafe)
        // that `address` is a function taking at most six integer
        // arguments; extra arguments are ignored in both conventions.
        Ok(Outcome::Returned(unsafe {
            calls::call6(address, convention, args)
        }))
    }

    fn remove_module(&mut self, dso: u64) -> Result<Outcome, LinkError> {
        if let Some(why) = solder_executor::thread_exit::removal_refusal(dso) {
            return Err(LinkError::Executor(why));
        }
        let position = lifecycle::remove_module(dso);
        Ok(Outcome::Returned(position.map_or(u64::MAX, |p| p as u64)))
    }

    fn end_modules(&mut self, dsos: &[u64]) -> Result<Outcome, LinkError> {
        lifecycle::end_modules(dsos);
        Ok(Outcome::Returned(0))
    }

    fn add_crash_symbols(&mut self, base: u64, symbols: &Arc<CrashSymbols>) {
        // Shared with the session's record of the module: no copy.
        crash::add_symbols(base, Arc::clone(symbols));
    }

    fn remove_crash_symbols(&mut self, base: u64) {
        crash::remove_symbols(base);
    }

    fn register_debug_object(&mut self, image: Arc<[u8]>) -> Result<u64, LinkError> {
        Ok(solder_executor::debugger::register(image))
    }

    fn map_profiler_marker(&mut self, path: &std::path::Path) -> Result<(), LinkError> {
        let marked = std::fs::File::open(path).and_then(|file| {
            solder_executor::sys::memory::map_profiler_marker(std::os::fd::AsFd::as_fd(&file))
        });
        marked.map_err(|reason| LinkError::Write {
            path: path.to_path_buf(),
            reason,
        })
    }

    fn unregister_debug_object(&mut self, token: u64) -> Result<(), LinkError> {
        // SAFETY: the debug-object plugin passes each token `register`
        // returned exactly once.
        unsafe { solder_executor::debugger::unregister(token) };
        Ok(())
    }

    fn describe(&self) -> String {
        "in-process".into()
    }
}
