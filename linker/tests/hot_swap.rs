//! Hot swap (`Session::replace`) and removal, with real C objects built by
//! `cc -O2` and `clang -O2` (fixtures under `fixtures/linker/hot_swap/`).
//!
//! Every test uses the same three-module shape, loaded in this order:
//!
//! - `log.c`: an event log that is never swapped (a third module that
//!   observes the provider's constructors, `+N`, and destructors, `-N`);
//! - `provider_v1.c` / `provider_v2.c`: the swappable module, defining
//!   `f()` (returns 1 or 2) and `b_data` (starts at 100 or 200);
//! - `consumer.c`: calls `f()`, keeps a pointer to it in its data, reads
//!   `b_data` directly and through a pointer in its data, and has state of
//!   its own.
//!
//! A swap must redirect callers and old pointers to the new `f`, re-bind
//! direct references to the new `b_data`, keep untouched modules' data, run
//! the old version's deinitializers, and reuse its memory.

mod support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use solder_linker::{ModuleId, ObjectFile, Session};
use support::{call, object, session};

const COMPILERS: [&str; 2] = ["cc", "clang"];

/// The command that reruns one test of this file.
fn rerun(test: &str) -> String {
    format!("rerun: cargo test -p solder-linker --test hot_swap -- {test} --exact")
}

/// Compiles a fixture with `compiler -O2 FLAGS` once per test process
/// (`support::compile_with` writes to a fixed path per compiler, source and
/// flags, so concurrent compiles of one fixture would race on that file).
fn build(compiler: &str, source: &str, flags: &[&str]) -> PathBuf {
    static BUILT: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    let mut all = vec!["-O2"];
    all.extend_from_slice(flags);
    built
        .get_or_insert_with(HashMap::new)
        .entry(format!("{compiler} {source} {all:?}"))
        .or_insert_with(|| support::compile_with(compiler, source, &all))
        .clone()
}

fn o2(compiler: &str, source: &str) -> PathBuf {
    build(compiler, source, &[])
}

fn fixture(compiler: &str, name: &str) -> ObjectFile {
    object(&o2(compiler, &format!("linker/hot_swap/{name}.c")))
}

/// A session with `log`, `provider_v1` and `consumer` loaded.
struct Swap {
    session: Session,
    log: ModuleId,
    provider: ModuleId,
    consumer: ModuleId,
}

fn swap_session(compiler: &str) -> Swap {
    swap_session_with(compiler, &[])
}

/// As [`swap_session`], with the consumer compiled with extra `flags`.
fn swap_session_with(compiler: &str, consumer_flags: &[&str]) -> Swap {
    let mut session = session();
    let log = session.load(&[fixture(compiler, "log")]).unwrap();
    let provider = session.load(&[fixture(compiler, "provider_v1")]).unwrap();
    let consumer = build(compiler, "linker/hot_swap/consumer.c", consumer_flags);
    let consumer = session.load(&[object(&consumer)]).unwrap();
    Swap {
        session,
        log,
        provider,
        consumer,
    }
}

/// The log's events, in order (the first 64).
fn events(session: &mut Session) -> Vec<i32> {
    let len = call(session, "events_len", &[]) as usize;
    (0..len.min(64))
        .map(|i| call(session, "event_at", &[i as u64]) as i32)
        .collect()
}

/// With the consumer as the compilers build it for PIE (direct calls through
/// R_X86_64_PLT32) and with `-fPIC -fno-plt` (calls and data through GOT
/// entries).
#[test]
fn callers_in_other_modules_reach_the_new_definition() {
    let test = "callers_in_other_modules_reach_the_new_definition";
    for compiler in COMPILERS {
        for flags in [&[][..], &["-fPIC", "-fno-plt"][..]] {
            let what = format!("{compiler}, consumer built with -O2 {}", flags.join(" "));
            let mut s = swap_session_with(compiler, flags);
            assert_eq!(
                call(&mut s.session, "call_f", &[]),
                1,
                "{what}: before the swap\n{}",
                rerun(test)
            );
            s.session
                .replace(s.provider, &[fixture(compiler, "provider_v2")])
                .unwrap();
            assert_eq!(
                call(&mut s.session, "call_f", &[]),
                2,
                "{what}: consumer's call to f() must reach provider_v2\n{}",
                rerun(test)
            );
            assert_eq!(
                call(&mut s.session, "read_b_data", &[]),
                200,
                "{what}: consumer's b_data must be provider_v2's\n{}",
                rerun(test)
            );
            assert_eq!(
                call(&mut s.session, "f", &[]),
                2,
                "{what}: lookup(\"f\") after the swap\n{}",
                rerun(test)
            );
            let mut live = s.session.modules();
            live.sort();
            assert_eq!(
                live,
                [s.log, s.provider, s.consumer],
                "{what}: a swap keeps the module's id\n{}",
                rerun(test)
            );
        }
    }
}

#[test]
fn pointers_taken_before_the_swap_reach_the_new_definition() {
    let test = "pointers_taken_before_the_swap_reach_the_new_definition";
    for compiler in COMPILERS {
        let mut s = swap_session(compiler);
        let f = s.session.lookup("f").unwrap().expect("f is exported");
        // SAFETY: `f` is `int f(void)` of a live module.
        let before = unsafe { s.session.call(f, &[]) }.unwrap();
        assert_eq!(before, 1, "{compiler}\n{}", rerun(test));
        assert_eq!(
            call(&mut s.session, "call_stored", &[]),
            1,
            "{compiler}\n{}",
            rerun(test)
        );
        s.session
            .replace(s.provider, &[fixture(compiler, "provider_v2")])
            .unwrap();
        // SAFETY: `f` was the address `lookup` gave for `int f(void)`, which
        // the session keeps valid across swaps; provider_v2 defines `f`.
        let after = unsafe { s.session.call(f, &[]) }.unwrap();
        assert_eq!(
            after,
            2,
            "{compiler}: an address from lookup(\"f\") taken before the swap must reach provider_v2\n{}",
            rerun(test)
        );
        assert_eq!(
            call(&mut s.session, "call_stored", &[]),
            2,
            "{compiler}: the pointer to f stored in consumer's data must reach provider_v2\n{}",
            rerun(test)
        );
    }
}

#[test]
fn untouched_modules_keep_their_data() {
    let test = "untouched_modules_keep_their_data";
    for compiler in COMPILERS {
        let mut s = swap_session(compiler);
        for expected in 1..=3 {
            assert_eq!(
                call(&mut s.session, "bump", &[]),
                expected,
                "{compiler}\n{}",
                rerun(test)
            );
        }
        s.session
            .replace(s.provider, &[fixture(compiler, "provider_v2")])
            .unwrap();
        assert_eq!(
            call(&mut s.session, "bump", &[]),
            4,
            "{compiler}: consumer's counter must survive a swap of the provider\n{}",
            rerun(test)
        );
        // The log (the other untouched module) kept its events too.
        assert_eq!(
            events(&mut s.session),
            [1, -1, 2],
            "{compiler}\n{}",
            rerun(test)
        );
    }
}

#[test]
fn direct_data_references_are_rebound_to_the_new_module() {
    let test = "direct_data_references_are_rebound_to_the_new_module";
    // gcc reads `b_data` with a PC-relative field in code, clang through a
    // GOT entry: both kinds of reference must be re-bound.
    let kinds: Vec<object::elf::RelocationType> = COMPILERS
        .iter()
        .flat_map(|c| support::relocation_types(&o2(c, "linker/hot_swap/consumer.c")))
        .collect();
    assert!(
        kinds.contains(&object::elf::R_X86_64_PC32)
            && kinds.contains(&object::elf::R_X86_64_REX_GOTPCRELX),
        "the consumer objects no longer exercise both PC32 and GOT data references: {kinds:?}\n{}",
        rerun(test)
    );
    for compiler in COMPILERS {
        let mut s = swap_session(compiler);
        assert_eq!(
            call(&mut s.session, "read_b_data", &[]),
            100,
            "{compiler}\n{}",
            rerun(test)
        );
        assert_eq!(
            call(&mut s.session, "read_via_pointer", &[]),
            100,
            "{compiler}\n{}",
            rerun(test)
        );
        call(&mut s.session, "write_b_data", &[111]);
        let old = s
            .session
            .lookup("b_data")
            .unwrap()
            .expect("b_data is exported");
        // SAFETY: `old` is the address of provider_v1's `int b_data`, live.
        let value = unsafe { (old as *const i32).read() };
        assert_eq!(
            value,
            111,
            "{compiler}: consumer's write must reach provider_v1's b_data\n{}",
            rerun(test)
        );
        s.session
            .replace(s.provider, &[fixture(compiler, "provider_v2")])
            .unwrap();
        assert_eq!(
            call(&mut s.session, "read_b_data", &[]),
            200,
            "{compiler}: consumer's reference to b_data must be re-bound to provider_v2's\n{}",
            rerun(test)
        );
        assert_eq!(
            call(&mut s.session, "read_via_pointer", &[]),
            200,
            "{compiler}: the pointer to b_data in consumer's data must be re-bound to provider_v2's\n{}",
            rerun(test)
        );
        call(&mut s.session, "write_b_data", &[222]);
        let new = s
            .session
            .lookup("b_data")
            .unwrap()
            .expect("b_data is exported");
        // SAFETY: `new` is the address of provider_v2's `int b_data`, live.
        let value = unsafe { (new as *const i32).read() };
        assert_eq!(
            value,
            222,
            "{compiler}: consumer's write must reach provider_v2's b_data\n{}",
            rerun(test)
        );
    }
}

#[test]
fn replaced_module_deinitializers_run() {
    let test = "replaced_module_deinitializers_run";
    for compiler in COMPILERS {
        let mut s = swap_session(compiler);
        assert_eq!(
            events(&mut s.session),
            [1],
            "{compiler}: v1's constructor\n{}",
            rerun(test)
        );
        s.session
            .replace(s.provider, &[fixture(compiler, "provider_v2")])
            .unwrap();
        assert_eq!(
            events(&mut s.session),
            [1, -1, 2],
            "{compiler}: v1's destructor, then v2's constructor\n{}",
            rerun(test)
        );
        s.session
            .replace(s.provider, &[fixture(compiler, "provider_v1")])
            .unwrap();
        assert_eq!(
            events(&mut s.session),
            [1, -1, 2, -2, 1],
            "{compiler}: swapping back runs v2's destructor and v1's constructor\n{}",
            rerun(test)
        );
    }
}

#[test]
fn thousand_replacements_keep_slab_use_flat() {
    let test = "thousand_replacements_keep_slab_use_flat";
    for compiler in COMPILERS {
        let mut s = swap_session(compiler);
        let versions = [
            fixture(compiler, "provider_v2"),
            fixture(compiler, "provider_v1"),
        ];
        let mut after_10 = 0;
        for i in 0..1000 {
            s.session
                .replace(s.provider, std::slice::from_ref(&versions[i % 2]))
                .unwrap_or_else(|e| {
                    panic!("{compiler}: replacement {i} failed: {e}\n{}", rerun(test))
                });
            if i == 9 {
                after_10 = s.session.slab_used();
            }
        }
        let after_1000 = s.session.slab_used();
        assert!(
            after_10 > 0,
            "{compiler}: slab_used() is 0\n{}",
            rerun(test)
        );
        assert_eq!(
            after_1000,
            after_10,
            "{compiler}: slab bytes in use after 1000 swaps vs after 10\n{}",
            rerun(test)
        );
        // The last one (i = 999) installed provider_v1, and everything
        // still works.
        assert_eq!(
            call(&mut s.session, "call_f", &[]),
            1,
            "{compiler}\n{}",
            rerun(test)
        );
        assert_eq!(
            call(&mut s.session, "read_b_data", &[]),
            100,
            "{compiler}\n{}",
            rerun(test)
        );
        assert_eq!(
            call(&mut s.session, "events_len", &[]),
            1 + 2 * 1000,
            "{compiler}: one destructor and one constructor per swap\n{}",
            rerun(test)
        );
    }
}

#[test]
fn remove_then_load_again() {
    let test = "remove_then_load_again";
    for compiler in COMPILERS {
        let mut session = session();
        session.load(&[fixture(compiler, "log")]).unwrap();
        let provider = session.load(&[fixture(compiler, "provider_v1")]).unwrap();
        let used = session.slab_used();
        session.remove(provider).unwrap();
        assert_eq!(
            session.lookup("f").unwrap(),
            None,
            "{compiler}: f after removal\n{}",
            rerun(test)
        );
        assert!(
            session.slab_used() < used,
            "{compiler}: removal must return memory to the slab\n{}",
            rerun(test)
        );
        let again = session.load(&[fixture(compiler, "provider_v2")]).unwrap();
        assert_ne!(
            again,
            provider,
            "{compiler}: a new load gets a new id\n{}",
            rerun(test)
        );
        assert_eq!(
            call(&mut session, "f", &[]),
            2,
            "{compiler}\n{}",
            rerun(test)
        );
        assert_eq!(
            events(&mut session),
            [1, -1, 2],
            "{compiler}: the removed module's destructor ran, then the new one's constructor\n{}",
            rerun(test)
        );
        // A later module links against the reloaded provider.
        session.load(&[fixture(compiler, "f_user")]).unwrap();
        assert_eq!(
            call(&mut session, "ten_f", &[]),
            20,
            "{compiler}\n{}",
            rerun(test)
        );
    }
}

#[test]
fn removing_a_module_in_use_is_refused_naming_the_symbol() {
    let test = "removing_a_module_in_use_is_refused_naming_the_symbol";
    for compiler in COMPILERS {
        let mut session = session();
        session.load(&[fixture(compiler, "log")]).unwrap();
        let provider = session.load(&[fixture(compiler, "provider_v1")]).unwrap();
        session.load(&[fixture(compiler, "f_user")]).unwrap();
        let err = session
            .remove(provider)
            .expect_err("removing a module another module uses must fail")
            .to_string();
        assert!(
            err.contains("`f`") && err.contains("provider_v1"),
            "{compiler}: the error must name the symbol `f` and the module's object: {err}\n{}",
            rerun(test)
        );
        // Nothing happened: no destructor ran, everything still works.
        assert_eq!(events(&mut session), [1], "{compiler}\n{}", rerun(test));
        assert_eq!(
            call(&mut session, "ten_f", &[]),
            10,
            "{compiler}\n{}",
            rerun(test)
        );
        assert_eq!(session.modules().len(), 3, "{compiler}\n{}", rerun(test));
    }
}

#[test]
fn replacement_missing_a_used_symbol_is_refused() {
    let test = "replacement_missing_a_used_symbol_is_refused";
    for compiler in COMPILERS {
        let mut s = swap_session(compiler);
        let used = s.session.slab_used();
        let err = s
            .session
            .replace(s.provider, &[fixture(compiler, "provider_missing")])
            .expect_err("a replacement without f must be refused")
            .to_string();
        assert!(
            err.contains("`f`"),
            "{compiler}: the error must name the missing symbol `f`: {err}\n{}",
            rerun(test)
        );
        // The session still works with provider_v1, which never ended.
        assert_eq!(
            call(&mut s.session, "call_f", &[]),
            1,
            "{compiler}\n{}",
            rerun(test)
        );
        assert_eq!(
            call(&mut s.session, "read_b_data", &[]),
            100,
            "{compiler}\n{}",
            rerun(test)
        );
        assert_eq!(
            events(&mut s.session),
            [1],
            "{compiler}: neither v1's destructor nor the rejected module's constructor may run\n{}",
            rerun(test)
        );
        assert_eq!(
            s.session.slab_used(),
            used,
            "{compiler}: the rejected module's memory must be released\n{}",
            rerun(test)
        );
        // And a good replacement still goes through afterwards.
        s.session
            .replace(s.provider, &[fixture(compiler, "provider_v2")])
            .unwrap();
        assert_eq!(
            call(&mut s.session, "call_f", &[]),
            2,
            "{compiler}\n{}",
            rerun(test)
        );
    }
}
