//! COFF sections: which are loaded (not unwind tables, debug info or
//! linker metadata), with what protection and alignment; `.CRT$X?*` arrays
//! as initializers and terminators; `.drectve` kept for the directives.

use std::borrow::Cow;

use object::LittleEndian as LE;
use object::pe;
use object::read::coff::CoffHeader;

use super::Input;
use crate::error::LinkError;
use crate::format::ObjectErrors;
use crate::graph::*;

/// What the sections phase found.
pub(super) struct Loaded<'a> {
    pub sections: Vec<Section<'a>>,
    /// The graph section of each COFF section (0-based), if loaded.
    pub placed: Vec<Option<SectionId>>,
    /// The contents of every `.drectve` section.
    pub directives: Vec<&'a [u8]>,
}

pub(super) fn read<'a, Coff: CoffHeader>(
    input: &Input<'_, 'a, Coff>,
) -> Result<Loaded<'a>, LinkError> {
    let mut placed: Vec<Option<SectionId>> = vec![None; input.sections.len()];
    let mut graph_sections = Vec::new();
    let mut directives: Vec<&'a [u8]> = Vec::new();
    for (index, section) in input.sections.iter().enumerate() {
        let name_bytes = section
            .name(input.symtab.strings())
            .map_err(|e| input.malformed(format!("section {}: name: {e}", index + 1)))?;
        let name = std::str::from_utf8(name_bytes)
            .map_err(|_| input.malformed(format!("section {}: name is not UTF-8", index + 1)))?;
        let flags = section.characteristics.get(LE);
        let size = u64::from(section.size_of_raw_data.get(LE));
        let contents = || {
            section.coff_data(input.data).map_err(|()| {
                input.malformed(format!(
                    "section {name}: its contents ({size:#x} bytes at file offset {:#x}) lie outside the file",
                    section.pointer_to_raw_data.get(LE)
                ))
            })
        };
        if name == ".drectve" {
            directives.push(contents()?);
            continue;
        }
        // `$` orders sections of one name in an image; what a section is
        // depends on the part before it.
        let (base, suffix) = name.split_once('$').unwrap_or((name, ""));
        // Unwind tables describe Windows exception handling (and `.xdata`
        // names handlers like `__C_specific_handler` that do not exist on
        // the host), so they are of no use here.
        if flags.intersects(pe::IMAGE_SCN_LNK_REMOVE | pe::IMAGE_SCN_LNK_INFO)
            || name.starts_with(".debug")
            || name.starts_with(".llvm.")
            || base == ".pdata"
            || base == ".xdata"
        {
            continue;
        }
        if base == ".tls" {
            if size == 0 {
                continue;
            }
            // The code reaches its block through `_tls_index` and the
            // thread environment block (`gs:[0x58]`), which threads of
            // the platforms Solder runs on do not have.
            return Err(input.unsupported(format!(
                "section {name}: thread-local storage is not supported in COFF objects (the \
                 code finds its block through the Windows thread environment block)"
            )));
        }
        let role = if base == ".CRT" {
            match crt_role(suffix) {
                Some(role) => role,
                None if size == 0 => continue,
                None => {
                    return Err(input.unsupported(format!(
                        "section {name}: only the CRT's initializer ($XI, $XC) and terminator ($XP, $XT) arrays are supported"
                    )));
                }
            }
        } else {
            SectionRole::Plain
        };
        let align = match (flags.0 >> 20) & 0xf {
            0 => 16, // the PE default for objects
            15 => {
                return Err(
                    input.malformed(format!("section {name}: alignment field 15 is reserved"))
                );
            }
            n => 1u64 << (n - 1),
        };
        let (protection, bytes): (Protection, &[u8]) =
            if flags.contains(pe::IMAGE_SCN_CNT_UNINITIALIZED_DATA) {
                if role != SectionRole::Plain {
                    return Err(input.malformed(format!(
                        "section {name}: an initializer or terminator array has no contents"
                    )));
                }
                (Protection::Zero, &[])
            } else {
                let protection = if role != SectionRole::Plain {
                    // Relocated once, then only read: like RELRO.
                    Protection::ReadOnly
                } else if flags.intersects(pe::IMAGE_SCN_MEM_EXECUTE | pe::IMAGE_SCN_CNT_CODE) {
                    Protection::Code
                } else if flags.contains(pe::IMAGE_SCN_MEM_WRITE) {
                    Protection::Data
                } else {
                    Protection::ReadOnly
                };
                (protection, contents()?)
            };
        placed[index] = Some(graph_sections.len());
        graph_sections.push(Section {
            name: Cow::Borrowed(name),
            protection,
            role,
            align,
            size,
            data: Cow::Borrowed(bytes),
            edges: Edges::default(),
            live: true,
        });
    }

    Ok(Loaded {
        sections: graph_sections,
        placed,
        directives,
    })
}

/// The MSVC CRT's arrays: `$XI` (C initializers) run before `$XC` (C++
/// initializers); `$XP` (pre-terminators) before `$XT` (terminators). The
/// linker sorts equal priorities by section name, which gives the `$`
/// suffix order; terminators are run first-to-last like `.dtors` entries.
fn crt_role(suffix: &str) -> Option<SectionRole> {
    let initializers = |priority| SectionRole::Initializers {
        priority: Some(priority),
        reversed: false,
    };
    let finalizers = |priority| SectionRole::Finalizers {
        priority: Some(priority),
        reversed: true,
    };
    if suffix.starts_with("XI") {
        Some(initializers(0))
    } else if suffix.starts_with("XC") {
        Some(initializers(1))
    } else if suffix.starts_with("XP") {
        Some(finalizers(0))
    } else if suffix.starts_with("XT") {
        Some(finalizers(1))
    } else {
        None
    }
}
