//! The host unwinder: libgcc's frame registry (`__register_frame`,
//! `__deregister_frame`) and its stack walk (`_Unwind_Backtrace`), found in
//! the process at run time.

use std::ffi::{c_int, c_void};
use std::sync::OnceLock;

type FrameFn = unsafe extern "C" fn(*const c_void);
/// `_Unwind_Trace_Fn`: called per frame with the unwinder's context.
type TraceFn = unsafe extern "C" fn(*mut c_void, *mut c_void) -> c_int;
type BacktraceFn = unsafe extern "C" fn(TraceFn, *mut c_void) -> c_int;
type GetIpFn = unsafe extern "C" fn(*mut c_void) -> usize;
type FindFdeFn = unsafe extern "C" fn(*mut c_void, *mut c_void) -> *const c_void;

struct FrameApi {
    register: FrameFn,
    deregister: FrameFn,
    backtrace: BacktraceFn,
    get_ip: GetIpFn,
    find_fde: FindFdeFn,
}

fn frame_api() -> Option<&'static FrameApi> {
    static API: OnceLock<Option<FrameApi>> = OnceLock::new();
    API.get_or_init(|| {
        let address = |name: &std::ffi::CStr| super::dl::global_symbol(name);
        let lookup = |name: &std::ffi::CStr| {
            address(name).map(|address| {
                // SAFETY: both symbols have the signature `void (void *)`
                // in libgcc_s (unwind-dw2-fde.c).
                unsafe { std::mem::transmute::<*const (), FrameFn>(address as *const ()) }
            })
        };
        let raw = |name: &std::ffi::CStr| address(name).map(|a| a as *const ());
        Some(FrameApi {
            register: lookup(c"__register_frame")?,
            deregister: lookup(c"__deregister_frame")?,
            // SAFETY: libgcc_s's signatures (unwind.h):
            // `_Unwind_Reason_Code _Unwind_Backtrace(_Unwind_Trace_Fn, void *)`,
            // `_Unwind_Ptr _Unwind_GetIP(struct _Unwind_Context *)`,
            // `const fde *_Unwind_Find_FDE(void *, struct dwarf_eh_bases *)`.
            backtrace: unsafe {
                std::mem::transmute::<*const (), BacktraceFn>(raw(c"_Unwind_Backtrace")?)
            },
            // SAFETY: as above.
            get_ip: unsafe { std::mem::transmute::<*const (), GetIpFn>(raw(c"_Unwind_GetIP")?) },
            // SAFETY: as above.
            find_fde: unsafe {
                std::mem::transmute::<*const (), FindFdeFn>(raw(c"_Unwind_Find_FDE")?)
            },
        })
    })
    .as_ref()
}

/// The process has no unwinder to register frames with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoUnwinder;

/// `__register_frame(begin)`: the unwinder learns the `.eh_frame` data at
/// `begin`.
///
/// # Safety
/// `begin` must point to finalized, readable `.eh_frame` data that ends
/// with a zero terminator word and stays mapped until it is deregistered;
/// every FDE's PC range must point at mapped code.
pub unsafe fn register_frames(begin: u64) -> Result<(), NoUnwinder> {
    let api = frame_api().ok_or(NoUnwinder)?;
    // SAFETY: guaranteed by the caller (see above).
    unsafe { (api.register)(begin as *const c_void) };
    // A search the frames are not in makes the unwinder sort every newly
    // registered table now (it allocates doing so): a backtrace taken later
    // in a crash handler then only looks up.
    let mut bases = [0usize; 3];
    // SAFETY: `_Unwind_Find_FDE` reads its registered tables (valid, per
    // the caller) and writes `struct dwarf_eh_bases` (three pointers) into
    // `bases`.
    unsafe { (api.find_fde)(std::ptr::null_mut(), bases.as_mut_ptr().cast()) };
    Ok(())
}

/// The frame description entry the unwinder finds for `pc`
/// (`_Unwind_Find_FDE`): its address, or `None` when no registered table
/// and no loaded object describes `pc` (or there is no unwinder).
pub fn frame_description(pc: u64) -> Option<u64> {
    let api = frame_api()?;
    let mut bases = [0usize; 3];
    // SAFETY: `_Unwind_Find_FDE` only reads the unwinder's registered
    // tables and the loaded objects' (valid, per `register_frames`'s
    // callers), whatever `pc` is, and writes `struct dwarf_eh_bases`
    // (three pointers) into `bases`.
    let found = unsafe { (api.find_fde)(pc as *mut c_void, bases.as_mut_ptr().cast()) };
    (!found.is_null()).then_some(found as u64)
}

/// Resolves the unwinder's functions now, outside any signal handler.
pub fn prepare_backtraces() {
    let _ = frame_api();
}

/// Where [`backtrace`]'s callback writes.
struct Frames<'a> {
    pcs: &'a mut [u64],
    count: usize,
    get_ip: GetIpFn,
}

/// `_URC_NO_REASON` and `_URC_END_OF_STACK`.
const CONTINUE: c_int = 0;
const STOP: c_int = 5;

unsafe extern "C" fn record_frame(context: *mut c_void, frames: *mut c_void) -> c_int {
    // SAFETY: `frames` is the `Frames` `backtrace` passed, alive for the
    // walk; `context` is the unwinder's, valid during this call.
    let frames = unsafe { &mut *frames.cast::<Frames<'_>>() };
    if frames.count >= frames.pcs.len() {
        return STOP;
    }
    // SAFETY: as above.
    frames.pcs[frames.count] = unsafe { (frames.get_ip)(context) } as u64;
    frames.count += 1;
    CONTINUE
}

/// The return addresses of the calling thread's stack, innermost first,
/// into `pcs`; how many. Allocates nothing (the unwinder's tables were
/// sorted when registered); for a crash handler, where it walks through the
/// signal frame into the interrupted code. 0 without an unwinder (only
/// after [`prepare_backtraces`] is it resolved).
pub fn backtrace(pcs: &mut [u64]) -> usize {
    let Some(api) = frame_api() else {
        return 0;
    };
    let mut frames = Frames {
        pcs,
        count: 0,
        get_ip: api.get_ip,
    };
    // SAFETY: the callback only writes into `frames`, which outlives the
    // walk.
    unsafe { (api.backtrace)(record_frame, (&raw mut frames).cast()) };
    frames.count
}

/// `__deregister_frame(begin)`; nothing without an unwinder.
///
/// # Safety
/// `begin` must have been registered by [`register_frames`] and its data
/// must still be mapped.
pub unsafe fn deregister_frames(begin: u64) {
    if let Some(api) = frame_api() {
        // SAFETY: guaranteed by the caller (see above).
        unsafe { (api.deregister)(begin as *const c_void) };
    }
}
