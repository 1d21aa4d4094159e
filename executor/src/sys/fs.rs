//! Files named within a directory opened once: measuring and opening a
//! thousand objects of one directory then walks the directory's path once,
//! not twice per object (each walk looks every component of the path up
//! again).

use std::ffi::OsStr;
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;

use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{Mode, SFlag};

/// An open directory (`O_PATH`: it is only named through, never read).
#[derive(Debug)]
pub struct Directory(OwnedFd);

impl Directory {
    /// The directory at `path` (the current one when `path` is empty).
    pub fn open(path: &Path) -> io::Result<Directory> {
        let path = if path.as_os_str().is_empty() {
            Path::new(".")
        } else {
            path
        };
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        Ok(Directory(nix::fcntl::open(path, flags, Mode::empty())?))
    }

    /// The size of the file `name` in this directory (symbolic links
    /// followed, as `std::fs::metadata` follows them), or `None` when it is
    /// not a regular file.
    pub fn regular_size(&self, name: &OsStr) -> io::Result<Option<u64>> {
        let stat = nix::sys::stat::fstatat(&self.0, name, AtFlags::empty())?;
        let regular = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG;
        // A regular file's size is never negative.
        Ok(regular.then(|| u64::try_from(stat.st_size).unwrap_or(0)))
    }

    /// The file `name` in this directory, opened for reading (as
    /// `std::fs::File::open` opens a path).
    pub fn open_file(&self, name: &OsStr) -> io::Result<std::fs::File> {
        let flags = OFlag::O_RDONLY | OFlag::O_CLOEXEC;
        let fd = nix::fcntl::openat(&self.0, name, flags, Mode::empty())?;
        Ok(std::fs::File::from(fd))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RERUN: &str = "rerun: cargo test -p solder-executor --lib sys::fs::tests";

    /// A file is measured and read through its directory as through its
    /// path; a directory, a missing name and a symbolic link are what their
    /// paths are.
    #[test]
    fn a_directory_names_its_files_as_paths_do() {
        let scratch = tempfile::tempdir().unwrap();
        let file = scratch.path().join("a.o");
        std::fs::write(&file, b"12345").unwrap();
        std::fs::create_dir(scratch.path().join("sub")).unwrap();
        std::os::unix::fs::symlink("a.o", scratch.path().join("link.o")).unwrap();
        let dir = Directory::open(scratch.path()).unwrap();
        assert_eq!(
            dir.regular_size(OsStr::new("a.o")).unwrap(),
            Some(5),
            "{RERUN}"
        );
        assert_eq!(
            dir.regular_size(OsStr::new("link.o")).unwrap(),
            Some(5),
            "{RERUN}"
        );
        assert_eq!(
            dir.regular_size(OsStr::new("sub")).unwrap(),
            None,
            "{RERUN}"
        );
        let missing = dir.regular_size(OsStr::new("missing.o")).unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound, "{RERUN}");
        let mut read = String::new();
        io::Read::read_to_string(&mut dir.open_file(OsStr::new("link.o")).unwrap(), &mut read)
            .unwrap();
        assert_eq!(read, "12345", "{RERUN}");
        assert!(
            Directory::open(&file).is_err(),
            "a file is no directory\n{RERUN}"
        );
    }
}
