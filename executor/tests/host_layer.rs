//! The host layer keeps every operating-system call: outside
//! `executor/src/sys/`, no source file of the executor, the linker or the
//! conformance suite names `libc` or `nix` (tests, benchmarks and the
//! xtask are tools, not the host layer, and may).

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Whether `code` has a path starting at crate `name` (`nix::…`, not
/// `std::os::unix::…`).
fn names_crate(code: &str, name: &str) -> bool {
    let path = format!("{name}::");
    code.match_indices(&path).any(|(at, _)| {
        !code[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
    })
}

#[test]
fn names_crate_sees_paths_not_substrings() {
    assert!(names_crate("let x = libc::getpid();", "libc"));
    assert!(names_crate("use nix::unistd;", "nix"));
    assert!(!names_crate("use std::os::unix::fs::FileExt;", "nix"));
    assert!(!names_crate("crate::sys::libc_free::x", "libc"));
}

#[test]
fn only_sys_names_libc_or_nix() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the executor lives in the workspace");
    let sys = workspace.join("executor/src/sys");
    let mut files = Vec::new();
    for crate_dir in ["executor", "linker", "conformance"] {
        rust_files(&workspace.join(crate_dir).join("src"), &mut files);
    }
    assert!(files.len() > 50, "found the sources: {}", files.len());
    let mut offenders = Vec::new();
    for file in files.iter().filter(|f| !f.starts_with(&sys)) {
        let text = std::fs::read_to_string(file).expect("read a source file");
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if names_crate(code, "libc") || names_crate(code, "nix") {
                offenders.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "operating-system calls outside executor/src/sys/:\n{}\n\
         rerun: cargo test -p solder-executor --test host_layer",
        offenders.join("\n")
    );
}
