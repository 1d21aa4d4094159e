//! The Mach-O front-end: an x86-64 relocatable object (`MH_OBJECT`) becomes
//! a [`LinkGraph`].
//!
//! Symbol ids are Mach-O symbol-table (nlist) indices, so extern relocations
//! keep the object's own numbering. After them comes one synthetic symbol
//! per loaded section: non-extern relocations name a section (by its 1-based
//! ordinal) rather than a symbol, and target those.
//!
//! Mach-O relocations are REL: the addend is in the relocated field, and a
//! non-extern one holds the target's full address in the object's original
//! layout (sections keep the addresses the assembler gave them, `addr`).
//! The addends here are rebased onto the section symbols so that the graph
//! never needs the original layout again.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::Mutex;

use object::LittleEndian;
use object::macho;
use object::read::macho::{MachHeader, Nlist, Section as _, Segment as _};

use crate::arch::RelocKind;
use crate::arch::macho_x86_64::{
    EH_FRAME_DELTA32, EH_FRAME_DELTA64, EH_FRAME_POINTER32, EH_FRAME_POINTER64, MachOReloc,
    macho_reloc,
};
use crate::error::{LinkError, Site, UnsupportedRelocation};
use crate::graph::*;

type Header = macho::MachHeader64<LittleEndian>;
type SectionHeader = macho::Section64<LittleEndian>;

/// The only byte order accepted.
const LE: LittleEndian = LittleEndian;

/// Whether `data` starts like a 64-bit little-endian Mach-O file.
pub fn is_macho(data: &[u8]) -> bool {
    data.starts_with(&object::macho::MH_CIGAM_64.to_be_bytes())
}

/// A section header with what symbols and relocations need of it.
struct Raw<'a> {
    header: &'a SectionHeader,
    /// `segname,sectname`.
    name: String,
    /// The original address: symbol values and non-extern relocations are
    /// expressed in these.
    addr: u64,
    size: u64,
    /// The graph section, when the section is loaded.
    placed: Option<SectionId>,
}

impl Raw<'_> {
    fn end(&self) -> u64 {
        // Checked not to overflow when the table was built.
        self.addr + self.size
    }
}

/// Parses a Mach-O x86-64 relocatable object.
#[expect(clippy::too_many_lines, reason = "to be split into the Mach-O front-end phases")]
pub fn parse<'a>(object: &str, data: &'a [u8]) -> Result<LinkGraph<'a>, LinkError> {
    let malformed = |reason: String| LinkError::Malformed {
        object: object.to_string(),
        reason,
    };
    let unsupported = |reason: String| LinkError::UnsupportedObject {
        object: object.to_string(),
        reason,
    };
    let magic = data
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| malformed("too short for a Mach-O header".into()))?;
    match magic {
        macho::MH_MAGIC_64 => {}
        macho::MH_CIGAM_64 => {
            return Err(unsupported(
                "big-endian Mach-O is not supported; only 64-bit little-endian x86-64 objects"
                    .into(),
            ));
        }
        macho::MH_MAGIC | macho::MH_CIGAM => {
            return Err(unsupported(
                "32-bit Mach-O is not supported; only 64-bit little-endian x86-64 objects".into(),
            ));
        }
        macho::FAT_MAGIC | macho::FAT_CIGAM => {
            return Err(unsupported(
                "universal (fat) Mach-O files are not supported; extract the x86-64 slice \
                 (lipo -thin x86_64)"
                    .into(),
            ));
        }
        _ => return Err(malformed(format!("bad Mach-O magic {magic:#010x}"))),
    }
    let header = Header::parse(data, 0).map_err(|e| malformed(e.to_string()))?;
    if header.filetype(LE) != macho::MH_OBJECT {
        return Err(unsupported(format!(
            "Mach-O file type {} is not a relocatable object (MH_OBJECT); pass .o files",
            header.filetype(LE).0
        )));
    }
    if header.cputype(LE) != macho::CPU_TYPE_X86_64 {
        let cpu = header.cputype(LE);
        let named = if cpu == macho::CPU_TYPE_ARM64 {
            " (arm64)".to_string()
        } else {
            String::new()
        };
        return Err(unsupported(format!(
            "CPU type {:#x}{named} is not x86-64",
            cpu.0
        )));
    }

    // Section headers (numbered from 1 across all segment commands, in
    // order) and the symbol table.
    let mut headers: Vec<&SectionHeader> = Vec::new();
    let mut symtab = None;
    let mut commands = header
        .load_commands(LE, data, 0)
        .map_err(|e| malformed(format!("load commands: {e}")))?;
    while let Some(command) = commands
        .next()
        .map_err(|e| malformed(format!("load commands: {e}")))?
    {
        if let Some((segment, section_data)) = command
            .segment_64()
            .map_err(|e| malformed(format!("segment command: {e}")))?
        {
            let sections = segment
                .sections(LE, section_data)
                .map_err(|e| malformed(format!("segment command: {e}")))?;
            headers.extend(sections.iter());
        } else if command.cmd() == macho::LC_SEGMENT {
            return Err(malformed(
                "32-bit segment command (LC_SEGMENT) in a 64-bit file".into(),
            ));
        } else if let Some(command) = command
            .symtab()
            .map_err(|e| malformed(format!("symbol table command: {e}")))?
            && symtab.replace(command).is_some()
        {
            return Err(malformed("more than one symbol table (LC_SYMTAB)".into()));
        }
    }

    // Sections that are loaded become graph sections, in order.
    let mut raws: Vec<Raw<'a>> = Vec::with_capacity(headers.len());
    let mut graph_sections = Vec::new();
    for section in headers {
        let segname = String::from_utf8_lossy(section.segment_name()).into_owned();
        let sectname = String::from_utf8_lossy(section.name()).into_owned();
        let name = format!("{segname},{sectname}");
        let addr = section.addr(LE);
        let size = section.size(LE);
        if addr.checked_add(size).is_none() {
            return Err(malformed(format!(
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
            .map_err(|why| unsupported(format!("section {}: {why}", raw.name)))?
        else {
            raws.push(raw);
            continue;
        };
        let align_log2 = section.align(LE);
        if align_log2 > 15 {
            return Err(malformed(format!(
                "section {}: alignment 2^{align_log2} is too large",
                raw.name
            )));
        }
        let bytes: &'a [u8] = if protection == Protection::Zero {
            &[]
        } else {
            section
                .data(LE, data, u64::from(section.offset(LE)))
                .map_err(|e| malformed(format!("section {}: contents: {e}", raw.name)))?
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

    // Symbols, numbered as in the Mach-O symbol table.
    let (nlists, strings) = match symtab {
        Some(command) => {
            let table = command
                .symbols::<Header, _>(LE, data)
                .map_err(|e| malformed(format!("symbol table: {e}")))?;
            (table.symbols(), table.strings())
        }
        None => (&[][..], Default::default()),
    };
    // Mach-O symbols have no sizes: a symbol extends to the next symbol
    // address in its section. Those addresses, per section ordinal - 1.
    let mut marks: Vec<Vec<u64>> = vec![Vec::new(); raws.len()];
    for nlist in nlists {
        let n_type = nlist.n_type();
        if !n_type.is_stab()
            && n_type.typ() == macho::N_SECT
            && let Some(list) = marks.get_mut(usize::from(nlist.n_sect()).wrapping_sub(1))
        {
            list.push(nlist.n_value(LE));
        }
    }
    for list in &mut marks {
        list.sort_unstable();
        list.dedup();
    }
    let mut symbols = Vec::with_capacity(nlists.len() + graph_sections.len());
    for (index, nlist) in nlists.iter().enumerate() {
        let name_bytes = nlist
            .name(LE, strings)
            .map_err(|e| malformed(format!("symbol {index}: name: {e}")))?;
        let name = std::str::from_utf8(name_bytes)
            .map_err(|_| malformed(format!("symbol {index}: name is not UTF-8")))?;
        let n_type = nlist.n_type();
        let n_desc = nlist.n_desc(LE).0;
        let n_value = nlist.n_value(LE);
        if n_type.is_stab() {
            // Debugging entries: kept so that indices stay the object's.
            symbols.push(Symbol {
                name,
                binding: Binding::Local,
                visibility: Visibility::Default,
                kind: SymbolKind::Other,
                definition: Definition::Unplaced,
                size: 0,
                fallback: None,
            });
            continue;
        }
        let external = n_type.contains(macho::N_EXT);
        let mut binding = if external {
            Binding::Global
        } else {
            Binding::Local
        };
        let visibility = if n_type.is_pext() {
            Visibility::Hidden
        } else {
            Visibility::Default
        };
        let (definition, kind, size) = match n_type.typ() {
            macho::N_UNDF if external && n_value != 0 => {
                let align = 1u64 << ((n_desc >> 8) & 0x0f);
                (Definition::Common { align }, SymbolKind::Data, n_value)
            }
            macho::N_UNDF => {
                if n_desc & macho::N_WEAK_REF.0 != 0 {
                    binding = Binding::Weak;
                }
                (Definition::Undefined, SymbolKind::Other, 0)
            }
            macho::N_ABS => (Definition::Absolute(n_value), SymbolKind::Other, 0),
            macho::N_SECT => {
                let ordinal = usize::from(nlist.n_sect());
                let raw = ordinal
                    .checked_sub(1)
                    .and_then(|i| raws.get(i))
                    .ok_or_else(|| {
                        malformed(format!(
                            "symbol {name}: section ordinal {ordinal} is out of range \
                             (the object has {} sections)",
                            raws.len()
                        ))
                    })?;
                if n_value < raw.addr || n_value > raw.end() {
                    return Err(malformed(format!(
                        "symbol {name}: address {n_value:#x} is outside its section {} \
                         ({:#x}..{:#x})",
                        raw.name,
                        raw.addr,
                        raw.end()
                    )));
                }
                if n_desc & macho::N_SYMBOL_RESOLVER.0 != 0 {
                    return Err(unsupported(format!(
                        "symbol {name}: resolver functions (N_SYMBOL_RESOLVER) are not supported"
                    )));
                }
                if external && n_desc & macho::N_WEAK_DEF.0 != 0 {
                    binding = Binding::Weak;
                }
                let list = &marks[ordinal - 1];
                let next = list[list.partition_point(|&a| a <= n_value)..]
                    .first()
                    .copied()
                    .unwrap_or(raw.end());
                let size = next - n_value;
                match raw.placed {
                    Some(section) => {
                        let kind = if graph_sections[section].protection == Protection::Code {
                            SymbolKind::Function
                        } else {
                            SymbolKind::Data
                        };
                        let offset = n_value - raw.addr;
                        (Definition::Defined { section, offset }, kind, size)
                    }
                    None => (Definition::Unplaced, SymbolKind::Data, size),
                }
            }
            macho::N_INDR => {
                return Err(unsupported(format!(
                    "symbol {name}: indirect symbols (N_INDR) are not supported"
                )));
            }
            macho::N_PBUD => {
                return Err(unsupported(format!(
                    "symbol {name}: prebound undefined symbols (N_PBUD) are not supported"
                )));
            }
            other => {
                return Err(malformed(format!(
                    "symbol {name}: unknown symbol type {:#x}",
                    other.0
                )));
            }
        };
        symbols.push(Symbol {
            name,
            binding,
            visibility,
            kind,
            definition,
            size,
            fallback: None,
        });
    }
    // The section symbols that non-extern relocations target, in graph
    // section order: section `id` is symbol `nsyms + id`.
    let nsyms = symbols.len();
    for raw in &raws {
        if let Some(section) = raw.placed {
            debug_assert_eq!(nsyms + section, symbols.len());
            symbols.push(Symbol {
                name: intern(&raw.name),
                binding: Binding::Local,
                visibility: Visibility::Default,
                kind: SymbolKind::Section,
                definition: Definition::Defined { section, offset: 0 },
                size: 0,
                fallback: None,
            });
        }
    }

    // Relocations, attached to the sections they patch. Those of sections
    // that are not loaded (debug info, compact unwind) are never read.
    let cx = Context {
        object,
        raws: &raws,
        symbols: &symbols,
        nsyms,
    };
    let mut all_edges = Vec::with_capacity(graph_sections.len());
    for raw in &raws {
        let Some(id) = raw.placed else {
            continue;
        };
        let section = &graph_sections[id];
        let relocs = raw
            .header
            .relocations(LE, data)
            .map_err(|e| malformed(format!("relocations of {}: {e}", raw.name)))?;
        if !relocs.is_empty() && section.protection == Protection::Zero {
            return Err(malformed(format!(
                "section {}: a zero-fill section has relocations",
                raw.name
            )));
        }
        let mut edges = cx.section_edges(raw, &section.data, relocs)?;
        edges.sort_by_key(|e| e.offset);
        if section.role == SectionRole::UnwindFrames {
            edges.extend(cx.eh_frame_edges(raw, &section.data, &edges)?);
            edges.sort_by_key(|e| e.offset);
        }
        all_edges.push((id, edges));
    }
    for (id, edges) in all_edges {
        graph_sections[id].edges = Edges::Decoded(edges);
    }
    Ok(LinkGraph {
        object: object.to_string(),
        format: ObjectFormat::MachO,
        sections: graph_sections,
        symbols,
        groups: Vec::new(),
    })
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
        macho::S_THREAD_LOCAL_REGULAR
        | macho::S_THREAD_LOCAL_ZEROFILL
        | macho::S_THREAD_LOCAL_VARIABLES
        | macho::S_THREAD_LOCAL_VARIABLE_POINTERS
        | macho::S_THREAD_LOCAL_INIT_FUNCTION_POINTERS => {
            Some("thread-local storage is not supported yet")
        }
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

/// A `&str` that outlives the object for a section symbol's name, which
/// Mach-O does not store as one string (`segname,sectname`). Interned
/// process-wide, so each distinct name is allocated once however many
/// objects are loaded.
fn intern(name: &str) -> &'static str {
    static NAMES: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
    // The set is only ever inserted into, so a poisoned lock is still sound.
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(&interned) = names.get(name) {
        return interned;
    }
    let interned: &'static str = Box::leak(name.to_owned().into_boxed_str());
    names.insert(interned);
    interned
}

/// What reading relocations needs of the parsed object.
struct Context<'g, 'a> {
    object: &'g str,
    raws: &'g [Raw<'a>],
    symbols: &'g [Symbol<'a>],
    /// The id of the first section symbol (the number of nlist entries).
    nsyms: usize,
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
    fn malformed(&self, reason: String) -> LinkError {
        LinkError::Malformed {
            object: self.object.to_string(),
            reason,
        }
    }

    fn site(&self, raw: &Raw, offset: u64) -> Site {
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
    #[expect(clippy::too_many_lines, reason = "to be split into the Mach-O front-end phases")]
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
            let (kind, n) = match macho_reloc(info.r_type, info.r_pcrel, info.r_length) {
                Some(MachOReloc::Kind { kind, n }) => (kind, n),
                Some(MachOReloc::Unsupported(name, why)) => {
                    return Err(self.unsupported_relocation(
                        raw,
                        &info,
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
                        &info,
                        format!("type {}", info.r_type.0),
                        format!(": unknown x86-64 Mach-O relocation type {}", info.r_type.0),
                    ));
                }
            };
            let width = usize::from(kind.width);
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
                macho::X86_64_RELOC_GOT_LOAD | macho::X86_64_RELOC_GOT => {
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

    /// Edges for the `__eh_frame` pointers the assembler resolved itself.
    ///
    /// An FDE's `pc_begin` and LSDA pointers (and sometimes a CIE's
    /// personality) point at other sections of the same object, pc-relative,
    /// without a relocation: ld64 finds them by parsing `__eh_frame`. Once
    /// the sections are placed apart those values are wrong, so each
    /// pointer without an edge (`existing`, sorted by offset) gets one to
    /// the section that held its original target.
    fn eh_frame_edges(
        &self,
        raw: &Raw,
        bytes: &[u8],
        existing: &[Edge],
    ) -> Result<Vec<Edge>, LinkError> {
        let mut edges = Vec::new();
        // The CIEs read so far, by offset.
        let mut cies: Vec<(usize, Cie)> = Vec::new();
        let mut offset = 0usize;
        while offset + 4 <= bytes.len() {
            let malformed =
                |why: &str| self.malformed(format!("{}: {why}", self.site(raw, offset as u64)));
            let length = read_u32(bytes, offset).ok_or_else(|| malformed("truncated length"))?;
            if length == 0 {
                break; // terminator
            }
            if length == u32::MAX {
                return Err(malformed("64-bit DWARF records are not supported"));
            }
            let end = offset
                .checked_add(4 + length as usize)
                .filter(|&end| end <= bytes.len())
                .ok_or_else(|| malformed("record runs past the section"))?;
            let mut cursor = Cursor {
                data: &bytes[..end],
                pos: offset + 4,
            };
            let truncated = || malformed("truncated record");
            let id = cursor.u32().ok_or_else(truncated)?;
            let mut pointer = |cursor: &mut Cursor, encoding: u8| -> Result<(), LinkError> {
                let edge = self.eh_pointer(raw, cursor, encoding, existing)?;
                edges.extend(edge);
                Ok(())
            };
            if id == 0 {
                let version = cursor.u8().ok_or_else(truncated)?;
                let augmentation = cursor.cstr().ok_or_else(truncated)?;
                cursor.uleb().ok_or_else(truncated)?; // code alignment
                cursor.uleb().ok_or_else(truncated)?; // data alignment (SLEB128)
                if version == 1 {
                    cursor.u8().ok_or_else(truncated)?; // return address register
                } else {
                    cursor.uleb().ok_or_else(truncated)?;
                }
                let mut cie = Cie {
                    fde: DW_EH_PE_ABSPTR,
                    lsda: DW_EH_PE_OMIT,
                    augmented: augmentation.first() == Some(&b'z'),
                };
                if cie.augmented {
                    cursor.uleb().ok_or_else(truncated)?; // augmentation length
                    for &letter in &augmentation[1..] {
                        match letter {
                            b'P' => {
                                let encoding = cursor.u8().ok_or_else(truncated)?;
                                pointer(&mut cursor, encoding)?;
                            }
                            b'L' => cie.lsda = cursor.u8().ok_or_else(truncated)?,
                            b'R' => cie.fde = cursor.u8().ok_or_else(truncated)?,
                            b'S' | b'B' | b'G' => {}
                            // The rest cannot be parsed, and FDEs need none of it.
                            _ => break,
                        }
                    }
                }
                cies.push((offset, cie));
            } else {
                let cie_offset = (offset + 4)
                    .checked_sub(id as usize)
                    .ok_or_else(|| malformed("CIE pointer before the section"))?;
                let cie = cies
                    .iter()
                    .find(|&&(at, _)| at == cie_offset)
                    .map(|&(_, cie)| cie)
                    .ok_or_else(|| malformed("FDE refers to an unknown CIE"))?;
                pointer(&mut cursor, cie.fde)?; // pc_begin
                cursor.encoded(cie.fde).map_err(&malformed)?; // pc_range: a length
                if cie.augmented {
                    let length = cursor.uleb().ok_or_else(truncated)?;
                    if length > 0 {
                        pointer(&mut cursor, cie.lsda)?;
                    }
                }
            }
            offset = end;
        }
        Ok(edges)
    }

    /// The edge for the `encoding`-encoded pointer at the cursor (which it
    /// moves past), unless it already has one or needs none.
    fn eh_pointer(
        &self,
        raw: &Raw,
        cursor: &mut Cursor,
        encoding: u8,
        existing: &[Edge],
    ) -> Result<Option<Edge>, LinkError> {
        if encoding == DW_EH_PE_OMIT {
            return Ok(None);
        }
        let at = cursor.pos as u64;
        let failure = |why: String| self.malformed(format!("{}: {why}", self.site(raw, at)));
        let encoded = cursor
            .encoded(encoding)
            .map_err(|why| failure(why.into()))?;
        if existing.binary_search_by_key(&at, |e| e.offset).is_ok() {
            return Ok(None);
        }
        let unsupported = || LinkError::UnsupportedObject {
            object: self.object.to_string(),
            reason: format!(
                "{}: pointer encoding {encoding:#04x} without a relocation is not supported",
                self.site(raw, at)
            ),
        };
        let Encoded::Fixed { value, width } = encoded else {
            return Err(unsupported());
        };
        let (original, kind) = match (encoding & 0x70, width) {
            // A null absolute pointer stays null.
            (DW_EH_PE_ABSPTR, _) if value == 0 => return Ok(None),
            (DW_EH_PE_ABSPTR, 8) => (value, EH_FRAME_POINTER64),
            (DW_EH_PE_ABSPTR, 4) => (value, EH_FRAME_POINTER32),
            (DW_EH_PE_PCREL, 8) => (
                i128::from(raw.addr) + i128::from(at) + value,
                EH_FRAME_DELTA64,
            ),
            (DW_EH_PE_PCREL, 4) => (
                i128::from(raw.addr) + i128::from(at) + value,
                EH_FRAME_DELTA32,
            ),
            _ => return Err(unsupported()),
        };
        // The section that held the target; a pointer just past a
        // section's end belongs to it only when no section starts there.
        let loaded = || self.raws.iter().filter(|r| r.placed.is_some());
        let holder = loaded()
            .find(|r| (i128::from(r.addr)..i128::from(r.end())).contains(&original))
            .or_else(|| loaded().find(|r| i128::from(r.end()) == original));
        let Some(
            holder @ Raw {
                placed: Some(section),
                ..
            },
        ) = holder
        else {
            return Err(failure(format!(
                "pointer to {} is outside every loaded section",
                crate::error::signed_hex(original)
            )));
        };
        let addend = i64::try_from(original - i128::from(holder.addr))
            .map_err(|_| failure("pointer is out of range".into()))?;
        Ok(Some(Edge::new(at, kind, self.nsyms + section, addend)))
    }
}

// DW_EH_PE_* pointer encodings: the low nibble is the format, bits 4-6 the
// application (what the value is relative to).
const DW_EH_PE_ABSPTR: u8 = 0x00;
const DW_EH_PE_PCREL: u8 = 0x10;
const DW_EH_PE_OMIT: u8 = 0xff;

/// What FDEs need of their CIE.
#[derive(Clone, Copy)]
struct Cie {
    /// Encoding of `pc_begin` and `pc_range`.
    fde: u8,
    /// Encoding of the LSDA pointer.
    lsda: u8,
    /// Whether FDEs have augmentation data (a `z` augmentation).
    augmented: bool,
}

/// An encoded value as read.
enum Encoded {
    Fixed {
        value: i128,
        width: u8,
    },
    /// LEB128: never a pointer the front-end can patch.
    Leb,
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let field = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(field.try_into().ok()?))
}

/// Reads one `__eh_frame` record; reads fail at the record's end.
struct Cursor<'d> {
    data: &'d [u8],
    pos: usize,
}

impl<'d> Cursor<'d> {
    fn take(&mut self, n: usize) -> Option<&'d [u8]> {
        let bytes = self.data.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(bytes)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u32(&mut self) -> Option<u32> {
        let value = read_u32(self.data, self.pos)?;
        self.pos += 4;
        Some(value)
    }

    /// An unsigned LEB128 number (also skips a signed one); bits past 64
    /// are dropped.
    fn uleb(&mut self) -> Option<u64> {
        let mut value = 0u64;
        let mut shift = 0u32;
        loop {
            let byte = self.u8()?;
            if shift < 64 {
                value |= u64::from(byte & 0x7f) << shift;
            }
            shift = shift.saturating_add(7);
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
    }

    fn cstr(&mut self) -> Option<&'d [u8]> {
        let rest = self.data.get(self.pos..)?;
        let len = rest.iter().position(|&b| b == 0)?;
        self.pos += len + 1;
        Some(&rest[..len])
    }

    fn encoded(&mut self, encoding: u8) -> Result<Encoded, &'static str> {
        const TRUNCATED: &str = "truncated record";
        let fixed = |bytes: Option<&[u8]>, signed: bool| -> Result<Encoded, &'static str> {
            let bytes = bytes.ok_or(TRUNCATED)?;
            let mut raw = [0u8; 8];
            raw[..bytes.len()].copy_from_slice(bytes);
            let unsigned = u64::from_le_bytes(raw);
            let bits = bytes.len() as u32 * 8;
            let value = if bits == 64 {
                // Address-wide: pc-relative values wrap modulo 2^64
                // whether the encoding calls them signed or not.
                i128::from(unsigned as i64)
            } else if signed {
                // Sign-extend from the field's width.
                i128::from(((unsigned << (64 - bits)) as i64) >> (64 - bits))
            } else {
                i128::from(unsigned)
            };
            Ok(Encoded::Fixed {
                value,
                width: bytes.len() as u8,
            })
        };
        match encoding & 0x0f {
            0x00 | 0x04 => fixed(self.take(8), false), // absptr, udata8
            0x0c => fixed(self.take(8), true),         // sdata8
            0x03 => fixed(self.take(4), false),        // udata4
            0x0b => fixed(self.take(4), true),         // sdata4
            0x02 => fixed(self.take(2), false),        // udata2
            0x0a => fixed(self.take(2), true),         // sdata2
            0x01 | 0x09 => {
                self.uleb().ok_or(TRUNCATED)?; // uleb128, sleb128
                Ok(Encoded::Leb)
            }
            _ => Err("unknown pointer encoding"),
        }
    }
}

#[cfg(test)]
mod tests {
    //! Objects are built at test time by clang for `x86_64-apple-darwin`;
    //! each test first checks that the object has what it exercises (the
    //! relocation kinds, the section types), then checks the graph. Addends
    //! are checked twice: exactly, and by placing the sections somewhere
    //! else than the assembler did and computing what the linker would write.

    use super::*;
    use crate::arch::{Relax, RelocOp};

    /// Builds a Mach-O x86-64 object with clang (`lang` as its `-x` says).
    fn build(target: &str, lang: &str, source: &str, flags: &[&str]) -> Vec<u8> {
        crate::test_support::clang_object(target, lang, source, flags)
    }

    fn asm(source: &str) -> Vec<u8> {
        build("x86_64-apple-darwin", "assembler", source, &[])
    }

    fn c(source: &str) -> Vec<u8> {
        build("x86_64-apple-darwin", "c", source, &["-O2", "-nostdinc"])
    }

    fn graph(data: &[u8]) -> LinkGraph<'_> {
        parse("test.o", data).unwrap_or_else(|e| panic!("{e}"))
    }

    fn symbol(g: &LinkGraph, name: &str) -> SymbolId {
        g.symbols
            .iter()
            .position(|s| s.name == name && s.kind != SymbolKind::Section)
            .unwrap_or_else(|| panic!("no symbol {name}"))
    }

    fn section(g: &LinkGraph, name: &str) -> SectionId {
        g.sections
            .iter()
            .position(|s| s.name == name)
            .unwrap_or_else(|| panic!("no section {name}"))
    }

    /// The synthetic symbol of a section: what non-extern relocations target.
    fn section_symbol(g: &LinkGraph, name: &str) -> SymbolId {
        let id = section(g, name);
        let symbol = g
            .symbols
            .iter()
            .position(|s| {
                s.kind == SymbolKind::Section
                    && s.definition
                        == Definition::Defined {
                            section: id,
                            offset: 0,
                        }
            })
            .unwrap_or_else(|| panic!("no section symbol for {name}"));
        assert_eq!(g.symbols[symbol].name, name);
        symbol
    }

    fn edge_at(g: &LinkGraph, section_name: &str, offset: u64) -> Edge {
        let edges: Vec<Edge> = g.sections[section(g, section_name)]
            .edges
            .iter()
            .filter(|e| e.offset == offset)
            .collect();
        assert_eq!(
            edges.len(),
            1,
            "edges at {section_name}+{offset:#x}: {edges:?}"
        );
        edges[0]
    }

    fn kind_names(g: &LinkGraph) -> Vec<&'static str> {
        let mut names: Vec<&str> = g
            .sections
            .iter()
            .flat_map(|s| s.edges.iter().map(|e| *e.kind.name))
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    fn has_kinds(g: &LinkGraph, wanted: &[&str]) {
        let names = kind_names(g);
        for kind in wanted {
            assert!(names.contains(kind), "the object has no {kind}: {names:?}");
        }
    }

    /// A placement of the graph unlike the object's own layout: sections in
    /// reverse order, far apart, at odd distances; undefined symbols and GOT
    /// entries somewhere else again.
    struct Layout {
        bases: Vec<i128>,
    }

    impl Layout {
        fn new(g: &LinkGraph) -> Layout {
            let count = g.sections.len() as i128;
            let bases = (0..count)
                .map(|i| 0x4000_0000 + (count - i) * 0x12_3450 + i * 0x10)
                .collect();
            Layout { bases }
        }

        fn address(&self, g: &LinkGraph, id: SymbolId) -> i128 {
            match g.symbols[id].definition {
                Definition::Defined { section, offset } => self.bases[section] + offset as i128,
                Definition::Absolute(value) => value as i128,
                _ => 0x7100_0000 + id as i128 * 0x1000,
            }
        }

        fn named(&self, g: &LinkGraph, name: &str) -> i128 {
            self.address(g, symbol(g, name))
        }

        fn got_entry(&self, id: SymbolId) -> i128 {
            0x2000_0000 + id as i128 * 8
        }

        /// The value the linker writes for `edge` in section `section`.
        fn value(&self, g: &LinkGraph, section: SectionId, edge: &Edge) -> i128 {
            let s = self.address(g, edge.target);
            let a = i128::from(edge.addend);
            let p = self.bases[section] + edge.offset as i128;
            match edge.kind.op {
                RelocOp::Absolute => s + a,
                RelocOp::PcRelative | RelocOp::Branch => s + a - p,
                RelocOp::GotEntryPcRel { .. } => self.got_entry(edge.target) + a - p,
                RelocOp::Difference => s + a - self.address(g, edge.minus().expect("a minus")),
                op => panic!("unexpected {op:?}"),
            }
        }

        /// Where a symbol ends up once placed.
        fn at(&self, g: &LinkGraph, name: &str) -> (SectionId, i128) {
            match g.symbols[symbol(g, name)].definition {
                Definition::Defined { section, offset } => {
                    (section, self.bases[section] + offset as i128)
                }
                other => panic!("{name} is {other:?}"),
            }
        }
    }

    #[test]
    fn sections_get_protections_and_roles() {
        let data = asm(r#"
            .section __TEXT,__text,regular,pure_instructions
            .globl _f
        _f:
            .cfi_startproc
            ret
            .cfi_endproc
            .section __TEXT,__cstring,cstring_literals
            .asciz "hi"
            .section __TEXT,__const
            .p2align 4
        _tc: .quad 1
            .section __DATA,__data
        _d: .quad 2
            .section __DATA,__const
        _dc: .quad _f
            .section __DATA_CONST,__const
        _dcc: .quad 3
            .section __DATA,__mod_init_func,mod_init_funcs
            .quad _f
            .section __DATA,__mod_term_func,mod_term_funcs
            .quad _f
            .zerofill __DATA,__bss,_z,64,5
            .section __DWARF,__debug_str,regular,debug
        _dbg: .asciz "x"
            .section __LD,__compact_unwind,regular,debug
            .quad _f
            .section __DATA,__llvm_addrsig
            .byte 0
        "#);
        let g = graph(&data);
        assert_eq!(g.format, ObjectFormat::MachO);
        assert!(g.groups.is_empty());
        let shape: Vec<(&str, Protection, SectionRole)> = g
            .sections
            .iter()
            .map(|s| (&*s.name, s.protection, s.role))
            .collect();
        let init = SectionRole::Initializers {
            priority: None,
            reversed: false,
        };
        let fini = SectionRole::Finalizers {
            priority: None,
            reversed: false,
        };
        use Protection::*;
        use SectionRole::*;
        assert_eq!(
            shape,
            [
                ("__TEXT,__text", Code, Plain),
                ("__TEXT,__cstring", ReadOnly, Plain),
                ("__TEXT,__const", ReadOnly, Plain),
                ("__DATA,__data", Data, Plain),
                ("__DATA,__const", ReadOnly, Plain),
                ("__DATA_CONST,__const", ReadOnly, Plain),
                ("__DATA,__mod_init_func", ReadOnly, init),
                ("__DATA,__mod_term_func", ReadOnly, fini),
                ("__DATA,__bss", Zero, Plain),
                ("__TEXT,__eh_frame", ReadOnly, UnwindFrames),
            ]
        );
        let bss = &g.sections[section(&g, "__DATA,__bss")];
        assert_eq!((bss.size, bss.align, bss.data.len()), (64, 32, 0));
        assert_eq!(g.sections[section(&g, "__TEXT,__const")].align, 16);
        assert_eq!(&*g.sections[section(&g, "__TEXT,__cstring")].data, b"hi\0");
        // A symbol in a debug section is not placed.
        assert_eq!(
            g.symbols[symbol(&g, "_dbg")].definition,
            Definition::Unplaced
        );
        // One section symbol per loaded section, after the nlist symbols.
        let first = g.symbols.len() - g.sections.len();
        for (id, s) in g.sections.iter().enumerate() {
            let sym = &g.symbols[first + id];
            assert_eq!(sym.name, s.name);
            assert_eq!(sym.kind, SymbolKind::Section);
            assert_eq!(sym.binding, Binding::Local);
            assert_eq!(
                sym.definition,
                Definition::Defined {
                    section: id,
                    offset: 0
                }
            );
        }
        // The initializer pointer points at _f.
        let init_edge = edge_at(&g, "__DATA,__mod_init_func", 0);
        assert_eq!(
            (*init_edge.kind.name, init_edge.target, init_edge.addend),
            ("X86_64_RELOC_UNSIGNED", symbol(&g, "_f"), 0)
        );
        // The relocations of sections that are not loaded are never read:
        // a nonsensical one in __compact_unwind changes nothing.
        let at = reloc_at(&data, "__LD,__compact_unwind", 0);
        let (address, word1) = read_reloc(&data, at);
        let mut corrupted = data.clone();
        write_reloc(&mut corrupted, at, (address, with_type(word1, 15)));
        assert_eq!(graph(&corrupted).sections.len(), g.sections.len());
    }

    #[test]
    fn symbols_bindings_visibility_and_sizes() {
        let data = asm(r#"
            .section __TEXT,__text,regular,pure_instructions
            .globl _g1
        _g1: nop
        _l1: nop
            nop
            .private_extern _h1
            .globl _h1
        _h1: ret
            .globl _w1
            .weak_definition _w1
        _w1: ret
            .globl _hw
            .private_extern _hw
            .weak_definition _hw
        _hw: call _u
            call _wr
            .weak_reference _wr
            .comm _c, 16, 4
            .lcomm _lc, 8, 3
            .globl _abs
            .set _abs, 0x1234
            .section __DATA,__data
        _dd: .quad 0
        _dd2: .long 0
        "#);
        let g = graph(&data);
        let sym = |name| &g.symbols[symbol(&g, name)];
        let text = section(&g, "__TEXT,__text");
        let check = |name, binding, visibility, kind, definition, size| {
            let s = sym(name);
            assert_eq!(
                (
                    s.binding,
                    s.visibility,
                    s.kind,
                    s.definition,
                    s.size,
                    s.fallback
                ),
                (binding, visibility, kind, definition, size, None),
                "{name}"
            );
        };
        use Binding::*;
        use SymbolKind::*;
        use Visibility::*;
        let at = |offset| Definition::Defined {
            section: text,
            offset,
        };
        check("_g1", Global, Default, Function, at(0), 1);
        check("_l1", Local, Default, Function, at(1), 2);
        check("_h1", Global, Hidden, Function, at(3), 1);
        check("_w1", Weak, Default, Function, at(4), 1);
        // The last symbol runs to the section end: two 5-byte calls.
        check("_hw", Weak, Hidden, Function, at(5), 10);
        check("_u", Global, Default, Other, Definition::Undefined, 0);
        check("_wr", Weak, Default, Other, Definition::Undefined, 0);
        check(
            "_c",
            Global,
            Default,
            Data,
            Definition::Common { align: 16 },
            16,
        );
        check(
            "_abs",
            Global,
            Default,
            Other,
            Definition::Absolute(0x1234),
            0,
        );
        let data_section = section(&g, "__DATA,__data");
        check(
            "_dd",
            Local,
            Default,
            Data,
            Definition::Defined {
                section: data_section,
                offset: 0,
            },
            8,
        );
        check(
            "_dd2",
            Local,
            Default,
            Data,
            Definition::Defined {
                section: data_section,
                offset: 8,
            },
            4,
        );
        let bss = section(&g, "__DATA,__bss");
        assert_eq!(g.sections[bss].protection, Protection::Zero);
        check(
            "_lc",
            Local,
            Default,
            Data,
            Definition::Defined {
                section: bss,
                offset: 0,
            },
            8,
        );
        // Names keep their underscore.
        assert!(g.symbols.iter().any(|s| s.name == "_g1"));
        assert!(!g.symbols.iter().any(|s| s.name == "g1"));
        // The two calls: BRANCH against the undefined symbols.
        has_kinds(&g, &["X86_64_RELOC_BRANCH"]);
        assert_eq!(edge_at(&g, "__TEXT,__text", 6).target, symbol(&g, "_u"));
        assert_eq!(edge_at(&g, "__TEXT,__text", 11).target, symbol(&g, "_wr"));
    }

    /// Both kinds of target for the pc-relative and data relocations: an
    /// extern symbol, and an `L` label in another section, which the
    /// assembler refers to by section (non-extern) when no symbol precedes
    /// it there.
    const TARGETS: &str = r#"
            .section __DATA,__const
        Lpad: .quad 0
        Lloc: .quad 7
        Lt2: .quad 0
        m_after: .quad 0
    "#;

    #[test]
    fn signed_relocations_extern_and_section_relative() {
        let data = asm(&format!(
            r#"
            .section __TEXT,__text,regular,pure_instructions
            .globl _f
        _f:
            movl $1, _x(%rip)
        e_s4x:
            movb $1, _x(%rip)
        e_s1x:
            movw $1, _x(%rip)
        e_s2x:
            leaq _x+8(%rip), %rax
        e_sx:
            movl $1, Lloc(%rip)
        e_s4l:
            movb $1, Lloc(%rip)
        e_s1l:
            movw $1, Lloc(%rip)
        e_s2l:
            leaq Lloc+8(%rip), %rax
        e_sl:
            movl $1, Lloc+3(%rip)
        e_s1l3:
            ret
            {TARGETS}
        "#
        ));
        let g = graph(&data);
        has_kinds(
            &g,
            &[
                "X86_64_RELOC_SIGNED",
                "X86_64_RELOC_SIGNED_1",
                "X86_64_RELOC_SIGNED_2",
                "X86_64_RELOC_SIGNED_4",
            ],
        );
        let layout = Layout::new(&g);
        let x = symbol(&g, "_x");
        let consts = section_symbol(&g, "__DATA,__const");
        // Lloc is 16 bytes before m_after.
        let lloc = layout.named(&g, "m_after") - 16;
        let xa = layout.named(&g, "_x");
        // (label after the instruction, immediate bytes after the field,
        // kind, target, addend, where the instruction points)
        let cases = [
            ("e_s4x", 4, "X86_64_RELOC_SIGNED_4", x, -8, xa),
            ("e_s1x", 1, "X86_64_RELOC_SIGNED_1", x, -5, xa),
            ("e_s2x", 2, "X86_64_RELOC_SIGNED_2", x, -6, xa),
            ("e_sx", 0, "X86_64_RELOC_SIGNED", x, 4, xa + 8),
            // Lloc is at offset 8 of __DATA,__const: 8 - 4 - N.
            ("e_s4l", 4, "X86_64_RELOC_SIGNED_4", consts, 0, lloc),
            ("e_s1l", 1, "X86_64_RELOC_SIGNED_1", consts, 3, lloc),
            ("e_s2l", 2, "X86_64_RELOC_SIGNED_2", consts, 2, lloc),
            ("e_sl", 0, "X86_64_RELOC_SIGNED", consts, 12, lloc + 8),
            // The assembler picks SIGNED_N by the constant, not by the
            // instruction: Lloc+3 after a 4-byte immediate is SIGNED_1.
            ("e_s1l3", 4, "X86_64_RELOC_SIGNED_1", consts, 3, lloc + 3),
        ];
        for (end, imm, name, target, addend, destination) in cases {
            let (text, end_address) = layout.at(&g, end);
            let end_offset = match g.symbols[symbol(&g, end)].definition {
                Definition::Defined { offset, .. } => offset,
                _ => unreachable!(),
            };
            let edge = edge_at(&g, "__TEXT,__text", end_offset - 4 - imm);
            assert_eq!(
                (
                    *edge.kind.name,
                    edge.kind.op,
                    edge.target,
                    edge.addend,
                    edge.minus()
                ),
                (name, RelocOp::PcRelative, target, addend, None),
                "{end}"
            );
            assert_eq!(
                layout.value(&g, text, &edge),
                destination - end_address,
                "{end}: the displacement"
            );
        }
    }

    #[test]
    fn branch_got_load_and_got() {
        let data = asm(r#"
            .section __TEXT,__text,regular,pure_instructions
            .globl _f
        _f:
            call _g
        e_br:
            call Lfar
        e_brl:
            movq _y@GOTPCREL(%rip), %rax
        e_gl:
            addq _y@GOTPCREL(%rip), %rax
        e_got:
            ret
            .section __TEXT,__text2,regular,pure_instructions
            ret
        Lfar:
            ret
        "#);
        let g = graph(&data);
        has_kinds(
            &g,
            &[
                "X86_64_RELOC_BRANCH",
                "X86_64_RELOC_GOT_LOAD",
                "X86_64_RELOC_GOT",
            ],
        );
        let layout = Layout::new(&g);
        let (text, e_br) = layout.at(&g, "e_br");
        let (_, e_brl) = layout.at(&g, "e_brl");
        let (_, e_gl) = layout.at(&g, "e_gl");
        let (_, e_got) = layout.at(&g, "e_got");
        let y = symbol(&g, "_y");

        let call = edge_at(&g, "__TEXT,__text", 1);
        assert_eq!(
            (*call.kind.name, call.kind.op, call.target, call.addend),
            ("X86_64_RELOC_BRANCH", RelocOp::Branch, symbol(&g, "_g"), -4)
        );
        assert_eq!(layout.value(&g, text, &call), layout.named(&g, "_g") - e_br);
        // A call to a label in another code section: by section ordinal.
        let local = edge_at(&g, "__TEXT,__text", 6);
        let text2 = section_symbol(&g, "__TEXT,__text2");
        assert_eq!(
            (*local.kind.name, local.target, local.addend),
            ("X86_64_RELOC_BRANCH", text2, 1 - 4)
        );
        assert_eq!(
            layout.value(&g, text, &local),
            layout.address(&g, text2) + 1 - e_brl
        );

        let load = edge_at(&g, "__TEXT,__text", 13);
        assert_eq!(
            (*load.kind.name, load.kind.op, load.target, load.addend),
            (
                "X86_64_RELOC_GOT_LOAD",
                RelocOp::GotEntryPcRel {
                    relax: Relax::RexMov
                },
                y,
                -4
            )
        );
        assert_eq!(layout.value(&g, text, &load), layout.got_entry(y) - e_gl);
        let got = edge_at(&g, "__TEXT,__text", 20);
        assert_eq!(
            (*got.kind.name, got.kind.op, got.target, got.addend),
            (
                "X86_64_RELOC_GOT",
                RelocOp::GotEntryPcRel { relax: Relax::No },
                y,
                -4
            )
        );
        assert_eq!(layout.value(&g, text, &got), layout.got_entry(y) - e_got);
        assert!(
            g.sections
                .iter()
                .flat_map(|s| &s.edges)
                .all(|e| e.minus().is_none())
        );
    }

    #[test]
    fn unsigned_relocations_extern_and_section_relative() {
        let data = asm(&format!(
            r#"
            .section __TEXT,__text,regular,pure_instructions
            .globl _f
        _f: ret
            .section __DATA,__data
            .p2align 3
        _d:
            .quad _x
            .quad _x + 12
            .long _x
            .long _x + 3
            .quad Lloc + 4
            .long Lloc
            .quad Lloc - 8
            {TARGETS}
        "#
        ));
        let g = graph(&data);
        has_kinds(&g, &["X86_64_RELOC_UNSIGNED"]);
        let layout = Layout::new(&g);
        let x = symbol(&g, "_x");
        let consts = section_symbol(&g, "__DATA,__const");
        let lloc = layout.named(&g, "m_after") - 16;
        let xa = layout.named(&g, "_x");
        let cases = [
            (0, 8, x, 0, xa),
            (8, 8, x, 12, xa + 12),
            (16, 4, x, 0, xa),
            (20, 4, x, 3, xa + 3),
            // Lloc is at offset 8 of __DATA,__const.
            (24, 8, consts, 12, lloc + 4),
            (32, 4, consts, 8, lloc),
            (36, 8, consts, 0, lloc - 8),
        ];
        let data_section = section(&g, "__DATA,__data");
        assert_eq!(g.sections[data_section].edges.len(), cases.len());
        for (offset, width, target, addend, value) in cases {
            let edge = edge_at(&g, "__DATA,__data", offset);
            let check = if width == 8 {
                crate::arch::Check::Wrap
            } else {
                crate::arch::Check::Unsigned
            };
            assert_eq!(
                (
                    *edge.kind.name,
                    edge.kind.op,
                    edge.kind.width,
                    edge.kind.check,
                    edge.target,
                    edge.addend,
                    edge.minus()
                ),
                (
                    "X86_64_RELOC_UNSIGNED",
                    RelocOp::Absolute,
                    width,
                    check,
                    target,
                    addend,
                    None
                ),
                "offset {offset}"
            );
            assert_eq!(
                layout.value(&g, data_section, &edge),
                value,
                "offset {offset}"
            );
        }
    }

    #[test]
    fn subtractor_pairs() {
        let data = asm(&format!(
            r#"
            .section __TEXT,__text,regular,pure_instructions
            .globl _f
        _f: ret
            .section __DATA,__data
            .p2align 3
        _d:
            .quad _a - _b
            .long _a - _b
            .long _a - _b + 5
            .quad Lloc - _d
            .quad _f - Lt2
            .long _f - Lt2 + 2
            .section __TEXT,__const
        _b: .quad 2
            {TARGETS}
        _a: .quad 1
        "#
        ));
        let g = graph(&data);
        has_kinds(&g, &["X86_64_RELOC_SUBTRACTOR"]);
        let layout = Layout::new(&g);
        let data_section = section(&g, "__DATA,__data");
        let (a, b, d, f) = (
            symbol(&g, "_a"),
            symbol(&g, "_b"),
            symbol(&g, "_d"),
            symbol(&g, "_f"),
        );
        let consts = section_symbol(&g, "__DATA,__const");
        let addr = |name| layout.named(&g, name);
        let lloc = addr("m_after") - 16;
        let lt2 = addr("m_after") - 8;
        // (offset, width, minuend, subtrahend, addend, value)
        let cases = [
            (0, 8, a, b, 0, addr("_a") - addr("_b")),
            (8, 4, a, b, 0, addr("_a") - addr("_b")),
            (12, 4, a, b, 5, addr("_a") - addr("_b") + 5),
            // Lloc: offset 8 of __DATA,__const.
            (16, 8, consts, d, 8, lloc - addr("_d")),
            // Lt2: offset 16 of __DATA,__const.
            (24, 8, f, consts, -16, addr("_f") - lt2),
            (32, 4, f, consts, -14, addr("_f") - lt2 + 2),
        ];
        assert_eq!(g.sections[data_section].edges.len(), cases.len());
        for (offset, width, minuend, subtrahend, addend, value) in cases {
            let edge = edge_at(&g, "__DATA,__data", offset);
            let check = if width == 8 {
                crate::arch::Check::Wrap
            } else {
                crate::arch::Check::Signed
            };
            assert_eq!(
                (
                    *edge.kind.name,
                    edge.kind.op,
                    edge.kind.width,
                    edge.kind.check,
                    edge.target,
                    edge.minus(),
                    edge.addend
                ),
                (
                    "X86_64_RELOC_SUBTRACTOR",
                    RelocOp::Difference,
                    width,
                    check,
                    minuend,
                    Some(subtrahend),
                    addend
                ),
                "offset {offset}"
            );
            assert_eq!(
                layout.value(&g, data_section, &edge),
                value,
                "offset {offset}"
            );
        }
    }

    #[test]
    fn eh_frame_pointers_without_relocations_get_edges() {
        let data = asm(r#"
            .section __TEXT,__text,regular,pure_instructions
            .globl _f1
        _f1:
            .cfi_startproc
            .cfi_personality 155, ___gxx_personality_v0
            .cfi_lsda 16, Lexc
            pushq %rbp
            .cfi_def_cfa_offset 16
            popq %rbp
            ret
            .cfi_endproc
            .globl _f2
        _f2:
            .cfi_startproc
            ret
            .cfi_endproc
            .section __TEXT,__text_cold,regular,pure_instructions
        _f3:
            .cfi_startproc
            ret
            .cfi_endproc
            .section __TEXT,__gcc_except_tab
        Lexc:
            .byte 0xff, 0x9b
        m_exc_after:
        "#);
        let g = graph(&data);
        let eh = section(&g, "__TEXT,__eh_frame");
        assert_eq!(g.sections[eh].role, SectionRole::UnwindFrames);
        let layout = Layout::new(&g);
        // The personality has its relocation (a GOT reference)...
        let personality = symbol(&g, "___gxx_personality_v0");
        let got: Vec<Edge> = g.sections[eh]
            .edges
            .iter()
            .filter(|e| *e.kind.name == "X86_64_RELOC_GOT")
            .collect();
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].target, got[0].addend), (personality, 0));
        // ... pc_begin and the LSDA pointer have none: they get edges to
        // where they pointed.
        let mut implicit: Vec<i128> = g.sections[eh]
            .edges
            .iter()
            .filter(|e| e.kind == EH_FRAME_DELTA64)
            .map(|e| {
                let p = layout.bases[eh] + e.offset as i128;
                layout.value(&g, eh, &e) + p
            })
            .collect();
        implicit.sort_unstable();
        let mut expected = vec![
            layout.named(&g, "_f1"),
            layout.named(&g, "_f2"),
            layout.named(&g, "_f3"),
            layout.named(&g, "m_exc_after") - 2,
        ];
        expected.sort_unstable();
        assert_eq!(implicit, expected);
        // The first FDE follows the CIE; its pc_begin is 8 bytes in.
        let cie_length = u32::from_le_bytes(g.sections[eh].data[..4].try_into().unwrap());
        let fde = u64::from(cie_length) + 4;
        let pc_begin = edge_at(&g, "__TEXT,__eh_frame", fde + 8);
        assert_eq!(pc_begin.kind, EH_FRAME_DELTA64);
        assert_eq!(pc_begin.target, section_symbol(&g, "__TEXT,__text"));
    }

    #[test]
    fn a_c_object_with_initializers_and_weak_symbols() {
        let data = c(r#"
            extern int g(int);
            int counter;
            static int sx = 3;
            __attribute__((weak)) int wk(void) { return 1; }
            extern int wref(void) __attribute__((weak_import));
            __attribute__((visibility("hidden"))) int hid = 5;
            int *pp = &sx;
            extern void hook(void);
            // Calls out, so that the compiler cannot run it at compile time.
            __attribute__((constructor)) static void init(void) { hook(); }
            int f(int x) { if (wref) wref(); return g(x) + sx + counter + hid; }
        "#);
        let g = graph(&data);
        has_kinds(
            &g,
            &[
                "X86_64_RELOC_UNSIGNED",
                "X86_64_RELOC_SIGNED",
                "X86_64_RELOC_BRANCH",
            ],
        );
        let init = section(&g, "__DATA,__mod_init_func");
        assert_eq!(
            g.sections[init].role,
            SectionRole::Initializers {
                priority: None,
                reversed: false
            }
        );
        assert_eq!(g.sections[init].edges.len(), 1);
        let sym = |name| &g.symbols[symbol(&g, name)];
        assert_eq!(sym("_wk").binding, Binding::Weak);
        assert_eq!(sym("_wk").kind, SymbolKind::Function);
        assert_eq!(sym("_hid").visibility, Visibility::Hidden);
        assert_eq!(sym("_wref").binding, Binding::Weak);
        assert_eq!(sym("_wref").definition, Definition::Undefined);
        assert_eq!(sym("_sx").binding, Binding::Local);
        assert_eq!(sym("_sx").kind, SymbolKind::Data);
        // Every FDE got its pc_begin edge.
        let eh = section(&g, "__TEXT,__eh_frame");
        assert!(
            g.sections[eh]
                .edges
                .iter()
                .any(|e| e.kind == EH_FRAME_DELTA64)
        );
    }

    /// Where the `index`th relocation of a section is in the file.
    fn reloc_at(data: &[u8], section_name: &str, index: usize) -> usize {
        let header = Header::parse(data, 0).unwrap();
        let mut commands = header.load_commands(LE, data, 0).unwrap();
        while let Some(command) = commands.next().unwrap() {
            if let Some((segment, section_data)) = command.segment_64().unwrap() {
                for s in segment.sections(LE, section_data).unwrap() {
                    let name = format!(
                        "{},{}",
                        String::from_utf8_lossy(s.segment_name()),
                        String::from_utf8_lossy(s.name())
                    );
                    if name == section_name {
                        assert!(index < s.nreloc(LE) as usize);
                        return s.reloff(LE) as usize + index * 8;
                    }
                }
            }
        }
        panic!("no section {section_name}");
    }

    /// The relocation as stored: (r_address, r_word1).
    fn read_reloc(data: &[u8], at: usize) -> (u32, u32) {
        (
            u32::from_le_bytes(data[at..at + 4].try_into().unwrap()),
            u32::from_le_bytes(data[at + 4..at + 8].try_into().unwrap()),
        )
    }

    fn write_reloc(data: &mut [u8], at: usize, (address, word1): (u32, u32)) {
        data[at..at + 4].copy_from_slice(&address.to_le_bytes());
        data[at + 4..at + 8].copy_from_slice(&word1.to_le_bytes());
    }

    fn with_type(word1: u32, r_type: u32) -> u32 {
        word1 & 0x0fff_ffff | r_type << 28
    }

    fn error_of(data: &[u8]) -> LinkError {
        match parse("test.o", data) {
            Ok(_) => panic!("the corrupted object parsed"),
            Err(e) => e,
        }
    }

    fn assert_malformed(data: &[u8], needle: &str) {
        let error = error_of(data);
        assert!(
            matches!(error, LinkError::Malformed { .. }) && error.to_string().contains(needle),
            "expected a malformed object ({needle}), got: {error}"
        );
    }

    #[test]
    fn corrupt_relocations_are_errors() {
        let original = asm(r#"
            .section __TEXT,__text,regular,pure_instructions
            .globl _f
        _f:
            leaq _x(%rip), %rax
            movq _y@GOTPCREL(%rip), %rax
            ret
            .section __DATA,__data
        _d:
            .quad _a - _d
        _a: .quad 0
        "#);
        {
            let g = graph(&original);
            has_kinds(
                &g,
                &[
                    "X86_64_RELOC_SIGNED",
                    "X86_64_RELOC_GOT_LOAD",
                    "X86_64_RELOC_SUBTRACTOR",
                ],
            );
        }
        // Relocations are listed last to first: __text's 1 is the leaq.
        let signed = reloc_at(&original, "__TEXT,__text", 1);
        let got_load = reloc_at(&original, "__TEXT,__text", 0);
        let subtractor = reloc_at(&original, "__DATA,__data", 0);
        let unsigned = reloc_at(&original, "__DATA,__data", 1);
        let (address, word1) = read_reloc(&original, signed);
        assert_eq!(word1 >> 28, 1, "X86_64_RELOC_SIGNED");
        let corrupt = |at: usize, reloc: (u32, u32)| {
            let mut data = original.clone();
            write_reloc(&mut data, at, reloc);
            data
        };

        // A length the type never has (8 bytes instead of 4).
        let data = corrupt(signed, (address, word1 | 3 << 25));
        assert_malformed(&data, "X86_64_RELOC_SIGNED with r_pcrel 1 and r_length 3");
        // Not pc-relative.
        let data = corrupt(signed, (address, word1 & !(1 << 24)));
        assert_malformed(&data, "X86_64_RELOC_SIGNED with r_pcrel 0");
        // Past the section's end.
        let data = corrupt(signed, (0x1000, word1));
        assert_malformed(&data, "does not fit in the section");
        // The last 4 bytes of the section hold no whole 4-byte field either.
        let data = corrupt(signed, (0x0e, word1));
        assert_malformed(&data, "does not fit in the section");
        // A symbol index past the table.
        let data = corrupt(signed, (address, word1 & 0xff00_0000 | 0x00ff_fff0));
        assert_malformed(&data, "symbol index");
        // A section ordinal past the table (non-extern).
        let data = corrupt(signed, (address, word1 & 0xf700_0000 | 200));
        assert_malformed(&data, "section ordinal 200 is out of range");
        // Section ordinal 0 (R_ABS).
        let data = corrupt(signed, (address, word1 & 0xf700_0000));
        assert!(matches!(
            error_of(&data),
            LinkError::UnsupportedRelocation(ref u) if u.why.contains("R_ABS")
        ));
        // Scattered.
        let data = corrupt(signed, (address | macho::R_SCATTERED, word1));
        assert_malformed(&data, "scattered");
        // A TLV reference.
        let data = corrupt(signed, (address, with_type(word1, 9)));
        match error_of(&data) {
            LinkError::UnsupportedRelocation(u) => {
                assert_eq!(u.reloc, "X86_64_RELOC_TLV");
                assert_eq!(u.why, ": thread-local storage is not supported yet");
                assert_eq!(u.symbol, "_x");
                assert_eq!(u.site.section, "__TEXT,__text");
            }
            other => panic!("{other}"),
        }
        // A type x86-64 does not define.
        let data = corrupt(signed, (address, with_type(word1, 12)));
        match error_of(&data) {
            LinkError::UnsupportedRelocation(u) => {
                assert!(
                    u.why.contains("unknown x86-64 Mach-O relocation type 12"),
                    "{}",
                    u.why
                );
            }
            other => panic!("{other}"),
        }
        // A GOT load must name a symbol.
        let (got_address, got_word1) = read_reloc(&original, got_load);
        let data = corrupt(got_load, (got_address, got_word1 & 0xf700_0000 | 1));
        assert_malformed(&data, "must refer to a symbol");
        // A SUBTRACTOR without its UNSIGNED.
        let (sub_address, sub_word1) = read_reloc(&original, subtractor);
        assert_eq!(sub_word1 >> 28, 5, "X86_64_RELOC_SUBTRACTOR");
        let (un_address, un_word1) = read_reloc(&original, unsigned);
        assert_eq!(un_word1 >> 28, 0, "X86_64_RELOC_UNSIGNED");
        let data = corrupt(
            unsigned,
            (un_address, with_type(un_word1, 1) | 1 << 24 | 2 << 25),
        );
        assert_malformed(&data, "not followed by an X86_64_RELOC_UNSIGNED");
        let data = corrupt(unsigned, (un_address + 8, un_word1));
        assert_malformed(&data, "not followed by an X86_64_RELOC_UNSIGNED");
        let data = corrupt(unsigned, (un_address, un_word1 & !(3 << 25) | 2 << 25));
        assert_malformed(&data, "not followed by an X86_64_RELOC_UNSIGNED");
        // SUBTRACTOR as the last relocation of the section.
        let mut data = corrupt(subtractor, read_reloc(&original, unsigned));
        write_reloc(&mut data, unsigned, (sub_address, sub_word1));
        assert_malformed(&data, "not followed by an X86_64_RELOC_UNSIGNED");
    }

    /// Where the `index`th nlist entry is in the file.
    fn nlist_at(data: &[u8], index: usize) -> usize {
        let header = Header::parse(data, 0).unwrap();
        let mut commands = header.load_commands(LE, data, 0).unwrap();
        while let Some(command) = commands.next().unwrap() {
            if let Some(symtab) = command.symtab().unwrap() {
                return symtab.symoff.get(LE) as usize + index * 16;
            }
        }
        panic!("no symbol table");
    }

    #[test]
    fn corrupt_symbols_are_errors() {
        let original = asm(r#"
            .section __TEXT,__text,regular,pure_instructions
            .globl _f
        _f: ret
        "#);
        let f = graph(&original)
            .symbols
            .iter()
            .position(|s| s.name == "_f")
            .unwrap();
        let at = nlist_at(&original, f);
        // n_type 4, n_sect 5, n_desc 6..8, n_value 8..16.
        let mut data = original.clone();
        data[at + 5] = 9;
        assert_malformed(&data, "symbol _f: section ordinal 9 is out of range");
        let mut data = original.clone();
        data[at + 8..at + 16].copy_from_slice(&0x100u64.to_le_bytes());
        assert_malformed(&data, "symbol _f: address 0x100 is outside");
        let mut data = original.clone();
        data[at + 4] = macho::N_INDR.0 | macho::N_EXT.0;
        assert!(matches!(
            error_of(&data),
            LinkError::UnsupportedObject { .. }
        ));
        let mut data = original.clone();
        data[at + 6..at + 8].copy_from_slice(&macho::N_SYMBOL_RESOLVER.0.to_le_bytes());
        assert!(matches!(
            error_of(&data),
            LinkError::UnsupportedObject { .. }
        ));
        let mut data = original.clone();
        data[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_malformed(&data, "symbol");
    }

    #[test]
    fn truncated_and_scrambled_objects_never_panic() {
        let original = asm(&format!(
            r#"
            .section __TEXT,__text,regular,pure_instructions
            .globl _f
        _f:
            .cfi_startproc
            movl $1, _x(%rip)
            movb $1, Lloc(%rip)
            call _g
            movq _y@GOTPCREL(%rip), %rax
            ret
            .cfi_endproc
            .section __DATA,__data
        _d:
            .quad _a - _d
            .long _x
            .quad Lloc
        _a: .quad 0
            .zerofill __DATA,__bss,_z,64,4
            {TARGETS}
        "#
        ));
        graph(&original);
        // Every prefix: the symbol and string tables come last, so every
        // proper prefix loses something the parse needs.
        for len in 0..original.len() {
            assert!(
                parse("test.o", &original[..len]).is_err(),
                "a {len}-byte prefix parsed"
            );
        }
        // Scrambled bytes (a fixed pseudo-random sequence): errors or
        // graphs, never a panic or an out-of-bounds read.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        // Most of the damage goes where the structure is: the header and
        // load commands, and the relocations, symbols and strings after the
        // section contents; the rest anywhere (the contents hold addends and
        // `__eh_frame`).
        let header = Header::parse(&original[..], 0).unwrap();
        let commands_end = 32 + header.sizeofcmds(LE) as u64;
        let contents_end = {
            let eh = &graph(&original).sections;
            let text = eh.iter().map(|s| s.data.len() as u64).sum::<u64>();
            commands_end + text
        };
        let len = original.len() as u64;
        let iterations: usize = std::env::var("SOLDER_MACHO_SCRAMBLES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(6000);
        for _ in 0..iterations {
            let mut data = original.clone();
            for _ in 0..1 + next() % 4 {
                let at = match next() % 3 {
                    0 => next() % commands_end,
                    1 => contents_end + next() % (len - contents_end),
                    _ => next() % len,
                };
                data[at as usize] = next() as u8;
            }
            let _ = parse("test.o", &data);
        }
    }

    #[test]
    fn unsupported_objects() {
        let unsupported = |data: &[u8], needle: &str| {
            let error = error_of(data);
            assert!(
                matches!(error, LinkError::UnsupportedObject { .. })
                    && error.to_string().contains(needle),
                "expected an unsupported object ({needle}), got: {error}"
            );
        };
        let x86_64 = asm("    .globl _f\n_f: ret\n");
        graph(&x86_64);
        let mut big = x86_64.clone();
        big[..4].copy_from_slice(&macho::MH_MAGIC_64.to_be_bytes());
        unsupported(&big, "big-endian");
        let mut executable = x86_64.clone();
        executable[12..16].copy_from_slice(&macho::MH_EXECUTE.0.to_le_bytes());
        unsupported(&executable, "MH_OBJECT");
        let mut fat = x86_64.clone();
        fat[..4].copy_from_slice(&macho::FAT_MAGIC.to_be_bytes());
        unsupported(&fat, "universal");
        let i386 = build("i386-apple-darwin", "assembler", "_f: ret\n", &[]);
        unsupported(&i386, "32-bit");
        let arm64 = build("arm64-apple-darwin", "assembler", "_f: ret\n", &[]);
        unsupported(&arm64, "arm64");
        assert_malformed(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0", "bad Mach-O magic");
        assert_malformed(b"\xcf\xfa", "too short");

        // Thread-local variables: their sections, and a TLV reference.
        // (TLS needs a deployment target that has it.)
        let tls = build(
            "x86_64-apple-macosx10.15",
            "c",
            "_Thread_local int tv = 1; int get(void) { return tv; }",
            &["-O2", "-nostdinc"],
        );
        unsupported(&tls, "thread-local storage is not supported yet");
        let tlv = asm(r#"
            .globl _f
        _f:
            movq _tv@TLVP(%rip), %rdi
            ret
        "#);
        match error_of(&tlv) {
            LinkError::UnsupportedRelocation(u) => {
                assert_eq!(
                    (u.reloc.as_str(), u.symbol.as_str()),
                    ("X86_64_RELOC_TLV", "_tv")
                );
                assert_eq!(u.why, ": thread-local storage is not supported yet");
            }
            other => panic!("{other}"),
        }
    }
}
