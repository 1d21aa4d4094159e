//! `-l NAME` for a session: the search a static linker makes (the `-L`
//! directories, then the system's), and what the file found means: an
//! archive joins the search list (read as the session reads objects:
//! [`Session::read_archive`]), a shared library is opened for host
//! lookups, a linker script names other files that are taken the same way.

use std::path::{Path, PathBuf};

use super::Session;
use crate::archive::Archive;
use crate::debug_sections::DebugSections;
use crate::error::LinkError;
use crate::input::ObjectFile;
use crate::search::{self, Found, ld_script};

/// How deep scripts may name scripts (`-lNAME` in one): past this, a
/// script that names itself is refused instead of followed forever.
const MAX_SCRIPT_DEPTH: usize = 8;

/// Where a library was found: in a directory the user gave (`-L`), or in
/// the system's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Given,
    System,
}

impl Session {
    /// `-l NAME` with `-L` directories, as a static linker searches:
    /// `libNAME.so`, then `libNAME.a`, in each directory in order, then in
    /// the system's ([`search::system_directories`]); `-l:FILE`: that
    /// file. An archive joins the search list ([`Session::add_archive`]);
    /// a shared library is opened for host lookups; a linker script's
    /// files are taken the same way. A shared library of the system's
    /// directories, and one a system script names, is opened by its file
    /// name, not its path: the process that runs the code (an executor on
    /// another machine, perhaps) finds it in its own system, as it did its
    /// C library. Not found, `-l NAME` (not `-l:FILE`) falls back to the
    /// dynamic loader's own search for `libNAME.so`, `.so.6`, `.so.1`. The
    /// error lists every file tried.
    pub fn link_library(&mut self, name: &str, directories: &[PathBuf]) -> Result<(), LinkError> {
        self.link_library_in(name, directories, 0)
    }

    /// Reads and indexes the archive at `path` as the session reads
    /// objects: its members without their debug sections unless the
    /// session keeps debug information ([`Session::enable_debug`] first).
    pub fn read_archive(&self, path: &Path) -> Result<Archive, LinkError> {
        let debug = if self.keep_debug {
            DebugSections::Read
        } else {
            DebugSections::LeaveOut
        };
        let paths = [path.to_path_buf()];
        let file = ObjectFile::read_all(&paths, self.threads, debug)
            .pop()
            .unwrap_or_else(|| ObjectFile::read(path))?;
        let directory = path.parent().unwrap_or(Path::new("."));
        Archive::parse_file(file, Some(directory))
    }

    fn link_library_in(
        &mut self,
        name: &str,
        directories: &[PathBuf],
        depth: usize,
    ) -> Result<(), LinkError> {
        let mut tried = Vec::new();
        if let Some(found) = search::find_library(name, directories, &mut tried) {
            return self.take_library(found, Place::Given, directories, depth);
        }
        let system = search::system_directories();
        match search::find_library(name, &system, &mut tried) {
            // The loader's to find, by name, below.
            Some(Found::Shared(_)) | None => {}
            Some(found) => return self.take_library(found, Place::System, directories, depth),
        }
        let mut tried: Vec<String> = tried.iter().map(|p| p.display().to_string()).collect();
        if !name.starts_with(':') {
            match self.executor.link_library(name) {
                Ok(()) => {
                    self.config.libraries.push(name.to_string());
                    return Ok(());
                }
                Err(err) => tried.push(format!(
                    "the dynamic loader's search for lib{name}.so, lib{name}.so.6 \
                     and lib{name}.so.1 ({err})"
                )),
            }
        }
        Err(LinkError::LibraryNotFound {
            name: name.to_string(),
            tried,
        })
    }

    fn take_library(
        &mut self,
        found: Found,
        place: Place,
        directories: &[PathBuf],
        depth: usize,
    ) -> Result<(), LinkError> {
        match found {
            Found::Archive(path) => {
                let archive = self.read_archive(&path)?;
                self.add_archive(archive, false);
                Ok(())
            }
            Found::Shared(path) => {
                let opened = opened_as(&path, place);
                self.executor.preload(&opened)?;
                self.config.preloads.push(opened);
                Ok(())
            }
            Found::Script(path) => self.take_script(&path, place, directories, depth),
        }
    }

    /// Takes each file the linker script at `path` names, in order.
    fn take_script(
        &mut self,
        path: &Path,
        place: Place,
        directories: &[PathBuf],
        depth: usize,
    ) -> Result<(), LinkError> {
        let malformed = |reason: String| LinkError::MalformedScript {
            script: path.display().to_string(),
            reason,
        };
        if depth >= MAX_SCRIPT_DEPTH {
            return Err(malformed(format!(
                "scripts name scripts more than {MAX_SCRIPT_DEPTH} deep (one names itself?)"
            )));
        }
        let text = read_script(path)?;
        let inputs = ld_script::inputs(&text, path).map_err(malformed)?;
        for input in inputs {
            match input {
                ld_script::ScriptInput::File(file) => {
                    if !file.is_file() {
                        return Err(malformed(format!(
                            "it names {}, which is not a file",
                            file.display()
                        )));
                    }
                    self.take_library(search::classify(file), place, directories, depth + 1)?;
                }
                ld_script::ScriptInput::Library(name) => {
                    self.link_library_in(&name, directories, depth + 1)?;
                }
            }
        }
        Ok(())
    }
}

/// What the process that runs the code is asked to open for the shared
/// library at `path`: the path itself when the user's directories had it,
/// its file name (the name the system's script or search gave it, for
/// that process's loader to find) when the system's did.
fn opened_as(path: &Path, place: Place) -> String {
    match (place, path.file_name()) {
        (Place::System, Some(file)) => file.to_string_lossy().into_owned(),
        _ => path.display().to_string(),
    }
}

/// The script's text: at most [`ld_script::MAX_SCRIPT_BYTES`], UTF-8.
fn read_script(path: &Path) -> Result<String, LinkError> {
    use std::io::Read;
    let read_error = |reason| LinkError::Read {
        path: path.to_path_buf(),
        reason,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| {
            f.take(ld_script::MAX_SCRIPT_BYTES + 1)
                .read_to_end(&mut bytes)
        })
        .map_err(read_error)?;
    let malformed = |reason: &str| LinkError::MalformedScript {
        script: path.display().to_string(),
        reason: reason.to_string(),
    };
    if bytes.len() as u64 > ld_script::MAX_SCRIPT_BYTES {
        return Err(malformed("longer than a library's script (64 KiB)"));
    }
    String::from_utf8(bytes).map_err(|_| malformed("not UTF-8 text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shared library the user's directories had is opened by its path;
    /// one the system's had (glibc's `libm.so` script naming
    /// `/lib/x86_64-linux-gnu/libm.so.6`), by its file name.
    #[test]
    fn system_libraries_are_opened_by_name_and_given_ones_by_path() {
        let rerun = "rerun: cargo test -p solder-linker --lib session::libraries::tests";
        let path = Path::new("/lib/x86_64-linux-gnu/libm.so.6");
        assert_eq!(opened_as(path, Place::System), "libm.so.6", "{rerun}");
        assert_eq!(
            opened_as(path, Place::Given),
            "/lib/x86_64-linux-gnu/libm.so.6",
            "{rerun}"
        );
    }
}
