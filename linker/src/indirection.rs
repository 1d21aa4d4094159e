//! The session's indirection stubs: how callers in one module reach a
//! function defined in another, so that a hot swap can redirect them.
//!
//! Each stub is `jmp *cell(%rip)`; the cell holds the current definition.
//! Stubs live in read-execute pages and cells in read-only pages of the slab,
//! allocated in pairs; a swap makes one cell page writable (never
//! executable), rewrites the cell, and makes it read-only again. A function's
//! stub is its address as seen from other modules and through `lookup`, so
//! pointers taken before a swap reach the new definition.

use std::collections::HashMap;

use crate::arch::x86_64::{JUMP_STUB, JUMP_STUB_DISP, JUMP_STUB_END};
use crate::error::LinkError;
use crate::graph::Protection;
use crate::memory::Slab;
use crate::target::Executor;

#[derive(Default)]
pub struct Indirection {
    /// Base of each chunk: one page of stubs, then one page of cells.
    chunks: Vec<u64>,
    slots: HashMap<String, usize>,
    count: usize,
}

impl Indirection {
    fn per_chunk(page: u64) -> usize {
        (page / JUMP_STUB.len() as u64) as usize
    }

    fn addresses(&self, index: usize, page: u64) -> (u64, u64) {
        let per = Self::per_chunk(page);
        let base = self.chunks[index / per];
        let within = (index % per) as u64;
        (
            base + within * JUMP_STUB.len() as u64,
            base + page + within * 8,
        )
    }

    /// The stub for `name`, if one exists.
    pub fn stub(&self, name: &str, page: u64) -> Option<u64> {
        self.slots.get(name).map(|&i| self.addresses(i, page).0)
    }

    /// The stub for `name`, created to jump to `target` if it is new.
    pub fn stub_for(
        &mut self,
        slab: &mut Slab,
        executor: &mut dyn Executor,
        name: &str,
        target: u64,
    ) -> Result<u64, LinkError> {
        let page = slab.page();
        if let Some(stub) = self.stub(name, page) {
            return Ok(stub);
        }
        let index = self.count;
        if index == self.chunks.len() * Self::per_chunk(page) {
            let base = slab.allocate(2 * page)?;
            self.chunks.push(base);
        }
        self.count += 1;
        self.slots.insert(name.to_string(), index);
        let (stub, cell) = self.addresses(index, page);
        let mut bytes = JUMP_STUB;
        let disp = (cell as i64 - (stub as i64 + JUMP_STUB_END as i64)) as i32;
        bytes[JUMP_STUB_DISP..JUMP_STUB_DISP + 4].copy_from_slice(&disp.to_le_bytes());
        // The cell first: the stub must never jump through a stale one.
        executor.patch(cell, &target.to_le_bytes(), Protection::ReadOnly)?;
        executor.patch(stub, &bytes, Protection::Code)?;
        Ok(stub)
    }

    /// Points an existing stub at a new definition (0 makes calls fault).
    pub fn retarget(
        &self,
        executor: &mut dyn Executor,
        name: &str,
        target: u64,
        page: u64,
    ) -> Result<bool, LinkError> {
        let Some(&index) = self.slots.get(name) else {
            return Ok(false);
        };
        let (_, cell) = self.addresses(index, page);
        executor.patch(cell, &target.to_le_bytes(), Protection::ReadOnly)?;
        Ok(true)
    }
}
