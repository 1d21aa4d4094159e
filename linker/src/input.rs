//! Inputs: the objects a load is given, read from files, and the sniffing
//! that hands each to its front-end by its magic.

use std::path::Path;

use crate::error::LinkError;
use crate::graph::LinkGraph;
pub use crate::object_bytes::ObjectBytes;

/// A relocatable object to load.
#[derive(Debug, Clone)]
pub struct ObjectFile {
    pub name: String,
    pub bytes: ObjectBytes,
}

impl ObjectFile {
    /// Reads the file's bytes: as many as its size says, as a native linker
    /// maps them. Unlike `std::fs::read`, no extra read probes for bytes
    /// past that size (one system call fewer per object: a load is mostly
    /// system calls and page faults). A file shorter than its size gives
    /// what it has; a parser then names what is missing. What is not a
    /// regular file (a pipe, as `<(cmd)` gives, or a device) has no size
    /// to go by: it is read to its end, up to [`STREAM_LIMIT`].
    pub fn read(path: &Path) -> Result<Self, LinkError> {
        let (file, size) = match open_sized(path)? {
            (file, Some(size)) => (file, size),
            (file, None) => return read_stream(path, file, STREAM_LIMIT),
        };
        let error = |reason| read_error(path, reason);
        let mut bytes: Vec<u8> = Vec::new();
        bytes.try_reserve_exact(size).map_err(|e| {
            error(std::io::Error::new(
                std::io::ErrorKind::OutOfMemory,
                e.to_string(),
            ))
        })?;
        read_into(&file, &mut bytes).map_err(error)?;
        Ok(ObjectFile {
            name: path.display().to_string(),
            bytes: bytes.into(),
        })
    }

    /// As [`ObjectFile::read`], for a path that must name a regular file
    /// (a thin archive's member, named by the archive): anything else (a
    /// device, a pipe, whose opening could wait for a writer) is refused
    /// before it is opened, rather than read as a stream.
    pub(crate) fn read_regular(path: &Path) -> Result<Self, LinkError> {
        let metadata = std::fs::metadata(path).map_err(|e| read_error(path, e))?;
        if !metadata.is_file() {
            return Err(read_error(
                path,
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file"),
            ));
        }
        ObjectFile::read(path)
    }
}

/// The most a stream (a pipe, a device) given as an object may hold.
pub const STREAM_LIMIT: u64 = 1 << 30;

/// `path` opened, with its size (`None` when it is not a regular file).
fn open_sized(path: &Path) -> Result<(std::fs::File, Option<usize>), LinkError> {
    let file = std::fs::File::open(path).map_err(|e| read_error(path, e))?;
    let metadata = file.metadata().map_err(|e| read_error(path, e))?;
    let size = regular_size(path, &metadata)?;
    Ok((file, size))
}

/// The size `metadata` gives the file at `path`, in memory's terms;
/// `None` when it is not a regular file (its size says nothing about what
/// reading it gives).
pub(crate) fn regular_size(
    path: &Path,
    metadata: &std::fs::Metadata,
) -> Result<Option<usize>, LinkError> {
    let size = metadata.is_file().then_some(metadata.len());
    size_in_memory(path, size)
}

/// A regular file's `size` (`None`: not a regular file) in memory's
/// terms: an error naming `path` when it does not fit.
pub(crate) fn size_in_memory(path: &Path, size: Option<u64>) -> Result<Option<usize>, LinkError> {
    let Some(size) = size else {
        return Ok(None);
    };
    usize::try_from(size).map(Some).map_err(|_| {
        read_error(
            path,
            std::io::Error::new(
                std::io::ErrorKind::FileTooLarge,
                format!("{size} bytes do not fit in memory"),
            ),
        )
    })
}

/// Reads `file`, which is not a regular file, to its end: an error past
/// `limit` bytes (`/dev/zero` never ends).
fn read_stream(path: &Path, file: std::fs::File, limit: u64) -> Result<ObjectFile, LinkError> {
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(file, limit + 1), &mut bytes)
        .map_err(|e| read_error(path, e))?;
    if bytes.len() as u64 > limit {
        return Err(read_error(
            path,
            std::io::Error::new(
                std::io::ErrorKind::FileTooLarge,
                format!("it is not a regular file and goes on past {limit} bytes"),
            ),
        ));
    }
    Ok(ObjectFile {
        name: path.display().to_string(),
        bytes: bytes.into(),
    })
}

pub(crate) fn read_error(path: &Path, reason: std::io::Error) -> LinkError {
    LinkError::Read {
        path: path.to_path_buf(),
        reason,
    }
}

/// Reads `file` into the capacity reserved in `bytes`, through the host
/// layer: one system call for the whole object.
#[cfg(feature = "host")]
fn read_into(file: &std::fs::File, bytes: &mut Vec<u8>) -> std::io::Result<()> {
    solder_executor::sys::io::read_into_spare(file, bytes)
}

/// Reads `file` into the capacity reserved in `bytes` with the standard
/// library alone (no host layer): `take` stops at the capacity, in reads
/// of growing size.
#[cfg(not(feature = "host"))]
fn read_into(file: &std::fs::File, bytes: &mut Vec<u8>) -> std::io::Result<()> {
    let limit = (bytes.capacity() - bytes.len()) as u64;
    std::io::Read::read_to_end(&mut std::io::Read::take(file, limit), bytes).map(drop)
}

/// Picks the front-end by the object's magic, and checks the graph it
/// makes ([`LinkGraph::check`]).
pub fn parse_object<'a>(name: &str, bytes: &'a [u8]) -> Result<LinkGraph<'a>, LinkError> {
    let graph = parse_by_magic(name, bytes)?;
    graph.check()?;
    Ok(graph)
}

/// Whether `bytes` start like an object one of the front-ends reads.
pub fn is_object(bytes: &[u8]) -> bool {
    crate::format::elf::is_elf(bytes)
        || crate::format::macho::is_macho(bytes)
        || crate::format::coff::is_coff(bytes)
}

fn parse_by_magic<'a>(name: &str, bytes: &'a [u8]) -> Result<LinkGraph<'a>, LinkError> {
    if crate::format::elf::is_elf(bytes) {
        crate::format::elf::parse(name, bytes)
    } else if crate::format::macho::is_macho(bytes) {
        crate::format::macho::parse(name, bytes)
    } else if crate::format::coff::is_coff(bytes) {
        crate::format::coff::parse(name, bytes)
    } else {
        let reason = if is_llvm_bitcode(bytes) {
            "LLVM bitcode (clang -flto), not machine code: compile it without -flto"
        } else {
            "not an x86-64 ELF, Mach-O or COFF relocatable object"
        };
        Err(LinkError::UnsupportedObject {
            object: name.to_string(),
            reason: reason.into(),
        })
    }
}

/// Whether `bytes` are LLVM bitcode, bare (`BC` 0xC0DE) or in the wrapper
/// Apple's tools put around it (0x0B17C0DE, little-endian): what clang
/// writes for an object with `-flto`.
fn is_llvm_bitcode(bytes: &[u8]) -> bool {
    bytes.starts_with(b"BC\xc0\xde") || bytes.starts_with(&0x0B17_C0DEu32.to_le_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const RERUN: &str = "rerun: cargo test -p solder-linker --lib input::tests";

    /// `ObjectFile::read` returns exactly the file's bytes (it reads into
    /// reserved, uninitialized capacity), for empty, small and multi-page
    /// files; a missing file or a directory is an error naming the path.
    #[test]
    fn object_file_read_returns_the_files_bytes() {
        let scratch = crate::test_support::scratch();
        for size in [0usize, 5, 3 * 4096 + 7, 200_003] {
            let path = scratch.path().join(format!("{size}.o"));
            let bytes: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
            std::fs::write(&path, &bytes).unwrap();
            let read = ObjectFile::read(&path).unwrap();
            assert_eq!(read.name, path.display().to_string(), "{RERUN}");
            assert!(
                read.bytes.as_slice() == bytes.as_slice(),
                "{size} bytes read back differ\n{RERUN}"
            );
        }
        for bad in [
            scratch.path().join("missing.o"),
            scratch.path().to_path_buf(),
        ] {
            let err = ObjectFile::read(&bad).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("cannot read {}: ", bad.display())),
                "{err}\n{RERUN}"
            );
        }
    }

    /// A pipe (`<(cmd)`) is read to its end, though it has no size; a
    /// stream past the limit is an error naming it, not memory without end.
    #[cfg(unix)]
    #[test]
    fn a_pipe_is_read_to_its_end_and_an_endless_stream_is_an_error() {
        let bytes: Vec<u8> = (0..300_007usize).map(|i| (i * 7 % 253) as u8).collect();
        let pipe = crate::test_support::PipeFile::new(bytes.clone());
        let read = ObjectFile::read(&pipe.path).unwrap();
        assert!(read.bytes.as_slice() == bytes.as_slice(), "{RERUN}");
        let zero = Path::new("/dev/zero");
        let file = std::fs::File::open(zero).unwrap();
        let err = read_stream(zero, file, 1 << 20).unwrap_err().to_string();
        assert!(
            err.starts_with("cannot read /dev/zero: ") && err.contains("past 1048576 bytes"),
            "{err}\n{RERUN}"
        );
    }
}
