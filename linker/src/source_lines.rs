//! Source lines of JIT'd code: the file and line an address of a module
//! comes from, read from the DWARF of its objects as kept for debuggers
//! (`--debug`: each object with its section headers' addresses set to the
//! load addresses). The object's own relocations are applied to its debug
//! sections against those addresses, as a debugger applies them, so the
//! line tables speak of load addresses.

use std::borrow::Cow;

use object::{Object, ObjectSection, ObjectSymbol};

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

/// The load address ranges of `image`'s sections that were loaded (an
/// ELF object whose section headers give load addresses): allocated
/// sections with an address and a size. Only these can hold code its DWARF
/// speaks of (a section left out keeps address 0). None when the object
/// cannot be read.
pub fn loaded_ranges(image: &[u8]) -> Vec<std::ops::Range<u64>> {
    object::File::parse(image).map_or_else(|_| Vec::new(), |file| loaded_sections(&file))
}

/// [`loaded_ranges`] of an object already parsed.
fn loaded_sections(file: &object::File<'_>) -> Vec<std::ops::Range<u64>> {
    file.sections()
        .filter(|section| match section.flags() {
            object::SectionFlags::Elf { sh_flags, .. } => {
                sh_flags.0 & object::elf::SHF_ALLOC.0 != 0
            }
            _ => false,
        })
        .filter_map(|section| {
            let start = section.address();
            let end = start.checked_add(section.size())?;
            (start != 0 && end > start).then_some(start..end)
        })
        .collect()
}

/// Where `pc` comes from in `image` (an ELF object whose section headers
/// give load addresses), when its debug information says. Malformed debug
/// information gives `None`, never a panic.
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
    with_lines(image, |context| tables_in(context, ranges))
        .unwrap_or_else(|| vec![Vec::new(); ranges.len()])
}

/// The line table of each of `ranges` in `context`'s line information.
fn tables_in(
    context: &addr2line::Context<Reader<'_>>,
    ranges: &[(u64, u64)],
) -> Vec<Vec<(u64, SourceLine)>> {
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
}

/// For each function of `ranges` (start, end), what `keep` makes of its
/// line table from the first of `images` whose loaded sections
/// ([`loaded_ranges`]) hold its start. Each image's DWARF is read once, on
/// `threads`, and asked only about those functions: its DWARF speaks of
/// no other code, and asking every image about every function grows as
/// their product. `keep` returns `None` for a table it does not take (an
/// empty one): the next image that holds the function is asked.
pub fn tables_by_object<I, T, K>(
    images: &[I],
    ranges: &[(u64, u64)],
    threads: crate::parallel::Threads,
    keep: K,
) -> Vec<Option<T>>
where
    I: AsRef<[u8]> + Sync,
    T: Send,
    K: Fn(&[(u64, SourceLine)]) -> Option<T> + Sync,
{
    let mut by_start: Vec<usize> = (0..ranges.len()).collect();
    by_start.sort_by_key(|&i| ranges[i].0);
    let weight = |image: &I| image.as_ref().len();
    let found = crate::parallel::map(images, threads, weight, |image| {
        // The object is parsed once, for its sections and its DWARF; an
        // object that holds none of the functions has its DWARF left alone.
        let Ok(file) = object::File::parse(image.as_ref()) else {
            return Vec::new();
        };
        let held: Vec<usize> = loaded_sections(&file)
            .into_iter()
            .flat_map(|section| {
                let first = by_start.partition_point(|&i| ranges[i].0 < section.start);
                let after = by_start.partition_point(|&i| ranges[i].0 < section.end);
                by_start
                    .get(first..after)
                    .unwrap_or_default()
                    .iter()
                    .copied()
            })
            .collect();
        if held.is_empty() {
            return Vec::new();
        }
        let asked: Vec<(u64, u64)> = held.iter().map(|&i| ranges[i]).collect();
        let tables = with_lines_of(&file, |context| tables_in(context, &asked));
        (held.into_iter().zip(tables.unwrap_or_default()))
            .filter_map(|(index, table)| Some((index, keep(&table)?)))
            .collect::<Vec<_>>()
    });
    let mut kept: Vec<Option<T>> = std::iter::repeat_with(|| None).take(ranges.len()).collect();
    for (index, table) in found.into_iter().flatten() {
        if let Some(slot @ None) = kept.get_mut(index) {
            *slot = Some(table);
        }
    }
    kept
}

/// Runs `query` on the line information of `image`, with the object's
/// relocations applied to its debug sections.
fn with_lines<T>(
    image: &[u8],
    query: impl FnOnce(&addr2line::Context<Reader<'_>>) -> T,
) -> Option<T> {
    with_lines_of(&object::File::parse(image).ok()?, query)
}

/// [`with_lines`] of an object already parsed.
fn with_lines_of<'d, T>(
    file: &object::File<'d>,
    query: impl FnOnce(&addr2line::Context<Reader<'_>>) -> T,
) -> Option<T> {
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
            for (offset, mut relocation) in section.relocations() {
                // Symbol values are section-relative: a symbol's address
                // is its value plus where its section was loaded.
                if let Some(base) = symbol_section_address(file, relocation.target()) {
                    relocation.set_addend(relocation.addend().wrapping_add_unsigned(base));
                }
                // A relocation it cannot apply leaves the value as it is.
                let _ = map.0.add(file, offset, relocation);
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

/// The load address of the section that defines `target`'s symbol (its
/// header's address: zero for a section not loaded); `None` for a section
/// target, or a symbol in no section.
fn symbol_section_address(
    file: &object::File<'_>,
    target: object::RelocationTarget,
) -> Option<u64> {
    let object::RelocationTarget::Symbol(index) = target else {
        return None;
    };
    let section = file.symbol_by_index(index).ok()?.section_index()?;
    Some(file.section_by_index(section).ok()?.address())
}

#[cfg(test)]
mod tests {
    use super::*;

    const RERUN: &str = "rerun: cargo test -p solder-linker --lib source_lines";

    /// Two functions of a `-g` object, each in a section of its own,
    /// loaded apart: the debugger's copy (section-relative symbols, load
    /// addresses in the section headers) names each one's own line, and its
    /// loaded ranges hold both. A section's address left out of the
    /// lookup's relocations would put the second function at the first's.
    #[test]
    fn each_function_is_located_at_its_own_load_address() {
        let source =
            "int first(int x) {\n  return x + 1;\n}\n\nint second(int x) {\n  return x * 3;\n}\n";
        let flags = ["-g", "-O0", "-ffunction-sections"];
        let object = crate::test_support::clang_object("x86_64-linux-gnu", "c", source, &flags);
        let linked = crate::probe::link_image("two.o", &object, crate::probe::Host::Empty).unwrap();
        let places = linked
            .section_addresses
            .as_ref()
            .and_then(|p| p.first())
            .unwrap();
        let debug = crate::plugins::DebugSource {
            object: &object,
            places,
        };
        let image = crate::plugins::debug_objects::debug_image(&debug).unwrap();
        let ranges = loaded_ranges(&image);
        for (name, line) in [("first", 2), ("second", 6)] {
            let symbol = (linked.crash_symbols.iter().flatten())
                .find(|s| &*s.name == name)
                .unwrap_or_else(|| panic!("no crash symbol {name}\n{RERUN}"));
            assert!(
                ranges.iter().any(|r| r.contains(&symbol.start)),
                "{name} at {:#x} is in none of {ranges:x?}\n{RERUN}",
                symbol.start
            );
            // The function's body: past the prologue, at its return line.
            let table = line_table(&image, symbol.start, symbol.start + symbol.size);
            assert!(
                table.iter().any(|(_, l)| l.line == line),
                "{name}: {table:?}\n{RERUN}"
            );
            let at = locate(&image, symbol.start).unwrap();
            assert_eq!(at.line, line - 1, "{name}\n{RERUN}");
        }
        assert!(loaded_ranges(&object).is_empty(), "nothing loaded: {RERUN}");
        assert!(loaded_ranges(&[0u8; 16]).is_empty(), "{RERUN}");
        assert!(locate(&[0u8; 16], 0).is_none(), "{RERUN}");
    }
}
