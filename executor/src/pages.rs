//! Page-level memory operations of the process that runs JIT'd code: the
//! session's reservation (placed next to the host libraries, in the low
//! 2 GiB, or at a fixed address), protection changes and release. The
//! controller keeps the allocation bookkeeping; the system calls are
//! [`crate::sys::memory`]'s.
//!
//! Protection follows wasmtime's `CodeMemory`: read-write while written,
//! then read-execute, read-only or read-write — never writable and
//! executable at once.

use crate::protocol::{LOWEST_SLAB_ADDRESS, PlacementCode, Prot};
use crate::sys;

/// The span a rel32 displacement reaches, with a margin for addends.
pub const REL32_REACH: u64 = (1 << 31) - (1 << 20);
const LOW_HINT: u64 = 0x1000_0000;

/// Why a page operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error("slab address {address:#x} is not page-aligned ({page:#x})")]
    Unaligned { address: u64, page: u64 },
    #[error("cannot reserve {size:#x} bytes{at}: {reason}")]
    Reserve {
        size: u64,
        at: String,
        reason: std::io::Error,
    },
    #[error("{call}({start:#x}, {size:#x}) failed: {reason}")]
    Call {
        call: &'static str,
        start: u64,
        size: u64,
        reason: std::io::Error,
    },
    #[error("the slab size must be positive")]
    Empty,
    #[error(
        "a slab at {base:#x} would cover part of the first 64 KiB (below {:#x}), where \
         null-pointer accesses must fault",
        LOWEST_SLAB_ADDRESS
    )]
    TooLow { base: u64 },
}

impl PageError {
    /// `call` on `[start, start + size)` failed with `reason`.
    pub fn call(call: &'static str, start: u64, size: u64, reason: std::io::Error) -> PageError {
        PageError::Call {
            call,
            start,
            size,
            reason,
        }
    }
}

pub fn page_size() -> u64 {
    sys::memory::page_size()
}

/// Refuses a slab starting below [`LOWEST_SLAB_ADDRESS`].
pub fn refuse_low(base: u64) -> Result<(), PageError> {
    if base < LOWEST_SLAB_ADDRESS {
        return Err(PageError::TooLow { base });
    }
    Ok(())
}

/// Reserves `size` bytes (rounded up to pages) of inaccessible, uncommitted
/// address space. Returns the base, never below [`LOWEST_SLAB_ADDRESS`]: a
/// fixed address there is refused before anything is mapped, and a
/// reservation the kernel placed there is undone and refused.
pub fn reserve(size: u64, placement: PlacementCode, address: u64) -> Result<u64, PageError> {
    let page = page_size();
    let size = size.div_ceil(page) * page;
    if size == 0 {
        return Err(PageError::Empty);
    }
    if placement == PlacementCode::Fixed {
        refuse_low(address)?;
    }
    let base = place(size, placement, address, page)?;
    if let Err(err) = refuse_low(base) {
        // SAFETY: the reservation was just made; nothing uses it.
        unsafe { unreserve(base, size) };
        return Err(err);
    }
    Ok(base)
}

/// Reserves `size` bytes (page-rounded, positive) where `placement` asks.
fn place(size: u64, placement: PlacementCode, address: u64, page: u64) -> Result<u64, PageError> {
    let failed = |at: String| move |reason| PageError::Reserve { size, at, reason };
    match placement {
        PlacementCode::Fixed => {
            if address % page != 0 {
                return Err(PageError::Unaligned { address, page });
            }
            sys::memory::reserve(size, Some(address)).map_err(failed(format!(" at {address:#x}")))
        }
        PlacementCode::Any | PlacementCode::NearHost | PlacementCode::Low => {
            let near = (placement == PlacementCode::NearHost)
                .then(|| near_host(size, page))
                .flatten();
            let low = || {
                (placement != PlacementCode::Any)
                    .then(|| {
                        // Every 256 MiB step of the low 2 GiB that fits, so
                        // several sessions in one process each get a low slab.
                        let mut base = LOW_HINT;
                        while base + size <= 1 << 31 {
                            if let Ok(found) = sys::memory::reserve(size, Some(base)) {
                                return Some(found);
                            }
                            base += 256 << 20;
                        }
                        None
                    })
                    .flatten()
            };
            match near.or_else(low) {
                Some(base) => Ok(base),
                None => sys::memory::reserve(size, None).map_err(failed(String::new())),
            }
        }
    }
}

/// Unmaps a reservation.
///
/// # Safety
/// Nothing may use memory in the range afterwards.
pub unsafe fn unreserve(base: u64, size: u64) {
    // SAFETY: guaranteed by the caller.
    let _ = unsafe { sys::memory::unmap(base, size) };
}

/// Sets the protection of whole pages.
///
/// # Safety
/// The range must be page-aligned and lie inside a reservation of this
/// process that no Rust reference points into.
pub unsafe fn protect(start: u64, size: u64, prot: Prot) -> Result<(), PageError> {
    if size == 0 {
        return Ok(());
    }
    // SAFETY: guaranteed by the caller.
    unsafe { sys::memory::protect(start, size, prot) }
        .map_err(|reason| PageError::call("mprotect", start, size, reason))
}

/// Discards the pages of a private range and makes them inaccessible: an
/// anonymous range reads as zero afterwards, a private file mapping (a
/// shared slab) as the file does.
///
/// # Safety
/// As for [`protect`]; nothing may use the range's contents afterwards.
pub unsafe fn release(start: u64, size: u64) -> Result<(), PageError> {
    // SAFETY: guaranteed by the caller; discarding private pages only drops
    // this process's copies.
    unsafe {
        let _ = sys::memory::discard(start, size);
        protect(start, size, Prot::None)
    }
}

/// From this many bytes on, [`write`] backs the pages in one call
/// ([`populate`]) before it copies, rather than one fault per page: a
/// module's image arriving over a pipe then lands as an in-process image
/// does, on huge pages where the kernel gives them (OpenSSL's link and
/// start over a pipe: 50.5 -> 49.0 ms). Smaller writes fault their few
/// pages in as they copy.
const POPULATE_FROM: usize = 64 << 10;

/// Copies `bytes` to `address`, making the pages read-write first (they
/// stay read-write: the caller sets the final protection).
///
/// # Safety
/// The range must lie inside a reservation of this process, and no Rust
/// reference may point into it.
pub unsafe fn write(address: u64, bytes: &[u8], page: u64) -> Result<(), PageError> {
    if bytes.is_empty() {
        return Ok(());
    }
    // SAFETY: guaranteed by the caller; the pages are writable (not
    // executable) once prepared.
    unsafe {
        prepare_write(address, bytes.len(), page)?;
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), address as *mut u8, bytes.len());
    }
    Ok(())
}

/// Readies `[address, address + len)` to be written as [`write`] does
/// before it copies: its pages read-write (not executable), and backed
/// now when `len` is large; an empty range is left as it is. The caller
/// then fills it (from a frame, or straight from the channel).
///
/// # Safety
/// As for [`write`].
pub unsafe fn prepare_write(address: u64, len: usize, page: u64) -> Result<(), PageError> {
    if len == 0 {
        return Ok(());
    }
    // SAFETY: guaranteed by the caller. Backing pages changes no byte of
    // them.
    unsafe {
        make_writable(address, len as u64, page)?;
        if len >= POPULATE_FROM {
            populate(address, len as u64, page);
        }
    }
    Ok(())
}

/// Makes the whole pages holding `[address, address + len)` read-write
/// (not executable); they stay so until the caller protects them.
///
/// # Safety
/// As for [`write`].
pub unsafe fn make_writable(address: u64, len: u64, page: u64) -> Result<(), PageError> {
    let (first, end) = page_span(address, len, page);
    // SAFETY: guaranteed by the caller.
    unsafe { protect(first, end - first, Prot::ReadWrite) }
}

/// Asks the kernel to back the whole pages holding `[address, address +
/// len)` now, in one call, rather than one page fault per page as they are
/// first written: about a fifth cheaper a page here, for pages that are all
/// about to be written anyway (a new module's code and data). The whole
/// huge pages of the range are backed by huge pages where the kernel
/// gives them (`sys::memory::advise_huge_pages`): a large module's pages
/// then cost a fraction of that. Best effort: where the kernel lacks
/// `MADV_POPULATE_WRITE` (Linux before 5.14) the pages fault in as they
/// are written, as before.
///
/// # Safety
/// The pages must be mapped read-write in this process (populating writes
/// nothing: they keep reading as zero).
pub unsafe fn populate(address: u64, len: u64, page: u64) {
    if len == 0 {
        return;
    }
    let (first, end) = page_span(address, len, page);
    sys::memory::advise_huge_pages(first, end - first);
    let _ = sys::memory::populate(first, end - first);
}

/// The whole pages `[first, end)` holding `[address, address + len)`.
fn page_span(address: u64, len: u64, page: u64) -> (u64, u64) {
    (address & !(page - 1), (address + len).div_ceil(page) * page)
}

/// Writes into live pages: read-write, copy, then `restore`.
///
/// # Safety
/// As for [`write`]; the pages' previous contents outside `bytes` are kept.
pub unsafe fn patch(address: u64, bytes: &[u8], restore: Prot, page: u64) -> Result<(), PageError> {
    if bytes.is_empty() {
        return Ok(());
    }
    let (first, end) = page_span(address, bytes.len() as u64, page);
    // SAFETY: guaranteed by the caller.
    unsafe {
        write(address, bytes, page)?;
        // `write` leaves the pages read-write: nothing more to do for
        // writable data (an indirection cell, a data binding).
        if restore == Prot::ReadWrite {
            return Ok(());
        }
        protect(first, end - first, restore)
    }
}

/// Whether a rel32 field anywhere in `[base, base + size)` reaches `target`.
pub fn reaches(base: u64, size: u64, target: u64) -> bool {
    let end = base + size;
    target.abs_diff(base) < REL32_REACH && target.abs_diff(end) < REL32_REACH
}

/// Reserves `size` bytes just below the host's shared libraries, where
/// every byte reaches all of them with a rel32 (libraries opened later are
/// mapped below the slab, still within reach).
fn near_host(size: u64, page: u64) -> Option<u64> {
    let (lo, hi) = crate::host::library_span()?;
    // Step down from just below the libraries while the whole slab still
    // reaches them, so several sessions in one process each find a place.
    let mut gap = 16u64 << 20;
    loop {
        let base = lo.checked_sub(size + gap)? & !(page - 1);
        if hi - base >= REL32_REACH {
            return None;
        }
        if let Ok(base) = sys::memory::reserve(size, Some(base)) {
            return Some(base);
        }
        gap += 64 << 20;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The placement tests take their turns: a near-host placement that
    /// falls back lands in the low 2 GiB, where the other one looks.
    static PLACEMENT: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// Slabs of a quarter GiB: with many test threads, glibc's per-thread
    /// malloc arenas (64 MiB reservations each) crowd the address space
    /// just below the libraries, and a whole GiB may not fit there.
    const PLACED: u64 = 256 << 20;

    #[test]
    fn near_host_placement_reaches_libc() {
        let _turn = PLACEMENT.lock().unwrap_or_else(|e| e.into_inner());
        let size = PLACED;
        let base = reserve(size, PlacementCode::NearHost, 0).unwrap();
        let (lo, hi) = crate::host::library_span().unwrap();
        assert!(
            reaches(base, size, lo) && reaches(base, size, hi),
            "{base:#x}"
        );
        // SAFETY: nothing uses the reservation.
        unsafe { unreserve(base, size) };
    }

    #[test]
    fn low_placement_is_in_the_low_2_gib() {
        let _turn = PLACEMENT.lock().unwrap_or_else(|e| e.into_inner());
        let size = PLACED;
        let base = reserve(size, PlacementCode::Low, 0).unwrap();
        assert!(base + size <= 1 << 31, "{base:#x}");
        // SAFETY: nothing uses the reservation.
        unsafe { unreserve(base, size) };
    }

    /// `populate` backs the pages now (`mincore` says resident) and they
    /// still read as zero and take writes. Rerun:
    /// `cargo test -p solder-executor --lib pages::tests::populate`.
    #[test]
    fn populate_backs_pages_that_read_as_zero() {
        let page = page_size();
        let size = 1 << 20;
        let base = reserve(size, PlacementCode::Any, 0).unwrap();
        let resident = || sys::memory::resident_pages(base, size).unwrap();
        // SAFETY: the range is this test's reservation; only this test
        // touches it, through raw pointers.
        unsafe {
            make_writable(base, size, page).unwrap();
            assert_eq!(resident(), 0, "fresh pages are not backed yet");
            // A span that ends mid-page covers that page too.
            populate(base + 10, 3 * page - 20, page);
            assert_eq!(resident(), 3, "the three pages holding the span");
            let bytes = std::slice::from_raw_parts_mut(base as *mut u8, (3 * page) as usize);
            assert!(
                bytes.iter().all(|b| *b == 0),
                "populated pages read as zero"
            );
            bytes[0] = 7;
            assert_eq!(bytes[0], 7);
            unreserve(base, size);
        }
    }

    /// A span of several huge pages is backed exactly: its whole huge
    /// pages (in huge pages, where the kernel gives them) and its ordinary
    /// pages at either end, nothing of the huge pages it only partly
    /// covers. Rerun:
    /// `cargo test -p solder-executor --lib pages::tests::populate`.
    #[test]
    fn populate_backs_a_large_span_and_nothing_past_it() {
        let page = page_size();
        let huge = sys::memory::HUGE_PAGE;
        let size = 8 * huge;
        let base = reserve(size, PlacementCode::Any, 0).unwrap();
        // A span from a page past the first huge-page boundary in the
        // reservation to the middle of the huge page after the next two.
        let boundary = base.next_multiple_of(huge);
        let (start, len) = (boundary + page, 3 * huge - huge / 2 - page);
        // SAFETY: the range is this test's reservation; only this test
        // touches it, through raw pointers.
        unsafe {
            make_writable(base, size, page).unwrap();
            populate(start, len, page);
            let resident =
                |from: u64, to: u64| sys::memory::resident_pages(from, to - from).unwrap();
            assert_eq!(
                resident(start, start + len) as u64,
                len / page,
                "every page of the span is backed"
            );
            assert_eq!(resident(base, start), 0, "nothing before the span");
            assert_eq!(resident(start + len, base + size), 0, "nothing after it");
            let bytes = std::slice::from_raw_parts_mut(start as *mut u8, len as usize);
            assert!(
                bytes.iter().all(|b| *b == 0),
                "populated pages read as zero"
            );
            unreserve(base, size);
        }
    }

    /// A write large enough to be backed before it is copied (what that
    /// saves is measured, not tested) lands byte for byte, backs the
    /// pages it covers and nothing before them, leaves the rest of its
    /// first page zero, and a later small write keeps what is around it.
    /// Rerun: `cargo test -p solder-executor --lib pages::tests::a_large_write`.
    #[test]
    fn a_large_write_lands_exactly_and_touches_nothing_around_it() {
        let page = page_size();
        let size = 4 * sys::memory::HUGE_PAGE;
        let base = reserve(size, PlacementCode::Any, 0).unwrap();
        let bytes: Vec<u8> = (0..POPULATE_FROM as u32 * 5 + 3)
            .map(|i| (i % 251) as u8)
            .collect();
        let at = base + 3 * page + 17;
        // SAFETY: the range is this test's reservation; only this test
        // touches it, through raw pointers.
        unsafe {
            write(at, &bytes, page).unwrap();
            let resident =
                |from: u64, to: u64| sys::memory::resident_pages(from, to - from).unwrap();
            let (first, end) = page_span(at, bytes.len() as u64, page);
            assert_eq!(resident(first, end) as u64, (end - first) / page);
            assert_eq!(resident(base, first), 0, "nothing before the write");
            let written = std::slice::from_raw_parts(at as *const u8, bytes.len());
            assert_eq!(written, &bytes[..]);
            let head = std::slice::from_raw_parts(first as *const u8, (at - first) as usize);
            assert!(head.iter().all(|b| *b == 0), "the first page's head");
            // A small write into the same pages keeps what is there.
            write(at + 5, &[1, 2, 3], page).unwrap();
            assert_eq!(written[4..9], [bytes[4], 1, 2, 3, bytes[8]]);
            unreserve(base, size);
        }
    }

    #[test]
    fn slabs_in_the_first_64_kib_are_refused() {
        for address in [0, 0x1000, LOWEST_SLAB_ADDRESS - page_size()] {
            let err = reserve(1 << 20, PlacementCode::Fixed, address).unwrap_err();
            assert!(
                matches!(err, PageError::TooLow { base } if base == address),
                "{err}"
            );
            assert!(err.to_string().contains("64 KiB"), "{err}");
        }
        // A base the kernel picked is checked the same way.
        assert!(matches!(refuse_low(0), Err(PageError::TooLow { base: 0 })));
        assert!(refuse_low(LOWEST_SLAB_ADDRESS - 1).is_err());
        assert!(refuse_low(LOWEST_SLAB_ADDRESS).is_ok());
    }

    #[test]
    fn unaligned_fixed_address_is_an_error() {
        let err = reserve(1 << 20, PlacementCode::Fixed, 0x1000_0001).unwrap_err();
        assert!(err.to_string().contains("not page-aligned"), "{err}");
    }
}
