//! The format-neutral link graph: what a front-end (ELF today; Mach-O and
//! COFF later) produces from one relocatable object, and what resolution,
//! layout and fixups consume.
//!
//! A graph has sections (blocks of bytes with an alignment, a protection
//! class and a role), symbols (named or unnamed points in sections, absolute
//! values, commons, or undefined references), and edges (relocations: a
//! place in a section, a generic [`RelocKind`], a target symbol and an
//! addend). Nothing here knows an object format.

use std::borrow::Cow;

use crate::arch::RelocKind;

pub type SectionId = usize;
pub type SymbolId = usize;

/// One relocatable object, lifted out of its format.
#[derive(Debug)]
pub struct LinkGraph<'a> {
    /// The object's name, for messages.
    pub object: String,
    pub sections: Vec<Section<'a>>,
    pub symbols: Vec<Symbol<'a>>,
    /// COMDAT groups: only the first group of each signature in a load is kept.
    pub groups: Vec<Group<'a>>,
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
    pub edges: Vec<Edge>,
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
}

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
    Defined {
        section: SectionId,
        offset: u64,
    },
    Absolute(u64),
    Common {
        align: u64,
    },
    /// Defined in a section that is not loaded (debug info, notes).
    Unplaced,
}

#[derive(Debug, Clone)]
pub struct Symbol<'a> {
    pub name: &'a str,
    pub binding: Binding,
    pub visibility: Visibility,
    pub kind: SymbolKind,
    pub definition: Definition,
    pub size: u64,
}

#[derive(Debug, Clone)]
pub struct Group<'a> {
    pub signature: &'a str,
    pub sections: Vec<SectionId>,
}
