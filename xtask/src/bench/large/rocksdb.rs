//! RocksDB from the `librocksdb-sys` crate's sources (pinned in
//! `xtask/sources/Cargo.toml`), built once under `target/large/rocksdb/`
//! as that crate's build script builds them on x86-64 Linux without the
//! compression libraries: every file of its `rocksdb_lib_sources.txt` but
//! the generated `util/build_version.cc`, which the crate ships
//! pregenerated, with g++ -O2 and its POSIX definitions. A real C++ code
//! base of another shape than the generated one: templates and inline
//! functions across hundreds of units (COMDAT groups), virtual interfaces,
//! exceptions, `thread_local` variables reached by local-dynamic access,
//! static constructors. `fixtures/programs/rocksdb/driver.cc` drives it (a
//! database in memory, writes on two threads, flushes and compactions in
//! the background, snapshots, merges, reads and a scan).
//!
//! Each source directory compiles into a directory of its own under
//! `objects/` (two directories hold files of one name); only what is out
//! of date is compiled.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, ensure};

use super::{Driven, LargeProgram, compile_groups};
use crate::programs::catalog;

/// The driver's argument (records): about 0.6 s natively.
const RECORDS: &str = "100000";
const QUICK_RECORDS: &str = "2000";

/// The crate's build script's definitions on x86-64 Linux (its default
/// target has no SSE 4.2, so no hardware CRC32C).
const DEFINES: &[&str] = &[
    "-DNDEBUG=1",
    "-DOS_LINUX",
    "-DROCKSDB_PLATFORM_POSIX",
    "-DROCKSDB_LIB_IO_POSIX",
    "-DROCKSDB_SUPPORT_THREAD_LOCAL",
];

/// Builds what is not up to date and returns the program.
/// `third_party` says where the crates' sources are.
pub(super) fn build(
    root: &Path,
    third_party: &catalog::ThirdParty,
    large: &Path,
    quick: bool,
) -> Result<LargeProgram> {
    let start = Instant::now();
    let crate_dir = &third_party.rocksdb;
    let rocksdb = crate_dir.join("rocksdb");
    let dir = large.join("rocksdb");
    let mut flags: Vec<String> = ["-std=c++17", "-O2", "-fPIC", "-w"]
        .map(str::to_owned)
        .to_vec();
    for include in [rocksdb.clone(), rocksdb.join("include")] {
        flags.push(format!("-I{}", include.display()));
    }
    flags.extend(DEFINES.iter().map(|&d| d.to_owned()));
    println!(
        "rocksdb: compiling its sources into {} (g++ {}; only what changed)",
        dir.join("objects").display(),
        flags[..4].join(" ")
    );
    let (objects, compiled) = compile_groups("g++", &flags, source_groups(crate_dir)?, &dir)?;
    let driver = Driven {
        label: "RocksDB 6.20.3 + driver (g++ -O2)".to_owned(),
        compiler: "g++",
        driver: root.join("fixtures/programs/rocksdb/driver.cc"),
        driver_flags: vec![
            "-std=c++17".to_owned(),
            "-O2".to_owned(),
            "-Wall".to_owned(),
            "-Wextra".to_owned(),
            format!("-I{}", rocksdb.join("include").display()),
        ],
        dir,
        workload: if quick { QUICK_RECORDS } else { RECORDS },
        start,
    };
    driver.build(objects, compiled)
}

/// The sources the crate's build script compiles, by the directory their
/// objects go to (`db_db_impl` for `db/db_impl/`), in the list's order
/// within each.
fn source_groups(crate_dir: &Path) -> Result<BTreeMap<String, Vec<PathBuf>>> {
    let list = crate_dir.join("rocksdb_lib_sources.txt");
    let text =
        std::fs::read_to_string(&list).with_context(|| format!("read {}", list.display()))?;
    let mut groups: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for source in text.lines().map(str::trim) {
        if source.is_empty() || source == "util/build_version.cc" {
            continue;
        }
        let directory = Path::new(source)
            .parent()
            .map(|p| p.to_string_lossy().replace('/', "_"))
            .unwrap_or_default();
        let path = crate_dir.join("rocksdb").join(source);
        ensure!(
            path.is_file(),
            "{} is missing (listed in {}; has librocksdb-sys changed its layout?)",
            path.display(),
            list.display()
        );
        groups.entry(directory).or_default().push(path);
    }
    ensure!(!groups.is_empty(), "{} lists no sources", list.display());
    let generated = crate_dir.join("build_version.cc");
    ensure!(
        generated.is_file(),
        "{} is missing (has librocksdb-sys changed its layout?)",
        generated.display()
    );
    groups
        .entry("build_version".to_owned())
        .or_default()
        .push(generated);
    Ok(groups)
}
