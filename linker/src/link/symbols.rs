//! The load's global symbol table: which definition each global name
//! means, by precedence (strong, then common, then weak), and which common
//! symbols this load allocates.

use rustc_hash::FxHashMap as HashMap;

use super::LinkRequest;
use super::globals::{Globals, Winner};
use crate::error::LinkError;
use crate::graph::*;

/// A common (tentative) symbol the load allocates: the largest size and
/// alignment any object gave it.
pub(super) struct Common<'a> {
    pub name: &'a str,
    pub size: u64,
    pub align: u64,
}

/// The load's global symbol table: strong beats common beats weak; two
/// strong definitions are an error naming both objects.
pub(super) fn collect<'a>(
    graphs: &'a [LinkGraph<'a>],
    req: &LinkRequest<'_>,
) -> Result<(Globals<'a>, Vec<Common<'a>>), LinkError> {
    fn rank(sym: &Symbol<'_>) -> u8 {
        match (sym.definition, sym.binding) {
            (Definition::Common { .. }, _) => 1,
            (_, Binding::Weak) => 0,
            _ => 2,
        }
    }
    // Sized once for every global definition (a large load's table would
    // otherwise be placed again a dozen times as it grows).
    let defined = global_definitions(graphs, req.threads);
    let mut globals = Globals::with_capacity(defined.len());
    let mut common_sizes: HashMap<&'a str, (u64, u64)> = HashMap::default();
    for (at, &(g, id, hash)) in defined.iter().enumerate() {
        // The slot of a definition a few ahead is asked for now, so that
        // the waits for memory overlap.
        if let Some(&(_, _, ahead)) = defined.get(at + AHEAD) {
            globals.prefetch(ahead);
        }
        let graph = &graphs[g];
        let sym = &graph.symbols[id];
        match sym.definition {
            Definition::Defined { section, .. } if graph.sections[section as SectionId].live => {}
            Definition::Absolute(_) => {}
            Definition::Common { align } => {
                // The slab places a module on a page boundary: an
                // offset aligned to more would not be an aligned address.
                let page = req.slab.page();
                if align > page {
                    return Err(LinkError::UnsupportedObject {
                        object: graph.object.clone(),
                        reason: format!(
                            "common symbol `{}`: alignment {align:#x} is larger than the page \
                             size ({page:#x}), the most a module's placement guarantees",
                            sym.name
                        ),
                    });
                }
                let entry = common_sizes.entry(sym.name).or_insert((0, 1));
                entry.0 = entry.0.max(sym.size);
                entry.1 = entry.1.max(align);
            }
            _ => continue,
        }
        let Some(this) = Winner::new(g, id) else {
            return Err(LinkError::UnsupportedObject {
                object: graph.object.clone(),
                reason: format!(
                    "symbol {id} (`{}`) of object {g} of the load: the global table holds \
                     32-bit object and symbol indices",
                    sym.name
                ),
            });
        };
        match globals.insert_or_get(hash, sym.name, this) {
            None => {}
            Some(winner) => {
                let (g0, id0) = winner.at();
                let existing = &graphs[g0].symbols[id0];
                let (old, new) = (rank(existing), rank(sym));
                if old == 2 && new == 2 {
                    return Err(LinkError::Duplicate {
                        symbol: sym.name.to_string(),
                        first: graphs[g0].object.clone(),
                        second: graph.object.clone(),
                    });
                }
                if new > old {
                    *winner = this;
                }
            }
        }
    }
    no_clash_with_session(graphs, &globals, req)?;
    // Sorted by name: resolution finds a common by binary search.
    let mut commons = Vec::new();
    let mut names: Vec<&&str> = common_sizes.keys().collect();
    names.sort();
    for name in names {
        // Every common symbol was put in the table (the first definition of
        // a name is), and a later one only replaces it.
        let Some((g, id)) = globals.get(name) else {
            continue;
        };
        let sym = &graphs[g].symbols[id];
        let in_session = req
            .exports
            .get(*name)
            .is_some_and(|e| Some(e.module) != req.replacing);
        if matches!(sym.definition, Definition::Common { .. })
            && !(yields_to_session(sym) && in_session)
        {
            let (size, align) = common_sizes[*name];
            commons.push(Common { name, size, align });
        }
    }
    Ok((globals, commons))
}

/// Refuses a strong definition that clashes with another live module's
/// export (weak and common ones yield to it instead). With no export in
/// the session (a program's first load), none can clash: the winners are
/// not read (each one a cache miss in a large load).
fn no_clash_with_session(
    graphs: &[LinkGraph<'_>],
    globals: &Globals<'_>,
    req: &LinkRequest<'_>,
) -> Result<(), LinkError> {
    if req.exports.is_empty() {
        return Ok(());
    }
    for (name, (g, id)) in globals.iter() {
        let sym = &graphs[g].symbols[id];
        if yields_to_session(sym) || !sym.visibility.exported() {
            continue;
        }
        if let Some(export) = req.exports.get(name)
            && Some(export.module) != req.replacing
        {
            return Err(LinkError::Duplicate {
                symbol: name.to_string(),
                first: (req.describe_module)(export.module),
                second: graphs[g].object.clone(),
            });
        }
    }
    Ok(())
}

/// Every global definition of `graphs` (graph, symbol and its name's
/// hash), in order, made on the load's threads.
fn global_definitions(
    graphs: &[LinkGraph<'_>],
    threads: crate::parallel::Threads,
) -> Vec<(usize, SymbolId, u64)> {
    let indices: Vec<usize> = (0..graphs.len()).collect();
    let weight = |&g: &usize| 8 * graphs[g].symbols.len();
    crate::parallel::flat_map(&indices, threads, weight, |&g, defined| {
        let symbols = graphs[g].symbols.iter().enumerate();
        defined.extend(
            symbols
                .filter(|(_, sym)| {
                    sym.binding != Binding::Local
                        && !sym.name.is_empty()
                        && sym.definition != Definition::Undefined
                })
                .map(|(id, sym)| (g, id, Globals::hash(sym.name))),
        );
    })
}

/// How many definitions ahead of the one being put in the table its slot
/// is asked for.
const AHEAD: usize = 16;

/// Whether a definition gives way to one another live module exports: weak
/// and common (tentative) definitions do, as in a dynamic linker's global
/// scope; strong ones clash with it.
pub(super) fn yields_to_session(sym: &Symbol<'_>) -> bool {
    sym.visibility.exported()
        && (sym.binding == Binding::Weak || matches!(sym.definition, Definition::Common { .. }))
}
