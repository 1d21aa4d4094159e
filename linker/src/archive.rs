//! Static archives (`ar`): GNU and BSD archives, thin archives, COFF
//! libraries; their members are ELF, Mach-O or COFF objects.
//!
//! An archive is read once, whole, and checked before anything is taken
//! from it: every member's header and size, every symbol-index entry (it
//! must point at a member), every thin member's file. What each member
//! defines comes from the symbol index, or, for an archive without one,
//! from parsing each object member. Member selection (which members a
//! load takes) is the session's; see [`Archive::definer`].
//!
//! A member is named as a static linker names it: `libfoo.a(bar.o)`.

use std::ops::Range;
use std::path::{Path, PathBuf};

use object::read::archive::ArchiveFile;
use rustc_hash::FxHashMap as HashMap;

use crate::error::LinkError;
use crate::graph::{Binding, Definition};
use crate::input::ObjectFile;
use crate::object_bytes::ObjectBytes;

/// The first bytes of a regular and of a thin archive.
const MAGIC: &[u8] = b"!<arch>\n";
const THIN_MAGIC: &[u8] = b"!<thin>\n";

/// A static archive, read and indexed.
#[derive(Debug)]
pub struct Archive {
    name: String,
    /// The archive's bytes, which its members' are ranges of (a thin
    /// archive's members have bytes of their own).
    bytes: ObjectBytes,
    members: Vec<Member>,
    /// The name each symbol-index entry (or scanned definition) gives, to
    /// the first member defining it, in archive order.
    definitions: HashMap<String, usize>,
    /// Whether the definitions came from the archive's own symbol index.
    indexed: bool,
}

/// One member: its name and where its bytes are.
#[derive(Debug)]
struct Member {
    name: String,
    data: MemberData,
}

/// An archive's members and, when it has a symbol index, what the index
/// says they define (and `true`).
type Indexed = (Vec<Member>, HashMap<String, usize>, bool);

/// Where a member's bytes are.
#[derive(Debug)]
enum MemberData {
    /// This range of the archive's bytes (not copied: a large archive's
    /// members would otherwise be read twice into fresh memory).
    InArchive(Range<usize>),
    /// A thin archive's member: read from its own file.
    Own(Vec<u8>),
}

/// Whether `bytes` start like an archive (regular or thin).
pub fn is_archive(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC) || bytes.starts_with(THIN_MAGIC)
}

impl Archive {
    /// Reads and indexes the archive at `path`; a thin archive's members
    /// are read from their files, relative to the archive's directory.
    pub fn read(path: &Path) -> Result<Archive, LinkError> {
        let file = ObjectFile::read(path)?;
        let directory = path.parent().unwrap_or(Path::new("."));
        Archive::parse_file(file, Some(directory))
    }

    /// Indexes the archive `bytes`, called `name` in messages (a copy of
    /// them is kept); thin members are read relative to `directory`
    /// (`None`: a thin archive is refused).
    pub fn parse(name: &str, bytes: &[u8], directory: Option<&Path>) -> Result<Archive, LinkError> {
        Archive::parse_file(
            ObjectFile {
                name: name.to_string(),
                bytes: bytes.to_vec().into(),
            },
            directory,
        )
    }

    /// Indexes the archive `file`, keeping its bytes: its members' are
    /// ranges of them. Thin members are read relative to `directory`.
    pub fn parse_file(file: ObjectFile, directory: Option<&Path>) -> Result<Archive, LinkError> {
        let ObjectFile { name, bytes } = file;
        let (members, definitions, indexed) = Archive::index(&name, &bytes, directory)?;
        let mut archive = Archive {
            name,
            bytes,
            members,
            definitions,
            indexed,
        };
        if !archive.indexed {
            archive.scan_members()?;
        }
        Ok(archive)
    }

    /// The members of the archive `bytes` and, when it has a symbol index,
    /// what it says they define (and `true`).
    fn index(name: &str, bytes: &[u8], directory: Option<&Path>) -> Result<Indexed, LinkError> {
        let malformed = |reason: String| LinkError::MalformedArchive {
            archive: name.to_string(),
            reason,
        };
        let file = ArchiveFile::parse(bytes).map_err(|e| malformed(format!("{e}")))?;
        let mut members = Vec::new();
        let mut by_place: HashMap<(&[u8], u64), usize> = HashMap::default();
        for (index, member) in file.members().enumerate() {
            let member = member.map_err(|e| malformed(format!("member {index}: {e}")))?;
            let member_name = String::from_utf8_lossy(member.name()).into_owned();
            let data = if member.is_thin() {
                let directory = directory.ok_or_else(|| {
                    malformed(format!(
                        "member {index} (`{member_name}`) is in another file (a thin archive), \
                         and no directory was given to read it from"
                    ))
                })?;
                MemberData::Own(read_thin_member(name, &member_name, directory)?)
            } else {
                let (offset, size) = member.file_range();
                let range = usize::try_from(offset)
                    .ok()
                    .zip(usize::try_from(size).ok())
                    .and_then(|(start, size)| Some(start..start.checked_add(size)?))
                    .filter(|range| range.end <= bytes.len())
                    .ok_or_else(|| {
                        malformed(format!(
                            "member {index} (`{member_name}`) ends past the file: {size:#x} \
                             bytes at offset {offset:#x}"
                        ))
                    })?;
                MemberData::InArchive(range)
            };
            by_place.insert((member.name(), member.file_range().0), members.len());
            members.push(Member {
                name: member_name,
                data,
            });
        }
        let mut definitions = HashMap::default();
        let symbols = file
            .symbols()
            .map_err(|e| malformed(format!("symbol index: {e}")))?;
        match symbols {
            Some(symbols) => {
                for (entry, symbol) in symbols.enumerate() {
                    let symbol = symbol
                        .map_err(|e| malformed(format!("symbol index entry {entry}: {e}")))?;
                    let symbol_name = String::from_utf8_lossy(symbol.name()).into_owned();
                    let offset = symbol.offset().0;
                    let outside = |why: String| {
                        malformed(format!(
                            "symbol index entry {entry} (`{symbol_name}`) points at offset \
                             {offset:#x}, {why}"
                        ))
                    };
                    let member = file
                        .member(symbol.offset())
                        .map_err(|e| outside(format!("not a member: {e}")))?;
                    let index = *by_place
                        .get(&(member.name(), member.file_range().0))
                        .ok_or_else(|| outside("not one of the archive's members".into()))?;
                    definitions.entry(symbol_name).or_insert(index);
                }
                Ok((members, definitions, true))
            }
            None => Ok((members, definitions, false)),
        }
    }

    /// For an archive without a symbol index: what each object member
    /// defines, from the member itself. Members that are not objects
    /// (text, other architectures' files) define nothing; an object member
    /// that does not parse is an error naming it.
    fn scan_members(&mut self) -> Result<(), LinkError> {
        let mut definitions = std::mem::take(&mut self.definitions);
        for index in 0..self.members.len() {
            let bytes = self.member_bytes(index);
            if !crate::input::is_object(bytes) {
                continue;
            }
            let name = self.member_name(index);
            let graph = crate::input::parse_object(&name, bytes)?;
            for symbol in &graph.symbols {
                let defines = symbol.binding != Binding::Local
                    && !symbol.name.is_empty()
                    && matches!(
                        symbol.definition,
                        Definition::Defined { .. } | Definition::Absolute(_)
                    );
                if defines {
                    definitions.entry(symbol.name.to_string()).or_insert(index);
                }
            }
        }
        self.definitions = definitions;
        Ok(())
    }

    /// Whether the archive was read without its members' debug sections
    /// (they read as zeros: nothing may read the members' debug
    /// information).
    pub fn debug_left_out(&self) -> bool {
        self.bytes.debug_left_out()
    }

    /// What member `index` weighs as work: its length, less its share of
    /// the debug sections left out of the archive's reading (a member of
    /// an archive read without DWARF weighs about what was read of it).
    pub fn member_weight(&self, index: usize) -> usize {
        let len = self.member_bytes(index).len();
        let (read, whole) = (self.bytes.read_len(), self.bytes.len());
        if whole == 0 {
            return len;
        }
        (len as u128 * read as u128 / whole as u128) as usize
    }

    /// The archive's name, as given.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many members the archive has (symbol index and name tables are
    /// not members).
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the archive has no members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Whether what members define came from the archive's symbol index
    /// (otherwise, from scanning the members).
    pub fn has_index(&self) -> bool {
        self.indexed
    }

    /// The member that defines `symbol` (the first one, in archive order),
    /// as the symbol index (or the scan) says.
    pub fn definer(&self, symbol: &str) -> Option<usize> {
        self.definitions.get(symbol).copied()
    }

    /// Every name the archive defines, with the first member defining it.
    pub fn definitions(&self) -> impl Iterator<Item = (&str, usize)> {
        self.definitions
            .iter()
            .map(|(name, &member)| (name.as_str(), member))
    }

    /// `archive(member)`, as messages name member `index`.
    pub fn member_name(&self, index: usize) -> String {
        format!("{}({})", self.name, self.members[index].name)
    }

    /// The bytes of member `index`.
    pub fn member_bytes(&self, index: usize) -> &[u8] {
        match &self.members[index].data {
            // Checked in `index`; an empty slice rather than a panic.
            MemberData::InArchive(range) => self.bytes.get(range.clone()).unwrap_or_default(),
            MemberData::Own(bytes) => bytes,
        }
    }

    /// Member `index` as an object of its own: its bytes share the
    /// archive's memory when that is shared, else they are a copy.
    pub fn member_object(&self, index: usize) -> ObjectFile {
        ObjectFile {
            name: self.member_name(index),
            bytes: match &self.members[index].data {
                MemberData::InArchive(range) => self.bytes.part(range.clone()),
                MemberData::Own(bytes) => bytes.clone().into(),
            },
        }
    }
}

/// A thin archive's member: the file it names, relative to the archive's
/// directory unless absolute.
fn read_thin_member(archive: &str, member: &str, directory: &Path) -> Result<Vec<u8>, LinkError> {
    let path: PathBuf = if Path::new(member).is_absolute() {
        PathBuf::from(member)
    } else {
        directory.join(member)
    };
    // Read as an object is (as many bytes as the file's size says), and
    // only a regular file: a hostile name such as `/dev/zero` or a pipe is
    // refused rather than read as a stream.
    ObjectFile::read_regular(&path)
        .map(|file| file.bytes.into_vec())
        .map_err(|e| LinkError::Malformed {
            object: format!("{archive}({member})"),
            reason: format!("thin archive member {} cannot be read: {e}", path.display()),
        })
}
