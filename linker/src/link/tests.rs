//! The portable core end to end: real objects linked into a byte image
//! with no executor behind it (the host layer may be compiled out): the
//! image's relocated bytes checked against the addresses the link chose,
//! and hostile section sizes refused with an error, never a panic.

use std::sync::Arc;
use std::time::Duration;

use rustc_hash::FxHashMap as HashMap;
use solder_executor::abi::CallingConvention;
use solder_executor::module::Finalizers;
use solder_executor::protocol::{PlacementCode, SymbolInfo};

use super::{LinkRequest, link};
use crate::error::LinkError;
use crate::executors::{Executor, Outcome};
use crate::graph::Protection;
use crate::indirection::Indirection;
use crate::input::parse_object;
use crate::memory::Slab;
use crate::test_support::clang_object;

/// An executor that is nowhere: the link must stage its image (memory is
/// not writable in place) and ask for nothing else.
struct Nowhere;

fn not_here() -> LinkError {
    LinkError::Memory("this test links into a byte image only".into())
}

impl Executor for Nowhere {
    fn page_size(&self) -> u64 {
        4096
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
    fn read(&mut self, _: u64, _: u64) -> Result<Vec<u8>, LinkError> {
        Err(not_here())
    }
    fn lookup(&mut self, _: &[String]) -> Result<Vec<SymbolInfo>, LinkError> {
        Err(not_here())
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
        "nowhere".into()
    }
}

const SOURCE: &str = r#"
    .text
    .globl f, g
f:  call g
    movabsq $table, %rax
    ret
g:  ret
    .data
    .globl table
table:
    .quad f
    .long g - .
"#;

/// `N` bytes of the image at offset `at`; past its end the module's
/// memory is zero (the image is trimmed of trailing zeroes).
fn word<const N: usize>(image: &[u8], at: u64) -> [u8; N] {
    std::array::from_fn(|i| image.get(at as usize + i).copied().unwrap_or(0))
}

/// Links one object alone into an image at a fixed, never-mapped base.
fn link_alone(name: &str, bytes: &[u8]) -> Result<super::LinkedModule, LinkError> {
    let graph = parse_object(name, bytes)?;
    let mut slab = Slab::new(BASE, 1 << 30, 4096);
    link(
        vec![graph],
        LinkRequest {
            module: 1,
            objects: Arc::from(name),
            slab: &mut slab,
            symbols: &HashMap::default(),
            executor: &mut Nowhere,
            exports: &HashMap::default(),
            indirection: &mut Indirection::default(),
            replacing: None,
        },
    )
}

const BASE: u64 = 0x5555_0000_0000;

/// Where the module put its export `name`.
fn export_address(linked: &super::LinkedModule, name: &str) -> u64 {
    linked
        .exports
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("`{name}` is exported"))
        .1
        .address
}

#[test]
fn an_elf_object_links_into_a_relocated_byte_image() {
    let bytes = clang_object("x86_64-unknown-linux-gnu", "assembler", SOURCE, &[]);
    let graph = parse_object("calls.o", &bytes).expect("parse");
    let kinds: Vec<_> = graph
        .sections
        .iter()
        .flat_map(|s| &s.edges)
        .map(|e| (e.kind.op, e.kind.encoding.size()))
        .collect();
    assert_eq!(
        kinds.len(),
        4,
        "the object has the four relocations: {kinds:?}"
    );
    let base = 0x5555_0000_0000;
    let mut slab = Slab::new(base, 1 << 30, 4096);
    let linked = link(
        vec![graph],
        LinkRequest {
            module: 1,
            objects: Arc::from("calls.o"),
            slab: &mut slab,
            symbols: &HashMap::default(),
            executor: &mut Nowhere,
            exports: &HashMap::default(),
            indirection: &mut Indirection::default(),
            replacing: None,
        },
    )
    .expect("link");
    assert_eq!(
        linked.memory.0, base,
        "the first allocation starts the slab"
    );
    let address = |name: &str| export_address(&linked, name);
    let (f, g, table) = (address("f"), address("g"), address("table"));
    assert_eq!(g, f + 16, "call (5) + movabs (10) + ret (1)");
    let image = &linked.image;
    // call g: rel32 from the end of the call.
    assert_eq!(word::<1>(image, f - base), [0xe8]);
    assert_eq!(
        i32::from_le_bytes(word(image, f - base + 1)) as i64,
        g as i64 - (f as i64 + 5)
    );
    // movabs $table: the absolute address.
    assert_eq!(u64::from_le_bytes(word(image, f - base + 7)), table);
    // .quad f, then .long g - . (PC-relative from the field itself).
    assert_eq!(u64::from_le_bytes(word(image, table - base)), f);
    assert_eq!(
        i32::from_le_bytes(word(image, table - base + 8)) as i64,
        g as i64 - (table as i64 + 8)
    );
}

const EMPTY_UNWIND_ELF: &str = "
    .text
    .globl main
main: xorl %eax, %eax
    ret
    .section .eh_frame,\"a\",@unwind
";

const EMPTY_UNWIND_MACHO: &str = "
    .text
    .globl _main
_main: xorl %eax, %eax
    ret
    .section __TEXT,__eh_frame,coalesced,no_toc+strip_static_syms+live_support
";

#[test]
fn an_empty_unwind_section_links_without_frames() {
    for (target, source) in [
        ("x86_64-unknown-linux-gnu", EMPTY_UNWIND_ELF),
        ("x86_64-apple-macos11", EMPTY_UNWIND_MACHO),
    ] {
        let bytes = clang_object(target, "assembler", source, &[]);
        let graph = parse_object("empty-unwind.o", &bytes).expect("parse");
        assert!(
            graph
                .sections
                .iter()
                .any(|s| s.role == crate::graph::SectionRole::UnwindFrames && s.size == 0),
            "{target}: the object has an empty unwind section"
        );
        let linked = link_alone("empty-unwind.o", &bytes)
            .unwrap_or_else(|e| panic!("{target}: an empty unwind section links: {e}"));
        assert_eq!(linked.eh_frame, None, "{target}: no frames to register");
    }
}

/// `bytes` (an ELF64 object) with the size of section `name` set to `size`.
fn with_elf_section_size(mut bytes: Vec<u8>, name: &str, size: u64) -> Vec<u8> {
    let u16_at = |b: &[u8], at: usize| u16::from_le_bytes([b[at], b[at + 1]]) as usize;
    let u32_at =
        |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize;
    let u64_at =
        |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap()) as usize;
    let (shoff, shentsize) = (u64_at(&bytes, 0x28), u16_at(&bytes, 0x3a));
    let (shnum, shstrndx) = (u16_at(&bytes, 0x3c), u16_at(&bytes, 0x3e));
    let header = |i: usize| shoff + i * shentsize;
    let strtab = u64_at(&bytes, header(shstrndx) + 0x18);
    let section = (0..shnum)
        .find(|&i| {
            let at = strtab + u32_at(&bytes, header(i));
            bytes[at..].starts_with(name.as_bytes()) && bytes[at + name.len()] == 0
        })
        .unwrap_or_else(|| panic!("the object has a section {name}"));
    bytes[header(section) + 0x20..header(section) + 0x28].copy_from_slice(&size.to_le_bytes());
    bytes
}

#[test]
fn section_sizes_past_the_address_space_are_refused() {
    let source = "
        .text
        .globl main
    main: leaq buffer(%rip), %rax
        ret
        .bss
    buffer: .skip 16
    ";
    let bytes = clang_object("x86_64-unknown-linux-gnu", "assembler", source, &[]);
    for size in [u64::MAX, u64::MAX - 0xf, u64::MAX - 0xfff] {
        let hostile = with_elf_section_size(bytes.clone(), ".bss", size);
        match link_alone("huge-bss.o", &hostile) {
            Err(LinkError::Malformed { object, reason }) => {
                assert_eq!(object, "huge-bss.o");
                assert!(reason.contains(".bss"), "{size:#x}: {reason}");
            }
            Err(other) => panic!("{size:#x}: refused, but not as a malformed object: {other}"),
            Ok(linked) => panic!("{size:#x}: linked {:#x} bytes", linked.memory.1),
        }
    }
    // Large but representable: the slab (1 GiB here) refuses it.
    for size in [1 << 40, 1 << 63] {
        let hostile = with_elf_section_size(bytes.clone(), ".bss", size);
        match link_alone("big-bss.o", &hostile) {
            Err(LinkError::Memory(reason)) => assert!(reason.contains("no free range"), "{reason}"),
            other => panic!("{size:#x}: {:?}", other.map(|m| m.memory)),
        }
    }
}

/// Chains of alternate names (COFF weak externals, `/alternatename:`)
/// resolve through any length, each link walked once.
#[test]
fn long_chains_of_alternate_names_resolve_to_their_end() {
    const LINKS: usize = 2000;
    let mut source = format!(".text\n.globl w{LINKS}, a{LINKS}\nw{LINKS}: ret\na{LINKS}: ret\n");
    // Data references: the assembler folds a jump to a known weak alias.
    source += ".data\n.globl table\ntable: .quad w0\n.quad a0\n";
    for i in 0..LINKS {
        source += &format!(".weak w{i}\nw{i} = w{}\n", i + 1);
    }
    let alternates: Vec<String> = (0..LINKS)
        .map(|i| format!("/alternatename:a{i}=a{}", i + 1))
        .collect();
    source += &format!(
        ".section .drectve,\"yn\"\n.ascii \"{}\"\n",
        alternates.join(" ")
    );
    let bytes = clang_object("x86_64-pc-windows-msvc", "assembler", &source, &[]);
    let graph = parse_object("chains.obj", &bytes).expect("parse");
    let referenced: Vec<&str> = graph
        .sections
        .iter()
        .flat_map(|s| &s.edges)
        .map(|e| graph.symbols[e.target].name)
        .collect();
    assert_eq!(
        referenced,
        ["w0", "a0"],
        "the table refers to both chains' starts"
    );
    let linked = link_alone("chains.obj", &bytes).expect("the chains resolve");
    let address = |name: &str| export_address(&linked, name);
    let table = address("table") - BASE;
    let ends = [address(&format!("w{LINKS}")), address(&format!("a{LINKS}"))];
    let slots = [
        u64::from_le_bytes(word(&linked.image, table)),
        u64::from_le_bytes(word(&linked.image, table + 8)),
    ];
    assert_eq!(slots, ends, "each chain resolves to its last name");
}

#[test]
fn a_loop_of_alternate_names_is_refused() {
    let source = ".data\n.quad a0\n.section .drectve,\"yn\"\n\
                  .ascii \"/alternatename:a0=a1 /alternatename:a1=a2 /alternatename:a2=a0\"\n";
    let bytes = clang_object("x86_64-pc-windows-msvc", "assembler", source, &[]);
    match link_alone("loop.obj", &bytes) {
        Err(LinkError::Malformed { reason, .. }) => {
            assert!(
                reason.contains("alternate names of `a0` form a loop"),
                "{reason}"
            )
        }
        Err(other) => panic!("refused, but not as a loop: {other}"),
        Ok(_) => panic!("a loop of alternate names linked"),
    }
}
