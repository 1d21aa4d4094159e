//! A reservation backed by a memfd, so the controller can map the same
//! pages and write code straight into them (no copy through the channel).
//!
//! The whole slab starts as one `MAP_SHARED`, `PROT_NONE` mapping of the
//! memfd at offset `address - base`. Protection changes keep that mapping
//! (`mprotect`) except for read-write: data pages are remapped
//! `MAP_PRIVATE`, so the executor's data writes reach neither the
//! controller's view nor a snapshot checkpoint (which would otherwise see a
//! crashed call's writes after a rollback). A page stays private until it is
//! released; protecting a private page read-only or read-execute keeps its
//! private contents. Release punches a hole in the memfd and maps the range
//! shared and inaccessible again.

use std::ffi::c_int;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use crate::pages::{self, PageError};
use crate::protocol::{PlacementCode, Prot};
use crate::sys::memory::{self as sys_memory, Sharing};

/// Why a shared-memory operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ShmError {
    #[error(transparent)]
    Page(#[from] PageError),
    #[error("the slab size {0:#x} does not fit this address space")]
    TooLarge(u64),
}

/// The memfd-backed reservation.
#[derive(Debug)]
pub struct SharedSlab {
    fd: OwnedFd,
    base: u64,
    size: u64,
    page: u64,
    /// One bit per page: currently mapped `MAP_PRIVATE`.
    private: Vec<u64>,
}

/// `call` on `[start, start + size)` failed with the returned reason.
fn os_error(call: &'static str, start: u64, size: u64) -> impl Fn(std::io::Error) -> ShmError {
    move |reason| ShmError::Page(PageError::call(call, start, size, reason))
}

impl SharedSlab {
    /// Creates the memfd (`size` rounded up to pages), reserves address
    /// space as [`pages::reserve`] would, and maps the memfd over it.
    pub fn create(size: u64, placement: PlacementCode, address: u64) -> Result<Self, ShmError> {
        let page = pages::page_size();
        let size = size
            .checked_next_multiple_of(page)
            .filter(|&s| s <= i64::MAX as u64 && usize::try_from(s).is_ok())
            .ok_or(ShmError::TooLarge(size))?;
        let base = pages::reserve(size, placement, address)?;
        // On failure the memfd (if any) closes as it drops.
        let fail = |call| {
            let err = os_error(call, base, size);
            move |reason| {
                // SAFETY: nothing uses the fresh reservation.
                unsafe { pages::unreserve(base, size) };
                err(reason)
            }
        };
        // Close-on-exec keeps the memfd out of programs JIT'd code executes
        // (fork keeps it).
        let fd = sys_memory::memfd(c"solder-slab").map_err(fail("memfd_create"))?;
        sys_memory::resize(fd.as_fd(), size).map_err(fail("ftruncate"))?;
        // SAFETY: MAP_FIXED replaces exactly the reservation we just made,
        // which nothing references.
        unsafe { sys_memory::map_file_at(base, size, Prot::None, Sharing::Shared, fd.as_fd(), 0) }
            .map_err(fail("mmap"))?;
        let pages = size / page;
        Ok(SharedSlab {
            fd,
            base,
            size,
            page,
            private: vec![0; pages.div_ceil(64) as usize],
        })
    }

    pub fn fd(&self) -> c_int {
        self.fd.as_raw_fd()
    }

    pub fn base(&self) -> u64 {
        self.base
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    fn is_private(&self, index: u64) -> bool {
        self.private[(index / 64) as usize] & (1 << (index % 64)) != 0
    }

    fn set_private(&mut self, first: u64, count: u64, private: bool) {
        for index in first..first + count {
            let word = &mut self.private[(index / 64) as usize];
            if private {
                *word |= 1 << (index % 64);
            } else {
                *word &= !(1 << (index % 64));
            }
        }
    }

    /// Maps `[start, start + size)` of the memfd at its own offset.
    ///
    /// # Safety
    /// The range must be page-aligned, inside the slab, and unreferenced.
    unsafe fn map(
        &self,
        start: u64,
        size: u64,
        prot: Prot,
        sharing: Sharing,
    ) -> Result<(), ShmError> {
        let offset = start - self.base;
        // SAFETY: guaranteed by the caller; MAP_FIXED replaces only slab pages.
        unsafe { sys_memory::map_file_at(start, size, prot, sharing, self.fd.as_fd(), offset) }
            .map_err(os_error("mmap", start, size))
    }

    /// Sets the protection of whole pages (see the module docs for which
    /// pages become private).
    ///
    /// # Safety
    /// The range must be page-aligned, inside the slab, and no Rust reference
    /// may point into it.
    pub unsafe fn protect(&mut self, start: u64, size: u64, prot: Prot) -> Result<(), ShmError> {
        let size = size.next_multiple_of(self.page);
        if size == 0 {
            return Ok(());
        }
        if prot != Prot::ReadWrite {
            // SAFETY: guaranteed by the caller. mprotect keeps whichever
            // mapping (shared or private) each page has.
            return unsafe { pages::protect(start, size, prot) }.map_err(Into::into);
        }
        let first = (start - self.base) / self.page;
        let count = size / self.page;
        let mut index = first;
        while index < first + count {
            let private = self.is_private(index);
            let mut end = index + 1;
            while end < first + count && self.is_private(end) == private {
                end += 1;
            }
            let run_start = self.base + index * self.page;
            let run_size = (end - index) * self.page;
            // SAFETY: guaranteed by the caller for the whole range, so for
            // this run too. A private run keeps its contents (mprotect); a
            // shared run becomes a private copy-on-write view of the memfd.
            unsafe {
                if private {
                    pages::protect(run_start, run_size, Prot::ReadWrite)?;
                } else {
                    self.map(run_start, run_size, Prot::ReadWrite, Sharing::Private)?;
                }
            }
            index = end;
        }
        self.set_private(first, count, true);
        Ok(())
    }

    /// Discards the pages' contents (in the memfd and any private copies)
    /// and maps them shared and inaccessible.
    ///
    /// # Safety
    /// As for [`SharedSlab::protect`]; nothing may use the contents afterwards.
    pub unsafe fn release(&mut self, start: u64, size: u64) -> Result<(), ShmError> {
        let size = size.next_multiple_of(self.page);
        if size == 0 {
            return Ok(());
        }
        sys_memory::punch_hole(self.fd.as_fd(), start - self.base, size).map_err(os_error(
            "fallocate",
            start,
            size,
        ))?;
        // SAFETY: guaranteed by the caller.
        unsafe { self.map(start, size, Prot::None, Sharing::Shared)? };
        self.set_private((start - self.base) / self.page, size / self.page, false);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_pages_are_private_code_pages_shared() {
        let mut slab = SharedSlab::create(4 * 4096, PlacementCode::Any, 0).unwrap();
        let page = pages::page_size();
        let base = slab.base();
        // A second view of the memfd, as the controller would map it.
        let view = sys_memory::map_shared(Some(slab.fd.as_fd()), slab.size()).unwrap();
        // SAFETY: all accesses below are inside the slab or the view, with
        // the protections just set.
        unsafe {
            *view = 7;
            slab.protect(base, page, Prot::ReadOnly).unwrap();
            assert_eq!(*(base as *const u8), 7, "read-only pages are shared");
            *view.add(page as usize) = 1;
            slab.protect(base + page, page, Prot::ReadWrite).unwrap();
            assert_eq!(*((base + page) as *const u8), 1, "starts from the file");
            *((base + page) as *mut u8) = 2;
            assert_eq!(*view.add(page as usize), 1, "the view never sees it");
            slab.protect(base + page, page, Prot::ReadOnly).unwrap();
            assert_eq!(*((base + page) as *const u8), 2, "private data kept");
            slab.release(base + page, page).unwrap();
            slab.protect(base + page, page, Prot::ReadOnly).unwrap();
            assert_eq!(*((base + page) as *const u8), 0, "released pages read zero");
            sys_memory::unmap(view as u64, slab.size()).unwrap();
        }
    }
}
