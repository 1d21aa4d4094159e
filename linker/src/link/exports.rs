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
        let (address, thread_local) = if target.is_thread_local() {
            let place = at.thread_local(target);
            let place = crate::executors::HostThreadLocal {
                module: place.module,
                offset: place.offset,
                tp_offset: place.tp_offset,
            };
            (0, Some(place))
        } else {
            (at.of(target), None)
        };
        exports.push((
            name.to_string(),
            Export {
                module: resolver.req.module,
                objects: resolver.req.objects.clone(),
                address,
                function: sym.kind == SymbolKind::Function,
                convention,
                thread_local,
            },
        ));
    }
    exports
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
    let (&(g, id), _) = graphs.iter().enumerate().find_map(|(g, _)| {
        resolver
            .globals
            .get(spelled(g).as_str())
            .map(|found| (found, g))
    })?;
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
    match resolver.cache[g][id] {
        Some(r) if r.origin == Origin::Load => Some(r.target),
        Some(_) => None, // bound to another module's definition
        None => match resolver.graphs[g].symbols[id].definition {
            Definition::Defined { section, offset } => {
                Some(match resolver.graphs[g].sections[section].role {
                    SectionRole::ThreadLocal => Target::ThreadLocal(g, section, offset),
                    _ => Target::Section(g, section, offset),
                })
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
                    lines: None,
                });
            }
        }
    }
    symbols
}
