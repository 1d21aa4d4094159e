//! What a module offers and records once written: its exports (the
//! definitions later loads may bind to) and the function symbols crash
//! reports name.

use std::sync::Arc;

use solder_executor::abi::CallingConvention;
use solder_executor::module::CrashSymbol;

use super::Export;
use super::resolutions::Resolutions;
use super::resolve::{Origin, Resolver, Target};
use super::write::Addresses;
use crate::graph::*;

/// What a written module records of its symbols: the definitions it
/// exports (later loads bind to them) and its placed function symbols
/// (crash reports and profilers name them). A symbol that is both has
/// its name made once, shared by the two.
pub(super) struct Recorded {
    pub(super) exports: Vec<(Arc<str>, Export)>,
    pub(super) crash_symbols: Vec<CrashSymbol>,
}

/// What the load records of its symbols, in pieces of consecutive
/// objects (one on one thread), in load order. A definition bound to
/// another module's (a weak or common one yielding to it) is not exported,
/// nor is a weak one while another live module exports the name. Large
/// loads make them on several threads, object by object in load order
/// whatever the number. The pieces are kept as they are: one list would
/// be a copy of them all in fresh memory, at the link's peak.
pub(super) fn record(
    resolver: &Resolver<'_, '_, '_>,
    at: &Addresses<'_>,
    convention: CallingConvention,
) -> Vec<Recorded> {
    let from = Exporter {
        graphs: resolver.graphs,
        cache: &resolver.cache,
        commons: resolver.commons,
        session: resolver.req.exports,
        replacing: resolver.req.replacing,
        module: resolver.req.module,
        convention,
        at,
    };
    // Object by object, symbol by symbol: the symbols, their names and
    // the resolution cache are read in the order they lie in memory, and a
    // large load's objects are shared out among its threads. Which
    // definitions won their names is marked first, in one pass over the
    // global table, instead of asking the table symbol by symbol (a cache
    // miss each in a large load's table).
    let graphs = resolver.graphs;
    let mut winners: Vec<Vec<bool>> = graphs
        .iter()
        .map(|g| vec![false; g.symbols.len()])
        .collect();
    for (g, id) in resolver.globals.values() {
        winners[g][id] = true;
    }
    let indices: Vec<usize> = (0..graphs.len()).collect();
    let weight = |&g: &usize| 40 * graphs[g].symbols.len();
    // One record per piece of objects, not per object: on one thread,
    // everything goes straight into one record.
    crate::parallel::map_pieces(&indices, resolver.req.threads, weight, |piece| {
        // Room for the most there can be, taken up front: the two lists
        // grow side by side, and growing one would copy it past the other
        // into fresh memory (room never used is never backed).
        let count = |counted: fn(&Symbol<'_>, bool) -> bool| -> usize {
            let symbols = piece
                .iter()
                .map(|&g| graphs[g].symbols.iter().zip(&winners[g]));
            symbols
                .flatten()
                .filter(|(s, won)| counted(s, **won))
                .count()
        };
        let mut recorded = Recorded {
            exports: Vec::with_capacity(count(|_, won| won)),
            crash_symbols: Vec::with_capacity(count(|s, _| s.kind == SymbolKind::Function)),
        };
        for &g in piece {
            from.record(g, &winners[g], &mut recorded);
        }
        vec![recorded]
    })
}

/// What making exports reads, shared by the threads that make them.
struct Exporter<'r, 'g, 'a> {
    graphs: &'g [LinkGraph<'a>],
    cache: &'r [Resolutions<'g>],
    commons: &'g [super::symbols::Common<'g>],
    session: &'r rustc_hash::FxHashMap<Arc<str>, Export>,
    replacing: Option<u32>,
    module: u32,
    convention: CallingConvention,
    at: &'r Addresses<'r>,
}

impl Exporter<'_, '_, '_> {
    /// Adds what graph `g` records to `recorded` (`won`: which of its
    /// symbols won their names), its crash symbols sorted by address:
    /// objects are laid out in order, so the pieces then follow one
    /// another by address (see `CrashSymbols::from_pieces`).
    fn record(&self, g: usize, won: &[bool], recorded: &mut Recorded) {
        let first = recorded.crash_symbols.len();
        let (base, layout) = (self.at.base, self.at.layout);
        for (id, (sym, &won)) in self.graphs[g].symbols.iter().zip(won).enumerate() {
            let export = won.then(|| self.export(sym.name, g, id)).flatten();
            let start = match (sym.kind, sym.definition.place()) {
                (SymbolKind::Function, Some((section, offset))) => {
                    layout.sections[g][section].map(|at| base + at + offset)
                }
                _ => None,
            };
            if export.is_none() && start.is_none() {
                continue;
            }
            let name: Arc<str> = Arc::from(sym.name);
            if let Some(start) = start {
                recorded.crash_symbols.push(CrashSymbol {
                    start,
                    size: sym.size,
                    name: Arc::clone(&name),
                    lines: None,
                });
            }
            if let Some(export) = export {
                recorded.exports.push((name, export));
            }
        }
        recorded.crash_symbols[first..].sort_by_key(|s| s.start);
    }

    /// The export of the global `name` (symbol `id` of graph `g`), if it
    /// is one.
    fn export(&self, name: &str, g: usize, id: SymbolId) -> Option<Export> {
        let sym = &self.graphs[g].symbols[id];
        if !sym.visibility.exported() {
            return None;
        }
        let target = target_in_load(self.graphs, self.cache, self.commons, name, g, id)?;
        if sym.binding == Binding::Weak
            && self
                .session
                .get(name)
                .is_some_and(|e| Some(e.module) != self.replacing)
        {
            return None;
        }
        let (address, thread_local) = if target.is_thread_local() {
            let place = self.at.thread_local(target);
            let place = crate::executors::HostThreadLocal {
                module: place.module,
                offset: place.offset,
                tp_offset: place.tp_offset,
            };
            (0, Some(Box::new(place)))
        } else {
            (self.at.of(target), None)
        };
        Some(Export {
            module: self.module,
            address,
            function: sym.kind == SymbolKind::Function,
            convention: self.convention,
            thread_local,
        })
    }
}

/// The address of the load's global function `name` (spelled as C names
/// it; `_name` in Mach-O), whatever its visibility: a program's entry
/// point. `None` when the load does not define it (or it is not code).
pub(super) fn entry(
    resolver: &Resolver<'_, '_, '_>,
    at: &Addresses<'_>,
    name: &str,
) -> Option<u64> {
    let graphs = resolver.graphs;
    let spelled = |g: usize| format!("{}{name}", graphs[g].format.global_prefix());
    let (g, id) = (0..graphs.len()).find_map(|g| resolver.globals.get(spelled(g).as_str()))?;
    match exported_target(resolver, graphs[g].symbols[id].name, g, id)? {
        target @ Target::Section(..) if graphs[g].symbols[id].kind == SymbolKind::Function => {
            Some(at.of(target))
        }
        _ => None,
    }
}

/// Where the global `name` (symbol `id` of graph `g`) is defined in this
/// load, or `None` when it binds to another module's definition.
pub(super) fn exported_target(
    resolver: &Resolver<'_, '_, '_>,
    name: &str,
    g: usize,
    id: SymbolId,
) -> Option<Target> {
    target_in_load(
        resolver.graphs,
        &resolver.cache,
        resolver.commons,
        name,
        g,
        id,
    )
}

/// [`exported_target`] from what it reads.
fn target_in_load(
    graphs: &[LinkGraph<'_>],
    cache: &[Resolutions<'_>],
    commons: &[super::symbols::Common<'_>],
    name: &str,
    g: usize,
    id: SymbolId,
) -> Option<Target> {
    match cache[g].kept(id, graphs[g].symbols[id].name) {
        Some(r) if r.origin == Origin::Load => Some(r.target),
        Some(_) => None, // bound to another module's definition
        None => match graphs[g].symbols[id].definition {
            Definition::Defined { section, offset } => {
                let section = section as SectionId;
                Some(match graphs[g].sections[section].role {
                    SectionRole::ThreadLocal => Target::ThreadLocal(g, section, offset),
                    _ => Target::Section(g, section, offset),
                })
            }
            // Not allocated: it binds to another module's definition.
            // `commons` is sorted by name (symbols::collect).
            Definition::Common { .. } => commons
                .binary_search_by(|c| c.name.cmp(name))
                .ok()
                .map(Target::Common),
            Definition::Absolute(a) => Some(Target::Address(a)),
            _ => None,
        },
    }
}
