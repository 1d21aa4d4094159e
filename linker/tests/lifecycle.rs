//! Lifecycle semantics of loaded modules, checked with real C objects built
//! by `cc -O2` and `clang -O2` (fixtures under `fixtures/linker/`):
//!
//! - initializers: only a load's own run, once; priorities across and within
//!   objects, and `.ctors` next to `.init_array`, in the order a native link
//!   gives (the same objects linked with `cc` and run);
//! - deinitializers and `atexit` / `__cxa_atexit` handlers: at module
//!   removal in `dlclose` order (compared with a native `dlclose` of the
//!   same code built as a shared object), while the module's data is still
//!   readable; at session end in `exit` order; never again for a module that
//!   was removed;
//! - the end of a whole program — `main` returning, `exit(n)` and
//!   `quick_exit(n)` from JIT'd code — through `solder run`, whose stdout
//!   and exit status must equal the native program's byte for byte.
//!
//! In-process tests observe order through a trace buffer inside the
//! fixtures (`trace.c`) or a sink buffer the test owns (`handlers.c`).

mod support;

use std::collections::HashMap;
use std::ffi::{CStr, c_char};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use solder_linker::{ObjectFile, Session};
use support::{call, object, session, solder, stderr, stdout};

const COMPILERS: [&str; 2] = ["cc", "clang"];

/// The command that reruns one test of this file.
fn rerun(test: &str) -> String {
    format!("rerun: cargo test -p solder-linker --test lifecycle -- {test} --exact")
}

/// Compiles a fixture once per test process. `support::compile_with` writes
/// to a path derived from the compiler, source and flags, so two tests
/// compiling the same fixture at the same time would race on that file.
fn build(compiler: &str, source: &str, flags: &[&str]) -> PathBuf {
    static BUILT: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    let key = format!("{compiler} {source} {flags:?}");
    built
        .get_or_insert_with(HashMap::new)
        .entry(key)
        .or_insert_with(|| support::compile_with(compiler, source, flags))
        .clone()
}

/// A C fixture compiled with `compiler -O2`.
fn o2(compiler: &str, source: &str) -> PathBuf {
    build(compiler, source, &["-O2"])
}

/// Runs a native tool (compiler driver or built program), failing the test
/// with the full command line when it cannot start.
fn run_command(program: &Path, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()))
}

/// Links `objects` natively with the `cc` driver plus `extra` flags into
/// `target/tmp/linker-native/NAME`, once per test process (tests sharing a
/// NAME share the executable rather than race on it).
fn link_native(objects: &[&Path], extra: &[&str], name: &str) -> PathBuf {
    static LINKED: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::new(None);
    let mut linked = LINKED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(exe) = linked.get_or_insert_with(HashMap::new).get(name) {
        return exe.clone();
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("linker-native");
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join(name);
    let mut args: Vec<&str> = objects.iter().map(|p| p.to_str().unwrap()).collect();
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-o", exe.to_str().unwrap()]);
    let result = run_command(Path::new("cc"), &args);
    assert!(
        result.status.success(),
        "native link failed: cc {}\n{}",
        args.join(" "),
        stderr(&result)
    );
    linked
        .get_or_insert_with(HashMap::new)
        .insert(name.to_string(), exe.clone());
    exe
}

/// Asserts that `solder run` behaved exactly like the native program:
/// identical stdout, same exit code or same terminating signal.
fn assert_same_as_native(native: &Output, jit: &Output, what: &str, test: &str) {
    assert_eq!(
        stdout(jit),
        stdout(native),
        "{what}: `solder run` stdout (left) differs from the native program's (right)\n\
         solder stderr:\n{}\n{}",
        stderr(jit),
        rerun(test)
    );
    assert_eq!(
        (jit.status.code(), jit.status.signal()),
        (native.status.code(), native.status.signal()),
        "{what}: `solder run` exit (code, signal) (left) differs from native (right)\n\
         solder stderr:\n{}\n{}",
        stderr(jit),
        rerun(test)
    );
}

fn objects(paths: &[&Path]) -> Vec<ObjectFile> {
    paths.iter().map(|p| object(p)).collect()
}

/// The string the fixture's `get_trace()` returns.
fn trace_of(session: &mut Session) -> String {
    let address = call(session, "get_trace", &[]);
    // SAFETY: `get_trace` returns the address of trace.c's NUL-terminated
    // buffer, which lives in a module of this still-open session.
    unsafe { CStr::from_ptr(address as *const c_char) }
        .to_string_lossy()
        .into_owned()
}

/// Initializers in `objects` loaded in-process, and the same objects linked
/// natively with a `main` that prints the trace: both traces.
fn in_process_and_native_trace(objs: &[&Path], name: &str, test: &str) -> (String, String) {
    let mut session = session();
    session
        .load(&objects(objs))
        .unwrap_or_else(|e| panic!("{name}: load failed: {e}\n{}", rerun(test)));
    let jit = trace_of(&mut session);
    let main = o2("cc", "linker/print_trace_main.c");
    let mut native_objs = objs.to_vec();
    native_objs.push(&main);
    let exe = link_native(&native_objs, &[], name);
    let output = run_command(&exe, &[]);
    assert!(
        output.status.success(),
        "{name}: native run failed\n{}",
        rerun(test)
    );
    (jit, stdout(&output).trim_end().to_string())
}

#[test]
fn initializers_run_once_per_load() {
    let test = "initializers_run_once_per_load";
    for compiler in COMPILERS {
        let a = o2(compiler, "linker/lifecycle/init_once_a.c");
        let b = o2(compiler, "linker/lifecycle/init_once_b.c");
        let mut session = session();
        session.load(&[object(&a)]).unwrap();
        assert_eq!(
            call(&mut session, "a_init_count", &[]),
            1,
            "{compiler}: the first load's constructor must run once\n{}",
            rerun(test)
        );
        session.load(&[object(&b)]).unwrap();
        assert_eq!(
            call(&mut session, "b_init_count", &[]),
            1,
            "{compiler}: the second load's constructor must run once\n{}",
            rerun(test)
        );
        assert_eq!(
            call(&mut session, "a_count_seen_by_b", &[]),
            1,
            "{compiler}: the second load's constructor must see the first's already run\n{}",
            rerun(test)
        );
        assert_eq!(
            call(&mut session, "a_init_count", &[]),
            1,
            "{compiler}: a second load must not re-run the first load's constructor\n{}",
            rerun(test)
        );
    }
}

#[test]
fn ctor_priorities_match_native() {
    let test = "ctor_priorities_match_native";
    for compiler in COMPILERS {
        let a = o2(compiler, "linker/lifecycle/prio_a.c");
        let b = o2(compiler, "linker/lifecycle/prio_b.c");
        let trace = o2(compiler, "linker/trace.c");
        for (order, objs) in [("a-b", [&a, &b, &trace]), ("b-a", [&b, &a, &trace])] {
            let name = format!("ctor_priorities-{compiler}-{order}");
            let objs: Vec<&Path> = objs.iter().map(|p| p.as_path()).collect();
            let (jit, native) = in_process_and_native_trace(&objs, &name, test);
            assert_eq!(
                jit,
                native,
                "{compiler}, objects in order {order}: constructor order (left) differs from a native link (right)\n{}",
                rerun(test)
            );
            // The native order itself, so a broken reference cannot pass.
            assert!(
                native.starts_with("a101,b101,b150,") || native.starts_with("b101,a101,b150,"),
                "{compiler}: unexpected native order {native}\n{}",
                rerun(test)
            );
        }
    }
}

/// GNU ld sorts prioritized initializer and finalizer sections by priority,
/// and sections of equal priority by name: gcc's `.init_array.00101` comes
/// before clang's `.init_array.101` whatever the link order, and
/// `.dtors.65335` before `.fini_array.00200`.
#[test]
fn equal_priorities_sort_by_section_name_as_native() {
    let test = "equal_priorities_sort_by_section_name_as_native";
    let gcc_a = o2("cc", "linker/lifecycle/prio_a.c");
    let clang_b = o2("clang", "linker/lifecycle/prio_b.c");
    let trace = o2("cc", "linker/trace.c");
    let (jit, native) =
        in_process_and_native_trace(&[&clang_b, &gcc_a, &trace], "priority-names", test);
    assert!(
        native.starts_with("a101,b101,"),
        "native reference changed: {native}\n{}",
        rerun(test)
    );
    assert_eq!(
        jit,
        native,
        "clang object with .init_array.101 linked before a gcc object with .init_array.00101: \
         order (left) differs from a native link (right)\n{}",
        rerun(test)
    );
}

#[test]
fn ctors_sections_match_native() {
    let test = "ctors_sections_match_native";
    for compiler in COMPILERS {
        let ctors = o2(compiler, "linker/lifecycle/ctors_sections.c");
        let trace = o2(compiler, "linker/trace.c");
        let name = format!("ctors_sections-{compiler}");
        let (jit, native) = in_process_and_native_trace(&[&ctors, &trace], &name, test);
        assert_eq!(
            jit,
            native,
            "{compiler}: .ctors / .init_array order (left) differs from a native link (right)\n{}",
            rerun(test)
        );
        assert!(
            native.contains("ctors_2,ctors_1"),
            "{compiler}: native reference must run a .ctors section's entries last-first: {native}\n{}",
            rerun(test)
        );
    }
}

/// Runs `exit_order` natively and through `solder run` in `mode` and
/// compares stdout and status.
fn check_exit_order(mode: &str, expected_status: i32, test: &str) {
    for compiler in COMPILERS {
        let a = o2(compiler, "linker/lifecycle/exit_order.c");
        let b = o2(compiler, "linker/lifecycle/exit_order_b.c");
        let exe = link_native(&[&a, &b], &[], &format!("exit_order-{compiler}"));
        let native = run_command(&exe, &[mode]);
        assert_eq!(
            native.status.code(),
            Some(expected_status),
            "native reference, {compiler} {mode}\n{}",
            rerun(test)
        );
        let jit = solder(&["run", a.to_str().unwrap(), b.to_str().unwrap(), "--", mode]);
        assert_same_as_native(&native, &jit, &format!("{compiler}, mode {mode}"), test);
    }
}

#[test]
fn exit_order_after_main_returns_matches_native() {
    check_exit_order("return", 4, "exit_order_after_main_returns_matches_native");
}

#[test]
fn exit_from_jit_code_runs_handlers_and_exits_with_status() {
    check_exit_order(
        "exit",
        9,
        "exit_from_jit_code_runs_handlers_and_exits_with_status",
    );
}

#[test]
fn quick_exit_runs_only_at_quick_exit_handlers() {
    let test = "quick_exit_runs_only_at_quick_exit_handlers";
    check_exit_order("quick", 6, test);
    // And the reference really is quick: no atexit handler, no destructor.
    let a = o2("cc", "linker/lifecycle/exit_order.c");
    let b = o2("cc", "linker/lifecycle/exit_order_b.c");
    let jit = solder(&[
        "run",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--",
        "quick",
    ]);
    let out = stdout(&jit);
    assert!(
        out.contains("at_quick_exit 2")
            && !out.contains("destructor plain")
            && !out.contains("atexit"),
        "quick_exit output:\n{out}\n{}",
        rerun(test)
    );
}

/// A buffer owned by the test that `handlers.c` appends to through a raw
/// pointer: `[count, values...]`. Declare it before the session, so that it
/// outlives every handler the session may still run when dropped.
struct Sink(*mut [i64; 32]);

impl Sink {
    fn new() -> Self {
        Sink(Box::into_raw(Box::new([0i64; 32])))
    }

    fn address(&self) -> u64 {
        self.0 as u64
    }

    fn values(&self) -> Vec<i64> {
        // SAFETY: the buffer is alive until `drop`; JIT'd code writes it only
        // during calls this thread makes, none of which is running now.
        let buffer = unsafe { std::ptr::read_volatile(self.0) };
        buffer[1..=buffer[0].clamp(0, 31) as usize].to_vec()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        // SAFETY: the pointer came from Box::into_raw in `new`.
        drop(unsafe { Box::from_raw(self.0) });
    }
}

/// Loads `handlers.c` (compiled by `compiler`), points it at `sink`, has it
/// register its handlers and sets its payload.
fn load_handlers(
    session: &mut Session,
    compiler: &str,
    sink: &Sink,
    payload: u64,
    test: &str,
) -> solder_linker::ModuleId {
    let handlers = o2(compiler, "linker/lifecycle/handlers.c");
    let id = session.load(&[object(&handlers)]).unwrap();
    call(session, "set_sink", &[sink.address()]);
    assert_eq!(
        call(session, "register_handlers", &[]),
        2,
        "{compiler}: register_handlers()\n{}",
        rerun(test)
    );
    call(session, "set_payload", &[payload]);
    id
}

/// What the native harness's sink received: `handlers.c` built as a shared
/// object by `compiler`, dlopened, and then dlclosed or left to `exit`;
/// with `peer`, also `handlers_peer.c` as a shared object that depends on it.
fn native_handlers(compiler: &str, payload: i64, mode: &str, peer: bool) -> Vec<i64> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("linker-native");
    std::fs::create_dir_all(&dir).unwrap();
    let shared = |source: &str, name: &str, extra: &[&str]| -> PathBuf {
        let library = dir.join(format!("{name}-{compiler}-{mode}-{peer}.so"));
        let source = support::fixtures().join(source);
        let mut args = vec!["-O2", "-fPIC", "-shared", source.to_str().unwrap()];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["-o", library.to_str().unwrap()]);
        let built = run_command(Path::new(compiler), &args);
        assert!(
            built.status.success(),
            "{compiler} {}\n{}",
            args.join(" "),
            stderr(&built)
        );
        library
    };
    let library = shared("linker/lifecycle/handlers.c", "handlers", &[]);
    let harness = o2("cc", "linker/lifecycle/dlclose_harness.c");
    let exe = link_native(
        &[&harness],
        &[],
        &format!("dlclose_harness-{compiler}-{mode}-{peer}"),
    );
    let payload = payload.to_string();
    let mut args = vec![library.to_str().unwrap(), &payload, mode];
    let peer_library;
    if peer {
        peer_library = shared(
            "linker/lifecycle/handlers_peer.c",
            "handlers_peer",
            &[library.to_str().unwrap()],
        );
        args.push(peer_library.to_str().unwrap());
    }
    let output = run_command(&exe, &args);
    assert!(
        output.status.success(),
        "harness failed: {}",
        stderr(&output)
    );
    stdout(&output)
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect()
}

#[test]
fn remove_runs_deinitializers_and_handlers_like_dlclose() {
    let test = "remove_runs_deinitializers_and_handlers_like_dlclose";
    for compiler in COMPILERS {
        let sink = Sink::new();
        let mut session = session();
        let id = load_handlers(&mut session, compiler, &sink, 2000, test);
        assert_eq!(
            sink.values(),
            [] as [i64; 0],
            "{compiler}: nothing runs before removal\n{}",
            rerun(test)
        );
        session.remove(id).unwrap();
        let native = native_handlers(compiler, 2000, "dlclose", false);
        assert_eq!(
            native,
            [2001, 2005, 2004, 2003, 2002],
            "native dlclose reference changed\n{}",
            rerun(test)
        );
        // Every value is payload + k: the handlers read the module's data
        // (set to 2000 at run time), so its memory was still there.
        assert_eq!(
            sink.values(),
            native,
            "{compiler}: removal order (left) differs from native dlclose (right)\n{}",
            rerun(test)
        );
        assert_eq!(
            session.lookup("set_sink").unwrap(),
            None,
            "{compiler}: the removed module still exports set_sink\n{}",
            rerun(test)
        );
    }
}

#[test]
fn session_end_runs_handlers_then_deinitializers_like_exit() {
    let test = "session_end_runs_handlers_then_deinitializers_like_exit";
    for compiler in COMPILERS {
        let sink = Sink::new();
        let mut session = session();
        load_handlers(&mut session, compiler, &sink, 3000, test);
        session.end();
        let native = native_handlers(compiler, 3000, "exit", false);
        assert_eq!(
            native,
            [3005, 3004, 3003, 3001, 3002],
            "native exit reference changed\n{}",
            rerun(test)
        );
        assert_eq!(
            sink.values(),
            native,
            "{compiler}: session end order (left) differs from native exit (right)\n{}",
            rerun(test)
        );
        // Ending twice (and dropping) runs nothing more.
        session.end();
        drop(session);
        assert_eq!(
            sink.values().len(),
            5,
            "{compiler}: handlers ran twice\n{}",
            rerun(test)
        );
    }
}

#[test]
fn handlers_of_a_removed_module_do_not_run_at_session_end() {
    let test = "handlers_of_a_removed_module_do_not_run_at_session_end";
    for compiler in COMPILERS {
        let first = Sink::new();
        let second = Sink::new();
        let mut session = session();
        let id = load_handlers(&mut session, compiler, &first, 1000, test);
        session.remove(id).unwrap();
        assert_eq!(
            first.values(),
            [1001, 1005, 1004, 1003, 1002],
            "{compiler}\n{}",
            rerun(test)
        );
        // The same object again: new memory (likely where the old module
        // was), a new constructor registration, no register_handlers call.
        let handlers = o2(compiler, "linker/lifecycle/handlers.c");
        session.load(&[object(&handlers)]).unwrap();
        call(&mut session, "set_sink", &[second.address()]);
        call(&mut session, "set_payload", &[5000]);
        session.end();
        assert_eq!(
            first.values(),
            [1001, 1005, 1004, 1003, 1002],
            "{compiler}: the removed module's handlers ran again at session end\n{}",
            rerun(test)
        );
        assert_eq!(
            second.values(),
            [5003, 5001, 5002],
            "{compiler}: at session end only the live module's constructor-registered \
             handler and destructors may run, once each\n{}",
            rerun(test)
        );
    }
}

/// Two modules, the second using the first: at session end every handler
/// runs newest-first across both modules (the first module's
/// `register_handlers` ran after the second module's constructor), then the
/// deinitializers, the dependent (newest) module first — as `exit` orders a
/// shared object and one that depends on it.
#[test]
fn session_end_interleaves_modules_like_exit() {
    let test = "session_end_interleaves_modules_like_exit";
    for compiler in COMPILERS {
        let sink = Sink::new();
        let mut session = session();
        let handlers = o2(compiler, "linker/lifecycle/handlers.c");
        let peer = o2(compiler, "linker/lifecycle/handlers_peer.c");
        session.load(&[object(&handlers)]).unwrap();
        call(&mut session, "set_sink", &[sink.address()]);
        session.load(&[object(&peer)]).unwrap();
        assert_eq!(
            call(&mut session, "register_handlers", &[]),
            2,
            "{compiler}: register_handlers()\n{}",
            rerun(test)
        );
        call(&mut session, "set_payload", &[3000]);
        session.end();
        let native = native_handlers(compiler, 3000, "exit", true);
        assert_eq!(
            native,
            [3005, 3004, 513, 3003, 511, 3001, 3002],
            "native exit reference changed\n{}",
            rerun(test)
        );
        assert_eq!(
            sink.values(),
            native,
            "{compiler}: two-module session end order (left) differs from native exit (right)\n{}",
            rerun(test)
        );
    }
}
