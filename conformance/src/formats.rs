//! The one table of object formats and execution modes.
//!
//! Every format (ELF, Mach-O, COFF) and every mode (in-process, pipe, TCP,
//! shared memory) the suite knows is listed here once, with whether Solder
//! implements it. Formats and modes that are not implemented produce no
//! trials; `cargo xtask conformance` lists them as "not implemented".

use serde::{Deserialize, Serialize};

/// An object format fixtures are compiled to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Elf,
    Macho,
    Coff,
}

/// What the suite knows about one format.
#[derive(Debug, Clone, Copy)]
pub struct FormatInfo {
    pub format: Format,
    /// The name used in trial names, YAML and on the command line.
    pub name: &'static str,
    /// The target triple fixtures are built for (with the `cc` crate).
    pub triple: &'static str,
    /// The extension of built objects.
    pub object_extension: &'static str,
    /// Whether Solder links this format today (only then are there trials).
    pub implemented: bool,
}

/// Every format, in the order trials and tables list them.
pub const FORMATS: [FormatInfo; 3] = [
    FormatInfo {
        format: Format::Elf,
        name: "elf",
        triple: "x86_64-unknown-linux-gnu",
        object_extension: "o",
        implemented: true,
    },
    FormatInfo {
        format: Format::Macho,
        name: "macho",
        triple: "x86_64-apple-darwin",
        object_extension: "o",
        implemented: true,
    },
    FormatInfo {
        format: Format::Coff,
        name: "coff",
        triple: "x86_64-pc-windows-msvc",
        object_extension: "obj",
        implemented: true,
    },
];

impl Format {
    pub fn info(self) -> &'static FormatInfo {
        FORMATS
            .iter()
            .find(|f| f.format == self)
            .expect("every format is in FORMATS")
    }

    pub fn name(self) -> &'static str {
        self.info().name
    }

    /// What the format puts before a C name in its symbol table.
    pub fn symbol_prefix(self) -> &'static str {
        match self {
            Format::Macho => "_",
            Format::Elf | Format::Coff => "",
        }
    }

    pub fn from_name(name: &str) -> Option<Format> {
        FORMATS.iter().find(|f| f.name == name).map(|f| f.format)
    }

    pub fn all() -> Vec<Format> {
        FORMATS.iter().map(|f| f.format).collect()
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

/// Where JIT'd code runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// In the controller's process (each trial isolated in a child process
    /// of the harness).
    Inproc,
    /// An executor process reached through a pipe.
    Pipe,
    /// An executor process reached over TCP.
    Tcp,
    /// An executor process sharing the JIT memory with the controller.
    Shm,
}

/// What the suite knows about one mode.
#[derive(Debug, Clone, Copy)]
pub struct ModeInfo {
    pub mode: Mode,
    pub name: &'static str,
    /// Whether Solder implements this mode today (only then are there trials).
    pub implemented: bool,
}

/// Every mode, in the order trials and tables list them.
pub const MODES: [ModeInfo; 4] = [
    ModeInfo {
        mode: Mode::Inproc,
        name: "inproc",
        implemented: true,
    },
    ModeInfo {
        mode: Mode::Pipe,
        name: "pipe",
        implemented: true,
    },
    ModeInfo {
        mode: Mode::Tcp,
        name: "tcp",
        implemented: true,
    },
    ModeInfo {
        mode: Mode::Shm,
        name: "shm",
        implemented: true,
    },
];

impl Mode {
    pub fn info(self) -> &'static ModeInfo {
        MODES
            .iter()
            .find(|m| m.mode == self)
            .expect("every mode is in MODES")
    }

    pub fn name(self) -> &'static str {
        self.info().name
    }

    pub fn from_name(name: &str) -> Option<Mode> {
        MODES.iter().find(|m| m.name == name).map(|m| m.mode)
    }

    pub fn all() -> Vec<Mode> {
        MODES.iter().map(|m| m.mode).collect()
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}
