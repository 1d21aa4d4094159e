//! The load's global symbol table: which definition each global name
//! means, by precedence (strong, then common, then weak), and which common
//! symbols this load allocates.

use rustc_hash::FxHashMap as HashMap;

use super::LinkRequest;
use crate::error::LinkError;
use crate::graph::*;

/// A common (tentative) symbol the load allocates: the largest size and
/// alignment any object gave it.
pub(super) struct Common<'a> {
    pub name: &'a str,
    pub size: u64,
    pub align: u64,
}

/// Global name -> (graph, symbol) of the definition that wins.
pub(super) type Globals<'a> = HashMap<&'a str, (usize, SymbolId)>;

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
    // Sized once (a large load's table would otherwise be rehashed a
    // dozen times as it grows): at most every global definition.
    let named = graphs
        .iter()
        .flat_map(|g| &g.symbols)
        .filter(|sym| sym.is_global_definition())
        .count();
    let mut globals: Globals<'a> = HashMap::with_capacity_and_hasher(named, Default::default());
    let mut common_sizes: HashMap<&'a str, (u64, u64)> = HashMap::default();
    for (g, graph) in graphs.iter().enumerate() {
        for (id, sym) in graph.symbols.iter().enumerate() {
            if sym.binding == Binding::Local || sym.name.is_empty() {
                continue;
            }
            match sym.definition {
                Definition::Defined { section, .. }
                    if graph.sections[section as SectionId].live => {}
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
            match globals.get(sym.name) {
                None => {
                    globals.insert(sym.name, (g, id));
                }
                Some(&(g0, id0)) => {
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
                        globals.insert(sym.name, (g, id));
                    }
                }
            }
        }
    }
    // Strong definitions that clash with another live module's exports.
    // Weak and common (tentative) definitions yield to those instead.
    for (&name, &(g, id)) in &globals {
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
    // Sorted by name: resolution finds a common by binary search.
    let mut commons = Vec::new();
    let mut names: Vec<&&str> = common_sizes.keys().collect();
    names.sort();
    for name in names {
        let (g, id) = globals[*name];
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

/// Whether a definition gives way to one another live module exports: weak
/// and common (tentative) definitions do, as in a dynamic linker's global
/// scope; strong ones clash with it.
pub(super) fn yields_to_session(sym: &Symbol<'_>) -> bool {
    sym.visibility.exported()
        && (sym.binding == Binding::Weak || matches!(sym.definition, Definition::Common { .. }))
}
