//! A load split over threads (parsing, writing and relocating objects on
//! several) is the same, byte for byte, as the load linked on one: the same
//! program, generated here (objects calling one another, loading each
//! other's data through the GOT, tables of absolute pointers, strings,
//! constructors and unwind frames), linked at one fixed address both ways,
//! with every segment's bytes and the link map compared.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use object::elf::RelocationType;
use solder_linker::{ObjectFile, Placement, Session, SessionConfig};
use support::{relocation_types, stderr};

fn rerun(test: &str) -> String {
    format!("rerun: cargo test -p solder-linker --test parallel_link -- {test} --exact")
}

const OBJECTS: usize = 12;
const FUNCTIONS: usize = 40;

/// One generated object's C source: functions that call a function of
/// the next object and read a table of the one after, a table of pointers
/// to its own functions, strings, a constructor, and a function that calls
/// a host function and takes its address.
fn source(i: usize) -> String {
    let next = (i + 1) % OBJECTS;
    let after = (i + 2) % OBJECTS;
    let mut c = String::from("#include <string.h>\n");
    for j in 0..FUNCTIONS {
        c += &format!("long f{next}_{j}(long);\n");
    }
    c += &format!("extern long table{after}[{FUNCTIONS}];\n");
    c += &format!("long table{i}[{FUNCTIONS}];\n");
    c += &format!("static const char *names{i}[{FUNCTIONS}] = {{\n");
    for j in 0..FUNCTIONS {
        c += &format!("  \"object {i} function {j}\",\n");
    }
    c += "};\n";
    for j in 0..FUNCTIONS {
        c += &format!(
            "long f{i}_{j}(long x) {{\n  if (x <= 0) return (long)strlen(names{i}[{j}]) + \
             table{after}[{j}];\n  return f{next}_{j}(x - 1) + {j};\n}}\n"
        );
    }
    c += &format!("long (*const pointers{i}[])(long) = {{\n");
    for j in 0..FUNCTIONS {
        c += &format!("  f{i}_{j},\n");
    }
    c += "};\n";
    c += &format!(
        "__attribute__((constructor)) static void fill{i}(void) {{\n  for (int j = 0; j < \
         {FUNCTIONS}; j++) table{i}[j] = j + {i};\n}}\n"
    );
    // A host function of its own per object, called and taken the address
    // of: a stub and a GOT entry (far from a slab placed away from the
    // host), numbered in the order the objects ask for them.
    let host = HOST_FUNCTIONS[i % HOST_FUNCTIONS.len()];
    c += &format!(
        "int {host}(int);\nlong g{i}(long x) {{\n  int (*volatile p)(int) = {host};\n  \
         return p((int)x) + {host}((int)x + 1);\n}}\n"
    );
    if i == 0 {
        c += &format!("long run(long x) {{ return pointers0[x % {FUNCTIONS}](x); }}\n");
    }
    c
}

/// C library functions of one `int` argument, one for each object.
const HOST_FUNCTIONS: [&str; OBJECTS] = [
    "abs", "toupper", "tolower", "isalpha", "isdigit", "isspace", "isupper", "islower", "isalnum",
    "isprint", "ispunct", "isxdigit",
];

/// The program's objects, compiled with `cc -O2 FLAGS` under `dir`.
fn program(dir: &Path, flags: &[&str]) -> Vec<PathBuf> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let flags: Vec<&str> = ["-fasynchronous-unwind-tables"]
        .into_iter()
        .chain(flags.iter().copied())
        .collect();
    (0..OBJECTS)
        .map(|i| compile(dir, &format!("part{i}"), &source(i), &flags))
        .collect()
}

/// What one link left in memory: every segment's bytes and the map.
struct Linked {
    segments: Vec<(u64, Vec<u8>)>,
    map: String,
    threads: usize,
    run: u64,
}

/// Links `objects` at `address` on up to `threads` threads (splitting
/// from one byte per thread, so this small program is split), runs its
/// constructors and `run(7)`, then reads back every segment.
fn link(objects: &[PathBuf], address: u64, threads: usize) -> Linked {
    link_with(objects, None, address, threads)
}

/// [`link`], with `archive` on the session's search list.
fn link_with(objects: &[PathBuf], archive: Option<&Path>, address: u64, threads: usize) -> Linked {
    let files: Vec<ObjectFile> = objects
        .iter()
        .map(|o| ObjectFile::read(o).unwrap())
        .collect();
    let mut session = Session::new(SessionConfig {
        placement: Placement::Fixed(address),
        ..SessionConfig::default()
    })
    .unwrap();
    session.set_threads(threads);
    session.set_min_bytes_per_thread(1);
    if let Some(archive) = archive {
        let archive = session.read_archive(archive).unwrap();
        session.add_archive(archive, false);
    }
    session.keep_load_stats(true);
    session.set_link_maps(true);
    let id = session.load(&files).unwrap();
    let map = session.link_map(id).unwrap().clone();
    let segments = map
        .segments
        .iter()
        .map(|segment| {
            // SAFETY: the segment is mapped readable in this process (code
            // read-execute, data read-only or read-write) for as long as
            // the session holds the module, which it does here.
            let bytes = unsafe {
                std::slice::from_raw_parts(segment.address as *const u8, segment.size as usize)
            };
            (segment.address, bytes.to_vec())
        })
        .collect();
    let run = support::call(&mut session, "run", &[7]);
    Linked {
        segments,
        map: map.to_text(),
        threads: session.last_load_stats().unwrap().threads,
        run,
    }
}

/// Links the program serially and on four threads at `address` and
/// compares everything; returns the program's objects.
fn same_both_ways(test: &str, flags: &[&str], address: u64) -> Vec<PathBuf> {
    let dir = test_dir(test);
    let objects = program(&dir, flags);
    let serial = link(&objects, address, 1);
    let parallel = link(&objects, address, 4);
    assert_eq!(serial.threads, 1, "{}", rerun(test));
    assert!(
        parallel.threads > 1,
        "the load was not split ({} thread)\n{}",
        parallel.threads,
        rerun(test)
    );
    assert_eq!(
        serial.map,
        parallel.map,
        "the link maps differ\n{}",
        rerun(test)
    );
    assert_eq!(serial.segments.len(), parallel.segments.len());
    for ((at, one), (_, many)) in serial.segments.iter().zip(&parallel.segments) {
        if let Some(i) = one.iter().zip(many).position(|(a, b)| a != b) {
            panic!(
                "byte {:#x} differs: {:#04x} serially, {:#04x} split\n{}",
                at + i as u64,
                one[i],
                many[i],
                rerun(test)
            );
        }
    }
    // run(7) = f0_7(7): seven calls along the objects adding 7 each, then
    // f7_7(0): its string's length and table9[7], which object 9's
    // constructor set to 7 + 9.
    let expected = 7 * 7 + "object 7 function 7".len() as u64 + (7 + 9);
    assert_eq!(serial.run, expected, "{}", rerun(test));
    assert_eq!(parallel.run, expected, "{}", rerun(test));
    objects
}

/// Calls, GOT loads relaxed or not, absolute pointer tables, `.eh_frame`:
/// the relocations the objects must contain for the comparison to mean
/// anything.
fn assert_exercised(test: &str, objects: &[PathBuf], wanted: &[RelocationType]) {
    let seen: Vec<RelocationType> = objects.iter().flat_map(|o| relocation_types(o)).collect();
    for kind in wanted {
        assert!(
            seen.contains(kind),
            "no relocation of type {kind:?} in the program\n{}",
            rerun(test)
        );
    }
}

#[test]
fn position_independent_program_is_the_same_split_over_threads() {
    let test = "position_independent_program_is_the_same_split_over_threads";
    let objects = same_both_ways(test, &["-fPIC"], 0x3f00_0000_0000);
    use object::elf::{R_X86_64_64, R_X86_64_PC32, R_X86_64_PLT32, R_X86_64_REX_GOTPCRELX};
    let wanted = [
        R_X86_64_PLT32,
        R_X86_64_REX_GOTPCRELX,
        R_X86_64_64,
        R_X86_64_PC32,
    ];
    assert_exercised(test, &objects, &wanted);
}

#[test]
fn position_dependent_program_is_the_same_split_over_threads() {
    let test = "position_dependent_program_is_the_same_split_over_threads";
    let objects = same_both_ways(test, &["-fno-pic"], 0x5200_0000);
    use object::elf::{R_X86_64_32, R_X86_64_PLT32};
    assert_exercised(test, &objects, &[R_X86_64_PLT32, R_X86_64_32]);
}

/// The program's first object, the others in an archive: the load is
/// split (the members it may take count as its work, as a program's
/// `main` and its library do), the members it takes (those defining what
/// the object needs, and what they need in turn, several at a time,
/// parsed ahead on the threads) are the same, in the same order, and the
/// image is the same byte for byte.
#[test]
fn a_program_from_an_archive_is_the_same_split_over_threads() {
    let test = "a_program_from_an_archive_is_the_same_split_over_threads";
    let dir = test_dir(test);
    let objects = program(&dir, &["-fPIC"]);
    let archive = dir.join("libparts.a");
    let made = Command::new("ar")
        .arg("rcs")
        .arg(&archive)
        .args(&objects[1..])
        .output()
        .expect("run ar");
    assert!(made.status.success(), "{}\n{}", stderr(&made), rerun(test));
    let address = 0x3e00_0000_0000;
    let serial = link_with(&objects[..1], Some(&archive), address, 1);
    let parallel = link_with(&objects[..1], Some(&archive), address, 4);
    assert!(
        parallel.threads > 1,
        "the load was not split\n{}",
        rerun(test)
    );
    for i in 1..OBJECTS {
        assert!(
            serial.map.contains(&format!("libparts.a(part{i}.o)")),
            "part{i}.o was not taken from the archive:\n{}\n{}",
            serial.map,
            rerun(test)
        );
    }
    assert_eq!(
        serial.map,
        parallel.map,
        "the link maps differ\n{}",
        rerun(test)
    );
    assert!(
        serial.segments == parallel.segments,
        "the segments differ\n{}",
        rerun(test)
    );
    let expected = 7 * 7 + "object 7 function 7".len() as u64 + (7 + 9);
    assert_eq!(
        (serial.run, parallel.run),
        (expected, expected),
        "{}",
        rerun(test)
    );
}

/// A split load that cannot be linked fails as the serial one does, with
/// the same first error (the references the threads resolve have no
/// errors; the serial pass meets the others in the same order).
#[test]
fn a_split_load_fails_with_the_serial_loads_error() {
    let test = "a_split_load_fails_with_the_serial_loads_error";
    let dir = test_dir(test);
    let mut objects = program(&dir, &["-fPIC"]);
    let broken = compile(
        &dir,
        "broken",
        "long solder_test_undefined_a(void);\nlong solder_test_undefined_b(void);\n\
         long broken(void) { return solder_test_undefined_a() + solder_test_undefined_b(); }\n",
        &["-fPIC"],
    );
    objects.insert(OBJECTS / 2, broken);
    let error = |threads: usize| {
        let files: Vec<ObjectFile> = objects
            .iter()
            .map(|o| ObjectFile::read(o).unwrap())
            .collect();
        let mut session = Session::new(SessionConfig::default()).unwrap();
        session.set_threads(threads);
        session.set_min_bytes_per_thread(1);
        match session.load(&files) {
            Ok(_) => panic!("the load with undefined symbols linked\n{}", rerun(test)),
            Err(e) => e.to_string(),
        }
    };
    let serial = error(1);
    assert!(
        serial.contains("solder_test_undefined_a"),
        "{serial}\n{}",
        rerun(test)
    );
    assert_eq!(serial, error(4), "{}", rerun(test));
}

/// The scratch directory of `test`.
fn test_dir(test: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("parallel_link")
        .join(test)
}

/// `source` compiled with `cc -c -O2 FLAGS` as `dir/name.o`.
fn compile(dir: &Path, name: &str, source: &str, flags: &[&str]) -> PathBuf {
    let c = dir.join(format!("{name}.c"));
    std::fs::write(&c, source).unwrap();
    let o = c.with_extension("o");
    let output = Command::new("cc")
        .args(["-c", "-O2"])
        .args(flags)
        .arg(&c)
        .arg("-o")
        .arg(&o)
        .output()
        .expect("run cc");
    assert!(output.status.success(), "cc {c:?}: {}", stderr(&output));
    o
}

/// A weak definition in a split load yields to a live module's export of
/// its name, as in a serial load (the threads leave it to the serial pass,
/// which binds to the export); with no export to yield to, the load's own
/// definition is used both ways.
#[test]
fn a_split_loads_weak_definition_yields_to_the_session_as_a_serial_ones_does() {
    let test = "a_split_loads_weak_definition_yields_to_the_session_as_a_serial_ones_does";
    let dir = test_dir(test);
    let mut objects = program(&dir, &["-fPIC"]);
    objects.push(compile(
        &dir,
        "weak",
        "__attribute__((weak)) long solder_test_answer(void) { return 1; }\n\
         long solder_test_ask(void) { return solder_test_answer(); }\n",
        &["-fPIC"],
    ));
    let strong = compile(
        &dir,
        "strong",
        "long solder_test_answer(void) { return 2; }\n",
        &["-fPIC"],
    );
    let ask = |threads: usize, after_strong: bool| {
        let mut session = Session::new(SessionConfig::default()).unwrap();
        session.set_threads(threads);
        session.set_min_bytes_per_thread(1);
        session.keep_load_stats(true);
        if after_strong {
            session.load(&[ObjectFile::read(&strong).unwrap()]).unwrap();
        }
        let files: Vec<ObjectFile> = objects
            .iter()
            .map(|o| ObjectFile::read(o).unwrap())
            .collect();
        session.load(&files).unwrap();
        let split = session.last_load_stats().unwrap().threads;
        (support::call(&mut session, "solder_test_ask", &[]), split)
    };
    assert_eq!(
        ask(1, true),
        (2, 1),
        "serial, after the strong module\n{}",
        rerun(test)
    );
    assert_eq!(
        ask(4, true),
        (2, 4),
        "split, after the strong module\n{}",
        rerun(test)
    );
    assert_eq!(ask(1, false), (1, 1), "serial, alone\n{}", rerun(test));
    assert_eq!(ask(4, false), (1, 4), "split, alone\n{}", rerun(test));
}
