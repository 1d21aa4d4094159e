//! Mach-O symbols, numbered as in the symbol table (nlist entries), then
//! one synthetic symbol per loaded section: non-extern relocations name a
//! section by ordinal, and target those.

use std::collections::BTreeSet;
use std::sync::Mutex;

use object::LittleEndian;
use object::macho;
use object::read::StringTable;
use object::read::macho::Nlist;

use super::{Header, Input, LE, Raw};
use crate::error::LinkError;
use crate::format::ObjectErrors;
use crate::graph::*;

type Nlist64 = macho::Nlist64<LittleEndian>;

/// The symbols, and the id of the first section symbol (the number of
/// nlist entries).
pub(super) fn read<'a>(
    input: &Input<'_, 'a>,
    symtab: Option<&'a macho::SymtabCommand<LittleEndian>>,
    raws: &[Raw<'a>],
    sections: &[Section<'a>],
) -> Result<(Vec<Symbol<'a>>, usize), LinkError> {
    let (nlists, strings) = match symtab {
        Some(command) => {
            let table = command
                .symbols::<Header, _>(LE, input.data)
                .map_err(|e| input.malformed(format!("symbol table: {e}")))?;
            (table.symbols(), table.strings())
        }
        None => (&[][..], Default::default()),
    };
    let marks = section_ends(nlists, raws);
    let mut symbols = Vec::with_capacity(nlists.len() + sections.len());
    for (index, nlist) in nlists.iter().enumerate() {
        symbols.push(nlist_symbol(
            input, index, nlist, strings, raws, sections, &marks,
        )?);
    }
    // The section symbols that non-extern relocations target, in graph
    // section order: section `id` is symbol `nsyms + id`.
    let nsyms = symbols.len();
    for raw in raws {
        if let Some(section) = raw.placed {
            debug_assert_eq!(nsyms + section, symbols.len());
            symbols.push(Symbol {
                name: intern(&raw.name),
                binding: Binding::Local,
                visibility: Visibility::Default,
                kind: SymbolKind::Section,
                definition: Definition::defined(section, 0),
                size: 0,
                fallback: None,
            });
        }
    }

    Ok((symbols, nsyms))
}

/// Mach-O symbols have no sizes: a symbol extends to the next symbol
/// address in its section. Those addresses, sorted, per section ordinal - 1.
fn section_ends(nlists: &[Nlist64], raws: &[Raw<'_>]) -> Vec<Vec<u64>> {
    let mut marks: Vec<Vec<u64>> = vec![Vec::new(); raws.len()];
    for nlist in nlists {
        let n_type = nlist.n_type();
        if !n_type.is_stab()
            && n_type.typ() == macho::N_SECT
            && let Some(list) = marks.get_mut(usize::from(nlist.n_sect()).wrapping_sub(1))
        {
            list.push(nlist.n_value(LE));
        }
    }
    for list in &mut marks {
        list.sort_unstable();
        list.dedup();
    }
    marks
}

/// The name of nlist entry `index`: UTF-8, and not empty for an external
/// symbol (a global is known by its name alone: one without a name could
/// neither be looked up nor bound to).
fn nlist_name<'a>(
    input: &Input<'_, 'a>,
    index: usize,
    nlist: &'a Nlist64,
    strings: StringTable<'a>,
) -> Result<&'a str, LinkError> {
    let name_bytes = nlist
        .name(LE, strings)
        .map_err(|e| input.malformed(format!("symbol {index}: name: {e}")))?;
    let name = std::str::from_utf8(name_bytes)
        .map_err(|_| input.malformed(format!("symbol {index}: name is not UTF-8")))?;
    let n_type = nlist.n_type();
    if name.is_empty() && !n_type.is_stab() && n_type.contains(macho::N_EXT) {
        return Err(input.malformed(format!(
            "symbol {index}: an external (N_EXT) symbol has an empty name (n_strx {})",
            nlist.n_strx(LE)
        )));
    }
    Ok(name)
}

/// The symbol of one nlist entry.
fn nlist_symbol<'a>(
    input: &Input<'_, 'a>,
    index: usize,
    nlist: &'a Nlist64,
    strings: StringTable<'a>,
    raws: &[Raw<'a>],
    sections: &[Section<'a>],
    marks: &[Vec<u64>],
) -> Result<Symbol<'a>, LinkError> {
    let name = nlist_name(input, index, nlist, strings)?;
    let n_type = nlist.n_type();
    let n_desc = nlist.n_desc(LE).0;
    let n_value = nlist.n_value(LE);
    if n_type.is_stab() {
        // Debugging entries: kept so that indices stay the object's.
        return Ok(Symbol {
            name,
            binding: Binding::Local,
            visibility: Visibility::Default,
            kind: SymbolKind::Other,
            definition: Definition::Unplaced,
            size: 0,
            fallback: None,
        });
    }
    let external = n_type.contains(macho::N_EXT);
    let mut binding = if external {
        Binding::Global
    } else {
        Binding::Local
    };
    let visibility = if n_type.is_pext() {
        Visibility::Hidden
    } else {
        Visibility::Default
    };
    let (definition, kind, size) = match n_type.typ() {
        macho::N_UNDF if external && n_value != 0 => {
            let align = 1u64 << ((n_desc >> 8) & 0x0f);
            (Definition::Common { align }, SymbolKind::Data, n_value)
        }
        macho::N_UNDF => {
            if n_desc & macho::N_WEAK_REF.0 != 0 {
                binding = Binding::Weak;
            }
            (Definition::Undefined, SymbolKind::Other, 0)
        }
        macho::N_ABS => (Definition::Absolute(n_value), SymbolKind::Other, 0),
        macho::N_SECT => {
            let ordinal = usize::from(nlist.n_sect());
            let raw = ordinal
                .checked_sub(1)
                .and_then(|i| raws.get(i))
                .ok_or_else(|| {
                    input.malformed(format!(
                        "symbol {name}: section ordinal {ordinal} is out of range \
                         (the object has {} sections)",
                        raws.len()
                    ))
                })?;
            if n_value < raw.addr || n_value > raw.end() {
                return Err(input.malformed(format!(
                    "symbol {name}: address {n_value:#x} is outside its section {} \
                     ({:#x}..{:#x})",
                    raw.name,
                    raw.addr,
                    raw.end()
                )));
            }
            if n_desc & macho::N_SYMBOL_RESOLVER.0 != 0 {
                return Err(input.unsupported(format!(
                    "symbol {name}: resolver functions (N_SYMBOL_RESOLVER) are not supported"
                )));
            }
            if external && n_desc & macho::N_WEAK_DEF.0 != 0 {
                binding = Binding::Weak;
            }
            let list = &marks[ordinal - 1];
            let next = list[list.partition_point(|&a| a <= n_value)..]
                .first()
                .copied()
                .unwrap_or(raw.end());
            let size = next - n_value;
            match raw.placed {
                Some(section) => {
                    let kind = if sections[section].role == SectionRole::ThreadLocal {
                        SymbolKind::ThreadLocal
                    } else if sections[section].protection == Protection::Code {
                        SymbolKind::Function
                    } else {
                        SymbolKind::Data
                    };
                    let offset = n_value - raw.addr;
                    (Definition::defined(section, offset), kind, size)
                }
                None => (Definition::Unplaced, SymbolKind::Data, size),
            }
        }
        macho::N_INDR => {
            return Err(input.unsupported(format!(
                "symbol {name}: indirect symbols (N_INDR) are not supported"
            )));
        }
        macho::N_PBUD => {
            return Err(input.unsupported(format!(
                "symbol {name}: prebound undefined symbols (N_PBUD) are not supported"
            )));
        }
        other => {
            return Err(
                input.malformed(format!("symbol {name}: unknown symbol type {:#x}", other.0))
            );
        }
    };
    Ok(Symbol {
        name,
        binding,
        visibility,
        kind,
        definition,
        size,
        fallback: None,
    })
}

/// A `&str` that outlives the object for a section symbol's name, which
/// Mach-O does not store as one string (`segname,sectname`). Interned
/// process-wide, so each distinct name is allocated once however many
/// objects are loaded.
fn intern(name: &str) -> &'static str {
    static NAMES: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
    // The set is only ever inserted into, so a poisoned lock is still sound.
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(&interned) = names.get(name) {
        return interned;
    }
    let interned: &'static str = Box::leak(name.to_owned().into_boxed_str());
    names.insert(interned);
    interned
}
