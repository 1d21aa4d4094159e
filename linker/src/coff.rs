//! The COFF front-end: an x86-64 object (`IMAGE_FILE_MACHINE_AMD64`, plain
//! or `/bigobj`) becomes a [`LinkGraph`]. Symbol ids are COFF symbol-table
//! indices, auxiliary records included (each gets a placeholder symbol), so
//! edges keep the object's own numbering; symbols that `/alternatename:`
//! directives introduce come after them.
//!
//! Windows unwind tables (`.pdata`, `.xdata`), debug info and linker
//! directives are not loaded; `.CRT$X?*` arrays become initializer and
//! finalizer sections; weak externals and `/alternatename:` become
//! [`Symbol::fallback`]s; COMDAT sections become [`Group`]s.

use std::borrow::Cow;

use object::LittleEndian as LE;
use object::pe;
use object::read::SymbolIndex;
use object::read::coff::{CoffHeader, Symbol as _};

use crate::arch::RelocOp;
use crate::arch::coff_x86_64::{CoffReloc, coff_reloc, implicit_addend};
use crate::error::{LinkError, Site};
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

/// What a symbol-table entry may be used for, beyond its graph symbol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    /// A symbol with an address (or an undefined one).
    Addressed,
    /// An auxiliary record: the placeholder of an index, never a target.
    Aux,
    /// A symbol with no address (file names, `.bf`/`.ef`, debug items,
    /// storage classes Solder does not know): fine until a relocation uses
    /// it. Carries the storage class.
    NoAddress(u8),
}

/// A COFF section's COMDAT meaning, from its section-definition record.
#[derive(Debug, Clone, Copy)]
enum Comdat<'a> {
    /// A group's leader; `signature` is `None` when the COMDAT symbol is
    /// static (then, as in link.exe and lld, it is never deduplicated).
    Leader {
        selection: ComdatSelection,
        signature: Option<&'a str>,
    },
    /// Kept or discarded with the section at this 0-based index.
    Associative(usize),
}

#[expect(
    clippy::too_many_lines,
    reason = "to be split into the COFF front-end phases"
)]
fn parse_as<'a, Coff: CoffHeader>(
    object: &str,
    data: &'a [u8],
) -> Result<LinkGraph<'a>, LinkError> {
    let malformed = |reason: String| LinkError::Malformed {
        object: object.to_string(),
        reason,
    };
    let unsupported = |reason: String| LinkError::UnsupportedObject {
        object: object.to_string(),
        reason,
    };
    let mut offset = 0;
    let header = Coff::parse(data, &mut offset).map_err(|e| malformed(e.to_string()))?;
    if header.machine() != pe::IMAGE_FILE_MACHINE_AMD64 {
        return Err(unsupported(format!(
            "machine {:#x} is not x86-64 (AMD64)",
            header.machine().0
        )));
    }
    // Objects have no optional header: the section table follows the file
    // header directly.
    if offset != std::mem::size_of::<Coff>() as u64 {
        return Err(unsupported(
            "it has an optional header, so it is a PE image, not a relocatable object; pass .obj files"
                .into(),
        ));
    }
    let sections = header
        .sections(data, offset)
        .map_err(|e| malformed(format!("section table: {e}")))?;
    let symtab = header
        .symbols(data)
        .map_err(|e| malformed(format!("symbol table: {e}")))?;
    let strings = symtab.strings();

    // The symbol table's entries with their names; `None` for auxiliary
    // records.
    let mut raw: Vec<Option<(&'a Coff::Symbol, &'a str)>> = Vec::with_capacity(symtab.len());
    while raw.len() < symtab.len() {
        let index = raw.len();
        let sym = symtab
            .symbol(SymbolIndex(index))
            .map_err(|e| malformed(format!("symbol {index}: {e}")))?;
        let aux = usize::from(sym.number_of_aux_symbols());
        if index + aux >= symtab.len() {
            return Err(malformed(format!(
                "symbol {index}: its {aux} auxiliary records run past the end of the symbol table"
            )));
        }
        let name_bytes = sym
            .name(strings)
            .map_err(|e| malformed(format!("symbol {index}: name: {e}")))?;
        let name = std::str::from_utf8(name_bytes)
            .map_err(|_| malformed(format!("symbol {index}: name is not UTF-8")))?;
        raw.push(Some((sym, name)));
        raw.extend(std::iter::repeat_n(None, aux));
    }

    // The section symbol (static, value 0, with a section-definition record)
    // of each section, by 0-based section index.
    let mut section_symbols: Vec<Option<usize>> = vec![None; sections.len()];
    for (index, entry) in raw.iter().enumerate() {
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

    // Sections that are loaded, by 0-based COFF section index.
    let mut placed: Vec<Option<SectionId>> = vec![None; sections.len()];
    let mut graph_sections = Vec::new();
    let mut directives: Vec<&'a [u8]> = Vec::new();
    for (index, section) in sections.iter().enumerate() {
        let name_bytes = section
            .name(strings)
            .map_err(|e| malformed(format!("section {}: name: {e}", index + 1)))?;
        let name = std::str::from_utf8(name_bytes)
            .map_err(|_| malformed(format!("section {}: name is not UTF-8", index + 1)))?;
        let flags = section.characteristics.get(LE);
        let size = u64::from(section.size_of_raw_data.get(LE));
        let contents = || {
            section.coff_data(data).map_err(|()| {
                malformed(format!(
                    "section {name}: its contents ({size:#x} bytes at file offset {:#x}) lie outside the file",
                    section.pointer_to_raw_data.get(LE)
                ))
            })
        };
        if name == ".drectve" {
            directives.push(contents()?);
            continue;
        }
        // `$` orders sections of one name in an image; what a section is
        // depends on the part before it.
        let (base, suffix) = name.split_once('$').unwrap_or((name, ""));
        // Unwind tables describe Windows exception handling (and `.xdata`
        // names handlers like `__C_specific_handler` that do not exist on
        // the host), so they are of no use here.
        if flags.intersects(pe::IMAGE_SCN_LNK_REMOVE | pe::IMAGE_SCN_LNK_INFO)
            || name.starts_with(".debug")
            || name.starts_with(".llvm.")
            || base == ".pdata"
            || base == ".xdata"
        {
            continue;
        }
        if base == ".tls" {
            if size == 0 {
                continue;
            }
            return Err(unsupported(format!(
                "section {name}: thread-local storage is not supported yet"
            )));
        }
        let role = if base == ".CRT" {
            match crt_role(suffix) {
                Some(role) => role,
                None if size == 0 => continue,
                None => {
                    return Err(unsupported(format!(
                        "section {name}: only the CRT's initializer ($XI, $XC) and terminator ($XP, $XT) arrays are supported"
                    )));
                }
            }
        } else {
            SectionRole::Plain
        };
        let align = match (flags.0 >> 20) & 0xf {
            0 => 16, // the PE default for objects
            15 => {
                return Err(malformed(format!(
                    "section {name}: alignment field 15 is reserved"
                )));
            }
            n => 1u64 << (n - 1),
        };
        let (protection, bytes): (Protection, &[u8]) =
            if flags.contains(pe::IMAGE_SCN_CNT_UNINITIALIZED_DATA) {
                if role != SectionRole::Plain {
                    return Err(malformed(format!(
                        "section {name}: an initializer or terminator array has no contents"
                    )));
                }
                (Protection::Zero, &[])
            } else {
                let protection = if role != SectionRole::Plain {
                    // Relocated once, then only read: like RELRO.
                    Protection::ReadOnly
                } else if flags.intersects(pe::IMAGE_SCN_MEM_EXECUTE | pe::IMAGE_SCN_CNT_CODE) {
                    Protection::Code
                } else if flags.contains(pe::IMAGE_SCN_MEM_WRITE) {
                    Protection::Data
                } else {
                    Protection::ReadOnly
                };
                (protection, contents()?)
            };
        placed[index] = Some(graph_sections.len());
        graph_sections.push(Section {
            name: Cow::Borrowed(name),
            protection,
            role,
            align,
            size,
            data: Cow::Borrowed(bytes),
            edges: Edges::default(),
            live: true,
        });
    }

    // Symbols, numbered as in the COFF symbol table.
    let mut symbols = Vec::with_capacity(raw.len());
    let mut entries = Vec::with_capacity(raw.len());
    let mut weak_externals = Vec::new();
    for (index, entry) in raw.iter().enumerate() {
        let Some((sym, name)) = *entry else {
            symbols.push(Symbol {
                name: "",
                binding: Binding::Local,
                visibility: Visibility::Default,
                kind: SymbolKind::Other,
                definition: Definition::Unplaced,
                size: 0,
                fallback: None,
            });
            entries.push(Entry::Aux);
            continue;
        };
        let class = sym.storage_class();
        let number = sym.section_number();
        let value = u64::from(sym.value());
        // A definition at `value` in section `number` (1-based).
        let in_section = |number: u32| -> Result<Definition, LinkError> {
            let Some(&slot) = placed.get(number as usize - 1) else {
                return Err(malformed(format!(
                    "symbol {name}: section number {number} is out of range ({} sections)",
                    placed.len()
                )));
            };
            let Some(section) = slot else {
                return Ok(Definition::Unplaced);
            };
            let size = graph_sections[section].size;
            if value > size {
                return Err(malformed(format!(
                    "symbol {name}: value {value:#x} is past the end of section {} ({size:#x} bytes)",
                    graph_sections[section].name
                )));
            }
            Ok(Definition::Defined {
                section,
                offset: value,
            })
        };
        let no_address = (
            Binding::Local,
            Definition::Unplaced,
            Entry::NoAddress(class.0),
        );
        let (binding, definition, note) = if number == pe::IMAGE_SYM_DEBUG {
            no_address
        } else {
            match class {
                pe::IMAGE_SYM_CLASS_EXTERNAL => {
                    let definition = match number {
                        pe::IMAGE_SYM_UNDEFINED if value == 0 => Definition::Undefined,
                        // A common symbol: the value is its size. COFF
                        // records no alignment: take the largest power of
                        // two the size allows, up to 32.
                        pe::IMAGE_SYM_UNDEFINED => Definition::Common {
                            align: 1 << value.clamp(1, 32).ilog2(),
                        },
                        pe::IMAGE_SYM_ABSOLUTE => Definition::Absolute(value),
                        _ => match number.index() {
                            Some(n) => in_section(n)?,
                            None => {
                                return Err(malformed(format!(
                                    "symbol {name}: reserved section number {}",
                                    number.0
                                )));
                            }
                        },
                    };
                    (Binding::Global, definition, Entry::Addressed)
                }
                pe::IMAGE_SYM_CLASS_STATIC | pe::IMAGE_SYM_CLASS_LABEL => match number {
                    pe::IMAGE_SYM_ABSOLUTE => (
                        Binding::Local,
                        Definition::Absolute(value),
                        Entry::Addressed,
                    ),
                    _ => match number.index() {
                        Some(n) => (Binding::Local, in_section(n)?, Entry::Addressed),
                        None => no_address,
                    },
                },
                pe::IMAGE_SYM_CLASS_WEAK_EXTERNAL => {
                    weak_externals.push(index);
                    // Settled below, once every default symbol is known.
                    (Binding::Weak, Definition::Undefined, Entry::Addressed)
                }
                _ => no_address,
            }
        };
        let is_section_symbol = class == pe::IMAGE_SYM_CLASS_STATIC
            && sym.has_aux_section()
            && value == 0
            && number.index().is_some();
        let in_code = matches!(definition, Definition::Defined { section, .. }
            if graph_sections[section].protection == Protection::Code);
        let kind = if is_section_symbol {
            SymbolKind::Section
        } else if sym.derived_type() == pe::IMAGE_SYM_DTYPE_FUNCTION || in_code {
            SymbolKind::Function
        } else {
            match definition {
                Definition::Defined { .. }
                | Definition::Absolute(_)
                | Definition::Common { .. } => SymbolKind::Data,
                Definition::Undefined | Definition::Unplaced => SymbolKind::Other,
            }
        };
        let size = match definition {
            Definition::Common { .. } => value,
            _ => 0, // defined symbols get theirs below
        };
        symbols.push(Symbol {
            name,
            binding,
            visibility: Visibility::Default,
            kind,
            definition,
            size,
            fallback: None,
        });
        entries.push(note);
    }

    // Weak externals: the auxiliary record names a default symbol (the tag).
    let mut tags: Vec<Option<usize>> = vec![None; raw.len()];
    for &index in &weak_externals {
        let name = symbols[index].name;
        if raw.get(index + 1).is_none_or(|e| e.is_some()) {
            return Err(malformed(format!(
                "weak external {name}: it has no auxiliary record"
            )));
        }
        let tag = symtab
            .aux_weak_external(SymbolIndex(index))
            .map_err(|e| malformed(format!("weak external {name}: {e}")))?
            .default_symbol()
            .0;
        match entries.get(tag) {
            None => {
                return Err(malformed(format!(
                    "weak external {name}: default symbol index {tag} is out of range"
                )));
            }
            Some(Entry::Aux) => {
                return Err(malformed(format!(
                    "weak external {name}: default symbol index {tag} is an auxiliary record"
                )));
            }
            Some(Entry::NoAddress(class)) => {
                return Err(malformed(format!(
                    "weak external {name}: default symbol `{}` (storage class {class}) has no address",
                    symbols[tag].name
                )));
            }
            Some(Entry::Addressed) => {}
        }
        tags[index] = Some(tag);
    }
    for &index in &weak_externals {
        // A chain of weak externals must end in a symbol that is not one.
        let mut at = index;
        for _ in 0..=weak_externals.len() {
            match tags[at] {
                Some(next) => at = next,
                None => break,
            }
        }
        if tags[at].is_some() {
            return Err(malformed(format!(
                "weak external {}: its default symbols form a loop",
                symbols[index].name
            )));
        }
        let Some(tag) = tags[index] else { continue };
        let default = &symbols[tag];
        let (definition, fallback) = match default.definition {
            // Another weak external: it is what this one means.
            _ if tags[tag].is_some() => (Definition::Undefined, Some(tag)),
            // clang's weak definitions: the tag is the definition.
            Definition::Defined { .. } | Definition::Unplaced => (default.definition, None),
            // clang's weak references: 0 when nothing defines the symbol.
            Definition::Absolute(0) => (Definition::Undefined, None),
            Definition::Absolute(value) => (Definition::Absolute(value), None),
            Definition::Undefined | Definition::Common { .. } => (Definition::Undefined, Some(tag)),
        };
        let kind = match definition {
            _ if symbols[index].kind == SymbolKind::Function => SymbolKind::Function,
            Definition::Defined { .. } | Definition::Absolute(_) => default.kind,
            _ => SymbolKind::Other,
        };
        let sym = &mut symbols[index];
        sym.definition = definition;
        sym.fallback = fallback;
        sym.kind = kind;
    }

    // COFF has no symbol sizes: a defined symbol extends to the next one in
    // its section, or to the section's end.
    let mut starts: Vec<(SectionId, u64)> = symbols
        .iter()
        .filter(|s| s.kind != SymbolKind::Section)
        .filter_map(|s| match s.definition {
            Definition::Defined { section, offset } => Some((section, offset)),
            _ => None,
        })
        .collect();
    starts.sort_unstable();
    starts.dedup();
    for sym in &mut symbols {
        if sym.kind == SymbolKind::Section {
            continue;
        }
        if let Definition::Defined { section, offset } = sym.definition {
            let next = starts.partition_point(|&start| start <= (section, offset));
            let end = match starts.get(next) {
                Some(&(s, start)) if s == section => start,
                _ => graph_sections[section].size,
            };
            sym.size = end - offset;
        }
    }

    // `/alternatename:A=B` in `.drectve`: B stands in for an undefined A.
    let real_symbols = symbols.len();
    for bytes in directives {
        let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
        let text = std::str::from_utf8(bytes)
            .map_err(|_| malformed("section .drectve: directives are not UTF-8".into()))?;
        for token in directive_tokens(text) {
            let Some((from, to)) = alternate_name(token)
                .map_err(|why| malformed(format!("section .drectve: {token}: {why}")))?
            else {
                continue;
            };
            let undefined = |s: &Symbol<'_>| {
                s.name == from
                    && s.binding != Binding::Local
                    && s.definition == Definition::Undefined
                    && s.fallback.is_none()
            };
            if from == to || !symbols.iter().any(undefined) {
                continue;
            }
            let target = match symbols
                .iter()
                .position(|s| s.name == to && s.binding != Binding::Local)
            {
                Some(id) => id,
                None => {
                    symbols.push(Symbol {
                        name: to,
                        binding: Binding::Global,
                        visibility: Visibility::Default,
                        kind: SymbolKind::Other,
                        definition: Definition::Undefined,
                        size: 0,
                        fallback: None,
                    });
                    symbols.len() - 1
                }
            };
            for sym in symbols.iter_mut().filter(|s| undefined(s)) {
                sym.fallback = Some(target);
            }
        }
    }

    // Relocations, attached to the sections they patch.
    for (index, section) in sections.iter().enumerate() {
        let Some(id) = placed[index] else {
            continue; // relocations of a section that is not loaded
        };
        let relocs = section
            .coff_relocations(data)
            .map_err(|e| malformed(format!("relocations of {}: {e}", graph_sections[id].name)))?;
        if !relocs.is_empty() && graph_sections[id].protection == Protection::Zero {
            return Err(malformed(format!(
                "section {}: an uninitialized section has relocations",
                graph_sections[id].name
            )));
        }
        let section_size = graph_sections[id].size;
        let mut edges = Vec::with_capacity(relocs.len());
        for reloc in relocs {
            let typ = reloc.typ.get(LE);
            let symbol = reloc.symbol_table_index.get(LE) as usize;
            let offset = u64::from(reloc.virtual_address.get(LE));
            let site = || Site {
                object: object.to_string(),
                section: graph_sections[id].name.to_string(),
                offset,
            };
            let symbol_name = || {
                symbols[..real_symbols]
                    .get(symbol)
                    .map_or("?", |s| s.name)
                    .to_string()
            };
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
                    return Err(malformed(format!(
                        "{}: relocation symbol index {symbol} is out of range",
                        site()
                    )));
                }
                Some(Entry::Aux) => {
                    return Err(malformed(format!(
                        "{}: {} refers to symbol index {symbol}, an auxiliary record",
                        site(),
                        kind.name
                    )));
                }
                Some(Entry::NoAddress(class)) => {
                    return Err(malformed(format!(
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
                    graph_sections[id]
                        .data
                        .get(start..start.checked_add(usize::from(kind.width))?)
                })
                .ok_or_else(|| {
                    malformed(format!(
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
        graph_sections[id].edges = Edges::Decoded(edges);
    }
    for section in &mut graph_sections {
        section.edges.to_decoded().sort_by_key(|e| e.offset);
    }

    // COMDAT sections, by 0-based COFF section index. Sections that are not
    // loaded are in no group; their malformations do not matter.
    let mut comdats: Vec<Option<Comdat<'a>>> = vec![None; sections.len()];
    for (index, section) in sections.iter().enumerate() {
        if !section
            .characteristics
            .get(LE)
            .contains(pe::IMAGE_SCN_LNK_COMDAT)
        {
            continue;
        }
        match (
            comdat_of::<Coff>(&symtab, &raw, &section_symbols, index),
            placed[index],
        ) {
            (Ok(comdat), _) => comdats[index] = Some(comdat),
            (Err(why), Some(id)) => {
                let name = &graph_sections[id].name;
                return Err(match why {
                    Why::Malformed(why) => malformed(format!("COMDAT section {name}: {why}")),
                    Why::Unsupported(why) => unsupported(format!("COMDAT section {name}: {why}")),
                });
            }
            (Err(_), None) => {}
        }
    }
    // Groups, by the 0-based COFF section index of their leaders.
    let mut graph_groups = Vec::new();
    let mut group_of: Vec<Option<usize>> = vec![None; sections.len()];
    for (index, comdat) in comdats.iter().enumerate() {
        if let (
            Some(Comdat::Leader {
                selection,
                signature: Some(signature),
            }),
            Some(id),
        ) = (comdat, placed[index])
        {
            group_of[index] = Some(graph_groups.len());
            graph_groups.push(Group {
                signature,
                selection: *selection,
                sections: vec![id],
            });
        }
    }
    for (index, comdat) in comdats.iter().enumerate() {
        let (&Some(Comdat::Associative(mut leader)), Some(id)) = (comdat, placed[index]) else {
            continue;
        };
        // Follow associations to the leader.
        let mut steps = 0;
        while let Some(Comdat::Associative(next)) = comdats[leader] {
            leader = next;
            steps += 1;
            if steps > sections.len() {
                return Err(malformed(format!(
                    "COMDAT section {}: its associations form a loop",
                    graph_sections[id].name
                )));
            }
        }
        // Associated with a section that is no group's leader: always kept.
        if let Some(group) = group_of[leader] {
            graph_groups[group].sections.push(id);
        }
    }

    Ok(LinkGraph {
        object: object.to_string(),
        format: ObjectFormat::Coff,
        sections: graph_sections,
        symbols,
        groups: graph_groups,
    })
}

/// Why a COMDAT section could not be understood.
enum Why {
    Malformed(String),
    Unsupported(String),
}

/// The COMDAT meaning of the section at 0-based `index`, from the
/// section-definition record of its section symbol.
fn comdat_of<'a, Coff: CoffHeader>(
    symtab: &object::read::coff::SymbolTable<'a, &'a [u8], Coff>,
    raw: &[Option<(&'a Coff::Symbol, &'a str)>],
    section_symbols: &[Option<usize>],
    index: usize,
) -> Result<Comdat<'a>, Why> {
    let Some(symbol) = section_symbols[index] else {
        return Err(Why::Malformed(
            "no section symbol with a section definition".into(),
        ));
    };
    let aux = symtab
        .aux_section(SymbolIndex(symbol))
        .map_err(|e| Why::Malformed(e.to_string()))?;
    let selection = match aux.selection {
        pe::IMAGE_COMDAT_SELECT_NODUPLICATES => ComdatSelection::NoDuplicates,
        pe::IMAGE_COMDAT_SELECT_ANY => ComdatSelection::Any,
        pe::IMAGE_COMDAT_SELECT_SAME_SIZE => ComdatSelection::SameSize,
        pe::IMAGE_COMDAT_SELECT_EXACT_MATCH => ComdatSelection::ExactMatch,
        pe::IMAGE_COMDAT_SELECT_LARGEST => ComdatSelection::Largest,
        pe::IMAGE_COMDAT_SELECT_ASSOCIATIVE => {
            let mut number = u32::from(aux.number.get(LE));
            if Coff::is_type_bigobj() {
                number |= u32::from(aux.high_number.get(LE)) << 16;
            }
            let target = (number as usize).wrapping_sub(1);
            if target >= section_symbols.len() || target == index {
                return Err(Why::Malformed(format!(
                    "associated with section number {number}, which is out of range"
                )));
            }
            return Ok(Comdat::Associative(target));
        }
        pe::IMAGE_COMDAT_SELECT_NEWEST => {
            return Err(Why::Unsupported(
                "selection IMAGE_COMDAT_SELECT_NEWEST is not supported".into(),
            ));
        }
        other => {
            return Err(Why::Malformed(format!(
                "unknown COMDAT selection {}",
                other.0
            )));
        }
    };
    // The COMDAT symbol is the first symbol after the section symbol that
    // is defined in the section.
    let number = index + 1;
    let signature = raw[symbol + 1..].iter().flatten().find(|(sym, _)| {
        sym.section_number().index() == Some(number as u32)
            && matches!(
                sym.storage_class(),
                pe::IMAGE_SYM_CLASS_EXTERNAL | pe::IMAGE_SYM_CLASS_STATIC
            )
            && !sym.has_aux_section()
    });
    let Some((sym, name)) = signature else {
        return Err(Why::Malformed(
            "no COMDAT symbol follows its section symbol".into(),
        ));
    };
    Ok(Comdat::Leader {
        selection,
        signature: (sym.storage_class() == pe::IMAGE_SYM_CLASS_EXTERNAL).then_some(*name),
    })
}

/// The MSVC CRT's arrays: `$XI` (C initializers) run before `$XC` (C++
/// initializers); `$XP` (pre-terminators) before `$XT` (terminators). The
/// linker sorts equal priorities by section name, which gives the `$`
/// suffix order; terminators are run first-to-last like `.dtors` entries.
fn crt_role(suffix: &str) -> Option<SectionRole> {
    let initializers = |priority| SectionRole::Initializers {
        priority: Some(priority),
        reversed: false,
    };
    let finalizers = |priority| SectionRole::Finalizers {
        priority: Some(priority),
        reversed: true,
    };
    if suffix.starts_with("XI") {
        Some(initializers(0))
    } else if suffix.starts_with("XC") {
        Some(initializers(1))
    } else if suffix.starts_with("XP") {
        Some(finalizers(0))
    } else if suffix.starts_with("XT") {
        Some(finalizers(1))
    } else {
        None
    }
}

/// Splits `.drectve` text into arguments: separated by white space, where
/// double quotes protect white space. Quotes stay in the arguments.
fn directive_tokens(text: &str) -> Vec<&str> {
    let mut tokens = Vec::new();
    let mut start = None;
    let mut quoted = false;
    for (at, c) in text.char_indices() {
        let space = (c.is_ascii_whitespace() || c == '\0') && !quoted;
        if c == '"' {
            quoted = !quoted;
        }
        match (start, space) {
            (None, false) => start = Some(at),
            (Some(from), true) => {
                tokens.push(&text[from..at]);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(from) = start {
        tokens.push(&text[from..]);
    }
    tokens
}

/// `(A, B)` when `token` is `/alternatename:A=B` (or `-ALTERNATENAME:` and
/// so on; A, B or `A=B` may be quoted); `None` for other directives.
fn alternate_name(token: &str) -> Result<Option<(&str, &str)>, String> {
    const OPTION: &str = "alternatename:";
    let token = unquote(token).unwrap_or(token);
    let Some(option) = token.strip_prefix(['/', '-']) else {
        return Ok(None);
    };
    if !option
        .get(..OPTION.len())
        .is_some_and(|o| o.eq_ignore_ascii_case(OPTION))
    {
        return Ok(None);
    }
    let value = &option[OPTION.len()..];
    let value = unquote(value).unwrap_or(value);
    let names = value.split_once('=').and_then(|(from, to)| {
        let from = unquote(from).unwrap_or(from);
        let to = unquote(to).unwrap_or(to);
        let plain = |s: &str| !s.is_empty() && !s.contains('"');
        (plain(from) && plain(to)).then_some((from, to))
    });
    names
        .map(Some)
        .ok_or_else(|| "expected /alternatename:FROM=TO".to_string())
}

/// `s` without surrounding double quotes, if it has them.
fn unquote(s: &str) -> Option<&str> {
    s.strip_prefix('"')?
        .strip_suffix('"')
        .filter(|inner| !inner.contains('"'))
}

#[cfg(test)]
mod tests {
    //! Objects are built at test time by clang for `x86_64-pc-windows-msvc`;
    //! each test first checks (with the `object` crate) that the object has
    //! what the test exercises, then checks the graph.

    use object::read::coff::{CoffHeader, Symbol as _};

    use super::*;

    /// Compiles `source` (`lang` as clang's `-x` says) into a COFF object.
    fn build(lang: &str, source: &str, flags: &[&str]) -> Vec<u8> {
        crate::test_support::clang_object("x86_64-pc-windows-msvc", lang, source, flags)
    }

    fn c(source: &str) -> Vec<u8> {
        build("c", source, &["-O2", "-nostdinc", "-fno-stack-protector"])
    }

    fn asm(source: &str) -> Vec<u8> {
        build("assembler", source, &[])
    }

    fn graph(data: &[u8]) -> LinkGraph<'_> {
        parse("test.obj", data).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The raw view of an object, for checking what it contains.
    struct Raw<'a> {
        data: &'a [u8],
        symtab_at: usize,
        sections: object::read::coff::SectionTable<'a>,
        symtab: object::read::coff::SymbolTable<'a, &'a [u8]>,
    }

    /// One COFF relocation as the file has it.
    #[derive(Debug)]
    struct RawReloc {
        offset: u32,
        typ: u16,
        symbol: usize,
        symbol_name: String,
        /// File offset of the `IMAGE_RELOCATION` record.
        record_at: usize,
        /// File offset of the field it patches.
        field_at: usize,
    }

    impl<'a> Raw<'a> {
        fn new(data: &'a [u8]) -> Raw<'a> {
            let mut offset = 0;
            let header = pe::ImageFileHeader::parse(data, &mut offset).unwrap();
            Raw {
                data,
                symtab_at: header.pointer_to_symbol_table.get(LE) as usize,
                sections: header.sections(data, offset).unwrap(),
                symtab: header.symbols(data).unwrap(),
            }
        }

        fn section(&self, name: &str) -> &'a pe::ImageSectionHeader {
            self.sections
                .iter()
                .find(|s| s.name(self.symtab.strings()) == Ok(name.as_bytes()))
                .unwrap_or_else(|| panic!("the object has no section {name}"))
        }

        /// The 1-based number of a section.
        fn section_number(&self, name: &str) -> u16 {
            let section = self.section(name);
            let index = self.sections.iter().position(|s| std::ptr::eq(s, section));
            index.unwrap() as u16 + 1
        }

        fn has_section(&self, name: &str) -> bool {
            self.sections
                .iter()
                .any(|s| s.name(self.symtab.strings()) == Ok(name.as_bytes()))
        }

        fn relocs(&self, name: &str) -> Vec<RawReloc> {
            let section = self.section(name);
            let relocs = section.coff_relocations(self.data).unwrap();
            // Where the records start (after the count record of an
            // overflowing section).
            let base = (relocs.as_ptr() as usize).wrapping_sub(self.data.as_ptr() as usize);
            relocs
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let symbol = r.symbol_table_index.get(LE) as usize;
                    let offset = r.virtual_address.get(LE);
                    RawReloc {
                        offset,
                        typ: r.typ.get(LE).0,
                        symbol,
                        symbol_name: self.symbol_name(symbol),
                        record_at: base + i * 10,
                        field_at: section.pointer_to_raw_data.get(LE) as usize + offset as usize,
                    }
                })
                .collect()
        }

        fn symbol_name(&self, index: usize) -> String {
            let sym = self.symtab.symbol(SymbolIndex(index)).unwrap();
            String::from_utf8(sym.name(self.symtab.strings()).unwrap().to_vec()).unwrap()
        }

        /// Index and entry of the first symbol called `name`.
        fn symbol(&self, name: &str) -> (usize, &'a pe::ImageSymbol) {
            self.symtab
                .iter()
                .find(|(_, s)| s.name(self.symtab.strings()) == Ok(name.as_bytes()))
                .map(|(i, s)| (i.0, s))
                .unwrap_or_else(|| panic!("the object has no symbol {name}"))
        }

        /// The selection (and associated section number) of a section.
        fn comdat(&self, name: &str) -> (u8, u16) {
            let (index, _) = self.symbol(name);
            let aux = self.symtab.aux_section(SymbolIndex(index)).unwrap();
            (aux.selection.0, aux.number.get(LE))
        }
    }

    fn section<'g>(g: &'g LinkGraph<'_>, name: &str) -> &'g Section<'g> {
        g.sections
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no section {name} in the graph"))
    }

    fn section_id(g: &LinkGraph<'_>, name: &str) -> SectionId {
        g.sections
            .iter()
            .position(|s| s.name == name)
            .unwrap_or_else(|| panic!("no section {name} in the graph"))
    }

    fn symbol<'g>(g: &'g LinkGraph<'_>, name: &str) -> (SymbolId, &'g Symbol<'g>) {
        g.symbols
            .iter()
            .enumerate()
            .find(|(_, s)| s.name == name)
            .unwrap_or_else(|| panic!("no symbol {name} in the graph"))
    }

    /// (offset, kind name, target name, addend) of a section's edges.
    fn edges<'g>(g: &'g LinkGraph<'_>, name: &str) -> Vec<(u64, &'static str, &'g str, i64)> {
        section(g, name)
            .edges
            .iter()
            .map(|e| (e.offset, *e.kind.name, g.symbols[e.target].name, e.addend))
            .collect()
    }

    fn set_u16(data: &mut [u8], at: usize, value: u16) {
        data[at..at + 2].copy_from_slice(&value.to_le_bytes());
    }

    fn set_u32(data: &mut [u8], at: usize, value: u32) {
        data[at..at + 4].copy_from_slice(&value.to_le_bytes());
    }

    const LIFECYCLE_C: &str = r#"
        int counter;
        extern int helper(int);
        __attribute__((constructor)) static void up(void) { counter += helper(1); }
        __attribute__((destructor)) static void down(void) { counter -= helper(2); }
        __attribute__((constructor(101))) static void first(void) { counter = helper(3); }
        #pragma comment(linker, "/alternatename:helper=helper_default")
        int helper_default(int x) { return x; }
    "#;

    #[test]
    fn constructors_and_destructors_become_crt_arrays() {
        let data = c(LIFECYCLE_C);
        let raw = Raw::new(&data);
        for name in [".CRT$XCU", ".CRT$XTX", ".CRT$XCA00101"] {
            assert_eq!(
                raw.relocs(name)[0].typ,
                pe::IMAGE_REL_AMD64_ADDR64.0,
                "{name}"
            );
        }
        let g = graph(&data);
        assert_eq!(g.format, ObjectFormat::Coff);
        let initializers = SectionRole::Initializers {
            priority: Some(1),
            reversed: false,
        };
        let terminators = SectionRole::Finalizers {
            priority: Some(1),
            reversed: true,
        };
        for (name, role, function) in [
            (".CRT$XCU", initializers, "up"),
            (".CRT$XCA00101", initializers, "first"),
            (".CRT$XTX", terminators, "down"),
        ] {
            let s = section(&g, name);
            assert_eq!(
                (s.role, s.protection, s.size),
                (role, Protection::ReadOnly, 8)
            );
            assert_eq!(
                edges(&g, name),
                [(0, "IMAGE_REL_AMD64_ADDR64", function, 0)]
            );
        }
        let text = section(&g, ".text");
        assert_eq!(
            (text.protection, text.role),
            (Protection::Code, SectionRole::Plain)
        );
        let (_, up) = symbol(&g, "up");
        assert_eq!(
            (up.binding, up.kind),
            (Binding::Local, SymbolKind::Function)
        );
    }

    #[test]
    fn crt_roles_follow_the_dollar_suffix() {
        let data = asm(r#"
            .text
            .globl f
        f:  ret
            .section .CRT$XIB,"dr"
            .quad f
            .section .CRT$XCU,"dr"
            .quad f
            .section .CRT$XPX,"dr"
            .quad f
            .section .CRT$XTZ,"dr"
            .quad f
        "#);
        let raw = Raw::new(&data);
        let g = graph(&data);
        for (name, role) in [
            (
                ".CRT$XIB",
                SectionRole::Initializers {
                    priority: Some(0),
                    reversed: false,
                },
            ),
            (
                ".CRT$XCU",
                SectionRole::Initializers {
                    priority: Some(1),
                    reversed: false,
                },
            ),
            (
                ".CRT$XPX",
                SectionRole::Finalizers {
                    priority: Some(0),
                    reversed: true,
                },
            ),
            (
                ".CRT$XTZ",
                SectionRole::Finalizers {
                    priority: Some(1),
                    reversed: true,
                },
            ),
        ] {
            assert_eq!(raw.relocs(name).len(), 1, "{name}");
            assert_eq!(section(&g, name).role, role, "{name}");
            assert_eq!(section(&g, name).protection, Protection::ReadOnly);
        }
    }

    #[test]
    fn tls_and_other_crt_tables_are_unsupported() {
        for (source, section, why) in [
            (
                ".section .CRT$XLB,\"dr\"\n.quad 0\n",
                ".CRT$XLB",
                "only the CRT's",
            ),
            (
                ".section .tls$,\"dw\"\n.long 1\n",
                ".tls$",
                "thread-local storage",
            ),
        ] {
            let data = asm(source);
            assert!(Raw::new(&data).has_section(section));
            match parse("t.obj", &data) {
                Err(LinkError::UnsupportedObject { reason, .. }) => {
                    assert!(reason.contains(section) && reason.contains(why), "{reason}")
                }
                other => panic!("{section}: {other:?}"),
            }
        }
    }

    #[test]
    fn unwind_tables_debug_info_and_directives_are_not_loaded() {
        let data = build(
            "c",
            LIFECYCLE_C,
            &["-O2", "-nostdinc", "-fno-stack-protector", "-g"],
        );
        let raw = Raw::new(&data);
        for name in [".pdata", ".xdata", ".drectve", ".llvm_addrsig", ".debug$S"] {
            assert!(raw.has_section(name), "the object has no {name}");
        }
        assert!(!raw.relocs(".pdata").is_empty());
        let g = graph(&data);
        for s in &g.sections {
            assert!(
                !s.name.starts_with(".pdata")
                    && !s.name.starts_with(".xdata")
                    && !s.name.starts_with(".debug")
                    && !s.name.starts_with(".llvm")
                    && s.name != ".drectve",
                "{} is loaded",
                s.name
            );
        }
        let (_, pdata) = symbol(&g, ".pdata");
        assert_eq!(
            (pdata.kind, pdata.definition),
            (SymbolKind::Section, Definition::Unplaced)
        );
    }

    #[test]
    fn auxiliary_records_keep_symbol_indices() {
        let data = build(
            "c",
            LIFECYCLE_C,
            &["-O2", "-nostdinc", "-fno-stack-protector", "-g"],
        );
        let raw = Raw::new(&data);
        let g = graph(&data);
        // Every symbol-table entry has a graph symbol at its index; the
        // auxiliary records are nameless placeholders.
        assert!(g.symbols.len() >= raw.symtab.len());
        let mut aux = 0;
        for (index, sym) in raw.symtab.iter() {
            assert_eq!(g.symbols[index.0].name, raw.symbol_name(index.0));
            for slot in 1..=usize::from(sym.number_of_aux_symbols()) {
                let placeholder = &g.symbols[index.0 + slot];
                assert_eq!(placeholder.name, "");
                assert_eq!(placeholder.definition, Definition::Unplaced);
                aux += 1;
            }
        }
        assert!(aux > 10, "only {aux} auxiliary records");
        // Every loaded relocation points at the symbol the file names.
        let mut checked = 0;
        for s in &g.sections {
            let relocs = raw.relocs(&s.name);
            assert_eq!(relocs.len(), s.edges.len(), "{}", s.name);
            for r in relocs {
                let edge = s
                    .edges
                    .iter()
                    .find(|e| e.offset == u64::from(r.offset))
                    .unwrap();
                assert_eq!(edge.target, r.symbol);
                assert_eq!(g.symbols[edge.target].name, r.symbol_name);
                checked += 1;
            }
        }
        // Targets after the `.file` and section records.
        let (helper, _) = symbol(&g, "helper");
        assert!(helper > aux, "helper is symbol {helper}");
        assert!(checked >= 6);
    }

    #[test]
    fn common_symbols_have_their_size_and_a_natural_alignment() {
        let data = build(
            "c",
            "int counter; double table[8]; char flag;\n\
             int use(void) { return counter + (int)table[3] + flag; }",
            &["-O2", "-nostdinc", "-fcommon"],
        );
        let raw = Raw::new(&data);
        let (_, counter) = raw.symbol("counter");
        assert_eq!(
            (counter.section_number(), counter.value()),
            (pe::IMAGE_SYM_UNDEFINED, 4)
        );
        let g = graph(&data);
        for (name, size, align) in [("counter", 4, 4), ("table", 64, 32), ("flag", 1, 1)] {
            let (_, sym) = symbol(&g, name);
            assert_eq!(sym.definition, Definition::Common { align }, "{name}");
            assert_eq!(
                (sym.size, sym.binding, sym.kind),
                (size, Binding::Global, SymbolKind::Data)
            );
        }
    }

    #[test]
    fn weak_definitions_and_weak_references() {
        let data = c(r#"
            __attribute__((weak)) int wf(void) { return 1; }
            extern int g(void) __attribute__((weak));
            int use(void) { return (g ? g() : 0) + wf(); }
        "#);
        let raw = Raw::new(&data);
        for name in ["wf", "g"] {
            assert_eq!(
                raw.symbol(name).1.storage_class(),
                pe::IMAGE_SYM_CLASS_WEAK_EXTERNAL
            );
        }
        let g = graph(&data);
        let (_, wf) = symbol(&g, "wf");
        let text = section_id(&g, ".text");
        assert_eq!(wf.binding, Binding::Weak);
        assert!(
            matches!(wf.definition, Definition::Defined { section, .. } if section == text),
            "{wf:?}"
        );
        assert_eq!((wf.kind, wf.fallback), (SymbolKind::Function, None));
        assert!(wf.size > 0);
        let (_, weak_ref) = symbol(&g, "g");
        assert_eq!(
            (weak_ref.binding, weak_ref.definition, weak_ref.fallback),
            (Binding::Weak, Definition::Undefined, None)
        );
    }

    #[test]
    fn weak_external_with_an_undefined_default_falls_back_to_it() {
        let data = asm("
            .weak foo
            foo = bar
            .text
            ret
        ");
        let raw = Raw::new(&data);
        let (foo_index, foo) = raw.symbol("foo");
        assert_eq!(foo.storage_class(), pe::IMAGE_SYM_CLASS_WEAK_EXTERNAL);
        let g = graph(&data);
        let (bar, _) = symbol(&g, "bar");
        let foo = &g.symbols[foo_index];
        assert_eq!(
            (foo.binding, foo.definition, foo.fallback),
            (Binding::Weak, Definition::Undefined, Some(bar))
        );
    }

    #[test]
    fn alternatename_pragma_gives_a_fallback() {
        let data = c(LIFECYCLE_C);
        let raw = Raw::new(&data);
        let directives = raw.section(".drectve").coff_data(&data[..]).unwrap();
        assert!(
            String::from_utf8_lossy(directives).contains("/alternatename:helper=helper_default")
        );
        let g = graph(&data);
        let (fallback, _) = symbol(&g, "helper_default");
        let (_, helper) = symbol(&g, "helper");
        assert_eq!(
            (helper.definition, helper.fallback),
            (Definition::Undefined, Some(fallback))
        );
    }

    #[test]
    fn alternatename_directive_may_name_a_new_symbol() {
        let data = asm(r#"
            .text
            .globl user
        user:
            call baz
            call quux
            ret
            .globl foo_default
        foo_default:
            ret
            .section .drectve,"yn"
            .ascii " -ALTERNATENAME:\"baz\"=\"qux\"  /DEFAULTLIB:libcmt \"/alternatename:quux=foo_default\""
        "#);
        let raw = Raw::new(&data);
        assert!(raw.has_section(".drectve"));
        let g = graph(&data);
        // `qux` is not in the symbol table: it comes after every entry.
        let (qux, qux_sym) = symbol(&g, "qux");
        assert_eq!(qux, raw.symtab.len());
        assert_eq!(
            (qux_sym.binding, qux_sym.definition, qux_sym.fallback),
            (Binding::Global, Definition::Undefined, None)
        );
        assert_eq!(symbol(&g, "baz").1.fallback, Some(qux));
        let (foo_default, _) = symbol(&g, "foo_default");
        assert_eq!(symbol(&g, "quux").1.fallback, Some(foo_default));
        assert_eq!(g.symbols.len(), raw.symtab.len() + 1);
    }

    #[test]
    fn directive_tokens_and_quotes() {
        assert_eq!(
            directive_tokens(" /a:\"b c\"  -d\t\"/e f\" "),
            ["/a:\"b c\"", "-d", "\"/e f\""]
        );
        assert_eq!(alternate_name("/ALTERNATENAME:a=b"), Ok(Some(("a", "b"))));
        assert_eq!(
            alternate_name("-alternatename:\"a\"=\"b\""),
            Ok(Some(("a", "b")))
        );
        assert_eq!(
            alternate_name("/alternatename:\"a=b\""),
            Ok(Some(("a", "b")))
        );
        assert_eq!(alternate_name("/DEFAULTLIB:libcmt"), Ok(None));
        assert!(alternate_name("/alternatename:a").is_err());
        assert!(alternate_name("/alternatename:=b").is_err());
    }

    #[test]
    fn comdat_sections_become_groups_with_their_selection() {
        let data = asm(r#"
            .text
            .globl main
        main:
            ret
            .section .text$f,"xr",discard,f
            .globl f
        f:  ret
            .section .text$g,"xr",one_only,g
            .globl g
        g:  ret
            .section .text$h,"xr",same_size,h
            .globl h
        h:  ret
            .section .text$i,"xr",same_contents,i
            .globl i
        i:  ret
            .section .text$j,"xr",largest,j
            .globl j
        j:  ret
            .section .data$x,"dw",associative,f
        xsym:
            .quad f
            .section .data$y,"dw",associative,xsym
            .quad 1
            .section .data$z,"dw",associative,main
            .quad 2
            .section .xdata$f,"dr",associative,f
            .long 3
        "#);
        let raw = Raw::new(&data);
        for (name, selection) in [
            (".text$f", pe::IMAGE_COMDAT_SELECT_ANY),
            (".text$g", pe::IMAGE_COMDAT_SELECT_NODUPLICATES),
            (".text$h", pe::IMAGE_COMDAT_SELECT_SAME_SIZE),
            (".text$i", pe::IMAGE_COMDAT_SELECT_EXACT_MATCH),
            (".text$j", pe::IMAGE_COMDAT_SELECT_LARGEST),
            (".data$x", pe::IMAGE_COMDAT_SELECT_ASSOCIATIVE),
            (".data$y", pe::IMAGE_COMDAT_SELECT_ASSOCIATIVE),
            (".data$z", pe::IMAGE_COMDAT_SELECT_ASSOCIATIVE),
        ] {
            assert!(
                raw.section(name)
                    .characteristics
                    .get(LE)
                    .contains(pe::IMAGE_SCN_LNK_COMDAT)
            );
            assert_eq!(raw.comdat(name).0, selection.0, "{name}");
        }
        // `.data$y` follows `.data$x`, which follows `.text$f`.
        assert_eq!(raw.comdat(".data$x").1, raw.section_number(".text$f"));
        assert_eq!(raw.comdat(".data$y").1, raw.section_number(".data$x"));

        let g = graph(&data);
        let id = |name| section_id(&g, name);
        let groups: Vec<_> = g
            .groups
            .iter()
            .map(|gr| (gr.signature, gr.selection, gr.sections.clone()))
            .collect();
        assert_eq!(
            groups,
            [
                (
                    "f",
                    ComdatSelection::Any,
                    vec![id(".text$f"), id(".data$x"), id(".data$y")]
                ),
                ("g", ComdatSelection::NoDuplicates, vec![id(".text$g")]),
                ("h", ComdatSelection::SameSize, vec![id(".text$h")]),
                ("i", ComdatSelection::ExactMatch, vec![id(".text$i")]),
                ("j", ComdatSelection::Largest, vec![id(".text$j")]),
            ]
        );
        // Associated with a section that leads no group: always kept.
        assert!(section(&g, ".data$z").live);
        assert!(!g.sections.iter().any(|s| s.name.starts_with(".xdata")));
        // The COMDAT symbols keep the object's binding.
        assert_eq!(symbol(&g, "f").1.binding, Binding::Global);
    }

    #[test]
    fn relocation_kinds_and_addends() {
        let data = asm(r#"
            .text
            .globl main
        main:
            movq %rax, x+8(%rip)
            call ext
            ret
            .data
            .globl x
        x:  .quad 0
            .quad ext+16
            .long ext+4
            .rva ext+12
            .secrel32 x+4
            .secidx x
            .quad main-8
        "#);
        let raw = Raw::new(&data);
        let types = |name| raw.relocs(name).iter().map(|r| r.typ).collect::<Vec<_>>();
        assert_eq!(
            types(".data"),
            [
                pe::IMAGE_REL_AMD64_ADDR64.0,
                pe::IMAGE_REL_AMD64_ADDR32.0,
                pe::IMAGE_REL_AMD64_ADDR32NB.0,
                pe::IMAGE_REL_AMD64_SECREL.0,
                pe::IMAGE_REL_AMD64_SECTION.0,
                pe::IMAGE_REL_AMD64_ADDR64.0,
            ]
        );
        assert_eq!(types(".text"), [pe::IMAGE_REL_AMD64_REL32.0; 2]);
        let g = graph(&data);
        assert_eq!(
            edges(&g, ".text"),
            [
                (3, "IMAGE_REL_AMD64_REL32", "x", 8 - 4),
                (8, "IMAGE_REL_AMD64_REL32", "ext", -4),
            ]
        );
        assert_eq!(
            edges(&g, ".data"),
            [
                (8, "IMAGE_REL_AMD64_ADDR64", "ext", 16),
                (16, "IMAGE_REL_AMD64_ADDR32", "ext", 4),
                (20, "IMAGE_REL_AMD64_ADDR32NB", "ext", 12),
                (24, "IMAGE_REL_AMD64_SECREL", "x", 4),
                (28, "IMAGE_REL_AMD64_SECTION", "x", 0),
                (30, "IMAGE_REL_AMD64_ADDR64", "main", -8),
            ]
        );
        let kinds: Vec<_> = section(&g, ".data").edges.iter().map(|e| e.kind).collect();
        assert_eq!(
            (kinds[0].op, kinds[0].width, kinds[0].check),
            (RelocOp::Absolute, 8, crate::arch::Check::Wrap)
        );
        assert_eq!(
            (kinds[1].op, kinds[1].width, kinds[1].check),
            (RelocOp::Absolute, 4, crate::arch::Check::Unsigned)
        );
        assert_eq!(
            (kinds[2].op, kinds[2].width, kinds[2].check),
            (RelocOp::ImageRelative, 4, crate::arch::Check::Unsigned)
        );
        assert_eq!(
            (kinds[3].op, kinds[3].width, kinds[3].check),
            (RelocOp::SegmentOffset, 4, crate::arch::Check::Unsigned)
        );
        assert_eq!(
            (kinds[4].op, kinds[4].width, kinds[4].check),
            (RelocOp::SegmentIndex, 2, crate::arch::Check::Unsigned)
        );
        let rel32 = section(&g, ".text")
            .edges
            .iter()
            .next()
            .expect("an edge")
            .kind;
        assert_eq!(
            (rel32.op, rel32.width, rel32.check),
            (RelocOp::PcRelative, 4, crate::arch::Check::Signed)
        );
        assert!(
            g.sections
                .iter()
                .all(|s| s.edges.iter().all(|e| e.minus().is_none()))
        );
    }

    /// LLVM always writes `REL32` and folds the immediate's length into the
    /// field; MSVC writes `REL32_N` with the field left at the displacement.
    /// Rewriting LLVM's relocations MSVC's way must give the same addends.
    #[test]
    fn rel32_n_relocations_subtract_the_trailing_immediate() {
        let mut data = asm(r#"
            .text
            movb $1, x(%rip)
            cmpw $0x1234, x(%rip)
            movl $1, x(%rip)
            movq %rax, x(%rip)
            movq %rax, x+16(%rip)
            .data
        x:  .quad 0
        "#);
        let llvm: Vec<i64> = graph(&data).sections[0]
            .edges
            .iter()
            .map(|e| e.addend)
            .collect();
        assert_eq!(llvm, [-5, -6, -8, -4, 12]);
        let relocs = Raw::new(&data).relocs(".text");
        assert_eq!(relocs.len(), 5);
        // (type, content): the first three as MSVC writes them for these
        // instructions, the last two synthetic.
        let msvc = [
            (pe::IMAGE_REL_AMD64_REL32_1, 0),
            (pe::IMAGE_REL_AMD64_REL32_2, 0),
            (pe::IMAGE_REL_AMD64_REL32_4, 0),
            (pe::IMAGE_REL_AMD64_REL32_3, 0),
            (pe::IMAGE_REL_AMD64_REL32_5, 16),
        ];
        for (r, (typ, content)) in relocs.iter().zip(msvc) {
            set_u16(&mut data, r.record_at + 8, typ.0);
            set_u32(&mut data, r.field_at, content);
        }
        let relocs = Raw::new(&data).relocs(".text");
        assert_eq!(
            relocs.iter().map(|r| r.typ).collect::<Vec<_>>(),
            msvc.map(|(typ, _)| typ.0)
        );
        let g = graph(&data);
        let expected: Vec<_> = relocs
            .iter()
            .zip([
                ("IMAGE_REL_AMD64_REL32_1", -5),
                ("IMAGE_REL_AMD64_REL32_2", -6),
                ("IMAGE_REL_AMD64_REL32_4", -8),
                ("IMAGE_REL_AMD64_REL32_3", -7),
                ("IMAGE_REL_AMD64_REL32_5", 16 - 9),
            ])
            .map(|(r, (name, addend))| (u64::from(r.offset), name, "x", addend))
            .collect();
        assert_eq!(edges(&g, ".text"), expected);
    }

    #[test]
    fn relocation_count_overflow_is_read_from_the_first_record() {
        let data = asm("
            .data
        x:  .rept 70000
            .quad x
            .endr
        ");
        let raw = Raw::new(&data);
        let data_section = raw.section(".data");
        assert!(
            data_section
                .characteristics
                .get(LE)
                .contains(pe::IMAGE_SCN_LNK_NRELOC_OVFL)
        );
        assert_eq!(data_section.number_of_relocations.get(LE), 0xffff);
        let g = graph(&data);
        let edges: Vec<Edge> = section(&g, ".data").edges.iter().collect();
        assert_eq!(edges.len(), 70000);
        assert_eq!(edges[69999].offset, 69999 * 8);
        assert!(edges.windows(2).all(|w| w[0].offset < w[1].offset));
    }

    #[test]
    fn bigobj_objects_use_32_bit_section_numbers() {
        // More sections than a plain COFF header can count: LLVM switches to
        // the bigobj header. The COMDAT pair at the end is numbered past
        // 65535, so its association needs the high half of the number.
        let data = asm(r#"
            .text
            .globl main
        main:
            ret
            .altmacro
            .macro many n
            .section .data$\n,"dw"
            .quad main
            .endm
            .set n, 0
            .rept 65600
            many %n
            .set n, n+1
            .endr
            .section .text$last,"xr",discard,last
            .globl last
        last:
            ret
            .section .data$last,"dw",associative,last
            .quad last
        "#);
        assert!(is_bigobj(&data) && is_coff(&data));
        let g = graph(&data);
        let many = g
            .sections
            .iter()
            .filter(|s| s.name.starts_with(".data$") && s.name != ".data$last")
            .count();
        assert_eq!(many, 65600);
        let last = section_id(&g, ".text$last");
        assert!(last > 65536);
        let (_, sym) = symbol(&g, "last");
        assert_eq!(
            sym.definition,
            Definition::Defined {
                section: last,
                offset: 0
            }
        );
        assert_eq!(g.groups.len(), 1);
        assert_eq!(g.groups[0].sections, [last, section_id(&g, ".data$last")]);
        assert_eq!(
            edges(&g, ".data$last"),
            [(0, "IMAGE_REL_AMD64_ADDR64", "last", 0)]
        );
    }

    #[test]
    fn truncated_objects_are_errors() {
        let data = c(LIFECYCLE_C);
        assert!(Raw::new(&data).has_section(".llvm_addrsig")); // a long name, at the end
        for cut in 0..data.len() {
            match parse("cut.obj", &data[..cut]) {
                Err(LinkError::Malformed { .. }) => {}
                other => panic!("cut at {cut} of {}: {other:?}", data.len()),
            }
        }
    }

    #[test]
    fn corrupted_bytes_never_panic() {
        let data = c(LIFECYCLE_C);
        for at in 0..data.len() {
            for value in [0x00, 0x01, 0x7f, 0x80, 0xff] {
                let mut bad = data.clone();
                bad[at] = value;
                let _ = parse("bad.obj", &bad);
            }
        }
    }

    #[test]
    fn corrupted_relocations_are_errors() {
        let data = asm(r#"
            .file "t.s"
            .text
            .globl main
        main:
            call ext
            ret
        "#);
        let raw = Raw::new(&data);
        let relocs = raw.relocs(".text");
        assert_eq!(relocs.len(), 1);
        let r = &relocs[0];
        let (file, _) = raw.symbol(".file");
        let (text, _) = raw.symbol(".text");
        let text_size = raw.section(".text").size_of_raw_data.get(LE);
        let patch = |at: usize, bytes: &[u8]| {
            let mut bad = data.clone();
            bad[at..at + bytes.len()].copy_from_slice(bytes);
            match parse("bad.obj", &bad) {
                Err(e) => e.to_string(),
                Ok(_) => panic!("patching {bytes:?} at {at} was accepted"),
            }
        };
        let symbol_at = r.record_at + 4;
        let cases = [
            (symbol_at, u32::MAX.to_le_bytes().to_vec(), "out of range"),
            (
                symbol_at,
                (text as u32 + 1).to_le_bytes().to_vec(),
                "auxiliary record",
            ),
            (
                symbol_at,
                (file as u32).to_le_bytes().to_vec(),
                "no address",
            ),
            (
                r.record_at,
                (text_size - 3).to_le_bytes().to_vec(),
                "does not fit",
            ),
            (
                r.record_at + 8,
                0x11u16.to_le_bytes().to_vec(),
                "unknown AMD64 COFF relocation type 17",
            ),
            (
                r.record_at + 8,
                pe::IMAGE_REL_AMD64_SREL32.0.to_le_bytes().to_vec(),
                "IMAGE_REL_AMD64_SREL32",
            ),
        ];
        for (at, bytes, expected) in cases {
            let message = patch(at, &bytes);
            assert!(message.contains(expected), "{message}");
            assert!(message.contains(".text"), "{message}");
        }
    }

    #[test]
    fn weak_external_loops_are_malformed() {
        let mut data = asm("
            .weak foo
            foo = bar
            .weak bar
            bar = foo2
            .text
            ret
        ");
        let raw = Raw::new(&data);
        let (foo, _) = raw.symbol("foo");
        let (bar, bar_sym) = raw.symbol("bar");
        assert_eq!(bar_sym.storage_class(), pe::IMAGE_SYM_CLASS_WEAK_EXTERNAL);
        // The chain foo -> bar -> foo2 is fine...
        let g = graph(&data);
        assert_eq!(g.symbols[foo].fallback, Some(bar));
        // ... but not bar -> foo.
        let aux_at = raw.symtab_at + (bar + 1) * pe::IMAGE_SIZEOF_SYMBOL;
        set_u32(&mut data, aux_at, foo as u32);
        match parse("loop.obj", &data) {
            Err(LinkError::Malformed { reason, .. }) => {
                assert!(reason.contains("loop"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }
}
