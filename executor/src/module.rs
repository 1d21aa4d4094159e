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
///
/// Kept in the pieces a large load's threads made them in, when those
/// follow one another by address (as a load's objects do): one list would
/// be a copy of them all, in fresh memory.
#[derive(Debug, Default)]
pub struct CrashSymbols {
    /// Runs of symbols by start address; one after another, all of them
    /// by start address. None is empty.
    pieces: Vec<Vec<CrashSymbol>>,
    /// Each piece's first start.
    firsts: Vec<u64>,
}

impl CrashSymbols {
    /// The table of `symbols`, sorted by address (stably: of symbols at
    /// one address, the last given is found).
    pub fn new(symbols: Vec<CrashSymbol>) -> Self {
        Self::from_pieces(vec![symbols])
    }

    /// The table of the symbols of `pieces` one after another, as
    /// [`CrashSymbols::new`] makes it. A large load's pieces come sorted
    /// and in order already (see `link::exports::record`): they are only
    /// checked, and kept as they are.
    pub fn from_pieces(mut pieces: Vec<Vec<CrashSymbol>>) -> Self {
        pieces.retain(|piece| !piece.is_empty());
        let in_order = pieces.windows(2).all(|pair| {
            let last = pair[0].last().map(|s| s.start);
            let first = pair[1].first().map(|s| s.start);
            last <= first
        });
        if !(in_order && pieces.iter().all(|p| p.is_sorted_by_key(|s| s.start))) {
            let mut symbols: Vec<CrashSymbol> = pieces.into_iter().flatten().collect();
            symbols.sort_by_key(|s| s.start);
            pieces = vec![symbols];
        }
        let firsts = pieces.iter().filter_map(|p| p.first()).map(|s| s.start);
        CrashSymbols {
            firsts: firsts.collect(),
            pieces,
        }
    }

    /// The symbols, by start address.
    pub fn iter(&self) -> impl Iterator<Item = &CrashSymbol> {
        self.pieces.iter().flatten()
    }

    /// The symbol containing `address` and the offset into it.
    pub fn find(&self, address: u64) -> Option<(&str, u64)> {
        self.find_symbol(address)
            .map(|(symbol, offset)| (&*symbol.name, offset))
    }

    /// The symbol containing `address` itself, and the offset into it.
    pub(crate) fn find_symbol(&self, address: u64) -> Option<(&CrashSymbol, u64)> {
        // The last symbol starting at or before `address` is in the last
        // piece starting at or before it.
        let piece = self.firsts.partition_point(|&first| first <= address);
        let symbols = self.pieces.get(piece.checked_sub(1)?)?;
        let index = symbols.partition_point(|s| s.start <= address);
        let candidate = symbols.get(index.checked_sub(1)?)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    const RERUN: &str = "rerun: cargo test -p solder-executor --lib module::tests";

    fn symbol(start: u64, name: &str) -> CrashSymbol {
        CrashSymbol {
            start,
            size: 0x10,
            name: name.into(),
            lines: None,
        }
    }

    /// Pieces that follow one another by address are kept as they are,
    /// and read as one list: of symbols at one address, across two pieces
    /// too, the last given is found.
    #[test]
    fn pieces_in_order_are_kept_and_read_as_one_list() {
        let table = CrashSymbols::from_pieces(vec![
            vec![symbol(0x1000, "a"), symbol(0x2000, "b")],
            Vec::new(),
            vec![symbol(0x2000, "c"), symbol(0x3000, "d")],
        ]);
        assert_eq!(
            table.pieces.len(),
            2,
            "kept, the empty one dropped\n{RERUN}"
        );
        assert_eq!(table.iter().count(), 4, "{RERUN}");
        assert_eq!(table.find(0x1008), Some(("a", 8)), "{RERUN}");
        assert_eq!(table.find(0x2004), Some(("c", 4)), "{RERUN}");
        assert_eq!(table.find(0x300f), Some(("d", 0xf)), "{RERUN}");
        assert_eq!(table.find(0x3010), None, "past d\n{RERUN}");
        assert_eq!(table.find(0x0fff), None, "before a\n{RERUN}");
        let names: Vec<&str> = table.iter().map(|s| &*s.name).collect();
        assert_eq!(names, ["a", "b", "c", "d"], "{RERUN}");
    }

    /// Pieces out of order, or a piece not sorted, are sorted into one
    /// list, stably.
    #[test]
    fn pieces_out_of_order_are_sorted_into_one() {
        for pieces in [
            vec![vec![symbol(0x3000, "d")], vec![symbol(0x1000, "a")]],
            vec![vec![symbol(0x3000, "d"), symbol(0x1000, "a")]],
        ] {
            let table = CrashSymbols::from_pieces(pieces);
            assert_eq!(table.pieces.len(), 1, "{RERUN}");
            let starts: Vec<u64> = table.iter().map(|s| s.start).collect();
            assert_eq!(starts, [0x1000, 0x3000], "{RERUN}");
            assert_eq!(table.find(0x3001), Some(("d", 1)), "{RERUN}");
        }
        let empty = CrashSymbols::from_pieces(Vec::new());
        assert!(empty.iter().next().is_none(), "{RERUN}");
        assert_eq!(CrashSymbols::new(Vec::new()).find(0), None, "{RERUN}");
    }
}
