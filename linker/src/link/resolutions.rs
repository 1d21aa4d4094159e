//! What a load's symbols resolved to, kept for the passes after
//! resolution (planning, writing, relocating, exports), without keeping
//! what is cheaper to find again than to store.
//!
//! A resolution is kept per symbol, except for the local symbols an
//! object lists before its first non-local one (ELF and Mach-O list every
//! local symbol first). A local symbol resolves to its own definition: an
//! object's own section and offset, read again from the symbol as quickly
//! as a kept slot is. Those locals are two fifths of a large program's
//! symbols, and each kept slot takes a resolution's size: not keeping
//! them is that much less memory to take and first touch.

use super::resolve::{Origin, Resolved, Target, definition};
use super::symbols::Common;
use crate::graph::*;

/// One graph's kept resolutions.
pub(super) struct Resolutions<'g> {
    /// How many of the graph's symbols, from the first, are local: these
    /// are not kept.
    locals: usize,
    /// The other symbols', by symbol id less `locals`; `None` until
    /// resolved.
    kept: Vec<Option<Resolved<'g>>>,
}

impl<'g> Resolutions<'g> {
    /// Room for `graph`'s resolutions, none resolved yet.
    pub(super) fn new(graph: &LinkGraph<'_>) -> Self {
        let locals = graph
            .symbols
            .iter()
            .take_while(|s| s.binding == Binding::Local)
            .count();
        Resolutions {
            locals,
            kept: vec![None; graph.symbols.len() - locals],
        }
    }

    /// Symbol `id`'s slot; `None` for a leading local symbol (not kept)
    /// and for an id past the graph's symbols.
    #[inline(always)]
    pub(super) fn slot(&self, id: SymbolId) -> Option<&Option<Resolved<'g>>> {
        self.kept.get(id.checked_sub(self.locals)?)
    }

    /// [`Resolutions::slot`], to fill.
    pub(super) fn slot_mut(&mut self, id: SymbolId) -> Option<&mut Option<Resolved<'g>>> {
        self.kept.get_mut(id.checked_sub(self.locals)?)
    }

    /// Whether symbol `id` is resolved and kept.
    pub(super) fn is_resolved(&self, id: SymbolId) -> bool {
        self.slot(id).is_some_and(Option::is_some)
    }

    /// Symbol `id`'s resolution, kept or (a leading local symbol) found
    /// again. Only for the target or subtrahend of a live section's edge,
    /// which resolution has resolved without error (it resolves every live
    /// edge before planning): the same definition cannot fail now.
    #[inline(always)]
    pub(super) fn get(
        &self,
        graphs: &'g [LinkGraph<'_>],
        commons: &[Common<'g>],
        g: usize,
        id: SymbolId,
    ) -> Resolved<'g> {
        if let Some(kept) = self.slot(id) {
            return kept.expect("every edge target is resolved before planning");
        }
        let graph = &graphs[g];
        let sym = &graph.symbols[id];
        // The common case without the checks resolution made: a place
        // in one of the object's sections, as `definition` gives it.
        let Some((section, offset)) = sym.definition.place() else {
            return definition(graphs, commons, g, id, &unused_site)
                .expect("every edge target is resolved before planning");
        };
        let target = match graph.sections[section].role {
            SectionRole::ThreadLocal => Target::ThreadLocal(g, section, offset),
            _ => Target::Section(g, section, offset),
        };
        Resolved {
            target,
            size: sym.size,
            name: sym.name,
            origin: Origin::Load,
        }
    }
}

/// The site of an error that cannot happen, or that a caller drops for a
/// serial pass to report at its real site: a message made with it is
/// never shown.
pub(super) fn unused_site() -> crate::error::Site {
    crate::error::Site {
        object: String::new(),
        section: String::new(),
        offset: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::tests::{one_section_graph, symbol};

    const RERUN: &str = "rerun: cargo test -p solder-linker --lib link::resolutions::tests";

    /// The locals listed first are not kept, but resolve as their
    /// definitions; a local after a global (as COFF may list it) and the
    /// globals are kept once resolved.
    #[test]
    fn leading_locals_are_found_again_and_the_rest_kept() {
        let graphs = [one_section_graph(vec![
            symbol("first", Binding::Local, Definition::defined(0, 0)),
            symbol("second", Binding::Local, Definition::defined(0, 8)),
            symbol("global", Binding::Global, Definition::defined(0, 4)),
            symbol("late_local", Binding::Local, Definition::defined(0, 12)),
        ])];
        let mut cache = Resolutions::new(&graphs[0]);
        assert_eq!(
            cache.kept.len(),
            2,
            "only the symbols after the leading locals\n{RERUN}"
        );
        assert!(
            cache.slot(0).is_none() && cache.slot(1).is_none(),
            "{RERUN}"
        );
        assert!(cache.slot(4).is_none(), "past the symbols\n{RERUN}");
        let second = cache.get(&graphs, &[], 0, 1);
        assert_eq!(second.name, "second", "{RERUN}");
        assert!(matches!(second.target, Target::Section(0, 0, 8)), "{RERUN}");
        for id in [0, 1] {
            let found = definition(&graphs, &[], 0, id, &unused_site).unwrap();
            assert_eq!(
                format!("{:?}", cache.get(&graphs, &[], 0, id)),
                format!("{found:?}"),
                "a leading local is what resolution found\n{RERUN}"
            );
        }
        for id in [2, 3] {
            assert!(!cache.is_resolved(id), "{RERUN}");
            let resolved = definition(&graphs, &[], 0, id, &unused_site).unwrap();
            *cache.slot_mut(id).unwrap() = Some(resolved);
            assert!(cache.is_resolved(id), "{RERUN}");
            assert_eq!(
                cache.get(&graphs, &[], 0, id).name,
                resolved.name,
                "{RERUN}"
            );
        }
    }
}
