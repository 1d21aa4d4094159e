//! Library search: `-L DIR` and `-l NAME` as a static linker takes them.
//!
//! `-lNAME` looks in each directory, in the order given, for `libNAME.so`
//! and then `libNAME.a` (a shared library first, as `ld` does by default);
//! `-l:FILE` for exactly `FILE`. The first file found wins. Every file
//! tried is kept, so a library that is not found is reported with the
//! whole list. After the `-L` directories come the ones the compiler
//! driver would search ([`system_directories`]), so `-lpthread` finds the
//! C library's (empty) `libpthread.a` as `cc` does, and `-lm` its
//! `libm.so`: a linker script ([`ld_script`]) naming the real files.

pub mod ld_script;

use std::path::{Path, PathBuf};

/// A library `-l` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// An `ar` archive: linked, its members taken on demand.
    Archive(PathBuf),
    /// A shared library: opened for host lookups.
    Shared(PathBuf),
    /// A linker script naming the files to link instead ([`ld_script`]).
    Script(PathBuf),
}

/// The directories searched after the `-L` ones, in order: those of
/// `LIBRARY_PATH` (which the compiler driver passes on as `-L`), then the
/// system's, as GNU ld has them built in for this platform. Directories
/// that do not exist are left out.
pub fn system_directories() -> Vec<PathBuf> {
    let from_environment = std::env::var_os("LIBRARY_PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default();
    from_environment
        .into_iter()
        .filter(|dir| !dir.as_os_str().is_empty())
        .chain(BUILT_IN_DIRECTORIES.iter().map(PathBuf::from))
        .filter(|dir| dir.is_dir())
        .collect()
}

/// GNU ld's built-in search directories on x86-64 Linux (its
/// `SEARCH_DIR`s, multiarch first, as Debian's and Ubuntu's build it).
#[cfg(target_os = "linux")]
const BUILT_IN_DIRECTORIES: &[&str] = &[
    "/usr/local/lib/x86_64-linux-gnu",
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/usr/local/lib64",
    "/lib64",
    "/usr/lib64",
    "/usr/local/lib",
    "/lib",
    "/usr/lib",
];

/// Elsewhere only `LIBRARY_PATH` is searched: macOS's linker searches
/// inside an SDK, and Windows has no built-in directories.
#[cfg(not(target_os = "linux"))]
const BUILT_IN_DIRECTORIES: &[&str] = &[];

/// The file names `-l NAME` stands for, in the order tried.
pub fn candidates(name: &str) -> Vec<String> {
    match name.strip_prefix(':') {
        Some(file) => vec![file.to_string()],
        None => vec![format!("lib{name}.so"), format!("lib{name}.a")],
    }
}

/// Looks for `-l NAME` in `directories`, in order; `tried` gets every path
/// looked at.
pub fn find_library(
    name: &str,
    directories: &[PathBuf],
    tried: &mut Vec<PathBuf>,
) -> Option<Found> {
    let names = candidates(name);
    for directory in directories {
        for file in &names {
            let path = directory.join(file);
            tried.push(path.clone());
            if path.is_file() {
                return Some(classify(path));
            }
        }
    }
    None
}

/// A found file is an archive or a linker script when its first bytes say
/// so (`-l:libfoo.a`, a `.so` that is an archive, `libc.so`), otherwise a
/// shared library (which the dynamic loader then judges).
pub fn classify(path: PathBuf) -> Found {
    let start = first_bytes(&path);
    if crate::archive::is_archive(&start) {
        Found::Archive(path)
    } else if ld_script::looks_like_script(&start) {
        Found::Script(path)
    } else {
        Found::Shared(path)
    }
}

/// Up to 64 of the file's first bytes (none if it cannot be read).
fn first_bytes(path: &Path) -> Vec<u8> {
    use std::io::Read;
    let mut start = Vec::with_capacity(64);
    let _ = std::fs::File::open(path).and_then(|f| f.take(64).read_to_end(&mut start));
    start
}

#[cfg(test)]
mod tests {
    use super::*;

    const RERUN: &str = "rerun: cargo test -p solder-linker --lib search::tests";

    /// Directories are searched in order, `.so` before `.a` within one,
    /// `-l:FILE` names the file exactly, and every path tried is listed.
    #[test]
    fn libraries_are_found_in_order_and_every_try_is_listed() {
        let scratch = crate::test_support::scratch();
        let (first, second) = (scratch.path().join("first"), scratch.path().join("second"));
        std::fs::create_dir_all(&first).unwrap();
        std::fs::create_dir_all(&second).unwrap();
        std::fs::write(first.join("libboth.a"), b"!<arch>\n").unwrap();
        std::fs::write(second.join("libboth.so"), b"\x7fELF").unwrap();
        std::fs::write(second.join("libboth.a"), b"!<arch>\n").unwrap();
        std::fs::write(second.join("libonly.a"), b"!<arch>\n").unwrap();
        std::fs::write(second.join("exact.lib"), b"!<arch>\n").unwrap();
        let dirs = [first.clone(), second.clone()];
        let mut tried = Vec::new();
        assert_eq!(
            find_library("both", &dirs, &mut tried),
            Some(Found::Archive(first.join("libboth.a"))),
            "{RERUN}"
        );
        assert_eq!(
            tried,
            [first.join("libboth.so"), first.join("libboth.a")],
            "{RERUN}"
        );
        let reversed = [second.clone(), first.clone()];
        assert_eq!(
            find_library("both", &reversed, &mut Vec::new()),
            Some(Found::Shared(second.join("libboth.so"))),
            "{RERUN}"
        );
        assert_eq!(
            find_library(":exact.lib", &dirs, &mut Vec::new()),
            Some(Found::Archive(second.join("exact.lib"))),
            "{RERUN}"
        );
        let mut tried = Vec::new();
        assert_eq!(find_library("none", &dirs, &mut tried), None, "{RERUN}");
        assert_eq!(
            tried,
            [
                first.join("libnone.so"),
                first.join("libnone.a"),
                second.join("libnone.so"),
                second.join("libnone.a")
            ],
            "{RERUN}"
        );
    }
}
