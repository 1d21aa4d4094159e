//! The format-neutral link graph: what a front-end (ELF, Mach-O, COFF)
//! produces from one relocatable object, and what resolution, layout and
//! fixups consume.
//!
//! A graph has sections (blocks of bytes with an alignment, a protection
//! class and a role), symbols (named or unnamed points in sections, absolute
//! values, commons, or undefined references), and edges (relocations: a
//! place in a section, a generic [`RelocKind`], a target symbol and an
//! addend). Nothing here knows an object format.

use solder_executor::abi::CallingConvention;
use std::borrow::Cow;

use crate::arch::RelocKind;

pub type SectionId = usize;
pub type SymbolId = usize;

/// The most sections a graph may have: a section index is kept in 32 bits
/// inside a [`Definition`] (a large load holds millions of symbols, so
/// each byte of one counts), and [`LinkGraph::check`] refuses a graph
/// with more.
pub const MAX_SECTIONS: usize = u32::MAX as usize;

/// The object format a graph was read from. Beyond parsing, two things
/// depend on it: how C names are spelled (Mach-O prefixes `_`) and the
/// calling convention of its functions (COFF code uses the Microsoft x64
/// convention).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectFormat {
    Elf,
    MachO,
    Coff,
}

impl ObjectFormat {
    /// The prefix the format puts before C names (`_` on Mach-O).
    pub fn global_prefix(self) -> &'static str {
        match self {
            ObjectFormat::MachO => "_",
            ObjectFormat::Elf | ObjectFormat::Coff => "",
        }
    }

    /// The C name of a symbol spelled as this format spells it, or `None`
    /// when it lacks the format's prefix (then no host symbol matches it).
    /// Asked of every global a load resolves: a byte test, not a string
    /// comparison.
    pub fn c_name(self, name: &str) -> Option<&str> {
        match self {
            ObjectFormat::MachO => name.strip_prefix('_'),
            ObjectFormat::Elf | ObjectFormat::Coff => Some(name),
        }
    }

    /// The calling convention of functions in this format: Microsoft x64
    /// for COFF, System V for the others.
    pub fn convention(self) -> CallingConvention {
        match self {
            ObjectFormat::Coff => CallingConvention::Win64,
            ObjectFormat::Elf | ObjectFormat::MachO => CallingConvention::SysV,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ObjectFormat::Elf => "ELF",
            ObjectFormat::MachO => "Mach-O",
            ObjectFormat::Coff => "COFF",
        }
    }
}

/// One relocatable object, lifted out of its format.
#[derive(Debug)]
pub struct LinkGraph<'a> {
    /// The object's name, for messages.
    pub object: String,
    pub format: ObjectFormat,
    pub sections: Vec<Section<'a>>,
    pub symbols: Vec<Symbol<'a>>,
    /// COMDAT groups: of the groups of one signature in a load, one is kept
    /// as the group's selection says.
    pub groups: Vec<Group<'a>>,
    /// For an ELF object: the graph section each section header became
    /// (by header index), so the object can be handed to a debugger with
    /// its sections' load addresses; empty for other formats.
    pub source_sections: Vec<Option<SectionId>>,
}

impl LinkGraph<'_> {
    /// Whether any edge holds an absolute address in 32 bits (the load
    /// then goes in the low 2 GiB): see [`Edges::any_absolute32`].
    pub fn any_absolute32(&self) -> bool {
        self.sections.iter().any(|s| s.edges.any_absolute32())
    }

    /// How many edges [`LinkGraph::any_absolute32`] looks at one by one.
    pub fn decoded_edges(&self) -> usize {
        self.sections.iter().map(|s| s.edges.decoded_len()).sum()
    }

    /// Checks what the rest of the linker relies on, whatever the object
    /// said and however its front-end read it: a section with contents has
    /// exactly `size` bytes of them, a zero-fill section has none, no
    /// relocations and no lifecycle or unwind role, alignments (of sections
    /// and commons) are powers of two, and every symbol, fallback and group
    /// member refers to something that exists, a defined symbol no further
    /// than its section's end.
    /// [`crate::input::parse_object`] runs it on every graph, so layout and
    /// writing never index past what they placed.
    pub fn check(&self) -> Result<(), crate::error::LinkError> {
        let malformed = |reason: String| crate::error::LinkError::Malformed {
            object: self.object.clone(),
            reason,
        };
        if self.sections.len() >= MAX_SECTIONS {
            return Err(malformed(format!(
                "{} sections: more than a graph holds ({MAX_SECTIONS})",
                self.sections.len()
            )));
        }
        for section in &self.sections {
            let name = &section.name;
            if !section.align.is_power_of_two() {
                return Err(malformed(format!(
                    "section {name}: alignment {:#x} is not a power of two",
                    section.align
                )));
            }
            if section.protection == Protection::Zero {
                // Unwind tables and initializer arrays are read: zero-fill
                // would be a table of nothing as large as the object says.
                if !matches!(section.role, SectionRole::Plain | SectionRole::ThreadLocal) {
                    return Err(malformed(format!(
                        "section {name}: an unwind, initializer or finalizer table has no \
                         contents"
                    )));
                }
                if !section.edges.is_empty() {
                    return Err(malformed(format!(
                        "section {name}: a zero-fill section has relocations"
                    )));
                }
                if !section.data.is_empty() {
                    return Err(malformed(format!(
                        "section {name}: a zero-fill section has contents"
                    )));
                }
            } else if section.data.len() as u64 != section.size {
                return Err(malformed(format!(
                    "section {name}: {:#x} bytes of contents for a size of {:#x}",
                    section.data.len(),
                    section.size
                )));
            }
        }
        for (id, sym) in self.symbols.iter().enumerate() {
            if let Some((section, offset)) = sym.definition.place() {
                let Some(s) = self.sections.get(section) else {
                    return Err(malformed(format!(
                        "symbol {id} `{}`: section {section} does not exist",
                        sym.name
                    )));
                };
                if offset > s.size {
                    return Err(malformed(format!(
                        "symbol {id} `{}`: offset {offset:#x} is past the end of section {} \
                         ({:#x} bytes)",
                        sym.name, s.name, s.size
                    )));
                }
            }
            if let Definition::Common { align } = sym.definition
                && !align.is_power_of_two()
            {
                return Err(malformed(format!(
                    "common symbol {id} `{}`: alignment {align:#x} is not a power of two",
                    sym.name
                )));
            }
            if sym.fallback.is_some_and(|f| f.id() >= self.symbols.len()) {
                return Err(malformed(format!(
                    "symbol {id} `{}`: its alternate name is not a symbol",
                    sym.name
                )));
            }
        }
        for group in &self.groups {
            if group.sections.iter().any(|&s| s >= self.sections.len()) {
                return Err(malformed(format!(
                    "COMDAT group `{}`: a member section does not exist",
                    group.signature
                )));
            }
        }
        Ok(())
    }
}

/// How a section's memory is protected once linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protection {
    /// Read + execute.
    Code,
    /// Read only (also GOT and initializer arrays once relocated).
    ReadOnly,
    /// Read + write, with contents.
    Data,
    /// Read + write, zero-filled.
    Zero,
}

/// What a section means to the lifecycle beyond its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SectionRole {
    Plain,
    /// An array of initializer pointers. `priority` is the init priority
    /// (`.init_array.N` is N, `.ctors.N` is 65535 - N); `reversed` marks
    /// `.ctors`, whose entries run last-first.
    Initializers {
        priority: Option<u32>,
        reversed: bool,
    },
    /// Deinitializers: `.fini_array(.N)` and `.dtors(.N)` (reversed).
    Finalizers {
        priority: Option<u32>,
        reversed: bool,
    },
    /// Unwind tables (`.eh_frame`), registered with the host unwinder.
    UnwindFrames,
    /// Part of the load's thread-local template (`.tdata` with contents,
    /// `.tbss` zero-fill): not placed in the module's memory but in the
    /// block every thread gets a copy of. Its symbols are offsets in that
    /// block.
    ThreadLocal,
}

#[derive(Debug)]
pub struct Section<'a> {
    pub name: Cow<'a, str>,
    pub protection: Protection,
    pub role: SectionRole,
    pub align: u64,
    pub size: u64,
    /// Contents; empty for zero-filled sections.
    pub data: Cow<'a, [u8]>,
    pub edges: Edges<'a>,
    /// False when discarded (a duplicate COMDAT group).
    pub live: bool,
}

/// A relocation: patch `offset` in the section with a value computed from
/// `target` and `addend` as `kind` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    pub offset: u64,
    pub kind: RelocKind,
    pub target: SymbolId,
    pub addend: i64,
    /// The symbol subtracted by [`RelocOp::Difference`](crate::arch::RelocOp::Difference)
    /// (a Mach-O SUBTRACTOR pair); `None` for every other kind. Read it
    /// with [`Edge::minus`]; 32 bits keep an edge at 48 bytes.
    minus: Option<u32>,
}

// Edges are most of a graph's memory: keep them at 48 bytes.
const _: () = assert!(std::mem::size_of::<Edge>() == 48);

impl Edge {
    /// An edge without a subtracted symbol (every kind but
    /// [`RelocOp::Difference`](crate::arch::RelocOp::Difference)).
    pub fn new(offset: u64, kind: RelocKind, target: SymbolId, addend: i64) -> Edge {
        Edge {
            offset,
            kind,
            target,
            addend,
            minus: None,
        }
    }

    /// An edge whose value is `target + addend - minus`. `None` when the
    /// object has more symbols than 32 bits count (no real object does).
    pub fn difference(
        offset: u64,
        kind: RelocKind,
        target: SymbolId,
        addend: i64,
        minus: SymbolId,
    ) -> Option<Edge> {
        Some(Edge {
            minus: Some(u32::try_from(minus).ok()?),
            ..Edge::new(offset, kind, target, addend)
        })
    }

    /// The subtracted symbol of a [`RelocOp::Difference`](crate::arch::RelocOp::Difference) edge.
    pub fn minus(&self) -> Option<SymbolId> {
        self.minus.map(|m| m as SymbolId)
    }
}

/// A section's edges. Where the object's own relocation records say all an
/// edge says (ELF RELA), the graph keeps the records, checked when parsed,
/// and decodes an edge each time one is visited: edges are most of a
/// load's memory, and a whole-program link is mostly first touches of
/// fresh memory (a page fault costs microseconds on a virtual machine).
pub enum Edges<'a> {
    /// Decoded once: Mach-O and COFF, edited `.eh_frame`, and ELF sections
    /// with several relocation tables.
    Decoded(Vec<Edge>),
    /// Records of `stride` bytes each, every one checked by the
    /// front-end; `decode` turns one into its edge. `absolute32` says
    /// whether any of them is [`RelocKind::is_absolute32`], as the
    /// front-end found while checking them: asking decodes nothing.
    Records {
        bytes: &'a [u8],
        stride: usize,
        decode: fn(&[u8]) -> Edge,
        absolute32: bool,
    },
}

impl Default for Edges<'_> {
    fn default() -> Self {
        Edges::Decoded(Vec::new())
    }
}

impl<'a> Edges<'a> {
    pub fn len(&self) -> usize {
        match self {
            Edges::Decoded(edges) => edges.len(),
            Edges::Records { bytes, stride, .. } => bytes.len() / stride,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether any edge holds an absolute address in 32 bits
    /// ([`RelocKind::is_absolute32`]): records answer from what their
    /// check found; decoded edges are looked at one by one.
    pub fn any_absolute32(&self) -> bool {
        match self {
            Edges::Decoded(edges) => edges.iter().any(|e| e.kind.is_absolute32()),
            Edges::Records { absolute32, .. } => *absolute32,
        }
    }

    /// How many edges [`Edges::any_absolute32`] looks at one by one: the
    /// decoded ones (records are answered at once).
    pub fn decoded_len(&self) -> usize {
        match self {
            Edges::Decoded(edges) => edges.len(),
            Edges::Records { .. } => 0,
        }
    }

    /// The edges, by value, in the object's order (not necessarily the
    /// offsets').
    pub fn iter(&self) -> EdgeIter<'_> {
        match self {
            Edges::Decoded(edges) => EdgeIter::Decoded(edges.iter()),
            Edges::Records {
                bytes,
                stride,
                decode,
                ..
            } => EdgeIter::Records(bytes.chunks_exact(*stride), *decode),
        }
    }

    /// The edge at `index` in the object's order, decoding it if need be.
    pub fn get(&self, index: usize) -> Option<Edge> {
        match self {
            Edges::Decoded(edges) => edges.get(index).copied(),
            Edges::Records {
                bytes,
                stride,
                decode,
                ..
            } => {
                let start = index.checked_mul(*stride)?;
                bytes.get(start..start.checked_add(*stride)?).map(decode)
            }
        }
    }

    /// The edges as a vector to edit, decoding records if need be.
    pub fn to_decoded(&mut self) -> &mut Vec<Edge> {
        if let Edges::Records { .. } = self {
            *self = Edges::Decoded(self.iter().collect());
        }
        match self {
            Edges::Decoded(edges) => edges,
            Edges::Records { .. } => unreachable!("decoded just above"),
        }
    }
}

impl std::fmt::Debug for Edges<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'e> IntoIterator for &'e Edges<'_> {
    type Item = Edge;
    type IntoIter = EdgeIter<'e>;

    fn into_iter(self) -> EdgeIter<'e> {
        self.iter()
    }
}

/// An iterator over a section's [`Edges`].
pub enum EdgeIter<'e> {
    Decoded(std::slice::Iter<'e, Edge>),
    Records(std::slice::ChunksExact<'e, u8>, fn(&[u8]) -> Edge),
}

impl Iterator for EdgeIter<'_> {
    type Item = Edge;

    fn next(&mut self) -> Option<Edge> {
        match self {
            EdgeIter::Decoded(edges) => edges.next().copied(),
            EdgeIter::Records(records, decode) => records.next().map(*decode),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            EdgeIter::Decoded(edges) => edges.size_hint(),
            EdgeIter::Records(records, _) => records.size_hint(),
        }
    }
}

impl ExactSizeIterator for EdgeIter<'_> {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    Local,
    Global,
    Weak,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    Default,
    Protected,
    Hidden,
    Internal,
}

impl Visibility {
    /// Hidden and internal symbols are never seen outside their load.
    pub fn exported(self) -> bool {
        matches!(self, Visibility::Default | Visibility::Protected)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SymbolKind {
    Function,
    Data,
    Section,
    ThreadLocal,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Definition {
    Undefined,
    /// At `offset` in section `section` of the graph (made by
    /// [`Definition::defined`]; read back as a [`SectionId`] by
    /// [`Definition::place`]).
    Defined {
        section: u32,
        offset: u64,
    },
    Absolute(u64),
    Common {
        align: u64,
    },
    /// Defined in a section that is not loaded (debug info, notes).
    Unplaced,
}

impl Definition {
    /// A definition at `offset` in `section`. A section index past
    /// [`MAX_SECTIONS`] is kept as `MAX_SECTIONS`, which no graph that
    /// passes [`LinkGraph::check`] has: the check reports it.
    pub fn defined(section: SectionId, offset: u64) -> Definition {
        Definition::Defined {
            section: u32::try_from(section).unwrap_or(u32::MAX),
            offset,
        }
    }

    /// The section and offset of a definition in a section.
    pub fn place(self) -> Option<(SectionId, u64)> {
        match self {
            Definition::Defined { section, offset } => Some((section as SectionId, offset)),
            _ => None,
        }
    }
}

/// A symbol's alternate name (see [`Symbol::fallback`]): another symbol
/// of the same graph, kept in four bytes (its index plus one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fallback(std::num::NonZeroU32);

impl Fallback {
    /// Symbol `id` as a fallback; `None` past what four bytes hold (no
    /// object format numbers its symbols that far).
    pub fn new(id: SymbolId) -> Option<Fallback> {
        let plus_one = u32::try_from(id).ok()?.checked_add(1)?;
        std::num::NonZeroU32::new(plus_one).map(Fallback)
    }

    /// The symbol it names.
    pub fn id(self) -> SymbolId {
        self.0.get() as SymbolId - 1
    }
}

#[derive(Debug, Clone)]
pub struct Symbol<'a> {
    pub name: &'a str,
    pub binding: Binding,
    pub visibility: Visibility,
    pub kind: SymbolKind,
    pub definition: Definition,
    pub size: u64,
    /// For an undefined symbol: what it means when nothing defines it (a
    /// COFF weak external's default, `/alternatename:`). Weak undefined
    /// symbols without a fallback are 0.
    pub fallback: Option<Fallback>,
}

impl Symbol<'_> {
    /// Whether this is a global definition a load's other objects can bind
    /// to (in a section, absolute, or common).
    pub fn is_global_definition(&self) -> bool {
        self.binding != Binding::Local
            && matches!(
                self.definition,
                Definition::Defined { .. } | Definition::Absolute(_) | Definition::Common { .. }
            )
    }
}

/// How duplicate COMDAT groups of one signature are resolved (COFF's
/// `IMAGE_COMDAT_SELECT_*`; ELF groups are [`ComdatSelection::Any`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComdatSelection {
    /// Keep the first.
    Any,
    /// A second definition is an error.
    NoDuplicates,
    /// Keep the first; a duplicate of another size is an error.
    SameSize,
    /// Keep the first; a duplicate with other contents is an error.
    ExactMatch,
    /// Keep the largest (the first of equal sizes).
    Largest,
}

/// A COMDAT group. `sections[0]` is the leader (the section whose size and
/// contents selections compare); the rest are kept or discarded with it
/// (ELF group members, COFF associative sections).
#[derive(Debug, Clone)]
pub struct Group<'a> {
    pub signature: &'a str,
    pub selection: ComdatSelection,
    pub sections: Vec<SectionId>,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const RERUN: &str = "rerun: cargo test -p solder-linker --lib graph::tests";

    /// A graph of one 16-byte data section and `symbols`.
    pub(crate) fn one_section_graph(symbols: Vec<Symbol<'static>>) -> LinkGraph<'static> {
        LinkGraph {
            object: "t.o".into(),
            format: ObjectFormat::Elf,
            sections: vec![Section {
                name: ".data".into(),
                protection: Protection::Data,
                role: SectionRole::Plain,
                align: 8,
                size: 16,
                data: Cow::Owned(vec![0; 16]),
                edges: Edges::default(),
                live: true,
            }],
            symbols,
            groups: Vec::new(),
            source_sections: Vec::new(),
        }
    }

    /// A symbol of `binding` with `definition`.
    pub(crate) fn symbol(
        name: &'static str,
        binding: Binding,
        definition: Definition,
    ) -> Symbol<'static> {
        Symbol {
            name,
            binding,
            visibility: Visibility::Default,
            kind: SymbolKind::Data,
            definition,
            size: 0,
            fallback: None,
        }
    }

    /// A large load holds millions of symbols: each is kept in 48 bytes
    /// (a section index and a fallback in 32 bits each).
    #[test]
    fn a_symbol_takes_48_bytes() {
        assert_eq!(std::mem::size_of::<Definition>(), 16, "{RERUN}");
        assert_eq!(std::mem::size_of::<Symbol<'_>>(), 48, "{RERUN}");
    }

    /// A section index past 32 bits is not cut to a smaller one that
    /// exists: it is kept as one that no checked graph has, and the check
    /// reports it.
    #[test]
    fn a_section_index_past_32_bits_is_reported_not_wrapped() {
        let far = u32::MAX as usize + 1; // would wrap to section 0
        let definition = Definition::defined(far, 4);
        assert_eq!(definition.place(), Some((u32::MAX as usize, 4)), "{RERUN}");
        let graph = one_section_graph(vec![symbol("far", Binding::Global, definition)]);
        let err = graph.check().unwrap_err().to_string();
        assert!(
            err.contains("section 4294967295 does not exist"),
            "{err}\n{RERUN}"
        );
        let near = one_section_graph(vec![symbol(
            "near",
            Binding::Global,
            Definition::defined(0, 4),
        )]);
        assert!(near.check().is_ok(), "{RERUN}");
    }

    /// A fallback names any symbol a 32-bit index reaches, and nothing
    /// past it.
    #[test]
    fn a_fallback_holds_32_bit_symbol_indices_only() {
        for id in [0, 1, 70_000, u32::MAX as usize - 1] {
            assert_eq!(Fallback::new(id).map(Fallback::id), Some(id), "{RERUN}");
        }
        for id in [u32::MAX as usize, u32::MAX as usize + 1, usize::MAX] {
            assert_eq!(Fallback::new(id), None, "{id}\n{RERUN}");
        }
        let mut graph =
            one_section_graph(vec![symbol("a", Binding::Global, Definition::Undefined)]);
        graph.symbols[0].fallback = Fallback::new(1);
        let err = graph.check().unwrap_err().to_string();
        assert!(
            err.contains("its alternate name is not a symbol"),
            "{err}\n{RERUN}"
        );
    }

    #[test]
    fn a_c_name_is_the_name_less_the_formats_prefix() {
        for format in [ObjectFormat::Elf, ObjectFormat::MachO, ObjectFormat::Coff] {
            let spelled = format!("{}main", format.global_prefix());
            assert_eq!(format.c_name(&spelled), Some("main"), "{format:?}\n{RERUN}");
        }
        assert_eq!(ObjectFormat::MachO.c_name("main"), None, "{RERUN}");
        assert_eq!(ObjectFormat::Elf.c_name("_main"), Some("_main"), "{RERUN}");
    }
}
