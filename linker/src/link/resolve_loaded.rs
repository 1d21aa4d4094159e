//! The references a load answers itself, resolved object by object on
//! the load's threads before [`Resolver::resolve_edges`]' serial pass (a
//! small load that is not split skips this: the serial pass does it all;
//! a large one is answered here even on one thread): a local
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
use super::globals::{Globals, STEP, prefetch};
use super::resolutions::{Resolutions, unused_site};
use super::resolve::{Resolved, Resolver, definition, linker_symbol};
use super::symbols::{Common, yields_to_session};
use crate::graph::*;

/// What the threads read to answer references.
struct Answers<'r, 'g> {
    graphs: &'g [LinkGraph<'g>],
    /// Each graph's symbols: a definition a lookup finds is asked for
    /// ahead through this short list, not through its graph.
    symbols: Vec<&'g [Symbol<'g>]>,
    /// Each graph's sections, likewise.
    sections: Vec<&'g [Section<'g>]>,
    globals: &'r Globals<'g>,
    commons: &'r [Common<'g>],
    /// The session's exports, but for the module being replaced.
    exports: &'r rustc_hash::FxHashMap<std::sync::Arc<str>, Export>,
    replacing: Option<u32>,
}

/// The records (bytes, as [`Resolver::resolve_loaded`] weighs them) from
/// which a load's edges are answered here on one thread too.
pub(crate) const ANSWERED_ALONE_FROM: usize = 2 << 20;

/// One graph's edges left to the serial pass, with their sections.
pub(super) type Pending = Vec<(SectionId, Edge)>;

impl<'g> Resolver<'g, '_, '_> {
    /// Makes the cache (one `Resolutions` per graph) and fills it with
    /// every edge target the load's own definitions answer without side
    /// effects, on the request's threads: for each graph, the edges left.
    /// `None` when the load is small and not split (the cache is then made
    /// empty, and the serial pass visits every edge).
    pub(super) fn resolve_loaded(&mut self) -> Option<Vec<Pending>> {
        let graphs = self.graphs;
        // Weighed by what the work reads: relocation and symbol records.
        let records = |graph: &LinkGraph<'_>| {
            let edges: usize = graph.sections.iter().map(|s| s.edges.len()).sum();
            24 * (edges + graph.symbols.len())
        };
        // A small load that is not split is left to the serial pass, which
        // does the same work alone, without looking up twice what another
        // module or the host answers. A large one is answered here even on
        // one thread: a large table's lookups here overlap their waits for
        // memory (`Answers::answer_all`); the serial pass makes them one at
        // a time.
        let work = crate::parallel::Work::of(graphs.iter().map(records));
        let split = self.req.threads.split(work) > 1;
        if !split && work.total < ANSWERED_ALONE_FROM {
            self.cache = graphs.iter().map(Resolutions::new).collect();
            return None;
        }
        let answers = Answers {
            graphs,
            symbols: graphs.iter().map(|graph| &graph.symbols[..]).collect(),
            sections: graphs.iter().map(|graph| &graph.sections[..]).collect(),
            globals: self.globals,
            commons: self.commons,
            exports: self.req.exports,
            replacing: self.req.replacing,
        };
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
    let symbols = &answers.graphs[g].symbols;
    let live = || {
        answers.graphs[g]
            .sections
            .iter()
            .enumerate()
            .filter(|(_, s)| s.live)
    };
    // Symbols already asked about: one the load does not answer (a host
    // function a thousand calls name) is asked about once, not per edge.
    let mut asked = vec![false; symbols.len()];
    if answers.globals.is_large() {
        // Every symbol the live edges name is asked about first, together,
        // in the order they are first named.
        let mut wanted = Vec::new();
        for (_, section) in live() {
            for edge in &section.edges {
                for id in std::iter::once(edge.target).chain(edge.minus()) {
                    if cache.keeps(id)
                        && let Some(asked @ false) = asked.get_mut(id)
                    {
                        *asked = true;
                        wanted.push(id);
                    }
                }
            }
        }
        answers.answer_all(g, &wanted, &mut cache);
    }
    let mut pending = Vec::new();
    for (section_id, section) in live() {
        for edge in &section.edges {
            let mut answered = true;
            for id in std::iter::once(edge.target).chain(edge.minus()) {
                answered &= if cache.keeps(id) {
                    if !cache.is_resolved(id)
                        && let Some(asked @ false) = asked.get_mut(id)
                    {
                        *asked = true;
                        if let Some(r) = answers.answer(g, id, None) {
                            cache.keep(id, symbols[id].name, r);
                        }
                    }
                    cache.is_resolved(id)
                } else {
                    // A leading local symbol: its definition, not kept,
                    // answers it unless it is an error.
                    id < symbols.len() && answers.answer(g, id, None).is_some()
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
    /// Fills `cache`'s slots of `ids` (graph `g`'s symbols) with
    /// [`Answers::answer`], asking the memory ahead for what each answer
    /// will read, so that the waits of several lookups overlap: a global
    /// name's tags in the table four [`STEP`]s before it is answered, then
    /// the entry of the tag that matches, then the name and definition the
    /// entry holds, then the definition's section.
    fn answer_all(&self, g: usize, ids: &[SymbolId], cache: &mut Resolutions<'g>) {
        let symbols = &self.graphs[g].symbols;
        let hashes: Vec<Option<u64>> = ids
            .iter()
            .map(|&id| {
                let sym = symbols.get(id)?;
                (sym.binding != Binding::Local).then(|| Globals::hash(sym.name))
            })
            .collect();
        for (at, (&id, &hash)) in ids.iter().zip(&hashes).enumerate() {
            let ahead = |by: usize| hashes.get(at + by).copied().flatten();
            if let Some(hash) = ahead(4 * STEP) {
                self.globals.prefetch(hash);
            }
            if let Some(slot) = ahead(3 * STEP).and_then(|h| self.globals.candidate(h)) {
                self.globals.prefetch_entry(slot);
            }
            if let Some((name, (g2, id2))) = ahead(2 * STEP)
                .and_then(|h| self.globals.candidate(h))
                .and_then(|slot| self.globals.entry(slot))
            {
                prefetch(name.as_ptr());
                if let Some(def) = self.symbols.get(g2).and_then(|d| d.get(id2)) {
                    prefetch(def as *const Symbol<'_> as *const u8);
                }
            }
            if let Some((_, (g2, id2))) = ahead(STEP)
                .and_then(|h| self.globals.candidate(h))
                .and_then(|slot| self.globals.entry(slot))
                && let Some(def) = self.symbols.get(g2).and_then(|d| d.get(id2))
                && let Definition::Defined { section, .. } = def.definition
                && let Some(section) = self
                    .sections
                    .get(g2)
                    .and_then(|s| s.get(section as SectionId))
            {
                prefetch(section as *const Section<'_> as *const u8);
            }
            if cache.keeps(id)
                && let Some(r) = self.answer(g, id, hash)
            {
                cache.keep(id, symbols[id].name, r);
            }
        }
    }

    /// What symbol `id` of graph `g` resolves to when the load answers it
    /// without side effects and without error; `None` leaves it to the serial
    /// pass.
    ///
    /// `hash` is the symbol's name's ([`Globals::hash`]) when the caller
    /// has it already.
    fn answer(&self, g: usize, id: SymbolId, hash: Option<u64>) -> Option<Resolved<'g>> {
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
        let hash = hash.unwrap_or_else(|| Globals::hash(sym.name));
        let (g2, id2) = self.globals.get_hashed(hash, sym.name)?;
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
