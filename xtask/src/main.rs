//! `cargo xtask`: the project's developer tasks.
//!
//! Each subcommand lives in its own module and exposes a clap `Args` struct
//! and a `run` function that returns whether everything it checked passed:
//!
//! - `programs` ([`programs`]): builds real C and C++ programs (Lua, SQLite,
//!   lifecycle tests, a C++ program) with gcc and clang, runs them natively
//!   and under `solder run`, and compares stdout and exit status.
//!
//! - `conformance` ([`conformance`]): the YAML scenarios, as a table.
//! - `bench` ([`bench`]): benchmarks against llvm-jitlink 19 and native
//!   builds, written to `docs/benchmarks.md`; `--baseline REV` runs another
//!   git revision's binaries side by side and says whether the link,
//!   incremental and churn medians stay within 3% of them.
//! - `mutants` ([`mutants`]): mutation testing of the relocation, lifecycle,
//!   resolution and protocol code, scored against `docs/testing.md`.
//! - `fuzz` ([`fuzz`]): seeds the fuzz targets' corpora (`fuzz seed`) and
//!   runs every target for a bounded time (`fuzz run`; `docs/fuzzing.md`).
//!
//! Further subcommands are added the same way:
//! a module, a variant of [`Command`], and one match arm in [`main`].

mod bench;
mod conformance;
mod fuzz;
mod mutants;
mod programs;
mod util;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Developer tasks of the Solder workspace.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build real programs (Lua, SQLite, C lifecycle, C++) with gcc and
    /// clang, run each natively and under `solder run`, compare the results.
    Programs(programs::Args),
    /// Build the conformance fixtures, run the YAML scenarios, print a
    /// table per area, format and mode.
    Conformance(conformance::Args),
    /// Measure solder against llvm-jitlink 19, native builds and the
    /// transport (and, with --baseline REV, REV's binaries); print the
    /// table and write docs/benchmarks.md.
    Bench(bench::Args),
    /// Mutation testing (cargo-mutants) of the code where a silent mistake
    /// is a wrong link or a lost handler; prints each area's score.
    Mutants(mutants::Args),
    /// Seed the fuzz corpora from fixtures, pinned frames, scenarios and
    /// regressions; run every fuzz target for a bounded time (nightly).
    Fuzz(fuzz::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Programs(args) => programs::run(&args),
        Command::Conformance(args) => conformance::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Mutants(args) => mutants::run(&args),
        Command::Fuzz(args) => fuzz::run(&args),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
