//! One load, from link graphs to finalized memory: resolve every edge's
//! target, plan GOT entries, stubs and copies, lay the load out in three
//! segments, allocate it in the slab, write and relocate it, and protect it.
//!
//! The graphs (and so every relocation record) are dropped when this
//! returns; what a module keeps is only what its future needs: its exports,
//! the few direct references into other modules' data (re-applied on a hot
//! swap), and its deinitializers.

// Fx hashing: the keys are names and addresses from the objects being
// linked, where SipHash's resistance to chosen collisions buys nothing and
// cost 2% of linking Lua.
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::sync::Arc;

use solder_executor::crash::CrashSymbol;
use solder_executor::host::HostSymbolKind;
use solder_executor::lifecycle::Finalizers;
use solder_executor::protocol::{SymbolInfo, SymbolKind as HostKind};

use crate::arch::x86_64::{
    ABS64, DSO_THUNK_SIZE, JUMP_STUB, JUMP_STUB_DISP, JUMP_STUB_END, WIN64_TO_SYSV_SHIM,
    WIN64_TO_SYSV_SLOT,
};
use crate::arch::{Relax, RelocKind, RelocOp, fits, write_checked, x86_64};
use crate::eh_frame;
use crate::error::{LinkError, Site};
use crate::graph::*;
use crate::indirection::Indirection;
use crate::memory::Slab;
use crate::target::Executor;

/// A symbol a module offers to later loads.
#[derive(Debug, Clone)]
pub struct Export {
    pub module: u32,
    /// The module's objects, for messages.
    pub objects: Arc<str>,
    /// The definition itself (not its stub).
    pub address: u64,
    pub function: bool,
    /// Whether the module's functions use the Microsoft x64 convention.
    pub win64: bool,
}

/// A direct reference from one module into another module's data, kept so a
/// hot swap of the target can re-apply it.
#[derive(Debug, Clone)]
pub struct DataBinding {
    pub site: u64,
    pub kind: RelocKind,
    pub addend: i64,
    pub symbol: String,
    pub module: u32,
}

/// What the session needs to know about the load it asked for.
pub struct LinkRequest<'s> {
    pub module: u32,
    pub objects: Arc<str>,
    pub slab: &'s mut Slab,
    /// What the executor said about every name the load leaves undefined
    /// (asked in one batch before linking).
    pub symbols: &'s HashMap<String, SymbolInfo>,
    pub executor: &'s mut dyn Executor,
    pub exports: &'s HashMap<String, Export>,
    pub indirection: &'s mut Indirection,
    /// The module being hot-swapped out: its exports are invisible here.
    pub replacing: Option<u32>,
}

/// A linked load, ready to be written to the executor.
pub struct LinkedModule {
    pub memory: (u64, u64),
    /// The module's bytes from `memory.0`, relocated (trailing zero pages
    /// trimmed: the executor's fresh pages are zero). Empty when the module
    /// was written in place ([`Executor::writable_in_place`]).
    pub image: Vec<u8>,
    pub segments: Vec<(u64, u64, Protection)>,
    pub dso: u64,
    /// Start of the merged, zero-terminated `.eh_frame`, if any.
    pub eh_frame: Option<u64>,
    pub exports: Vec<(String, Export)>,
    /// (module, symbol) pairs this load references in other modules.
    pub imports: Vec<(u32, String)>,
    pub bindings: Vec<DataBinding>,
    pub initializers: Vec<u64>,
    pub finalizers: Finalizers,
    pub crash_symbols: Vec<CrashSymbol>,
    /// Whether the module's functions (entry points, initializers) use the
    /// Microsoft x64 calling convention (a COFF load).
    pub win64: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Target {
    /// In this load: graph, section, offset.
    Section(usize, SectionId, u64),
    /// A common symbol allocated by this load.
    Common(usize),
    /// An address fixed before layout: absolute, host, another module.
    Address(u64),
    DsoHandle,
    GotBase,
    /// A per-module thunk passing `__dso_handle` to the runtime.
    Thunk(usize),
    /// A Microsoft x64 -> System V shim (COFF code calling the host).
    Shim(usize),
    /// A COFF import slot (`__imp_NAME`): a pointer holding NAME's address.
    Import(usize),
    /// An undefined weak symbol.
    Null,
}

impl Target {
    fn in_load(self) -> bool {
        matches!(
            self,
            Target::Section(..)
                | Target::Common(_)
                | Target::DsoHandle
                | Target::Thunk(_)
                | Target::Shim(_)
                | Target::Import(_)
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Load,
    Absolute,
    Host(HostSymbolKind),
    Module {
        module: u32,
        function: bool,
        win64: bool,
    },
    Runtime,
}

#[derive(Debug, Clone, Copy)]
struct Resolved<'a> {
    target: Target,
    size: u64,
    name: &'a str,
    origin: Origin,
}

/// How one edge reaches its target. There is one per edge, so indices are
/// 32 bits (8 bytes a plan, not 16): GOT entries, stubs and copies number at
/// most one per edge, and `link` refuses a load of more than `u32::MAX` edges.
#[derive(Debug, Clone, Copy)]
enum Via {
    Direct,
    /// Through this GOT entry.
    Got(u32),
    /// A GOT load rewritten to a direct computation.
    Relaxed,
    /// Through this PLT stub.
    Stub(u32),
    /// Through this copy of far host data.
    Copy(u32),
}

const _: () = assert!(std::mem::size_of::<Via>() == 8);

struct Layout {
    sections: Vec<Vec<Option<u64>>>,
    plt: u64,
    thunks: u64,
    shims: u64,
    got: u64,
    eh_frame: Option<(u64, u64)>,
    dso: u64,
    copies: Vec<u64>,
    commons: Vec<u64>,
    segments: Vec<(u64, u64, Protection)>,
    /// Where the zero-fill starts: everything before it is written.
    written: u64,
    total: u64,
}

struct Common<'a> {
    name: &'a str,
    size: u64,
    align: u64,
}

/// Links `graphs` as one module.
pub fn link(
    mut graphs: Vec<LinkGraph<'_>>,
    req: LinkRequest<'_>,
) -> Result<LinkedModule, LinkError> {
    let win64 = graphs.first().is_some_and(|g| g.format.win64());
    if let Some(odd) = graphs.iter().find(|g| g.format.win64() != win64) {
        return Err(LinkError::UnsupportedObject {
            object: odd.object.clone(),
            reason: format!(
                "one load cannot mix COFF objects (Microsoft x64 calling convention) with ELF or \
                 Mach-O ones (System V); load them separately ({} is {})",
                graphs[0].object,
                graphs[0].format.name()
            ),
        });
    }
    select_comdats(&mut graphs)?;
    // Eh-frames of discarded code go with it.
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

    let (globals, commons) = collect_globals(&graphs, &req)?;
    let mut resolver = Resolver {
        graphs: &graphs,
        globals: &globals,
        commons: &commons,
        cache: graphs.iter().map(|g| vec![None; g.symbols.len()]).collect(),
        thunks: Vec::new(),
        shims: Vec::new(),
        imports: Vec::new(),
        fallback_depth: 0,
        req,
    };

    // Resolve every edge's target once (one pass over the edges, which are
    // most of a load's memory). Far host data referenced by a narrow field
    // gets a copy, and then every reference in this load uses the copy, as
    // with a copy relocation.
    let mut copies: Vec<(u64, u64)> = Vec::new();
    let mut copy_index: HashMap<u64, usize> = HashMap::default();
    for (g, graph) in graphs.iter().enumerate() {
        for section in graph.sections.iter().filter(|s| s.live) {
            for edge in &section.edges {
                let r = resolver.resolve(g, edge.target, || site(graph, section, edge.offset))?;
                if let Some(minus) = edge.minus() {
                    resolver.resolve(g, minus, || site(graph, section, edge.offset))?;
                }
                if let (Target::Address(address), Origin::Host(HostSymbolKind::Data)) =
                    (r.target, r.origin)
                    && needs_near(&edge.kind, address, edge.addend, resolver.req.slab)
                    && r.size > 0
                    && !copy_index.contains_key(&address)
                {
                    copy_index.insert(address, copies.len());
                    copies.push((address, r.size));
                }
            }
        }
    }

    // Plan how each edge reaches its target.
    // GOT entries, each with the other-module data symbol it holds, if any
    // (a binding to re-apply on a hot swap).
    let mut got_keys: Vec<(Target, Option<(u32, String)>)> = Vec::new();
    let mut got_index: HashMap<Target, usize> = HashMap::default();
    let mut got_entry = |target: Target, binding: Option<(u32, String)>| -> usize {
        *got_index.entry(target).or_insert_with(|| {
            got_keys.push((target, binding));
            got_keys.len() - 1
        })
    };
    let mut plt: Vec<usize> = Vec::new();
    let mut plt_index: HashMap<u64, usize> = HashMap::default();
    let live_edges = graphs
        .iter()
        .flat_map(|g| g.sections.iter().filter(|s| s.live))
        .map(|s| s.edges.len())
        .sum();
    if u32::try_from(live_edges).is_err() {
        return Err(LinkError::Memory(format!(
            "{live_edges} relocations in one load: at most {} are supported",
            u32::MAX
        )));
    }
    // Every index below is under `live_edges` (checked to fit 32 bits).
    let mut plans: Vec<Via> = Vec::with_capacity(live_edges);
    for (g, graph) in graphs.iter().enumerate() {
        for section in graph.sections.iter().filter(|s| s.live) {
            for edge in &section.edges {
                let r = resolver.cached(g, edge.target);
                let via = match (edge.kind.op, r.target) {
                    (RelocOp::GotEntryPcRel { relax }, target) => {
                        if target.in_load() && can_relax(&section.data, edge.offset, relax) {
                            Via::Relaxed
                        } else {
                            Via::Got(got_entry(target, binding_of(&r)) as u32)
                        }
                    }
                    (RelocOp::GotEntryOffset, target) => {
                        Via::Got(got_entry(target, binding_of(&r)) as u32)
                    }
                    (_, Target::Address(address)) if copy_index.contains_key(&address) => {
                        Via::Copy(copy_index[&address] as u32)
                    }
                    (
                        RelocOp::Branch | RelocOp::PcRelative | RelocOp::Absolute,
                        Target::Address(address),
                    ) if (r.origin == Origin::Runtime
                        || matches!(r.origin, Origin::Host(k) if k != HostSymbolKind::Data))
                        && needs_near(&edge.kind, address, edge.addend, resolver.req.slab) =>
                    {
                        let slot = got_entry(Target::Address(address), None);
                        let stub = *plt_index.entry(address).or_insert_with(|| {
                            plt.push(slot);
                            plt.len() - 1
                        });
                        Via::Stub(stub as u32)
                    }
                    // A call to an undefined weak function, which the code
                    // only makes after testing its address: through a stub
                    // whose GOT slot holds 0, so the branch links wherever
                    // the slab is (address 0 is rarely within 2 GiB), and a
                    // call that is made anyway faults at 0, as natively.
                    (RelocOp::Branch, Target::Null)
                        if needs_near(&edge.kind, 0, edge.addend, resolver.req.slab) =>
                    {
                        let slot = got_entry(Target::Address(0), None);
                        let stub = *plt_index.entry(0).or_insert_with(|| {
                            plt.push(slot);
                            plt.len() - 1
                        });
                        Via::Stub(stub as u32)
                    }
                    _ => Via::Direct,
                };
                plans.push(via);
            }
        }
    }
    let thunks = std::mem::take(&mut resolver.thunks);
    let thunk_slots: Vec<usize> = thunks
        .iter()
        .map(|&(target, _)| got_entry(Target::Address(target), None))
        .collect();
    let shim_slots: Vec<usize> = resolver
        .shims
        .iter()
        .map(|&target| got_entry(target, None))
        .collect();
    let import_slots: Vec<usize> = std::mem::take(&mut resolver.imports)
        .into_iter()
        .map(|(target, binding)| got_entry(target, binding))
        .collect();

    let layout = lay_out(
        &graphs,
        plt.len(),
        thunks.len(),
        shim_slots.len(),
        got_keys.len(),
        &copies,
        &commons,
        resolver.req.slab.page(),
    )?;
    let base = resolver.req.slab.allocate(layout.total)?;
    let result = write_module(
        &graphs,
        &mut resolver,
        &layout,
        base,
        &plans,
        &got_keys,
        &plt,
        &thunks,
        &thunk_slots,
        &shim_slots,
        &import_slots,
        &copies,
    );
    match result {
        Ok(module) => Ok(module),
        Err(err) => {
            // The image may be half written in place: discard its pages so
            // the next allocation of the range reads zero again.
            let _ = resolver.req.executor.release(base, layout.total);
            resolver.req.slab.release(base, layout.total);
            Err(err)
        }
    }
}

fn site(graph: &LinkGraph<'_>, section: &Section<'_>, offset: u64) -> Site {
    Site {
        object: graph.object.clone(),
        section: section.name.to_string(),
        offset,
    }
}

/// Whether a field of `kind` cannot hold `address` directly.
fn needs_near(kind: &RelocKind, address: u64, addend: i64, slab: &Slab) -> bool {
    match kind.op {
        RelocOp::Branch | RelocOp::PcRelative => kind.is_narrow() && !slab.reaches(address),
        RelocOp::Absolute => {
            kind.is_narrow() && !fits(address as i128 + addend as i128, kind.width, kind.check)
        }
        _ => false,
    }
}

/// The inputs of a relocation formula, as two's-complement values: S the
/// target's address (or its stub's, copy's), A the addend, P the place, the
/// module's GOT base, Z the target's size, and the session's image base.
struct Operands {
    s: i128,
    a: i128,
    p: i128,
    got: i128,
    size: i128,
    image_base: i128,
}

/// The value an edge's field takes: its kind's formula, for how the edge
/// was planned. `minus` gives the subtrahend of a difference and `segment`
/// the (1-based index, start) of the module segment holding the target;
/// each is evaluated only by the kinds that need it.
fn field_value(
    op: RelocOp,
    via: Via,
    o: &Operands,
    minus: impl FnOnce() -> i128,
    segment: impl FnOnce() -> Result<(i128, i128), LinkError>,
) -> Result<i128, LinkError> {
    Ok(match (op, via) {
        (RelocOp::GotEntryPcRel { .. }, Via::Relaxed) => o.s + o.a - o.p,
        (RelocOp::GotEntryPcRel { .. }, Via::Got(i)) => o.got + 8 * i128::from(i) + o.a - o.p,
        (RelocOp::GotEntryOffset, Via::Got(i)) => 8 * i128::from(i) + o.a,
        (RelocOp::Absolute, _) => o.s + o.a,
        (RelocOp::PcRelative | RelocOp::Branch, _) => o.s + o.a - o.p,
        (RelocOp::GotBasePcRel, _) => o.got + o.a - o.p,
        (RelocOp::GotBaseOffset, _) => o.s + o.a - o.got,
        (RelocOp::Size, _) => o.size + o.a,
        (RelocOp::Difference, _) => o.s + o.a - minus(),
        (RelocOp::ImageRelative, _) => o.s + o.a - o.image_base,
        (RelocOp::SegmentOffset, _) => o.s + o.a - segment()?.1,
        (RelocOp::SegmentIndex, _) => segment()?.0 + o.a,
        (op, via) => unreachable!("{op:?} planned as {via:?}"),
    })
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
    x86_64::relax_got_load(&mut probe, 3, relax)
}

/// Keeps one COMDAT group of each signature in the load, as the groups'
/// selection says, and discards the others' sections. Definitions in groups
/// that tolerate duplicates become weak, so a later load's copy yields to
/// the one already in the session instead of clashing with it.
fn select_comdats(graphs: &mut [LinkGraph<'_>]) -> Result<(), LinkError> {
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

type Globals<'a> = HashMap<&'a str, (usize, SymbolId)>;

/// The load's global symbol table: strong beats common beats weak; two
/// strong definitions are an error naming both objects.
fn collect_globals<'a>(
    graphs: &'a [LinkGraph<'a>],
    req: &LinkRequest<'_>,
) -> Result<(Globals<'a>, Vec<Common<'a>>), LinkError> {
    fn rank(sym: &Symbol<'_>) -> u8 {
        match (sym.definition, sym.binding) {
            (Definition::Common { .. }, _) => 1,
            (_, Binding::Weak) => 0,
            _ => 2,
        }
    }
    let mut globals: Globals<'a> = HashMap::default();
    let mut common_sizes: HashMap<&'a str, (u64, u64)> = HashMap::default();
    for (g, graph) in graphs.iter().enumerate() {
        for (id, sym) in graph.symbols.iter().enumerate() {
            if sym.binding == Binding::Local || sym.name.is_empty() {
                continue;
            }
            match sym.definition {
                Definition::Defined { section, .. } if graph.sections[section].live => {}
                Definition::Absolute(_) => {}
                Definition::Common { align } => {
                    let entry = common_sizes.entry(sym.name).or_insert((0, 1));
                    entry.0 = entry.0.max(sym.size);
                    entry.1 = entry.1.max(align);
                }
                _ => continue,
            }
            match globals.get(sym.name) {
                None => {
                    globals.insert(sym.name, (g, id));
                }
                Some(&(g0, id0)) => {
                    let existing = &graphs[g0].symbols[id0];
                    let (old, new) = (rank(existing), rank(sym));
                    if old == 2 && new == 2 {
                        return Err(LinkError::Duplicate {
                            symbol: sym.name.to_string(),
                            first: graphs[g0].object.clone(),
                            second: graph.object.clone(),
                        });
                    }
                    if new > old {
                        globals.insert(sym.name, (g, id));
                    }
                }
            }
        }
    }
    // Strong definitions that clash with another live module's exports.
    // Weak and common (tentative) definitions yield to those instead.
    for (&name, &(g, id)) in &globals {
        let sym = &graphs[g].symbols[id];
        if yields_to_session(sym) || !sym.visibility.exported() {
            continue;
        }
        if let Some(export) = req.exports.get(name)
            && Some(export.module) != req.replacing
        {
            return Err(LinkError::Duplicate {
                symbol: name.to_string(),
                first: format!("module {} ({})", export.module, export.objects),
                second: graphs[g].object.clone(),
            });
        }
    }
    let mut commons = Vec::new();
    let mut names: Vec<&&str> = common_sizes.keys().collect();
    names.sort();
    for name in names {
        let (g, id) = globals[*name];
        let sym = &graphs[g].symbols[id];
        let in_session = req
            .exports
            .get(*name)
            .is_some_and(|e| Some(e.module) != req.replacing);
        if matches!(sym.definition, Definition::Common { .. })
            && !(yields_to_session(sym) && in_session)
        {
            let (size, align) = common_sizes[*name];
            commons.push(Common { name, size, align });
        }
    }
    Ok((globals, commons))
}

/// Whether a definition gives way to one another live module exports: weak
/// and common (tentative) definitions do, as in a dynamic linker's global
/// scope; strong ones clash with it.
fn yields_to_session(sym: &Symbol<'_>) -> bool {
    sym.visibility.exported()
        && (sym.binding == Binding::Weak || matches!(sym.definition, Definition::Common { .. }))
}

struct Resolver<'g, 'a, 's> {
    graphs: &'g [LinkGraph<'a>],
    globals: &'g Globals<'g>,
    commons: &'g [Common<'g>],
    cache: Vec<Vec<Option<Resolved<'g>>>>,
    /// (runtime function, argument register) of each dso thunk.
    thunks: Vec<(u64, u8)>,
    /// What each Microsoft x64 -> System V shim calls.
    shims: Vec<Target>,
    /// What each COFF import slot holds, and the other-module data symbol it
    /// binds, if any.
    imports: Vec<(Target, Option<(u32, String)>)>,
    /// How deep the current chain of fallbacks (alternate names) is.
    fallback_depth: u32,
    req: LinkRequest<'s>,
}

/// Names the runtime provides under another name to COFF code, because
/// the handlers they register are Microsoft x64 functions.
const WIN64_RUNTIME_NAMES: [(&str, &str); 4] = [
    ("atexit", "__solder_win64_atexit"),
    ("_onexit", "__solder_win64_onexit"),
    ("at_quick_exit", "__solder_win64_at_quick_exit"),
    ("__cxa_atexit", "__solder_win64_cxa_atexit"),
];

/// Host symbols COFF code uses without a calling-convention shim: the stack
/// probe has its own register convention, and `_fltused` is data.
const WIN64_RAW_NAMES: [&str; 2] = ["__chkstk", "_fltused"];

/// The name to ask the executor for when an object of `format` leaves `name`
/// undefined: the C name (Mach-O's leading underscore removed), or the
/// runtime's Microsoft x64 variant of an `atexit`-like function. `None` when
/// no host symbol can match (a Mach-O name without the underscore).
pub fn host_name(format: ObjectFormat, name: &str) -> Option<&str> {
    let c_name = format.c_name(name)?;
    if format.win64()
        && let Some(&(_, runtime)) = WIN64_RUNTIME_NAMES.iter().find(|(c, _)| *c == c_name)
    {
        return Some(runtime);
    }
    Some(c_name)
}

/// Every host name a load may ask about for an undefined `name`: its own
/// and, for a COFF import (`__imp_NAME`), NAME's.
pub fn host_names(format: ObjectFormat, name: &str) -> impl Iterator<Item = &str> {
    let import = (format == ObjectFormat::Coff)
        .then(|| name.strip_prefix("__imp_"))
        .flatten()
        .and_then(|inner| host_name(format, inner));
    host_name(format, name).into_iter().chain(import)
}

impl<'g, 'a, 's> Resolver<'g, 'a, 's> {
    fn cached(&self, g: usize, id: SymbolId) -> Resolved<'g> {
        self.cache[g][id].expect("every edge target is resolved before planning")
    }

    fn resolve(
        &mut self,
        g: usize,
        id: SymbolId,
        site: impl Fn() -> Site,
    ) -> Result<Resolved<'g>, LinkError> {
        if let Some(r) = self.cache[g][id] {
            return Ok(r);
        }
        let r = self.resolve_uncached(g, id, &site)?;
        self.cache[g][id] = Some(r);
        Ok(r)
    }

    fn definition(
        &self,
        g: usize,
        id: SymbolId,
        site: &dyn Fn() -> Site,
    ) -> Result<Resolved<'g>, LinkError> {
        let graph = &self.graphs[g];
        let sym = &graph.symbols[id];
        let name: &'g str = sym.name;
        if sym.kind == SymbolKind::ThreadLocal {
            return Err(LinkError::UnsupportedRelocation(Box::new(
                crate::error::UnsupportedRelocation {
                    site: site(),
                    reloc: "reference".into(),
                    symbol: name.to_string(),
                    why: ": thread-local storage is not supported yet".into(),
                },
            )));
        }
        let target = match sym.definition {
            Definition::Defined { section, offset } => {
                if !graph.sections[section].live {
                    return Err(LinkError::Malformed {
                        object: graph.object.clone(),
                        reason: format!(
                            "{}: refers to `{name}` in discarded COMDAT section {}",
                            site(),
                            graph.sections[section].name
                        ),
                    });
                }
                Target::Section(g, section, offset)
            }
            Definition::Absolute(value) => {
                return Ok(Resolved {
                    target: Target::Address(value),
                    size: sym.size,
                    name,
                    origin: Origin::Absolute,
                });
            }
            Definition::Common { .. } => {
                let index = self
                    .commons
                    .iter()
                    .position(|c| c.name == name)
                    .expect("chosen commons are allocated");
                return Ok(Resolved {
                    target: Target::Common(index),
                    size: self.commons[index].size,
                    name,
                    origin: Origin::Load,
                });
            }
            Definition::Unplaced => {
                return Err(LinkError::Malformed {
                    object: graph.object.clone(),
                    reason: format!(
                        "{}: refers to `{name}`, which is in a section that is not loaded",
                        site()
                    ),
                });
            }
            Definition::Undefined => unreachable!("callers pass definitions"),
        };
        Ok(Resolved {
            target,
            size: sym.size,
            name,
            origin: Origin::Load,
        })
    }

    fn resolve_uncached(
        &mut self,
        g: usize,
        id: SymbolId,
        site: &dyn Fn() -> Site,
    ) -> Result<Resolved<'g>, LinkError> {
        let graph = &self.graphs[g];
        let sym = &graph.symbols[id];
        let name: &'g str = sym.name;
        if sym.binding == Binding::Local {
            return match sym.definition {
                Definition::Undefined => Err(LinkError::Malformed {
                    object: graph.object.clone(),
                    reason: format!("{}: local symbol `{name}` is undefined", site()),
                }),
                _ => self.definition(g, id, site),
            };
        }
        // A COFF import slot: a pointer to NAME, made here when no object
        // defines `__imp_NAME` itself.
        if graph.format == ObjectFormat::Coff
            && let Some(inner) = name.strip_prefix("__imp_")
            && !self.globals.contains_key(name)
        {
            let Some(r) = self.lookup(g, inner, site)? else {
                return Err(LinkError::Undefined {
                    symbol: inner.to_string(),
                    site: site(),
                });
            };
            let r = self.adapt_abi(g, r, site)?;
            self.imports.push((r.target, binding_of(&r)));
            return Ok(Resolved {
                target: Target::Import(self.imports.len() - 1),
                size: 8,
                name,
                origin: Origin::Load,
            });
        }
        if let Some(r) = self.lookup(g, name, site)? {
            return self.adapt_abi(g, r, site);
        }
        if let Some(fallback) = sym.fallback {
            // Alternate names may chain, but never loop.
            if self.fallback_depth > 16 {
                return Err(LinkError::Malformed {
                    object: graph.object.clone(),
                    reason: format!("{}: the alternate names of `{name}` form a loop", site()),
                });
            }
            self.fallback_depth += 1;
            let r = self.resolve(g, fallback, site);
            self.fallback_depth -= 1;
            return r;
        }
        if sym.binding == Binding::Weak {
            return Ok(Resolved {
                target: Target::Null,
                size: 0,
                name,
                origin: Origin::Absolute,
            });
        }
        Err(LinkError::Undefined {
            symbol: name.to_string(),
            site: site(),
        })
    }

    /// Finds what the global `name`, referenced from graph `g`, means: the
    /// linker's own symbols, this load's definitions, the runtime's
    /// interposers, other modules' exports, then the host. `None` when
    /// nothing defines it.
    fn lookup(
        &mut self,
        g: usize,
        name: &'g str,
        site: &dyn Fn() -> Site,
    ) -> Result<Option<Resolved<'g>>, LinkError> {
        let format = self.graphs[g].format;
        let special = |target: Target, size: u64, origin: Origin| {
            Ok(Some(Resolved {
                target,
                size,
                name,
                origin,
            }))
        };
        match (format, format.c_name(name)) {
            (ObjectFormat::Elf, Some("_GLOBAL_OFFSET_TABLE_")) => {
                return special(Target::GotBase, 0, Origin::Load);
            }
            (_, Some("__dso_handle")) => return special(Target::DsoHandle, 8, Origin::Load),
            // The image base ADDR32NB offsets are relative to: the slab's start.
            (ObjectFormat::Coff, Some("__ImageBase")) => {
                let base = self.req.slab.base();
                return special(Target::Address(base), 0, Origin::Absolute);
            }
            _ => {}
        }
        if let Some(&(g2, id2)) = self.globals.get(name) {
            let def = &self.graphs[g2].symbols[id2];
            // A weak or common definition yields to one already in the
            // session, as a dynamic linker's global scope would have it.
            if !yields_to_session(def) {
                return self.definition(g2, id2, site).map(Some);
            }
            if let Some(r) = self.exported_by_session(name)? {
                return Ok(Some(r));
            }
            return self.definition(g2, id2, site).map(Some);
        }
        let known = host_name(format, name).and_then(|host| self.req.symbols.get(host).copied());
        if let Some(info) = known
            && matches!(
                info.kind,
                HostKind::InterposerDirect | HostKind::InterposerPassDso
            )
        {
            let target = if info.kind == HostKind::InterposerDirect {
                Target::Address(info.address)
            } else {
                let thunk = (info.address, info.arg);
                let index = match self.thunks.iter().position(|&t| t == thunk) {
                    Some(i) => i,
                    None => {
                        self.thunks.push(thunk);
                        self.thunks.len() - 1
                    }
                };
                Target::Thunk(index)
            };
            return special(target, 0, Origin::Runtime);
        }
        if let Some(r) = self.exported_by_session(name)? {
            return Ok(Some(r));
        }
        if let Some(host) = known.filter(|i| i.kind != HostKind::Missing) {
            if host.kind == HostKind::Tls {
                return Err(LinkError::UnsupportedRelocation(Box::new(
                    crate::error::UnsupportedRelocation {
                        site: site(),
                        reloc: "reference".into(),
                        symbol: name.to_string(),
                        why: ": the host symbol is thread-local, which is not supported yet".into(),
                    },
                )));
            }
            let kind = match host.kind {
                HostKind::Function => HostSymbolKind::Function,
                HostKind::Data => HostSymbolKind::Data,
                _ => HostSymbolKind::Unknown,
            };
            return Ok(Some(Resolved {
                target: Target::Address(host.address),
                size: host.size,
                name,
                origin: Origin::Host(kind),
            }));
        }
        Ok(None)
    }

    /// Bridges calling conventions: a System V function referenced from
    /// COFF code is reached through a shim; a COFF function referenced from
    /// System V code is refused.
    fn adapt_abi(
        &mut self,
        g: usize,
        r: Resolved<'g>,
        site: &dyn Fn() -> Site,
    ) -> Result<Resolved<'g>, LinkError> {
        let format = self.graphs[g].format;
        let raw = format
            .c_name(r.name)
            .is_some_and(|c| WIN64_RAW_NAMES.contains(&c));
        let (sysv_function, win64_function) = match r.origin {
            Origin::Host(HostSymbolKind::Data) => (false, false),
            Origin::Host(_) | Origin::Runtime => (!raw, false),
            Origin::Module {
                function: true,
                win64,
                ..
            } => (!win64, win64),
            _ => (false, false),
        };
        if format.win64() && sysv_function {
            let index = match self.shims.iter().position(|&t| t == r.target) {
                Some(i) => i,
                None => {
                    self.shims.push(r.target);
                    self.shims.len() - 1
                }
            };
            return Ok(Resolved {
                target: Target::Shim(index),
                ..r
            });
        }
        if !format.win64() && win64_function {
            return Err(LinkError::UnsupportedRelocation(Box::new(
                crate::error::UnsupportedRelocation {
                    site: site(),
                    reloc: "reference".into(),
                    symbol: r.name.to_string(),
                    why: ": it is a function of a COFF module (Microsoft x64 calling \
                          convention), which System V code cannot call"
                        .into(),
                },
            )));
        }
        Ok(r)
    }

    /// A symbol exported by another live module: functions through their
    /// indirection stub, data directly.
    fn exported_by_session(&mut self, name: &'g str) -> Result<Option<Resolved<'g>>, LinkError> {
        let Some(export) = self.req.exports.get(name) else {
            return Ok(None);
        };
        if Some(export.module) == self.req.replacing {
            return Ok(None);
        }
        let address = if export.function {
            self.req
                .indirection
                .stub_for(self.req.slab, self.req.executor, name, export.address)?
        } else {
            export.address
        };
        Ok(Some(Resolved {
            target: Target::Address(address),
            size: 0,
            name,
            origin: Origin::Module {
                module: export.module,
                function: export.function,
                win64: export.win64,
            },
        }))
    }
}

fn align_up(value: u64, align: u64) -> u64 {
    value.div_ceil(align.max(1)) * align.max(1)
}

/// Places sections and synthesized pieces in three segments: read-execute,
/// read-only, read-write.
#[allow(clippy::too_many_arguments)]
fn lay_out(
    graphs: &[LinkGraph<'_>],
    plt: usize,
    thunks: usize,
    shims: usize,
    got: usize,
    copies: &[(u64, u64)],
    commons: &[Common<'_>],
    page: u64,
) -> Result<Layout, LinkError> {
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

#[allow(clippy::too_many_arguments)]
fn write_module(
    graphs: &[LinkGraph<'_>],
    resolver: &mut Resolver<'_, '_, '_>,
    layout: &Layout,
    base: u64,
    plans: &[Via],
    got_keys: &[(Target, Option<(u32, String)>)],
    plt: &[usize],
    thunks: &[(u64, u8)],
    thunk_slots: &[usize],
    shim_slots: &[usize],
    import_slots: &[usize],
    copies: &[(u64, u64)],
) -> Result<LinkedModule, LinkError> {
    let win64 = graphs.first().is_some_and(|g| g.format.win64());
    let image_base = resolver.req.slab.base();
    let total = layout.total as usize;
    let mut image = Vec::new();
    let memory: &mut [u8] =
        match resolver
            .req
            .executor
            .writable_in_place(base, layout.total, layout.written)?
        {
            // SAFETY: the executor made the range read-write in this process.
            // The slab allocated it to this module alone and the session touches
            // it only after `write_module` returns (to protect it), so this is
            // the only reference to it. Fresh and released slab pages read as
            // zero, as a new image must.
            Some(start) => unsafe { std::slice::from_raw_parts_mut(start.as_ptr(), total) },
            None => {
                image = vec![0u8; total];
                &mut image
            }
        };
    let got_base = base + layout.got;
    let dso = base + layout.dso;
    let address_of = |target: Target| -> u64 {
        match target {
            Target::Section(g, s, offset) => {
                base + layout.sections[g][s].expect("live sections are placed") + offset
            }
            Target::Common(i) => base + layout.commons[i],
            Target::Address(a) => a,
            Target::DsoHandle => dso,
            Target::GotBase => got_base,
            Target::Thunk(i) => base + layout.thunks + (i * DSO_THUNK_SIZE) as u64,
            Target::Shim(i) => base + layout.shims + (i * WIN64_TO_SYSV_SHIM.len()) as u64,
            Target::Import(i) => got_base + 8 * import_slots[i] as u64,
            Target::Null => 0,
        }
    };
    let copy_of = |address: u64| -> Option<u64> {
        copies
            .iter()
            .position(|&(a, _)| a == address)
            .map(|i| base + layout.copies[i])
    };

    // Section contents.
    for (g, graph) in graphs.iter().enumerate() {
        for (s, section) in graph.sections.iter().enumerate() {
            if let (Some(offset), false) = (layout.sections[g][s], section.data.is_empty()) {
                let at = offset as usize;
                memory[at..at + section.data.len()].copy_from_slice(&section.data);
            }
        }
    }
    // Copies of far host data.
    for (i, &(address, size)) in copies.iter().enumerate() {
        let at = layout.copies[i] as usize;
        let source = resolver.req.executor.read(address, size)?;
        memory[at..at + size as usize].copy_from_slice(&source);
    }

    let mut bindings = Vec::new();
    let mut imports: Vec<(u32, String)> = Vec::new();
    let mut note_import = |origin: Origin, name: &str| {
        if let Origin::Module { module, .. } = origin
            && !imports.iter().any(|(m, n)| *m == module && n == name)
        {
            imports.push((module, name.to_string()));
        }
    };

    // GOT entries.
    for (i, &(key, _)) in got_keys.iter().enumerate() {
        let value = match key {
            Target::Address(a) => copy_of(a).unwrap_or(a),
            other => address_of(other),
        };
        let at = (layout.got + 8 * i as u64) as usize;
        memory[at..at + 8].copy_from_slice(&value.to_le_bytes());
    }
    // PLT stubs.
    for (i, &slot) in plt.iter().enumerate() {
        let stub = layout.plt + (i * JUMP_STUB.len()) as u64;
        let mut bytes = JUMP_STUB;
        let disp =
            (got_base + 8 * slot as u64) as i64 - (base + stub) as i64 - JUMP_STUB_END as i64;
        bytes[JUMP_STUB_DISP..JUMP_STUB_DISP + 4].copy_from_slice(&(disp as i32).to_le_bytes());
        memory[stub as usize..stub as usize + bytes.len()].copy_from_slice(&bytes);
    }
    // Dso thunks.
    for (i, &(_, arg)) in thunks.iter().enumerate() {
        let at = layout.thunks + (i * DSO_THUNK_SIZE) as u64;
        let (mut bytes, fields) =
            x86_64::dso_thunk(arg).expect("interposers use argument registers 0-3");
        let targets = [dso, got_base + 8 * thunk_slots[i] as u64];
        for ((field, end), target) in fields.into_iter().zip(targets) {
            let disp = target as i64 - (base + at + end as u64) as i64;
            bytes[field..field + 4].copy_from_slice(&(disp as i32).to_le_bytes());
        }
        memory[at as usize..at as usize + DSO_THUNK_SIZE].copy_from_slice(&bytes);
    }
    // Microsoft x64 -> System V shims.
    for (i, &slot) in shim_slots.iter().enumerate() {
        let at = layout.shims + (i * WIN64_TO_SYSV_SHIM.len()) as u64;
        let mut bytes = WIN64_TO_SYSV_SHIM;
        let (field, end) = WIN64_TO_SYSV_SLOT;
        let disp = (got_base + 8 * slot as u64) as i64 - (base + at + end as u64) as i64;
        bytes[field..field + 4].copy_from_slice(&(disp as i32).to_le_bytes());
        memory[at as usize..at as usize + bytes.len()].copy_from_slice(&bytes);
    }

    // Edges.
    let mut plan = plans.iter();
    for (g, graph) in graphs.iter().enumerate() {
        for (s, section) in graph.sections.iter().enumerate() {
            if !section.live {
                continue;
            }
            let section_offset = layout.sections[g][s].expect("live sections are placed");
            for edge in &section.edges {
                let via = *plan.next().expect("one plan per edge");
                if edge.kind.op == RelocOp::None {
                    continue;
                }
                let r = resolver.cached(g, edge.target);
                note_import(r.origin, r.name);
                let place = base + section_offset + edge.offset;
                let field_at = (section_offset + edge.offset) as usize;
                let s_addr = match via {
                    Via::Stub(i) => base + layout.plt + u64::from(i) * JUMP_STUB.len() as u64,
                    Via::Copy(i) => base + layout.copies[i as usize],
                    _ => address_of(r.target),
                };
                let (a, p, got) = (edge.addend as i128, place as i128, got_base as i128);
                let s_val = s_addr as i64 as i128; // absolute values are two's complement
                // The module segment holding the target (SECREL / SECTION).
                let segment = || {
                    layout
                        .segments
                        .iter()
                        .enumerate()
                        .find(|(_, (offset, size, _))| {
                            (base + offset..base + offset + size).contains(&s_addr)
                        })
                        .map(|(index, &(offset, _, _))| {
                            (index as i128 + 1, (base + offset) as i128)
                        })
                        .ok_or_else(|| {
                            LinkError::UnsupportedRelocation(Box::new(
                                crate::error::UnsupportedRelocation {
                                    site: site(graph, section, edge.offset),
                                    reloc: edge.kind.name.to_string(),
                                    symbol: r.name.to_string(),
                                    why: ": section-relative references must target this module"
                                        .into(),
                                },
                            ))
                        })
                };
                if let (RelocOp::GotEntryPcRel { relax }, Via::Relaxed) = (edge.kind.op, via) {
                    let start = section_offset as usize;
                    let relaxed = x86_64::relax_got_load(
                        &mut memory[start..start + section.size as usize],
                        edge.offset as usize,
                        relax,
                    );
                    debug_assert!(relaxed, "planned relaxations match");
                }
                let operands = Operands {
                    s: s_val,
                    a,
                    p,
                    got,
                    size: r.size as i128,
                    image_base: image_base as i128,
                };
                let minus = || {
                    let minus = edge
                        .minus()
                        .expect("front-ends give differences a subtrahend");
                    address_of(resolver.cached(g, minus).target) as i64 as i128
                };
                let value = field_value(edge.kind.op, via, &operands, minus, segment)?;
                let width = usize::from(edge.kind.width);
                write_checked(&edge.kind, &mut memory[field_at..field_at + width], value).map_err(
                    |failure| {
                        let mut detail = format!(
                            "target {s_addr:#x}, place {place:#x}, distance {}",
                            crate::error::signed_hex(s_val - p)
                        );
                        if edge.kind.op == RelocOp::Absolute && edge.kind.is_narrow() {
                            detail.push_str(
                                "; absolute 32-bit addresses (-fno-pic code) need the slab in the low 2 GiB: use --slab-address",
                            );
                        }
                        LinkError::OutOfRange(Box::new(crate::error::OutOfRange {
                            site: site(graph, section, edge.offset),
                            reloc: edge.kind.name.to_string(),
                            symbol: r.name.to_string(),
                            value,
                            width: failure.width,
                            detail,
                        }))
                    },
                )?;
                if let (
                    Origin::Module {
                        module,
                        function: false,
                        ..
                    },
                    Via::Direct,
                ) = (r.origin, via)
                {
                    bindings.push(DataBinding {
                        site: place,
                        kind: edge.kind,
                        addend: edge.addend,
                        symbol: r.name.to_string(),
                        module,
                    });
                }
            }
        }
    }
    // GOT entries that hold another module's data address are bindings too.
    for (i, (_, binding)) in got_keys.iter().enumerate() {
        if let Some((module, symbol)) = binding {
            bindings.push(DataBinding {
                site: got_base + 8 * i as u64,
                kind: ABS64,
                addend: 0,
                symbol: symbol.clone(),
                module: *module,
            });
        }
    }

    // Initializers and finalizers, read back from relocated memory.
    let (initializers, mut finalizers) = lifecycle_lists(graphs, layout, memory);
    finalizers.win64 = win64;

    let mut exports = Vec::new();
    for (&name, &(g, id)) in resolver.globals {
        let sym = &graphs[g].symbols[id];
        if !sym.visibility.exported() {
            continue;
        }
        let r = resolver.cache[g][id];
        let target = match r {
            Some(r) if r.origin == Origin::Load => r.target,
            Some(_) => continue, // bound to another module's definition
            None => match sym.definition {
                Definition::Defined { section, offset } => Target::Section(g, section, offset),
                // Not allocated: it binds to another module's definition.
                Definition::Common { .. } => {
                    match resolver.commons.iter().position(|c| c.name == name) {
                        Some(index) => Target::Common(index),
                        None => continue,
                    }
                }
                Definition::Absolute(a) => Target::Address(a),
                _ => continue,
            },
        };
        if sym.binding == Binding::Weak
            && resolver
                .req
                .exports
                .get(name)
                .is_some_and(|e| Some(e.module) != resolver.req.replacing)
        {
            continue;
        }
        exports.push((
            name.to_string(),
            Export {
                module: resolver.req.module,
                objects: resolver.req.objects.clone(),
                address: address_of(target),
                function: sym.kind == SymbolKind::Function,
                win64,
            },
        ));
    }

    let mut crash_symbols = Vec::new();
    for (g, graph) in graphs.iter().enumerate() {
        for sym in &graph.symbols {
            if let (SymbolKind::Function, Definition::Defined { section, offset }) =
                (sym.kind, sym.definition)
                && let Some(at) = layout.sections[g][section]
            {
                crash_symbols.push(CrashSymbol {
                    start: base + at + offset,
                    size: sym.size,
                    name: sym.name.to_string(),
                });
            }
        }
    }

    let used = image.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    image.truncate(used);
    Ok(LinkedModule {
        memory: (base, layout.total),
        image,
        segments: layout
            .segments
            .iter()
            .map(|&(offset, size, p)| (base + offset, size, p))
            .collect(),
        dso,
        eh_frame: layout.eh_frame.map(|(offset, _)| base + offset),
        exports,
        imports,
        bindings,
        initializers,
        finalizers,
        crash_symbols,
        win64,
    })
}

/// The other-module data symbol a resolution refers to, if any.
fn binding_of(r: &Resolved<'_>) -> Option<(u32, String)> {
    match r.origin {
        Origin::Module {
            module,
            function: false,
            ..
        } => Some((module, r.name.to_string())),
        _ => None,
    }
}

/// The load's initializers in run order and its finalizers in array order,
/// as GNU ld would lay out `.init_array` / `.fini_array`: prioritized
/// sections by priority, then the rest in link order; `.ctors`/`.dtors`
/// contents reversed.
fn lifecycle_lists(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::x86_64::{ElfReloc, elf_reloc};
    use object::elf;

    fn kind(r_type: object::elf::RelocationType) -> RelocKind {
        match elf_reloc(r_type) {
            Some(ElfReloc::Kind(kind)) => kind,
            other => panic!("{r_type:?}: {other:?}"),
        }
    }

    /// Each formula, with operands distinct enough that any slip (a sign,
    /// a missing term, the wrong operand) changes the value.
    #[test]
    fn every_relocation_formula() {
        let o = Operands {
            s: 0x1000_0000,
            a: 0x30,
            p: 0x2000_0000,
            got: 0x3000_0000,
            size: 0x50,
            image_base: 0x100,
        };
        let value = |op, via| field_value(op, via, &o, || 0x700, || Ok((2, 0x0fff_f000))).unwrap();
        let got_load = RelocOp::GotEntryPcRel { relax: Relax::Mov };
        let cases = [
            (got_load, Via::Relaxed, 0x1000_0000 + 0x30 - 0x2000_0000),
            (got_load, Via::Got(3), 0x3000_0000 + 24 + 0x30 - 0x2000_0000),
            (RelocOp::GotEntryOffset, Via::Got(3), 24 + 0x30),
            (RelocOp::Absolute, Via::Direct, 0x1000_0030),
            (RelocOp::PcRelative, Via::Direct, 0x1000_0030 - 0x2000_0000),
            (RelocOp::Branch, Via::Stub(0), 0x1000_0030 - 0x2000_0000),
            (
                RelocOp::GotBasePcRel,
                Via::Direct,
                0x3000_0030 - 0x2000_0000,
            ),
            (
                RelocOp::GotBaseOffset,
                Via::Direct,
                0x1000_0030 - 0x3000_0000,
            ),
            (RelocOp::Size, Via::Direct, 0x80),
            (RelocOp::Difference, Via::Direct, 0x1000_0030 - 0x700),
            (RelocOp::ImageRelative, Via::Direct, 0x1000_0030 - 0x100),
            (
                RelocOp::SegmentOffset,
                Via::Direct,
                0x1000_0030 - 0x0fff_f000,
            ),
            (RelocOp::SegmentIndex, Via::Direct, 2 + 0x30),
        ];
        for (op, via, expected) in cases {
            assert_eq!(value(op, via), expected, "{op:?} {via:?}");
        }
        let outside = field_value(
            RelocOp::SegmentIndex,
            Via::Direct,
            &o,
            || 0,
            || Err(LinkError::Memory("not in the module".into())),
        );
        assert!(outside.is_err());
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
