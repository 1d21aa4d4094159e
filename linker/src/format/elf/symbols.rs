//! ELF symbols, numbered as in the symbol table: names, bindings,
//! visibilities, kinds, and where each is defined.

use object::elf;
use object::read::elf::{SectionHeader, Sym};

use super::{Input, Placed, string_at};
use crate::error::LinkError;
use crate::format::ObjectErrors;
use crate::graph::*;

/// Every symbol of the table, index for index.
pub(super) fn read<'a>(
    input: &Input<'_, 'a>,
    placed: &Placed,
) -> Result<Vec<Symbol<'a>>, LinkError> {
    let mut symbols = Vec::with_capacity(input.symtab.len());
    for (index, sym) in input.symtab.enumerate() {
        symbols.push(symbol(input, placed, index, sym)?);
    }
    Ok(symbols)
}

fn symbol<'a>(
    input: &Input<'_, 'a>,
    placed: &Placed,
    index: object::SymbolIndex,
    sym: &'a object::elf::Sym64<object::Endianness>,
) -> Result<Symbol<'a>, LinkError> {
    let endian = input.endian;
    let name = input
        .symbol_names
        .text_at(sym.st_name(endian))
        .ok_or_else(|| {
            input.malformed(format!(
                "symbol {}: name offset {:#x} is not in the string table",
                index.0,
                sym.st_name(endian)
            ))
        })?;
    let mut name =
        name.map_err(|_| input.malformed(format!("symbol {}: name is not UTF-8", index.0)))?;
    if index.0 == 0 {
        name = "*ABS*"; // as binutils shows relocations against no symbol
    }
    let shndx = input
        .symtab
        .symbol_section(endian, sym, index)
        .map_err(|e| input.malformed(format!("symbol {name}: section: {e}")))?;
    let definition = match sym.st_shndx(endian) {
        // The null symbol: relocations against it use S = 0 (psABI).
        _ if index.0 == 0 => Definition::Absolute(0),
        elf::SHN_UNDEF if shndx.is_none() => Definition::Undefined,
        elf::SHN_ABS => Definition::Absolute(sym.st_value(endian)),
        elf::SHN_COMMON => Definition::Common {
            align: sym.st_value(endian).max(1),
        },
        _ => match shndx.and_then(|i| placed.get(i.0).copied().flatten()) {
            Some(section) => Definition::defined(section, sym.st_value(endian)),
            None => Definition::Unplaced,
        },
    };
    let kind = match sym.st_type() {
        elf::STT_FUNC | elf::STT_GNU_IFUNC => SymbolKind::Function,
        elf::STT_OBJECT | elf::STT_COMMON => SymbolKind::Data,
        elf::STT_SECTION => SymbolKind::Section,
        elf::STT_TLS => SymbolKind::ThreadLocal,
        _ => SymbolKind::Other,
    };
    if kind == SymbolKind::Section
        && let Some(i) = shndx
    {
        let header = input
            .sections
            .section(i)
            .map_err(|e| input.malformed(format!("symbol {}: {e}", index.0)))?;
        name = std::str::from_utf8(
            string_at(input.section_names, header.sh_name(endian)).unwrap_or(b""),
        )
        .unwrap_or("");
    }
    if sym.st_type() == elf::STT_GNU_IFUNC && !matches!(definition, Definition::Undefined) {
        return Err(input.unsupported(format!(
            "symbol {name}: indirect functions (STT_GNU_IFUNC) are not supported"
        )));
    }
    Ok(Symbol {
        name,
        binding: match sym.st_bind() {
            elf::STB_LOCAL => Binding::Local,
            elf::STB_WEAK => Binding::Weak,
            _ => Binding::Global,
        },
        visibility: match sym.st_visibility() {
            elf::STV_INTERNAL => Visibility::Internal,
            elf::STV_HIDDEN => Visibility::Hidden,
            elf::STV_PROTECTED => Visibility::Protected,
            _ => Visibility::Default,
        },
        kind,
        definition,
        size: sym.st_size(endian),
        fallback: None,
    })
}
