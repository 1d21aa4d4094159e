//! Reading an ELF object without its debug information, for a link that
//! will not use it (no `--debug`): a `-g` build's objects are mostly DWARF
//! (for a C++ program, nineteen bytes in twenty), which a link neither
//! loads nor relocates. Reading it anyway costs a copy and fresh memory per
//! byte.
//!
//! [`read_without_debug`] reads an object's first bytes and its section
//! table, and from them plans what to leave out ([`holes`]): the contents
//! of every DWARF section (`.debug_*`, `.zdebug_*`: not allocated,
//! `SHT_PROGBITS`) and of every relocation table of one, in runs of at
//! least [`MIN_HOLE`] bytes. Everything else is read where it lies, so
//! offsets stay the file's and the parser reads the object as it would
//! read the whole file; a hole reads as zeros.
//!
//! The parser reads no byte of a hole: it reads the header, the section
//! table, the string tables, the symbol table, group tables, allocated
//! sections and the relocation tables of allocated sections. None of those
//! is ever a hole: a section another section links to (`sh_link`) is kept
//! whatever its name, and where a hole would overlap a section that is
//! kept, the overlap is read. An object this cannot read a plan from (not
//! 64-bit little-endian ELF, not relocatable, a table out of the file) is
//! read whole, and the parser says what is wrong with it.
//!
//! An `ar` archive is walked member by member ([`begin_in_pieces`]): its
//! headers and small members are read as they lie, and each member larger
//! than the first bytes is left to [`read_member`], which reads it as an
//! object is, on whichever thread takes it.

use std::io;
use std::ops::Range;

use object::elf;
use object::read::elf::{FileHeader, SectionHeader};
use object::{Endianness, SectionIndex};

use crate::parallel::Threads;

type Header = elf::FileHeader64<Endianness>;

/// The first bytes read of every object: most objects end within them,
/// and the rest are read only once the section table says what to leave
/// out.
pub const HEAD: usize = 64 << 10;

/// The last bytes of a larger object, read next: compilers put the section
/// table at the end, after the symbol and string tables.
pub const TAIL: usize = 64 << 10;

/// The least a hole leaves out: reading fewer bytes than this costs less
/// than the system call that skipping them adds.
pub const MIN_HOLE: usize = 32 << 10;

/// Holes closer than this are left out as one, with what lies between them
/// (alignment padding, or a kept section, which is then read on its own).
const MERGE_GAP: usize = 4 << 10;

/// How many times a plan may ask for more of the file (the first section
/// header, the table, the section names) before the file is read whole.
const MAX_PLAN_READS: usize = 4;

/// Whether objects are read with their debug sections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DebugSections {
    /// Every byte, for a session that keeps debug information
    /// (`--debug`: debuggers and source lines read the objects' DWARF).
    Read,
    /// Without the DWARF sections of ELF objects, for a link that reads
    /// none of it; [`crate::input::ObjectBytes::debug_left_out`] says
    /// which objects lost some.
    LeaveOut,
}

/// Where a file's bytes come from: a file, at an offset, or a test's bytes.
pub trait ReadAt: Sync {
    /// Reads into `into` from `offset`: how many bytes came (0 at the end).
    fn read_at(&self, into: &mut [u8], offset: u64) -> io::Result<usize>;
}

/// What is done to each piece of a room before it is read into (backing
/// its pages); called from every thread that reads.
pub type Prepare<'p> = &'p (dyn Fn(&mut [u8]) + Sync);

#[cfg(unix)]
impl ReadAt for std::fs::File {
    fn read_at(&self, into: &mut [u8], offset: u64) -> io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(self, into, offset)
    }
}

impl ReadAt for &[u8] {
    fn read_at(&self, into: &mut [u8], offset: u64) -> io::Result<usize> {
        let from = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.len());
        let rest = &self[from..];
        let n = rest.len().min(into.len());
        into[..n].copy_from_slice(&rest[..n]);
        Ok(n)
    }
}

/// How an object is cut into pieces: [`HEAD`], [`TAIL`] and [`MIN_HOLE`]
/// as a link reads; smaller ones let a fuzzer's small inputs be planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pieces {
    pub head: usize,
    pub tail: usize,
    pub min_hole: usize,
}

impl Pieces {
    pub const LINK: Pieces = Pieces {
        head: HEAD,
        tail: TAIL,
        min_hole: MIN_HOLE,
    };
}

/// What [`read_without_debug`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Got {
    /// The file's length, as far as the room reaches: its measured size,
    /// one more when it grew since it was measured, less when it shrank.
    pub len: usize,
    /// How many bytes were left out (they read as zeros).
    pub left_out: usize,
}

impl Got {
    /// A file read whole: `len` bytes came, none left out.
    pub fn whole(len: usize) -> Got {
        Got { len, left_out: 0 }
    }
}

/// Reads the object `source`, measured at `room.len() - 1` bytes, into
/// `room` (zeros, so that what is left out reads as zeros), leaving out its
/// debug sections (see the module's documentation). The byte past the
/// measured size is asked for too, to see a file that grew. `prepare` is
/// given each piece of `room` before it is read, except the first
/// [`HEAD`] bytes, which the caller prepares (backing the pages of many
/// small objects at once). An archive's larger members are read on
/// `threads` when there are enough bytes of them.
pub fn read_without_debug(
    source: &impl ReadAt,
    room: &mut [u8],
    prepare: Prepare<'_>,
    threads: Threads,
) -> io::Result<Got> {
    read_in_pieces(source, room, prepare, Pieces::LINK, threads)
}

/// Reads the file `source`, measured at `room.len() - 1` bytes, whole
/// into `room`, in as few reads as it takes (one for a file of its
/// measured size): what came, as [`read_without_debug`] says it.
pub fn read_whole(source: &impl ReadAt, room: &mut [u8]) -> io::Result<Got> {
    fill(source, room, 0..room.len()).map(Got::whole)
}

/// [`read_without_debug`], cut as `pieces` says (its head at least the
/// ELF header's 64 bytes).
pub fn read_in_pieces(
    source: &impl ReadAt,
    room: &mut [u8],
    prepare: Prepare<'_>,
    pieces: Pieces,
    threads: Threads,
) -> io::Result<Got> {
    match begin_in_pieces(source, room, prepare, pieces)? {
        Begun::Read(got) => Ok(got),
        Begun::Walked(mut walked) => {
            let members = walked.take_members();
            let read = crate::parallel::map_owned(members, threads, MemberRoom::weight, |member| {
                read_member(source, member, prepare, pieces)
            });
            walked.finish(read)
        }
    }
}

/// What [`begin_in_pieces`] did: read the whole file, or walked an
/// archive, its larger members left to read.
pub enum Begun<'r> {
    Read(Got),
    Walked(Walked<'r>),
}

/// An archive walked: its headers and what lies between its larger
/// members read; those members left to read, each into its own room
/// ([`read_member`], on any thread), before [`Walked::finish`] says what
/// the archive's reading got.
pub struct Walked<'r> {
    /// How far the walk's reads reached (less than the measured size
    /// when the file ended early).
    end: usize,
    /// Where each larger member's bytes are in the archive.
    spans: Vec<Range<usize>>,
    members: Vec<MemberRoom<'r>>,
}

/// A larger member of an archive walked: where its bytes start in the
/// archive, and its room (its bytes and the one after, as a file's room
/// has; the member ends before that byte, so it is never written: it is
/// the next header's first, which no other member's room holds).
pub struct MemberRoom<'r> {
    start: usize,
    room: &'r mut [u8],
}

impl MemberRoom<'_> {
    /// What reading the member weighs: its bytes.
    pub fn weight(&self) -> usize {
        self.room.len()
    }
}

impl<'r> Walked<'r> {
    /// The larger members, to read with [`read_member`].
    pub fn take_members(&mut self) -> Vec<MemberRoom<'r>> {
        std::mem::take(&mut self.members)
    }

    /// What the archive's reading got, given what reading each larger
    /// member got, in order: the bytes left out, and the file's length as
    /// far as it reached (where it ended, when a read came short).
    pub fn finish(self, members: Vec<io::Result<Got>>) -> io::Result<Got> {
        let mut got = Got {
            len: self.end,
            left_out: 0,
        };
        for (span, member) in self.spans.iter().zip(members) {
            let member = member?;
            got.left_out += member.left_out;
            if member.len < span.len() {
                got.len = got.len.min(span.start + member.len);
            }
        }
        Ok(got)
    }
}

/// Begins [`read_in_pieces`]: reads a file that is not an archive (an
/// object without its DWARF, anything else whole); walks an archive,
/// leaving its larger members to read.
pub fn begin_in_pieces<'r>(
    source: &impl ReadAt,
    room: &'r mut [u8],
    prepare: Prepare<'_>,
    pieces: Pieces,
) -> io::Result<Begun<'r>> {
    let head = match read_head(source, room, pieces)? {
        Head::All(got) => return Ok(Begun::Read(got)),
        Head::Read(head) => head,
    };
    if room.starts_with(ARCHIVE_MAGIC) {
        return walk_archive(source, room, prepare, pieces, head.end).map(Begun::Walked);
    }
    read_object_in_pieces(source, room, prepare, pieces, head).map(Begun::Read)
}

/// Reads a larger member of an archive walked, as an object is read
/// ([`read_object_in_pieces`]; an archive in it is read as it lies, so
/// that nesting cannot run deep).
pub fn read_member(
    source: &impl ReadAt,
    member: MemberRoom<'_>,
    prepare: Prepare<'_>,
    pieces: Pieces,
) -> io::Result<Got> {
    let window = Window {
        source,
        base: member.start as u64,
        len: member.room.len() as u64 - 1,
    };
    let room = member.room;
    match read_head(&window, room, pieces)? {
        Head::All(got) => Ok(got),
        Head::Read(head) => read_object_in_pieces(&window, room, prepare, pieces, head),
    }
}

/// A file's first bytes read: all of it (it ended within them, or is no
/// longer), or its head, the rest left to read.
enum Head {
    All(Got),
    Read(Range<usize>),
}

/// Reads the first bytes of the file `source`, measured at
/// `room.len() - 1` bytes: a head's, and at least the ELF header.
fn read_head(source: &impl ReadAt, room: &mut [u8], pieces: Pieces) -> io::Result<Head> {
    let head = 0..room.len().min(pieces.head.max(size_of::<Header>()));
    let got = fill(source, room, head.clone())?;
    Ok(if got < head.len() || head.end == room.len() {
        Head::All(Got::whole(got))
    } else {
        Head::Read(head)
    })
}

/// Reads the rest of an object past its `head` (read already), without
/// its DWARF when a plan can be made, else whole.
fn read_object_in_pieces(
    source: &impl ReadAt,
    room: &mut [u8],
    prepare: Prepare<'_>,
    pieces: Pieces,
    head: Range<usize>,
) -> io::Result<Got> {
    let end = room.len();
    // The tail takes the byte past the measured size too: the file ends
    // one byte short of the read, unless it changed.
    let measured = end - 1;
    let tail = end.saturating_sub(pieces.tail).max(head.end)..end;
    let got = fill_prepared(source, room, tail.clone(), prepare)?;
    if got == tail.len() {
        return Ok(Got::whole(end)); // it grew: the caller reads it again
    }
    if got + 1 < tail.len() {
        // It shrank: what is there, as a whole read would give it.
        return read_rest(source, room, 0..end, &[head], 0, prepare);
    }
    let mut have = vec![head, tail.start..measured];
    if covered(&have, &(0..measured)) {
        return Ok(Got::whole(measured)); // nothing is left to plan for
    }
    let Some(holes) = plan(source, room, &mut have, prepare, pieces.min_hole)? else {
        return read_rest(source, room, 0..measured, &have, 0, prepare);
    };
    let left_out = holes.iter().map(|hole| hole.len()).sum();
    have.extend(holes);
    read_rest(source, room, 0..measured, &have, left_out, prepare)
}

/// The first bytes of a (non-thin) `ar` archive, and the size of a
/// member's header after them.
const ARCHIVE_MAGIC: &[u8] = b"!<arch>\n";
const MEMBER_HEADER: usize = 60;

/// Walks the archive `source` in `room` (its first `read` bytes read
/// already): its headers, symbol index and small members are read as they
/// lie; each member larger than a head is left to [`read_member`], which
/// reads it as an object is (an ELF object's DWARF left out, anything
/// else whole). A header that does not parse, or a member that ends past
/// the file, ends the walk: the rest is read whole, and the archive's
/// parser says what is wrong.
///
/// The larger members are read after the walk so that they can be read
/// on several threads: a library's archive is often most of a load's
/// input, and one thread would read it alone.
fn walk_archive<'r>(
    source: &impl ReadAt,
    room: &'r mut [u8],
    prepare: Prepare<'_>,
    pieces: Pieces,
    read: usize,
) -> io::Result<Walked<'r>> {
    let room_end = room.len();
    let measured = room_end - 1;
    let mut cursor = read; // everything before it is read, or in `spans`
    let mut spans = Vec::new();
    let mut at = ARCHIVE_MAGIC.len();
    let reached = loop {
        let Some(data) = at.checked_add(MEMBER_HEADER).filter(|&d| d <= measured) else {
            break None;
        };
        if data > cursor {
            let got = fill_prepared(source, room, cursor..data, prepare)?;
            if got < data - cursor {
                break Some(cursor + got);
            }
            cursor = data;
        }
        let Some(size) = member_size(&room[at..data]) else {
            break None;
        };
        let Some(data_end) = data.checked_add(size).filter(|&e| e <= measured) else {
            break None;
        };
        // A member the first read reached into is read from its start
        // again (at most a head's bytes twice), so that it is planned too.
        if size > pieces.head && cursor < data_end && cursor <= data.saturating_add(pieces.head) {
            spans.push(data..data_end);
            cursor = data_end;
        }
        // Members start at even offsets.
        at = data_end + (data_end & 1);
    };
    let end = match reached {
        Some(end) => end,
        None => cursor + fill_prepared(source, room, cursor..room_end, prepare)?,
    };
    let members = member_rooms(room, &spans);
    Ok(Walked {
        end,
        spans,
        members,
    })
}

/// Cuts the room of each member of `spans` (in order, apart by a header
/// at least) out of the archive's `room`: its bytes and the one after.
fn member_rooms<'r>(room: &'r mut [u8], spans: &[Range<usize>]) -> Vec<MemberRoom<'r>> {
    let mut rooms = Vec::with_capacity(spans.len());
    let mut rest = room;
    let mut cut = 0;
    for span in spans {
        let (_, tail) = std::mem::take(&mut rest).split_at_mut(span.start - cut);
        let (member, tail) = tail.split_at_mut(span.len() + 1);
        rooms.push(MemberRoom {
            start: span.start,
            room: member,
        });
        rest = tail;
        cut = span.end + 1;
    }
    rooms
}

/// The size a member's header gives (decimal, space-padded, in bytes
/// 48-57, the header ending in `` `\n ``); `None` when it is not one.
fn member_size(header: &[u8]) -> Option<usize> {
    if header.get(58..60)? != b"`\n" {
        return None;
    }
    let digits = std::str::from_utf8(header.get(48..58)?).ok()?.trim_end();
    digits.parse().ok()
}

/// A member's bytes as a file of their own: `len` bytes of `source` from
/// `base`, the end of the file after them.
struct Window<'s, S> {
    source: &'s S,
    base: u64,
    len: u64,
}

impl<S: ReadAt> ReadAt for Window<'_, S> {
    fn read_at(&self, into: &mut [u8], offset: u64) -> io::Result<usize> {
        let left = self.len.saturating_sub(offset);
        let take = into.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        if take == 0 {
            return Ok(0);
        }
        let at = self
            .base
            .checked_add(offset)
            .ok_or(io::ErrorKind::InvalidInput)?;
        self.source.read_at(&mut into[..take], at)
    }
}

/// The holes of the object in `room`, reading what the plan needs first
/// (into `have`); `None` when no plan can be made, or the file changed
/// under the reads.
fn plan(
    source: &impl ReadAt,
    room: &mut [u8],
    have: &mut Vec<Range<usize>>,
    prepare: Prepare<'_>,
    min_hole: usize,
) -> io::Result<Option<Vec<Range<usize>>>> {
    let measured = room.len().saturating_sub(1);
    for _ in 0..MAX_PLAN_READS {
        match holes(&room[..measured], |range| covered(have, range), min_hole) {
            Plan::Holes(holes) => return Ok(Some(holes)),
            Plan::Whole => return Ok(None),
            Plan::Read(range) => {
                if !read_piece(source, room, range, have, prepare)? {
                    return Ok(None);
                }
            }
        }
    }
    Ok(None)
}

/// Reads `piece` of the file, less what `have` holds, and records it: false
/// when the file ended before the piece did.
fn read_piece(
    source: &impl ReadAt,
    room: &mut [u8],
    piece: Range<usize>,
    have: &mut Vec<Range<usize>>,
    prepare: Prepare<'_>,
) -> io::Result<bool> {
    for missing in complement(piece.clone(), have.clone()) {
        if fill_prepared(source, room, missing.clone(), prepare)? < missing.len() {
            return Ok(false);
        }
    }
    have.push(piece);
    Ok(true)
}

/// Reads the bytes of `whole` that `skipped` does not cover (read
/// already, or left out): the file's length as far as `whole` reaches.
fn read_rest(
    source: &impl ReadAt,
    room: &mut [u8],
    whole: Range<usize>,
    skipped: &[Range<usize>],
    left_out: usize,
    prepare: Prepare<'_>,
) -> io::Result<Got> {
    let end = whole.end;
    for piece in complement(whole, skipped.to_vec()) {
        let start = piece.start;
        let got = fill_prepared(source, room, piece.clone(), prepare)?;
        if got < piece.len() {
            return Ok(Got {
                len: start + got,
                left_out,
            });
        }
    }
    Ok(Got { len: end, left_out })
}

fn fill_prepared(
    source: &impl ReadAt,
    room: &mut [u8],
    piece: Range<usize>,
    prepare: Prepare<'_>,
) -> io::Result<usize> {
    prepare(&mut room[piece.clone()]);
    fill(source, room, piece)
}

/// Reads `piece` of the file into the same bytes of `room`, until it is
/// full or the file ends: how many bytes came. A read that reaches the
/// measured size (one byte short of the room's end) stops there: a file
/// that grew brings the byte past it in the same read, and a second read
/// to see the end of one that did not would cost a system call per object.
fn fill(source: &impl ReadAt, room: &mut [u8], piece: Range<usize>) -> io::Result<usize> {
    let measured = room.len().saturating_sub(1);
    let start = piece.start;
    let into = &mut room[piece];
    let mut filled = 0;
    while filled < into.len() && !(start + filled == measured && filled > 0) {
        match source.read_at(&mut into[filled..], (start + filled) as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// What a plan needs or says.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// These bytes of the file are needed first.
    Read(Range<usize>),
    /// Read the whole file: it is not an object a plan can be made for.
    Whole,
    /// Leave these out, in order, none overlapping a kept section.
    Holes(Vec<Range<usize>>),
}

/// The holes of the object `bytes` (the file's measured length, with what
/// is not read yet as zeros; `present` says whether a range is read), each
/// at least `min_hole` long.
pub fn holes(bytes: &[u8], present: impl Fn(&Range<usize>) -> bool, min_hole: usize) -> Plan {
    match plan_holes(bytes, &present, min_hole) {
        Ok(plan) => plan,
        Err(Unplanned) => Plan::Whole,
    }
}

/// Anything that stops a plan: the file is then read whole.
struct Unplanned;

impl From<object::read::Error> for Unplanned {
    fn from(_: object::read::Error) -> Self {
        Unplanned
    }
}

fn plan_holes(
    bytes: &[u8],
    present: &dyn Fn(&Range<usize>) -> bool,
    min_hole: usize,
) -> Result<Plan, Unplanned> {
    let header = Header::parse(bytes)?;
    let endian = header.endian()?;
    if endian != Endianness::Little || header.e_type(endian) != elf::ET_REL {
        return Err(Unplanned);
    }
    let table = section_table(header, endian, bytes, present)?;
    let table = match table {
        Ok(table) => table,
        Err(needed) => return Ok(Plan::Read(needed)),
    };
    let sections = header.sections(endian, bytes)?;
    let names_index = header.shstrndx(endian, bytes)?;
    if names_index != 0 {
        let names = sections.section(SectionIndex(names_index as usize))?;
        let range = file_range(names, endian, bytes.len())?;
        if !present(&range) {
            return Ok(Plan::Read(range));
        }
    }
    let mut kept = vec![0..size_of::<Header>(), table];
    let mut left_out = Vec::new();
    let hole = hole_sections(&sections, endian, names_index as usize)?;
    for (section, hole) in sections.iter().zip(hole) {
        if section.sh_type(endian) == elf::SHT_NOBITS {
            continue;
        }
        let range = file_range(section, endian, bytes.len())?;
        if hole { &mut left_out } else { &mut kept }.push(range);
    }
    Ok(Plan::Holes(finish(left_out, kept, min_hole)))
}

/// The section table's bytes, once the header's count can be read (an
/// object of 65,280 sections or more keeps its count in section 0): `Err`
/// with the bytes to read first.
fn section_table(
    header: &Header,
    endian: Endianness,
    bytes: &[u8],
    present: &dyn Fn(&Range<usize>) -> bool,
) -> Result<Result<Range<usize>, Range<usize>>, Unplanned> {
    let start = usize::try_from(header.e_shoff(endian)).map_err(|_| Unplanned)?;
    let entry = usize::from(header.e_shentsize(endian));
    if start == 0 || entry != size_of::<elf::SectionHeader64<Endianness>>() {
        return Err(Unplanned);
    }
    let first = start..start.checked_add(entry).ok_or(Unplanned)?;
    if header.e_shnum(endian) == 0 && !present(&first) {
        return Ok(Err(within(first, bytes.len())?));
    }
    let count = usize::try_from(header.shnum(endian, bytes)?).map_err(|_| Unplanned)?;
    let len = count.checked_mul(entry).ok_or(Unplanned)?;
    let table = within(start..start.checked_add(len).ok_or(Unplanned)?, bytes.len())?;
    Ok(if present(&table) {
        Ok(table)
    } else {
        Err(table)
    })
}

/// For each section, whether it is a hole: a DWARF section, or a
/// relocation table of one, that no section links to and that does not
/// hold the section names (`names`).
fn hole_sections(
    sections: &object::read::elf::SectionTable<'_, Header>,
    endian: Endianness,
    names: usize,
) -> Result<Vec<bool>, Unplanned> {
    let mut dwarf = Vec::with_capacity(sections.len());
    let mut linked_to = vec![false; sections.len()];
    if let Some(names) = linked_to.get_mut(names) {
        *names = true;
    }
    for section in sections.iter() {
        let name = sections.section_name(endian, section)?;
        let debug_name = name.starts_with(b".debug") || name.starts_with(b".zdebug");
        dwarf.push(
            section.sh_type(endian) == elf::SHT_PROGBITS
                && !allocated(section, endian)
                && debug_name,
        );
        if let Some(link) = linked_to.get_mut(section.sh_link(endian) as usize) {
            *link = true;
        }
    }
    let holes = sections.iter().enumerate().map(|(index, section)| {
        let relocations = matches!(section.sh_type(endian), elf::SHT_RELA | elf::SHT_REL)
            && !allocated(section, endian)
            && dwarf.get(section.sh_info(endian) as usize) == Some(&true);
        (dwarf[index] || relocations) && !linked_to[index]
    });
    Ok(holes.collect())
}

fn allocated(section: &elf::SectionHeader64<Endianness>, endian: Endianness) -> bool {
    section.sh_flags(endian).0 & elf::SHF_ALLOC.0 != 0
}

/// A section's bytes in the file, which must lie within its `len` bytes.
fn file_range(
    section: &elf::SectionHeader64<Endianness>,
    endian: Endianness,
    len: usize,
) -> Result<Range<usize>, Unplanned> {
    let (offset, size) = section.file_range(endian).unwrap_or((0, 0));
    let start = usize::try_from(offset).map_err(|_| Unplanned)?;
    let size = usize::try_from(size).map_err(|_| Unplanned)?;
    within(start..start.checked_add(size).ok_or(Unplanned)?, len)
}

fn within(range: Range<usize>, len: usize) -> Result<Range<usize>, Unplanned> {
    if range.end <= len {
        Ok(range)
    } else {
        Err(Unplanned)
    }
}

/// The holes to leave out: `left_out` merged where close, less every
/// `kept` range, each at least `min_hole` long, in order.
fn finish(
    left_out: Vec<Range<usize>>,
    kept: Vec<Range<usize>>,
    min_hole: usize,
) -> Vec<Range<usize>> {
    let merged = merge(left_out, MERGE_GAP);
    let holes = complement_within(merged, merge(kept, 0));
    holes
        .into_iter()
        .filter(|h| h.len() >= min_hole.max(1))
        .collect()
}

/// `ranges` sorted, with those closer than `gap` joined (empty ones
/// dropped).
fn merge(mut ranges: Vec<Range<usize>>, gap: usize) -> Vec<Range<usize>> {
    ranges.retain(|r| !r.is_empty());
    ranges.sort_by_key(|r| r.start);
    let mut merged: Vec<Range<usize>> = Vec::with_capacity(ranges.len());
    for range in ranges {
        match merged.last_mut() {
            Some(last) if range.start <= last.end.saturating_add(gap) => {
                last.end = last.end.max(range.end);
            }
            _ => merged.push(range),
        }
    }
    merged
}

/// What of `whole` no range of `minus` covers, in order.
fn complement(whole: Range<usize>, minus: Vec<Range<usize>>) -> Vec<Range<usize>> {
    complement_within(vec![whole], merge(minus, 0))
}

/// Each range of `ranges` (sorted, apart) less the sorted, apart ranges of
/// `minus`.
fn complement_within(ranges: Vec<Range<usize>>, minus: Vec<Range<usize>>) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut next = 0;
    for range in ranges {
        let mut at = range.start;
        while next < minus.len() && minus[next].end <= at {
            next += 1;
        }
        let mut cut = next;
        while cut < minus.len() && minus[cut].start < range.end {
            if minus[cut].start > at {
                out.push(at..minus[cut].start);
            }
            at = at.max(minus[cut].end);
            cut += 1;
        }
        if at < range.end {
            out.push(at..range.end);
        }
    }
    out
}

/// Whether the ranges of `have` cover all of `range`.
fn covered(have: &[Range<usize>], range: &Range<usize>) -> bool {
    complement(range.clone(), have.to_vec()).is_empty()
}

#[cfg(test)]
mod tests;
