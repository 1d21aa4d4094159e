//! Fuzz target `ld_script`: the bytes as a library's linker script (what
//! `-l NAME` may find as `libNAME.so`): sniffed, then, when they are UTF-8,
//! read for the files they name. Must never panic: a script that is not a
//! library's is an error naming what in it is not understood.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use solder_linker::search::ld_script;

fuzz_target!(|data: &[u8]| {
    let _ = ld_script::looks_like_script(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ld_script::inputs(text, Path::new("/fuzz/libfuzz.so"));
    }
});
