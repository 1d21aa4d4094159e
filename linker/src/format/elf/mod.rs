//! The ELF front-end: an x86-64 relocatable object (`ET_REL`) becomes a
//! [`LinkGraph`]. Symbol ids are ELF symbol-table indices, so edges keep the
//! object's own numbering. [`parse`] runs the phases in order, one file
//! each: the header and tables ([`Input::open`]), [`sections`],
//! [`symbols`], [`relocations`], [`comdat`] groups.

mod comdat;
mod relocations;
mod sections;
mod symbols;
#[cfg(test)]
mod tests;

use object::elf;
use object::read::elf::{FileHeader, SectionTable, SymbolTable};
use object::{Endianness, SectionIndex};

use crate::error::LinkError;
use crate::format::ObjectErrors;
use crate::graph::*;

type Header = elf::FileHeader64<Endianness>;

/// Whether `data` starts like an ELF file.
pub fn is_elf(data: &[u8]) -> bool {
    data.starts_with(&elf::ELFMAG)
}

/// Parses an ELF x86-64 relocatable object.
pub fn parse<'a>(object: &str, data: &'a [u8]) -> Result<LinkGraph<'a>, LinkError> {
    let input = Input::open(object, data)?;
    let (mut sections, placed, group_sections) = sections::read(&input)?;
    let symbols = symbols::read(&input, &placed)?;
    relocations::attach(&input, &placed, &symbols, &mut sections)?;
    let groups = comdat::groups(&input, &group_sections, &placed, &symbols)?;
    Ok(LinkGraph {
        object: object.to_string(),
        format: ObjectFormat::Elf,
        sections,
        symbols,
        groups,
        source_sections: placed,
    })
}

/// An object's header checked, and the tables every phase reads.
struct Input<'o, 'a> {
    object: &'o str,
    data: &'a [u8],
    endian: Endianness,
    sections: SectionTable<'a, Header>,
    symtab: SymbolTable<'a, Header>,
    section_names: &'a [u8],
    symbol_names: Strings<'a>,
}

/// A string table, and the same as text when all of it is UTF-8 (as
/// every real object's is): a name is then cut from the text, without
/// checking each name's bytes again (a large load has millions).
struct Strings<'a> {
    bytes: &'a [u8],
    text: Option<&'a str>,
}

impl<'a> Strings<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Strings {
            bytes,
            text: std::str::from_utf8(bytes).ok(),
        }
    }

    /// The NUL-terminated string at `offset`: `None` when the offset is
    /// outside the table or the string has no end; `Some(Err(bytes))` when
    /// it is not UTF-8.
    fn text_at(&self, offset: u32) -> Option<Result<&'a str, &'a [u8]>> {
        // An offset inside a character is not a name's start in text; the
        // bytes then say what it is.
        if let Some(rest) = self.text.and_then(|text| text.get(offset as usize..)) {
            let end = memchr::memchr(0, rest.as_bytes())?;
            // A NUL is a character of its own: the cut is at a boundary.
            return rest.get(..end).map(Ok);
        }
        let bytes = string_at(self.bytes, offset)?;
        Some(std::str::from_utf8(bytes).map_err(|_| bytes))
    }
}

/// ELF section index -> the graph section it became, if it is loaded.
type Placed = Vec<Option<SectionId>>;

impl<'o, 'a> Input<'o, 'a> {
    /// Checks the header (64-bit little-endian x86-64 `ET_REL`) and finds
    /// the section table, the symbol table and both string tables.
    fn open(object: &'o str, data: &'a [u8]) -> Result<Self, LinkError> {
        let malformed = |reason: String| LinkError::Malformed {
            object: object.to_string(),
            reason,
        };
        let header = Header::parse(data).map_err(|e| malformed(e.to_string()))?;
        let endian = header.endian().map_err(|e| malformed(e.to_string()))?;
        check_header(object, header, endian)?;
        let sections = header
            .sections(endian, data)
            .map_err(|e| malformed(format!("section table: {e}")))?;
        let symtab = sections
            .symbols(endian, data, elf::SHT_SYMTAB)
            .map_err(|e| malformed(format!("symbol table: {e}")))?;
        let string_table = |index: usize, what: &str| {
            sections
                .section(SectionIndex(index))
                .and_then(|s| object::read::elf::SectionHeader::data(s, endian, data))
                .map_err(|e| malformed(format!("{what} string table: {e}")))
        };
        let section_names = match header.shstrndx(endian, data) {
            Ok(0) => &[][..],
            Ok(index) => string_table(index as usize, "section name")?,
            Err(e) => return Err(malformed(format!("section name string table: {e}"))),
        };
        let symbol_names = string_table(symtab.string_section().0, "symbol")?;
        Ok(Input {
            object,
            data,
            endian,
            sections,
            symtab,
            section_names,
            symbol_names: Strings::new(symbol_names),
        })
    }
}

/// Only 64-bit little-endian x86-64 relocatable objects are linked.
fn check_header(object: &str, header: &Header, endian: Endianness) -> Result<(), LinkError> {
    let unsupported = |reason: String| LinkError::UnsupportedObject {
        object: object.to_string(),
        reason,
    };
    if !header.is_class_64() || endian != Endianness::Little {
        return Err(unsupported(
            "only 64-bit little-endian ELF is supported".into(),
        ));
    }
    if header.e_type(endian) != elf::ET_REL {
        return Err(unsupported(format!(
            "ELF type {} is not a relocatable object (ET_REL); pass .o files",
            header.e_type(endian)
        )));
    }
    if header.e_machine(endian) != elf::EM_X86_64 {
        return Err(unsupported(format!(
            "machine {} is not x86-64",
            header.e_machine(endian)
        )));
    }
    Ok(())
}

/// The NUL-terminated string at `offset` in a string table section, or
/// `None` when the offset is outside it or the string is unterminated.
///
/// A plain byte search, not the object crate's string table: names are
/// short, and its `memchr` first probes the CPU with `cpuid`, which a
/// virtual machine traps at a few microseconds a probe.
fn string_at(table: &[u8], offset: u32) -> Option<&[u8]> {
    let rest = table.get(offset as usize..)?;
    let end = memchr::memchr(0, rest)?;
    Some(&rest[..end])
}

impl ObjectErrors for Input<'_, '_> {
    fn object(&self) -> &str {
        self.object
    }
}
