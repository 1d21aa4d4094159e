//! `solder run` as a user sees it: the program's exit status and stdout
//! (compared with the same objects linked natively), arguments after `--`,
//! `--entry`, `--noexec`, exit status 125 with a message naming what and
//! where when Solder itself fails (missing file, not an ELF object,
//! undefined symbol), crashes (SIGSEGV, SIGABRT) reported on stderr with
//! the process dying of the signal, an object given through a pipe, and
//! report options that never overwrite an object, and the heap a load's
//! size chooses (`--stats`). Fixtures are under
//! `fixtures/linker/cli/`.

mod support;

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use object::read::elf::ElfFile64;
use object::{Object, ObjectSection, ObjectSymbol, RelocationTarget};
use support::{solder, stderr, stdout};

const COMPILERS: [&str; 2] = ["cc", "clang"];

/// The exit status of `solder run` when Solder itself fails.
const SOLDER_FAILED: i32 = 125;

/// The command that reruns one test of this file.
fn rerun(test: &str) -> String {
    format!("rerun: cargo test -p solder-linker --test cli -- {test} --exact")
}

/// `fixtures/linker/cli/NAME` compiled with `compiler -O2`, once per test
/// process (`support::compile_with` writes to a fixed path per compiler and
/// source, so concurrent compiles of one fixture would race on that file).
fn fixture(compiler: &str, name: &str) -> PathBuf {
    static BUILT: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    built
        .get_or_insert_with(HashMap::new)
        .entry(format!("{compiler} {name}"))
        .or_insert_with(|| support::compile_with(compiler, &format!("linker/cli/{name}"), &["-O2"]))
        .clone()
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("fixture paths are UTF-8")
}

/// Links `object` natively with `cc` into `target/tmp/linker-native/NAME`.
fn link_native(object: &Path, name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("linker-native");
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join(name);
    let result = Command::new("cc")
        .arg(object)
        .arg("-o")
        .arg(&exe)
        .output()
        .unwrap();
    assert!(
        result.status.success(),
        "native link failed: {}",
        stderr(&result)
    );
    exe
}

/// (exit code, terminating signal).
fn exit_of(output: &Output) -> (Option<i32>, Option<i32>) {
    (output.status.code(), output.status.signal())
}

/// Asserts that `solder run` failed as Solder (status 125) with a message
/// on stderr containing every needle, and ran nothing.
fn assert_solder_failed(output: &Output, needles: &[&str], what: &str, test: &str) {
    let message = stderr(output);
    assert_eq!(
        exit_of(output),
        (Some(SOLDER_FAILED), None),
        "{what}: `solder run` must exit with 125; stderr:\n{message}\n{}",
        rerun(test)
    );
    for needle in needles {
        assert!(
            message.contains(needle),
            "{what}: stderr must contain `{needle}`:\n{message}\n{}",
            rerun(test)
        );
    }
    assert_eq!(
        stdout(output),
        "",
        "{what}: nothing may run\n{}",
        rerun(test)
    );
}

#[test]
fn exit_status_stdout_and_arguments_match_native() {
    let test = "exit_status_stdout_and_arguments_match_native";
    for compiler in COMPILERS {
        let program = fixture(compiler, "program.c");
        let exe = link_native(&program, &format!("cli-program-{compiler}"));
        for args in [&[][..], &["one", "two words", "--three", ""][..]] {
            let native = Command::new(&exe).args(args).output().unwrap();
            let mut run = vec!["run", path_str(&program), "--"];
            run.extend_from_slice(args);
            let jit = solder(&run);
            assert_eq!(
                stdout(&jit),
                stdout(&native),
                "{compiler}, args {args:?}: `solder run` stdout (left) differs from native (right)\n\
                 solder stderr:\n{}\n{}",
                stderr(&jit),
                rerun(test)
            );
            assert_eq!(
                exit_of(&jit),
                exit_of(&native),
                "{compiler}, args {args:?}: (code, signal) of `solder run` (left) and native (right)\n{}",
                rerun(test)
            );
            assert_eq!(
                native.status.code(),
                Some(3 + args.len() as i32),
                "{compiler}: native reference status\n{}",
                rerun(test)
            );
        }
    }
}

#[test]
fn missing_file_exits_125_naming_it() {
    let test = "missing_file_exits_125_naming_it";
    let missing = Path::new(env!("CARGO_TARGET_TMPDIR")).join("no-such-object.o");
    let output = solder(&["run", path_str(&missing)]);
    assert_solder_failed(
        &output,
        &[path_str(&missing), "No such file"],
        "missing file",
        test,
    );
    let message = stderr(&output);
    assert_eq!(
        message.matches("No such file or directory").count(),
        1,
        "the OS error must be stated once: {message}\n{}",
        rerun(test)
    );
}

#[test]
fn non_object_file_exits_125_naming_it() {
    let test = "non_object_file_exits_125_naming_it";
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("linker-cli");
    std::fs::create_dir_all(&dir).unwrap();
    let text = dir.join("not-an-object.o");
    std::fs::write(&text, "int main(void) { return 0; }\n").unwrap();
    let output = solder(&["run", path_str(&text)]);
    assert_solder_failed(
        &output,
        &[
            path_str(&text),
            "not an x86-64 ELF, Mach-O or COFF relocatable object",
        ],
        "text file",
        test,
    );
    // An ELF file that is not relocatable: a native executable.
    let exe = link_native(&fixture("cc", "program.c"), "cli-program-not-relocatable");
    let output = solder(&["run", path_str(&exe)]);
    assert_solder_failed(
        &output,
        &[path_str(&exe), "relocatable"],
        "executable",
        test,
    );
}

#[test]
fn undefined_symbol_exits_125_naming_symbol_object_section_and_offset() {
    let test = "undefined_symbol_exits_125_naming_symbol_object_section_and_offset";
    for compiler in COMPILERS {
        let object = fixture(compiler, "undefined.c");
        // Where the reference is, read with the `object` crate.
        let data = std::fs::read(&object).unwrap();
        let elf = ElfFile64::<object::Endianness>::parse(&*data).unwrap();
        let (section, offset) = elf
            .sections()
            .find_map(|section| {
                section
                    .relocations()
                    .find_map(|(offset, reloc)| match reloc.target() {
                        RelocationTarget::Symbol(i)
                            if elf.symbol_by_index(i).unwrap().name()
                                == Ok("not_defined_anywhere") =>
                        {
                            Some((section.name().unwrap().to_string(), offset))
                        }
                        _ => None,
                    })
            })
            .expect("a relocation against not_defined_anywhere");
        let output = solder(&["run", path_str(&object)]);
        assert_solder_failed(
            &output,
            &[
                "`not_defined_anywhere`",
                path_str(&object),
                &format!("section {section}"),
                &format!("offset {offset:#x}"),
            ],
            compiler,
            test,
        );
    }
}

#[test]
fn segfault_in_main_is_reported_and_kills_with_sigsegv() {
    let test = "segfault_in_main_is_reported_and_kills_with_sigsegv";
    for compiler in COMPILERS {
        let object = fixture(compiler, "crash.c");
        let output = solder(&["run", path_str(&object)]);
        let message = stderr(&output);
        assert_eq!(
            exit_of(&output),
            (None, Some(libc::SIGSEGV)),
            "{compiler}: `solder run` must die of SIGSEGV; stderr:\n{message}\n{}",
            rerun(test)
        );
        assert!(
            message.contains("SIGSEGV") && message.contains("main+0x"),
            "{compiler}: stderr must name SIGSEGV and the crashing function as main+0x...:\n{message}\n{}",
            rerun(test)
        );
        assert!(
            message.contains("at address 0x0"),
            "{compiler}: stderr must give the null fault address:\n{message}\n{}",
            rerun(test)
        );
        assert_eq!(
            stdout(&output),
            "about to crash\n",
            "{compiler}\n{}",
            rerun(test)
        );
    }
}

#[test]
fn abort_kills_with_sigabrt() {
    let test = "abort_kills_with_sigabrt";
    for compiler in COMPILERS {
        let object = fixture(compiler, "abort.c");
        let native = Command::new(link_native(&object, &format!("cli-abort-{compiler}")))
            .output()
            .unwrap();
        let output = solder(&["run", path_str(&object)]);
        let message = stderr(&output);
        assert_eq!(
            exit_of(&output),
            (None, Some(libc::SIGABRT)),
            "{compiler}: `solder run` must die of SIGABRT; stderr:\n{message}\n{}",
            rerun(test)
        );
        assert_eq!(
            exit_of(&native),
            exit_of(&output),
            "{compiler}: native dies the same way\n{}",
            rerun(test)
        );
        assert!(
            message.contains("SIGABRT"),
            "{compiler}: stderr:\n{message}\n{}",
            rerun(test)
        );
        assert_eq!(
            stdout(&output),
            stdout(&native),
            "{compiler}\n{}",
            rerun(test)
        );
    }
}

#[test]
fn noexec_links_but_runs_nothing() {
    let test = "noexec_links_but_runs_nothing";
    for compiler in COMPILERS {
        let program = fixture(compiler, "program.c");
        let output = solder(&["run", "--noexec", path_str(&program), "--", "arg"]);
        assert_eq!(
            exit_of(&output),
            (Some(0), None),
            "{compiler}: --noexec exits 0; stderr:\n{}\n{}",
            stderr(&output),
            rerun(test)
        );
        assert_eq!(
            stdout(&output),
            "",
            "{compiler}: with --noexec neither the constructor nor main may run\n{}",
            rerun(test)
        );
        // It still links: an undefined symbol fails under --noexec too.
        let undefined = fixture(compiler, "undefined.c");
        let output = solder(&["run", "--noexec", path_str(&undefined)]);
        assert_solder_failed(&output, &["`not_defined_anywhere`"], compiler, test);
    }
}

#[test]
fn entry_runs_the_named_function() {
    let test = "entry_runs_the_named_function";
    for compiler in COMPILERS {
        let program = fixture(compiler, "program.c");
        let output = solder(&["run", "--entry", "alt_entry", path_str(&program)]);
        assert_eq!(
            (stdout(&output).as_str(), exit_of(&output)),
            ("constructor ran\nalt_entry ran\n", (Some(17), None)),
            "{compiler}: --entry alt_entry; stderr:\n{}\n{}",
            stderr(&output),
            rerun(test)
        );
        let output = solder(&["run", "--entry", "no_such_entry", path_str(&program)]);
        assert_eq!(
            exit_of(&output),
            (Some(SOLDER_FAILED), None),
            "{compiler}: a missing entry point is Solder's failure\n{}",
            rerun(test)
        );
        assert!(
            stderr(&output).contains("`no_such_entry`"),
            "{compiler}: stderr must name the entry: {}\n{}",
            stderr(&output),
            rerun(test)
        );
    }
}

#[test]
fn timeout_stops_a_spinning_run_with_status_124_naming_where() {
    let test = "timeout_stops_a_spinning_run_with_status_124_naming_where";
    for (compiler, source, printed) in [
        ("cc", "spin.c", "spinning\n"),
        ("clang", "spin.c", "spinning\n"),
        ("cc", "spin_init.c", ""),
    ] {
        let object = fixture(compiler, source);
        let started = std::time::Instant::now();
        let output = solder(&["run", "--timeout", "300ms", path_str(&object)]);
        let message = stderr(&output);
        assert_eq!(
            exit_of(&output),
            (Some(124), None),
            "{compiler}: stderr:\n{message}\n{}",
            rerun(test)
        );
        assert!(
            message.contains("timed out after 300ms") && message.contains(" in "),
            "{compiler}: stderr must give the limit and where it ran:\n{message}\n{}",
            rerun(test)
        );
        assert_eq!(
            stdout(&output),
            printed,
            "{compiler} {source}\n{}",
            rerun(test)
        );
        assert!(
            started.elapsed() >= std::time::Duration::from_millis(300),
            "{compiler}: stopped before its limit\n{}",
            rerun(test)
        );
    }
    // A run that ends in time keeps its own status.
    let object = fixture("cc", "exits.c");
    let output = solder(&["run", "--timeout", "1m", path_str(&object)]);
    let message = stderr(&output);
    assert_eq!(
        exit_of(&output),
        (Some(42), None),
        "{message}\n{}",
        rerun(test)
    );
    // A bad duration is refused up front.
    for args in [
        &["run", "--timeout", "soon", path_str(&object)][..],
        &["run", "--timeout", "0s", path_str(&object)][..],
    ] {
        let output = solder(args);
        assert_eq!(
            exit_of(&output),
            (Some(SOLDER_FAILED), None),
            "{args:?}\n{}",
            rerun(test)
        );
    }
}

/// `solder run --timeout` with an executor process, over pipes (with and
/// without a checkpoint that could take over, or a restart that is not
/// attempted once the run's time is up) and over TCP: a run that
/// spins in `main` is stopped by the executor's timer, which says where
/// (`main+0x…`); one that spins in an initializer or, after `main`
/// returned, in a destructor is killed when the controller's deadline
/// passes. Either way the status is 124, the message
/// gives the limit, what the program printed arrives, and no executor
/// process is left.
#[test]
fn timeout_stops_a_spinning_run_out_of_process() {
    let test = "timeout_stops_a_spinning_run_out_of_process";
    support::remote::executor_binary();
    let listener = support::remote::Listener::start("timeout", None, &[]);
    let tcp = format!("tcp={}", listener.address);
    let modes: [&[&str]; 4] = [
        &["--executor", "pipe"],
        &["--executor", "pipe", "--recovery", "snapshot"],
        &["--executor", "pipe", "--recovery", "restart"],
        &["--executor", &tcp],
    ];
    for (index, mode) in modes.into_iter().enumerate() {
        for (source, printed, during) in [
            ("spin.c", "spinning\n", "during `main`"),
            ("spin_init.c", "", "during the initializers"),
            ("spin_fini.c", "main returned\n", "during session end"),
        ] {
            let object = fixture("cc", source);
            // Every process of this run carries the tag.
            let tag = format!("{}-{test}-{source}-{index}", std::process::id());
            let started = std::time::Instant::now();
            let output = Command::new(env!("CARGO_BIN_EXE_solder"))
                .args(["run", "--timeout", "300ms"])
                .args(mode)
                .arg(&object)
                .env(support::remote::TAG_ENV, &tag)
                .output()
                .unwrap();
            let elapsed = started.elapsed();
            let message = stderr(&output);
            let what = format!("{mode:?} {source}");
            assert_eq!(
                exit_of(&output),
                (Some(124), None),
                "{what}: stderr:\n{message}\n{}",
                rerun(test)
            );
            assert!(
                message.contains("solder: timed out after 300ms") && message.contains(during),
                "{what}: stderr must give the limit and what ran:\n{message}\n{}",
                rerun(test)
            );
            if source == "spin.c" {
                assert!(
                    message.contains(" in main+0x"),
                    "{what}: the executor's timer says where main was:\n{message}\n{}",
                    rerun(test)
                );
            }
            assert_eq!(stdout(&output), printed, "{what}\n{}", rerun(test));
            assert!(
                elapsed >= std::time::Duration::from_millis(300),
                "{what}: stopped before its limit\n{}",
                rerun(test)
            );
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            let mut left = support::remote::tagged_processes(&tag);
            while !left.is_empty() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(20));
                left = support::remote::tagged_processes(&tag);
            }
            // Over TCP the session's processes are the listener's.
            left.extend(listener.wait_for_no_sessions(std::time::Duration::from_secs(10)));
            assert!(
                left.is_empty(),
                "{what}: {left:?} still run\n{}",
                rerun(test)
            );
        }
    }
}

/// A hidden `main` (a global of the load, not exported) is the program's
/// entry, in process and in an executor, as the native link has it; an
/// `--entry` the load does not define is refused before any of it runs:
/// no constructor output.
#[test]
fn a_hidden_main_runs_and_a_missing_entry_runs_nothing() {
    let test = "a_hidden_main_runs_and_a_missing_entry_runs_nothing";
    let object = fixture("cc", "hidden_main.c");
    let native = Command::new(link_native(&object, "hidden_main"))
        .args(["a", "b"])
        .output()
        .unwrap();
    assert_eq!(exit_of(&native), (Some(3), None), "{}", rerun(test));
    for executor in [&[][..], &["--executor", "pipe"]] {
        let mut args = vec!["run"];
        args.extend_from_slice(executor);
        args.extend([path_str(&object), "--", "a", "b"]);
        let output = solder(&args);
        assert_eq!(
            exit_of(&output),
            (Some(3), None),
            "{executor:?}\n{}",
            rerun(test)
        );
        assert_eq!(
            stdout(&output),
            stdout(&native),
            "{executor:?}\n{}",
            rerun(test)
        );
        let mut args = vec!["run"];
        args.extend_from_slice(executor);
        args.extend(["--entry", "no_such_entry", path_str(&object)]);
        let output = solder(&args);
        assert_solder_failed(
            &output,
            &["undefined symbol `no_such_entry`", "--entry"],
            "missing entry",
            test,
        );
        assert_eq!(
            stdout(&output),
            "",
            "nothing ran: {executor:?}\n{}",
            rerun(test)
        );
    }
}

/// `--stats a.o b.o` takes `a.o` as the report's file: the run fails
/// naming the option and the file, and the object is left as it was. A
/// report file from an earlier run is overwritten as asked.
#[test]
fn a_report_option_never_overwrites_an_object() {
    let test = "a_report_option_never_overwrites_an_object";
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("linker-cli-reports");
    std::fs::create_dir_all(&dir).unwrap();
    let program = fixture("cc", "program.c");
    let kept = dir.join("kept.o");
    std::fs::copy(&program, &kept).unwrap();
    let before = std::fs::read(&kept).unwrap();
    for option in ["--stats", "--map"] {
        let output = solder(&[
            "run",
            "--noexec",
            option,
            path_str(&kept),
            path_str(&program),
        ]);
        assert_solder_failed(
            &output,
            &[option, path_str(&kept), "object or archive"],
            option,
            test,
        );
        assert_eq!(
            std::fs::read(&kept).unwrap(),
            before,
            "{option}\n{}",
            rerun(test)
        );
    }
    let report = dir.join("stats.json");
    for _ in 0..2 {
        let output = solder(&[
            "run",
            "--noexec",
            "--stats",
            path_str(&report),
            path_str(&program),
        ]);
        assert_eq!(
            exit_of(&output),
            (Some(0), None),
            "{}\n{}",
            stderr(&output),
            rerun(test)
        );
        let json = std::fs::read_to_string(&report).unwrap();
        assert!(json.contains("\"stages\""), "{json}\n{}", rerun(test));
    }
}

/// An object given through a pipe (`<(cat a.o)` in a shell) runs as the
/// file itself does.
#[test]
fn an_object_through_a_pipe_runs() {
    let test = "an_object_through_a_pipe_runs";
    let program = fixture("cc", "program.c");
    let bytes = std::fs::read(&program).unwrap();
    let (reader, mut writer) = std::io::pipe().unwrap();
    let feeder = std::thread::spawn(move || {
        let _ = std::io::Write::write_all(&mut writer, &bytes);
    });
    let output = Command::new(env!("CARGO_BIN_EXE_solder"))
        .args(["run", "/dev/stdin", "--", "arg"])
        .stdin(reader)
        .output()
        .expect("run solder");
    feeder.join().unwrap();
    let direct = solder(&["run", path_str(&program), "--", "arg"]);
    assert_eq!(
        exit_of(&output),
        exit_of(&direct),
        "{}\n{}",
        stderr(&output),
        rerun(test)
    );
    assert_eq!(stdout(&output), stdout(&direct), "{}", rerun(test));
}

/// The allocator `solder run --stats` reported for `object`, after
/// checking the run's exit status.
fn heap_of_run(object: &Path, options: &[&str], status: i32, what: &str, test: &str) -> String {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-heap");
    std::fs::create_dir_all(&dir).unwrap();
    let report = dir.join(format!("{what}.json").replace([' ', '/'], "-"));
    let mut args = vec!["run", "--stats", path_str(&report)];
    args.extend(options);
    args.push(path_str(object));
    let output = solder(&args);
    assert_eq!(
        exit_of(&output),
        (Some(status), None),
        "{what}: stderr:\n{}\n{}",
        stderr(&output),
        rerun(test)
    );
    let stats: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    stats["heap"].as_str().unwrap_or("(none)").to_string()
}

#[test]
fn a_load_of_8_mib_or_more_moves_the_heap_to_mimalloc_and_links_alike() {
    let test = "a_load_of_8_mib_or_more_moves_the_heap_to_mimalloc_and_links_alike";
    for compiler in COMPILERS {
        let large = fixture(compiler, "large_data.c");
        let size = std::fs::metadata(&large).unwrap().len();
        assert!(
            size >= 8 << 20,
            "{compiler}: the large fixture is {size} bytes"
        );
        let small = fixture(compiler, "exits.c");
        for options in [&[][..], &["--executor", "pipe"][..]] {
            let what = format!("{compiler} {options:?}");
            // main returns 1 only if every page of the 9 MiB table arrived.
            let heap = heap_of_run(&large, options, 1, &format!("{what} large"), test);
            assert_eq!(heap, "mimalloc", "{what}: the large load\n{}", rerun(test));
            let heap = heap_of_run(&small, options, 42, &format!("{what} small"), test);
            assert_eq!(heap, "system", "{what}: the small load\n{}", rerun(test));
        }
    }
}
