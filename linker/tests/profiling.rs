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
