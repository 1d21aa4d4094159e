//! The unwinder's ceiling: a slab's hold puts it on the slab's last byte
//! while that is the highest held, the unwinder then finds the ceiling's
//! one-byte description there, every registered function still finds its
//! own, frames of the host still find theirs, and when the highest slab
//! goes the ceiling moves down (or away). Its own process (a test binary
//! of its own): the ceiling is process-wide.

use solder_executor::unwind::{
    RegisteredFrames, SlabCeiling, UnwindError, ceiling, frame_description,
};

/// A CIE as compilers emit it: "zR" with `DW_EH_PE_pcrel | sdata4`
/// addresses, CFA = rsp + 8, return address at CFA - 8.
const CIE: [u8; 24] = [
    20, 0, 0, 0, // length
    0, 0, 0, 0, // CIE id
    1, b'z', b'R', 0, // version, augmentation
    1, 0x78, 16, // code and data alignment, return address column
    1, 0x1b, // augmentation data: FDE encoding
    0x0c, 7, 8, // DW_CFA_def_cfa rsp, 8
    0x90, 1, // DW_CFA_offset rip, CFA - 8
    0, 0, // padding
];
const FDE_SIZE: usize = 20;

/// A fake module in `memory` at `base`: "code" at `base .. base + 0x100`
/// (never run: lookups only read the tables) and an `.eh_frame` at
/// `base + 0x1000` describing `code .. code + 0x40` with `code = base +
/// 0x20`. Returns (code, `.eh_frame` start, the FDE's address).
fn module(memory: &mut [u8], base: usize) -> (u64, u64, u64) {
    let start = memory.as_ptr() as u64;
    let eh = base + 0x1000;
    let code = start + base as u64 + 0x20;
    memory[eh..eh + 24].copy_from_slice(&CIE);
    let fde = eh + 24;
    memory[fde..fde + 4].copy_from_slice(&(FDE_SIZE as u32 - 4).to_le_bytes());
    memory[fde + 4..fde + 8].copy_from_slice(&(24u32 + 4).to_le_bytes());
    let field = start + fde as u64 + 8;
    let relative = i32::try_from(code as i64 - field as i64).expect("within the buffer");
    memory[fde + 8..fde + 12].copy_from_slice(&relative.to_le_bytes());
    memory[fde + 12..fde + 16].copy_from_slice(&0x40u32.to_le_bytes());
    // Augmentation data length 0, padding, then the terminator.
    memory[fde + 16..fde + FDE_SIZE + 4].fill(0);
    (code, start + eh as u64, start + fde as u64)
}

fn host_function() -> u64 {
    host_function as fn() -> u64 as usize as u64
}

#[test]
fn the_ceiling_sits_on_the_highest_held_slab_and_hides_no_description() {
    // Two "slabs" in one buffer, the second above the first whatever the
    // address layout: [0, 0x2000) and [0x2000, 0x4000), a module at the
    // start of each.
    let mut memory = vec![0u8; 0x4000].into_boxed_slice();
    let (low_code, low_eh, low_fde) = module(&mut memory, 0);
    let (high_code, high_eh, high_fde) = module(&mut memory, 0x2000);
    let start = memory.as_ptr() as u64;
    let (low_end, high_end) = (start + 0x1fff, start + 0x3fff);
    let host = [host_function(), libc::getpid as *const () as usize as u64];
    let host_fdes = host.map(frame_description);
    for (pc, fde) in host.iter().zip(host_fdes) {
        assert!(
            fde.is_some(),
            "the host's frame at {pc:#x} has a description"
        );
    }
    assert_eq!(ceiling(), None, "no ceiling before a slab holds it");

    let low_slab = SlabCeiling::hold(start, 0x2000);
    let (at, ceiling_fde) = ceiling().expect("a ceiling while a slab holds it");
    assert_eq!(at, low_end, "the ceiling is on the slab's last byte");
    assert_eq!(frame_description(at), Some(ceiling_fde));
    // SAFETY: `low_eh` is a well-formed, zero-terminated `.eh_frame` in
    // `memory`, which outlives the registration (dropped below first);
    // its code lies below it, in the low slab, whose hold outlives it.
    let low = unsafe { RegisteredFrames::register(low_eh, &low_slab) }.expect("libgcc");
    assert_eq!(frame_description(low_code), Some(low_fde));
    assert_eq!(frame_description(low_code + 0x3f), Some(low_fde));
    assert_eq!(frame_description(low_eh), None, "between code and ceiling");
    assert_eq!(
        host.map(frame_description),
        host_fdes,
        "host frames as before"
    );
    // Frames past the slab the hold is for are refused.
    // SAFETY: refused before anything is registered.
    let outside = unsafe { RegisteredFrames::register(high_eh, &low_slab) };
    assert!(matches!(outside, Err(UnwindError::OutsideSlab { .. })));

    let high_slab = SlabCeiling::hold(start + 0x2000, 0x2000);
    // SAFETY: as above, for `high_eh` in the high slab.
    let high = unsafe { RegisteredFrames::register(high_eh, &high_slab) }.expect("libgcc");
    let (at, ceiling_fde) = ceiling().expect("a ceiling");
    assert_eq!(at, high_end, "the ceiling rises to the higher slab");
    assert_eq!(frame_description(at), Some(ceiling_fde));
    assert_eq!(
        frame_description(low_end),
        None,
        "the lower ceiling is gone from the unwinder"
    );
    assert_eq!(frame_description(low_code + 0x10), Some(low_fde));
    assert_eq!(frame_description(high_code + 0x10), Some(high_fde));
    assert_eq!(
        host.map(frame_description),
        host_fdes,
        "host frames as before"
    );

    // A second hold on the high slab keeps the ceiling there when the
    // first goes.
    let again = SlabCeiling::hold(start + 0x2000, 0x2000);
    drop(high);
    drop(high_slab);
    assert_eq!(ceiling().map(|(at, _)| at), Some(high_end));
    // The last hold on the high slab gone, the ceiling moves down to the
    // low slab's last byte; the low module's frames are still found.
    drop(again);
    let (at, ceiling_fde) = ceiling().expect("the low slab still holds it");
    assert_eq!(
        at, low_end,
        "the ceiling moves down with the high slab gone"
    );
    assert_eq!(frame_description(low_end), Some(ceiling_fde));
    assert_eq!(frame_description(high_end), None, "nothing left up there");
    assert_eq!(frame_description(low_code + 0x10), Some(low_fde));
    drop(low);
    drop(low_slab);
    assert_eq!(ceiling(), None, "no slab holds it any more");
    assert_eq!(frame_description(low_end), None);
    assert_eq!(frame_description(low_code), None);
    assert_eq!(
        host.map(frame_description),
        host_fdes,
        "host frames as before"
    );
    drop(memory);
}
