//! Writing: a load's bytes at their planned places (in place in the
//! executor's memory when it allows, else into an image), its GOT, stubs,
//! thunks and shims, then every edge relocated by the one checked writer.

use super::layout::Layout;
use super::plan::{GotSlot, Plan};
use super::resolve::{Origin, Resolver, Target};
use super::site;
use crate::arch::machine::{
    self, DSO_THUNK_SIZE, JUMP_STUB, JUMP_STUB_DISP, JUMP_STUB_END, TLS_DESCRIPTOR_RESOLVER,
    WIN64_TO_SYSV_SHIM, WIN64_TO_SYSV_SHIM_FRAME, WIN64_TO_SYSV_SLOT,
};
use crate::arch::{RelocOp, write_checked};
use crate::error::LinkError;
use crate::executors::{Executor, HostThreadLocal, ThreadLocals};
use crate::format::eh_frame::FrameWriter;
use crate::graph::*;

/// The addresses of a load's pieces, once its base is known, and where
/// its thread-local variables are once its block is loaded.
pub(super) struct Addresses<'p> {
    pub base: u64,
    pub layout: &'p Layout,
    pub got: u64,
    pub dso: u64,
    import_slots: &'p [usize],
    /// The load's thread-local block, once loaded, and whether it is fixed.
    pub block: Option<(ThreadLocals, bool)>,
    /// Where each host thread-local variable the load refers to lives.
    pub host_thread_locals: Vec<HostThreadLocal>,
}

/// Where a thread-local variable lives: its block's module id, its offset
/// in the block, and its thread-pointer offset when its block is fixed.
#[derive(Debug, Clone, Copy)]
pub(super) struct ThreadLocalPlace {
    pub module: u64,
    pub offset: u64,
    pub tp_offset: Option<i64>,
}

impl<'p> Addresses<'p> {
    pub fn new(base: u64, layout: &'p Layout, plan: &'p Plan) -> Self {
        Addresses {
            base,
            layout,
            got: base + layout.got,
            dso: base + layout.dso,
            import_slots: &plan.import_slots,
            block: None,
            host_thread_locals: Vec::new(),
        }
    }

    /// Whether the load's own block was loaded at a fixed thread-pointer
    /// offset.
    pub fn block_is_fixed(&self) -> bool {
        self.block.is_some_and(|(_, fixed)| fixed)
    }

    /// Where the thread-local variable `target` lives. The load's own
    /// variables have a module id and a thread-pointer offset only once
    /// its block is loaded (0 and `None` before: the template's own
    /// relocations use offsets alone).
    pub fn thread_local(&self, target: Target) -> ThreadLocalPlace {
        match target {
            Target::ThreadLocal(g, s, offset) => {
                let block = self
                    .layout
                    .thread_locals
                    .as_ref()
                    .expect("a load with thread-local variables has a block");
                let offset = block.offsets[&(g, s)] + offset;
                let (module, tp_offset) = match self.block {
                    Some((loaded, fixed)) => (
                        loaded.module,
                        fixed.then(|| loaded.tp_offset.wrapping_add(offset as i64)),
                    ),
                    None => (0, None),
                };
                ThreadLocalPlace {
                    module,
                    offset,
                    tp_offset,
                }
            }
            Target::HostThreadLocal(i) => {
                let host = self.host_thread_locals[i];
                ThreadLocalPlace {
                    module: host.module,
                    offset: host.offset,
                    tp_offset: host.tp_offset,
                }
            }
            _ => unreachable!("only thread-local targets have a thread-local place"),
        }
    }

    /// The S of a thread-local op: the variable's thread-pointer offset,
    /// block offset or module id. A thread-pointer offset the plan did
    /// not make fixed is refused (`why` is the error).
    pub(super) fn thread_local_value(
        &self,
        op: RelocOp,
        target: Target,
        why: impl FnOnce(&str) -> LinkError,
    ) -> Result<i128, LinkError> {
        if op.tls_access().is_some() {
            // Through the GOT: the entry holds the value, S is not used.
            return Ok(0);
        }
        let place = self.thread_local(target);
        Ok(match op {
            RelocOp::TpOffset => match place.tp_offset {
                Some(tp) => i128::from(tp),
                None => {
                    return Err(why(
                        ": the variable's block is not at a fixed thread-pointer offset",
                    ));
                }
            },
            RelocOp::DtpOffset => i128::from(place.offset),
            RelocOp::DtpModule => i128::from(place.module),
            _ => unreachable!("the plan lets only thread-local ops reach here"),
        })
    }

    /// The address of GOT entry `index`.
    pub fn got_entry(&self, index: usize) -> u64 {
        self.got + 8 * index as u64
    }

    #[inline]
    pub fn of(&self, target: Target) -> u64 {
        let (base, layout) = (self.base, self.layout);
        match target {
            Target::Section(g, s, offset) => {
                base + layout.sections[g][s].expect("live sections are placed") + offset
            }
            Target::Common(i) => base + layout.commons[i],
            Target::Address(a) => a,
            Target::DsoHandle => self.dso,
            Target::GotBase => self.got,
            Target::Thunk(i) => base + layout.thunks + (i * DSO_THUNK_SIZE) as u64,
            Target::Shim(i) => base + layout.shims + (i * WIN64_TO_SYSV_SHIM.len()) as u64,
            Target::Import(i) => self.got_entry(self.import_slots[i]),
            Target::Null => 0,
            Target::ThreadLocal(..) | Target::HostThreadLocal(_) => {
                unreachable!(
                    "thread-local variables have no address; the plan lets only thread-local ops reach them"
                )
            }
        }
    }
}

/// The module's memory to write: in place when the executor maps it in
/// this process, else `image` (zeroed, `layout.written` bytes: nothing is
/// written to the zero-fill after them, which [`LinkGraph::check`] keeps
/// free of relocations, so a hostile object declaring a huge zero-fill
/// section costs no memory here).
pub(super) fn module_memory<'m>(
    executor: &mut dyn Executor,
    layout: &Layout,
    base: u64,
    image: &'m mut Vec<u8>,
) -> Result<&'m mut [u8], LinkError> {
    let total = layout.total as usize;
    match executor.writable_in_place(base, layout.total, layout.written)? {
        // SAFETY: the executor made the range read-write in this process.
        // The slab allocated it to this module alone and the session touches
        // it only after the module is written (to protect it), so this is
        // the only reference to it. Fresh and released slab pages read as
        // zero, as a new image must.
        Some(start) => Ok(unsafe { std::slice::from_raw_parts_mut(start.as_ptr(), total) }),
        None => {
            *image = executor.staging_image(layout.written as usize);
            Ok(image)
        }
    }
}

/// Copies far host data the load uses in place of the original (sections
/// are copied as they are relocated: [`super::relocate`]).
pub(super) fn write_copies(
    resolver: &mut Resolver<'_, '_, '_>,
    plan: &Plan,
    layout: &Layout,
    memory: &mut [u8],
) -> Result<(), LinkError> {
    for (i, &(address, size)) in plan.copies.iter().enumerate() {
        let at = layout.copies[i] as usize;
        let source = resolver.req.executor.read(address, size)?;
        // The executor's answer (another process's, for a remote one).
        if source.len() as u64 != size {
            return Err(LinkError::Executor(format!(
                "asked for {size:#x} bytes of host data at {address:#x}, the executor sent {:#x}",
                source.len()
            )));
        }
        memory[at..at + size as usize].copy_from_slice(&source);
    }
    Ok(())
}

/// Fills the GOT: each entry holds its target's address (a copy's, for
/// far host data that was copied).
pub(super) fn write_got(plan: &Plan, at: &Addresses<'_>, memory: &mut [u8]) {
    // By address: one lookup per entry, however many copies there are.
    let copies: rustc_hash::FxHashMap<u64, usize> = plan
        .copies
        .iter()
        .enumerate()
        .map(|(i, &(address, _))| (address, i))
        .collect();
    let copy_of = |address: u64| -> Option<u64> {
        copies.get(&address).map(|&i| at.base + at.layout.copies[i])
    };
    for (i, &(key, _)) in plan.got_keys.iter().enumerate() {
        let value = match key {
            GotSlot::Address(Target::Address(a)) => copy_of(a).unwrap_or(a),
            GotSlot::Address(other) => at.of(other),
            GotSlot::TpOffset(target) => at
                .thread_local(target)
                .tp_offset
                .expect("the plan made every block reached by initial exec fixed")
                as u64,
            GotSlot::TpOffsetIfFixed(target) => {
                at.thread_local(target).tp_offset.unwrap_or(0) as u64
            }
            GotSlot::Module(target) => at.thread_local(target).module,
            GotSlot::DtpOffset(target) => at.thread_local(target).offset,
            GotSlot::LoadModule => at.block.map_or(0, |(block, _)| block.module),
            GotSlot::Zero => 0,
            GotSlot::DescriptorResolver => at.base + at.layout.tls_resolver,
        };
        let offset = (at.layout.got + 8 * i as u64) as usize;
        memory[offset..offset + 8].copy_from_slice(&value.to_le_bytes());
    }
}

/// Writes the module's `__dso_handle`: its own address, as the C runtime's
/// `crtbeginS.o` defines it for a shared object. The module's thunks pass
/// the address (`lea`); code that loads the value instead passes the same
/// handle: the C library's static `atexit` (`libc_nonshared.a`, which
/// `-lc` links) calls `__cxa_atexit(f, NULL, __dso_handle)` with a `mov`.
pub(super) fn write_dso_handle(at: &Addresses<'_>, memory: &mut [u8]) {
    let offset = at.layout.dso as usize;
    memory[offset..offset + 8].copy_from_slice(&at.dso.to_le_bytes());
}

/// Writes a rel32 displacement to `target` into `bytes[field..field + 4]`,
/// for an instruction at `address` whose displacement counts from `end`.
fn put_rel32(bytes: &mut [u8], (field, end): machine::Rel32Field, address: u64, target: u64) {
    let disp = target as i64 - (address + end as u64) as i64;
    bytes[field..field + 4].copy_from_slice(&(disp as i32).to_le_bytes());
}

/// Writes the PLT stubs, dso thunks and Microsoft x64 -> System V shims,
/// each jumping or calling through its GOT entry.
pub(super) fn write_stubs(plan: &Plan, at: &Addresses<'_>, memory: &mut [u8]) {
    let layout = at.layout;
    for (i, &slot) in plan.plt.iter().enumerate() {
        let offset = layout.plt + (i * JUMP_STUB.len()) as u64;
        let mut bytes = JUMP_STUB;
        let field = (JUMP_STUB_DISP, JUMP_STUB_END);
        put_rel32(&mut bytes, field, at.base + offset, at.got_entry(slot));
        memory[offset as usize..offset as usize + bytes.len()].copy_from_slice(&bytes);
    }
    for (i, &(_, arg)) in plan.thunks.iter().enumerate() {
        let offset = layout.thunks + (i * DSO_THUNK_SIZE) as u64;
        let (mut bytes, fields) =
            machine::dso_thunk(arg).expect("resolution refused other argument registers");
        let targets = [at.dso, at.got_entry(plan.thunk_slots[i])];
        for (field, target) in fields.into_iter().zip(targets) {
            put_rel32(&mut bytes, field, at.base + offset, target);
        }
        memory[offset as usize..offset as usize + DSO_THUNK_SIZE].copy_from_slice(&bytes);
    }
    if plan.tls_resolver {
        let at = layout.tls_resolver as usize;
        memory[at..at + TLS_DESCRIPTOR_RESOLVER.len()].copy_from_slice(&TLS_DESCRIPTOR_RESOLVER);
    }
    for (i, &slot) in plan.shim_slots.iter().enumerate() {
        let offset = layout.shims + (i * WIN64_TO_SYSV_SHIM.len()) as u64;
        let mut bytes = WIN64_TO_SYSV_SHIM;
        put_rel32(
            &mut bytes,
            WIN64_TO_SYSV_SLOT,
            at.base + offset,
            at.got_entry(slot),
        );
        memory[offset as usize..offset as usize + bytes.len()].copy_from_slice(&bytes);
    }
    write_shim_frames(plan.shim_slots.len(), at, memory);
}

/// The shims' frame descriptions, so that unwinding from the System V
/// function a shim called reaches the COFF code that called the shim.
fn write_shim_frames(shims: usize, at: &Addresses<'_>, memory: &mut [u8]) {
    if shims == 0 {
        return;
    }
    let layout = at.layout;
    let mut frames = FrameWriter::new();
    for i in 0..shims {
        let shim = at.base + layout.shims + (i * WIN64_TO_SYSV_SHIM.len()) as u64;
        // The pc_begin field follows the FDE's length and CIE pointer.
        let field = at.base + layout.shim_frames + frames.data.len() as u64 + 8;
        // Both are in this module, which is smaller than 2 GiB.
        let pc_begin = shim.wrapping_sub(field) as i64 as i32;
        let length = WIN64_TO_SYSV_SHIM.len() as u32;
        frames.fde(pc_begin, length, &WIN64_TO_SYSV_SHIM_FRAME);
    }
    let start = layout.shim_frames as usize;
    memory[start..start + frames.data.len()].copy_from_slice(&frames.data);
}

/// The load's thread-local template: its initialized sections' bytes,
/// relocated. Only what a template can hold is linked in it: addresses
/// (`__thread int *p = &g`) and offsets in the block; the plan refused the
/// rest. An address of another module's data is refused too: a hot swap
/// of that module could not re-apply it to every thread's copy.
pub(super) fn thread_local_template(
    resolver: &Resolver<'_, '_, '_>,
    plan: &Plan,
    at: &Addresses<'_>,
) -> Result<Vec<u8>, LinkError> {
    let block = at
        .layout
        .thread_locals
        .as_ref()
        .expect("called for a load with a block");
    let mut init = vec![0u8; block.init_size as usize];
    let mut plans = plan.plans.iter();
    for (g, graph) in resolver.graphs.iter().enumerate() {
        for (s, section) in graph.sections.iter().enumerate() {
            if !section.live {
                continue;
            }
            if section.role != SectionRole::ThreadLocal || section.data.is_empty() {
                plans.by_ref().take(section.edges.len()).for_each(drop);
                continue;
            }
            let start = block.offsets[&(g, s)] as usize;
            init[start..start + section.data.len()].copy_from_slice(&section.data);
            for edge in &section.edges {
                let via = *plans.next().expect("one plan per edge");
                let r = resolver.cached(g, edge.target);
                let refused = |why: &str| {
                    let site = site(graph, section, edge.offset);
                    LinkError::refused_relocation(site, edge.kind.name, r.name, why)
                };
                let value = match edge.kind.op {
                    RelocOp::None => continue,
                    RelocOp::DtpOffset => at.thread_local_value(edge.kind.op, r.target, refused)?,
                    RelocOp::Absolute if !matches!(r.origin, Origin::Module { .. }) => {
                        super::relocate::target_address(at, via, r.target) as i64 as i128
                    }
                    _ => {
                        return Err(refused(
                            ": a thread-local template can hold only addresses in this load or \
                             the host, and offsets in the block",
                        ));
                    }
                } + i128::from(edge.addend);
                let field_at = start + edge.offset as usize;
                let field = &mut init[field_at..field_at + edge.kind.encoding.size()];
                write_checked(&edge.kind, field, value).map_err(|failure| {
                    let site = site(graph, section, edge.offset);
                    LinkError::refused_field(
                        failure,
                        site,
                        edge.kind.name,
                        r.name,
                        value,
                        String::new(),
                    )
                })?;
            }
        }
    }
    Ok(init)
}
