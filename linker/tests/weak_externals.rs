//! COFF weak externals by characteristic (the auxiliary record's
//! `IMAGE_WEAK_EXTERN_SEARCH_*`), with objects built by clang for
//! `x86_64-pc-windows-msvc` from `fixtures/conformance/linking/
//! weak_external*.c`: a weak definition of `weak_hook` (its default) with a
//! caller, another object's reference, a strong definition.
//!
//! clang writes every weak external as `IMAGE_WEAK_EXTERN_SEARCH_ALIAS`
//! (3); the scenario `linking/coff-weak-external-alias` runs that object,
//! and a test here proves it has that characteristic. The other two
//! (`NOLIBRARY`, 1, and `LIBRARY`, 2) are made by patching the
//! characteristic of the built object; each test first reads it back with
//! the `object` crate, independently of Solder's front-end:
//!
//! - NOLIBRARY: the name is not defined for anyone else: another object's
//!   reference is undefined (in the same load and in a later one), the
//!   module does not export it; the object's own references reach a
//!   definition of the name elsewhere, or else the default.
//! - LIBRARY: like ALIAS, a weak definition others bind to and a strong
//!   definition overrides.

mod support;

use std::path::PathBuf;
use std::sync::Mutex;

use object::LittleEndian;
use object::pe::{self, WeakExternSearch};
use object::read::coff::{CoffHeader, Symbol as _};
use solder_linker::{LinkError, ObjectFile, Session};
use support::{call, object, session};

/// The command that reruns one test of this file.
fn rerun(test: &str) -> String {
    format!("rerun: cargo test -p solder-linker --test weak_externals -- {test} --exact")
}

/// `fixtures/conformance/linking/NAME` built for COFF as the conformance
/// suite builds it, once per test process (`support::compile_with` writes
/// to a fixed path per source and flags).
fn build(name: &str) -> PathBuf {
    static BUILT: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, path)) = built.iter().find(|(n, _)| n == name) {
        return path.clone();
    }
    let flags = [
        "--target=x86_64-pc-windows-msvc",
        "-O2",
        "-nostdinc",
        "-std=gnu11",
        "-fno-stack-protector",
    ];
    let path = support::compile_with("clang", &format!("conformance/linking/{name}"), &flags);
    built.push((name.to_string(), path.clone()));
    path
}

/// The weak definition's object.
const WEAK: &str = "weak_external.c";

/// Where the auxiliary record of weak external `name` is in `bytes`, and
/// its characteristic, read with the `object` crate.
fn weak_external(bytes: &[u8], name: &str) -> (usize, WeakExternSearch) {
    let mut offset = 0;
    let header = pe::ImageFileHeader::parse(bytes, &mut offset).expect("a COFF header");
    let symbols = header.symbols(bytes).expect("a symbol table");
    let strings = symbols.strings();
    let (index, _) = symbols
        .iter()
        .find(|(_, s)| {
            s.name(strings) == Ok(name.as_bytes())
                && s.storage_class() == pe::IMAGE_SYM_CLASS_WEAK_EXTERNAL
        })
        .unwrap_or_else(|| panic!("no weak external `{name}`"));
    let aux = symbols
        .aux_weak_external(index)
        .expect("an auxiliary weak-external record");
    let at =
        header.pointer_to_symbol_table() as usize + (index.0 + 1) * size_of::<pe::ImageSymbol>();
    (at, aux.weak_search_type.get(LittleEndian))
}

/// The weak definition's object with its weak external's characteristic
/// set to `characteristic`, read back to prove it.
fn weak_with(characteristic: WeakExternSearch, test: &str) -> ObjectFile {
    let original = object(&build(WEAK));
    let (at, clang_wrote) = weak_external(&original.bytes, "weak_hook");
    assert_eq!(
        clang_wrote,
        pe::IMAGE_WEAK_EXTERN_SEARCH_ALIAS,
        "clang wrote `weak_hook` with another characteristic\n{}",
        rerun(test)
    );
    let mut bytes = original.bytes.into_vec();
    // The characteristic follows the default symbol's index.
    bytes[at + 4..at + 8].copy_from_slice(&characteristic.0.to_le_bytes());
    assert_eq!(
        weak_external(&bytes, "weak_hook").1,
        characteristic,
        "the patched object's characteristic\n{}",
        rerun(test)
    );
    ObjectFile {
        name: format!("{}[search {}]", original.name, characteristic.0),
        bytes: bytes.into(),
    }
}

fn user() -> ObjectFile {
    object(&build("weak_external_user.c"))
}

fn strong() -> ObjectFile {
    object(&build("weak_external_strong.c"))
}

/// Asserts that `load` failed as an undefined `weak_hook` referenced by
/// the user object.
fn assert_undefined_in_user(load: Result<solder_linker::ModuleId, LinkError>, test: &str) {
    match load {
        Err(LinkError::Undefined { symbol, site }) => {
            assert!(
                symbol == "weak_hook" && site.object.contains("weak_external_user"),
                "undefined `{symbol}` referenced by {site}: expected `weak_hook`, referenced by \
                 the user object\n{}",
                rerun(test)
            );
        }
        Err(other) => panic!(
            "expected an undefined `weak_hook`, got: {other}\n{}",
            rerun(test)
        ),
        Ok(_) => panic!(
            "the user's reference to `weak_hook` was satisfied by a weak external without \
             library search\n{}",
            rerun(test)
        ),
    }
}

fn exported(s: &mut Session, name: &str) -> bool {
    s.lookup(name).unwrap().is_some()
}

/// clang's weak definition is a weak external with
/// `IMAGE_WEAK_EXTERN_SEARCH_ALIAS`: what the conformance scenario
/// `linking/coff-weak-external-alias` exercises.
#[test]
fn clang_writes_weak_definitions_as_search_alias() {
    let test = "clang_writes_weak_definitions_as_search_alias";
    let weak = object(&build(WEAK));
    let (_, characteristic) = weak_external(&weak.bytes, "weak_hook");
    assert_eq!(
        characteristic,
        pe::IMAGE_WEAK_EXTERN_SEARCH_ALIAS,
        "{}\n{}",
        weak.name,
        rerun(test)
    );
}

/// `IMAGE_WEAK_EXTERN_SEARCH_NOLIBRARY`: the weak external does not
/// define its name for other objects, in its load or a later one, and the
/// module does not export it; its own object's references reach the
/// default, or a definition of the name elsewhere in the load.
#[test]
fn a_weak_external_without_library_search_defines_nothing_for_others() {
    let test = "a_weak_external_without_library_search_defines_nothing_for_others";
    let nolibrary = || weak_with(pe::IMAGE_WEAK_EXTERN_SEARCH_NOLIBRARY, test);

    // Another object's reference in the same load.
    let mut s = session();
    assert_undefined_in_user(s.load(&[nolibrary(), user()]), test);

    // Alone: its own reference reaches the default; nothing is exported
    // under the name, so a later load's reference is undefined too.
    s.load(&[nolibrary()])
        .unwrap_or_else(|e| panic!("{e}\n{}", rerun(test)));
    assert_eq!(
        call(&mut s, "call_weak_hook", &[]),
        11,
        "the object's own call reaches the default\n{}",
        rerun(test)
    );
    assert!(
        !exported(&mut s, "weak_hook"),
        "the module exports `weak_hook`\n{}",
        rerun(test)
    );
    assert_undefined_in_user(s.load(&[user()]), test);

    // A strong definition elsewhere in the load is what its own reference
    // reaches, with no duplicate.
    let mut s = session();
    s.load(&[nolibrary(), strong()])
        .unwrap_or_else(|e| panic!("{e}\n{}", rerun(test)));
    assert_eq!(
        call(&mut s, "call_weak_hook", &[]),
        12,
        "the strong definition wins\n{}",
        rerun(test)
    );
}

/// `IMAGE_WEAK_EXTERN_SEARCH_LIBRARY`: as with ALIAS, the name is a weak
/// definition every object binds to, exported, and a strong definition in
/// the load overrides it.
#[test]
fn a_weak_external_with_library_search_is_a_weak_definition() {
    let test = "a_weak_external_with_library_search_is_a_weak_definition";
    let library = || weak_with(pe::IMAGE_WEAK_EXTERN_SEARCH_LIBRARY, test);

    let mut s = session();
    s.load(&[library(), user()])
        .unwrap_or_else(|e| panic!("{e}\n{}", rerun(test)));
    assert_eq!(
        call(&mut s, "use_weak_hook", &[]),
        101,
        "another object's reference reaches the default\n{}",
        rerun(test)
    );
    assert_eq!(call(&mut s, "call_weak_hook", &[]), 11, "{}", rerun(test));
    assert!(
        exported(&mut s, "weak_hook"),
        "the module does not export `weak_hook`\n{}",
        rerun(test)
    );

    let mut s = session();
    s.load(&[library(), strong()])
        .unwrap_or_else(|e| panic!("{e}\n{}", rerun(test)));
    assert_eq!(
        call(&mut s, "call_weak_hook", &[]),
        12,
        "the strong definition wins\n{}",
        rerun(test)
    );
}
