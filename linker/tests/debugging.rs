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

#[test]
fn gdb_breaks_in_jitted_code_and_shows_its_source() {
    let test = "gdb_breaks_in_jitted_code_and_shows_its_source";
    let object = compile("linker/debugging/debug_target.c", &["-g", "-O0"]);
    for breakpoint in ["break jitted_add", "break debug_target.c:6"] {
        let out = gdb(
            &object,
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
