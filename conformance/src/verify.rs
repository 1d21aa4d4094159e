//! Exercise verification: checks, with goblin (a parser independent of the
//! linker's `object`-based front-end), that the built objects of a scenario
//! contain what its `exercises` says, so a fixture the compiler compiled
//! differently fails loudly instead of passing vacuously.
//!
//! An entry that is a relocation type name in the format's own spelling
//! (ELF `R_X86_64_PLT32`, Mach-O `X86_64_RELOC_SUBTRACTOR`, COFF
//! `IMAGE_REL_AMD64_ADDR32NB`) must be the type of some relocation in the
//! objects; `symbol:NAME` names a symbol (defined or undefined, spelled as
//! the format spells it: `___chkstk_darwin`) that some symbol table must
//! have; `hidden:NAME` (ELF) a global symbol some object defines with
//! hidden visibility; any other entry is a section name that some section must have
//! (Mach-O sections as `__TEXT,__text` or just `__text`), where a trailing
//! `*` matches a prefix (`.init_array.*`, `.CRT$XC*`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use goblin::elf::Elf;

use crate::formats::Format;

/// Why the objects do not exercise what the scenario says.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("cannot read {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("goblin cannot parse {path}: {error}")]
    Parse { path: PathBuf, error: String },
    #[error(
        "the built objects do not exercise {missing:?}\n  objects: {objects}\n  sections: {sections:?}\n  relocations: {relocations:?}\n  symbols: {symbols:?}"
    )]
    Missing {
        missing: Vec<String>,
        objects: String,
        sections: BTreeSet<String>,
        relocations: BTreeSet<String>,
        symbols: BTreeSet<String>,
    },
}

/// What an object contains, as far as `exercises` can ask.
#[derive(Debug, Default, Clone)]
pub struct Contents {
    pub sections: BTreeSet<String>,
    pub relocations: BTreeSet<String>,
    pub symbols: BTreeSet<String>,
}

/// Reads the section and relocation type names of an ELF object.
pub fn elf_contents(path: &Path) -> Result<Contents, VerifyError> {
    let bytes = std::fs::read(path).map_err(|error| VerifyError::Read {
        path: path.to_path_buf(),
        error,
    })?;
    let elf = Elf::parse(&bytes).map_err(|error| VerifyError::Parse {
        path: path.to_path_buf(),
        error: error.to_string(),
    })?;
    let mut contents = Contents::default();
    for header in &elf.section_headers {
        if let Some(name) = elf.shdr_strtab.get_at(header.sh_name)
            && !name.is_empty()
        {
            contents.sections.insert(name.to_string());
        }
    }
    for sym in elf.syms.iter() {
        if let Some(name) = elf.strtab.get_at(sym.st_name)
            && !name.is_empty()
        {
            contents.symbols.insert(name.to_string());
            let hidden_definition = sym.st_bind() == goblin::elf::sym::STB_GLOBAL
                && sym.st_visibility() == goblin::elf::sym::STV_HIDDEN
                && sym.st_shndx != 0;
            if hidden_definition {
                contents.symbols.insert(format!("hidden:{name}"));
            }
        }
    }
    for (_, relocs) in &elf.shdr_relocs {
        for reloc in relocs.iter() {
            // goblin spells them without the `R_` prefix (`X86_64_PLT32`).
            let name = goblin::elf::reloc::r_to_str(reloc.r_type, elf.header.e_machine);
            let name = if name.starts_with("R_") {
                name.to_string()
            } else {
                format!("R_{name}")
            };
            contents.relocations.insert(name);
        }
    }
    Ok(contents)
}

/// Reads the section and relocation type names of a Mach-O object.
pub fn macho_contents(path: &Path) -> Result<Contents, VerifyError> {
    let bytes = read(path)?;
    let parse_error = |error: goblin::error::Error| VerifyError::Parse {
        path: path.to_path_buf(),
        error: error.to_string(),
    };
    let macho = goblin::mach::MachO::parse(&bytes, 0).map_err(parse_error)?;
    let mut contents = Contents::default();
    for segment in &macho.segments {
        for section in segment {
            let (section, _) = section.map_err(parse_error)?;
            let (segname, sectname) = (
                section.segname().map_err(parse_error)?,
                section.name().map_err(parse_error)?,
            );
            contents.sections.insert(format!("{segname},{sectname}"));
            contents.sections.insert(sectname.to_string());
        }
    }
    for symbol in macho.symbols() {
        let (name, _) = symbol.map_err(parse_error)?;
        contents.symbols.insert(name.to_string());
    }
    for (_, relocations, _) in macho.relocations().map_err(parse_error)? {
        for relocation in relocations {
            let relocation = relocation.map_err(parse_error)?;
            contents.relocations.insert(
                goblin::mach::relocation::reloc_to_str(relocation.r_type(), macho.header.cputype)
                    .to_string(),
            );
        }
    }
    Ok(contents)
}

/// The PE/COFF specification's names of the AMD64 relocation types.
fn coff_amd64_reloc_name(typ: u16) -> String {
    const NAMES: [&str; 17] = [
        "ABSOLUTE", "ADDR64", "ADDR32", "ADDR32NB", "REL32", "REL32_1", "REL32_2", "REL32_3",
        "REL32_4", "REL32_5", "SECTION", "SECREL", "SECREL7", "TOKEN", "SREL32", "PAIR", "SSPAN32",
    ];
    match NAMES.get(usize::from(typ)) {
        Some(name) => format!("IMAGE_REL_AMD64_{name}"),
        None => format!("IMAGE_REL_AMD64_{typ:#x}"),
    }
}

/// Reads the section and relocation type names of a COFF object.
pub fn coff_contents(path: &Path) -> Result<Contents, VerifyError> {
    let bytes = read(path)?;
    let parse_error = |error: goblin::error::Error| VerifyError::Parse {
        path: path.to_path_buf(),
        error: error.to_string(),
    };
    let coff = goblin::pe::Coff::parse(&bytes).map_err(parse_error)?;
    let mut contents = Contents::default();
    if let (Some(symbols), Some(strings)) = (&coff.symbols, &coff.strings) {
        for (_, _, symbol) in symbols.iter() {
            contents
                .symbols
                .insert(symbol.name(strings).map_err(parse_error)?.to_string());
        }
    }
    for section in &coff.sections {
        // goblin resolves long (`/4`) names through the string table.
        let name = section.name().map_err(parse_error)?.to_string();
        contents.sections.insert(name);
        for relocation in section.relocations(&bytes).map_err(parse_error)? {
            contents
                .relocations
                .insert(coff_amd64_reloc_name(relocation.typ));
        }
    }
    Ok(contents)
}

fn read(path: &Path) -> Result<Vec<u8>, VerifyError> {
    std::fs::read(path).map_err(|error| VerifyError::Read {
        path: path.to_path_buf(),
        error,
    })
}

/// Checks that `objects` (all built for `format`) together contain every
/// entry of `wanted`.
pub fn verify(format: Format, objects: &[PathBuf], wanted: &[String]) -> Result<(), VerifyError> {
    if wanted.is_empty() {
        return Ok(());
    }
    let mut all = Contents::default();
    for object in objects {
        let c = match format {
            Format::Elf => elf_contents(object)?,
            Format::Macho => macho_contents(object)?,
            Format::Coff => coff_contents(object)?,
        };
        all.sections.extend(c.sections);
        all.relocations.extend(c.relocations);
        all.symbols.extend(c.symbols);
    }
    let missing: Vec<String> = wanted
        .iter()
        .filter(|entry| !contains(&all, entry))
        .cloned()
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(VerifyError::Missing {
        missing,
        objects: objects
            .iter()
            .map(|o| o.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        sections: all.sections,
        relocations: all.relocations,
        symbols: all.symbols,
    })
}

fn contains(contents: &Contents, entry: &str) -> bool {
    if let Some(symbol) = entry.strip_prefix("symbol:") {
        return contents.symbols.contains(symbol);
    }
    if entry.starts_with("hidden:") {
        return contents.symbols.contains(entry);
    }
    let relocation = ["R_", "X86_64_RELOC_", "IMAGE_REL_"]
        .iter()
        .any(|prefix| entry.starts_with(prefix));
    let set = if relocation {
        &contents.relocations
    } else {
        &contents.sections
    };
    match entry.strip_suffix('*') {
        Some(prefix) => set.iter().any(|name| name.starts_with(prefix)),
        None => set.contains(entry),
    }
}
