//! Fuzz target `scenario`: the bytes as a conformance scenario file (YAML),
//! parsed and checked against the schema. Must never panic: a bad scenario
//! is an error naming the file, line and column or the step at fault.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use solder_conformance::schema::Scenario;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Scenario::parse(Path::new("fuzz.yaml"), text);
    }
});
