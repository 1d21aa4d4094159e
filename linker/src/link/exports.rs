//! What a module offers and records once written: its exports (the
//! definitions later loads may bind to) and the function symbols crash
//! reports name.

use solder_executor::abi::CallingConvention;
use solder_executor::module::CrashSymbol;

use super::Export;
use super::layout::Layout;
use super::resolve::{Origin, Resolver, Target};
use super::write::Addresses;
use crate::graph::*;

/// The load's exported definitions. A definition bound to another
/// module's (a weak or common one yielding to it) is not exported, nor is a
/// weak one while another live module exports the name.
pub(super) fn exports(
    resolver: &Resolver<'_, '_, '_>,
    at: &Addresses<'_>,
    convention: CallingConvention,
) -> Vec<(String, Export)> {
    let graphs = resolver.graphs;
    let mut exports = Vec::new();
    for (&name, &(g, id)) in resolver.globals {
        let sym = &graphs[g].symbols[id];
        if !sym.visibility.exported() {
            continue;
        }
        let Some(target) = exported_target(resolver, name, g, id) else {
            continue;
        };
        if sym.binding == Binding::Weak
            && resolver
                .req
                .exports
                .get(name)
                .is_some_and(|e| Some(e.module) != resolver.req.replacing)
        {
            continue;
        }
        exports.push((
            name.to_string(),
            Export {
                module: resolver.req.module,
                objects: resolver.req.objects.clone(),
                address: at.of(target),
                function: sym.kind == SymbolKind::Function,
                convention,
            },
        ));
    }
    exports
}

/// Where the global `name` (symbol `id` of graph `g`) is defined in this
/// load, or `None` when it binds to another module's definition.
fn exported_target(
    resolver: &Resolver<'_, '_, '_>,
    name: &str,
    g: usize,
    id: SymbolId,
) -> Option<Target> {
    let sym = &resolver.graphs[g].symbols[id];
    if sym.kind == SymbolKind::ThreadLocal {
        // A variable with one copy per thread has no address to export.
        return None;
    }
    match resolver.cache[g][id] {
        Some(r) if r.origin == Origin::Load && !r.target.is_thread_local() => Some(r.target),
        Some(_) => None, // bound to another module's definition
        None => match sym.definition {
            Definition::Defined { section, offset } => {
                let section_role = resolver.graphs[g].sections[section].role;
                (section_role != SectionRole::ThreadLocal)
                    .then_some(Target::Section(g, section, offset))
            }
            // Not allocated: it binds to another module's definition.
            // `commons` is sorted by name (symbols::collect).
            Definition::Common { .. } => resolver
                .commons
                .binary_search_by(|c| c.name.cmp(name))
                .ok()
                .map(Target::Common),
            Definition::Absolute(a) => Some(Target::Address(a)),
            _ => None,
        },
    }
}

/// Every placed function symbol of the load, for crash reports.
pub(super) fn crash_symbols(
    graphs: &[LinkGraph<'_>],
    layout: &Layout,
    base: u64,
) -> Vec<CrashSymbol> {
    let mut symbols = Vec::new();
    for (g, graph) in graphs.iter().enumerate() {
        for sym in &graph.symbols {
            if let (SymbolKind::Function, Definition::Defined { section, offset }) =
                (sym.kind, sym.definition)
                && let Some(at) = layout.sections[g][section]
            {
                symbols.push(CrashSymbol {
                    start: base + at + offset,
                    size: sym.size,
                    name: sym.name.to_string(),
                });
            }
        }
    }
    symbols
}
