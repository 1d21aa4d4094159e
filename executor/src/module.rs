//! What the linker tells the runtime about a module besides its bytes: its
//! symbols for crash reports and its deinitializers. Plain values, part of
//! the portable core (the runtime that uses them is the host layer's).

use crate::abi::CallingConvention;

/// One JIT'd symbol, for mapping a pc to `symbol+offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrashSymbol {
    pub start: u64,
    pub size: u64,
    pub name: String,
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
