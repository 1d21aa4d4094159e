use super::*;
use crate::probe::{Host, link_image};
use crate::test_support::ar_archive as archive;
use object::read::elf::SectionTable;

const RERUN: &str = "rerun: cargo test -p solder-linker --lib debug_sections::tests";

/// A C source whose `-g` object is mostly DWARF: a struct type per
/// function (`.debug_info`, `.debug_str`), and code that uses it.
fn source() -> String {
    let mut c = String::new();
    for i in 0..600 {
        c += &format!("struct record_{i} {{ long a_{i}, b_{i}, c_{i}; char name_{i}[8]; }};\n");
        c += &format!(
            "long use_{i}(struct record_{i} *r, long x) {{\n  long local = r->a_{i} * x + {i};\n  return local + r->b_{i} - r->c_{i} + r->name_{i}[x & 7];\n}}\n"
        );
    }
    c += "long table[] = { (long)use_0, (long)use_1, (long)use_2 };\n";
    c
}

/// An object without debug information, smaller than a head.
fn small_object() -> Vec<u8> {
    crate::test_support::clang_object("x86_64-linux-gnu", "c", "int f(void) { return 1; }", &[])
}

fn g_object() -> Vec<u8> {
    crate::test_support::clang_object("x86_64-linux-gnu", "c", &source(), &["-g", "-O1"])
}

/// The sections of `bytes` (an ELF object): name, type, file range, and
/// the section its `sh_info` names.
fn sections(bytes: &[u8]) -> Vec<(String, u32, Range<usize>, usize)> {
    let header = Header::parse(bytes).unwrap();
    let endian = header.endian().unwrap();
    let table: SectionTable<'_, Header> = header.sections(endian, bytes).unwrap();
    table
        .iter()
        .map(|s| {
            let name = String::from_utf8_lossy(table.section_name(endian, s).unwrap()).into_owned();
            let (offset, size) = s.file_range(endian).unwrap_or((0, 0));
            let range = offset as usize..(offset + size) as usize;
            (name, s.sh_type(endian).0, range, s.sh_info(endian) as usize)
        })
        .collect()
}

fn is_debug_name(name: &str) -> bool {
    name.starts_with(".debug") || name.starts_with(".rela.debug")
}

/// `bytes` read as a file measured at its length, through
/// [`read_without_debug`]: the room, what came, and the pieces prepared.
fn read(bytes: &[u8]) -> (Vec<u8>, Got, Vec<Range<usize>>) {
    read_cut(bytes, Pieces::LINK)
}

/// Pieces so small that neither the first nor the last bytes read hide
/// what the plan leaves out.
const SMALL: Pieces = Pieces {
    head: 64,
    tail: 64,
    min_hole: 1,
};

/// [`read`], cut as `pieces` says.
fn read_cut(bytes: &[u8], pieces: Pieces) -> (Vec<u8>, Got, Vec<Range<usize>>) {
    read_measured(bytes, bytes.len(), pieces, Threads::new(1))
}

/// Threads that split however few bytes there are: an archive's larger
/// members read on three.
const SPLIT: Threads = Threads {
    count: Some(3),
    min_bytes_each: 1,
};

/// [`read_cut`] of a file measured at `measured` bytes, an archive's
/// larger members read on `threads`; the pieces prepared in order.
fn read_measured(
    bytes: &[u8],
    measured: usize,
    pieces: Pieces,
    threads: Threads,
) -> (Vec<u8>, Got, Vec<Range<usize>>) {
    let mut room = vec![0u8; measured + 1];
    let base = room.as_ptr() as usize;
    let prepared = std::sync::Mutex::new(Vec::new());
    let prepare = |piece: &mut [u8]| {
        let start = piece.as_ptr() as usize - base;
        prepared.lock().unwrap().push(start..start + piece.len());
    };
    let got = read_in_pieces(&bytes, &mut room, &prepare, pieces, threads).unwrap();
    room.truncate(got.len.min(bytes.len()));
    let mut prepared = prepared.into_inner().unwrap();
    prepared.sort_by_key(|piece| piece.start);
    (room, got, prepared)
}

/// A `-g` object comes back without its DWARF sections and their
/// relocation tables (zeros, most of the file), with every other section,
/// the header and the section table as in the file; it links to the same
/// image as the whole file. Every piece read past the first bytes was
/// prepared first. So cut as a link cuts it, and cut small.
#[test]
fn a_g_objects_dwarf_is_left_out_and_everything_else_read() {
    let bytes = g_object();
    assert!(bytes.len() > HEAD + TAIL, "{} bytes\n{RERUN}", bytes.len());
    let all = sections(&bytes);
    for wanted in [
        ".debug_info",
        ".rela.debug_info",
        ".debug_line",
        ".debug_str",
    ] {
        assert!(
            all.iter().any(|(name, ..)| name == wanted),
            "the object has no {wanted}\n{RERUN}"
        );
    }
    let whole = link_image("g.o", &bytes, Host::MadeUp).unwrap();
    assert!(!whole.image.is_empty(), "{RERUN}");
    for pieces in [Pieces::LINK, SMALL] {
        let (room, got, prepared) = read_cut(&bytes, pieces);
        assert_eq!(got.len, bytes.len(), "{pieces:?}\n{RERUN}");
        // Every byte that reads differently was left out, and the count
        // says how many were: more than half the file.
        let differing = room.iter().zip(&bytes).filter(|(a, b)| a != b).count();
        assert!(
            differing <= got.left_out && got.left_out * 2 > bytes.len(),
            "{differing} bytes differ, {} left out of {} ({pieces:?})\n{RERUN}",
            got.left_out,
            bytes.len()
        );
        let mut left_out = 0;
        for (name, _, range, _) in &all {
            if is_debug_name(name) {
                left_out += room[range.clone()].iter().filter(|&&b| b == 0).count();
            } else {
                assert!(
                    room[range.clone()] == bytes[range.clone()],
                    "section {name} differs ({pieces:?})\n{RERUN}"
                );
            }
        }
        assert!(
            left_out * 2 > bytes.len(),
            "only {left_out} of {} bytes left out ({pieces:?})\n{RERUN}",
            bytes.len()
        );
        assert_eq!(room[..64], bytes[..64], "the header\n{RERUN}");
        for piece in &prepared {
            assert!(piece.start >= pieces.head, "prepared {piece:?}\n{RERUN}");
        }
        let holed = link_image("g.o", &room, Host::MadeUp).unwrap();
        assert!(
            whole.image == holed.image,
            "the images differ ({pieces:?})\n{RERUN}"
        );
    }
}

/// Rewrites section `index`'s header field at `field` (a byte offset in
/// the header) of the ELF object `bytes`.
fn set_field(bytes: &mut [u8], index: usize, field: usize, value: &[u8]) {
    let shoff = u64::from_le_bytes(bytes[0x28..0x30].try_into().unwrap()) as usize;
    let at = shoff + index * 64 + field;
    bytes[at..at + value.len()].copy_from_slice(value);
}

fn index_of(bytes: &[u8], wanted: &str) -> usize {
    let all = sections(bytes);
    all.iter().position(|(name, ..)| name == wanted).unwrap()
}

/// A DWARF section laid over a kept section (`.text`) does not hide it:
/// the overlap is read. A DWARF section another section links to (here
/// the symbol table's string table made `.debug_str`) is read whole. Cut
/// small, so that the first and last bytes read hide neither.
#[test]
fn what_a_kept_section_overlaps_or_links_to_is_read() {
    let bytes = g_object();
    let mut over_text = bytes.clone();
    let text = sections(&bytes)
        .into_iter()
        .find(|(name, ..)| name == ".text")
        .unwrap()
        .2;
    let info = index_of(&bytes, ".debug_info");
    set_field(&mut over_text, info, 24, &(text.start as u64).to_le_bytes());
    let (room, got, _) = read_cut(&over_text, SMALL);
    assert_eq!(got.len, bytes.len(), "{RERUN}");
    assert!(
        room[text.clone()] == bytes[text],
        ".text was left out\n{RERUN}"
    );

    let mut linked = bytes.clone();
    let symtab = index_of(&bytes, ".symtab");
    let debug_str = index_of(&bytes, ".debug_str");
    set_field(&mut linked, symtab, 40, &(debug_str as u32).to_le_bytes());
    let (room, _, _) = read_cut(&linked, SMALL);
    let range = sections(&bytes)[debug_str].2.clone();
    assert!(
        room[range.clone()] == bytes[range],
        ".debug_str, linked to, was left out\n{RERUN}"
    );
}

/// What no plan can be made for is read whole: a small object (in one
/// read), bytes that are not ELF, a section table past the end. A file
/// that grew since it was measured says so (one byte more); one that
/// shrank gives what it has.
#[test]
fn what_cannot_be_planned_is_read_whole_and_a_changed_size_is_seen() {
    let small = crate::test_support::clang_object(
        "x86_64-linux-gnu",
        "c",
        "int f(int x) { return x + 1; }",
        &["-g"],
    );
    assert!(small.len() < HEAD, "{RERUN}");
    let (room, got, prepared) = read(&small);
    assert_eq!(
        (room, got.left_out, prepared),
        (small, 0, vec![]),
        "{RERUN}"
    );

    let not_elf: Vec<u8> = (0..HEAD * 3).map(|i| (i * 13 % 251) as u8).collect();
    let (room, got, _) = read(&not_elf);
    assert_eq!((got.len, got.left_out), (not_elf.len(), 0), "{RERUN}");
    assert!(room == not_elf, "{RERUN}");

    let mut table_past_end = g_object();
    let len = table_past_end.len() as u64;
    table_past_end[0x28..0x30].copy_from_slice(&(len - 100).to_le_bytes());
    let (room, got, _) = read(&table_past_end);
    assert!(got.left_out == 0 && room == table_past_end, "{RERUN}");

    let bytes = g_object();
    let mut room = vec![0u8; bytes.len()];
    let one = Threads::new(1);
    let measured_shorter = read_without_debug(&&bytes[..], &mut room, &|_| {}, one).unwrap();
    assert_eq!(measured_shorter.len, bytes.len(), "grew by one\n{RERUN}");
    let mut room = vec![0u8; bytes.len() + 2];
    let measured_longer = read_without_debug(&&bytes[..], &mut room, &|_| {}, one).unwrap();
    assert_eq!(measured_longer.len, bytes.len(), "shrank by one\n{RERUN}");
    assert_eq!(measured_longer.left_out, 0, "{RERUN}");
}

/// The interval arithmetic the plan is made of.
#[test]
fn ranges_merge_and_complement() {
    assert_eq!(
        merge(vec![6..9, 0..2, 3..4, 9..9], 1),
        vec![0..4, 6..9],
        "{RERUN}"
    );
    assert_eq!(merge(vec![0..2, 3..4], 0), vec![0..2, 3..4], "{RERUN}");
    assert_eq!(
        complement(0..20, vec![15..25, 2..4, 3..6]),
        vec![0..2, 6..15],
        "{RERUN}"
    );
    assert_eq!(complement(0..5, vec![]), vec![0..5], "{RERUN}");
    assert_eq!(
        complement_within(vec![0..10, 20..30], vec![5..25, 28..29]),
        vec![0..5, 25..28, 29..30],
        "{RERUN}"
    );
    assert!(covered(&[0..4, 4..9], &(2..8)), "{RERUN}");
    assert!(!covered(&[0..4, 5..9], &(2..8)), "{RERUN}");
    let holes = finish(
        vec![0..MIN_HOLE, MIN_HOLE + 10..3 * MIN_HOLE],
        vec![100..200, 300..300],
        MIN_HOLE,
    );
    assert_eq!(holes, vec![200..3 * MIN_HOLE], "{RERUN}");
}

/// The fuzz targets' check is not vacuous: cut as [`crate::probe::FUZZ_PIECES`],
/// a small `-g` object (as the `elf` target is seeded with) has its DWARF
/// left out, and links the same; so does the large one, cut as a link
/// cuts it.
#[test]
fn the_fuzz_targets_check_plans_holes_in_small_objects() {
    use crate::probe::{FUZZ_PIECES, differs_without_debug, without_debug};
    let small = crate::test_support::clang_object(
        "x86_64-linux-gnu",
        "c",
        "struct p { long x, y; };\nlong area(struct p *p) { return p->x * p->y; }\n",
        &["-g", "-O1"],
    );
    let holed =
        without_debug(&small, FUZZ_PIECES, Threads::new(1)).expect("holes in a small -g object");
    assert_eq!(holed.len(), small.len(), "{RERUN}");
    assert!(holed != small, "{RERUN}");
    assert_eq!(differs_without_debug("small.o", &small), None, "{RERUN}");
    let large = g_object();
    assert!(
        without_debug(&large, Pieces::LINK, Threads::new(1)).is_some(),
        "{RERUN}"
    );
}

/// An archive's `-g` members are read as the objects are, their DWARF
/// left out; its headers, a text member of odd size and a small object
/// as they lie. Every byte that differs is inside a member's DWARF
/// section, and the holed archive links (every member) to the image the
/// whole one does. So cut as a link cuts it, and cut small.
#[test]
fn an_archives_members_are_read_without_their_dwarf() {
    use crate::probe::link_archive;
    let g = g_object();
    let small = small_object();
    let bytes = archive(&[("notes.txt", b"hello"), ("g.o", &g), ("small.o", &small)]);
    let g_start = ARCHIVE_MAGIC.len() + 2 * MEMBER_HEADER + 6;
    assert_eq!(bytes[g_start..g_start + g.len()], g[..], "{RERUN}");
    let debug: Vec<Range<usize>> = sections(&g)
        .into_iter()
        .filter(|(name, ..)| is_debug_name(name))
        .map(|(_, _, range, _)| g_start + range.start..g_start + range.end)
        .collect();
    let objects = archive(&[("g.o", &g), ("small.o", &small)]);
    let whole = link_archive("lib.a", &objects, Host::MadeUp).unwrap();
    for pieces in [Pieces::LINK, SMALL] {
        let (room, got) = {
            let (room, got, _) = read_cut(&bytes, pieces);
            (room, got)
        };
        assert_eq!(got.len, bytes.len(), "{pieces:?}\n{RERUN}");
        assert!(
            got.left_out * 2 > g.len(),
            "{} left out ({pieces:?})\n{RERUN}",
            got.left_out
        );
        for (at, (read, want)) in room.iter().zip(&bytes).enumerate() {
            if read != want {
                assert!(
                    *read == 0 && debug.iter().any(|d| d.contains(&at)),
                    "byte {at:#x} differs outside the DWARF ({pieces:?})\n{RERUN}"
                );
            }
        }
        let (holed, got, _) = read_cut(&objects, pieces);
        assert!(got.left_out > 0, "{RERUN}");
        let linked = link_archive("lib.a", &holed, Host::MadeUp).unwrap();
        assert!(
            whole.image == linked.image,
            "the images differ ({pieces:?})\n{RERUN}"
        );
    }
}

/// An archive whose member headers do not parse, or whose last member
/// ends past the file, is read whole from there (what came, as a whole
/// read gives it); an archive within a member is read as it lies.
#[test]
fn an_archive_that_cannot_be_walked_is_read_as_it_lies() {
    let g = g_object();
    let nested = archive(&[("g.o", &g)]);
    let mut cut = archive(&[("g.o", &g), ("h.o", &g)]);
    cut.truncate(cut.len() - 1000);
    let mut garbled = archive(&[("g.o", &g), ("h.o", &g)]);
    garbled[ARCHIVE_MAGIC.len() + 58] = b'x';
    for (what, bytes) in [
        ("a member ending past the file", cut),
        ("a header without its end", garbled),
        ("an archive in an archive", archive(&[("inner.a", &nested)])),
    ] {
        for pieces in [Pieces::LINK, SMALL] {
            let (room, got, _) = read_cut(&bytes, pieces);
            let whole_from = match what {
                "a member ending past the file" => ARCHIVE_MAGIC.len() + MEMBER_HEADER + g.len(),
                _ => 0,
            };
            assert_eq!(got.len, bytes.len(), "{what} ({pieces:?})\n{RERUN}");
            assert!(
                room[whole_from..] == bytes[whole_from..],
                "{what}: not read as it lies ({pieces:?})\n{RERUN}"
            );
        }
    }
}

/// An archive's larger members read on several threads come back as one
/// thread reads them: the same bytes, the same count left out, the same
/// pieces prepared, and, for a file that came short of its measured size
/// (inside a member, inside a header), the same end: where the file ended.
#[test]
fn an_archives_members_read_on_threads_are_read_as_on_one() {
    let g = g_object();
    let small = small_object();
    let members: [(&str, &[u8]); 5] = [
        ("g.o", &g),
        ("notes.txt", b"odd"),
        ("h.o", &g),
        ("small.o", &small),
        ("i.o", &g),
    ];
    let bytes = archive(&members);
    let h_data = archive(&members[..2]).len() + MEMBER_HEADER;
    assert_eq!(bytes[h_data..h_data + g.len()], g[..], "{RERUN}");
    for pieces in [Pieces::LINK, SMALL] {
        for (what, len) in [
            ("the whole archive", bytes.len()),
            ("a file ending inside a member", h_data + 1000),
            ("a file ending inside a header", h_data - 30),
        ] {
            let serial = read_measured(&bytes[..len], bytes.len(), pieces, Threads::new(1));
            let split = read_measured(&bytes[..len], bytes.len(), pieces, SPLIT);
            assert_eq!(
                (serial.1, &serial.2),
                (split.1, &split.2),
                "{what} ({pieces:?})\n{RERUN}"
            );
            assert!(
                serial.0 == split.0,
                "{what}: the bytes differ ({pieces:?})\n{RERUN}"
            );
            assert_eq!(split.1.len, len, "{what} ({pieces:?})\n{RERUN}");
            if len == bytes.len() {
                assert!(
                    split.1.left_out > 3 * g.len() / 2,
                    "{what}: {} left out ({pieces:?})\n{RERUN}",
                    split.1.left_out
                );
            }
        }
    }
}
