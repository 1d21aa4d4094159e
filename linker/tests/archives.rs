//! Inputs the way a static linker takes them, through the library and the
//! `solder` command: archives made by the system's `ar` (with a symbol
//! index, thin, without an index), `-L`/`-l` search, `--abs` definitions
//! reached from beyond ±2 GiB, and the link map checked against the bytes
//! in memory. Fixtures are under `fixtures/linker/archives/` and
//! `fixtures/conformance/linking/archive/`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use solder_linker::{Archive, ObjectFile, Placement, Session, SessionConfig};
use support::{call, compile, solder, stderr, stdout};

fn rerun(test: &str) -> String {
    format!("rerun: cargo test -p solder-linker --test archives -- {test} --exact")
}

/// A fresh directory for one test's files.
fn scratch(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("archives")
        .join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `ar FLAGS archive members...`, from scratch.
fn ar(flags: &str, archive: &Path, members: &[PathBuf]) {
    let _ = std::fs::remove_file(archive);
    let output = Command::new("ar")
        .arg(flags)
        .arg(archive)
        .args(members)
        .output()
        .expect("run ar");
    assert!(
        output.status.success(),
        "ar {flags} failed: {}",
        stderr(&output)
    );
}

/// The conformance suite's archive fixtures, compiled with gcc and copied
/// into `dir` under their member names.
fn members(dir: &Path, names: &[&str]) -> Vec<PathBuf> {
    names
        .iter()
        .map(|name| {
            let built = compile(&format!("conformance/linking/archive/{name}.c"), &["-O2"]);
            let member = dir.join(format!("{name}.o"));
            std::fs::copy(&built, &member).unwrap();
            member
        })
        .collect()
}

/// `main.o` needs `ar_add` and `ar_scale`; `ar_scale` needs `ar_twice`;
/// `unused.o` cannot link. Each kind of archive `ar` makes gives the same
/// three members, each pulled by the name the map says, and the program
/// computes the same.
#[test]
fn system_ar_archives_give_the_members_needed_and_no_more() {
    let test = "system_ar_archives_give_the_members_needed_and_no_more";
    let dir = scratch(test);
    let objects = members(&dir, &["unused", "add", "scale", "twice"]);
    let main = ObjectFile::read(&compile("conformance/linking/archive/main.c", &["-O2"])).unwrap();
    for (flags, indexed) in [("rcs", true), ("rcT", true), ("rcS", false)] {
        let path = dir.join(format!("lib-{flags}.a"));
        ar(flags, &path, &objects);
        let archive = Archive::read(&path).unwrap();
        assert_eq!(
            archive.has_index(),
            indexed,
            "ar {flags}: the archive's index\n{}",
            rerun(test)
        );
        let mut session = support::session();
        session.set_link_maps(true);
        session.add_archive(archive, false);
        let id = session.load(std::slice::from_ref(&main)).unwrap();
        assert_eq!(
            call(&mut session, "main_sum", &[5]),
            36,
            "ar {flags}\n{}",
            rerun(test)
        );
        let map = session.link_map(id).unwrap();
        let mut pulled: Vec<(String, Option<String>)> = map
            .members
            .iter()
            .map(|m| {
                // A thin archive names its members by path.
                let member = m.member.rsplit('(').next().unwrap().trim_end_matches(')');
                let file = Path::new(member).file_name().unwrap().to_string_lossy();
                (file.into_owned(), m.pulled_by.clone())
            })
            .collect();
        pulled.sort();
        let expected: Vec<(String, Option<String>)> = [
            ("add.o", "ar_add"),
            ("scale.o", "ar_scale"),
            ("twice.o", "ar_twice"),
        ]
        .iter()
        .map(|(m, by)| (m.to_string(), Some(by.to_string())))
        .collect();
        assert_eq!(pulled, expected, "ar {flags}\n{}", rerun(test));
        session.end();
    }
}

/// A thin archive whose member file is gone is refused, naming the
/// archive, the member and the path tried.
#[test]
fn a_thin_archive_with_a_missing_member_names_it() {
    let test = "a_thin_archive_with_a_missing_member_names_it";
    let dir = scratch(test);
    let objects = members(&dir, &["add", "twice"]);
    let path = dir.join("libthin.a");
    ar("rcT", &path, &objects);
    std::fs::remove_file(&objects[1]).unwrap();
    let err = Archive::read(&path).unwrap_err().to_string();
    assert!(
        err.contains("libthin.a(") && err.contains("twice.o") && err.contains("cannot be read"),
        "{err}\n{}",
        rerun(test)
    );
}

/// A thin archive's member is read only from a regular file: one that
/// became a pipe is refused, naming it, without being opened (which would
/// wait for a writer) or read as a stream.
#[test]
fn a_thin_archive_member_that_is_not_a_regular_file_is_refused() {
    let test = "a_thin_archive_member_that_is_not_a_regular_file_is_refused";
    let dir = scratch(test);
    let objects = members(&dir, &["add", "twice"]);
    let path = dir.join("libthin.a");
    ar("rcT", &path, &objects);
    std::fs::remove_file(&objects[1]).unwrap();
    let made = Command::new("mkfifo")
        .arg(&objects[1])
        .status()
        .expect("run mkfifo");
    assert!(
        made.success(),
        "mkfifo {}\n{}",
        objects[1].display(),
        rerun(test)
    );
    let err = Archive::read(&path).unwrap_err().to_string();
    assert!(
        err.contains("twice.o") && err.contains("not a regular file"),
        "{err}\n{}",
        rerun(test)
    );
}

/// Builds `libpick.a` (VALUE) in `dir`.
fn libpick_archive(dir: &Path, value: u32) {
    std::fs::create_dir_all(dir).unwrap();
    let built = support::compile_with(
        "cc",
        "linker/archives/pick.c",
        &[&format!("-DVALUE={value}")],
    );
    let member = dir.join("pick.o");
    std::fs::copy(built, &member).unwrap();
    ar("rcs", &dir.join("libpick.a"), &[member]);
}

/// `-L` directories are searched in order, `libNAME.so` before
/// `libNAME.a` in each; `-l:FILE` names a file; a shared library found
/// is opened for host lookups; a library found nowhere is an error listing
/// every file tried.
#[test]
fn library_search_follows_the_directories_in_order() {
    let test = "library_search_follows_the_directories_in_order";
    let dir = scratch(test);
    let (first, second, shared) = (dir.join("first"), dir.join("second"), dir.join("shared"));
    libpick_archive(&first, 1);
    libpick_archive(&second, 2);
    std::fs::create_dir_all(&shared).unwrap();
    let pick3 = support::compile_with("cc", "linker/archives/pick.c", &["-DVALUE=3", "-fPIC"]);
    let linked = Command::new("cc")
        .arg("-shared")
        .arg(&pick3)
        .arg("-o")
        .arg(shared.join("libpick.so"))
        .output()
        .unwrap();
    assert!(linked.status.success(), "{}", stderr(&linked));
    let main = compile("linker/archives/pick_main.c", &["-O2"]);
    let main = main.to_str().unwrap();
    let (first, second, shared) = (
        first.to_str().unwrap(),
        second.to_str().unwrap(),
        shared.to_str().unwrap(),
    );
    for (args, status) in [
        (vec!["-L", first, "-L", second, "-l", "pick"], 1),
        (vec!["-L", second, "-L", first, "-l", "pick"], 2),
        (vec!["-L", second, "-l:libpick.a"], 2),
        (vec!["-L", shared, "-L", first, "-l", "pick"], 3),
    ] {
        let mut command = vec!["run", main];
        command.extend(&args);
        let output = solder(&command);
        assert_eq!(
            output.status.code(),
            Some(status),
            "solder {}: {}\n{}",
            command.join(" "),
            stderr(&output),
            rerun(test)
        );
    }
    let output = solder(&["run", main, "-L", first, "-L", second, "-l", "nothere"]);
    let message = stderr(&output);
    assert_eq!(
        output.status.code(),
        Some(125),
        "{message}\n{}",
        rerun(test)
    );
    for tried in [
        format!("{first}/libnothere.so"),
        format!("{first}/libnothere.a"),
        format!("{second}/libnothere.so"),
        format!("{second}/libnothere.a"),
        "the dynamic loader's search for libnothere.so".to_string(),
    ] {
        assert!(
            message.contains(&tried),
            "the error does not list {tried}: {message}\n{}",
            rerun(test)
        );
    }
}

/// A session whose slab is in the low 2 GiB (far from this binary and
/// the host's libraries), making link maps.
fn low_session_with_maps() -> Session {
    let mut session = Session::new(SessionConfig {
        placement: Placement::Low,
        ..SessionConfig::default()
    })
    .unwrap();
    session.set_link_maps(true);
    session
}

/// The first load places the slab: low when an archive member it takes
/// (not only one of its own objects) has absolute 32-bit references.
/// Placed next to the host's libraries, the member's `R_X86_64_32S` could
/// not hold its table's address and the load would fail.
#[test]
fn an_archive_members_absolute_32_bit_references_place_the_slab_low() {
    let test = "an_archive_members_absolute_32_bit_references_place_the_slab_low";
    let dir = scratch(test);
    let member = compile("linker/archives/low_member.c", &["-O2", "-fno-pic"]);
    assert!(
        support::relocation_types(&member).contains(&object::elf::R_X86_64_32S),
        "the member has no R_X86_64_32S\n{}",
        rerun(test)
    );
    let copied = dir.join("low_member.o");
    std::fs::copy(&member, &copied).unwrap();
    let archive = dir.join("liblow.a");
    ar("rcs", &archive, &[copied]);
    let main = compile("linker/archives/low_main.c", &["-O2", "-fPIC"]);
    let mut session = support::session();
    session.add_archive(Archive::read(&archive).unwrap(), false);
    session
        .load(&[support::object(&main)])
        .unwrap_or_else(|e| panic!("{e}\n{}", rerun(test)));
    assert_eq!(call(&mut session, "low_run", &[2]), 30, "{}", rerun(test));
}

/// What `--abs` names point at in the test's own process: a function and
/// a variable of this binary, far from a low slab.
extern "C" fn far_function(x: i32) -> i32 {
    x * 1000
}

static FAR_VARIABLE: i32 = 7;

/// Names defined only by `define_absolute` are reached from a slab more
/// than 2 GiB away: the call through a stub, the variable through the GOT
/// (the map says so, and the GOT holds the address).
#[test]
fn absolute_definitions_are_reached_from_beyond_2_gib() {
    let test = "absolute_definitions_are_reached_from_beyond_2_gib";
    let object =
        ObjectFile::read(&compile("linker/archives/abs_user.c", &["-O2", "-fPIC"])).unwrap();
    let mut session = low_session_with_maps();
    let function = far_function as *const () as u64;
    let variable = &raw const FAR_VARIABLE as u64;
    session.define_absolute("far_function", function);
    session.define_absolute("far_variable", variable);
    session.define_absolute("far_marker", 0x1234_5678);
    let id = session.load(&[object]).unwrap();
    let (slab, _) = session.slab_range().unwrap();
    for address in [function, variable] {
        assert!(
            address.abs_diff(slab) > 1 << 31,
            "the slab at {slab:#x} is within 2 GiB of {address:#x}: nothing is proven\n{}",
            rerun(test)
        );
    }
    assert_eq!(
        call(&mut session, "call_far", &[5]),
        5007,
        "{}",
        rerun(test)
    );
    let map = session.link_map(id).unwrap();
    let stub = map
        .stubs
        .iter()
        .find(|s| s.target.as_deref() == Some("far_function"))
        .unwrap_or_else(|| panic!("no stub for far_function: {map:?}\n{}", rerun(test)));
    let got = |name: &str| {
        map.got
            .iter()
            .find(|e| e.target.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("no GOT entry for {name}: {map:?}\n{}", rerun(test)))
    };
    assert_eq!(got("far_function").value, function, "{}", rerun(test));
    assert_eq!(
        got("far_function").address,
        stub.got_entry,
        "{}",
        rerun(test)
    );
    assert_eq!(got("far_variable").value, variable, "{}", rerun(test));
    session.end();
}

/// `solder run --abs NAME=ADDRESS`: the program sees NAME at ADDRESS.
#[test]
fn the_abs_option_defines_a_name_at_an_address() {
    let test = "the_abs_option_defines_a_name_at_an_address";
    let object = compile("linker/archives/abs_user.c", &["-O2", "-fPIC"]);
    let with_abs = |object: &Path, extra: &[&str]| {
        let mut args = vec!["run", object.to_str().unwrap()];
        args.extend(extra);
        args.extend([
            "--abs",
            "far_marker=0x123456789",
            "--abs",
            "far_function=0x1000",
            "--abs",
            "far_variable=0x2000",
        ]);
        solder(&args)
    };
    let output = with_abs(&object, &[]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}\n{}",
        stderr(&output),
        rerun(test)
    );
    assert_eq!(stdout(&output), "123456789\n", "{}", rerun(test));
    // Without -fPIC the address is a direct PC-relative reference, which
    // cannot reach 0x123456789 from the slab: refused, not a stub's address.
    let direct = compile("linker/archives/abs_user.c", &["-O2", "-fno-pic"]);
    let refused = with_abs(&direct, &["--slab-address", "0x40000000"]);
    let message = stderr(&refused);
    assert_eq!(
        refused.status.code(),
        Some(125),
        "{message}\n{}",
        rerun(test)
    );
    assert!(
        message.contains("`far_marker` out of range"),
        "{message}\n{}",
        rerun(test)
    );
    let bad = solder(&["run", object.to_str().unwrap(), "--abs", "far_marker"]);
    assert_eq!(bad.status.code(), Some(125), "{}", rerun(test));
    assert!(
        stderr(&bad).contains("NAME=ADDRESS"),
        "{}\n{}",
        stderr(&bad),
        rerun(test)
    );
}

/// Reads `T` at `address` in this process.
///
/// # Safety
/// `address` must hold a readable, initialized `T`.
unsafe fn read_at<T: Copy>(address: u64) -> T {
    // SAFETY: the caller vouches for the address (memory of a live module).
    unsafe { std::ptr::read_unaligned(address as *const T) }
}

/// The JSON map, read back as JSON, against the module's memory: the data
/// pointer holds the address the map gives its target, the GOT entry of a
/// host function holds what the host's loader says, and the stub jumps
/// through that entry.
#[test]
fn the_json_link_map_matches_the_written_memory() {
    let test = "the_json_link_map_matches_the_written_memory";
    let object =
        ObjectFile::read(&compile("linker/archives/map_data.c", &["-O2", "-fPIC"])).unwrap();
    let mut session = low_session_with_maps();
    let id = session.load(&[object]).unwrap();
    let json = serde_json::to_string(session.link_map(id).unwrap()).unwrap();
    let map: serde_json::Value = serde_json::from_str(&json).unwrap();
    let symbol = |name: &str| {
        map["symbols"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .and_then(|s| s["address"].as_u64())
            .unwrap_or_else(|| panic!("no {name} in {json}\n{}", rerun(test)))
    };
    let (pointer, value) = (symbol("pointer_to_value"), symbol("target_value"));
    // SAFETY: both are in the live module's data, as the map says.
    let (held, number) = unsafe { (read_at::<u64>(pointer), read_at::<i32>(value)) };
    assert_eq!(held, value, "{}", rerun(test));
    assert_eq!(number, 42, "{}", rerun(test));
    let puts = {
        let name = std::ffi::CString::new("puts").unwrap();
        // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name.
        unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) as u64 }
    };
    let entry = map["got"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["target"] == "puts")
        .unwrap_or_else(|| panic!("no GOT entry for puts in {json}\n{}", rerun(test)));
    let entry_address = entry["address"].as_u64().unwrap();
    assert_eq!(entry["value"].as_u64(), Some(puts), "{}", rerun(test));
    // SAFETY: the GOT is in the live module's read-only data.
    let held = unsafe { read_at::<u64>(entry_address) };
    assert_eq!(held, puts, "{}", rerun(test));
    let stub = map["stubs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["target"] == "puts")
        .unwrap_or_else(|| panic!("no stub for puts in {json}\n{}", rerun(test)));
    let stub_address = stub["address"].as_u64().unwrap();
    // SAFETY: a stub is `jmp *rel32(%rip)`, 6 bytes of the module's code.
    let bytes = unsafe { read_at::<[u8; 6]>(stub_address) };
    assert_eq!(bytes[..2], [0xff, 0x25], "{}", rerun(test));
    let displacement = i32::from_le_bytes(bytes[2..6].try_into().unwrap());
    let through = (stub_address + 6).wrapping_add_signed(displacement.into());
    assert_eq!(through, entry_address, "{}", rerun(test));
    assert_eq!(
        stub["got_entry"].as_u64(),
        Some(entry_address),
        "{}",
        rerun(test)
    );
    let address_of_puts = session.lookup("address_of_puts").unwrap().unwrap();
    // SAFETY: a function of the fixture taking nothing.
    let returned = unsafe { session.call(address_of_puts, &[]) }.unwrap();
    assert_eq!(returned, puts, "{}", rerun(test));
    session.end();
}

/// Runs `solder ARGS...` with `LIBRARY_PATH` set to `library_path`.
fn solder_with_library_path(args: &[&str], library_path: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_solder"))
        .args(args)
        .env("LIBRARY_PATH", library_path)
        .output()
        .expect("run solder")
}

/// After the `-L` directories, `-l` searches those of `LIBRARY_PATH`, as
/// the compiler driver passes them on.
#[test]
fn library_path_directories_come_after_the_l_directories() {
    let test = "library_path_directories_come_after_the_l_directories";
    let dir = scratch(test);
    let (first, second) = (dir.join("first"), dir.join("second"));
    libpick_archive(&first, 1);
    libpick_archive(&second, 2);
    let main = compile("linker/archives/pick_main.c", &["-O2"]);
    let main = main.to_str().unwrap();
    for (args, status) in [
        (vec!["run", main, "-l", "pick"], 2),
        (
            vec!["run", main, "-L", first.to_str().unwrap(), "-l", "pick"],
            1,
        ),
    ] {
        let output = solder_with_library_path(&args, &second);
        assert_eq!(
            output.status.code(),
            Some(status),
            "LIBRARY_PATH={} solder {}: {}\n{}",
            second.display(),
            args.join(" "),
            stderr(&output),
            rerun(test)
        );
    }
}

/// A `libNAME.so` that is a linker script stands for the files it names:
/// paths relative to its directory, `-lNAME`s searched as `-l` is,
/// `AS_NEEDED` lists. A script that is not a library's, or that names
/// itself, is refused, naming the script.
#[test]
fn a_linker_script_stands_for_the_files_it_names() {
    let test = "a_linker_script_stands_for_the_files_it_names";
    let dir = scratch(test);
    let lib = dir.join("lib");
    libpick_archive(&lib.join("parts"), 4);
    libpick_archive(&dir.join("other"), 5);
    let scripts = [
        (
            "libbypath.so",
            "/* GNU ld script */\nOUTPUT_FORMAT(elf64-x86-64)\nGROUP ( parts/libpick.a )\n",
        ),
        ("libbyname.so", "INPUT ( AS_NEEDED ( -lpick ) )"),
        (
            "libsections.so",
            "/* a program's */ SECTIONS { . = 0x10000; }",
        ),
        ("libloop.so", "INPUT(-lloop)"),
        ("libmissing.so", "GROUP ( parts/libnothere.a )"),
    ];
    for (name, text) in scripts {
        std::fs::write(lib.join(name), text).unwrap();
    }
    let main = compile("linker/archives/pick_main.c", &["-O2"]);
    let main = main.to_str().unwrap();
    let (lib, other) = (lib.to_str().unwrap(), dir.join("other"));
    let other = other.to_str().unwrap();
    for (args, status) in [
        (vec!["-L", lib, "-l", "bypath"], 4),
        (vec!["-L", lib, "-L", other, "-l", "byname"], 5),
    ] {
        let mut command = vec!["run", main];
        command.extend(&args);
        let output = solder(&command);
        assert_eq!(
            output.status.code(),
            Some(status),
            "solder {}: {}\n{}",
            command.join(" "),
            stderr(&output),
            rerun(test)
        );
    }
    for (name, says) in [
        (
            "sections",
            "`SECTIONS` is not a command a library's script has",
        ),
        ("loop", "more than 8 deep"),
        ("missing", "parts/libnothere.a, which is not a file"),
    ] {
        let output = solder(&["run", main, "-L", lib, "-l", name]);
        let message = stderr(&output);
        let script = format!("{lib}/lib{name}.so: linker script: ");
        assert!(
            output.status.code() == Some(125)
                && message.contains(&script)
                && message.contains(says),
            "-l{name}: want status 125 and `{script}...{says}`, got {:?}: {message}\n{}",
            output.status.code(),
            rerun(test)
        );
    }
}

/// glibc's own libraries link as `cc` links them: `-lpthread`, `-ldl` and
/// `-lrt` find its empty archives, `-lm` and `-lc` its linker scripts.
/// `-lc` takes `atexit` from `libc_nonshared.a`, which passes the value at
/// `__dso_handle` (not its address) to `__cxa_atexit`: the handler runs at
/// exit, in process and in an executor.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn the_c_librarys_own_libraries_link_as_cc_links_them() {
    let test = "the_c_librarys_own_libraries_link_as_cc_links_them";
    let program = compile("linker/archives/libc_parts.c", &["-O2"]);
    let program = program.to_str().unwrap();
    let libraries = ["-lc", "-lm", "-lpthread", "-ldl", "-lrt"];
    for executor in ["inproc", "pipe"] {
        let mut command = vec!["run", "--executor", executor, "--print-map", program];
        command.extend(libraries);
        let output = solder(&command);
        let out = stdout(&output);
        assert!(
            output.status.success(),
            "solder {}: {}\n{}",
            command.join(" "),
            stderr(&output),
            rerun(test)
        );
        assert!(
            out.contains("libc_nonshared.a(atexit.oS) `atexit`"),
            "`atexit` must come from libc_nonshared.a for this test to mean anything; the map:\n{out}\n{}",
            rerun(test)
        );
        assert!(
            out.contains("root 7 dlopen 1 clock 0\n") && out.ends_with("atexit handler ran\n"),
            "solder {}: {out}\n{}",
            command.join(" "),
            rerun(test)
        );
    }
}

/// An archive is read as the session reads objects: a session that
/// keeps no debug information reads its `-g` members without their
/// DWARF (and says so), one that keeps it (`enable_debug` first) reads
/// them whole; either way the program links and runs alike.
#[test]
fn an_archives_members_keep_their_dwarf_only_when_the_session_keeps_it() {
    let test = "an_archives_members_keep_their_dwarf_only_when_the_session_keeps_it";
    let dir = scratch(test);
    let mut c = String::from("int pick(void) { return 6; }\n");
    for i in 0..600 {
        c += &format!("struct s{i} {{ long a{i}, b{i}; char n{i}[8]; }};\n");
        c += &format!(
            "long f{i}(struct s{i} *s) {{ return s->a{i} - s->b{i} * {i} + s->n{i}[1]; }}\n"
        );
    }
    let source = dir.join("pick_g.c");
    std::fs::write(&source, c).unwrap();
    let member = dir.join("pick_g.o");
    let compiled = Command::new("cc")
        .args(["-g", "-O1", "-c"])
        .arg(&source)
        .arg("-o")
        .arg(&member)
        .output()
        .expect("run cc");
    assert!(
        compiled.status.success(),
        "{}\n{}",
        stderr(&compiled),
        rerun(test)
    );
    assert!(
        std::fs::metadata(&member).unwrap().len() > 128 << 10,
        "the -g member is too small to be read in pieces\n{}",
        rerun(test)
    );
    let archive = dir.join("libpickg.a");
    ar("rcs", &archive, &[member]);
    let main = compile("linker/archives/pick_main.c", &["-O2"]);
    for keep_debug in [false, true] {
        let mut session = Session::new(SessionConfig::default()).unwrap();
        if keep_debug {
            session.enable_debug();
        }
        let read = session.read_archive(&archive).unwrap();
        assert_eq!(
            read.debug_left_out(),
            !keep_debug,
            "keep_debug {keep_debug}\n{}",
            rerun(test)
        );
        session.add_archive(read, false);
        session
            .load_program(&[support::object(&main)], "main")
            .unwrap();
        assert_eq!(call(&mut session, "main", &[]), 6, "{}", rerun(test));
    }
}

/// A session whose archives are closed (`solder run` closes them once the
/// program is linked, before it runs) keeps the members its modules took,
/// and a later load takes none: a name only an archive defines is then
/// undefined, where the open list would have given its member (whose own
/// missing name would have been the error).
#[test]
fn closed_archives_give_later_loads_no_members() {
    let test = "closed_archives_give_later_loads_no_members";
    let dir = scratch(test);
    let objects = members(&dir, &["unused", "add", "scale", "twice"]);
    let path = dir.join("lib.a");
    ar("rcs", &path, &objects);
    let main = ObjectFile::read(&compile("conformance/linking/archive/main.c", &["-O2"])).unwrap();
    let source = dir.join("calls_unused.c");
    std::fs::write(
        &source,
        "int ar_unused(void);\nint call_unused(void) { return ar_unused(); }\n",
    )
    .unwrap();
    let built = dir.join("calls_unused.o");
    let cc = Command::new("cc")
        .args(["-c", "-O2", "-o"])
        .arg(&built)
        .arg(&source)
        .output()
        .expect("run cc");
    assert!(cc.status.success(), "{}\n{}", stderr(&cc), rerun(test));
    let calls_unused = ObjectFile::read(&built).unwrap();
    for close in [false, true] {
        let mut session = support::session();
        session.add_archive(Archive::read(&path).unwrap(), false);
        session.load(std::slice::from_ref(&main)).unwrap();
        if close {
            session.close_archives();
        }
        assert_eq!(call(&mut session, "main_sum", &[5]), 36, "{}", rerun(test));
        let error = session
            .load(std::slice::from_ref(&calls_unused))
            .expect_err("nothing defines what the member needs")
            .to_string();
        let named = if close { "ar_unused" } else { "ar_missing" };
        assert!(
            error.contains(named),
            "closed: {close}: the error should name {named}: {error}\n{}",
            rerun(test)
        );
        session.end();
    }
}

/// `cc -c` of `source` (C) into `dir/name.o`.
fn cc_object(test: &str, dir: &Path, name: &str, source: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let c = dir.join(format!("{name}.c"));
    std::fs::write(&c, source).unwrap();
    let object = dir.join(format!("{name}.o"));
    let cc = Command::new("cc")
        .args(["-c", "-O2", "-fPIC", "-o"])
        .arg(&object)
        .arg(&c)
        .output()
        .expect("run cc");
    assert!(cc.status.success(), "{}\n{}", stderr(&cc), rerun(test));
    object
}

/// Two members of one archive with the same name (`ar` keeps file names
/// only, so `one/gen.o` and `two/gen.o` are both `gen.o`, as protobuf's
/// `libprotoc.a` has two `generator.cc.o`): both are taken, each with its
/// own internal symbols and its own constructor, and the map names each
/// with the name that pulled it.
#[test]
fn members_of_the_same_name_are_each_taken() {
    let test = "members_of_the_same_name_are_each_taken";
    let dir = scratch(test);
    let generator = |n: u32| {
        format!(
            "static int made;\n__attribute__((constructor)) static void init(void) {{ made = {n}; }}\n\
             int gen_{n}(void) {{ return made * 10 + {n}; }}\n"
        )
    };
    let one = cc_object(test, &dir.join("one"), "gen", &generator(1));
    let two = cc_object(test, &dir.join("two"), "gen", &generator(2));
    let library = dir.join("libgen.a");
    ar("rcs", &library, &[one, two]);
    let listed = Command::new("ar").arg("t").arg(&library).output().unwrap();
    assert_eq!(stdout(&listed), "gen.o\ngen.o\n", "{}", rerun(test));
    let main = cc_object(
        test,
        &dir,
        "main",
        "int gen_1(void);\nint gen_2(void);\nint both(void) { return gen_1() * 100 + gen_2(); }\n",
    );
    let mut session = low_session_with_maps();
    session.add_archive(Archive::read(&library).unwrap(), false);
    let id = session.load(&[ObjectFile::read(&main).unwrap()]).unwrap();
    assert_eq!(call(&mut session, "both", &[]), 1122, "{}", rerun(test));
    let map = session.link_map(id).unwrap();
    let pulled: Vec<(String, Option<String>)> = map
        .members
        .iter()
        .map(|m| (m.member.clone(), m.pulled_by.clone()))
        .collect();
    let expected =
        ["gen_1", "gen_2"].map(|by| ("libgen.a(gen.o)".to_string(), Some(by.to_string())));
    let ends_with = |(member, by): &(String, Option<String>),
                     (want, want_by): &(String, Option<String>)| {
        member.ends_with(want.as_str()) && by == want_by
    };
    assert!(
        pulled.len() == 2 && pulled.iter().zip(&expected).all(|(p, e)| ends_with(p, e)),
        "{pulled:?}\n{}",
        rerun(test)
    );
    session.end();
}
