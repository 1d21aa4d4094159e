//! What a load's symbols resolved to, kept for the passes after
//! resolution (planning, writing, relocating, exports), without keeping
//! what is cheaper to find again than to store.
//!
//! A resolution is kept per symbol, except for the local symbols an
//! object lists before its first non-local one (ELF and Mach-O list every
//! local symbol first). A local symbol resolves to its own definition: an
//! object's own section and offset, read again from the symbol as quickly
//! as a kept slot is. Those locals are two fifths of a large program's
//! symbols, and each kept slot is memory to take and first touch: not
//! keeping them is that much less. A kept resolution is compact
//! ([`Slot`]) when it is what most are, a definition of this load.

use super::resolve::{Origin, Resolved, Target, definition};
use super::symbols::Common;
use crate::graph::*;

/// One graph's kept resolutions.
pub(super) struct Resolutions<'g> {
    /// How many of the graph's symbols, from the first, are local: these
    /// are not kept.
    locals: usize,
    /// The other symbols', by symbol id less `locals`.
    kept: Vec<Slot>,
    /// The resolutions a [`Slot`] cannot hold, in the order they were
    /// kept (few: host symbols, other modules' exports, thunks).
    whole: Vec<Resolved<'g>>,
}

/// A kept resolution in 24 bytes (a [`Resolved`] takes 64): a large load
/// keeps a million, each one fresh memory to back. Most are a definition
/// of this load, named as the symbol that refers to it: that much is
/// kept here, the rest whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Unresolved,
    /// `Target::Section` (or `Target::ThreadLocal`) of `Origin::Load`,
    /// whose name is the referring symbol's.
    InLoad {
        graph: u32,
        section: u32,
        size: u32,
        thread_local: bool,
        offset: u64,
    },
    /// `whole[index]`.
    Whole(usize),
}

// See `Slot`.
const _: () = assert!(std::mem::size_of::<Slot>() == 24);

impl Slot {
    /// `r` as a slot, when it fits one without `whole` (the caller
    /// checked its name is `name`, the referring symbol's).
    fn in_load(r: &Resolved<'_>) -> Option<Slot> {
        let (graph, section, offset, thread_local) = match r.target {
            Target::Section(g, s, o) => (g, s, o, false),
            Target::ThreadLocal(g, s, o) => (g, s, o, true),
            _ => return None,
        };
        (r.origin == Origin::Load).then_some(())?;
        Some(Slot::InLoad {
            graph: u32::try_from(graph).ok()?,
            section: u32::try_from(section).ok()?,
            size: u32::try_from(r.size).ok()?,
            thread_local,
            offset,
        })
    }
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
            kept: vec![Slot::Unresolved; graph.symbols.len() - locals],
            whole: Vec::new(),
        }
    }

    fn slot(&self, id: SymbolId) -> Option<Slot> {
        self.kept.get(id.checked_sub(self.locals)?).copied()
    }

    /// Whether symbol `id`'s resolution is kept here once made (it is
    /// not a leading local symbol, and it is one of the graph's).
    pub(super) fn keeps(&self, id: SymbolId) -> bool {
        self.slot(id).is_some()
    }

    /// Keeps `r` as symbol `id`'s resolution (`name` is the symbol's). A
    /// leading local symbol's is not kept.
    pub(super) fn keep(&mut self, id: SymbolId, name: &str, r: Resolved<'g>) {
        let Some(index) = id.checked_sub(self.locals) else {
            return;
        };
        let Some(kept) = self.kept.get_mut(index) else {
            return;
        };
        *kept = match Slot::in_load(&r).filter(|_| r.name == name) {
            Some(slot) => slot,
            None => {
                self.whole.push(r);
                Slot::Whole(self.whole.len() - 1)
            }
        };
    }

    /// Whether symbol `id` is resolved and kept.
    pub(super) fn is_resolved(&self, id: SymbolId) -> bool {
        self.slot(id).is_some_and(|s| s != Slot::Unresolved)
    }

    /// Symbol `id`'s kept resolution: `None` when it is not kept here
    /// ([`Resolutions::keeps`]) or not resolved yet. `name` is the
    /// symbol's.
    #[inline(always)]
    pub(super) fn kept(&self, id: SymbolId, name: &'g str) -> Option<Resolved<'g>> {
        match self.slot(id)? {
            Slot::Unresolved => None,
            Slot::InLoad {
                graph,
                section,
                size,
                thread_local,
                offset,
            } => {
                let (g, s) = (graph as usize, section as SectionId);
                Some(Resolved {
                    target: match thread_local {
                        true => Target::ThreadLocal(g, s, offset),
                        false => Target::Section(g, s, offset),
                    },
                    size: u64::from(size),
                    name,
                    origin: Origin::Load,
                })
            }
            Slot::Whole(at) => self.whole.get(at).copied(),
        }
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
        let graph = &graphs[g];
        let sym = &graph.symbols[id];
        if self.keeps(id) {
            return self
                .kept(id, sym.name)
                .expect("every edge target is resolved before planning");
        }
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
        assert!(!cache.keeps(0) && !cache.keeps(1), "{RERUN}");
        assert!(!cache.keeps(4), "past the symbols\n{RERUN}");
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
            cache.keep(id, graphs[0].symbols[id].name, resolved);
            assert!(cache.is_resolved(id), "{RERUN}");
            assert_eq!(
                cache.get(&graphs, &[], 0, id).name,
                resolved.name,
                "{RERUN}"
            );
        }
    }

    /// A definition of this load named as its referrer is kept compact;
    /// any other resolution (another name, another origin, a size past
    /// 32 bits, a thread-local place) comes back as it was kept.
    #[test]
    fn every_kept_resolution_comes_back_as_it_was_kept() {
        let graphs = [one_section_graph(vec![
            symbol("a", Binding::Global, Definition::defined(0, 0)),
            symbol("b", Binding::Global, Definition::defined(0, 4)),
            symbol("c", Binding::Global, Definition::defined(0, 8)),
            symbol("d", Binding::Global, Definition::defined(0, 12)),
            symbol("e", Binding::Global, Definition::defined(0, 16)),
        ])];
        let in_load = |target, size, name| Resolved {
            target,
            size,
            name,
            origin: Origin::Load,
        };
        let kept = [
            in_load(Target::Section(3, 2, 1 << 40), 16, "a"),
            in_load(Target::Section(0, 0, 4), 1 << 33, "b"),
            in_load(Target::Section(0, 0, 8), 8, "another name"),
            in_load(Target::ThreadLocal(1, 5, 24), 4, "d"),
            Resolved {
                target: Target::Address(0x7f00_1234),
                size: 8,
                name: "e",
                origin: Origin::Host { data: true },
            },
        ];
        let mut cache = Resolutions::new(&graphs[0]);
        for (id, r) in kept.iter().enumerate() {
            assert!(!cache.is_resolved(id), "{RERUN}");
            cache.keep(id, graphs[0].symbols[id].name, *r);
        }
        assert_eq!(cache.whole.len(), 3, "b, c and e are kept whole\n{RERUN}");
        for (id, r) in kept.iter().enumerate() {
            assert!(cache.is_resolved(id), "{RERUN}");
            assert_eq!(
                format!("{:?}", cache.get(&graphs, &[], 0, id)),
                format!("{r:?}"),
                "symbol {id}\n{RERUN}"
            );
        }
    }
}
