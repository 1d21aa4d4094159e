//! Object-format front-ends: each turns one relocatable object into a
//! format-neutral [`LinkGraph`](crate::graph::LinkGraph), as a short
//! sequence of named phases in its own folder.

pub mod coff;
pub mod eh_frame;
pub mod elf;
pub mod macho;
