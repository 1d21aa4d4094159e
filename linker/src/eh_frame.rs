//! `.eh_frame` surgery: when a duplicate COMDAT group is discarded, the FDEs
//! that describe its code must go too (a native linker drops them), or the
//! unwinder would see records pointing at nothing.

use std::borrow::Cow;

use crate::error::LinkError;
use crate::graph::{Edges, Section, SymbolId};

/// Removes the FDEs whose `pc_begin` edge targets a symbol for which
/// `discarded` is true, fixing the CIE pointers of the records kept and
/// moving their edges along.
pub fn prune(
    section: &mut Section<'_>,
    object: &str,
    discarded: impl Fn(SymbolId) -> bool,
) -> Result<(), LinkError> {
    let malformed = |offset: usize, reason: &str| LinkError::Malformed {
        object: object.to_string(),
        reason: format!("{} at offset {offset:#x}: {reason}", section.name),
    };
    let data = &section.data;
    let read_u32 = |at: usize| -> Option<u32> {
        data.get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
    };
    let mut output = Vec::with_capacity(data.len());
    let mut edges = Vec::with_capacity(section.edges.len());
    // Old offset -> new offset of each CIE kept.
    let mut cies: Vec<(usize, usize)> = Vec::new();
    let mut offset = 0usize;
    while offset + 4 <= data.len() {
        let length = read_u32(offset).ok_or_else(|| malformed(offset, "truncated length"))?;
        if length == 0 {
            break; // terminator
        }
        if length == u32::MAX {
            return Err(malformed(offset, "64-bit DWARF records are not supported"));
        }
        let end = offset + 4 + length as usize;
        if end > data.len() {
            return Err(malformed(offset, "record runs past the section"));
        }
        let id = read_u32(offset + 4).ok_or_else(|| malformed(offset, "truncated record"))?;
        let record_edges = section
            .edges
            .iter()
            .filter(|e| (offset as u64..end as u64).contains(&e.offset));
        let new_offset = output.len();
        if id == 0 {
            cies.push((offset, new_offset));
        } else {
            let pc_begin = section.edges.iter().find(|e| e.offset == offset as u64 + 8);
            if pc_begin.is_some_and(|e| discarded(e.target)) {
                offset = end;
                continue;
            }
        }
        output.extend_from_slice(&data[offset..end]);
        if id != 0 {
            let old_cie = (offset + 4)
                .checked_sub(id as usize)
                .ok_or_else(|| malformed(offset, "CIE pointer before the section"))?;
            let &(_, new_cie) = cies
                .iter()
                .find(|&&(old, _)| old == old_cie)
                .ok_or_else(|| malformed(offset, "FDE refers to an unknown CIE"))?;
            let new_id = (new_offset + 4 - new_cie) as u32;
            output[new_offset + 4..new_offset + 8].copy_from_slice(&new_id.to_le_bytes());
        }
        let shift = new_offset as i64 - offset as i64;
        edges.extend(record_edges.map(|e| {
            let mut moved = e;
            moved.offset = (e.offset as i64 + shift) as u64;
            moved
        }));
        offset = end;
    }
    section.size = output.len() as u64;
    section.data = Cow::Owned(output);
    section.edges = Edges::Decoded(edges);
    Ok(())
}
