//! The portable core end to end: real objects linked into a byte image
//! with no executor behind it (the host layer may be compiled out), through
//! [`crate::probe::link_image`], the entry point the fuzz targets use: the
//! image's relocated bytes checked against the addresses the link chose,
//! and hostile section sizes refused with an error, never a panic.

use crate::error::LinkError;
use crate::input::parse_object;
use crate::probe::{BASE, Host, link_image};
use crate::test_support::clang_object;

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

/// Where the module put its export `name`.
fn export_address(linked: &super::LinkedModule, name: &str) -> u64 {
    linked
        .exports
        .iter()
        .flatten()
        .find(|(n, _)| &**n == name)
        .unwrap_or_else(|| panic!("`{name}` is exported"))
        .1
        .address
}

/// What a test's [`super::LinkRequest`] borrows: a slab at [`BASE`], no
/// host answers yet, an executor that knows nothing, no other module's
/// exports. A test changes what it needs before asking for the request.
pub(super) struct RequestParts {
    pub slab: crate::memory::Slab,
    pub symbols: rustc_hash::FxHashMap<String, solder_executor::protocol::SymbolInfo>,
    pub executor: crate::probe::Nowhere,
    pub exports: rustc_hash::FxHashMap<std::sync::Arc<str>, super::Export>,
    pub indirection: crate::indirection::Indirection,
}

impl RequestParts {
    pub fn new() -> RequestParts {
        RequestParts {
            slab: crate::memory::Slab::new(BASE, 1 << 30, 4096),
            symbols: rustc_hash::FxHashMap::default(),
            executor: crate::probe::Nowhere {
                host: Host::Empty,
                asked: Vec::new(),
            },
            exports: rustc_hash::FxHashMap::default(),
            indirection: crate::indirection::Indirection::default(),
        }
    }

    /// A request to link `objects` (named so in messages) as module 1 on
    /// `threads`: no interposers, no map, no statistics.
    pub fn request(
        &mut self,
        objects: &str,
        threads: crate::parallel::Threads,
    ) -> super::LinkRequest<'_> {
        fn describe(id: u32) -> String {
            format!("module {id}")
        }
        super::LinkRequest {
            module: 1,
            objects: std::sync::Arc::from(objects),
            slab: &mut self.slab,
            symbols: &mut self.symbols,
            interposes: |_| false,
            executor: &mut self.executor,
            exports: &self.exports,
            describe_module: &describe,
            indirection: &mut self.indirection,
            replacing: None,
            entry: None,
            map: false,
            debug: false,
            threads,
            stats: false,
        }
    }
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
    let base = BASE;
    let linked = link_image("calls.o", &bytes, Host::Empty).expect("link");
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
        let linked = link_image("empty-unwind.o", &bytes, Host::Empty)
            .unwrap_or_else(|e| panic!("{target}: an empty unwind section links: {e}"));
        assert_eq!(linked.eh_frame, None, "{target}: no frames to register");
    }
}

/// `bytes` (an ELF64 object) with `value` written at `field` of the
/// header of section `name` (0x04 its type, 0x20 its size).
fn with_elf_section_field(mut bytes: Vec<u8>, name: &str, field: usize, value: &[u8]) -> Vec<u8> {
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
    let at = header(section) + field;
    bytes[at..at + value.len()].copy_from_slice(value);
    bytes
}

/// `bytes` (an ELF64 object) with the size of section `name` set to `size`.
fn with_elf_section_size(bytes: Vec<u8>, name: &str, size: u64) -> Vec<u8> {
    with_elf_section_field(bytes, name, 0x20, &size.to_le_bytes())
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
        match link_image("huge-bss.o", &hostile, Host::Empty) {
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
        match link_image("big-bss.o", &hostile, Host::Empty) {
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
    // The data's references (the frames made from .pdata refer to the
    // functions themselves).
    let referenced: Vec<&str> = graph
        .sections
        .iter()
        .filter(|s| s.role != crate::graph::SectionRole::UnwindFrames)
        .flat_map(|s| &s.edges)
        .map(|e| graph.symbols[e.target].name)
        .collect();
    assert_eq!(
        referenced,
        ["w0", "a0"],
        "the table refers to both chains' starts"
    );
    let linked = link_image("chains.obj", &bytes, Host::Empty).expect("the chains resolve");
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
    match link_image("loop.obj", &bytes, Host::Empty) {
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

/// The probe's made-up host answers what an object leaves undefined: a
/// function through a stub in the module (the host is out of rel32 reach),
/// far data through a copy, `atexit` through a thunk. Without it the same
/// object is refused as referencing an undefined symbol.
#[test]
fn the_made_up_host_answers_undefined_names() {
    let source = "
        .text
        .globl main
    main:
        call puts
        movq errno(%rip), %rax
        call atexit
        ret
    ";
    let bytes = clang_object("x86_64-unknown-linux-gnu", "assembler", source, &[]);
    match link_image("host.o", &bytes, Host::Empty) {
        Err(LinkError::Undefined { symbol, .. }) => assert_eq!(symbol, "puts"),
        other => panic!("no host, yet: {:?}", other.map(|m| m.memory)),
    }
    let linked = link_image("host.o", &bytes, Host::MadeUp).expect("the made-up host links it");
    let main = export_address(&linked, "main");
    let (start, size) = linked.memory;
    let inside = |address: i64| (start as i64..(start + size) as i64).contains(&address);
    let rel32_target =
        |at: u64, end: u64| i32::from_le_bytes(word(&linked.image, at - BASE)) as i64 + end as i64;
    // call puts (e8 rel32), movq errno(%rip) (48 8b 05 rel32), call atexit.
    let puts_stub = rel32_target(main + 1, main + 5);
    let errno_copy = rel32_target(main + 8, main + 12);
    let atexit_thunk = rel32_target(main + 13, main + 17);
    for (what, target) in [
        ("puts's stub", puts_stub),
        ("errno's copy", errno_copy),
        ("atexit's thunk", atexit_thunk),
    ] {
        assert!(inside(target), "{what} at {target:#x} is in the module");
    }
    assert_ne!(puts_stub, atexit_thunk);
}

/// A module starts on a page boundary, so a section (or common symbol)
/// aligned to more than a page could not be placed aligned: it is refused,
/// naming it, where it was once placed at a merely page-aligned address.
#[test]
fn alignments_over_a_page_are_refused() {
    let cases = [
        (
            "section",
            ".data\n.globl x\n.p2align 13\nx: .quad 1\n",
            ".data",
        ),
        (
            "common symbol",
            ".comm big, 8, 8192\n.data\n.quad big\n",
            "big",
        ),
        (
            "thread-local section",
            ".section .tbss,\"awT\",@nobits\n.p2align 13\n.zero 8\n",
            ".tbss",
        ),
    ];
    for (what, source, named) in cases {
        let bytes = clang_object("x86_64-unknown-linux-gnu", "assembler", source, &[]);
        match link_image("aligned.o", &bytes, Host::Empty) {
            Err(LinkError::UnsupportedObject { object, reason }) => {
                assert_eq!(object, "aligned.o");
                assert!(
                    reason.contains(&format!("{what} {named}"))
                        || reason.contains(&format!("{what} `{named}`")),
                    "{reason}"
                );
                assert!(reason.contains("alignment 0x2000"), "{reason}");
            }
            Err(other) => panic!("{what}: refused, but not as unsupported: {other}"),
            Ok(linked) => panic!("{what}: linked at {:#x}", linked.memory.0),
        }
    }
    // A page is fine.
    let bytes = clang_object(
        "x86_64-unknown-linux-gnu",
        "assembler",
        ".data\n.p2align 12\n.quad 1\n",
        &[],
    );
    link_image("page.o", &bytes, Host::Empty).expect("page alignment links");
    let bytes = clang_object(
        "x86_64-unknown-linux-gnu",
        "assembler",
        ".section .tbss,\"awT\",@nobits\n.p2align 12\n.zero 8\n",
        &[],
    );
    link_image("page.o", &bytes, Host::Empty).expect("a page-aligned thread-local block links");
}

/// A load's thread-local block: its initialized sections first, then its
/// zero-fill ones, each at its own alignment, whatever order the objects
/// give them in; the template is the initialized bytes, relocated, and the
/// zero-fill is what follows.
#[test]
fn a_thread_local_block_puts_initialized_sections_first_each_aligned() {
    let source = r#"
        .section .tbss,"awT",@nobits
        .p2align 6
        .globl zeroed
    zeroed: .zero 100
        .section .tdata,"awT",@progbits
        .p2align 2
        .globl first
    first: .long 0x11111111
        .section .tdata.more,"awT",@progbits
        .p2align 3
        .globl second
    second: .quad 0x2222222222222222
        .text
        .globl offsets
    offsets:
        movq $first@tpoff, %rax
        movq $second@tpoff, %rax
        movq $zeroed@tpoff, %rax
        ret
    "#;
    let bytes = clang_object("x86_64-unknown-linux-gnu", "assembler", source, &[]);
    let graphs = vec![parse_object("block.o", &bytes).unwrap()];
    let block = super::layout::lay_out_thread_locals(&graphs, 4096)
        .unwrap()
        .expect("the load has thread-local sections");
    let offset_of = |name: &str| {
        let s = graphs[0]
            .sections
            .iter()
            .position(|s| s.name == name)
            .unwrap();
        block.offsets[&(0, s)]
    };
    // .tdata at 0 (4 bytes), .tdata.more at 8, .tbss at 64 (100 bytes).
    assert_eq!(offset_of(".tdata"), 0);
    assert_eq!(offset_of(".tdata.more"), 8);
    assert_eq!(offset_of(".tbss"), 64);
    assert_eq!((block.init_size, block.size, block.align), (16, 164, 64));
    // The probe's executor places a fixed block at a made-up offset: each
    // variable's thread-pointer offset is that plus its place in the block.
    let linked = link_image("block.o", &bytes, Host::Empty).unwrap();
    let code = export_address(&linked, "offsets") - linked.memory.0;
    let tp = crate::probe::THREAD_LOCAL_TP_OFFSET;
    for (i, offset) in [0, 8, 64].into_iter().enumerate() {
        // movq $imm32, %rax: 48 c7 c0 imm32, 7 bytes each.
        let imm = i32::from_le_bytes(word(&linked.image, code + 7 * i as u64 + 3));
        assert_eq!(i64::from(imm), tp + offset, "variable {i}");
    }
}

/// What `LinkGraph::check` refuses before any stage sees the graph: a
/// symbol past its section's end and relocations in a zero-fill section,
/// each named.
#[test]
fn graphs_that_would_index_past_their_sections_are_refused() {
    let source = "
        .text
        .globl main
    main: ret
        .bss
        .globl buffer
    buffer: .skip 16
    ";
    let bytes = clang_object("x86_64-unknown-linux-gnu", "assembler", source, &[]);
    let mut graph = parse_object("checked.o", &bytes).expect("parse");
    let main = graph.symbols.iter().position(|s| s.name == "main").unwrap();
    let bss = graph
        .sections
        .iter()
        .position(|s| s.name == ".bss")
        .unwrap();
    graph.symbols[main].definition = crate::graph::Definition::Defined {
        section: 0,
        offset: u64::MAX,
    };
    let err = graph
        .check()
        .expect_err("a symbol past its section")
        .to_string();
    assert!(
        err.contains("checked.o") && err.contains("`main`") && err.contains("past the end"),
        "{err}"
    );
    let mut graph = parse_object("checked.o", &bytes).expect("parse");
    let edge = crate::graph::Edge::new(0, crate::arch::x86_64::elf::ABS64, main, 0);
    graph.sections[bss].edges = crate::graph::Edges::Decoded(vec![edge]);
    let err = graph
        .check()
        .expect_err("a relocated zero-fill")
        .to_string();
    assert!(
        err.contains("section .bss: a zero-fill section has relocations"),
        "{err}"
    );
}

/// The executor's answers are another process's for a remote executor:
/// an interposer whose thunk would pass the module's handle in an argument
/// register no thunk can load is refused as the executor's error.
#[test]
fn an_interposer_on_an_impossible_argument_is_the_executors_error() {
    use solder_executor::protocol::{SymbolInfo, SymbolKind};
    let source = ".text\n.globl main\nmain: jmp atexit\n";
    let bytes = clang_object("x86_64-unknown-linux-gnu", "assembler", source, &[]);
    for (arg, refused) in [(3, false), (4, true), (255, true)] {
        let graph = parse_object("thunk.o", &bytes).expect("parse");
        let mut parts = RequestParts::new();
        parts.symbols.insert(
            "atexit".to_string(),
            SymbolInfo {
                kind: SymbolKind::InterposerPassDso,
                arg,
                address: 0x7f00_0000_0000,
                size: 0,
            },
        );
        let threads = crate::parallel::Threads::serial();
        let result = super::link(vec![graph], parts.request("thunk.o", threads));
        match (result, refused) {
            (Ok(_), false) => {}
            (Err(LinkError::Executor(message)), true) => {
                assert!(
                    message.contains("`atexit`") && message.contains(&format!("argument {arg}")),
                    "{message}"
                );
            }
            (Err(other), _) => panic!("argument {arg}: {other}"),
            (Ok(_), true) => panic!("argument {arg}: linked"),
        }
    }
}

/// The executor is asked, once and in the objects' order, about the names
/// the load leaves undefined: not about what another object of the load
/// or the linker (`_GLOBAL_OFFSET_TABLE_`, `__dso_handle`) defines, nor a
/// thread-local variable (placed by the loader when linked), nor a name
/// another module exports (unless the runtime interposes it), nor what it
/// already answered.
#[test]
fn the_executor_is_asked_only_about_names_nothing_nearer_answers() {
    use crate::link::Export;
    use solder_executor::abi::CallingConvention;
    use solder_executor::protocol::{SymbolInfo, SymbolKind};
    let first = "
        .text
        .globl main
    main:
        call defined_by_second
        call from_host
        call exported_elsewhere
        call atexit
        call asked_before
        call from_host
        movq tls_var@gottpoff(%rip), %rax
        leaq _GLOBAL_OFFSET_TABLE_(%rip), %rax
        leaq __dso_handle(%rip), %rax
        call later_host
        ret
    ";
    let second = ".text\n.globl defined_by_second\ndefined_by_second: call later_host\nret\n";
    let first = clang_object("x86_64-unknown-linux-gnu", "assembler", first, &[]);
    let second = clang_object("x86_64-unknown-linux-gnu", "assembler", second, &[]);
    let export = Export {
        module: 2,
        address: 0x7e00_0000_0000,
        function: true,
        convention: CallingConvention::SysV,
        thread_local: None,
    };
    let exports: rustc_hash::FxHashMap<std::sync::Arc<str>, Export> =
        ["exported_elsewhere", "atexit"]
            .into_iter()
            .map(|name| (std::sync::Arc::from(name), export.clone()))
            .collect();
    let found = SymbolInfo {
        kind: SymbolKind::Function,
        arg: 0,
        address: 0x7f00_0000_0000,
        size: 0,
    };
    let split = crate::parallel::Threads {
        count: Some(2),
        min_bytes_each: 1,
    };
    for threads in [crate::parallel::Threads::serial(), split] {
        let graphs = vec![
            parse_object("first.o", &first).expect("parse"),
            parse_object("second.o", &second).expect("parse"),
        ];
        let mut parts = RequestParts::new();
        parts.symbols.insert("asked_before".to_string(), found);
        parts.exports = exports.clone();
        let mut request = parts.request("first.o, second.o", threads);
        request.interposes = |host| host == "atexit";
        // The names nobody defines stay undefined: the link fails after
        // asking.
        let _ = super::link(graphs, request);
        let (executor, symbols) = (&parts.executor, &parts.symbols);
        assert_eq!(
            executor.asked,
            ["from_host", "atexit", "later_host"],
            "{threads:?}\nrerun: cargo test -p solder-linker --lib link::tests::the_executor_is_asked"
        );
        assert!(
            symbols.contains_key("from_host") && symbols.contains_key("later_host"),
            "the answers were not kept for later loads ({threads:?})"
        );
    }
}

/// Unwind sections go to the read-only segment, once, whatever flags the
/// object gave them (old assemblers wrote `.eh_frame` writable); a
/// zero-fill one, a table of nothing as large as the object claims, is
/// refused.
#[test]
fn unwind_sections_are_placed_once_and_never_zero_fill() {
    let writable = "
        .text
        .globl main
    main: ret
        .section .unwind_aw,\"aw\",@unwind
        .long 8, 0, 0
    ";
    let bytes = clang_object("x86_64-unknown-linux-gnu", "assembler", writable, &[]);
    let linked = link_image("aw.o", &bytes, Host::Empty).expect("a writable .eh_frame links");
    let eh_frame = linked.eh_frame.expect("the CIE is registered");
    let segment = |p: crate::graph::Protection| {
        linked
            .segments
            .iter()
            .find(|s| s.2 == p)
            .map(|&(start, size, _)| start..start + size)
            .expect("three segments")
    };
    assert!(segment(crate::graph::Protection::ReadOnly).contains(&eh_frame));
    assert!(
        segment(crate::graph::Protection::Data).is_empty(),
        "nothing else is placed for it in the data segment: {:?}",
        linked.segments
    );
    // An assembler's `.eh_frame` made SHT_NOBITS, claiming 256 MiB.
    let framed = ".text\n.globl main\nmain: .cfi_startproc\nret\n.cfi_endproc\n";
    let bytes = clang_object("x86_64-unknown-linux-gnu", "assembler", framed, &[]);
    let bytes = with_elf_section_field(bytes, ".eh_frame", 0x04, &8u32.to_le_bytes());
    let bytes = with_elf_section_size(bytes, ".eh_frame", 0x1000_0000);
    match link_image("nobits.o", &bytes, Host::Empty) {
        Err(LinkError::Malformed { object, reason }) => {
            assert_eq!(object, "nobits.o");
            assert!(
                reason.contains("section .eh_frame: an unwind, initializer or finalizer table"),
                "{reason}"
            );
        }
        other => panic!("a zero-fill .eh_frame: {:?}", other.map(|m| m.memory)),
    }
}

/// A load of more global names than the global table looks up one by one
/// (`globals::LARGE`), large enough to be answered before the serial pass
/// on one thread too: every call reaches the function it names, through
/// the lookups that ask the memory ahead (`resolve_loaded`).
#[test]
fn a_load_of_many_global_names_resolves_every_call() {
    const FUNCTIONS: usize = 50_000;
    let callee = |i: usize| (i * 7 + 1) % FUNCTIONS;
    let mut source = String::from(".text\n");
    for i in 0..FUNCTIONS {
        source += &format!(".globl f{i}\nf{i}: call f{}\n ret\n", callee(i));
    }
    let bytes = clang_object("x86_64-unknown-linux-gnu", "assembler", &source, &[]);
    let graph = parse_object("many.o", &bytes).expect("parse");
    let edges: usize = graph.sections.iter().map(|s| s.edges.len()).sum();
    assert!(edges >= FUNCTIONS && FUNCTIONS > super::globals::LARGE);
    assert!(24 * (edges + graph.symbols.len()) >= super::resolve_loaded::ANSWERED_ALONE_FROM);
    let linked = link_image("many.o", &bytes, Host::Empty).expect("link");
    let exports: std::collections::HashMap<&str, u64> = (linked.exports.iter().flatten())
        .map(|(name, export)| (&**name, export.address))
        .collect();
    let address = |i: usize| exports[format!("f{i}").as_str()];
    for i in 0..FUNCTIONS {
        let (at, target) = (address(i) - BASE, address(callee(i)) as i64);
        assert_eq!(word::<1>(&linked.image, at), [0xe8], "f{i} calls");
        let displacement = i32::from_le_bytes(word(&linked.image, at + 1)) as i64;
        assert_eq!(
            displacement,
            target - (address(i) as i64 + 5),
            "f{i} calls f{}; rerun: cargo test -p solder-linker --lib \
             link::tests::a_load_of_many_global_names_resolves_every_call",
            callee(i)
        );
    }
}

/// An image loses exactly its trailing zero bytes, wherever its last
/// non-zero byte lies: in the tail past whole chunks, at either end of a
/// chunk, or nowhere.
#[test]
fn an_image_is_trimmed_of_its_trailing_zeroes_only() {
    let naive = |image: &[u8]| image.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    for len in [0, 1, 63, 64, 65, 127, 128, 129, 1000] {
        let zeroes = vec![0u8; len];
        assert_eq!(super::without_trailing_zeroes(&zeroes), 0, "{len} zeroes");
        for last in 0..len {
            let mut image = zeroes.clone();
            image[last] = 0x80;
            if last > 0 {
                image[0] = 1;
            }
            assert_eq!(
                super::without_trailing_zeroes(&image),
                naive(&image),
                "{len} bytes, the last non-zero at {last}; rerun: cargo test -p solder-linker \
                 --lib link::tests::an_image_is_trimmed"
            );
        }
    }
}

/// A load split over threads asks the executor about the names of the
/// edges its threads left to the serial pass: each target and subtrahend
/// nothing in the load defines, with the chain of alternate names of one
/// that is undefined (COFF `/alternatename`). A load the serial pass
/// resolves alone asks about every undefined name, also one that only a
/// section not loaded (debug information) names; the split load, whose
/// edges say what it needs, does not ask about that one. Nothing else
/// differs.
#[test]
fn a_split_load_asks_about_the_names_its_edges_left_to_the_serial_pass() {
    use crate::arch::{Check, Encoding, RelocKind, RelocOp};
    use crate::graph::{Edge, LinkGraph};
    const RERUN: &str = "rerun: cargo test -p solder-linker --lib \
                         link::tests::a_split_load_asks_about_the_names";
    let elf = "
        .text
        .globl main
    main:
        call from_host
        ret
        .section .debug_info,\"\",@progbits
        .quad only_in_debug_info
        .quad subtracted
    ";
    // `main - subtracted` in `.text`, as a Mach-O SUBTRACTOR pair makes
    // it (no assembler leaves a subtrahend undefined; a crafted object
    // may).
    fn with_difference(mut graph: LinkGraph<'_>) -> LinkGraph<'_> {
        let id = |name: &str| graph.symbols.iter().position(|s| s.name == name);
        let (main, subtracted) = (id("main").expect("main"), id("subtracted").expect("named"));
        let kind = RelocKind {
            op: RelocOp::Difference,
            encoding: Encoding::Int {
                width: 4,
                check: Check::Wrap,
            },
            name: &"difference",
        };
        let edge = Edge::difference(0, kind, main, 0, subtracted).expect("32-bit index");
        let text = graph.sections.iter_mut().find(|s| s.name == ".text");
        text.expect(".text").edges.to_decoded().push(edge);
        graph
    }
    let coff = "
        .text
        .globl user
    user:
        call baz
        call from_host
        ret
        .section .drectve,\"yn\"
        .ascii \" /alternatename:baz=qux\"
    ";
    let split = crate::parallel::Threads {
        count: Some(2),
        min_bytes_each: 1,
    };
    type Edit = fn(LinkGraph<'_>) -> LinkGraph<'_>;
    let cases: [(_, _, Edit, _, _); 2] = [
        (
            "x86_64-unknown-linux-gnu",
            elf,
            with_difference,
            &["from_host", "only_in_debug_info", "subtracted"][..],
            &["from_host", "subtracted"][..],
        ),
        (
            "x86_64-pc-windows-msvc",
            coff,
            |graph| graph,
            &["baz", "from_host", "qux"],
            &["baz", "from_host", "qux"],
        ),
    ];
    for (triple, source, edit, serial, left) in cases {
        let bytes = clang_object(triple, "assembler", source, &[]);
        // A second object, so that the load is split.
        let other = clang_object(triple, "assembler", ".text\nnop\n", &[]);
        for (threads, expected) in [(crate::parallel::Threads::serial(), serial), (split, left)] {
            let graphs = vec![
                edit(parse_object("a.o", &bytes).expect("parse")),
                parse_object("b.o", &other).expect("parse"),
            ];
            let mut parts = RequestParts::new();
            // Nothing defines the names: the link fails after asking.
            let _ = super::link(graphs, parts.request("a.o, b.o", threads));
            let mut asked = parts.executor.asked.clone();
            asked.sort();
            assert_eq!(asked, expected, "{triple}, {threads:?}\n{RERUN}");
        }
    }
}
