//! The conformance harness (`harness = false`, libtest-mimic).
//!
//! Every scenario under `conformance/scenarios/` becomes one trial per
//! implemented format and mode, named `format/mode/area/scenario`. Listing
//! (`--list`) only parses YAML; running a trial builds its fixtures, checks
//! them, and runs the steps in a child process: this same binary, started
//! again with `SOLDER_CONFORMANCE_CHILD` set. `SOLDER_STRICT=1` turns skips
//! into failures.

use std::process::ExitCode;
use std::sync::Arc;

use libtest_mimic::{Arguments, Completion, Trial};
use solder_conformance::catalog::{self, rerun_command};
use solder_conformance::child::{self, CHILD_ENV};
use solder_conformance::runner::{Harness, TrialOutcome};

fn main() -> ExitCode {
    if let Ok(plan) = std::env::var(CHILD_ENV) {
        return match child::run(&plan) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("conformance child: {err}");
                ExitCode::from(101)
            }
        };
    }
    let args = Arguments::from_args();
    let dir = catalog::scenarios_dir();
    let files = match catalog::discover(&dir) {
        Ok(files) => files,
        Err(err) => {
            eprintln!("cannot read the scenarios in {}: {err}", dir.display());
            return ExitCode::FAILURE;
        }
    };
    let harness = Arc::new(Harness::for_workspace());
    let mut trials = Vec::new();
    for file in &files {
        if let Err(err) = &file.scenario {
            let name = format!("schema/{}/{}", file.area, file.name);
            let message = format!("{err}\nrerun: {}", rerun_command(&name));
            trials
                .push(Trial::test(name, move || Err(message.into())).with_kind(file.area.clone()));
        }
    }
    for spec in catalog::trials(&files) {
        let harness = harness.clone();
        let kind = spec.area.clone();
        trials.push(
            Trial::ignorable_test(spec.name.clone(), move || match harness.run_trial(&spec) {
                TrialOutcome::Passed => Ok(Completion::Completed),
                TrialOutcome::Skipped(reason) => Ok(Completion::ignored_with(reason)),
                TrialOutcome::Failed(report) => Err(report.into()),
            })
            .with_kind(kind),
        );
    }
    libtest_mimic::run(&args, trials).exit_code()
}
