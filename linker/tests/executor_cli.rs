//! `solder run --executor pipe|tcp=HOST:PORT [--shm] [--recovery ...]` as a
//! user sees it: the same stdout and exit status as the native program;
//! `exit(n)` is status `n`; a crash in `main` is reported with the signal,
//! the fault address and `main+offset`, and `solder` itself survives and
//! exits with 128 + signal, like a shell. Needs `target/<profile>/
//! solder-executor` (built by `cargo test --workspace`).

mod support;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::remote::{
    EXECUTOR_IP, Listener, Partitionable, executor_binary, partitionable_or_skip,
};
use support::{solder, stderr, stdout};

fn rerun(test: &str) -> String {
    format!("rerun: cargo test --workspace --test executor_cli -- {test} --exact")
}

fn fixture(name: &str) -> PathBuf {
    support::compile_with("cc", &format!("linker/cli/{name}"), &["-O2"])
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("fixture paths are UTF-8")
}

fn native(object: &Path, name: &str) -> Output {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("executor-native");
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join(name);
    let built = Command::new("cc")
        .arg(object)
        .arg("-o")
        .arg(&exe)
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", stderr(&built));
    Command::new(&exe).output().unwrap()
}

/// The modes every program must behave identically in.
const MODES: [&[&str]; 5] = [
    &["--executor", "pipe"],
    &["--executor", "pipe", "--shm"],
    &["--executor", "pipe", "--recovery", "snapshot"],
    &["--executor", "pipe", "--executor-output", "forward"],
    &[
        "--executor",
        "pipe",
        "--executor-output",
        "forward",
        "--recovery",
        "snapshot",
    ],
];

fn run_in(mode: &[&str], object: &Path) -> Output {
    executor_binary();
    let mut args = vec!["run"];
    args.extend_from_slice(mode);
    args.push(path_str(object));
    solder(&args)
}

#[test]
fn stdout_and_status_match_native_in_every_mode() {
    let test = "stdout_and_status_match_native_in_every_mode";
    let object = fixture("program.c");
    let reference = native(&object, "program");
    for mode in MODES {
        let output = run_in(mode, &object);
        assert_eq!(
            (stdout(&output), output.status.code()),
            (stdout(&reference), reference.status.code()),
            "{mode:?}: stdout and status (left) differ from native (right); stderr:\n{}\n{}",
            stderr(&output),
            rerun(test)
        );
    }
}

#[test]
fn exit_from_user_code_is_its_status_with_handlers_run() {
    let test = "exit_from_user_code_is_its_status_with_handlers_run";
    let object = fixture("exits.c");
    let reference = native(&object, "exits");
    assert_eq!(reference.status.code(), Some(42), "native reference");
    for mode in MODES {
        let output = run_in(mode, &object);
        assert_eq!(
            (stdout(&output), output.status.code()),
            (stdout(&reference), Some(42)),
            "{mode:?}: exit(42) must give status 42 after the handler; stderr:\n{}\n{}",
            stderr(&output),
            rerun(test)
        );
    }
}

#[test]
fn crash_in_main_is_reported_with_symbol_and_exits_139() {
    let test = "crash_in_main_is_reported_with_symbol_and_exits_139";
    let object = fixture("crash.c");
    for mode in MODES {
        let output = run_in(mode, &object);
        let message = stderr(&output);
        assert_eq!(
            (output.status.code(), output.status.signal()),
            (Some(128 + libc::SIGSEGV), None),
            "{mode:?}: solder must survive and exit with 139; stderr:\n{message}\n{}",
            rerun(test)
        );
        for needle in ["SIGSEGV", "at address 0x0", "main+0x", "during `main`"] {
            assert!(
                message.contains(needle),
                "{mode:?}: the report must contain `{needle}`:\n{message}\n{}",
                rerun(test)
            );
        }
        assert_eq!(
            stdout(&output),
            "about to crash\n",
            "{mode:?}\n{}",
            rerun(test)
        );
    }
}

#[test]
fn tcp_executor_runs_programs_and_reports_crashes() {
    let test = "tcp_executor_runs_programs_and_reports_crashes";
    let listener = Listener::start("plain", None, &[]);
    let executor = format!("tcp={}", listener.address);
    let object = fixture("program.c");
    let reference = native(&object, "program-tcp");
    let output = solder(&["run", "--executor", &executor, path_str(&object)]);
    assert_eq!(
        (stdout(&output), output.status.code()),
        (stdout(&reference), reference.status.code()),
        "solder's stdout and status (left) differ from native (right); stderr:\n{}\n{}",
        stderr(&output),
        rerun(test)
    );
    assert_eq!(
        std::fs::read_to_string(&listener.stdout_file).unwrap(),
        "",
        "over TCP the program's output comes home\n{}",
        rerun(test)
    );
    let crash = fixture("crash.c");
    let output = solder(&["run", "--executor", &executor, path_str(&crash)]);
    assert_eq!(
        output.status.code(),
        Some(139),
        "{}\n{}",
        stderr(&output),
        rerun(test)
    );
    assert!(stderr(&output).contains("main+0x"), "{}", stderr(&output));
    assert_eq!(stdout(&output), "about to crash\n", "{}", rerun(test));
}

/// Over TCP what the program writes to stdout and stderr comes back to
/// `solder`'s own stdout and stderr, before the report of the crash that
/// followed it.
#[test]
fn tcp_output_comes_home_before_the_crash_report() {
    let test = "tcp_output_comes_home_before_the_crash_report";
    let listener = Listener::start("output", None, &[]);
    let executor = format!("tcp={}", listener.address);
    let object = fixture("prints_then_crashes.c");
    let output = solder(&["run", "--executor", &executor, path_str(&object)]);
    let message = stderr(&output);
    assert_eq!(
        output.status.code(),
        Some(128 + libc::SIGSEGV),
        "{message}\n{}",
        rerun(test)
    );
    assert_eq!(stdout(&output), "to stdout\n", "{}", rerun(test));
    let printed = message.find("to stderr\n");
    let report = message.find("SIGSEGV");
    assert!(
        printed.is_some() && report.is_some() && printed < report,
        "stderr must hold the program's line, then the crash report:\n{message}\n{}",
        rerun(test)
    );
    assert!(message.contains("main+0x"), "{message}\n{}", rerun(test));
    assert_eq!(
        std::fs::read_to_string(&listener.stdout_file).unwrap(),
        "",
        "{}",
        rerun(test)
    );
}

/// A program that prints 4 MiB over TCP completes, and all of it arrives.
#[test]
fn tcp_program_printing_megabytes_completes() {
    let test = "tcp_program_printing_megabytes_completes";
    let listener = Listener::start("megabytes", None, &[]);
    let executor = format!("tcp={}", listener.address);
    let object = fixture("prints_a_lot.c");
    let output = solder(&["run", "--executor", &executor, path_str(&object)]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}\n{}",
        stderr(&output),
        rerun(test)
    );
    assert_eq!(output.stdout.len(), 4 << 20, "{}", rerun(test));
    assert!(
        output
            .stdout
            .chunks(1024)
            .all(|line| line[..1023].iter().all(|&b| b == b'x') && line[1023] == b'\n'),
        "the lines arrive whole and in order\n{}",
        rerun(test)
    );
    assert!(
        stderr(&output).contains("printed 4 MiB"),
        "{}\n{}",
        stderr(&output),
        rerun(test)
    );
}

/// `--executor-output local` leaves the output on the executor's side.
#[test]
fn tcp_executor_output_local_stays_with_the_executor() {
    let test = "tcp_executor_output_local_stays_with_the_executor";
    let listener = Listener::start("local-output", None, &[]);
    let executor = format!("tcp={}", listener.address);
    let object = fixture("program.c");
    let reference = native(&object, "program-tcp-local");
    let output = solder(&[
        "run",
        "--executor",
        &executor,
        "--executor-output",
        "local",
        path_str(&object),
    ]);
    assert_eq!(
        output.status.code(),
        reference.status.code(),
        "{}\n{}",
        stderr(&output),
        rerun(test)
    );
    assert_eq!(stdout(&output), "", "{}", rerun(test));
    assert_eq!(
        std::fs::read_to_string(&listener.stdout_file).unwrap(),
        stdout(&reference),
        "the program printed on the executor's side\n{}",
        rerun(test)
    );
    let output = solder(&["run", "--executor-output", "local", path_str(&object)]);
    assert_eq!(
        output.status.code(),
        Some(125),
        "in process there is no executor's side\n{}",
        rerun(test)
    );
}

#[test]
fn tcp_token_is_required_and_checked() {
    let test = "tcp_token_is_required_and_checked";
    let listener = Listener::start("token", Some("s3cret"), &[]);
    let executor = format!("tcp={}", listener.address);
    let object = fixture("program.c");
    let run = |token: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_solder"));
        command.args(["run", "--executor", &executor, path_str(&object)]);
        match token {
            Some(t) => command.env("SOLDER_EXECUTOR_TOKEN", t),
            None => command.env_remove("SOLDER_EXECUTOR_TOKEN"),
        };
        command.output().unwrap()
    };
    for wrong in [None, Some("wrong")] {
        let output = run(wrong);
        assert_eq!(
            output.status.code(),
            Some(125),
            "{wrong:?}\n{}",
            rerun(test)
        );
        assert!(
            stderr(&output).contains("refused"),
            "{wrong:?}: {}\n{}",
            stderr(&output),
            rerun(test)
        );
        assert!(
            stdout(&output).is_empty(),
            "nothing may run\n{}",
            rerun(test)
        );
    }
    // Both sides read the first line, without its end: the listener's file
    // holds `s3cret\n` and more, the variable may end in `\r\n`.
    for right in ["s3cret", "s3cret\n", "s3cret\r\nsecond line"] {
        let output = run(Some(right));
        assert_eq!(
            output.status.code(),
            Some(3),
            "{right:?}: {}\n{}",
            stderr(&output),
            rerun(test)
        );
    }
    let output = run(Some("\ns3cret"));
    assert_eq!(output.status.code(), Some(125), "{}", rerun(test));
    assert!(
        stderr(&output).contains("SOLDER_EXECUTOR_TOKEN") && stderr(&output).contains("empty"),
        "{}\n{}",
        stderr(&output),
        rerun(test)
    );
}

#[test]
fn bad_executor_options_exit_125() {
    let test = "bad_executor_options_exit_125";
    let object = fixture("program.c");
    for (args, needle) in [
        (&["--executor", "carrier-pigeon"][..], "inproc"),
        (&["--shm"][..], "--shm"),
        (&["--recovery", "snapshot"][..], "--recovery"),
        (
            &["--executor", "pipe", "--recovery", "sometimes"][..],
            "snapshot",
        ),
        (&["--executor", "tcp=127.0.0.1:1"][..], "cannot connect"),
    ] {
        let mut all = vec!["run"];
        all.extend_from_slice(args);
        all.push(path_str(&object));
        let output = solder(&all);
        assert_eq!(output.status.code(), Some(125), "{args:?}\n{}", rerun(test));
        assert!(
            stderr(&output).contains(needle),
            "{args:?}: stderr must mention `{needle}`:\n{}\n{}",
            stderr(&output),
            rerun(test)
        );
    }
}

/// Waits up to `limit` for `file` to contain `text`.
fn wait_for_text(file: &Path, text: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if std::fs::read_to_string(file).is_ok_and(|t| t.contains(text)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// A controller killed (`SIGKILL`) while JIT'd code spins in a call with
/// every signal blocked takes its session with it: within 5 s neither the
/// serving process nor its checkpoint (`--recovery snapshot`) nor its
/// watchdog is left, while the listener serves on.
#[test]
fn tcp_controller_killed_mid_call_leaves_no_executor() {
    let test = "tcp_controller_killed_mid_call_leaves_no_executor";
    let object = support::compile_with("cc", "linker/remote/deaf_spin.c", &["-O2"]);
    for recovery in [None, Some("snapshot")] {
        let listener = Listener::start("killed-controller", None, &[]);
        let executor = format!("tcp={}", listener.address);
        let mut command = Command::new(env!("CARGO_BIN_EXE_solder"));
        // The program's output stays with the executor, where the test
        // sees it start.
        command.args(["run", "--executor", &executor, "--executor-output", "local"]);
        if let Some(policy) = recovery {
            command.args(["--recovery", policy]);
        }
        let mut controller = command
            .arg(path_str(&object))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        assert!(
            wait_for_text(&listener.stdout_file, "spinning", Duration::from_secs(30)),
            "{recovery:?}: the program never started\n{}",
            rerun(test)
        );
        // The serving process and its watchdog, and with snapshot the
        // checkpoint.
        let expected = if recovery.is_some() { 3 } else { 2 };
        let during = listener.sessions();
        assert!(
            during.len() >= expected,
            "{recovery:?}: only {during:?} serve the call\n{}",
            rerun(test)
        );
        controller.kill().unwrap();
        controller.wait().unwrap();
        let left = listener.wait_for_no_sessions(Duration::from_secs(5));
        assert!(
            left.is_empty(),
            "{recovery:?}: {left:?} still run 5 s after the controller died (were {during:?})\n{}",
            rerun(test)
        );
        let mut listener = listener;
        assert!(
            listener.child.try_wait().unwrap().is_none(),
            "the listener serves on\n{}",
            rerun(test)
        );
    }
}

/// A child process killed (and waited for) on drop, so a failing test
/// leaves nothing behind.
struct KillOnDrop(std::process::Child);

impl KillOnDrop {
    /// Waits up to `limit` for the process to exit; its output then.
    fn wait_for_exit(mut self, limit: Duration) -> Option<Output> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.0.try_wait().unwrap().is_some() {
                let child = std::mem::replace(
                    &mut self.0,
                    Command::new("true").spawn().expect("a placeholder process"),
                );
                return Some(child.wait_with_output().unwrap());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `solder run --executor tcp=EXECUTOR:PORT ARGS... deaf_spin.o` in the
/// controller's namespace, with the token the listener wants.
fn partitioned_controller(net: &Partitionable, listener: &Listener, args: &[&str]) -> KillOnDrop {
    let object = support::compile_with("cc", "linker/remote/deaf_spin.c", &["-O2"]);
    let executor = format!("tcp={}", listener.address);
    let [program, prefix @ ..] = Partitionable::exec_in(&net.controller);
    let child = Command::new(program)
        .args(prefix)
        .arg(env!("CARGO_BIN_EXE_solder"))
        .args(["run", "--executor", &executor, "--executor-output", "local"])
        .args(args)
        .arg(path_str(&object))
        .env("SOLDER_EXECUTOR_TOKEN", "s3cret")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    KillOnDrop(child)
}

/// Waits for the partitioned program to start spinning, or fails with what
/// the listener and the controller (`pid`) said.
fn started_or_fail(listener: &Listener, controller: &mut KillOnDrop, test: &str) {
    if wait_for_text(&listener.stdout_file, "spinning", Duration::from_secs(30)) {
        return;
    }
    let _ = controller.0.kill();
    let mut said = String::new();
    if let Some(stderr) = controller.0.stderr.as_mut() {
        let _ = std::io::Read::read_to_string(stderr, &mut said);
    }
    panic!(
        "the program never started; the controller said: {said}\n{}",
        rerun(test)
    );
}

/// A listener in the executor's namespace, whose sessions give up on a
/// controller silent for a second.
fn partitioned_listener(net: &Partitionable, name: &str) -> Listener {
    Listener::start_with(
        name,
        Some("s3cret"),
        &["--peer-timeout", "1"],
        &format!("{EXECUTOR_IP}:0"),
        &Partitionable::exec_in(&net.executor),
    )
}

/// A partition (the link cut mid-call: no FIN, no RST, no timeout on the
/// call) is noticed within the peer timeout on both sides: the controller
/// reports a lost executor, and the executor's session ends.
#[test]
fn tcp_partition_is_a_lost_executor_on_both_sides() {
    let test = "tcp_partition_is_a_lost_executor_on_both_sides";
    let Some(net) = partitionable_or_skip(test) else {
        return;
    };
    let listener = partitioned_listener(&net, "partition");
    let mut controller = partitioned_controller(&net, &listener, &["--peer-timeout", "2"]);
    started_or_fail(&listener, &mut controller, test);
    net.cut();
    let cut = Instant::now();
    let output = controller
        .wait_for_exit(Duration::from_secs(60))
        .unwrap_or_else(|| {
            panic!(
                "the controller never noticed the partition\n{}",
                rerun(test)
            )
        });
    let noticed = cut.elapsed();
    let message = stderr(&output);
    assert_eq!(
        output.status.code(),
        Some(125),
        "{message}\n{}",
        rerun(test)
    );
    assert!(
        message.contains("executor lost") && message.contains("no sign of life"),
        "{message}\n{}",
        rerun(test)
    );
    eprintln!("{test}: the controller noticed the partition after {noticed:?} (--peer-timeout 2)");
    let left = listener.wait_for_no_sessions(Duration::from_secs(30));
    assert!(
        left.is_empty(),
        "{left:?}: the executor's side still runs 30 s after the partition\n{}",
        rerun(test)
    );
    eprintln!(
        "{test}: the executor's side was gone {:?} after the partition (--peer-timeout 1)",
        cut.elapsed()
    );
}

/// With `--recovery restart` a partition is a lost executor like a crash:
/// once the network is back the controller connects again and replays the
/// modules.
#[test]
fn tcp_partition_with_restart_reconnects_and_replays() {
    let test = "tcp_partition_with_restart_reconnects_and_replays";
    let Some(net) = partitionable_or_skip(test) else {
        return;
    };
    let listener = partitioned_listener(&net, "partition-restart");
    let mut controller = partitioned_controller(
        &net,
        &listener,
        &["--peer-timeout", "4", "--recovery", "restart"],
    );
    started_or_fail(&listener, &mut controller, test);
    net.cut();
    // The executor's side gives up first (its peer timeout is shorter);
    // then the network comes back for the new connection.
    let left = listener.wait_for_no_sessions(Duration::from_secs(30));
    assert!(left.is_empty(), "{left:?} still run\n{}", rerun(test));
    net.restore();
    let output = controller
        .wait_for_exit(Duration::from_secs(60))
        .unwrap_or_else(|| panic!("the controller never recovered\n{}", rerun(test)));
    let message = stderr(&output);
    assert!(
        message.contains("executor lost")
            && message.contains("a fresh executor replayed 1 module(s)"),
        "{message}\n{}",
        rerun(test)
    );
}
