//! Tests of the ELF front-end.

use super::*;
use object::elf::FileHeader64;
use object::read::elf::ElfFile64;
use object::{Object, ObjectSection};

const RERUN: &str = "rerun: cargo test -p solder-linker --lib format::elf::tests";

/// Two `.text` relocations and one `.data` relocation.
const RELOCATIONS: &str = "
    .text
    .globl f
f:
    call g@PLT
    movq x@GOTPCREL(%rip), %rax
    ret
    .data
    .quad f
";

fn object() -> Vec<u8> {
    crate::test_support::clang_object("x86_64-linux-gnu", "assembler", RELOCATIONS, &[])
}

/// Whether `.text` keeps its records, and its edges as (offset, kind,
/// symbol, addend).
fn text_edges(bytes: &[u8]) -> (bool, Vec<(u64, &'static str, String, i64)>) {
    let g = parse("test.o", bytes).expect("parses");
    let text = g
        .sections
        .iter()
        .find(|s| s.name == ".text")
        .expect(".text");
    let records = matches!(text.edges, Edges::Records { .. });
    let edges = text
        .edges
        .iter()
        .map(|e| {
            (
                e.offset,
                *e.kind.name,
                g.symbols[e.target].name.to_string(),
                e.addend,
            )
        })
        .collect();
    (records, edges)
}

/// A section of the object: its index and its contents' file range.
fn section_of(bytes: &[u8], name: &str) -> (usize, (u64, u64)) {
    let file = ElfFile64::<Endianness>::parse(bytes).expect("an ELF file");
    let section = file.section_by_name(name).expect("the section");
    (section.index().0, section.file_range().unwrap_or((0, 0)))
}

/// The file offset of a section's header field `at` bytes into it.
fn header_field(bytes: &[u8], section: &str, at: usize) -> usize {
    let header = FileHeader64::<Endianness>::parse(bytes).expect("an ELF header");
    header.e_shoff.get(Endianness::Little) as usize
        + section_of(bytes, section).0 * header.e_shentsize.get(Endianness::Little) as usize
        + at
}

fn plt32_to_g() -> (u64, &'static str, String, i64) {
    (1, "R_X86_64_PLT32", "g".to_string(), -4)
}

fn gotpcrelx_to_x() -> (u64, &'static str, String, i64) {
    (8, "R_X86_64_REX_GOTPCRELX", "x".to_string(), -4)
}

#[test]
fn relocation_records_are_kept_and_decode_to_their_edges() {
    let (records, edges) = text_edges(&object());
    assert!(records, "one table is kept as records; {RERUN}");
    assert_eq!(edges, [plt32_to_g(), gotpcrelx_to_x()], "{RERUN}");
}

#[test]
fn records_keep_the_objects_order() {
    let mut bytes = object();
    // Swap the two 24-byte records of `.rela.text`.
    let (_, (start, size)) = section_of(&bytes, ".rela.text");
    assert_eq!(size, 48, "two records; {RERUN}");
    let start = start as usize;
    let (first, second) = bytes[start..start + 48].split_at_mut(24);
    first.swap_with_slice(second);
    let (records, edges) = text_edges(&bytes);
    assert!(records, "{RERUN}");
    assert_eq!(edges, [gotpcrelx_to_x(), plt32_to_g()], "{RERUN}");
}

#[test]
fn several_tables_for_one_section_are_decoded_into_one_list() {
    let mut bytes = object();
    // Point `.rela.data`'s sh_info (at byte 44 of a section header) at
    // `.text`: its record (offset 0, R_X86_64_64 against f) then
    // patches `.text` too.
    let text = section_of(&bytes, ".text").0 as u32;
    let info = header_field(&bytes, ".rela.data", 44);
    bytes[info..info + 4].copy_from_slice(&text.to_le_bytes());
    let (records, edges) = text_edges(&bytes);
    assert!(!records, "two tables are decoded into one list; {RERUN}");
    let data_edge = (0, "R_X86_64_64", "f".to_string(), 0);
    let mut expected = vec![plt32_to_g(), gotpcrelx_to_x()];
    // In section-header order, as the tables come.
    if header_field(&bytes, ".rela.data", 0) < header_field(&bytes, ".rela.text", 0) {
        expected.insert(0, data_edge);
    } else {
        expected.push(data_edge);
    }
    assert_eq!(edges, expected, "{RERUN}");
}

#[test]
fn string_at_reads_up_to_the_nul() {
    let table = b"\0.text\0main\0";
    assert_eq!(string_at(table, 0), Some(&b""[..]));
    assert_eq!(string_at(table, 1), Some(&b".text"[..]));
    assert_eq!(string_at(table, 7), Some(&b"main"[..]));
    assert_eq!(string_at(table, 9), Some(&b"in"[..]));
}

#[test]
fn string_at_rejects_offsets_outside_and_unterminated_strings() {
    assert_eq!(string_at(b"\0abc\0", 6), None);
    assert_eq!(string_at(b"\0abc\0", u32::MAX), None);
    assert_eq!(string_at(b"\0abc", 1), None);
    assert_eq!(string_at(b"", 0), None);
}

/// A name is cut from the table's text when all of it is UTF-8, and read
/// byte by byte when it is not, with the same answers: the string up to
/// its NUL, `None` outside the table or without an end, the bytes of one
/// that is not UTF-8 (an offset inside a character starts no text).
#[test]
fn names_read_as_text_or_bytes_alike() {
    let text = "\0main\0caf\u{e9}\0\u{e9}t\u{e9}\0".as_bytes();
    let mut broken = text.to_vec();
    broken.extend_from_slice(b"\xff\0tail");
    for (table, whole) in [(text, true), (&broken[..], false)] {
        let strings = Strings::new(table);
        assert_eq!(strings.text.is_some(), whole, "{RERUN}");
        assert_eq!(strings.text_at(0), Some(Ok("")), "{RERUN}");
        assert_eq!(strings.text_at(1), Some(Ok("main")), "{RERUN}");
        assert_eq!(strings.text_at(3), Some(Ok("in")), "{RERUN}");
        assert_eq!(strings.text_at(6), Some(Ok("caf\u{e9}")), "{RERUN}");
        // Inside the two bytes of the first `é`.
        assert_eq!(strings.text_at(12), Some(Ok("\u{e9}t\u{e9}")), "{RERUN}");
        let inside = strings.text_at(13).expect("in the table and ended");
        assert_eq!(inside, Err(&b"\xa9t\xc3\xa9"[..]), "{RERUN}");
        assert_eq!(strings.text_at(u32::MAX), None, "{RERUN}");
    }
    let broken_strings = Strings::new(&broken);
    let after = text.len() as u32;
    assert_eq!(
        broken_strings.text_at(after),
        Some(Err(&b"\xff"[..])),
        "{RERUN}"
    );
    assert_eq!(
        broken_strings.text_at(after + 2),
        None,
        "`tail` has no end; {RERUN}"
    );
}

/// `.text` loads `x`'s address in 32 bits (`R_X86_64_32`) or not, then
/// calls (the 32-bit record is not the last), and `.data` holds `f`'s
/// address in 32 bits.
fn absolute32_object(text_absolute32: bool) -> Vec<u8> {
    let load = if text_absolute32 { "movl $x, %eax" } else { "" };
    let source = format!(
        "
    .text
    .globl f
f:
    {load}
    call g@PLT
    ret
    .data
    .long f
"
    );
    crate::test_support::clang_object("x86_64-linux-gnu", "assembler", &source, &[])
}

/// Each section's answer to "is any edge an absolute 32-bit address?",
/// by name, checked against its edges decoded one by one.
fn absolute32_answers(bytes: &[u8]) -> Vec<(String, bool, bool)> {
    let g = parse("test.o", bytes).expect("parses");
    g.sections
        .iter()
        .filter(|s| !s.edges.is_empty())
        .map(|s| {
            let decoded = s.edges.iter().any(|e| e.kind.is_absolute32());
            assert_eq!(
                s.edges.any_absolute32(),
                decoded,
                "{}: the answer is not its edges'; {RERUN}",
                s.name
            );
            let records = matches!(s.edges, Edges::Records { .. });
            (s.name.to_string(), records, decoded)
        })
        .collect()
}

/// Whether a section has an absolute 32-bit edge (the load then goes in
/// the low 2 GiB) is found while its records are checked, and by looking
/// at each edge once they are decoded: both give the edges' answer.
#[test]
fn records_say_whether_an_edge_is_an_absolute_32_bit_address() {
    let answers = |text_absolute32| absolute32_answers(&absolute32_object(text_absolute32));
    let section = |name: &str, records, absolute32| (name.to_string(), records, absolute32);
    assert_eq!(
        answers(true),
        [section(".text", true, true), section(".data", true, true)],
        "{RERUN}"
    );
    assert_eq!(
        answers(false),
        [section(".text", true, false), section(".data", true, true)],
        "{RERUN}"
    );
    assert_eq!(
        absolute32_answers(&object()),
        [section(".text", true, false), section(".data", true, false)],
        "`.quad f` is 64 bits; {RERUN}"
    );
    // `.data`'s table patching `.text` too: `.text`'s edges are decoded
    // into one list, which has the 32-bit address.
    let mut bytes = absolute32_object(false);
    let text = section_of(&bytes, ".text").0 as u32;
    let info = header_field(&bytes, ".rela.data", 44);
    bytes[info..info + 4].copy_from_slice(&text.to_le_bytes());
    assert_eq!(
        absolute32_answers(&bytes),
        [section(".text", false, true)],
        "{RERUN}"
    );
}
