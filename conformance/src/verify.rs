//! Exercise verification: checks, with goblin (a parser independent of the
//! linker's `object`-based front-end), that the built objects of a scenario
//! contain what its `exercises` says, so a fixture the compiler compiled
//! differently fails loudly instead of passing vacuously.
//!
//! An entry starting with `R_` is a relocation type name (`R_X86_64_PLT32`)
//! that some relocation in the objects must have; any other entry is a
//! section name that some section must have, where a trailing `*` matches a
//! prefix (`.init_array.*`).

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
    #[error("verifying {0} objects is not implemented yet")]
    Unsupported(Format),
    #[error(
        "the built objects do not exercise {missing:?}\n  objects: {objects}\n  sections: {sections:?}\n  relocations: {relocations:?}"
    )]
    Missing {
        missing: Vec<String>,
        objects: String,
        sections: BTreeSet<String>,
        relocations: BTreeSet<String>,
    },
}

/// What an object contains, as far as `exercises` can ask.
#[derive(Debug, Default, Clone)]
pub struct Contents {
    pub sections: BTreeSet<String>,
    pub relocations: BTreeSet<String>,
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

/// Checks that `objects` (all built for `format`) together contain every
/// entry of `wanted`.
pub fn verify(format: Format, objects: &[PathBuf], wanted: &[String]) -> Result<(), VerifyError> {
    if wanted.is_empty() {
        return Ok(());
    }
    if format != Format::Elf {
        return Err(VerifyError::Unsupported(format));
    }
    let mut all = Contents::default();
    for object in objects {
        let c = elf_contents(object)?;
        all.sections.extend(c.sections);
        all.relocations.extend(c.relocations);
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
    })
}

fn contains(contents: &Contents, entry: &str) -> bool {
    let set = if entry.starts_with("R_") {
        &contents.relocations
    } else {
        &contents.sections
    };
    match entry.strip_suffix('*') {
        Some(prefix) => set.iter().any(|name| name.starts_with(prefix)),
        None => set.contains(entry),
    }
}
