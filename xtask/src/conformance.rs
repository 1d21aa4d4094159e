//! `cargo xtask conformance`: builds the fixtures of the selected formats,
//! runs the conformance harness (`cargo test -p solder-conformance --test
//! conformance`), and ends with a table of passed, failed and skipped trials
//! per area, format and mode. Formats and modes Solder does not implement
//! yet have no trials; the table lists them as "not implemented".
//!
//! The exit status is 0 only when nothing failed.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use solder_conformance::catalog;
use solder_conformance::fixtures::{Builder, FixtureError};
use solder_conformance::formats::{FORMATS, Format, MODES, Mode};

use crate::util;

/// Options of `cargo xtask conformance`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Which object formats to run: elf, macho, coff or all.
    #[arg(long, default_value = "all", value_parser = ["elf", "macho", "coff", "all"])]
    format: String,
    /// Which execution modes to run: inproc, pipe, tcp, shm or all.
    #[arg(long, default_value = "all", value_parser = ["inproc", "pipe", "tcp", "shm", "all"])]
    mode: String,
    /// Only trials whose name contains this (passed to the harness).
    #[arg(last = true, value_name = "FILTER")]
    filter: Vec<String>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    passed: usize,
    failed: usize,
    skipped: usize,
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
        let mut built = 0;
        for file in &files {
            let Ok(scenario) = &file.scenario else {
                continue;
            };
            if !scenario.formats.contains(format) {
                continue;
            }
            for (name, spec) in &scenario.fixtures {
                match builder.build(*format, &compiler, spec) {
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
        eprintln!("conformance: {built} {format} fixture builds up to date");
    }
    Ok(build_failed)
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

    // Run the harness; echo its output and collect per-trial results.
    let mut command = Command::new(util::cargo());
    command
        .current_dir(&root)
        .env("CARGO_TARGET_DIR", &target)
        .args([
            "test",
            "-p",
            "solder-conformance",
            "--test",
            "conformance",
            "--",
        ]);
    let mut harness_args: Vec<OsString> = Vec::new();
    if let Some(filter) = args.filter.first() {
        harness_args.push(filter.into());
    }
    for format in FORMATS.iter().filter(|f| !formats.contains(&f.format)) {
        harness_args.extend([OsString::from("--skip"), format!("{}/", format.name).into()]);
    }
    for mode in MODES.iter().filter(|m| !modes.contains(&m.mode)) {
        harness_args.extend([OsString::from("--skip"), format!("/{}/", mode.name).into()]);
    }
    command.args(&harness_args);
    eprintln!(
        "conformance: $ {}",
        util::shell_command(
            std::iter::once(OsString::from("cargo")).chain(command.get_args().map(OsString::from))
        )
    );
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run `cargo test` for the conformance harness")?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut results: BTreeMap<(String, String, String), Counts> = BTreeMap::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("cannot read the harness output")?;
        println!("{line}");
        if let Some((name, status)) = parse_result(&line) {
            let parts: Vec<&str> = name.split('/').collect();
            let key = match parts.as_slice() {
                ["schema", area, _] => ("schema".to_string(), "-".to_string(), area.to_string()),
                [format, mode, area, _] => (format.to_string(), mode.to_string(), area.to_string()),
                _ => continue,
            };
            let counts = results.entry(key).or_default();
            match status {
                "ok" => counts.passed += 1,
                "FAILED" => counts.failed += 1,
                _ => counts.skipped += 1,
            }
        }
    }
    let status = child.wait().context("cannot wait for the harness")?;

    println!();
    println!(
        "{:<18} {:<7} {:<7} {:>7} {:>7} {:>8}",
        "area", "format", "mode", "passed", "failed", "skipped"
    );
    let mut total = Counts::default();
    for ((format, mode, area), c) in &results {
        println!(
            "{area:<18} {format:<7} {mode:<7} {:>7} {:>7} {:>8}",
            c.passed, c.failed, c.skipped
        );
        total.passed += c.passed;
        total.failed += c.failed;
        total.skipped += c.skipped;
    }
    for format in &formats {
        for mode in &modes {
            if !format.info().implemented || !mode.info().implemented {
                let what = match (format.info().implemented, mode.info().implemented) {
                    (false, false) => "format and mode",
                    (false, true) => "format",
                    _ => "mode",
                };
                println!(
                    "{:<18} {format:<7} {mode:<7} not implemented ({what}): no trials",
                    "*"
                );
            }
        }
    }
    println!(
        "{:<18} {:<7} {:<7} {:>7} {:>7} {:>8}",
        "total", "", "", total.passed, total.failed, total.skipped
    );
    println!(
        "conformance: {} passed, {} failed, {} skipped",
        total.passed, total.failed, total.skipped
    );
    if !status.success() && total.failed == 0 {
        eprintln!("conformance: the harness failed ({status}) without a failing trial");
    }
    Ok(status.success() && total.failed == 0 && !build_failed)
}

/// `test [area] elf/inproc/area/name ... ok` -> (name, status).
fn parse_result(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix("test ")?;
    let (head, status) = rest.rsplit_once(" ... ")?;
    let name = head.split_whitespace().last()?;
    let status = status.split(',').next()?.trim();
    name.contains('/').then_some((name, status))
}
