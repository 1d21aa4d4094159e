//! COFF symbols, numbered as in the symbol table (auxiliary records get
//! placeholder symbols, so indices line up): bindings and definitions by
//! storage class and section number, weak externals settled against their
//! default symbols, and sizes (COFF records none).

use object::pe;
use object::read::SymbolIndex;
use object::read::coff::{CoffHeader, Symbol as _};

use super::sections::Loaded;
use super::{Entry, Input};
use crate::error::LinkError;
use crate::format::ObjectErrors;
use crate::graph::*;

/// Every symbol of the table, index for index, and what each entry may be
/// used for.
pub(super) fn read<'a, Coff: CoffHeader>(
    input: &Input<'_, 'a, Coff>,
    loaded: &Loaded<'a>,
) -> Result<(Vec<Symbol<'a>>, Vec<Entry>), LinkError> {
    let mut symbols = Vec::with_capacity(input.raw.len());
    let mut entries = Vec::with_capacity(input.raw.len());
    let mut weak_externals = Vec::new();
    for (index, entry) in input.raw.iter().enumerate() {
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
        let (symbol, note) = symbol_of(input, loaded, index, sym, name, &mut weak_externals)?;
        symbols.push(symbol);
        entries.push(note);
    }
    settle_weak_externals(input, &weak_externals, &entries, &mut symbols)?;
    assign_sizes(&loaded.sections, &mut symbols);
    Ok((symbols, entries))
}

/// The symbol of one (non-auxiliary) entry. A weak external's index goes
/// to `weak_externals`: it is settled once every default symbol is known.
fn symbol_of<'a, Coff: CoffHeader>(
    input: &Input<'_, 'a, Coff>,
    loaded: &Loaded<'a>,
    index: usize,
    sym: &'a Coff::Symbol,
    name: &'a str,
    weak_externals: &mut Vec<usize>,
) -> Result<(Symbol<'a>, Entry), LinkError> {
    let class = sym.storage_class();
    let number = sym.section_number();
    let value = u64::from(sym.value());
    // A definition at `value` in section `number` (1-based).
    let in_section = |number: u32| -> Result<Definition, LinkError> {
        let Some(&slot) = loaded.placed.get(number as usize - 1) else {
            return Err(input.malformed(format!(
                "symbol {name}: section number {number} is out of range ({} sections)",
                loaded.placed.len()
            )));
        };
        let Some(section) = slot else {
            return Ok(Definition::Unplaced);
        };
        let size = loaded.sections[section].size;
        if value > size {
            return Err(input.malformed(format!(
                "symbol {name}: value {value:#x} is past the end of section {} ({size:#x} bytes)",
                loaded.sections[section].name
            )));
        }
        Ok(Definition::defined(section, value))
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
                            return Err(input.malformed(format!(
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
    let in_code = definition
        .place()
        .is_some_and(|(section, _)| loaded.sections[section].protection == Protection::Code);
    let kind = if is_section_symbol {
        SymbolKind::Section
    } else if sym.derived_type() == pe::IMAGE_SYM_DTYPE_FUNCTION || in_code {
        SymbolKind::Function
    } else {
        match definition {
            Definition::Defined { .. } | Definition::Absolute(_) | Definition::Common { .. } => {
                SymbolKind::Data
            }
            Definition::Undefined | Definition::Unplaced => SymbolKind::Other,
        }
    };
    let size = match definition {
        Definition::Common { .. } => value,
        _ => 0, // defined symbols get theirs below
    };
    Ok((
        Symbol {
            name,
            binding,
            visibility: Visibility::Default,
            kind,
            definition,
            size,
            fallback: None,
        },
        note,
    ))
}

/// Weak externals: the auxiliary record names a default symbol (the tag)
/// and a characteristic, which says what the name means to other
/// objects:
///
/// - `IMAGE_WEAK_EXTERN_SEARCH_ALIAS` (3, what clang writes) and
///   `IMAGE_WEAK_EXTERN_SEARCH_LIBRARY` (2): the name is the default's,
///   for the whole link: with a default defined here it is a weak
///   definition others bind to (and the module exports), one a strong
///   definition elsewhere overrides.
/// - `IMAGE_WEAK_EXTERN_SEARCH_NOLIBRARY` (1): no search beyond what the
///   link already has, and no definition for anyone else: the name stays
///   undefined (another object's reference to it is satisfied only by
///   something else, and the module does not export it), and this
///   object's references mean another definition of the name if there is
///   one, else the default (a [`Symbol::fallback`]).
///
/// Other values (none is defined for x86-64 objects) are read as the
/// default's alias, as they were before the characteristic was read.
fn settle_weak_externals<Coff: CoffHeader>(
    input: &Input<'_, '_, Coff>,
    weak_externals: &[usize],
    entries: &[Entry],
    symbols: &mut [Symbol<'_>],
) -> Result<(), LinkError> {
    let mut tags: Vec<Option<usize>> = vec![None; input.raw.len()];
    // The weak externals without library search (by symbol index).
    let mut no_library = vec![false; input.raw.len()];
    for &index in weak_externals {
        let name = symbols[index].name;
        if input.raw.get(index + 1).is_none_or(|e| e.is_some()) {
            return Err(
                input.malformed(format!("weak external {name}: it has no auxiliary record"))
            );
        }
        let aux = input
            .symtab
            .aux_weak_external(SymbolIndex(index))
            .map_err(|e| input.malformed(format!("weak external {name}: {e}")))?;
        let tag = aux.default_symbol().0;
        no_library[index] = aux.weak_search_type.get(object::LittleEndian)
            == pe::IMAGE_WEAK_EXTERN_SEARCH_NOLIBRARY;
        match entries.get(tag) {
            None => {
                return Err(input.malformed(format!(
                    "weak external {name}: default symbol index {tag} is out of range"
                )));
            }
            Some(Entry::Aux) => {
                return Err(input.malformed(format!(
                    "weak external {name}: default symbol index {tag} is an auxiliary record"
                )));
            }
            Some(Entry::NoAddress(class)) => {
                return Err(input.malformed(format!(
                    "weak external {name}: default symbol `{}` (storage class {class}) has no address",
                    symbols[tag].name
                )));
            }
            Some(Entry::Addressed) => {}
        }
        tags[index] = Some(tag);
    }
    if let Some(index) = first_loop(&tags, weak_externals) {
        return Err(input.malformed(format!(
            "weak external {}: its default symbols form a loop",
            symbols[index].name
        )));
    }
    for &index in weak_externals {
        let Some(tag) = tags[index] else { continue };
        let default = &symbols[tag];
        let (definition, fallback) = match default.definition {
            // Another weak external: it is what this one means.
            _ if tags[tag].is_some() => (Definition::Undefined, Some(tag)),
            // clang's weak references: 0 when nothing defines the symbol.
            Definition::Absolute(0) => (Definition::Undefined, None),
            // No library search: undefined for everyone else, the default
            // for this object when nothing defines the name.
            _ if no_library[index] => (Definition::Undefined, Some(tag)),
            // clang's weak definitions: the tag is the definition.
            Definition::Defined { .. } | Definition::Unplaced => (default.definition, None),
            Definition::Absolute(value) => (Definition::Absolute(value), None),
            Definition::Undefined | Definition::Common { .. } => (Definition::Undefined, Some(tag)),
        };
        let kind = match definition {
            _ if symbols[index].kind == SymbolKind::Function => SymbolKind::Function,
            Definition::Defined { .. } | Definition::Absolute(_) => default.kind,
            // What the default is, for a name left undefined that means it.
            Definition::Undefined
                if no_library[index]
                    && matches!(default.definition, Definition::Defined { .. }) =>
            {
                default.kind
            }
            _ => SymbolKind::Other,
        };
        let fallback = match fallback {
            Some(tag) => Some(fallback_to(input, tag)?),
            None => None,
        };
        let sym = &mut symbols[index];
        sym.definition = definition;
        sym.fallback = fallback;
        sym.kind = kind;
    }

    Ok(())
}

/// Symbol `id` as another symbol's fallback (its alternate name); an
/// error for an index past what a fallback holds.
pub(super) fn fallback_to<Coff: CoffHeader>(
    input: &Input<'_, '_, Coff>,
    id: usize,
) -> Result<Fallback, LinkError> {
    Fallback::new(id).ok_or_else(|| {
        input.malformed(format!(
            "symbol {id}: too many symbols for an alternate name"
        ))
    })
}

/// A weak external whose chain of default symbols loops instead of ending
/// in a symbol that is not one. Linear: every symbol is walked once (a
/// walk stops where an earlier one was found to end).
fn first_loop(tags: &[Option<usize>], weak_externals: &[usize]) -> Option<usize> {
    #[derive(Clone, Copy, PartialEq)]
    enum Walk {
        Unseen,
        OnPath,
        Ends,
    }
    let mut walk = vec![Walk::Unseen; tags.len()];
    let mut path = Vec::new();
    for &start in weak_externals {
        let mut at = start;
        loop {
            match walk[at] {
                Walk::Ends => break,
                Walk::OnPath => return Some(start),
                Walk::Unseen => {}
            }
            match tags[at] {
                Some(next) => {
                    walk[at] = Walk::OnPath;
                    path.push(at);
                    at = next;
                }
                None => {
                    walk[at] = Walk::Ends;
                    break;
                }
            }
        }
        for done in path.drain(..) {
            walk[done] = Walk::Ends;
        }
    }
    None
}

/// COFF has no symbol sizes: a defined symbol extends to the next one in
/// its section, or to the section's end.
fn assign_sizes(sections: &[Section<'_>], symbols: &mut [Symbol<'_>]) {
    let mut starts: Vec<(SectionId, u64)> = symbols
        .iter()
        .filter(|s| s.kind != SymbolKind::Section)
        .filter_map(|s| s.definition.place())
        .collect();
    starts.sort_unstable();
    starts.dedup();
    for sym in symbols.iter_mut() {
        if sym.kind == SymbolKind::Section {
            continue;
        }
        if let Some((section, offset)) = sym.definition.place() {
            let next = starts.partition_point(|&start| start <= (section, offset));
            let end = match starts.get(next) {
                Some(&(s, start)) if s == section => start,
                _ => sections[section].size,
            };
            sym.size = end - offset;
        }
    }
}
