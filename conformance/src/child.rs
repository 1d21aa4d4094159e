//! The child side of an in-process trial: runs a scenario's steps against a
//! real [`Session`] in a process of its own.
//!
//! The parent ([`crate::runner`]) re-executes the harness binary with
//! [`CHILD_ENV`] set to a JSON [`ChildPlan`], stdout redirected to a capture
//! file and stderr to another. Before each step the child flushes stdio and
//! appends a `start` record (with the capture file's size) to the report
//! file; after it, it flushes again and appends a `finish` record with the
//! outcome. Records are written with one `write(2)` each, so when a step
//! crashes, exits or hangs, the parent knows which step it was and which
//! part of the captured stdout it printed.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write as _;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use solder_linker::{ModuleId, ObjectFile, Placement, Session, SessionConfig};

use crate::schema::{Action, PlacementSpec, Scenario, SessionSpec};

/// Set in the child's environment: the JSON [`ChildPlan`].
pub const CHILD_ENV: &str = "SOLDER_CONFORMANCE_CHILD";

/// What the child runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChildPlan {
    pub trial: String,
    pub scenario: PathBuf,
    /// Fixture name -> built object.
    pub objects: BTreeMap<String, PathBuf>,
    pub report: PathBuf,
}

/// One line of the report file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Record {
    /// Step `step` (0-based; `steps.len()` is the implicit end) starts;
    /// stdout had `stdout` bytes.
    Start { step: usize, stdout: u64 },
    Finish {
        step: usize,
        stdout: u64,
        result: StepResult,
    },
    /// Every step ran and the session ended.
    Done,
}

/// How a step that returned to the child ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum StepResult {
    Ok,
    Returned {
        value: u64,
    },
    LinkError {
        kind: String,
        message: String,
    },
    MissingSymbol {
        name: String,
    },
    /// The module a replace or remove names was never loaded (its load
    /// failed).
    NoModule {
        name: String,
    },
    /// A repeated replace left more of the slab in use after the last swap
    /// than after the first.
    MemoryGrew {
        first: u64,
        last: u64,
    },
}

/// Why the child could not run its plan (reported on stderr, exit 101).
#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    #[error("bad plan in {CHILD_ENV}: {0}")]
    Plan(#[from] serde_json::Error),
    #[error(transparent)]
    Scenario(#[from] crate::schema::ScenarioError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("cannot create the session: {0}")]
    Session(solder_linker::LinkError),
    #[error("fixture `{0}` was not built")]
    NoObject(String),
}

/// The kind of a link error: its `LinkError` variant name.
pub fn error_kind(err: &solder_linker::LinkError) -> String {
    let debug = format!("{err:?}");
    debug
        .split(|c: char| !c.is_alphanumeric() && c != '_')
        .next()
        .unwrap_or("Unknown")
        .to_string()
}

/// The session configuration of a scenario's `session` field.
pub fn session_config(spec: &SessionSpec) -> SessionConfig {
    let mut config = SessionConfig::default();
    if let Some(size) = spec.slab_size {
        config.slab_size = size;
    }
    if let Some(placement) = spec.placement {
        config.placement = match placement {
            PlacementSpec::Auto => Placement::Auto,
            PlacementSpec::NearHost => Placement::NearHost,
            PlacementSpec::Low => Placement::Low,
            PlacementSpec::Fixed(address) => Placement::Fixed(address),
        };
    }
    config
}

struct Reporter {
    file: File,
}

impl Reporter {
    fn record(&mut self, record: &Record) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(record).map_err(std::io::Error::other)?;
        line.push(b'\n');
        // One write(2): the parent never sees half a record from a step that
        // crashed right after.
        self.file.write_all(&line)
    }
}

/// Flushes every stdio stream and returns how many bytes stdout (the
/// capture file) holds.
fn flushed_stdout_size() -> u64 {
    // SAFETY: fflush(NULL) flushes all open output streams; always valid.
    unsafe { libc::fflush(std::ptr::null_mut()) };
    let _ = std::io::stdout().flush();
    let fd = std::io::stdout().as_raw_fd();
    // SAFETY: `stat` is plain data, and fstat writes it for a valid fd.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(fd, &mut st) == 0 {
            st.st_size as u64
        } else {
            0
        }
    }
}

/// Runs the plan in `plan_json`; returns only when every step returned.
pub fn run(plan_json: &str) -> Result<(), ChildError> {
    let plan: ChildPlan = serde_json::from_str(plan_json)?;
    let scenario = Scenario::load(&plan.scenario)?;
    let mut reporter = Reporter {
        file: std::fs::OpenOptions::new()
            .append(true)
            .open(&plan.report)?,
    };
    solder_executor::crash::install_crash_reporter();
    let read_objects = |names: &[String]| -> Result<Vec<ObjectFile>, ChildError> {
        names
            .iter()
            .map(|name| {
                let path = plan
                    .objects
                    .get(name)
                    .ok_or_else(|| ChildError::NoObject(name.clone()))?;
                let bytes = std::fs::read(path)?;
                Ok(ObjectFile {
                    name: format!("{name} ({})", path.display()),
                    bytes,
                })
            })
            .collect()
    };
    let mut session =
        Session::new(session_config(&scenario.session)).map_err(ChildError::Session)?;
    let mut modules: BTreeMap<String, ModuleId> = BTreeMap::new();
    let mut ended = false;
    for (index, step) in scenario.steps.iter().enumerate() {
        reporter.record(&Record::Start {
            step: index,
            stdout: flushed_stdout_size(),
        })?;
        let link = |r: Result<(), solder_linker::LinkError>| match r {
            Ok(()) => StepResult::Ok,
            Err(err) => StepResult::LinkError {
                kind: error_kind(&err),
                message: err.to_string(),
            },
        };
        let result = match &step.action {
            Action::Load { fixtures, module } => {
                let objects = read_objects(fixtures)?;
                link(session.load(&objects).map(|id| {
                    modules.insert(module.clone(), id);
                }))
            }
            Action::Call(call) => match session.lookup(&call.function) {
                Ok(Some(address)) => {
                    let args: Vec<u64> = call.args.iter().map(|&a| a as u64).collect();
                    // SAFETY: the scenario names a function of a fixture
                    // and passes at most six integer arguments; whatever the
                    // function does happens in this disposable child process.
                    let value = unsafe { session.call(address, &args) };
                    StepResult::Returned { value }
                }
                Ok(None) => StepResult::MissingSymbol {
                    name: call.function.clone(),
                },
                Err(err) => link(Err(err)),
            },
            Action::Replace {
                module,
                with,
                repeat,
            } => {
                let objects = read_objects(with)?;
                match modules.get(module) {
                    Some(&id) => {
                        let mut result = session.replace(id, &objects);
                        let first = session.slab_used();
                        for _ in 1..*repeat {
                            if result.is_err() {
                                break;
                            }
                            result = session.replace(id, &objects);
                        }
                        let last = session.slab_used();
                        match link(result) {
                            StepResult::Ok if last > first => {
                                StepResult::MemoryGrew { first, last }
                            }
                            other => other,
                        }
                    }
                    None => StepResult::NoModule {
                        name: module.clone(),
                    },
                }
            }
            Action::Remove { module } => match modules.get(module) {
                Some(&id) => link(session.remove(id).map(|()| {
                    modules.remove(module);
                })),
                None => StepResult::NoModule {
                    name: module.clone(),
                },
            },
            Action::End => {
                session.end();
                ended = true;
                StepResult::Ok
            }
        };
        reporter.record(&Record::Finish {
            step: index,
            stdout: flushed_stdout_size(),
            result,
        })?;
    }
    if !ended {
        let step = scenario.steps.len();
        reporter.record(&Record::Start {
            step,
            stdout: flushed_stdout_size(),
        })?;
        session.end();
        reporter.record(&Record::Finish {
            step,
            stdout: flushed_stdout_size(),
            result: StepResult::Ok,
        })?;
    }
    drop(session);
    reporter.record(&Record::Done)?;
    Ok(())
}
