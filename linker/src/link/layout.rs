//! Layout: places a load's sections and the pieces the plan adds (stubs,
//! thunks, shims, GOT, copies, commons) in three segments by protection,
//! read-execute, read-only and read-write, each starting on a page.

use super::plan::Plan;
use super::symbols::Common;
use crate::arch::x86_64::{DSO_THUNK_SIZE, JUMP_STUB, WIN64_TO_SYSV_SHIM};
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
    pub dso: u64,
    pub copies: Vec<u64>,
    pub commons: Vec<u64>,
    pub segments: Vec<(u64, u64, Protection)>,
    /// Where the zero-fill starts: everything before it is written.
    pub written: u64,
    pub total: u64,
}

pub(super) fn align_up(value: u64, align: u64) -> u64 {
    value.div_ceil(align.max(1)) * align.max(1)
}

/// Places sections and synthesized pieces in three segments: read-execute,
/// read-only, read-write.
pub(super) fn lay_out(
    graphs: &[LinkGraph<'_>],
    plan: &Plan,
    commons: &[Common<'_>],
    page: u64,
) -> Result<Layout, LinkError> {
    let (plt, thunks, shims, got) = (
        plan.plt.len(),
        plan.thunks.len(),
        plan.shim_slots.len(),
        plan.got_keys.len(),
    );
    let copies = &plan.copies;
    let mut sections: Vec<Vec<Option<u64>>> = graphs
        .iter()
        .map(|g| vec![None; g.sections.len()])
        .collect();
    let mut cursor = 0u64;
    let place_all = |sections: &mut Vec<Vec<Option<u64>>>,
                     cursor: &mut u64,
                     pick: &dyn Fn(&Section<'_>) -> bool| {
        for (g, graph) in graphs.iter().enumerate() {
            for (s, section) in graph.sections.iter().enumerate() {
                if section.live && pick(section) {
                    *cursor = align_up(*cursor, section.align);
                    sections[g][s] = Some(*cursor);
                    *cursor += section.size;
                }
            }
        }
    };
    let mut segments = Vec::new();

    // Read-execute.
    let start = cursor;
    place_all(&mut sections, &mut cursor, &|s| {
        s.protection == Protection::Code
    });
    cursor = align_up(cursor, 16);
    let plt_at = cursor;
    cursor += plt as u64 * JUMP_STUB.len() as u64;
    let thunks_at = cursor;
    cursor += thunks as u64 * DSO_THUNK_SIZE as u64;
    cursor = align_up(cursor, 16);
    let shims_at = cursor;
    cursor += shims as u64 * WIN64_TO_SYSV_SHIM.len() as u64;
    segments.push((start, cursor - start, Protection::Code));
    cursor = align_up(cursor, page);

    // Read-only.
    let start = cursor;
    place_all(&mut sections, &mut cursor, &|s| {
        s.protection == Protection::ReadOnly && s.role != SectionRole::UnwindFrames
    });
    cursor = align_up(cursor, 8);
    let got_at = cursor;
    cursor += got as u64 * 8;
    // The module's `__dso_handle`: only its address matters, so it needs
    // no writable page (a module without data then has none).
    let dso = cursor;
    cursor += 8;
    let eh_start = cursor;
    let mut has_frames = false;
    for (g, graph) in graphs.iter().enumerate() {
        for (s, section) in graph.sections.iter().enumerate() {
            if section.live && section.role == SectionRole::UnwindFrames && section.size > 0 {
                if section.size % 4 != 0 {
                    return Err(LinkError::Malformed {
                        object: graph.object.clone(),
                        reason: format!(
                            "{}: size {} is not a multiple of 4",
                            section.name, section.size
                        ),
                    });
                }
                sections[g][s] = Some(cursor);
                cursor += section.size;
                has_frames = true;
            }
        }
    }
    let eh_frame = has_frames.then(|| {
        cursor += 4; // the zero terminator the unwinder stops at
        (eh_start, cursor - eh_start)
    });
    segments.push((start, cursor - start, Protection::ReadOnly));
    cursor = align_up(cursor, page);

    // Read-write.
    let start = cursor;
    place_all(&mut sections, &mut cursor, &|s| {
        s.protection == Protection::Data
    });
    let mut copy_offsets = Vec::with_capacity(copies.len());
    for &(_, size) in copies {
        cursor = align_up(cursor, 16);
        copy_offsets.push(cursor);
        cursor += size;
    }
    let written = cursor;
    place_all(&mut sections, &mut cursor, &|s| {
        s.protection == Protection::Zero
    });
    let mut common_offsets = Vec::with_capacity(commons.len());
    for common in commons {
        cursor = align_up(cursor, common.align);
        common_offsets.push(cursor);
        cursor += common.size;
    }
    segments.push((start, cursor - start, Protection::Data));
    let total = align_up(cursor.max(1), page);
    Ok(Layout {
        sections,
        plt: plt_at,
        thunks: thunks_at,
        shims: shims_at,
        got: got_at,
        eh_frame,
        dso,
        copies: copy_offsets,
        commons: common_offsets,
        segments,
        written,
        total,
    })
}
