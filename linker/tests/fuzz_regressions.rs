//! Every input a fuzz target ever crashed, hung or ran out of memory on,
//! kept under `fuzz/regressions/<target>/` (see `docs/fuzzing.md`), replayed
//! on the stable toolchain as the target replays it: objects through
//! [`probe::link_image`] as given and with their format's magic forced,
//! protocol frames through decoding and a round trip. Each must end in a
//! clean `Ok` or `Err`, never a panic; an object must also make
//! `solder run --noexec` exit with 125 and a message, never 101 (a panic)
//! or a signal. (Scenario regressions are replayed by
//! `solder-conformance`'s schema tests.)

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use solder_executor::protocol::{Reply, Request, read_frame};
use solder_linker::graph::ObjectFormat;
use solder_linker::probe::{self, Host};

/// The object targets and the format each forces.
const OBJECT_TARGETS: [(&str, ObjectFormat); 3] = [
    ("elf", ObjectFormat::Elf),
    ("macho", ObjectFormat::MachO),
    ("coff", ObjectFormat::Coff),
];

fn rerun(test: &str) -> String {
    format!("rerun: cargo test -p solder-linker --test fuzz_regressions -- {test} --exact")
}

/// The files of `fuzz/regressions/<target>/`, sorted.
fn regressions(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/regressions")
        .join(target);
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .map(|e| e.expect("list regressions").path())
            .collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    files
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .expect("a regression is a file")
        .to_string_lossy()
        .into_owned()
}

/// What a panic said.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic without a message)".into()
    }
}

/// Runs `f`; a panic becomes a line naming the input and how to replay it.
fn no_panic(target: &str, path: &Path, what: &str, f: impl FnOnce()) -> Option<String> {
    let payload = catch_unwind(AssertUnwindSafe(f)).err()?;
    Some(format!(
        "{}: {what}: panicked: {}\n  replay: (cd fuzz && cargo +nightly fuzz run {target} \
         regressions/{target}/{})",
        path.display(),
        panic_message(&*payload),
        file_name(path)
    ))
}

/// Links `bytes` as the probe does for a fuzz target; an error must name
/// the object, and read without its debug sections it must link the same.
fn link(name: &str, bytes: &[u8]) {
    if let Some(difference) = probe::differs_without_debug(name, bytes) {
        panic!("{difference}");
    }
    if let Err(err) = probe::link_image(name, bytes, Host::MadeUp) {
        let message = err.to_string();
        assert!(
            message.contains(name),
            "the error does not name the object: {message}"
        );
    }
}

#[test]
fn object_regressions_link_or_fail_cleanly() {
    let mut failures = Vec::new();
    let mut replayed = 0;
    for (target, format) in OBJECT_TARGETS {
        for path in regressions(target) {
            let bytes = std::fs::read(&path).expect("read a regression");
            let name = file_name(&path);
            replayed += 1;
            failures.extend(no_panic(target, &path, "as given", || link(&name, &bytes)));
            if let Some(forced) = probe::with_magic(format, &bytes) {
                failures.extend(no_panic(target, &path, "magic forced", || {
                    link(&name, &forced)
                }));
            }
        }
    }
    assert!(
        replayed > 0,
        "no object regressions under fuzz/regressions/"
    );
    assert!(
        failures.is_empty(),
        "{} of {replayed} object regressions panicked:\n{}\n{}",
        failures.len(),
        failures.join("\n"),
        rerun("object_regressions_link_or_fail_cleanly")
    );
}

/// Archives (`fuzz/regressions/archive/`) are linked whole as the
/// `archive` target links them, as given and with the magic forced, and
/// link the same read without their members' DWARF; an error must name
/// the archive.
#[test]
fn archive_regressions_link_or_fail_cleanly() {
    let mut failures = Vec::new();
    for path in regressions("archive") {
        let bytes = std::fs::read(&path).expect("read a regression");
        let name = file_name(&path);
        let mut forced = b"!<arch>\n".to_vec();
        forced.extend_from_slice(bytes.get(8..).unwrap_or_default());
        for (what, input) in [("as given", &bytes), ("magic forced", &forced)] {
            failures.extend(no_panic("archive", &path, what, || {
                if let Some(difference) = probe::archive_differs_without_debug(&name, input) {
                    panic!("{difference}");
                }
                if let Err(err) = probe::link_archive(&name, input, Host::MadeUp) {
                    let message = err.to_string();
                    assert!(
                        message.contains(&name),
                        "the error does not name the archive: {message}"
                    );
                }
            }));
        }
    }
    assert!(
        failures.is_empty(),
        "archive regressions panicked:\n{}\n{}",
        failures.join("\n"),
        rerun("archive_regressions_link_or_fail_cleanly")
    );
}

/// Decodes `frame` both ways and round-trips what decodes, as the
/// `protocol` target does.
fn round_trip(frame: &[u8]) {
    if let Ok(request) = Request::decode(frame) {
        let encoded = request.encode();
        assert_eq!(Request::decode(&encoded[4..]).ok(), Some(request));
    }
    if let Ok(reply) = Reply::decode(frame) {
        let encoded = reply.encode();
        assert_eq!(Reply::decode(&encoded[4..]).ok(), Some(reply));
    }
}

#[test]
fn protocol_regressions_decode_cleanly_and_round_trip() {
    let mut failures = Vec::new();
    for path in regressions("protocol") {
        let bytes = std::fs::read(&path).expect("read a regression");
        failures.extend(no_panic("protocol", &path, "a frame", || {
            round_trip(&bytes);
            let mut stream = &bytes[..];
            if let Ok(frame) = read_frame(&mut stream) {
                round_trip(&frame);
            }
        }));
    }
    assert!(
        failures.is_empty(),
        "protocol regressions panicked:\n{}\n{}",
        failures.join("\n"),
        rerun("protocol_regressions_decode_cleanly_and_round_trip")
    );
}

/// `solder run --noexec` on every object regression (and its forced-magic
/// variant) fails as Solder fails on bad input: exit status 125 and a
/// message naming the file, never a panic (101) or a signal. An input the
/// probe links (one that hung or blew up memory, not a malformed one) may
/// link here too (status 0), or fail on a host symbol the probe made up.
#[cfg(feature = "host")]
#[test]
fn solder_run_refuses_object_regressions_with_125() {
    use std::os::unix::process::ExitStatusExt;
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let mut failures = Vec::new();
    for (target, format) in OBJECT_TARGETS {
        for path in regressions(target) {
            let bytes = std::fs::read(&path).expect("read a regression");
            let links = |bytes: &[u8]| probe::link_image("probe", bytes, Host::MadeUp).is_ok();
            let mut inputs = vec![(path.clone(), links(&bytes))];
            if let Some(forced) = probe::with_magic(format, &bytes) {
                let forced_path = scratch
                    .path()
                    .join(format!("{target}-{}-magic", file_name(&path)));
                std::fs::write(&forced_path, &forced).expect("write the forced variant");
                inputs.push((forced_path, links(&forced)));
            }
            for (input, linked) in inputs {
                let shown = input.display().to_string();
                let output = std::process::Command::new(env!("CARGO_BIN_EXE_solder"))
                    .args(["run", "--noexec", &shown])
                    .output()
                    .expect("run solder");
                let stderr = String::from_utf8_lossy(&output.stderr);
                let status = (output.status.code(), output.status.signal());
                let refused = status == (Some(125), None) && stderr.contains(&shown);
                if !(refused || linked && status == (Some(0), None)) {
                    let want = if linked { "0 or 125" } else { "125" };
                    failures.push(format!(
                        "solder run --noexec {shown}: exit {status:?} (want {want} naming the \
                         file), stderr:\n{stderr}"
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n{}",
        failures.join("\n"),
        rerun("solder_run_refuses_object_regressions_with_125")
    );
}
