//! Source lines of JIT'd code: the file and line an address of a module
//! comes from, read from the DWARF of its objects as kept for debuggers
//! (`--debug`: each object with its section headers' addresses set to the
//! load addresses). The object's own relocations are applied to its debug
//! sections against those addresses, as a debugger applies them, so the
//! line tables speak of load addresses.

use std::borrow::Cow;

use object::{Object, ObjectSection};

/// A source position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceLine {
    pub file: String,
    pub line: u32,
}

type Reader<'a> =
    gimli::RelocateReader<gimli::EndianSlice<'a, gimli::RunTimeEndian>, &'a Relocations>;

/// One debug section's relocations, as a `gimli` reader applies them.
#[derive(Debug, Default)]
struct Relocations(object::read::RelocationMap);

impl gimli::read::Relocate for &'_ Relocations {
    fn relocate_address(&self, offset: usize, value: u64) -> gimli::Result<u64> {
        Ok(self.0.relocate(offset as u64, value))
    }

    fn relocate_offset(&self, offset: usize, value: usize) -> gimli::Result<usize> {
        <usize as gimli::ReaderOffset>::from_u64(self.0.relocate(offset as u64, value as u64))
    }
}

/// The little-endian integer of `n` bytes at `at` in `bytes` (an ELF
/// header or table field), if it is there.
pub(crate) fn le_field(bytes: &[u8], at: usize, n: usize) -> Option<u64> {
    let field = bytes.get(at..at.checked_add(n)?)?;
    Some(
        field
            .iter()
            .rev()
            .fold(0u64, |v, &b| (v << 8) | u64::from(b)),
    )
}

/// The DWARF sections line lookups read.
const DEBUG_SECTIONS: [&str; 13] = [
    ".debug_abbrev",
    ".debug_addr",
    ".debug_aranges",
    ".debug_info",
    ".debug_line",
    ".debug_line_str",
    ".debug_loc",
    ".debug_loclists",
    ".debug_ranges",
    ".debug_rnglists",
    ".debug_str",
    ".debug_str_offsets",
    ".debug_types",
];

/// `image` (an ELF relocatable object whose section headers give load
/// addresses) with its symbols' values made load addresses too (value +
/// its section's address), so that relocations of the debug sections,
/// applied against symbol values, give load addresses. (The copy a
/// debugger gets keeps section-relative values: it adds the section
/// addresses itself.) `None` when the tables are not where they say.
pub fn with_absolute_symbols(image: &[u8]) -> Option<Vec<u8>> {
    let mut out = image.to_vec();
    let read = le_field;
    let shoff = usize::try_from(read(image, 0x28, 8)?).ok()?;
    let entsize = usize::try_from(read(image, 0x3a, 2)?).ok()?;
    let count = usize::try_from(read(image, 0x3c, 2)?).ok()?;
    if entsize < 64 {
        return None;
    }
    let header = |index: usize| shoff.checked_add(index.checked_mul(entsize)?);
    let address_of = |index: usize| read(image, header(index)?.checked_add(16)?, 8);
    for index in 0..count {
        let at = header(index)?;
        if read(image, at.checked_add(4)?, 4)? != 2 {
            continue; // not SHT_SYMTAB
        }
        let offset = usize::try_from(read(image, at.checked_add(24)?, 8)?).ok()?;
        let size = usize::try_from(read(image, at.checked_add(32)?, 8)?).ok()?;
        for symbol in (offset..offset.checked_add(size)?).step_by(24) {
            let section = usize::try_from(read(image, symbol.checked_add(6)?, 2)?).ok()?;
            if section == 0 || section >= count {
                continue; // undefined, absolute, common: no section
            }
            let base = address_of(section)?;
            let value = read(image, symbol.checked_add(8)?, 8)?;
            out.get_mut(symbol + 8..symbol + 16)?
                .copy_from_slice(&value.wrapping_add(base).to_le_bytes());
        }
    }
    Some(out)
}

/// Where `pc` comes from in `image` (an ELF object whose symbols' values
/// are load addresses: [`with_absolute_symbols`]), when its debug
/// information says. Malformed debug information gives `None`, never a
/// panic.
pub fn locate(image: &[u8], pc: u64) -> Option<SourceLine> {
    with_lines(image, |context| {
        let location = context.find_location(pc).ok()??;
        Some(SourceLine {
            file: location.file?.to_string(),
            line: location.line?,
        })
    })?
}

/// The line table of `[start, end)` in `image` (as [`locate`] reads it):
/// each address where a line begins, with its source position, in order.
pub fn line_table(image: &[u8], start: u64, end: u64) -> Vec<(u64, SourceLine)> {
    line_tables(image, &[(start, end)])
        .pop()
        .unwrap_or_default()
}

/// [`line_table`] for each of `ranges`, reading the object's DWARF once.
pub fn line_tables(image: &[u8], ranges: &[(u64, u64)]) -> Vec<Vec<(u64, SourceLine)>> {
    with_lines(image, |context| {
        ranges
            .iter()
            .map(|&(start, end)| {
                let Ok(found) = context.find_location_range(start, end) else {
                    return Vec::new();
                };
                found
                    .filter_map(|(address, _, location)| {
                        Some((
                            address,
                            SourceLine {
                                file: location.file?.to_string(),
                                line: location.line?,
                            },
                        ))
                    })
                    .collect()
            })
            .collect()
    })
    .unwrap_or_else(|| vec![Vec::new(); ranges.len()])
}

/// Runs `query` on the line information of `image`, with the object's
/// relocations applied to its debug sections.
fn with_lines<T>(
    image: &[u8],
    query: impl FnOnce(&addr2line::Context<Reader<'_>>) -> T,
) -> Option<T> {
    let file = object::File::parse(image).ok()?;
    let endian = if file.is_little_endian() {
        gimli::RunTimeEndian::Little
    } else {
        gimli::RunTimeEndian::Big
    };
    // Each debug section's bytes and relocations, kept alive for the
    // readers.
    let mut sections: Vec<(&str, Cow<'_, [u8]>, Relocations)> = Vec::new();
    for name in DEBUG_SECTIONS {
        if let Some(section) = file.section_by_name(name) {
            let mut map = Relocations::default();
            for (offset, relocation) in section.relocations() {
                // A relocation it cannot apply leaves the value as it is.
                let _ = map.0.add(&file, offset, relocation);
            }
            sections.push((name, section.uncompressed_data().ok()?, map));
        }
    }
    let empty = Relocations::default();
    let dwarf = gimli::Dwarf::load(|id| -> Result<Reader<'_>, gimli::Error> {
        let found = sections.iter().find(|(name, _, _)| *name == id.name());
        Ok(match found {
            Some((_, data, relocations)) => {
                gimli::RelocateReader::new(gimli::EndianSlice::new(data, endian), relocations)
            }
            None => gimli::RelocateReader::new(gimli::EndianSlice::new(&[], endian), &empty),
        })
    })
    .ok()?;
    let context = addr2line::Context::from_dwarf(dwarf).ok()?;
    Some(query(&context))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RERUN: &str = "rerun: cargo test -p solder-linker --lib source_lines";

    /// A symbol table entry's value gains its section's address; tables
    /// that point past the image, odd entry sizes and garbage give `None`
    /// (or the image unchanged), never a panic.
    #[test]
    fn symbol_values_become_load_addresses_and_bad_tables_are_refused() {
        // The file header, three section headers (0: none, 1: code at
        // 0x7000, 2: the symbol table), then two symbols (the null one, and
        // one in section 1).
        let mut image = vec![0u8; 64 + 3 * 64 + 2 * 24];
        image[0x28..0x30].copy_from_slice(&64u64.to_le_bytes());
        image[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        image[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        let text = 64 + 64;
        image[text + 16..text + 24].copy_from_slice(&0x7000u64.to_le_bytes());
        let table = 64 + 2 * 64;
        let symbols = 64 + 3 * 64;
        image[table + 4..table + 8].copy_from_slice(&2u32.to_le_bytes());
        image[table + 24..table + 32].copy_from_slice(&(symbols as u64).to_le_bytes());
        image[table + 32..table + 40].copy_from_slice(&48u64.to_le_bytes());
        // Symbol 1: in section 1, value 0x10.
        image[symbols + 24 + 6..symbols + 24 + 8].copy_from_slice(&1u16.to_le_bytes());
        image[symbols + 24 + 8..symbols + 24 + 16].copy_from_slice(&0x10u64.to_le_bytes());
        let out = with_absolute_symbols(&image).unwrap();
        let value = u64::from_le_bytes(out[symbols + 32..symbols + 40].try_into().unwrap());
        assert_eq!(value, 0x7010, "{RERUN}");
        for cut in (0..image.len()).step_by(7) {
            let _ = with_absolute_symbols(&image[..cut]);
        }
        let mut past = image.clone();
        past[table + 32..table + 40].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(with_absolute_symbols(&past).is_none(), "{RERUN}");
        assert!(locate(&[0u8; 16], 0).is_none(), "{RERUN}");
        assert!(locate(&out, 0x7010).is_none(), "{RERUN}");
    }
}
