//! Library search: `-L DIR` and `-l NAME` as a static linker takes them.
//!
//! `-lNAME` looks in each directory, in the order given, for `libNAME.so`
//! and then `libNAME.a` (a shared library first, as `ld` does by default);
//! `-l:FILE` for exactly `FILE`. The first file found wins. Every file
//! tried is kept, so a library that is not found is reported with the
//! whole list.

use std::path::{Path, PathBuf};

/// A library `-l` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// An `ar` archive: linked, its members taken on demand.
    Archive(PathBuf),
    /// A shared library: opened for host lookups.
    Shared(PathBuf),
}

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

/// A found file is an archive when its bytes say so (`-l:libfoo.a`, or a
/// `.so` that is one), otherwise a shared library.
fn classify(path: PathBuf) -> Found {
    if starts_like_archive(&path) {
        Found::Archive(path)
    } else {
        Found::Shared(path)
    }
}

fn starts_like_archive(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 8];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok_and(|()| crate::archive::is_archive(&magic))
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
