//! COFF relocations: each becomes an edge with its implicit addend (the
//! field's contents, less the bias of `REL32_N`), after checks that its
//! type is known, its symbol has an address and its field is inside the
//! section.

use object::LittleEndian as LE;
use object::read::coff::CoffHeader;

use super::{Entry, Input};
use crate::arch::RelocOp;
use crate::arch::machine::coff::{CoffReloc, coff_reloc, implicit_addend};
use crate::error::{LinkError, Site};
use crate::format::ObjectErrors;
use crate::graph::*;

/// Attaches each loaded section's relocations as edges, sorted by offset.
/// `symbols` are the symbol table's (not the directives' stand-ins).
pub(super) fn attach<'a, Coff: CoffHeader>(
    input: &Input<'_, 'a, Coff>,
    placed: &[Option<SectionId>],
    entries: &[Entry],
    symbols: &[Symbol<'a>],
    sections: &mut [Section<'a>],
) -> Result<(), LinkError> {
    for (index, section) in input.sections.iter().enumerate() {
        let Some(id) = placed[index] else {
            continue; // relocations of a section that is not loaded
        };
        let relocs = section
            .coff_relocations(input.data)
            .map_err(|e| input.malformed(format!("relocations of {}: {e}", sections[id].name)))?;
        if !relocs.is_empty() && sections[id].protection == Protection::Zero {
            return Err(input.malformed(format!(
                "section {}: an uninitialized section has relocations",
                sections[id].name
            )));
        }
        let section_size = sections[id].size;
        let mut edges = Vec::with_capacity(relocs.len());
        for reloc in relocs {
            let typ = reloc.typ.get(LE);
            let symbol = reloc.symbol_table_index.get(LE) as usize;
            let offset = u64::from(reloc.virtual_address.get(LE));
            let site = || Site {
                object: input.object.to_string(),
                section: sections[id].name.to_string(),
                offset,
            };
            let symbol_name = || symbols.get(symbol).map_or("?", |s| s.name).to_string();
            let unsupported_relocation = |reloc: String, why: String| {
                LinkError::UnsupportedRelocation(Box::new(crate::error::UnsupportedRelocation {
                    site: site(),
                    reloc,
                    symbol: symbol_name(),
                    why,
                }))
            };
            let (kind, bias) = match coff_reloc(typ) {
                Some(CoffReloc::Kind { kind, bias }) => (kind, bias),
                Some(CoffReloc::Unsupported(name, why)) => {
                    return Err(unsupported_relocation(name.into(), format!(": {why}")));
                }
                None => {
                    return Err(unsupported_relocation(
                        format!("type {}", typ.0),
                        format!(": unknown AMD64 COFF relocation type {}", typ.0),
                    ));
                }
            };
            if kind.op == RelocOp::None {
                continue; // IMAGE_REL_AMD64_ABSOLUTE: nothing to patch, whatever its symbol
            }
            match entries.get(symbol) {
                None => {
                    return Err(input.malformed(format!(
                        "{}: relocation symbol index {symbol} is out of range",
                        site()
                    )));
                }
                Some(Entry::Aux) => {
                    return Err(input.malformed(format!(
                        "{}: {} refers to symbol index {symbol}, an auxiliary record",
                        site(),
                        kind.name
                    )));
                }
                Some(Entry::NoAddress(class)) => {
                    return Err(input.malformed(format!(
                        "{}: {} refers to `{}`, a symbol of storage class {class}, which has no address",
                        site(),
                        kind.name,
                        symbols[symbol].name
                    )));
                }
                Some(Entry::Addressed) => {}
            }
            let field = usize::try_from(offset)
                .ok()
                .and_then(|start| {
                    sections[id]
                        .data
                        .get(start..start.checked_add(kind.encoding.size())?)
                })
                .ok_or_else(|| {
                    input.malformed(format!(
                        "{}: {} does not fit in the section ({section_size:#x} bytes)",
                        site(),
                        kind.name
                    ))
                })?;
            edges.push(Edge::new(
                offset,
                kind,
                symbol,
                implicit_addend(&kind, bias, field),
            ));
        }
        sections[id].edges = Edges::Decoded(edges);
    }

    for section in sections.iter_mut() {
        section.edges.to_decoded().sort_by_key(|e| e.offset);
    }
    Ok(())
}
