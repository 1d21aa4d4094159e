//! Layout: places a load's sections and the pieces the plan adds (stubs,
//! thunks, shims, GOT, copies, commons) in three segments by protection,
//! read-execute, read-only and read-write, each starting on a page.

use super::plan::Plan;
use super::symbols::Common;
use crate::arch::machine::{
    DSO_THUNK_SIZE, JUMP_STUB, TLS_DESCRIPTOR_RESOLVER, WIN64_TO_SYSV_SHIM,
    WIN64_TO_SYSV_SHIM_FRAME,
};
use crate::error::LinkError;
use crate::graph::*;

/// Where everything of a load goes, as offsets from the module's base.
pub(super) struct Layout {
    pub sections: Vec<Vec<Option<u64>>>,
    pub plt: u64,
    pub thunks: u64,
    pub shims: u64,
    pub got: u64,
    pub eh_frame: Option<(u64, u64)>,
    /// The shims' frame descriptions, at the end of `eh_frame` (written
    /// with the shims).
    pub shim_frames: u64,
    pub dso: u64,
    pub copies: Vec<u64>,
    pub commons: Vec<u64>,
    pub segments: Vec<(u64, u64, Protection)>,
    /// The TLS descriptor resolver, when the plan has descriptors.
    pub tls_resolver: u64,
    /// The load's thread-local template, when it has thread-local
    /// sections.
    pub thread_locals: Option<ThreadLocalLayout>,
    /// Where the zero-fill starts: everything before it is written.
    pub written: u64,
    pub total: u64,
}

/// The load's thread-local block: where each thread-local section is in
/// it (its initialized sections first, then its zero-fill ones, as a
/// template is), how many bytes are initialized, and its size and
/// alignment.
pub(super) struct ThreadLocalLayout {
    pub offsets: rustc_hash::FxHashMap<(usize, SectionId), u64>,
    pub init_size: u64,
    pub size: u64,
    pub align: u64,
}

/// The layout's position, moved only by checked steps: every size,
/// alignment and count comes from an object (or the executor) and may be
/// anything.
struct Cursor(u64);

/// A step of the layout that does not fit in 64 bits.
struct Overflow;

impl Cursor {
    fn align(&mut self, align: u64) -> Result<u64, Overflow> {
        let align = align.max(1);
        self.0 = self.0.div_ceil(align).checked_mul(align).ok_or(Overflow)?;
        Ok(self.0)
    }

    /// Reserves `size` bytes; returns where they start.
    fn advance(&mut self, size: u64) -> Result<u64, Overflow> {
        let start = self.0;
        self.0 = start.checked_add(size).ok_or(Overflow)?;
        Ok(start)
    }

    /// Reserves `count` pieces of `each` bytes; returns where they start.
    fn advance_by(&mut self, count: usize, each: usize) -> Result<u64, Overflow> {
        let size = (count as u64).checked_mul(each as u64).ok_or(Overflow)?;
        self.advance(size)
    }

    /// Aligns, then reserves `size` bytes; returns where they start.
    fn place(&mut self, align: u64, size: u64) -> Result<u64, Overflow> {
        self.align(align)?;
        self.advance(size)
    }
}

/// The error for a section whose size or alignment the layout cannot
/// hold.
fn too_large(graph: &LinkGraph<'_>, section: &Section<'_>) -> LinkError {
    LinkError::Malformed {
        object: graph.object.clone(),
        reason: format!(
            "section {}: size {:#x} with alignment {:#x} does not fit in a module",
            section.name, section.size, section.align
        ),
    }
}

/// The error for a synthesized piece (GOT, stubs, a common symbol, a copy)
/// that the layout cannot hold.
fn piece_too_large(what: impl std::fmt::Display) -> LinkError {
    LinkError::Memory(format!("{what} does not fit in a module"))
}

/// The error for an alignment the module's placement cannot honour: the
/// slab places a module on a page boundary, so an offset aligned to more
/// than a page would not be an address aligned to it.
fn over_aligned(
    graph: &LinkGraph<'_>,
    what: impl std::fmt::Display,
    align: u64,
    page: u64,
) -> LinkError {
    LinkError::UnsupportedObject {
        object: graph.object.clone(),
        reason: format!(
            "{what}: alignment {align:#x} is larger than the page size ({page:#x}), the most a \
             module's placement guarantees"
        ),
    }
}

/// Places every live section that `pick` selects, in load order. Unwind
/// sections are never among them, whatever their protection: they go
/// together, in the read-only segment ([`place_unwind_frames`]).
fn place_sections(
    graphs: &[LinkGraph<'_>],
    sections: &mut [Vec<Option<u64>>],
    cursor: &mut Cursor,
    page: u64,
    pick: impl Fn(&Section<'_>) -> bool,
) -> Result<(), LinkError> {
    for (g, graph) in graphs.iter().enumerate() {
        for (s, section) in graph.sections.iter().enumerate() {
            let placed_apart = matches!(
                section.role,
                SectionRole::UnwindFrames | SectionRole::ThreadLocal
            );
            if section.live && !placed_apart && pick(section) {
                if section.align > page {
                    let what = format_args!("section {}", section.name);
                    return Err(over_aligned(graph, what, section.align, page));
                }
                let at = cursor
                    .place(section.align, section.size)
                    .map_err(|Overflow| too_large(graph, section))?;
                sections[g][s] = Some(at);
            }
        }
    }
    Ok(())
}

/// Places every live unwind section, back to back (the unwinder walks them
/// as one table), and the terminator after them when any has records. An
/// empty one is placed too, at the cursor: it holds nothing to write.
fn place_unwind_frames(
    graphs: &[LinkGraph<'_>],
    sections: &mut [Vec<Option<u64>>],
    shims: usize,
    cursor: &mut Cursor,
) -> Result<(Option<(u64, u64)>, u64), LinkError> {
    let start = cursor.0;
    let mut has_frames = shims > 0;
    for (g, graph) in graphs.iter().enumerate() {
        for (s, section) in graph.sections.iter().enumerate() {
            if !section.live || section.role != SectionRole::UnwindFrames {
                continue;
            }
            if section.size % 4 != 0 {
                return Err(LinkError::Malformed {
                    object: graph.object.clone(),
                    reason: format!(
                        "{}: size {} is not a multiple of 4",
                        section.name, section.size
                    ),
                });
            }
            let at = cursor
                .advance(section.size)
                .map_err(|Overflow| too_large(graph, section))?;
            sections[g][s] = Some(at);
            has_frames |= section.size > 0;
        }
    }
    if !has_frames {
        return Ok((None, cursor.0));
    }
    // The shims' frames, then the zero terminator the unwinder stops at.
    let shim_frames = cursor
        .advance(shim_frames_size(shims) as u64)
        .map_err(|Overflow| piece_too_large("the shims' frames"))?;
    cursor
        .advance(4)
        .map_err(|Overflow| piece_too_large("the unwind table"))?;
    Ok((Some((start, cursor.0 - start)), shim_frames))
}

/// The bytes of the frame descriptions of `shims` calling-convention
/// shims (none without shims).
pub(super) fn shim_frames_size(shims: usize) -> usize {
    if shims == 0 {
        return 0;
    }
    let lengths = std::iter::repeat_n(WIN64_TO_SYSV_SHIM_FRAME.len(), shims);
    crate::format::eh_frame::FrameWriter::size(lengths)
}

/// Lays out the load's thread-local sections as one block: initialized
/// ones first, then zero-fill ones, each at its alignment. `None` when the
/// load has none.
pub(super) fn lay_out_thread_locals(
    graphs: &[LinkGraph<'_>],
    page: u64,
) -> Result<Option<ThreadLocalLayout>, LinkError> {
    let mut block = ThreadLocalLayout {
        offsets: Default::default(),
        init_size: 0,
        size: 0,
        align: 1,
    };
    let mut cursor = Cursor(0);
    for zero in [false, true] {
        for (g, graph) in graphs.iter().enumerate() {
            for (s, section) in graph.sections.iter().enumerate() {
                let wanted = section.live
                    && section.role == SectionRole::ThreadLocal
                    && (section.protection == Protection::Zero) == zero;
                if !wanted {
                    continue;
                }
                if section.align > page {
                    let what = format_args!("thread-local section {}", section.name);
                    return Err(over_aligned(graph, what, section.align, page));
                }
                let at = cursor
                    .place(section.align, section.size)
                    .map_err(|Overflow| too_large(graph, section))?;
                block.offsets.insert((g, s), at);
                block.align = block.align.max(section.align);
            }
        }
        if !zero {
            block.init_size = cursor.0;
        }
    }
    block.size = cursor.0;
    Ok((!block.offsets.is_empty()).then_some(block))
}

/// Places sections and synthesized pieces in three segments: read-execute,
/// read-only, read-write.
pub(super) fn lay_out(
    graphs: &[LinkGraph<'_>],
    plan: &Plan,
    commons: &[Common<'_>],
    page: u64,
) -> Result<Layout, LinkError> {
    let mut sections: Vec<Vec<Option<u64>>> = graphs
        .iter()
        .map(|g| vec![None; g.sections.len()])
        .collect();
    let mut cursor = Cursor(0);
    let mut segments = Vec::new();
    let pieces = |what: &'static str| move |Overflow| piece_too_large(what);

    // Read-execute.
    let start = cursor.0;
    place_sections(graphs, &mut sections, &mut cursor, page, |s| {
        s.protection == Protection::Code
    })?;
    cursor.align(16).map_err(pieces("the code"))?;
    let plt = cursor
        .advance_by(plan.plt.len(), JUMP_STUB.len())
        .map_err(pieces("the stubs"))?;
    let thunks = cursor
        .advance_by(plan.thunks.len(), DSO_THUNK_SIZE)
        .map_err(pieces("the thunks"))?;
    cursor.align(16).map_err(pieces("the code"))?;
    let shims = cursor
        .advance_by(plan.shim_slots.len(), WIN64_TO_SYSV_SHIM.len())
        .map_err(pieces("the shims"))?;
    let tls_resolver = cursor
        .advance_by(
            usize::from(plan.tls_resolver),
            TLS_DESCRIPTOR_RESOLVER.len(),
        )
        .map_err(pieces("the TLS descriptor resolver"))?;
    segments.push((start, cursor.0 - start, Protection::Code));
    cursor.align(page).map_err(pieces("the code"))?;

    // Read-only.
    let start = cursor.0;
    place_sections(graphs, &mut sections, &mut cursor, page, |s| {
        s.protection == Protection::ReadOnly
    })?;
    cursor.align(8).map_err(pieces("the GOT"))?;
    let got = cursor
        .advance_by(plan.got_keys.len(), 8)
        .map_err(pieces("the GOT"))?;
    // The module's `__dso_handle`: only its address matters, so it needs
    // no writable page (a module without data then has none).
    let dso = cursor.advance(8).map_err(pieces("the DSO handle"))?;
    let (eh_frame, shim_frames) =
        place_unwind_frames(graphs, &mut sections, plan.shim_slots.len(), &mut cursor)?;
    segments.push((start, cursor.0 - start, Protection::ReadOnly));
    cursor.align(page).map_err(pieces("the read-only data"))?;

    // Read-write.
    let start = cursor.0;
    place_sections(graphs, &mut sections, &mut cursor, page, |s| {
        s.protection == Protection::Data
    })?;
    let mut copies = Vec::with_capacity(plan.copies.len());
    for &(_, size) in &plan.copies {
        copies.push(
            cursor
                .place(16, size)
                .map_err(pieces("a copy of host data"))?,
        );
    }
    let written = cursor.0;
    place_sections(graphs, &mut sections, &mut cursor, page, |s| {
        s.protection == Protection::Zero
    })?;
    let mut common_offsets = Vec::with_capacity(commons.len());
    for common in commons {
        let at = cursor
            .place(common.align, common.size)
            .map_err(|Overflow| piece_too_large(format_args!("common symbol `{}`", common.name)))?;
        common_offsets.push(at);
    }
    segments.push((start, cursor.0 - start, Protection::Data));
    cursor.0 = cursor.0.max(1);
    let total = cursor.align(page).map_err(pieces("the module"))?;
    Ok(Layout {
        sections,
        plt,
        thunks,
        shims,
        got,
        eh_frame,
        shim_frames,
        dso,
        copies,
        commons: common_offsets,
        segments,
        tls_resolver,
        thread_locals: lay_out_thread_locals(graphs, page)?,
        written,
        total,
    })
}
