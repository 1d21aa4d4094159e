//! The host unwinder's frame registry: libgcc's `__register_frame` and
//! `__deregister_frame`, found in the process at run time.

use std::ffi::c_void;
use std::sync::OnceLock;

type FrameFn = unsafe extern "C" fn(*const c_void);

struct FrameApi {
    register: FrameFn,
    deregister: FrameFn,
}

fn frame_api() -> Option<&'static FrameApi> {
    static API: OnceLock<Option<FrameApi>> = OnceLock::new();
    API.get_or_init(|| {
        let lookup = |name: &std::ffi::CStr| {
            super::dl::global_symbol(name).map(|address| {
                // SAFETY: both symbols have the signature `void (void *)`
                // in libgcc_s (unwind-dw2-fde.c).
                unsafe { std::mem::transmute::<*const (), FrameFn>(address as *const ()) }
            })
        };
        Some(FrameApi {
            register: lookup(c"__register_frame")?,
            deregister: lookup(c"__deregister_frame")?,
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
    Ok(())
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
