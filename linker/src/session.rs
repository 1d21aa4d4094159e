//! The session: a REPL-like sequence of loads into one slab. Add objects at
//! any time (later loads use earlier symbols), look symbols up, call
//! functions, remove a module, hot-swap a module, end the session.
//!
//! The session keeps every linker decision; the code lives and runs in an
//! [`Executor`]: this process by default, or a `solder-executor` process
//! (see [`ExecutorChoice`]), where a crash comes back as an error that
//! names the signal and the function, and the session can go on.

mod libraries;

use rustc_hash::FxHashMap as HashMap;
use std::sync::Arc;
use std::time::Duration;

use solder_executor::abi::CallingConvention;
use solder_executor::crash::CrashSymbols;
use solder_executor::lifecycle;
use solder_executor::module::CrashSymbol;
use solder_executor::protocol::SymbolInfo;
use solder_executor::sys::signal;

use crate::arch::{RelocOp, write_checked};
use crate::archive::Archive;
use crate::error::{Abnormal, LinkError};
use crate::executors::{
    Executor, ExecutorOutput, InProcess, Outcome, Recovery, Remote, RemoteConfig, Transport,
};
use crate::export_table::ExportTable;
use crate::graph::LinkGraph;
use crate::indirection::Indirection;
use crate::input::{ObjectFile, parse_object};
use crate::link::map::{LinkMap, MapMember};
use crate::link::{DataBinding, LinkRequest, LinkedModule, link};
use crate::members::{ArchiveSearch, Pulled};
use crate::memory::{self, Placement, Slab};
use crate::parallel::Threads;
use crate::plugins::{self, DebugSource, Emitted, LinkPlugin, Registration};
use crate::stats::{LoadStats, StageClock};

/// Where the session's code runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ExecutorChoice {
    /// In this process (a crash ends the process).
    #[default]
    InProcess,
    /// A `solder-executor` process: spawned over pipes, or reached over TCP.
    Remote {
        transport: Transport,
        /// Share the slab through a memfd: code is written in place.
        shared_memory: bool,
    },
}

/// How a session is set up.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Size of the address-space reservation all JIT memory comes from.
    pub slab_size: u64,
    pub placement: Placement,
    /// `-l NAME` libraries searched for host symbols.
    pub libraries: Vec<String>,
    /// Shared objects opened by path before linking.
    pub preloads: Vec<String>,
    /// False links only: no initializer, deinitializer or call runs.
    pub execute: bool,
    pub executor: ExecutorChoice,
    /// What a remote session does after a crash: nothing (the session is
    /// over), roll back to a checkpoint, or restart and replay the modules.
    pub recovery: Recovery,
    /// Where a remote program's stdout and stderr go; `None`: the
    /// transport's default ([`Transport::default_output`]: forwarded over
    /// TCP, local over pipes).
    pub executor_output: Option<ExecutorOutput>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            slab_size: 1 << 30,
            placement: Placement::Auto,
            libraries: Vec::new(),
            preloads: Vec::new(),
            execute: true,
            executor: ExecutorChoice::InProcess,
            recovery: Recovery::None,
            executor_output: None,
        }
    }
}

/// Where an address is in JIT'd code ([`Session::locate`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub module: ModuleId,
    /// The module's objects, for messages.
    pub objects: Arc<str>,
    pub symbol: String,
    pub offset: u64,
    /// The source file and line, when debug information says.
    pub source: Option<crate::source_lines::SourceLine>,
}

/// A module: the objects of one load, linked together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModuleId(pub u32);

impl std::fmt::Display for ModuleId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Where a live module is in its life, in order. Before it is a
/// [`Module`] a load is linked ([`LinkedModule`]), then written and
/// protected per segment (`finalize`), then registered by the plugins
/// (`install`); after it, its registrations are undone and its memory is
/// released (`release`), which needs no state of its own: the module is
/// gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum ModuleState {
    /// The plugins registered what they need (unwind frames, symbols).
    Registered,
    /// Its initializers ran.
    Initialized,
    /// Its deinitializers and handlers ran (removal or replacement).
    Deinitialized,
}

struct Module {
    id: u32,
    objects: Arc<str>,
    /// The objects themselves, kept only when a restart may replay them.
    sources: Option<Arc<[ObjectFile]>>,
    memory: (u64, u64),
    segments: Vec<(u64, u64, crate::graph::Protection)>,
    dso: u64,
    /// What the plugins registered for it, undone before its memory goes.
    registrations: Vec<Registration>,
    /// Where it is in its life.
    state: ModuleState,
    imports: Vec<(u32, String)>,
    bindings: Vec<DataBinding>,
    crash_symbols: Arc<CrashSymbols>,
    /// The calling convention of its functions.
    convention: CallingConvention,
    /// Its thread-local block, closed after its memory is released.
    thread_locals: Option<u64>,
    /// Its link map, when the session makes them.
    map: Option<LinkMap>,
    /// Its ELF objects with their load addresses, when the session keeps
    /// debug information: source lines for [`Session::locate`].
    debug_images: Vec<Arc<[u8]>>,
}

pub struct Session {
    config: SessionConfig,
    executor: Box<dyn Executor>,
    /// Reserved at the first load, when its placement can be chosen from
    /// the objects (unless the configuration fixes it).
    slab: Option<Slab>,
    /// What the executor said about names, asked once per name.
    symbols: HashMap<String, SymbolInfo>,
    modules: Vec<Module>,
    exports: ExportTable,
    indirection: Indirection,
    /// Told of every module once it is emitted (see [`crate::plugins`]).
    plugins: Vec<Box<dyn LinkPlugin>>,
    next_id: u32,
    args: Vec<String>,
    ended: bool,
    /// Why the session cannot go on (its executor is gone).
    dead: Option<String>,
    /// Set while a restart replays modules: a second failure is final.
    replaying: bool,
    /// The run's deadline ([`Session::set_deadline`]).
    deadline: Option<std::time::Instant>,
    /// Archives loads take members from ([`Session::add_archive`]).
    archives: ArchiveSearch,
    /// Names defined at absolute addresses ([`Session::define_absolute`]).
    absolutes: HashMap<String, u64>,
    /// Whether loads make link maps ([`Session::set_link_maps`]).
    make_maps: bool,
    /// Whether modules are registered with debuggers
    /// ([`Session::enable_debug`]).
    keep_debug: bool,
    /// What the last successful load cost, when kept
    /// ([`Session::keep_load_stats`]).
    last_stats: Option<LoadStats>,
    keep_stats: bool,
    /// Threads a large load's per-object work may use
    /// ([`Session::set_threads`]).
    threads: Threads,
}

/// Starts the executor a configuration asks for.
fn start_executor(config: &SessionConfig) -> Result<Box<dyn Executor>, LinkError> {
    let mut executor: Box<dyn Executor> = match &config.executor {
        ExecutorChoice::InProcess => Box::new(InProcess::new()?),
        ExecutorChoice::Remote {
            transport,
            shared_memory,
        } => Box::new(Remote::connect(RemoteConfig {
            transport: transport.clone(),
            shared_memory: *shared_memory,
            recovery: config.recovery,
            output: config
                .executor_output
                .unwrap_or_else(|| transport.default_output()),
        })?),
    };
    for name in &config.libraries {
        executor.link_library(name)?;
    }
    for path in &config.preloads {
        executor.preload(path)?;
    }
    Ok(executor)
}

impl Session {
    pub fn new(config: SessionConfig) -> Result<Self, LinkError> {
        let executor = start_executor(&config)?;
        let mut session = Session {
            config,
            executor,
            slab: None,
            symbols: HashMap::default(),
            modules: Vec::new(),
            exports: ExportTable::default(),
            indirection: Indirection::default(),
            plugins: plugins::default_plugins(),
            next_id: 1,
            args: vec!["solder".to_string()],
            ended: false,
            dead: None,
            replaying: false,
            deadline: None,
            archives: ArchiveSearch::default(),
            absolutes: HashMap::default(),
            make_maps: false,
            keep_debug: false,
            last_stats: None,
            keep_stats: false,
            threads: Threads::from_environment(),
        };
        if session.config.placement != Placement::Auto {
            session.reserve(session.config.placement)?;
        }
        Ok(session)
    }

    /// Sets `argv` for initializers and [`Session::run_main`].
    pub fn set_program_args(&mut self, args: &[String]) -> Result<(), LinkError> {
        self.args = args.to_vec();
        self.executor.set_args(args)
    }

    /// Bounds the rest of the run by `deadline`: every later initializer,
    /// call and deinitializer in an executor process gets what is left of
    /// it and, when it outlives it, is stopped and reported as
    /// [`Outcome::TimedOut`] (with where it was running when the
    /// executor's timer could tell). `None` lifts the bound. In process
    /// nothing changes: arm [`solder_executor::crash::arm_run_timeout`].
    pub fn set_deadline(&mut self, deadline: Option<std::time::Instant>) {
        self.deadline = deadline;
        self.executor.set_deadline(deadline);
    }

    /// Where the code runs, for messages: `in-process`, `pipe (pid 42)`.
    pub fn executor_description(&self) -> String {
        self.executor.describe()
    }

    /// The executor's process id, when the code runs in another process.
    pub fn executor_pid(&self) -> Option<u32> {
        self.executor.pid()
    }

    /// The slab's address range, once reserved.
    pub fn slab_range(&self) -> Option<(u64, u64)> {
        self.slab.as_ref().map(|s| (s.base(), s.base() + s.size()))
    }

    /// Bytes of the slab in use (allocated to modules and stubs).
    pub fn slab_used(&self) -> u64 {
        self.slab.as_ref().map_or(0, |s| s.size() - s.free_bytes())
    }

    fn page(&self) -> u64 {
        self.executor.page_size()
    }

    fn reserve(&mut self, placement: Placement) -> Result<(), LinkError> {
        let (code, address) = placement.code();
        if let Placement::Fixed(address) = placement {
            memory::refuse_low_slab(address)?;
        }
        let base = self
            .executor
            .reserve(self.config.slab_size, code, address)?;
        if let Err(low) = memory::refuse_low_slab(base) {
            let _ = self.executor.release(base, self.config.slab_size);
            return Err(low);
        }
        self.slab = Some(Slab::new(base, self.config.slab_size, self.page()));
        Ok(())
    }

    fn check_alive(&self) -> Result<(), LinkError> {
        if let Some(why) = &self.dead {
            return Err(LinkError::ExecutorGone(why.clone()));
        }
        Ok(())
    }

    /// Adds `archive` to the session's archive search list: this load and
    /// every later one take the members that define names they leave
    /// undefined (see [`crate::members`]). With `whole`
    /// (`--whole-archive`), the next load takes every member.
    pub fn add_archive(&mut self, archive: Archive, whole: bool) {
        self.archives.add(archive, whole);
    }

    /// Empties the archive search list: later loads take no members, and
    /// the archives' memory goes once nothing else holds it (the members
    /// the modules took are in their memory; a module kept for restarts
    /// keeps its members' bytes, and so their archive's). For a caller
    /// that will not load again, before it runs the program.
    pub fn close_archives(&mut self) {
        self.archives = ArchiveSearch::default();
    }

    /// Registers every later module's objects, with their debug
    /// information and their sections' load addresses, with the debugger
    /// interface (GDB's JIT interface) of the process that runs the code
    /// (`--debug`), and unregisters them before their memory goes. ELF
    /// objects, in process for now.
    pub fn enable_debug(&mut self) {
        if !self.keep_debug {
            self.keep_debug = true;
            self.add_plugin(Box::new(plugins::DebugObjects::default()));
        }
    }

    /// Writes `/tmp/perf-PID.map` for the process that runs the code
    /// (`--perf-map`): every live module's functions, rewritten at each
    /// load, replacement and removal (see [`plugins::PerfMap`]). Modules
    /// loaded before this are not listed.
    pub fn enable_perf_map(&mut self) {
        self.add_plugin(Box::new(plugins::PerfMap::new()));
    }

    /// Writes `/tmp/jit-PID.dump` for the process that runs the code
    /// (`--jitdump`): a code-load record per function of every later
    /// module, with its bytes, for `perf inject --jit` (see
    /// [`plugins::JitDump`]).
    pub fn enable_jitdump(&mut self) {
        self.add_plugin(Box::new(plugins::JitDump::new()));
    }

    /// Whether later loads make a link map ([`Session::link_map`]); off
    /// by default (it costs a walk over every symbol of the load).
    pub fn set_link_maps(&mut self, on: bool) {
        self.make_maps = on;
    }

    /// The link map of module `id`, when it was made
    /// ([`Session::set_link_maps`]): sections, symbols, GOT entries and
    /// stubs, and the archive members the load took.
    pub fn link_map(&self, id: ModuleId) -> Option<&LinkMap> {
        self.modules.iter().find(|m| m.id == id.0)?.map.as_ref()
    }

    /// Defines `name` (a C name: no Mach-O underscore) at `address`, as
    /// the host defines its symbols (`--abs NAME=ADDRESS`): a load that
    /// does not define `name` itself calls it through a stub and loads its
    /// address from the GOT, from anywhere in the address space; a direct
    /// reference to its address that cannot reach it is out of range. A
    /// load after this one sees the definition; loads already linked keep
    /// what they bound.
    pub fn define_absolute(&mut self, name: &str, address: u64) {
        self.absolutes.insert(name.to_string(), address);
        self.symbols
            .insert(name.to_string(), absolute_symbol(address));
    }

    /// Links `objects` as one new module and runs its initializers.
    pub fn load(&mut self, objects: &[ObjectFile]) -> Result<ModuleId, LinkError> {
        self.check_alive()?;
        let id = self.next_id;
        self.next_id += 1;
        self.load_as(id, objects)?;
        Ok(ModuleId(id))
    }

    /// Loads `objects` as a program: as [`Session::load`], but its entry
    /// point `entry` (`main`, `--entry`) is found among all of the load's
    /// global functions, hidden ones included, as a static linker finds
    /// it; returns the module and the entry's address. A load that does not
    /// define it is refused before anything of it runs (no initializer).
    pub fn load_program(
        &mut self,
        objects: &[ObjectFile],
        entry: &str,
    ) -> Result<(ModuleId, u64), LinkError> {
        self.check_alive()?;
        let id = self.next_id;
        self.next_id += 1;
        let (linked, pulled) = self.link(id, objects, None, Some(entry))?;
        let Some(address) = linked.entry else {
            self.discard(linked.memory, linked.thread_locals);
            return Err(LinkError::Undefined {
                symbol: entry.to_string(),
                site: entry_site(),
            });
        };
        self.install_and_initialize(id, objects, linked, &pulled)?;
        Ok((ModuleId(id), address))
    }

    /// Runs the program's entry point at `address` (from
    /// [`Session::load_program`]) as `main`: `argc`, `argv`, `envp`.
    pub fn run_entry(&mut self, address: u64, entry: &str) -> Result<i32, LinkError> {
        self.check_alive()?;
        let convention = self.convention_at(address);
        let outcome = self
            .executor
            .call(address, [0; 6], true, convention, None)?;
        self.returned(outcome, || format!("`{entry}`"))
            .map(|v| v as i32)
    }

    fn load_as(&mut self, id: u32, objects: &[ObjectFile]) -> Result<(), LinkError> {
        let (linked, pulled) = self.link(id, objects, None, None)?;
        self.install_and_initialize(id, objects, linked, &pulled)
    }

    fn install_and_initialize(
        &mut self,
        id: u32,
        objects: &[ObjectFile],
        linked: LinkedModule,
        pulled: &[Pulled],
    ) -> Result<(), LinkError> {
        let initializers = linked.initializers.clone();
        self.install(id, objects, pulled, linked, self.modules.len(), None)?;
        self.run_initializers(id, &initializers)
    }

    fn set_state(&mut self, id: u32, state: ModuleState) {
        if let Some(module) = self.modules.iter_mut().find(|m| m.id == id) {
            debug_assert!(module.state <= state, "{:?} -> {state:?}", module.state);
            module.state = state;
        }
    }

    /// Links `objects` (and the archive members they need) as module
    /// `id`. A large load keeps a crew of helper threads awake for its
    /// parallel stages (`parallel::with_crew`).
    fn link(
        &mut self,
        id: u32,
        objects: &[ObjectFile],
        replacing: Option<u32>,
        entry: Option<&str>,
    ) -> Result<(LinkedModule, Vec<Pulled>), LinkError> {
        // The heap is chosen by the load's own objects: the members of a
        // large archive are read into memory of their own, and moving
        // CPython's link (one object, a 47.7 MB `-g` library) to mimalloc
        // made its peak 48 MiB instead of 34, and one run in ten twice as
        // long.
        crate::heap::large_load(own_work(objects).total);
        let helpers = self.threads.for_work(load_work(objects, &self.archives)) - 1;
        crate::parallel::with_crew(helpers, || {
            self.link_with_threads(id, objects, replacing, entry)
        })
    }

    fn link_with_threads(
        &mut self,
        id: u32,
        objects: &[ObjectFile],
        replacing: Option<u32>,
        entry: Option<&str>,
    ) -> Result<(LinkedModule, Vec<Pulled>), LinkError> {
        let mut clock = StageClock::start(self.keep_stats);
        let mut graphs = crate::parallel::map(
            objects,
            self.threads,
            |o| o.bytes.len(),
            |o| parse_object(&o.name, &o.bytes),
        )
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
        clock.lap("parse");
        // Archive members come after the load's own objects; names earlier
        // modules export, or absolute definitions, pull none.
        let archives = self.archives.archives();
        let format = graphs.first().map(|g| g.format);
        let (exports, absolutes) = (self.exports.filed(), &self.absolutes);
        let pulled = self
            .archives
            .select(&archives, &mut graphs, id, self.threads, |name| {
                exports.get(name).is_some_and(|e| e.module != id)
                    || format
                        .and_then(|f| crate::link::host_name(f, name))
                        .is_some_and(|host| absolutes.contains_key(host))
            })?;
        if self.slab.is_none() {
            // Absolute 32-bit references (`-fno-pic`) need the low 2 GiB;
            // everything else is best next to the host's libraries.
            // ELF relocation records were asked when parsed; decoded edges
            // are looked at one by one, object by object for a large load.
            let weight = |g: &LinkGraph<'_>| 24 * g.decoded_edges();
            let absolute32 =
                crate::parallel::map(&graphs, self.threads, weight, LinkGraph::any_absolute32)
                    .contains(&true);
            let placement = if absolute32 {
                Placement::Low
            } else {
                Placement::NearHost
            };
            self.reserve(placement)?;
        }
        clock.lap("members");
        let mut linked = link(
            graphs,
            LinkRequest {
                module: id,
                objects: describe(objects, &pulled),
                slab: self.slab.as_mut().expect("reserved above"),
                symbols: &mut self.symbols,
                interposes: |host| lifecycle::interposer(host).is_some(),
                executor: &mut *self.executor,
                exports: self.exports.filed(),
                describe_module: &|id| describe_module(&self.modules, id),
                indirection: &mut self.indirection,
                replacing,
                entry,
                map: self.make_maps,
                debug: self.keep_debug,
                threads: self.threads,
                stats: self.keep_stats,
            },
        )?;
        clock.stages.append(&mut linked.stages);
        linked.stages = clock.stages;
        Ok((linked, pulled))
    }

    /// Writes a linked module to the executor, protects it, and makes it
    /// live at `position` in load order (and at `runtime_position` in the
    /// runtime's deinitializer order).
    fn install(
        &mut self,
        id: u32,
        objects: &[ObjectFile],
        pulled: &[Pulled],
        mut linked: LinkedModule,
        position: usize,
        runtime_position: Option<usize>,
    ) -> Result<(), LinkError> {
        let mut clock = StageClock::start(self.keep_stats);
        let mut stats = self.keep_stats.then(|| {
            let input_bytes = self.input_bytes(objects, pulled);
            LoadStats {
                input_bytes,
                image_bytes: linked.memory.1,
                threads: self.threads.for_work(load_work(objects, &self.archives)),
                stages: std::mem::take(&mut linked.stages),
                heap: None,
            }
        });
        if let Err(err) = self.finalize(&linked) {
            self.discard(linked.memory, linked.thread_locals);
            return Err(err);
        }
        let description = linked.objects.clone();
        let archives = self.archives.archives();
        let debug_objects =
            Self::debug_objects(&archives, objects, pulled, &linked.section_addresses);
        let weight = |source: &DebugSource<'_>| source.object.len();
        let debug_images: Vec<Arc<[u8]>> =
            crate::parallel::map(&debug_objects, self.threads, weight, |source| {
                plugins::debug_objects::debug_image(source)
            })
            .into_iter()
            .flatten()
            .collect();
        // Only an in-process crash handler needs lines ready; out of
        // process the controller reads them when it reports.
        if self.executor.pid().is_none() {
            attach_lines(&mut linked.crash_symbols, &debug_images, self.threads);
        }
        // One table, by address, shared by the session, the in-process
        // crash handler and the plugins.
        let crash_symbols = CrashSymbols::from_pieces(std::mem::take(&mut linked.crash_symbols));
        let crash_symbols = Arc::new(crash_symbols);
        let emitted = Emitted {
            id,
            objects: &description,
            memory: linked.memory,
            eh_frame: linked.eh_frame,
            crash_symbols: &crash_symbols,
            debug_images: &debug_images,
        };
        let registrations =
            match plugins::register_all(&mut self.plugins, &mut *self.executor, &emitted) {
                Ok(registrations) => registrations,
                Err(err) => {
                    self.discard(linked.memory, linked.thread_locals);
                    return Err(err);
                }
            };
        if self.config.execute {
            self.executor
                .register_module(linked.dso, &linked.finalizers, runtime_position)?;
        }
        // Stubs of the functions it exports now reach them (other modules
        // call through them, its initializers among the first). Its exports
        // are filed when next asked for (`ExportTable`).
        if !self.indirection.is_empty() {
            let page = self.page();
            let functions = linked.exports.iter().flatten().filter(|(_, e)| e.function);
            for (name, export) in functions {
                self.indirection
                    .retarget(&mut *self.executor, name, export.address, page)?;
            }
        }
        self.exports.add(id, std::mem::take(&mut linked.exports));
        // A replay (restart) loads the members among the module's sources.
        if !self.replaying {
            self.archives.record(id, pulled);
        }
        clock.lap("install");
        if let Some(stats) = &mut stats {
            stats.stages.append(&mut clock.stages);
        }
        self.last_stats = stats;
        let keep_sources = self.config.recovery == Recovery::Restart;
        self.modules.insert(
            position,
            Module {
                id,
                objects: description,
                sources: keep_sources.then(|| self.sources(objects, pulled)),
                memory: linked.memory,
                segments: linked.segments,
                dso: linked.dso,
                registrations,
                state: ModuleState::Registered,
                imports: linked.imports,
                bindings: linked.bindings,
                crash_symbols,
                convention: linked.convention,
                thread_locals: linked.thread_locals,
                debug_images,
                map: linked.map.map(|mut map| {
                    map.members = pulled
                        .iter()
                        .map(|p| MapMember {
                            member: p.name.clone(),
                            pulled_by: p.by.clone(),
                        })
                        .collect();
                    map
                }),
            },
        );
        Ok(())
    }

    /// The load's ELF objects (its own, then the archive members it took,
    /// as its graphs are) with where their sections went, when the session
    /// keeps debug information.
    fn debug_objects<'m>(
        archives: &'m [Arc<Archive>],
        objects: &'m [ObjectFile],
        pulled: &[Pulled],
        section_addresses: &'m Option<Vec<crate::link::SectionPlaces>>,
    ) -> Vec<DebugSource<'m>> {
        let Some(places) = section_addresses else {
            return Vec::new();
        };
        let members = pulled.iter().map(|p| {
            let archive = &archives[p.archive];
            (archive.member_bytes(p.member), archive.debug_left_out())
        });
        // An object read without its debug sections has none to give.
        objects
            .iter()
            .map(|o| (o.bytes.as_slice(), o.bytes.debug_left_out()))
            .chain(members)
            .zip(places)
            .filter(|((_, left_out), place)| !left_out && !place.headers.is_empty())
            .map(|((object, _), places)| DebugSource { object, places })
            .collect()
    }

    /// The bytes of a load's objects and of the archive members it took.
    fn input_bytes(&self, objects: &[ObjectFile], pulled: &[Pulled]) -> u64 {
        let own: usize = objects.iter().map(|o| o.bytes.len()).sum();
        let members: usize = pulled.iter().map(|p| self.archives.member_len(p)).sum();
        (own + members) as u64
    }

    /// How many threads a load's per-object work (parsing, writing,
    /// relocating) may use; 1 links serially. The output is the same
    /// whatever the number. Defaults to `SOLDER_THREADS`, else every core;
    /// loads under a MiB or two of objects use one thread anyway.
    pub fn set_threads(&mut self, threads: usize) {
        self.threads = Threads::new(threads);
    }

    /// As [`Session::set_threads`], the count being chosen by `threads`.
    pub fn set_thread_policy(&mut self, threads: Threads) {
        self.threads = Threads {
            min_bytes_each: self.threads.min_bytes_each,
            ..threads
        };
    }

    /// Splits loads over threads from `bytes` of objects per thread
    /// instead of a few MiB: tests use it to link small programs on
    /// several threads and compare the result with a serial link.
    pub fn set_min_bytes_per_thread(&mut self, bytes: usize) {
        self.threads.min_bytes_each = bytes.max(1);
    }

    /// Keeps what each load costs from now on ([`Session::last_load_stats`]:
    /// sizes, threads and stage times; off by default, so that a session
    /// not asked reads no clock).
    pub fn keep_load_stats(&mut self, keep: bool) {
        self.keep_stats = keep;
    }

    /// What the last successful load cost: input and image sizes, threads,
    /// and each stage's time (`solder run --stats`).
    pub fn last_load_stats(&self) -> Option<&LoadStats> {
        self.last_stats.as_ref()
    }

    /// What a restart loads again for a module: its objects and the
    /// archive members it took.
    fn sources(&self, objects: &[ObjectFile], pulled: &[Pulled]) -> Arc<[ObjectFile]> {
        let members = pulled.iter().map(|p| self.archives.member_object(p));
        objects.iter().cloned().chain(members).collect()
    }

    /// Returns the memory of a load that did not become a module (nothing
    /// is registered for it) to the executor and the slab, then closes its
    /// thread-local block.
    fn discard(&mut self, (base, size): (u64, u64), thread_locals: Option<u64>) {
        let _ = self.executor.release(base, size);
        self.slab_mut().release(base, size);
        if let Some(block) = thread_locals {
            let _ = self.executor.drop_thread_locals(block);
        }
    }

    /// Copies the image, then read-execute / read-only / read-write per
    /// segment (never writable and executable).
    fn finalize(&mut self, linked: &LinkedModule) -> Result<(), LinkError> {
        let page = self.page();
        self.executor.write(linked.memory.0, &linked.image)?;
        for &(start, size, protection) in linked.segments.iter().filter(|s| s.1 > 0) {
            let end = (start + size).div_ceil(page) * page;
            self.executor.protect(start, end - start, protection)?;
        }
        Ok(())
    }

    fn run_initializers(&mut self, id: u32, initializers: &[u64]) -> Result<(), LinkError> {
        if !self.config.execute || initializers.is_empty() {
            return Ok(());
        }
        let convention = self
            .modules
            .iter()
            .find(|m| m.id == id)
            .map_or(CallingConvention::SysV, |m| m.convention);
        let outcome = self.executor.run_initializers(initializers, convention)?;
        self.returned(outcome, || format!("the initializers of module {id}"))?;
        self.set_state(id, ModuleState::Initialized);
        Ok(())
    }

    /// `symbol+0xoffset` of the JIT'd function containing `pc` (and
    /// `at file:line` when the session keeps debug information), with its
    /// module, if any.
    pub fn symbolize(&self, pc: u64) -> Option<String> {
        let found = self.locate(pc)?;
        let source = found
            .source
            .map(|s| format!(" at {}:{}", s.file, s.line))
            .unwrap_or_default();
        Some(format!(
            "{}+{:#x}{source} (module {}: {})",
            found.symbol, found.offset, found.module, found.objects
        ))
    }

    /// A crash's frames as `f+0x… [at file:line] <- g+0x… <- …`, up to the
    /// outermost JIT'd frame (host frames by address; those beyond it only
    /// mentioned): `None` unless the walk found JIT'd code past the first
    /// frame or the crash was in host code called from JIT'd code.
    pub fn backtrace_text(&self, frames: &[u64]) -> Option<String> {
        // A return address is looked up one byte back: the call it
        // returns from may end its function.
        let at = |i: usize, pc: u64| if i == 0 { pc } else { pc.saturating_sub(1) };
        let last = frames
            .iter()
            .enumerate()
            .rposition(|(i, &pc)| pc != 0 && self.locate(at(i, pc)).is_some())?;
        if frames.len() < 2 {
            return None;
        }
        let mut parts: Vec<String> = frames[..=last]
            .iter()
            .enumerate()
            .map(|(i, &pc)| match self.locate(at(i, pc)) {
                Some(found) => {
                    let source = found
                        .source
                        .map(|s| format!(" at {}:{}", s.file, s.line))
                        .unwrap_or_default();
                    format!(
                        "{}+{:#x}{source}",
                        found.symbol,
                        found.offset + (pc - at(i, pc))
                    )
                }
                None => format!("{pc:#x}"),
            })
            .collect();
        if frames[last + 1..].iter().any(|&pc| pc != 0) {
            parts.push("(host frames)".into());
        }
        Some(parts.join(" <- "))
    }

    /// Where `pc` is in JIT'd code: its module, the function and the
    /// offset in it, and the source line when the session keeps debug
    /// information ([`Session::enable_debug`]) and the object has it.
    pub fn locate(&self, pc: u64) -> Option<Located> {
        self.modules.iter().find_map(|m| {
            let table = CrashSymbols::new(
                m.crash_symbols
                    .iter()
                    .filter(|s| pc >= s.start && pc < s.start + s.size.max(1))
                    .cloned()
                    .collect(),
            );
            let (name, offset) = table.find(pc)?;
            let source = m
                .debug_images
                .iter()
                .find_map(|image| crate::source_lines::locate(image, pc));
            Some(Located {
                module: ModuleId(m.id),
                objects: m.objects.clone(),
                symbol: name.to_string(),
                offset,
                source,
            })
        })
    }

    /// The value of an outcome, or the error that describes it. After a
    /// crash, the session recovers as its policy says (or is over).
    fn returned(
        &mut self,
        outcome: Outcome,
        during: impl FnOnce() -> String,
    ) -> Result<u64, LinkError> {
        let outcome = match outcome {
            Outcome::Returned(value) => return Ok(value),
            other => other,
        };
        let report = match &outcome {
            Outcome::Crashed(crash) => {
                let mut text = format!("crashed: {}", signal::name(crash.signal));
                if crash.signal == signal::SIGALRM {
                    text = "timed out (SIGALRM)".into();
                }
                if let Some(address) = crash.fault_address
                    && matches!(crash.signal, signal::SIGSEGV | signal::SIGBUS)
                {
                    text.push_str(&format!(" at address {address:#x}"));
                    if crash.stack_overflow {
                        text.push_str(" (stack overflow)");
                    }
                }
                if let Some(pc) = crash.pc {
                    text.push_str(&format!(", pc {pc:#x}"));
                    if let Some(symbol) = self.symbolize(pc) {
                        text.push_str(&format!(" in {symbol}"));
                    }
                }
                if let Some(trace) = self.backtrace_text(&crash.backtrace) {
                    text.push_str(&format!("; backtrace: {trace}"));
                }
                text
            }
            Outcome::Exited(status) => format!("exited with status {status}"),
            Outcome::TimedOut { after, pc } => {
                let mut text = format!("timed out after {} ms", after.as_millis());
                if let Some(pc) = pc {
                    text.push_str(&format!(", pc {pc:#x}"));
                    if let Some(symbol) = self.symbolize(*pc) {
                        text.push_str(&format!(" in {symbol}"));
                    }
                }
                text
            }
            Outcome::Lost(why) => format!("executor lost: {why}"),
            Outcome::Returned(_) => unreachable!("handled above"),
        };
        let during = during();
        let mut recovered = None;
        if let Outcome::Exited(_) = outcome {
            // The program is over; its handlers already ran in the executor.
            self.dead = Some(format!("the program {report} during {during}"));
        } else if self.executor.alive() {
            recovered = Some("the session continues from the checkpoint taken before it".into());
        } else if self.config.recovery == Recovery::Restart
            && !self.replaying
            // A run whose deadline passed is over: nothing to restart for.
            && self.deadline.is_none_or(|d| std::time::Instant::now() < d)
        {
            match self.restart() {
                Ok(count) => {
                    recovered = Some(format!(
                        "a fresh executor replayed {count} module(s) and their initializers"
                    ))
                }
                Err(err) => {
                    self.dead = Some(format!("restart after the crash failed: {err}"));
                }
            }
        } else {
            self.dead = Some(format!("the executor {report} during {during}"));
        }
        Err(LinkError::Execution(Box::new(Abnormal {
            during,
            outcome,
            report,
            recovered,
        })))
    }

    /// The restart policy: a fresh executor, the same slab address when it
    /// is free, and every live module loaded again in order (their
    /// initializers run again; state from calls is gone).
    fn restart(&mut self) -> Result<usize, LinkError> {
        self.replaying = true;
        let result = (|| {
            let modules = std::mem::take(&mut self.modules);
            self.exports.clear();
            self.symbols.clear();
            for (name, &address) in &self.absolutes {
                self.symbols.insert(name.clone(), absolute_symbol(address));
            }
            self.indirection = Indirection::default();
            let old_base = self.slab.take().map(|s| s.base());
            self.executor = start_executor(&self.config)?;
            self.executor.set_deadline(self.deadline);
            self.executor.set_args(&self.args)?;
            if let Some(base) = old_base
                && self.reserve(Placement::Fixed(base)).is_err()
            {
                self.slab = None;
            }
            let count = modules.len();
            for module in modules {
                let sources = module
                    .sources
                    .expect("restart sessions keep their modules' objects");
                self.load_as(module.id, &sources)?;
            }
            Ok(count)
        })();
        self.replaying = false;
        result
    }

    /// The address of an exported symbol. A function's address is its
    /// indirection stub, which stays valid across hot swaps.
    pub fn lookup(&mut self, name: &str) -> Result<Option<u64>, LinkError> {
        let Some(export) = self.exports.get(name) else {
            return Ok(None);
        };
        if export.thread_local.is_some() {
            // One copy per thread: no address to give.
            return Ok(None);
        }
        if export.function {
            let address = export.address;
            let slab = self.slab.as_mut().expect("modules live in the slab");
            return self
                .indirection
                .stub_for(slab, &mut *self.executor, name, address)
                .map(Some);
        }
        Ok(Some(export.address))
    }

    /// Calls a JIT'd function with up to six integer arguments and returns
    /// its integer result. In a remote executor a crash, an `exit` or a
    /// timeout is an [`LinkError::Execution`] error.
    ///
    /// # Safety
    /// `address` must be a function of this session taking at most
    /// `args.len()` integer arguments; what the function does is up to it
    /// (in-process, it runs in this process).
    pub unsafe fn call(&mut self, address: u64, args: &[u64]) -> Result<u64, LinkError> {
        // SAFETY: forwarded from the caller.
        unsafe { self.call_with_timeout(address, args, None) }
    }

    /// [`Session::call`] with a timeout (remote executors only; in-process
    /// calls cannot be interrupted).
    ///
    /// # Safety
    /// As for [`Session::call`].
    pub unsafe fn call_with_timeout(
        &mut self,
        address: u64,
        args: &[u64],
        timeout: Option<Duration>,
    ) -> Result<u64, LinkError> {
        assert!(args.len() <= 6, "at most six integer arguments");
        assert!(self.config.execute, "this session links only (noexec)");
        self.check_alive()?;
        let mut a = [0u64; 6];
        a[..args.len()].copy_from_slice(args);
        let convention = self.convention_at(address);
        let outcome = self.executor.call(address, a, false, convention, timeout)?;
        if let Outcome::Returned(value) = outcome {
            return Ok(value);
        }
        let during = self.name_of(address);
        self.returned(outcome, || during)
    }

    /// The calling convention of the JIT'd function at `address` (a
    /// definition or its indirection stub).
    fn convention_at(&self, address: u64) -> CallingConvention {
        // Sessions without COFF modules (the common case) skip the search.
        if !self.modules.iter().any(|m| m.convention.is_win64()) {
            return CallingConvention::SysV;
        }
        let in_module = self.modules.iter().find(|m| {
            let (start, size) = m.memory;
            (start..start + size).contains(&address)
        });
        match in_module {
            Some(module) => module.convention,
            None => {
                let win64_stub = self.exports.any(|name, e| {
                    e.convention.is_win64()
                        && self.indirection.stub(name, self.page()) == Some(address)
                });
                CallingConvention::from_win64(win64_stub)
            }
        }
    }

    fn name_of(&self, address: u64) -> String {
        let mut name = None;
        self.exports.any(|export, e| {
            let hit =
                e.address == address || self.indirection.stub(export, self.page()) == Some(address);
            name = hit.then(|| Arc::clone(export));
            hit
        });
        match name {
            Some(name) => format!("the call to `{name}`"),
            None => format!("the call to {address:#x}"),
        }
    }

    /// Calls `int entry(int argc, char **argv, char **envp)` with the
    /// program arguments. `entry` is a C name: a Mach-O module defines
    /// `main` as `_main`, which is found too.
    pub fn run_main(&mut self, entry: &str) -> Result<i32, LinkError> {
        self.check_alive()?;
        // `main` is `_main` in a Mach-O object.
        let address = match self.lookup(entry)? {
            Some(address) => Some(address),
            None => self.lookup(&format!("_{entry}"))?,
        };
        let address = address.ok_or_else(|| LinkError::Undefined {
            symbol: entry.to_string(),
            site: entry_site(),
        })?;
        self.run_entry(address, entry)
    }

    fn index_of(&self, id: ModuleId) -> Result<usize, LinkError> {
        self.modules
            .iter()
            .position(|m| m.id == id.0)
            .ok_or(LinkError::NoSuchModule(id.0))
    }

    /// Removes a module: its deinitializers and handlers run, then its
    /// memory returns to the slab. Refused while another module uses it.
    pub fn remove(&mut self, id: ModuleId) -> Result<(), LinkError> {
        self.check_alive()?;
        let index = self.index_of(id)?;
        for user in &self.modules {
            if let Some((_, symbol)) = user.imports.iter().find(|(m, _)| *m == id.0) {
                return Err(LinkError::InUse {
                    module: id.0,
                    objects: self.modules[index].objects.to_string(),
                    user: user.id,
                    symbol: symbol.clone(),
                });
            }
        }
        if self.config.execute {
            let dso = self.modules[index].dso;
            let outcome = self.executor.remove_module(dso)?;
            self.returned(outcome, || format!("the deinitializers of module {id}"))?;
        }
        let mut module = self.modules.remove(index);
        module.state = ModuleState::Deinitialized;
        let page = self.page();
        for name in self.exports.remove_module(id.0) {
            // Calls through a stale pointer now fault at address 0.
            self.indirection
                .retarget(&mut *self.executor, &name, 0, page)?;
        }
        self.archives.forget(id.0);
        self.release(module)?;
        Ok(())
    }

    /// Hot swap: links `objects` in place of module `id`. Callers in other
    /// modules reach the new definitions; the old module's deinitializers
    /// run, its memory is released, and the new module's initializers run.
    pub fn replace(&mut self, id: ModuleId, objects: &[ObjectFile]) -> Result<(), LinkError> {
        self.check_alive()?;
        let index = self.index_of(id)?;
        // Other modules' references to its thread-local variables name
        // its block, which cannot outlive it (nothing re-applies them).
        for user in &self.modules {
            let thread_local = user.imports.iter().find(|(module, symbol)| {
                *module == id.0
                    && self
                        .exports
                        .get(symbol.as_str())
                        .is_some_and(|e| e.thread_local.is_some())
            });
            if let Some((_, symbol)) = thread_local {
                return Err(LinkError::ThreadLocalInUse {
                    module: id.0,
                    user: user.id,
                    symbol: symbol.clone(),
                });
            }
        }
        let (linked, pulled) = self.link(id.0, objects, Some(id.0), None)?;
        // Every symbol other modules use must still be there: looked up in
        // a set of the new module's names (a large module exports hundreds
        // of thousands), made only when another module uses it.
        let used = (self.modules.iter()).any(|u| u.imports.iter().any(|(m, _)| *m == id.0));
        let exported: std::collections::HashSet<&str> = match used {
            true => (linked.exports.iter().flatten())
                .map(|(name, _)| &**name)
                .collect(),
            false => Default::default(),
        };
        for user in &self.modules {
            for (module, symbol) in &user.imports {
                if *module == id.0 && !exported.contains(symbol.as_str()) {
                    let err = LinkError::ReplacementMissing {
                        module: id.0,
                        symbol: symbol.clone(),
                        user: user.id,
                    };
                    self.discard(linked.memory, linked.thread_locals);
                    return Err(err);
                }
            }
        }
        let runtime_position = if self.config.execute {
            let dso = self.modules[index].dso;
            let outcome = self.executor.remove_module(dso)?;
            match self.returned(outcome, || format!("the deinitializers of module {id}")) {
                Ok(position) => usize::try_from(position).ok().filter(|&p| p != usize::MAX),
                Err(err) => {
                    if self.slab.is_some() {
                        self.discard(linked.memory, linked.thread_locals);
                    }
                    return Err(err);
                }
            }
        } else {
            None
        };
        let mut old = self.modules.remove(index);
        old.state = ModuleState::Deinitialized;
        let old_names = self.exports.remove_module(id.0);
        let initializers = linked.initializers.clone();
        // The new version takes the old one's place in load order, so
        // session end still finalizes its dependents before it.
        self.install(id.0, objects, &pulled, linked, index, runtime_position)?;
        // Functions were redirected through their stubs in `install`; stubs
        // of functions the new version lacks fault instead of running freed
        // code. Direct data references are re-applied.
        let page = self.page();
        for name in &old_names {
            if !self.exports.filed().contains_key(name) {
                self.indirection
                    .retarget(&mut *self.executor, name, 0, page)?;
            }
        }
        self.rebind(id.0)?;
        self.release(old)?;
        self.run_initializers(id.0, &initializers)
    }

    /// Re-applies other modules' direct references into module `id`'s data.
    fn rebind(&mut self, id: u32) -> Result<(), LinkError> {
        for module in &self.modules {
            if module.id == id {
                continue;
            }
            for binding in module.bindings.iter().filter(|b| b.module == id) {
                // `replace` checked that the new module exports every name
                // another module uses.
                let Some(export) = self.exports.get(&binding.symbol) else {
                    return Err(LinkError::ReplacementMissing {
                        module: id,
                        symbol: binding.symbol.clone(),
                        user: module.id,
                    });
                };
                let target = export.address;
                let (s, a, p) = (
                    target as i64 as i128,
                    binding.addend as i128,
                    binding.site as i128,
                );
                let value = match binding.kind.op {
                    RelocOp::PcRelative | RelocOp::Branch => s + a - p,
                    _ => s + a,
                };
                let protection = module
                    .segments
                    .iter()
                    .find(|&&(start, size, _)| (start..start + size).contains(&binding.site))
                    .map_or(crate::graph::Protection::Data, |&(_, _, p)| p);
                let mut written = binding.written;
                let field = &mut written[..binding.kind.encoding.size()];
                write_checked(&binding.kind, field, value).map_err(|failure| {
                    let site = crate::error::Site {
                        object: module.objects.to_string(),
                        section: "(re-applied binding)".into(),
                        offset: binding.site - module.memory.0,
                    };
                    let detail = format!("new definition at {target:#x}");
                    let (reloc, symbol) = (*binding.kind.name, &binding.symbol);
                    LinkError::refused_field(failure, site, reloc, symbol, value, detail)
                })?;
                self.executor.patch(binding.site, field, protection)?;
            }
        }
        Ok(())
    }

    fn slab_mut(&mut self) -> &mut Slab {
        self.slab.as_mut().expect("modules live in the slab")
    }

    /// Undoes the module's registrations, newest first, then releases its
    /// memory. When an undo fails the memory is kept: something may still
    /// point into it.
    fn release(&mut self, module: Module) -> Result<(), LinkError> {
        plugins::undo_all(&mut self.plugins, module.registrations, &mut *self.executor)?;
        let (base, size) = module.memory;
        let size = size.div_ceil(self.page()) * self.page();
        self.executor.release(base, size)?;
        self.slab_mut().release(base, size);
        // The block goes after the code: nothing can reach it any more.
        if let Some(block) = module.thread_locals {
            self.executor.drop_thread_locals(block)?;
        }
        Ok(())
    }

    /// Ends the session as `exit()` would: every handler newest-first, then
    /// each module's deinitializers, newest module first; then releases all
    /// memory. A crash in a handler is returned as an error.
    pub fn finish(&mut self) -> Result<(), LinkError> {
        if self.ended {
            return Ok(());
        }
        self.ended = true;
        for plugin in &mut self.plugins {
            plugin.session_ending();
        }
        if self.dead.is_some() {
            self.modules.clear();
            return Ok(());
        }
        let mut result = Ok(());
        if self.config.execute && !self.modules.is_empty() {
            let dsos: Vec<u64> = self.modules.iter().map(|m| m.dso).collect();
            result = self
                .executor
                .end_modules(&dsos)
                .and_then(|outcome| self.returned(outcome, || "session end".into()).map(drop));
            for module in &mut self.modules {
                module.state = ModuleState::Deinitialized;
            }
        }
        if self.dead.is_none() {
            for module in std::mem::take(&mut self.modules).into_iter().rev() {
                let released = self.release(module);
                if result.is_ok() {
                    result = released;
                }
            }
        }
        self.modules.clear();
        self.exports.clear();
        self.archives.clear_taken();
        result
    }

    /// [`Session::finish`], for callers that do not need its result.
    pub fn end(&mut self) {
        let _ = self.finish();
    }

    /// Ids of the live modules, in load order.
    pub fn modules(&self) -> Vec<ModuleId> {
        self.modules.iter().map(|m| ModuleId(m.id)).collect()
    }

    /// Adds a plugin, told of every module loaded from now on, after the
    /// default ones (unwind frames, crash symbols).
    pub fn add_plugin(&mut self, plugin: Box<dyn LinkPlugin>) {
        self.plugins.push(plugin);
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.end();
    }
}

/// What a load of `objects` may come to link, as work for threads: the
/// bytes read of each object (debug sections left out do not count) and of
/// each member of the archives no load has searched yet. A load of one
/// small object and a large archive (a program's `main` and its library)
/// links mostly members, so it gets threads as if they were its objects;
/// a later small load, which takes few members if any, starts none.
fn load_work(objects: &[ObjectFile], archives: &ArchiveSearch) -> crate::parallel::Work {
    crate::parallel::Work::of(read_lens(objects).chain(archives.unsearched_member_weights()))
}

/// A load's own objects as work: the bytes read of each.
fn own_work(objects: &[ObjectFile]) -> crate::parallel::Work {
    crate::parallel::Work::of(read_lens(objects))
}

/// The bytes read of each object (debug sections left out do not count).
fn read_lens(objects: &[ObjectFile]) -> impl Iterator<Item = usize> + '_ {
    objects.iter().map(|o| o.bytes.read_len())
}

/// Where an entry point is asked for, for messages.
fn entry_site() -> crate::error::Site {
    crate::error::Site {
        object: "the command line".into(),
        section: "--entry".into(),
        offset: 0,
    }
}

/// A module's objects, for messages: its own, then the archive members it
/// took.
fn describe(objects: &[ObjectFile], pulled: &[Pulled]) -> Arc<str> {
    objects
        .iter()
        .map(|o| o.name.as_str())
        .chain(pulled.iter().map(|p| p.name.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
        .into()
}

/// A live module as a message names it: `module 3 (a.o, b.o)`.
fn describe_module(modules: &[Module], id: u32) -> String {
    match modules.iter().find(|m| m.id == id) {
        Some(module) => format!("module {id} ({})", module.objects),
        None => format!("module {id}"),
    }
}

/// Gives each function its line table from the first of `images` that has
/// one, so that a crash report can name a line without reading debug
/// information (each image's DWARF read once, on `threads`:
/// [`crate::source_lines::tables_by_object`]).
fn attach_lines(pieces: &mut [Vec<CrashSymbol>], images: &[Arc<[u8]>], threads: Threads) {
    if images.is_empty() {
        return;
    }
    let ranges: Vec<(u64, u64)> = (pieces.iter().flatten())
        .map(|s| (s.start, s.start.saturating_add(s.size)))
        .collect();
    let found = crate::source_lines::tables_by_object(images, &ranges, threads, source_lines);
    for (symbol, lines) in pieces.iter_mut().flatten().zip(found) {
        if symbol.lines.is_none() {
            symbol.lines = lines;
        }
    }
}

/// A function's line table as a crash handler keeps it: its file, and
/// each address where a line begins. `None` for an empty table.
fn source_lines(
    table: &[(u64, crate::source_lines::SourceLine)],
) -> Option<Arc<solder_executor::module::SourceLines>> {
    let (_, first) = table.first()?;
    Some(Arc::new(solder_executor::module::SourceLines {
        file: first.file.clone(),
        rows: table
            .iter()
            .map(|(address, s)| (*address, s.line))
            .collect(),
    }))
}

/// What the host would say about a name defined at `address`
/// ([`Session::define_absolute`]): data of unknown size, so that calls
/// reach it through stubs and loads through the GOT, and a direct
/// reference that cannot reach it is out of range (a stub's address would
/// be wrong for data, and nothing of unknown size can be copied).
fn absolute_symbol(address: u64) -> SymbolInfo {
    SymbolInfo {
        kind: solder_executor::protocol::SymbolKind::Data,
        arg: 0,
        address,
        size: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RERUN: &str = "rerun: cargo test -p solder-linker --lib session::tests";

    fn elf(name: &str, source: &str) -> ObjectFile {
        ObjectFile {
            name: name.into(),
            bytes: crate::test_support::clang_object("x86_64-linux-gnu", "assembler", source, &[])
                .into(),
        }
    }

    /// A plugin that logs every module it is told of and every undo, and
    /// reads the module's first bytes when undoing (which faults if its
    /// memory were already released).
    struct Logger {
        log: std::rc::Rc<std::cell::RefCell<Vec<String>>>,
        /// (base, module id, first bytes) of each module registered.
        live: Vec<(u64, u32, Vec<u8>)>,
    }

    impl LinkPlugin for Logger {
        fn name(&self) -> &'static str {
            "logger"
        }

        fn emitted(
            &mut self,
            executor: &mut dyn Executor,
            module: &Emitted<'_>,
        ) -> Result<Option<u64>, LinkError> {
            let (base, id) = (module.memory.0, module.id);
            let first = executor.read(base, 4)?;
            self.log.borrow_mut().push(format!("emitted {id}"));
            self.live.push((base, id, first));
            Ok(Some(base))
        }

        fn removing(&mut self, executor: &mut dyn Executor, base: u64) -> Result<(), LinkError> {
            let at = self
                .live
                .iter()
                .position(|m| m.0 == base)
                .expect("registered");
            let (_, id, first) = self.live.remove(at);
            let still = executor.read(base, 4)?;
            self.log
                .borrow_mut()
                .push(format!("undone {id}, memory intact: {}", still == first));
            Ok(())
        }
    }

    /// Plugins see each module after it is written, and their
    /// registrations are undone before its memory is released: at removal,
    /// at replacement (the old version) and at session end, newest first.
    #[test]
    fn plugin_registrations_are_undone_before_memory_is_released() {
        let log = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let mut session = Session::new(SessionConfig::default()).unwrap();
        session.add_plugin(Box::new(Logger {
            log: log.clone(),
            live: Vec::new(),
        }));
        let code = |name: &str| {
            elf(
                "p.o",
                &format!(".text\n.globl {name}\n{name}: movl $7, %eax\n ret\n"),
            )
        };
        let a = session.load(&[code("a")]).unwrap();
        let b = session.load(&[code("b")]).unwrap();
        session.remove(a).unwrap();
        session.replace(b, &[code("b")]).unwrap();
        let c = session.load(&[code("c")]).unwrap();
        assert_eq!(session.modules(), [b, c]);
        session.finish().unwrap();
        assert_eq!(
            *log.borrow(),
            [
                "emitted 1",
                "emitted 2",
                "undone 1, memory intact: true",
                "emitted 2",
                "undone 2, memory intact: true",
                "emitted 3",
                "undone 3, memory intact: true",
                "undone 2, memory intact: true",
            ],
            "{RERUN}"
        );
    }

    /// In process a module is written straight into the slab. A load that
    /// fails after its bytes were written must leave the range as a fresh
    /// one (zero), or the next module there would start with its bytes.
    #[test]
    fn a_load_failing_after_writing_in_place_leaves_zero_pages() {
        let mut session = Session::new(SessionConfig {
            execute: false,
            ..SessionConfig::default()
        })
        .expect("session");
        session
            .load(&[elf("first.o", ".text\n.globl first\nfirst: ret\n")])
            .expect("first load");
        let used = session.slab_used();
        // 16 KiB of 0xff, then a 16-bit absolute address of its own data,
        // which no slab address holds (none is below 64 KiB, wherever the
        // slab lands): the relocation is refused after the contents were
        // copied.
        let failing = elf(
            "failing.o",
            ".data\nfilled: .fill 16384, 1, 0xff\n.word filled\n",
        );
        let err = session
            .load(&[failing])
            .expect_err("a 16-bit address of the slab");
        assert!(
            err.to_string().contains("R_X86_64_16"),
            "unexpected error: {err}\n{RERUN}"
        );
        assert_eq!(
            session.slab_used(),
            used,
            "the failed load's memory is freed\n{RERUN}"
        );
        let zeroes = elf("zeroes.o", ".bss\n.globl zeroes\nzeroes: .zero 65536\n");
        session.load(&[zeroes]).expect("load into the freed range");
        let at = session.lookup("zeroes").expect("lookup").expect("defined");
        // SAFETY: `zeroes` is a 64 KiB read-write .bss of a live module of
        // this in-process session, which nothing else writes.
        let bytes = unsafe { std::slice::from_raw_parts(at as *const u8, 65536) };
        let dirty = bytes.iter().filter(|&&b| b != 0).count();
        assert_eq!(
            dirty, 0,
            "{dirty} bytes of the failed load are left behind\n{RERUN}"
        );
    }

    /// A slab in the first 64 KiB would let null-pointer accesses succeed
    /// (root may map there): refused before anything is reserved.
    #[test]
    fn a_slab_in_the_first_64_kib_is_refused() {
        for address in [0, 0x1000, 0xf000] {
            let err = Session::new(SessionConfig {
                execute: false,
                placement: Placement::Fixed(address),
                ..SessionConfig::default()
            })
            .err()
            .unwrap_or_else(|| panic!("a slab at {address:#x} was accepted\n{RERUN}"));
            assert!(
                err.to_string().contains("first 64 KiB"),
                "unexpected error: {err}\n{RERUN}"
            );
        }
    }
}
