//! Finding scenarios and naming trials.
//!
//! Scenarios live in `conformance/scenarios/<area>/<name>.yaml`. Each one
//! gives a trial per (format, mode) that both the scenario and Solder
//! support, named `format/mode/area/name`. A file that does not parse gives
//! one failing trial named `schema/area/name`. Listing only reads YAML: no
//! fixture is built.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::formats::{FORMATS, Format, MODES, Mode};
use crate::schema::{Scenario, ScenarioError};

/// One scenario file.
#[derive(Debug)]
pub struct ScenarioFile {
    pub area: String,
    pub name: String,
    pub path: PathBuf,
    pub scenario: Result<Arc<Scenario>, Arc<ScenarioError>>,
}

/// One trial: a scenario in one format and mode.
#[derive(Debug, Clone)]
pub struct TrialSpec {
    pub name: String,
    pub area: String,
    pub scenario_name: String,
    pub path: PathBuf,
    pub format: Format,
    pub mode: Mode,
    pub scenario: Arc<Scenario>,
}

/// The scenario directory of this workspace.
pub fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")
}

/// Every `<area>/<name>.yaml` under `dir`, sorted, parsed. Files at other
/// depths are not scenarios.
pub fn discover(dir: &Path) -> std::io::Result<Vec<ScenarioFile>> {
    let mut files = Vec::new();
    let walk = walkdir::WalkDir::new(dir)
        .min_depth(2)
        .max_depth(2)
        .sort_by_file_name();
    for entry in walk {
        let entry = entry.map_err(std::io::Error::other)?;
        let path = entry.into_path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") || !path.is_file() {
            continue;
        }
        let area = path.parent().map(file_name).unwrap_or_default();
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let scenario = Scenario::load(&path).map(Arc::new).map_err(Arc::new);
        files.push(ScenarioFile {
            area,
            name,
            path,
            scenario,
        });
    }
    Ok(files)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The trials of `files`, in format, mode, area, name order.
pub fn trials(files: &[ScenarioFile]) -> Vec<TrialSpec> {
    let mut trials = Vec::new();
    for format in FORMATS.iter().filter(|f| f.implemented) {
        for mode in MODES.iter().filter(|m| m.implemented) {
            for file in files {
                let Ok(scenario) = &file.scenario else {
                    continue;
                };
                if !scenario.formats.contains(&format.format)
                    || !scenario.modes.contains(&mode.mode)
                {
                    continue;
                }
                trials.push(TrialSpec {
                    name: trial_name(format.format, mode.mode, &file.area, &file.name),
                    area: file.area.clone(),
                    scenario_name: file.name.clone(),
                    path: file.path.clone(),
                    format: format.format,
                    mode: mode.mode,
                    scenario: scenario.clone(),
                });
            }
        }
    }
    trials
}

/// One fixture check of the portable harness (without the host layer): a
/// scenario's fixtures built for one format and checked against its
/// `exercises`, named `format/fixtures/area/name`.
#[derive(Debug, Clone)]
pub struct FixtureCheck {
    pub name: String,
    pub path: PathBuf,
    pub area: String,
    pub format: Format,
    pub scenario: Arc<Scenario>,
    /// Set when the scenario skips every mode of this format: the reason.
    pub skipped: Option<String>,
}

/// The fixture checks of `files`, in format, area, name order.
pub fn fixture_checks(files: &[ScenarioFile]) -> Vec<FixtureCheck> {
    let mut checks = Vec::new();
    for format in FORMATS.iter().filter(|f| f.implemented) {
        for file in files {
            let Ok(scenario) = &file.scenario else {
                continue;
            };
            if !scenario.formats.contains(&format.format) {
                continue;
            }
            let modes = MODES
                .iter()
                .filter(|m| m.implemented && scenario.modes.contains(&m.mode));
            let mut skips = modes.map(|m| {
                scenario
                    .skip
                    .iter()
                    .find(|c| c.applies(format.format, m.mode))
            });
            let skipped = skips
                .clone()
                .all(|s| s.is_some())
                .then(|| skips.next().flatten().map(|c| c.reason.clone()))
                .flatten();
            checks.push(FixtureCheck {
                name: format!("{}/fixtures/{}/{}", format.format, file.area, file.name),
                path: file.path.clone(),
                area: file.area.clone(),
                format: format.format,
                scenario: scenario.clone(),
                skipped,
            });
        }
    }
    checks
}

/// `format/mode/area/name`.
pub fn trial_name(format: Format, mode: Mode, area: &str, name: &str) -> String {
    format!("{format}/{mode}/{area}/{name}")
}

/// The command that reruns exactly one trial against `implementation`.
#[cfg(feature = "host")]
pub fn rerun_command_for(
    implementation: &crate::implementation::ImplementationSpec,
    trial: &str,
) -> String {
    if implementation.is_default() {
        rerun_command(trial)
    } else {
        format!(
            "{}='{}' {}",
            crate::implementation::IMPL_ENV,
            implementation.name,
            rerun_command(trial)
        )
    }
}

/// The command that reruns exactly one trial.
pub fn rerun_command(trial: &str) -> String {
    let features = if cfg!(feature = "host") {
        ""
    } else {
        " --no-default-features"
    };
    format!("cargo test -p solder-conformance{features} --test conformance -- {trial} --exact")
}
