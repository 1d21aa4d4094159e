//! Unwind frames of objects whose `__eh_frame` records are written in ways
//! a front-end must undo before it can walk them: a Mach-O FDE whose CIE
//! pointer is a SUBTRACTOR + UNSIGNED pair (fixture
//! `fixtures/linker/unwind/macho_cie_pointer_subtractor.s`, assembled by
//! clang for `x86_64-apple-macos`).
//!
//! The test first proves, with the `object` crate (independently of
//! Solder's front-end), that the object holds the pair at the FDE's CIE
//! pointer; then links it into an in-process session and unwinds through
//! the JIT'd frame with the process's own unwinder: the FDE registered,
//! found for the function, pointing at its CIE, and its rules taking the
//! unwinder on to the caller.

mod support;

use std::ffi::{c_int, c_void};
use std::path::Path;
use std::sync::Mutex;

use object::macho;
use object::read::macho::{MachHeader, Section as _, Segment as _};
use solder_linker::LinkError;
use support::{compile_with, object, session};

/// The command that reruns one test of this file.
fn rerun(test: &str) -> String {
    format!("rerun: cargo test -p solder-linker --test unwind_frames -- {test} --exact")
}

const FIXTURE: &str = "linker/unwind/macho_cie_pointer_subtractor.s";

/// A relocation as (r_address, r_type, r_length, r_extern).
type Relocation = (u32, macho::RelocationType, u8, bool);

/// The relocations of section `__TEXT,__eh_frame` of the Mach-O object at
/// `path`, in file order, and the section's bytes.
fn eh_frame_relocations(path: &Path) -> (Vec<Relocation>, Vec<u8>) {
    let data = std::fs::read(path).unwrap();
    let header = macho::MachHeader64::<object::LittleEndian>::parse(&*data, 0).unwrap();
    let endian = header.endian().unwrap();
    let mut commands = header.load_commands(endian, &*data, 0).unwrap();
    while let Some(command) = commands.next().unwrap() {
        let Some((segment, section_data)) = command.segment_64().unwrap() else {
            continue;
        };
        for section in segment.sections(endian, section_data).unwrap() {
            if section.segment_name() != b"__TEXT" || section.name() != b"__eh_frame" {
                continue;
            }
            let relocations = section
                .relocations(endian, &*data)
                .unwrap()
                .iter()
                .map(|r| {
                    let info = r.info(endian);
                    (info.r_address, info.r_type, info.r_length, info.r_extern)
                })
                .collect();
            let bytes = section
                .data(endian, &*data, u64::from(section.offset(endian)))
                .unwrap()
                .to_vec();
            return (relocations, bytes);
        }
    }
    panic!("{}: no __TEXT,__eh_frame section", path.display());
}

/// libgcc's `struct dwarf_eh_bases`, filled by `_Unwind_Find_FDE`.
#[repr(C)]
struct DwarfEhBases {
    tbase: *mut c_void,
    dbase: *mut c_void,
    func: *mut c_void,
}

unsafe extern "C" {
    fn _Unwind_Find_FDE(pc: *mut c_void, bases: *mut DwarfEhBases) -> *const u8;
    fn _Unwind_Backtrace(
        trace: extern "C" fn(*mut c_void, *mut c_void) -> c_int,
        argument: *mut c_void,
    ) -> c_int;
    fn _Unwind_GetIP(context: *mut c_void) -> usize;
    fn _Unwind_GetRegionStart(context: *mut c_void) -> usize;
}

/// The frames of a backtrace, as (ip, start of the function its FDE
/// covers; 0 without one).
type Frames = Vec<(usize, usize)>;

/// What the callback saw: `framed`'s start (its argument) and the frames
/// of the backtrace it took.
static SEEN: Mutex<Option<(u64, Frames)>> = Mutex::new(None);

extern "C" fn record_frame(context: *mut c_void, frames: *mut c_void) -> c_int {
    // SAFETY: `frames` is the `Vec` `backtrace_from_jit_code` passes to
    // `_Unwind_Backtrace`, alive for the whole walk; `context` is the
    // unwinder's context for this frame.
    unsafe {
        let frames = &mut *(frames as *mut Frames);
        frames.push((_Unwind_GetIP(context), _Unwind_GetRegionStart(context)));
    }
    0 // _URC_NO_REASON: go on
}

/// Called by the JIT'd `framed` with its own start address: records the
/// backtrace from here, through `framed`'s frame.
extern "C" fn backtrace_from_jit_code(start: u64) -> u64 {
    let mut frames: Frames = Vec::new();
    // SAFETY: `record_frame` only pushes onto `frames`, which outlives the
    // call.
    unsafe { _Unwind_Backtrace(record_frame, &mut frames as *mut _ as *mut c_void) };
    *SEEN.lock().unwrap_or_else(|p| p.into_inner()) = Some((start, frames));
    42
}

/// An FDE whose CIE pointer is `Lfde - EH_frame0` across atoms (a
/// SUBTRACTOR + UNSIGNED pair) links, and its unwind information is
/// registered and right: the unwinder finds the FDE for the function,
/// its CIE pointer leads to the CIE, and a backtrace from code `framed`
/// calls goes through `framed`'s frame to its caller.
#[test]
fn a_cie_pointer_written_as_a_subtractor_pair_is_applied() {
    let test = "a_cie_pointer_written_as_a_subtractor_pair_is_applied";
    let path = compile_with("clang", FIXTURE, &["--target=x86_64-apple-macos"]);

    // The object holds the pair at the FDE's CIE pointer: the FDE follows
    // the CIE, whose length says where it ends.
    let (relocations, bytes) = eh_frame_relocations(&path);
    let cie_length = u32::from_le_bytes(bytes[..4].try_into().unwrap());
    let fde = 4 + cie_length;
    let cie_pointer = fde + 4;
    let at_cie_pointer: Vec<(macho::RelocationType, u8, bool)> = relocations
        .iter()
        .filter(|r| r.0 == cie_pointer)
        .map(|r| (r.1, r.2, r.3))
        .collect();
    assert_eq!(
        at_cie_pointer,
        [
            (macho::X86_64_RELOC_SUBTRACTOR, 2, true),
            (macho::X86_64_RELOC_UNSIGNED, 2, true)
        ],
        "{}: the FDE's CIE pointer (offset {cie_pointer:#x}) should be a 4-byte SUBTRACTOR + \
         UNSIGNED pair; the section's relocations are {relocations:?}\n{}",
        path.display(),
        rerun(test)
    );
    // ... whose field does not hold the pointer: read as it is, it would
    // not lead back to the CIE at offset 0.
    let raw = u32::from_le_bytes(bytes[cie_pointer as usize..][..4].try_into().unwrap());
    assert_ne!(
        raw,
        cie_pointer,
        "the assembler folded the pointer\n{}",
        rerun(test)
    );

    let mut s = session();
    let loaded = s.load(&[object(&path)]);
    if let Err(e) = &loaded {
        let malformed = matches!(e, LinkError::Malformed { .. });
        panic!(
            "the object does not link (malformed: {malformed}): {e}\n{}",
            rerun(test)
        );
    }
    let framed = s
        .lookup("_framed")
        .unwrap()
        .unwrap_or_else(|| panic!("`_framed` is not exported\n{}", rerun(test)));
    let callback: extern "C" fn(u64) -> u64 = backtrace_from_jit_code;
    // SAFETY: `long framed(long (*)(long))`, System V, as the fixture says.
    let result = unsafe { s.call(framed, &[callback as usize as u64]) }
        .unwrap_or_else(|e| panic!("call to framed: {e}\n{}", rerun(test)));
    assert_eq!(
        result,
        42,
        "framed returns the callback's value\n{}",
        rerun(test)
    );
    let (start, frames) = SEEN
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
        .expect("the callback ran");
    let start = start as usize;

    // The FDE is registered, covers the function, and its CIE pointer
    // leads to a CIE (an id of 0).
    let mut bases = DwarfEhBases {
        tbase: std::ptr::null_mut(),
        dbase: std::ptr::null_mut(),
        func: std::ptr::null_mut(),
    };
    // SAFETY: `_Unwind_Find_FDE` only reads the registered frames and
    // fills `bases`.
    let found = unsafe { _Unwind_Find_FDE((start + 1) as *mut c_void, &mut bases) };
    assert!(
        !found.is_null(),
        "no FDE is registered for framed at {start:#x}\n{}",
        rerun(test)
    );
    assert_eq!(
        bases.func as usize,
        start,
        "the FDE found covers another function\n{}",
        rerun(test)
    );
    // SAFETY: `found` is a registered FDE in the module's read-only
    // segment, which stays mapped while the session holds the module: its
    // length and CIE pointer words, and the CIE's id word it points at.
    let cie_id = unsafe {
        let pointer = (found.add(4) as *const u32).read_unaligned() as usize;
        let cie = found.add(4).sub(pointer);
        (cie.add(4) as *const u32).read_unaligned()
    };
    assert_eq!(
        cie_id,
        0,
        "the FDE's CIE pointer does not lead to a CIE\n{}",
        rerun(test)
    );

    // The backtrace went through framed's frame to its caller.
    let end = start + 0x12; // framed's 18 bytes
    let jit = frames
        .iter()
        .position(|&(ip, region)| region == start && (start..=end).contains(&ip))
        .unwrap_or_else(|| {
            panic!(
                "no frame of framed ({start:#x}..{end:#x}) in the backtrace: {frames:x?}\n{}",
                rerun(test)
            )
        });
    let caller = frames.get(jit + 1).map(|&(ip, _)| ip);
    assert!(
        caller.is_some_and(|ip| !(start..=end).contains(&ip)),
        "the unwinder did not get past framed's frame: {frames:x?}\n{}",
        rerun(test)
    );
}
