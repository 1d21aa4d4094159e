//! The unwinder's ceiling: registering a module's `.eh_frame` puts the
//! ceiling at its start when that is the highest registered, the
//! unwinder then finds the ceiling's one-byte description there, every
//! registered function still finds its own, and frames of the host still
//! find theirs. Its own process (a test binary of its own): the ceiling is
//! process-wide.

use solder_executor::unwind::{RegisteredFrames, ceiling, frame_description};

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
fn the_ceiling_sits_above_every_registered_module_and_hides_no_description() {
    // Two "reservations" in one buffer, the second above the first
    // whatever the address layout: [0, 0x2000) and [0x2000, 0x4000), a
    // module at the start of each.
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

    // SAFETY: `low_eh` is a well-formed, zero-terminated `.eh_frame` in
    // `memory`, which outlives the registration (dropped below first);
    // its code lies below it, in the first reservation.
    let low = unsafe { RegisteredFrames::register(low_eh, low_end) }.expect("libgcc's unwinder");
    let (at, ceiling_fde) = ceiling().expect("a ceiling once frames are registered");
    assert_eq!(
        at, low_end,
        "the ceiling rises to the reservation's last byte"
    );
    assert_eq!(frame_description(at), Some(ceiling_fde));
    assert_eq!(frame_description(low_code), Some(low_fde));
    assert_eq!(frame_description(low_code + 0x3f), Some(low_fde));
    assert_eq!(frame_description(low_eh), None, "between code and ceiling");
    assert_eq!(
        host.map(frame_description),
        host_fdes,
        "host frames as before"
    );

    // A second module of the same reservation leaves the ceiling alone; a
    // reservation's end below its `.eh_frame` (a caller's mistake) still
    // puts the ceiling above the module's code.
    // SAFETY: as above, for `low_eh` registered twice (libgcc keeps both).
    let again = unsafe { RegisteredFrames::register(low_eh, low_code) }.expect("unwinder");
    assert_eq!(ceiling(), Some((at, ceiling_fde)));
    drop(again);

    // SAFETY: as above, for `high_eh` in the second reservation.
    let high = unsafe { RegisteredFrames::register(high_eh, high_end) }.expect("unwinder");
    let (at, ceiling_fde) = ceiling().expect("a ceiling");
    assert_eq!(at, high_end, "the ceiling rises to the higher reservation");
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

    // Releasing the higher module leaves the ceiling where it is; the
    // lower module's frames are still found below it.
    drop(high);
    assert_eq!(ceiling().map(|(at, _)| at), Some(high_end));
    assert_eq!(frame_description(high_code + 0x10), None);
    assert_eq!(frame_description(low_code + 0x10), Some(low_fde));
    drop(low);
    assert_eq!(frame_description(low_code), None);
    assert_eq!(
        host.map(frame_description),
        host_fdes,
        "host frames as before"
    );
    drop(memory);
}
