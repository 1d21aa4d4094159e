//! COMDAT selection: one group of each signature is kept per load, as the
//! groups' selections say, and the unwind frames of discarded code go with
//! it.

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use crate::error::LinkError;
use crate::format::eh_frame;
use crate::graph::*;

/// Keeps one COMDAT group of each signature in the load, as the groups'
/// selection says, and discards the others' sections. Definitions in groups
/// that tolerate duplicates become weak, so a later load's copy yields to
/// the one already in the session instead of clashing with it.
pub(super) fn select(graphs: &mut [LinkGraph<'_>]) -> Result<(), LinkError> {
    // Signature -> (graph, group) of the group kept so far.
    let mut kept: HashMap<String, (usize, usize)> = HashMap::default();
    for g in 0..graphs.len() {
        for i in 0..graphs[g].groups.len() {
            let signature = graphs[g].groups[i].signature.to_string();
            let Some(&(g0, i0)) = kept.get(&signature) else {
                kept.insert(signature, (g, i));
                continue;
            };
            let first = &graphs[g0].groups[i0];
            let leader = |graph: &LinkGraph<'_>, group: &Group<'_>| {
                group.sections.first().map(|&s| {
                    let section = &graph.sections[s];
                    (section.size, section.data.to_vec())
                })
            };
            let (old, new) = (
                leader(&graphs[g0], first),
                leader(&graphs[g], &graphs[g].groups[i]),
            );
            let conflict = |reason: &str| LinkError::ComdatConflict {
                signature: signature.clone(),
                first: graphs[g0].object.clone(),
                second: graphs[g].object.clone(),
                reason: reason.to_string(),
            };
            let keep_new = match first.selection {
                ComdatSelection::Any => false,
                // COFF's selection for ordinary definitions (every function
                // of `-ffunction-sections` code): two are a duplicate symbol.
                ComdatSelection::NoDuplicates => {
                    return Err(LinkError::Duplicate {
                        symbol: signature,
                        first: graphs[g0].object.clone(),
                        second: graphs[g].object.clone(),
                    });
                }
                ComdatSelection::SameSize => {
                    if old.map(|l| l.0) != new.map(|l| l.0) {
                        return Err(conflict("its selection (same size) requires equal sizes"));
                    }
                    false
                }
                ComdatSelection::ExactMatch => {
                    if old != new {
                        return Err(conflict(
                            "its selection (exact match) requires identical contents",
                        ));
                    }
                    false
                }
                ComdatSelection::Largest => new.map_or(0, |l| l.0) > old.map_or(0, |l| l.0),
            };
            let (dead_g, dead_i) = if keep_new { (g0, i0) } else { (g, i) };
            let dead: Vec<SectionId> = graphs[dead_g].groups[dead_i].sections.clone();
            for s in dead {
                graphs[dead_g].sections[s].live = false;
            }
            if keep_new {
                kept.insert(signature, (g, i));
            }
        }
    }
    for graph in graphs.iter_mut() {
        let tolerant: HashSet<SectionId> = graph
            .groups
            .iter()
            .filter(|group| group.selection != ComdatSelection::NoDuplicates)
            .flat_map(|group| group.sections.iter().copied())
            .collect();
        if tolerant.is_empty() {
            continue;
        }
        for sym in graph.symbols.iter_mut() {
            if let (Binding::Global, Definition::Defined { section, .. }) =
                (sym.binding, sym.definition)
                && tolerant.contains(&section)
            {
                sym.binding = Binding::Weak;
            }
        }
    }
    Ok(())
}

/// Removes the `.eh_frame` entries that describe code of discarded COMDAT
/// groups (they would refer to sections that are not loaded).
pub(super) fn prune_discarded_frames(graphs: &mut [LinkGraph<'_>]) -> Result<(), LinkError> {
    for graph in graphs.iter_mut() {
        if graph.sections.iter().all(|s| s.live) {
            continue;
        }
        let dead: Vec<bool> = graph
            .symbols
            .iter()
            .map(|s| match s.definition {
                Definition::Defined { section, .. } => !graph.sections[section].live,
                _ => false,
            })
            .collect();
        let object = graph.object.clone();
        for section in graph
            .sections
            .iter_mut()
            .filter(|s| s.live && s.role == SectionRole::UnwindFrames)
        {
            eh_frame::prune(section, &object, |sym| dead[sym])?;
        }
    }
    Ok(())
}
