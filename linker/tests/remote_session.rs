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
use support::remote::{Listener, executor_binary};

fn rerun(test: &str) -> String {
    format!("rerun: cargo test --workspace --test remote_session -- {test} --exact")
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

fn remote_fixture(name: &str) -> ObjectFile {
    let path = support::compile_with("cc", &format!("linker/remote/{name}"), &["-O2"]);
    ObjectFile::read(&path).unwrap()
}

/// Lines of `/proc/PID/fd` (as `N -> target`) or `/proc/PID/maps` of
/// process `pid` that name the shared slab's memfd.
fn slab_entries(pid: u32) -> (Vec<String>, Vec<String>) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let target = std::fs::read_link(entry.path()).ok()?;
            let target = target.to_string_lossy().into_owned();
            target
                .contains("solder-slab")
                .then(|| format!("{} -> {target}", entry.file_name().to_string_lossy()))
        })
        .collect();
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap()
        .lines()
        .filter(|line| line.contains("solder-slab"))
        .map(str::to_string)
        .collect();
    (fds, maps)
}

/// With `--shm` the executor keeps no writable alias of the code: no
/// descriptor of the memfd once the session runs, only private mappings
/// of it, code never writable. Released memory is cleared by the
/// controller (the only writer of the file): a module loaded after
/// another was removed reads its zero-initialized data as zero.
#[test]
fn shared_memory_leaves_no_writable_alias_and_clears_released_memory() {
    let test = "shared_memory_leaves_no_writable_alias_and_clears_released_memory";
    let mut session = Session::new(SessionConfig {
        executor: ExecutorChoice::Remote {
            transport: Transport::Pipe {
                program: Some(executor_binary()),
            },
            shared_memory: true,
        },
        ..SessionConfig::default()
    })
    .unwrap();
    let filled = session.load(&[remote_fixture("filled.c")]).unwrap();
    let sum_filled = session.lookup("sum_filled").unwrap().unwrap();
    // SAFETY: `long sum_filled(void)`; it runs in the executor process.
    let sum = unsafe { session.call(sum_filled, &[]) }.unwrap();
    assert_eq!(sum, -2048i64 as u64);
    let pid = session.executor_pid().unwrap();
    let (fds, maps) = slab_entries(pid);
    assert!(
        fds.is_empty(),
        "the executor holds the memfd open: {fds:?}\n{}",
        rerun(test)
    );
    assert!(!maps.is_empty(), "the slab is mapped\n{}", rerun(test));
    for line in &maps {
        let perms = line.split_whitespace().nth(1).unwrap();
        assert!(
            perms.ends_with('p') && !(perms.contains('w') && perms.contains('x')),
            "only private mappings of the memfd, never writable and executable: {line}\n{}",
            rerun(test)
        );
    }
    // The controller holds the only descriptor of the memfd.
    let (own, _) = slab_entries(std::process::id());
    assert!(
        !own.is_empty(),
        "the controller keeps its descriptor\n{}",
        rerun(test)
    );

    session.remove(filled).unwrap();
    session.load(&[remote_fixture("zeros.c")]).unwrap();
    let sum_zeros = session.lookup("sum_zeros").unwrap().unwrap();
    // SAFETY: `long sum_zeros(void)`; it runs in the executor process.
    let sum = unsafe { session.call(sum_zeros, &[]) }.unwrap();
    assert_eq!(sum, 0, "released memory came back dirty\n{}", rerun(test));
}

/// A removed module's unwind frames leave the host unwinder, through
/// pipes and with `--shm` (where the controller clears released memory in
/// the file: clearing it before the executor has deregistered the frames
/// left them registered, since the unwinder skips frames that read as
/// zero, and the next unwind walked released memory).
#[test]
fn a_removed_module_leaves_no_frames_with_the_unwinder() {
    let test = "a_removed_module_leaves_no_frames_with_the_unwinder";
    for shared_memory in [false, true] {
        let mut session = Session::new(SessionConfig {
            executor: ExecutorChoice::Remote {
                transport: Transport::Pipe {
                    program: Some(executor_binary()),
                },
                shared_memory,
            },
            ..SessionConfig::default()
        })
        .unwrap();
        let framed = session.load(&[remote_fixture("framed.c")]).unwrap();
        let inside_framed = session.lookup("inside_framed").unwrap().unwrap();
        // SAFETY: `long inside_framed(void)`; it runs in the executor.
        let pc = unsafe { session.call(inside_framed, &[]) }.unwrap();
        session.load(&[remote_fixture("unwind_probe.c")]).unwrap();
        let has_frames = session.lookup("has_frames").unwrap().unwrap();
        // SAFETY: `long has_frames(long pc)`; it runs in the executor.
        let before = unsafe { session.call(has_frames, &[pc]) }.unwrap();
        assert_eq!(
            before,
            1,
            "shm {shared_memory}: the loaded module's frames are registered\n{}",
            rerun(test)
        );
        session.remove(framed).unwrap();
        // SAFETY: as above.
        let after = unsafe { session.call(has_frames, &[pc]) };
        assert!(
            matches!(after, Ok(0)),
            "shm {shared_memory}: the removed module's frames are still registered: {after:?}\n{}",
            rerun(test)
        );
    }
}

fn tcp(listener: &Listener, recovery: Recovery) -> Result<Session, LinkError> {
    Session::new(SessionConfig {
        executor: ExecutorChoice::Remote {
            transport: Transport::Tcp {
                address: listener.address.clone(),
                peer_timeout: solder_linker::DEFAULT_PEER_TIMEOUT,
            },
            shared_memory: false,
        },
        recovery,
        ..SessionConfig::default()
    })
}

/// A call that outlives its timeout over TCP, with the executor's own timer
/// blocked by the program: the controller gives up on the connection (it
/// cannot signal the executor), and the executor's watchdog ends the
/// session — serving process and checkpoint — within 5 s, while the
/// controller's session object still exists.
#[test]
fn tcp_call_that_times_out_leaves_no_executor() {
    let test = "tcp_call_that_times_out_leaves_no_executor";
    for recovery in [Recovery::None, Recovery::Snapshot] {
        let listener = Listener::start("timed-out", None, &[]);
        let mut session = tcp(&listener, recovery).unwrap();
        session.load(&[remote_fixture("deaf_spin.c")]).unwrap();
        let spin = session.lookup("spin_deaf").unwrap().unwrap();
        // SAFETY: `int spin_deaf(void)`; it runs in the executor process.
        let result =
            unsafe { session.call_with_timeout(spin, &[], Some(Duration::from_millis(200))) };
        match &result {
            Err(LinkError::Execution(abnormal)) => assert!(
                matches!(
                    abnormal.outcome,
                    Outcome::Lost(_) | Outcome::TimedOut { .. }
                ),
                "{recovery:?}: {abnormal}\n{}",
                rerun(test)
            ),
            other => panic!(
                "{recovery:?}: expected a lost executor, got {other:?}\n{}",
                rerun(test)
            ),
        }
        let left = listener.wait_for_no_sessions(Duration::from_secs(5));
        assert!(
            left.is_empty(),
            "{recovery:?}: {left:?} still run 5 s after the controller gave up\n{}",
            rerun(test)
        );
        drop(session);
    }
}

/// An executor process reached over pipes, spoken to directly (no session).
fn remote_executor() -> solder_linker::executors::Remote {
    solder_linker::executors::Remote::connect(solder_linker::executors::RemoteConfig {
        transport: Transport::Pipe {
            program: Some(executor_binary()),
        },
        shared_memory: false,
        recovery: Recovery::None,
        output: solder_linker::ExecutorOutput::Local,
    })
    .unwrap()
}

/// Bytes that differ from their neighbours and from the same offset of any
/// other 2 MiB piece, so a piece written to the wrong place, twice or not
/// at all shows.
fn pattern(len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8 ^ (i >> 21) as u8)
        .collect()
}

/// A write of megabytes over a pipe (sent as pieces that do not wait for
/// one another's answers) lands byte for byte, from an address in the
/// middle of a page, across several 2 MiB boundaries, next to a small
/// write that travels queued. A piece that fails (it runs past the
/// reservation) is reported by the next request, whose own work then
/// does not happen (it never reached the executor), and the executor
/// serves on.
#[test]
fn a_streamed_write_lands_exactly_and_its_failure_is_reported() {
    use solder_linker::executors::{Executor, PlacementCode};
    let test = "a_streamed_write_lands_exactly_and_its_failure_is_reported";
    let mut executor = remote_executor();
    let size = 64u64 << 20;
    let base = executor.reserve(size, PlacementCode::Any, 0).unwrap();
    let start = base + (3 << 20) - 4096 + 123;
    let big = pattern((5 << 20) + 777);
    executor.write(start, &big).unwrap();
    executor.write(base + 16, b"queued").unwrap();
    let back = executor.read(start, big.len() as u64).unwrap();
    assert!(
        back == big,
        "{} of {} bytes differ, the first at offset {:?}\n{}",
        back.iter().zip(&big).filter(|(a, b)| a != b).count(),
        big.len(),
        back.iter().zip(&big).position(|(a, b)| a != b),
        rerun(test)
    );
    assert_eq!(
        executor.read(base + 16, 6).unwrap(),
        b"queued",
        "{}",
        rerun(test)
    );

    // Pieces are cut at multiples of 2 MiB: the first piece (1 MiB, ending
    // at the reservation's last such multiple) lies inside, the next runs
    // past the reservation's end.
    let past = ((base + size) & !((2 << 20) - 1)) - (1 << 20);
    let failed = executor
        .write(past, &big[..4 << 20])
        .and_then(|()| executor.write(base + 32, b"never"))
        .and_then(|()| executor.read(base + 32, 5));
    match failed {
        Err(LinkError::Memory(message)) => assert!(
            message.contains("outside the slab"),
            "the error says where the write went: {message}\n{}",
            rerun(test)
        ),
        other => panic!(
            "expected the executor's error, got {other:?}\n{}",
            rerun(test)
        ),
    }
    // The piece inside the reservation landed; the queued write sent after
    // the failure did not run.
    assert_eq!(
        executor.read(past, 4096).unwrap(),
        big[..4096],
        "{}",
        rerun(test)
    );
    assert_eq!(
        executor.read(base + 32, 5).unwrap(),
        [0u8; 5],
        "{}",
        rerun(test)
    );
}

/// An executor killed while a large write streams to it is a clear error
/// from the write or from the request after it, never a hang.
#[test]
fn an_executor_killed_while_a_write_streams_is_a_clear_error() {
    use solder_linker::executors::{Executor, PlacementCode};
    let test = "an_executor_killed_while_a_write_streams_is_a_clear_error";
    let mut executor = remote_executor();
    let base = executor.reserve(64 << 20, PlacementCode::Any, 0).unwrap();
    kill(executor.pid().unwrap());
    let big = pattern(16 << 20);
    let result = executor
        .write(base, &big)
        .and_then(|()| executor.read(base, 16).map(drop));
    match result {
        Err(LinkError::Executor(message) | LinkError::ExecutorGone(message)) => {
            assert!(message.contains("executor"), "{message}\n{}", rerun(test))
        }
        other => panic!("expected an executor error, got {other:?}\n{}", rerun(test)),
    }
}
