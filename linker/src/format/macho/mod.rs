//! The Mach-O front-end: an x86-64 relocatable object (`MH_OBJECT`) becomes
//! a [`LinkGraph`].
//!
//! Symbol ids are Mach-O symbol-table (nlist) indices, so extern relocations
//! keep the object's own numbering. After them comes one synthetic symbol
//! per loaded section: non-extern relocations name a section (by its 1-based
//! ordinal) rather than a symbol, and target those.
//!
//! Mach-O relocations are REL: the addend is in the relocated field, and a
//! non-extern one holds the target's full address in the object's original
//! layout (sections keep the addresses the assembler gave them, `addr`).
//! The addends here are rebased onto the section symbols so that the graph
//! never needs the original layout again.
//!
//! [`parse`] runs the phases in order, one file each: [`header`] (magic,
//! file type, CPU, load commands), [`sections`], [`symbols`],
//! [`relocations`] (with [`unwind`]: the `__eh_frame` pointers the
//! assembler resolved itself).

mod header;
mod relocations;
mod sections;
mod symbols;
#[cfg(test)]
mod tests;
mod unwind;

use object::LittleEndian;
use object::macho;

use crate::error::LinkError;
use crate::format::ObjectErrors;
use crate::graph::*;

type Header = macho::MachHeader64<LittleEndian>;
type SectionHeader = macho::Section64<LittleEndian>;

/// The only byte order accepted.
const LE: LittleEndian = LittleEndian;

/// Whether `data` starts like a 64-bit little-endian Mach-O file.
pub fn is_macho(data: &[u8]) -> bool {
    data.starts_with(&object::macho::MH_CIGAM_64.to_be_bytes())
}

/// Parses a Mach-O x86-64 relocatable object.
pub fn parse<'a>(object: &str, data: &'a [u8]) -> Result<LinkGraph<'a>, LinkError> {
    let input = Input { object, data };
    let header = header::check(&input)?;
    let (headers, symtab) = header::load_commands(&input, header)?;
    let (raws, mut sections) = sections::read(&input, headers)?;
    let (symbols, nsyms) = symbols::read(&input, symtab, &raws, &sections)?;
    relocations::attach(&input, &raws, &symbols, nsyms, &mut sections)?;
    let source_sections = raws.iter().map(|raw| raw.placed).collect();
    Ok(LinkGraph {
        object: object.to_string(),
        format: ObjectFormat::MachO,
        sections,
        symbols,
        groups: Vec::new(),
        source_sections,
    })
}

/// The object being parsed.
struct Input<'o, 'a> {
    object: &'o str,
    data: &'a [u8],
}

impl Input<'_, '_> {}

/// A section header with what symbols and relocations need of it.
struct Raw<'a> {
    header: &'a SectionHeader,
    /// `segname,sectname`.
    name: String,
    /// The original address: symbol values and non-extern relocations are
    /// expressed in these.
    addr: u64,
    size: u64,
    /// The graph section, when the section is loaded.
    placed: Option<SectionId>,
}

impl Raw<'_> {
    fn end(&self) -> u64 {
        // Checked not to overflow when the table was built.
        self.addr + self.size
    }
}

impl ObjectErrors for Input<'_, '_> {
    fn object(&self) -> &str {
        self.object
    }
}
