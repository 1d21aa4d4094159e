//! The initializers and finalizers of a load, read back from its relocated
//! memory in the order a native link runs them.

use solder_executor::module::Finalizers;

use super::layout::Layout;
use crate::graph::*;

/// The load's initializers in run order and its finalizers in array order,
/// as GNU ld would lay out `.init_array` / `.fini_array`: prioritized
/// sections by priority, then the rest in link order; `.ctors`/`.dtors`
/// contents reversed.
pub(super) fn lifecycle_lists(
    graphs: &[LinkGraph<'_>],
    layout: &Layout,
    memory: &[u8],
) -> (Vec<u64>, Finalizers) {
    let mut inits = Vec::new();
    let mut finis = Vec::new();
    for (g, graph) in graphs.iter().enumerate() {
        for (s, section) in graph.sections.iter().enumerate() {
            let Some(offset) = layout.sections[g][s] else {
                continue;
            };
            let (list, priority, reversed) = match section.role {
                SectionRole::Initializers { priority, reversed } => {
                    (&mut inits, priority, reversed)
                }
                SectionRole::Finalizers { priority, reversed } => (&mut finis, priority, reversed),
                _ => continue,
            };
            let bytes = &memory[offset as usize..(offset + section.size) as usize];
            let mut words: Vec<u64> = bytes
                .chunks_exact(8)
                .map(|w| u64::from_le_bytes(w.try_into().unwrap()))
                // 0 and -1 are `.ctors` list markers, not functions.
                .filter(|&w| w != 0 && w != u64::MAX)
                .collect();
            if reversed {
                words.reverse();
            }
            list.push((priority, &*section.name, words));
        }
    }
    // GNU ld's SORT_BY_INIT_PRIORITY breaks ties between sections of equal
    // priority by section name (`.dtors.65335` before `.fini_array.00200`,
    // gcc's `.init_array.00101` before clang's `.init_array.101`), then
    // keeps link order; unprioritized sections stay in link order.
    let sort = |list: &mut Vec<(Option<u32>, &str, Vec<u64>)>| {
        list.sort_by(|(pa, na, _), (pb, nb, _)| match (pa, pb) {
            (Some(a), Some(b)) => a.cmp(b).then_with(|| na.cmp(nb)),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        })
    };
    sort(&mut inits);
    sort(&mut finis);
    let initializers = inits.into_iter().flat_map(|(_, _, w)| w).collect();
    let mut finalizers = Finalizers::default();
    for (priority, _, words) in finis {
        match priority {
            Some(_) => finalizers.prioritized.extend(words),
            None => finalizers.unprioritized.extend(words),
        }
    }
    // The MSVC CRT runs `.CRT$XP*` then `.CRT$XT*`, each first to last in
    // `$`-suffix order; the runtime runs the prioritized list last-first.
    if graphs.iter().any(|g| g.format == ObjectFormat::Coff) {
        finalizers.prioritized.reverse();
    }
    (initializers, finalizers)
}
