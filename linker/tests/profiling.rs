//! Profiler maps (`--perf-map`): `/tmp/perf-PID.map` names every JIT'd
//! function of the process that runs the code, at the addresses the code
//! really has, and follows loads, replacements and removals. Fixtures are
//! under `fixtures/linker/profiling/`.

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use solder_linker::plugins::PerfMap;
use support::{compile, object, solder, stderr, stdout};

fn rerun(test: &str) -> String {
    format!("rerun: cargo test -p solder-linker --test profiling -- {test} --exact")
}

/// The map's lines as name -> (start, size), checking each line's form.
fn read_map(path: &Path, test: &str) -> BTreeMap<String, (u64, u64)> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}\n{}", path.display(), rerun(test)));
    text.lines()
        .map(|line| {
            let mut words = line.splitn(3, ' ');
            let mut hex = || {
                u64::from_str_radix(words.next().unwrap_or(""), 16)
                    .unwrap_or_else(|e| panic!("line {line:?}: {e}\n{}", rerun(test)))
            };
            let (start, size) = (hex(), hex());
            let name = words
                .next()
                .unwrap_or_else(|| panic!("line {line:?}\n{}", rerun(test)));
            assert!(size > 0, "line {line:?}: no size\n{}", rerun(test));
            (name.to_string(), (start, size))
        })
        .collect()
}

/// `solder run --perf-map`, in process and with an executor process: the
/// map of the process that ran `main` (its own `getpid()`) lists `main`
/// and `helper`, `helper` at the address the program took of it.
#[test]
fn the_perf_map_names_the_functions_where_they_run() {
    let test = "the_perf_map_names_the_functions_where_they_run";
    let program = compile("linker/profiling/perf_target.c", &["-O2"]);
    for executor in ["inproc", "pipe"] {
        let output = solder(&[
            "run",
            "--perf-map",
            "--executor",
            executor,
            program.to_str().unwrap(),
        ]);
        assert!(
            output.status.success(),
            "{executor}: {}\n{}",
            stderr(&output),
            rerun(test)
        );
        let printed = stdout(&output);
        let words: Vec<&str> = printed.split_whitespace().collect();
        let [pid, address, "6"] = words.as_slice() else {
            panic!("{executor}: printed {printed:?}\n{}", rerun(test));
        };
        let address = u64::from_str_radix(address, 16).unwrap();
        let path = Path::new("/tmp").join(format!("perf-{pid}.map"));
        let map = read_map(&path, test);
        let _ = std::fs::remove_file(&path);
        assert_eq!(
            map.get("helper").map(|&(start, _)| start),
            Some(address),
            "{executor}: {map:?}\n{}",
            rerun(test)
        );
        assert!(
            map.contains_key("main"),
            "{executor}: {map:?}\n{}",
            rerun(test)
        );
    }
}

/// The map follows the session: a load adds its functions, a replacement
/// swaps them, a removal takes them out.
#[test]
fn the_perf_map_follows_loads_replacements_and_removals() {
    let test = "the_perf_map_follows_loads_replacements_and_removals";
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("perf-map");
    std::fs::create_dir_all(&dir).unwrap();
    let plugin = PerfMap::in_directory(dir.clone());
    let path = plugin.path_for(std::process::id());
    let mut session = support::session();
    session.add_plugin(Box::new(plugin));
    let v1 = object(&compile("linker/profiling/module_v1.c", &["-O2"]));
    let v2 = object(&compile("linker/profiling/module_v2.c", &["-O2"]));
    let id = session.load(&[v1]).unwrap();
    let names = |map: &BTreeMap<String, (u64, u64)>| map.keys().cloned().collect::<Vec<_>>();
    let map = read_map(&path, test);
    assert_eq!(
        names(&map),
        ["first_function", "second_function"],
        "{}",
        rerun(test)
    );
    for (name, &(start, _)) in &map {
        let named = session.symbolize(start).unwrap_or_default();
        assert!(
            named.starts_with(&format!("{name}+0x0")),
            "{named}\n{}",
            rerun(test)
        );
    }
    session.replace(id, &[v2]).unwrap();
    assert_eq!(
        names(&read_map(&path, test)),
        ["first_function", "third_function"],
        "{}",
        rerun(test)
    );
    session.remove(id).unwrap();
    assert!(read_map(&path, test).is_empty(), "{}", rerun(test));
    session.end();
}

/// The jitdump of a session parses as the format says: its header (magic,
/// version, size, x86-64, this process), one code-load record per
/// function holding the function's name, address and exact bytes (as the
/// object has them: these functions need no relocation), and a closing
/// record at the end; in process, the file is mapped as the profiler's
/// marker.
#[test]
fn the_jitdump_holds_every_functions_code() {
    use object::{Object, ObjectSection, ObjectSymbol};
    use solder_linker::plugins::{JitDump, jitdump};
    let test = "the_jitdump_holds_every_functions_code";
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("jitdump");
    std::fs::create_dir_all(&dir).unwrap();
    let plugin = JitDump::in_directory(dir.clone());
    let path = plugin.path_for(std::process::id());
    let mut session = support::session();
    session.add_plugin(Box::new(plugin));
    session.set_link_maps(true);
    let built = compile("linker/profiling/module_v1.c", &["-O2"]);
    let id = session.load(&[object(&built)]).unwrap();
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    assert!(
        maps.contains(path.to_str().unwrap()),
        "the dump is not mapped as the marker\n{}",
        rerun(test)
    );
    let addresses: BTreeMap<String, u64> = ["first_function", "second_function"]
        .iter()
        .map(|name| {
            let map = session.link_map(id).unwrap();
            let symbol = map.symbols.iter().find(|s| s.name == *name).unwrap();
            (name.to_string(), symbol.address.unwrap())
        })
        .collect();
    session.remove(id).unwrap();
    session.end();
    let bytes = std::fs::read(&path).unwrap();
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    assert_eq!(u32_at(0), jitdump::MAGIC, "{}", rerun(test));
    assert_eq!(u32_at(4), jitdump::VERSION, "{}", rerun(test));
    assert_eq!(u32_at(8), 40, "{}", rerun(test));
    assert_eq!(u32_at(12), 62, "{}", rerun(test));
    assert_eq!(u32_at(20), std::process::id(), "{}", rerun(test));
    let file = std::fs::read(&built).unwrap();
    let elf = object::File::parse(&*file).unwrap();
    let code_of = |name: &str| -> Vec<u8> {
        let symbol = elf.symbols().find(|s| s.name() == Ok(name)).unwrap();
        let section = elf
            .section_by_index(symbol.section_index().unwrap())
            .unwrap();
        let data = section.data().unwrap();
        let start = (symbol.address() - section.address()) as usize;
        data[start..start + symbol.size() as usize].to_vec()
    };
    let mut at = 40;
    let mut loads = BTreeMap::new();
    let mut closed = false;
    while at < bytes.len() {
        let (id, size) = (u32_at(at), u32_at(at + 4) as usize);
        assert!(
            size >= 16 && at + size <= bytes.len(),
            "record at {at}\n{}",
            rerun(test)
        );
        match id {
            jitdump::JIT_CODE_LOAD => {
                let body = at + 16;
                let (vma, code_size) = (u64_at(body + 8), u64_at(body + 24) as usize);
                let name_start = body + 40;
                let name_end =
                    name_start + bytes[name_start..].iter().position(|&b| b == 0).unwrap();
                let name = String::from_utf8(bytes[name_start..name_end].to_vec()).unwrap();
                let code = bytes[name_end + 1..name_end + 1 + code_size].to_vec();
                assert_eq!(at + size, name_end + 1 + code_size, "{}", rerun(test));
                loads.insert(name, (vma, code));
            }
            jitdump::JIT_CODE_CLOSE => closed = true,
            other => panic!("record {other}\n{}", rerun(test)),
        }
        at += size;
    }
    assert!(closed, "no closing record\n{}", rerun(test));
    for (name, address) in &addresses {
        let (vma, code) = &loads[name];
        assert_eq!(vma, address, "{name}\n{}", rerun(test));
        assert_eq!(code, &code_of(name), "{name}\n{}", rerun(test));
    }
}

/// A jitdump line entry: address, line, file.
type LineEntry = (u64, i32, String);

/// With debug information kept, each function's code-load record is
/// preceded by its line table: `jitted_add`'s lines (5, 6, 7 of
/// debug_target.c) at addresses inside the function.
#[test]
fn the_jitdump_carries_line_tables_with_debug() {
    use solder_linker::plugins::JitDump;
    let test = "the_jitdump_carries_line_tables_with_debug";
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("jitdump-lines");
    std::fs::create_dir_all(&dir).unwrap();
    // In process the session's own crash-report lines are written; in an
    // executor process they are read from the objects' DWARF for the dump.
    for remote in [false, true] {
        let plugin = JitDump::in_directory(dir.clone());
        let mut session = if remote {
            solder_linker::Session::new(solder_linker::SessionConfig {
                executor: solder_linker::ExecutorChoice::Remote {
                    transport: solder_linker::Transport::Pipe {
                        program: Some(support::remote::executor_binary()),
                    },
                    shared_memory: false,
                },
                ..solder_linker::SessionConfig::default()
            })
            .unwrap()
        } else {
            support::session()
        };
        let pid = session.executor_pid().unwrap_or_else(std::process::id);
        let path = plugin.path_for(pid);
        session.enable_debug();
        session.add_plugin(Box::new(plugin));
        let built = compile("linker/debugging/debug_target.c", &["-g", "-O0"]);
        session.load(&[object(&built)]).unwrap();
        session.end();
        let place = if remote {
            "an executor process"
        } else {
            "process"
        };
        eprintln!("checking the jitdump of a session running code in {place}");
        check_jitdump_lines(&path, test);
    }
}

/// The jitdump at `path` has a line table for `jitted_add`, inside its code,
/// naming lines 5 to 7 of `debug_target.c`.
fn check_jitdump_lines(path: &Path, test: &str) {
    use solder_linker::plugins::jitdump;
    let bytes = std::fs::read(path).unwrap();
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    let mut at = 40;
    let mut pending: Option<(u64, Vec<LineEntry>)> = None;
    let mut found = None;
    while at < bytes.len() {
        let (id, size) = (u32_at(at), u32_at(at + 4) as usize);
        let body = at + 16;
        match id {
            jitdump::JIT_CODE_DEBUG_INFO => {
                let (code, count) = (u64_at(body), u64_at(body + 8));
                let mut entries = Vec::new();
                let mut e = body + 16;
                for _ in 0..count {
                    let address = u64_at(e);
                    let line = u32_at(e + 8) as i32;
                    let name_end = e + 16 + bytes[e + 16..].iter().position(|&b| b == 0).unwrap();
                    let file = String::from_utf8(bytes[e + 16..name_end].to_vec()).unwrap();
                    entries.push((address, line, file));
                    e = name_end + 1;
                }
                assert_eq!(e, at + size, "{}", rerun(test));
                pending = Some((code, entries));
            }
            jitdump::JIT_CODE_LOAD => {
                let (vma, code_size) = (u64_at(body + 8), u64_at(body + 24));
                let name_start = body + 40;
                let name_end =
                    name_start + bytes[name_start..].iter().position(|&b| b == 0).unwrap();
                let name = String::from_utf8(bytes[name_start..name_end].to_vec()).unwrap();
                if name == "jitted_add" {
                    let (code, entries) = pending.clone().unwrap_or_else(|| {
                        panic!("no line table before jitted_add's code\n{}", rerun(test))
                    });
                    assert_eq!(code, vma, "{}", rerun(test));
                    found = Some((vma, code_size, entries));
                }
                pending = None;
            }
            _ => {}
        }
        at += size;
    }
    let (vma, size, entries) =
        found.unwrap_or_else(|| panic!("no record for jitted_add\n{}", rerun(test)));
    let lines: Vec<i32> = entries.iter().map(|e| e.1).collect();
    for line in [5, 6, 7] {
        assert!(lines.contains(&line), "lines {lines:?}\n{}", rerun(test));
    }
    for (address, _, file) in &entries {
        assert!(
            (vma..vma + size).contains(address),
            "{address:#x}\n{}",
            rerun(test)
        );
        assert!(file.ends_with("debug_target.c"), "{file}\n{}", rerun(test));
    }
}

/// `--jitdump` maps the dump's marker in the process that runs the code,
/// in process and in an executor process: the program looks for its own
/// `/tmp/jit-PID.dump` among its read-execute mappings.
#[test]
fn the_jitdump_marker_is_in_the_process_that_runs_the_code() {
    let test = "the_jitdump_marker_is_in_the_process_that_runs_the_code";
    let built = compile("linker/profiling/jitdump_marker.c", &["-O2"]);
    for executor in ["inproc", "pipe"] {
        let output = solder(&[
            "run",
            "--jitdump",
            "--executor",
            executor,
            built.to_str().unwrap(),
        ]);
        assert!(
            output.status.success(),
            "{executor}: {}\n{}",
            stderr(&output),
            rerun(test)
        );
        assert_eq!(
            stdout(&output),
            "marker mapped\n",
            "{executor}: {}\n{}",
            stderr(&output),
            rerun(test)
        );
    }
}
