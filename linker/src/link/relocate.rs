//! Relocation: every section's contents copied to its place and every
//! edge's field written by the one checked writer, object by object. Each
//! object's sections are disjoint pieces of the module's memory, so large
//! loads relocate objects on several threads ([`crate::parallel`]); each
//! object's edges are still applied in order, and what the objects learn
//! (imports, bindings) is gathered in object order, so the module is the
//! same byte for byte whatever the number of threads.

use rustc_hash::FxHashSet as HashSet;

use super::plan::{Plan, Via};
use super::resolutions::Resolutions;
use super::resolve::{Origin, Resolved, Resolver, Target};
use super::symbols::Common;
use super::write::Addresses;
use super::{DataBinding, site};
use crate::arch::machine::JUMP_STUB;
use crate::arch::machine::elf::ABS64;
use crate::arch::{Arch, Encoding, FieldFailure, Machine, Operands, RelocOp, write_checked};
use crate::error::LinkError;
use crate::graph::*;

/// What relocating a load learned about its references into other modules.
#[derive(Default)]
pub(super) struct References {
    /// (module, symbol) pairs this load references in other modules.
    pub imports: Vec<(u32, String)>,
    /// Direct references into other modules' data, to re-apply on a hot
    /// swap of their module.
    pub bindings: Vec<DataBinding>,
}

impl References {
    fn note_import(&mut self, origin: Origin, name: &str) {
        if let Origin::Module { module, .. } = origin
            && !self.imports.iter().any(|(m, n)| *m == module && n == name)
        {
            self.imports.push((module, name.to_string()));
        }
    }
}

/// One object's share of the relocation: its placed sections' memory (by
/// section index) and where its edges' plans start.
struct ObjectWork<'m> {
    g: usize,
    sections: Vec<Option<&'m mut [u8]>>,
    first_plan: usize,
    bytes: usize,
}

/// Copies every placed section's contents and relocates every live edge
/// of the load as planned, on up to `threads` threads.
pub(super) fn relocate(
    resolver: &Resolver<'_, '_, '_>,
    plan: &Plan,
    at: &Addresses<'_>,
    memory: &mut [u8],
    threads: crate::parallel::Threads,
) -> Result<References, LinkError> {
    let fixups = Fixups {
        cache: &resolver.cache,
        graphs: resolver.graphs,
        commons: resolver.commons,
        image_base: resolver.req.slab.base(),
    };
    let graphs = resolver.graphs;
    let work = split_by_object(graphs, at.layout, memory)?;
    let done = crate::parallel::map_owned(
        work,
        threads,
        |w| w.bytes,
        |w| relocate_object(&fixups, graphs, plan, at, w),
    );
    let mut references = References::default();
    let mut imported: HashSet<(u32, String)> = HashSet::default();
    for object in done {
        let object = object?;
        for import in object.imports {
            if imported.insert(import.clone()) {
                references.imports.push(import);
            }
        }
        references.bindings.extend(object.bindings);
    }
    // GOT entries that hold another module's data address are bindings too.
    for (i, (_, binding)) in plan.got_keys.iter().enumerate() {
        if let Some((module, symbol)) = binding {
            references.bindings.push(DataBinding {
                site: at.got_entry(i),
                kind: ABS64,
                addend: 0,
                written: [0; 8],
                symbol: symbol.clone(),
                module: *module,
            });
        }
    }
    Ok(references)
}

/// Cuts `memory` into each object's placed sections with contents. The
/// layout gives sections disjoint ranges; one that overlaps another or
/// runs past the memory is an error, never a second reference.
fn split_by_object<'m>(
    graphs: &[LinkGraph<'_>],
    layout: &super::layout::Layout,
    memory: &'m mut [u8],
) -> Result<Vec<ObjectWork<'m>>, LinkError> {
    let mut places: Vec<(usize, usize, usize, usize)> = Vec::new();
    let mut work = Vec::with_capacity(graphs.len());
    // Each object's plans follow the previous objects' live edges.
    let mut next_plan = 0;
    for (g, graph) in graphs.iter().enumerate() {
        let first_plan = next_plan;
        let mut bytes = 0;
        for (s, section) in graph.sections.iter().enumerate() {
            if let (Some(offset), false) = (layout.sections[g][s], section.data.is_empty()) {
                places.push((offset as usize, section.data.len(), g, s));
                bytes += section.data.len();
            }
            if section.live {
                next_plan += section.edges.len();
            }
        }
        work.push(ObjectWork {
            g,
            sections: (0..graph.sections.len()).map(|_| None).collect(),
            first_plan,
            bytes,
        });
    }
    places.sort_unstable();
    let mut rest = memory;
    let mut cut = 0;
    for (offset, len, g, s) in places {
        let overlap = || {
            LinkError::Memory(format!(
                "layout placed section {} of {} at {offset:#x} ({len:#x} bytes), over another section or past the module's {:#x} written bytes",
                graphs[g].sections[s].name,
                graphs[g].object,
                cut + rest.len()
            ))
        };
        let skip = offset.checked_sub(cut).ok_or_else(overlap)?;
        if skip.checked_add(len).is_none_or(|end| end > rest.len()) {
            return Err(overlap());
        }
        let (section, after) = std::mem::take(&mut rest)[skip..].split_at_mut(len);
        work[g].sections[s] = Some(section);
        rest = after;
        cut = offset + len;
    }
    Ok(work)
}

/// One object: its sections' contents copied, then its edges relocated in
/// order.
fn relocate_object(
    fixups: &Fixups<'_, '_>,
    graphs: &[LinkGraph<'_>],
    plan: &Plan,
    at: &Addresses<'_>,
    mut work: ObjectWork<'_>,
) -> Result<References, LinkError> {
    let g = work.g;
    let graph = &graphs[g];
    let mut references = References::default();
    let mut plans = plan.plans[work.first_plan..].iter();
    for (s, section) in graph.sections.iter().enumerate() {
        if let Some(bytes) = work.sections[s].as_deref_mut() {
            bytes.copy_from_slice(&section.data);
        }
        if !section.live {
            continue;
        }
        if section.role == SectionRole::ThreadLocal || section.edges.is_empty() {
            // Thread-local sections are relocated in the template, before
            // the block was loaded.
            plans.by_ref().take(section.edges.len()).for_each(drop);
            continue;
        }
        let (Some(section_offset), Some(bytes)) =
            (at.layout.sections[g][s], work.sections[s].as_deref_mut())
        else {
            return Err(LinkError::Malformed {
                object: graph.object.clone(),
                reason: format!(
                    "section {}: relocations in a section without contents",
                    section.name
                ),
            });
        };
        let place = EdgePlace {
            g,
            graph,
            section,
            section_offset,
        };
        let section_plans = plans.by_ref().take(section.edges.len());
        relocate_section(
            fixups,
            plan,
            at,
            bytes,
            &place,
            section_plans,
            &mut references,
        )?;
    }
    Ok(references)
}

/// One section's edges, in order, each with its plan. A general- or
/// local-dynamic sequence rewritten once the block is fixed (the plan found
/// it can be) leaves its call's relocation unapplied: its field is part of
/// the new code. With local dynamic rewritten, the block offsets code adds
/// to the thread pointer (`DTPOFF` in code) are thread-pointer offsets.
fn relocate_section<'p>(
    fixups: &Fixups<'_, '_>,
    plan: &Plan,
    at: &Addresses<'_>,
    bytes: &mut [u8],
    place: &EdgePlace<'_, '_>,
    plans: impl Iterator<Item = &'p Via>,
    references: &mut References,
) -> Result<(), LinkError> {
    let mut rewritten_call = None;
    let local_exec = plan.relaxable_local_dynamic && at.block_is_fixed();
    for (mut edge, mut via) in place.section.edges.iter().zip(plans.copied()) {
        if edge.kind.op == RelocOp::None || rewritten_call == Some(edge.offset) {
            continue;
        }
        match (edge.kind.op, via) {
            (RelocOp::TlsLocalDynamic, _) if local_exec => {
                relax_local_dynamic(bytes, place, &edge)?;
                rewritten_call = edge.offset.checked_add(Machine::LOCAL_DYNAMIC_CALL);
                continue;
            }
            (_, Via::GeneralDynamicOrInitialExec(first)) if at.block_is_fixed() => {
                relax_general_dynamic(at, bytes, place, edge, first)?;
                rewritten_call = edge.offset.checked_add(Machine::GENERAL_DYNAMIC_CALL);
                continue;
            }
            (_, Via::GeneralDynamicOrInitialExec(first)) => via = Via::Got(first),
            (RelocOp::DtpOffset, _)
                if local_exec && place.section.protection == Protection::Code =>
            {
                edge.kind.op = RelocOp::TpOffset;
            }
            _ => {}
        }
        relocate_edge(fixups, at, bytes, place, edge, via, references)?;
    }
    Ok(())
}

/// Rewrites the general-dynamic sequence of `edge` (the plan found it can
/// be) to initial exec through GOT entry `first + 2`, which holds the
/// variable's thread-pointer offset in the fixed block.
fn relax_general_dynamic(
    at: &Addresses<'_>,
    bytes: &mut [u8],
    place: &EdgePlace<'_, '_>,
    edge: Edge,
    first: u32,
) -> Result<(), LinkError> {
    let field = at.base + place.section_offset + edge.offset;
    let end = field + Machine::GENERAL_DYNAMIC_CALL + 4;
    let entry = at.got_entry(first as usize + 2);
    let displacement = i32::try_from(entry.wrapping_sub(end) as i64).map_err(|_| {
        sequence_refused(
            place,
            &edge,
            ": the GOT entry is out of a 32-bit displacement's reach",
        )
    })?;
    if Machine::relax_general_dynamic(bytes, edge.offset as usize, displacement) {
        Ok(())
    } else {
        // The plan read the object's bytes; an earlier edge whose field
        // overlaps the sequence may have rewritten them since.
        Err(sequence_refused(
            place,
            &edge,
            ": another relocation's field overlaps the general-dynamic sequence, so it cannot be \
             rewritten to initial exec",
        ))
    }
}

/// The error for a thread-local sequence of `edge` that cannot be
/// rewritten after all; `why` follows the symbol.
fn sequence_refused(place: &EdgePlace<'_, '_>, edge: &Edge, why: &str) -> LinkError {
    let symbol = place.graph.symbols.get(edge.target).map_or("?", |s| s.name);
    let site = site(place.graph, place.section, edge.offset);
    LinkError::refused_relocation(site, edge.kind.name, symbol, why)
}

/// Rewrites the local-dynamic sequence of `edge` (the plan found every one
/// of the load's can be) to load the thread pointer.
fn relax_local_dynamic(
    bytes: &mut [u8],
    place: &EdgePlace<'_, '_>,
    edge: &Edge,
) -> Result<(), LinkError> {
    if Machine::relax_local_dynamic(bytes, edge.offset as usize) {
        return Ok(());
    }
    Err(sequence_refused(
        place,
        edge,
        ": another relocation's field overlaps the local-dynamic sequence, so it cannot be \
         rewritten to local exec",
    ))
}

/// Where an edge's section is: its graph and its offset in the module.
struct EdgePlace<'r, 'a> {
    g: usize,
    graph: &'r LinkGraph<'a>,
    section: &'r Section<'a>,
    section_offset: u64,
}

/// What relocating an edge reads of the resolution: shared by the threads
/// that relocate.
struct Fixups<'r, 'g> {
    cache: &'r [Resolutions<'g>],
    graphs: &'g [LinkGraph<'g>],
    commons: &'g [Common<'g>],
    image_base: u64,
}

impl<'g> Fixups<'_, 'g> {
    fn cached(&self, g: usize, id: SymbolId) -> Resolved<'g> {
        self.cache[g].get(self.graphs, self.commons, g, id)
    }
}

#[inline]
fn relocate_edge(
    fixups: &Fixups<'_, '_>,
    at: &Addresses<'_>,
    bytes: &mut [u8],
    place: &EdgePlace<'_, '_>,
    edge: Edge,
    via: Via,
    references: &mut References,
) -> Result<(), LinkError> {
    let EdgePlace {
        g,
        graph,
        section,
        section_offset,
    } = *place;
    let r = fixups.cached(g, edge.target);
    references.note_import(r.origin, r.name);
    let address = at.base + section_offset + edge.offset;
    let field_at = edge.offset as usize;
    let refused = |why: &str| {
        LinkError::refused_relocation(
            site(graph, section, edge.offset),
            edge.kind.name,
            r.name,
            why,
        )
    };
    let (s_addr, s_val) = if edge.kind.op.is_thread_local() {
        let value = at.thread_local_value(edge.kind.op, r.target, refused)?;
        (value as u64, value)
    } else {
        let s_addr = target_address(at, via, r.target);
        (s_addr, s_addr as i64 as i128) // absolute values are two's complement
    };
    let p = address as i128;
    // The module segment holding the target (SECREL / SECTION).
    let segment = || {
        at.layout
            .segments
            .iter()
            .enumerate()
            .find(|(_, (offset, size, _))| {
                (at.base + offset..at.base + offset + size).contains(&s_addr)
            })
            .map(|(index, &(offset, _, _))| (index as i128 + 1, (at.base + offset) as i128))
            .ok_or_else(|| refused(": section-relative references must target this module"))
    };
    if let (RelocOp::GotEntryPcRel { relax }, Via::Relaxed) = (edge.kind.op, via) {
        let relaxed = Machine::relax_got_load(bytes, edge.offset as usize, relax);
        // The plan read the object's bytes; an earlier edge whose field
        // overlaps the instruction may have rewritten them since.
        if !relaxed {
            return Err(refused(
                ": another relocation's field overlaps the instruction, so its GOT load cannot \
                 be relaxed",
            ));
        }
    }
    let minus = || {
        let minus = edge
            .minus()
            .expect("front-ends give differences a subtrahend");
        at.of(fixups.cached(g, minus).target) as i64 as i128
    };
    let operands = Operands {
        s: s_val,
        a: edge.addend as i128,
        p,
        got: at.got as i128,
        got_entry: match via {
            Via::Got(i) => Some(8 * i128::from(i)),
            _ => None,
        },
        size: r.size as i128,
        image_base: fixups.image_base as i128,
    };
    let value = Machine::field_value(edge.kind.op, &operands, minus, segment)?;
    let field = bytes
        .get_mut(field_at..field_at + edge.kind.encoding.size())
        .ok_or_else(|| refused(": its field is past the end of the section"))?;
    write_checked(&edge.kind, field, value).map_err(|failure| {
        let mut detail = format!(
            "target {s_addr:#x}, place {address:#x}, distance {}",
            crate::error::signed_hex(s_val - p)
        );
        if matches!(failure, FieldFailure::Range { .. })
            && matches!(edge.kind.encoding, Encoding::Int { .. })
            && edge.kind.op == RelocOp::Absolute
            && edge.kind.is_narrow()
        {
            detail.push_str(
                "; absolute 32-bit addresses (-fno-pic code) need the slab in the low 2 GiB: use --slab-address",
            );
        }
        let site = site(graph, section, edge.offset);
        LinkError::refused_field(failure, site, edge.kind.name, r.name, value, detail)
    })?;
    if let (
        Origin::Module {
            module,
            function: false,
            ..
        },
        Via::Direct,
    ) = (r.origin, via)
        && !edge.kind.op.is_thread_local()
    {
        let mut written = [0u8; 8];
        written[..field.len()].copy_from_slice(field);
        references.bindings.push(DataBinding {
            site: address,
            kind: edge.kind,
            addend: edge.addend,
            written,
            symbol: r.name.to_string(),
            module,
        });
    }
    Ok(())
}

/// The address an edge planned as `via` reaches for `target`: its stub's,
/// its copy's, or its own.
pub(super) fn target_address(at: &Addresses<'_>, via: Via, target: Target) -> u64 {
    match via {
        Via::Stub(i) => at.base + at.layout.plt + u64::from(i) * JUMP_STUB.len() as u64,
        Via::Copy(i) => at.base + at.layout.copies[i as usize],
        _ => at.of(target),
    }
}
