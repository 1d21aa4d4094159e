//! Objects are built at test time by clang for `x86_64-apple-darwin`;
//! each test first checks that the object has what it exercises (the
//! relocation kinds, the section types), then checks the graph. Addends
//! are checked twice: exactly, and by placing the sections somewhere
//! else than the assembler did and computing what the linker would write.

use super::*;
use crate::arch::machine::macho::EH_FRAME_DELTA64;
use crate::arch::machine::macho::{TLV_KEY, TLV_OFFSET};
use crate::arch::{Relax, RelocOp};
use object::macho;
use object::read::macho::{MachHeader, Section as _, Segment as _};

/// Builds a Mach-O x86-64 object with clang (`lang` as its `-x` says).
fn build(target: &str, lang: &str, source: &str, flags: &[&str]) -> Vec<u8> {
    crate::test_support::clang_object(target, lang, source, flags)
}

fn asm(source: &str) -> Vec<u8> {
    build("x86_64-apple-darwin", "assembler", source, &[])
}

fn c(source: &str) -> Vec<u8> {
    build("x86_64-apple-darwin", "c", source, &["-O2", "-nostdinc"])
}

fn graph(data: &[u8]) -> LinkGraph<'_> {
    parse("test.o", data).unwrap_or_else(|e| panic!("{e}"))
}

fn symbol(g: &LinkGraph, name: &str) -> SymbolId {
    g.symbols
        .iter()
        .position(|s| s.name == name && s.kind != SymbolKind::Section)
        .unwrap_or_else(|| panic!("no symbol {name}"))
}

fn section(g: &LinkGraph, name: &str) -> SectionId {
    g.sections
        .iter()
        .position(|s| s.name == name)
        .unwrap_or_else(|| panic!("no section {name}"))
}

/// The synthetic symbol of a section: what non-extern relocations target.
fn section_symbol(g: &LinkGraph, name: &str) -> SymbolId {
    let id = section(g, name);
    let symbol = g
        .symbols
        .iter()
        .position(|s| s.kind == SymbolKind::Section && s.definition == Definition::defined(id, 0))
        .unwrap_or_else(|| panic!("no section symbol for {name}"));
    assert_eq!(g.symbols[symbol].name, name);
    symbol
}

fn edge_at(g: &LinkGraph, section_name: &str, offset: u64) -> Edge {
    let edges: Vec<Edge> = g.sections[section(g, section_name)]
        .edges
        .iter()
        .filter(|e| e.offset == offset)
        .collect();
    assert_eq!(
        edges.len(),
        1,
        "edges at {section_name}+{offset:#x}: {edges:?}"
    );
    edges[0]
}

fn kind_names(g: &LinkGraph) -> Vec<&'static str> {
    let mut names: Vec<&str> = g
        .sections
        .iter()
        .flat_map(|s| s.edges.iter().map(|e| *e.kind.name))
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

fn has_kinds(g: &LinkGraph, wanted: &[&str]) {
    let names = kind_names(g);
    for kind in wanted {
        assert!(names.contains(kind), "the object has no {kind}: {names:?}");
    }
}

/// A placement of the graph unlike the object's own layout: sections in
/// reverse order, far apart, at odd distances; undefined symbols and GOT
/// entries somewhere else again.
struct Layout {
    bases: Vec<i128>,
}

impl Layout {
    fn new(g: &LinkGraph) -> Layout {
        let count = g.sections.len() as i128;
        let bases = (0..count)
            .map(|i| 0x4000_0000 + (count - i) * 0x12_3450 + i * 0x10)
            .collect();
        Layout { bases }
    }

    fn address(&self, g: &LinkGraph, id: SymbolId) -> i128 {
        match g.symbols[id].definition {
            Definition::Defined { section, offset } => {
                self.bases[section as SectionId] + offset as i128
            }
            Definition::Absolute(value) => value as i128,
            _ => 0x7100_0000 + id as i128 * 0x1000,
        }
    }

    fn named(&self, g: &LinkGraph, name: &str) -> i128 {
        self.address(g, symbol(g, name))
    }

    fn got_entry(&self, id: SymbolId) -> i128 {
        0x2000_0000 + id as i128 * 8
    }

    /// The value the linker writes for `edge` in section `section`.
    fn value(&self, g: &LinkGraph, section: SectionId, edge: &Edge) -> i128 {
        let s = self.address(g, edge.target);
        let a = i128::from(edge.addend);
        let p = self.bases[section] + edge.offset as i128;
        match edge.kind.op {
            RelocOp::Absolute => s + a,
            RelocOp::PcRelative | RelocOp::Branch => s + a - p,
            RelocOp::GotEntryPcRel { .. } => self.got_entry(edge.target) + a - p,
            RelocOp::Difference => s + a - self.address(g, edge.minus().expect("a minus")),
            op => panic!("unexpected {op:?}"),
        }
    }

    /// Where a symbol ends up once placed.
    fn at(&self, g: &LinkGraph, name: &str) -> (SectionId, i128) {
        match g.symbols[symbol(g, name)].definition {
            Definition::Defined { section, offset } => {
                let section = section as SectionId;
                (section, self.bases[section] + offset as i128)
            }
            other => panic!("{name} is {other:?}"),
        }
    }
}

#[test]
fn sections_get_protections_and_roles() {
    let data = asm(r#"
        .section __TEXT,__text,regular,pure_instructions
        .globl _f
    _f:
        .cfi_startproc
        ret
        .cfi_endproc
        .section __TEXT,__cstring,cstring_literals
        .asciz "hi"
        .section __TEXT,__const
        .p2align 4
    _tc: .quad 1
        .section __DATA,__data
    _d: .quad 2
        .section __DATA,__const
    _dc: .quad _f
        .section __DATA_CONST,__const
    _dcc: .quad 3
        .section __DATA,__mod_init_func,mod_init_funcs
        .quad _f
        .section __DATA,__mod_term_func,mod_term_funcs
        .quad _f
        .zerofill __DATA,__bss,_z,64,5
        .section __DWARF,__debug_str,regular,debug
    _dbg: .asciz "x"
        .section __LD,__compact_unwind,regular,debug
        .quad _f
        .section __DATA,__llvm_addrsig
        .byte 0
    "#);
    let g = graph(&data);
    assert_eq!(g.format, ObjectFormat::MachO);
    assert!(g.groups.is_empty());
    let shape: Vec<(&str, Protection, SectionRole)> = g
        .sections
        .iter()
        .map(|s| (&*s.name, s.protection, s.role))
        .collect();
    let init = SectionRole::Initializers {
        priority: None,
        reversed: false,
    };
    let fini = SectionRole::Finalizers {
        priority: None,
        reversed: false,
    };
    use Protection::*;
    use SectionRole::*;
    assert_eq!(
        shape,
        [
            ("__TEXT,__text", Code, Plain),
            ("__TEXT,__cstring", ReadOnly, Plain),
            ("__TEXT,__const", ReadOnly, Plain),
            ("__DATA,__data", Data, Plain),
            ("__DATA,__const", ReadOnly, Plain),
            ("__DATA_CONST,__const", ReadOnly, Plain),
            ("__DATA,__mod_init_func", ReadOnly, init),
            ("__DATA,__mod_term_func", ReadOnly, fini),
            ("__DATA,__bss", Zero, Plain),
            ("__TEXT,__eh_frame", ReadOnly, UnwindFrames),
        ]
    );
    let bss = &g.sections[section(&g, "__DATA,__bss")];
    assert_eq!((bss.size, bss.align, bss.data.len()), (64, 32, 0));
    assert_eq!(g.sections[section(&g, "__TEXT,__const")].align, 16);
    assert_eq!(&*g.sections[section(&g, "__TEXT,__cstring")].data, b"hi\0");
    // A symbol in a debug section is not placed.
    assert_eq!(
        g.symbols[symbol(&g, "_dbg")].definition,
        Definition::Unplaced
    );
    // One section symbol per loaded section, after the nlist symbols.
    let first = g.symbols.len() - g.sections.len();
    for (id, s) in g.sections.iter().enumerate() {
        let sym = &g.symbols[first + id];
        assert_eq!(sym.name, s.name);
        assert_eq!(sym.kind, SymbolKind::Section);
        assert_eq!(sym.binding, Binding::Local);
        assert_eq!(sym.definition, Definition::defined(id, 0));
    }
    // The initializer pointer points at _f.
    let init_edge = edge_at(&g, "__DATA,__mod_init_func", 0);
    assert_eq!(
        (*init_edge.kind.name, init_edge.target, init_edge.addend),
        ("X86_64_RELOC_UNSIGNED", symbol(&g, "_f"), 0)
    );
    // The relocations of sections that are not loaded are never read:
    // a nonsensical one in __compact_unwind changes nothing.
    let at = reloc_at(&data, "__LD,__compact_unwind", 0);
    let (address, word1) = read_reloc(&data, at);
    let mut corrupted = data.clone();
    write_reloc(&mut corrupted, at, (address, with_type(word1, 15)));
    assert_eq!(graph(&corrupted).sections.len(), g.sections.len());
}

#[test]
fn symbols_bindings_visibility_and_sizes() {
    let data = asm(r#"
        .section __TEXT,__text,regular,pure_instructions
        .globl _g1
    _g1: nop
    _l1: nop
        nop
        .private_extern _h1
        .globl _h1
    _h1: ret
        .globl _w1
        .weak_definition _w1
    _w1: ret
        .globl _hw
        .private_extern _hw
        .weak_definition _hw
    _hw: call _u
        call _wr
        .weak_reference _wr
        .comm _c, 16, 4
        .lcomm _lc, 8, 3
        .globl _abs
        .set _abs, 0x1234
        .section __DATA,__data
    _dd: .quad 0
    _dd2: .long 0
    "#);
    let g = graph(&data);
    let sym = |name| &g.symbols[symbol(&g, name)];
    let text = section(&g, "__TEXT,__text");
    let check = |name, binding, visibility, kind, definition, size| {
        let s = sym(name);
        assert_eq!(
            (
                s.binding,
                s.visibility,
                s.kind,
                s.definition,
                s.size,
                s.fallback.map(Fallback::id)
            ),
            (binding, visibility, kind, definition, size, None),
            "{name}"
        );
    };
    use Binding::*;
    use SymbolKind::*;
    use Visibility::*;
    let at = |offset| Definition::defined(text, offset);
    check("_g1", Global, Default, Function, at(0), 1);
    check("_l1", Local, Default, Function, at(1), 2);
    check("_h1", Global, Hidden, Function, at(3), 1);
    check("_w1", Weak, Default, Function, at(4), 1);
    // The last symbol runs to the section end: two 5-byte calls.
    check("_hw", Weak, Hidden, Function, at(5), 10);
    check("_u", Global, Default, Other, Definition::Undefined, 0);
    check("_wr", Weak, Default, Other, Definition::Undefined, 0);
    check(
        "_c",
        Global,
        Default,
        Data,
        Definition::Common { align: 16 },
        16,
    );
    check(
        "_abs",
        Global,
        Default,
        Other,
        Definition::Absolute(0x1234),
        0,
    );
    let data_section = section(&g, "__DATA,__data");
    check(
        "_dd",
        Local,
        Default,
        Data,
        Definition::defined(data_section, 0),
        8,
    );
    check(
        "_dd2",
        Local,
        Default,
        Data,
        Definition::defined(data_section, 8),
        4,
    );
    let bss = section(&g, "__DATA,__bss");
    assert_eq!(g.sections[bss].protection, Protection::Zero);
    check("_lc", Local, Default, Data, Definition::defined(bss, 0), 8);
    // Names keep their underscore.
    assert!(g.symbols.iter().any(|s| s.name == "_g1"));
    assert!(!g.symbols.iter().any(|s| s.name == "g1"));
    // The two calls: BRANCH against the undefined symbols.
    has_kinds(&g, &["X86_64_RELOC_BRANCH"]);
    assert_eq!(edge_at(&g, "__TEXT,__text", 6).target, symbol(&g, "_u"));
    assert_eq!(edge_at(&g, "__TEXT,__text", 11).target, symbol(&g, "_wr"));
}

/// Both kinds of target for the pc-relative and data relocations: an
/// extern symbol, and an `L` label in another section, which the
/// assembler refers to by section (non-extern) when no symbol precedes
/// it there.
const TARGETS: &str = r#"
        .section __DATA,__const
    Lpad: .quad 0
    Lloc: .quad 7
    Lt2: .quad 0
    m_after: .quad 0
"#;

#[test]
fn signed_relocations_extern_and_section_relative() {
    let data = asm(&format!(
        r#"
        .section __TEXT,__text,regular,pure_instructions
        .globl _f
    _f:
        movl $1, _x(%rip)
    e_s4x:
        movb $1, _x(%rip)
    e_s1x:
        movw $1, _x(%rip)
    e_s2x:
        leaq _x+8(%rip), %rax
    e_sx:
        movl $1, Lloc(%rip)
    e_s4l:
        movb $1, Lloc(%rip)
    e_s1l:
        movw $1, Lloc(%rip)
    e_s2l:
        leaq Lloc+8(%rip), %rax
    e_sl:
        movl $1, Lloc+3(%rip)
    e_s1l3:
        ret
        {TARGETS}
    "#
    ));
    let g = graph(&data);
    has_kinds(
        &g,
        &[
            "X86_64_RELOC_SIGNED",
            "X86_64_RELOC_SIGNED_1",
            "X86_64_RELOC_SIGNED_2",
            "X86_64_RELOC_SIGNED_4",
        ],
    );
    let layout = Layout::new(&g);
    let x = symbol(&g, "_x");
    let consts = section_symbol(&g, "__DATA,__const");
    // Lloc is 16 bytes before m_after.
    let lloc = layout.named(&g, "m_after") - 16;
    let xa = layout.named(&g, "_x");
    // (label after the instruction, immediate bytes after the field,
    // kind, target, addend, where the instruction points)
    let cases = [
        ("e_s4x", 4, "X86_64_RELOC_SIGNED_4", x, -8, xa),
        ("e_s1x", 1, "X86_64_RELOC_SIGNED_1", x, -5, xa),
        ("e_s2x", 2, "X86_64_RELOC_SIGNED_2", x, -6, xa),
        ("e_sx", 0, "X86_64_RELOC_SIGNED", x, 4, xa + 8),
        // Lloc is at offset 8 of __DATA,__const: 8 - 4 - N.
        ("e_s4l", 4, "X86_64_RELOC_SIGNED_4", consts, 0, lloc),
        ("e_s1l", 1, "X86_64_RELOC_SIGNED_1", consts, 3, lloc),
        ("e_s2l", 2, "X86_64_RELOC_SIGNED_2", consts, 2, lloc),
        ("e_sl", 0, "X86_64_RELOC_SIGNED", consts, 12, lloc + 8),
        // The assembler picks SIGNED_N by the constant, not by the
        // instruction: Lloc+3 after a 4-byte immediate is SIGNED_1.
        ("e_s1l3", 4, "X86_64_RELOC_SIGNED_1", consts, 3, lloc + 3),
    ];
    for (end, imm, name, target, addend, destination) in cases {
        let (text, end_address) = layout.at(&g, end);
        let end_offset = match g.symbols[symbol(&g, end)].definition {
            Definition::Defined { offset, .. } => offset,
            _ => unreachable!(),
        };
        let edge = edge_at(&g, "__TEXT,__text", end_offset - 4 - imm);
        assert_eq!(
            (
                *edge.kind.name,
                edge.kind.op,
                edge.target,
                edge.addend,
                edge.minus()
            ),
            (name, RelocOp::PcRelative, target, addend, None),
            "{end}"
        );
        assert_eq!(
            layout.value(&g, text, &edge),
            destination - end_address,
            "{end}: the displacement"
        );
    }
}

#[test]
fn branch_got_load_and_got() {
    let data = asm(r#"
        .section __TEXT,__text,regular,pure_instructions
        .globl _f
    _f:
        call _g
    e_br:
        call Lfar
    e_brl:
        movq _y@GOTPCREL(%rip), %rax
    e_gl:
        addq _y@GOTPCREL(%rip), %rax
    e_got:
        ret
        .section __TEXT,__text2,regular,pure_instructions
        ret
    Lfar:
        ret
    "#);
    let g = graph(&data);
    has_kinds(
        &g,
        &[
            "X86_64_RELOC_BRANCH",
            "X86_64_RELOC_GOT_LOAD",
            "X86_64_RELOC_GOT",
        ],
    );
    let layout = Layout::new(&g);
    let (text, e_br) = layout.at(&g, "e_br");
    let (_, e_brl) = layout.at(&g, "e_brl");
    let (_, e_gl) = layout.at(&g, "e_gl");
    let (_, e_got) = layout.at(&g, "e_got");
    let y = symbol(&g, "_y");

    let call = edge_at(&g, "__TEXT,__text", 1);
    assert_eq!(
        (*call.kind.name, call.kind.op, call.target, call.addend),
        ("X86_64_RELOC_BRANCH", RelocOp::Branch, symbol(&g, "_g"), -4)
    );
    assert_eq!(layout.value(&g, text, &call), layout.named(&g, "_g") - e_br);
    // A call to a label in another code section: by section ordinal.
    let local = edge_at(&g, "__TEXT,__text", 6);
    let text2 = section_symbol(&g, "__TEXT,__text2");
    assert_eq!(
        (*local.kind.name, local.target, local.addend),
        ("X86_64_RELOC_BRANCH", text2, 1 - 4)
    );
    assert_eq!(
        layout.value(&g, text, &local),
        layout.address(&g, text2) + 1 - e_brl
    );

    let load = edge_at(&g, "__TEXT,__text", 13);
    assert_eq!(
        (*load.kind.name, load.kind.op, load.target, load.addend),
        (
            "X86_64_RELOC_GOT_LOAD",
            RelocOp::GotEntryPcRel {
                relax: Relax::RexMov
            },
            y,
            -4
        )
    );
    assert_eq!(layout.value(&g, text, &load), layout.got_entry(y) - e_gl);
    let got = edge_at(&g, "__TEXT,__text", 20);
    assert_eq!(
        (*got.kind.name, got.kind.op, got.target, got.addend),
        (
            "X86_64_RELOC_GOT",
            RelocOp::GotEntryPcRel { relax: Relax::No },
            y,
            -4
        )
    );
    assert_eq!(layout.value(&g, text, &got), layout.got_entry(y) - e_got);
    assert!(
        g.sections
            .iter()
            .flat_map(|s| &s.edges)
            .all(|e| e.minus().is_none())
    );
}

#[test]
fn unsigned_relocations_extern_and_section_relative() {
    let data = asm(&format!(
        r#"
        .section __TEXT,__text,regular,pure_instructions
        .globl _f
    _f: ret
        .section __DATA,__data
        .p2align 3
    _d:
        .quad _x
        .quad _x + 12
        .long _x
        .long _x + 3
        .quad Lloc + 4
        .long Lloc
        .quad Lloc - 8
        {TARGETS}
    "#
    ));
    let g = graph(&data);
    has_kinds(&g, &["X86_64_RELOC_UNSIGNED"]);
    let layout = Layout::new(&g);
    let x = symbol(&g, "_x");
    let consts = section_symbol(&g, "__DATA,__const");
    let lloc = layout.named(&g, "m_after") - 16;
    let xa = layout.named(&g, "_x");
    let cases = [
        (0, 8, x, 0, xa),
        (8, 8, x, 12, xa + 12),
        (16, 4, x, 0, xa),
        (20, 4, x, 3, xa + 3),
        // Lloc is at offset 8 of __DATA,__const.
        (24, 8, consts, 12, lloc + 4),
        (32, 4, consts, 8, lloc),
        (36, 8, consts, 0, lloc - 8),
    ];
    let data_section = section(&g, "__DATA,__data");
    assert_eq!(g.sections[data_section].edges.len(), cases.len());
    for (offset, width, target, addend, value) in cases {
        let edge = edge_at(&g, "__DATA,__data", offset);
        let check = if width == 8 {
            crate::arch::Check::Wrap
        } else {
            crate::arch::Check::Unsigned
        };
        assert_eq!(
            (
                *edge.kind.name,
                edge.kind.op,
                edge.kind.encoding,
                edge.target,
                edge.addend,
                edge.minus()
            ),
            (
                "X86_64_RELOC_UNSIGNED",
                RelocOp::Absolute,
                crate::arch::Encoding::Int { width, check },
                target,
                addend,
                None
            ),
            "offset {offset}"
        );
        assert_eq!(
            layout.value(&g, data_section, &edge),
            value,
            "offset {offset}"
        );
    }
}

#[test]
fn subtractor_pairs() {
    let data = asm(&format!(
        r#"
        .section __TEXT,__text,regular,pure_instructions
        .globl _f
    _f: ret
        .section __DATA,__data
        .p2align 3
    _d:
        .quad _a - _b
        .long _a - _b
        .long _a - _b + 5
        .quad Lloc - _d
        .quad _f - Lt2
        .long _f - Lt2 + 2
        .section __TEXT,__const
    _b: .quad 2
        {TARGETS}
    _a: .quad 1
    "#
    ));
    let g = graph(&data);
    has_kinds(&g, &["X86_64_RELOC_SUBTRACTOR"]);
    let layout = Layout::new(&g);
    let data_section = section(&g, "__DATA,__data");
    let (a, b, d, f) = (
        symbol(&g, "_a"),
        symbol(&g, "_b"),
        symbol(&g, "_d"),
        symbol(&g, "_f"),
    );
    let consts = section_symbol(&g, "__DATA,__const");
    let addr = |name| layout.named(&g, name);
    let lloc = addr("m_after") - 16;
    let lt2 = addr("m_after") - 8;
    // (offset, width, minuend, subtrahend, addend, value)
    let cases = [
        (0, 8, a, b, 0, addr("_a") - addr("_b")),
        (8, 4, a, b, 0, addr("_a") - addr("_b")),
        (12, 4, a, b, 5, addr("_a") - addr("_b") + 5),
        // Lloc: offset 8 of __DATA,__const.
        (16, 8, consts, d, 8, lloc - addr("_d")),
        // Lt2: offset 16 of __DATA,__const.
        (24, 8, f, consts, -16, addr("_f") - lt2),
        (32, 4, f, consts, -14, addr("_f") - lt2 + 2),
    ];
    assert_eq!(g.sections[data_section].edges.len(), cases.len());
    for (offset, width, minuend, subtrahend, addend, value) in cases {
        let edge = edge_at(&g, "__DATA,__data", offset);
        let check = if width == 8 {
            crate::arch::Check::Wrap
        } else {
            crate::arch::Check::Signed
        };
        assert_eq!(
            (
                *edge.kind.name,
                edge.kind.op,
                edge.kind.encoding,
                edge.target,
                edge.minus(),
                edge.addend
            ),
            (
                "X86_64_RELOC_SUBTRACTOR",
                RelocOp::Difference,
                crate::arch::Encoding::Int { width, check },
                minuend,
                Some(subtrahend),
                addend
            ),
            "offset {offset}"
        );
        assert_eq!(
            layout.value(&g, data_section, &edge),
            value,
            "offset {offset}"
        );
    }
}

#[test]
fn eh_frame_pointers_without_relocations_get_edges() {
    let data = asm(r#"
        .section __TEXT,__text,regular,pure_instructions
        .globl _f1
    _f1:
        .cfi_startproc
        .cfi_personality 155, ___gxx_personality_v0
        .cfi_lsda 16, Lexc
        pushq %rbp
        .cfi_def_cfa_offset 16
        popq %rbp
        ret
        .cfi_endproc
        .globl _f2
    _f2:
        .cfi_startproc
        ret
        .cfi_endproc
        .section __TEXT,__text_cold,regular,pure_instructions
    _f3:
        .cfi_startproc
        ret
        .cfi_endproc
        .section __TEXT,__gcc_except_tab
    Lexc:
        .byte 0xff, 0x9b
    m_exc_after:
    "#);
    let g = graph(&data);
    let eh = section(&g, "__TEXT,__eh_frame");
    assert_eq!(g.sections[eh].role, SectionRole::UnwindFrames);
    let layout = Layout::new(&g);
    // The personality has its relocation (a GOT reference)...
    let personality = symbol(&g, "___gxx_personality_v0");
    let got: Vec<Edge> = g.sections[eh]
        .edges
        .iter()
        .filter(|e| *e.kind.name == "X86_64_RELOC_GOT")
        .collect();
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].target, got[0].addend), (personality, 0));
    // ... pc_begin and the LSDA pointer have none: they get edges to
    // where they pointed.
    let mut implicit: Vec<i128> = g.sections[eh]
        .edges
        .iter()
        .filter(|e| e.kind == EH_FRAME_DELTA64)
        .map(|e| {
            let p = layout.bases[eh] + e.offset as i128;
            layout.value(&g, eh, &e) + p
        })
        .collect();
    implicit.sort_unstable();
    let mut expected = vec![
        layout.named(&g, "_f1"),
        layout.named(&g, "_f2"),
        layout.named(&g, "_f3"),
        layout.named(&g, "m_exc_after") - 2,
    ];
    expected.sort_unstable();
    assert_eq!(implicit, expected);
    // The first FDE follows the CIE; its pc_begin is 8 bytes in.
    let cie_length = u32::from_le_bytes(g.sections[eh].data[..4].try_into().unwrap());
    let fde = u64::from(cie_length) + 4;
    let pc_begin = edge_at(&g, "__TEXT,__eh_frame", fde + 8);
    assert_eq!(pc_begin.kind, EH_FRAME_DELTA64);
    assert_eq!(pc_begin.target, section_symbol(&g, "__TEXT,__text"));
}

/// The command that reruns one test of this file.
fn rerun(test: &str) -> String {
    format!("rerun: cargo test -p solder-linker --lib -- format::macho::tests::{test} --exact")
}

/// `__eh_frame` records written with each record in an atom of its own:
/// the CIE's length, the FDE's length and its CIE pointer are all
/// SUBTRACTOR pairs (`.p2align` keeps the assembler from folding them
/// while parsing).
const EH_FRAME_IN_ATOMS: &str = r#"
        .section __TEXT,__text,regular,pure_instructions
        .globl _inside
    _inside:
        pushq %rbp
        movq %rsp, %rbp
        popq %rbp
        ret
    Linside_end:
        .section __TEXT,__eh_frame,coalesced,no_toc+strip_static_syms+live_support
    EH_frame0:
        .long Lcie_end - Lcie_start
    Lcie_start:
        .long 0
        .byte 1
        .asciz "zR"
        .byte 1, 0x78, 16, 1, 0x10
        .byte 0x0c, 7, 8, 0x90, 1
        .p2align 3
    Lcie_end:
    _inside.eh:
        .long Lfde_end - Lfde_start
    Lfde_start:
        .long Lfde_start - EH_frame0
        .quad _inside - .
        .quad Linside_end - _inside
        .byte 0
        .byte 0x41, 0x0e, 0x10, 0x86, 0x02, 0x41, 0x0d, 0x06
        .p2align 3
    Lfde_end:
        .subsections_via_symbols
"#;

/// Where the relocations of a section at r_address `address` are in the
/// file, in the table's order.
fn relocs_at(data: &[u8], section_name: &str, address: u32) -> Vec<usize> {
    let header = Header::parse(data, 0).unwrap();
    let mut commands = header.load_commands(LE, data, 0).unwrap();
    while let Some(command) = commands.next().unwrap() {
        if let Some((segment, section_data)) = command.segment_64().unwrap() {
            for s in segment.sections(LE, section_data).unwrap() {
                let name = format!(
                    "{},{}",
                    String::from_utf8_lossy(s.segment_name()),
                    String::from_utf8_lossy(s.name())
                );
                if name == section_name {
                    return (0..s.nreloc(LE) as usize)
                        .map(|i| s.reloff(LE) as usize + i * 8)
                        .filter(|&at| read_reloc(data, at).0 == address)
                        .collect();
                }
            }
        }
    }
    panic!("no section {section_name}");
}

/// Differences within `__eh_frame` (a record's length, an FDE's CIE
/// pointer) are folded into its bytes: the records walk as the assembler
/// meant, and only the pointers out of the section keep edges.
#[test]
fn eh_frame_differences_within_the_section_are_folded() {
    let test = "eh_frame_differences_within_the_section_are_folded";
    let data = asm(EH_FRAME_IN_ATOMS);
    let eh_name = "__TEXT,__eh_frame";
    // The object has the pairs at offsets 0 (CIE length), 0x18 (FDE
    // length) and 0x1c (CIE pointer), and one for pc_begin (0x20).
    for address in [0, 0x18, 0x1c, 0x20] {
        let types: Vec<u32> = relocs_at(&data, eh_name, address)
            .into_iter()
            .map(|at| read_reloc(&data, at).1 >> 28)
            .collect();
        assert_eq!(
            types,
            [5, 0],
            "a SUBTRACTOR pair at {address:#x}\n{}",
            rerun(test)
        );
    }
    let g = parse("test.o", &data).unwrap_or_else(|e| panic!("{e}\n{}", rerun(test)));
    let eh = &g.sections[section(&g, eh_name)];
    let walked: Vec<_> = crate::format::eh_frame::records(&eh.data).collect();
    assert_eq!(
        walked,
        [
            Ok(crate::format::eh_frame::Record {
                offset: 0,
                end: 0x18,
                cie: None
            }),
            Ok(crate::format::eh_frame::Record {
                offset: 0x18,
                end: 0x40,
                cie: Some(0)
            }),
        ],
        "{}",
        rerun(test)
    );
    // pc_begin keeps its difference (the function is in another section);
    // nothing else has an edge.
    let edges: Vec<Edge> = eh.edges.iter().collect();
    assert_eq!(edges.len(), 1, "{edges:?}\n{}", rerun(test));
    let pc_begin = edges[0];
    assert_eq!(
        (pc_begin.offset, pc_begin.target, pc_begin.kind.op),
        (0x20, symbol(&g, "_inside"), RelocOp::Difference),
        "{}",
        rerun(test)
    );
    let layout = Layout::new(&g);
    let eh_id = section(&g, eh_name);
    assert_eq!(
        layout.value(&g, eh_id, &pc_begin),
        layout.named(&g, "_inside") - (layout.bases[eh_id] + 0x20),
        "{}",
        rerun(test)
    );
}

/// A record's length or CIE pointer relocated other than by a difference
/// within the section is an error naming the record and the relocation.
#[test]
fn eh_frame_structure_relocated_out_of_the_section_is_an_error() {
    let test = "eh_frame_structure_relocated_out_of_the_section_is_an_error";
    let original = asm(EH_FRAME_IN_ATOMS);
    let eh_name = "__TEXT,__eh_frame";
    let inside = graph(&original)
        .symbols
        .iter()
        .position(|s| s.name == "_inside")
        .unwrap() as u32;
    let subtractor = relocs_at(&original, eh_name, 0x1c)
        .into_iter()
        .find(|&at| read_reloc(&original, at).1 >> 28 == 5)
        .expect("the CIE pointer's SUBTRACTOR");
    let (address, word1) = read_reloc(&original, subtractor);
    // The CIE pointer as `Lfde_start - _inside`: a value that depends on
    // where `__text` goes.
    let mut data = original.clone();
    write_reloc(
        &mut data,
        subtractor,
        (address, word1 & 0xff00_0000 | inside),
    );
    let expected = "test.o: malformed object: test.o section __TEXT,__eh_frame at offset 0x18: \
                    the record's length or CIE pointer has a relocation \
                    (X86_64_RELOC_SUBTRACTOR against `_inside.eh` - `_inside` at offset 0x1c) \
                    that is not a difference within the section (FDE refers to an unknown CIE)";
    match parse("test.o", &data) {
        Err(error @ LinkError::Malformed { .. }) => {
            assert_eq!(error.to_string(), expected, "{}", rerun(test))
        }
        Err(other) => panic!("expected a malformed object, got: {other}\n{}", rerun(test)),
        Ok(_) => panic!("the object parsed\n{}", rerun(test)),
    }
}

#[test]
fn a_c_object_with_initializers_and_weak_symbols() {
    let data = c(r#"
        extern int g(int);
        int counter;
        static int sx = 3;
        __attribute__((weak)) int wk(void) { return 1; }
        extern int wref(void) __attribute__((weak_import));
        __attribute__((visibility("hidden"))) int hid = 5;
        int *pp = &sx;
        extern void hook(void);
        // Calls out, so that the compiler cannot run it at compile time.
        __attribute__((constructor)) static void init(void) { hook(); }
        int f(int x) { if (wref) wref(); return g(x) + sx + counter + hid; }
    "#);
    let g = graph(&data);
    has_kinds(
        &g,
        &[
            "X86_64_RELOC_UNSIGNED",
            "X86_64_RELOC_SIGNED",
            "X86_64_RELOC_BRANCH",
        ],
    );
    let init = section(&g, "__DATA,__mod_init_func");
    assert_eq!(
        g.sections[init].role,
        SectionRole::Initializers {
            priority: None,
            reversed: false
        }
    );
    assert_eq!(g.sections[init].edges.len(), 1);
    let sym = |name| &g.symbols[symbol(&g, name)];
    assert_eq!(sym("_wk").binding, Binding::Weak);
    assert_eq!(sym("_wk").kind, SymbolKind::Function);
    assert_eq!(sym("_hid").visibility, Visibility::Hidden);
    assert_eq!(sym("_wref").binding, Binding::Weak);
    assert_eq!(sym("_wref").definition, Definition::Undefined);
    assert_eq!(sym("_sx").binding, Binding::Local);
    assert_eq!(sym("_sx").kind, SymbolKind::Data);
    // Every FDE got its pc_begin edge.
    let eh = section(&g, "__TEXT,__eh_frame");
    assert!(
        g.sections[eh]
            .edges
            .iter()
            .any(|e| e.kind == EH_FRAME_DELTA64)
    );
}

/// Where the `index`th relocation of a section is in the file.
fn reloc_at(data: &[u8], section_name: &str, index: usize) -> usize {
    let header = Header::parse(data, 0).unwrap();
    let mut commands = header.load_commands(LE, data, 0).unwrap();
    while let Some(command) = commands.next().unwrap() {
        if let Some((segment, section_data)) = command.segment_64().unwrap() {
            for s in segment.sections(LE, section_data).unwrap() {
                let name = format!(
                    "{},{}",
                    String::from_utf8_lossy(s.segment_name()),
                    String::from_utf8_lossy(s.name())
                );
                if name == section_name {
                    assert!(index < s.nreloc(LE) as usize);
                    return s.reloff(LE) as usize + index * 8;
                }
            }
        }
    }
    panic!("no section {section_name}");
}

/// The relocation as stored: (r_address, r_word1).
fn read_reloc(data: &[u8], at: usize) -> (u32, u32) {
    (
        u32::from_le_bytes(data[at..at + 4].try_into().unwrap()),
        u32::from_le_bytes(data[at + 4..at + 8].try_into().unwrap()),
    )
}

fn write_reloc(data: &mut [u8], at: usize, (address, word1): (u32, u32)) {
    data[at..at + 4].copy_from_slice(&address.to_le_bytes());
    data[at + 4..at + 8].copy_from_slice(&word1.to_le_bytes());
}

fn with_type(word1: u32, r_type: u32) -> u32 {
    word1 & 0x0fff_ffff | r_type << 28
}

fn error_of(data: &[u8]) -> LinkError {
    match parse("test.o", data) {
        Ok(_) => panic!("the corrupted object parsed"),
        Err(e) => e,
    }
}

fn assert_malformed(data: &[u8], needle: &str) {
    let error = error_of(data);
    assert!(
        matches!(error, LinkError::Malformed { .. }) && error.to_string().contains(needle),
        "expected a malformed object ({needle}), got: {error}"
    );
}

#[test]
fn corrupt_relocations_are_errors() {
    let original = asm(r#"
        .section __TEXT,__text,regular,pure_instructions
        .globl _f
    _f:
        leaq _x(%rip), %rax
        movq _y@GOTPCREL(%rip), %rax
        ret
        .section __DATA,__data
    _d:
        .quad _a - _d
    _a: .quad 0
    "#);
    {
        let g = graph(&original);
        has_kinds(
            &g,
            &[
                "X86_64_RELOC_SIGNED",
                "X86_64_RELOC_GOT_LOAD",
                "X86_64_RELOC_SUBTRACTOR",
            ],
        );
    }
    // Relocations are listed last to first: __text's 1 is the leaq.
    let signed = reloc_at(&original, "__TEXT,__text", 1);
    let got_load = reloc_at(&original, "__TEXT,__text", 0);
    let subtractor = reloc_at(&original, "__DATA,__data", 0);
    let unsigned = reloc_at(&original, "__DATA,__data", 1);
    let (address, word1) = read_reloc(&original, signed);
    assert_eq!(word1 >> 28, 1, "X86_64_RELOC_SIGNED");
    let corrupt = |at: usize, reloc: (u32, u32)| {
        let mut data = original.clone();
        write_reloc(&mut data, at, reloc);
        data
    };

    // A length the type never has (8 bytes instead of 4).
    let data = corrupt(signed, (address, word1 | 3 << 25));
    assert_malformed(&data, "X86_64_RELOC_SIGNED with r_pcrel 1 and r_length 3");
    // Not pc-relative.
    let data = corrupt(signed, (address, word1 & !(1 << 24)));
    assert_malformed(&data, "X86_64_RELOC_SIGNED with r_pcrel 0");
    // Past the section's end.
    let data = corrupt(signed, (0x1000, word1));
    assert_malformed(&data, "does not fit in the section");
    // The last 4 bytes of the section hold no whole 4-byte field either.
    let data = corrupt(signed, (0x0e, word1));
    assert_malformed(&data, "does not fit in the section");
    // A symbol index past the table.
    let data = corrupt(signed, (address, word1 & 0xff00_0000 | 0x00ff_fff0));
    assert_malformed(&data, "symbol index");
    // A section ordinal past the table (non-extern).
    let data = corrupt(signed, (address, word1 & 0xf700_0000 | 200));
    assert_malformed(&data, "section ordinal 200 is out of range");
    // Section ordinal 0 (R_ABS).
    let data = corrupt(signed, (address, word1 & 0xf700_0000));
    assert!(matches!(
        error_of(&data),
        LinkError::UnsupportedRelocation(ref u) if u.why.contains("R_ABS")
    ));
    // Scattered.
    let data = corrupt(signed, (address | macho::R_SCATTERED, word1));
    assert_malformed(&data, "scattered");
    // A TLV reference to a section, not a symbol (r_extern = 0).
    let data = corrupt(
        signed,
        (address, with_type(word1, 9) & !(1 << 27) & 0xff00_0000 | 1),
    );
    assert_malformed(&data, "X86_64_RELOC_TLV must refer to a symbol");
    // A type x86-64 does not define.
    let data = corrupt(signed, (address, with_type(word1, 12)));
    match error_of(&data) {
        LinkError::UnsupportedRelocation(u) => {
            assert!(
                u.why.contains("unknown x86-64 Mach-O relocation type 12"),
                "{}",
                u.why
            );
        }
        other => panic!("{other}"),
    }
    // A GOT load must name a symbol.
    let (got_address, got_word1) = read_reloc(&original, got_load);
    let data = corrupt(got_load, (got_address, got_word1 & 0xf700_0000 | 1));
    assert_malformed(&data, "must refer to a symbol");
    // A SUBTRACTOR without its UNSIGNED.
    let (sub_address, sub_word1) = read_reloc(&original, subtractor);
    assert_eq!(sub_word1 >> 28, 5, "X86_64_RELOC_SUBTRACTOR");
    let (un_address, un_word1) = read_reloc(&original, unsigned);
    assert_eq!(un_word1 >> 28, 0, "X86_64_RELOC_UNSIGNED");
    let data = corrupt(
        unsigned,
        (un_address, with_type(un_word1, 1) | 1 << 24 | 2 << 25),
    );
    assert_malformed(&data, "not followed by an X86_64_RELOC_UNSIGNED");
    let data = corrupt(unsigned, (un_address + 8, un_word1));
    assert_malformed(&data, "not followed by an X86_64_RELOC_UNSIGNED");
    let data = corrupt(unsigned, (un_address, un_word1 & !(3 << 25) | 2 << 25));
    assert_malformed(&data, "not followed by an X86_64_RELOC_UNSIGNED");
    // SUBTRACTOR as the last relocation of the section.
    let mut data = corrupt(subtractor, read_reloc(&original, unsigned));
    write_reloc(&mut data, unsigned, (sub_address, sub_word1));
    assert_malformed(&data, "not followed by an X86_64_RELOC_UNSIGNED");
}

/// Where the `index`th nlist entry is in the file.
fn nlist_at(data: &[u8], index: usize) -> usize {
    let header = Header::parse(data, 0).unwrap();
    let mut commands = header.load_commands(LE, data, 0).unwrap();
    while let Some(command) = commands.next().unwrap() {
        if let Some(symtab) = command.symtab().unwrap() {
            return symtab.symoff.get(LE) as usize + index * 16;
        }
    }
    panic!("no symbol table");
}

#[test]
fn corrupt_symbols_are_errors() {
    let original = asm(r#"
        .section __TEXT,__text,regular,pure_instructions
        .globl _f
    _f: ret
    "#);
    let f = graph(&original)
        .symbols
        .iter()
        .position(|s| s.name == "_f")
        .unwrap();
    let at = nlist_at(&original, f);
    // n_type 4, n_sect 5, n_desc 6..8, n_value 8..16.
    let mut data = original.clone();
    data[at + 5] = 9;
    assert_malformed(&data, "symbol _f: section ordinal 9 is out of range");
    let mut data = original.clone();
    data[at + 8..at + 16].copy_from_slice(&0x100u64.to_le_bytes());
    assert_malformed(&data, "symbol _f: address 0x100 is outside");
    let mut data = original.clone();
    data[at + 4] = macho::N_INDR.0 | macho::N_EXT.0;
    assert!(matches!(
        error_of(&data),
        LinkError::UnsupportedObject { .. }
    ));
    let mut data = original.clone();
    data[at + 6..at + 8].copy_from_slice(&macho::N_SYMBOL_RESOLVER.0.to_le_bytes());
    assert!(matches!(
        error_of(&data),
        LinkError::UnsupportedObject { .. }
    ));
    let mut data = original.clone();
    data[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_malformed(&data, "symbol");
}

/// An external symbol whose name is empty (its n_strx at a NUL byte of
/// the string table) is refused, naming the object and the symbol index.
#[test]
fn an_external_symbol_without_a_name_is_refused() {
    let test = "an_external_symbol_without_a_name_is_refused";
    let original = asm(r#"
        .section __TEXT,__text,regular,pure_instructions
        .globl _f
    _f: ret
        .globl _g
    _g: call _h
    _l: ret
    "#);
    let g = graph(&original);
    let header = Header::parse(&original[..], 0).unwrap();
    let mut commands = header.load_commands(LE, &original[..], 0).unwrap();
    let symtab = loop {
        let command = commands.next().unwrap().expect("a symbol table");
        if let Some(symtab) = command.symtab().unwrap() {
            break symtab;
        }
    };
    let (stroff, strsize) = (
        symtab.stroff.get(LE) as usize,
        symtab.strsize.get(LE) as usize,
    );
    let strings = &original[stroff..stroff + strsize];
    // The offset of a NUL byte of the table: an empty string.
    let empty = strings
        .iter()
        .position(|&b| b == 0)
        .expect("a NUL byte in the string table") as u32;
    for name in ["_f", "_h"] {
        let index = g.symbols.iter().position(|s| s.name == name).unwrap();
        let external = g.symbols[index].binding == Binding::Global;
        assert!(external, "{name} is external");
        let at = nlist_at(&original, index);
        let mut data = original.clone();
        data[at..at + 4].copy_from_slice(&empty.to_le_bytes());
        let Err(error) = parse("test.o", &data) else {
            panic!("{name} without a name parsed\n{}", rerun(test));
        };
        let message = error.to_string();
        assert!(
            matches!(&error, LinkError::Malformed { object, .. } if object == "test.o")
                && message.contains(&format!(
                    "symbol {index}: an external (N_EXT) symbol has an empty name (n_strx {empty})"
                )),
            "{name} without a name: {message}\n{}",
            rerun(test)
        );
    }
    // A local symbol may have no name: nothing looks it up.
    let local = g.symbols.iter().position(|s| s.name == "_l").unwrap();
    assert_eq!(g.symbols[local].binding, Binding::Local);
    let at = nlist_at(&original, local);
    let mut data = original.clone();
    data[at..at + 4].copy_from_slice(&empty.to_le_bytes());
    let parsed = parse("test.o", &data).unwrap_or_else(|e| panic!("{e}\n{}", rerun(test)));
    assert_eq!(parsed.symbols[local].name, "", "{}", rerun(test));
}

#[test]
fn truncated_and_scrambled_objects_never_panic() {
    let original = asm(&format!(
        r#"
        .section __TEXT,__text,regular,pure_instructions
        .globl _f
    _f:
        .cfi_startproc
        movl $1, _x(%rip)
        movb $1, Lloc(%rip)
        call _g
        movq _y@GOTPCREL(%rip), %rax
        ret
        .cfi_endproc
        .section __DATA,__data
    _d:
        .quad _a - _d
        .long _x
        .quad Lloc
    _a: .quad 0
        .zerofill __DATA,__bss,_z,64,4
        {TARGETS}
    "#
    ));
    graph(&original);
    // Every prefix: the symbol and string tables come last, so every
    // proper prefix loses something the parse needs.
    for len in 0..original.len() {
        assert!(
            parse("test.o", &original[..len]).is_err(),
            "a {len}-byte prefix parsed"
        );
    }
    // Scrambled bytes (a fixed pseudo-random sequence): errors or
    // graphs, never a panic or an out-of-bounds read.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    // Most of the damage goes where the structure is: the header and
    // load commands, and the relocations, symbols and strings after the
    // section contents; the rest anywhere (the contents hold addends and
    // `__eh_frame`).
    let header = Header::parse(&original[..], 0).unwrap();
    let commands_end = 32 + header.sizeofcmds(LE) as u64;
    let contents_end = {
        let eh = &graph(&original).sections;
        let text = eh.iter().map(|s| s.data.len() as u64).sum::<u64>();
        commands_end + text
    };
    let len = original.len() as u64;
    let iterations: usize = std::env::var("SOLDER_MACHO_SCRAMBLES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(6000);
    for _ in 0..iterations {
        let mut data = original.clone();
        for _ in 0..1 + next() % 4 {
            let at = match next() % 3 {
                0 => next() % commands_end,
                1 => contents_end + next() % (len - contents_end),
                _ => next() % len,
            };
            data[at as usize] = next() as u8;
        }
        let _ = parse("test.o", &data);
    }
}

#[test]
fn unsupported_objects() {
    let unsupported = |data: &[u8], needle: &str| {
        let error = error_of(data);
        assert!(
            matches!(error, LinkError::UnsupportedObject { .. })
                && error.to_string().contains(needle),
            "expected an unsupported object ({needle}), got: {error}"
        );
    };
    let x86_64 = asm("    .globl _f\n_f: ret\n");
    graph(&x86_64);
    let mut big = x86_64.clone();
    big[..4].copy_from_slice(&macho::MH_MAGIC_64.to_be_bytes());
    unsupported(&big, "big-endian");
    let mut executable = x86_64.clone();
    executable[12..16].copy_from_slice(&macho::MH_EXECUTE.0.to_le_bytes());
    unsupported(&executable, "MH_OBJECT");
    let mut fat = x86_64.clone();
    fat[..4].copy_from_slice(&macho::FAT_MAGIC.to_be_bytes());
    unsupported(&fat, "universal");
    let i386 = build("i386-apple-darwin", "assembler", "_f: ret\n", &[]);
    unsupported(&i386, "32-bit");
    let arm64 = build("arm64-apple-darwin", "assembler", "_f: ret\n", &[]);
    unsupported(&arm64, "arm64");
    assert_malformed(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0", "bad Mach-O magic");
    assert_malformed(b"\xcf\xfa", "too short");

    // Thread-local initializer functions (C++ thread_local objects with
    // dynamic initialization).
    let init = asm(r#"
        .section __DATA,__thread_init,thread_local_init_function_pointers
        .quad _f
        .text
    _f:
        ret
    "#);
    unsupported(&init, "dynamic initializers");
}

/// Thread-local variables: the template sections have the thread-local
/// role and their symbols are thread-local; each 24-byte descriptor of
/// `__thread_vars` keeps its thunk edge and gets the key (module id) and
/// offset edges against the variable's initial value; a TLV reference is a
/// relaxable descriptor load.
#[test]
fn thread_local_variables_become_a_template_and_descriptors() {
    // (TLS needs a deployment target that has it.)
    let data = build(
        "x86_64-apple-macosx10.15",
        "c",
        "_Thread_local int tv = 1; _Thread_local long tz; int get(void) { return tv + tz; }",
        &["-O2", "-nostdinc"],
    );
    let g = graph(&data);
    for name in ["__DATA,__thread_data", "__DATA,__thread_bss"] {
        assert_eq!(
            g.sections[section(&g, name)].role,
            SectionRole::ThreadLocal,
            "{name}"
        );
    }
    let init = symbol(&g, "_tv$tlv$init");
    assert_eq!(g.symbols[init].kind, SymbolKind::ThreadLocal);
    let vars = "__DATA,__thread_vars";
    assert_eq!(g.sections[section(&g, vars)].role, SectionRole::Plain);
    let descriptor = match g.symbols[symbol(&g, "_tv")].definition {
        Definition::Defined { offset, .. } => offset,
        other => panic!("_tv: {other:?}"),
    };
    let thunk = edge_at(&g, vars, descriptor);
    assert_eq!(g.symbols[thunk.target].name, "__tlv_bootstrap");
    let key = edge_at(&g, vars, descriptor + 8);
    assert_eq!((key.kind, key.target), (TLV_KEY, init));
    let offset = edge_at(&g, vars, descriptor + 16);
    assert_eq!((offset.kind, offset.target), (TLV_OFFSET, init));
    has_kinds(&g, &["X86_64_RELOC_TLV"]);
}
