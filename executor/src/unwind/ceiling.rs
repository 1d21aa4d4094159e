//! The ceiling: a one-entry frame table registered just above the JIT'd
//! code, so the unwinder's search of registered tables ends at once for
//! every frame outside them.
//!
//! libgcc before 13 keeps registered tables in a list sorted by their
//! lowest PC, highest first, and looks a PC up in the first table whose
//! lowest PC is at or below it, under a global lock, before it asks the
//! dynamic loader. JIT'd code sits just below the host's libraries, so
//! every frame in a library (`__cxa_throw`, `_Unwind_RaiseException`, the
//! C library) lands on the highest module's table: a binary search over
//! all its descriptions, decoding each one it visits, that cannot succeed.
//! An exception thrown through JIT'd code pays that for each such frame in
//! both of its phases. With the ceiling registered above every module,
//! those frames land on the ceiling instead: one entry, no match, done.
//!
//! The ceiling's one description covers a single byte: the last byte of
//! the highest reservation (slab) that holds it ([`SlabCeiling`]; an
//! executor takes a hold for a slab before it registers the slab's first
//! frames, and drops it after their deregistration, before the slab is
//! unmapped). That byte is never code: every allocation in a slab puts
//! its code first and ends with data (a module's read-execute segment,
//! then its read-only and writable ones; a stub chunk's page of stubs,
//! then its page of cells). It is above every registered module's code,
//! since each module lies in a held slab. When the highest slab goes the
//! ceiling moves down to the next one's last byte (or away, with the
//! last), so it never stays on memory that is no longer a slab, where a
//! library might later be mapped. Its rule says the return address is
//! undefined, which the unwinder reads as the end of the stack: should a
//! frame ever stop on that byte, it ends the walk exactly as a frame
//! with no description does.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::sys;

/// The registered ceiling: where it is and the table the unwinder holds
/// a pointer to (alive until deregistered).
struct Ceiling {
    at: u64,
    table: Box<Table>,
}

/// One CIE, one FDE and the terminator, 8-aligned.
#[repr(C, align(8))]
struct Table([u8; TABLE_SIZE]);

const CIE_SIZE: usize = 24;
const FDE_SIZE: usize = 32;
const TABLE_SIZE: usize = CIE_SIZE + FDE_SIZE + 4;

/// The CIE: version 1, augmentation "zR" with absolute 8-byte addresses
/// (`DW_EH_PE_absptr`), code alignment 1, data alignment -8, return
/// address in column 16; its rule: CFA = rsp + 8 and the return address
/// undefined (the end of the stack).
const CIE: [u8; CIE_SIZE] = [
    20, 0, 0, 0, // length of what follows
    0, 0, 0, 0, // CIE id
    1, // version
    b'z', b'R', 0,    // augmentation
    1,    // code alignment factor (ULEB128)
    0x78, // data alignment factor -8 (SLEB128)
    16,   // return address column
    1,    // augmentation data length
    0,    // FDE addresses: DW_EH_PE_absptr
    0x0c, 7, 8, // DW_CFA_def_cfa rsp, 8
    0x07, 16, // DW_CFA_undefined return address
    0, 0, // DW_CFA_nop padding
];

/// The table whose one FDE covers `[at, at + 1)`.
fn table(at: u64) -> Box<Table> {
    let mut bytes = [0u8; TABLE_SIZE];
    bytes[..CIE_SIZE].copy_from_slice(&CIE);
    let fde = &mut bytes[CIE_SIZE..CIE_SIZE + FDE_SIZE];
    fde[0..4].copy_from_slice(&(FDE_SIZE as u32 - 4).to_le_bytes());
    // The CIE pointer: from this field back to the CIE.
    fde[4..8].copy_from_slice(&(CIE_SIZE as u32 + 4).to_le_bytes());
    fde[8..16].copy_from_slice(&at.to_le_bytes());
    fde[16..24].copy_from_slice(&1u64.to_le_bytes());
    // fde[24]: augmentation data length 0; the rest DW_CFA_nop; then the
    // zero terminator.
    Box::new(Table(bytes))
}

/// The held slabs' last bytes, each with its number of holds, and the
/// table registered at the highest of them.
struct State {
    holds: BTreeMap<u64, usize>,
    registered: Option<Ceiling>,
}

static STATE: Mutex<State> = Mutex::new(State {
    holds: BTreeMap::new(),
    registered: None,
});

fn state() -> std::sync::MutexGuard<'static, State> {
    STATE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl State {
    /// Registers the table at the highest held byte (if it is not there
    /// already), then deregisters the one it replaces; with no hold left,
    /// only the latter.
    fn settle(&mut self) {
        let wanted = self.holds.last_key_value().map(|(&at, _)| at);
        if wanted == self.registered.as_ref().map(|c| c.at) {
            return;
        }
        let replacement = wanted.and_then(|at| {
            let table = table(at);
            // SAFETY: `table` is a well-formed `.eh_frame` (one CIE, one
            // FDE, the zero terminator) kept alive in `STATE` until it is
            // deregistered below, when it is replaced; its FDE's range is
            // one byte that is not code (see the module's documentation).
            unsafe { sys::unwind::register_frames(table.0.as_ptr() as u64) }
                .ok()
                .map(|()| Ceiling { at, table })
        });
        if let Some(old) = std::mem::replace(&mut self.registered, replacement) {
            // SAFETY: `old.table` was registered when it became the
            // ceiling and is still alive (dropped only after this).
            unsafe { sys::unwind::deregister_frames(old.table.0.as_ptr() as u64) };
        }
    }
}

/// A slab's hold on the ceiling: while it lives, the ceiling is at the
/// slab's last byte or higher. Take it before the slab's first frames are
/// registered; drop it after the last are deregistered, before the slab
/// is unmapped.
#[derive(Debug)]
pub struct SlabCeiling {
    at: u64,
}

impl SlabCeiling {
    /// Holds the ceiling at or above the last byte of the slab `[base,
    /// base + size)`.
    pub fn hold(base: u64, size: u64) -> SlabCeiling {
        let at = base.saturating_add(size.max(1) - 1);
        let mut state = state();
        *state.holds.entry(at).or_default() += 1;
        state.settle();
        SlabCeiling { at }
    }

    /// The slab's last byte.
    pub fn at(&self) -> u64 {
        self.at
    }
}

impl Drop for SlabCeiling {
    fn drop(&mut self) {
        let mut state = state();
        if let Some(count) = state.holds.get_mut(&self.at) {
            *count -= 1;
            if *count == 0 {
                state.holds.remove(&self.at);
            }
        }
        state.settle();
    }
}

/// Where the ceiling is, and the address of its FDE.
pub(super) fn position() -> Option<(u64, u64)> {
    state()
        .registered
        .as_ref()
        .map(|c| (c.at, c.table.0.as_ptr() as u64 + CIE_SIZE as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_one_cie_and_one_fde_covering_one_byte() {
        let table = table(0x1234_5678_9abc);
        let bytes = &table.0;
        let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        // Each record's length covers the rest of the record.
        assert_eq!(word(0) as usize + 4, CIE_SIZE);
        assert_eq!(word(CIE_SIZE) as usize + 4, FDE_SIZE);
        // The FDE points back at the CIE.
        assert_eq!(CIE_SIZE + 4 - word(CIE_SIZE + 4) as usize, 0);
        let address = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
        assert_eq!(address(CIE_SIZE + 8), 0x1234_5678_9abc);
        assert_eq!(address(CIE_SIZE + 16), 1);
        assert_eq!(word(CIE_SIZE + FDE_SIZE), 0, "terminator");
        assert_eq!(std::mem::align_of::<Table>(), 8);
    }
}
