//! Thread-local storage, in process and in a `solder-executor` over pipes
//! (with and without shared memory):
//!
//! - modules' blocks through the executor interface: a fixed block sits at
//!   the thread-pointer offset the executor reports, in the process that
//!   runs the code, initialized from the template; closing it is
//!   acknowledged, and an unknown id is an error;
//! - whole C and C++ programs compiled with each access model's flags
//!   (each proven by an independent reader to contain that model's
//!   relocations) print exactly what their native builds print: module
//!   variables per thread, the C++ runtime's own thread-local variables
//!   (`std::call_once`), `thread_local` destructors;
//! - a module is not removed while another thread holds its `thread_local`
//!   destructors;
//! - general- and local-dynamic sequences are rewritten (to initial exec,
//!   to a load of the thread pointer) when the block has room in static
//!   TLS, and left as they are when it has none;
//! - a fixed block larger than a process's default static TLS room runs
//!   in process (`solder run` starts again with room, once), unless the
//!   user set the room, or an input came through a pipe: then the error
//!   says so.
//!
//! Needs `target/<profile>/solder-executor` (built by `cargo test
//! --workspace`).

mod support;

use solder_executor::abi::CallingConvention;
use solder_executor::protocol::PlacementCode;
use solder_linker::executors::{
    Executor, ExecutorOutput, InProcess, Outcome, Remote, RemoteConfig, TlsTemplate,
};
use solder_linker::graph::Protection;
use solder_linker::{ExecutorChoice, LinkError, Session, SessionConfig};
use solder_linker::{Recovery, Transport};
use support::remote::executor_binary;

fn rerun(test: &str) -> String {
    format!("rerun: cargo test --workspace --test thread_locals -- {test} --exact")
}

/// Every executor this test tries, by name.
fn executors() -> Vec<(&'static str, Box<dyn Executor>)> {
    let remote = |shared_memory| {
        Remote::connect(RemoteConfig {
            transport: Transport::Pipe {
                program: Some(executor_binary()),
            },
            shared_memory,
            recovery: Recovery::None,
            output: ExecutorOutput::Local,
        })
        .unwrap()
    };
    vec![
        (
            "in process",
            Box::new(InProcess::new().unwrap()) as Box<dyn Executor>,
        ),
        ("pipe", Box::new(remote(false))),
        ("pipe, shared memory", Box::new(remote(true))),
    ]
}

/// `mov rax, qword ptr fs:[offset]; ret`: reads 8 bytes at `offset` from
/// the thread pointer of the thread that runs it.
fn read_at_tp_offset(offset: i64) -> Vec<u8> {
    let mut code = vec![0x64, 0x48, 0x8b, 0x04, 0x25];
    code.extend_from_slice(&i32::try_from(offset).unwrap().to_le_bytes());
    code.push(0xc3);
    code
}

#[test]
fn a_fixed_block_is_at_its_reported_offset_where_the_code_runs() {
    let test = "a_fixed_block_is_at_its_reported_offset_where_the_code_runs";
    let init = *b"0123456789abcdef";
    let template = TlsTemplate {
        init: &init,
        zero_size: 48,
        align: 32,
    };
    for (name, mut executor) in executors() {
        let block = executor.load_thread_locals(&template, true).unwrap();
        assert!(block.module > 0, "{name}: a module id\n{}", rerun(test));
        assert!(
            block.tp_offset < 0 && block.tp_offset % 32 == 0,
            "{name}: a fixed, aligned block below the thread pointer: {block:?}\n{}",
            rerun(test)
        );
        let page = executor.page_size();
        let base = executor.reserve(page, PlacementCode::Any, 0).unwrap();
        for (i, expected) in [(0, &init[..8]), (8, &init[8..])] {
            executor
                .write(base, &read_at_tp_offset(block.tp_offset + i))
                .unwrap();
            executor.protect(base, page, Protection::Code).unwrap();
            let outcome = executor
                .call(base, [0; 6], false, CallingConvention::SysV, None)
                .unwrap();
            let Outcome::Returned(value) = outcome else {
                panic!(
                    "{name}: the read returned nothing: {outcome:?}\n{}",
                    rerun(test)
                );
            };
            assert_eq!(
                &value.to_le_bytes()[..],
                expected,
                "{name}: the template's bytes {i}.. at the reported offset\n{}",
                rerun(test)
            );
        }
        executor.drop_thread_locals(block.id).unwrap();
        executor.flush().unwrap();
        let again = executor
            .drop_thread_locals(block.id)
            .and_then(|()| executor.flush());
        assert!(
            again.is_err(),
            "{name}: an unknown id is refused\n{}",
            rerun(test)
        );
    }
}

#[test]
fn a_template_the_loader_cannot_place_is_an_error() {
    let test = "a_template_the_loader_cannot_place_is_an_error";
    // Far more than static TLS holds without the tunable that enlarges it.
    let zero = TlsTemplate {
        init: &[],
        zero_size: 1 << 30,
        align: 16,
    };
    let odd = TlsTemplate {
        init: &[1],
        zero_size: 0,
        align: 24,
    };
    for (name, mut executor) in executors() {
        let error = executor
            .load_thread_locals(&zero, true)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("static TLS"),
            "{name}: the loader's refusal: {error}\n{}",
            rerun(test)
        );
        let error = executor
            .load_thread_locals(&odd, true)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("power of two"),
            "{name}: {error}\n{}",
            rerun(test)
        );
    }
}

/// The `solder run` flags of each executor these tests compare.
const RUN_MODES: [(&str, &[&str]); 3] = [
    ("in process", &[]),
    ("pipe", &["--executor", "pipe"]),
    ("pipe, shared memory", &["--executor", "pipe", "--shm"]),
];

/// `solder run OBJECT` in each of [`RUN_MODES`]: each mode's name and
/// what the run gave.
fn run_in_each_mode(object: &std::path::Path) -> Vec<(&'static str, std::process::Output)> {
    RUN_MODES
        .iter()
        .map(|&(mode, mode_flags)| {
            let mut args = vec!["run"];
            args.extend_from_slice(mode_flags);
            args.push(object.to_str().unwrap());
            (mode, support::solder(&args))
        })
        .collect()
}

/// Links `object` natively with `driver` (`cc` or `g++`) and runs it:
/// what the program prints when the platform's linker and loader run it.
fn native_stdout(driver: &str, object: &std::path::Path, test: &str) -> String {
    let exe = object.with_extension("native");
    let built = std::process::Command::new(driver)
        .arg(object)
        .args(["-pthread", "-no-pie"])
        .arg("-o")
        .arg(&exe)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {driver}: {e}\n{}", rerun(test)));
    assert!(
        built.status.success(),
        "{driver} {} failed: {}\n{}",
        object.display(),
        String::from_utf8_lossy(&built.stderr),
        rerun(test)
    );
    let run = std::process::Command::new(&exe).output().unwrap();
    assert!(
        run.status.success(),
        "the native build failed\n{}",
        rerun(test)
    );
    String::from_utf8_lossy(&run.stdout).into_owned()
}

/// Compiles `source` with `flags`, checks that it contains every one of
/// `relocations` (read independently of Solder), and runs it with `solder
/// run` in every executor: each must print what the native build prints.
fn runs_like_native(
    driver: &str,
    source: &str,
    flags: &[&str],
    relocations: &[object::elf::RelocationType],
    test: &str,
) {
    let object = support::compile_with(driver, source, flags);
    let found = support::relocation_types(&object);
    for r in relocations {
        assert!(
            found.contains(r),
            "{source} {flags:?} has no relocation of type {r}: {found:?}\n{}",
            rerun(test)
        );
    }
    let native = native_stdout(driver, &object, test);
    for (mode, output) in run_in_each_mode(&object) {
        assert!(
            output.status.success(),
            "{source} {flags:?} {mode}: {}\n{}",
            support::stderr(&output),
            rerun(test)
        );
        assert_eq!(
            support::stdout(&output),
            native,
            "{source} {flags:?} {mode}: not what the native build prints\n{}",
            rerun(test)
        );
    }
}

#[test]
fn a_program_of_each_access_model_runs_like_its_native_build() {
    use object::elf::*;
    let test = "a_program_of_each_access_model_runs_like_its_native_build";
    let models: [(&[&str], &[RelocationType]); 5] = [
        (&["-O1", "-fno-pic"], &[R_X86_64_TPOFF32]),
        (&["-O1", "-fPIE"], &[R_X86_64_TPOFF32]),
        (
            &["-O1", "-fPIC", "-ftls-model=initial-exec"],
            &[R_X86_64_GOTTPOFF],
        ),
        (
            &["-O1", "-fPIC"],
            &[R_X86_64_TLSGD, R_X86_64_TLSLD, R_X86_64_DTPOFF32],
        ),
        (
            &["-O1", "-fPIC", "-mtls-dialect=gnu2"],
            &[R_X86_64_GOTPC32_TLSDESC, R_X86_64_TLSDESC_CALL],
        ),
    ];
    for (flags, relocations) in models {
        runs_like_native("cc", "linker/tls/models.c", flags, relocations, test);
    }
}

#[test]
fn cxx_call_once_and_thread_local_destructors_run_like_the_native_build() {
    use object::elf::*;
    let test = "cxx_call_once_and_thread_local_destructors_run_like_the_native_build";
    // -fno-pic: the C++ runtime's variables by initial exec (GOTTPOFF), the
    // program's by local exec; -fPIC: both by general dynamic.
    runs_like_native(
        "g++",
        "linker/tls/once.cc",
        &["-O1", "-fno-pic"],
        &[R_X86_64_GOTTPOFF, R_X86_64_TPOFF32],
        test,
    );
    runs_like_native(
        "g++",
        "linker/tls/once.cc",
        &["-O1", "-fPIC"],
        &[R_X86_64_TLSGD, R_X86_64_TLSLD],
        test,
    );
}

#[test]
fn a_module_is_not_removed_while_another_thread_holds_its_thread_local_destructors() {
    let test = "a_module_is_not_removed_while_another_thread_holds_its_thread_local_destructors";
    let object = support::object(&support::compile_with(
        "g++",
        "linker/tls/holder.cc",
        &["-O1", "-fPIC"],
    ));
    let configs = [
        ("in process", SessionConfig::default()),
        (
            "pipe",
            SessionConfig {
                executor: ExecutorChoice::Remote {
                    transport: Transport::Pipe {
                        program: Some(executor_binary()),
                    },
                    shared_memory: false,
                },
                ..SessionConfig::default()
            },
        ),
    ];
    for (name, config) in configs {
        let mut session = Session::new(config).unwrap();
        let module = session.load(std::slice::from_ref(&object)).unwrap();
        assert_eq!(support::call(&mut session, "start_holder", &[]), 1);
        let refused = session.remove(module).unwrap_err();
        assert!(
            matches!(&refused, LinkError::Executor(why) if why.contains("thread_local destructor")),
            "{name}: {refused}\n{}",
            rerun(test)
        );
        assert_eq!(support::call(&mut session, "stop_holder", &[]), 2);
        session
            .remove(module)
            .unwrap_or_else(|e| panic!("{name}: after the thread ended: {e}\n{}", rerun(test)));
    }
}

/// A fixed block larger than the static TLS a process has free by default:
/// `solder run` in process starts again with room for it (once), and the
/// program prints what its native build prints in every executor.
#[test]
fn a_fixed_block_larger_than_the_default_static_tls_runs_like_native() {
    let test = "a_fixed_block_larger_than_the_default_static_tls_runs_like_native";
    let relocations = [object::elf::R_X86_64_TPOFF32];
    runs_like_native(
        "cc",
        "linker/tls/larger.c",
        &["-O1", "-fno-pic"],
        &relocations,
        test,
    );
}

/// The user's own `optional_static_tls` stands: a block it has no room for
/// is the error that says so, and `solder` does not start again.
#[test]
fn a_surplus_the_user_set_is_not_raised() {
    let test = "a_surplus_the_user_set_is_not_raised";
    let object = support::compile("linker/tls/larger.c", &["-O1", "-fno-pic"]);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_solder"))
        .arg("run")
        .arg(&object)
        .env("GLIBC_TUNABLES", "glibc.rtld.optional_static_tls=512")
        .output()
        .unwrap();
    let stderr = support::stderr(&output);
    assert_eq!(output.status.code(), Some(125), "{stderr}\n{}", rerun(test));
    assert!(
        stderr.contains("static TLS") && stderr.contains("optional_static_tls"),
        "the error does not say what is wanting: {stderr}\n{}",
        rerun(test)
    );
}

/// The first bytes of each sequence `relax.s` marks, as the load wrote
/// them.
fn sequence_starts(session: &mut Session, sites: &[&str]) -> Vec<Vec<u8>> {
    sites
        .iter()
        .map(|site| {
            // A label, not a function: the lookup gives its own address.
            let address = session.lookup(site).unwrap().expect("the site is exported");
            // SAFETY: the label is in the live module's code, mapped
            // readable, with at least 8 bytes of code after it.
            unsafe { std::slice::from_raw_parts(address as *const u8, 8) }.to_vec()
        })
        .collect()
}

/// A load whose block has room in static TLS is loaded fixed, and the
/// psABI's general-dynamic sequences (a PLT call, and `-fno-plt`'s call
/// through the GOT) become initial exec and its local-dynamic one a load
/// of the thread pointer, with no call of `__tls_get_addr` left; a
/// sequence whose call is another function's stays as it is. Each reads
/// the values the template gave its variables.
#[test]
fn general_and_local_dynamic_sequences_are_rewritten_when_the_block_is_fixed() {
    let test = "general_and_local_dynamic_sequences_are_rewritten_when_the_block_is_fixed";
    use object::elf::*;
    let object = support::compile("linker/tls/relax.s", &[]);
    let found = support::relocation_types(&object);
    for r in [
        R_X86_64_TLSGD,
        R_X86_64_TLSLD,
        R_X86_64_DTPOFF32,
        R_X86_64_GOTPCRELX,
    ] {
        assert!(
            found.contains(&r),
            "relax.s has no {r}: {found:?}\n{}",
            rerun(test)
        );
    }
    let mut session = support::session();
    session.load(&[support::object(&object)]).unwrap();
    for (function, expected) in [("gd_plt", 3), ("gd_got", 3), ("ld_sum", 9), ("gd_other", 3)] {
        let value = support::call(&mut session, function, &[]) as u32;
        assert_eq!(value, expected, "{function}\n{}", rerun(test));
    }
    let starts = sequence_starts(
        &mut session,
        &["gd_plt_site", "gd_got_site", "ld_site", "gd_other_site"],
    );
    let initial_exec = [0x64, 0x48, 0x8b, 0x04, 0x25]; // mov %fs:0, %rax
    let thread_pointer = [0x66, 0x66, 0x66, 0x64, 0x48, 0x8b, 0x04, 0x25];
    let general_dynamic = [0x66, 0x48, 0x8d, 0x3d]; // data16 lea x@tlsgd
    assert_eq!(starts[0][..5], initial_exec, "gd_plt\n{}", rerun(test));
    assert_eq!(starts[1][..5], initial_exec, "gd_got\n{}", rerun(test));
    assert_eq!(starts[2][..8], thread_pointer, "ld_sum\n{}", rerun(test));
    assert_eq!(starts[3][..4], general_dynamic, "gd_other\n{}", rerun(test));
}

/// A general-dynamic block too large for static TLS is loaded as it
/// would be without the rewrite (not fixed, reached through
/// `__tls_get_addr`): the program runs in every executor.
#[test]
fn a_general_dynamic_block_without_room_in_static_tls_still_runs() {
    let test = "a_general_dynamic_block_without_room_in_static_tls_still_runs";
    let object = support::compile("linker/tls/huge.c", &["-O1", "-fPIC"]);
    assert!(
        support::relocation_types(&object).contains(&object::elf::R_X86_64_TLSGD),
        "huge.c -fPIC has no general-dynamic access\n{}",
        rerun(test)
    );
    for (mode, output) in run_in_each_mode(&object) {
        assert!(
            output.status.success(),
            "{mode}: {}\n{}",
            support::stderr(&output),
            rerun(test)
        );
    }
}

/// An input read from a pipe cannot be read again: `solder` does not start
/// again for room, and the error says what is wanting.
#[test]
fn a_load_read_from_a_pipe_is_not_started_again() {
    use std::io::Write;
    let test = "a_load_read_from_a_pipe_is_not_started_again";
    let object = support::compile("linker/tls/larger.c", &["-O1", "-fno-pic"]);
    let bytes = std::fs::read(&object).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_solder"))
        .args(["run", "/dev/stdin"])
        .env_remove("GLIBC_TUNABLES")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&bytes).unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = support::stderr(&output);
    assert_eq!(output.status.code(), Some(125), "{stderr}\n{}", rerun(test));
    assert!(
        stderr.contains("static TLS"),
        "the error does not say what is wanting: {stderr}\n{}",
        rerun(test)
    );
}

#[test]
fn a_block_too_large_for_static_tls_is_a_clear_error() {
    let test = "a_block_too_large_for_static_tls_is_a_clear_error";
    let object = support::compile("linker/tls/huge.c", &["-O1", "-fPIE"]);
    assert!(
        support::relocation_types(&object).contains(&object::elf::R_X86_64_TPOFF32),
        "huge.c has no local-exec access\n{}",
        rerun(test)
    );
    for (mode, output) in run_in_each_mode(&object) {
        let stderr = support::stderr(&output);
        assert!(!output.status.success(), "{mode}: linked\n{}", rerun(test));
        for part in ["static TLS", "optional_static_tls", "-fPIC"] {
            assert!(
                stderr.contains(part),
                "{mode}: the error does not say `{part}`: {stderr}\n{}",
                rerun(test)
            );
        }
    }
}

/// An import slot (`__imp_NAME` of a COFF object) holds an address: one
/// naming another module's thread-local variable is refused, naming it.
#[test]
fn an_import_slot_of_a_thread_local_variable_is_refused() {
    let test = "an_import_slot_of_a_thread_local_variable_is_refused";
    let export = support::object(&support::compile("linker/tls/tls_export.c", &["-fPIC"]));
    let import = support::object(&support::compile_with(
        "clang",
        "linker/tls/import_tls.c",
        &["--target=x86_64-pc-windows-msvc", "-O1"],
    ));
    let mut session = support::session();
    session.load(std::slice::from_ref(&export)).unwrap();
    let refused = session.load(std::slice::from_ref(&import)).unwrap_err();
    let message = refused.to_string();
    assert!(
        message.contains("__imp_shared_tls") && message.contains("no address to import"),
        "{message}\n{}",
        rerun(test)
    );
}
