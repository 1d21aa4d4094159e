//! Linking without running: one object's bytes through the whole load
//! pipeline (sniffing, front-end, resolution, plan, layout, relocation) into
//! a byte image, with no executor and no host layer.
//!
//! This is the entry point the fuzz targets (`fuzz/`), the fuzz regression
//! test (`linker/tests/fuzz_regressions.rs`) and the portable core's link
//! tests share, so what the fuzzer explores is what the tests pin. The
//! module is placed at [`BASE`], an address no one maps: nothing is ever
//! written to memory, the image is a `Vec`.
//!
//! With [`Host::MadeUp`], the names the object leaves undefined are
//! answered by a made-up host (see [`host_symbol`]) instead of failing as
//! undefined: real objects reference the C library, and a link that stopped
//! at resolution would leave planning, layout and relocation unexplored.

use std::sync::Arc;
use std::time::Duration;

use rustc_hash::FxHashMap as HashMap;
use solder_executor::abi::CallingConvention;
use solder_executor::module::Finalizers;
use solder_executor::protocol::{MAX_READ, PlacementCode, SymbolInfo, SymbolKind};

use crate::archive::Archive;
use crate::debug_sections::{self, Pieces};
use crate::error::LinkError;
use crate::executors::{Executor, HostThreadLocal, Outcome, ThreadLocals, TlsTemplate};
use crate::graph::{Definition, LinkGraph, ObjectFormat, Protection};
use crate::indirection::Indirection;
use crate::input::parse_object;
use crate::link::{LinkRequest, LinkedModule, host_names, link};
use crate::members::ArchiveSearch;
use crate::memory::Slab;
use crate::parallel::Threads;

/// Where the module goes: far from anything mapped (and from
/// [`HOST_BASE`], so host references need stubs, GOT entries and copies
/// as they do when the host's libraries are out of reach).
pub const BASE: u64 = 0x5555_0000_0000;

/// The slab's size: the session's default.
pub const SLAB_SIZE: u64 = 1 << 30;

/// Where the made-up host's symbols are: each name gets its own 16 bytes
/// from here, in the order the object first mentions it.
pub const HOST_BASE: u64 = 0x7f00_0000_0000;

/// What answers the names an object leaves undefined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host {
    /// Nothing: they are undefined (unless the object itself resolves them,
    /// through weak definitions or alternate names).
    Empty,
    /// Every one is defined by a made-up host, as [`host_symbol`] says.
    MadeUp,
}

/// Links the object `bytes` (ELF, Mach-O or COFF, x86-64, sniffed by its
/// magic) alone into a byte image at [`BASE`], its undefined names answered
/// by `host`. `name` is the object's name in errors. Every size, offset and
/// count in `bytes` may be hostile: the result is a clean error naming what
/// is wrong and where, never a panic.
pub fn link_image(name: &str, bytes: &[u8], host: Host) -> Result<LinkedModule, LinkError> {
    let graph = parse_object(name, bytes)?;
    link_graphs(name, vec![graph], host)
}

/// Reads `bytes` as a static archive (thin members are refused: a probe
/// reads no other file) and links every member, as `--whole-archive`
/// takes them, into one byte image, as [`link_image`] does for one object.
pub fn link_archive(name: &str, bytes: &[u8], host: Host) -> Result<LinkedModule, LinkError> {
    let archive = Archive::parse(name, bytes, None)?;
    let mut search = ArchiveSearch::default();
    search.add(archive, true);
    let archives = search.archives();
    let mut graphs = Vec::new();
    search.select(
        &archives,
        &mut graphs,
        1,
        crate::parallel::Threads::serial(),
        |_| false,
    )?;
    link_graphs(name, graphs, host)
}

/// Links `graphs` as one module at [`BASE`].
fn link_graphs(
    name: &str,
    graphs: Vec<LinkGraph<'_>>,
    host: Host,
) -> Result<LinkedModule, LinkError> {
    let mut symbols = match host {
        Host::Empty => HashMap::default(),
        Host::MadeUp => made_up_host(&graphs),
    };
    let mut slab = Slab::new(BASE, SLAB_SIZE, PAGE);
    // Several objects (an archive's members) are split over two threads
    // whatever their size, so fuzzing reaches the parallel stages too
    // (their output is the serial link's: `tests/parallel_link.rs`).
    let threads = match graphs.len() {
        0 | 1 => crate::parallel::Threads::serial(),
        _ => crate::parallel::Threads {
            count: Some(2),
            min_bytes_each: 1,
        },
    };
    link(
        graphs,
        LinkRequest {
            module: 1,
            objects: Arc::from(name),
            slab: &mut slab,
            symbols: &mut symbols,
            interposes: |_| false,
            executor: &mut Nowhere {
                host,
                asked: Vec::new(),
            },
            exports: &HashMap::default(),
            describe_module: &|id| format!("module {id}"),
            indirection: &mut Indirection::default(),
            replacing: None,
            entry: None,
            // Made for every probe: fuzzing reaches the map too.
            map: true,
            debug: true,
            threads,
            stats: false,
        },
    )
}

const PAGE: u64 = 4096;

/// How the fuzz targets cut an object read without its debug sections:
/// pieces small enough that their inputs of a few KiB are planned.
pub const FUZZ_PIECES: Pieces = Pieces {
    head: 64,
    tail: 64,
    min_hole: 1,
};

/// `bytes` as a link without debug information reads them from a file
/// ([`debug_sections::read_in_pieces`], cut as `pieces` says), the DWARF
/// sections' bytes zeros; `None` when nothing was left out. An archive's
/// larger members are read on `threads`.
pub fn without_debug(bytes: &[u8], pieces: Pieces, threads: Threads) -> Option<Vec<u8>> {
    let mut room = vec![0; bytes.len() + 1];
    let got = debug_sections::read_in_pieces(&bytes, &mut room, &|_| {}, pieces, threads).ok()?;
    room.truncate(got.len.min(bytes.len()));
    (got.left_out > 0).then_some(room)
}

/// How linking `bytes` read without its debug sections ([`without_debug`],
/// cut as [`FUZZ_PIECES`]) differs from linking it whole, if it does: it
/// must give the same image, or the same error, since a link reads no
/// byte of what is left out.
pub fn differs_without_debug(name: &str, bytes: &[u8]) -> Option<String> {
    let holed = without_debug(bytes, FUZZ_PIECES, Threads::new(1))?;
    let whole = link_image(name, bytes, Host::MadeUp);
    differs(whole, link_image(name, &holed, Host::MadeUp))
}

/// [`differs_without_debug`] for an archive, every member linked
/// ([`link_archive`]): its members read as a link reads them, each object
/// without its DWARF, the larger ones on two threads however few their
/// bytes (so that the fuzzer's small archives are read as a large one is).
pub fn archive_differs_without_debug(name: &str, bytes: &[u8]) -> Option<String> {
    let split = Threads {
        count: Some(2),
        min_bytes_each: 1,
    };
    let holed = without_debug(bytes, FUZZ_PIECES, split)?;
    let whole = link_archive(name, bytes, Host::MadeUp);
    differs(whole, link_archive(name, &holed, Host::MadeUp))
}

/// How a link of holed bytes differs from the whole bytes' link, if it
/// does: the same image, or the same error, is no difference.
fn differs(
    whole: Result<LinkedModule, LinkError>,
    without: Result<LinkedModule, LinkError>,
) -> Option<String> {
    match (whole, without) {
        (Ok(whole), Ok(without)) if whole.image == without.image => None,
        (Err(whole), Err(without)) if whole.to_string() == without.to_string() => None,
        (Ok(_), Ok(_)) => Some("the images differ without debug sections".into()),
        (whole, without) => Some(format!(
            "whole: {:?}; without debug sections: {:?}",
            whole.map(|_| "linked"),
            without.map(|_| "linked")
        )),
    }
}

/// The first bytes every object of `format` that Solder links starts
/// with: ELF's `\x7fELF`, 64-bit, little-endian; Mach-O's `MH_MAGIC_64`
/// (little-endian) and CPU type x86-64; COFF's machine AMD64.
pub fn magic(format: ObjectFormat) -> &'static [u8] {
    match format {
        ObjectFormat::Elf => &[0x7f, b'E', b'L', b'F', 2, 1],
        ObjectFormat::MachO => &[0xcf, 0xfa, 0xed, 0xfe, 0x07, 0x00, 0x00, 0x01],
        ObjectFormat::Coff => &[0x64, 0x86],
    }
}

/// `bytes` with its first bytes overwritten by `format`'s [`magic`] (and
/// extended to hold it), or `None` when it already starts with it. A
/// fuzzer links both, so that a mutation that breaks the magic still
/// reaches the front-end behind it instead of stopping at sniffing.
pub fn with_magic(format: ObjectFormat, bytes: &[u8]) -> Option<Vec<u8>> {
    let magic = magic(format);
    if bytes.starts_with(magic) {
        return None;
    }
    let mut forced = magic.to_vec();
    forced.extend_from_slice(bytes.get(magic.len()..).unwrap_or_default());
    Some(forced)
}

/// What the made-up host says about `name`, the `index`-th name asked
/// about: the `atexit` family are runtime interposers reached through a
/// thunk passing the module's `__dso_handle` (as the real runtime's are),
/// a name of odd length is 16 bytes of data (so far data is copied), and
/// any other name is a function (reached through a stub).
pub fn host_symbol(name: &str, index: usize) -> SymbolInfo {
    let address = HOST_BASE + 16 * index as u64;
    let (kind, arg) = if name.ends_with("atexit") {
        (SymbolKind::InterposerPassDso, 1)
    } else if name.len() % 2 == 1 {
        (SymbolKind::Data, 0)
    } else {
        (SymbolKind::Function, 0)
    };
    SymbolInfo {
        kind,
        arg,
        address,
        size: if kind == SymbolKind::Data { 16 } else { 0 },
    }
}

/// The host's answer for every name `graph` leaves undefined, keyed as a
/// session's lookups are (the C name the executor is asked about).
fn made_up_host(graphs: &[LinkGraph<'_>]) -> HashMap<String, SymbolInfo> {
    let mut symbols = HashMap::default();
    for graph in graphs {
        for sym in &graph.symbols {
            if sym.definition != Definition::Undefined || sym.name.is_empty() {
                continue;
            }
            for host in host_names(graph.format, sym.name) {
                let index = symbols.len();
                symbols
                    .entry(host.to_string())
                    .or_insert_with(|| host_symbol(host, index));
            }
        }
    }
    symbols
}

/// An executor that is nowhere: the link stages its image (memory is not
/// writable in place) and may read host data, which reads as zeroes.
/// Thread-local blocks and the host's thread-local variables get made-up
/// places (as a loader would give them: module ids, and negative
/// thread-pointer offsets when fixed), so that a probe explores the
/// writing of thread-local references too; the host's are refused when
/// the host is empty. Anything else it might ask for is refused.
pub(crate) struct Nowhere {
    pub(crate) host: Host,
    /// The names the link asked about, in order.
    pub(crate) asked: Vec<String>,
}

/// The made-up module id of a probe's own thread-local block.
pub const THREAD_LOCAL_MODULE: u64 = 3;
/// The made-up thread-pointer offset of a probe's fixed block.
pub const THREAD_LOCAL_TP_OFFSET: i64 = -0x1000;
/// The made-up module id of the host's thread-local variables; each is at
/// offset 16 in its block and at [`HOST_THREAD_LOCAL_TP_OFFSET`] when fixed.
pub const HOST_THREAD_LOCAL_MODULE: u64 = 1;
pub const HOST_THREAD_LOCAL_TP_OFFSET: i64 = -0x80;

fn not_here() -> LinkError {
    LinkError::Memory("a probe links into a byte image only".into())
}

impl Executor for Nowhere {
    fn page_size(&self) -> u64 {
        PAGE
    }
    fn reserve(&mut self, _: u64, _: PlacementCode, _: u64) -> Result<u64, LinkError> {
        Err(not_here())
    }
    fn write(&mut self, _: u64, _: &[u8]) -> Result<(), LinkError> {
        Err(not_here())
    }
    fn protect(&mut self, _: u64, _: u64, _: Protection) -> Result<(), LinkError> {
        Err(not_here())
    }
    fn patch(&mut self, _: u64, _: &[u8], _: Protection) -> Result<(), LinkError> {
        Err(not_here())
    }
    fn release(&mut self, _: u64, _: u64) -> Result<(), LinkError> {
        Ok(())
    }
    fn load_thread_locals(
        &mut self,
        template: &TlsTemplate<'_>,
        fixed: bool,
    ) -> Result<ThreadLocals, LinkError> {
        // As a real executor would, refuse what no loader takes.
        solder_executor::tls_carrier::carrier_object(template, fixed).map_err(|e| {
            LinkError::ThreadLocal {
                what: "the load's thread-local block".into(),
                reason: e.to_string(),
            }
        })?;
        Ok(ThreadLocals {
            id: 1,
            module: THREAD_LOCAL_MODULE,
            tp_offset: if fixed { THREAD_LOCAL_TP_OFFSET } else { 0 },
        })
    }
    fn drop_thread_locals(&mut self, _: u64) -> Result<(), LinkError> {
        Ok(())
    }
    fn host_thread_local(&mut self, name: &str, fixed: bool) -> Result<HostThreadLocal, LinkError> {
        match self.host {
            Host::Empty => Err(LinkError::ThreadLocal {
                what: format!("host thread-local variable `{name}`"),
                reason: "undefined symbol (the probe's host is empty)".into(),
            }),
            Host::MadeUp => Ok(HostThreadLocal {
                module: HOST_THREAD_LOCAL_MODULE,
                offset: 16,
                tp_offset: fixed.then_some(HOST_THREAD_LOCAL_TP_OFFSET),
            }),
        }
    }
    fn read(&mut self, address: u64, size: u64) -> Result<Vec<u8>, LinkError> {
        // As a remote executor would, refuse what one read cannot carry.
        if size > u64::from(MAX_READ) {
            return Err(LinkError::Memory(format!(
                "cannot read {size:#x} bytes of host memory at {address:#x} at once"
            )));
        }
        Ok(vec![0; size as usize])
    }
    /// Every name the probe's host left out is missing (a made-up host
    /// answers every undefined name beforehand).
    fn lookup(&mut self, names: &[String]) -> Result<Vec<SymbolInfo>, LinkError> {
        self.asked.extend(names.iter().cloned());
        let missing = SymbolInfo {
            kind: solder_executor::protocol::SymbolKind::Missing,
            arg: 0,
            address: 0,
            size: 0,
        };
        Ok(vec![missing; names.len()])
    }
    fn link_library(&mut self, _: &str) -> Result<(), LinkError> {
        Err(not_here())
    }
    fn preload(&mut self, _: &str) -> Result<(), LinkError> {
        Err(not_here())
    }
    fn register_frames(&mut self, _: u64) -> Result<(), LinkError> {
        Err(not_here())
    }
    fn deregister_frames(&mut self, _: u64) -> Result<(), LinkError> {
        Err(not_here())
    }
    fn register_module(
        &mut self,
        _: u64,
        _: &Finalizers,
        _: Option<usize>,
    ) -> Result<(), LinkError> {
        Err(not_here())
    }
    fn set_args(&mut self, _: &[String]) -> Result<(), LinkError> {
        Err(not_here())
    }
    fn run_initializers(&mut self, _: &[u64], _: CallingConvention) -> Result<Outcome, LinkError> {
        Err(not_here())
    }
    fn call(
        &mut self,
        _: u64,
        _: [u64; 6],
        _: bool,
        _: CallingConvention,
        _: Option<Duration>,
    ) -> Result<Outcome, LinkError> {
        Err(not_here())
    }
    fn remove_module(&mut self, _: u64) -> Result<Outcome, LinkError> {
        Err(not_here())
    }
    fn end_modules(&mut self, _: &[u64]) -> Result<Outcome, LinkError> {
        Err(not_here())
    }
    fn describe(&self) -> String {
        "nowhere (a probe)".into()
    }
}
