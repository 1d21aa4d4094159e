//! Loads that combine object formats: COFF code (Microsoft x64 calling
//! convention) calling a System V module through a generated shim, and the
//! combinations Solder refuses with an error instead of miscalling: a load
//! mixing COFF with ELF objects, and System V code calling a COFF function.
//! Objects are built with clang for each target (the conformance suite runs
//! every scenario per format; these are the cases one format cannot show).
//! Objects of link-time optimization (`-flto`) hold a compiler's
//! intermediate code instead of machine code: they are refused, naming the
//! flag, unless GCC also put machine code in them.

mod support;

use object::{Object, ObjectSymbol};
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

const LTO_RERUN: &str = "rerun: cargo test -p solder-linker --test formats -- lto";

/// Loading `object` alone is refused as an unsupported object, with a
/// message that says each of `parts`.
fn assert_refused_saying(object: &std::path::Path, parts: &[&str]) {
    let err = session().load(&[support::object(object)]).unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, LinkError::UnsupportedObject { .. })
            && parts.iter().all(|part| message.contains(part)),
        "{}: {message}\nexpected to say {parts:?}\n{LTO_RERUN}",
        object.display()
    );
}

#[test]
fn a_gcc_lto_object_without_machine_code_is_refused_naming_the_flags() {
    let slim = compile_with("gcc", "conformance/linking/lib.c", &["-O2", "-flto"]);
    let bytes = std::fs::read(&slim).unwrap();
    let file = object::File::parse(&*bytes).unwrap();
    assert!(
        file.symbols().any(|s| s.name() == Ok("__gnu_lto_slim")),
        "gcc -flto did not write a slim LTO object\n{LTO_RERUN}"
    );
    assert_refused_saying(&slim, &["GCC LTO", "-ffat-lto-objects"]);
}

#[test]
fn a_fat_gcc_lto_object_links_its_machine_code() {
    let flags = ["-O2", "-flto", "-ffat-lto-objects"];
    let fat = compile_with("gcc", "conformance/linking/lib.c", &flags);
    let mut s = session();
    s.load(&[object(&fat)]).unwrap();
    assert_eq!(call(&mut s, "lib_twice", &[21]), 42, "{LTO_RERUN}");
}

#[test]
fn llvm_bitcode_of_lto_is_refused_naming_the_flag() {
    for flto in ["-flto", "-flto=thin"] {
        let bitcode = compile_with("clang", "conformance/linking/lib.c", &[ELF, "-O2", flto]);
        let bytes = std::fs::read(&bitcode).unwrap();
        assert!(
            bytes.starts_with(b"BC\xc0\xde"),
            "clang {flto} did not write bitcode\n{LTO_RERUN}"
        );
        assert_refused_saying(&bitcode, &["LLVM bitcode", "without -flto"]);
    }
}
