//! `cargo xtask conformance`: builds the fixtures of the selected formats,
//! runs the conformance harness (`cargo test -p solder-conformance --test
//! conformance`), and ends with a table of passed, failed and skipped trials
//! per area, format and mode. Formats and modes Solder does not implement
//! yet have no trials; the table lists them as "not implemented".
//!
//! The exit status is 0 only when nothing failed.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use solder_conformance::catalog;
use solder_conformance::fixtures::{Builder, FixtureError};
use solder_conformance::formats::{FORMATS, Format, MODES, Mode};

use crate::util;

mod llvm_orc;
mod report;

/// Options of `cargo xtask conformance`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Which object formats to run: elf, macho, coff or all.
    #[arg(long, default_value = "all", value_parser = ["elf", "macho", "coff", "all"])]
    format: String,
    /// Which execution modes to run: inproc, pipe, tcp, shm or all.
    #[arg(long, default_value = "all", value_parser = ["inproc", "pipe", "tcp", "shm", "all"])]
    mode: String,
    /// The implementation under test: solder, native, llvm-orc, or the
    /// command line of an adapter (conformance/IMPLEMENTING.md).
    #[arg(long = "impl", value_name = "NAME|CMD", default_value = "solder")]
    implementation: String,
    /// Run every available implementation (solder, native, llvm-orc) and
    /// print, per area and format, what each passed, failed and could not
    /// run; writes docs/conformance-results.md.
    #[arg(long, conflicts_with = "implementation")]
    compare: bool,
    /// Also write the results as JUnit XML (for CI dashboards).
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Also write the results as JSON (one entry per trial, and totals).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Only trials whose name contains one of these.
    #[arg(last = true, value_name = "FILTER")]
    filter: Vec<String>,
}

fn selected<T: Copy>(choice: &str, all: Vec<T>, from_name: impl Fn(&str) -> Option<T>) -> Vec<T> {
    if choice == "all" {
        all
    } else {
        from_name(choice).into_iter().collect()
    }
}

/// Builds the fixtures of every scenario for the selected, implemented
/// formats (a format without its compiler is reported and left to skip);
/// true when a fixture failed to build.
pub(crate) fn build_fixtures(
    root: &std::path::Path,
    target: &std::path::Path,
    formats: &[Format],
) -> Result<bool> {
    let files =
        catalog::discover(&catalog::scenarios_dir()).context("cannot read the scenarios")?;
    let builder = Builder::new(root, target);
    let mut build_failed = false;
    for format in formats.iter().filter(|f| f.info().implemented) {
        let compiler = match builder.compiler(*format) {
            Ok(c) => c,
            Err(err) => {
                eprintln!("conformance: {err}; its trials will be skipped");
                continue;
            }
        };
        let (mut built, mut fresh) = (0, 0);
        for file in &files {
            let Ok(scenario) = &file.scenario else {
                continue;
            };
            if !scenario.formats.contains(format) {
                continue;
            }
            for (name, spec) in &scenario.fixtures {
                let object = builder.object_path(*format, spec);
                let before = modified(&object);
                match builder.build(*format, &compiler, spec) {
                    Ok(_) if before.is_some() && modified(&object) == before => fresh += 1,
                    Ok(_) => built += 1,
                    Err(FixtureError::CompilerMissing { .. }) => {}
                    Err(err) => {
                        build_failed = true;
                        eprintln!(
                            "conformance: {}: fixture `{name}`: {err}",
                            file.path.display()
                        );
                    }
                }
            }
        }
        eprintln!("conformance: {format} fixtures: {built} built, {fresh} already up to date");
    }
    Ok(build_failed)
}

fn modified(path: &std::path::Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Runs the suite; true when nothing failed.
pub fn run(args: &Args) -> Result<bool> {
    let root = util::workspace_root();
    let target = util::target_dir(&root)?;
    let formats = selected(&args.format, Format::all(), Format::from_name);
    let modes = selected(&args.mode, Mode::all(), Mode::from_name);

    // Build every fixture of the selected, implemented formats first, so
    // compile errors show up once, before any trial.
    let build_failed = build_fixtures(&root, &target, &formats)?;

    // The executor modes spawn `solder-executor`, found next to the
    // harness binary's directory: build it into the same target directory.
    let built = Command::new(util::cargo())
        .current_dir(&root)
        .env("CARGO_TARGET_DIR", &target)
        .args(["build", "-p", "solder-executor"])
        .status()
        .context("cannot run cargo to build solder-executor")?;
    if !built.success() {
        bail!("`cargo build -p solder-executor` failed ({built})");
    }
    let selection = Selection {
        root: &root,
        target: &target,
        formats: &formats,
        modes: &modes,
        filters: &args.filter,
    };
    if args.compare {
        return compare(&selection, args).map(|ok| ok && !build_failed);
    }
    if args.implementation == "llvm-orc" && llvm_orc::adapter(&root, &target)?.is_none() {
        bail!(
            "llvm-orc is unavailable here: its adapter needs LLVM 19's development files \
             (apt-get install llvm-19-dev libclang-rt-19-dev)"
        );
    }
    let run = run_harness(&selection, &args.implementation, true)?;
    report::print_table(&run, &formats, &modes);
    write_machine_readable(args, std::slice::from_ref(&run))?;
    if !run.status_ok && run.totals().failed == 0 {
        eprintln!("conformance: the harness failed without a failing trial");
    }
    Ok(run.status_ok && run.totals().failed == 0 && !build_failed)
}

/// What a run covers.
struct Selection<'a> {
    root: &'a std::path::Path,
    target: &'a std::path::Path,
    formats: &'a [Format],
    modes: &'a [Mode],
    filters: &'a [String],
}

/// `--compare`: every available implementation, one run each.
fn compare(selection: &Selection<'_>, args: &Args) -> Result<bool> {
    let mut runs = Vec::new();
    for name in ["solder", "native", "llvm-orc"] {
        if name == "llvm-orc" && llvm_orc::adapter(selection.root, selection.target)?.is_none() {
            println!("conformance: llvm-orc is unavailable (llvm-config-19 is not installed)");
            continue;
        }
        runs.push(run_harness(selection, name, false)?);
    }
    report::print_comparison(&runs);
    let path = selection.root.join("docs/conformance-results.md");
    std::fs::write(&path, report::comparison_markdown(&runs, selection.formats))
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!("conformance: wrote {}", path.display());
    write_machine_readable(args, &runs)?;
    // The default implementation must pass; the others report.
    Ok(runs
        .iter()
        .filter(|r| r.implementation == "solder")
        .all(|r| r.status_ok && r.totals().failed == 0))
}

fn write_machine_readable(args: &Args, runs: &[HarnessRun]) -> Result<()> {
    if let Some(path) = &args.junit {
        std::fs::write(path, report::junit(runs))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &args.json {
        std::fs::write(path, report::json(runs)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// One harness run's results.
pub struct HarnessRun {
    /// `solder`, `native`, `llvm-orc` or the command.
    pub implementation: String,
    /// What the implementation said of itself (`NAME VERSION (protocol N)`).
    pub described: Option<String>,
    pub trials: Vec<TrialResult>,
    pub status_ok: bool,
}

/// One trial's result.
pub struct TrialResult {
    pub name: String,
    pub status: Status,
    /// Why it was skipped or unsupported.
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Passed,
    Failed,
    Skipped,
    Unsupported,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    pub unsupported: usize,
}

impl Counts {
    fn add(&mut self, status: Status) {
        match status {
            Status::Passed => self.passed += 1,
            Status::Failed => self.failed += 1,
            Status::Skipped => self.skipped += 1,
            Status::Unsupported => self.unsupported += 1,
        }
    }
}

impl HarnessRun {
    pub fn totals(&self) -> Counts {
        let mut counts = Counts::default();
        for trial in &self.trials {
            counts.add(trial.status);
        }
        counts
    }
}

/// Runs the harness against `implementation`; `echo` prints its output.
fn run_harness(selection: &Selection<'_>, implementation: &str, echo: bool) -> Result<HarnessRun> {
    let mut command = Command::new(util::cargo());
    command
        .current_dir(selection.root)
        .env("CARGO_TARGET_DIR", selection.target)
        .env("SOLDER_CONFORMANCE_IMPL", implementation)
        // An adapter's relative paths are relative to where the user is.
        .env(
            "SOLDER_CONFORMANCE_IMPL_CWD",
            std::env::current_dir().context("cannot read the current directory")?,
        )
        .env("SOLDER_CONFORMANCE_FILTERS", selection.filters.join("\n"))
        .args([
            "test",
            "-p",
            "solder-conformance",
            "--test",
            "conformance",
            "--",
        ]);
    if implementation == "llvm-orc"
        && let Some(adapter) = llvm_orc::adapter(selection.root, selection.target)?
    {
        command.env("SOLDER_CONFORMANCE_LLVM_ORC", adapter);
    }
    for format in FORMATS
        .iter()
        .filter(|f| !selection.formats.contains(&f.format))
    {
        command.args(["--skip", &format!("{}/", format.name)]);
    }
    for mode in MODES.iter().filter(|m| !selection.modes.contains(&m.mode)) {
        command.args(["--skip", &format!("/{}/", mode.name)]);
    }
    eprintln!(
        "conformance: $ SOLDER_CONFORMANCE_IMPL={} {}",
        util::shell_quote(std::ffi::OsStr::new(implementation)),
        util::shell_command(
            std::iter::once(OsString::from("cargo")).chain(command.get_args().map(OsString::from))
        )
    );
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run `cargo test` for the conformance harness")?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut run = HarnessRun {
        implementation: implementation.to_string(),
        described: None,
        trials: Vec::new(),
        status_ok: false,
    };
    for line in BufReader::new(stdout).lines() {
        let line = line.context("cannot read the harness output")?;
        if echo {
            println!("{line}");
        }
        if let Some(described) = line.strip_prefix("conformance: implementation ") {
            run.described = Some(described.to_string());
        }
        if let Some((name, status, reason)) = parse_result(&line) {
            run.trials.push(TrialResult {
                name: name.to_string(),
                status,
                reason: reason.to_string(),
            });
        }
    }
    run.status_ok = child
        .wait()
        .context("cannot wait for the harness")?
        .success();
    Ok(run)
}

/// `test [area] elf/inproc/area/name ... ok` -> (name, status, reason):
/// `ignored (unsupported: WHY)` is unsupported, any other `ignored` a
/// skip.
fn parse_result(line: &str) -> Option<(&str, Status, &str)> {
    let rest = line.strip_prefix("test ")?;
    let (head, outcome) = rest.rsplit_once(" ... ")?;
    let name = head.split_whitespace().last()?;
    if !name.contains('/') {
        return None;
    }
    let outcome = outcome.trim();
    let status = match outcome.split([',', ' ']).next()? {
        "ok" => Status::Passed,
        "FAILED" => Status::Failed,
        _ => Status::Skipped,
    };
    // `ignored (WHY)` (or `ignored, WHY`).
    let reason = outcome
        .strip_prefix("ignored")
        .map(|r| r.trim_start_matches([',', ' ']))
        .map(|r| {
            r.strip_prefix('(')
                .and_then(|r| r.strip_suffix(')'))
                .unwrap_or(r)
        })
        .unwrap_or("");
    match reason.strip_prefix("unsupported: ") {
        Some(why) if status == Status::Skipped => Some((name, Status::Unsupported, why)),
        _ => Some((name, status, reason)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn harness_lines_are_read_with_their_reasons() {
        let rerun = "rerun: cargo test -p xtask -- conformance::tests";
        let cases = [
            (
                "test [atexit] elf/pipe/atexit/x ... ignored (unsupported: no pipe mode)",
                Some(("elf/pipe/atexit/x", Status::Unsupported, "no pipe mode")),
            ),
            (
                "test [atexit] elf/pipe/atexit/x ... ignored (no compiler)",
                Some(("elf/pipe/atexit/x", Status::Skipped, "no compiler")),
            ),
            (
                "test [tls]   elf/inproc/tls/a  ... ok",
                Some(("elf/inproc/tls/a", Status::Passed, "")),
            ),
            (
                "test [tls] elf/inproc/tls/a ... FAILED",
                Some(("elf/inproc/tls/a", Status::Failed, "")),
            ),
            ("test result: ok. 1 passed", None),
        ];
        for (line, expected) in cases {
            assert_eq!(parse_result(line), expected, "{line}\n{rerun}");
        }
    }
}
