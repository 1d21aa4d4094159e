//! The linker's typed errors. Every error names what and where: the object,
//! the section, the offset and the symbol, so a user can find it.

use std::path::PathBuf;

/// Where in an object something went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    pub object: String,
    pub section: String,
    pub offset: u64,
}

impl std::fmt::Display for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} section {} at offset {:#x}",
            self.object, self.section, self.offset
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{object}: malformed object: {reason}")]
    Malformed { object: String, reason: String },
    #[error("{object}: unsupported object: {reason}")]
    UnsupportedObject { object: String, reason: String },
    #[error("{site}: unsupported relocation {reloc} against `{symbol}`{why}")]
    UnsupportedRelocation {
        site: Site,
        reloc: String,
        symbol: String,
        why: String,
    },
    #[error(
        "{site}: relocation {reloc} against `{symbol}` out of range: value {value:#x} does not fit in {width} ({detail})"
    )]
    OutOfRange {
        site: Site,
        reloc: String,
        symbol: String,
        value: i128,
        width: String,
        detail: String,
    },
    #[error("undefined symbol `{symbol}`, referenced by {site}")]
    Undefined { symbol: String, site: Site },
    #[error("duplicate symbol `{symbol}`: defined in {first} and in {second}")]
    Duplicate {
        symbol: String,
        first: String,
        second: String,
    },
    #[error("{0}")]
    Host(#[from] solder_executor::host::HostError),
    #[error("memory: {0}")]
    Memory(String),
    #[error("no module {0} in this session")]
    NoSuchModule(u32),
    #[error("cannot remove module {module} ({objects}): module {user} still uses its symbol `{symbol}`")]
    InUse {
        module: u32,
        objects: String,
        user: u32,
        symbol: String,
    },
    #[error("replacement for module {module} does not define `{symbol}`, which module {user} uses")]
    ReplacementMissing {
        module: u32,
        symbol: String,
        user: u32,
    },
    #[error("{0}")]
    Unwind(#[from] solder_executor::unwind::UnwindError),
}
