//! Mach-O sections: which are loaded (classified by segment, name, type and
//! attributes), with what protection, alignment and lifecycle role. Every
//! section header keeps a [`Raw`] record: symbols and non-extern relocations
//! are expressed in the original addresses.

use std::borrow::Cow;

use object::macho;
use object::read::macho::Section as _;

use super::{Input, LE, Raw, SectionHeader};
use crate::error::LinkError;
use crate::format::ObjectErrors;
use crate::graph::*;

/// A [`Raw`] record per section header, and the loaded graph sections.
pub(super) fn read<'a>(
    input: &Input<'_, 'a>,
    headers: Vec<&'a SectionHeader>,
) -> Result<(Vec<Raw<'a>>, Vec<Section<'a>>), LinkError> {
    let mut raws: Vec<Raw<'a>> = Vec::with_capacity(headers.len());
    let mut graph_sections = Vec::new();
    for section in headers {
        let segname = String::from_utf8_lossy(section.segment_name()).into_owned();
        let sectname = String::from_utf8_lossy(section.name()).into_owned();
        let name = format!("{segname},{sectname}");
        let addr = section.addr(LE);
        let size = section.size(LE);
        if addr.checked_add(size).is_none() {
            return Err(input.malformed(format!(
                "section {name}: address {addr:#x} + size {size:#x} overflows"
            )));
        }
        let mut raw = Raw {
            header: section,
            name,
            addr,
            size,
            placed: None,
        };
        let flags = section.flags(LE);
        let Some((protection, role)) = classify(&segname, &sectname, flags, size)
            .map_err(|why| input.unsupported(format!("section {}: {why}", raw.name)))?
        else {
            raws.push(raw);
            continue;
        };
        let align_log2 = section.align(LE);
        if align_log2 > 15 {
            return Err(input.malformed(format!(
                "section {}: alignment 2^{align_log2} is too large",
                raw.name
            )));
        }
        let bytes: &'a [u8] = if protection == Protection::Zero {
            &[]
        } else {
            section
                .data(LE, input.data, u64::from(section.offset(LE)))
                .map_err(|e| input.malformed(format!("section {}: contents: {e}", raw.name)))?
        };
        raw.placed = Some(graph_sections.len());
        graph_sections.push(Section {
            name: Cow::Owned(raw.name.clone()),
            protection,
            role,
            align: 1 << align_log2,
            size,
            data: Cow::Borrowed(bytes),
            edges: Edges::default(),
            live: true,
        });
        raws.push(raw);
    }

    Ok((raws, graph_sections))
}

/// Whether and how a section is loaded: `None` for sections that are not
/// (debug info, ld64-only metadata), `Err` with the reason for sections
/// Solder cannot link.
fn classify(
    segname: &str,
    sectname: &str,
    flags: macho::SectionFlags,
    size: u64,
) -> Result<Option<(Protection, SectionRole)>, String> {
    let typ = flags.typ();
    let has = |attr: macho::SectionFlags| flags.0 & attr.0 != 0;
    if segname == "__DWARF" || has(macho::S_ATTR_DEBUG) {
        return Ok(None);
    }
    // Compact unwind is consumed by ld64 only (it builds `__unwind_info`
    // from it); the JIT registers `__eh_frame` instead.
    if segname == "__LD" && sectname == "__compact_unwind" {
        return Ok(None);
    }
    // Address-significance tables only feed identical-code folding.
    if sectname == "__llvm_addrsig" {
        return Ok(None);
    }
    let not_supported: Option<&str> = match typ {
        macho::S_THREAD_LOCAL_VARIABLE_POINTERS => Some(
            "thread-local variable pointer sections (indirect symbol tables) are not supported \
             in objects",
        ),
        macho::S_THREAD_LOCAL_INIT_FUNCTION_POINTERS => Some(
            "thread-local storage with dynamic initializers (C++ thread_local objects) is not \
             supported yet in Mach-O objects",
        ),
        macho::S_NON_LAZY_SYMBOL_POINTERS
        | macho::S_LAZY_SYMBOL_POINTERS
        | macho::S_LAZY_DYLIB_SYMBOL_POINTERS
        | macho::S_SYMBOL_STUBS => Some(
            "symbol pointer and stub sections (indirect symbol tables) are not supported in \
             objects",
        ),
        macho::S_INTERPOSING => Some("interposing sections are not supported"),
        macho::S_DTRACE_DOF => Some("DTrace object format sections are not supported"),
        macho::S_INIT_FUNC_OFFSETS => Some("initializer offset sections are not supported"),
        _ if typ.0 > macho::S_INIT_FUNC_OFFSETS.0 => Some("unknown section type"),
        _ => None,
    };
    if let Some(why) = not_supported {
        // An empty one is harmless: nothing would be placed.
        return if size == 0 {
            Ok(None)
        } else {
            Err(why.to_string())
        };
    }
    let initializers = SectionRole::Initializers {
        priority: None,
        reversed: false,
    };
    let finalizers = SectionRole::Finalizers {
        priority: None,
        reversed: false,
    };
    Ok(Some(match typ {
        macho::S_ZEROFILL | macho::S_GB_ZEROFILL => (Protection::Zero, SectionRole::Plain),
        // The template of the load's thread-local block.
        macho::S_THREAD_LOCAL_REGULAR => (Protection::Data, SectionRole::ThreadLocal),
        macho::S_THREAD_LOCAL_ZEROFILL => (Protection::Zero, SectionRole::ThreadLocal),
        // The variables' descriptors: thunk, key, offset (see the
        // relocations phase).
        macho::S_THREAD_LOCAL_VARIABLES => (Protection::Data, SectionRole::Plain),
        // Relocated once, then only read: like RELRO.
        macho::S_MOD_INIT_FUNC_POINTERS => (Protection::ReadOnly, initializers),
        macho::S_MOD_TERM_FUNC_POINTERS => (Protection::ReadOnly, finalizers),
        _ if has(macho::S_ATTR_PURE_INSTRUCTIONS) || has(macho::S_ATTR_SOME_INSTRUCTIONS) => {
            (Protection::Code, SectionRole::Plain)
        }
        _ if segname == "__TEXT" && sectname == "__eh_frame" => {
            (Protection::ReadOnly, SectionRole::UnwindFrames)
        }
        _ if segname == "__TEXT" => (Protection::ReadOnly, SectionRole::Plain),
        // Relocated before protection, then only read: like RELRO.
        _ if segname == "__DATA_CONST" || (segname == "__DATA" && sectname == "__const") => {
            (Protection::ReadOnly, SectionRole::Plain)
        }
        _ => (Protection::Data, SectionRole::Plain),
    }))
}
