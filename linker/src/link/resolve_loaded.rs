//! The references a load answers itself, resolved object by object on
//! several threads before [`Resolver::resolve_edges`]' serial pass (a load
//! too small to split skips this: the serial pass does it all): a local
//! symbol's own definition, or a global one this load defines and does
//! not yield to the session (a weak or common one yields only to a name
//! another live module exports). Most of a whole program's references are
//! these, and each costs a hash lookup in the load's global table, the
//! largest stage of a large link.
//!
//! Nothing here has side effects: a reference that needs one (a thunk, a
//! shim, an import slot, another module's export, the host, a linker
//! symbol) or that is an error is left to the serial pass, which then
//! meets it in the same order as if it had resolved everything itself. So
//! the result is the same whatever the number of threads. The pass keeps
//! each graph's edges it left, in order: the serial pass visits only those
//! (the others' targets are answered, and a cached answer has no effect).

use super::Export;
use super::resolutions::{Resolutions, unused_site};
use super::resolve::{Resolved, Resolver, definition, linker_symbol};
use super::symbols::{Common, Globals, yields_to_session};
use crate::graph::*;

/// What the threads read to answer references.
struct Answers<'r, 'g> {
    graphs: &'g [LinkGraph<'g>],
    globals: &'r Globals<'g>,
    commons: &'r [Common<'g>],
    /// The session's exports, but for the module being replaced.
    exports: &'r rustc_hash::FxHashMap<std::sync::Arc<str>, Export>,
    replacing: Option<u32>,
}

/// One graph's edges left to the serial pass, with their sections.
pub(super) type Pending = Vec<(SectionId, Edge)>;

impl<'g> Resolver<'g, '_, '_> {
    /// Makes the cache (one `Resolutions` per graph) and fills it with
    /// every edge target the load's own definitions answer without side
    /// effects, on the request's threads: for each graph, the edges left.
    /// `None` when the load is too small to split (the cache is then made
    /// empty, and the serial pass visits every edge).
    pub(super) fn resolve_loaded(&mut self) -> Option<Vec<Pending>> {
        let graphs = self.graphs;
        let answers = Answers {
            graphs,
            globals: self.globals,
            commons: self.commons,
            exports: self.req.exports,
            replacing: self.req.replacing,
        };
        // Weighed by what the work reads: relocation and symbol records.
        let records = |graph: &LinkGraph<'_>| {
            let edges: usize = graph.sections.iter().map(|s| s.edges.len()).sum();
            24 * (edges + graph.symbols.len())
        };
        // On one thread the serial pass does the same work alone, without
        // looking up twice what another module or the host answers.
        let total = graphs.iter().map(records).sum();
        if self.req.threads.split(total, graphs.len()) <= 1 {
            self.cache = graphs.iter().map(Resolutions::new).collect();
            return None;
        }
        // Each graph's room is made by the thread that fills it: megabytes
        // of fresh memory in a large load, backed on every thread.
        let indices: Vec<usize> = (0..graphs.len()).collect();
        let weight = |&g: &usize| records(&graphs[g]);
        let filled = crate::parallel::map(&indices, self.req.threads, weight, |&g| {
            fill(&answers, g, Resolutions::new(&graphs[g]))
        });
        let (caches, pending) = filled.into_iter().unzip();
        self.cache = caches;
        Some(pending)
    }
}

/// Graph `g`'s resolutions with what [`Answers::answer`] answers filled
/// in, and the edges whose targets it did not answer.
fn fill<'g>(
    answers: &Answers<'_, 'g>,
    g: usize,
    mut cache: Resolutions<'g>,
) -> (Resolutions<'g>, Pending) {
    let mut pending = Vec::new();
    let symbols = &answers.graphs[g].symbols;
    // Symbols already asked about: one the load does not answer (a host
    // function a thousand calls name) is asked about once, not per edge.
    let mut asked = vec![false; symbols.len()];
    let live = answers.graphs[g]
        .sections
        .iter()
        .enumerate()
        .filter(|(_, s)| s.live);
    for (section_id, section) in live {
        for edge in &section.edges {
            let mut answered = true;
            for id in std::iter::once(edge.target).chain(edge.minus()) {
                answered &= match cache.slot_mut(id) {
                    Some(slot) => {
                        if let (None, Some(asked @ false)) = (&slot, asked.get_mut(id)) {
                            *asked = true;
                            *slot = answers.answer(g, id);
                        }
                        slot.is_some()
                    }
                    // A leading local symbol: its definition, not kept,
                    // answers it unless it is an error.
                    None => id < symbols.len() && answers.answer(g, id).is_some(),
                };
            }
            if !answered {
                pending.push((section_id, edge));
            }
        }
    }
    (cache, pending)
}

impl<'g> Answers<'_, 'g> {
    /// What symbol `id` of graph `g` resolves to when the load answers it
    /// without side effects and without error; `None` leaves it to the serial
    /// pass.
    fn answer(&self, g: usize, id: SymbolId) -> Option<Resolved<'g>> {
        let (graphs, commons) = (self.graphs, self.commons);
        let graph = &graphs[g];
        let sym = graph.symbols.get(id)?;
        let no_site = || unused_site();
        if sym.binding == Binding::Local {
            if sym.definition == Definition::Undefined {
                return None;
            }
            return definition(graphs, commons, g, id, &no_site).ok();
        }
        // Names the linker itself answers, and COFF import slots, are the
        // serial pass's.
        let special = linker_symbol(graph.format, sym.name).is_some()
            || (graph.format == ObjectFormat::Coff && sym.name.starts_with("__imp_"));
        if special {
            return None;
        }
        let &(g2, id2) = self.globals.get(sym.name)?;
        let def = &graphs[g2].symbols[id2];
        // A definition that yields to a live module's export is the serial
        // pass's (it may make a stub); one with nothing to yield to is the
        // load's, as the serial pass would find.
        if yields_to_session(def)
            && self
                .exports
                .get(sym.name)
                .is_some_and(|e| Some(e.module) != self.replacing)
        {
            return None;
        }
        definition(graphs, commons, g2, id2, &no_site).ok()
    }
}
