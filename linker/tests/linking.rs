//! Symbol resolution, with real objects built by `cc -O2` / `clang -O2` and
//! `c++ -O2` / `clang++ -O2` (fixtures under `fixtures/linker/linking/`):
//! strong against weak definitions in either order, duplicate strong
//! definitions, common symbols, COMDAT groups, undefined weak and undefined
//! symbols, hidden and internal visibility, host symbols from libm and
//! through the GOT, missing libraries, and C++ exceptions thrown and caught
//! across two JIT'd objects (through `solder run`, compared with a native
//! link).
//!
//! Where a test depends on what the compiler emitted (a common symbol, a
//! COMDAT group, a GOT relocation), it first checks the object really
//! contains it, independently of Solder's front-end, so the test cannot pass
//! by exercising nothing.

mod support;

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use object::read::elf::ElfFile64;
use object::{Object, ObjectSection, ObjectSymbol, RelocationTarget};
use solder_linker::{ObjectFile, Placement, Session, SessionConfig};
use support::{call, object, session, solder, stderr, stdout};

const COMPILERS: [&str; 2] = ["cc", "clang"];
const CXX_COMPILERS: [&str; 2] = ["c++", "clang++"];

/// The command that reruns one test of this file.
fn rerun(test: &str) -> String {
    format!("rerun: cargo test -p solder-linker --test linking -- {test} --exact")
}

/// Compiles a fixture once per test process (`support::compile_with` writes
/// to a fixed path per compiler, source and flags, so concurrent compiles of
/// one fixture would race on that file).
fn build(compiler: &str, source: &str, flags: &[&str]) -> PathBuf {
    static BUILT: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    built
        .get_or_insert_with(HashMap::new)
        .entry(format!("{compiler} {source} {flags:?}"))
        .or_insert_with(|| support::compile_with(compiler, source, flags))
        .clone()
}

/// `fixtures/linker/linking/NAME` compiled with `compiler -O2 FLAGS`.
fn fixture(compiler: &str, name: &str, flags: &[&str]) -> PathBuf {
    let mut all = vec!["-O2"];
    all.extend_from_slice(flags);
    build(compiler, &format!("linker/linking/{name}"), &all)
}

fn load_all(
    session: &mut Session,
    paths: &[&Path],
) -> Result<solder_linker::ModuleId, solder_linker::LinkError> {
    let objects: Vec<ObjectFile> = paths.iter().map(|p| object(p)).collect();
    session.load(&objects)
}

/// Reads an object with the `object` crate, independently of Solder.
fn with_elf<T>(path: &Path, f: impl FnOnce(&ElfFile64<'_>) -> T) -> T {
    let data = std::fs::read(path).unwrap();
    let file = ElfFile64::<object::Endianness>::parse(&*data).unwrap();
    f(&file)
}

#[test]
fn strong_definition_beats_weak_in_either_order() {
    let test = "strong_definition_beats_weak_in_either_order";
    for compiler in COMPILERS {
        let weak = fixture(compiler, "weak_pick.c", &[]);
        let strong = fixture(compiler, "strong_pick.c", &[]);
        let weak_is_weak = with_elf(&weak, |f| {
            f.symbols()
                .any(|s| s.name() == Ok("pick") && s.is_weak() && s.is_definition())
        });
        assert!(
            weak_is_weak,
            "{compiler}: weak_pick.o must define pick weakly\n{}",
            rerun(test)
        );
        for (order, objs) in [
            ("weak-strong", [&weak, &strong]),
            ("strong-weak", [&strong, &weak]),
        ] {
            let mut session = session();
            load_all(&mut session, &[objs[0], objs[1]])
                .unwrap_or_else(|e| panic!("{compiler} {order}: {e}\n{}", rerun(test)));
            for caller in ["pick", "weak_side_pick", "strong_side_pick"] {
                assert_eq!(
                    call(&mut session, caller, &[]),
                    2,
                    "{compiler}, order {order}: {caller}() must reach the strong pick()\n{}",
                    rerun(test)
                );
            }
        }
    }
}

#[test]
fn two_strong_definitions_are_an_error_naming_both_objects() {
    let test = "two_strong_definitions_are_an_error_naming_both_objects";
    for compiler in COMPILERS {
        let a = fixture(compiler, "dup_a.c", &[]);
        let b = fixture(compiler, "dup_b.c", &[]);
        let mut session = session();
        let err = load_all(&mut session, &[&a, &b])
            .expect_err("two strong definitions of dup_fn in one load")
            .to_string();
        for needle in ["`dup_fn`", a.to_str().unwrap(), b.to_str().unwrap()] {
            assert!(
                err.contains(needle),
                "{compiler}: the error must contain {needle}: {err}\n{}",
                rerun(test)
            );
        }
        // The failed load left nothing behind: dup_a alone loads, and then
        // dup_b in a later load clashes with the live module.
        load_all(&mut session, &[&a]).unwrap();
        assert_eq!(
            call(&mut session, "dup_fn", &[]),
            1,
            "{compiler}\n{}",
            rerun(test)
        );
        let err = load_all(&mut session, &[&b])
            .expect_err("a strong definition clashing with a live module's export")
            .to_string();
        assert!(
            err.contains("`dup_fn`")
                && err.contains(a.to_str().unwrap())
                && err.contains(b.to_str().unwrap()),
            "{compiler}: the cross-load clash must name the symbol and both objects: {err}\n{}",
            rerun(test)
        );
    }
}

#[test]
fn common_symbols_merge_at_the_largest_size() {
    let test = "common_symbols_merge_at_the_largest_size";
    for compiler in COMPILERS {
        let small = fixture(compiler, "common_small.c", &["-fcommon"]);
        let large = fixture(compiler, "common_large.c", &["-fcommon"]);
        for (path, size) in [(&small, 16), (&large, 64)] {
            let common = with_elf(path, |f| {
                f.symbols()
                    .find(|s| s.name() == Ok("shared_buf"))
                    .map(|s| (s.is_common(), s.size()))
            });
            assert_eq!(
                common,
                Some((true, size)),
                "{compiler}: {} must hold a common shared_buf\n{}",
                path.display(),
                rerun(test)
            );
        }
        for (order, objs) in [
            ("small-large", [&small, &large]),
            ("large-small", [&large, &small]),
        ] {
            let mut session = session();
            load_all(&mut session, &[objs[0], objs[1]])
                .unwrap_or_else(|e| panic!("{compiler} {order}: {e}\n{}", rerun(test)));
            let buf = session
                .lookup("shared_buf")
                .unwrap()
                .expect("shared_buf exported");
            let tail = session
                .lookup("shared_tail")
                .unwrap()
                .expect("shared_tail exported");
            assert_eq!(
                call(&mut session, "small_side_buf", &[]),
                buf,
                "{compiler} {order}: one shared_buf\n{}",
                rerun(test)
            );
            assert_eq!(
                call(&mut session, "large_side_buf", &[]),
                buf,
                "{compiler} {order}: one shared_buf\n{}",
                rerun(test)
            );
            assert!(
                tail >= buf + 64 || tail + 16 <= buf,
                "{compiler} {order}: shared_buf at {buf:#x} must have the largest size (64 bytes) \
                 and not overlap shared_tail at {tail:#x}\n{}",
                rerun(test)
            );
            call(&mut session, "fill_tail", &[1000]);
            call(&mut session, "fill_buf", &[1]);
            assert_eq!(
                call(&mut session, "buf_sum", &[]),
                (1..=16).sum::<u64>(),
                "{compiler} {order}\n{}",
                rerun(test)
            );
            assert_eq!(
                call(&mut session, "tail_sum", &[]),
                1000 + 1001 + 1002 + 1003,
                "{compiler} {order}: filling the 64-byte shared_buf clobbered shared_tail\n{}",
                rerun(test)
            );
        }
    }
}

/// A common symbol is a tentative definition: like a weak one, it yields to
/// a definition already in the session (as it yields to a real definition
/// in a native link, and as a dynamic linker binds to the first definition),
/// instead of clashing with it.
#[test]
fn common_symbol_yields_to_an_earlier_module_definition() {
    let test = "common_symbol_yields_to_an_earlier_module_definition";
    for compiler in COMPILERS {
        let definition = fixture(compiler, "counter_def.c", &[]);
        let common = fixture(compiler, "common_redecl.c", &["-fcommon"]);
        let is_common = with_elf(&common, |f| {
            f.symbols()
                .any(|s| s.name() == Ok("counter") && s.is_common())
        });
        assert!(
            is_common,
            "{compiler}: common_redecl.o must hold a common `counter`\n{}",
            rerun(test)
        );
        let mut session = session();
        load_all(&mut session, &[&definition]).unwrap();
        load_all(&mut session, &[&common]).unwrap_or_else(|e| {
            panic!(
                "{compiler}: a later load's common `counter` must bind to module 1's definition: {e}\n{}",
                rerun(test)
            )
        });
        assert_eq!(
            call(&mut session, "bump_counter", &[]),
            42,
            "{compiler}: the common must be the earlier definition (41 + 1)\n{}",
            rerun(test)
        );
        assert_eq!(
            call(&mut session, "read_counter", &[]),
            42,
            "{compiler}: both modules must see one `counter`\n{}",
            rerun(test)
        );
    }
}

/// A common symbol that loses to a real definition takes no memory: in one
/// load (a native link uses the definition), and in a later load (it binds
/// to the definition another module exports). The common here is 1 MiB, so
/// allocating it anyway would show in the slab.
#[test]
fn commons_that_lose_to_a_definition_take_no_memory() {
    let test = "commons_that_lose_to_a_definition_take_no_memory";
    for compiler in COMPILERS {
        let common = fixture(compiler, "big_common.c", &["-fcommon"]);
        let definition = fixture(compiler, "small_def.c", &[]);
        let is_common = with_elf(&common, |f| {
            f.symbols()
                .any(|s| s.name() == Ok("big_buf") && s.is_common() && s.size() == 1 << 20)
        });
        assert!(
            is_common,
            "{compiler}: a 1 MiB common big_buf\n{}",
            rerun(test)
        );
        for separate_loads in [false, true] {
            let mut session = session();
            if separate_loads {
                load_all(&mut session, &[&definition]).unwrap();
                load_all(&mut session, &[&common]).unwrap();
            } else {
                load_all(&mut session, &[&common, &definition]).unwrap();
            }
            let buf = call(&mut session, "small_def_buf", &[]);
            assert_eq!(
                call(&mut session, "big_common_buf", &[]),
                buf,
                "{compiler} (separate loads: {separate_loads}): one big_buf\n{}",
                rerun(test)
            );
            assert!(
                session.slab_used() < 1 << 20,
                "{compiler} (separate loads: {separate_loads}): {} bytes used: the losing common was allocated\n{}",
                session.slab_used(),
                rerun(test)
            );
        }
    }
}

#[test]
fn comdat_groups_keep_one_copy_for_all_callers() {
    let test = "comdat_groups_keep_one_copy_for_all_callers";
    for compiler in CXX_COMPILERS {
        let a = fixture(compiler, "comdat_a.cpp", &[]);
        let b = fixture(compiler, "comdat_b.cpp", &[]);
        for path in [&a, &b] {
            let groups = with_elf(path, |f| f.comdats().count());
            assert!(
                groups >= 2,
                "{compiler}: {} has {groups} COMDAT groups\n{}",
                path.display(),
                rerun(test)
            );
        }
        let mut session = session();
        load_all(&mut session, &[&a, &b])
            .unwrap_or_else(|e| panic!("{compiler}: {e}\n{}", rerun(test)));
        // One inline function, one static counter behind it.
        let tickets: Vec<u64> = ["ticket_a", "ticket_b", "ticket_a", "ticket_b"]
            .iter()
            .map(|f| call(&mut session, f, &[]))
            .collect();
        assert_eq!(
            tickets,
            [1, 2, 3, 4],
            "{compiler}: both objects' callers must share next_ticket()'s static counter\n{}",
            rerun(test)
        );
        // One template static data member.
        assert_eq!(
            call(&mut session, "register_a", &[5]),
            105,
            "{compiler}\n{}",
            rerun(test)
        );
        assert_eq!(
            call(&mut session, "register_b", &[7]),
            112,
            "{compiler}: both objects must share Registry<int>::entries\n{}",
            rerun(test)
        );
        // The same function address from both objects.
        let (ta, tb) = (
            call(&mut session, "ticket_fn_a", &[]),
            call(&mut session, "ticket_fn_b", &[]),
        );
        let (aa, ab) = (
            call(&mut session, "add_fn_a", &[]),
            call(&mut session, "add_fn_b", &[]),
        );
        assert!(
            ta != 0 && aa != 0,
            "{compiler}: null function addresses\n{}",
            rerun(test)
        );
        assert_eq!(
            ta,
            tb,
            "{compiler}: &next_ticket differs between the objects\n{}",
            rerun(test)
        );
        assert_eq!(
            aa,
            ab,
            "{compiler}: &Registry<int>::add differs between the objects\n{}",
            rerun(test)
        );
    }
}

/// `maybe_or` calls `maybe` (a branch, R_X86_64_PLT32) after testing its
/// address: the branch must link whether or not address 0 is within 2 GiB
/// of the slab, so both placements are tried explicitly.
#[test]
fn undefined_weak_reference_resolves_to_null() {
    let test = "undefined_weak_reference_resolves_to_null";
    for compiler in COMPILERS {
        let weak = fixture(compiler, "weak_undef.c", &[]);
        let def = fixture(compiler, "maybe_def.c", &[]);
        for placement in [Placement::NearHost, Placement::Low] {
            let mut session = Session::new(SessionConfig {
                slab_size: 64 << 20,
                placement,
                ..SessionConfig::default()
            })
            .unwrap();
            load_all(&mut session, &[&weak])
                .unwrap_or_else(|e| panic!("{compiler}, slab {placement:?}: {e}\n{}", rerun(test)));
            assert_eq!(
                call(&mut session, "has_maybe", &[]),
                0,
                "{compiler}, slab {placement:?}: &maybe must be 0\n{}",
                rerun(test)
            );
            assert_eq!(
                call(&mut session, "maybe_or", &[5]),
                5,
                "{compiler}, slab {placement:?}\n{}",
                rerun(test)
            );
        }
        // Defined in the same load, the weak reference binds to it.
        let mut session = session();
        load_all(&mut session, &[&weak, &def]).unwrap();
        assert_eq!(
            call(&mut session, "has_maybe", &[]),
            1,
            "{compiler}\n{}",
            rerun(test)
        );
        assert_eq!(
            call(&mut session, "maybe_or", &[5]),
            77,
            "{compiler}\n{}",
            rerun(test)
        );
    }
}

/// The section and offset of the first relocation against `symbol` in the
/// object at `path`, read with the `object` crate.
fn reference_site(path: &Path, symbol: &str) -> (String, u64) {
    with_elf(path, |f| {
        for section in f.sections() {
            for (offset, reloc) in section.relocations() {
                if let RelocationTarget::Symbol(index) = reloc.target()
                    && f.symbol_by_index(index).unwrap().name() == Ok(symbol)
                {
                    return (section.name().unwrap().to_string(), offset);
                }
            }
        }
        panic!("{} has no relocation against {symbol}", path.display())
    })
}

#[test]
fn undefined_symbol_error_names_symbol_object_section_and_offset() {
    let test = "undefined_symbol_error_names_symbol_object_section_and_offset";
    for compiler in COMPILERS {
        let undef = fixture(compiler, "undef.c", &[]);
        let (section, offset) = reference_site(&undef, "missing_function");
        let mut session = session();
        let err = load_all(&mut session, &[&undef])
            .expect_err("missing_function is defined nowhere")
            .to_string();
        for needle in [
            "`missing_function`".to_string(),
            undef.display().to_string(),
            format!("section {section}"),
            format!("offset {offset:#x}"),
        ] {
            assert!(
                err.contains(&needle),
                "{compiler}: the error must contain `{needle}`: {err}\n{}",
                rerun(test)
            );
        }
        // The session is still usable.
        load_all(&mut session, &[&fixture(compiler, "maybe_def.c", &[])]).unwrap();
        assert_eq!(
            call(&mut session, "maybe", &[]),
            77,
            "{compiler}\n{}",
            rerun(test)
        );
    }
}

#[test]
fn hidden_and_internal_symbols_link_within_a_load_but_are_not_exported() {
    let test = "hidden_and_internal_symbols_link_within_a_load_but_are_not_exported";
    for compiler in COMPILERS {
        let defs = fixture(compiler, "visibility_defs.c", &[]);
        let user = fixture(compiler, "visibility_user.c", &[]);
        let mut session = session();
        load_all(&mut session, &[&defs, &user])
            .unwrap_or_else(|e| panic!("{compiler}: {e}\n{}", rerun(test)));
        assert_eq!(
            call(&mut session, "use_hidden", &[]),
            11 + 22 + 33,
            "{compiler}: hidden and internal symbols used across objects of one load\n{}",
            rerun(test)
        );
        for name in ["hidden_fn", "internal_fn", "hidden_data"] {
            assert_eq!(
                session.lookup(name).unwrap(),
                None,
                "{compiler}: {name} must not be exported\n{}",
                rerun(test)
            );
        }
        assert!(
            session.lookup("visible_fn").unwrap().is_some(),
            "{compiler}: visible_fn is exported\n{}",
            rerun(test)
        );
        let outsider = fixture(compiler, "visibility_outsider.c", &[]);
        let err = load_all(&mut session, &[&outsider])
            .expect_err("a later load must not see a hidden symbol")
            .to_string();
        assert!(
            err.contains("undefined symbol `hidden_fn`"),
            "{compiler}: {err}\n{}",
            rerun(test)
        );
    }
}

#[test]
fn libm_symbols_resolve_by_default() {
    let test = "libm_symbols_resolve_by_default";
    for compiler in COMPILERS {
        let user = fixture(compiler, "libm_user.c", &[]);
        let imports_cos = with_elf(&user, |f| {
            f.symbols()
                .any(|s| s.name() == Ok("cos") && s.is_undefined())
        });
        assert!(
            imports_cos,
            "{compiler}: libm_user.o must import cos\n{}",
            rerun(test)
        );
        let mut session = session();
        load_all(&mut session, &[&user])
            .unwrap_or_else(|e| panic!("{compiler}: {e}\n{}", rerun(test)));
        // (int)(cos(x) * 1000), truncated toward zero.
        for (milli, expected) in [(0u64, 1000i32), (1000, 540), (3142, -999)] {
            let got = call(&mut session, "cos_millis", &[milli]) as u32 as i32;
            assert_eq!(
                got,
                expected,
                "{compiler}: cos_millis({milli})\n{}",
                rerun(test)
            );
        }
    }
}

#[test]
fn missing_libraries_are_clear_errors() {
    let test = "missing_libraries_are_clear_errors";
    let err = Session::new(SessionConfig {
        libraries: vec!["solder_no_such_library".into()],
        ..SessionConfig::default()
    })
    .err()
    .expect("-l of a missing library must fail")
    .to_string();
    assert!(
        err.contains("solder_no_such_library"),
        "-l error: {err}\n{}",
        rerun(test)
    );
    let err = Session::new(SessionConfig {
        preloads: vec!["/nonexistent/libsolder_missing.so".into()],
        ..SessionConfig::default()
    })
    .err()
    .expect("a preload of a missing file must fail")
    .to_string();
    assert!(
        err.contains("/nonexistent/libsolder_missing.so"),
        "preload error: {err}\n{}",
        rerun(test)
    );

    let program = fixture("cc", "maybe_def.c", &[]);
    for args in [
        [
            "run",
            "-l",
            "solder_no_such_library",
            program.to_str().unwrap(),
        ],
        [
            "run",
            "--preload",
            "/nonexistent/libsolder_missing.so",
            program.to_str().unwrap(),
        ],
    ] {
        let output = solder(&args);
        assert_eq!(
            output.status.code(),
            Some(125),
            "solder {args:?}\n{}",
            rerun(test)
        );
        let message = stderr(&output);
        assert!(
            message.contains("solder_no_such_library")
                || message.contains("/nonexistent/libsolder_missing.so"),
            "solder {args:?}: stderr must name the library: {message}\n{}",
            rerun(test)
        );
    }
}

#[test]
fn host_symbols_through_the_got() {
    let test = "host_symbols_through_the_got";
    unsafe extern "C" {
        static environ: *const *const std::ffi::c_char;
    }
    for compiler in COMPILERS {
        let got = fixture(compiler, "got_host.c", &["-fPIC", "-fno-plt"]);
        let kinds = support::relocation_types(&got);
        assert!(
            kinds.contains(&object::elf::R_X86_64_REX_GOTPCRELX)
                || kinds.contains(&object::elf::R_X86_64_GOTPCRELX),
            "{compiler}: got_host.o must use GOT relocations: {kinds:?}\n{}",
            rerun(test)
        );
        let mut session = session();
        load_all(&mut session, &[&got])
            .unwrap_or_else(|e| panic!("{compiler}: {e}\n{}", rerun(test)));
        // SAFETY: reading the host's `environ` pointer.
        let host_environ = unsafe { environ } as u64;
        assert_eq!(
            call(&mut session, "host_environ", &[]),
            host_environ,
            "{compiler}: environ through the GOT\n{}",
            rerun(test)
        );
        assert_eq!(
            call(&mut session, "host_pid", &[]),
            u64::from(std::process::id()),
            "{compiler}: getpid() through the GOT\n{}",
            rerun(test)
        );
    }
}

/// Links `objects` natively with `driver` into `target/tmp/linker-native/NAME`.
fn link_native(driver: &str, objects: &[&Path], name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("linker-native");
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join(name);
    let result = Command::new(driver)
        .args(objects)
        .arg("-o")
        .arg(&exe)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {driver}: {e}"));
    assert!(
        result.status.success(),
        "native link with {driver} failed: {}",
        stderr(&result)
    );
    exe
}

fn exit_of(output: &Output) -> (Option<i32>, Option<i32>) {
    (output.status.code(), output.status.signal())
}

#[test]
fn cpp_exceptions_cross_jit_objects() {
    let test = "cpp_exceptions_cross_jit_objects";
    for compiler in CXX_COMPILERS {
        let thrower = fixture(compiler, "exceptions_throw.cpp", &[]);
        let catcher = fixture(compiler, "exceptions_main.cpp", &[]);
        let exe = link_native(
            compiler,
            &[&thrower, &catcher],
            &format!("exceptions-{compiler}"),
        );
        let native = Command::new(&exe).output().unwrap();
        assert_eq!(
            native.status.code(),
            Some(3),
            "{compiler}: the native reference catches 3 exceptions\n{}",
            rerun(test)
        );
        let jit = solder(&["run", thrower.to_str().unwrap(), catcher.to_str().unwrap()]);
        assert_eq!(
            stdout(&jit),
            stdout(&native),
            "{compiler}: `solder run` stdout (left) differs from native (right)\nsolder stderr:\n{}\n{}",
            stderr(&jit),
            rerun(test)
        );
        assert_eq!(
            exit_of(&jit),
            exit_of(&native),
            "{compiler}: (exit code, signal) of `solder run` (left) and native (right)\nsolder stderr:\n{}\n{}",
            stderr(&jit),
            rerun(test)
        );
    }
}
