//! Resolution: what each symbol reference of a load means. In order: the
//! linker's own symbols (`_GLOBAL_OFFSET_TABLE_`, `__dso_handle`,
//! `__ImageBase`), this load's definitions, the runtime's interposers, other
//! modules' exports, then the host. A weak or common definition yields to
//! one another module already exports.

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use solder_executor::abi::CallingConvention;
use solder_executor::protocol::SymbolKind as HostKind;

use super::bridges::host_name;
use super::globals::Globals;
use super::plan::needs_near;
use super::resolutions::Resolutions;
use super::resolve_loaded::Pending;
use super::symbols::{Common, yields_to_session};
use super::{LinkRequest, site};
use crate::error::{LinkError, Site};
use crate::graph::*;

/// What an edge refers to, before layout gives it an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Target {
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
    /// A thread-local variable of this load: graph, section, offset (in
    /// the section, which is part of the load's thread-local block).
    ThreadLocal(usize, SectionId, u64),
    /// A host library's thread-local variable: its index in
    /// [`Resolver::host_thread_locals`].
    HostThreadLocal(usize),
}

impl Target {
    /// Whether the target is a thread-local variable, which has an offset
    /// (in its block, from the thread pointer) rather than an address.
    pub(super) fn is_thread_local(self) -> bool {
        matches!(self, Target::ThreadLocal(..) | Target::HostThreadLocal(_))
    }

    /// Whether the target is part of this load (so any rel32 reaches it).
    pub(super) fn in_load(self) -> bool {
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

/// A host thread-local variable the load refers to.
pub(super) struct HostThreadLocalRef<'g> {
    pub(super) name: &'g str,
    /// The module that exports it, for one of another module (whose place
    /// is known from its export); `None` for the host's.
    pub(super) module: Option<u32>,
    /// Whether an access needs its thread-pointer offset (initial exec,
    /// local exec, a descriptor); the plan sets it.
    pub(super) fixed: bool,
    /// Where the executor's loader says it lives, once asked.
    pub(super) place: Option<crate::executors::HostThreadLocal>,
}

/// Where a resolved symbol's definition comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Origin {
    Load,
    Absolute,
    /// The host process; `data` when its dynamic symbol is an object
    /// (otherwise a function, or of unknown type).
    Host {
        data: bool,
    },
    Module {
        module: u32,
        function: bool,
        convention: CallingConvention,
    },
    Runtime,
}

/// A symbol reference, resolved.
#[derive(Debug, Clone, Copy)]
pub(super) struct Resolved<'a> {
    pub(super) target: Target,
    pub(super) size: u64,
    pub(super) name: &'a str,
    pub(super) origin: Origin,
}

/// The copies of far host data a load makes, in order of first reference.
#[derive(Default)]
struct Copies {
    list: Vec<(u64, u64)>,
    made: HashSet<u64>,
}

/// Resolves symbol references of one load, once each (cached per symbol),
/// and collects what they need: dso thunks, calling-convention shims and
/// COFF import slots.
pub(super) struct Resolver<'g, 'a, 's> {
    pub(super) graphs: &'g [LinkGraph<'a>],
    pub(super) globals: &'g Globals<'g>,
    pub(super) commons: &'g [Common<'g>],
    /// What each graph's symbols resolved to.
    pub(super) cache: Vec<Resolutions<'g>>,
    /// (runtime function, argument register) of each dso thunk.
    pub(super) thunks: Vec<(u64, u8)>,
    /// What each Microsoft x64 -> System V shim calls.
    pub(super) shims: Vec<Target>,
    /// The shim of each target in `shims`, so finding one costs the same
    /// however many host functions a load calls.
    pub(super) shim_of: HashMap<Target, usize>,
    /// What each COFF import slot holds, and the other-module data symbol it
    /// binds, if any.
    pub(super) imports: Vec<(Target, Option<(u32, String)>)>,
    /// The host's thread-local variables the load refers to, in order of
    /// first reference.
    pub(super) host_thread_locals: Vec<HostThreadLocalRef<'g>>,
    pub(super) req: LinkRequest<'s>,
}

impl<'g, 'a, 's> Resolver<'g, 'a, 's> {
    pub(super) fn new(
        graphs: &'g [LinkGraph<'a>],
        globals: &'g Globals<'g>,
        commons: &'g [Common<'g>],
        req: LinkRequest<'s>,
    ) -> Self {
        Resolver {
            graphs,
            globals,
            commons,
            // Made by `resolve_edges`, on the load's threads.
            cache: Vec::new(),
            thunks: Vec::new(),
            shims: Vec::new(),
            shim_of: HashMap::default(),
            imports: Vec::new(),
            host_thread_locals: Vec::new(),
            req,
        }
    }

    /// Resolves every edge's target once (one pass over the edges, which
    /// are most of a load's memory): the serial pass, after
    /// [`Resolver::resolve_loaded`] (whose edges `pending` are, for each
    /// graph, the ones it left; `None`: every edge). Far host data
    /// referenced by a narrow field gets a copy, and then every reference
    /// in this load uses the copy, as with a copy relocation: returns the
    /// copies (address, size).
    pub(super) fn resolve_edges(
        &mut self,
        pending: Option<Vec<Pending>>,
    ) -> Result<Vec<(u64, u64)>, LinkError> {
        let graphs = self.graphs;
        let mut copies = Copies::default();
        for (g, graph) in graphs.iter().enumerate() {
            match pending.as_ref().and_then(|p| p.get(g)) {
                Some(pending) => {
                    for &(section, edge) in pending {
                        self.resolve_edge(g, &graph.sections[section], edge, &mut copies)?;
                    }
                }
                None => {
                    for section in graph.sections.iter().filter(|s| s.live) {
                        for edge in &section.edges {
                            self.resolve_edge(g, section, edge, &mut copies)?;
                        }
                    }
                }
            }
        }
        Ok(copies.list)
    }

    /// Resolves `edge` (of `section` in graph `g`) and notes the copy of far
    /// host data it needs, if any.
    fn resolve_edge(
        &mut self,
        g: usize,
        section: &Section<'_>,
        edge: Edge,
        copies: &mut Copies,
    ) -> Result<(), LinkError> {
        let graph = &self.graphs[g];
        let r = self.resolve(g, edge.target, || site(graph, section, edge.offset))?;
        if let Some(minus) = edge.minus() {
            self.resolve(g, minus, || site(graph, section, edge.offset))?;
        }
        if let (Target::Address(address), Origin::Host { data: true }) = (r.target, r.origin)
            && needs_near(&edge.kind, address, edge.addend, self.req.slab)
            && r.size > 0
            && copies.made.insert(address)
        {
            copies.list.push((address, r.size));
        }
        Ok(())
    }

    /// What edge target (or subtrahend) `id` of graph `g` resolved to.
    pub(super) fn cached(&self, g: usize, id: SymbolId) -> Resolved<'g> {
        self.cache[g].get(self.graphs, self.commons, g, id)
    }

    pub(super) fn resolve(
        &mut self,
        g: usize,
        id: SymbolId,
        site: impl Fn() -> Site,
    ) -> Result<Resolved<'g>, LinkError> {
        let name = self.graphs[g].symbols.get(id).map(|s| s.name);
        if let Some(r) = name.and_then(|name| self.cache[g].kept(id, name)) {
            return Ok(r);
        }
        let r = self.resolve_uncached(g, id, &site)?;
        if let Some(name) = name {
            self.cache[g].keep(id, name, r);
        }
        Ok(r)
    }

    fn definition(
        &self,
        g: usize,
        id: SymbolId,
        site: &dyn Fn() -> Site,
    ) -> Result<Resolved<'g>, LinkError> {
        definition(self.graphs, self.commons, g, id, site)
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
            if r.target.is_thread_local() {
                // An import slot holds an address; a thread-local variable
                // (another module's, exported) has one per thread.
                return Err(refused_reference(
                    site(),
                    name,
                    ": it names a thread-local variable, which has no address to import",
                ));
            }
            self.imports.push((r.target, binding_of(&r)));
            return Ok(Resolved {
                target: Target::Import(self.imports.len() - 1),
                size: 8,
                name,
                origin: Origin::Load,
            });
        }
        if let Some(r) = self.lookup(g, name, site)? {
            let r = self.host_thread_local(r, sym.kind == SymbolKind::ThreadLocal);
            return self.adapt_abi(g, r, site);
        }
        if sym.kind == SymbolKind::ThreadLocal {
            // Not looked up (see `host_lookups::ask_executor`): the
            // executor's loader says where it is when it is linked.
            let host = Resolved {
                target: Target::Null,
                size: sym.size,
                name,
                origin: Origin::Host { data: true },
            };
            return Ok(self.host_thread_local(host, true));
        }
        if let Some(fallback) = sym.fallback {
            return self.resolve_fallback(g, id, fallback.id(), site);
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

    /// What undefined `id` means through its chain of alternate names
    /// (COFF weak externals and `/alternatename:`), starting at `fallback`:
    /// the first name of the chain that something defines. Walked in a
    /// loop, not by recursion, so a long chain costs its length and no
    /// stack; a chain longer than the graph's symbols is a loop.
    fn resolve_fallback(
        &mut self,
        g: usize,
        id: SymbolId,
        fallback: SymbolId,
        site: &dyn Fn() -> Site,
    ) -> Result<Resolved<'g>, LinkError> {
        let graphs = self.graphs;
        let graph = &graphs[g];
        let mut at = fallback;
        for _ in 0..graph.symbols.len() {
            let sym = &graph.symbols[at];
            let Some(next) = sym.fallback.filter(|_| {
                !self.cache[g].is_resolved(at)
                    && sym.binding != Binding::Local
                    && !(graph.format == ObjectFormat::Coff && sym.name.starts_with("__imp_"))
            }) else {
                // Resolved already, or resolved without alternate names.
                return self.resolve(g, at, site);
            };
            if let Some(r) = self.lookup(g, sym.name, site)? {
                return self.adapt_abi(g, r, site);
            }
            at = next.id();
        }
        Err(LinkError::Malformed {
            object: graph.object.clone(),
            reason: format!(
                "{}: the alternate names of `{}` form a loop",
                site(),
                graph.symbols[id].name
            ),
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
        match linker_symbol(format, name) {
            Some(LinkerSymbol::GotBase) => return special(Target::GotBase, 0, Origin::Load),
            Some(LinkerSymbol::DsoHandle) => return special(Target::DsoHandle, 8, Origin::Load),
            // The image base ADDR32NB offsets are relative to: the slab's start.
            Some(LinkerSymbol::ImageBase) => {
                let base = self.req.slab.base();
                return special(Target::Address(base), 0, Origin::Absolute);
            }
            None => {}
        }
        if let Some((g2, id2)) = self.globals.get(name) {
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
                // The executor's answer (another process's, for a remote
                // one): a thunk can pass the handle in arguments 0-3 only.
                if crate::arch::x86_64::dso_thunk(info.arg).is_none() {
                    return Err(LinkError::Executor(format!(
                        "the executor says interposer `{name}` takes the module's handle in \
                         argument {}, but a thunk can pass it in arguments 0-3 only",
                        info.arg
                    )));
                }
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
            let resolved = Resolved {
                target: Target::Address(host.address),
                size: host.size,
                name,
                origin: Origin::Host {
                    data: host.kind == HostKind::Data,
                },
            };
            if host.kind == HostKind::Tls {
                return Ok(Some(self.host_thread_local(resolved, true)));
            }
            return Ok(Some(Resolved {
                target: Target::Address(host.address),
                size: host.size,
                name,
                origin: Origin::Host {
                    data: host.kind == HostKind::Data,
                },
            }));
        }
        Ok(None)
    }

    /// A host definition of a thread-local reference (or of a name the
    /// host's tables call thread-local) as a host thread-local variable:
    /// its address in the executor's thread means nothing to other
    /// threads. Anything else is returned as it is.
    fn host_thread_local(&mut self, r: Resolved<'g>, thread_local: bool) -> Resolved<'g> {
        if !thread_local || !matches!(r.origin, Origin::Host { .. }) {
            return r;
        }
        let index = match self
            .host_thread_locals
            .iter()
            .position(|v| v.name == r.name)
        {
            Some(i) => i,
            None => {
                self.host_thread_locals.push(HostThreadLocalRef {
                    name: r.name,
                    module: None,
                    fixed: false,
                    place: None,
                });
                self.host_thread_locals.len() - 1
            }
        };
        Resolved {
            target: Target::HostThreadLocal(index),
            ..r
        }
    }

    /// Asks the executor where each host thread-local variable the load
    /// refers to lives (with its thread-pointer offset when an access
    /// needs one).
    pub(super) fn locate_host_thread_locals(&mut self) -> Result<(), LinkError> {
        for var in &mut self.host_thread_locals {
            let refused = |reason: String| LinkError::ThreadLocal {
                what: match var.module {
                    Some(module) => {
                        format!("thread-local variable `{}` of module {module}", var.name)
                    }
                    None => format!("host thread-local variable `{}`", var.name),
                },
                reason,
            };
            if let (Some(module), Some(place)) = (var.module, var.place) {
                if var.fixed && place.tp_offset.is_none() {
                    return Err(refused(format!(
                        "its block is not at a fixed thread-pointer offset (no initial-exec or \
                         local-exec code of module {module} reaches it), so this load's \
                         initial-exec accesses cannot reach it; compile this load with -fPIC"
                    )));
                }
                continue;
            }
            let place = match self.req.executor.host_thread_local(var.name, var.fixed) {
                Ok(place) => place,
                Err(LinkError::ThreadLocal { what, reason }) if var.fixed => {
                    return Err(LinkError::ThreadLocal {
                        what,
                        reason: format!(
                            "{reason} (initial-exec code needs the variable's library in static \
                             TLS; code compiled with -fPIC reaches it through __tls_get_addr \
                             instead)"
                        ),
                    });
                }
                Err(e) => return Err(e),
            };
            if var.fixed && place.tp_offset.is_none() {
                return Err(LinkError::Executor(format!(
                    "host thread-local variable `{}`: the executor gave no thread-pointer offset",
                    var.name
                )));
            }
            var.place = Some(place);
        }
        Ok(())
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
        let origin = Origin::Module {
            module: export.module,
            function: export.function,
            convention: export.convention,
        };
        if let Some(&place) = export.thread_local.as_deref() {
            let known = self.host_thread_locals.iter().position(|v| v.name == name);
            let index = known.unwrap_or_else(|| {
                self.host_thread_locals.push(HostThreadLocalRef {
                    name,
                    module: Some(export.module),
                    fixed: false,
                    place: Some(place),
                });
                self.host_thread_locals.len() - 1
            });
            return Ok(Some(Resolved {
                target: Target::HostThreadLocal(index),
                size: 0,
                name,
                origin,
            }));
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
            origin,
        }))
    }
}

/// A symbol the linker itself defines for every load: never the load's,
/// another module's or the host's to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LinkerSymbol {
    /// ELF's `_GLOBAL_OFFSET_TABLE_`: the load's GOT.
    GotBase,
    /// `__dso_handle`: the module's handle.
    DsoHandle,
    /// COFF's `__ImageBase`: what ADDR32NB offsets are relative to.
    ImageBase,
}

/// Which linker symbol `name` is in an object of `format`, if any.
pub(super) fn linker_symbol(format: ObjectFormat, name: &str) -> Option<LinkerSymbol> {
    match (format, format.c_name(name)?) {
        (ObjectFormat::Elf, "_GLOBAL_OFFSET_TABLE_") => Some(LinkerSymbol::GotBase),
        (_, "__dso_handle") => Some(LinkerSymbol::DsoHandle),
        (ObjectFormat::Coff, "__ImageBase") => Some(LinkerSymbol::ImageBase),
        _ => None,
    }
}

/// The other-module data symbol a resolution refers to, if any.
pub(super) fn binding_of(r: &Resolved<'_>) -> Option<(u32, String)> {
    match r.origin {
        Origin::Module {
            module,
            function: false,
            ..
        } => Some((module, r.name.to_string())),
        _ => None,
    }
}

/// A reference to `symbol` that cannot be linked, and why (the text
/// follows the symbol in the message, so it starts with ": ").
pub(super) fn refused_reference(site: Site, symbol: &str, why: &str) -> LinkError {
    LinkError::refused_relocation(site, "reference", symbol, why)
}

/// What the definition `id` of graph `g` resolves to (a section place,
/// an absolute value, an allocated common).
pub(super) fn definition<'g>(
    graphs: &'g [LinkGraph<'_>],
    commons: &[Common<'g>],
    g: usize,
    id: SymbolId,
    site: &dyn Fn() -> Site,
) -> Result<Resolved<'g>, LinkError> {
    let graph = &graphs[g];
    let sym = &graph.symbols[id];
    let name: &'g str = sym.name;
    let target = match sym.definition {
        Definition::Defined { section, offset } => {
            let section = section as SectionId;
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
            let in_block = graph.sections[section].role == SectionRole::ThreadLocal;
            if in_block != (sym.kind == SymbolKind::ThreadLocal) && sym.kind != SymbolKind::Section
            {
                return Err(LinkError::Malformed {
                    object: graph.object.clone(),
                    reason: format!(
                        "{}: `{name}` is {} but defined in {} section {}",
                        site(),
                        if in_block {
                            "not thread-local"
                        } else {
                            "thread-local"
                        },
                        if in_block { "thread-local" } else { "ordinary" },
                        graph.sections[section].name
                    ),
                });
            }
            if in_block {
                Target::ThreadLocal(g, section, offset)
            } else {
                Target::Section(g, section, offset)
            }
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
            // The load allocates the global, named commons; an object
            // can still mark a common local or leave it unnamed.
            // `commons` is sorted by name (symbols::collect).
            let found = commons.binary_search_by(|c| c.name.cmp(name));
            let Ok(index) = found else {
                return Err(LinkError::Malformed {
                    object: graph.object.clone(),
                    reason: format!(
                        "{}: refers to common symbol `{name}`, which is local or unnamed \
                         (only global commons are allocated)",
                        site()
                    ),
                });
            };
            return Ok(Resolved {
                target: Target::Common(index),
                size: commons[index].size,
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
