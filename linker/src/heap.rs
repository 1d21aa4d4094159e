//! The `solder` command's heap: the C library's allocator until the
//! process links a large load, then mimalloc, whose memory is backed by
//! 2 MiB transparent huge pages where the kernel allows them.
//!
//! A large link spends much of its time on first touches of fresh heap
//! memory: the graphs, symbol tables, edges and plans of thousands of
//! objects, one page fault (microseconds on a virtual machine) per 4 KiB,
//! and two threads faulting at once slow each other down. On huge pages
//! one fault backs 2 MiB: a 30 MB link took 8,783 faults on the C
//! library's heap and 413 on mimalloc's. mimalloc also gives each thread
//! memory of its own, where the C library gives a helper thread a new arena
//! that grows a page at a time. The price is memory: huge pages are backed
//! whole, and mimalloc keeps freed pages for reuse a while before giving
//! them back, so a large link's peak grows. A small link gains nothing to
//! pay for mimalloc's start and a first huge page, so it never starts it:
//! [`large_load`] turns it on from [`LARGE_LOAD_BYTES`] of input read on.
//!
//! It is mimalloc's version 2. Version 3 backed the same heap with more
//! memory: on OpenSSL's link (9.6 MB of the linker's blocks live at the
//! peak) the process peaked at 59.0 MiB instead of 49.0, and the link,
//! which pays the kernel to zero each new page, took 5-7% longer.
//!
//! Only the linker's own (Rust) allocations come here. Code the linker
//! runs in process calls the C library's `malloc` as it always does.
//!
//! Memory allocated before the switch stays the C library's: after it, a
//! free or a resize asks mimalloc whether it owns the block (a lookup in
//! its page map).

use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, Ordering};

use mimalloc::MiMalloc;

/// Input from which a load moves the linker's heap to mimalloc. Below it
/// the gain is small and the peak grows by half (3 MB of synthetic
/// objects with mimalloc from the start: 14.3 -> 13.4 ms, peak 14.4 -> 22.4
/// MiB; Lua's 1 MB: 3.9 -> 4.6 ms).
pub const LARGE_LOAD_BYTES: usize = 8 << 20;

/// mimalloc's `mi_option_purge_delay` (its position in `mimalloc.h`'s
/// list of options, which the bindings leave out): how long freed memory is
/// kept before it is given back, in milliseconds; negative: never.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// The heap [`Global`] allocates from, and [`large_load`] switches.
pub static HEAP: Heap = Heap::new();

/// [`HEAP`] as a global allocator: the `solder` command installs it
/// (`#[global_allocator]`).
pub struct Global;

/// The process's heap: the C library's allocator, or mimalloc once
/// [`Heap::use_mimalloc`] was called.
pub struct Heap {
    /// New blocks come from mimalloc, and frees ask who owns theirs. Only
    /// ever set: a thread that sees it unset has allocated nothing from
    /// mimalloc, and a block reaches another thread only through an
    /// operation that orders it after the allocating thread saw it set,
    /// so the freeing thread sees it set too (read-read coherence).
    mimalloc: AtomicBool,
}

/// A load of `input_bytes` is about to be linked: from [`LARGE_LOAD_BYTES`]
/// on, [`HEAP`] allocates from mimalloc from now on. Nothing changes in a
/// process whose global allocator is not [`HEAP`]: the flag is only read
/// by its methods.
pub fn large_load(input_bytes: usize) {
    if is_large(input_bytes) {
        HEAP.use_mimalloc();
    }
}

/// The process is about to exit. mimalloc collects its memory in an exit
/// handler; giving it back to the system page range by page range (one
/// `madvise` each, hundreds after a large link) is work an exiting process
/// does not need, so it is turned off.
pub fn process_ending() {
    if HEAP.switched() {
        // SAFETY: sets one of mimalloc's options (a negative purge delay:
        // never give memory back); any thread may call it at any time.
        unsafe {
            libmimalloc_sys::mi_option_set(PURGE_DELAY, -1);
        }
    }
}

/// The linking is done and the program is about to run in this process:
/// the memory the link freed is given back to the system now. mimalloc
/// gives freed pages back only on a later allocation or free of the thread
/// that freed them, which the linker may not make again while the program
/// runs; until then they would stay resident (RocksDB's link left 18 MiB
/// so, a third of the link's peak). Costs under a millisecond there.
pub fn give_back() {
    if HEAP.switched() {
        // SAFETY: `mi_collect` frees and gives back memory mimalloc holds
        // and no block uses; any thread may call it at any time.
        unsafe { libmimalloc_sys::mi_collect(true) };
    }
}

/// Whether a load of `input_bytes` moves the heap to mimalloc.
fn is_large(input_bytes: usize) -> bool {
    input_bytes >= LARGE_LOAD_BYTES
}

impl Heap {
    pub const fn new() -> Heap {
        Heap {
            mimalloc: AtomicBool::new(false),
        }
    }

    /// The allocator new blocks come from: `system` or `mimalloc`.
    pub fn allocator(&self) -> &'static str {
        if self.switched() {
            "mimalloc"
        } else {
            "system"
        }
    }

    /// New blocks come from mimalloc from now on.
    pub fn use_mimalloc(&self) {
        self.mimalloc.store(true, Ordering::Relaxed);
    }

    /// Whether mimalloc allocated `ptr` (never before the switch).
    fn owned_by_mimalloc(&self, ptr: *mut u8) -> bool {
        // SAFETY: `mi_is_in_heap_region` reads mimalloc's page map for any
        // address, ours or not (before mimalloc's start, which its load-time
        // constructor makes, it answers no for every address).
        self.switched()
            && unsafe { libmimalloc_sys::mi_is_in_heap_region(ptr.cast::<c_void>().cast_const()) }
    }

    /// `block` (mimalloc's, fresh, of `layout`, or null) if mimalloc's page
    /// map owns it, which every block [`Heap::dealloc`] gives mimalloc must
    /// be; else it goes back and `system` (the C library's allocator)
    /// makes the block instead. mimalloc's version 2 maps its arenas and
    /// the memory it asks the system for below 48 TiB: when no arena can
    /// be reserved (an address-space limit) and the system places memory
    /// elsewhere, a free would ask the map and go to the C library.
    ///
    /// # Safety
    ///
    /// `block` is null or a live block of mimalloc's with `layout`, and
    /// `layout` meets `GlobalAlloc::alloc`'s contract.
    unsafe fn known_or(
        &self,
        block: *mut u8,
        layout: Layout,
        system: impl FnOnce(Layout) -> *mut u8,
    ) -> *mut u8 {
        if block.is_null() || self.owned_by_mimalloc(block) {
            return block;
        }
        // SAFETY: `block` is mimalloc's, of `layout` (the contract).
        unsafe { MiMalloc.dealloc(block, layout) };
        system(layout)
    }

    /// Whether new blocks come from mimalloc. A load, not a store: the flag
    /// stays in every core's cache while threads allocate.
    fn switched(&self) -> bool {
        self.mimalloc.load(Ordering::Relaxed)
    }
}

impl Default for Heap {
    fn default() -> Heap {
        Heap::new()
    }
}

// SAFETY: each block is allocated by one of two allocators and is freed or
// resized by the same one: a block is mimalloc's exactly when mimalloc's
// page map says so (a block of mimalloc's the map would not own is never
// handed out: `known_or`, `move_to_system`), and the C library never hands
// out memory inside mimalloc's regions (which mimalloc maps for itself).
unsafe impl GlobalAlloc for Heap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if self.switched() {
            // SAFETY: the caller's contract (a non-zero size) is passed on.
            let block = unsafe { MiMalloc.alloc(layout) };
            // SAFETY: `block` is null or mimalloc's, fresh, of `layout`;
            // the C library's `alloc` takes the same contract.
            unsafe { self.known_or(block, layout, |l| System.alloc(l)) }
        } else {
            // SAFETY: as above.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if self.switched() {
            // SAFETY: the caller's contract (a non-zero size) is passed on.
            let block = unsafe { MiMalloc.alloc_zeroed(layout) };
            // SAFETY: as in `alloc`.
            unsafe { self.known_or(block, layout, |l| System.alloc_zeroed(l)) }
        } else {
            // SAFETY: as above.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if self.owned_by_mimalloc(ptr) {
            // SAFETY: `ptr` is a live block of mimalloc's with `layout`
            // (the caller's contract; its owner asked above).
            unsafe { MiMalloc.dealloc(ptr, layout) }
        } else {
            // SAFETY: `ptr` is a live block of the C library's.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // A block grows in the allocator that made it.
        if self.owned_by_mimalloc(ptr) {
            // SAFETY: `ptr` is a live block of mimalloc's with `layout`;
            // `new_size` meets the caller's contract.
            let moved = unsafe { MiMalloc.realloc(ptr, layout, new_size) };
            if moved.is_null() || self.owned_by_mimalloc(moved) {
                return moved;
            }
            // SAFETY: `moved` is mimalloc's, live, of `new_size` bytes at
            // `layout`'s alignment (a valid layout: the caller's contract).
            unsafe {
                move_to_system(
                    moved,
                    Layout::from_size_align_unchecked(new_size, layout.align()),
                )
            }
        } else {
            // SAFETY: `ptr` is a live block of the C library's.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }
}

/// The C library's copy of `block`, a live block of mimalloc's of
/// `layout` that mimalloc's page map does not own (see [`Heap::known_or`]),
/// which is freed. Without memory for the copy the process aborts, as on
/// any failed allocation: the block it grew from is gone, and the grown one
/// could not be freed.
///
/// # Safety
///
/// `block` is a live block of mimalloc's with `layout`.
unsafe fn move_to_system(block: *mut u8, layout: Layout) -> *mut u8 {
    // SAFETY: `layout` is a valid, non-zero layout (a realloc's).
    let copy = unsafe { System.alloc(layout) };
    if copy.is_null() {
        std::alloc::handle_alloc_error(layout);
    }
    // SAFETY: both blocks are live, `layout.size()` long, and distinct.
    unsafe { std::ptr::copy_nonoverlapping(block, copy, layout.size()) };
    // SAFETY: `block` is mimalloc's, of `layout`.
    unsafe { MiMalloc.dealloc(block, layout) };
    copy
}

// SAFETY: every call is passed on to `HEAP`, a `GlobalAlloc` of its own.
unsafe impl GlobalAlloc for Global {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed on.
        unsafe { HEAP.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed on.
        unsafe { HEAP.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is passed on.
        unsafe { HEAP.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract is passed on.
        unsafe { HEAP.realloc(ptr, layout, new_size) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Allocates `size` bytes aligned to `align` from `heap`, filled with
    /// `byte`.
    fn block(heap: &Heap, size: usize, align: usize, byte: u8) -> (*mut u8, Layout) {
        let layout = Layout::from_size_align(size, align).unwrap();
        // SAFETY: `size` is not zero in any caller.
        let ptr = unsafe { heap.alloc(layout) };
        assert!(!ptr.is_null());
        assert_eq!(ptr as usize % align, 0);
        // SAFETY: `ptr` is a fresh block of `size` bytes.
        unsafe { ptr.write_bytes(byte, size) };
        (ptr, layout)
    }

    #[test]
    fn blocks_made_before_the_switch_stay_the_c_librarys() {
        let heap = Heap::new();
        let sizes = [(24, 8), (4096, 64), (1 << 20, 16)];
        let before: Vec<_> = sizes.iter().map(|&(s, a)| block(&heap, s, a, 1)).collect();
        for &(ptr, _) in &before {
            assert!(
                !heap.owned_by_mimalloc(ptr),
                "a block made before the switch"
            );
        }
        assert_eq!(heap.allocator(), "system");
        heap.use_mimalloc();
        assert_eq!(heap.allocator(), "mimalloc");
        let after: Vec<_> = sizes.iter().map(|&(s, a)| block(&heap, s, a, 2)).collect();
        for &(ptr, _) in &after {
            assert!(heap.owned_by_mimalloc(ptr), "a block made after the switch");
        }
        for (&(ptr, layout), &(old, _)) in after.iter().zip(&before) {
            assert!(
                !heap.owned_by_mimalloc(old),
                "the old blocks are still the C library's"
            );
            // SAFETY: each block was allocated above with `layout`, once.
            unsafe { heap.dealloc(ptr, layout) };
        }
        for (ptr, layout) in before {
            // SAFETY: as above.
            unsafe { heap.dealloc(ptr, layout) };
        }
    }

    #[test]
    fn a_block_the_page_map_does_not_own_moves_to_the_c_library_whole() {
        // mimalloc's page map owns every block it makes here; what
        // `known_or` does with one it would not own is this move.
        let heap = Heap::new();
        heap.use_mimalloc();
        let (ptr, layout) = block(&heap, 3 * 4096 + 5, 64, 7);
        assert!(heap.owned_by_mimalloc(ptr));
        // SAFETY: `ptr` is a live block of mimalloc's with `layout`.
        let moved = unsafe { move_to_system(ptr, layout) };
        assert!(
            !heap.owned_by_mimalloc(moved),
            "the copy is the C library's"
        );
        assert_eq!(moved as usize % layout.align(), 0);
        // SAFETY: `moved` is a live block of `layout.size()` bytes.
        let bytes = unsafe { std::slice::from_raw_parts(moved, layout.size()) };
        assert!(bytes.iter().all(|&b| b == 7), "the bytes came along");
        // SAFETY: `moved` is the C library's, of `layout`; `heap` frees it
        // there, since mimalloc's map does not own it.
        unsafe { heap.dealloc(moved, layout) };
    }

    #[test]
    fn a_block_grows_in_the_allocator_that_made_it_keeping_its_bytes() {
        let heap = Heap::new();
        let (old, old_layout) = block(&heap, 100, 16, 7);
        heap.use_mimalloc();
        let (new, new_layout) = block(&heap, 100, 16, 9);
        for (ptr, layout, byte, mimalloc) in
            [(old, old_layout, 7, false), (new, new_layout, 9, true)]
        {
            // SAFETY: `ptr` is a live block of `layout`; the new size is
            // not zero.
            let grown = unsafe { heap.realloc(ptr, layout, 1 << 16) };
            assert!(!grown.is_null());
            assert_eq!(heap.owned_by_mimalloc(grown), mimalloc);
            // SAFETY: the first 100 bytes were kept from the old block.
            let kept = unsafe { std::slice::from_raw_parts(grown, 100) };
            assert!(kept.iter().all(|&b| b == byte));
            let layout = Layout::from_size_align(1 << 16, 16).unwrap();
            // SAFETY: `grown` is live, of `layout`.
            unsafe { heap.dealloc(grown, layout) };
        }
    }

    #[test]
    fn zeroed_blocks_are_zero_from_either_allocator() {
        let heap = Heap::new();
        for switch in [false, true] {
            if switch {
                heap.use_mimalloc();
            }
            let layout = Layout::from_size_align(3 << 20, 4096).unwrap();
            // SAFETY: the size is not zero.
            let ptr = unsafe { heap.alloc_zeroed(layout) };
            assert!(!ptr.is_null());
            assert_eq!(heap.owned_by_mimalloc(ptr), switch);
            // SAFETY: `ptr` is a live block of `layout.size()` bytes.
            let bytes = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
            assert!(bytes.iter().all(|&b| b == 0));
            // SAFETY: `ptr` is live, of `layout`.
            unsafe { heap.dealloc(ptr, layout) };
        }
    }

    #[test]
    fn the_purge_delay_option_is_the_one_set_at_exit() {
        // Its documented default in version 2 (10 ms), read through the
        // position the module names: a renumbered list of options, or
        // another version, would read another.
        // SAFETY: reads one of mimalloc's options.
        let delay = unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) };
        assert_eq!(
            delay, 10,
            "mimalloc's option {PURGE_DELAY} is not the purge delay"
        );
    }

    #[test]
    fn only_a_large_load_switches() {
        assert!(!is_large(0));
        assert!(!is_large(LARGE_LOAD_BYTES - 1));
        assert!(is_large(LARGE_LOAD_BYTES));
        assert!(is_large(usize::MAX));
    }
}
