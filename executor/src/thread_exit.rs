//! C++ `thread_local` destructors of JIT'd code: `__cxa_thread_atexit`
//! and `__cxa_thread_atexit_impl`, interposed.
//!
//! The platform's own implementation ties a destructor to the shared
//! object whose `__dso_handle` it is given, and keeps that object loaded
//! until the destructor has run; a JIT'd module's handle names no shared
//! object, so its destructors would run at thread exit into memory the
//! session may have released. Here each thread keeps its own list,
//! keyed by module handle, run newest-first at thread exit (hooked once per
//! thread into the platform's list, so they run among the thread's other
//! `thread_local` destructors), and:
//!
//! - at `exit()` and session end, the ending thread's destructors of the
//!   ending modules run first, as `exit()` runs the calling thread's
//!   `thread_local` destructors before its `atexit` handlers;
//! - at a module's removal or replacement, the removing thread's
//!   destructors of that module run first (it is the thread that leaves
//!   the module), and the removal is refused while another thread still
//!   holds destructors of it ([`pending_elsewhere`]), so none ever runs
//!   into released memory.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::{c_int, c_void};
use std::sync::{Mutex, MutexGuard};

use crate::abi::CallingConvention;

/// One `thread_local` object's destructor: `function(object)`.
#[derive(Clone, Copy)]
struct Destructor {
    function: u64,
    object: u64,
    dso: u64,
}

thread_local! {
    /// The calling thread's destructors, oldest first.
    static PENDING: RefCell<Vec<Destructor>> = const { RefCell::new(Vec::new()) };
    /// Whether the thread's exit runs [`run_at_thread_exit`].
    static HOOKED: Cell<bool> = const { Cell::new(false) };
}

/// How many destructors of each module all threads hold.
static COUNTS: Mutex<Option<HashMap<u64, usize>>> = Mutex::new(None);

fn counts() -> MutexGuard<'static, Option<HashMap<u64, usize>>> {
    // Only this file's bookkeeping runs under the lock: a poisoned lock
    // holds usable counts.
    COUNTS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `__cxa_thread_atexit(function, object, dso)` and
/// `__cxa_thread_atexit_impl` (the same contract).
pub extern "C" fn solder_rt_cxa_thread_atexit(function: u64, object: u64, dso: u64) -> c_int {
    // Touch the list before hooking the thread's exit: the list's own
    // destructor is then registered first, and so runs after the hook.
    PENDING.with(|pending| {
        pending.borrow_mut().push(Destructor {
            function,
            object,
            dso,
        })
    });
    *counts()
        .get_or_insert_with(HashMap::new)
        .entry(dso)
        .or_default() += 1;
    if !HOOKED.replace(true) {
        // Without the platform's hook (no glibc), the destructors run only
        // at session end and removal, as the thread never tells.
        let _ = crate::sys::tls::at_thread_exit(run_at_thread_exit);
    }
    0
}

extern "C" fn run_at_thread_exit(_: *mut c_void) {
    run_where(|_| true);
}

/// Runs the calling thread's destructors of the modules `matches` names,
/// newest first (a destructor may register more; they run too).
pub fn run_where(matches: impl Fn(u64) -> bool) {
    loop {
        let next = PENDING
            .try_with(|pending| {
                let mut pending = pending.borrow_mut();
                let index = pending.iter().rposition(|d| matches(d.dso));
                index.map(|i| pending.remove(i))
            })
            .ok()
            .flatten();
        let Some(destructor) = next else { break };
        if let Some(count) = counts().as_mut().and_then(|c| c.get_mut(&destructor.dso)) {
            *count = count.saturating_sub(1);
        }
        // SAFETY: JIT'd code registered `void (*)(void *)` with its object
        // under its module's handle; the module is mapped: removal is
        // refused while another thread holds its destructors, and runs the
        // removing thread's before the module's memory is released.
        unsafe {
            crate::calls::call_handler(
                destructor.function,
                CallingConvention::SysV,
                destructor.object,
            )
        }
    }
}

/// How many destructors of module `dso` threads other than the calling one
/// hold.
pub fn pending_elsewhere(dso: u64) -> usize {
    let here = PENDING
        .try_with(|pending| pending.borrow().iter().filter(|d| d.dso == dso).count())
        .unwrap_or(0);
    let total = counts()
        .as_ref()
        .and_then(|c| c.get(&dso).copied())
        .unwrap_or(0);
    total.saturating_sub(here)
}

/// The refusal of removing module `dso` while other threads hold its
/// destructors, or `None`.
pub fn removal_refusal(dso: u64) -> Option<String> {
    let pending = pending_elsewhere(dso);
    (pending > 0).then(|| {
        format!(
            "the module has {pending} thread_local destructor(s) pending in other threads; \
             they run when those threads exit, and the module's code must stay until then \
             (end the threads first)"
        )
    })
}
