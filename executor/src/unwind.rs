//! `.eh_frame` registration with the host unwinder (libgcc's
//! `__register_frame`), so C++ exceptions unwind through JIT'd frames.
//!
//! Registration is paired with deregistration: a [`RegisteredFrames`] value
//! deregisters when dropped, which the linker does before it releases the
//! module's memory.

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
            // SAFETY: RTLD_DEFAULT is a valid pseudo-handle; the name is
            // NUL-terminated.
            let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
            // SAFETY: both symbols have the signature `void (void *)` in
            // libgcc_s (unwind-dw2-fde.c).
            (!p.is_null()).then(|| unsafe { std::mem::transmute::<*mut c_void, FrameFn>(p) })
        };
        Some(FrameApi {
            register: lookup(c"__register_frame")?,
            deregister: lookup(c"__deregister_frame")?,
        })
    })
    .as_ref()
}

/// An `.eh_frame` section registered with the unwinder.
#[derive(Debug)]
pub struct RegisteredFrames {
    begin: u64,
}

/// Why frames could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum UnwindError {
    #[error("the host has no unwinder (__register_frame not found)")]
    NoUnwinder,
}

impl RegisteredFrames {
    /// Registers the `.eh_frame` data starting at `begin`.
    ///
    /// # Safety
    /// `begin` must point to finalized, readable `.eh_frame` data that ends
    /// with a zero terminator word and stays mapped until this value is
    /// dropped; every FDE's PC range must point at mapped code.
    pub unsafe fn register(begin: u64) -> Result<Self, UnwindError> {
        let api = frame_api().ok_or(UnwindError::NoUnwinder)?;
        // SAFETY: guaranteed by the caller (see above).
        unsafe { (api.register)(begin as *const c_void) };
        Ok(RegisteredFrames { begin })
    }
}

impl Drop for RegisteredFrames {
    fn drop(&mut self) {
        if let Some(api) = frame_api() {
            // SAFETY: `begin` was registered by `register` and is still
            // mapped (the owner drops this before releasing the memory).
            unsafe { (api.deregister)(self.begin as *const c_void) };
        }
    }
}
