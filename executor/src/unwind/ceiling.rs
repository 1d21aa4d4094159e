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
//! The ceiling's one description covers a single byte above every
//! registered module's code: the last byte of the reservation (slab) the
//! module lies in, or its `.eh_frame` start if that is higher. Neither is
//! ever code: every allocation in a slab puts its code first and ends
//! with data (a module's read-execute segment, then its read-only and
//! writable ones; a stub chunk's page of stubs, then its page of cells),
//! and a module's `.eh_frame` is in its read-only segment, after its
//! code. The ceiling only ever rises, and it rises before the frames
//! whose code needs it are registered: with one slab it is registered
//! once, with the first module. A module released later leaves it where
//! it was, still above every code byte a registered table describes. Its
//! rule says the return address is undefined, which the unwinder reads as
//! the end of the stack: should a frame ever stop on that byte, it ends
//! the walk exactly as a frame with no description does.

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

static CEILING: Mutex<Option<Ceiling>> = Mutex::new(None);

/// Raises the ceiling to `above` (above the code of frames about to be
/// registered, and not code itself) if it is lower; nothing without an
/// unwinder.
pub(super) fn raise_to(above: u64) {
    let mut ceiling = CEILING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if ceiling.as_ref().is_some_and(|c| c.at >= above) {
        return;
    }
    let table = table(above);
    let begin = table.0.as_ptr() as u64;
    // SAFETY: `table` is a well-formed `.eh_frame` (one CIE, one FDE, the
    // zero terminator) kept alive in `CEILING` until it is deregistered
    // below, when a higher ceiling replaces it; its FDE's range is one
    // byte that is not code (see the module's documentation).
    if unsafe { sys::unwind::register_frames(begin) }.is_err() {
        return;
    }
    if let Some(lower) = ceiling.replace(Ceiling { at: above, table }) {
        // SAFETY: `lower.table` was registered when it became the
        // ceiling and is still alive (dropped only after this).
        unsafe { sys::unwind::deregister_frames(lower.table.0.as_ptr() as u64) };
    }
}

/// Where the ceiling is, and the address of its FDE.
pub(super) fn position() -> Option<(u64, u64)> {
    let ceiling = CEILING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    ceiling
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
