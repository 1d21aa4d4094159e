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

use crate::pages::{self, PageError};
use crate::protocol::{PlacementCode, Prot};

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
    fd: c_int,
    base: u64,
    size: u64,
    page: u64,
    /// One bit per page: currently mapped `MAP_PRIVATE`.
    private: Vec<u64>,
}

fn os_error(call: &'static str, start: u64, size: u64) -> ShmError {
    ShmError::Page(PageError::last_os_error(call, start, size))
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
        // SAFETY: the name is NUL-terminated; MFD_CLOEXEC keeps the memfd out
        // of programs JIT'd code executes (fork keeps it).
        let fd = unsafe { libc::memfd_create(c"solder-slab".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            let err = os_error("memfd_create", base, size);
            // SAFETY: nothing uses the fresh reservation.
            unsafe { pages::unreserve(base, size) };
            return Err(err);
        }
        let fail = |call| {
            let err = os_error(call, base, size);
            // SAFETY: nothing uses the fresh reservation or the memfd.
            unsafe {
                pages::unreserve(base, size);
                libc::close(fd);
            }
            err
        };
        // SAFETY: ftruncate on our own memfd; `size` fits off_t (checked).
        if unsafe { libc::ftruncate(fd, size as libc::off_t) } != 0 {
            return Err(fail("ftruncate"));
        }
        // SAFETY: MAP_FIXED replaces exactly the reservation we just made,
        // which nothing references.
        let mapped = unsafe {
            libc::mmap(
                base as *mut libc::c_void,
                size as usize,
                libc::PROT_NONE,
                libc::MAP_SHARED | libc::MAP_FIXED,
                fd,
                0,
            )
        };
        if mapped == libc::MAP_FAILED {
            return Err(fail("mmap"));
        }
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
        self.fd
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
    unsafe fn map(&self, start: u64, size: u64, prot: c_int, flags: c_int) -> Result<(), ShmError> {
        // SAFETY: guaranteed by the caller; MAP_FIXED replaces only slab pages.
        let mapped = unsafe {
            libc::mmap(
                start as *mut libc::c_void,
                size as usize,
                prot,
                flags | libc::MAP_FIXED,
                self.fd,
                (start - self.base) as libc::off_t,
            )
        };
        if mapped == libc::MAP_FAILED {
            return Err(os_error("mmap", start, size));
        }
        Ok(())
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
                    self.map(
                        run_start,
                        run_size,
                        libc::PROT_READ | libc::PROT_WRITE,
                        libc::MAP_PRIVATE,
                    )?;
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
        let offset = (start - self.base) as libc::off_t;
        // SAFETY: punching a hole in our own memfd inside its size.
        let rc = unsafe {
            libc::fallocate(
                self.fd,
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                offset,
                size as libc::off_t,
            )
        };
        if rc != 0 {
            return Err(os_error("fallocate", start, size));
        }
        // SAFETY: guaranteed by the caller.
        unsafe { self.map(start, size, libc::PROT_NONE, libc::MAP_SHARED)? };
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
        // SAFETY: a fresh shared mapping of our memfd.
        let view = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                slab.size() as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                slab.fd(),
                0,
            )
        } as *mut u8;
        assert_ne!(view as *mut libc::c_void, libc::MAP_FAILED);
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
            libc::munmap(view.cast(), slab.size() as usize);
        }
    }
}
