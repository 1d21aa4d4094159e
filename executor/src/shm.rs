//! A reservation backed by a memfd, so the controller can write code
//! straight into the pages (no copy through the channel).
//!
//! The executor maps the whole memfd **privately** (`MAP_PRIVATE`,
//! `PROT_NONE` at first) over its reservation and keeps no writable alias
//! of it: pages the executor never writes show the file's current contents
//! (the controller's writes are visible at once), and a page it writes
//! (data, a `Write`, a `Patch`) becomes its own copy-on-write copy, which
//! reaches neither the file (so neither the controller) nor a snapshot
//! checkpoint. Protection changes are plain `mprotect`s; releasing drops
//! the private copies (`MADV_DONTNEED`), so the pages show the file again.
//!
//! The executor holds the memfd's descriptor only until the controller has
//! opened it (through `/proc/<pid>/fd/<n>`): the server closes it when the
//! next request arrives ([`SharedSlab::close_descriptor`]). From then on
//! the executor has no descriptor to write the file through, nor to reopen
//! it read-write through `/proc/self/fd`, and no shared mapping of it: the
//! controller's descriptor is the only way to change the file, hole punching
//! for released ranges included.

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
    /// The memfd, until the controller has had its chance to open it.
    fd: Option<OwnedFd>,
    base: u64,
    size: u64,
}

/// `call` on `[start, start + size)` failed with the returned reason.
fn os_error(call: &'static str, start: u64, size: u64) -> impl Fn(std::io::Error) -> ShmError {
    move |reason| ShmError::Page(PageError::call(call, start, size, reason))
}

impl SharedSlab {
    /// Creates the memfd (`size` rounded up to pages), reserves address
    /// space as [`pages::reserve`] would, and maps the memfd privately and
    /// inaccessible over it.
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
        // Close-on-exec keeps the memfd out of programs JIT'd code executes.
        let fd = sys_memory::memfd(c"solder-slab").map_err(fail("memfd_create"))?;
        sys_memory::resize(fd.as_fd(), size).map_err(fail("ftruncate"))?;
        // SAFETY: MAP_FIXED replaces exactly the reservation we just made,
        // which nothing references.
        unsafe { sys_memory::map_file_at(base, size, Prot::None, Sharing::Private, fd.as_fd(), 0) }
            .map_err(fail("mmap"))?;
        Ok(SharedSlab {
            fd: Some(fd),
            base,
            size,
        })
    }

    /// The memfd's descriptor number, -1 once closed.
    pub fn fd(&self) -> c_int {
        self.fd.as_ref().map_or(-1, AsRawFd::as_raw_fd)
    }

    /// Closes the memfd's descriptor: the mapping stays, and with it every
    /// page the controller writes. Idempotent.
    pub fn close_descriptor(&mut self) {
        self.fd = None;
    }

    pub fn base(&self) -> u64 {
        self.base
    }

    pub fn size(&self) -> u64 {
        self.size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_executor_sees_the_file_until_it_writes_a_page() {
        let mut slab = SharedSlab::create(4 * 4096, PlacementCode::Any, 0).unwrap();
        let page = pages::page_size();
        let base = slab.base();
        // A second view of the memfd, as the controller would have it.
        let view = sys_memory::map_shared(
            Some(slab.fd.as_ref().expect("open until closed").as_fd()),
            slab.size(),
        )
        .unwrap();
        slab.close_descriptor();
        assert_eq!(slab.fd(), -1);
        // SAFETY: all accesses below are inside the slab or the view, with
        // the protections just set.
        unsafe {
            *view = 7;
            pages::protect(base, page, Prot::ReadOnly).unwrap();
            assert_eq!(*(base as *const u8), 7, "the file's contents");
            *view = 8;
            assert_eq!(*(base as *const u8), 8, "later writes show at once");
            *view.add(page as usize) = 1;
            pages::protect(base + page, page, Prot::ReadWrite).unwrap();
            assert_eq!(*((base + page) as *const u8), 1, "starts from the file");
            *((base + page) as *mut u8) = 2;
            assert_eq!(*view.add(page as usize), 1, "the view never sees it");
            pages::protect(base + page, page, Prot::ReadOnly).unwrap();
            assert_eq!(*((base + page) as *const u8), 2, "private data kept");
            // Released: the private copy is gone; the file shows again.
            pages::release(base + page, page).unwrap();
            pages::protect(base + page, page, Prot::ReadOnly).unwrap();
            assert_eq!(*((base + page) as *const u8), 1, "the file again");
            sys_memory::unmap(view as u64, slab.size()).unwrap();
        }
    }
}
