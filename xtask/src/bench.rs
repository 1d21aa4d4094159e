//! `cargo xtask bench`: Solder against its peers and the machine, measured
//! side by side in one run.
//!
//! - **link**: whole-process `solder run --noexec` against LLVM 19's
//!   `llvm-jitlink -noexec` on the SQLite and Lua objects (gcc and clang).
//! - **run**: `solder run` against the native executable on SQLite and Lua
//!   workloads (outputs must match).
//! - **TLS access** ([`tls`]): a loop over a thread-local counter in each
//!   access model, against the native program or `dlopen`ed library.
//! - **incremental**, **checkpoints**, **churn**: `solder-bench` (the
//!   `bench/` package) inside a session, against the transport's own round
//!   trip where one applies.
//! - **executor**: stripped size and idle memory against
//!   `llvm-jitlink-executor`.
//! - **large** ([`large`], with `--large`): OpenSSL, a generated C++
//!   program, libgit2 and RocksDB against llvm-jitlink, mold, the machine's floor
//!   and one thread, and their workloads against native.
//! - **scaling** ([`scaling`], with `--large`): link time and peak memory
//!   of generated programs from 1 to 200 MB of objects.
//!
//! `--baseline REV` ([`baseline`]) also builds git revision REV's binaries
//! (from a detached worktree under `target/bench-baseline/`, into a target
//! directory of their own) and runs them as one more contestant in the
//! link, incremental, churn and large-program link measures, alternated
//! run by run with the current ones; those tables add the baseline's
//! median, the ratio current ÷ baseline and a verdict (within 3%, or REGRESSION: +x.y%). This is how
//! a restructure shows that it costs nothing.
//!
//! A missing peer is reported as missing, never replaced by a number.
//! Times are never asserted: the report says whether each target is met,
//! and whether the baseline is matched.

mod baseline;
mod debug;
mod large;
pub(crate) mod machine;
mod measure;
mod report;
mod scaling;
mod tls;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use crate::programs::{self, BuiltProgram};
use crate::util;
use baseline::{Baseline, Change, change_pct, paired_ratio, ratio_cell};
use measure::{Ending, Run, median, median_ms, median_rss_mib};
use report::{Table, verdict};

/// Options of `cargo xtask bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Alternated runs per contestant (medians are taken over them).
    #[arg(long, default_value_t = 7)]
    runs: usize,
    /// One run of everything with small sizes: checks that every benchmark
    /// works (what CI does); the numbers mean little and are not written.
    #[arg(long)]
    quick: bool,
    /// Where the report goes (not written with --quick unless given).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also build git revision REV (`HEAD~1`, a commit hash, ...) in a
    /// detached worktree under target/bench-baseline/ and run its binaries
    /// alternated with the current ones in the link, incremental, churn and
    /// large-program link measures: the report adds the baseline's medians,
    /// the ratios and whether every median is within 3% of the baseline's.
    #[arg(long, value_name = "REV")]
    baseline: Option<String>,
    /// Only these measures (repeatable): link, run, tls, debug, incremental,
    /// checkpoints, churn, executor. The report then holds only them (and
    /// is written only with --out).
    #[arg(long, value_name = "MEASURE", value_parser = ["link", "run", "tls", "debug", "incremental", "checkpoints", "churn", "executor", "large", "scaling"])]
    only: Vec<String>,
    /// Also the large measures (opt-in: they build OpenSSL, a large C++
    /// program, libgit2 and RocksDB once, cached under target/, and generate synthetic programs
    /// up to 200 MB): `large` (large programs against llvm-jitlink, mold
    /// and the machine's floor, one thread against all) and `scaling` (link
    /// time and peak memory against input size).
    #[arg(long)]
    large: bool,
}

/// Everything the measures need to know.
struct Setup {
    root: PathBuf,
    scratch: PathBuf,
    release: PathBuf,
    runs: usize,
    quick: bool,
    /// `llvm-jitlink` of LLVM 19, if installed.
    peer: Option<PathBuf>,
    /// `--baseline`'s built binaries.
    baseline: Option<Baseline>,
}

pub fn run(args: &Args) -> Result<bool> {
    let root = util::workspace_root();
    let target = util::target_dir(&root)?;
    build_release(&root, None)?;
    let baseline = match &args.baseline {
        Some(rev) => Some(baseline::build(&root, &target, rev, build_release)?),
        None => None,
    };
    let runs = if args.quick { 1 } else { args.runs.max(1) };
    let peer = find_llvm19("llvm-jitlink");
    let peer_version = match &peer {
        Some(path) => format!(
            "{} ({})",
            path.display(),
            machine::first_line(&path.to_string_lossy(), &["--version"])
                .replace("LLVM version ", "")
        ),
        None => {
            "llvm-jitlink 19 is not installed (Debian: apt-get install llvm-19); its columns say so"
                .into()
        }
    };
    println!("peer: {peer_version}");
    let compilers: Vec<&str> = ["gcc", "clang"]
        .into_iter()
        .filter(|cc| {
            let ok = Command::new(cc)
                .arg("--version")
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                println!("compiler {cc}: not found, its programs are not measured");
            }
            ok
        })
        .collect();
    let built = programs::build_programs(&compilers, &["sqlite", "lua"])?;
    let cx = Setup {
        scratch: target.join("bench"),
        release: target.join("release"),
        root: root.clone(),
        runs,
        quick: args.quick,
        peer,
        baseline,
    };
    let mut tables = Vec::new();
    let mut met = Vec::new();
    let wanted = |measure: &str| {
        let large = matches!(measure, "large" | "scaling");
        (args.only.is_empty() && (args.large || !large)) || args.only.iter().any(|m| m == measure)
    };
    if wanted("link") {
        tables.push(link(&cx, &built, &mut met)?);
    }
    if wanted("run") {
        tables.push(run_workloads(&cx, &built, &mut met)?);
    }
    if wanted("tls") {
        tables.push(tls::tls_access(&cx, &mut met)?);
    }
    if wanted("debug") {
        tables.push(debug::debug_cost(&cx)?);
    }
    if wanted("incremental") {
        tables.push(incremental(&cx, &mut met)?);
    }
    if wanted("checkpoints") {
        tables.push(checkpoints(&cx, &mut met)?);
    }
    if wanted("churn") {
        tables.push(churn(&cx, &mut met)?);
    }
    if wanted("executor") {
        tables.push(executor(&cx, &target, &mut met)?);
    }
    if wanted("large") {
        tables.extend(large::large_programs(&cx, &mut met)?);
    }
    if wanted("scaling") {
        tables.extend(scaling::scaling_curve(&cx, &mut met)?);
    }

    let described = cx.baseline.as_ref().map(|b| {
        format!(
            "{}, built from a detached worktree in `{}`",
            b.label(),
            b.src.strip_prefix(&root).unwrap_or(&b.src).display()
        )
    });
    let document = report::document(
        &command_line(args),
        described.as_deref(),
        &machine::describe(&peer_version),
        &tables,
    );
    println!("\n{document}");
    let out = match (&args.out, args.quick || !args.only.is_empty()) {
        (Some(out), _) => Some(out.clone()),
        (None, false) => Some(root.join("docs/benchmarks.md")),
        (None, true) => None,
    };
    if let Some(out) = out {
        std::fs::write(&out, &document).with_context(|| format!("write {}", out.display()))?;
        println!("wrote {}", out.display());
    }
    summarize(args.quick, &met, &tables);
    Ok(true)
}

/// The command the report says it was made with.
fn command_line(args: &Args) -> String {
    let mut command = "cargo xtask bench".to_string();
    if args.large {
        command += " --large";
    }
    if args.quick {
        command += " --quick";
    } else if args.runs != 7 {
        command += &format!(" --runs {}", args.runs);
    }
    if let Some(rev) = &args.baseline {
        command += &format!(" --baseline {}", util::shell_quote(rev.as_ref()));
    }
    for measure in &args.only {
        command += &format!(" --only {measure}");
    }
    command
}

/// The last lines printed: targets met and the verdicts against the baseline.
fn summarize(quick: bool, met: &[bool], tables: &[Table]) {
    let missed = met.iter().filter(|m| !**m).count();
    if quick {
        // One run and smaller workloads: the run table then measures
        // mostly linking, so its ratios are not the targets' ratios.
        println!(
            "{} targets met, {missed} missed (--quick is a smoke run: one run, smaller \
             workloads; only a full run judges the targets)",
            met.len() - missed
        );
    } else {
        println!("{} targets met, {missed} missed", met.len() - missed);
    }
    for table in tables {
        if let Some(verdict) = &table.baseline {
            let measure = table.title.split(':').next().unwrap_or(&table.title);
            println!("against the baseline, {measure}: {verdict}");
        }
    }
    if quick && tables.iter().any(|t| t.baseline.is_some()) {
        println!(
            "(--quick compares one run of each build: the verdicts against the baseline show \
             that the comparison works, not whether the change costs anything)"
        );
    }
}

/// Release builds of everything measured, and the size-optimized executor,
/// of the workspace at `root` (into `target_dir` if given, else cargo's).
fn build_release(root: &Path, target_dir: Option<&Path>) -> Result<()> {
    for args in [
        &[
            "build",
            "--release",
            "-p",
            "solder-linker",
            "-p",
            "solder-executor",
            "-p",
            "solder-bench",
        ][..],
        &["build", "-p", "solder-executor", "--profile", "executor"][..],
    ] {
        match target_dir {
            None => println!("building: cargo {}", args.join(" ")),
            Some(dir) => println!(
                "building in {} into {}: cargo {}",
                root.display(),
                dir.display(),
                args.join(" ")
            ),
        }
        let mut cargo = Command::new(util::cargo());
        cargo.args(args).current_dir(root);
        if let Some(dir) = target_dir {
            cargo.env("CARGO_TARGET_DIR", dir);
        }
        let status = cargo.status().context("cannot run cargo")?;
        ensure!(
            status.success(),
            "`cargo {}` failed ({status})",
            args.join(" ")
        );
    }
    Ok(())
}

/// LLVM 19's `tool`: `tool-19` on PATH, or Debian's `/usr/lib/llvm-19/bin/tool`.
fn find_llvm19(tool: &str) -> Option<PathBuf> {
    let versioned = format!("{tool}-19");
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(&versioned))
        .chain([PathBuf::from(format!("/usr/lib/llvm-19/bin/{tool}"))])
        .find(|p| p.is_file())
}

fn ms(value: f64) -> String {
    format!("{value:.1} ms")
}

fn us(value: f64) -> String {
    format!("{value:.1} µs")
}

fn mib(value: f64) -> String {
    format!("{value:.1} MiB")
}

/// How alternated runs are scheduled.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    /// Rounds; in each, every contestant takes a turn (the first contestant
    /// rotates each round so none is always first).
    rounds: usize,
    /// Recorded runs in one turn, back to back.
    runs_per_turn: usize,
    /// One unrecorded run opens each turn.
    settle: bool,
}

impl Schedule {
    /// One recorded run per turn, nothing unrecorded.
    fn interleaved(rounds: usize) -> Schedule {
        Schedule {
            rounds,
            runs_per_turn: 1,
            settle: false,
        }
    }
}

/// Whole-process link runs take milliseconds, so one run is a single noisy
/// sample: each turn records several back to back. A turn opens with an
/// unrecorded run because a run right after the other contestant starts
/// cold: llvm-jitlink maps and frees 55–120 MiB, and solder linking Lua
/// (clang) right after it took 3.12 ms against 2.80 ms right after a run of
/// its own (medians of 25 pairs on the 2-core VM; llvm-jitlink's own time
/// did not change with its predecessor: 21.5 against 21.3 ms). Each tool
/// is then measured warm, as when used repeatedly (and as hyperfine
/// measures), while turns still alternate so both share the machine's
/// phases.
const LINK_RUNS_PER_TURN: usize = 5;

/// Runs the contestants as `schedule` says; returns each one's recorded runs.
fn alternate(
    cx: &Setup,
    contestants: &[(&Path, Vec<OsString>, &Path)],
    schedule: Schedule,
) -> Result<Vec<Vec<Run>>> {
    let no_env = vec![&[][..]; contestants.len()];
    alternate_env(cx, contestants, &no_env, schedule)
}

/// [`alternate`] with environment variables added for each contestant
/// (`envs[i]` for contestant `i`).
fn alternate_env(
    cx: &Setup,
    contestants: &[(&Path, Vec<OsString>, &Path)],
    envs: &[&[(&str, &str)]],
    schedule: Schedule,
) -> Result<Vec<Vec<Run>>> {
    ensure!(
        envs.len() == contestants.len(),
        "one environment per contestant"
    );
    let mut results: Vec<Vec<Run>> = vec![Vec::new(); contestants.len()];
    for round in 0..schedule.rounds {
        for k in 0..contestants.len() {
            let i = (round + k) % contestants.len();
            let (program, args, cwd) = &contestants[i];
            let env = envs[i];
            if schedule.settle {
                measure::run_env(program, args, env, cwd, &cx.scratch)?;
            }
            for _ in 0..schedule.runs_per_turn {
                results[i].push(measure::run_env(program, args, env, cwd, &cx.scratch)?);
            }
        }
    }
    Ok(results)
}

/// What a peer's runs amount to: its median, or why there is none.
fn peer_summary(runs: &[Run]) -> std::result::Result<(f64, f64), String> {
    match runs.iter().find(|r| r.ending != Ending::Exited(0)) {
        Some(failed) => {
            let why = String::from_utf8_lossy(&failed.stderr);
            let why = why.lines().next().unwrap_or("").trim();
            Err(match failed.ending {
                Ending::Signaled(libc::SIGSEGV) => "crashes (SIGSEGV)".to_string(),
                ending if why.is_empty() => format!("fails ({ending})"),
                ending => format!(
                    "fails ({ending}: {})",
                    why.chars().take(80).collect::<String>()
                ),
            })
        }
        None => Ok((median_ms(runs), median_rss_mib(runs))),
    }
}

fn link(cx: &Setup, built: &[BuiltProgram], met: &mut Vec<bool>) -> Result<Table> {
    let mut table = Table::new(
        "Link: `solder run --noexec` against `llvm-jitlink -noexec`",
        "Whole process, from spawn to exit: parse, resolve (host lookups included), lay out, \
         relocate and protect every object of the program, run nothing. Peak memory is the \
         process's maximum resident set (`wait4`). Targets: at most 0.15× llvm-jitlink 19's \
         time and at most 20 MiB.",
        &[
            "program",
            "objects",
            "solder",
            "solder peak",
            "llvm-jitlink 19",
            "its peak",
            "ratio",
            "≤ 0.15×",
            "≤ 20 MiB",
        ],
    );
    if cx.baseline.is_some() {
        table.extend_columns(&["baseline solder", "÷ baseline"]);
    }
    let schedule = if cx.quick {
        Schedule::interleaved(cx.runs)
    } else {
        Schedule {
            rounds: cx.runs,
            runs_per_turn: LINK_RUNS_PER_TURN,
            settle: true,
        }
    };
    if schedule.settle {
        table.notes.push(format!(
            "Each time is the median of {} runs: {} alternated turns per contestant, each one \
             unrecorded run and then {} recorded back to back, so that no recorded run directly \
             follows the other tool's (such a run starts cold: see `LINK_RUNS_PER_TURN` in \
             `xtask/src/bench.rs`).",
            schedule.rounds * schedule.runs_per_turn,
            schedule.rounds,
            schedule.runs_per_turn
        ));
    }
    table.notes.push(process_floor(cx, schedule)?);
    let mut changes = Vec::new();
    for program in built {
        let (row, change) = link_program(cx, program, schedule, met)?;
        table.row(row);
        changes.extend(change);
    }
    table.baseline = against_baseline(
        cx,
        "solder's link time (current ÷ baseline medians)",
        &changes,
    );
    Ok(table)
}

/// The floor under any whole-process number: starting solder at all (and
/// the baseline's solder, alternated with it).
fn process_floor(cx: &Setup, schedule: Schedule) -> Result<String> {
    let version = vec![OsString::from("--version")];
    let solder = cx.release.join("solder");
    let base_solder = cx.baseline.as_ref().map(|b| b.release.join("solder"));
    let mut contestants = vec![(solder.as_path(), version.clone(), cx.root.as_path())];
    if let Some(base_solder) = &base_solder {
        contestants.push((base_solder.as_path(), version, cx.root.as_path()));
    }
    let floor = alternate(cx, &contestants, schedule)?;
    let baseline = match floor.get(1) {
        Some(runs) => format!(", the baseline's {}", ms(median_ms(runs))),
        None => String::new(),
    };
    Ok(format!(
        "Process floor: `solder --version` takes {} (median, same session{baseline}); the rest of \
         solder's time is reading, linking and protecting the objects.",
        ms(median_ms(&floor[0]))
    ))
}

/// Fails unless every run of `who` linking `program` exited with 0.
fn ensure_linked(runs: &[Run], who: &str, program: &BuiltProgram) -> Result<()> {
    for run in runs {
        ensure!(
            run.ending == Ending::Exited(0),
            "{who} run --noexec on {} ({}) ended with {}:\n{}",
            program.name,
            program.compiler,
            run.ending,
            String::from_utf8_lossy(&run.stderr)
        );
    }
    Ok(())
}

/// One program's row of the link table; with a baseline, also solder's
/// change against it (the baseline's solder is the last contestant).
fn link_program(
    cx: &Setup,
    program: &BuiltProgram,
    schedule: Schedule,
    met: &mut Vec<bool>,
) -> Result<(Vec<String>, Option<Change>)> {
    let objects: Vec<OsString> = program
        .objects
        .iter()
        .map(|o| o.clone().into_os_string())
        .collect();
    let mut ours: Vec<OsString> = vec!["run".into(), "--noexec".into()];
    ours.extend(objects.iter().cloned());
    let mut theirs: Vec<OsString> = vec!["-noexec".into()];
    theirs.extend(objects.iter().cloned());
    let solder = cx.release.join("solder");
    let base_solder = cx.baseline.as_ref().map(|b| b.release.join("solder"));
    let mut contestants = vec![(solder.as_path(), ours.clone(), program.cwd.as_path())];
    if let Some(peer) = &cx.peer {
        contestants.push((peer.as_path(), theirs, program.cwd.as_path()));
    }
    if let Some(base_solder) = &base_solder {
        contestants.push((base_solder.as_path(), ours, program.cwd.as_path()));
    }
    let results = alternate(cx, &contestants, schedule)?;
    ensure_linked(&results[0], "solder", program)?;
    let (time, peak) = (median_ms(&results[0]), median_rss_mib(&results[0]));
    let peak_ok = peak <= 20.0;
    met.push(peak_ok);
    let peer_runs = cx.peer.as_ref().map(|_| &results[1]);
    let (peer_time, peer_peak, ratio, ratio_ok) = match peer_runs.map(|r| peer_summary(r)) {
        Some(Ok((t, p))) => {
            let ratio = time / t;
            met.push(ratio <= 0.15);
            (
                ms(t),
                mib(p),
                format!("{ratio:.3}×"),
                verdict(ratio <= 0.15),
            )
        }
        Some(Err(why)) => (why, "—".into(), "—".into(), "no peer number".into()),
        None => (
            "not installed".into(),
            "—".into(),
            "—".into(),
            "no peer".into(),
        ),
    };
    let name = format!("{} ({})", program.name, program.compiler);
    let mut row = vec![
        name.clone(),
        program.objects.len().to_string(),
        ms(time),
        mib(peak),
        peer_time,
        peer_peak,
        ratio,
        ratio_ok,
        verdict(peak_ok),
    ];
    let mut change = None;
    if base_solder.is_some() {
        let runs = results.last().expect("the baseline is a contestant");
        ensure_linked(runs, "the baseline's solder", program)?;
        let base = median_ms(runs);
        row.extend([ms(base), ratio_cell(time, base)]);
        change = Some((name, change_pct(time, base)));
    }
    Ok((row, change))
}

/// The verdict line of a measure against the baseline, if there is one.
fn against_baseline(cx: &Setup, what: &str, changes: &[Change]) -> Option<String> {
    cx.baseline
        .as_ref()
        .map(|b| format!("{}, {what}: {}", b.label(), baseline::verdict(changes)))
}

/// The arguments of a program's benchmark workload.
fn workload(cx: &Setup, program: &BuiltProgram) -> Vec<OsString> {
    match (program.name, cx.quick) {
        ("sqlite", false) => vec!["100000".into()],
        ("sqlite", true) => vec!["3000".into()],
        _ => vec![cx.root.join("fixtures/bench/workload.lua").into_os_string()],
    }
}

fn run_workloads(cx: &Setup, built: &[BuiltProgram], met: &mut Vec<bool>) -> Result<Table> {
    let mut table = Table::new(
        "Run: `solder run` against the native executable",
        "Whole process on the same workload: SQLite's driver inserting and querying 100,000 \
         rows in memory (`fixtures/programs/sqlite/driver.c 100000`), Lua running \
         `fixtures/bench/workload.lua` (recursion, sorting, strings, closures, GC). solder's \
         time includes linking. Every run's output must equal the native one's. Target: at \
         most 1.10× native.",
        &[
            "workload",
            "native",
            "solder (in-process)",
            "ratio",
            "≤ 1.10×",
            "solder (executor, pipe)",
            "ratio",
        ],
    );
    let solder = cx.release.join("solder");
    for program in built {
        let args = workload(cx, program);
        let objects = program.objects.iter().map(|o| o.clone().into_os_string());
        let solder_args = |executor: &[&str]| -> Vec<OsString> {
            let mut a: Vec<OsString> = vec!["run".into()];
            a.extend(executor.iter().map(OsString::from));
            a.extend(objects.clone());
            a.push("--".into());
            a.extend(args.iter().cloned());
            a
        };
        let contestants = vec![
            (
                program.native.as_path(),
                args.clone(),
                program.cwd.as_path(),
            ),
            (solder.as_path(), solder_args(&[]), program.cwd.as_path()),
            (
                solder.as_path(),
                solder_args(&["--executor", "pipe"]),
                program.cwd.as_path(),
            ),
        ];
        let results = alternate(cx, &contestants, Schedule::interleaved(cx.runs))?;
        let label = format!("{} ({})", program.name, program.compiler);
        ensure_same_output(&label, &results)?;
        let (ok, row) = native_vs_solder_row(label, &results, 1.10, false);
        met.push(ok);
        table.row(row);
    }
    Ok(table)
}

/// Checks runs of (native, solder in process, solder over a pipe): the
/// native one exited 0, and every run printed and ended as it did.
fn ensure_same_output(label: &str, results: &[Vec<Run>]) -> Result<()> {
    let expected = &results[0][0];
    ensure!(
        expected.ending == Ending::Exited(0),
        "native {label} failed: {} ({})",
        expected.ending,
        String::from_utf8_lossy(&expected.stderr)
    );
    for run in results.iter().flatten() {
        if run.ending != expected.ending || run.stdout != expected.stdout {
            bail!(
                "{label} under solder did not match the native run ({} vs {}, stdout {} vs {} bytes):\n{}",
                run.ending,
                expected.ending,
                run.stdout.len(),
                expected.stdout.len(),
                String::from_utf8_lossy(&run.stderr)
            );
        }
    }
    Ok(())
}

/// The row of runs of (native, solder in process, solder over a pipe):
/// medians and ratios, and whether solder in process (and over a pipe,
/// when `pipe_too`) is within `target` of native.
fn native_vs_solder_row(
    label: String,
    results: &[Vec<Run>],
    target: f64,
    pipe_too: bool,
) -> (bool, Vec<String>) {
    let native = median_ms(&results[0]);
    let inproc = median_ms(&results[1]);
    let pipe = median_ms(&results[2]);
    let ok = inproc / native <= target && (!pipe_too || pipe / native <= target);
    let row = vec![
        label,
        ms(native),
        ms(inproc),
        format!("{:.3}×", inproc / native),
        verdict(ok),
        ms(pipe),
        format!("{:.3}×", pipe / native),
    ];
    (ok, row)
}

/// Runs `solder-bench ARGS` from `release`, with `work` for the files it
/// generates, and parses the JSON object it prints. Its sessions start
/// `release`'s own `solder-executor` (`SOLDER_EXECUTOR`), so that a
/// baseline's `solder-bench` runs the baseline's executor.
fn run_solder_bench(release: &Path, work: &Path, args: &[&str]) -> Result<Value> {
    let program = release.join("solder-bench");
    let output = Command::new(&program)
        .args(args)
        .arg("--work")
        .arg(work)
        .env("SOLDER_EXECUTOR", release.join("solder-executor"))
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {}", program.display()))?;
    ensure!(
        output.status.success(),
        "`{}` failed ({})",
        util::shell_command(
            std::iter::once(program.as_os_str()).chain(
                args.iter()
                    .map(OsString::from)
                    .collect::<Vec<_>>()
                    .iter()
                    .map(|a| a.as_os_str())
            )
        ),
        output.status
    );
    serde_json::from_slice(&output.stdout).context("solder-bench printed something other than JSON")
}

/// Runs the current `solder-bench ARGS` and parses the JSON object it prints.
fn solder_bench(cx: &Setup, args: &[&str]) -> Result<Value> {
    run_solder_bench(&cx.release, &cx.scratch.join("work"), args)
}

/// Runs `solder-bench ARGS` in round `round` of a measure: the current
/// one's report and, with a baseline, the baseline's, the two taking turns
/// as [`alternate`]'s contestants do (the first rotates each round). The
/// baseline generates its files in a work directory of its own.
fn solder_bench_pair(cx: &Setup, round: usize, args: &[&str]) -> Result<(Value, Option<Value>)> {
    let Some(baseline) = &cx.baseline else {
        return Ok((solder_bench(cx, args)?, None));
    };
    let (mut current, mut base) = (None, None);
    for k in 0..2 {
        if (round + k).is_multiple_of(2) {
            current = Some(solder_bench(cx, args)?);
        } else {
            let work = cx.scratch.join("work-baseline");
            base = Some(
                run_solder_bench(&baseline.release, &work, args)
                    .with_context(|| format!("the baseline {}", baseline.label()))?,
            );
        }
    }
    Ok((current.expect("the current one ran"), base))
}

/// The median over reports of the number at `path` in each.
fn median_at(reports: &[Value], path: &[&str]) -> Result<f64> {
    Ok(median(&numbers(reports, path)?))
}

/// The number at `path` in each report, in order.
fn numbers(reports: &[Value], path: &[&str]) -> Result<Vec<f64>> {
    reports.iter().map(|r| number(r, path)).collect()
}

/// A number inside a JSON report.
fn number(value: &Value, path: &[&str]) -> Result<f64> {
    let mut at = value;
    for key in path {
        at = at
            .get(key)
            .with_context(|| format!("no {} in {value}", path.join(".")))?;
    }
    at.as_f64()
        .with_context(|| format!("{} is not a number", path.join(".")))
}

/// The incremental table, before its rows.
fn incremental_table(cx: &Setup) -> Table {
    let mut table = Table::new(
        "Incremental: 1,000 modules loaded and called one at a time",
        "Module i defines `long f_i(long)` returning `f_{i-1}(x) + 1` (gcc -O2, one object \
         each). A statement loads module i, looks `f_i` up and calls it; the result is \
         checked. Per mode, the median and 99th percentile over the statements of a run, then \
         the median over runs (modes and the round-trip probe alternate). The call alone (the \
         same call again) is shown too: `f_i` runs through i cross-module calls, so its cost \
         grows with i. Transport round trip: a 16-byte ping-pong with a child process over two \
         pipes (`solder-bench rtt`), with both sides blocking in `read`, and again with both \
         sides spinning first as solder's controller and executor do. Targets: in-process at \
         most 50 µs; out of process at most 1.5× the blocking round trip (the issue's \
         reference, about 46 µs). \"Over in-process\" is the out-of-process statement's median \
         minus the in-process one: what running in another process adds.",
        &[
            "mode",
            "statement median",
            "statement p99",
            "load median",
            "call alone median",
            "over in-process",
            "target",
            "met",
        ],
    );
    if cx.baseline.is_some() {
        table.extend_columns(&["baseline statement median", "÷ baseline"]);
    }
    table
}

fn incremental(cx: &Setup, met: &mut Vec<bool>) -> Result<Table> {
    let modules = if cx.quick { "100" } else { "1000" };
    let mut table = incremental_table(cx);
    let modes = ["inproc", "pipe", "shm"];
    let mut reports: Vec<Vec<Value>> = vec![Vec::new(); modes.len()];
    let mut base_reports: Vec<Vec<Value>> = vec![Vec::new(); modes.len()];
    let mut rtts = Vec::new();
    let mut spinning_rtts = Vec::new();
    let mut spin_budget = 0.0;
    for round in 0..cx.runs {
        let probe = solder_bench(cx, &["rtt"])?;
        rtts.push(number(&probe, &["round_trip", "median_us"])?);
        spinning_rtts.push(number(&probe, &["spinning_round_trip", "median_us"])?);
        spin_budget = number(&probe, &["spin_budget_us"])?;
        for (i, mode) in modes.iter().enumerate() {
            let args = ["incremental", "--mode", mode, "--modules", modules];
            let (current, base) = solder_bench_pair(cx, round, &args)?;
            reports[i].push(current);
            base_reports[i].extend(base);
        }
    }
    let rtt = median(&rtts);
    let spinning_rtt = median(&spinning_rtts);
    let mut inproc_statement = None;
    let mut changes = Vec::new();
    for ((mode, runs), base_runs) in modes.iter().zip(&reports).zip(&base_reports) {
        let stat = |path: &[&str]| median_at(runs, path);
        let statement = stat(&["statement", "median_us"])?;
        let over_inproc = match inproc_statement {
            None => {
                inproc_statement = Some(statement);
                "—".to_string()
            }
            Some(inproc) => format!("{:+.1} µs", statement - inproc),
        };
        let (target, limit) = match *mode {
            "inproc" => ("≤ 50 µs".to_string(), 50.0),
            _ => (
                format!("≤ 1.5 × {rtt:.1} µs = {:.1} µs", 1.5 * rtt),
                1.5 * rtt,
            ),
        };
        met.push(statement <= limit);
        let mut row = vec![
            mode.to_string(),
            us(statement),
            us(stat(&["statement", "p99_us"])?),
            us(stat(&["load", "median_us"])?),
            us(stat(&["call", "median_us"])?),
            over_inproc,
            target,
            verdict(statement <= limit),
        ];
        if cx.baseline.is_some() {
            let path = ["statement", "median_us"];
            let base = median_at(base_runs, &path)?;
            let ratio = paired_ratio(&numbers(runs, &path)?, &numbers(base_runs, &path)?);
            row.extend([us(base), ratio_cell(ratio, 1.0)]);
            changes.push((mode.to_string(), change_pct(ratio, 1.0)));
        }
        table.row(row);
    }
    table.baseline = against_baseline(
        cx,
        "statement median (median over runs of current ÷ baseline, the two back to back)",
        &changes,
    );
    if cx.baseline.is_some() {
        table.notes.push(
            "Baseline: in each run, each mode's `solder-bench incremental` of the current build \
             and of the baseline's take turns (which goes first rotates run by run); the \
             baseline column is the median over its runs of each run's statement median, and \
             ÷ baseline the median over runs of each run's ratio of the two (a paired ratio: \
             an idle CPU's wake-up time moves a run's median by ±20% from run to run, and \
             both builds of a run see the same machine)."
                .into(),
        );
    }
    table.notes.push(format!(
        "Transport round trip (pipe, median of runs' medians): {} blocking; {} when both sides \
         spin up to {spin_budget:.0} µs before blocking (`SOLDER_SPIN_US`), as solder's \
         transport does. Nearly all of the blocking round trip is waking an idle CPU.",
        us(rtt),
        us(spinning_rtt)
    ));
    table.notes.push(
        "Out of process, a statement is one round trip: the load's requests travel in one batch \
         with the call. Its time is that round trip, plus the executor applying the batch \
         (copying and protecting the module's pages, registering its frames), plus the chain \
         of i calls inside `f_i` (the in-process call-alone column). The chain is bounded by \
         the layout, one code page per module (each hop touches a new page: about 30 ns, an \
         iTLB miss), so the last statements' call alone takes about 30 µs and sets the p99."
            .into(),
    );
    Ok(table)
}

fn checkpoints(cx: &Setup, met: &mut Vec<bool>) -> Result<Table> {
    let mut table = Table::new(
        "Checkpoints: the snapshot recovery policy",
        "An executor over pipes holds 10 MB, 200 MB or 1 GB of touched heap. Calls to a trivial \
         function alternate between a session without recovery and one with `--recovery \
         snapshot` (a fork before each call); the snapshot cost is the difference of the \
         medians. Recovery: a crashing call, then the next call, which the checkpoint answers; \
         median over repetitions. Targets at 1 GB: at most 1 ms per call, at most 2 ms \
         recovery.",
        &[
            "resident",
            "call",
            "call with snapshot",
            "snapshot cost",
            "crash → next call",
            "≤ 1 ms / ≤ 2 ms",
        ],
    );
    let args: &[&str] = if cx.quick {
        &[
            "checkpoints",
            "--resident",
            "10",
            "--calls",
            "20",
            "--crashes",
            "3",
        ]
    } else {
        &["checkpoints"]
    };
    let report = solder_bench(cx, args)?;
    for row in report["rows"].as_array().context("no rows")? {
        let mb = number(row, &["resident_mb"])?;
        let cost = number(row, &["snapshot_cost_us"])?;
        let recovery = number(row, &["recovery", "median_us"])?;
        let ok = cost <= 1000.0 && recovery <= 2000.0;
        met.push(ok);
        table.row(vec![
            format!("{mb} MB"),
            us(number(row, &["call", "median_us"])?),
            us(number(row, &["call_with_snapshot", "median_us"])?),
            us(cost),
            us(recovery),
            verdict(ok),
        ]);
    }
    Ok(table)
}

/// The churn table, before its rows.
fn churn_table(cx: &Setup) -> Table {
    let mut table = Table::new(
        "Hot-swap churn: 10,000 replacements of one module",
        "One module (code, 64 KiB of data, an initializer, an `atexit` handler, `.eh_frame`) \
         is replaced again and again while another module calls it through its stub; every \
         replacement is checked through the caller. Reserved = the executor's address space \
         (`VmSize`), committed = its resident memory (`VmRSS`), and the slab's allocated bytes, \
         sampled every 1,000 replacements. Flat: none grows by more than 64 KiB from the \
         first sample after 1,000 replacements to the last.",
        &[
            "mode",
            "replace median",
            "slab used",
            "reserved (VmSize)",
            "committed (VmRSS)",
            "controller RSS",
            "flat",
        ],
    );
    if cx.baseline.is_some() {
        table.extend_columns(&["baseline replace median", "÷ baseline"]);
    }
    table
}

/// One run per mode; with a baseline, `--runs` runs per mode of each build,
/// taking turns, so that the replace medians compare medians over runs.
fn churn(cx: &Setup, met: &mut Vec<bool>) -> Result<Table> {
    let replacements = if cx.quick { "500" } else { "10000" };
    let every = if cx.quick { "100" } else { "1000" };
    let mut table = churn_table(cx);
    let modes = ["inproc", "pipe", "shm"];
    let rounds = if cx.baseline.is_some() { cx.runs } else { 1 };
    let mut reports: Vec<Vec<Value>> = vec![Vec::new(); modes.len()];
    let mut base_reports: Vec<Vec<Value>> = vec![Vec::new(); modes.len()];
    for round in 0..rounds {
        for (i, mode) in modes.iter().enumerate() {
            let args = [
                "churn",
                "--mode",
                mode,
                "--replacements",
                replacements,
                "--every",
                every,
            ];
            let (current, base) = solder_bench_pair(cx, round, &args)?;
            reports[i].push(current);
            base_reports[i].extend(base);
        }
    }
    let mut changes = Vec::new();
    for ((mode, runs), base_runs) in modes.iter().zip(&reports).zip(&base_reports) {
        let report = &runs[0];
        let samples = report["samples"].as_array().context("no samples")?;
        ensure!(samples.len() >= 3, "too few churn samples");
        let (first, settled, last) = (&samples[0], &samples[1], &samples[samples.len() - 1]);
        let span = |path: &[&str]| -> Result<(String, f64)> {
            let (a, b, c) = (
                number(first, path)?,
                number(settled, path)?,
                number(last, path)?,
            );
            Ok((format!("{a:.0} → {b:.0} → {c:.0} KiB"), c - b))
        };
        let (slab, slab_growth) = span(&["slab_used_kib"])?;
        let (size, size_growth) = span(&["executor", "vm_size_kib"])?;
        let (rss, rss_growth) = span(&["executor", "vm_rss_kib"])?;
        let (controller, controller_growth) = span(&["controller", "vm_rss_kib"])?;
        let flat = [slab_growth, size_growth, rss_growth, controller_growth]
            .iter()
            .all(|&g| g <= 64.0);
        met.push(flat);
        let replace = median_at(runs, &["replace", "median_us"])?;
        let mut row = vec![
            mode.to_string(),
            us(replace),
            slab,
            size,
            rss,
            controller,
            verdict(flat),
        ];
        if cx.baseline.is_some() {
            let path = ["replace", "median_us"];
            let base = median_at(base_runs, &path)?;
            let ratio = paired_ratio(&numbers(runs, &path)?, &numbers(base_runs, &path)?);
            row.extend([us(base), ratio_cell(ratio, 1.0)]);
            changes.push((mode.to_string(), change_pct(ratio, 1.0)));
        }
        table.row(row);
    }
    table
        .notes
        .push("Each cell: at the start → after the first 1,000 replacements → at the end.".into());
    if cx.baseline.is_some() {
        table.notes.push(format!(
            "Baseline: {rounds} run(s) per mode of the current `solder-bench churn` and of the \
             baseline's, taking turns (which goes first rotates run by run); both replace \
             medians are medians over those runs of each run's median, and ÷ baseline the \
             median over runs of each run's ratio of the two. Memory and flatness are the \
             current build's first run."
        ));
    }
    table.baseline = against_baseline(
        cx,
        "replace median (median over runs of current ÷ baseline, the two back to back)",
        &changes,
    );
    Ok(table)
}

/// The resident memory of an executor waiting for its first request.
fn idle_rss_kib(program: &Path, args: &[&str]) -> Result<u64> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {}", program.display()))?;
    std::thread::sleep(Duration::from_millis(500));
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()));
    let _ = child.kill();
    let _ = child.wait();
    let status = status.with_context(|| format!("{} exited while idle", program.display()))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no VmRSS for {}", program.display()))
}

fn executor(cx: &Setup, target: &Path, met: &mut Vec<bool>) -> Result<Table> {
    let mut table = Table::new(
        "Executor: size and idle memory",
        "Size of the stripped binary on disk (`solder-executor` from the size-optimized \
         `executor` profile; Debian's `llvm-jitlink-executor` as installed, stripped). Idle \
         memory: resident set 0.5 s after starting over two pipes, before any request.",
        &["executor", "stripped size", "idle RSS"],
    );
    let ours = target.join("executor/solder-executor");
    let size = std::fs::metadata(&ours)
        .with_context(|| format!("{}", ours.display()))?
        .len();
    let rss = median(
        &(0..cx.runs.min(3))
            .map(|_| idle_rss_kib(&ours, &["--fds", "0,1"]))
            .collect::<Result<Vec<_>>>()?,
    );
    table.row(vec![
        "solder-executor".into(),
        format!("{size} B"),
        format!("{rss} KiB"),
    ]);
    match find_llvm19("llvm-jitlink-executor") {
        Some(peer) => {
            let real = peer.canonicalize().unwrap_or(peer.clone());
            let peer_size = std::fs::metadata(&real)?.len();
            let peer_rss = median(
                &(0..cx.runs.min(3))
                    .map(|_| idle_rss_kib(&peer, &["filedescs=0,1"]))
                    .collect::<Result<Vec<_>>>()?,
            );
            met.push(size < peer_size && rss < peer_rss);
            table.row(vec![
                format!("llvm-jitlink-executor 19 ({})", real.display()),
                format!("{peer_size} B"),
                format!("{peer_rss} KiB"),
            ]);
        }
        None => table.row(vec![
            "llvm-jitlink-executor 19".into(),
            "not installed".into(),
            "—".into(),
        ]),
    }
    Ok(table)
}
