//! Reading many object files at once ([`ObjectFile::read_all`]): into one
//! piece of memory that is backed in a few large calls before the files
//! are copied into it, on several threads when there are many bytes.
//!
//! Reading a thousand small objects into a thousand fresh allocations is
//! mostly page faults (one per page, microseconds each on a virtual
//! machine). Each thread opens, reads and closes one file at a time: a
//! process whose threads hold hundreds of files open grows its descriptor
//! table, and each growth of a shared table waits for an RCU grace period.
//!
//! A run of files of one directory is measured and opened by name within
//! the directory, opened once (`solder_executor::sys::fs`): each path walk
//! looks every component up again, twice per file.
//!
//! Only regular files are measured and read this way. Anything else (a
//! pipe, as `<(cmd)` gives, a terminal, a device) has no size to lay out
//! by, and reading part of a stream consumes it: such a file is read alone,
//! whole, once the others are in.
//!
//! A link that will not read debug information asks for objects without
//! it ([`DebugSections::LeaveOut`]): each object's first bytes are read,
//! and the rest without its DWARF sections ([`crate::debug_sections`]).
//! An object that ends within those first bytes (most, without `-g`) is
//! still read in one system call.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use solder_executor::sys::fs::Directory;
use solder_executor::sys::memory::FreshMemory;

use crate::debug_sections::{self, Begun, DebugSections, HEAD, Pieces};
use crate::error::LinkError;
use crate::input::{ObjectBytes, ObjectFile, read_error, regular_size, size_in_memory};
use crate::parallel::{self, Threads, Work};

/// Where each object starts in the shared memory: 16-aligned, as an
/// allocation would be.
const ALIGN: usize = 16;

/// Asking a file's size costs about what reading a small object does.
const STAT_WEIGHT: usize = 16 << 10;

/// Groups of files read by one thread in turn, per thread.
const GROUPS_PER_THREAD: usize = 4;

impl ObjectFile {
    /// Every file of `paths`, in order, each as [`ObjectFile::read`] reads
    /// one, sharing memory (see the module's documentation); ELF objects
    /// without their DWARF sections when `debug` says to leave them out.
    pub fn read_all(
        paths: &[PathBuf],
        threads: Threads,
        debug: DebugSections,
    ) -> Vec<Result<ObjectFile, LinkError>> {
        let helpers = threads.for_work(Work::even(paths.len(), STAT_WEIGHT)) - 1;
        parallel::with_crew(helpers, || read_all(paths, threads, debug))
    }
}

/// [`ObjectFile::read_all`], on the crew it started.
fn read_all(
    paths: &[PathBuf],
    threads: Threads,
    debug: DebugSections,
) -> Vec<Result<ObjectFile, LinkError>> {
    let sizes = parallel::map_pieces(
        paths,
        threads,
        |_| STAT_WEIGHT,
        |piece| {
            let mut directories = Directories::default();
            piece
                .iter()
                .map(|path| size_of(path, &mut directories))
                .collect()
        },
    );
    let Some(Layout {
        starts,
        total,
        in_pieces_from,
    }) = layout(&sizes, debug)
    else {
        return paths.iter().map(|p| ObjectFile::read(p)).collect();
    };
    let Ok(mut memory) = FreshMemory::with_huge_pages_to(total, in_pieces_from) else {
        // No mapping that large: each file in memory of its own.
        return paths.iter().map(|p| ObjectFile::read(p)).collect();
    };
    let rooms = rooms(memory.as_mut_slice(), &starts, &sizes);
    let filled = fill(paths, rooms, threads, debug);
    let memory = Arc::new(memory);
    let files = paths.iter().zip(sizes).zip(filled).zip(starts);
    files
        .map(|(((path, size), filled), start)| match size? {
            Some(size) => object(path, size, filled?, &memory, start),
            None => ObjectFile::read(path),
        })
        .collect()
}

/// Where each file's room is in the shared memory.
struct Layout {
    /// Where each file's room starts.
    starts: Vec<usize>,
    /// The memory's size.
    total: usize,
    /// Where the rooms of objects that may be read in pieces, with holes,
    /// begin: they come after all the others, so that huge pages back only
    /// rooms read whole.
    in_pieces_from: usize,
}

/// Where each file's room starts in the shared memory, and the memory's
/// size; `None` when the sizes add up to more than an address space. One
/// byte of room past each file's size shows a file that grew since it was
/// measured: it is then read on its own. When debug sections may be left
/// out, the rooms of files past [`HEAD`] come last.
fn layout(sizes: &[Result<Option<usize>, LinkError>], debug: DebugSections) -> Option<Layout> {
    let room = |size: &Result<Option<usize>, LinkError>| match size {
        Ok(Some(size)) => size.checked_add(1)?.checked_next_multiple_of(ALIGN),
        Ok(None) | Err(_) => Some(0),
    };
    let mut starts = vec![0; sizes.len()];
    let mut total = 0usize;
    let mut in_pieces_from = 0;
    for in_pieces in [false, true] {
        for (start, size) in starts.iter_mut().zip(sizes) {
            let room = room(size)?;
            if (debug == DebugSections::LeaveOut && room > HEAD) == in_pieces {
                *start = total;
                total = total.checked_add(room)?;
            }
        }
        if !in_pieces {
            in_pieces_from = total;
        }
    }
    Some(Layout {
        starts,
        total,
        in_pieces_from,
    })
}

/// The object read from `path` into `memory` at `start`: `got` bytes of
/// the `size` it was measured at. One more than that means the file grew
/// since: it is read again, whole, into memory of its own.
fn object(
    path: &std::path::Path,
    size: usize,
    got: debug_sections::Got,
    memory: &Arc<FreshMemory>,
    start: usize,
) -> Result<ObjectFile, LinkError> {
    if got.len > size {
        return ObjectFile::read(path);
    }
    let bytes = ObjectBytes::shared(memory, start..start + got.len, got.left_out)
        .ok_or_else(|| read_error(path, std::io::Error::other("read past its memory")))?;
    Ok(ObjectFile {
        name: path.display().to_string(),
        bytes,
    })
}

/// The size `path` has now; `None` when it is not a regular file (its
/// size says nothing about what reading it gives).
fn size_of(path: &Path, directories: &mut Directories) -> Result<Option<usize>, LinkError> {
    if let Some((directory, name)) = directories.of(path) {
        let size = directory
            .regular_size(name)
            .map_err(|e| read_error(path, e))?;
        return size_in_memory(path, size);
    }
    let metadata = std::fs::metadata(path).map_err(|e| read_error(path, e))?;
    regular_size(path, &metadata)
}

/// The directories a run of paths names its files in, each opened once
/// for the paths of it that follow one another (see
/// `solder_executor::sys::fs`): measuring and opening a thousand objects
/// of one directory walks its path once, not twice per object.
#[derive(Default)]
struct Directories {
    /// The last directory asked for, as its path spells it, and the
    /// directory (`None` when it could not be opened).
    current: Option<(PathBuf, Option<Directory>)>,
}

impl Directories {
    /// The directory `path` names its file in, opened, and the file's name
    /// there. `None` to use the path itself: its last component is not a
    /// plain name (`..`, `.`, a trailing `/`, none at all), or its
    /// directory cannot be opened (then the path's own use reports why).
    fn of<'p>(&mut self, path: &'p Path) -> Option<(&Directory, &'p OsStr)> {
        let bytes = path.as_os_str().as_bytes();
        let (directory, name) = match bytes.iter().rposition(|&b| b == b'/') {
            // The directory keeps its slash: "/" stays the root.
            Some(slash) => (&bytes[..=slash], &bytes[slash + 1..]),
            None => (&b""[..], bytes),
        };
        if name.is_empty() || name == b"." || name == b".." {
            return None;
        }
        let directory = Path::new(OsStr::from_bytes(directory));
        if self.current.as_ref().is_none_or(|(at, _)| at != directory) {
            let opened = Directory::open(directory).ok();
            self.current = Some((directory.to_path_buf(), opened));
        }
        let (_, opened) = self.current.as_ref()?;
        Some((opened.as_ref()?, OsStr::from_bytes(name)))
    }
}

/// Each file's room in `memory` (its size and one byte; empty for a file
/// whose size is unknown or that is not a regular file), cut at `starts`,
/// in the files' order. `starts` and the memory's size come from
/// [`layout`], so every cut is in bounds and none overlaps another.
fn rooms<'m>(
    memory: &'m mut [u8],
    starts: &[usize],
    sizes: &[Result<Option<usize>, LinkError>],
) -> Vec<&'m mut [u8]> {
    // Cut in the memory's order; the rooms come back in the files'.
    let mut order: Vec<usize> = (0..starts.len()).collect();
    order.sort_by_key(|&i| starts[i]);
    let mut rooms: Vec<&'m mut [u8]> = starts.iter().map(|_| Default::default()).collect();
    let mut rest = memory;
    let mut at = 0;
    for i in order {
        let room = match &sizes[i] {
            Ok(Some(size)) => size + 1,
            // No room, so no cut: its start may be another file's (the
            // first of the rooms laid out after the others), which an
            // earlier cut may already have passed.
            Ok(None) | Err(_) => continue,
        };
        let (_, tail) = std::mem::take(&mut rest).split_at_mut(starts[i] - at);
        let (room, tail) = tail.split_at_mut(room);
        at = starts[i] + room.len();
        rooms[i] = room;
        rest = tail;
    }
    rooms
}

/// Reads each file into its room, a group of neighbours per turn: the
/// group's pages are backed in one call first (of an object that may be
/// read without its debug sections, only its first [`HEAD`] bytes; the
/// pages of each later piece are backed as it is read). The larger
/// members of archives are read after every file's turn, all of them
/// spread over the threads as files are ([`read_members`]). What each got.
fn fill(
    paths: &[PathBuf],
    rooms: Vec<&mut [u8]>,
    threads: Threads,
    debug: DebugSections,
) -> Vec<Result<debug_sections::Got, LinkError>> {
    let work = Work::of(rooms.iter().map(|r| r.len()));
    let total = work.total;
    let count = threads.split(work) * GROUPS_PER_THREAD;
    let share = total.div_ceil(count.max(1)).max(1);
    let mut groups: Vec<Vec<(&PathBuf, &mut [u8])>> = Vec::with_capacity(count);
    let mut filled = share;
    for (path, room) in paths.iter().zip(rooms) {
        if filled >= share {
            groups.push(Vec::new());
            filled = 0;
        }
        filled += room.len();
        if let Some(group) = groups.last_mut() {
            group.push((path, room));
        }
    }
    let weight = |group: &Vec<(&PathBuf, &mut [u8])>| group.iter().map(|(_, r)| r.len()).sum();
    let begun = parallel::map_owned(groups, threads, weight, |group| {
        for span in spans_to_back(&group, debug) {
            populate(span);
        }
        // A file without a room (not a regular file, or not measured) is
        // not opened here.
        let mut directories = Directories::default();
        group
            .into_iter()
            .map(|(path, room)| {
                if room.is_empty() {
                    Ok(Reading::Done(debug_sections::Got::whole(0)))
                } else {
                    begin_reading(path, room, &mut directories, debug)
                }
            })
            .collect::<Vec<_>>()
    })
    .into_iter()
    .flatten()
    .collect();
    read_members(paths, begun, threads)
}

/// A file's reading after its turn: done, or an archive walked whose
/// larger members are left to read from the open file.
enum Reading<'m> {
    Done(debug_sections::Got),
    Walked(std::fs::File, debug_sections::Walked<'m>),
}

/// Reads the larger members of every archive walked, spread over the
/// threads by their bytes, and finishes each file's reading: what each
/// file got.
fn read_members(
    paths: &[PathBuf],
    mut begun: Vec<Result<Reading<'_>, LinkError>>,
    threads: Threads,
) -> Vec<Result<debug_sections::Got, LinkError>> {
    let mut members = Vec::new();
    for (i, reading) in begun.iter_mut().enumerate() {
        if let Ok(Reading::Walked(file, walked)) = reading {
            let file = &*file;
            members.extend(walked.take_members().into_iter().map(|m| (i, file, m)));
        }
    }
    let read = parallel::map_owned(
        members,
        threads,
        |(_, _, member)| member.weight(),
        |(i, file, member)| {
            (
                i,
                debug_sections::read_member(file, member, &back, Pieces::LINK),
            )
        },
    );
    let mut read = read.into_iter().peekable();
    let files = paths.iter().zip(begun).enumerate();
    files
        .map(|(i, (path, reading))| match reading? {
            Reading::Done(got) => Ok(got),
            Reading::Walked(_, walked) => {
                let mut got = Vec::new();
                while let Some((_, member)) = read.next_if(|(file, _)| *file == i) {
                    got.push(member);
                }
                walked.finish(got).map_err(|e| read_error(path, e))
            }
        })
        .collect()
}

/// The address ranges of a group's rooms to back before reading them: the
/// whole group, or, when debug sections may be left out, each run of
/// rooms up to the first [`HEAD`] bytes of a larger one.
fn spans_to_back(group: &[(&PathBuf, &mut [u8])], debug: DebugSections) -> Vec<(u64, u64)> {
    let mut spans: Vec<(u64, u64)> = Vec::new();
    let mut open = false;
    for (_, room) in group {
        let start = room.as_ptr() as u64;
        let whole = debug == DebugSections::Read || room.len() <= HEAD;
        let end = start + room.len().min(if whole { usize::MAX } else { HEAD }) as u64;
        // Rooms of one group lie in order, apart only by alignment, unless
        // the layout put the larger ones after all the others.
        match spans.last_mut() {
            Some(span) if open && (span.1..span.1 + ALIGN as u64).contains(&start) => {
                span.1 = end;
            }
            _ => spans.push((start, end)),
        }
        open = whole;
    }
    spans
}

/// Backs the pages of `span` (start, end) of the shared memory.
fn populate((start, end): (u64, u64)) {
    let page = solder_executor::sys::memory::page_size();
    // SAFETY: the span lies in one read-write anonymous mapping
    // (`FreshMemory`), whose whole pages these are; populating writes
    // nothing, so a neighbouring group's page being written by another
    // thread is unharmed.
    unsafe { solder_executor::pages::populate(start, end.saturating_sub(start), page) };
}

/// Begins reading the file at `path` (a regular file) into `room` (its
/// measured size and one byte more): whole, in one read when it has its
/// measured size ([`debug_sections::read_whole`]), or, with
/// [`DebugSections::LeaveOut`], in pieces without its DWARF sections
/// ([`debug_sections::begin_in_pieces`]), an archive's larger members
/// left to read from the file it returns open.
fn begin_reading<'m>(
    path: &Path,
    room: &'m mut [u8],
    directories: &mut Directories,
    debug: DebugSections,
) -> Result<Reading<'m>, LinkError> {
    let opened = match directories.of(path) {
        Some((directory, name)) => directory.open_file(name),
        None => std::fs::File::open(path),
    };
    let file = opened.map_err(|e| read_error(path, e))?;
    let begun = match debug {
        DebugSections::Read => debug_sections::read_whole(&file, room).map(Reading::Done),
        DebugSections::LeaveOut => {
            debug_sections::begin_in_pieces(&file, room, &back, Pieces::LINK).map(|begun| {
                match begun {
                    Begun::Read(got) => Reading::Done(got),
                    Begun::Walked(walked) => Reading::Walked(file, walked),
                }
            })
        }
    };
    begun.map_err(|e| read_error(path, e))
}

/// Backs the pages of a piece of a room before it is read into.
fn back(piece: &mut [u8]) {
    let start = piece.as_ptr() as u64;
    populate((start, start + piece.len() as u64));
}

#[cfg(test)]
mod tests {
    use super::*;

    const RERUN: &str = "rerun: cargo test -p solder-linker --lib read_all::tests";

    /// Every file comes back whole and in order, next to the errors of
    /// those that cannot be read (named by path), on one thread and split
    /// over several (groups of neighbours each backed in one call).
    #[test]
    fn read_all_returns_each_files_bytes_in_order() {
        let scratch = crate::test_support::scratch();
        let mut paths = Vec::new();
        let mut expected = Vec::new();
        for (i, size) in [0usize, 5, 3 * 4096 + 7, 200_003, 1, 4096]
            .into_iter()
            .enumerate()
        {
            let path = scratch.path().join(format!("{i}.o"));
            let bytes: Vec<u8> = (0..size).map(|b| (b * 31 % 251) as u8 ^ i as u8).collect();
            std::fs::write(&path, &bytes).unwrap();
            paths.push(path);
            expected.push(Some(bytes));
            if i == 2 {
                paths.push(scratch.path().join("missing.o"));
                expected.push(None);
                paths.push(scratch.path().to_path_buf());
                expected.push(None);
            }
        }
        let split = Threads {
            count: Some(3),
            min_bytes_each: 1,
        };
        for threads in [Threads::serial(), split] {
            let read = ObjectFile::read_all(&paths, threads, DebugSections::Read);
            assert_eq!(read.len(), paths.len(), "{RERUN}");
            for ((got, want), path) in read.iter().zip(&expected).zip(&paths) {
                match (got, want) {
                    (Ok(file), Some(bytes)) => {
                        assert_eq!(file.name, path.display().to_string(), "{RERUN}");
                        assert!(
                            file.bytes.as_slice() == bytes.as_slice(),
                            "{} read back differs ({threads:?})\n{RERUN}",
                            path.display()
                        );
                    }
                    (Err(e), None) => {
                        let e = e.to_string();
                        assert!(
                            e.starts_with(&format!("cannot read {}: ", path.display())),
                            "{e}\n{RERUN}"
                        );
                    }
                    (got, _) => panic!("{}: {got:?}\n{RERUN}", path.display()),
                }
            }
        }
    }

    /// Files named through their directory are the files their paths
    /// name: a symbolic link, `..` and `.` on the way, a doubled slash, a
    /// directory in a run of the same directory's files, and paths whose
    /// last component is no plain name (read by the path itself, with its
    /// error) come back as `ObjectFile::read` reads each path alone.
    #[test]
    fn files_named_through_their_directory_are_what_their_paths_name() {
        let scratch = crate::test_support::scratch();
        let dir = scratch.path();
        std::fs::create_dir(dir.join("sub")).unwrap();
        std::fs::write(dir.join("a.o"), b"first").unwrap();
        std::fs::write(dir.join("b.o"), vec![7u8; 9000]).unwrap();
        std::fs::write(dir.join("sub/c.o"), b"in sub").unwrap();
        std::os::unix::fs::symlink("sub/c.o", dir.join("link.o")).unwrap();
        std::os::unix::fs::symlink("sub", dir.join("sublink")).unwrap();
        let shown = dir.display();
        let paths: Vec<PathBuf> = [
            format!("{shown}/a.o"),
            format!("{shown}/sub"),
            format!("{shown}/b.o"),
            format!("{shown}//a.o"),
            format!("{shown}/sub/../b.o"),
            format!("{shown}/sublink/../a.o"),
            format!("{shown}/./sub/c.o"),
            format!("{shown}/link.o"),
            format!("{shown}/a.o/"),
            format!("{shown}/a.o/."),
            format!("{shown}/sub/.."),
            format!("{shown}/sub/"),
            format!("{shown}/missing/a.o"),
            format!("{shown}/missing.o"),
        ]
        .into_iter()
        .map(PathBuf::from)
        .collect();
        let split = Threads {
            count: Some(3),
            min_bytes_each: 1,
        };
        for threads in [Threads::serial(), split] {
            let read = ObjectFile::read_all(&paths, threads, DebugSections::Read);
            for (path, got) in paths.iter().zip(read) {
                let alone = ObjectFile::read(path);
                match (got, alone) {
                    (Ok(got), Ok(alone)) => assert!(
                        got.bytes.as_slice() == alone.bytes.as_slice(),
                        "{} ({threads:?})\n{RERUN}",
                        path.display()
                    ),
                    (Err(got), Err(alone)) => {
                        assert_eq!(got.to_string(), alone.to_string(), "{RERUN}")
                    }
                    (got, alone) => panic!(
                        "{}: read with the others {got:?}, alone {alone:?}\n{RERUN}",
                        path.display()
                    ),
                }
            }
        }
    }

    /// A pipe among regular files (`<(cmd)`) is read whole, alone, and
    /// the files around it as ever, on one thread and on several.
    #[test]
    fn a_pipe_among_files_is_read_whole() {
        let scratch = crate::test_support::scratch();
        let piped: Vec<u8> = (0..100_003usize).map(|i| (i * 13 % 241) as u8).collect();
        let before = scratch.path().join("before.o");
        let after = scratch.path().join("after.o");
        std::fs::write(&before, vec![1u8; 5000]).unwrap();
        std::fs::write(&after, vec![2u8; 70_000]).unwrap();
        let split = Threads {
            count: Some(3),
            min_bytes_each: 1,
        };
        for threads in [Threads::serial(), split] {
            let pipe = crate::test_support::PipeFile::new(piped.clone());
            let paths = [before.clone(), pipe.path.clone(), after.clone()];
            let read: Vec<ObjectFile> = ObjectFile::read_all(&paths, threads, DebugSections::Read)
                .into_iter()
                .collect::<Result<_, _>>()
                .unwrap();
            assert!(read[0].bytes.as_slice() == [1u8; 5000], "{RERUN}");
            assert!(
                read[1].bytes.as_slice() == piped.as_slice(),
                "the pipe's {} bytes came back as {} ({threads:?})\n{RERUN}",
                piped.len(),
                read[1].bytes.len()
            );
            assert!(
                read[2].bytes.as_slice() == vec![2u8; 70_000].as_slice(),
                "{RERUN}"
            );
        }
    }

    /// Read leaving debug sections out, a `-g` object among other files
    /// (a small object, bytes that are not ELF, a file past the first
    /// bytes that is not ELF, a missing file) comes back without its
    /// DWARF and says so, linking as the whole file does; every other file
    /// comes back whole, each in its place, on one thread and on several
    /// (the larger files' rooms are laid out after the others').
    #[test]
    fn objects_read_without_debug_sections_say_so_and_the_rest_is_whole() {
        use crate::probe::{Host, link_image};
        let scratch = crate::test_support::scratch();
        let mut c = String::new();
        for i in 0..600 {
            c += &format!("struct s{i} {{ long a{i}, b{i}; }};\n");
            c += &format!("long f{i}(struct s{i} *s) {{ return s->a{i} - s->b{i} * {i}; }}\n");
        }
        let target = "x86_64-linux-gnu";
        let g = crate::test_support::clang_object(target, "c", &c, &["-g", "-O1"]);
        let small =
            crate::test_support::clang_object(target, "c", "int f(void) { return 1; }", &[]);
        let library = [("g.o", &g[..]), ("small.o", &small[..]), ("h.o", &g[..])];
        let library = crate::test_support::ar_archive(&library);
        let files: [(&str, Option<Vec<u8>>); 7] = [
            ("small.o", Some(small.clone())),
            ("g.o", Some(g.clone())),
            ("lib.a", Some(library)),
            ("missing.o", None),
            ("text.o", Some(b"hello".to_vec())),
            ("large.bin", Some(vec![7u8; 3 * HEAD])),
            (
                "one.a",
                Some(crate::test_support::ar_archive(&[("g.o", &g)])),
            ),
        ];
        let mut paths = Vec::new();
        for (name, bytes) in &files {
            let path = scratch.path().join(name);
            if let Some(bytes) = bytes {
                std::fs::write(&path, bytes).unwrap();
            }
            paths.push(path);
        }
        let split = Threads {
            count: Some(3),
            min_bytes_each: 1,
        };
        let whole = link_image("g.o", &g, Host::MadeUp).unwrap();
        for threads in [Threads::serial(), split] {
            let read = ObjectFile::read_all(&paths, threads, DebugSections::LeaveOut);
            for ((name, want), got) in files.iter().zip(read) {
                let Some(want) = want else {
                    assert!(got.is_err(), "{name} ({threads:?})\n{RERUN}");
                    continue;
                };
                let got = got.unwrap();
                if name.ends_with(".a") {
                    // Its larger members read as one thread reads them
                    // alone, whichever threads read them here.
                    let alone = crate::probe::without_debug(want, Pieces::LINK, Threads::serial());
                    assert!(got.bytes.debug_left_out(), "{name}\n{RERUN}");
                    assert!(
                        Some(got.bytes.as_slice()) == alone.as_deref(),
                        "{name} read back differs ({threads:?})\n{RERUN}"
                    );
                } else if *name == "g.o" {
                    assert!(got.bytes.debug_left_out(), "{RERUN}");
                    assert!(got.bytes.as_slice() != want.as_slice(), "{RERUN}");
                    let holed = link_image("g.o", &got.bytes, Host::MadeUp).unwrap();
                    assert!(holed.image == whole.image, "{threads:?}\n{RERUN}");
                } else {
                    assert!(!got.bytes.debug_left_out(), "{name}\n{RERUN}");
                    assert!(
                        got.bytes.as_slice() == want.as_slice(),
                        "{name} read back differs ({threads:?})\n{RERUN}"
                    );
                }
            }
        }
    }

    /// A file without a room (missing, or not a regular file) laid out
    /// last among the files read whole shares its start with the first
    /// room of the files read in pieces; it is cut no room, whichever of
    /// the two comes first in the list. Both orders, on one thread and on
    /// several.
    #[test]
    fn a_file_without_a_room_at_the_first_in_pieces_room_is_cut_none() {
        let scratch = crate::test_support::scratch();
        let large = scratch.path().join("large.bin");
        let large_bytes = vec![7u8; 3 * HEAD];
        std::fs::write(&large, &large_bytes).unwrap();
        let missing = scratch.path().join("missing.a");
        let directory = scratch.path().to_path_buf();
        let split = Threads {
            count: Some(3),
            min_bytes_each: 1,
        };
        for roomless in [&missing, &directory] {
            for paths in [[&large, roomless], [roomless, &large]] {
                let paths: Vec<PathBuf> = paths.into_iter().cloned().collect();
                for threads in [Threads::serial(), split] {
                    let read = ObjectFile::read_all(&paths, threads, DebugSections::LeaveOut);
                    for (path, got) in paths.iter().zip(read) {
                        if path == &large {
                            let got = got.unwrap();
                            assert!(got.bytes.as_slice() == large_bytes, "{paths:?}\n{RERUN}");
                        } else {
                            assert!(got.is_err(), "{paths:?} ({threads:?})\n{RERUN}");
                        }
                    }
                }
            }
        }
    }

    /// A file that grew between being measured and being read (one byte
    /// more than its room allowed for arrived) is read again whole; one
    /// that shrank gives what it has.
    #[test]
    fn a_file_that_changed_size_is_read_as_it_is_now() {
        let scratch = crate::test_support::scratch();
        let path = scratch.path().join("grown.o");
        std::fs::write(&path, b"0123456789").unwrap();
        let mut memory = FreshMemory::new(64).unwrap();
        memory.as_mut_slice()[..5].copy_from_slice(b"01234");
        let memory = Arc::new(memory);
        let got = debug_sections::Got::whole(5);
        let grown = object(&path, 4, got, &memory, 0).unwrap();
        assert_eq!(grown.bytes.as_slice(), b"0123456789", "{RERUN}");
        let shrunk = object(&path, 8, got, &memory, 0).unwrap();
        assert_eq!(shrunk.bytes.as_slice(), b"01234", "{RERUN}");
    }
}
