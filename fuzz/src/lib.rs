//! What the object fuzz targets share: one object through the linker's
//! probe ([`solder_linker::probe::link_image`]), as given and with its
//! format's magic forced ([`solder_linker::probe::with_magic`]), exactly as
//! `linker/tests/fuzz_regressions.rs` replays the inputs kept in
//! `fuzz/regressions/`. An object must also link the same read without
//! its debug sections ([`solder_linker::probe::differs_without_debug`]),
//! and an archive without its members' ([`solder_linker::probe::archive_differs_without_debug`]).

use solder_linker::graph::ObjectFormat;
use solder_linker::probe::{
    Host, archive_differs_without_debug, differs_without_debug, link_archive, link_image,
    with_magic,
};

/// The first bytes of a (non-thin) archive.
pub const ARCHIVE_MAGIC: &[u8] = b"!<arch>\n";

/// Links `data` as an object named `name`; then, unless it already starts
/// with `format`'s magic, a copy with the magic forced. Errors are the
/// expected outcome of most inputs; a panic is the bug.
pub fn object(name: &str, format: ObjectFormat, data: &[u8]) {
    link(name, data);
    if let Some(forced) = with_magic(format, data) {
        link(name, &forced);
    }
}

fn link(name: &str, data: &[u8]) {
    // Read without its debug sections, an object links as it does whole.
    if let Some(difference) = differs_without_debug(name, data) {
        panic!("{difference}");
    }
    if let Ok(linked) = link_image(name, data, Host::MadeUp) {
        // The image is the module's bytes, trailing zeroes trimmed: never
        // more than the memory the module was given.
        assert!(
            linked.image.len() as u64 <= linked.memory.1,
            "an image of {:#x} bytes for a module of {:#x}",
            linked.image.len(),
            linked.memory.1
        );
        debug_lines(data, &linked);
    }
}

/// What `--debug` does with a linked object (the probe reports where its
/// sections went): the debugger's copy with load addresses, and a line
/// lookup at each function. Must never panic.
fn debug_lines(data: &[u8], linked: &solder_linker::link::LinkedModule) {
    use solder_linker::plugins::DebugSource;
    use solder_linker::plugins::debug_objects::debug_image;
    use solder_linker::source_lines::{line_table, locate};
    let Some(places) = linked.section_addresses.as_ref().and_then(|p| p.first()) else {
        return;
    };
    let source = DebugSource {
        object: data,
        places,
    };
    let Some(image) = debug_image(&source) else {
        return;
    };
    for symbol in linked.crash_symbols.iter().flatten().take(4) {
        let _ = locate(&image, symbol.start);
        let _ = line_table(&image, symbol.start, symbol.start + symbol.size.min(4096));
    }
}

/// Links `data` as an archive named `name` (every member), then, unless it
/// already starts with the archive magic, a copy with the magic forced.
pub fn archive(name: &str, data: &[u8]) {
    // Read as a link reads it (each member object without its DWARF), an
    // archive links as it does whole.
    if let Some(difference) = archive_differs_without_debug(name, data) {
        panic!("{difference}");
    }
    let _ = link_archive(name, data, Host::MadeUp);
    if !data.starts_with(ARCHIVE_MAGIC) {
        let mut forced = ARCHIVE_MAGIC.to_vec();
        forced.extend_from_slice(data.get(ARCHIVE_MAGIC.len()..).unwrap_or_default());
        let _ = link_archive(name, &forced, Host::MadeUp);
    }
}
