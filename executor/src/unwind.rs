//! `.eh_frame` registration with the host unwinder (libgcc's
//! `__register_frame`), so C++ exceptions unwind through JIT'd frames.
//!
//! Registration is paired with deregistration: a [`RegisteredFrames`] value
//! deregisters when dropped, which the linker does before it releases the
//! module's memory. Above every registered module sits the ceiling
//! ([`ceiling`]): a one-byte table that ends the unwinder's search of the
//! registered tables at once for frames outside them.

mod ceiling;

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
}

impl RegisteredFrames {
    /// Registers the `.eh_frame` data starting at `begin`, whose code lies
    /// in the reservation whose last byte is `reservation_end` (the
    /// ceiling rises to that byte; see [`ceiling`]).
    ///
    /// # Safety
    /// `begin` must point to finalized, readable `.eh_frame` data that ends
    /// with a zero terminator word and stays mapped until this value is
    /// dropped; every FDE's PC range must point at mapped code below
    /// `begin` (a module's read-execute segment comes first) and inside
    /// the reservation.
    pub unsafe fn register(begin: u64, reservation_end: u64) -> Result<Self, UnwindError> {
        // The module's code lies below its `.eh_frame` and inside its
        // reservation, whose last byte is never code (a module's
        // allocation ends with its data): the ceiling rises above it
        // before the unwinder can look for that code.
        ceiling::raise_to(begin.max(reservation_end));
        // SAFETY: guaranteed by the caller (see above).
        unsafe { sys::unwind::register_frames(begin) }.map_err(|_| UnwindError::NoUnwinder)?;
        Ok(RegisteredFrames { begin })
    }
}

/// Where the ceiling is (the highest reservation end, or `.eh_frame`
/// start, registered so far) and the address of its one frame
/// description; `None` before the first
/// registration or without an unwinder.
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
