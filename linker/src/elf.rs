//! The ELF front-end: an x86-64 relocatable object (`ET_REL`) becomes a
//! [`LinkGraph`]. Symbol ids are ELF symbol-table indices, so edges keep the
//! object's own numbering.

use std::borrow::Cow;

use object::elf;
use object::read::elf::{FileHeader, Rela, SectionHeader, Sym};
use object::{Endianness, LittleEndian, SectionIndex};

use crate::arch::x86_64::{ElfReloc, elf_reloc};
use crate::error::{LinkError, Site};
use crate::graph::*;

type Header = elf::FileHeader64<Endianness>;

/// The NUL-terminated string at `offset` in a string table section, or
/// `None` when the offset is outside it or the string is unterminated.
///
/// A plain byte search, not the object crate's string table: names are
/// short, and its `memchr` first probes the CPU with `cpuid`, which a
/// virtual machine traps at a few microseconds a probe.
fn string_at(table: &[u8], offset: u32) -> Option<&[u8]> {
    let rest = table.get(offset as usize..)?;
    let end = rest.iter().position(|&b| b == 0)?;
    Some(&rest[..end])
}

/// The edge of one `Elf64_Rela` record (24 little-endian bytes) that
/// [`parse`] has checked: its type is a known kind, its symbol index is in
/// range and its field fits the section.
fn decode_rela(record: &[u8]) -> Edge {
    let word = |at: usize| {
        let bytes: [u8; 8] = record[at..at + 8].try_into().expect("records are 24 bytes");
        u64::from_le_bytes(bytes)
    };
    let (offset, info, addend) = (word(0), word(8), word(16) as i64);
    let Some(ElfReloc::Kind(kind)) = elf_reloc(elf::RelocationType(info as u32)) else {
        unreachable!("parse refused this record's relocation type");
    };
    Edge::new(offset, kind, (info >> 32) as SymbolId, addend)
}

/// Whether `data` starts like an ELF file.
pub fn is_elf(data: &[u8]) -> bool {
    data.starts_with(&elf::ELFMAG)
}

/// Parses an ELF x86-64 relocatable object.
pub fn parse<'a>(object: &str, data: &'a [u8]) -> Result<LinkGraph<'a>, LinkError> {
    let malformed = |reason: String| LinkError::Malformed {
        object: object.to_string(),
        reason,
    };
    let unsupported = |reason: String| LinkError::UnsupportedObject {
        object: object.to_string(),
        reason,
    };
    let header = Header::parse(data).map_err(|e| malformed(e.to_string()))?;
    let endian = header.endian().map_err(|e| malformed(e.to_string()))?;
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
    let sections = header
        .sections(endian, data)
        .map_err(|e| malformed(format!("section table: {e}")))?;
    let symtab = sections
        .symbols(endian, data, elf::SHT_SYMTAB)
        .map_err(|e| malformed(format!("symbol table: {e}")))?;

    let string_table = |index: usize, what: &str| {
        sections
            .section(SectionIndex(index))
            .and_then(|s| s.data(endian, data))
            .map_err(|e| malformed(format!("{what} string table: {e}")))
    };
    let section_names = match header.shstrndx(endian, data) {
        Ok(0) => &[][..],
        Ok(index) => string_table(index as usize, "section name")?,
        Err(e) => return Err(malformed(format!("section name string table: {e}"))),
    };
    let symbol_names = string_table(symtab.string_section().0, "symbol")?;

    // Sections that are loaded, indexed by ELF section index.
    let mut placed: Vec<Option<SectionId>> = vec![None; sections.len()];
    let mut graph_sections = Vec::new();
    let mut groups = Vec::new();
    for (index, section) in sections.enumerate() {
        let name_bytes = string_at(section_names, section.sh_name(endian)).ok_or_else(|| {
            malformed(format!(
                "section {}: name offset {:#x} is not in the string table",
                index.0,
                section.sh_name(endian)
            ))
        })?;
        let name = String::from_utf8_lossy(name_bytes);
        let sh_type = section.sh_type(endian);
        let flags = section.sh_flags(endian).0;
        if sh_type == elf::SHT_GROUP {
            groups.push((index.0, section));
            continue;
        }
        if sh_type == elf::SHT_REL {
            return Err(unsupported(format!(
                "section {name}: REL relocations are not used on x86-64"
            )));
        }
        let loadable = matches!(
            sh_type,
            elf::SHT_PROGBITS
                | elf::SHT_NOBITS
                | elf::SHT_INIT_ARRAY
                | elf::SHT_FINI_ARRAY
                | elf::SHT_PREINIT_ARRAY
                | elf::SHT_X86_64_UNWIND
        );
        if flags & elf::SHF_ALLOC.0 == 0 || !loadable {
            continue;
        }
        let size = section.sh_size(endian);
        if flags & elf::SHF_TLS.0 != 0 {
            if size == 0 {
                continue;
            }
            return Err(unsupported(format!(
                "section {name}: thread-local storage is not supported yet"
            )));
        }
        let (protection, bytes): (Protection, &[u8]) = if sh_type == elf::SHT_NOBITS {
            (Protection::Zero, &[])
        } else {
            let bytes = section
                .data(endian, data)
                .map_err(|e| malformed(format!("section {name}: contents: {e}")))?;
            let protection = if flags & elf::SHF_EXECINSTR.0 != 0 {
                Protection::Code
            } else if flags & elf::SHF_WRITE.0 != 0 {
                Protection::Data
            } else {
                Protection::ReadOnly
            };
            (protection, bytes)
        };
        let role = section_role(&name, sh_type);
        let protection = match role {
            // Relocated once, then only read: like RELRO.
            SectionRole::Initializers { .. } | SectionRole::Finalizers { .. } => {
                Protection::ReadOnly
            }
            _ => protection,
        };
        let align = section.sh_addralign(endian).max(1);
        if !align.is_power_of_two() {
            return Err(malformed(format!(
                "section {name}: alignment {align} is not a power of two"
            )));
        }
        placed[index.0] = Some(graph_sections.len());
        graph_sections.push(Section {
            name: Cow::Owned(name.into_owned()),
            protection,
            role,
            align,
            size,
            data: Cow::Borrowed(bytes),
            edges: Edges::default(),
            live: true,
        });
    }

    // Symbols, numbered as in the ELF symbol table.
    let mut symbols = Vec::with_capacity(symtab.len());
    for (index, sym) in symtab.enumerate() {
        let name_bytes = string_at(symbol_names, sym.st_name(endian)).ok_or_else(|| {
            malformed(format!(
                "symbol {}: name offset {:#x} is not in the string table",
                index.0,
                sym.st_name(endian)
            ))
        })?;
        let mut name = std::str::from_utf8(name_bytes)
            .map_err(|_| malformed(format!("symbol {}: name is not UTF-8", index.0)))?;
        if index.0 == 0 {
            name = "*ABS*"; // as binutils shows relocations against no symbol
        }
        let shndx = symtab
            .symbol_section(endian, sym, index)
            .map_err(|e| malformed(format!("symbol {name}: section: {e}")))?;
        let definition = match sym.st_shndx(endian) {
            // The null symbol: relocations against it use S = 0 (psABI).
            _ if index.0 == 0 => Definition::Absolute(0),
            elf::SHN_UNDEF if shndx.is_none() => Definition::Undefined,
            elf::SHN_ABS => Definition::Absolute(sym.st_value(endian)),
            elf::SHN_COMMON => Definition::Common {
                align: sym.st_value(endian).max(1),
            },
            _ => match shndx.and_then(|i| placed.get(i.0).copied().flatten()) {
                Some(section) => Definition::Defined {
                    section,
                    offset: sym.st_value(endian),
                },
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
            let header = sections
                .section(i)
                .map_err(|e| malformed(format!("symbol {}: {e}", index.0)))?;
            name = std::str::from_utf8(
                string_at(section_names, header.sh_name(endian)).unwrap_or(b""),
            )
            .unwrap_or("");
        }
        let binding = match sym.st_bind() {
            elf::STB_LOCAL => Binding::Local,
            elf::STB_WEAK => Binding::Weak,
            _ => Binding::Global,
        };
        let visibility = match sym.st_visibility() {
            elf::STV_INTERNAL => Visibility::Internal,
            elf::STV_HIDDEN => Visibility::Hidden,
            elf::STV_PROTECTED => Visibility::Protected,
            _ => Visibility::Default,
        };
        if sym.st_type() == elf::STT_GNU_IFUNC && !matches!(definition, Definition::Undefined) {
            return Err(unsupported(format!(
                "symbol {name}: indirect functions (STT_GNU_IFUNC) are not supported"
            )));
        }
        symbols.push(Symbol {
            name,
            binding,
            visibility,
            kind,
            definition,
            size: sym.st_size(endian),
            fallback: None,
        });
    }

    // Relocations, attached to the sections they patch.
    for section in sections.iter() {
        if section.sh_type(endian) != elf::SHT_RELA {
            continue;
        }
        let target = section.sh_info(endian) as usize;
        let Some(Some(id)) = placed.get(target).copied() else {
            continue; // relocations of a section that is not loaded (debug info)
        };
        let relas = section
            .data_as_array::<elf::Rela64<Endianness>, _>(endian, data)
            .map_err(|e| malformed(format!("relocations of {}: {e}", graph_sections[id].name)))?;
        let section_size = graph_sections[id].size;
        for rela in relas {
            let r_type = rela.r_type(endian, false);
            let symbol = rela.r_sym(endian, false) as usize;
            let offset = rela.r_offset(endian);
            let site = || Site {
                object: object.to_string(),
                section: graph_sections[id].name.to_string(),
                offset,
            };
            let symbol_name = || symbols.get(symbol).map_or("?", |s| s.name).to_string();
            let kind = match elf_reloc(r_type) {
                Some(ElfReloc::Kind(kind)) => kind,
                Some(ElfReloc::Unsupported(name, why)) => {
                    return Err(LinkError::UnsupportedRelocation(Box::new(
                        crate::error::UnsupportedRelocation {
                            site: site(),
                            reloc: name.to_string(),
                            symbol: symbol_name(),
                            why: format!(": {why}"),
                        },
                    )));
                }
                None => {
                    return Err(LinkError::UnsupportedRelocation(Box::new(
                        crate::error::UnsupportedRelocation {
                            site: site(),
                            reloc: format!("type {}", r_type.0),
                            symbol: symbol_name(),
                            why: ": unknown x86-64 relocation type".into(),
                        },
                    )));
                }
            };
            if symbol >= symbols.len() {
                return Err(malformed(format!(
                    "{}: relocation symbol index {symbol} is out of range",
                    site()
                )));
            }
            if offset
                .checked_add(u64::from(kind.width))
                .is_none_or(|end| end > section_size)
            {
                return Err(malformed(format!(
                    "{}: {} does not fit in the section ({section_size:#x} bytes)",
                    site(),
                    kind.name
                )));
            }
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
        };
        let placed_edges = &mut graph_sections[id].edges;
        if placed_edges.is_empty() {
            *placed_edges = records;
        } else {
            placed_edges.to_decoded().extend(records.iter());
        }
    }

    // COMDAT groups.
    let mut graph_groups = Vec::new();
    for (index, section) in groups {
        let Some((flags, members)) = section
            .group(endian, data)
            .map_err(|e| malformed(format!("group section {index}: {e}")))?
        else {
            continue;
        };
        if !flags.contains(elf::GRP_COMDAT) {
            continue;
        }
        let signature = symbols
            .get(section.sh_info(endian) as usize)
            .map(|s| s.name)
            .ok_or_else(|| malformed(format!("group section {index}: bad signature symbol")))?;
        let sections = members
            .iter()
            .filter_map(|m| placed.get(m.get(endian) as usize).copied().flatten())
            .collect();
        graph_groups.push(Group {
            signature,
            selection: ComdatSelection::Any,
            sections,
        });
    }
    let _ = LittleEndian; // the only byte order accepted above
    Ok(LinkGraph {
        object: object.to_string(),
        format: ObjectFormat::Elf,
        sections: graph_sections,
        symbols,
        groups: graph_groups,
    })
}

/// The lifecycle role a section's name and type give it.
fn section_role(name: &str, sh_type: elf::SectionType) -> SectionRole {
    let priority = |suffix: &str| suffix.parse::<u32>().ok();
    if sh_type == elf::SHT_PREINIT_ARRAY {
        // Preinitializers run before every prioritized initializer.
        return SectionRole::Initializers {
            priority: Some(0),
            reversed: false,
        };
    }
    if let Some(rest) = name.strip_prefix(".init_array") {
        return SectionRole::Initializers {
            priority: rest.strip_prefix('.').and_then(priority),
            reversed: false,
        };
    }
    if let Some(rest) = name.strip_prefix(".fini_array") {
        return SectionRole::Finalizers {
            priority: rest.strip_prefix('.').and_then(priority),
            reversed: false,
        };
    }
    // `.ctors.N` sorts as init priority 65535 - N (GNU ld's
    // SORT_BY_INIT_PRIORITY).
    if let Some(rest) = name.strip_prefix(".ctors") {
        return SectionRole::Initializers {
            priority: rest
                .strip_prefix('.')
                .and_then(priority)
                .map(|n| 65535u32.saturating_sub(n)),
            reversed: true,
        };
    }
    if let Some(rest) = name.strip_prefix(".dtors") {
        return SectionRole::Finalizers {
            priority: rest
                .strip_prefix('.')
                .and_then(priority)
                .map(|n| 65535u32.saturating_sub(n)),
            reversed: true,
        };
    }
    match sh_type {
        elf::SHT_INIT_ARRAY => SectionRole::Initializers {
            priority: None,
            reversed: false,
        },
        elf::SHT_FINI_ARRAY => SectionRole::Finalizers {
            priority: None,
            reversed: false,
        },
        _ if name == ".eh_frame" || sh_type == elf::SHT_X86_64_UNWIND => SectionRole::UnwindFrames,
        _ => SectionRole::Plain,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object::elf::FileHeader64;
    use object::read::elf::ElfFile64;
    use object::{Object, ObjectSection};

    const RERUN: &str = "rerun: cargo test -p solder-linker --lib elf::tests";

    /// Two `.text` relocations and one `.data` relocation.
    const RELOCATIONS: &str = "
        .text
        .globl f
    f:
        call g@PLT
        movq x@GOTPCREL(%rip), %rax
        ret
        .data
        .quad f
    ";

    fn object() -> Vec<u8> {
        crate::test_support::clang_object("x86_64-linux-gnu", "assembler", RELOCATIONS, &[])
    }

    /// Whether `.text` keeps its records, and its edges as (offset, kind,
    /// symbol, addend).
    fn text_edges(bytes: &[u8]) -> (bool, Vec<(u64, &'static str, String, i64)>) {
        let g = parse("test.o", bytes).expect("parses");
        let text = g
            .sections
            .iter()
            .find(|s| s.name == ".text")
            .expect(".text");
        let records = matches!(text.edges, Edges::Records { .. });
        let edges = text
            .edges
            .iter()
            .map(|e| {
                (
                    e.offset,
                    *e.kind.name,
                    g.symbols[e.target].name.to_string(),
                    e.addend,
                )
            })
            .collect();
        (records, edges)
    }

    /// A section of the object: its index and its contents' file range.
    fn section_of(bytes: &[u8], name: &str) -> (usize, (u64, u64)) {
        let file = ElfFile64::<Endianness>::parse(bytes).expect("an ELF file");
        let section = file.section_by_name(name).expect("the section");
        (section.index().0, section.file_range().unwrap_or((0, 0)))
    }

    /// The file offset of a section's header field `at` bytes into it.
    fn header_field(bytes: &[u8], section: &str, at: usize) -> usize {
        let header = FileHeader64::<Endianness>::parse(bytes).expect("an ELF header");
        header.e_shoff.get(Endianness::Little) as usize
            + section_of(bytes, section).0 * header.e_shentsize.get(Endianness::Little) as usize
            + at
    }

    fn plt32_to_g() -> (u64, &'static str, String, i64) {
        (1, "R_X86_64_PLT32", "g".to_string(), -4)
    }

    fn gotpcrelx_to_x() -> (u64, &'static str, String, i64) {
        (8, "R_X86_64_REX_GOTPCRELX", "x".to_string(), -4)
    }

    #[test]
    fn relocation_records_are_kept_and_decode_to_their_edges() {
        let (records, edges) = text_edges(&object());
        assert!(records, "one table is kept as records; {RERUN}");
        assert_eq!(edges, [plt32_to_g(), gotpcrelx_to_x()], "{RERUN}");
    }

    #[test]
    fn records_keep_the_objects_order() {
        let mut bytes = object();
        // Swap the two 24-byte records of `.rela.text`.
        let (_, (start, size)) = section_of(&bytes, ".rela.text");
        assert_eq!(size, 48, "two records; {RERUN}");
        let start = start as usize;
        let (first, second) = bytes[start..start + 48].split_at_mut(24);
        first.swap_with_slice(second);
        let (records, edges) = text_edges(&bytes);
        assert!(records, "{RERUN}");
        assert_eq!(edges, [gotpcrelx_to_x(), plt32_to_g()], "{RERUN}");
    }

    #[test]
    fn several_tables_for_one_section_are_decoded_into_one_list() {
        let mut bytes = object();
        // Point `.rela.data`'s sh_info (at byte 44 of a section header) at
        // `.text`: its record (offset 0, R_X86_64_64 against f) then
        // patches `.text` too.
        let text = section_of(&bytes, ".text").0 as u32;
        let info = header_field(&bytes, ".rela.data", 44);
        bytes[info..info + 4].copy_from_slice(&text.to_le_bytes());
        let (records, edges) = text_edges(&bytes);
        assert!(!records, "two tables are decoded into one list; {RERUN}");
        let data_edge = (0, "R_X86_64_64", "f".to_string(), 0);
        let mut expected = vec![plt32_to_g(), gotpcrelx_to_x()];
        // In section-header order, as the tables come.
        if header_field(&bytes, ".rela.data", 0) < header_field(&bytes, ".rela.text", 0) {
            expected.insert(0, data_edge);
        } else {
            expected.push(data_edge);
        }
        assert_eq!(edges, expected, "{RERUN}");
    }

    #[test]
    fn string_at_reads_up_to_the_nul() {
        let table = b"\0.text\0main\0";
        assert_eq!(string_at(table, 0), Some(&b""[..]));
        assert_eq!(string_at(table, 1), Some(&b".text"[..]));
        assert_eq!(string_at(table, 7), Some(&b"main"[..]));
        assert_eq!(string_at(table, 9), Some(&b"in"[..]));
    }

    #[test]
    fn string_at_rejects_offsets_outside_and_unterminated_strings() {
        assert_eq!(string_at(b"\0abc\0", 6), None);
        assert_eq!(string_at(b"\0abc\0", u32::MAX), None);
        assert_eq!(string_at(b"\0abc", 1), None);
        assert_eq!(string_at(b"", 0), None);
    }
}
