//! Host lookups: one round trip to the executor for every name the load
//! leaves undefined and nothing nearer answers, asked once the load's
//! global table is made, so that the table says which names the load
//! defines itself.

use rustc_hash::FxHashSet as HashSet;

use super::globals::Globals;
use super::resolve::linker_symbol;
use super::{LinkRequest, host_names};
use crate::error::LinkError;
use crate::graph::*;

/// Asks the executor about every undefined name of `graphs` that the load
/// does not define (`globals`), another module does not export (unless
/// the runtime interposes it), and no earlier load asked about; its
/// answers join `req.symbols`. Each object's names are gathered on the
/// load's threads; the question keeps the objects' order.
pub(super) fn ask_executor(
    graphs: &[LinkGraph<'_>],
    globals: &Globals<'_>,
    req: &mut LinkRequest<'_>,
) -> Result<(), LinkError> {
    let (known, exports, interposes) = (&*req.symbols, req.exports, req.interposes);
    let indices: Vec<usize> = (0..graphs.len()).collect();
    let weight = |&g: &usize| 16 * graphs[g].symbols.len();
    let wanted = crate::parallel::flat_map(&indices, req.threads, weight, |&g, wanted| {
        let graph = &graphs[g];
        let undefined = (graph.symbols.iter())
            .filter(|sym| sym.definition == Definition::Undefined && !sym.name.is_empty());
        let in_load = globals.get_each(undefined.clone().map(|sym| sym.name));
        for (sym, in_load) in undefined.zip(in_load) {
            // A thread-local variable is asked about when it is linked
            // (`Executor::host_thread_local`), never looked up: `dlsym` of
            // one allocates the executor thread's copy outside static TLS,
            // which keeps its library out of static TLS for good, and
            // initial-exec code needs it there. Names the load (or the
            // linker: `_GLOBAL_OFFSET_TABLE_`, `__dso_handle`) defines never
            // reach the host (they come first), so asking would only cost a
            // failed lookup each, and make the host open its C++ runtime.
            if sym.kind == SymbolKind::ThreadLocal
                || in_load.is_some()
                || linker_symbol(graph.format, sym.name).is_some()
            {
                continue;
            }
            // The executor knows C names: Mach-O's underscore removed,
            // COFF's `__imp_` slots asked about by what they point to. A
            // name another module exports needs no round trip, unless the
            // runtime interposes it (interposers come first).
            if exports.contains_key(sym.name)
                && super::host_name(graph.format, sym.name).is_none_or(|host| !interposes(host))
            {
                continue;
            }
            wanted.extend(host_names(graph.format, sym.name).filter(|h| !known.contains_key(*h)));
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
