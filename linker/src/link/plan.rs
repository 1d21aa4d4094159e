//! Planning: how each edge reaches its target. Directly; through a GOT
//! entry (or with the GOT load relaxed away when the target is in the
//! load); through a stub in the slab when a host function is beyond a
//! narrow field's reach; or through a copy of far host data. The plan fixes
//! every GOT entry, stub, dso thunk slot, shim slot and import slot of the
//! load, so that layout can size them.

use rustc_hash::FxHashMap as HashMap;

use super::resolutions::Resolutions;
use super::resolve::{Origin, Resolved, Resolver, Target, binding_of};
use super::site;
use super::symbols::Common;
use crate::arch::{Arch, Machine, Relax, RelocKind, RelocOp, TlsAccess};
use crate::error::{LinkError, Site};
use crate::graph::{Edge, LinkGraph, Section, SectionId, SectionRole, SymbolId};
use crate::memory::Slab;
use crate::parallel::Threads;

/// How one edge reaches its target. There is one per edge, so indices are
/// 32 bits (8 bytes a plan, not 16): GOT entries, stubs and copies number at
/// most one per edge, and `link` refuses a load of more than `u32::MAX` edges.
#[derive(Debug, Clone, Copy)]
pub(super) enum Via {
    Direct,
    /// Through this GOT entry.
    Got(u32),
    /// A GOT load rewritten to a direct computation.
    Relaxed,
    /// Through this PLT stub.
    Stub(u32),
    /// Through this copy of far host data.
    Copy(u32),
    /// A general-dynamic access to the load's own block whose sequence
    /// can be rewritten to initial exec: through the three GOT entries
    /// from this one (the `tls_index` pair, then the thread-pointer
    /// offset). Rewritten when the block is loaded fixed, as the pair
    /// otherwise.
    GeneralDynamicOrInitialExec(u32),
}

const _: () = assert!(std::mem::size_of::<Via>() == 8);

/// What a GOT entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum GotSlot {
    /// The target's address.
    Address(Target),
    /// A thread-local variable's offset from the thread pointer (an
    /// initial-exec entry, a descriptor's argument).
    TpOffset(Target),
    /// The module id of a thread-local variable's block (a `tls_index`'s
    /// first word).
    Module(Target),
    /// A thread-local variable's offset in its block (a `tls_index`'s
    /// second word).
    DtpOffset(Target),
    /// The module id of this load's own block (local dynamic).
    LoadModule,
    /// Zero: a local-dynamic `tls_index`'s offset.
    Zero,
    /// The TLS descriptor resolver (a descriptor's first word).
    DescriptorResolver,
    /// A thread-local variable's offset from the thread pointer if its
    /// block was loaded fixed, else zero (unused): the entry of a
    /// general-dynamic access rewritten to initial exec.
    TpOffsetIfFixed(Target),
}

impl GotSlot {
    /// The slots of a thread-local access through the GOT, in order.
    fn thread_local(access: TlsAccess) -> &'static [fn(Target) -> GotSlot] {
        match access {
            TlsAccess::InitialExec => &[GotSlot::TpOffset],
            TlsAccess::GeneralDynamic => &[GotSlot::Module, GotSlot::DtpOffset],
            TlsAccess::LocalDynamic => &[|_| GotSlot::LoadModule, |_| GotSlot::Zero],
            TlsAccess::Descriptor => &[|_| GotSlot::DescriptorResolver, GotSlot::TpOffset],
        }
    }
}

/// Everything the plan adds to a load, besides its sections.
pub(super) struct Plan {
    /// One per live edge, in edge order.
    pub plans: Vec<Via>,
    /// GOT entries, each with the other-module data symbol it holds, if any
    /// (a binding to re-apply on a hot swap).
    pub got_keys: Vec<(GotSlot, Option<(u32, String)>)>,
    /// Whether the load's thread-local block must be at one
    /// thread-pointer offset in every thread (static TLS): some access to
    /// it is initial exec, local exec or a descriptor.
    pub fixed_block: bool,
    /// Whether some access to the load's block would be rewritten to a
    /// cheaper one were the block fixed (general dynamic to initial exec,
    /// local dynamic to local exec): it is loaded fixed where static TLS
    /// has room.
    pub relaxable_block: bool,
    /// Whether every local-dynamic sequence of the load can be rewritten
    /// to load the thread pointer (and the block offsets its code adds,
    /// `DTPOFF`, become thread-pointer offsets): they are when the block
    /// is fixed. All or none, as which offsets follow which sequence is
    /// not known.
    pub relaxable_local_dynamic: bool,
    /// Whether the load needs the TLS descriptor resolver.
    pub tls_resolver: bool,
    /// The GOT entry each PLT stub jumps through.
    pub plt: Vec<usize>,
    /// (runtime function, argument register) of each dso thunk.
    pub thunks: Vec<(u64, u8)>,
    /// The GOT entry each dso thunk jumps through.
    pub thunk_slots: Vec<usize>,
    /// The GOT entry each Microsoft x64 -> System V shim calls through.
    pub shim_slots: Vec<usize>,
    /// The GOT entry behind each COFF import slot.
    pub import_slots: Vec<usize>,
    /// Copies of far host data: (address, size).
    pub copies: Vec<(u64, u64)>,
}

/// The GOT entries of a load, one per distinct target (and one entry or
/// pair per distinct thread-local access).
#[derive(Default)]
struct Got {
    keys: Vec<(GotSlot, Option<(u32, String)>)>,
    index: HashMap<Target, usize>,
    thread_local: HashMap<(TlsAccess, Target), usize>,
    relaxable: HashMap<Target, usize>,
}

impl Got {
    fn entry(&mut self, target: Target, binding: Option<(u32, String)>) -> usize {
        *self.index.entry(target).or_insert_with(|| {
            self.keys.push((GotSlot::Address(target), binding));
            self.keys.len() - 1
        })
    }

    /// The first of the entries a thread-local access of `target` goes
    /// through. Local-dynamic pairs are the load's, whatever the target.
    fn thread_local(&mut self, access: TlsAccess, target: Target) -> usize {
        let key_target = match access {
            TlsAccess::LocalDynamic => Target::Null,
            _ => target,
        };
        *self
            .thread_local
            .entry((access, key_target))
            .or_insert_with(|| {
                let first = self.keys.len();
                for slot in GotSlot::thread_local(access) {
                    self.keys.push((slot(target), None));
                }
                first
            })
    }

    /// The first of the three entries a general-dynamic access of
    /// `target` that may be rewritten to initial exec goes through
    /// ([`Via::GeneralDynamicOrInitialExec`]).
    fn relaxable_general_dynamic(&mut self, target: Target) -> usize {
        *self.relaxable.entry(target).or_insert_with(|| {
            let first = self.keys.len();
            // The general-dynamic pair, then the initial-exec entry.
            for slot in GotSlot::thread_local(TlsAccess::GeneralDynamic) {
                self.keys.push((slot(target), None));
            }
            self.keys.push((GotSlot::TpOffsetIfFixed(target), None));
            first
        })
    }
}

/// PLT stubs, one per distinct far address, each jumping through a GOT
/// entry.
#[derive(Default)]
struct Stubs {
    slots: Vec<usize>,
    index: HashMap<u64, usize>,
}

impl Stubs {
    fn to(&mut self, address: u64, got: &mut Got) -> Via {
        let slot = got.entry(Target::Address(address), None);
        let stub = *self.index.entry(address).or_insert_with(|| {
            self.slots.push(slot);
            self.slots.len() - 1
        });
        Via::Stub(stub as u32)
    }
}

/// Plans every live edge of the load (whose targets `resolver` resolved),
/// given the copies of far host data resolution decided on.
///
/// Two passes. The first, object by object on the load's threads, plans
/// every edge that reaches its target directly, relaxed or through a copy:
/// nearly all of a large load's edges, and nothing is numbered for them.
/// The second, serial and in edge order, plans the rest: the edges that
/// take a GOT entry or a stub (numbered in the order edges first ask for
/// them) and thread-local accesses (which may fail, naming the edge). It
/// visits the edges that change the plan's tables in the order a single
/// pass over every edge would, so the plan and the first error are the
/// same whatever the number of threads.
pub(super) fn plan(
    resolver: &mut Resolver<'_, '_, '_>,
    copies: Vec<(u64, u64)>,
) -> Result<Plan, LinkError> {
    let graphs = resolver.graphs;
    let live_edges: Vec<usize> = graphs.iter().map(live_edges).collect();
    let total: usize = live_edges.iter().sum();
    if u32::try_from(total).is_err() {
        return Err(LinkError::Memory(format!(
            "{total} relocations in one load: at most {} are supported",
            u32::MAX
        )));
    }
    // Every index below is under `total` (checked to fit 32 bits).
    let copy_index: HashMap<u64, usize> = copies
        .iter()
        .enumerate()
        .map(|(i, &(address, _))| (address, i))
        .collect();
    let routes = Routes {
        cache: &resolver.cache,
        graphs,
        commons: resolver.commons,
        slab: &*resolver.req.slab,
        copy_index: &copy_index,
    };
    let mut plans = vec![Via::Direct; total];
    let pending = plan_ready_edges(&routes, &live_edges, &mut plans, resolver.req.threads);
    let mut tables = Tables::default();
    plan_pending_edges(&routes, pending, &live_edges, &mut plans, &mut tables)?;
    let Tables {
        mut got,
        stubs,
        tls,
    } = tables;
    let thunks = std::mem::take(&mut resolver.thunks);
    let thunk_slots = thunks
        .iter()
        .map(|&(target, _)| got.entry(Target::Address(target), None))
        .collect();
    let shim_slots = resolver
        .shims
        .iter()
        .map(|&target| got.entry(target, None))
        .collect();
    let import_slots = std::mem::take(&mut resolver.imports)
        .into_iter()
        .map(|(target, binding)| got.entry(target, binding))
        .collect();
    let relaxable_local_dynamic = tls.relaxable_local_dynamic();
    for index in tls.fixed_host {
        resolver.host_thread_locals[index].fixed = true;
    }
    Ok(Plan {
        plans,
        got_keys: got.keys,
        fixed_block: tls.fixed_block,
        relaxable_block: tls.relaxable || relaxable_local_dynamic,
        relaxable_local_dynamic,
        tls_resolver: tls.resolver,
        plt: stubs.slots,
        thunks,
        thunk_slots,
        shim_slots,
        import_slots,
        copies,
    })
}

/// How many live edges `graph` has: its share of the plan.
fn live_edges(graph: &LinkGraph<'_>) -> usize {
    graph
        .sections
        .iter()
        .filter(|s| s.live)
        .map(|s| s.edges.len())
        .sum()
}

/// The edges of a graph [`plan`]'s first pass left to the second: each
/// one's index among the graph's live edges, its section, itself and what
/// it needs.
type Pending = Vec<(u32, SectionId, Edge, Need)>;

/// The first pass of [`plan`]: each graph's edges that need nothing
/// numbered planned in its piece of `plans`, on `threads`; per graph, the
/// edges left.
fn plan_ready_edges(
    routes: &Routes<'_, '_>,
    live_edges: &[usize],
    plans: &mut [Via],
    threads: Threads,
) -> Vec<Pending> {
    let mut pieces = Vec::with_capacity(live_edges.len());
    let mut rest = plans;
    for (g, &count) in live_edges.iter().enumerate() {
        let (piece, tail) = std::mem::take(&mut rest).split_at_mut(count);
        pieces.push((g, piece));
        rest = tail;
    }
    // Weighed by what the work reads: a relocation record per edge.
    let weight = |(_, piece): &(usize, &mut [Via])| 24 * piece.len();
    crate::parallel::map_owned(pieces, threads, weight, |(g, piece)| {
        let mut pending = Vec::new();
        let mut at = 0u32;
        for (section_id, section) in routes.graphs[g].sections.iter().enumerate() {
            if !section.live {
                continue;
            }
            for (i, edge) in section.edges.iter().enumerate() {
                let r = routes.cached(g, edge.target);
                match routes.route(g, section, &edge, &r) {
                    Ok(via) => piece[at as usize] = via,
                    Err(Need::ThreadLocal { .. }) => {
                        // The call of a sequence that may be rewritten is
                        // the next relocation.
                        let next = section.edges.get(i + 1);
                        let graph = &routes.graphs[g];
                        let relaxable = relaxable_sequence(graph, section, &edge, next, &r);
                        pending.push((at, section_id, edge, Need::ThreadLocal { relaxable }));
                    }
                    Err(need) => pending.push((at, section_id, edge, need)),
                }
                at += 1;
            }
        }
        pending
    })
}

/// What [`plan`]'s second pass numbers: GOT entries, stubs, and what
/// thread-local accesses need.
#[derive(Default)]
struct Tables {
    got: Got,
    stubs: Stubs,
    tls: ThreadLocalNeeds,
}

/// The second pass of [`plan`]: the edges the first left (per graph, in
/// edge order; each graph's plans start where the previous graph's
/// `live_edges` end), planned in order.
fn plan_pending_edges(
    routes: &Routes<'_, '_>,
    pending: Vec<Pending>,
    live_edges: &[usize],
    plans: &mut [Via],
    tables: &mut Tables,
) -> Result<(), LinkError> {
    let mut first_plan = 0;
    for (g, (pending, count)) in pending.into_iter().zip(live_edges).enumerate() {
        for (at, section_id, edge, need) in pending {
            let via = pending_via(routes, g, section_id, &edge, need, tables)?;
            plans[first_plan + at as usize] = via;
        }
        first_plan += count;
    }
    Ok(())
}

/// How `edge` of section `section_id` of graph `g` reaches its target,
/// given what it needs, numbering the GOT entry or stub.
fn pending_via(
    routes: &Routes<'_, '_>,
    g: usize,
    section_id: SectionId,
    edge: &Edge,
    need: Need,
    tables: &mut Tables,
) -> Result<Via, LinkError> {
    let graph = &routes.graphs[g];
    let section = &graph.sections[section_id];
    let r = routes.cached(g, edge.target);
    let Tables { got, stubs, tls } = tables;
    Ok(match need {
        Need::GotEntry => Via::Got(got.entry(r.target, binding_of(&r)) as u32),
        Need::Stub(address) => stubs.to(address, got),
        Need::ThreadLocal { relaxable } => {
            let site = || site(graph, section, edge.offset);
            // A difference's subtrahend needs an address too.
            if let Some(minus) = edge.minus().map(|m| routes.cached(g, m))
                && minus.target.is_thread_local()
            {
                return Err(LinkError::refused_relocation(
                    site(),
                    edge.kind.name,
                    minus.name,
                    ": the subtracted symbol is thread-local, so it has no address",
                ));
            }
            thread_local_via(edge, &r, section, got, tls, relaxable, site)?
        }
    })
}

/// Whether `edge` is a general- or local-dynamic access to the load's own
/// block whose sequence the architecture can rewrite (to initial exec, to
/// a load of the thread pointer): its bytes are the psABI's sequence, and
/// the call in it has its relocation, the `next` one, against
/// `__tls_get_addr` (hand-written code calling something else is left as
/// it is).
fn relaxable_sequence(
    graph: &LinkGraph<'_>,
    section: &Section<'_>,
    edge: &Edge,
    next: Option<Edge>,
    r: &Resolved<'_>,
) -> bool {
    let (call, rewrite): (u64, Rewrite) = match edge.kind.op {
        RelocOp::TlsGeneralDynamic => (Machine::GENERAL_DYNAMIC_CALL, |code, offset| {
            Machine::relax_general_dynamic(code, offset, 0)
        }),
        RelocOp::TlsLocalDynamic => (Machine::LOCAL_DYNAMIC_CALL, Machine::relax_local_dynamic),
        _ => return false,
    };
    let calls_tls_get_addr = next.is_some_and(|next| {
        Some(next.offset) == edge.offset.checked_add(call)
            && graph
                .symbols
                .get(next.target)
                .is_some_and(|s| s.name == "__tls_get_addr")
    });
    if !calls_tls_get_addr || !matches!(r.target, Target::ThreadLocal(..)) {
        return false;
    }
    let Ok(offset) = usize::try_from(edge.offset) else {
        return false;
    };
    // The sequence is rewritten in a copy of the bytes around it, to see
    // whether it can be.
    let start = offset.saturating_sub(PROBE_AROUND);
    let end = offset.saturating_add(PROBE_AROUND).min(section.data.len());
    let Some(around) = section.data.get(start..end) else {
        return false;
    };
    let mut probe = [0u8; 2 * PROBE_AROUND];
    probe[..around.len()].copy_from_slice(around);
    rewrite(&mut probe[..around.len()], offset - start)
}

/// Rewrites a sequence in code whose field is at the offset; whether it
/// could.
type Rewrite = fn(&mut [u8], usize) -> bool;

/// Bytes either side of a field that hold any sequence an architecture
/// rewrites.
const PROBE_AROUND: usize = 32;

/// What planning reads, shared by the threads of its first pass.
struct Routes<'r, 'g> {
    cache: &'r [Resolutions<'g>],
    graphs: &'g [LinkGraph<'g>],
    commons: &'g [Common<'g>],
    slab: &'r Slab,
    copy_index: &'r HashMap<u64, usize>,
}

/// What an edge needs numbered to reach its target (one that needs
/// nothing is planned at once: directly, relaxed, or through a copy of far
/// host data).
#[derive(Debug, Clone, Copy)]
enum Need {
    /// Through a GOT entry holding the target's address.
    GotEntry,
    /// Through a stub to this far address.
    Stub(u64),
    /// A thread-local access, or an edge to or from a thread-local
    /// variable (which may be refused); `relaxable` when it is a sequence
    /// the architecture can rewrite ([`relaxable_sequence`]).
    ThreadLocal { relaxable: bool },
}

impl<'g> Routes<'_, 'g> {
    #[inline]
    fn cached(&self, g: usize, id: SymbolId) -> Resolved<'g> {
        self.cache[g].get(self.graphs, self.commons, g, id)
    }

    /// How `edge` of `section` of graph `g`, whose target resolved to
    /// `r`, reaches it, or what it needs numbered to.
    #[inline]
    fn route(
        &self,
        g: usize,
        section: &Section<'_>,
        edge: &Edge,
        r: &Resolved<'_>,
    ) -> Result<Via, Need> {
        let minus_thread_local = edge
            .minus()
            .is_some_and(|m| self.cached(g, m).target.is_thread_local());
        if minus_thread_local || edge.kind.op.is_thread_local() || r.target.is_thread_local() {
            return Err(Need::ThreadLocal { relaxable: false });
        }
        let slab = self.slab;
        match (edge.kind.op, r.target) {
            (RelocOp::GotEntryPcRel { relax }, target) => {
                if target.in_load() && can_relax(&section.data, edge.offset, relax) {
                    Ok(Via::Relaxed)
                } else {
                    Err(Need::GotEntry)
                }
            }
            (RelocOp::GotEntryOffset, _) => Err(Need::GotEntry),
            (_, Target::Address(address)) if self.copy_index.contains_key(&address) => {
                Ok(Via::Copy(self.copy_index[&address] as u32))
            }
            // A far call goes through a stub, whatever the host says the
            // name is; a far address is a stub's only for a function (its
            // canonical address here): far data (`--abs` names too) is
            // copied or out of range, never silently a stub's address.
            (RelocOp::Branch, Target::Address(address))
                if matches!(r.origin, Origin::Runtime | Origin::Host { .. })
                    && needs_near(&edge.kind, address, edge.addend, slab) =>
            {
                Err(Need::Stub(address))
            }
            (RelocOp::PcRelative | RelocOp::Absolute, Target::Address(address))
                if (r.origin == Origin::Runtime || r.origin == Origin::Host { data: false })
                    && needs_near(&edge.kind, address, edge.addend, slab) =>
            {
                Err(Need::Stub(address))
            }
            // A call to an undefined weak function, which the code only
            // makes after testing its address: through a stub whose GOT
            // slot holds 0, so the branch links wherever the slab is
            // (address 0 is rarely within 2 GiB), and a call that is made
            // anyway faults at 0, as natively.
            (RelocOp::Branch, Target::Null) if needs_near(&edge.kind, 0, edge.addend, slab) => {
                Err(Need::Stub(0))
            }
            _ => Ok(Via::Direct),
        }
    }
}

/// What the load's thread-local accesses need beyond GOT entries.
#[derive(Default)]
struct ThreadLocalNeeds {
    /// The load's block at a fixed thread-pointer offset.
    fixed_block: bool,
    /// The host variables (by index) whose thread-pointer offset is used.
    fixed_host: Vec<usize>,
    /// The descriptor resolver.
    resolver: bool,
    /// A general-dynamic access that would be rewritten to initial exec
    /// were the block fixed.
    relaxable: bool,
    /// Local-dynamic sequences, and how many of them can be rewritten.
    local_dynamic: usize,
    local_dynamic_relaxable: usize,
}

impl ThreadLocalNeeds {
    /// Whether the load has local-dynamic sequences and every one can be
    /// rewritten.
    fn relaxable_local_dynamic(&self) -> bool {
        self.local_dynamic > 0 && self.local_dynamic == self.local_dynamic_relaxable
    }

    fn fixed(&mut self, target: Target) {
        match target {
            Target::HostThreadLocal(i) => self.fixed_host.push(i),
            _ => self.fixed_block = true,
        }
    }
}

/// How a thread-local edge (or an edge to a thread-local variable) is
/// linked: a thread-local op must target a thread-local variable and a
/// thread-local variable is reached only by thread-local ops; the ops
/// that use a thread-pointer offset make the variable's block fixed. A
/// general-dynamic access to the load's block that is `relaxable` may be
/// rewritten to initial exec ([`Via::GeneralDynamicOrInitialExec`]), and
/// local-dynamic ones to local exec when every one is
/// ([`Plan::relaxable_local_dynamic`]); no other sequence is relaxed:
/// every model's own sequence works as it is.
fn thread_local_via(
    edge: &Edge,
    r: &Resolved<'_>,
    section: &Section<'_>,
    got: &mut Got,
    tls: &mut ThreadLocalNeeds,
    relaxable: bool,
    site: impl Fn() -> Site,
) -> Result<Via, LinkError> {
    let refused = |why: String| LinkError::refused_relocation(site(), edge.kind.name, r.name, why);
    let op = edge.kind.op;
    if op == RelocOp::None {
        return Ok(Via::Direct);
    }
    if !op.is_thread_local() {
        return Err(refused(
            ": the symbol is thread-local, so it has no address a relocation of this kind could \
             use"
            .into(),
        ));
    }
    // Local dynamic names a variable of the load too (its pair is the
    // load's): every thread-local op targets a thread-local variable.
    if !r.target.is_thread_local() {
        return Err(refused(": the symbol is not thread-local".into()));
    }
    if section.role == SectionRole::ThreadLocal
        && !matches!(op, RelocOp::DtpOffset | RelocOp::DtpModule)
    {
        return Err(refused(
            ": a thread-local template holds no thread-specific values".into(),
        ));
    }
    Ok(match op.tls_access() {
        Some(access) => {
            match access {
                TlsAccess::InitialExec => tls.fixed(r.target),
                TlsAccess::Descriptor => {
                    tls.fixed(r.target);
                    tls.resolver = true;
                }
                TlsAccess::LocalDynamic if matches!(r.target, Target::HostThreadLocal(_)) => {
                    return Err(refused(
                        ": local-dynamic access reaches this load's own variables only".into(),
                    ));
                }
                TlsAccess::LocalDynamic => {
                    tls.local_dynamic += 1;
                    tls.local_dynamic_relaxable += usize::from(relaxable);
                }
                TlsAccess::GeneralDynamic if relaxable => {
                    tls.relaxable = true;
                    let first = got.relaxable_general_dynamic(r.target);
                    return Ok(Via::GeneralDynamicOrInitialExec(first as u32));
                }
                _ => {}
            }
            Via::Got(got.thread_local(access, r.target) as u32)
        }
        None => {
            if op == RelocOp::TpOffset {
                tls.fixed(r.target);
            }
            Via::Direct
        }
    })
}

/// Whether a field of `kind` cannot hold `address` directly.
pub(super) fn needs_near(kind: &RelocKind, address: u64, addend: i64, slab: &Slab) -> bool {
    match kind.op {
        RelocOp::Branch | RelocOp::PcRelative => kind.is_narrow() && !slab.reaches(address),
        RelocOp::Absolute => {
            kind.is_narrow() && !kind.encoding.fits(address as i128 + addend as i128)
        }
        _ => false,
    }
}

fn can_relax(data: &[u8], offset: u64, relax: Relax) -> bool {
    let offset = offset as usize;
    let Some(start) = offset.checked_sub(3) else {
        return false;
    };
    let Some(window) = data.get(start..offset) else {
        return false;
    };
    let mut probe = [0u8; 3];
    probe.copy_from_slice(window);
    Machine::relax_got_load(&mut probe, 3, relax)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::machine::elf::{ElfReloc, elf_reloc};
    use object::elf;

    fn kind(r_type: object::elf::RelocationType) -> RelocKind {
        match elf_reloc(r_type) {
            Some(ElfReloc::Kind(kind)) => kind,
            other => panic!("{r_type:?}: {other:?}"),
        }
    }

    /// Whether a field needs its target near (a stub or a copy in the
    /// slab) depends on the field: a narrow absolute one on whether the
    /// value (address plus addend) fits, a narrow PC-relative one on the
    /// slab's reach, a wide one never.
    #[test]
    fn only_narrow_fields_that_cannot_hold_the_target_need_it_near() {
        let slab = Slab::new(0x7f00_0000_0000, 16 << 20, 4096);
        let (near, far_low) = (0x7f00_0010_0000, 0x1000);
        let abs32 = kind(elf::R_X86_64_32);
        assert!(!needs_near(&abs32, far_low, 0, &slab));
        assert!(!needs_near(&abs32, 0xffff_fff0, 0xf, &slab));
        assert!(needs_near(&abs32, 0xffff_fff0, 0x10, &slab), "2^32");
        assert!(needs_near(&abs32, near, 0, &slab));
        assert!(!needs_near(&kind(elf::R_X86_64_64), near, 0, &slab));
        for pc in [elf::R_X86_64_PC32, elf::R_X86_64_PLT32] {
            assert!(!needs_near(&kind(pc), near, 0, &slab), "{pc:?} reaches");
            assert!(needs_near(&kind(pc), far_low, 0, &slab), "{pc:?} far");
        }
        assert!(!needs_near(&kind(elf::R_X86_64_PC64), far_low, 0, &slab));
        assert!(!needs_near(
            &kind(elf::R_X86_64_GOTPCREL),
            far_low,
            0,
            &slab
        ));
    }
}
