//! The session's slab: one reservation of address space (default 1 GiB,
//! reserved without committing) from which every JIT allocation comes, so
//! any 32-bit PC-relative reference between JIT'd symbols reaches.
//!
//! Allocations are page-granular; released ranges return their pages to the
//! system (`MADV_DONTNEED`), go back to `PROT_NONE`, and are reused.
//! Protection follows wasmtime's `CodeMemory`: read-write while the linker
//! writes, then per segment read-execute, read-only or read-write — never
//! writable and executable at once.

use std::collections::BTreeMap;

use crate::error::LinkError;
use crate::graph::Protection;

/// Where to put the slab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Decided by the session from the first load: [`Placement::Low`] when
    /// it holds absolute 32-bit references (`-fno-pic` code), otherwise
    /// [`Placement::NearHost`].
    Auto,
    /// Within ±2 GiB of the host's shared libraries, so code compiled for
    /// PIE (which reads extern data PC-relative, expecting copy relocations)
    /// reaches host data directly; anywhere when that fails.
    NearHost,
    /// In the low 2 GiB, where absolute 32-bit addresses reach; anywhere
    /// when that fails.
    Low,
    /// Exactly here, or fail.
    Fixed(u64),
}

pub struct Slab {
    base: u64,
    size: u64,
    page: u64,
    /// Free ranges: start -> length, coalesced.
    free: BTreeMap<u64, u64>,
}

/// The span a rel32 displacement reaches, with a margin for addends.
const REL32_REACH: u64 = (1 << 31) - (1 << 20);
const LOW_HINT: u64 = 0x1000_0000;

pub fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if page > 0 { page as u64 } else { 4096 }
}

impl Slab {
    /// Reserves `size` bytes of address space without committing memory.
    pub fn reserve(size: u64, placement: Placement) -> Result<Slab, LinkError> {
        let page = page_size();
        let size = size.div_ceil(page) * page;
        if size == 0 {
            return Err(LinkError::Memory("the slab size must be positive".into()));
        }
        let base = match placement {
            Placement::Fixed(address) => {
                if address % page != 0 {
                    return Err(LinkError::Memory(format!(
                        "slab address {address:#x} is not page-aligned ({page:#x})"
                    )));
                }
                map_noreserve(address, size, true).ok_or_else(|| {
                    LinkError::Memory(format!(
                        "cannot reserve {size:#x} bytes at {address:#x}: {}",
                        std::io::Error::last_os_error()
                    ))
                })?
            }
            Placement::Auto | Placement::NearHost | Placement::Low => {
                let near = (placement != Placement::Low)
                    .then(|| near_host(size, page))
                    .flatten();
                // Every 256 MiB step of the low 2 GiB that fits, so several
                // sessions in one process each get a low slab.
                let low = || {
                    let mut base = LOW_HINT;
                    while base + size <= 1 << 31 {
                        if let Some(found) = map_noreserve(base, size, true) {
                            return Some(found);
                        }
                        base += 256 << 20;
                    }
                    None
                };
                match near.or_else(low) {
                    Some(base) => base,
                    None => map_noreserve(0, size, false).ok_or_else(|| {
                        LinkError::Memory(format!(
                            "cannot reserve {size:#x} bytes: {}",
                            std::io::Error::last_os_error()
                        ))
                    })?,
                }
            }
        };
        let mut free = BTreeMap::new();
        free.insert(base, size);
        Ok(Slab {
            base,
            size,
            page,
            free,
        })
    }

    pub fn base(&self) -> u64 {
        self.base
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn page(&self) -> u64 {
        self.page
    }

    /// Whether the whole slab lies in the low 2 GiB, where absolute 32-bit
    /// addresses (`-fno-pic`) can name it.
    pub fn is_low(&self) -> bool {
        self.base + self.size <= 1 << 31
    }

    /// Whether a rel32 field anywhere in the slab reaches `target`.
    pub fn reaches(&self, target: u64) -> bool {
        let end = self.base + self.size;
        target.abs_diff(self.base) < REL32_REACH && target.abs_diff(end) < REL32_REACH
    }

    /// Bytes not handed out.
    pub fn free_bytes(&self) -> u64 {
        self.free.values().sum()
    }

    /// Takes `size` bytes (rounded up to pages), first fit, mapped
    /// read-write and zeroed.
    pub fn allocate(&mut self, size: u64) -> Result<u64, LinkError> {
        let size = size.max(1).div_ceil(self.page) * self.page;
        let (&start, &length) = self
            .free
            .iter()
            .find(|&(_, &length)| length >= size)
            .ok_or_else(|| {
                LinkError::Memory(format!(
                    "the slab at {:#x} ({} MiB) has no free range of {size:#x} bytes ({} KiB free in all); start the session with a larger --slab",
                    self.base,
                    self.size >> 20,
                    self.free_bytes() >> 10
                ))
            })?;
        self.free.remove(&start);
        if length > size {
            self.free.insert(start + size, length - size);
        }
        protect(start, size, libc::PROT_READ | libc::PROT_WRITE)?;
        Ok(start)
    }

    /// Returns a range to the slab: its pages go back to the system and the
    /// range becomes inaccessible until allocated again.
    pub fn release(&mut self, start: u64, size: u64) {
        let size = size.max(1).div_ceil(self.page) * self.page;
        // SAFETY: the range lies inside our own reservation; discarding
        // private anonymous pages only zeroes them.
        unsafe {
            libc::madvise(
                start as *mut libc::c_void,
                size as usize,
                libc::MADV_DONTNEED,
            );
        }
        let _ = protect(start, size, libc::PROT_NONE);
        let mut start = start;
        let mut size = size;
        if let Some((&prev, &prev_len)) = self.free.range(..start).next_back()
            && prev + prev_len == start
        {
            self.free.remove(&prev);
            start = prev;
            size += prev_len;
        }
        if let Some(&next_len) = self.free.get(&(start + size)) {
            self.free.remove(&(start + size));
            size += next_len;
        }
        self.free.insert(start, size);
    }
}

impl Drop for Slab {
    fn drop(&mut self) {
        // SAFETY: the reservation is ours; nothing in it is used after the
        // session (which owns the slab) is gone.
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.size as usize) };
    }
}

/// Sets the protection of whole pages inside the slab.
pub fn protect_as(start: u64, size: u64, protection: Protection) -> Result<(), LinkError> {
    let prot = match protection {
        Protection::Code => libc::PROT_READ | libc::PROT_EXEC,
        Protection::ReadOnly => libc::PROT_READ,
        Protection::Data | Protection::Zero => libc::PROT_READ | libc::PROT_WRITE,
    };
    protect(start, size, prot)
}

/// Makes pages writable (and not executable) so the linker can patch them.
pub fn make_writable(start: u64, size: u64) -> Result<(), LinkError> {
    protect(start, size, libc::PROT_READ | libc::PROT_WRITE)
}

fn protect(start: u64, size: u64, prot: libc::c_int) -> Result<(), LinkError> {
    if size == 0 {
        return Ok(());
    }
    // SAFETY: callers only pass page-aligned ranges inside the slab, which
    // this process reserved; changing their protection affects no Rust data.
    let rc = unsafe { libc::mprotect(start as *mut libc::c_void, size as usize, prot) };
    if rc != 0 {
        return Err(LinkError::Memory(format!(
            "mprotect({start:#x}, {size:#x}) failed: {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok(())
}

/// Reserves `size` bytes just below the host's shared libraries, where
/// every byte reaches all of them with a rel32 (libraries opened later are
/// mapped below the slab, still within reach).
fn near_host(size: u64, page: u64) -> Option<u64> {
    let (lo, hi) = solder_executor::host::library_span()?;
    // Step down from just below the libraries while the whole slab still
    // reaches them, so several sessions in one process each find a place.
    let mut gap = 16u64 << 20;
    loop {
        let base = lo.checked_sub(size + gap)? & !(page - 1);
        if hi - base >= REL32_REACH {
            return None;
        }
        if let Some(base) = map_noreserve(base, size, true) {
            return Some(base);
        }
        gap += 64 << 20;
    }
}

fn map_noreserve(address: u64, size: u64, fixed: bool) -> Option<u64> {
    let mut flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
    if fixed {
        flags |= libc::MAP_FIXED_NOREPLACE;
    }
    // SAFETY: an anonymous PROT_NONE mapping; MAP_FIXED_NOREPLACE never
    // replaces an existing mapping.
    let ptr = unsafe {
        libc::mmap(
            address as *mut libc::c_void,
            size as usize,
            libc::PROT_NONE,
            flags,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return None;
    }
    if fixed && ptr as u64 != address {
        // Old kernels ignore MAP_FIXED_NOREPLACE and treat it as a hint.
        // SAFETY: we just mapped this range.
        unsafe { libc::munmap(ptr, size as usize) };
        return None;
    }
    Some(ptr as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocations_are_reused_and_coalesced() {
        let mut slab = Slab::reserve(1 << 20, Placement::Auto).unwrap();
        let page = slab.page();
        let a = slab.allocate(1).unwrap();
        let b = slab.allocate(page + 1).unwrap();
        assert_eq!(b, a + page);
        slab.release(a, 1);
        slab.release(b, page + 1);
        assert_eq!(slab.free_bytes(), slab.size());
        let c = slab.allocate(3 * page).unwrap();
        assert_eq!(c, a, "freed ranges coalesce and are reused first");
    }

    #[test]
    fn exhaustion_is_a_clear_error() {
        let mut slab = Slab::reserve(64 * 1024, Placement::Auto).unwrap();
        let err = slab.allocate(1 << 20).unwrap_err().to_string();
        assert!(err.contains("no free range"), "{err}");
        assert!(err.contains("--slab"), "{err}");
    }

    #[test]
    fn near_host_placement_reaches_libc() {
        let slab = Slab::reserve(1 << 30, Placement::NearHost).unwrap();
        let (lo, hi) = solder_executor::host::library_span().unwrap();
        assert!(
            slab.reaches(lo) && slab.reaches(hi),
            "slab {:#x}",
            slab.base()
        );
    }

    #[test]
    fn low_placement_is_in_the_low_2_gib() {
        let slab = Slab::reserve(1 << 30, Placement::Low).unwrap();
        assert!(slab.is_low(), "slab at {:#x}", slab.base());
        assert!(slab.reaches(slab.base() + (1 << 30) - 1));
        assert!(!slab.reaches(0x7f00_0000_0000));
    }
}
