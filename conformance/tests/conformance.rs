//! The conformance harness (`harness = false`, libtest-mimic).
//!
//! Every scenario under `conformance/scenarios/` becomes one trial per
//! implemented format and mode, named `format/mode/area/scenario`. Listing
//! (`--list`) only parses YAML; running a trial builds its fixtures, checks
//! them, and sends the steps to the implementation under test
//! (`SOLDER_CONFORMANCE_IMPL`: `solder` by default, `native`, `llvm-orc` or
//! a command; see `conformance/IMPLEMENTING.md`) in a process of its own:
//! the built-in ones are this same binary, started again with
//! `SOLDER_CONFORMANCE_SERVE` set. `SOLDER_STRICT=1` turns skips into
//! failures; a trial the implementation cannot run is *unsupported*,
//! naming what it lacks (for `solder`, a failure).
//!
//! Without the host layer (`--no-default-features`, the portable core on any
//! OS) nothing runs: each scenario gives one trial per format,
//! `format/fixtures/area/scenario`, that builds its fixtures and checks
//! their `exercises` with the independent reader.

use std::process::ExitCode;
use std::sync::Arc;

use libtest_mimic::{Arguments, Completion, Trial};
use solder_conformance::catalog::{self, ScenarioFile, rerun_command};
use solder_conformance::prepare::TrialOutcome;

/// Trial-name filters, one per line: a trial runs when its name contains
/// any of them.
const FILTERS_ENV: &str = "SOLDER_CONFORMANCE_FILTERS";

fn main() -> ExitCode {
    #[cfg(feature = "host")]
    if let Ok(name) = std::env::var(solder_conformance::implementation::SERVE_ENV) {
        return match solder_conformance::impls::serve_named(&name) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("conformance implementation {name}: {err}");
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
    let mut trials = Vec::new();
    for file in &files {
        if let Err(err) = &file.scenario {
            let name = format!("schema/{}/{}", file.area, file.name);
            let message = format!("{err}\nrerun: {}", rerun_command(&name));
            trials
                .push(Trial::test(name, move || Err(message.into())).with_kind(file.area.clone()));
        }
    }
    trials.extend(scenario_trials(&files));
    // `cargo xtask conformance -- a b`: every filter given (libtest takes
    // one), one per line.
    if let Ok(filters) = std::env::var(FILTERS_ENV) {
        let filters: Vec<&str> = filters.lines().filter(|f| !f.is_empty()).collect();
        if !filters.is_empty() {
            trials.retain(|t| filters.iter().any(|f| t.name().contains(f)));
        }
    }
    libtest_mimic::run(&args, trials).exit_code()
}

fn trial(name: String, kind: String, run: impl FnOnce() -> TrialOutcome + Send + 'static) -> Trial {
    Trial::ignorable_test(name, move || match run() {
        TrialOutcome::Passed => Ok(Completion::Completed),
        TrialOutcome::Skipped(reason) => Ok(Completion::ignored_with(reason)),
        TrialOutcome::Unsupported(reason) => {
            Ok(Completion::ignored_with(format!("unsupported: {reason}")))
        }
        TrialOutcome::Failed(report) => Err(report.into()),
    })
    .with_kind(kind)
}

/// One trial per scenario, format and mode: fixtures built and checked,
/// then the steps run.
#[cfg(feature = "host")]
fn scenario_trials(files: &[ScenarioFile]) -> Vec<Trial> {
    let harness = Arc::new(solder_conformance::runner::Harness::for_workspace());
    catalog::trials(files)
        .into_iter()
        .map(|spec| {
            let harness = harness.clone();
            trial(spec.name.clone(), spec.area.clone(), move || {
                harness.run_trial(&spec)
            })
        })
        .collect()
}

/// One trial per scenario and format: fixtures built and checked.
#[cfg(not(feature = "host"))]
fn scenario_trials(files: &[ScenarioFile]) -> Vec<Trial> {
    use solder_conformance::fixtures::Builder;
    use solder_conformance::prepare::{Preparer, Unprepared};
    let preparer = Arc::new(Preparer::new(
        Builder::for_workspace(),
        Preparer::strict_from_env(),
    ));
    catalog::fixture_checks(files)
        .into_iter()
        .map(|check| {
            let preparer = preparer.clone();
            trial(check.name.clone(), check.area.clone(), move || {
                let outcome = if let Some(reason) = &check.skipped {
                    TrialOutcome::Skipped(reason.clone())
                } else {
                    match preparer.prepare(&check.scenario, check.format, &[]) {
                        Ok(_) => TrialOutcome::Passed,
                        Err(Unprepared::Skipped(reason)) => TrialOutcome::Skipped(reason),
                        Err(Unprepared::Failed(what)) => TrialOutcome::Failed(format!(
                            "{what}\nscenario: {}\nrerun: {}",
                            check.path.display(),
                            rerun_command(&check.name)
                        )),
                    }
                };
                preparer.finish(outcome, &check.name)
            })
        })
        .collect()
}
