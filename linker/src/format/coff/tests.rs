//! Objects are built at test time by clang for `x86_64-pc-windows-msvc`;
//! each test first checks (with the `object` crate) that the object has
//! what the test exercises, then checks the graph.

use object::read::coff::{CoffHeader, Symbol as _};

use super::directives::{alternate_name, directive_tokens};
use super::*;
use crate::arch::{Check, Encoding, RelocOp};
use object::LittleEndian as LE;
use object::pe;

/// Compiles `source` (`lang` as clang's `-x` says) into a COFF object.
fn build(lang: &str, source: &str, flags: &[&str]) -> Vec<u8> {
    crate::test_support::clang_object("x86_64-pc-windows-msvc", lang, source, flags)
}

fn c(source: &str) -> Vec<u8> {
    build("c", source, &["-O2", "-nostdinc", "-fno-stack-protector"])
}

fn asm(source: &str) -> Vec<u8> {
    build("assembler", source, &[])
}

fn graph(data: &[u8]) -> LinkGraph<'_> {
    parse("test.obj", data).unwrap_or_else(|e| panic!("{e}"))
}

/// The raw view of an object, for checking what it contains.
struct Raw<'a> {
    data: &'a [u8],
    symtab_at: usize,
    sections: object::read::coff::SectionTable<'a>,
    symtab: object::read::coff::SymbolTable<'a, &'a [u8]>,
}

/// One COFF relocation as the file has it.
#[derive(Debug)]
struct RawReloc {
    offset: u32,
    typ: u16,
    symbol: usize,
    symbol_name: String,
    /// File offset of the `IMAGE_RELOCATION` record.
    record_at: usize,
    /// File offset of the field it patches.
    field_at: usize,
}

impl<'a> Raw<'a> {
    fn new(data: &'a [u8]) -> Raw<'a> {
        let mut offset = 0;
        let header = pe::ImageFileHeader::parse(data, &mut offset).unwrap();
        Raw {
            data,
            symtab_at: header.pointer_to_symbol_table.get(LE) as usize,
            sections: header.sections(data, offset).unwrap(),
            symtab: header.symbols(data).unwrap(),
        }
    }

    fn section(&self, name: &str) -> &'a pe::ImageSectionHeader {
        self.sections
            .iter()
            .find(|s| s.name(self.symtab.strings()) == Ok(name.as_bytes()))
            .unwrap_or_else(|| panic!("the object has no section {name}"))
    }

    /// The 1-based number of a section.
    fn section_number(&self, name: &str) -> u16 {
        let section = self.section(name);
        let index = self.sections.iter().position(|s| std::ptr::eq(s, section));
        index.unwrap() as u16 + 1
    }

    fn has_section(&self, name: &str) -> bool {
        self.sections
            .iter()
            .any(|s| s.name(self.symtab.strings()) == Ok(name.as_bytes()))
    }

    fn relocs(&self, name: &str) -> Vec<RawReloc> {
        let section = self.section(name);
        let relocs = section.coff_relocations(self.data).unwrap();
        // Where the records start (after the count record of an
        // overflowing section).
        let base = (relocs.as_ptr() as usize).wrapping_sub(self.data.as_ptr() as usize);
        relocs
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let symbol = r.symbol_table_index.get(LE) as usize;
                let offset = r.virtual_address.get(LE);
                RawReloc {
                    offset,
                    typ: r.typ.get(LE).0,
                    symbol,
                    symbol_name: self.symbol_name(symbol),
                    record_at: base + i * 10,
                    field_at: section.pointer_to_raw_data.get(LE) as usize + offset as usize,
                }
            })
            .collect()
    }

    fn symbol_name(&self, index: usize) -> String {
        let sym = self.symtab.symbol(SymbolIndex(index)).unwrap();
        String::from_utf8(sym.name(self.symtab.strings()).unwrap().to_vec()).unwrap()
    }

    /// Index and entry of the first symbol called `name`.
    fn symbol(&self, name: &str) -> (usize, &'a pe::ImageSymbol) {
        self.symtab
            .iter()
            .find(|(_, s)| s.name(self.symtab.strings()) == Ok(name.as_bytes()))
            .map(|(i, s)| (i.0, s))
            .unwrap_or_else(|| panic!("the object has no symbol {name}"))
    }

    /// The selection (and associated section number) of a section.
    fn comdat(&self, name: &str) -> (u8, u16) {
        let (index, _) = self.symbol(name);
        let aux = self.symtab.aux_section(SymbolIndex(index)).unwrap();
        (aux.selection.0, aux.number.get(LE))
    }
}

fn section<'g>(g: &'g LinkGraph<'_>, name: &str) -> &'g Section<'g> {
    g.sections
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no section {name} in the graph"))
}

fn section_id(g: &LinkGraph<'_>, name: &str) -> SectionId {
    g.sections
        .iter()
        .position(|s| s.name == name)
        .unwrap_or_else(|| panic!("no section {name} in the graph"))
}

fn symbol<'g>(g: &'g LinkGraph<'_>, name: &str) -> (SymbolId, &'g Symbol<'g>) {
    g.symbols
        .iter()
        .enumerate()
        .find(|(_, s)| s.name == name)
        .unwrap_or_else(|| panic!("no symbol {name} in the graph"))
}

/// (offset, kind name, target name, addend) of a section's edges.
fn edges<'g>(g: &'g LinkGraph<'_>, name: &str) -> Vec<(u64, &'static str, &'g str, i64)> {
    section(g, name)
        .edges
        .iter()
        .map(|e| (e.offset, *e.kind.name, g.symbols[e.target].name, e.addend))
        .collect()
}

fn set_u16(data: &mut [u8], at: usize, value: u16) {
    data[at..at + 2].copy_from_slice(&value.to_le_bytes());
}

fn set_u32(data: &mut [u8], at: usize, value: u32) {
    data[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

const LIFECYCLE_C: &str = r#"
    int counter;
    extern int helper(int);
    __attribute__((constructor)) static void up(void) { counter += helper(1); }
    __attribute__((destructor)) static void down(void) { counter -= helper(2); }
    __attribute__((constructor(101))) static void first(void) { counter = helper(3); }
    #pragma comment(linker, "/alternatename:helper=helper_default")
    int helper_default(int x) { return x; }
"#;

#[test]
fn constructors_and_destructors_become_crt_arrays() {
    let data = c(LIFECYCLE_C);
    let raw = Raw::new(&data);
    for name in [".CRT$XCU", ".CRT$XTX", ".CRT$XCA00101"] {
        assert_eq!(
            raw.relocs(name)[0].typ,
            pe::IMAGE_REL_AMD64_ADDR64.0,
            "{name}"
        );
    }
    let g = graph(&data);
    assert_eq!(g.format, ObjectFormat::Coff);
    let initializers = SectionRole::Initializers {
        priority: Some(1),
        reversed: false,
    };
    let terminators = SectionRole::Finalizers {
        priority: Some(1),
        reversed: true,
    };
    for (name, role, function) in [
        (".CRT$XCU", initializers, "up"),
        (".CRT$XCA00101", initializers, "first"),
        (".CRT$XTX", terminators, "down"),
    ] {
        let s = section(&g, name);
        assert_eq!(
            (s.role, s.protection, s.size),
            (role, Protection::ReadOnly, 8)
        );
        assert_eq!(
            edges(&g, name),
            [(0, "IMAGE_REL_AMD64_ADDR64", function, 0)]
        );
    }
    let text = section(&g, ".text");
    assert_eq!(
        (text.protection, text.role),
        (Protection::Code, SectionRole::Plain)
    );
    let (_, up) = symbol(&g, "up");
    assert_eq!(
        (up.binding, up.kind),
        (Binding::Local, SymbolKind::Function)
    );
}

#[test]
fn crt_roles_follow_the_dollar_suffix() {
    let data = asm(r#"
        .text
        .globl f
    f:  ret
        .section .CRT$XIB,"dr"
        .quad f
        .section .CRT$XCU,"dr"
        .quad f
        .section .CRT$XPX,"dr"
        .quad f
        .section .CRT$XTZ,"dr"
        .quad f
    "#);
    let raw = Raw::new(&data);
    let g = graph(&data);
    for (name, role) in [
        (
            ".CRT$XIB",
            SectionRole::Initializers {
                priority: Some(0),
                reversed: false,
            },
        ),
        (
            ".CRT$XCU",
            SectionRole::Initializers {
                priority: Some(1),
                reversed: false,
            },
        ),
        (
            ".CRT$XPX",
            SectionRole::Finalizers {
                priority: Some(0),
                reversed: true,
            },
        ),
        (
            ".CRT$XTZ",
            SectionRole::Finalizers {
                priority: Some(1),
                reversed: true,
            },
        ),
    ] {
        assert_eq!(raw.relocs(name).len(), 1, "{name}");
        assert_eq!(section(&g, name).role, role, "{name}");
        assert_eq!(section(&g, name).protection, Protection::ReadOnly);
    }
}

#[test]
fn tls_and_other_crt_tables_are_unsupported() {
    for (source, section, why) in [
        (
            ".section .CRT$XLB,\"dr\"\n.quad 0\n",
            ".CRT$XLB",
            "only the CRT's",
        ),
        (
            ".section .tls$,\"dw\"\n.long 1\n",
            ".tls$",
            "thread-local storage",
        ),
    ] {
        let data = asm(source);
        assert!(Raw::new(&data).has_section(section));
        match parse("t.obj", &data) {
            Err(LinkError::UnsupportedObject { reason, .. }) => {
                assert!(reason.contains(section) && reason.contains(why), "{reason}")
            }
            other => panic!("{section}: {other:?}"),
        }
    }
}

#[test]
fn unwind_tables_debug_info_and_directives_are_not_loaded() {
    let data = build(
        "c",
        LIFECYCLE_C,
        &["-O2", "-nostdinc", "-fno-stack-protector", "-g"],
    );
    let raw = Raw::new(&data);
    for name in [".pdata", ".xdata", ".drectve", ".llvm_addrsig", ".debug$S"] {
        assert!(raw.has_section(name), "the object has no {name}");
    }
    assert!(!raw.relocs(".pdata").is_empty());
    let g = graph(&data);
    for s in &g.sections {
        assert!(
            !s.name.starts_with(".pdata")
                && !s.name.starts_with(".xdata")
                && !s.name.starts_with(".debug")
                && !s.name.starts_with(".llvm")
                && s.name != ".drectve",
            "{} is loaded",
            s.name
        );
    }
    let (_, pdata) = symbol(&g, ".pdata");
    assert_eq!(
        (pdata.kind, pdata.definition),
        (SymbolKind::Section, Definition::Unplaced)
    );
}

#[test]
fn auxiliary_records_keep_symbol_indices() {
    let data = build(
        "c",
        LIFECYCLE_C,
        &["-O2", "-nostdinc", "-fno-stack-protector", "-g"],
    );
    let raw = Raw::new(&data);
    let g = graph(&data);
    // Every symbol-table entry has a graph symbol at its index; the
    // auxiliary records are nameless placeholders.
    assert!(g.symbols.len() >= raw.symtab.len());
    let mut aux = 0;
    for (index, sym) in raw.symtab.iter() {
        assert_eq!(g.symbols[index.0].name, raw.symbol_name(index.0));
        for slot in 1..=usize::from(sym.number_of_aux_symbols()) {
            let placeholder = &g.symbols[index.0 + slot];
            assert_eq!(placeholder.name, "");
            assert_eq!(placeholder.definition, Definition::Unplaced);
            aux += 1;
        }
    }
    assert!(aux > 10, "only {aux} auxiliary records");
    // Every loaded relocation points at the symbol the file names (the
    // frames made from .pdata are not the file's).
    let mut checked = 0;
    for s in g
        .sections
        .iter()
        .filter(|s| s.role != SectionRole::UnwindFrames)
    {
        let relocs = raw.relocs(&s.name);
        assert_eq!(relocs.len(), s.edges.len(), "{}", s.name);
        for r in relocs {
            let edge = s
                .edges
                .iter()
                .find(|e| e.offset == u64::from(r.offset))
                .unwrap();
            assert_eq!(edge.target, r.symbol);
            assert_eq!(g.symbols[edge.target].name, r.symbol_name);
            checked += 1;
        }
    }
    // Targets after the `.file` and section records.
    let (helper, _) = symbol(&g, "helper");
    assert!(helper > aux, "helper is symbol {helper}");
    assert!(checked >= 6);
}

#[test]
fn common_symbols_have_their_size_and_a_natural_alignment() {
    let data = build(
        "c",
        "int counter; double table[8]; char flag;\n\
         int use(void) { return counter + (int)table[3] + flag; }",
        &["-O2", "-nostdinc", "-fcommon"],
    );
    let raw = Raw::new(&data);
    let (_, counter) = raw.symbol("counter");
    assert_eq!(
        (counter.section_number(), counter.value()),
        (pe::IMAGE_SYM_UNDEFINED, 4)
    );
    let g = graph(&data);
    for (name, size, align) in [("counter", 4, 4), ("table", 64, 32), ("flag", 1, 1)] {
        let (_, sym) = symbol(&g, name);
        assert_eq!(sym.definition, Definition::Common { align }, "{name}");
        assert_eq!(
            (sym.size, sym.binding, sym.kind),
            (size, Binding::Global, SymbolKind::Data)
        );
    }
}

#[test]
fn weak_definitions_and_weak_references() {
    let data = c(r#"
        __attribute__((weak)) int wf(void) { return 1; }
        extern int g(void) __attribute__((weak));
        int use(void) { return (g ? g() : 0) + wf(); }
    "#);
    let raw = Raw::new(&data);
    for name in ["wf", "g"] {
        assert_eq!(
            raw.symbol(name).1.storage_class(),
            pe::IMAGE_SYM_CLASS_WEAK_EXTERNAL
        );
    }
    let g = graph(&data);
    let (_, wf) = symbol(&g, "wf");
    let text = section_id(&g, ".text");
    assert_eq!(wf.binding, Binding::Weak);
    assert!(
        wf.definition
            .place()
            .is_some_and(|(section, _)| section == text),
        "{wf:?}"
    );
    assert_eq!(
        (wf.kind, wf.fallback.map(Fallback::id)),
        (SymbolKind::Function, None)
    );
    assert!(wf.size > 0);
    let (_, weak_ref) = symbol(&g, "g");
    assert_eq!(
        (
            weak_ref.binding,
            weak_ref.definition,
            weak_ref.fallback.map(Fallback::id)
        ),
        (Binding::Weak, Definition::Undefined, None)
    );
}

/// A weak external's characteristic decides whether its name is the
/// default's for every object: with no library search
/// (`IMAGE_WEAK_EXTERN_SEARCH_NOLIBRARY`) it stays undefined, falling back
/// to the default; with library search or as an alias it is the default's
/// (weak) definition.
#[test]
fn weak_externals_by_characteristic() {
    let original = c(r#"
        __attribute__((weak)) int wf(void) { return 1; }
        __attribute__((weak)) int wd = 5;
        int use(void) { return wf() + wd; }
    "#);
    let raw = Raw::new(&original);
    let text = section_id(&graph(&original), ".text");
    for characteristic in [
        pe::IMAGE_WEAK_EXTERN_SEARCH_NOLIBRARY,
        pe::IMAGE_WEAK_EXTERN_SEARCH_LIBRARY,
        pe::IMAGE_WEAK_EXTERN_SEARCH_ALIAS,
    ] {
        let mut data = original.clone();
        for name in ["wf", "wd"] {
            let (index, sym) = raw.symbol(name);
            assert_eq!(sym.storage_class(), pe::IMAGE_SYM_CLASS_WEAK_EXTERNAL);
            // The characteristic follows the default's index in the aux record.
            let at = raw.symtab_at + (index + 1) * pe::IMAGE_SIZEOF_SYMBOL + 4;
            data[at..at + 4].copy_from_slice(&characteristic.0.to_le_bytes());
            let patched = Raw::new(&data);
            let aux = patched
                .symtab
                .aux_weak_external(SymbolIndex(index))
                .unwrap();
            assert_eq!(aux.weak_search_type.get(LE), characteristic);
        }
        let g = graph(&data);
        let (_, wf) = symbol(&g, "wf");
        let (_, wd) = symbol(&g, "wd");
        let default = |name: &str| {
            g.symbols
                .iter()
                .position(|s| s.name.starts_with(&format!(".weak.{name}.default.")))
                .unwrap_or_else(|| panic!("no default for {name}"))
        };
        let rerun = "rerun: cargo test -p solder-linker --lib -- \
                     format::coff::tests::weak_externals_by_characteristic --exact";
        if characteristic == pe::IMAGE_WEAK_EXTERN_SEARCH_NOLIBRARY {
            for (sym, name, kind) in [
                (wf, "wf", SymbolKind::Function),
                (wd, "wd", SymbolKind::Data),
            ] {
                assert_eq!(
                    (
                        sym.binding,
                        sym.definition,
                        sym.fallback.map(Fallback::id),
                        sym.kind
                    ),
                    (
                        Binding::Weak,
                        Definition::Undefined,
                        Some(default(name)),
                        kind
                    ),
                    "{name} without library search\n{rerun}"
                );
            }
        } else {
            assert_eq!(wf.binding, Binding::Weak, "{rerun}");
            assert!(
                wf.definition
                    .place()
                    .is_some_and(|(section, _)| section == text),
                "{characteristic:?}: {wf:?}\n{rerun}"
            );
            assert_eq!(
                (wf.fallback.map(Fallback::id), wd.fallback.map(Fallback::id)),
                (None, None),
                "{rerun}"
            );
            assert!(
                matches!(wd.definition, Definition::Defined { .. }),
                "{characteristic:?}: {wd:?}\n{rerun}"
            );
        }
    }
}

#[test]
fn weak_external_with_an_undefined_default_falls_back_to_it() {
    let data = asm("
        .weak foo
        foo = bar
        .text
        ret
    ");
    let raw = Raw::new(&data);
    let (foo_index, foo) = raw.symbol("foo");
    assert_eq!(foo.storage_class(), pe::IMAGE_SYM_CLASS_WEAK_EXTERNAL);
    let g = graph(&data);
    let (bar, _) = symbol(&g, "bar");
    let foo = &g.symbols[foo_index];
    assert_eq!(
        (foo.binding, foo.definition, foo.fallback.map(Fallback::id)),
        (Binding::Weak, Definition::Undefined, Some(bar))
    );
}

#[test]
fn alternatename_pragma_gives_a_fallback() {
    let data = c(LIFECYCLE_C);
    let raw = Raw::new(&data);
    let directives = raw.section(".drectve").coff_data(&data[..]).unwrap();
    assert!(String::from_utf8_lossy(directives).contains("/alternatename:helper=helper_default"));
    let g = graph(&data);
    let (fallback, _) = symbol(&g, "helper_default");
    let (_, helper) = symbol(&g, "helper");
    assert_eq!(
        (helper.definition, helper.fallback.map(Fallback::id)),
        (Definition::Undefined, Some(fallback))
    );
}

#[test]
fn alternatename_directive_may_name_a_new_symbol() {
    let data = asm(r#"
        .text
        .globl user
    user:
        call baz
        call quux
        ret
        .globl foo_default
    foo_default:
        ret
        .section .drectve,"yn"
        .ascii " -ALTERNATENAME:\"baz\"=\"qux\"  /DEFAULTLIB:libcmt \"/alternatename:quux=foo_default\""
    "#);
    let raw = Raw::new(&data);
    assert!(raw.has_section(".drectve"));
    let g = graph(&data);
    // `qux` is not in the symbol table: it comes after every entry.
    let (qux, qux_sym) = symbol(&g, "qux");
    assert_eq!(qux, raw.symtab.len());
    assert_eq!(
        (
            qux_sym.binding,
            qux_sym.definition,
            qux_sym.fallback.map(Fallback::id)
        ),
        (Binding::Global, Definition::Undefined, None)
    );
    assert_eq!(symbol(&g, "baz").1.fallback.map(Fallback::id), Some(qux));
    let (foo_default, _) = symbol(&g, "foo_default");
    assert_eq!(
        symbol(&g, "quux").1.fallback.map(Fallback::id),
        Some(foo_default)
    );
    assert_eq!(g.symbols.len(), raw.symtab.len() + 1);
}

#[test]
fn directive_tokens_and_quotes() {
    assert_eq!(
        directive_tokens(" /a:\"b c\"  -d\t\"/e f\" "),
        ["/a:\"b c\"", "-d", "\"/e f\""]
    );
    assert_eq!(alternate_name("/ALTERNATENAME:a=b"), Ok(Some(("a", "b"))));
    assert_eq!(
        alternate_name("-alternatename:\"a\"=\"b\""),
        Ok(Some(("a", "b")))
    );
    assert_eq!(
        alternate_name("/alternatename:\"a=b\""),
        Ok(Some(("a", "b")))
    );
    assert_eq!(alternate_name("/DEFAULTLIB:libcmt"), Ok(None));
    assert!(alternate_name("/alternatename:a").is_err());
    assert!(alternate_name("/alternatename:=b").is_err());
}

#[test]
fn comdat_sections_become_groups_with_their_selection() {
    let data = asm(r#"
        .text
        .globl main
    main:
        ret
        .section .text$f,"xr",discard,f
        .globl f
    f:  ret
        .section .text$g,"xr",one_only,g
        .globl g
    g:  ret
        .section .text$h,"xr",same_size,h
        .globl h
    h:  ret
        .section .text$i,"xr",same_contents,i
        .globl i
    i:  ret
        .section .text$j,"xr",largest,j
        .globl j
    j:  ret
        .section .data$x,"dw",associative,f
    xsym:
        .quad f
        .section .data$y,"dw",associative,xsym
        .quad 1
        .section .data$z,"dw",associative,main
        .quad 2
        .section .xdata$f,"dr",associative,f
        .long 3
    "#);
    let raw = Raw::new(&data);
    for (name, selection) in [
        (".text$f", pe::IMAGE_COMDAT_SELECT_ANY),
        (".text$g", pe::IMAGE_COMDAT_SELECT_NODUPLICATES),
        (".text$h", pe::IMAGE_COMDAT_SELECT_SAME_SIZE),
        (".text$i", pe::IMAGE_COMDAT_SELECT_EXACT_MATCH),
        (".text$j", pe::IMAGE_COMDAT_SELECT_LARGEST),
        (".data$x", pe::IMAGE_COMDAT_SELECT_ASSOCIATIVE),
        (".data$y", pe::IMAGE_COMDAT_SELECT_ASSOCIATIVE),
        (".data$z", pe::IMAGE_COMDAT_SELECT_ASSOCIATIVE),
    ] {
        assert!(
            raw.section(name)
                .characteristics
                .get(LE)
                .contains(pe::IMAGE_SCN_LNK_COMDAT)
        );
        assert_eq!(raw.comdat(name).0, selection.0, "{name}");
    }
    // `.data$y` follows `.data$x`, which follows `.text$f`.
    assert_eq!(raw.comdat(".data$x").1, raw.section_number(".text$f"));
    assert_eq!(raw.comdat(".data$y").1, raw.section_number(".data$x"));

    let g = graph(&data);
    let id = |name| section_id(&g, name);
    let groups: Vec<_> = g
        .groups
        .iter()
        .map(|gr| (gr.signature, gr.selection, gr.sections.clone()))
        .collect();
    assert_eq!(
        groups,
        [
            (
                "f",
                ComdatSelection::Any,
                vec![id(".text$f"), id(".data$x"), id(".data$y")]
            ),
            ("g", ComdatSelection::NoDuplicates, vec![id(".text$g")]),
            ("h", ComdatSelection::SameSize, vec![id(".text$h")]),
            ("i", ComdatSelection::ExactMatch, vec![id(".text$i")]),
            ("j", ComdatSelection::Largest, vec![id(".text$j")]),
        ]
    );
    // Associated with a section that leads no group: always kept.
    assert!(section(&g, ".data$z").live);
    assert!(!g.sections.iter().any(|s| s.name.starts_with(".xdata")));
    // The COMDAT symbols keep the object's binding.
    assert_eq!(symbol(&g, "f").1.binding, Binding::Global);
}

#[test]
fn relocation_kinds_and_addends() {
    let data = asm(r#"
        .text
        .globl main
    main:
        movq %rax, x+8(%rip)
        call ext
        ret
        .data
        .globl x
    x:  .quad 0
        .quad ext+16
        .long ext+4
        .rva ext+12
        .secrel32 x+4
        .secidx x
        .quad main-8
    "#);
    let raw = Raw::new(&data);
    let types = |name| raw.relocs(name).iter().map(|r| r.typ).collect::<Vec<_>>();
    assert_eq!(
        types(".data"),
        [
            pe::IMAGE_REL_AMD64_ADDR64.0,
            pe::IMAGE_REL_AMD64_ADDR32.0,
            pe::IMAGE_REL_AMD64_ADDR32NB.0,
            pe::IMAGE_REL_AMD64_SECREL.0,
            pe::IMAGE_REL_AMD64_SECTION.0,
            pe::IMAGE_REL_AMD64_ADDR64.0,
        ]
    );
    assert_eq!(types(".text"), [pe::IMAGE_REL_AMD64_REL32.0; 2]);
    let g = graph(&data);
    assert_eq!(
        edges(&g, ".text"),
        [
            (3, "IMAGE_REL_AMD64_REL32", "x", 8 - 4),
            (8, "IMAGE_REL_AMD64_REL32", "ext", -4),
        ]
    );
    assert_eq!(
        edges(&g, ".data"),
        [
            (8, "IMAGE_REL_AMD64_ADDR64", "ext", 16),
            (16, "IMAGE_REL_AMD64_ADDR32", "ext", 4),
            (20, "IMAGE_REL_AMD64_ADDR32NB", "ext", 12),
            (24, "IMAGE_REL_AMD64_SECREL", "x", 4),
            (28, "IMAGE_REL_AMD64_SECTION", "x", 0),
            (30, "IMAGE_REL_AMD64_ADDR64", "main", -8),
        ]
    );
    let kinds: Vec<_> = section(&g, ".data")
        .edges
        .iter()
        .map(|e| (e.kind.op, e.kind.encoding))
        .collect();
    let int = |width, check| Encoding::Int { width, check };
    assert_eq!(
        kinds[..5],
        [
            (RelocOp::Absolute, int(8, Check::Wrap)),
            (RelocOp::Absolute, int(4, Check::Unsigned)),
            (RelocOp::ImageRelative, int(4, Check::Unsigned)),
            (RelocOp::SegmentOffset, int(4, Check::Unsigned)),
            (RelocOp::SegmentIndex, int(2, Check::Unsigned)),
        ]
    );
    let rel32 = section(&g, ".text")
        .edges
        .iter()
        .next()
        .expect("an edge")
        .kind;
    assert_eq!(
        (rel32.op, rel32.encoding),
        (RelocOp::PcRelative, int(4, Check::Signed))
    );
    assert!(
        g.sections
            .iter()
            .all(|s| s.edges.iter().all(|e| e.minus().is_none()))
    );
}

/// LLVM always writes `REL32` and folds the immediate's length into the
/// field; MSVC writes `REL32_N` with the field left at the displacement.
/// Rewriting LLVM's relocations MSVC's way must give the same addends.
#[test]
fn rel32_n_relocations_subtract_the_trailing_immediate() {
    let mut data = asm(r#"
        .text
        movb $1, x(%rip)
        cmpw $0x1234, x(%rip)
        movl $1, x(%rip)
        movq %rax, x(%rip)
        movq %rax, x+16(%rip)
        .data
    x:  .quad 0
    "#);
    let llvm: Vec<i64> = graph(&data).sections[0]
        .edges
        .iter()
        .map(|e| e.addend)
        .collect();
    assert_eq!(llvm, [-5, -6, -8, -4, 12]);
    let relocs = Raw::new(&data).relocs(".text");
    assert_eq!(relocs.len(), 5);
    // (type, content): the first three as MSVC writes them for these
    // instructions, the last two synthetic.
    let msvc = [
        (pe::IMAGE_REL_AMD64_REL32_1, 0),
        (pe::IMAGE_REL_AMD64_REL32_2, 0),
        (pe::IMAGE_REL_AMD64_REL32_4, 0),
        (pe::IMAGE_REL_AMD64_REL32_3, 0),
        (pe::IMAGE_REL_AMD64_REL32_5, 16),
    ];
    for (r, (typ, content)) in relocs.iter().zip(msvc) {
        set_u16(&mut data, r.record_at + 8, typ.0);
        set_u32(&mut data, r.field_at, content);
    }
    let relocs = Raw::new(&data).relocs(".text");
    assert_eq!(
        relocs.iter().map(|r| r.typ).collect::<Vec<_>>(),
        msvc.map(|(typ, _)| typ.0)
    );
    let g = graph(&data);
    let expected: Vec<_> = relocs
        .iter()
        .zip([
            ("IMAGE_REL_AMD64_REL32_1", -5),
            ("IMAGE_REL_AMD64_REL32_2", -6),
            ("IMAGE_REL_AMD64_REL32_4", -8),
            ("IMAGE_REL_AMD64_REL32_3", -7),
            ("IMAGE_REL_AMD64_REL32_5", 16 - 9),
        ])
        .map(|(r, (name, addend))| (u64::from(r.offset), name, "x", addend))
        .collect();
    assert_eq!(edges(&g, ".text"), expected);
}

#[test]
fn relocation_count_overflow_is_read_from_the_first_record() {
    let data = asm("
        .data
    x:  .rept 70000
        .quad x
        .endr
    ");
    let raw = Raw::new(&data);
    let data_section = raw.section(".data");
    assert!(
        data_section
            .characteristics
            .get(LE)
            .contains(pe::IMAGE_SCN_LNK_NRELOC_OVFL)
    );
    assert_eq!(data_section.number_of_relocations.get(LE), 0xffff);
    let g = graph(&data);
    let edges: Vec<Edge> = section(&g, ".data").edges.iter().collect();
    assert_eq!(edges.len(), 70000);
    assert_eq!(edges[69999].offset, 69999 * 8);
    assert!(edges.windows(2).all(|w| w[0].offset < w[1].offset));
}

#[test]
fn bigobj_objects_use_32_bit_section_numbers() {
    // More sections than a plain COFF header can count: LLVM switches to
    // the bigobj header. The COMDAT pair at the end is numbered past
    // 65535, so its association needs the high half of the number.
    let data = asm(r#"
        .text
        .globl main
    main:
        ret
        .altmacro
        .macro many n
        .section .data$\n,"dw"
        .quad main
        .endm
        .set n, 0
        .rept 65600
        many %n
        .set n, n+1
        .endr
        .section .text$last,"xr",discard,last
        .globl last
    last:
        ret
        .section .data$last,"dw",associative,last
        .quad last
    "#);
    assert!(is_bigobj(&data) && is_coff(&data));
    let g = graph(&data);
    let many = g
        .sections
        .iter()
        .filter(|s| s.name.starts_with(".data$") && s.name != ".data$last")
        .count();
    assert_eq!(many, 65600);
    let last = section_id(&g, ".text$last");
    assert!(last > 65536);
    let (_, sym) = symbol(&g, "last");
    assert_eq!(sym.definition, Definition::defined(last, 0));
    assert_eq!(g.groups.len(), 1);
    assert_eq!(g.groups[0].sections, [last, section_id(&g, ".data$last")]);
    assert_eq!(
        edges(&g, ".data$last"),
        [(0, "IMAGE_REL_AMD64_ADDR64", "last", 0)]
    );
}

#[test]
fn truncated_objects_are_errors() {
    let data = c(LIFECYCLE_C);
    assert!(Raw::new(&data).has_section(".llvm_addrsig")); // a long name, at the end
    for cut in 0..data.len() {
        match parse("cut.obj", &data[..cut]) {
            Err(LinkError::Malformed { .. }) => {}
            other => panic!("cut at {cut} of {}: {other:?}", data.len()),
        }
    }
}

#[test]
fn corrupted_bytes_never_panic() {
    let data = c(LIFECYCLE_C);
    for at in 0..data.len() {
        for value in [0x00, 0x01, 0x7f, 0x80, 0xff] {
            let mut bad = data.clone();
            bad[at] = value;
            let _ = parse("bad.obj", &bad);
        }
    }
}

#[test]
fn corrupted_relocations_are_errors() {
    let data = asm(r#"
        .file "t.s"
        .text
        .globl main
    main:
        call ext
        ret
    "#);
    let raw = Raw::new(&data);
    let relocs = raw.relocs(".text");
    assert_eq!(relocs.len(), 1);
    let r = &relocs[0];
    let (file, _) = raw.symbol(".file");
    let (text, _) = raw.symbol(".text");
    let text_size = raw.section(".text").size_of_raw_data.get(LE);
    let patch = |at: usize, bytes: &[u8]| {
        let mut bad = data.clone();
        bad[at..at + bytes.len()].copy_from_slice(bytes);
        match parse("bad.obj", &bad) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("patching {bytes:?} at {at} was accepted"),
        }
    };
    let symbol_at = r.record_at + 4;
    let cases = [
        (symbol_at, u32::MAX.to_le_bytes().to_vec(), "out of range"),
        (
            symbol_at,
            (text as u32 + 1).to_le_bytes().to_vec(),
            "auxiliary record",
        ),
        (
            symbol_at,
            (file as u32).to_le_bytes().to_vec(),
            "no address",
        ),
        (
            r.record_at,
            (text_size - 3).to_le_bytes().to_vec(),
            "does not fit",
        ),
        (
            r.record_at + 8,
            0x11u16.to_le_bytes().to_vec(),
            "unknown AMD64 COFF relocation type 17",
        ),
        (
            r.record_at + 8,
            pe::IMAGE_REL_AMD64_SREL32.0.to_le_bytes().to_vec(),
            "IMAGE_REL_AMD64_SREL32",
        ),
    ];
    for (at, bytes, expected) in cases {
        let message = patch(at, &bytes);
        assert!(message.contains(expected), "{message}");
        assert!(message.contains(".text"), "{message}");
    }
}

#[test]
fn weak_external_loops_are_malformed() {
    let mut data = asm("
        .weak foo
        foo = bar
        .weak bar
        bar = foo2
        .text
        ret
    ");
    let raw = Raw::new(&data);
    let (foo, _) = raw.symbol("foo");
    let (bar, bar_sym) = raw.symbol("bar");
    assert_eq!(bar_sym.storage_class(), pe::IMAGE_SYM_CLASS_WEAK_EXTERNAL);
    // The chain foo -> bar -> foo2 is fine...
    let g = graph(&data);
    assert_eq!(g.symbols[foo].fallback.map(Fallback::id), Some(bar));
    // ... but not bar -> foo.
    let aux_at = raw.symtab_at + (bar + 1) * pe::IMAGE_SIZEOF_SYMBOL;
    set_u32(&mut data, aux_at, foo as u32);
    match parse("loop.obj", &data) {
        Err(LinkError::Malformed { reason, .. }) => {
            assert!(reason.contains("loop"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}
