//! Debugging JIT'd code (`--debug`): a real gdb, in batch mode, on
//! `solder run --debug` of a C program compiled with `-g`: a breakpoint on a
//! JIT'd function by name and by `file:line` resolves (pending until the
//! module is registered) and is hit, `bt` shows the JIT'd frames with file
//! and line, and `print` reads a local. Needs gdb (`apt-get install gdb`;
//! `.ci/run` installs it). Fixtures are under `fixtures/linker/debugging/`.

mod support;

use std::process::Command;

use support::compile;

fn rerun(test: &str) -> String {
    format!("rerun: cargo test -p solder-linker --test debugging -- {test} --exact")
}

/// gdb's output for `commands` on `solder run --debug OBJECT`.
fn gdb(object: &std::path::Path, commands: &[&str], test: &str) -> String {
    let mut command = Command::new("gdb");
    command.args(["-batch", "-nx", "-ex", "set breakpoint pending on"]);
    for c in commands {
        command.args(["-ex", c]);
    }
    command
        .arg("--args")
        .arg(env!("CARGO_BIN_EXE_solder"))
        .args(["run", "--debug"])
        .arg(object);
    let output = command.output().unwrap_or_else(|e| {
        panic!(
            "gdb is needed for this test (apt-get install gdb): {e}\n{}",
            rerun(test)
        )
    });
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

/// `break` on `jitted_add` by name and by `file:line` resolves and is hit,
/// `bt` shows both JIT'd frames with their lines, `print` reads the
/// arguments, and the program then runs to its end.
fn breaks_and_shows_source(object: &std::path::Path, test: &str) {
    for breakpoint in ["break jitted_add", "break debug_target.c:6"] {
        let out = gdb(
            object,
            &[breakpoint, "run", "bt", "print a", "print b", "continue"],
            test,
        );
        let expect = [
            "Breakpoint 1, jitted_add (a=2, b=3) at ",
            "debug_target.c:6",
            "in main () at ",
            "debug_target.c:11",
            "$1 = 2",
            "$2 = 3",
            "exited normally",
        ];
        for needle in expect {
            assert!(
                out.contains(needle),
                "{breakpoint}: gdb's output lacks {needle:?}:\n{out}\n{}",
                rerun(test)
            );
        }
    }
}

#[test]
fn gdb_breaks_in_jitted_code_and_shows_its_source() {
    let test = "gdb_breaks_in_jitted_code_and_shows_its_source";
    let object = compile("linker/debugging/debug_target.c", &["-g", "-O0"]);
    breaks_and_shows_source(&object, test);
}

/// A Mach-O object's DWARF (gdb here reads only ELF) is relocated and
/// handed over in an ELF debug object: the same breakpoints, frames and
/// locals as the ELF build of the source.
#[test]
fn gdb_debugs_a_macho_object() {
    let test = "gdb_debugs_a_macho_object";
    let object = support::compile_with(
        "clang",
        "linker/debugging/debug_target.c",
        &["--target=x86_64-apple-macos", "-g", "-O0"],
    );
    assert!(
        std::fs::read(&object)
            .unwrap()
            .starts_with(&[0xcf, 0xfa, 0xed, 0xfe]),
        "{} is not a Mach-O object\n{}",
        object.display(),
        rerun(test)
    );
    breaks_and_shows_source(&object, test);
}

/// Without `--debug` nothing is registered: the breakpoint stays pending
/// and the program runs to its end.
#[test]
fn without_debug_gdb_does_not_see_jitted_code() {
    let test = "without_debug_gdb_does_not_see_jitted_code";
    let object = compile("linker/debugging/debug_target.c", &["-g", "-O0"]);
    let output = Command::new("gdb")
        .args(["-batch", "-nx", "-ex", "set breakpoint pending on"])
        .args(["-ex", "break jitted_add", "-ex", "run"])
        .arg("--args")
        .arg(env!("CARGO_BIN_EXE_solder"))
        .arg("run")
        .arg(&object)
        .output()
        .unwrap_or_else(|e| panic!("gdb is needed (apt-get install gdb): {e}\n{}", rerun(test)));
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(
        !out.contains("Breakpoint 1, jitted_add"),
        "{out}\n{}",
        rerun(test)
    );
    assert!(out.contains("exited normally"), "{out}\n{}", rerun(test));
}

/// Out of process the objects are registered in the executor, which a
/// debugger then runs (or attaches to): here the executor is started under
/// gdb through `SOLDER_EXECUTOR`, the recipe the README gives.
#[test]
fn gdb_running_the_executor_breaks_in_jitted_code() {
    let test = "gdb_running_the_executor_breaks_in_jitted_code";
    let object = compile("linker/debugging/debug_target.c", &["-g", "-O0"]);
    let executor =
        std::path::Path::new(env!("CARGO_BIN_EXE_solder")).with_file_name("solder-executor");
    assert!(
        executor.is_file(),
        "{} is not built (cargo build -p solder-executor)\n{}",
        executor.display(),
        rerun(test)
    );
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("debugging");
    std::fs::create_dir_all(&dir).unwrap();
    let wrapper = dir.join("executor-under-gdb.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec gdb -batch -nx -ex 'set breakpoint pending on' \
             -ex 'break jitted_add' -ex run -ex bt -ex 'print b' -ex continue \
             --args {} \"$@\"\n",
            executor.display()
        ),
    )
    .unwrap();
    let output = Command::new("sh")
        .arg("-c")
        .arg("chmod +x \"$1\" && SOLDER_EXECUTOR=\"$1\" \"$2\" run --debug --executor pipe \"$3\"")
        .arg("sh")
        .arg(&wrapper)
        .arg(env!("CARGO_BIN_EXE_solder"))
        .arg(&object)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    for needle in [
        "Breakpoint 1, jitted_add (a=2, b=3) at ",
        "debug_target.c:6",
        "in main () at ",
        "$1 = 3",
    ] {
        assert!(
            out.contains(needle),
            "gdb's output lacks {needle:?}:\n{out}\n{}",
            rerun(test)
        );
    }
    assert!(output.status.success(), "{out}\n{}", rerun(test));
}

/// Set by the test below when it runs this binary under gdb: the process
/// is then the driver.
const DRIVER_ENV: &str = "SOLDER_DEBUGGING_TEST_DRIVER";

/// After a hot swap, a breakpoint set by source line lands in the new
/// code: gdb runs this test binary, whose driver loads version 1 of
/// `swap.c`, calls it, replaces it with version 2 (same file name and
/// lines) and calls again; the breakpoint on line 5 stops in each version
/// in turn, with that version's local.
#[test]
fn gdb_follows_a_hot_swap() {
    let test = "gdb_follows_a_hot_swap";
    let v1 = compile("linker/debugging/v1/swap.c", &["-g", "-O0"]);
    let v2 = compile("linker/debugging/v2/swap.c", &["-g", "-O0"]);
    if std::env::var_os(DRIVER_ENV).is_some() {
        let mut session = support::session();
        session.enable_debug();
        let id = session.load(&[support::object(&v1)]).unwrap();
        assert_eq!(support::call(&mut session, "swap_me", &[4]), 5);
        session.replace(id, &[support::object(&v2)]).unwrap();
        assert_eq!(support::call(&mut session, "swap_me", &[4]), 42);
        session.end();
        return;
    }
    let output = Command::new("gdb")
        .args(["-batch", "-nx", "-ex", "set breakpoint pending on"])
        .args(["-ex", "break swap.c:5", "-ex", "run"])
        .args([
            "-ex",
            "print tag",
            "-ex",
            "continue",
            "-ex",
            "print tag",
            "-ex",
            "continue",
        ])
        .arg("--args")
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", test, "--test-threads=1"])
        .env(DRIVER_ENV, "1")
        .output()
        .unwrap_or_else(|e| panic!("gdb is needed (apt-get install gdb): {e}\n{}", rerun(test)));
    let out = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    let first = out.find("$1 = 1");
    let second = out.find("$2 = 2");
    assert!(
        first.is_some() && second.is_some() && first < second,
        "the breakpoint did not stop in version 1 and then in version 2:\n{out}\n{}",
        rerun(test)
    );
    assert!(out.contains("exited normally"), "{out}\n{}", rerun(test));
}

/// In process, a crash in a program of two objects (a section per
/// function) names a line in each: every function's line table comes from
/// its own object's DWARF, read ahead at load.
#[test]
fn a_crash_report_names_a_line_in_each_object() {
    let test = "a_crash_report_names_a_line_in_each_object";
    let flags = ["-g", "-O0", "-ffunction-sections"];
    let caller = compile("linker/debugging/crash_caller.c", &flags);
    let callee = compile("linker/debugging/crash_callee.c", &flags);
    for objects in [[&caller, &callee], [&callee, &caller]] {
        let mut args = vec!["run", "--debug"];
        args.extend(objects.iter().map(|o| o.to_str().unwrap()));
        let report = support::stderr(&support::solder(&args));
        for needle in [
            "in crash_elsewhere+0x",
            "crash_callee.c:4\n",
            "<- main+0x",
            "crash_caller.c:6",
        ] {
            assert!(
                report.contains(needle),
                "{needle:?} in:\n{report}\n{}",
                rerun(test)
            );
        }
    }
}

/// With debug information kept, `Session::locate` gives the source line
/// of an address in JIT'd code, and a crash is reported with it
/// (`crash_here+0x… at …crash_target.c:4`), in an executor process and in
/// process, its backtrace too.
#[test]
fn addresses_are_located_to_source_lines() {
    let test = "addresses_are_located_to_source_lines";
    let object = compile("linker/debugging/debug_target.c", &["-g", "-O0"]);
    let mut session = support::session();
    session.enable_debug();
    session.set_link_maps(true);
    let id = session.load(&[support::object(&object)]).unwrap();
    let start = session
        .link_map(id)
        .unwrap()
        .symbols
        .iter()
        .find(|s| s.name == "jitted_add")
        .and_then(|s| s.address)
        .unwrap();
    let found = session.locate(start).unwrap();
    assert_eq!(
        (found.symbol.as_str(), found.offset),
        ("jitted_add", 0),
        "{}",
        rerun(test)
    );
    let source = found
        .source
        .unwrap_or_else(|| panic!("no source line\n{}", rerun(test)));
    assert!(
        source.file.ends_with("debug_target.c"),
        "{source:?}\n{}",
        rerun(test)
    );
    assert_eq!(source.line, 5, "{}", rerun(test));
    session.end();

    let crashing = compile("linker/debugging/crash_target.c", &["-g", "-O0"]);
    let output = support::solder(&[
        "run",
        "--debug",
        "--executor",
        "pipe",
        crashing.to_str().unwrap(),
    ]);
    let report = support::stderr(&output);
    assert!(
        report.contains("in crash_here+0x") && report.contains("crash_target.c:4 (module 1"),
        "{report}\n{}",
        rerun(test)
    );
    // In process the crash handler names the lines too (read ahead at load).
    let output = support::solder(&["run", "--debug", crashing.to_str().unwrap()]);
    let report = support::stderr(&output);
    for needle in [
        "in crash_here+0x",
        "crash_target.c:4\n",
        "backtrace: crash_here+0x",
        "<- main+0x",
        "crash_target.c:7",
    ] {
        assert!(
            report.contains(needle),
            "{needle:?} in:\n{report}\n{}",
            rerun(test)
        );
    }
}
