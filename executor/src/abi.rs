//! Calling conventions: which one JIT'd functions follow (System V for
//! ELF and Mach-O objects, Microsoft x64 for COFF objects). A plain value,
//! part of the portable core; [`crate::calls`] makes the calls.

/// How JIT'd functions take their arguments and which registers they keep:
/// System V (ELF and Mach-O objects) or Microsoft x64 (COFF objects).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CallingConvention {
    #[default]
    SysV,
    Win64,
}

impl CallingConvention {
    /// The convention whose "is it Microsoft x64" flag is `win64` (the
    /// wire protocol's encoding).
    pub fn from_win64(win64: bool) -> Self {
        if win64 {
            CallingConvention::Win64
        } else {
            CallingConvention::SysV
        }
    }

    /// Whether this is the Microsoft x64 convention.
    pub fn is_win64(self) -> bool {
        self == CallingConvention::Win64
    }
}
