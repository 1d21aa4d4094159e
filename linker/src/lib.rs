//! Solder's linker: loads relocatable objects into memory, links them and
//! runs them.
//!
//! Data flow of one load (see `docs/architecture.md`):
//! object bytes -> front-end ([`elf`], [`macho`], [`coff`]) -> [`graph::LinkGraph`] -> resolve,
//! plan, lay out, allocate, write and protect ([`link`], using the
//! [`arch`] tables and writer) -> initializers run -> relocation records
//! dropped. Static archives ([`archive`]) join a session's search list;
//! each load takes the members it needs ([`members`]).
//! [`session::Session`] is the public, REPL-like API;
//! [`probe::link_image`] links one object into a byte image with no
//! executor (for fuzzing and tests).

pub mod arch;
pub mod archive;
pub mod debug_sections;
pub mod error;
pub mod executors;
#[cfg(feature = "host")]
mod export_table;
pub mod format;
pub mod graph;
#[cfg(feature = "host")]
pub mod heap;
pub mod indirection;
pub mod input;
pub mod link;
pub mod members;
pub mod memory;
pub mod object_bytes;
pub mod parallel;
pub mod plugins;
pub mod probe;
#[cfg(feature = "host")]
mod read_all;
pub mod search;
#[cfg(feature = "host")]
pub mod session;
pub mod source_lines;
pub mod static_tls;
pub mod stats;
#[cfg(test)]
mod test_support;

pub use archive::Archive;
pub use error::LinkError;
#[cfg(feature = "host")]
pub use executors::{DEFAULT_PEER_TIMEOUT, Transport};
pub use executors::{ExecutorOutput, Outcome, Recovery};
pub use input::ObjectFile;
pub use memory::Placement;
#[cfg(feature = "host")]
pub use session::{ExecutorChoice, ModuleId, Session, SessionConfig};
