//! The `atexit` family, per-module deinitializers and the `exit()` sequence.
//!
//! glibc's `atexit` lives in `libc_nonshared.a` and calls
//! `__cxa_atexit(f, NULL, __dso_handle)` with the caller's own `__dso_handle`;
//! JIT'd code never links that archive, so Solder gives each module its own
//! `__dso_handle` and a small thunk per module that passes it on (see
//! [`Interposer::PassDso`]). Handlers are recorded here, keyed by that handle,
//! and run in the order a native program gives:
//!
//! - **module removal** behaves like `dlclose`: the module's unprioritized
//!   `.fini_array` entries (last first), then its `atexit`/`__cxa_atexit`
//!   handlers newest-first (crtbegin's `__do_global_dtors_aux` sits between
//!   them), then its prioritized entries (highest priority number first);
//! - **`exit()` and session end** behave like `exit`: every handler
//!   newest-first across modules, then each module's deinitializers, newest
//!   module first.
//!
//! A handler registered while its module ends runs with that module's
//! handlers when an unprioritized deinitializer registered it; one that a
//! prioritized deinitializer registers comes too late and is dropped. No
//! handler of a module outlives it.
//!
//! The registry is process-wide because the interposers are plain C functions
//! called by JIT'd code without any context but the handle.

use std::ffi::c_int;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::abi::CallingConvention;
use crate::module::Finalizers;
use crate::sys;

const SYSV: CallingConvention = CallingConvention::SysV;
const WIN64: CallingConvention = CallingConvention::Win64;

/// A function to call: `void f(void)` or, with an argument, `void f(void *)`.
#[derive(Clone, Copy)]
struct HandlerCall {
    function: u64,
    arg: u64,
    convention: CallingConvention,
}

impl HandlerCall {
    fn plain(function: u64, convention: CallingConvention) -> Self {
        HandlerCall {
            function,
            arg: 0,
            convention,
        }
    }
}

#[derive(Clone, Copy)]
struct Handler {
    dso: u64,
    call: HandlerCall,
}

struct ModuleRecord {
    dso: u64,
    finalizers: Finalizers,
}

/// `pthread_atfork(prepare, parent, child)` of a module (0 = none).
#[derive(Clone, Copy)]
struct ForkHandlers {
    dso: u64,
    prepare: u64,
    parent: u64,
    child: u64,
}

struct Registry {
    exit_handlers: Vec<Handler>,
    quick_exit_handlers: Vec<Handler>,
    fork_handlers: Vec<ForkHandlers>,
    modules: Vec<ModuleRecord>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    exit_handlers: Vec::new(),
    quick_exit_handlers: Vec::new(),
    fork_handlers: Vec::new(),
    modules: Vec::new(),
});

fn registry() -> MutexGuard<'static, Registry> {
    // A handler never runs with the lock held, so a poisoned lock can only
    // come from a panic in this file's own bookkeeping; the data stays usable.
    REGISTRY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Records a loaded module's deinitializers under its `__dso_handle`, last
/// in load order, or at `position` (what [`remove_module`] returned for the
/// version it replaces).
pub fn register_module(dso: u64, finalizers: Finalizers, position: Option<usize>) {
    let mut reg = registry();
    let position = position.map_or(reg.modules.len(), |p| p.min(reg.modules.len()));
    reg.modules
        .insert(position, ModuleRecord { dso, finalizers });
}

/// Runs a module's deinitializers and handlers as `dlclose` would, and
/// forgets the module. Call before its memory is released. Returns the
/// module's place in load order, for a replacement to take.
pub fn remove_module(dso: u64) -> Option<usize> {
    crate::thread_exit::run_where(|d| d == dso);
    let (index, record) = {
        let mut reg = registry();
        let index = reg.modules.iter().position(|m| m.dso == dso);
        (index, index.map(|i| reg.modules.remove(i)))
    };
    // A handle with no record (no module was registered under it) has no
    // deinitializers, but any handlers registered with it still run and
    // are forgotten.
    let finalizers = record.map(|r| r.finalizers).unwrap_or_default();
    run_functions_reversed(&finalizers.unprioritized, finalizers.convention);
    run_handlers_where(|h| h.dso == dso);
    run_functions_reversed(&finalizers.prioritized, finalizers.convention);
    forget_handlers(&[dso]);
    index
}

/// Drops every handler still registered under `dsos`: their modules are
/// ending, and a handler must never run once its module's memory is
/// released. What is left at this point are quick-exit and fork handlers,
/// and `atexit` handlers registered by the prioritized deinitializers
/// themselves, after the module's handlers ran (as the MSVC CRT, which runs
/// its `atexit` table before the `.CRT$XT*` terminators, never runs those).
fn forget_handlers(dsos: &[u64]) {
    let mut reg = registry();
    reg.exit_handlers.retain(|h| !dsos.contains(&h.dso));
    reg.quick_exit_handlers.retain(|h| !dsos.contains(&h.dso));
    reg.fork_handlers.retain(|h| !dsos.contains(&h.dso));
}

/// Ends the modules in `dsos` as `exit()` would: all their handlers
/// newest-first, then their deinitializers, newest module first.
pub fn end_modules(dsos: &[u64]) {
    crate::thread_exit::run_where(|d| dsos.contains(&d));
    run_handlers_where(|h| dsos.contains(&h.dso));
    loop {
        let record = {
            let mut reg = registry();
            let index = reg.modules.iter().rposition(|m| dsos.contains(&m.dso));
            index.map(|i| reg.modules.remove(i))
        };
        let Some(record) = record else { break };
        let convention = record.finalizers.convention;
        run_functions_reversed(&record.finalizers.unprioritized, convention);
        // Handlers registered by the deinitializers themselves.
        run_handlers_where(|h| h.dso == record.dso);
        run_functions_reversed(&record.finalizers.prioritized, convention);
    }
    forget_handlers(dsos);
}

/// Ends every module of every session: the `exit()` path.
fn end_all_modules() {
    run_handlers_where(|_| true);
    let dsos: Vec<u64> = registry().modules.iter().map(|m| m.dso).collect();
    end_modules(&dsos);
}

/// Pops and runs matching handlers newest-first, without holding the lock
/// while a handler runs (handlers may register more handlers).
fn run_handlers_where(matches: impl Fn(&Handler) -> bool) {
    loop {
        let next = {
            let mut reg = registry();
            let index = reg.exit_handlers.iter().rposition(&matches);
            index.map(|i| reg.exit_handlers.remove(i))
        };
        match next {
            Some(handler) => call_handler(handler.call),
            None => break,
        }
    }
}

fn run_functions_reversed(functions: &[u64], convention: CallingConvention) {
    for &function in functions.iter().rev() {
        call_handler(HandlerCall::plain(function, convention));
    }
}

fn call_handler(call: HandlerCall) {
    // SAFETY: the address was registered by JIT'd code (or taken from a
    // deinitializer array) as `void (*)(void)` or, through `__cxa_atexit`,
    // `void (*)(void *)` with its argument, in the convention recorded with
    // it; its module is still mapped: modules are only released after this
    // runs.
    unsafe { crate::calls::call_handler(call.function, call.convention, call.arg) }
}

/// How the linker binds a name that the runtime interposes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interposer {
    /// Bind the name to this address.
    Direct(u64),
    /// Bind the name to a per-module thunk that loads the module's
    /// `__dso_handle` into integer argument `arg_index` (0-based) and jumps to
    /// `target`.
    PassDso { target: u64, arg_index: u8 },
}

/// The runtime's replacement for `name`, if it interposes it.
pub fn interposer(name: &str) -> Option<Interposer> {
    let direct = |f: usize| Some(Interposer::Direct(f as u64));
    // A thunk passes the module's `__dso_handle` in argument `arg_index`.
    let pass_dso = |f: usize, arg_index: u8| {
        Some(Interposer::PassDso {
            target: f as u64,
            arg_index,
        })
    };
    match name {
        "__cxa_atexit" => direct(solder_rt_cxa_atexit as *const () as usize),
        "__cxa_finalize" => direct(solder_rt_cxa_finalize as *const () as usize),
        // Mach-O thread-local descriptors' thunk.
        "_tlv_bootstrap" => crate::sys::tls::tlv_get_addr().map(Interposer::Direct),
        "__cxa_thread_atexit" | "__cxa_thread_atexit_impl" => {
            direct(crate::thread_exit::solder_rt_cxa_thread_atexit as *const () as usize)
        }
        "exit" => direct(solder_rt_exit as *const () as usize),
        "quick_exit" => direct(solder_rt_quick_exit as *const () as usize),
        "atexit" => pass_dso(solder_rt_atexit as *const () as usize, 1),
        "at_quick_exit" => pass_dso(solder_rt_at_quick_exit as *const () as usize, 1),
        "pthread_atfork" => pass_dso(solder_rt_pthread_atfork as *const () as usize, 3),
        // What the linker binds COFF code's `atexit` family to: the same
        // registry, with handlers called in the Microsoft x64 convention.
        "__solder_win64_cxa_atexit" => direct(solder_rt_win64_cxa_atexit as *const () as usize),
        "__solder_win64_atexit" => pass_dso(solder_rt_win64_atexit as *const () as usize, 1),
        "__solder_win64_onexit" => pass_dso(solder_rt_win64_onexit as *const () as usize, 1),
        "__solder_win64_at_quick_exit" => {
            pass_dso(solder_rt_win64_at_quick_exit as *const () as usize, 1)
        }
        _ => crate::calls::platform_symbol(name).map(Interposer::Direct),
    }
}

fn push_exit_handler(dso: u64, function: u64, arg: u64, convention: CallingConvention) {
    registry().exit_handlers.push(Handler {
        dso,
        call: HandlerCall {
            function,
            arg,
            convention,
        },
    });
}

fn push_quick_exit_handler(dso: u64, function: u64, convention: CallingConvention) {
    registry().quick_exit_handlers.push(Handler {
        dso,
        call: HandlerCall::plain(function, convention),
    });
}

/// `__cxa_atexit(func, arg, dso)`.
extern "C" fn solder_rt_cxa_atexit(func: u64, arg: u64, dso: u64) -> c_int {
    push_exit_handler(dso, func, arg, SYSV);
    0
}

/// `atexit(func)`, reached through the module's thunk with `dso` in the
/// second argument register.
extern "C" fn solder_rt_atexit(func: u64, dso: u64) -> c_int {
    push_exit_handler(dso, func, 0, SYSV);
    0
}

/// `at_quick_exit(func)`, reached through the module's thunk.
extern "C" fn solder_rt_at_quick_exit(func: u64, dso: u64) -> c_int {
    push_quick_exit_handler(dso, func, SYSV);
    0
}

// COFF code reaches the next four through the linker's Microsoft x64 ->
// System V shim (so they are plain C functions); only the handlers they
// record are Microsoft x64 functions.

/// `__cxa_atexit(func, arg, dso)` from COFF code.
extern "C" fn solder_rt_win64_cxa_atexit(func: u64, arg: u64, dso: u64) -> c_int {
    push_exit_handler(dso, func, arg, WIN64);
    0
}

/// `atexit(func)` from COFF code.
extern "C" fn solder_rt_win64_atexit(func: u64, dso: u64) -> c_int {
    push_exit_handler(dso, func, 0, WIN64);
    0
}

/// `_onexit(func)` from COFF code: like `atexit`, but returns `func` on
/// success (the MSVC CRT's contract).
extern "C" fn solder_rt_win64_onexit(func: u64, dso: u64) -> u64 {
    push_exit_handler(dso, func, 0, WIN64);
    func
}

/// `at_quick_exit(func)` from COFF code.
extern "C" fn solder_rt_win64_at_quick_exit(func: u64, dso: u64) -> c_int {
    push_quick_exit_handler(dso, func, WIN64);
    0
}

/// `pthread_atfork(prepare, parent, child)`, reached through the module's
/// thunk. glibc's own `__register_atfork` would keep the handlers after the
/// module is removed (it unregisters only real DSOs), so the runtime keeps
/// them per module and registers its own dispatchers with glibc once.
extern "C" fn solder_rt_pthread_atfork(prepare: u64, parent: u64, child: u64, dso: u64) -> c_int {
    static DISPATCHERS: std::sync::Once = std::sync::Once::new();
    let mut status = 0;
    DISPATCHERS.call_once(|| {
        status = sys::exit::on_fork(fork_prepare, fork_parent, fork_child)
            .err()
            .unwrap_or(0);
    });
    if status != 0 {
        return status;
    }
    registry().fork_handlers.push(ForkHandlers {
        dso,
        prepare,
        parent,
        child,
    });
    0
}

/// POSIX order: prepare handlers newest-first, parent and child handlers in
/// registration order. The list is copied so no lock is held while a
/// handler runs.
fn run_fork_handlers(pick: fn(&ForkHandlers) -> u64, newest_first: bool) {
    let handlers: Vec<u64> = registry().fork_handlers.iter().map(pick).collect();
    let mut ordered: Vec<u64> = handlers.into_iter().filter(|&f| f != 0).collect();
    if newest_first {
        ordered.reverse();
    }
    for f in ordered {
        call_handler(HandlerCall::plain(f, SYSV));
    }
}

extern "C" fn fork_prepare() {
    run_fork_handlers(|h| h.prepare, true);
}

extern "C" fn fork_parent() {
    run_fork_handlers(|h| h.parent, false);
}

extern "C" fn fork_child() {
    run_fork_handlers(|h| h.child, false);
}

/// `__cxa_finalize(dso)`: runs that module's handlers (all when null).
extern "C" fn solder_rt_cxa_finalize(dso: u64) {
    if dso == 0 {
        run_handlers_where(|_| true);
    } else {
        run_handlers_where(|h| h.dso == dso);
    }
}

/// `exit(code)` called by JIT'd code: the modules end first, exactly as
/// they would in a native process, then the host exits with `code`.
extern "C" fn solder_rt_exit(code: c_int) -> ! {
    end_all_modules();
    // Flushes stdio and runs the host's own handlers.
    sys::exit::exit(code)
}

/// Called by the `quick_exit` interposer after the handlers, just before
/// `_exit` (0 = none). `exit` needs no such hook: glibc's `on_exit` sees it.
static BEFORE_QUICK_EXIT: AtomicUsize = AtomicUsize::new(0);

/// Registers `hook(code)` to run when JIT'd code calls `quick_exit(code)`,
/// after its `at_quick_exit` handlers and before the process `_exit`s. The
/// out-of-process executor uses it to tell the controller the exit status.
pub fn set_before_quick_exit(hook: fn(c_int)) {
    BEFORE_QUICK_EXIT.store(hook as usize, Ordering::Release);
}

/// `quick_exit(code)`: at_quick_exit handlers newest-first, then `_exit`.
extern "C" fn solder_rt_quick_exit(code: c_int) -> ! {
    loop {
        let next = registry().quick_exit_handlers.pop();
        match next {
            Some(handler) => call_handler(handler.call),
            None => break,
        }
    }
    let hook = BEFORE_QUICK_EXIT.load(Ordering::Acquire);
    if hook != 0 {
        // SAFETY: only set_before_quick_exit stores a nonzero value, and it
        // stores a `fn(c_int)`.
        let hook: fn(c_int) = unsafe { std::mem::transmute::<usize, fn(c_int)>(hook) };
        hook(code);
    }
    // quick_exit does not flush stdio.
    sys::exit::exit_immediately(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::c_void;
    use std::sync::atomic::AtomicU64;

    static TRACE: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    static COUNTER: AtomicU64 = AtomicU64::new(0);

    extern "C" fn fini_plain() {
        TRACE.lock().unwrap().push("fini");
    }
    extern "C" fn fini_prio() {
        TRACE.lock().unwrap().push("fini-prio");
    }
    extern "C" fn handler_a() {
        TRACE.lock().unwrap().push("a");
    }
    extern "C" fn handler_b(_: *mut c_void) {
        TRACE.lock().unwrap().push("b");
    }

    #[test]
    fn removal_orders_like_dlclose_and_end_like_exit() {
        // Unique handles so parallel tests in this process do not collide.
        let dso = 0x1000 + COUNTER.fetch_add(16, Ordering::SeqCst);
        register_module(
            dso,
            Finalizers {
                prioritized: vec![fini_prio as *const () as usize as u64],
                unprioritized: vec![fini_plain as *const () as usize as u64],
                convention: SYSV,
            },
            None,
        );
        solder_rt_atexit(handler_a as *const () as usize as u64, dso);
        solder_rt_cxa_atexit(handler_b as *const () as usize as u64, 0, dso);
        remove_module(dso);
        assert_eq!(*TRACE.lock().unwrap(), ["fini", "b", "a", "fini-prio"]);
        TRACE.lock().unwrap().clear();

        let dso2 = dso + 8;
        register_module(
            dso2,
            Finalizers {
                prioritized: vec![fini_prio as *const () as usize as u64],
                unprioritized: vec![fini_plain as *const () as usize as u64],
                convention: SYSV,
            },
            None,
        );
        solder_rt_atexit(handler_a as *const () as usize as u64, dso2);
        end_modules(&[dso2]);
        assert_eq!(*TRACE.lock().unwrap(), ["a", "fini", "fini-prio"]);
    }

    static WIN64_ARGS: Mutex<Vec<u64>> = Mutex::new(Vec::new());

    extern "win64" fn win64_handler(arg: u64) {
        WIN64_ARGS.lock().unwrap().push(arg);
    }
    extern "win64" fn win64_fini() {
        WIN64_ARGS.lock().unwrap().push(0xf1);
    }

    #[test]
    fn coff_handlers_and_finalizers_are_called_in_the_microsoft_convention() {
        let dso = 0x9000_0000 + COUNTER.fetch_add(16, Ordering::SeqCst);
        register_module(
            dso,
            Finalizers {
                prioritized: vec![win64_fini as *const () as usize as u64],
                unprioritized: vec![],
                convention: WIN64,
            },
            None,
        );
        let handler = win64_handler as *const () as usize as u64;
        solder_rt_win64_cxa_atexit(handler, 0x1234_5678_9abc, dso);
        assert_eq!(solder_rt_win64_onexit(handler, dso), handler);
        remove_module(dso);
        // Newest first: `_onexit`'s handler (argument ignored by a
        // `void (void)` handler, 0 here), then `__cxa_atexit`'s with its
        // argument in %rcx, then the finalizer.
        assert_eq!(*WIN64_ARGS.lock().unwrap(), [0, 0x1234_5678_9abc, 0xf1]);
    }
}
