//! End-to-end tests for every x86-64 ELF relocation kind Solder supports.
//!
//! Each test assembles a fixture from `fixtures/relocations/` with `cc -c`,
//! first proves with an independent reader (`support::relocation_types`)
//! that the object really contains the relocation kinds the test claims to
//! exercise, then loads it into its own [`Session`] and checks the values
//! the linker wrote: by calling small functions that compute a result
//! through the relocated field, by comparing with a reference computed
//! through a relocation the test trusts (a plain `lea sym(%rip)`), with
//! addresses from `dlsym`, and by reading instruction bytes.
//!
//! Covered kinds: R_X86_64_64, PC32, PLT32, 32, 32S, PC64, GOTPCREL,
//! GOTPCRELX, REX_GOTPCRELX, GOTPC32, GOTPC64, GOTOFF64, GOT64, SIZE32,
//! SIZE64, PC8, PC16, 8, 16 and NONE. Also covered: the exact edges of the
//! signed 32-bit PC-relative range (both directions), range errors of the
//! absolute narrow kinds (with the message naming relocation, object,
//! section, offset and symbol), absolute 32-bit addresses in a low slab and
//! their failure in a high one, GOT-load relaxation (mov -> lea, call * ->
//! addr32 call) for targets in the load versus host and other-module
//! targets, PLT stubs for far host functions, and every thread-local
//! kind (TPOFF32, GOTTPOFF, TLSGD, TLSLD, DTPOFF32, GOTPC32_TLSDESC,
//! TLSDESC_CALL, DTPMOD64, DTPOFF64, TPOFF64) with exact values, against
//! the load's own block and a host library's variables.
//!
//! Sessions that need a known slab address use `Placement::Fixed` with an
//! address of their own, so the tests can run in parallel threads.

mod support;

use std::ffi::{CString, c_char};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use object::elf::{self, RelocationType};
use solder_linker::{ObjectFile, Placement, Session, SessionConfig};
use support::{call, compile, object, relocation_types};

/// Serializes the tests whose sessions ask for the low 2 GiB without a
/// fixed address (`Placement::Low`, or `Placement::Auto` with absolute
/// 32-bit relocations): the slab tries one low address, which only one
/// session of the process can hold at a time.
static LOW_PLACEMENT: Mutex<()> = Mutex::new(());

/// Size of the slabs placed at fixed addresses.
const SMALL_SLAB: u64 = 16 << 20;

unsafe extern "C" {
    static environ: *const *const c_char;
}

// ---------------------------------------------------------------------------
// Helpers.

/// Assembles or compiles `fixtures/relocations/<source>`.
fn build(source: &str, flags: &[&str]) -> PathBuf {
    compile(&format!("relocations/{source}"), flags)
}

/// `-mrelax-relocations=yes` is Debian's default; say so explicitly so the
/// relaxable GOT kinds do not depend on how binutils was configured.
const RELAX: &str = "-Wa,-mrelax-relocations=yes";

fn reloc_name(r_type: RelocationType) -> String {
    let name = match r_type {
        elf::R_X86_64_NONE => "R_X86_64_NONE",
        elf::R_X86_64_64 => "R_X86_64_64",
        elf::R_X86_64_PC32 => "R_X86_64_PC32",
        elf::R_X86_64_PLT32 => "R_X86_64_PLT32",
        elf::R_X86_64_GOTPCREL => "R_X86_64_GOTPCREL",
        elf::R_X86_64_32 => "R_X86_64_32",
        elf::R_X86_64_32S => "R_X86_64_32S",
        elf::R_X86_64_16 => "R_X86_64_16",
        elf::R_X86_64_PC16 => "R_X86_64_PC16",
        elf::R_X86_64_8 => "R_X86_64_8",
        elf::R_X86_64_PC8 => "R_X86_64_PC8",
        elf::R_X86_64_TLSGD => "R_X86_64_TLSGD",
        elf::R_X86_64_TPOFF32 => "R_X86_64_TPOFF32",
        elf::R_X86_64_GOTTPOFF => "R_X86_64_GOTTPOFF",
        elf::R_X86_64_PC64 => "R_X86_64_PC64",
        elf::R_X86_64_GOTOFF64 => "R_X86_64_GOTOFF64",
        elf::R_X86_64_GOTPC32 => "R_X86_64_GOTPC32",
        elf::R_X86_64_GOT64 => "R_X86_64_GOT64",
        elf::R_X86_64_GOTPC64 => "R_X86_64_GOTPC64",
        elf::R_X86_64_SIZE32 => "R_X86_64_SIZE32",
        elf::R_X86_64_SIZE64 => "R_X86_64_SIZE64",
        elf::R_X86_64_GOTPCRELX => "R_X86_64_GOTPCRELX",
        elf::R_X86_64_REX_GOTPCRELX => "R_X86_64_REX_GOTPCRELX",
        other => return format!("type {}", other.0),
    };
    name.to_string()
}

/// Fails unless the object holds every one of `kinds` (and, with
/// `exactly`, nothing else), so a toolchain change that emits other
/// relocations fails loudly instead of passing vacuously.
fn assert_kinds(path: &Path, kinds: &[RelocationType], exactly: bool) {
    let found = relocation_types(path);
    let names = |list: &[RelocationType]| list.iter().map(|&t| reloc_name(t)).collect::<Vec<_>>();
    for &kind in kinds {
        assert!(
            found.contains(&kind),
            "{} should contain {}, has {:?}",
            path.display(),
            reloc_name(kind),
            names(&found)
        );
    }
    if exactly {
        let extra: Vec<_> = found
            .iter()
            .copied()
            .filter(|t| !kinds.contains(t))
            .collect();
        assert!(
            extra.is_empty(),
            "{} has unexpected relocations {:?}",
            path.display(),
            names(&extra)
        );
    }
}

/// One relocation as an independent reader sees it.
#[derive(Debug, Clone)]
struct RelocSite {
    section: String,
    offset: u64,
    r_type: RelocationType,
    symbol: String,
    addend: i64,
}

/// Every relocation of an object, read with the `object` crate directly.
fn reloc_sites(path: &Path) -> Vec<RelocSite> {
    use object::read::elf::{FileHeader, Rela, SectionHeader, Sym};
    let data = std::fs::read(path).unwrap();
    let header = elf::FileHeader64::<object::Endianness>::parse(&*data).unwrap();
    let endian = header.endian().unwrap();
    let sections = header.sections(endian, &*data).unwrap();
    let symbols = sections.symbols(endian, &*data, elf::SHT_SYMTAB).unwrap();
    let mut sites = Vec::new();
    for section in sections.iter() {
        if section.sh_type(endian) != elf::SHT_RELA {
            continue;
        }
        let target = sections
            .section(object::SectionIndex(section.sh_info(endian) as usize))
            .unwrap();
        let section_name = String::from_utf8_lossy(sections.section_name(endian, target).unwrap());
        let relas = section
            .data_as_array::<elf::Rela64<object::Endianness>, _>(endian, &*data)
            .unwrap();
        for rela in relas {
            let index = rela.r_sym(endian, false) as usize;
            let symbol = if index == 0 {
                String::new()
            } else {
                let sym = symbols.symbol(object::SymbolIndex(index)).unwrap();
                String::from_utf8_lossy(sym.name(endian, symbols.strings()).unwrap()).into_owned()
            };
            sites.push(RelocSite {
                section: section_name.to_string(),
                offset: rela.r_offset(endian),
                r_type: rela.r_type(endian, false),
                symbol,
                addend: rela.r_addend(endian),
            });
        }
    }
    sites
}

/// The one relocation of `r_type` against `symbol`.
fn reloc_site(path: &Path, r_type: RelocationType, symbol: &str) -> RelocSite {
    let matching: Vec<_> = reloc_sites(path)
        .into_iter()
        .filter(|s| s.r_type == r_type && s.symbol == symbol)
        .collect();
    assert_eq!(
        matching.len(),
        1,
        "{}: expected one {} against `{symbol}`: {matching:?}",
        path.display(),
        reloc_name(r_type)
    );
    matching[0].clone()
}

fn session_at(placement: Placement) -> Session {
    Session::new(SessionConfig {
        slab_size: SMALL_SLAB,
        placement,
        ..SessionConfig::default()
    })
    .unwrap_or_else(|e| panic!("cannot create a session with {placement:?}: {e}"))
}

fn load(session: &mut Session, paths: &[&Path]) {
    let objects: Vec<ObjectFile> = paths.iter().map(|p| object(p)).collect();
    if let Err(e) = session.load(&objects) {
        panic!("loading {paths:?} failed: {e}");
    }
}

/// Loads `paths`, which must fail, and returns the error message.
fn load_error(session: &mut Session, paths: &[&Path]) -> String {
    let objects: Vec<ObjectFile> = paths.iter().map(|p| object(p)).collect();
    match session.load(&objects) {
        Ok(id) => panic!("loading {paths:?} should fail, but it loaded as module {id}"),
        Err(e) => e.to_string(),
    }
}

fn assert_mentions(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(message.contains(part), "`{part}` missing from: {message}");
    }
}

/// The address of an exported symbol that is not a function (data, or a
/// NOTYPE label marking an instruction): lookups of functions return
/// indirection stubs, these return the definition itself.
fn address_of(session: &mut Session, name: &str) -> u64 {
    session
        .lookup(name)
        .unwrap()
        .unwrap_or_else(|| panic!("`{name}` is not exported"))
}

/// Reads `len` bytes of a live module (code pages are readable).
fn read_bytes(address: u64, len: usize) -> Vec<u8> {
    // SAFETY: callers pass addresses inside a loaded module of a live
    // session (code, read-only data or the GOT), all mapped readable.
    unsafe { std::slice::from_raw_parts(address as *const u8, len) }.to_vec()
}

fn read_u64(address: u64) -> u64 {
    u64::from_le_bytes(read_bytes(address, 8).try_into().unwrap())
}

fn read_i32(address: u64) -> i32 {
    i32::from_le_bytes(read_bytes(address, 4).try_into().unwrap())
}

/// Where a host symbol is, from the dynamic linker.
fn dlsym(name: &str) -> u64 {
    let name = CString::new(name).unwrap();
    // SAFETY: RTLD_DEFAULT is a valid pseudo-handle; `name` is NUL-terminated.
    let address = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    assert!(!address.is_null(), "dlsym({name:?}) found nothing");
    address as u64
}

/// The process's `environ` as Rust sees it.
fn environ_now() -> u64 {
    // SAFETY: reading the pointer value of libc's `environ`; no test of this
    // file changes the environment.
    unsafe { environ as u64 }
}

/// The target of a `call rel32` / `jmp rel32` at `insn` (opcode `opcode`).
fn rel32_target(insn: u64, opcode: u8) -> u64 {
    assert_eq!(
        read_bytes(insn, 1)[0],
        opcode,
        "expected opcode {opcode:#x} at {insn:#x}"
    );
    (insn as i64 + 5 + i64::from(read_i32(insn + 1))) as u64
}

/// Follows a stub `jmp *slot(%rip)` and returns the slot's address.
fn stub_slot(stub: u64) -> u64 {
    assert_eq!(
        read_bytes(stub, 2),
        [0xff, 0x25],
        "expected `jmp *disp(%rip)` at {stub:#x}"
    );
    (stub as i64 + 6 + i64::from(read_i32(stub + 2))) as u64
}

fn in_slab(session: &Session, address: u64) -> bool {
    let (start, end) = session.slab_range().expect("a slab after a load");
    (start..end).contains(&address)
}

// ---------------------------------------------------------------------------
// Data relocations: 64, PC32, PC64, PC16, PC8, SIZE32, SIZE64, NONE.

#[test]
fn data_relocations_compute_the_target_address() {
    let obj = build("data_refs.s", &[]);
    assert_kinds(
        &obj,
        &[
            elf::R_X86_64_64,
            elf::R_X86_64_PC32,
            elf::R_X86_64_PC64,
            elf::R_X86_64_PC16,
            elf::R_X86_64_PC8,
            elf::R_X86_64_SIZE32,
            elf::R_X86_64_SIZE64,
            elf::R_X86_64_NONE,
        ],
        true,
    );
    let mut s = support::session();
    load(&mut s, &[&obj]);
    let target = address_of(&mut s, "target");
    assert!(in_slab(&s, target));
    assert_eq!(call(&mut s, "ref_target", &[]), target, "PC32 in code");
    assert_eq!(call(&mut s, "abs64_target", &[]), target, "R_X86_64_64");
    assert_eq!(
        call(&mut s, "abs64_target_plus_5", &[]),
        target + 5,
        "R_X86_64_64 + 5"
    );
    assert_eq!(call(&mut s, "pc32_target", &[]), target, "PC32 in data");
    assert_eq!(
        call(&mut s, "pc32_target_plus_12", &[]),
        target + 12,
        "PC32 + 12"
    );
    assert_eq!(call(&mut s, "pc64_target", &[]), target, "R_X86_64_PC64");
    assert_eq!(call(&mut s, "pc16_target", &[]), target, "R_X86_64_PC16");
    assert_eq!(call(&mut s, "pc8_target", &[]), target, "R_X86_64_PC8");
    // SAFETY: `target` is 24 bytes of writable data in the live module.
    let words = unsafe { std::slice::from_raw_parts(target as *const u64, 3) };
    assert_eq!(words, [1, 2, 3], "the target's contents were copied");
}

#[test]
fn size_relocations_give_the_symbol_size() {
    let obj = build("data_refs.s", &[]);
    assert_kinds(&obj, &[elf::R_X86_64_SIZE32, elf::R_X86_64_SIZE64], false);
    assert_eq!(reloc_site(&obj, elf::R_X86_64_SIZE64, "environ").addend, 0);
    let mut s = support::session();
    load(&mut s, &[&obj]);
    // `target` is declared `.size target, 24`.
    assert_eq!(call(&mut s, "size32_code", &[]), 24, "SIZE32 immediate");
    assert_eq!(
        call(&mut s, "size32_plus_3", &[]),
        27,
        "SIZE32 with addend 3"
    );
    assert_eq!(call(&mut s, "size64_data", &[]), 24, "SIZE64");
    // The host's `environ` is a pointer.
    assert_eq!(
        call(&mut s, "size64_host", &[]),
        std::mem::size_of::<*const *const c_char>() as u64,
        "SIZE64 of a host symbol"
    );
}

#[test]
fn none_relocation_patches_nothing() {
    let obj = build("data_refs.s", &[]);
    assert_kinds(&obj, &[elf::R_X86_64_NONE], false);
    let none = reloc_site(&obj, elf::R_X86_64_NONE, "target");
    assert_eq!(none.section, ".data");
    let mut s = support::session();
    load(&mut s, &[&obj]);
    assert_eq!(call(&mut s, "none_word", &[]), 0x1122_3344_5566_7788);
}

/// Relocations against symbol index 0 (STN_UNDEF) compute with S = 0:
/// `.reloc` without a symbol and references to an absolute symbol of value
/// 0 both produce them.
#[test]
fn relocations_against_the_null_symbol_use_zero() {
    let obj = build("null_symbol.s", &[]);
    assert_kinds(
        &obj,
        &[elf::R_X86_64_NONE, elf::R_X86_64_64, elf::R_X86_64_PC32],
        true,
    );
    assert_eq!(reloc_site(&obj, elf::R_X86_64_NONE, "").section, ".data");
    assert_eq!(reloc_site(&obj, elf::R_X86_64_64, "").addend, 5);
    let mut s = support::session();
    load(&mut s, &[&obj]);
    assert_eq!(call(&mut s, "none_null_value", &[]), 0x0123_4567_89ab_cdef);
    assert_eq!(call(&mut s, "zero_plus_5", &[]), 5);
}

// ---------------------------------------------------------------------------
// PLT32 and far host functions.

#[test]
fn plt32_calls_reach_local_and_host_functions() {
    let obj = build("plt.s", &[]);
    assert_kinds(&obj, &[elf::R_X86_64_PLT32, elf::R_X86_64_64], false);
    assert_eq!(
        reloc_site(&obj, elf::R_X86_64_PLT32, "add_one").section,
        ".text"
    );
    let mut s = support::session();
    load(&mut s, &[&obj]);
    assert_eq!(call(&mut s, "plt_local", &[40]), 42);
    // A call within the load goes straight to the definition.
    let call_insn = address_of(&mut s, "plt_local_call");
    let add_one = address_of(&mut s, "add_one_entry");
    assert_eq!(rel32_target(call_insn, 0xe8), add_one);

    let text = CString::new("hello, solder").unwrap();
    let arg = text.as_ptr() as u64;
    assert_eq!(call(&mut s, "plt_strlen", &[arg]), 13);
    assert_eq!(call(&mut s, "tail_strlen", &[arg]), 13);
    // Reaching strlen directly or through a stub whose slot holds it.
    let strlen = dlsym("strlen");
    let target = rel32_target(address_of(&mut s, "plt_strlen_call"), 0xe8);
    if target != strlen {
        assert!(in_slab(&s, target), "call lands at {target:#x}");
        assert_eq!(read_u64(stub_slot(target)), strlen);
    }
    // R_X86_64_64 function pointers: the host's address, the definition.
    assert_eq!(call(&mut s, "strlen_pointer", &[]), strlen);
    assert_eq!(call(&mut s, "add_one_pointer", &[]), add_one);
}

#[test]
fn plt32_to_a_far_host_function_goes_through_a_stub() {
    // A slab in the low 2 GiB is far from libc (mapped near 0x7f...).
    let mut s = session_at(Placement::Fixed(0x5100_0000));
    let obj = build("plt.s", &[]);
    assert_kinds(&obj, &[elf::R_X86_64_PLT32], false);
    load(&mut s, &[&obj]);
    let strlen = dlsym("strlen");
    assert!(
        strlen.abs_diff(0x5100_0000) > 1 << 32,
        "libc at {strlen:#x}"
    );

    let text = CString::new("far away").unwrap();
    let arg = text.as_ptr() as u64;
    assert_eq!(call(&mut s, "plt_strlen", &[arg]), 8);
    assert_eq!(call(&mut s, "tail_strlen", &[arg]), 8);
    let stub = rel32_target(address_of(&mut s, "plt_strlen_call"), 0xe8);
    assert!(in_slab(&s, stub), "the call lands in the slab: {stub:#x}");
    let slot = stub_slot(stub);
    assert!(in_slab(&s, slot));
    assert_eq!(read_u64(slot), strlen, "the stub jumps to the real strlen");
    // The tail call (jmp rel32) shares the stub.
    let tail = rel32_target(address_of(&mut s, "tail_strlen_jmp"), 0xe9);
    assert_eq!(tail, stub);
    // The local call is still direct.
    let local = rel32_target(address_of(&mut s, "plt_local_call"), 0xe8);
    assert_eq!(local, address_of(&mut s, "add_one_entry"));
    assert_eq!(call(&mut s, "plt_local", &[1]), 3);
    // A 64-bit pointer needs no stub.
    assert_eq!(call(&mut s, "strlen_pointer", &[]), strlen);
}

// ---------------------------------------------------------------------------
// GOT kinds: GOTPC32, GOTPC64, GOTOFF64, GOT64, GOTPCREL, PLTOFF64.

#[test]
fn got_base_and_offset_relocations_agree() {
    let obj = build("got.s", &[]);
    assert_kinds(
        &obj,
        &[
            elf::R_X86_64_GOTPC32,
            elf::R_X86_64_GOTPC64,
            elf::R_X86_64_GOTOFF64,
            elf::R_X86_64_GOT64,
            elf::R_X86_64_GOTPCREL,
            elf::R_X86_64_PC32,
        ],
        true,
    );
    let mut s = support::session();
    load(&mut s, &[&obj]);
    let target = address_of(&mut s, "got_target");

    let got = call(&mut s, "got_base_pc32", &[]);
    assert!(in_slab(&s, got), "GOT at {got:#x}");
    assert_eq!(got % 8, 0, "GOT at {got:#x}");
    assert_eq!(
        call(&mut s, "got_base_pc64", &[]),
        got,
        "GOTPC64 (large model)"
    );
    assert_eq!(
        call(&mut s, "got_base_pc64_movabs", &[]),
        got,
        "GOTPC64 (movabs)"
    );

    assert_eq!(call(&mut s, "gotoff_target", &[]), target, "GOT + GOTOFF64");
    let offset = call(&mut s, "got64_offset", &[]);
    assert_eq!(offset % 8, 0, "GOT64 {offset:#x}");
    assert_eq!(call(&mut s, "got64_target", &[]), target, "*(GOT + GOT64)");
    assert_eq!(read_u64(got + offset), target);
    // GOTPCREL names the same entry as GOT64.
    assert_eq!(
        call(&mut s, "got_entry_address", &[]),
        got + offset,
        "GOTPCREL"
    );
    assert_eq!(
        call(&mut s, "gotpcrel_data_target", &[]),
        target,
        "GOTPCREL in data"
    );
    // Non-zero addends: G + A and S + A - GOT.
    for (r_type, addend) in [(elf::R_X86_64_GOT64, 24), (elf::R_X86_64_GOTOFF64, 8)] {
        let with_addend = reloc_sites(&obj)
            .into_iter()
            .filter(|r| r.r_type == r_type && r.symbol == "got_target" && r.addend == addend)
            .count();
        assert_eq!(
            with_addend,
            1,
            "{} + {addend} in {}",
            reloc_name(r_type),
            obj.display()
        );
    }
    assert_eq!(
        call(&mut s, "got64_offset_plus", &[]),
        offset + 24,
        "GOT64 + 24"
    );
    assert_eq!(
        call(&mut s, "gotoff_target_plus", &[]),
        target + 8,
        "GOT + GOTOFF64(+8)"
    );
    // A host symbol's entry holds the host address; GOTOFF64 reaches it
    // from the GOT base however far it is.
    assert_eq!(call(&mut s, "got64_environ", &[]), dlsym("environ"));
    assert_eq!(call(&mut s, "gotoff_environ", &[]), dlsym("environ"));
}

/// GCC's large code model calls a global function through
/// R_X86_64_PLTOFF64 (its offset from the GOT, added to the GOT's address
/// that R_X86_64_GOTPC64 gives): the host's `strlen` and another module's
/// `lib_twice` are reached through the register; a function of the object
/// itself through R_X86_64_GOTOFF64.
#[test]
fn large_model_calls_reach_host_and_module_functions() {
    let obj = support::compile_with(
        "gcc",
        "relocations/large_model.c",
        &["-O2", "-mcmodel=large"],
    );
    reloc_site(&obj, elf::R_X86_64_PLTOFF64, "strlen");
    reloc_site(&obj, elf::R_X86_64_PLTOFF64, "lib_twice");
    reloc_site(&obj, elf::R_X86_64_GOTOFF64, "large_add_one");
    let lib = compile("conformance/linking/lib.c", &["-O2"]);
    let mut s = support::session();
    load(&mut s, &[&lib]);
    load(&mut s, &[&obj]);
    let text = CString::new("hello").unwrap();
    // strlen("hello") * 100 + large_add_one(0).
    assert_eq!(call(&mut s, "large_calls", &[text.as_ptr() as u64]), 501);
    assert_eq!(call(&mut s, "large_calls_module", &[20]), 41);
}

// ---------------------------------------------------------------------------
// GOTPCRELX / REX_GOTPCRELX relaxation.

#[test]
fn relaxable_got_loads_of_local_targets_become_lea() {
    let obj = build("gotpcrelx.s", &[RELAX]);
    assert_kinds(
        &obj,
        &[elf::R_X86_64_GOTPCRELX, elf::R_X86_64_REX_GOTPCRELX],
        true,
    );
    let mut s = support::session();
    load(&mut s, &[&obj]);
    let data = address_of(&mut s, "gx_data");

    assert_eq!(call(&mut s, "rex_local", &[]), data);
    let insn = address_of(&mut s, "rex_local_insn");
    assert_eq!(
        read_bytes(insn, 3),
        [0x48, 0x8d, 0x05],
        "lea gx_data(%rip), %rax"
    );
    assert_eq!(
        (insn as i64 + 7 + i64::from(read_i32(insn + 3))) as u64,
        data
    );

    assert_eq!(call(&mut s, "rex_local_r12", &[]), data);
    let insn = address_of(&mut s, "rex_local_r12_insn");
    assert_eq!(
        read_bytes(insn, 3),
        [0x4c, 0x8d, 0x25],
        "lea gx_data(%rip), %r12"
    );

    assert_eq!(call(&mut s, "mov32_local", &[]) as u32, data as u32);
    let insn = address_of(&mut s, "mov32_local_insn");
    assert_eq!(read_bytes(insn, 2), [0x8d, 0x05], "lea gx_data(%rip), %eax");

    assert_eq!(call(&mut s, "call_local", &[]), 42);
    let insn = address_of(&mut s, "call_local_insn");
    assert_eq!(read_bytes(insn, 2), [0x67, 0xe8], "addr32 call gx_func");
    let callee = (insn as i64 + 6 + i64::from(read_i32(insn + 2))) as u64;
    assert_eq!(
        callee,
        address_of(&mut s, "gx_func_entry"),
        "straight to gx_func"
    );
}

#[test]
fn relaxable_got_loads_of_host_targets_stay_got_loads() {
    let obj = build("gotpcrelx.s", &[RELAX]);
    assert_kinds(
        &obj,
        &[elf::R_X86_64_GOTPCRELX, elf::R_X86_64_REX_GOTPCRELX],
        true,
    );
    assert_eq!(
        reloc_site(&obj, elf::R_X86_64_GOTPCRELX, "strlen").section,
        ".text"
    );
    let mut s = support::session();
    load(&mut s, &[&obj]);

    let environ_at = dlsym("environ");
    assert_eq!(call(&mut s, "rex_host", &[]), environ_at);
    let insn = address_of(&mut s, "rex_host_insn");
    assert_eq!(
        read_bytes(insn, 3),
        [0x48, 0x8b, 0x05],
        "still mov (%rip), %rax"
    );
    let entry = (insn as i64 + 7 + i64::from(read_i32(insn + 3))) as u64;
    assert!(in_slab(&s, entry), "GOT entry at {entry:#x}");
    assert_eq!(read_u64(entry), environ_at);
    assert_eq!(call(&mut s, "environ_value", &[]), environ_now());

    let text = CString::new("through the GOT").unwrap();
    assert_eq!(call(&mut s, "call_host", &[text.as_ptr() as u64]), 15);
    let insn = address_of(&mut s, "call_host_insn");
    assert_eq!(read_bytes(insn, 2), [0xff, 0x15], "still call *(%rip)");
    let entry = (insn as i64 + 6 + i64::from(read_i32(insn + 2))) as u64;
    assert_eq!(read_u64(entry), dlsym("strlen"));
}

#[test]
fn relaxable_got_load_of_another_modules_data_stays_a_got_load() {
    let export = build("gotpcrelx_export.s", &[]);
    let import = build("gotpcrelx_import.s", &[RELAX]);
    assert_kinds(&import, &[elf::R_X86_64_REX_GOTPCRELX], true);
    let mut s = support::session();
    load(&mut s, &[&export]);
    load(&mut s, &[&import]);
    let shared = address_of(&mut s, "shared_value");
    assert_eq!(read_u64(shared), 99);
    assert_eq!(call(&mut s, "import_shared", &[]), shared);
    let insn = address_of(&mut s, "import_shared_insn");
    assert_eq!(read_bytes(insn, 3), [0x48, 0x8b, 0x05]);
}

#[test]
fn plain_gotpcrel_is_never_relaxed() {
    let obj = build("gotpcrelx.s", &["-Wa,-mrelax-relocations=no"]);
    assert_kinds(&obj, &[elf::R_X86_64_GOTPCREL], true);
    let mut s = support::session();
    load(&mut s, &[&obj]);
    let data = address_of(&mut s, "gx_data");
    assert_eq!(call(&mut s, "rex_local", &[]), data);
    assert_eq!(
        read_bytes(address_of(&mut s, "rex_local_insn"), 3),
        [0x48, 0x8b, 0x05]
    );
    assert_eq!(call(&mut s, "rex_local_r12", &[]), data);
    assert_eq!(
        read_bytes(address_of(&mut s, "rex_local_r12_insn"), 3),
        [0x4c, 0x8b, 0x25]
    );
    assert_eq!(call(&mut s, "mov32_local", &[]) as u32, data as u32);
    assert_eq!(
        read_bytes(address_of(&mut s, "mov32_local_insn"), 2),
        [0x8b, 0x05]
    );
    assert_eq!(call(&mut s, "call_local", &[]), 42);
    assert_eq!(
        read_bytes(address_of(&mut s, "call_local_insn"), 2),
        [0xff, 0x15]
    );
    assert_eq!(call(&mut s, "environ_value", &[]), environ_now());
}

// ---------------------------------------------------------------------------
// Absolute narrow kinds: 32, 32S, 16, 8.

#[test]
fn narrow_absolute_relocations_of_absolute_symbols() {
    let refs = build("abs_narrow.s", &[]);
    let values = build("abs_values.s", &[]);
    assert_kinds(
        &refs,
        &[
            elf::R_X86_64_32,
            elf::R_X86_64_32S,
            elf::R_X86_64_16,
            elf::R_X86_64_8,
            elf::R_X86_64_PC32,
        ],
        true,
    );
    assert_kinds(&values, &[], true);
    // Absolute symbols fit or not wherever the slab is: use a high one.
    let mut s = session_at(Placement::Fixed(0x3e00_0000_0000));
    load(&mut s, &[&refs, &values]);
    assert_eq!(call(&mut s, "get_u32", &[]), 0xdead_beef, "R_X86_64_32");
    assert_eq!(
        call(&mut s, "get_s32", &[]) as i64,
        -0x1234_5678,
        "R_X86_64_32S"
    );
    assert_eq!(call(&mut s, "get_u16", &[]), 0xbeef, "R_X86_64_16");
    assert_eq!(
        call(&mut s, "get_s16", &[]) as i64,
        -2,
        "R_X86_64_16 negative"
    );
    assert_eq!(call(&mut s, "get_u8", &[]), 0xa5, "R_X86_64_8");
    assert_eq!(
        call(&mut s, "get_s8", &[]) as i64,
        -128,
        "R_X86_64_8 negative"
    );
}

/// Loads abs_narrow.s with one absolute value replaced by `define`
/// (`NAME=VALUE`), which must fail; checks the message names the
/// relocation, the object, the section, the offset and the symbol.
fn narrow_out_of_range(define: &str, r_type: RelocationType, symbol: &str, width: &str) {
    let refs = build("abs_narrow.s", &[]);
    let values = build("abs_values.s", &[&format!("-Wa,--defsym,{define}")]);
    assert_kinds(&refs, &[r_type], false);
    let site = reloc_site(&refs, r_type, symbol);
    let mut s = support::session();
    let message = load_error(&mut s, &[&refs, &values]);
    assert_mentions(
        &message,
        &[
            &format!(
                "{} section {} at offset {:#x}",
                refs.display(),
                site.section,
                site.offset
            ),
            &reloc_name(r_type),
            &format!("`{symbol}`"),
            "out of range",
            width,
        ],
    );
    assert!(s.modules().is_empty());
}

#[test]
fn narrow_absolute_relocations_check_their_range() {
    let _low = LOW_PLACEMENT.lock().unwrap_or_else(|e| e.into_inner());
    // Each one past the last value that fits.
    narrow_out_of_range(
        "U32=0x100000000",
        elf::R_X86_64_32,
        "abs_u32",
        "unsigned 32 bits",
    );
    narrow_out_of_range("U32=-1", elf::R_X86_64_32, "abs_u32", "unsigned 32 bits");
    narrow_out_of_range(
        "S32=0x80000000",
        elf::R_X86_64_32S,
        "abs_s32",
        "signed 32 bits",
    );
    narrow_out_of_range(
        "S32=-0x80000001",
        elf::R_X86_64_32S,
        "abs_s32",
        "signed 32 bits",
    );
    narrow_out_of_range("U16=0x10000", elf::R_X86_64_16, "abs_u16", "16 bits");
    narrow_out_of_range("S16=-0x8001", elf::R_X86_64_16, "abs_s16", "16 bits");
    narrow_out_of_range("U8=0x100", elf::R_X86_64_8, "abs_u8", "8 bits");
    narrow_out_of_range("S8=-129", elf::R_X86_64_8, "abs_s8", "8 bits");
}

#[test]
fn narrow_absolute_relocations_at_their_limits() {
    let _low = LOW_PLACEMENT.lock().unwrap_or_else(|e| e.into_inner());
    let refs = build("abs_narrow.s", &[]);
    let values = build(
        "abs_values.s",
        &[
            "-Wa,--defsym,U32=0xffffffff",
            "-Wa,--defsym,S32=-0x80000000",
            "-Wa,--defsym,U16=0xffff",
            "-Wa,--defsym,S16=-0x8000",
            "-Wa,--defsym,U8=0xff",
            "-Wa,--defsym,S8=-0x80",
        ],
    );
    assert_kinds(
        &refs,
        &[
            elf::R_X86_64_32,
            elf::R_X86_64_32S,
            elf::R_X86_64_16,
            elf::R_X86_64_8,
        ],
        false,
    );
    let mut s = support::session();
    load(&mut s, &[&refs, &values]);
    assert_eq!(call(&mut s, "get_u32", &[]), 0xffff_ffff);
    assert_eq!(call(&mut s, "get_s32", &[]) as i64, -0x8000_0000);
    assert_eq!(call(&mut s, "get_u16", &[]), 0xffff);
    assert_eq!(call(&mut s, "get_s16", &[]) as i64, -0x8000);
    assert_eq!(call(&mut s, "get_u8", &[]), 0xff);
    assert_eq!(call(&mut s, "get_s8", &[]) as i64, -0x80);
}

#[test]
fn absolute_32_bit_addresses_link_in_a_low_slab() {
    let obj = build("abs32.s", &[]);
    assert_kinds(
        &obj,
        &[elf::R_X86_64_32, elf::R_X86_64_32S, elf::R_X86_64_PC32],
        true,
    );
    let mut s = session_at(Placement::Fixed(0x5200_0000));
    load(&mut s, &[&obj]);
    let target = address_of(&mut s, "low_target");
    assert!(target < 1 << 31, "{target:#x}");
    assert_eq!(call(&mut s, "ref_low_target", &[]), target);
    assert_eq!(call(&mut s, "abs32_imm", &[]), target, "R_X86_64_32");
    assert_eq!(call(&mut s, "abs32s_imm", &[]), target, "R_X86_64_32S");
    assert_eq!(
        call(&mut s, "abs32s_load", &[]),
        0x5eed,
        "R_X86_64_32S memory operand"
    );
    assert_eq!(
        call(&mut s, "abs32_word", &[]),
        target + 8,
        "R_X86_64_32 + 8"
    );
}

#[test]
fn absolute_32_bit_addresses_choose_a_low_slab() {
    let _low = LOW_PLACEMENT.lock().unwrap_or_else(|e| e.into_inner());
    let obj = build("abs32.s", &[]);
    assert_kinds(&obj, &[elf::R_X86_64_32, elf::R_X86_64_32S], false);
    for placement in [Placement::Auto, Placement::Low] {
        let mut s = Session::new(SessionConfig {
            slab_size: 64 << 20,
            placement,
            ..SessionConfig::default()
        })
        .unwrap();
        load(&mut s, &[&obj]);
        let (_, end) = s.slab_range().unwrap();
        assert!(end <= 1 << 31, "{placement:?}: slab ends at {end:#x}");
        let target = address_of(&mut s, "low_target");
        assert_eq!(call(&mut s, "abs32_imm", &[]), target, "{placement:?}");
        assert_eq!(call(&mut s, "abs32s_imm", &[]), target, "{placement:?}");
        assert_eq!(call(&mut s, "abs32_word", &[]), target + 8, "{placement:?}");
    }
}

/// Two sessions at once that both ask for the low 2 GiB both get it.
#[test]
fn two_low_sessions_both_get_low_slabs() {
    let _low = LOW_PLACEMENT.lock().unwrap_or_else(|e| e.into_inner());
    let obj = build("abs32.s", &[]);
    assert_kinds(&obj, &[elf::R_X86_64_32, elf::R_X86_64_32S], false);
    let mut first = session_at(Placement::Low);
    let mut second = session_at(Placement::Low);
    for s in [&mut first, &mut second] {
        load(s, &[&obj]);
        let (_, end) = s.slab_range().unwrap();
        assert!(end <= 1 << 31, "slab ends at {end:#x}");
        let target = address_of(s, "low_target");
        assert_eq!(call(s, "abs32_imm", &[]), target);
    }
}

#[test]
fn absolute_32_bit_addresses_fail_in_a_high_slab() {
    let obj = build("abs32.s", &[]);
    assert_kinds(&obj, &[elf::R_X86_64_32, elf::R_X86_64_32S], false);
    // The first absolute reference in the load: movl $low_target, %eax.
    let site = reloc_sites(&obj)
        .into_iter()
        .find(|r| r.r_type == elf::R_X86_64_32 && r.section == ".text")
        .expect("an R_X86_64_32 in .text");
    assert_eq!(site.symbol, "low_target");
    let mut s = session_at(Placement::Fixed(0x3e10_0000_0000));
    let message = load_error(&mut s, &[&obj]);
    assert_mentions(
        &message,
        &[
            &format!(
                "{} section .text at offset {:#x}",
                obj.display(),
                site.offset
            ),
            "R_X86_64_32",
            "`low_target`",
            "out of range",
            "unsigned 32 bits",
            "low 2 GiB",
        ],
    );
    assert!(s.modules().is_empty());
}

// ---------------------------------------------------------------------------
// The edges of the signed 32-bit PC-relative range.

/// The outcome of [`pc32_to`]: the session, what `pc32_far` returned (or
/// the load error), the object and its relocation.
type Pc32Probe = (Session, Result<u64, String>, PathBuf, RelocSite);

/// Loads pc32_boundary.s into a fresh slab at `base`, with `far` placed so
/// that the relocated field's value S + A - P is exactly `distance`.
fn pc32_to(base: u64, distance: i64) -> Pc32Probe {
    // The field's offset and addend, read independently of the linker. The
    // object's .text is the first code of the first load of a fresh slab,
    // so it starts at the slab's base.
    // (FAR=0 would make the assembler refer to symbol 0 instead of `far`.)
    let probe = build("pc32_boundary.s", &["-Wa,--defsym,FAR=0x1000"]);
    let site = reloc_site(&probe, elf::R_X86_64_PC32, "far");
    assert_eq!(site.section, ".text");
    let place = base + site.offset;
    let far = (place as i64 - site.addend + distance) as u64;
    let obj = build("pc32_boundary.s", &[&format!("-Wa,--defsym,FAR={far:#x}")]);
    assert_kinds(&obj, &[elf::R_X86_64_PC32], true);
    let mut s = session_at(Placement::Fixed(base));
    let result = match s.load(&[object(&obj)]) {
        Ok(_) => {
            assert_eq!(s.slab_range().unwrap().0, base);
            Ok(call(&mut s, "pc32_far", &[]))
        }
        Err(e) => Err(e.to_string()),
    };
    (s, result, obj, site)
}

#[test]
fn pc32_reaches_exactly_the_signed_32_bit_range() {
    let base = 0x6000_0000;
    let (_s, result, _, site) = pc32_to(base, 0x7fff_ffff);
    let expected = (base + site.offset) as i64 - site.addend + 0x7fff_ffff;
    assert_eq!(
        result,
        Ok(expected as u64),
        "the last reachable byte forward"
    );

    let base = 0x5_0000_0000;
    let (_s, result, _, site) = pc32_to(base, -0x8000_0000);
    let expected = (base + site.offset) as i64 - site.addend - 0x8000_0000;
    assert_eq!(
        result,
        Ok(expected as u64),
        "the last reachable byte backward"
    );
}

#[test]
fn pc32_one_byte_past_the_range_fails() {
    for (base, distance) in [
        (0x6100_0000u64, 0x8000_0000i64),
        (0x5_0100_0000, -0x8000_0001),
    ] {
        let (s, result, obj, site) = pc32_to(base, distance);
        let message = result.expect_err("one byte too far must not link");
        assert_mentions(
            &message,
            &[
                "R_X86_64_PC32",
                "`far`",
                "out of range",
                "signed 32 bits",
                &format!(
                    "{} section .text at offset {:#x}",
                    obj.display(),
                    site.offset
                ),
            ],
        );
        assert!(s.modules().is_empty());
    }
}

// ---------------------------------------------------------------------------
// Thread-local storage.

/// The thread pointer of the calling thread (`%fs:0` holds it).
fn thread_pointer() -> u64 {
    solder_executor::sys::tls::thread_pointer()
}

/// Every TLS kind against the load's own block, with exact values: the
/// block is fixed (the load has local-exec and initial-exec accesses), so
/// every variable has one thread-pointer offset, which the GOT entry, the
/// descriptor and the data word hold; the GOT pairs hold the block's
/// module id and the variable's offset in the block (0 for local
/// dynamic); `__tls_get_addr` through the general-dynamic pair reaches the
/// same address as the thread-pointer offset; and the offsets are where
/// the template put the variables (tv at 0, tv2 at 8, tz at 16).
#[test]
fn every_tls_kind_writes_exact_values() {
    let obj = build("tls_models.s", &[]);
    assert_kinds(
        &obj,
        &[
            elf::R_X86_64_TPOFF32,
            elf::R_X86_64_GOTTPOFF,
            elf::R_X86_64_TLSGD,
            elf::R_X86_64_TLSLD,
            elf::R_X86_64_DTPOFF32,
            elf::R_X86_64_GOTPC32_TLSDESC,
            elf::R_X86_64_TLSDESC_CALL,
            elf::R_X86_64_DTPMOD64,
            elf::R_X86_64_DTPOFF64,
            elf::R_X86_64_TPOFF64,
            elf::R_X86_64_PLT32,
        ],
        true,
    );
    let mut session = session_at(Placement::Auto);
    load(&mut session, &[&obj]);
    let rerun = "rerun: cargo test --workspace --test relocations -- every_tls_kind_writes_exact_values --exact";
    // Local exec reads the variable itself: its offset is right.
    assert_eq!(
        call(&mut session, "le_read", &[]),
        0x2222,
        "TPOFF32\n{rerun}"
    );
    let tv2_tp = call(&mut session, "ie_offset", &[]) as i64;
    assert!(
        tv2_tp < 0,
        "a static block lies below the thread pointer\n{rerun}"
    );
    let tv2 = thread_pointer().wrapping_add_signed(tv2_tp);
    assert_eq!(read_u64(tv2), 0x2222, "GOTTPOFF\n{rerun}");
    let block = tv2 - 8;
    assert_eq!(read_u64(block), 0x1111, "tv at offset 0\n{rerun}");
    // General dynamic, through the loader: tz at block offset 16.
    assert_eq!(
        call(&mut session, "gd_address", &[]),
        block + 16,
        "TLSGD\n{rerun}"
    );
    let gd_pair = call(&mut session, "gd_pair", &[]);
    let module = read_u64(gd_pair);
    assert_ne!(module, 0, "a module id\n{rerun}");
    assert_eq!(read_u64(gd_pair + 8), 16, "TLSGD pair offset\n{rerun}");
    let ld_pair = call(&mut session, "ld_pair", &[]);
    assert_eq!(
        (read_u64(ld_pair), read_u64(ld_pair + 8)),
        (module, 0),
        "TLSLD pair\n{rerun}"
    );
    assert_eq!(
        call(&mut session, "ld_pair_again", &[]),
        ld_pair,
        "one local-dynamic pair per load\n{rerun}"
    );
    assert_ne!(
        ld_pair, gd_pair,
        "a general-dynamic pair is the variable's\n{rerun}"
    );
    assert_eq!(call(&mut session, "dtpoff32", &[]), 16, "DTPOFF32\n{rerun}");
    assert_eq!(
        call(&mut session, "desc_offset", &[]) as i64,
        tv2_tp,
        "GOTPC32_TLSDESC + TLSDESC_CALL\n{rerun}"
    );
    let desc = call(&mut session, "desc_pair", &[]);
    assert_eq!(
        read_u64(desc + 8) as i64,
        tv2_tp,
        "descriptor argument\n{rerun}"
    );
    // The resolver: `mov 8(%rax), %rax; ret`, in the module's code.
    assert_eq!(
        read_bytes(read_u64(desc), 5),
        [0x48, 0x8b, 0x40, 0x08, 0xc3],
        "descriptor resolver\n{rerun}"
    );
    let words = address_of(&mut session, "tls_words");
    assert_eq!(read_u64(words), module, "DTPMOD64\n{rerun}");
    assert_eq!(
        read_u64(words + 8),
        16 + 4,
        "DTPOFF64 with its addend\n{rerun}"
    );
    assert_eq!(read_u64(words + 16) as i64, tv2_tp, "TPOFF64\n{rerun}");
    // Another thread: the same offsets, its own copy, fresh.
    let tv2_tp_there = std::thread::scope(|s| {
        s.spawn(|| {
            let there = thread_pointer().wrapping_add_signed(tv2_tp);
            (read_u64(there), read_u64(there - 8))
        })
        .join()
        .unwrap()
    });
    assert_eq!(
        tv2_tp_there,
        (0x2222, 0x1111),
        "another thread's copy\n{rerun}"
    );
}

/// A host library's thread-local variable, by general dynamic from C
/// (`-fPIC`, TLSGD) and by initial exec (GOTTPOFF): both reach the storage
/// the library itself uses in the calling thread. Initial exec needs the
/// library in static TLS, which the loader grants while no thread has used
/// its block: once one has (through `__tls_get_addr`), initial-exec code is
/// refused with a clear error, as the platform's loader refuses such a
/// library. Each case preloads its own copy of the library, fresh.
#[test]
fn host_thread_locals_are_the_librarys_own() {
    let rerun = "rerun: cargo test --workspace --test relocations -- host_thread_locals_are_the_librarys_own --exact";
    for (copy, model, flags) in [
        ("gd", elf::R_X86_64_TLSGD, &["-fPIC", "-O1"][..]),
        (
            "ie",
            elf::R_X86_64_GOTTPOFF,
            &["-fPIC", "-O1", "-ftls-model=initial-exec"],
        ),
    ] {
        let counter = format!("-DCOUNTER=tls_counter_{copy}");
        let obj = build("tls.c", &[flags, &[counter.as_str()]].concat());
        assert_kinds(&obj, &[model], false);
        let library = build_tls_library(copy);
        let mut session = preloading(&library);
        load(&mut session, &[&obj]);
        let library_bump = tls_library_bump(&library);
        let first = library_bump();
        let name = reloc_name(model);
        assert_eq!(
            call(&mut session, "tls_bump", &[]) as i32,
            first + 1,
            "{name}: JIT'd code sees the library's copy\n{rerun}"
        );
        assert_eq!(
            library_bump(),
            first + 2,
            "{name}: the library sees JIT'd code's\n{rerun}"
        );
    }
    // A library whose block a thread has already used dynamically.
    let obj = build(
        "tls.c",
        &[
            "-fPIC",
            "-O1",
            "-ftls-model=initial-exec",
            "-DCOUNTER=tls_counter_used",
        ],
    );
    let library = build_tls_library("used");
    let mut session = preloading(&library);
    tls_library_bump(&library)();
    let message = load_error(&mut session, &[&obj]);
    assert_mentions(&message, &["`tls_counter_used`", "static TLS", "-fPIC"]);
}

fn preloading(library: &Path) -> Session {
    Session::new(SessionConfig {
        preloads: vec![library.display().to_string()],
        ..SessionConfig::default()
    })
    .unwrap()
}

/// `tls_library_bump` of the preloaded `library` (by its own handle: every
/// copy defines one).
fn tls_library_bump(library: &Path) -> extern "C" fn() -> i32 {
    let path = CString::new(library.display().to_string()).unwrap();
    // SAFETY: the session preloaded the library; RTLD_NOLOAD only finds it.
    let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD) };
    assert!(!handle.is_null(), "{} is not loaded", library.display());
    // SAFETY: a live handle and a NUL-terminated name.
    let address = unsafe { libc::dlsym(handle, c"tls_library_bump".as_ptr()) };
    assert!(!address.is_null());
    // SAFETY: `tls_library_bump` is `int (void)`.
    unsafe { std::mem::transmute::<*mut libc::c_void, extern "C" fn() -> i32>(address) }
}

/// A thread-local template is linked before every thread copies it: an
/// offset in the block (DTPOFF64) is there in every thread; a
/// thread-pointer offset (TPOFF64) is refused in a template.
#[test]
fn a_thread_local_template_holds_offsets_in_the_block_only() {
    let rerun = "rerun: cargo test --workspace --test relocations -- a_thread_local_template_holds_offsets_in_the_block_only --exact";
    let obj = build("tls_template.s", &[]);
    assert_kinds(
        &obj,
        &[
            elf::R_X86_64_DTPOFF64,
            elf::R_X86_64_TPOFF32,
            elf::R_X86_64_NONE,
        ],
        true,
    );
    let mut session = support::session();
    load(&mut session, &[&obj]);
    let read = address_of(&mut session, "read_self_offset");
    // SAFETY: `read_self_offset` is `long (void)` in the live module.
    let read = unsafe { std::mem::transmute::<u64, extern "C" fn() -> u64>(read) };
    assert_eq!(read(), 10, "DTPOFF64 in the template\n{rerun}");
    let there = std::thread::spawn(move || read()).join().unwrap();
    assert_eq!(there, 10, "another thread's copy of the template\n{rerun}");
    let refused = build("tls_template_tpoff.s", &[]);
    assert_kinds(&refused, &[elf::R_X86_64_TPOFF64], true);
    let message = load_error(&mut support::session(), &[&refused]);
    assert_mentions(
        &message,
        &["R_X86_64_TPOFF64", "`later`", "no thread-specific values"],
    );
    // Another module's data: a hot swap could not re-apply it to every
    // thread's copy.
    let mut session = support::session();
    load(&mut session, &[&build("gotpcrelx_export.s", &[])]);
    let import = build("tls_template_import.s", &[]);
    assert_kinds(&import, &[elf::R_X86_64_64], true);
    let message = load_error(&mut session, &[&import]);
    assert_mentions(
        &message,
        &[
            "R_X86_64_64",
            "`shared_value`",
            "addresses in this load or the host",
        ],
    );
}

/// Local dynamic reaches the load's own block only: a TLSLD against a
/// host library's variable is refused, naming it.
#[test]
fn local_dynamic_access_to_a_host_variable_is_refused() {
    let obj = build("tls_ld_host.s", &[]);
    assert_kinds(
        &obj,
        &[
            elf::R_X86_64_TLSLD,
            elf::R_X86_64_DTPOFF32,
            elf::R_X86_64_PLT32,
        ],
        true,
    );
    let mut session = support::session();
    let message = load_error(&mut session, &[&obj]);
    assert_mentions(
        &message,
        &[
            "R_X86_64_TLSLD",
            "`errno`",
            "this load's own variables only",
        ],
    );
}

/// A GOT entry for far host data that a narrow field made the load copy
/// holds the copy's address, so every reference of the load sees one
/// object (as with a copy relocation).
#[test]
fn a_got_entry_for_copied_host_data_holds_the_copy() {
    let rerun = "rerun: cargo test --workspace --test relocations -- a_got_entry_for_copied_host_data_holds_the_copy --exact";
    let obj = build("far_data.s", &["-Wa,-mrelax-relocations=no"]);
    assert_kinds(&obj, &[elf::R_X86_64_PC32, elf::R_X86_64_GOTPCREL], true);
    let mut session = session_at(Placement::Fixed(0x3f00_0000_0000));
    load(&mut session, &[&obj]);
    let copy = call(&mut session, "environ_by_pc32", &[]);
    assert!(
        in_slab(&session, copy),
        "a far PC32 reference is to a copy\n{rerun}"
    );
    assert_eq!(
        call(&mut session, "environ_by_got", &[]),
        copy,
        "the GOT entry holds the copy too\n{rerun}"
    );
    assert_eq!(
        read_u64(copy),
        environ_now(),
        "the copy holds environ\n{rerun}"
    );
}

/// A shared library defining `tls_counter_COPY` (and a function bumping
/// it), built from `fixtures/relocations/tls_library.c` as
/// `libtls_COPY.so`: each case its own library and variable, as the
/// session's preloads stay in the process's global scope.
fn build_tls_library(copy: &str) -> PathBuf {
    let counter = format!("-DCOUNTER=tls_counter_{copy}");
    let object = build("tls_library.c", &["-fPIC", "-O1", &counter]);
    let library = object.with_file_name(format!("libtls_{copy}.so"));
    let output = std::process::Command::new("cc")
        .arg("-shared")
        .arg(&object)
        .arg("-o")
        .arg(&library)
        .output()
        .expect("run cc");
    assert!(
        output.status.success(),
        "cc -shared failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    library
}
