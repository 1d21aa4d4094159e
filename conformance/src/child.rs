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
use std::os::fd::AsFd;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use solder_executor::sys;
use solder_linker::error::LinkError;
use solder_linker::{
    Archive, ExecutorChoice, ModuleId, ObjectFile, Outcome, Placement, Recovery, Session,
    SessionConfig, Transport,
};

use crate::formats::{Format, Mode};
use crate::schema::{Action, Call, PlacementSpec, RecoverySpec, Scenario, SessionSpec};

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
    /// Where the code runs.
    pub mode: Mode,
    /// The format the fixtures were built for: scenarios name functions as C
    /// spells them, objects as their format does (`_f` on Mach-O).
    pub format: Format,
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
    /// The executor process crashed (the child survived it).
    Crashed {
        signal: i32,
        report: String,
    },
    /// JIT'd code called `exit(status)` in the executor process.
    Exited {
        status: i32,
    },
    /// The call outlived its timeout and the executor was killed.
    TimedOut {
        ms: u64,
    },
    /// The executor vanished or broke the protocol.
    ExecutorFailed {
        message: String,
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

/// The session configuration of a scenario's `session` field, in `mode`.
pub fn session_config(spec: &SessionSpec, mode: Mode, tcp: Option<&str>) -> SessionConfig {
    let mut config = SessionConfig::default();
    let pipe = Transport::Pipe { program: None };
    config.executor = match mode {
        Mode::Inproc => ExecutorChoice::InProcess,
        Mode::Pipe => ExecutorChoice::Remote {
            transport: pipe,
            shared_memory: false,
        },
        Mode::Shm => ExecutorChoice::Remote {
            transport: pipe,
            shared_memory: true,
        },
        Mode::Tcp => ExecutorChoice::Remote {
            transport: Transport::Tcp {
                address: tcp.unwrap_or("127.0.0.1:0").to_string(),
                peer_timeout: solder_linker::DEFAULT_PEER_TIMEOUT,
            },
            shared_memory: false,
        },
    };
    config.recovery = match spec.recovery {
        None => Recovery::None,
        Some(RecoverySpec::Snapshot) => Recovery::Snapshot,
        Some(RecoverySpec::Restart) => Recovery::Restart,
    };
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
    sys::exit::flush_c_stdio();
    let _ = std::io::stdout().flush();
    // The size of the file behind descriptor 1, through a duplicate of it.
    std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .and_then(|fd| File::from(fd).metadata())
        .map_or(0, |metadata| metadata.len())
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
    // TCP: an executor listening on a loopback port of its own, serving
    // each connection (a restart is a new connection) in a fresh process.
    let listener = match plan.mode {
        Mode::Tcp => Some(TcpExecutor::start(&plan.report)?),
        _ => None,
    };
    let mut session = Session::new(session_config(
        &scenario.session,
        plan.mode,
        listener.as_ref().map(|l| l.address.as_str()),
    ))
    .map_err(ChildError::Session)?;
    for (name, &address) in &scenario.session.absolute {
        session.define_absolute(name, address);
    }
    let mut trial = Trial {
        plan: &plan,
        scenario: &scenario,
        session,
        modules: BTreeMap::new(),
        added: Vec::new(),
        ended: false,
    };
    for (index, step) in scenario.steps.iter().enumerate() {
        reporter.record(&Record::Start {
            step: index,
            stdout: flushed_stdout_size(),
        })?;
        let result = trial.step(&step.action)?;
        reporter.record(&Record::Finish {
            step: index,
            stdout: flushed_stdout_size(),
            result,
        })?;
    }
    if !trial.ended {
        let step = scenario.steps.len();
        reporter.record(&Record::Start {
            step,
            stdout: flushed_stdout_size(),
        })?;
        let result = trial.step(&Action::End)?;
        reporter.record(&Record::Finish {
            step,
            stdout: flushed_stdout_size(),
            result,
        })?;
    }
    drop(trial);
    drop(listener);
    reporter.record(&Record::Done)?;
    Ok(())
}

/// A trial's session and what its steps named.
struct Trial<'p> {
    plan: &'p ChildPlan,
    scenario: &'p Scenario,
    session: Session,
    modules: BTreeMap<String, ModuleId>,
    /// Archives added to the session's search list so far.
    added: Vec<String>,
    ended: bool,
}

impl Trial<'_> {
    /// Runs one action.
    fn step(&mut self, action: &Action) -> Result<StepResult, ChildError> {
        let link = |r: Result<(), LinkError>| match r {
            Ok(()) => StepResult::Ok,
            Err(err) => failure(err),
        };
        Ok(match action {
            Action::Load { fixtures, module } => {
                let objects = self.inputs(fixtures)?;
                let loaded = objects.and_then(|objects| self.session.load(&objects));
                link(loaded.map(|id| {
                    self.modules.insert(module.clone(), id);
                }))
            }
            Action::Run {
                fixtures,
                entry,
                module,
            } => {
                let objects = self.inputs(fixtures)?;
                let ran = objects
                    .and_then(|objects| self.session.load_program(&objects, entry))
                    .and_then(|(id, address)| {
                        self.modules.insert(module.clone(), id);
                        self.session.run_entry(address, entry)
                    });
                match ran {
                    Ok(status) => StepResult::Returned {
                        value: i64::from(status) as u64,
                    },
                    Err(err) => failure(err),
                }
            }
            Action::Call(call) => call_step(&mut self.session, self.plan.format, call),
            Action::Replace {
                module,
                with,
                repeat,
            } => {
                let objects = self.read_objects(with)?;
                match self.modules.get(module) {
                    Some(&id) => replace_step(&mut self.session, id, &objects, *repeat),
                    None => StepResult::NoModule {
                        name: module.clone(),
                    },
                }
            }
            Action::Remove { module } => match self.modules.get(module) {
                Some(&id) => link(self.session.remove(id).map(|()| {
                    self.modules.remove(module);
                })),
                None => StepResult::NoModule {
                    name: module.clone(),
                },
            },
            Action::End => {
                self.ended = true;
                link(self.session.finish())
            }
        })
    }

    /// The objects a load names; the archives it names join the session's
    /// search list (the inner result: a link error of the step).
    fn inputs(
        &mut self,
        names: &[String],
    ) -> Result<Result<Vec<ObjectFile>, LinkError>, ChildError> {
        let (archives, fixtures): (Vec<String>, Vec<String>) = names
            .iter()
            .cloned()
            .partition(|name| self.scenario.archives.contains_key(name));
        let objects = self.read_objects(&fixtures)?;
        Ok(self.add_archives(&archives).map(|()| objects))
    }

    fn read_objects(&self, names: &[String]) -> Result<Vec<ObjectFile>, ChildError> {
        names
            .iter()
            .map(|name| {
                let path = self
                    .plan
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
    }

    /// Adds the archives a load names to the session's search list, in
    /// the step's order, each once per session.
    fn add_archives(&mut self, names: &[String]) -> Result<(), LinkError> {
        for name in names {
            if self.added.contains(name) {
                continue;
            }
            let path = self.plan.objects.get(name).ok_or_else(|| LinkError::Read {
                path: PathBuf::from(name),
                reason: std::io::Error::new(std::io::ErrorKind::NotFound, "archive not built"),
            })?;
            let archive = Archive::read(path)?;
            self.session
                .add_archive(archive, self.scenario.archives[name].whole);
            self.added.push(name.clone());
        }
        Ok(())
    }
}

/// A step's failure as a result: a link error, or how the executor ended.
fn failure(err: LinkError) -> StepResult {
    match err {
        LinkError::Execution(abnormal) => match &abnormal.outcome {
            Outcome::Crashed(crash) => StepResult::Crashed {
                signal: crash.signal,
                report: abnormal.to_string(),
            },
            &Outcome::Exited(status) => StepResult::Exited { status },
            Outcome::TimedOut { after, .. } => StepResult::TimedOut {
                ms: after.as_millis() as u64,
            },
            Outcome::Lost(_) | Outcome::Returned(_) => StepResult::ExecutorFailed {
                message: abnormal.to_string(),
            },
        },
        err @ (LinkError::Executor(_) | LinkError::ExecutorGone(_)) => StepResult::ExecutorFailed {
            message: err.to_string(),
        },
        err => StepResult::LinkError {
            kind: error_kind(&err),
            message: err.to_string(),
        },
    }
}

/// `solder-executor --listen 127.0.0.1:0`, killed when dropped (and when
/// this child dies: it is started with a parent-death signal).
struct TcpExecutor {
    process: std::process::Child,
    address: String,
}

impl TcpExecutor {
    fn start(report: &std::path::Path) -> Result<TcpExecutor, ChildError> {
        let program = solder_linker::executors::executor_program(&None)
            .map_err(|e| ChildError::Io(std::io::Error::other(e.to_string())))?;
        let ready = report.with_file_name("tcp-address");
        let _ = std::fs::remove_file(&ready);
        let mut command = std::process::Command::new(program);
        command
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--ready-file")
            .arg(&ready);
        sys::spawn::child_dies_with_parent(&mut command);
        let mut process = command.spawn()?;
        let start = std::time::Instant::now();
        loop {
            if let Ok(text) = std::fs::read_to_string(&ready)
                && !text.trim().is_empty()
            {
                return Ok(TcpExecutor {
                    process,
                    address: text.trim().to_string(),
                });
            }
            if let Some(status) = process.try_wait()? {
                return Err(ChildError::Io(std::io::Error::other(format!(
                    "solder-executor --listen exited ({status}) before listening"
                ))));
            }
            if start.elapsed() > std::time::Duration::from_secs(10) {
                let _ = process.kill();
                return Err(ChildError::Io(std::io::Error::other(
                    "solder-executor --listen did not start listening within 10 s",
                )));
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }
}

impl Drop for TcpExecutor {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// A `call` step: looks the function up and calls it.
fn call_step(session: &mut Session, format: Format, call: &Call) -> StepResult {
    match session.lookup(&format!("{}{}", format.symbol_prefix(), call.function)) {
        Ok(Some(address)) => {
            let args: Vec<u64> = call.args.iter().map(|&a| a as u64).collect();
            let timeout = call.timeout_ms.map(std::time::Duration::from_millis);
            // SAFETY: the scenario names a function of a fixture and passes
            // at most six integer arguments; whatever the function does
            // happens in this disposable child process or in the executor
            // process.
            match unsafe { session.call_with_timeout(address, &args, timeout) } {
                Ok(value) => StepResult::Returned { value },
                Err(err) => failure(err),
            }
        }
        Ok(None) => StepResult::MissingSymbol {
            name: call.function.clone(),
        },
        Err(err) => failure(err),
    }
}

/// A `replace` step: hot-swaps module `id` `repeat` times; the slab must
/// not hold more after the last swap than after the first.
fn replace_step(
    session: &mut Session,
    id: ModuleId,
    objects: &[ObjectFile],
    repeat: u32,
) -> StepResult {
    let mut result = session.replace(id, objects);
    let first = session.slab_used();
    for _ in 1..repeat {
        if result.is_err() {
            break;
        }
        result = session.replace(id, objects);
    }
    let last = session.slab_used();
    match result {
        Ok(()) if last > first => StepResult::MemoryGrew { first, last },
        Ok(()) => StepResult::Ok,
        Err(err) => failure(err),
    }
}
