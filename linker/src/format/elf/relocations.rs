//! ELF relocations: every `Elf64_Rela` record of a loaded section is
//! checked (known type, symbol in range, field inside the section), then the
//! graph keeps the table itself and decodes edges from it on each visit.

use object::Endianness;
use object::elf;
use object::read::elf::{Rela, SectionHeader};

use super::{Input, Placed};
use crate::arch::RelocKind;
use crate::arch::machine::elf::{ElfReloc, elf_reloc};
use crate::error::{LinkError, Site, UnsupportedRelocation};
use crate::format::ObjectErrors;
use crate::graph::*;

/// Attaches each `SHT_RELA` table to the loaded section it patches.
pub(super) fn attach<'a>(
    input: &Input<'_, 'a>,
    placed: &Placed,
    symbols: &[Symbol<'a>],
    sections: &mut [Section<'a>],
) -> Result<(), LinkError> {
    let endian = input.endian;
    for section in input.sections.iter() {
        if section.sh_type(endian) != elf::SHT_RELA {
            continue;
        }
        let target = section.sh_info(endian) as usize;
        let Some(Some(id)) = placed.get(target).copied() else {
            continue; // relocations of a section that is not loaded (debug info)
        };
        let relas = section
            .data_as_array::<elf::Rela64<Endianness>, _>(endian, input.data)
            .map_err(|e| input.malformed(format!("relocations of {}: {e}", sections[id].name)))?;
        let mut absolute32 = false;
        for rela in relas {
            absolute32 |= check(input, &sections[id], symbols, rela)?.is_absolute32();
        }
        // Every record is checked: the graph keeps the table itself and
        // decodes edges from it (`decode_rela`), unless a section has
        // several tables. Edges stay in the object's order, which need not
        // be the offsets' (GNU as writes a few late), as a native linker
        // applies them.
        let records = Edges::Records {
            bytes: object::bytes_of_slice(relas),
            stride: std::mem::size_of::<elf::Rela64<Endianness>>(),
            decode: decode_rela,
            absolute32,
        };
        let placed_edges = &mut sections[id].edges;
        if placed_edges.is_empty() {
            *placed_edges = records;
        } else {
            placed_edges.to_decoded().extend(records.iter());
        }
    }
    Ok(())
}

/// One record: its type must be a kind Solder links, its symbol index in
/// range, and its field inside the section. Gives the record's kind.
fn check(
    input: &Input<'_, '_>,
    section: &Section<'_>,
    symbols: &[Symbol<'_>],
    rela: &elf::Rela64<Endianness>,
) -> Result<RelocKind, LinkError> {
    let endian = input.endian;
    let r_type = rela.r_type(endian, false);
    let symbol = rela.r_sym(endian, false) as usize;
    let offset = rela.r_offset(endian);
    let site = || Site {
        object: input.object.to_string(),
        section: section.name.to_string(),
        offset,
    };
    let symbol_name = || symbols.get(symbol).map_or("?", |s| s.name).to_string();
    let refused = |reloc: String, why: String| {
        LinkError::UnsupportedRelocation(Box::new(UnsupportedRelocation {
            site: site(),
            reloc,
            symbol: symbol_name(),
            why,
        }))
    };
    let kind = match elf_reloc(r_type) {
        Some(ElfReloc::Kind(kind)) => kind,
        Some(ElfReloc::Unsupported(name, why)) => {
            return Err(refused(name.to_string(), format!(": {why}")));
        }
        None => {
            return Err(refused(
                format!("type {}", r_type.0),
                ": unknown x86-64 relocation type".into(),
            ));
        }
    };
    if symbol >= symbols.len() {
        return Err(input.malformed(format!(
            "{}: relocation symbol index {symbol} is out of range",
            site()
        )));
    }
    if offset
        .checked_add(kind.encoding.size() as u64)
        .is_none_or(|end| end > section.size)
    {
        return Err(input.malformed(format!(
            "{}: {} does not fit in the section ({:#x} bytes)",
            site(),
            kind.name,
            section.size
        )));
    }
    Ok(kind)
}

/// The edge of one `Elf64_Rela` record (24 little-endian bytes) that
/// [`attach`] has checked: its type is a known kind, its symbol index is in
/// range and its field fits the section.
pub(super) fn decode_rela(record: &[u8]) -> Edge {
    let word = |at: usize| {
        let bytes: [u8; 8] = record[at..at + 8].try_into().expect("records are 24 bytes");
        u64::from_le_bytes(bytes)
    };
    let (offset, info, addend) = (word(0), word(8), word(16) as i64);
    let Some(ElfReloc::Kind(kind)) = elf_reloc(elf::RelocationType(info as u32)) else {
        unreachable!("attach refused this record's relocation type");
    };
    Edge::new(offset, kind, (info >> 32) as SymbolId, addend)
}
