//! Debug information of a Mach-O object for this platform's debuggers.
//! gdb reads ELF, not Mach-O; DWARF is the same in both. So a loaded
//! Mach-O object's `__DWARF` sections are handed over inside a small ELF
//! relocatable object: each debug section relocated here (its addresses
//! rewritten to where the code was loaded, as a static linker would), each
//! loaded section as an address range without contents (`SHT_NOBITS`, at
//! its load address), and the object's function and data symbols. The
//! debugger then sees the same functions, lines and variables as in the
//! ELF build of the same source.
//!
//! Everything read comes from an object that may be hostile: a field or
//! relocation that does not fit gives `None` (nothing registered), never a
//! panic.

use object::LittleEndian as LE;
use object::macho;
use object::read::macho::{MachHeader, Nlist, Section as _, Segment as _};

use crate::graph::SectionId;

type Header = macho::MachHeader64<LE>;

/// One section header of the Mach-O object.
struct MachSection<'a> {
    segment: &'a [u8],
    name: &'a [u8],
    /// Its address in the object's own layout.
    addr: u64,
    size: u64,
    flags: macho::SectionFlags,
    data: &'a [u8],
    relocations: &'a [macho::Relocation<LE>],
    /// Where it was loaded, if it was.
    load: Option<u64>,
}

/// A Mach-O symbol with a definition in a section.
struct MachSymbol<'a> {
    name: &'a [u8],
    /// 1-based section ordinal.
    section: usize,
    value: u64,
    external: bool,
}

/// The ELF debug object for the Mach-O `object`, whose section header
/// `index` (0-based) became graph section `placed[index]`, loaded at
/// `addresses[section]`. `None` without debug sections, or when the object
/// is not as expected.
pub fn elf_image(
    object: &[u8],
    placed: &[Option<SectionId>],
    addresses: &[Option<u64>],
) -> Option<Vec<u8>> {
    let header = Header::parse(object, 0).ok()?;
    let sections = sections(header, object, placed, addresses)?;
    if !sections.iter().any(is_debug) {
        return None;
    }
    let symbols = symbols(header, object)?;
    let mut elf = ElfWriter::default();
    let mut elf_index = vec![None; sections.len()];
    for (i, section) in sections.iter().enumerate() {
        if let (Some(load), false) = (section.load, is_debug(section)) {
            elf_index[i] = Some(elf.nobits(section.name, load, section.size, is_code(section)));
        }
    }
    for section in sections.iter().filter(|s| is_debug(s)) {
        let Some(name) = elf_debug_name(section.name) else {
            continue;
        };
        let contents = relocated(section, &sections, &symbols)?;
        elf.progbits(&name, contents);
    }
    for symbol in symbols.iter().flatten() {
        let index = symbol.section.checked_sub(1)?;
        let (Some(section), Some(Some(shndx))) = (sections.get(index), elf_index.get(index)) else {
            continue;
        };
        let name = symbol.name.strip_prefix(b"_").unwrap_or(symbol.name);
        let code = is_code(section);
        let offset = symbol.value.checked_sub(section.addr)?;
        elf.symbol(name, *shndx, offset, code, symbol.external);
    }
    Some(elf.finish())
}

fn is_code(section: &MachSection<'_>) -> bool {
    let code = macho::S_ATTR_PURE_INSTRUCTIONS.0 | macho::S_ATTR_SOME_INSTRUCTIONS.0;
    section.flags.0 & code != 0
}

fn is_debug(section: &MachSection<'_>) -> bool {
    section.segment == b"__DWARF" && section.name.starts_with(b"__debug_")
}

/// The ELF name of a Mach-O debug section (`__debug_info` is
/// `.debug_info`; section names are cut at 16 bytes in Mach-O).
fn elf_debug_name(name: &[u8]) -> Option<String> {
    let rest = std::str::from_utf8(name.strip_prefix(b"__debug_")?).ok()?;
    Some(match rest {
        "str_offs" => ".debug_str_offsets".to_string(),
        other => format!(".debug_{other}"),
    })
}

/// Every section header, in order (ordinal = index + 1).
fn sections<'a>(
    header: &'a Header,
    object: &'a [u8],
    placed: &[Option<SectionId>],
    addresses: &[Option<u64>],
) -> Option<Vec<MachSection<'a>>> {
    let mut commands = header.load_commands(LE, object, 0).ok()?;
    let mut sections = Vec::new();
    while let Some(command) = commands.next().ok()? {
        let Some((segment, section_data)) = command.segment_64().ok()? else {
            continue;
        };
        for section in segment.sections(LE, section_data).ok()? {
            let index = sections.len();
            let load = placed
                .get(index)
                .copied()
                .flatten()
                .and_then(|s| addresses.get(s).copied().flatten());
            let is_zero_fill = matches!(
                section.flags(LE).typ(),
                macho::S_ZEROFILL | macho::S_GB_ZEROFILL | macho::S_THREAD_LOCAL_ZEROFILL
            );
            let data = if is_zero_fill {
                &[][..]
            } else {
                section
                    .data(LE, object, u64::from(section.offset(LE)))
                    .ok()?
            };
            sections.push(MachSection {
                segment: section.segment_name(),
                name: section.name(),
                addr: section.addr(LE),
                size: section.size(LE),
                flags: section.flags(LE),
                data,
                relocations: section.relocations(LE, object).ok()?,
                load,
            });
        }
    }
    Some(sections)
}

/// The symbol table by index: symbols defined in sections, `None` for
/// the others (undefined names, debugger-only stabs).
fn symbols<'a>(header: &'a Header, object: &'a [u8]) -> Option<Vec<Option<MachSymbol<'a>>>> {
    let mut commands = header.load_commands(LE, object, 0).ok()?;
    while let Some(command) = commands.next().ok()? {
        let Some(symtab) = command.symtab().ok()? else {
            continue;
        };
        let table = symtab
            .symbols::<macho::MachHeader64<LE>, _>(LE, object)
            .ok()?;
        let mut symbols = Vec::new();
        for nlist in table.iter() {
            let kind = nlist.n_type();
            if kind.is_stab() || kind.typ() != macho::N_SECT {
                symbols.push(None);
                continue;
            }
            symbols.push(Some(MachSymbol {
                name: nlist.name(LE, table.strings()).ok()?,
                section: usize::from(nlist.n_sect()),
                value: nlist.n_value(LE),
                external: kind.contains(macho::N_EXT),
            }));
        }
        return Some(symbols);
    }
    Some(Vec::new())
}

/// A debug section's bytes with every relocation applied against the load
/// addresses: `UNSIGNED` (a symbol's or a section's address plus the
/// field) and `SUBTRACTOR` + `UNSIGNED` pairs (a difference). Fields whose
/// targets were not loaded keep their bytes.
fn relocated(
    section: &MachSection<'_>,
    sections: &[MachSection<'_>],
    symbols: &[Option<MachSymbol<'_>>],
) -> Option<Vec<u8>> {
    let mut bytes = section.data.to_vec();
    let address_of = |info: &macho::RelocationInfo, field: u64| -> Option<u64> {
        if info.r_extern {
            let symbol = symbols.get(info.r_symbolnum as usize)?.as_ref()?;
            let target = sections.get(symbol.section.checked_sub(1)?)?;
            let offset = symbol.value.checked_sub(target.addr)?;
            Some(target.load?.wrapping_add(offset).wrapping_add(field))
        } else {
            let target = sections.get((info.r_symbolnum as usize).checked_sub(1)?)?;
            Some(field.wrapping_sub(target.addr).wrapping_add(target.load?))
        }
    };
    let mut records = section.relocations.iter().map(|r| r.info(LE));
    while let Some(info) = records.next() {
        let width = 1usize << info.r_length;
        let at = usize::try_from(info.r_address).ok()?;
        let field = read_field(&bytes, at, width)?;
        let value = match info.r_type {
            macho::X86_64_RELOC_UNSIGNED => address_of(&info, field),
            macho::X86_64_RELOC_SUBTRACTOR => {
                let minuend = records.next()?;
                if minuend.r_type != macho::X86_64_RELOC_UNSIGNED {
                    return None;
                }
                match (address_of(&info, 0), address_of(&minuend, 0)) {
                    (Some(minus), Some(plus)) => Some(plus.wrapping_sub(minus).wrapping_add(field)),
                    _ => None,
                }
            }
            _ => None,
        };
        if let Some(value) = value {
            write_field(&mut bytes, at, width, value)?;
        }
    }
    Some(bytes)
}

fn read_field(bytes: &[u8], at: usize, width: usize) -> Option<u64> {
    let field = bytes.get(at..at.checked_add(width)?)?;
    let mut wide = [0u8; 8];
    wide.get_mut(..width)?.copy_from_slice(field);
    Some(u64::from_le_bytes(wide))
}

fn write_field(bytes: &mut [u8], at: usize, width: usize, value: u64) -> Option<()> {
    let field = bytes.get_mut(at..at.checked_add(width)?)?;
    field.copy_from_slice(value.to_le_bytes().get(..width)?);
    Some(())
}

// The ELF constants written (as in the System V ABI).
const SHT_PROGBITS: u32 = 1;
const SHT_SYMTAB: u32 = 2;
const SHT_STRTAB: u32 = 3;
const SHT_NOBITS: u32 = 8;
const SHF_ALLOC: u64 = 2;
const SHF_EXECINSTR: u64 = 4;
const STT_OBJECT: u8 = 1;
const STT_FUNC: u8 = 2;
const STB_LOCAL: u8 = 0;
const STB_GLOBAL: u8 = 1;
const ET_REL: u16 = 1;
const EM_X86_64: u16 = 62;
const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const EV_CURRENT: u8 = 1;

/// A minimal ELF64 x86-64 relocatable object: section headers, a symbol
/// table, and contents.
#[derive(Default)]
struct ElfWriter {
    /// (name offset, type, flags, address, size, contents) per section
    /// after the null one.
    sections: Vec<(u32, u32, u64, u64, u64, Vec<u8>)>,
    names: Vec<u8>,
    /// (name offset, info, section index, value), locals then globals
    /// once finished.
    symbols: Vec<(u32, u8, u16, u64, bool)>,
    symbol_names: Vec<u8>,
}

impl ElfWriter {
    fn name(&mut self, name: &[u8]) -> u32 {
        if self.names.is_empty() {
            self.names.push(0);
        }
        let at = self.names.len() as u32;
        self.names.extend_from_slice(name);
        self.names.push(0);
        at
    }

    /// A loaded section, as its address range: returns its ELF index.
    fn nobits(&mut self, name: &[u8], address: u64, size: u64, code: bool) -> u16 {
        let name = self.name(name);
        let mut flags = SHF_ALLOC;
        if code {
            flags |= SHF_EXECINSTR;
        }
        self.sections
            .push((name, SHT_NOBITS, flags, address, size, Vec::new()));
        self.sections.len() as u16
    }

    fn progbits(&mut self, name: &str, contents: Vec<u8>) {
        let name = self.name(name.as_bytes());
        let size = contents.len() as u64;
        self.sections
            .push((name, SHT_PROGBITS, 0, 0, size, contents));
    }

    fn symbol(&mut self, name: &[u8], section: u16, offset: u64, code: bool, global: bool) {
        if self.symbol_names.is_empty() {
            self.symbol_names.push(0);
        }
        let at = self.symbol_names.len() as u32;
        self.symbol_names.extend_from_slice(name);
        self.symbol_names.push(0);
        let kind = if code { STT_FUNC } else { STT_OBJECT };
        let binding = if global { STB_GLOBAL } else { STB_LOCAL };
        self.symbols
            .push((at, (binding << 4) | kind, section, offset, global));
    }

    /// The object's bytes: header, contents, symbol table, names, then
    /// the section headers.
    fn finish(mut self) -> Vec<u8> {
        // Locals come first in an ELF symbol table.
        self.symbols.sort_by_key(|s| s.4);
        let first_global = 1 + self.symbols.iter().take_while(|s| !s.4).count();
        let mut symtab = vec![0u8; 24];
        for &(name, info, shndx, value, _) in &self.symbols {
            symtab.extend_from_slice(&name.to_le_bytes());
            symtab.push(info);
            symtab.push(0);
            symtab.extend_from_slice(&shndx.to_le_bytes());
            symtab.extend_from_slice(&value.to_le_bytes());
            symtab.extend_from_slice(&0u64.to_le_bytes());
        }
        let strtab = std::mem::take(&mut self.symbol_names);
        let strtab_index = self.sections.len() as u32 + 2;
        let symtab_name = self.name(b".symtab");
        self.sections
            .push((symtab_name, SHT_SYMTAB, 0, 0, symtab.len() as u64, symtab));
        let strtab_name = self.name(b".strtab");
        self.sections
            .push((strtab_name, SHT_STRTAB, 0, 0, strtab.len() as u64, strtab));
        let shstrtab_name = self.name(b".shstrtab");
        let names = std::mem::take(&mut self.names);
        self.sections
            .push((shstrtab_name, SHT_STRTAB, 0, 0, names.len() as u64, names));
        let count = self.sections.len() + 1;
        let mut out = vec![0u8; 64];
        let mut offsets = Vec::with_capacity(self.sections.len());
        for section in &self.sections {
            while !out.len().is_multiple_of(8) {
                out.push(0);
            }
            offsets.push(out.len() as u64);
            out.extend_from_slice(&section.5);
        }
        while !out.len().is_multiple_of(8) {
            out.push(0);
        }
        let shoff = out.len() as u64;
        out.extend_from_slice(&[0u8; 64]);
        for (i, (name, kind, flags, address, size, _)) in self.sections.iter().enumerate() {
            let (link, info, entsize) = match *kind {
                SHT_SYMTAB => (strtab_index, first_global as u32, 24u64),
                _ => (0, 0, 0),
            };
            out.extend_from_slice(&name.to_le_bytes());
            out.extend_from_slice(&kind.to_le_bytes());
            out.extend_from_slice(&flags.to_le_bytes());
            out.extend_from_slice(&address.to_le_bytes());
            out.extend_from_slice(&offsets[i].to_le_bytes());
            out.extend_from_slice(&size.to_le_bytes());
            out.extend_from_slice(&link.to_le_bytes());
            out.extend_from_slice(&info.to_le_bytes());
            out.extend_from_slice(&1u64.to_le_bytes());
            out.extend_from_slice(&entsize.to_le_bytes());
        }
        let header = &mut out[..64];
        header[..4].copy_from_slice(b"\x7fELF");
        header[4] = ELFCLASS64;
        header[5] = ELFDATA2LSB;
        header[6] = EV_CURRENT;
        header[16..18].copy_from_slice(&ET_REL.to_le_bytes());
        header[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
        header[20..24].copy_from_slice(&u32::from(EV_CURRENT).to_le_bytes());
        header[40..48].copy_from_slice(&shoff.to_le_bytes());
        header[52..54].copy_from_slice(&64u16.to_le_bytes());
        header[58..60].copy_from_slice(&64u16.to_le_bytes());
        header[60..62].copy_from_slice(&(count as u16).to_le_bytes());
        header[62..64].copy_from_slice(&((count - 1) as u16).to_le_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Anything that is not a Mach-O object with debug sections gives
    /// `None`, never a panic: empty, truncated headers, a header with no
    /// load commands, garbage after the magic.
    #[test]
    fn hostile_objects_give_nothing() {
        let rerun = "rerun: cargo test -p solder-linker --lib plugins::macho_debug";
        let mut header = vec![0u8; 32];
        header[..4].copy_from_slice(&[0xcf, 0xfa, 0xed, 0xfe]);
        header[4..8].copy_from_slice(&0x0100_0007u32.to_le_bytes());
        header[12..16].copy_from_slice(&1u32.to_le_bytes()); // MH_OBJECT
        let mut lying = header.clone();
        lying[16..20].copy_from_slice(&1000u32.to_le_bytes()); // ncmds
        lying[20..24].copy_from_slice(&0xffff_ff00u32.to_le_bytes()); // sizeofcmds
        let mut noise = header.clone();
        noise.extend((0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
        for object in [&[][..], &header[..7], &header, &lying, &noise] {
            assert!(
                elf_image(object, &[Some(0)], &[Some(0x1000)]).is_none(),
                "{} bytes\n{rerun}",
                object.len()
            );
        }
    }

    #[test]
    fn debug_section_names_become_elf_names() {
        assert_eq!(
            elf_debug_name(b"__debug_info").as_deref(),
            Some(".debug_info")
        );
        assert_eq!(
            elf_debug_name(b"__debug_str_offs").as_deref(),
            Some(".debug_str_offsets")
        );
        assert_eq!(elf_debug_name(b"__apple_names"), None);
    }

    /// A field is read and written at its width; one that does not fit
    /// is refused.
    #[test]
    fn fields_are_checked() {
        let mut bytes = vec![0u8; 12];
        write_field(&mut bytes, 4, 8, 0x1122_3344_5566_7788).unwrap();
        assert_eq!(read_field(&bytes, 4, 8), Some(0x1122_3344_5566_7788));
        assert_eq!(read_field(&bytes, 4, 4), Some(0x5566_7788));
        assert_eq!(read_field(&bytes, 8, 8), None);
        assert_eq!(write_field(&mut bytes, usize::MAX, 4, 1), None);
    }
}
