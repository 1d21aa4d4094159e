//! For the front-ends' unit tests: real objects built by clang at test time
//! for any target, in a scratch directory of their own.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A directory of its own for one build, removed afterwards.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new() -> Scratch {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "solder-objects-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create a scratch directory");
        Scratch(dir)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Builds `source` (`lang` as clang's `-x` says: `c` or `assembler`) for
/// `target` with `flags`, and returns the object's bytes. A missing clang
/// fails the test: these tests never pass by building nothing.
pub fn clang_object(target: &str, lang: &str, source: &str, flags: &[&str]) -> Vec<u8> {
    let dir = Scratch::new();
    let input = dir.0.join(if lang == "c" { "input.c" } else { "input.s" });
    let output = dir.0.join("output.o");
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
