//! The controller's side of a remote session under abuse: the executor
//! killed in the middle of a call or while idle, and peers that are not
//! well-behaved executors (they die at once, send an oversized frame, or
//! send something that is not a greeting). Each ends in a clear error,
//! never a hang or a panic. Needs `target/<profile>/solder-executor`
//! (built by `cargo test --workspace`).

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use solder_linker::error::LinkError;
use solder_linker::{
    ExecutorChoice, ObjectFile, Outcome, Recovery, Session, SessionConfig, Transport,
};

fn rerun(test: &str) -> String {
    format!("rerun: cargo test --workspace --test remote_session -- {test} --exact")
}

fn executor_binary() -> PathBuf {
    // The test binary is target/<profile>/deps/remote_session-HASH.
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("solder-executor");
    assert!(
        path.is_file(),
        "{} is missing: run `cargo test --workspace` (or `cargo build -p solder-executor`)",
        path.display()
    );
    path
}

fn remote(program: PathBuf, recovery: Recovery) -> Result<Session, LinkError> {
    Session::new(SessionConfig {
        executor: ExecutorChoice::Remote {
            transport: Transport::Pipe {
                program: Some(program),
            },
            shared_memory: false,
        },
        recovery,
        ..SessionConfig::default()
    })
}

fn faults() -> ObjectFile {
    let path = support::compile_with("cc", "conformance/crashes/faults.c", &["-O2"]);
    ObjectFile::read(&path).unwrap()
}

fn kill(pid: u32) {
    // SAFETY: signalling the executor process this test started.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
}

#[test]
fn executor_killed_mid_call_is_reported_and_the_session_is_over() {
    let test = "executor_killed_mid_call_is_reported_and_the_session_is_over";
    let mut session = remote(executor_binary(), Recovery::None).unwrap();
    session.load(&[faults()]).unwrap();
    let spin = session.lookup("spin").unwrap().unwrap();
    let pid = session.executor_pid().expect("a remote executor has a pid");
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        kill(pid);
    });
    // SAFETY: `spin` takes no arguments; it runs in the executor process.
    let result = unsafe { session.call(spin, &[]) };
    killer.join().unwrap();
    match result {
        Err(LinkError::Execution(abnormal)) => {
            assert!(
                matches!(&abnormal.outcome, Outcome::Crashed(c) if c.signal == libc::SIGKILL),
                "{abnormal}\n{}",
                rerun(test)
            );
            assert!(
                abnormal.to_string().contains("SIGKILL") && abnormal.to_string().contains("spin"),
                "the report names the signal and the call: {abnormal}\n{}",
                rerun(test)
            );
        }
        other => panic!("expected a crash outcome, got {other:?}\n{}", rerun(test)),
    }
    // SAFETY: as above.
    let after = unsafe { session.call(spin, &[]) };
    assert!(
        matches!(after, Err(LinkError::ExecutorGone(_))),
        "{after:?}\n{}",
        rerun(test)
    );
}

#[test]
fn executor_killed_while_idle_gives_a_clear_error() {
    let test = "executor_killed_while_idle_gives_a_clear_error";
    let mut session = remote(executor_binary(), Recovery::None).unwrap();
    session.load(&[faults()]).unwrap();
    let divide = session.lookup("divide").unwrap().unwrap();
    kill(session.executor_pid().unwrap());
    std::thread::sleep(Duration::from_millis(100));
    // SAFETY: `divide(int, int)`; it runs in the executor process.
    let result = unsafe { session.call(divide, &[6, 3]) };
    let message = match result {
        Err(err) => err.to_string(),
        Ok(value) => panic!("a dead executor returned {value}\n{}", rerun(test)),
    };
    assert!(
        message.contains("SIGKILL") || message.contains("executor"),
        "the error must say what happened: {message}\n{}",
        rerun(test)
    );
}

#[test]
fn executor_killed_mid_call_with_snapshot_rolls_back() {
    let test = "executor_killed_mid_call_with_snapshot_rolls_back";
    let mut session = remote(executor_binary(), Recovery::Snapshot).unwrap();
    session.load(&[faults()]).unwrap();
    let spin = session.lookup("spin").unwrap().unwrap();
    let divide = session.lookup("divide").unwrap().unwrap();
    let pid = session.executor_pid().unwrap();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        kill(pid);
    });
    // SAFETY: as above.
    let result = unsafe { session.call(spin, &[]) };
    killer.join().unwrap();
    assert!(
        matches!(result, Err(LinkError::Execution(_))),
        "{result:?}\n{}",
        rerun(test)
    );
    assert_ne!(
        session.executor_pid(),
        Some(pid),
        "the checkpoint serves now"
    );
    // SAFETY: as above.
    let value = unsafe { session.call(divide, &[12, 4]) };
    assert_eq!(value.unwrap(), 3, "{}", rerun(test));
}

/// A fake executor: a shell script that gets `--fds IN,OUT`.
fn fake(name: &str, body: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fake-executors");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let script = format!("#!/bin/bash\nOUT=${{2#*,}}\n{body}\n");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn misbehaving_peers_are_clear_errors() {
    let test = "misbehaving_peers_are_clear_errors";
    for (name, body, needle) in [
        ("dies", "exit 7", "died before its greeting (exit status 7)"),
        (
            "oversized",
            r#"printf '\xff\xff\xff\x7f' >&$OUT; sleep 5"#,
            "(limit 16777216)",
        ),
        (
            "not-an-executor",
            r#"printf '\x05\x00\x00\x00\x02ABCD' >&$OUT; sleep 5"#,
            "not a solder executor",
        ),
    ] {
        let error = match remote(fake(name, body), Recovery::None) {
            Ok(_) => panic!(
                "{name}: a session started with a fake executor\n{}",
                rerun(test)
            ),
            Err(err) => err.to_string(),
        };
        assert!(
            error.contains(needle),
            "{name}: `{error}` must contain `{needle}`\n{}",
            rerun(test)
        );
    }
}
