//! Fuzz target `coff`: the bytes as a COFF object (and with the magic
//! forced) through the whole load pipeline into a byte image, with no
//! executor: parse, resolve, plan, lay out, relocate. Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use solder_linker::graph::ObjectFormat;

fuzz_target!(|data: &[u8]| solder_fuzz::object("fuzz.obj", ObjectFormat::Coff, data));
