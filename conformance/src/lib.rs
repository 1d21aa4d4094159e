//! Solder's declarative conformance suite.
//!
//! Scenarios are YAML files under `conformance/scenarios/<area>/` (schema in
//! [`schema`], documented in `conformance/README.md`); their C fixtures live
//! under `fixtures/` and are built by [`fixtures::Builder`]; [`verify`]
//! checks the built objects with an independent parser; [`catalog`] names
//! the trials (`format/mode/area/scenario`); [`runner`] runs one trial in a
//! child process ([`child`]) and compares transcripts. The format and mode
//! table is [`formats`].
//!
//! The harness is `tests/conformance.rs` (libtest-mimic); `cargo xtask
//! conformance` drives it and prints a summary table.

pub mod archives;
pub mod catalog;
pub mod fixtures;
pub mod formats;
#[cfg(feature = "host")]
pub mod implementation;
#[cfg(feature = "host")]
pub mod impls;
pub mod prepare;
pub mod protocol;
#[cfg(feature = "host")]
pub mod runner;
pub mod schema;
#[cfg(feature = "host")]
pub mod serve;
pub mod verify;
