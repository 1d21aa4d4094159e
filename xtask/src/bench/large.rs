//! The `large` measure (`cargo xtask bench --large`, or `--only large`):
//! large real programs, built once and cached under `target/large/`:
//!
//! - [`openssl`]: OpenSSL's libcrypto and libssl from the `openssl-src`
//!   crate's sources (every object of both) and
//!   `fixtures/programs/openssl/driver.c` (digests, AEAD ciphers,
//!   signatures, key agreement, TLS 1.3 connections over BIO pairs);
//! - [`cpp`]: a generated C++ program of 300 translation units (class
//!   hierarchies, virtual calls, templates instantiated across units,
//!   standard containers, exceptions across units, static constructors);
//! - [`libgit2`]: libgit2 and the libraries it bundles, from the
//!   `libgit2-sys` crate's sources, with zlib, compiled with a section per
//!   function as that crate builds it, and
//!   `fixtures/programs/libgit2/driver.c` (commits, history, diffs);
//! - [`rocksdb`]: RocksDB, a real C++ code base, from the
//!   `librocksdb-sys` crate's sources, and
//!   `fixtures/programs/rocksdb/driver.cc` (a database in memory written on
//!   two threads, compacted in the background, read and scanned).
//!
//! Two tables: **link** ([`link`]): `solder run --noexec` with every core
//! and with `SOLDER_THREADS=1`, against `llvm-jitlink -noexec`, mold and
//! the machine's floor ([`floor`]); **run**: each workload under `solder
//! run` in process and in an executor over pipes, against the executable
//! the system compiler links from the same objects (outputs must be
//! byte-identical, or the measure fails).

mod cpp;
mod floor;
mod libgit2;
mod link;
mod openssl;
mod rocksdb;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::measure::{Run, median_ms};
use super::report::Table;
use super::{Schedule, Setup, alternate, ensure_same_output, native_vs_solder_row};
use crate::programs::build::{CompileJob, compile_all};

/// Target of the run table: at most this ratio to native, in process and
/// over a pipe.
const RUN_TARGET: f64 = 1.05;

/// One large program, built.
pub(super) struct LargeProgram {
    /// How the tables name it.
    label: String,
    /// What every linker links, in this order.
    objects: Vec<PathBuf>,
    /// The executable the system compiler linked from `objects`.
    native: PathBuf,
    /// The compiler driver that links it natively (and with mold).
    driver: &'static str,
    /// Its directory under `target/large/`: where every contestant runs
    /// and where outputs go.
    dir: PathBuf,
    /// The workload's arguments.
    workload: Vec<OsString>,
    built: Built,
}

/// What building (or finding up to date) a program took.
pub(super) struct Built {
    rebuilt: bool,
    seconds: f64,
}

pub(super) fn large_programs(cx: &Setup, met: &mut Vec<bool>) -> Result<Vec<Table>> {
    let target = cx
        .release
        .parent()
        .context("the release directory has no parent")?;
    let large = target.join("large");
    // `cargo metadata` once, for both programs built from crates' sources.
    let third_party = crate::programs::catalog::locate_sources(&cx.root)?;
    let programs = [
        openssl::build(&cx.root, &third_party, &large, cx.quick).context("building OpenSSL")?,
        cpp::build(&large, cx.quick, false).context("building the large C++ program")?,
        cpp::build(&large, cx.quick, true).context("building the large C++ program with -g")?,
        libgit2::build(&cx.root, &third_party, &large, cx.quick).context("building libgit2")?,
        rocksdb::build(&cx.root, &third_party, &large, cx.quick).context("building RocksDB")?,
    ];
    for program in &programs {
        println!(
            "large: {} {} ({:.1} s)",
            program.label,
            if program.built.rebuilt {
                "built"
            } else {
                "up to date"
            },
            program.built.seconds
        );
    }
    Ok(vec![
        link::link_table(cx, &programs, met)?,
        run_table(cx, &programs, met)?,
    ])
}

/// The columns of solder's runs less its links: for each of (in process,
/// over a pipe), the run's median less the `--noexec` run's, and that
/// against native's median. `runs`: native, in process, pipe; `links`:
/// in process, pipe.
fn less_the_link(runs: &[Vec<Run>], links: &[Vec<Run>]) -> Vec<String> {
    let native = median_ms(&runs[0]);
    let mut columns = Vec::new();
    for (run, link) in runs[1..].iter().zip(links) {
        let own = median_ms(run) - median_ms(link);
        columns.push(format!("{own:.1} ms"));
        columns.push(format!("{:.3}×", own / native));
    }
    columns
}

/// Compiles each group of sources into `dir/objects/<group>/` with
/// `compiler` and `flags` (only what is out of date): the objects, group
/// by group, and whether any was compiled.
fn compile_groups(
    compiler: &str,
    flags: &[String],
    groups: impl IntoIterator<Item = (String, Vec<PathBuf>)>,
    dir: &Path,
) -> Result<(Vec<PathBuf>, bool)> {
    let mut objects = Vec::new();
    let mut compiled = false;
    for (name, group) in groups {
        let out = dir.join("objects").join(name);
        std::fs::create_dir_all(&out).with_context(|| format!("create {}", out.display()))?;
        let (built, rebuilt) = compile_objects(compiler, flags, &group, &out)?;
        objects.extend(built);
        compiled |= rebuilt;
    }
    Ok((objects, compiled))
}

/// A library's program: its driver, compiled into `dir` and put first
/// among the objects, and the executable `compiler` links natively.
struct Driven {
    label: String,
    compiler: &'static str,
    driver: PathBuf,
    driver_flags: Vec<String>,
    dir: PathBuf,
    workload: &'static str,
    start: std::time::Instant,
}

impl Driven {
    /// The program of the library's `objects` (`compiled`: whether any
    /// was compiled now) and the driver.
    fn build(self, mut objects: Vec<PathBuf>, compiled: bool) -> Result<LargeProgram> {
        let (driver_object, driver_compiled) =
            compile_objects(self.compiler, &self.driver_flags, &[self.driver], &self.dir)?;
        objects.splice(0..0, driver_object);
        let native = self.dir.join("native");
        let linked =
            crate::programs::build::link(self.compiler, &[], &objects, None, &[], &native)?;
        if linked {
            println!("linked {}", native.display());
        }
        Ok(LargeProgram {
            label: self.label,
            objects,
            native,
            driver: self.compiler,
            dir: self.dir,
            workload: vec![self.workload.into()],
            built: Built {
                rebuilt: compiled || driver_compiled || linked,
                seconds: self.start.elapsed().as_secs_f64(),
            },
        })
    }
}

/// Compiles `sources` into `out/<stem>.o` with `driver` and `flags` (only
/// what is out of date, on every core); returns the objects in the order
/// of `sources` and whether anything was compiled.
fn compile_objects(
    driver: &str,
    flags: &[String],
    sources: &[PathBuf],
    out: &Path,
) -> Result<(Vec<PathBuf>, bool)> {
    let jobs: Vec<CompileJob> = sources
        .iter()
        .map(|source| {
            let stem = source.file_stem().unwrap_or_default().to_string_lossy();
            CompileJob::new(0, driver, flags, source, out.join(format!("{stem}.o")))
        })
        .collect();
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut rebuilt = false;
    let mut failures = Vec::new();
    for (job, result) in jobs.iter().zip(compile_all(&jobs, workers)) {
        match result {
            Ok(compiled) => {
                rebuilt |= compiled.rebuilt;
                if !compiled.warnings.trim().is_empty() {
                    println!(
                        "diagnostics from {}:\n{}",
                        job.source.display(),
                        compiled.warnings.trim_end()
                    );
                }
            }
            Err(err) => failures.push(format!("{err:#}")),
        }
    }
    if !failures.is_empty() {
        bail!("{}", failures.join("\n"));
    }
    Ok((jobs.into_iter().map(|j| j.object).collect(), rebuilt))
}

fn run_table(cx: &Setup, programs: &[LargeProgram], met: &mut Vec<bool>) -> Result<Table> {
    let mut table = Table::new(
        "Large programs: run",
        &format!(
            "Whole process on each program's workload: the OpenSSL driver's argument is its \
             scale (`fixtures/programs/openssl/driver.c`), the C++ program's the rounds over \
             its units, libgit2's driver's the commits it makes (in a repository it creates \
             and removes under its directory, its objects kept in memory), RocksDB's driver's \
             the records it writes (into a database in memory). Native: the executable the system compiler (gcc or g++) linked from \
             the same objects. solder's time includes linking. Native, solder in process and \
             solder with `--executor pipe` take turns ({} rounds, the first rotating), with \
             `solder run --noexec` of the same objects in process and over a pipe (the link, \
             and the executor's start, with nothing run); medians. \"Less the link\": solder's \
             median less its `--noexec` median, the program's own run against native's (a \
             difference of medians, as noisy as both). Every run's output must be \
             byte-identical to the native one's. Target: at most {RUN_TARGET:.2}× native, in \
             process and over a pipe, the link included.",
            cx.runs
        ),
        &[
            "workload",
            "native",
            "solder (in-process)",
            "ratio",
            "≤ 1.05×",
            "solder (executor, pipe)",
            "ratio",
            "in process less the link",
            "ratio",
            "pipe less the link",
            "ratio",
        ],
    );
    let solder = cx.release.join("solder");
    for program in programs {
        // `solder run OPTIONS OBJS -- WORKLOAD`, or with `--noexec` (the
        // link alone) when it does not `execute`.
        let solder_args = |options: &[&str], execute: bool| -> Vec<OsString> {
            let mut args: Vec<OsString> = vec!["run".into()];
            args.extend(options.iter().map(OsString::from));
            if !execute {
                args.push("--noexec".into());
            }
            args.extend(program.objects.iter().map(|o| o.clone().into_os_string()));
            if execute {
                args.push("--".into());
                args.extend(program.workload.iter().cloned());
            }
            args
        };
        let dir = program.dir.as_path();
        let pipe = ["--executor", "pipe"];
        let contestants = vec![
            (program.native.as_path(), program.workload.clone(), dir),
            (solder.as_path(), solder_args(&[], true), dir),
            (solder.as_path(), solder_args(&pipe, true), dir),
            (solder.as_path(), solder_args(&[], false), dir),
            (solder.as_path(), solder_args(&pipe, false), dir),
        ];
        println!("large: running {}", program.label);
        let results = alternate(cx, &contestants, Schedule::interleaved(cx.runs))?;
        let label = format!(
            "{} `{}`",
            program.label,
            program
                .workload
                .iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" ")
        );
        let (runs, links) = results.split_at(3);
        ensure_same_output(&label, runs)?;
        let (ok, mut row) = native_vs_solder_row(label, runs, RUN_TARGET, true);
        row.extend(less_the_link(runs, links));
        met.push(ok);
        table.row(row);
    }
    Ok(table)
}
