//! Loads that combine object formats: COFF code (Microsoft x64 calling
//! convention) calling a System V module through a generated shim, and the
//! combinations Solder refuses with an error instead of miscalling: a load
//! mixing COFF with ELF objects, and System V code calling a COFF function.
//! Objects are built with clang for each target (the conformance suite runs
//! every scenario per format; these are the cases one format cannot show).

mod support;

use solder_linker::LinkError;
use support::{call, compile_with, object, session};

const COFF: &str = "--target=x86_64-pc-windows-msvc";
const ELF: &str = "--target=x86_64-unknown-linux-gnu";

fn build(source: &str, target: &str) -> solder_linker::ObjectFile {
    let flags = [target, "-O2", "-nostdinc", "-fno-stack-protector"];
    object(&compile_with("clang", source, &flags))
}

#[test]
fn coff_code_calls_a_system_v_module_through_a_shim() {
    let mut s = session();
    s.load(&[build("conformance/linking/lib.c", ELF)]).unwrap();
    s.load(&[build("conformance/linking/app.c", COFF)]).unwrap();
    // lib_twice(20) + strlen("abc"): both callees are System V functions.
    assert_eq!(call(&mut s, "app", &[20]), 43);
}

#[test]
fn a_load_mixing_coff_and_elf_objects_is_refused() {
    let mut s = session();
    let err = s
        .load(&[
            build("conformance/linking/lib.c", ELF),
            build("conformance/linking/app.c", COFF),
        ])
        .unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, LinkError::UnsupportedObject { .. })
            && message.contains("cannot mix COFF objects"),
        "{message}\nrerun: cargo test -p solder-linker --test formats -- a_load_mixing"
    );
}

#[test]
fn system_v_code_calling_a_coff_function_is_refused() {
    let mut s = session();
    s.load(&[build("conformance/linking/lib.c", COFF)]).unwrap();
    let err = s
        .load(&[build("conformance/linking/app.c", ELF)])
        .unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, LinkError::UnsupportedRelocation(_))
            && message.contains("`lib_twice`")
            && message.contains("Microsoft x64"),
        "{message}\nrerun: cargo test -p solder-linker --test formats -- system_v_code"
    );
}
