//! The session's slab: one reservation of address space (default 1 GiB,
//! reserved without committing) from which every JIT allocation comes, so
//! any 32-bit PC-relative reference between JIT'd symbols reaches.
//!
//! This is the controller's bookkeeping: page-granular first-fit allocation
//! with coalescing and reuse. The executor owns the mapping itself
//! (`solder_executor::pages`): it reserves the range, maps pages read-write
//! while they are written, then read-execute, read-only or read-write —
//! never writable and executable at once — and discards released pages.

use std::collections::BTreeMap;

use crate::arch::{Arch, Machine};
use solder_executor::protocol::PlacementCode;

use crate::error::LinkError;

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

/// No slab starts below this: the first 64 KiB (Linux's usual
/// `vm.mmap_min_addr`) stay unmapped so that null-pointer reads and calls
/// keep faulting, even for root, who may map there. The executor refuses
/// such a `Reserve` too.
pub const LOWEST_SLAB_ADDRESS: u64 = solder_executor::protocol::LOWEST_SLAB_ADDRESS;

/// Refuses a slab that would start in the first 64 KiB.
pub fn refuse_low_slab(base: u64) -> Result<(), LinkError> {
    if base >= LOWEST_SLAB_ADDRESS {
        return Ok(());
    }
    Err(LinkError::Memory(format!(
        "a slab at {base:#x} would cover part of the first 64 KiB, where null-pointer \
         accesses must fault; choose an address at or above {LOWEST_SLAB_ADDRESS:#x}"
    )))
}

pub struct Slab {
    base: u64,
    size: u64,
    page: u64,
    /// Free ranges: start -> length, coalesced.
    free: BTreeMap<u64, u64>,
}

impl Placement {
    /// The protocol's placement code and fixed address.
    pub fn code(self) -> (PlacementCode, u64) {
        match self {
            Placement::Auto | Placement::NearHost => (PlacementCode::NearHost, 0),
            Placement::Low => (PlacementCode::Low, 0),
            Placement::Fixed(address) => (PlacementCode::Fixed, address),
        }
    }
}

impl Slab {
    /// Bookkeeping for a reservation the executor made at `base`.
    pub fn new(base: u64, size: u64, page: u64) -> Slab {
        let size = size.div_ceil(page) * page;
        let mut free = BTreeMap::new();
        free.insert(base, size);
        Slab {
            base,
            size,
            page,
            free,
        }
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

    /// Whether a direct reference (an x86-64 rel32) from anywhere in the
    /// slab reaches `target`.
    pub fn reaches(&self, target: u64) -> bool {
        Machine::reaches(self.base, self.size, target)
    }

    /// Bytes not handed out.
    pub fn free_bytes(&self) -> u64 {
        self.free.values().sum()
    }

    /// Takes `size` bytes (rounded up to pages), first fit. The executor
    /// maps them when they are written.
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
        Ok(start)
    }

    /// Returns a range to the slab (the executor discards its pages).
    pub fn release(&mut self, start: u64, size: u64) {
        let mut size = size.max(1).div_ceil(self.page) * self.page;
        let mut start = start;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocations_are_reused_and_coalesced() {
        let page = 4096;
        let mut slab = Slab::new(0x1000_0000, 1 << 20, page);
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
        let mut slab = Slab::new(0x1000_0000, 64 * 1024, 4096);
        let err = slab.allocate(1 << 20).unwrap_err().to_string();
        assert!(err.contains("no free range"), "{err}");
        assert!(err.contains("--slab"), "{err}");
    }
}
