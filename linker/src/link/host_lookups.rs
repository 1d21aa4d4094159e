//! Host lookups: one round trip to the executor for every name the
//! serial resolution pass may look up that nothing nearer answers. Asked
//! once the load's global table is made (the table says which names the
//! load defines itself), and, for a large load, once its threads have
//! answered what the load defines ([`super::resolve_loaded`]): only the
//! edges left to the serial pass can need the host, so only their names
//! are asked about, and the names the load answers are not looked up in
//! its table a second time.

use rustc_hash::FxHashSet as HashSet;

use super::globals::Globals;
use super::resolve::linker_symbol;
use super::resolve_loaded::Pending;
use super::{LinkRequest, host_names};
use crate::error::LinkError;
use crate::graph::*;

/// Asks the executor about the undefined names of `graphs` that the load
/// does not define (`globals`), another module does not export (unless
/// the runtime interposes it), and no earlier load asked about; its
/// answers join `req.symbols`.
///
/// `left` holds, for each graph, the edges left to the serial pass; the
/// names asked about are then those these edges name (with their
/// alternate names). Without it (a load small enough for the serial pass
/// to visit every edge) every undefined name is asked about. Each
/// object's names are gathered on the load's threads; the question keeps
/// the objects' order.
pub(super) fn ask_executor<'a>(
    graphs: &[LinkGraph<'a>],
    globals: &Globals<'_>,
    req: &mut LinkRequest<'_>,
    left: Option<&[Pending]>,
) -> Result<(), LinkError> {
    let (known, exports, interposes) = (&*req.symbols, req.exports, req.interposes);
    let indices: Vec<usize> = (0..graphs.len()).collect();
    let weight = |&g: &usize| match left {
        None => 16 * graphs[g].symbols.len(),
        Some(left) => 16 * left.get(g).map_or(0, Vec::len),
    };
    let wanted = crate::parallel::flat_map(&indices, req.threads, weight, |&g, wanted| {
        let graph = &graphs[g];
        // The executor knows C names: Mach-O's underscore removed, COFF's
        // `__imp_` slots asked about by what they point to. A name another
        // module exports needs no round trip, unless the runtime
        // interposes it (interposers come first).
        let mut want = |sym: &Symbol<'a>| {
            if exports.contains_key(sym.name)
                && super::host_name(graph.format, sym.name).is_none_or(|host| !interposes(host))
            {
                return;
            }
            wanted.extend(host_names(graph.format, sym.name).filter(|h| !known.contains_key(*h)));
        };
        match left {
            None => {
                let undefined = graph.symbols.iter().filter(|sym| may_ask(graph, sym));
                let in_load = globals.get_each(undefined.clone().map(|sym| sym.name));
                for (sym, in_load) in undefined.zip(in_load) {
                    if in_load.is_none() {
                        want(sym);
                    }
                }
            }
            Some(left) => {
                let named = left.get(g).map_or(&[][..], Vec::as_slice);
                for sym in named_by(graph, named) {
                    if may_ask(graph, sym) && globals.get(sym.name).is_none() {
                        want(sym);
                    }
                }
            }
        }
    });
    let mut asked: HashSet<&str> = HashSet::default();
    let names: Vec<String> = wanted
        .into_iter()
        .filter(|host| asked.insert(host))
        .map(str::to_string)
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    let answers = req.executor.lookup(&names)?;
    req.symbols.extend(names.into_iter().zip(answers));
    Ok(())
}

/// Whether the host may be asked about `sym`, a symbol of `graph`: an
/// undefined name that is not the linker's own.
///
/// A thread-local variable is asked about when it is linked
/// (`Executor::host_thread_local`), never looked up: `dlsym` of one
/// allocates the executor thread's copy outside static TLS, which keeps
/// its library out of static TLS for good, and initial-exec code needs it
/// there. Names the load (or the linker: `_GLOBAL_OFFSET_TABLE_`,
/// `__dso_handle`) defines never reach the host (they come first), so
/// asking would only cost a failed lookup each, and make the host open
/// its C++ runtime.
fn may_ask(graph: &LinkGraph<'_>, sym: &Symbol<'_>) -> bool {
    sym.definition == Definition::Undefined
        && !sym.name.is_empty()
        && sym.kind != SymbolKind::ThreadLocal
        && linker_symbol(graph.format, sym.name).is_none()
}

/// The symbols `edges` of `graph` name (targets and subtrahends), each
/// once, in the order first named, each followed by its chain of
/// alternate names (COFF weak externals), which the serial pass looks up
/// in turn when the name itself is not defined.
fn named_by<'g, 'a>(graph: &'g LinkGraph<'a>, edges: &[(SectionId, Edge)]) -> Vec<&'g Symbol<'a>> {
    let mut seen: HashSet<SymbolId> = HashSet::default();
    let mut named = Vec::new();
    for (_, edge) in edges {
        for id in std::iter::once(edge.target).chain(edge.minus()) {
            // A chain that comes back to a symbol seen ends there (a loop
            // is the serial pass's to report).
            let mut at = Some(id);
            while let Some(id) = at.filter(|&id| seen.insert(id)) {
                let Some(sym) = graph.symbols.get(id) else {
                    break;
                };
                named.push(sym);
                at = sym.fallback.map(|f| f.id());
            }
        }
    }
    named
}
