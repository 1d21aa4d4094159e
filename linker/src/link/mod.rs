//! One load, from link graphs to finalized memory. The stages, one file
//! each, in the order [`link`] runs them:
//!
//! 1. [`comdat`]: keep one COMDAT group per signature; prune the unwind
//!    frames of discarded code.
//! 2. [`symbols`]: the load's global symbol table by precedence, and the
//!    common symbols it allocates.
//! 3. [`resolve`] (with [`bridges`] between formats and the host): what
//!    every edge refers to.
//! 4. [`plan`]: how every edge reaches its target (directly, GOT, stub,
//!    copy), which fixes the GOT, stubs, thunks and shims.
//! 5. [`layout`]: offsets in three segments by protection; then the slab
//!    allocates the module.
//! 6. [`write`]: contents, GOT, stubs, and every edge relocated.
//! 7. [`exports`] and [`lifecycle`]: what the module offers, its crash
//!    symbols, and its initializers and finalizers.
//!
//! The graphs (and so every relocation record) are dropped when this
//! returns; what a module keeps is only what its future needs: its exports,
//! the few direct references into other modules' data (re-applied on a hot
//! swap), and its deinitializers.
//!
//! Hashing is Fx: the keys are names and addresses from the objects being
//! linked, where SipHash's resistance to chosen collisions buys nothing and
//! cost 2% of linking Lua.

mod bridges;
mod comdat;
mod exports;
mod globals;
mod host_lookups;
mod layout;
mod lifecycle;
pub mod map;
mod plan;
mod relocate;
mod resolutions;
mod resolve;
mod resolve_loaded;
mod symbols;
mod write;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use rustc_hash::FxHashMap as HashMap;
use solder_executor::abi::CallingConvention;
use solder_executor::module::CrashSymbol;
use solder_executor::module::Finalizers;
use solder_executor::protocol::SymbolInfo;

pub use bridges::{host_name, host_names};

use crate::arch::RelocKind;
use crate::error::{LinkError, Site};
use crate::executors::{Executor, ThreadLocals, TlsTemplate};
use crate::graph::*;
use crate::indirection::Indirection;
use crate::memory::Slab;
use crate::stats::{Stage, StageClock};
use layout::Layout;
use plan::Plan;
use resolve::Resolver;

/// A symbol a module offers to later loads.
#[derive(Debug, Clone)]
pub struct Export {
    pub module: u32,
    /// The definition itself (not its stub).
    pub address: u64,
    pub function: bool,
    /// The calling convention of the module's functions.
    pub convention: CallingConvention,
    /// For a thread-local variable, where it lives (its block's module id,
    /// its offset there, and its thread-pointer offset when the block is
    /// fixed); `address` is then 0: each thread has its own copy. Boxed:
    /// few exports are thread-local, and a large module has hundreds of
    /// thousands of exports (kept by the session, all in fresh memory).
    pub thread_local: Option<Box<crate::executors::HostThreadLocal>>,
}

// Exports are kept by the hundred thousand: keep them at 24 bytes.
const _: () = assert!(std::mem::size_of::<Export>() == 24);

/// A direct reference from one module into another module's data, kept so a
/// hot swap of the target can re-apply it.
#[derive(Debug, Clone)]
pub struct DataBinding {
    pub site: u64,
    pub kind: RelocKind,
    pub addend: i64,
    /// What re-applying starts from (the first `kind.encoding.size()`
    /// bytes): the field as the load wrote it, so an instruction keeps its
    /// other bits. An integer field is rewritten whole (a GOT entry's are
    /// zeros).
    pub written: [u8; 8],
    pub symbol: String,
    pub module: u32,
}

/// What the session needs to know about the load it asked for.
pub struct LinkRequest<'s> {
    pub module: u32,
    pub objects: Arc<str>,
    pub slab: &'s mut Slab,
    /// What the executor said about names earlier loads left undefined;
    /// the link asks about the rest of this load's in one batch, once it
    /// knows which names the load defines, and adds the answers.
    pub symbols: &'s mut HashMap<String, SymbolInfo>,
    /// Whether the runtime interposes this host name (`atexit` and the
    /// like): it is asked about even when another module exports it.
    pub interposes: fn(&str) -> bool,
    pub executor: &'s mut dyn Executor,
    pub exports: &'s HashMap<Arc<str>, Export>,
    /// A live module named for messages (`module 3 (a.o, b.o)`).
    pub describe_module: &'s dyn Fn(u32) -> String,
    pub indirection: &'s mut Indirection,
    /// The module being hot-swapped out: its exports are invisible here.
    pub replacing: Option<u32>,
    /// The program's entry point (`main`, `--entry`), to be found among all
    /// of the load's global definitions, hidden ones included (as a static
    /// linker finds it): [`LinkedModule::entry`].
    pub entry: Option<&'s str>,
    /// Whether to make the load's link map ([`LinkedModule::map`]).
    pub map: bool,
    /// Whether to report where each section went
    /// ([`LinkedModule::section_addresses`], for debuggers).
    pub debug: bool,
    /// Threads the load's objects may be written and relocated on.
    pub threads: crate::parallel::Threads,
    /// Whether to time the link's stages ([`LinkedModule::stages`]).
    pub stats: bool,
}

/// Where one object's sections went: by section header, the graph section
/// it became; by graph section, its load address.
#[derive(Debug, Clone, Default)]
pub struct SectionPlaces {
    pub headers: Vec<Option<SectionId>>,
    pub addresses: Vec<Option<u64>>,
}

/// A linked load, ready to be written to the executor.
pub struct LinkedModule {
    /// The module's objects, for messages (the request's).
    pub objects: Arc<str>,
    pub memory: (u64, u64),
    /// The module's bytes from `memory.0`, relocated (trailing zero pages
    /// trimmed: the executor's fresh pages are zero). Empty when the module
    /// was written in place ([`Executor::writable_in_place`]).
    pub image: Vec<u8>,
    pub segments: Vec<(u64, u64, Protection)>,
    pub dso: u64,
    /// Start of the merged, zero-terminated `.eh_frame`, if any.
    pub eh_frame: Option<u64>,
    /// In pieces of consecutive objects, as the link's threads made them
    /// (one after another, they are the list). Each name is shared with
    /// the session's table, the module's list of what it exports and, for
    /// a function, its crash symbol (one copy of the name, not one each).
    pub exports: Vec<Vec<(Arc<str>, Export)>>,
    /// (module, symbol) pairs this load references in other modules.
    pub imports: Vec<(u32, String)>,
    pub bindings: Vec<DataBinding>,
    pub initializers: Vec<u64>,
    pub finalizers: Finalizers,
    /// In pieces, as `exports` ([`CrashSymbols::from_pieces`]).
    ///
    /// [`CrashSymbols::from_pieces`]: solder_executor::module::CrashSymbols::from_pieces
    pub crash_symbols: Vec<Vec<CrashSymbol>>,
    /// The calling convention of the module's functions (entry points,
    /// initializers): Microsoft x64 for a COFF load.
    pub convention: CallingConvention,
    /// The module's thread-local block, as the executor loaded it
    /// ([`Executor::drop_thread_locals`] once the module's code is gone).
    pub thread_locals: Option<u64>,
    /// The address of the request's entry point, when the load defines it.
    pub entry: Option<u64>,
    /// The load's link map, when the request asked for it.
    pub map: Option<map::LinkMap>,
    /// When the request asked (`debug`): per graph, which graph section
    /// each of the object's section headers became
    /// ([`LinkGraph::source_sections`]) and the load address of each graph
    /// section that was placed.
    pub section_addresses: Option<Vec<SectionPlaces>>,
    /// How long each stage of the link took (when the request asked).
    pub stages: Vec<Stage>,
}

/// Links `graphs` as one module.
pub fn link(
    mut graphs: Vec<LinkGraph<'_>>,
    req: LinkRequest<'_>,
) -> Result<LinkedModule, LinkError> {
    let mut clock = StageClock::start(req.stats);
    one_calling_convention(&graphs)?;
    comdat::select(&mut graphs, req.threads)?;
    comdat::prune_discarded_frames(&mut graphs, req.threads)?;
    clock.lap("comdat");
    let (globals, commons) = symbols::collect(&graphs, &req)?;
    clock.lap("symbols");
    let mut resolver = Resolver::new(&graphs, &globals, &commons, req);
    let left = resolver.resolve_loaded();
    clock.lap("resolve");
    host_lookups::ask_executor(&graphs, &globals, &mut resolver.req, left.as_deref())?;
    clock.lap("host lookups");
    let copies = resolver.resolve_edges(left)?;
    clock.lap("resolve");
    let plan = plan::plan(&mut resolver, copies)?;
    resolver.locate_host_thread_locals()?;
    clock.lap("plan");
    let layout = layout::lay_out(&graphs, &plan, &commons, resolver.req.slab.page())?;
    let base = resolver.req.slab.allocate(layout.total)?;
    clock.lap("layout");
    let written =
        write_module(&mut resolver, &plan, &layout, base, &mut clock).map(|mut linked| {
            linked.stages = clock.stages;
            linked
        });
    if written.is_err() {
        // The image may be half written in place: discard its pages so the
        // next allocation of the range reads zero again.
        let _ = resolver.req.executor.release(base, layout.total);
        resolver.req.slab.release(base, layout.total);
    }
    written
}

/// One load is all System V code (ELF, Mach-O) or all Microsoft x64 code
/// (COFF).
fn one_calling_convention(graphs: &[LinkGraph<'_>]) -> Result<(), LinkError> {
    let convention = graphs.first().map(|g| g.format.convention());
    match graphs
        .iter()
        .find(|g| Some(g.format.convention()) != convention)
    {
        None => Ok(()),
        Some(odd) => Err(LinkError::UnsupportedObject {
            object: odd.object.clone(),
            reason: format!(
                "one load cannot mix COFF objects (Microsoft x64 calling convention) with ELF or \
                 Mach-O ones (System V); load them separately ({} is {})",
                graphs[0].object,
                graphs[0].format.name()
            ),
        }),
    }
}

/// Writes and relocates the module at `base`, and gathers what it keeps.
fn write_module(
    resolver: &mut Resolver<'_, '_, '_>,
    plan: &Plan,
    layout: &Layout,
    base: u64,
    clock: &mut StageClock,
) -> Result<LinkedModule, LinkError> {
    let graphs = resolver.graphs;
    let convention = graphs
        .first()
        .map_or(CallingConvention::SysV, |g| g.format.convention());
    let mut image = Vec::new();
    let memory = write::module_memory(&mut *resolver.req.executor, layout, base, &mut image)?;
    let mut at = write::Addresses::new(base, layout, plan);
    at.host_thread_locals = resolver
        .host_thread_locals
        .iter()
        .map(|v| v.place.expect("located before layout"))
        .collect();
    write::write_copies(resolver, plan, layout, memory)?;
    if let Some(block) = &layout.thread_locals {
        let init = write::thread_local_template(resolver, plan, &at)?;
        let template = TlsTemplate {
            init: &init,
            zero_size: block.size - block.init_size,
            align: block.align,
        };
        let (loaded, fixed) = load_thread_locals(&mut *resolver.req.executor, &template, plan)?;
        at.block = Some((loaded, fixed));
    }
    let finished = finish_module(resolver, plan, layout, &at, memory);
    clock.lap("write");
    let map =
        (finished.is_ok() && resolver.req.map).then(|| map::link_map(resolver, plan, &at, memory));
    if let (Err(_), Some((block, _))) = (&finished, at.block) {
        let _ = resolver.req.executor.drop_thread_locals(block.id);
    }
    let (references, initializers, finalizers) = finished?;
    let (exports, crash_symbols) = exports::record(resolver, &at, convention)
        .into_iter()
        .map(|piece| (piece.exports, piece.crash_symbols))
        .unzip();
    let entry = resolver
        .req
        .entry
        .and_then(|name| exports::entry(resolver, &at, name));
    image.truncate(without_trailing_zeroes(&image));
    clock.lap("exports");
    Ok(LinkedModule {
        objects: resolver.req.objects.clone(),
        memory: (base, layout.total),
        image,
        segments: layout
            .segments
            .iter()
            .map(|&(offset, size, p)| (base + offset, size, p))
            .collect(),
        dso: at.dso,
        eh_frame: layout.eh_frame.map(|(offset, _)| base + offset),
        exports,
        imports: references.imports,
        bindings: references.bindings,
        initializers,
        finalizers,
        crash_symbols,
        convention,
        thread_locals: at.block.map(|(block, _)| block.id),
        entry,
        map,
        section_addresses: resolver.req.debug.then(|| {
            graphs
                .iter()
                .zip(&layout.sections)
                .map(|(graph, placed)| SectionPlaces {
                    headers: graph.source_sections.clone(),
                    addresses: placed.iter().map(|at| at.map(|o| base + o)).collect(),
                })
                .collect()
        }),
        stages: Vec::new(),
    })
}

/// The length of `image` without its trailing zero bytes (the module's
/// memory is zero past what is sent). Whole chunks are checked at a time:
/// a byte-by-byte scan of a module's zero-fill data cost tens of
/// microseconds of every hot swap.
fn without_trailing_zeroes(image: &[u8]) -> usize {
    const CHUNK: usize = 64;
    let mut end = image.len();
    for chunk in image.rchunks(CHUNK) {
        // An OR over a chunk, not a search that stops early: it is
        // vectorized.
        if chunk.iter().fold(0, |any, &b| any | b) != 0 {
            let last = chunk.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
            return end - chunk.len() + last;
        }
        end -= chunk.len();
    }
    0
}

/// Loads the load's thread-local block: fixed when an access needs it to
/// be, or when general- or local-dynamic accesses would be rewritten to
/// cheaper ones (no call of `__tls_get_addr`) and static TLS has room for
/// the block with [`STATIC_TLS_RESERVE`] to spare; otherwise not fixed,
/// and the accesses stay as they are. The block, and whether it is fixed.
fn load_thread_locals(
    executor: &mut dyn Executor,
    template: &TlsTemplate<'_>,
    plan: &Plan,
) -> Result<(ThreadLocals, bool), LinkError> {
    if plan.relaxable_block
        && !plan.fixed_block
        && let Ok(loaded) = executor.load_thread_locals(template, true)
    {
        if static_tls_to_spare(executor) {
            return Ok((loaded, true));
        }
        // The last block placed: the loader takes its room back.
        executor.drop_thread_locals(loaded.id)?;
    }
    let fixed = plan.fixed_block;
    let loaded = executor
        .load_thread_locals(template, fixed)
        .map_err(|e| thread_local_block_refused(e, fixed))?;
    Ok((loaded, fixed))
}

/// Static TLS an optional rewrite leaves free: the room the loader keeps
/// by default for libraries the program opens later whose initial-exec
/// code needs it (glibc's `optional_static_tls`). A block that needs its
/// room is loaded fixed whatever is left.
const STATIC_TLS_RESERVE: u64 = 512;

/// Whether static TLS still has [`STATIC_TLS_RESERVE`] free: a block that
/// size is placed there and closed again (the last block placed, whose
/// room the loader takes back).
fn static_tls_to_spare(executor: &mut dyn Executor) -> bool {
    let reserve = TlsTemplate {
        init: &[],
        zero_size: STATIC_TLS_RESERVE,
        align: 16,
    };
    match executor.load_thread_locals(&reserve, true) {
        Ok(placed) => executor.drop_thread_locals(placed.id).is_ok(),
        Err(_) => false,
    }
}

/// The error for a thread-local block the executor could not load; a
/// fixed one says what else works.
fn thread_local_block_refused(error: LinkError, fixed: bool) -> LinkError {
    match error {
        LinkError::ThreadLocal { what, reason } if fixed => LinkError::ThreadLocal {
            what,
            reason: format!(
                "{reason}: the load's initial-exec, local-exec or descriptor accesses need its \
                 thread-local block in static TLS, and the executor's loader has no room left \
                 there (raise it with GLIBC_TUNABLES=glibc.rtld.optional_static_tls=BYTES in the \
                 executor's environment, or compile with -fPIC so that the code reaches its \
                 variables through __tls_get_addr)"
            ),
        },
        other => other,
    }
}

/// What [`finish_module`] gathers: references into other modules, and the
/// initializers and finalizers read back from relocated memory.
type Finished = (relocate::References, Vec<u64>, Finalizers);

/// Writes the GOT and stubs, relocates every edge, and reads the
/// lifecycle lists back.
fn finish_module(
    resolver: &Resolver<'_, '_, '_>,
    plan: &Plan,
    layout: &Layout,
    at: &write::Addresses<'_>,
    memory: &mut [u8],
) -> Result<Finished, LinkError> {
    let graphs = resolver.graphs;
    let convention = graphs
        .first()
        .map_or(CallingConvention::SysV, |g| g.format.convention());
    write::write_got(plan, at, memory);
    write::write_stubs(plan, at, memory);
    write::write_dso_handle(at, memory);
    let threads = resolver.req.threads;
    let references = relocate::relocate(resolver, plan, at, memory, threads)?;
    let (initializers, mut finalizers) = lifecycle::lifecycle_lists(graphs, layout, memory);
    finalizers.convention = convention;
    Ok((references, initializers, finalizers))
}

/// Where an edge is, for messages.
fn site(graph: &LinkGraph<'_>, section: &Section<'_>, offset: u64) -> Site {
    Site {
        object: graph.object.clone(),
        section: section.name.to_string(),
        offset,
    }
}
