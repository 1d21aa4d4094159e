//! COMDAT selection: one group of each signature is kept per load, as the
//! groups' selections say, and the unwind frames of discarded code go with
//! it.

use rustc_hash::FxHashMap as HashMap;

use crate::error::LinkError;
use crate::format::eh_frame;
use crate::graph::*;

/// Keeps one COMDAT group of each signature in the load, as the groups'
/// selection says, and discards the others' sections. Definitions in groups
/// that tolerate duplicates become weak, so a later load's copy yields to
/// the one already in the session instead of clashing with it (object by
/// object, on `threads` for a large load).
pub(super) fn select<'a>(
    graphs: &mut [LinkGraph<'a>],
    threads: crate::parallel::Threads,
) -> Result<(), LinkError> {
    // Signature (borrowed from its object, not copied) -> (graph, group)
    // of the group kept so far.
    let mut kept: HashMap<&'a str, (usize, usize)> = HashMap::default();
    for g in 0..graphs.len() {
        for i in 0..graphs[g].groups.len() {
            let signature: &'a str = graphs[g].groups[i].signature;
            let Some(kept_group) = kept.get_mut(signature) else {
                kept.insert(signature, (g, i));
                continue;
            };
            let (g0, i0) = *kept_group;
            let keep_new = keep_second(graphs, (g0, i0), (g, i), signature)?;
            if keep_new {
                *kept_group = (g, i);
            }
            let (dead_g, dead_i) = if keep_new { (g0, i0) } else { (g, i) };
            let dead = &mut graphs[dead_g];
            for &s in &dead.groups[dead_i].sections {
                dead.sections[s].live = false;
            }
        }
    }
    let weakening: Vec<&mut LinkGraph<'a>> = graphs
        .iter_mut()
        .filter(|graph| !graph.groups.is_empty())
        .collect();
    let weight = |graph: &&mut LinkGraph<'a>| 48 * graph.symbols.len();
    crate::parallel::map_owned(weakening, threads, weight, weaken_tolerant_definitions);
    Ok(())
}

/// Makes `graph`'s global definitions in groups that tolerate duplicates
/// weak.
fn weaken_tolerant_definitions(graph: &mut LinkGraph<'_>) {
    let mut tolerant = vec![false; graph.sections.len()];
    let groups = graph
        .groups
        .iter()
        .filter(|group| group.selection != ComdatSelection::NoDuplicates);
    let mut any = false;
    for &section in groups.flat_map(|group| &group.sections) {
        if let Some(flag) = tolerant.get_mut(section) {
            *flag = true;
            any = true;
        }
    }
    // Only groups that allow no duplicates (COFF's ordinary definitions
    // under `-ffunction-sections`): nothing to weaken.
    if !any {
        return;
    }
    for sym in graph.symbols.iter_mut() {
        if let (Binding::Global, Some((section, _))) = (sym.binding, sym.definition.place())
            && tolerant.get(section).copied().unwrap_or(false)
        {
            sym.binding = Binding::Weak;
        }
    }
}

/// Whether group `second` (graph, group) replaces `first` of the same
/// signature, by `first`'s selection; an error when the two may not both
/// exist. The leaders' contents are compared only when the selection asks.
fn keep_second(
    graphs: &[LinkGraph<'_>],
    (g0, i0): (usize, usize),
    (g, i): (usize, usize),
    signature: &str,
) -> Result<bool, LinkError> {
    /// A group's leader section: its size and contents.
    fn leader<'g>(graph: &'g LinkGraph<'_>, group: usize) -> Option<(u64, &'g [u8])> {
        let section = &graph.sections[*graph.groups[group].sections.first()?];
        Some((section.size, section.data.as_ref()))
    }
    let first = &graphs[g0].groups[i0];
    let old = || leader(&graphs[g0], i0);
    let new = || leader(&graphs[g], i);
    let conflict = |reason: &str| LinkError::ComdatConflict {
        signature: signature.to_string(),
        first: graphs[g0].object.clone(),
        second: graphs[g].object.clone(),
        reason: reason.to_string(),
    };
    match first.selection {
        ComdatSelection::Any => Ok(false),
        // COFF's selection for ordinary definitions (every function of
        // `-ffunction-sections` code): two are a duplicate symbol.
        ComdatSelection::NoDuplicates => Err(LinkError::Duplicate {
            symbol: signature.to_string(),
            first: graphs[g0].object.clone(),
            second: graphs[g].object.clone(),
        }),
        ComdatSelection::SameSize => {
            if old().map(|l| l.0) != new().map(|l| l.0) {
                return Err(conflict("its selection (same size) requires equal sizes"));
            }
            Ok(false)
        }
        ComdatSelection::ExactMatch => {
            if old() != new() {
                return Err(conflict(
                    "its selection (exact match) requires identical contents",
                ));
            }
            Ok(false)
        }
        ComdatSelection::Largest => Ok(new().map_or(0, |l| l.0) > old().map_or(0, |l| l.0)),
    }
}

/// Removes the `.eh_frame` entries that describe code of discarded COMDAT
/// groups (they would refer to sections that are not loaded), object by
/// object (on several threads for a large load: each object's frames are
/// its own).
pub(super) fn prune_discarded_frames(
    graphs: &mut [LinkGraph<'_>],
    threads: crate::parallel::Threads,
) -> Result<(), LinkError> {
    let pruned: Vec<&mut LinkGraph<'_>> = graphs
        .iter_mut()
        .filter(|graph| !graph.sections.iter().all(|s| s.live))
        .collect();
    // Pruning decodes, filters and re-encodes each frame: much more work
    // per byte than reading an object is (what splits are measured in).
    const PER_FRAME_BYTE: usize = 16;
    let frames = |graph: &&mut LinkGraph<'_>| {
        let unwind = graph
            .sections
            .iter()
            .filter(|s| s.role == SectionRole::UnwindFrames);
        PER_FRAME_BYTE * unwind.map(|s| s.data.len()).sum::<usize>()
    };
    crate::parallel::map_owned(pruned, threads, frames, prune_graph)
        .into_iter()
        .collect()
}

/// [`prune_discarded_frames`] for one object.
fn prune_graph(graph: &mut LinkGraph<'_>) -> Result<(), LinkError> {
    let dead: Vec<bool> = graph
        .symbols
        .iter()
        .map(|s| {
            s.definition
                .place()
                .is_some_and(|(section, _)| !graph.sections[section].live)
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
    Ok(())
}
