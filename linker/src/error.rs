//! The linker's typed errors. Every error names what and where: the object,
//! the section, the offset and the symbol, so a user can find it.

use std::path::PathBuf;

use crate::arch::FieldFailure;

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

/// `-0x10` rather than a two's-complement 128-bit mask.
pub fn signed_hex(value: i128) -> String {
    if value < 0 {
        format!("-{:#x}", value.unsigned_abs())
    } else {
        format!("{value:#x}")
    }
}

/// A relocation (or reference) Solder cannot link.
#[derive(Debug)]
pub struct UnsupportedRelocation {
    pub site: Site,
    pub reloc: String,
    pub symbol: String,
    /// Why, starting with ": ".
    pub why: String,
}

/// A value that does not fit its relocation field.
#[derive(Debug)]
pub struct OutOfRange {
    pub site: Site,
    pub reloc: String,
    pub symbol: String,
    pub value: i128,
    /// "signed 32 bits" and the like.
    pub width: String,
    /// Target, place and distance, and a hint when there is one.
    pub detail: String,
}

/// A value with low bits its relocation field cannot hold (an AArch64
/// branch to an odd address, a scaled load from an unaligned one).
#[derive(Debug)]
pub struct Misaligned {
    pub site: Site,
    pub reloc: String,
    pub symbol: String,
    pub value: i128,
    /// The field holds multiples of this only.
    pub alignment: u64,
    /// Target, place and distance.
    pub detail: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot read {path}: {reason}")]
    Read {
        path: PathBuf,
        reason: std::io::Error,
    },
    #[error("cannot write {path}: {reason}")]
    Write {
        path: std::path::PathBuf,
        reason: std::io::Error,
    },
    #[error("cannot find -l{name}: tried {}", .tried.join(", "))]
    LibraryNotFound { name: String, tried: Vec<String> },
    #[error("{script}: linker script: {reason}")]
    MalformedScript { script: String, reason: String },
    #[error("{archive}: malformed archive: {reason}")]
    MalformedArchive { archive: String, reason: String },
    #[error("{object}: malformed object: {reason}")]
    Malformed { object: String, reason: String },
    #[error("{object}: unsupported object: {reason}")]
    UnsupportedObject { object: String, reason: String },
    #[error("{}: unsupported relocation {} against `{}`{}", .0.site, .0.reloc, .0.symbol, .0.why)]
    UnsupportedRelocation(Box<UnsupportedRelocation>),
    #[error(
        "{}: relocation {} against `{}` out of range: value {} does not fit in {} ({})",
        .0.site, .0.reloc, .0.symbol, signed_hex(.0.value), .0.width, .0.detail
    )]
    OutOfRange(Box<OutOfRange>),
    #[error(
        "{}: relocation {} against `{}` misaligned: value {} is not a multiple of {} ({})",
        .0.site, .0.reloc, .0.symbol, signed_hex(.0.value), .0.alignment, .0.detail
    )]
    Misaligned(Box<Misaligned>),
    #[error("undefined symbol `{symbol}`, referenced by {site}")]
    Undefined { symbol: String, site: Site },
    #[error("duplicate symbol `{symbol}`: defined in {first} and in {second}")]
    Duplicate {
        symbol: String,
        first: String,
        second: String,
    },
    #[error("COMDAT `{signature}` is defined in {first} and in {second}: {reason}")]
    ComdatConflict {
        signature: String,
        first: String,
        second: String,
        reason: String,
    },
    #[error(transparent)]
    #[cfg(feature = "host")]
    Host(#[from] solder_executor::host::HostError),
    #[error("memory: {0}")]
    Memory(String),
    #[error("no module {0} in this session")]
    NoSuchModule(u32),
    #[error(
        "cannot remove module {module} ({objects}): module {user} still uses its symbol `{symbol}`"
    )]
    InUse {
        module: u32,
        objects: String,
        user: u32,
        symbol: String,
    },
    #[error(
        "cannot replace module {module}: module {user} reaches its thread-local variable \
         `{symbol}`, whose block the replacement closes (every thread's copy goes); remove \
         module {user} first"
    )]
    ThreadLocalInUse {
        module: u32,
        user: u32,
        symbol: String,
    },
    #[error("replacement for module {module} does not define `{symbol}`, which module {user} uses")]
    ReplacementMissing {
        module: u32,
        symbol: String,
        user: u32,
    },
    #[error(transparent)]
    #[cfg(feature = "host")]
    Unwind(#[from] solder_executor::unwind::UnwindError),
    /// JIT'd code crashed, exited or timed out in a remote executor.
    #[error("{}", .0)]
    Execution(Box<Abnormal>),
    /// The executor died earlier and no recovery policy brought it back.
    #[error("the session is over: {0}")]
    ExecutorGone(String),
    /// The executor could not be started or reached, refused a request, or
    /// broke the protocol.
    #[error("executor: {0}")]
    Executor(String),
    /// A thread-local variable (or the load's block of them) that the
    /// executor's loader cannot place as the code needs: `what` names it,
    /// `reason` says why and what works instead.
    #[error("{what}: {reason}")]
    ThreadLocal { what: String, reason: String },
}

impl LinkError {
    /// The error for relocation `reloc` against `symbol` at `site` that
    /// cannot be linked; `why` follows the symbol in the message, so it
    /// starts with ": ".
    pub fn refused_relocation(
        site: Site,
        reloc: &str,
        symbol: &str,
        why: impl Into<String>,
    ) -> LinkError {
        LinkError::UnsupportedRelocation(Box::new(UnsupportedRelocation {
            site,
            reloc: reloc.to_string(),
            symbol: symbol.to_string(),
            why: why.into(),
        }))
    }

    /// The error for a value the checked writer refused: the field of
    /// relocation `reloc` against `symbol` at `site` could not hold `value`.
    pub fn refused_field(
        failure: FieldFailure,
        site: Site,
        reloc: &str,
        symbol: &str,
        value: i128,
        detail: String,
    ) -> LinkError {
        let (reloc, symbol) = (reloc.to_string(), symbol.to_string());
        match failure {
            FieldFailure::Range { width } => LinkError::OutOfRange(Box::new(OutOfRange {
                site,
                reloc,
                symbol,
                value,
                width,
                detail,
            })),
            FieldFailure::Misaligned { alignment } => LinkError::Misaligned(Box::new(Misaligned {
                site,
                reloc,
                symbol,
                value,
                alignment,
                detail,
            })),
        }
    }
}

/// How JIT'd code ended when it did not return.
#[derive(Debug)]
pub struct Abnormal {
    /// What was running: "the call to `f`", "the initializers of module 2".
    pub during: String,
    pub outcome: crate::executors::Outcome,
    /// `crashed: SIGSEGV at address 0x0, pc 0x... in f+0x4 (module 1: a.o)`.
    pub report: String,
    /// How the session went on, if it did.
    pub recovered: Option<String>,
}

impl std::fmt::Display for Abnormal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} during {}", self.report, self.during)?;
        if let Some(how) = &self.recovered {
            write!(f, "; {how}")?;
        }
        Ok(())
    }
}
