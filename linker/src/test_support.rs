//! For the front-ends' unit tests: real objects built by clang at test time
//! for any target, in a scratch directory of their own.

use std::process::Command;

/// A directory removed when dropped.
pub fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("solder-objects-")
        .tempdir()
        .expect("create a scratch directory")
}

/// Builds `source` (`lang` as clang's `-x` says: `c` or `assembler`) for
/// `target` with `flags`, and returns the object's bytes. A missing clang
/// fails the test: these tests never pass by building nothing.
pub fn clang_object(target: &str, lang: &str, source: &str, flags: &[&str]) -> Vec<u8> {
    let dir = scratch();
    let input = dir
        .path()
        .join(if lang == "c" { "input.c" } else { "input.s" });
    let output = dir.path().join("output.o");
    std::fs::write(&input, source).expect("write the source");
    let result = Command::new("clang")
        .arg(format!("--target={target}"))
        .args(["-c", "-x", lang])
        .args(flags)
        .arg(&input)
        .arg("-o")
        .arg(&output)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run clang ({e}): these tests build their objects with it")
        });
    assert!(
        result.status.success(),
        "clang --target={target} failed on\n{source}\n{}",
        String::from_utf8_lossy(&result.stderr)
    );
    std::fs::read(&output).expect("read the object")
}
