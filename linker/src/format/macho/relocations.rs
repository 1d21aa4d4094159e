//! Mach-O relocations: REL, so the addend is in the relocated field, and a
//! non-extern one holds its target's full original address; both are
//! rebased onto symbols here (section symbols for non-extern ones), and a
//! SUBTRACTOR + UNSIGNED pair becomes one `Difference` edge.

use object::LittleEndian;
use object::macho;
use object::read::macho::Section as _;

use super::{Input, LE, Raw};
use crate::arch::RelocKind;
use crate::arch::machine::macho::{MachOReloc, TLV_KEY, TLV_OFFSET, macho_reloc};
use crate::error::{LinkError, Site, UnsupportedRelocation};
use crate::format::ObjectErrors;
use crate::graph::*;

/// Attaches the edges of every loaded section's relocations. Those of
/// sections that are not loaded (debug info, compact unwind) are never
/// read.
pub(super) fn attach<'a>(
    input: &Input<'_, 'a>,
    raws: &[Raw<'a>],
    symbols: &[Symbol<'a>],
    nsyms: usize,
    graph_sections: &mut [Section<'a>],
) -> Result<(), LinkError> {
    let cx = Context {
        object: input.object,
        raws,
        symbols,
        nsyms,
    };
    let mut all_edges = Vec::with_capacity(graph_sections.len());
    for raw in raws {
        let Some(id) = raw.placed else {
            continue;
        };
        let section = &graph_sections[id];
        let relocs = raw
            .header
            .relocations(LE, input.data)
            .map_err(|e| input.malformed(format!("relocations of {}: {e}", raw.name)))?;
        if !relocs.is_empty() && section.protection == Protection::Zero {
            return Err(input.malformed(format!(
                "section {}: a zero-fill section has relocations",
                raw.name
            )));
        }
        let mut edges = cx.section_edges(raw, &section.data, relocs)?;
        edges.sort_by_key(|e| e.offset);
        if raw.header.flags(LE).typ() == macho::S_THREAD_LOCAL_VARIABLES {
            edges = cx.thread_local_descriptors(raw, section, edges)?;
        }
        let mut data = None;
        if section.role == SectionRole::UnwindFrames {
            // (A clone of the borrowed bytes: copied only if a difference
            // is folded into them.)
            let mut bytes = section.data.clone();
            edges = cx.fold_internal_differences(raw, id, &mut bytes, edges)?;
            edges.extend(cx.eh_frame_edges(raw, &bytes, &edges)?);
            edges.sort_by_key(|e| e.offset);
            data = Some(bytes);
        }
        all_edges.push((id, edges, data));
    }
    for (id, edges, data) in all_edges {
        graph_sections[id].edges = Edges::Decoded(edges);
        if let Some(data) = data {
            graph_sections[id].data = data;
        }
    }
    Ok(())
}

impl Context<'_, '_> {
    /// The edges of a `__thread_vars` section: 24-byte descriptors of
    /// thunk (`__tlv_bootstrap`, which the runtime provides), key and
    /// offset. The object relocates the offset word against the variable's
    /// initial value in the template; here it becomes the variable's offset
    /// in the load's block, and the key word gets the block's module id,
    /// so the thunk finds the variable as `__tls_get_addr(&key)` would.
    fn thread_local_descriptors(
        &self,
        raw: &Raw<'_>,
        section: &Section<'_>,
        edges: Vec<Edge>,
    ) -> Result<Vec<Edge>, LinkError> {
        if !section.size.is_multiple_of(24) {
            return Err(self.malformed(format!(
                "section {}: {:#x} bytes is not a whole number of 24-byte thread-local \
                 descriptors",
                raw.name, section.size
            )));
        }
        let mut out = Vec::with_capacity(edges.len() * 3 / 2);
        for edge in edges {
            if edge.offset % 24 != 16 {
                out.push(edge);
                continue;
            }
            let target = &self.symbols[edge.target];
            if edge.kind != crate::arch::machine::macho::UNSIGNED_64
                || !matches!(target.kind, SymbolKind::ThreadLocal | SymbolKind::Section)
            {
                return Err(self.malformed(format!(
                    "section {} offset {:#x}: a thread-local descriptor's offset must be an \
                     8-byte X86_64_RELOC_UNSIGNED against a thread-local initial value, not {} \
                     against `{}`",
                    raw.name, edge.offset, edge.kind.name, target.name
                )));
            }
            out.push(Edge::new(edge.offset - 8, TLV_KEY, edge.target, 0));
            out.push(Edge::new(edge.offset, TLV_OFFSET, edge.target, edge.addend));
        }
        Ok(out)
    }
}

/// What reading relocations needs of the parsed object.
pub(super) struct Context<'g, 'a> {
    pub(super) object: &'g str,
    pub(super) raws: &'g [Raw<'a>],
    pub(super) symbols: &'g [Symbol<'a>],
    /// The id of the first section symbol (the number of nlist entries).
    pub(super) nsyms: usize,
}

/// A relocation's target: its symbol, and for a non-extern relocation the
/// original address of the section it names (the relocated field then holds
/// a full original address, which the addend is rebased from).
#[derive(Clone, Copy)]
struct RelocTarget {
    symbol: SymbolId,
    section_addr: Option<u64>,
}

impl RelocTarget {
    fn section_addr(self) -> i128 {
        self.section_addr.map_or(0, i128::from)
    }
}

impl Context<'_, '_> {
    pub(super) fn malformed(&self, reason: String) -> LinkError {
        LinkError::Malformed {
            object: self.object.to_string(),
            reason,
        }
    }

    pub(super) fn site(&self, raw: &Raw, offset: u64) -> Site {
        Site {
            object: self.object.to_string(),
            section: raw.name.clone(),
            offset,
        }
    }

    /// The name of what a relocation refers to, for messages.
    fn target_name(&self, info: &macho::RelocationInfo) -> String {
        let index = info.r_symbolnum as usize;
        if info.r_extern {
            self.symbols.get(index).map_or("?", |s| s.name).to_string()
        } else if index == 0 {
            "*ABS*".to_string()
        } else {
            self.raws
                .get(index - 1)
                .map_or_else(|| "?".to_string(), |r| r.name.clone())
        }
    }

    fn unsupported_relocation(
        &self,
        raw: &Raw,
        info: &macho::RelocationInfo,
        reloc: String,
        why: String,
    ) -> LinkError {
        LinkError::UnsupportedRelocation(Box::new(UnsupportedRelocation {
            site: self.site(raw, u64::from(info.r_address)),
            reloc,
            symbol: self.target_name(info),
            why,
        }))
    }

    /// Resolves a relocation's `r_symbolnum`: a symbol index when extern, a
    /// 1-based section ordinal otherwise.
    fn target(
        &self,
        raw: &Raw,
        info: &macho::RelocationInfo,
        kind: &RelocKind,
    ) -> Result<RelocTarget, LinkError> {
        let site = || self.site(raw, u64::from(info.r_address));
        let index = info.r_symbolnum as usize;
        if info.r_extern {
            if index >= self.nsyms {
                return Err(self.malformed(format!(
                    "{}: {} symbol index {index} is out of range ({} symbols)",
                    site(),
                    kind.name,
                    self.nsyms
                )));
            }
            return Ok(RelocTarget {
                symbol: index,
                section_addr: None,
            });
        }
        if index == 0 {
            return Err(self.unsupported_relocation(
                raw,
                info,
                kind.name.to_string(),
                ": relocations against no section (R_ABS) are not supported".into(),
            ));
        }
        let Some(target) = self.raws.get(index - 1) else {
            return Err(self.malformed(format!(
                "{}: {} section ordinal {index} is out of range ({} sections)",
                site(),
                kind.name,
                self.raws.len()
            )));
        };
        let Some(section) = target.placed else {
            return Err(self.unsupported_relocation(
                raw,
                info,
                kind.name.to_string(),
                format!(": its target section {} is not loaded", target.name),
            ));
        };
        Ok(RelocTarget {
            symbol: self.nsyms + section,
            section_addr: Some(target.addr),
        })
    }

    /// The edges of one section's relocations, in the order they appear.
    fn section_edges(
        &self,
        raw: &Raw,
        bytes: &[u8],
        relocs: &[macho::Relocation<LittleEndian>],
    ) -> Result<Vec<Edge>, LinkError> {
        let mut edges = Vec::with_capacity(relocs.len());
        let mut index = 0;
        while index < relocs.len() {
            let info = relocs[index].info(LE);
            index += 1;
            if info.r_address & macho::R_SCATTERED != 0 {
                return Err(self.malformed(format!(
                    "section {}: relocation {}: scattered relocations do not exist on x86-64",
                    raw.name,
                    index - 1
                )));
            }
            let offset = u64::from(info.r_address);
            let site = || self.site(raw, offset);
            let (kind, n) = self.kind(raw, &info)?;
            let width = kind.encoding.size();
            let field = usize::try_from(offset)
                .ok()
                .and_then(|start| bytes.get(start..start.checked_add(width)?))
                .ok_or_else(|| {
                    self.malformed(format!(
                        "{}: {} does not fit in the section ({:#x} bytes)",
                        site(),
                        kind.name,
                        raw.size
                    ))
                })?;
            // The field's current content, sign-extended: REL addends.
            let content = i128::from(match *field {
                [a, b, c, d] => i64::from(i32::from_le_bytes([a, b, c, d])),
                [a, b, c, d, e, f, g, h] => i64::from_le_bytes([a, b, c, d, e, f, g, h]),
                _ => unreachable!("Mach-O x86-64 fields are 4 or 8 bytes"),
            });
            let place = i128::from(raw.addr) + i128::from(offset);
            let target = self.target(raw, &info, &kind)?;
            let (target, addend, minus) = match info.r_type {
                macho::X86_64_RELOC_UNSIGNED => {
                    // Non-extern: the field holds the target's original address.
                    (target.symbol, content - target.section_addr(), None)
                }
                macho::X86_64_RELOC_SIGNED
                | macho::X86_64_RELOC_SIGNED_1
                | macho::X86_64_RELOC_SIGNED_2
                | macho::X86_64_RELOC_SIGNED_4
                | macho::X86_64_RELOC_BRANCH => match target.section_addr {
                    // The assembler already folded -N into the content, so
                    // every extern form is relative to the field's end
                    // (ld64, LLVM JITLink).
                    None => (target.symbol, content - 4, None),
                    // Non-extern: the content is the displacement to the
                    // original target from the end of the instruction.
                    Some(section_addr) => {
                        let n = i128::from(n);
                        let original = place + 4 + n + content;
                        (
                            target.symbol,
                            original - i128::from(section_addr) - 4 - n,
                            None,
                        )
                    }
                },
                macho::X86_64_RELOC_GOT_LOAD
                | macho::X86_64_RELOC_GOT
                | macho::X86_64_RELOC_TLV => {
                    if target.section_addr.is_some() {
                        return Err(self.malformed(format!(
                            "{}: {} must refer to a symbol (r_extern = 1)",
                            site(),
                            kind.name
                        )));
                    }
                    (target.symbol, content - 4, None)
                }
                macho::X86_64_RELOC_SUBTRACTOR => {
                    // The subtrahend; the minuend is the UNSIGNED after it.
                    let pair = relocs.get(index).map(|r| r.info(LE));
                    let Some(unsigned) = pair.filter(|u| {
                        u.r_type == macho::X86_64_RELOC_UNSIGNED
                            && u.r_address == info.r_address
                            && u.r_length == info.r_length
                            && !u.r_pcrel
                    }) else {
                        return Err(self.malformed(format!(
                            "{}: X86_64_RELOC_SUBTRACTOR is not followed by an \
                             X86_64_RELOC_UNSIGNED of the same offset and length",
                            site()
                        )));
                    };
                    index += 1;
                    let minuend = self.target(raw, &unsigned, &kind)?;
                    // Non-extern references contribute their full original
                    // addresses to the content: take the minuend's section
                    // address out and put the subtrahend's back.
                    let addend = content - minuend.section_addr() + target.section_addr();
                    (minuend.symbol, addend, Some(target.symbol))
                }
                _ => unreachable!("macho_reloc knows no other linkable type"),
            };
            let addend = i64::try_from(addend).map_err(|_| {
                self.malformed(format!("{}: {} addend is out of range", site(), kind.name))
            })?;
            edges.push(match minus {
                None => Edge::new(offset, kind, target, addend),
                Some(minus) => {
                    Edge::difference(offset, kind, target, addend, minus).ok_or_else(|| {
                        self.malformed(format!(
                            "{}: subtrahend symbol {minus} is past the 32-bit symbol indices",
                            site()
                        ))
                    })?
                }
            });
        }
        Ok(edges)
    }

    /// The kind a relocation's type, pc-relative flag and length give it,
    /// and its N (the bytes between the field's end and the instruction's,
    /// for SIGNED_N).
    fn kind(&self, raw: &Raw, info: &macho::RelocationInfo) -> Result<(RelocKind, u8), LinkError> {
        let site = || self.site(raw, u64::from(info.r_address));
        Ok(
            match macho_reloc(info.r_type, info.r_pcrel, info.r_length) {
                Some(MachOReloc::Kind { kind, n }) => (kind, n),
                Some(MachOReloc::Unsupported(name, why)) => {
                    return Err(self.unsupported_relocation(
                        raw,
                        info,
                        name.to_string(),
                        format!(": {why}"),
                    ));
                }
                Some(MachOReloc::BadForm(name, form)) => {
                    return Err(self.malformed(format!(
                        "{}: {name} with r_pcrel {} and r_length {} (it must be {form})",
                        site(),
                        u8::from(info.r_pcrel),
                        info.r_length
                    )));
                }
                None => {
                    return Err(self.unsupported_relocation(
                        raw,
                        info,
                        format!("type {}", info.r_type.0),
                        format!(": unknown x86-64 Mach-O relocation type {}", info.r_type.0),
                    ));
                }
            },
        )
    }
}
