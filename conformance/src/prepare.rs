//! A trial's first half, portable: build its fixtures for the format and
//! check with the independent reader ([`crate::verify`]) that they contain
//! what the scenario's `exercises` says. The runner ([`crate::runner`],
//! host only) runs the steps on what this returns; without the host layer
//! the harness runs this half alone, once per scenario and format.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;

use crate::catalog::rerun_command;
use crate::fixtures::{Builder, Compiler, FixtureError};
use crate::formats::Format;
use crate::schema::Scenario;

/// How a trial ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrialOutcome {
    Passed,
    /// A failure, with the full report (diff and rerun command).
    Failed(String),
    Skipped(String),
    /// The implementation lacks what the trial needs (a format, a mode, a
    /// capability), named: neither passed nor failed, and not a skip
    /// (`SOLDER_STRICT=1` leaves it alone).
    Unsupported(String),
}

/// Builds and checks fixtures; shared by all harness threads.
#[derive(Debug)]
pub struct Preparer {
    builder: Builder,
    strict: bool,
    compilers: Mutex<HashMap<Format, Result<Compiler, String>>>,
}

impl Preparer {
    /// `strict` (`SOLDER_STRICT=1`) turns skips into failures.
    pub fn new(builder: Builder, strict: bool) -> Self {
        Preparer {
            builder,
            strict,
            compilers: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `SOLDER_STRICT` asks for skips to fail.
    pub fn strict_from_env() -> bool {
        std::env::var("SOLDER_STRICT").is_ok_and(|v| !v.is_empty() && v != "0")
    }

    /// A skip, or under `SOLDER_STRICT=1` a failure naming the rerun.
    pub fn finish(&self, outcome: TrialOutcome, trial: &str) -> TrialOutcome {
        match outcome {
            TrialOutcome::Skipped(reason) if self.strict => TrialOutcome::Failed(format!(
                "skipped, and SOLDER_STRICT=1 turns skips into failures: {reason}\nrerun: {}",
                rerun_command(trial)
            )),
            other => other,
        }
    }

    fn compiler(&self, format: Format) -> Result<Compiler, String> {
        let mut compilers = self.compilers.lock().unwrap_or_else(|p| p.into_inner());
        compilers
            .entry(format)
            .or_insert_with(|| self.builder.compiler(format).map_err(|e| e.to_string()))
            .clone()
    }

    /// The scenario's fixtures built for `format` (name -> object) and
    /// checked against its `exercises`; or why the trial ends here
    /// (skipped for want of a compiler, failed with a message that the
    /// caller completes with the scenario and rerun command).
    /// `cflags` go before every fixture's own (an implementation's needs,
    /// such as `-fPIC`).
    pub fn prepare(
        &self,
        scenario: &Scenario,
        format: Format,
        cflags: &[String],
    ) -> Result<BTreeMap<String, PathBuf>, Unprepared> {
        let compiler = self.compiler(format).map_err(Unprepared::Skipped)?;
        let mut objects = BTreeMap::new();
        for (name, spec) in &scenario.fixtures {
            let mut spec = spec.clone();
            spec.cflags.splice(0..0, cflags.iter().cloned());
            match self.builder.build(format, &compiler, &spec) {
                Ok(path) => {
                    objects.insert(name.clone(), path);
                }
                Err(FixtureError::CompilerMissing { reason, .. }) => {
                    return Err(Unprepared::Skipped(reason));
                }
                Err(err) => return Err(Unprepared::Failed(format!("fixture `{name}`: {err}"))),
            }
        }
        if let Some(wanted) = scenario.exercises.get(&format) {
            let paths: Vec<PathBuf> = objects.values().cloned().collect();
            crate::verify::verify(format, &paths, wanted)
                .map_err(|err| Unprepared::Failed(format!("exercises check failed: {err}")))?;
        }
        for (name, spec) in &scenario.archives {
            let members: Vec<(String, PathBuf)> = spec
                .members
                .iter()
                .map(|m| (m.clone(), objects[m].clone()))
                .collect();
            let dir = self.builder.archive_dir(format, scenario_key(scenario));
            let path = crate::archives::write_archive(&dir, name, format, spec, &members)
                .map_err(|err| Unprepared::Failed(format!("archive `{name}`: {err}")))?;
            objects.insert(name.clone(), path);
        }
        Ok(objects)
    }
}

/// A directory name for a scenario's archives: scenarios with archives of
/// the same name do not share a file.
fn scenario_key(scenario: &Scenario) -> String {
    let key = format!("{}\u{1f}{:?}", scenario.summary, scenario.archives);
    format!("{:016x}", crate::fixtures::fnv1a(key.as_bytes()))
}

/// Why [`Preparer::prepare`] stopped a trial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unprepared {
    Skipped(String),
    Failed(String),
}
