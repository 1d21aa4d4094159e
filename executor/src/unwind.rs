//! `.eh_frame` registration with the host unwinder (libgcc's
//! `__register_frame`), so C++ exceptions unwind through JIT'd frames.
//!
//! Registration is paired with deregistration: a [`RegisteredFrames`] value
//! deregisters when dropped, which the linker does before it releases the
//! module's memory. Above every registered module sits the ceiling
//! ([`SlabCeiling`]): a one-byte table at the top of the slab that ends
//! the unwinder's search of the registered tables at once for frames
//! outside them.

mod ceiling;

pub use ceiling::SlabCeiling;

use crate::sys;

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
    #[error(".eh_frame data at {begin:#x} lies past its slab's last byte {end:#x}")]
    OutsideSlab { begin: u64, end: u64 },
}

impl RegisteredFrames {
    /// Registers the `.eh_frame` data starting at `begin`, of a module in
    /// the slab that `ceiling` holds the unwinder's ceiling for.
    ///
    /// # Safety
    /// `begin` must point to finalized, readable `.eh_frame` data that ends
    /// with a zero terminator word and stays mapped until this value is
    /// dropped; every FDE's PC range must point at mapped code in the slab
    /// `ceiling` holds, which must outlive this value.
    pub unsafe fn register(begin: u64, ceiling: &SlabCeiling) -> Result<Self, UnwindError> {
        // The hold keeps the ceiling above the code these frames describe,
        // which lies below them in the slab.
        if begin > ceiling.at() {
            return Err(UnwindError::OutsideSlab {
                begin,
                end: ceiling.at(),
            });
        }
        // SAFETY: guaranteed by the caller (see above).
        unsafe { sys::unwind::register_frames(begin) }.map_err(|_| UnwindError::NoUnwinder)?;
        Ok(RegisteredFrames { begin })
    }
}

/// Where the ceiling is (the last byte of the highest slab that holds
/// it) and the address of its one frame description; `None` while no
/// slab holds it, or without an unwinder.
pub fn ceiling() -> Option<(u64, u64)> {
    ceiling::position()
}

/// The frame description the unwinder uses for `pc`: its address, or
/// `None` where no registered table and no loaded object describes `pc`.
pub fn frame_description(pc: u64) -> Option<u64> {
    sys::unwind::frame_description(pc)
}

impl Drop for RegisteredFrames {
    fn drop(&mut self) {
        // SAFETY: `begin` was registered by `register` and is still mapped
        // (the owner drops this before releasing the memory).
        unsafe { sys::unwind::deregister_frames(self.begin) };
    }
}
