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
    /// Shared with the module's export of the name, when it has one.
    pub name: std::sync::Arc<str>,
    /// The function's line table, read ahead so that a crash handler can
    /// name a line without reading debug information.
    pub lines: Option<std::sync::Arc<SourceLines>>,
}

/// A module's symbols, sorted by start address: what crash reports and
/// the linker's session search.
#[derive(Debug, Default)]
pub struct CrashSymbols {
    symbols: Vec<CrashSymbol>,
}

impl CrashSymbols {
    /// The table of `symbols`, sorted by address (stably: of symbols at
    /// one address, the last given is found). A large load's symbols come
    /// sorted already (see `link::exports::crash_symbols`): they are only
    /// checked.
    pub fn new(mut symbols: Vec<CrashSymbol>) -> Self {
        if !symbols.is_sorted_by_key(|s| s.start) {
            symbols.sort_by_key(|s| s.start);
        }
        CrashSymbols { symbols }
    }

    /// The symbols, by start address.
    pub fn symbols(&self) -> &[CrashSymbol] {
        &self.symbols
    }

    /// The symbol containing `address` and the offset into it.
    pub fn find(&self, address: u64) -> Option<(&str, u64)> {
        self.find_symbol(address)
            .map(|(symbol, offset)| (&*symbol.name, offset))
    }

    /// The symbol containing `address` itself, and the offset into it.
    pub(crate) fn find_symbol(&self, address: u64) -> Option<(&CrashSymbol, u64)> {
        let index = self.symbols.partition_point(|s| s.start <= address);
        let candidate = self.symbols.get(index.checked_sub(1)?)?;
        let offset = address - candidate.start;
        (offset < candidate.size.max(1)).then_some((candidate, offset))
    }
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
