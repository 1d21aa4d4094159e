//! Fuzz target `archive`: the bytes as a static archive (and with the
//! `!<arch>` magic forced): read and indexed, every member taken as
//! `--whole-archive` takes them, and all of them linked as one load into a
//! byte image with no executor. Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| solder_fuzz::archive("fuzz.a", data));
