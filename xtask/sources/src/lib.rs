//! Dummy library: `solder-program-sources` is never built. Its manifest only
//! names the crates.io source packages whose C code `cargo xtask programs`
//! compiles (see `xtask/src/programs.rs`).
