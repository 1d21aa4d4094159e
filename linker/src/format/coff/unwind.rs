//! Windows x64 unwind information as DWARF call frame information. The
//! host unwinder (crash backtraces, C++ exceptions) reads `.eh_frame`;
//! COFF code describes its frames in `.pdata` (one entry per function:
//! start, end, unwind info) and `.xdata` (the prologue's unwind codes).
//! Each entry becomes a frame description with the same rules: stack
//! allocations and pushes move the canonical frame address (CFA), a frame
//! register takes it over, saved registers are found relative to it. A
//! function without an entry is a leaf: its return address is at the stack
//! pointer, which is the CIE's rule.
//!
//! Unwind information is only read here, never trusted: an entry whose
//! fields, relocations or codes do not make sense (chained or version 2
//! information, machine frames) gets no description, and unwinding stops
//! at that function as it did before. Nothing here fails a load.

use std::borrow::Cow;

use object::LittleEndian as LE;
use object::pe;
use object::read::coff::{CoffHeader, Symbol as _};
use rustc_hash::FxHashSet as HashSet;

use super::Input;
use crate::arch::machine::coff::UNWIND_PC_BEGIN;
use crate::format::eh_frame::FrameWriter;
use crate::graph::*;

/// A function's frame description, before it is written.
struct Frame {
    /// The symbol the function's start is relative to, and the offset.
    symbol: SymbolId,
    addend: i64,
    length: u64,
    /// Call frame instructions after the CIE's initial ones.
    instructions: Vec<u8>,
}

/// `UNWIND_INFO` flag: the codes continue another function's.
const UNW_FLAG_CHAININFO: u8 = 4;

/// Windows register numbers (RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI,
/// R8-R15) as DWARF's.
const DWARF_REGISTER: [u8; 16] = [0, 2, 1, 3, 7, 6, 4, 5, 8, 9, 10, 11, 12, 13, 14, 15];

/// The frames of the object's functions as an `.eh_frame` section to add
/// to the graph, or `None` when it has no code.
pub(super) fn frames<'a, Coff: CoffHeader>(
    input: &Input<'_, 'a, Coff>,
    symbols: &[Symbol<'a>],
    sections: &[Section<'a>],
) -> Option<Section<'a>> {
    let mut frames = Vec::new();
    let mut described: HashSet<(SectionId, u64)> = HashSet::default();
    for section in input.sections.iter() {
        let Ok(name) = section.name(input.symtab.strings()) else {
            continue;
        };
        if name.split(|&b| b == b'$').next() != Some(b".pdata") {
            continue;
        }
        for frame in pdata_frames(input, section, symbols) {
            if let Some((section, offset)) = symbols[frame.symbol].definition.place() {
                described.insert((section, offset.wrapping_add(frame.addend as u64)));
            }
            frames.push(frame);
        }
    }
    for (id, sym) in symbols.iter().enumerate() {
        if let (SymbolKind::Function, Some((section, offset))) = (sym.kind, sym.definition.place())
            && sections[section].protection == Protection::Code
            && sym.size > 0
            && !described.contains(&(section, offset))
        {
            frames.push(Frame {
                symbol: id,
                addend: 0,
                length: sym.size,
                instructions: Vec::new(),
            });
            described.insert((section, offset));
        }
    }
    if frames.is_empty() {
        return None;
    }
    let (data, edges) = eh_frame(&frames);
    Some(Section {
        name: Cow::Borrowed(".eh_frame (from .pdata)"),
        protection: Protection::ReadOnly,
        role: SectionRole::UnwindFrames,
        align: 8,
        size: data.len() as u64,
        data: Cow::Owned(data),
        edges: Edges::Decoded(edges),
        live: true,
    })
}

/// The frames one `.pdata` section describes.
fn pdata_frames<'a, Coff: CoffHeader>(
    input: &Input<'_, 'a, Coff>,
    pdata: &pe::ImageSectionHeader,
    symbols: &[Symbol<'a>],
) -> Vec<Frame> {
    let (Ok(data), Ok(relocations)) = (
        pdata.coff_data(input.data),
        pdata.coff_relocations(input.data),
    ) else {
        return Vec::new();
    };
    // Each entry's three fields are image-relative addresses: a symbol
    // (by relocation, found by its field's offset) plus the field's
    // contents.
    let mut by_offset: Vec<(usize, usize)> = relocations
        .iter()
        .filter(|r| r.typ.get(LE) == pe::IMAGE_REL_AMD64_ADDR32NB)
        .map(|r| {
            let at = r.virtual_address.get(LE) as usize;
            (at, r.symbol_table_index.get(LE) as usize)
        })
        .collect();
    by_offset.sort_unstable();
    let field = |at: usize| -> Option<(usize, u32)> {
        let found = by_offset
            .binary_search_by_key(&at, |&(offset, _)| offset)
            .ok()?;
        let value = u32::from_le_bytes(data.get(at..at.checked_add(4)?)?.try_into().ok()?);
        Some((by_offset[found].1, value))
    };
    (0..data.len() / 12)
        .filter_map(|entry| {
            let at = entry * 12;
            let (begin, begin_add) = field(at)?;
            let (end, end_add) = field(at + 4)?;
            let (info, info_add) = field(at + 8)?;
            let start = place(symbols, begin, begin_add)?;
            let stop = place(symbols, end, end_add)?;
            if start.0 != stop.0 || stop.1 <= start.1 {
                return None;
            }
            let instructions = unwind_codes(input, info, info_add)?;
            Some(Frame {
                symbol: begin,
                addend: i64::from(begin_add),
                length: stop.1 - start.1,
                instructions,
            })
        })
        .collect()
}

/// Where symbol `id` plus `addend` is: graph section and offset.
fn place(symbols: &[Symbol<'_>], id: usize, addend: u32) -> Option<(SectionId, u64)> {
    let (section, offset) = symbols.get(id)?.definition.place()?;
    Some((section, offset.checked_add(u64::from(addend))?))
}

/// The call frame instructions for the unwind information at symbol
/// `info` plus `addend` (in `.xdata`, which is not loaded: read from the
/// object).
fn unwind_codes<Coff: CoffHeader>(
    input: &Input<'_, '_, Coff>,
    info: usize,
    addend: u32,
) -> Option<Vec<u8>> {
    let (symbol, _) = (*input.raw.get(info)?)?;
    // 1-based, as the section table counts.
    let number = symbol.section_number().index()?;
    let xdata = input
        .sections
        .section(object::SectionIndex(number as usize))
        .ok()?;
    let bytes = xdata.coff_data(input.data).ok()?;
    let at = usize::try_from(symbol.value().checked_add(addend)?).ok()?;
    translate(bytes.get(at..)?)
}

/// One prologue operation of an `UNWIND_INFO`.
enum Operation {
    Push(u8),
    Allocate(u64),
    SetFrame,
    Save(u8, u64),
    /// Saving an XMM register: not needed to find the caller.
    Other,
}

/// Translates an `UNWIND_INFO` (version 1, not chained) to call frame
/// instructions; `None` for anything else.
fn translate(info: &[u8]) -> Option<Vec<u8>> {
    let header = info.get(..4)?;
    let (version, flags) = (header[0] & 7, header[0] >> 3);
    if version != 1 || flags & UNW_FLAG_CHAININFO != 0 {
        return None;
    }
    let count = usize::from(header[2]);
    let frame_register = header[3] & 0xf;
    let frame_offset = u64::from(header[3] >> 4) * 16;
    let slots: Vec<u16> = info
        .get(4..4 + 2 * count)?
        .chunks_exact(2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .collect();
    let operations = operations(&slots)?;
    // The codes are in descending prologue offsets; the instructions go
    // forward through the prologue.
    let mut out = Vec::new();
    let (mut location, mut stack, mut on_frame) = (0u8, 8u64, false);
    for (offset, operation) in operations.into_iter().rev() {
        advance(&mut out, offset.checked_sub(location)?);
        location = offset;
        match operation {
            Operation::Push(register) => {
                stack += 8;
                if !on_frame {
                    def_cfa_offset(&mut out, stack);
                }
                saved_at(&mut out, register, stack)?;
            }
            Operation::Allocate(size) => {
                stack = stack.checked_add(size)?;
                if !on_frame {
                    def_cfa_offset(&mut out, stack);
                }
            }
            Operation::SetFrame => {
                let register = *DWARF_REGISTER.get(usize::from(frame_register))?;
                out.push(0x0c); // DW_CFA_def_cfa
                uleb(&mut out, u64::from(register));
                uleb(&mut out, stack.checked_sub(frame_offset)?);
                on_frame = true;
            }
            Operation::Save(register, at) => saved_at(&mut out, register, stack.checked_sub(at)?)?,
            Operation::Other => {}
        }
    }
    Some(out)
}

/// The unwind codes as (prologue offset, operation), in their order.
fn operations(slots: &[u16]) -> Option<Vec<(u8, Operation)>> {
    let mut operations = Vec::new();
    let mut i = 0;
    while i < slots.len() {
        let code = slots[i];
        let (offset, op, op_info) = ((code & 0xff) as u8, (code >> 8) & 0xf, (code >> 12) as u8);
        let slot = |k: usize| slots.get(i + k).map(|&s| u64::from(s));
        let (operation, used) = match op {
            0 => (Operation::Push(op_info), 1),
            1 if op_info == 0 => (Operation::Allocate(slot(1)? * 8), 2),
            1 => (Operation::Allocate(slot(1)? | (slot(2)? << 16)), 3),
            2 => (Operation::Allocate(u64::from(op_info) * 8 + 8), 1),
            3 => (Operation::SetFrame, 1),
            4 => (Operation::Save(op_info, slot(1)? * 8), 2),
            5 => (Operation::Save(op_info, slot(1)? | (slot(2)? << 16)), 3),
            8 => (Operation::Other, 2),
            9 => (Operation::Other, 3),
            // Machine frames (interrupt handlers) and unknown codes.
            _ => return None,
        };
        operations.push((offset, operation));
        i += used;
    }
    Some(operations)
}

/// `register` (Windows numbering) saved `below` bytes under the CFA.
fn saved_at(out: &mut Vec<u8>, register: u8, below: u64) -> Option<()> {
    let register = *DWARF_REGISTER.get(usize::from(register))?;
    if !below.is_multiple_of(8) || below == 0 {
        return None;
    }
    out.push(0x80 | register); // DW_CFA_offset, data alignment -8
    uleb(out, below / 8);
    Some(())
}

fn def_cfa_offset(out: &mut Vec<u8>, offset: u64) {
    out.push(0x0e); // DW_CFA_def_cfa_offset
    uleb(out, offset);
}

fn advance(out: &mut Vec<u8>, delta: u8) {
    match delta {
        0 => {}
        1..=63 => out.push(0x40 | delta), // DW_CFA_advance_loc
        _ => out.extend([0x02, delta]),   // DW_CFA_advance_loc1
    }
}

fn uleb(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// The section's bytes (one CIE, then an FDE per frame) and the edges
/// to the functions' starts.
fn eh_frame(frames: &[Frame]) -> (Vec<u8>, Vec<Edge>) {
    let mut writer = FrameWriter::new();
    let edges = frames
        .iter()
        .filter_map(|frame| {
            let length = u32::try_from(frame.length).ok()?;
            let field = writer.fde(0, length, &frame.instructions);
            Some(Edge::new(
                field as u64,
                UNWIND_PC_BEGIN,
                frame.symbol,
                frame.addend,
            ))
        })
        .collect();
    (writer.data, edges)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RERUN: &str = "rerun: cargo test -p solder-linker --lib format::coff::unwind";

    /// `sub $40, %rsp` (4 bytes): CFA = RSP + 48 from offset 4.
    #[test]
    fn a_stack_allocation_moves_the_cfa() {
        let info = [0x01, 0x04, 0x01, 0x00, 0x04, 0x42, 0x00, 0x00];
        assert_eq!(translate(&info), Some(vec![0x44, 0x0e, 48]), "{RERUN}");
    }

    /// `push %rbp; push %rbx; sub $32, %rsp; lea 32(%rsp), %rbp`: pushes
    /// save registers below the CFA, the frame register takes it over.
    #[test]
    fn pushes_and_a_frame_register() {
        // Codes in descending offsets: set_fpreg at 10, alloc 32 at 6,
        // push rbx at 2, push rbp at 1; frame register RBP, offset 2*16.
        let info = [
            0x01, 0x0a, 0x04, 0x25, // version 1, prolog 10, 4 codes, RBP + 32
            0x0a, 0x03, // set_fpreg
            0x06, 0x32, // alloc_small (3 + 1) * 8 = 32
            0x02, 0x30, // push_nonvol RBX
            0x01, 0x50, // push_nonvol RBP
        ];
        let expected = vec![
            0x41, 0x0e, 16, 0x86, 2, // at 1: CFA = RSP + 16, RBP at CFA - 16
            0x41, 0x0e, 24, 0x83, 3, // at 2: CFA = RSP + 24, RBX at CFA - 24
            0x44, 0x0e, 56, // at 6: CFA = RSP + 56
            0x44, 0x0c, 6, 24, // at 10: CFA = RBP + 24
        ];
        assert_eq!(translate(&info), Some(expected), "{RERUN}");
    }

    /// Chained and version 2 information, machine frames, codes past the
    /// end: no description, never a panic.
    #[test]
    fn what_cannot_be_described_gives_nothing() {
        let chained = [0x21, 0x04, 0x01, 0x00, 0x04, 0x42, 0, 0];
        let version2 = [0x02, 0x04, 0x01, 0x00, 0x04, 0x42, 0, 0];
        let machine = [0x01, 0x04, 0x01, 0x00, 0x04, 0x0a, 0, 0];
        let truncated = [0x01, 0x04, 0x03, 0x00, 0x04, 0x01];
        let alloc_large_cut = [0x01, 0x04, 0x01, 0x00, 0x04, 0x01];
        for info in [
            &chained[..],
            &version2,
            &machine,
            &truncated,
            &alloc_large_cut,
            &[],
        ] {
            assert_eq!(translate(info), None, "{info:02x?}\n{RERUN}");
        }
        // Every short input is handled.
        let noise: Vec<u8> = (0..512u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
            .collect();
        for start in 0..noise.len() {
            let _ = translate(&noise[start..]);
        }
    }

    /// The writer's records: a CIE, then one FDE per frame, each a multiple
    /// of 4 bytes, with an edge at each `pc_begin`.
    #[test]
    fn frames_become_records_with_edges() {
        let frames = [
            Frame {
                symbol: 3,
                addend: 0x10,
                length: 0x13,
                instructions: vec![0x44, 0x0e, 48],
            },
            Frame {
                symbol: 5,
                addend: 0,
                length: 6,
                instructions: Vec::new(),
            },
        ];
        let (data, edges) = eh_frame(&frames);
        let records: Vec<_> = crate::format::eh_frame::records(&data)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(records.len(), 3, "{RERUN}");
        assert!(
            records[0].cie.is_none() && records[1].cie == Some(0),
            "{RERUN}"
        );
        assert_eq!(edges.len(), 2, "{RERUN}");
        assert_eq!(edges[0].offset as usize, records[1].offset + 8, "{RERUN}");
        assert_eq!((edges[0].target, edges[0].addend), (3, 0x10), "{RERUN}");
        assert_eq!(edges[1].offset as usize, records[2].offset + 8, "{RERUN}");
        let range = |r: usize| u32::from_le_bytes(data[r + 12..r + 16].try_into().unwrap());
        assert_eq!(
            (range(records[1].offset), range(records[2].offset)),
            (0x13, 6),
            "{RERUN}"
        );
        assert_eq!(
            crate::format::eh_frame::FrameWriter::size([3, 0]),
            data.len(),
            "{RERUN}"
        );
    }
}
