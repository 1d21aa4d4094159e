//! The session: a REPL-like sequence of loads into one slab. Add objects at
//! any time (later loads use earlier symbols), look symbols up, call
//! functions, remove a module, hot-swap a module, end the session.

use std::collections::HashMap;
use std::ffi::{CString, c_char, c_int};
use std::path::Path;
use std::sync::Arc;

use solder_executor::crash::{CrashSymbol, CrashSymbols, publish_symbols};
use solder_executor::host::HostLibraries;
use solder_executor::lifecycle;
use solder_executor::unwind::RegisteredFrames;

use crate::arch::{RelocOp, write_checked};
use crate::error::LinkError;
use crate::graph::{LinkGraph, Protection};
use crate::indirection::Indirection;
use crate::link::{DataBinding, Export, LinkRequest, LinkedModule, link};
use crate::memory::{Placement, Slab, make_writable, protect_as};

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
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            slab_size: 1 << 30,
            placement: Placement::Auto,
            libraries: Vec::new(),
            preloads: Vec::new(),
            execute: true,
        }
    }
}

/// A relocatable object to load.
#[derive(Debug, Clone)]
pub struct ObjectFile {
    pub name: String,
    pub bytes: Vec<u8>,
}

impl ObjectFile {
    pub fn read(path: &Path) -> Result<Self, LinkError> {
        let bytes = std::fs::read(path).map_err(|reason| LinkError::Read {
            path: path.to_path_buf(),
            reason,
        })?;
        Ok(ObjectFile {
            name: path.display().to_string(),
            bytes,
        })
    }
}

/// A module: the objects of one load, linked together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModuleId(pub u32);

impl std::fmt::Display for ModuleId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

struct Module {
    id: u32,
    objects: Arc<str>,
    memory: (u64, u64),
    segments: Vec<(u64, u64, Protection)>,
    dso: u64,
    /// Deregisters on drop, before the memory is released.
    frames: Option<RegisteredFrames>,
    exports: Vec<String>,
    imports: Vec<(u32, String)>,
    bindings: Vec<DataBinding>,
    crash_symbols: Vec<CrashSymbol>,
}

pub struct Session {
    config: SessionConfig,
    /// Reserved at the first load, when its placement can be chosen from
    /// the objects (unless the configuration fixes it).
    slab: Option<Slab>,
    host: HostLibraries,
    modules: Vec<Module>,
    exports: HashMap<String, Export>,
    indirection: Indirection,
    next_id: u32,
    program_args: ProgramArgs,
    ended: bool,
}

/// `argc`, `argv` and `envp` as C sees them, kept alive for the session:
/// initializers and `main` receive them, as glibc passes them.
struct ProgramArgs {
    _strings: Vec<CString>,
    argv: Vec<*const c_char>,
}

impl ProgramArgs {
    fn new(args: &[String]) -> Self {
        let strings: Vec<CString> = args
            .iter()
            .map(|a| CString::new(a.replace('\0', "")).expect("NULs removed"))
            .collect();
        let mut argv: Vec<*const c_char> = strings.iter().map(|s| s.as_ptr()).collect();
        argv.push(std::ptr::null());
        ProgramArgs {
            _strings: strings,
            argv,
        }
    }

    fn argc(&self) -> c_int {
        (self.argv.len() - 1) as c_int
    }
}

unsafe extern "C" {
    static environ: *const *const c_char;
}

impl Session {
    pub fn new(config: SessionConfig) -> Result<Self, LinkError> {
        let slab = match config.placement {
            Placement::Auto => None,
            placement => Some(Slab::reserve(config.slab_size, placement)?),
        };
        let mut host = HostLibraries::with_defaults()?;
        for name in &config.libraries {
            host.link_library(name)?;
        }
        for path in &config.preloads {
            host.preload(path)?;
        }
        Ok(Session {
            config,
            slab,
            host,
            modules: Vec::new(),
            exports: HashMap::new(),
            indirection: Indirection::default(),
            next_id: 1,
            program_args: ProgramArgs::new(&["solder".to_string()]),
            ended: false,
        })
    }

    /// Sets `argv` for initializers and [`Session::run_main`].
    pub fn set_program_args(&mut self, args: &[String]) {
        self.program_args = ProgramArgs::new(args);
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
        self.slab
            .as_ref()
            .map_or_else(crate::memory::page_size, Slab::page)
    }

    /// Links `objects` as one new module and runs its initializers.
    pub fn load(&mut self, objects: &[ObjectFile]) -> Result<ModuleId, LinkError> {
        let id = self.next_id;
        let linked = self.link(id, objects, None)?;
        self.next_id += 1;
        let initializers = linked.initializers.clone();
        self.install(id, objects, linked, self.modules.len(), None)?;
        self.run_initializers(&initializers);
        Ok(ModuleId(id))
    }

    fn link(
        &mut self,
        id: u32,
        objects: &[ObjectFile],
        replacing: Option<u32>,
    ) -> Result<LinkedModule, LinkError> {
        let graphs = objects
            .iter()
            .map(|o| parse_object(&o.name, &o.bytes))
            .collect::<Result<Vec<_>, _>>()?;
        let slab = match &mut self.slab {
            Some(slab) => slab,
            none => {
                // Absolute 32-bit references (`-fno-pic`) need the low 2 GiB;
                // everything else is best next to the host's libraries.
                let absolute32 = graphs.iter().flat_map(|g| &g.sections).any(|s| {
                    s.edges
                        .iter()
                        .any(|e| e.kind.op == RelocOp::Absolute && e.kind.width == 4)
                });
                let placement = if absolute32 {
                    Placement::Low
                } else {
                    Placement::NearHost
                };
                none.insert(Slab::reserve(self.config.slab_size, placement)?)
            }
        };
        link(
            graphs,
            LinkRequest {
                module: id,
                objects: describe(objects),
                slab,
                host: &mut self.host,
                exports: &self.exports,
                indirection: &mut self.indirection,
                replacing,
            },
        )
    }

    /// Makes a linked module live at `position` in load order (and at
    /// `runtime_position` in the runtime's deinitializer order).
    fn install(
        &mut self,
        id: u32,
        objects: &[ObjectFile],
        linked: LinkedModule,
        position: usize,
        runtime_position: Option<usize>,
    ) -> Result<(), LinkError> {
        let frames = match linked.eh_frame {
            // SAFETY: the merged `.eh_frame` is finalized, read-only, ends
            // with a zero terminator and stays mapped until `frames` is
            // dropped, which happens before the module's memory is released.
            Some(begin) => Some(unsafe { RegisteredFrames::register(begin)? }),
            None => None,
        };
        if self.config.execute {
            lifecycle::register_module(linked.dso, linked.finalizers, runtime_position);
        }
        let mut export_names = Vec::with_capacity(linked.exports.len());
        for (name, export) in linked.exports {
            if export.function {
                self.indirection
                    .retarget(&name, export.address, self.page())?;
            }
            export_names.push(name.clone());
            self.exports.insert(name, export);
        }
        self.modules.insert(
            position,
            Module {
                id,
                objects: describe(objects),
                memory: linked.memory,
                segments: linked.segments,
                dso: linked.dso,
                frames,
                exports: export_names,
                imports: linked.imports,
                bindings: linked.bindings,
                crash_symbols: linked.crash_symbols,
            },
        );
        self.publish_crash_symbols();
        Ok(())
    }

    fn run_initializers(&self, initializers: &[u64]) {
        if !self.config.execute {
            return;
        }
        for &init in initializers {
            // SAFETY: the address comes from a relocated initializer array
            // of a finalized module; glibc calls these as
            // `void (int, char **, char **)`, and so do we.
            let f: extern "C" fn(c_int, *const *const c_char, *const *const c_char) =
                unsafe { std::mem::transmute(init as usize) };
            // SAFETY: reading the process environment pointer.
            let envp = unsafe { environ };
            f(
                self.program_args.argc(),
                self.program_args.argv.as_ptr(),
                envp,
            );
        }
    }

    fn publish_crash_symbols(&self) {
        let all = self
            .modules
            .iter()
            .flat_map(|m| m.crash_symbols.iter().cloned())
            .collect();
        publish_symbols(CrashSymbols::new(all));
    }

    /// The address of an exported symbol. A function's address is its
    /// indirection stub, which stays valid across hot swaps.
    pub fn lookup(&mut self, name: &str) -> Result<Option<u64>, LinkError> {
        let Some(export) = self.exports.get(name) else {
            return Ok(None);
        };
        if export.function {
            let address = export.address;
            let slab = self.slab.as_mut().expect("modules live in the slab");
            return self.indirection.stub_for(slab, name, address).map(Some);
        }
        Ok(Some(export.address))
    }

    /// Calls a JIT'd function with up to six integer arguments and returns
    /// its integer result.
    ///
    /// # Safety
    /// `address` must be a function of this session taking at most
    /// `args.len()` integer arguments; what the function does is up to it.
    pub unsafe fn call(&self, address: u64, args: &[u64]) -> u64 {
        assert!(args.len() <= 6, "at most six integer arguments");
        assert!(self.config.execute, "this session links only (noexec)");
        let mut a = [0u64; 6];
        a[..args.len()].copy_from_slice(args);
        type Fn6 = extern "C" fn(u64, u64, u64, u64, u64, u64) -> u64;
        // SAFETY: guaranteed by the caller; extra SysV argument registers
        // are ignored by a function taking fewer.
        let f: Fn6 = unsafe { std::mem::transmute(address as usize) };
        f(a[0], a[1], a[2], a[3], a[4], a[5])
    }

    /// Calls `int entry(int argc, char **argv, char **envp)` with the
    /// program arguments.
    pub fn run_main(&mut self, entry: &str) -> Result<c_int, LinkError> {
        let address = self.lookup(entry)?.ok_or_else(|| LinkError::Undefined {
            symbol: entry.to_string(),
            site: crate::error::Site {
                object: "the command line".into(),
                section: "--entry".into(),
                offset: 0,
            },
        })?;
        type Main = extern "C" fn(c_int, *const *const c_char, *const *const c_char) -> c_int;
        // SAFETY: the entry point is a JIT'd function with C's `main`
        // signature (a function taking fewer arguments ignores the rest).
        let main: Main = unsafe { std::mem::transmute(address as usize) };
        // SAFETY: reading the process environment pointer.
        let envp = unsafe { environ };
        Ok(main(
            self.program_args.argc(),
            self.program_args.argv.as_ptr(),
            envp,
        ))
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
        let module = self.modules.remove(index);
        if self.config.execute {
            lifecycle::remove_module(module.dso);
        }
        for name in &module.exports {
            if self.exports.get(name).is_some_and(|e| e.module == id.0) {
                self.exports.remove(name);
                // Calls through a stale pointer now fault at address 0.
                self.indirection.retarget(name, 0, self.page())?;
            }
        }
        self.release(module);
        self.publish_crash_symbols();
        Ok(())
    }

    /// Hot swap: links `objects` in place of module `id`. Callers in other
    /// modules reach the new definitions; the old module's deinitializers
    /// run, its memory is released, and the new module's initializers run.
    pub fn replace(&mut self, id: ModuleId, objects: &[ObjectFile]) -> Result<(), LinkError> {
        let index = self.index_of(id)?;
        let linked = self.link(id.0, objects, Some(id.0))?;
        // Every symbol other modules use must still be there.
        for user in &self.modules {
            for (module, symbol) in &user.imports {
                if *module == id.0 && !linked.exports.iter().any(|(n, _)| n == symbol) {
                    let err = LinkError::ReplacementMissing {
                        module: id.0,
                        symbol: symbol.clone(),
                        user: user.id,
                    };
                    self.slab_mut().release(linked.memory.0, linked.memory.1);
                    return Err(err);
                }
            }
        }
        let old = self.modules.remove(index);
        let runtime_position = if self.config.execute {
            lifecycle::remove_module(old.dso)
        } else {
            None
        };
        for name in &old.exports {
            if self.exports.get(name).is_some_and(|e| e.module == id.0) {
                self.exports.remove(name);
            }
        }
        let initializers = linked.initializers.clone();
        // The new version takes the old one's place in load order, so
        // session end still finalizes its dependents before it.
        self.install(id.0, objects, linked, index, runtime_position)?;
        // Functions were redirected through their stubs in `install`; stubs
        // of functions the new version lacks fault instead of running freed
        // code. Direct data references are re-applied.
        for name in &old.exports {
            if !self.exports.contains_key(name) {
                self.indirection.retarget(name, 0, self.page())?;
            }
        }
        self.rebind(id.0)?;
        self.release(old);
        self.publish_crash_symbols();
        self.run_initializers(&initializers);
        Ok(())
    }

    /// Re-applies other modules' direct references into module `id`'s data.
    fn rebind(&mut self, id: u32) -> Result<(), LinkError> {
        let page = self.page();
        for module in &self.modules {
            if module.id == id {
                continue;
            }
            for binding in module.bindings.iter().filter(|b| b.module == id) {
                let target = self.exports[&binding.symbol].address;
                let (s, a, p) = (
                    target as i64 as i128,
                    binding.addend as i128,
                    binding.site as i128,
                );
                let value = match binding.kind.op {
                    RelocOp::PcRelative | RelocOp::Branch => s + a - p,
                    _ => s + a,
                };
                let width = u64::from(binding.kind.width);
                let first = binding.site & !(page - 1);
                let last = (binding.site + width - 1) & !(page - 1);
                let protection = module
                    .segments
                    .iter()
                    .find(|&&(start, size, _)| (start..start + size).contains(&binding.site))
                    .map_or(Protection::Data, |&(_, _, p)| p);
                make_writable(first, last + page - first)?;
                // SAFETY: the site lies in a live module's pages, which were
                // just made writable (and not executable).
                let field = unsafe {
                    std::slice::from_raw_parts_mut(binding.site as *mut u8, width as usize)
                };
                let result = write_checked(&binding.kind, field, value);
                protect_as(first, last + page - first, protection)?;
                result.map_err(|failure| {
                    LinkError::OutOfRange(Box::new(crate::error::OutOfRange {
                        site: crate::error::Site {
                            object: module.objects.to_string(),
                            section: "(re-applied binding)".into(),
                            offset: binding.site - module.memory.0,
                        },
                        reloc: binding.kind.name.to_string(),
                        symbol: binding.symbol.clone(),
                        value,
                        width: failure.width,
                        detail: format!("new definition at {target:#x}"),
                    }))
                })?;
            }
        }
        Ok(())
    }

    fn slab_mut(&mut self) -> &mut Slab {
        self.slab.as_mut().expect("modules live in the slab")
    }

    fn release(&mut self, mut module: Module) {
        drop(module.frames.take());
        self.slab_mut().release(module.memory.0, module.memory.1);
    }

    /// Ends the session as `exit()` would: every handler newest-first, then
    /// each module's deinitializers, newest module first; then releases all
    /// memory.
    pub fn end(&mut self) {
        if self.ended {
            return;
        }
        self.ended = true;
        if self.config.execute {
            let dsos: Vec<u64> = self.modules.iter().map(|m| m.dso).collect();
            lifecycle::end_modules(&dsos);
        }
        for module in std::mem::take(&mut self.modules).into_iter().rev() {
            self.release(module);
        }
        self.exports.clear();
        publish_symbols(CrashSymbols::default());
    }

    /// Ids of the live modules, in load order.
    pub fn modules(&self) -> Vec<ModuleId> {
        self.modules.iter().map(|m| ModuleId(m.id)).collect()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.end();
    }
}

fn describe(objects: &[ObjectFile]) -> Arc<str> {
    objects
        .iter()
        .map(|o| o.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
        .into()
}

/// Picks the front-end by the object's magic.
fn parse_object<'a>(name: &str, bytes: &'a [u8]) -> Result<LinkGraph<'a>, LinkError> {
    if crate::elf::is_elf(bytes) {
        crate::elf::parse(name, bytes)
    } else {
        Err(LinkError::UnsupportedObject {
            object: name.to_string(),
            reason: "not an ELF object (Mach-O and COFF front-ends are not built yet)".into(),
        })
    }
}
