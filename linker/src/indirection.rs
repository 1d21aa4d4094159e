//! The session's indirection stubs: how callers in one module reach a
//! function defined in another, so that a hot swap can redirect them.
//!
//! Each stub is `jmp *cell(%rip)`; the cell holds the current definition.
//! Stubs and cells come in chunks of one read-execute page of stubs and one
//! read-write page of cells (never writable and executable). A chunk's stub
//! page is written whole when the chunk is allocated, each stub already
//! pointing at its cell, so creating or retargeting a stub only stores an
//! 8-byte cell: no page ever changes protection again. The cells are
//! writable for the life of the session, as ORC's stub pointers and a GOT
//! without RELRO are; that is the price of swaps that cost one store. A
//! function's stub is its address as seen from other modules and through
//! `lookup`, so pointers taken before a swap reach the new definition.

use rustc_hash::FxHashMap as HashMap;

use crate::arch::machine::{JUMP_STUB, JUMP_STUB_DISP, JUMP_STUB_END};
use crate::error::LinkError;
use crate::executors::Executor;
use crate::graph::Protection;
use crate::memory::Slab;

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

    /// Whether no stub exists yet.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
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
            self.chunks.push(Self::allocate_chunk(slab, executor)?);
        }
        self.count += 1;
        self.slots.insert(name.to_string(), index);
        let (stub, cell) = self.addresses(index, page);
        executor.patch(cell, &target.to_le_bytes(), Protection::Data)?;
        Ok(stub)
    }

    /// A new chunk: a page of stubs, each jumping through its cell in the
    /// next page, and that page of cells, all zero (a call through a cell
    /// not yet set faults at address 0).
    fn allocate_chunk(slab: &mut Slab, executor: &mut dyn Executor) -> Result<u64, LinkError> {
        let page = slab.page();
        let base = slab.allocate(2 * page)?;
        let mut image = vec![0u8; 2 * page as usize];
        for index in 0..Self::per_chunk(page) {
            let at = index * JUMP_STUB.len();
            let cell = page as usize + index * 8;
            let disp = (cell - (at + JUMP_STUB_END)) as i32;
            let stub = &mut image[at..at + JUMP_STUB.len()];
            stub.copy_from_slice(&JUMP_STUB);
            stub[JUMP_STUB_DISP..JUMP_STUB_DISP + 4].copy_from_slice(&disp.to_le_bytes());
        }
        executor.write(base, &image)?;
        executor.protect(base, page, Protection::Code)?;
        executor.protect(base + page, page, Protection::Data)?;
        Ok(base)
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
        executor.patch(cell, &target.to_le_bytes(), Protection::Data)?;
        Ok(true)
    }
}
