//! TLS carriers loaded by the platform's dynamic loader: a static carrier's
//! block sits at one thread-pointer offset in every thread, initialized
//! from the template in the threads that existed when it was loaded and in
//! those created later, one copy per thread; `__tls_get_addr` with the
//! carrier's module id reaches the same copy; a carrier that is not static
//! is reached through `__tls_get_addr` alone. A host probe finds a host
//! library's thread-local variable where the library keeps it.

use std::sync::{Arc, Barrier};

use solder_executor::sys::tls::{self, Carrier};
use solder_executor::tls_carrier::{TlsTemplate, carrier_object};

const INIT: [u8; 12] = *b"solder-tls!\0";
const ZERO: u64 = 52;

/// Reruns every test of this file (for helpers shared by the tests).
const RERUN_ALL: &str = "rerun: cargo test -p solder-executor --test tls_carrier";

fn rerun(test: &str) -> String {
    format!("rerun: cargo test -p solder-executor --test tls_carrier -- {test} --exact")
}

fn load(static_tls: bool) -> Carrier {
    let template = TlsTemplate {
        init: &INIT,
        zero_size: ZERO,
        align: 64,
    };
    Carrier::load(&carrier_object(&template, static_tls).unwrap()).unwrap()
}

/// The block at `address` in the calling thread: the template's bytes,
/// then zeros (checked), then a mark of this thread's own is written.
fn check_fresh_and_mark(address: u64, mark: u8, what: &str) {
    // SAFETY: `address` is this thread's copy of an open carrier's block,
    // INIT.len() + ZERO bytes long, which nothing else touches.
    let block =
        unsafe { std::slice::from_raw_parts_mut(address as *mut u8, INIT.len() + ZERO as usize) };
    assert_eq!(
        &block[..INIT.len()],
        &INIT,
        "{what}: template bytes\n{RERUN_ALL}"
    );
    assert!(
        block[INIT.len()..].iter().all(|&b| b == 0),
        "{what}: zero-fill\n{RERUN_ALL}"
    );
    block[0] = mark;
}

/// This thread's first byte of the block at `address`.
fn first_byte(address: u64) -> u8 {
    // SAFETY: as in `check_fresh_and_mark`.
    unsafe { (address as *const u8).read() }
}

#[test]
fn a_static_block_is_at_one_offset_in_every_thread_and_fresh_in_each() {
    let test = "a_static_block_is_at_one_offset_in_every_thread_and_fresh_in_each";
    // A thread that exists (blocked) before the carrier is loaded.
    let loaded = Arc::new(Barrier::new(2));
    let checked = Arc::new(Barrier::new(2));
    let carrier = Arc::new(std::sync::OnceLock::<Carrier>::new());
    let earlier = {
        let (loaded, checked, carrier) = (loaded.clone(), checked.clone(), carrier.clone());
        std::thread::spawn(move || {
            loaded.wait();
            let carrier = carrier.get().unwrap();
            let address = tls::thread_pointer().wrapping_add_signed(carrier.tp_offset());
            check_fresh_and_mark(address, b'E', "a thread older than the carrier");
            checked.wait();
            // The main thread has written its own copy meanwhile.
            assert_eq!(
                first_byte(address),
                b'E',
                "one copy per thread\n{RERUN_ALL}"
            );
            address
        })
    };
    carrier.set(load(true)).unwrap();
    let carrier = carrier.get().unwrap();
    let offset = carrier.tp_offset();
    assert!(
        offset < 0,
        "a static block lies below the thread pointer: {offset}\n{}",
        rerun(test)
    );
    assert_eq!(
        offset % 64,
        0,
        "aligned as the template says\n{}",
        rerun(test)
    );
    loaded.wait();

    let here = tls::thread_pointer().wrapping_add_signed(offset);
    check_fresh_and_mark(here, b'M', "the loading thread");
    let module = carrier.module_id().unwrap();
    // SAFETY: an open carrier's module id and an offset inside its block.
    let via_get_addr = unsafe { tls::tls_get_addr(module, 5) }.unwrap();
    assert_eq!(
        via_get_addr,
        here + 5,
        "general-dynamic access reaches the same copy\n{}",
        rerun(test)
    );
    assert_eq!(
        carrier.block_in_this_thread(),
        Some(here),
        "{}",
        rerun(test)
    );
    checked.wait();
    let there = earlier.join().unwrap();
    assert_ne!(there, here, "one copy per thread\n{}", rerun(test));

    // A thread created after the load.
    let later = std::thread::scope(|s| {
        s.spawn(|| {
            let address = tls::thread_pointer().wrapping_add_signed(offset);
            check_fresh_and_mark(address, b'L', "a thread younger than the carrier");
            // SAFETY: as above.
            let via_get_addr = unsafe { tls::tls_get_addr(module, 0) }.unwrap();
            assert_eq!(via_get_addr, address, "{RERUN_ALL}");
            address
        })
        .join()
        .unwrap()
    });
    assert_ne!(later, here, "one copy per thread\n{}", rerun(test));
    assert_eq!(
        first_byte(here),
        b'M',
        "other threads left this copy alone\n{}",
        rerun(test)
    );
}

#[test]
fn a_dynamic_block_is_reached_through_tls_get_addr_in_each_thread() {
    let test = "a_dynamic_block_is_reached_through_tls_get_addr_in_each_thread";
    let carrier = load(false);
    assert_eq!(
        carrier.tp_offset(),
        0,
        "no static TLS asked for\n{}",
        rerun(test)
    );
    let module = carrier.module_id().unwrap();
    // SAFETY: an open carrier's module id and an offset inside its block.
    let here = unsafe { tls::tls_get_addr(module, 0) }.unwrap();
    assert_eq!(here % 64, 0, "aligned\n{}", rerun(test));
    check_fresh_and_mark(here, b'M', "the loading thread");
    assert_eq!(
        carrier.block_in_this_thread(),
        Some(here),
        "{}",
        rerun(test)
    );
    let there = std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: as above.
            let there = unsafe { tls::tls_get_addr(module, 0) }.unwrap();
            check_fresh_and_mark(there, b'O', "another thread");
            there
        })
        .join()
        .unwrap()
    });
    assert_ne!(there, here, "one copy per thread\n{}", rerun(test));
    assert_eq!(first_byte(here), b'M', "{}", rerun(test));
}

#[test]
fn carriers_open_together_have_blocks_of_their_own() {
    let test = "carriers_open_together_have_blocks_of_their_own";
    let carriers: Vec<Carrier> = (0..4).map(|_| load(true)).collect();
    let mut ids: Vec<u64> = carriers.iter().map(|c| c.module_id().unwrap()).collect();
    let mut offsets: Vec<i64> = carriers.iter().map(Carrier::tp_offset).collect();
    ids.sort_unstable();
    ids.dedup();
    offsets.sort_unstable();
    offsets.dedup();
    assert_eq!(ids.len(), 4, "one module id each: {ids:?}\n{}", rerun(test));
    assert_eq!(
        offsets.len(),
        4,
        "one static block each: {offsets:?}\n{}",
        rerun(test)
    );
    let block = INIT.len() as i64 + ZERO as i64;
    for pair in offsets.windows(2) {
        assert!(
            pair[1] - pair[0] >= block,
            "blocks overlap: {offsets:?}\n{}",
            rerun(test)
        );
    }
}

/// A host probe finds libc's own thread-local `errno` where libc keeps it:
/// its thread-pointer offset reaches `__errno_location()` in this thread
/// and in another, and `__tls_get_addr` with its module id and offset
/// reaches the same address. An undefined name is the loader's error.
#[test]
fn a_host_probe_finds_libcs_errno_where_libc_keeps_it() {
    let test = "a_host_probe_finds_libcs_errno_where_libc_keeps_it";
    let errno = solder_executor::thread_locals::host_thread_local("errno", true)
        .unwrap_or_else(|e| panic!("{e}\n{}", rerun(test)));
    let tp_offset = errno.tp_offset.expect("asked for a fixed place");
    let here = move || {
        // SAFETY: glibc's `int *__errno_location(void)`, no preconditions.
        let location = unsafe { libc::__errno_location() } as u64;
        (
            location,
            tls::thread_pointer().wrapping_add_signed(tp_offset),
        )
    };
    let (location, by_offset) = here();
    assert_eq!(by_offset, location, "this thread\n{}", rerun(test));
    let (location, by_offset) = std::thread::spawn(here).join().unwrap();
    assert_eq!(by_offset, location, "another thread\n{}", rerun(test));
    // SAFETY: libc's module id and errno's offset in its block, as the
    // loader said.
    let by_index = unsafe { tls::tls_get_addr(errno.module, errno.offset) }.unwrap();
    assert_eq!(by_index, here().0, "__tls_get_addr\n{}", rerun(test));
    let missing =
        solder_executor::thread_locals::host_thread_local("no_such_tls_here", false).unwrap_err();
    assert!(
        missing.contains("undefined symbol") && missing.contains("no_such_tls_here"),
        "{missing}\n{}",
        rerun(test)
    );
}

/// A name the host defines as something other than a thread-local
/// variable (a function of libc, one of libm, which has no TLS at all) is
/// refused before any probe: the loader would resolve thread-local
/// relocations against it into nonsense (or, for a library without TLS,
/// divide by its zero TLS alignment).
#[test]
fn a_host_probe_refuses_names_that_are_not_thread_local() {
    let test = "a_host_probe_refuses_names_that_are_not_thread_local";
    let mut host = solder_executor::host::HostLibraries::with_defaults().unwrap();
    for name in ["puts", "cos"] {
        for fixed in [false, true] {
            let refused = host
                .thread_local(name, fixed)
                .expect_err("not a thread-local variable");
            assert!(
                refused.contains("not a thread-local variable"),
                "{name}: {refused}\n{}",
                rerun(test)
            );
        }
    }
}
