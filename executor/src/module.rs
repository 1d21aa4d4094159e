//! What the linker tells the runtime about a module besides its bytes: its
//! symbols for crash reports and its deinitializers. Plain values, part of
//! the portable core (the runtime that uses them is the host layer's).

use crate::abi::CallingConvention;

/// One JIT'd symbol, for mapping a pc to `symbol+offset` (and to a source
/// line, when the linker kept debug information).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrashSymbol {
    pub start: u64,
    pub size: u64,
    pub name: String,
    /// The function's line table, read ahead so that a crash handler can
    /// name a line without reading debug information.
    pub lines: Option<std::sync::Arc<SourceLines>>,
}

/// A function's line table: its source file, and each address where a
/// line begins, in address order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceLines {
    pub file: String,
    pub rows: Vec<(u64, u32)>,
}

impl SourceLines {
    /// The line `address` is on.
    pub fn line_at(&self, address: u64) -> Option<u32> {
        let index = self.rows.partition_point(|&(start, _)| start <= address);
        Some(self.rows.get(index.checked_sub(1)?)?.1)
    }
}

/// A module's deinitializers in `.fini_array` order (they run last-first).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Finalizers {
    /// `.fini_array.N` and `.dtors.N` entries, sorted by priority.
    pub prioritized: Vec<u64>,
    /// `.fini_array` and `.dtors` entries, in link order.
    pub unprioritized: Vec<u64>,
    /// The calling convention of the module's functions.
    pub convention: CallingConvention,
}
