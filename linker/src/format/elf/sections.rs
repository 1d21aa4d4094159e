//! ELF sections: which are loaded, with what protection, alignment and
//! lifecycle role. Group sections are set aside for the COMDAT phase. An
//! object whose sections are GCC's LTO code alone has no machine code to
//! load, and is refused (its section names are what show it).

use std::borrow::Cow;

use object::elf;
use object::read::elf::{SectionHeader, Sym};

use super::{Header, Input, Placed, string_at};
use crate::error::LinkError;
use crate::format::ObjectErrors;
use crate::graph::*;

/// A `SHT_GROUP` section: its index and header.
pub(super) type GroupSection<'a> = (
    usize,
    &'a <Header as object::read::elf::FileHeader>::SectionHeader,
);

/// The loaded sections, the ELF index -> graph section map, and the group
/// sections.
pub(super) fn read<'a>(
    input: &Input<'_, 'a>,
) -> Result<(Vec<Section<'a>>, Placed, Vec<GroupSection<'a>>), LinkError> {
    let endian = input.endian;
    let mut placed: Placed = vec![None; input.sections.len()];
    let mut graph_sections = Vec::new();
    let mut groups = Vec::new();
    let mut gcc_lto = false;
    for (index, section) in input.sections.enumerate() {
        let name_bytes =
            string_at(input.section_names, section.sh_name(endian)).ok_or_else(|| {
                input.malformed(format!(
                    "section {}: name offset {:#x} is not in the string table",
                    index.0,
                    section.sh_name(endian)
                ))
            })?;
        // Checked as UTF-8 first: the lossy conversion walks a name byte
        // by byte, and a C++ object has thousands of long section names.
        let name = std::str::from_utf8(name_bytes)
            .map_or_else(|_| String::from_utf8_lossy(name_bytes), Cow::Borrowed);
        gcc_lto |= name.starts_with(".gnu.lto_");
        let sh_type = section.sh_type(endian);
        if sh_type == elf::SHT_GROUP {
            groups.push((index.0, section));
            continue;
        }
        if sh_type == elf::SHT_REL {
            return Err(input.unsupported(format!(
                "section {name}: REL relocations are not used on x86-64"
            )));
        }
        if let Some(loaded) = loaded_section(input, section, &name)? {
            placed[index.0] = Some(graph_sections.len());
            graph_sections.push(loaded);
        }
    }
    if gcc_lto && is_slim_lto(input) {
        return Err(input.unsupported(
            "GCC LTO intermediate code (gcc -flto), not machine code: compile it without \
             -flto, or with -ffat-lto-objects"
                .into(),
        ));
    }
    Ok((graph_sections, placed, groups))
}

/// Whether an object with GCC's LTO sections holds nothing else: GCC
/// marks such a "slim" object with the symbol `__gnu_lto_slim`. A "fat"
/// one (`-ffat-lto-objects`) also holds machine code, which links as any.
fn is_slim_lto(input: &Input<'_, '_>) -> bool {
    input.symtab.iter().any(|symbol| {
        let name = input.symbol_names.text_at(symbol.st_name(input.endian));
        matches!(name, Some(Ok("__gnu_lto_slim")))
    })
}

/// The graph section an ELF section becomes, or `None` when it is not
/// loaded (not allocated, of a type with no contents, or empty TLS).
fn loaded_section<'a>(
    input: &Input<'_, 'a>,
    section: &'a <Header as object::read::elf::FileHeader>::SectionHeader,
    name: &str,
) -> Result<Option<Section<'a>>, LinkError> {
    let endian = input.endian;
    let sh_type = section.sh_type(endian);
    let flags = section.sh_flags(endian).0;
    let loadable = matches!(
        sh_type,
        elf::SHT_PROGBITS
            | elf::SHT_NOBITS
            | elf::SHT_INIT_ARRAY
            | elf::SHT_FINI_ARRAY
            | elf::SHT_PREINIT_ARRAY
            | elf::SHT_X86_64_UNWIND
    );
    if flags & elf::SHF_ALLOC.0 == 0 || !loadable {
        return Ok(None);
    }
    let size = section.sh_size(endian);
    let thread_local = flags & elf::SHF_TLS.0 != 0;
    if thread_local && size == 0 {
        return Ok(None);
    }
    let (protection, bytes): (Protection, &[u8]) = if sh_type == elf::SHT_NOBITS {
        (Protection::Zero, &[])
    } else {
        let bytes = section
            .data(endian, input.data)
            .map_err(|e| input.malformed(format!("section {name}: contents: {e}")))?;
        let protection = if flags & elf::SHF_EXECINSTR.0 != 0 {
            Protection::Code
        } else if flags & elf::SHF_WRITE.0 != 0 {
            Protection::Data
        } else {
            Protection::ReadOnly
        };
        (protection, bytes)
    };
    let role = if thread_local {
        SectionRole::ThreadLocal
    } else {
        section_role(name, sh_type)
    };
    let protection = match role {
        // Relocated once, then only read: like RELRO.
        SectionRole::Initializers { .. } | SectionRole::Finalizers { .. } => Protection::ReadOnly,
        _ => protection,
    };
    let align = section.sh_addralign(endian).max(1);
    if !align.is_power_of_two() {
        return Err(input.malformed(format!(
            "section {name}: alignment {align} is not a power of two"
        )));
    }
    Ok(Some(Section {
        name: Cow::Owned(name.to_string()),
        protection,
        role,
        align,
        size,
        data: Cow::Borrowed(bytes),
        edges: Edges::default(),
        live: true,
    }))
}

/// The lifecycle role a section's name and type give it.
pub(super) fn section_role(name: &str, sh_type: elf::SectionType) -> SectionRole {
    let priority = |suffix: &str| suffix.parse::<u32>().ok();
    if sh_type == elf::SHT_PREINIT_ARRAY {
        // Preinitializers run before every prioritized initializer.
        return SectionRole::Initializers {
            priority: Some(0),
            reversed: false,
        };
    }
    if let Some(rest) = name.strip_prefix(".init_array") {
        return SectionRole::Initializers {
            priority: rest.strip_prefix('.').and_then(priority),
            reversed: false,
        };
    }
    if let Some(rest) = name.strip_prefix(".fini_array") {
        return SectionRole::Finalizers {
            priority: rest.strip_prefix('.').and_then(priority),
            reversed: false,
        };
    }
    // `.ctors.N` sorts as init priority 65535 - N (GNU ld's
    // SORT_BY_INIT_PRIORITY).
    if let Some(rest) = name.strip_prefix(".ctors") {
        return SectionRole::Initializers {
            priority: rest
                .strip_prefix('.')
                .and_then(priority)
                .map(|n| 65535u32.saturating_sub(n)),
            reversed: true,
        };
    }
    if let Some(rest) = name.strip_prefix(".dtors") {
        return SectionRole::Finalizers {
            priority: rest
                .strip_prefix('.')
                .and_then(priority)
                .map(|n| 65535u32.saturating_sub(n)),
            reversed: true,
        };
    }
    match sh_type {
        elf::SHT_INIT_ARRAY => SectionRole::Initializers {
            priority: None,
            reversed: false,
        },
        elf::SHT_FINI_ARRAY => SectionRole::Finalizers {
            priority: None,
            reversed: false,
        },
        _ if name == ".eh_frame" || sh_type == elf::SHT_X86_64_UNWIND => SectionRole::UnwindFrames,
        _ => SectionRole::Plain,
    }
}
