//! Static archives of built fixtures, for scenarios that link from them
//! (`archives:` in a scenario).
//!
//! Written with `ar_archive_writer` (the archive writer of the Rust
//! toolchain), so every format's leg builds them without an `ar` on the
//! machine: GNU archives for ELF objects, BSD (Darwin) archives for
//! Mach-O ones, COFF libraries (two linker members) for COFF ones, with a symbol index (or without: `index: false`). A
//! `damage` then breaks the written archive in one precise way, for the
//! scenarios that check malformed archives are refused.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use ar_archive_writer::{ArchiveKind, NewArchiveMember, ObjectReader};
use object::read::archive::ArchiveFile;

use crate::formats::Format;
use crate::schema::{ArchiveDamage, ArchiveSpec};

/// Writes archive `name` of `members` (name, built object) for `format`
/// into `dir`; returns its path.
pub fn write_archive(
    dir: &Path,
    name: &str,
    format: Format,
    spec: &ArchiveSpec,
    members: &[(String, PathBuf)],
) -> std::io::Result<PathBuf> {
    let reader: &'static ObjectReader = &ar_archive_writer::DEFAULT_OBJECT_READER;
    let mut new_members = Vec::new();
    for (member, path) in members {
        let bytes = std::fs::read(path)?;
        let file = format!("{member}.{}", format.info().object_extension);
        new_members.push(NewArchiveMember::new(bytes, reader, file));
    }
    let kind = match format {
        Format::Macho => ArchiveKind::Darwin,
        Format::Elf => ArchiveKind::Gnu,
        Format::Coff => ArchiveKind::Coff,
    };
    let mut bytes = Cursor::new(Vec::new());
    ar_archive_writer::write_archive_to_stream(&mut bytes, &new_members, kind, false, None)?;
    let mut bytes = bytes.into_inner();
    check_kind(&bytes, format)?;
    if !spec.index {
        remove_index(&mut bytes)?;
    }
    if let Some(damage) = spec.damage {
        damage_archive(&mut bytes, damage)?;
    }
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{name}.a"));
    // Parallel trials may write the same archive: write aside, rename.
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!("{name}.a.tmp{}-{unique}", std::process::id()));
    std::fs::write(&tmp, &bytes)?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// The member at `header` (its 60-byte header): its name field and where
/// its data starts and ends (padded to an even offset).
fn member_at(bytes: &[u8], header: usize) -> std::io::Result<([u8; 16], usize, usize)> {
    let raw = bytes
        .get(header..header + 60)
        .ok_or_else(|| invalid("no member header there"))?;
    let size: usize = std::str::from_utf8(&raw[48..58])
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| invalid("odd member size"))?;
    let name: [u8; 16] = raw[..16].try_into().map_err(|_| invalid("odd name"))?;
    let end = header + 60 + size + size % 2;
    if end > bytes.len() {
        return Err(invalid("a member runs past the file"));
    }
    Ok((name, header + 60, end))
}

/// Removes the symbol index, the archive's first member (GNU `/`, Darwin
/// `__.SYMDEF`) and a COFF library's second linker member (`/` again), and
/// checks that none is left.
fn remove_index(bytes: &mut Vec<u8>) -> std::io::Result<()> {
    let first = 8;
    let (_, _, end) = member_at(bytes, first)?;
    bytes.drain(first..end);
    if let Ok((name, _, end)) = member_at(bytes, first)
        && name.starts_with(b"/ ")
    {
        bytes.drain(first..end);
    }
    let file = ArchiveFile::parse(bytes.as_slice()).map_err(|e| invalid(&e.to_string()))?;
    match file.symbols() {
        Ok(None) => Ok(()),
        _ => Err(invalid("the archive still has a symbol index")),
    }
}

/// Checks that the archive is of the kind a native toolchain for `format`
/// makes, as an independent reader sees it.
fn check_kind(bytes: &[u8], format: Format) -> std::io::Result<()> {
    use object::read::archive::ArchiveKind as Read;
    let kind = ArchiveFile::parse(bytes)
        .map_err(|e| invalid(&e.to_string()))?
        .kind();
    let expected = match format {
        Format::Elf => matches!(kind, Read::Gnu),
        Format::Macho => matches!(kind, Read::Bsd | Read::Bsd64),
        Format::Coff => matches!(kind, Read::Coff),
    };
    if expected {
        Ok(())
    } else {
        Err(invalid(&format!(
            "a {kind:?} archive for {format:?} objects"
        )))
    }
}

fn invalid(message: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message.to_string())
}

/// Breaks `bytes` (a well-formed archive) as `damage` says.
fn damage_archive(bytes: &mut Vec<u8>, damage: ArchiveDamage) -> std::io::Result<()> {
    let file = ArchiveFile::parse(bytes.as_slice()).map_err(|e| invalid(&e.to_string()))?;
    let last = file
        .members()
        .last()
        .ok_or_else(|| invalid("the archive has no member to damage"))?
        .map_err(|e| invalid(&e.to_string()))?;
    let (data_offset, size) = last.file_range();
    match damage {
        ArchiveDamage::TruncateMember => {
            // The last member's header promises more than the file holds.
            bytes.truncate((data_offset + size / 2) as usize);
        }
        ArchiveDamage::BadSize => {
            // The first member's size field, after the symbol index: its
            // header is the first after the index's data.
            let first = file
                .members()
                .next()
                .ok_or_else(|| invalid("no member"))?
                .map_err(|e| invalid(&e.to_string()))?;
            let header = header_offset(bytes, first.file_range().0)?;
            bytes[header + 48..header + 58].copy_from_slice(b"12x4      ");
        }
        ArchiveDamage::IndexOutside => {
            let outside = bytes.len() as u64 + 0x1000;
            point_index_outside(bytes, outside)?;
        }
    }
    Ok(())
}

/// The offset of the 60-byte header of the member whose data starts at
/// `data`: a BSD long name (`#1/N`) sits between them.
fn header_offset(bytes: &[u8], data: u64) -> std::io::Result<usize> {
    let data = data as usize;
    (data.saturating_sub(60 + 512)..=data.saturating_sub(60))
        .rev()
        .find(|&at| {
            bytes.get(at + 58..at + 60) == Some(b"`\n")
                && (at + 60 == data || bytes.get(at..at + 3) == Some(b"#1/"))
        })
        .ok_or_else(|| invalid("cannot find the member's header"))
}

/// Rewrites the first member offset of the symbol index (GNU `/`: a
/// big-endian count, then big-endian offsets; Darwin `__.SYMDEF`: a
/// little-endian byte count of (name, offset) pairs) to `outside`.
fn point_index_outside(bytes: &mut [u8], outside: u64) -> std::io::Result<()> {
    let header = 8;
    let name: [u8; 16] = bytes
        .get(header..header + 16)
        .and_then(|n| n.try_into().ok())
        .ok_or_else(|| invalid("no symbol index"))?;
    let at = if name.starts_with(b"/ ") {
        // count (4) then the first offset.
        header + 60 + 4
    } else if name.starts_with(b"#1/") {
        let name_len: usize = std::str::from_utf8(&name[3..])
            .ok()
            .and_then(|n| n.trim().parse().ok())
            .ok_or_else(|| invalid("odd BSD name"))?;
        // byte count (4), then the first (name offset, member offset) pair.
        header + 60 + name_len + 4 + 4
    } else {
        return Err(invalid("the archive has no symbol index"));
    };
    let field = bytes
        .get_mut(at..at + 4)
        .ok_or_else(|| invalid("the symbol index is empty"))?;
    let value = u32::try_from(outside).map_err(|_| invalid("archive too large"))?;
    if name.starts_with(b"/ ") {
        field.copy_from_slice(&value.to_be_bytes());
    } else {
        field.copy_from_slice(&value.to_le_bytes());
    }
    // A COFF library's second linker member (the one readers use): a
    // little-endian member count, then that many member offsets.
    let (_, _, end) = member_at(bytes, header)?;
    if let Ok((second, data, _)) = member_at(bytes, end)
        && second.starts_with(b"/ ")
    {
        let count = bytes
            .get(data..data + 4)
            .and_then(|b| b.try_into().ok())
            .map(|b| u32::from_le_bytes(b) as usize)
            .ok_or_else(|| invalid("odd second linker member"))?;
        for i in 0..count {
            let at = data + 4 + 4 * i;
            bytes
                .get_mut(at..at + 4)
                .ok_or_else(|| invalid("odd second linker member"))?
                .copy_from_slice(&value.to_le_bytes());
        }
    }
    Ok(())
}
