//! Host symbol lookup: what JIT'd code can reach in the running process.
//!
//! Lookup order: the process's global scope (`dlsym(RTLD_DEFAULT)`: the
//! executable, libc and their dependencies), then libraries opened for the
//! session (libm by default, `-l NAME`, `--preload PATH`), then — only when a
//! name is still missing — the C++ runtime (`libstdc++`, `libgcc_s`), the way
//! `g++` would link it, so that C++ objects run without extra flags.

use std::ffi::{CStr, CString};

use crate::dynsym::ObjectTables;
use crate::protocol::{SymbolInfo, SymbolKind};
use crate::sys::dl::{self, Library};

/// What kind of object a host symbol names, from its dynamic symbol entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostSymbolKind {
    Function,
    Data,
    /// Thread-local storage: not addressable by a plain address.
    Tls,
    Unknown,
}

/// A symbol found in the host process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostSymbol {
    pub address: u64,
    /// `st_size` of the defining dynamic symbol, when known (0 otherwise).
    pub size: u64,
    pub kind: HostSymbolKind,
}

/// Errors while opening host libraries.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("cannot load library `{name}`: {reason}")]
    Load { name: String, reason: String },
}

/// Libraries searched after the global scope, in order.
pub struct HostLibraries {
    handles: Vec<(String, Library)>,
    cxx_runtime_loaded: bool,
    /// The loaded objects' dynamic tables, re-read after every `dlopen`.
    tables: ObjectTables,
}

/// The C++ runtime libraries that `g++` links by default.
const CXX_RUNTIME: &[&str] = &["libstdc++.so.6", "libgcc_s.so.1"];

impl HostLibraries {
    /// The default set: the global scope plus libm, as `cc` links it.
    pub fn with_defaults() -> Result<Self, HostError> {
        let mut libs = HostLibraries {
            handles: Vec::new(),
            cxx_runtime_loaded: false,
            tables: ObjectTables::default(),
        };
        libs.open("libm.so.6")?;
        Ok(libs)
    }

    /// What JIT'd code binds `name` to: the runtime's interposers first,
    /// then the host's libraries (both executors answer lookups with this).
    pub fn resolve_for_jit(&mut self, name: &str) -> SymbolInfo {
        let missing = SymbolInfo {
            kind: SymbolKind::Missing,
            arg: 0,
            address: 0,
            size: 0,
        };
        match crate::lifecycle::interposer(name) {
            Some(crate::lifecycle::Interposer::Direct(address)) => {
                return SymbolInfo {
                    kind: SymbolKind::InterposerDirect,
                    address,
                    ..missing
                };
            }
            Some(crate::lifecycle::Interposer::PassDso { target, arg_index }) => {
                return SymbolInfo {
                    kind: SymbolKind::InterposerPassDso,
                    arg: arg_index,
                    address: target,
                    size: 0,
                };
            }
            None => {}
        }
        let host_name = match name {
            // glibc's libc_nonshared.a: the local alias of __stack_chk_fail.
            "__stack_chk_fail_local" => "__stack_chk_fail",
            _ => name,
        };
        match self.lookup(host_name) {
            Some(symbol) => SymbolInfo {
                kind: match symbol.kind {
                    HostSymbolKind::Function => SymbolKind::Function,
                    HostSymbolKind::Data => SymbolKind::Data,
                    HostSymbolKind::Tls => SymbolKind::Tls,
                    HostSymbolKind::Unknown => SymbolKind::Unknown,
                },
                arg: 0,
                address: symbol.address,
                size: symbol.size,
            },
            None => missing,
        }
    }

    /// `-l NAME`: opens `libNAME.so` the way the compiler driver would find
    /// it (falling back to the versioned names glibc installs for runtime use).
    pub fn link_library(&mut self, name: &str) -> Result<(), HostError> {
        let candidates = [
            format!("lib{name}.so"),
            format!("lib{name}.so.6"),
            format!("lib{name}.so.1"),
        ];
        let mut last = None;
        for candidate in &candidates {
            match self.open(candidate) {
                Ok(()) => return Ok(()),
                Err(err) => last = Some(err),
            }
        }
        Err(last.unwrap_or_else(|| HostError::Load {
            name: name.to_string(),
            reason: "no candidate file name".into(),
        }))
    }

    /// `--preload PATH`: opens a shared object by path.
    pub fn preload(&mut self, path: &str) -> Result<(), HostError> {
        self.open(path)
    }

    fn open(&mut self, name: &str) -> Result<(), HostError> {
        let cname = CString::new(name).map_err(|_| HostError::Load {
            name: name.to_string(),
            reason: "the name contains a NUL byte".into(),
        })?;
        let library = Library::open_global(&cname).map_err(|reason| HostError::Load {
            name: name.to_string(),
            reason,
        })?;
        self.handles.push((name.to_string(), library));
        self.tables.refresh();
        Ok(())
    }

    /// Where the host's thread-local variable `name` lives, as the loader
    /// says (see [`crate::thread_locals::host_thread_local`]); when no
    /// loaded library defines it, again after opening the C++ runtime, as
    /// [`HostLibraries::lookup`] does. Never through `dlsym`, which would
    /// allocate the calling thread's copy outside static TLS and so keep
    /// the variable's library out of it for good.
    pub fn thread_local(
        &mut self,
        name: &str,
        fixed: bool,
    ) -> Result<crate::tls_carrier::HostThreadLocal, String> {
        // The loader resolves a thread-local relocation against any
        // definition: against a function it gives nonsense, and against a
        // symbol of a library without TLS it divides by the library's zero
        // TLS alignment. Only a name some library defines as thread-local
        // (or none defines yet) is probed.
        let kinds = CString::new(name)
            .map(|c| self.tables.kinds_of(&c))
            .map_err(|_| format!("`{name}` cannot be a symbol name (it has a NUL byte)"))?;
        if !kinds.is_empty() && !kinds.contains(&STT_TLS) {
            return Err(format!(
                "`{name}` is not a thread-local variable of the host (its definition is a \
                 function or ordinary data)"
            ));
        }
        match crate::thread_locals::host_thread_local(name, fixed) {
            Err(why) if !self.cxx_runtime_loaded && why.contains("undefined symbol") => {
                self.load_cxx_runtime();
                crate::thread_locals::host_thread_local(name, fixed)
            }
            other => other,
        }
    }

    /// Opens the C++ runtime, once.
    fn load_cxx_runtime(&mut self) {
        self.cxx_runtime_loaded = true;
        for lib in CXX_RUNTIME {
            // A missing C++ runtime only means C++ symbols stay undefined;
            // the caller reports the undefined symbol by name.
            let _ = self.open(lib);
        }
    }

    /// Looks a name up; `None` when no host library defines it.
    pub fn lookup(&mut self, name: &str) -> Option<HostSymbol> {
        let cname = CString::new(name).ok()?;
        if let Some(found) = self.lookup_loaded(&cname) {
            return Some(found);
        }
        if !self.cxx_runtime_loaded {
            self.load_cxx_runtime();
            return self.lookup_loaded(&cname);
        }
        None
    }

    fn lookup_loaded(&self, name: &CStr) -> Option<HostSymbol> {
        let address = dl::global_symbol(name).or_else(|| {
            self.handles
                .iter()
                .find_map(|(_, library)| library.symbol(name))
        })?;
        Some(match self.tables.describe(name, address) {
            Some(entry) => HostSymbol {
                address,
                size: entry.size,
                kind: kind_of(entry.kind),
            },
            None => describe(address),
        })
    }
}

/// `STT_TLS`: a thread-local variable.
const STT_TLS: u8 = 6;

/// A symbol type (`st_info & 0xf`) as a host symbol kind.
fn kind_of(stt: u8) -> HostSymbolKind {
    match stt {
        2 | 10 => HostSymbolKind::Function, // STT_FUNC, STT_GNU_IFUNC
        1 => HostSymbolKind::Data,          // STT_OBJECT
        STT_TLS => HostSymbolKind::Tls,
        _ => HostSymbolKind::Unknown,
    }
}

/// The fallback for objects without a GNU hash table: glibc's scan of the
/// object's symbols.
fn describe(address: u64) -> HostSymbol {
    let (size, kind) = crate::dynsym::scan_for_entry(address)
        .map_or((0, HostSymbolKind::Unknown), |e| (e.size, kind_of(e.kind)));
    HostSymbol {
        address,
        size,
        kind,
    }
}

/// The address span of the loaded shared libraries (not the executable or
/// the vDSO): JIT memory placed within ±2 GiB of all of it reaches host data
/// with 32-bit PC-relative references, as code compiled for PIE expects.
pub fn library_span() -> Option<(u64, u64)> {
    let mut span: (u64, u64) = (u64::MAX, 0);
    dl::for_each_loaded_object(|object| {
        let name = object.name();
        if name.is_empty() || name.starts_with(b"linux-vdso") || name.starts_with(b"linux-gate") {
            return;
        }
        for segment in object.segments() {
            if segment.kind == dl::PT_LOAD {
                span.0 = span.0.min(segment.address);
                span.1 = span.1.max(segment.address + segment.size);
            }
        }
    });
    (span.1 > span.0).then_some(span)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_libc_function_and_data() {
        let mut libs = HostLibraries::with_defaults().unwrap();
        let puts = libs.lookup("puts").unwrap();
        assert_eq!(puts.kind, HostSymbolKind::Function);
        let stdout = libs.lookup("stdout").unwrap();
        assert_eq!(stdout.kind, HostSymbolKind::Data);
        assert_eq!(stdout.size, 8);
        assert!(libs.lookup("cos").is_some(), "libm is searched by default");
        assert!(libs.lookup("solder_no_such_symbol_anywhere").is_none());
    }

    #[test]
    fn library_span_covers_libc() {
        let (lo, hi) = library_span().unwrap();
        let puts = HostLibraries::with_defaults()
            .unwrap()
            .lookup("puts")
            .unwrap();
        assert!((lo..hi).contains(&puts.address), "{lo:#x}..{hi:#x}");
    }

    #[test]
    fn missing_library_is_a_named_error() {
        let mut libs = HostLibraries::with_defaults().unwrap();
        let err = libs.link_library("solder_missing_lib").unwrap_err();
        assert!(err.to_string().contains("solder_missing_lib"), "{err}");
    }
}
