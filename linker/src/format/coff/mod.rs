//! The COFF front-end: an x86-64 object (`IMAGE_FILE_MACHINE_AMD64`, plain
//! or `/bigobj`) becomes a [`LinkGraph`]. Symbol ids are COFF symbol-table
//! indices, auxiliary records included (each gets a placeholder symbol), so
//! edges keep the object's own numbering; symbols that `/alternatename:`
//! directives introduce come after them.
//!
//! Windows unwind tables (`.pdata`, `.xdata`) are not loaded but become
//! an `.eh_frame` section for the host unwinder ([`unwind`]); debug info
//! and linker directives are not loaded; `.CRT$X?*` arrays become initializer and
//! finalizer sections; weak externals and `/alternatename:` become
//! [`Symbol::fallback`]s; COMDAT sections become [`Group`]s.
//!
//! [`parse`] runs the phases in order, one file each: the header and
//! tables ([`Input::open`]), [`sections`], [`symbols`] (weak externals and
//! sizes included), [`directives`] (`/alternatename:`), [`relocations`],
//! [`comdat`] groups.

mod comdat;
mod directives;
mod relocations;
mod sections;
mod symbols;
#[cfg(test)]
mod tests;
mod unwind;

use object::pe;
use object::read::SymbolIndex;
use object::read::coff::{CoffHeader, SectionTable, Symbol as _, SymbolTable};

use crate::error::LinkError;
use crate::format::ObjectErrors;
use crate::graph::*;

/// Whether `data` starts like an x86-64 COFF object (plain or bigobj).
pub fn is_coff(data: &[u8]) -> bool {
    let amd64 = pe::IMAGE_FILE_MACHINE_AMD64.0.to_le_bytes();
    data.starts_with(&amd64) || (is_bigobj(data) && data.get(6..8) == Some(&amd64[..]))
}

/// Whether `data` starts with an `ANON_OBJECT_HEADER_BIGOBJ` (`/bigobj`:
/// 32-bit section numbers).
fn is_bigobj(data: &[u8]) -> bool {
    data.starts_with(&[0, 0, 0xff, 0xff])
        && data.get(12..28) == Some(&pe::ANON_OBJECT_HEADER_BIGOBJ_CLASS_ID.0[..])
}

/// Parses a COFF x86-64 relocatable object.
pub fn parse<'a>(object: &str, data: &'a [u8]) -> Result<LinkGraph<'a>, LinkError> {
    if is_bigobj(data) {
        parse_as::<pe::AnonObjectHeaderBigobj>(object, data)
    } else {
        parse_as::<pe::ImageFileHeader>(object, data)
    }
}

fn parse_as<'a, Coff: CoffHeader>(
    object: &str,
    data: &'a [u8],
) -> Result<LinkGraph<'a>, LinkError> {
    let input = Input::<Coff>::open(object, data)?;
    let loaded = sections::read(&input)?;
    let (mut symbols, entries) = symbols::read(&input, &loaded)?;
    let real_symbols = symbols.len();
    directives::apply(&input, &loaded.directives, &mut symbols)?;
    let mut sections = loaded.sections;
    relocations::attach(
        &input,
        &loaded.placed,
        &entries,
        &symbols[..real_symbols],
        &mut sections,
    )?;
    let groups = comdat::groups(&input, &loaded.placed, &sections)?;
    // After the groups: the frames' section belongs to none (its
    // descriptions of discarded code are pruned with that code).
    if let Some(frames) = unwind::frames(&input, &symbols, &sections) {
        sections.push(frames);
    }
    Ok(LinkGraph {
        object: object.to_string(),
        format: ObjectFormat::Coff,
        sections,
        symbols,
        groups,
        source_sections: Vec::new(),
    })
}

/// A symbol-table entry with its name; `None` for an auxiliary record.
type RawEntry<'a, Coff> = Option<(&'a <Coff as CoffHeader>::Symbol, &'a str)>;

/// An object's header checked, and the tables every phase reads.
struct Input<'o, 'a, Coff: CoffHeader> {
    object: &'o str,
    data: &'a [u8],
    sections: SectionTable<'a>,
    symtab: SymbolTable<'a, &'a [u8], Coff>,
    /// The symbol table's entries with their names; `None` for auxiliary
    /// records.
    raw: Vec<RawEntry<'a, Coff>>,
    /// The section symbol (static, value 0, with a section-definition
    /// record) of each section, by 0-based section index.
    section_symbols: Vec<Option<usize>>,
}

impl<'o, 'a, Coff: CoffHeader> Input<'o, 'a, Coff> {
    /// Checks the header (AMD64, no optional header) and reads the section
    /// and symbol tables.
    fn open(object: &'o str, data: &'a [u8]) -> Result<Self, LinkError> {
        let mut input = Input {
            object,
            data,
            sections: SectionTable::default(),
            symtab: SymbolTable::default(),
            raw: Vec::new(),
            section_symbols: Vec::new(),
        };
        let mut offset = 0;
        let header = Coff::parse(data, &mut offset).map_err(|e| input.malformed(e.to_string()))?;
        if header.machine() != pe::IMAGE_FILE_MACHINE_AMD64 {
            return Err(input.unsupported(format!(
                "machine {:#x} is not x86-64 (AMD64)",
                header.machine().0
            )));
        }
        // Objects have no optional header: the section table follows the file
        // header directly.
        if offset != std::mem::size_of::<Coff>() as u64 {
            return Err(input.unsupported(
                "it has an optional header, so it is a PE image, not a relocatable object; pass .obj files"
                    .into(),
            ));
        }
        input.sections = header
            .sections(data, offset)
            .map_err(|e| input.malformed(format!("section table: {e}")))?;
        input.symtab = header
            .symbols(data)
            .map_err(|e| input.malformed(format!("symbol table: {e}")))?;
        input.raw = input.entries()?;
        input.section_symbols = input.section_symbols();
        Ok(input)
    }

    /// The symbol table's entries with their names; `None` for auxiliary
    /// records.
    fn entries(&self) -> Result<Vec<RawEntry<'a, Coff>>, LinkError> {
        let symtab = &self.symtab;
        let strings = symtab.strings();
        let mut raw: Vec<RawEntry<'a, Coff>> = Vec::with_capacity(symtab.len());
        while raw.len() < symtab.len() {
            let index = raw.len();
            let sym = symtab
                .symbol(SymbolIndex(index))
                .map_err(|e| self.malformed(format!("symbol {index}: {e}")))?;
            let aux = usize::from(sym.number_of_aux_symbols());
            if index + aux >= symtab.len() {
                return Err(self.malformed(format!(
                    "symbol {index}: its {aux} auxiliary records run past the end of the symbol table"
                )));
            }
            let name_bytes = sym
                .name(strings)
                .map_err(|e| self.malformed(format!("symbol {index}: name: {e}")))?;
            let name = std::str::from_utf8(name_bytes)
                .map_err(|_| self.malformed(format!("symbol {index}: name is not UTF-8")))?;
            raw.push(Some((sym, name)));
            raw.extend(std::iter::repeat_n(None, aux));
        }
        Ok(raw)
    }

    /// The section symbol of each section, by 0-based section index.
    fn section_symbols(&self) -> Vec<Option<usize>> {
        let mut section_symbols: Vec<Option<usize>> = vec![None; self.sections.len()];
        for (index, entry) in self.raw.iter().enumerate() {
            if let Some((sym, _)) = entry
                && sym.has_aux_section()
                && sym.value() == 0
                && let Some(number) = sym.section_number().index()
                && let Some(slot) = section_symbols.get_mut(number as usize - 1)
                && slot.is_none()
            {
                *slot = Some(index);
            }
        }
        section_symbols
    }
}

/// What a symbol-table entry may be used for, beyond its graph symbol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Entry {
    /// A symbol with an address (or an undefined one).
    Addressed,
    /// An auxiliary record: the placeholder of an index, never a target.
    Aux,
    /// A symbol with no address (file names, `.bf`/`.ef`, debug items,
    /// storage classes Solder does not know): fine until a relocation uses
    /// it. Carries the storage class.
    NoAddress(u8),
}

impl<Coff: CoffHeader> ObjectErrors for Input<'_, '_, Coff> {
    fn object(&self) -> &str {
        self.object
    }
}
