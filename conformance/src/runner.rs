//! The parent side of a trial: builds and verifies the fixtures, runs the
//! scenario in a child process ([`crate::child`]), watches it (killing it
//! when a step outlives its timeout), attributes what it saw to steps, and
//! compares a transcript of the expected steps against the actual one.
//!
//! The transcript has one block per step: what the step does, its stdout
//! line by line, and its outcome (`ok`, `returned 3`, `link error Undefined
//! ...`, `crashed with SIGSEGV`, `exited with status 3`, `timed out`, `not
//! reached`). When an expectation is a pattern and the actual value matches
//! it, the actual transcript shows the pattern, so the unified diff shows
//! exactly what differs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::catalog::{TrialSpec, rerun_command};
use crate::child::{CHILD_ENV, ChildPlan, Record, StepResult};
use crate::fixtures::Builder;
use crate::formats::Mode;
pub use crate::prepare::TrialOutcome;
use crate::prepare::{Preparer, Unprepared};
use crate::schema::{Action, Expect, Scenario, Step, signal_name};

/// What happened to one step, as the parent saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    Result(StepResult),
    Crashed(i32),
    Exited(i32),
    TimedOut(u64),
    NotReached,
}

/// A step's outcome and the stdout it printed.
#[derive(Debug, Clone)]
pub struct StepObservation {
    pub observed: Observed,
    pub stdout: Vec<u8>,
}

/// Runs trials; shared by all harness threads.
#[derive(Debug)]
pub struct Harness {
    preparer: Preparer,
    runs: PathBuf,
}

impl Harness {
    /// `strict` (`SOLDER_STRICT=1`) turns skips into failures.
    pub fn new(builder: Builder, runs: PathBuf, strict: bool) -> Self {
        Harness {
            preparer: Preparer::new(builder, strict),
            runs,
        }
    }

    /// The harness for this workspace, reading `SOLDER_STRICT`.
    pub fn for_workspace() -> Self {
        let root = crate::fixtures::workspace_root();
        let target = crate::fixtures::default_target_dir(&root);
        Harness::new(
            Builder::new(&root, &target),
            target.join("conformance").join("runs"),
            Preparer::strict_from_env(),
        )
    }

    /// Runs one trial to its outcome.
    pub fn run_trial(&self, trial: &TrialSpec) -> TrialOutcome {
        self.preparer.finish(self.run_unchecked(trial), &trial.name)
    }

    fn run_unchecked(&self, trial: &TrialSpec) -> TrialOutcome {
        let scenario = &trial.scenario;
        if let Some(skip) = scenario
            .skip
            .iter()
            .find(|c| c.applies(trial.format, trial.mode))
        {
            return TrialOutcome::Skipped(skip.reason.clone());
        }
        let fail = |what: String| {
            TrialOutcome::Failed(format!(
                "{what}\nscenario: {}\nrerun: {}",
                trial.path.display(),
                rerun_command(&trial.name)
            ))
        };
        let objects = match self.preparer.prepare(scenario, trial.format) {
            Ok(objects) => objects,
            Err(Unprepared::Skipped(reason)) => return TrialOutcome::Skipped(reason),
            Err(Unprepared::Failed(what)) => return fail(what),
        };
        let run = match self.run_child(trial, objects) {
            Ok(run) => run,
            Err(err) => return fail(format!("harness error: {err}")),
        };
        let (expected, actual) = transcripts(scenario, &run.steps);
        let xfail = scenario
            .xfail
            .iter()
            .find(|c| c.applies(trial.format, trial.mode));
        let matched = expected == actual;
        match (matched, xfail) {
            (true, None) => TrialOutcome::Passed,
            (false, Some(_)) => TrialOutcome::Passed,
            (true, Some(x)) => fail(format!(
                "marked xfail ({}), but it passed: remove the xfail entry",
                x.reason
            )),
            (false, None) => {
                let diff = similar::TextDiff::from_lines(&expected, &actual)
                    .unified_diff()
                    .context_radius(4)
                    .header("expected", "actual")
                    .to_string();
                let mut report = format!("{}\n{diff}", scenario.summary);
                if !run.stderr.trim().is_empty() {
                    let _ = write!(report, "child stderr:\n{}\n", truncate(&run.stderr, 4000));
                }
                let _ = write!(report, "files: {}", run.dir.display());
                fail(report)
            }
        }
    }

    fn run_child(
        &self,
        trial: &TrialSpec,
        objects: BTreeMap<String, PathBuf>,
    ) -> Result<ChildRun, String> {
        let dir = self.runs.join(trial.name.replace('/', "__"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let create = |name: &str| {
            let path = dir.join(name);
            std::fs::File::create(&path)
                .map(|f| (path.clone(), f))
                .map_err(|e| format!("cannot create {}: {e}", path.display()))
        };
        let (stdout_path, stdout) = create("stdout")?;
        let (stderr_path, stderr) = create("stderr")?;
        let (report_path, _) = create("report.jsonl")?;
        let plan = ChildPlan {
            trial: trial.name.clone(),
            scenario: trial.path.clone(),
            objects,
            report: report_path.clone(),
            mode: trial.mode,
            format: trial.format,
        };
        let plan = serde_json::to_string(&plan).map_err(|e| e.to_string())?;
        let exe =
            std::env::current_exe().map_err(|e| format!("cannot find the harness binary: {e}"))?;
        let mut child = Command::new(exe)
            .env(CHILD_ENV, plan)
            .env_remove("SOLDER_STRICT")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot start the trial's child process: {e}"))?;
        let steps = &trial.scenario.steps;
        let timeout_of = |step: usize| {
            Duration::from_millis(steps.get(step).map_or(
                crate::schema::DEFAULT_STEP_TIMEOUT_MS,
                Scenario::step_timeout_ms,
            ))
        };
        // An executor process enforces a call's timeout itself and reports
        // it; the watchdog only catches a child that hangs beyond that.
        let watchdog_of = |step: usize| match trial.mode {
            Mode::Inproc => timeout_of(step),
            _ => timeout_of(step) + Duration::from_secs(10),
        };
        let mut running: Option<(usize, Instant)> = None;
        let mut last_progress = Instant::now();
        let mut seen = 0;
        let mut timed_out = None;
        let status = loop {
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                break status;
            }
            let records = read_records(&report_path);
            if records.len() != seen {
                seen = records.len();
                last_progress = Instant::now();
                running = match records.last() {
                    Some(Record::Start { step, .. }) => Some((*step, Instant::now())),
                    _ => None,
                };
            }
            let overdue = match running {
                Some((step, since)) => (since.elapsed() > watchdog_of(step)).then_some(step),
                None => (last_progress.elapsed() > watchdog_of(usize::MAX)).then_some(usize::MAX),
            };
            if let Some(step) = overdue {
                let _ = child.kill();
                let status = child.wait().map_err(|e| e.to_string())?;
                timed_out = Some(step);
                break status;
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        let records = read_records(&report_path);
        let captured = std::fs::read(&stdout_path).unwrap_or_default();
        let stderr =
            String::from_utf8_lossy(&std::fs::read(&stderr_path).unwrap_or_default()).into_owned();
        if timed_out == Some(usize::MAX) {
            return Err(format!(
                "the child made no progress outside a step\nstderr:\n{stderr}"
            ));
        }
        let total = steps.len() + 1;
        let (mut observed, open, done) = observations(records, &captured, total);
        if let Some((step, start)) = open {
            let outcome = if let Some(step) = timed_out {
                Observed::TimedOut(timeout_of(step).as_millis() as u64)
            } else if let Some(signal) = status.signal() {
                Observed::Crashed(signal)
            } else {
                Observed::Exited(status.code().unwrap_or(-1))
            };
            observed[step] = StepObservation {
                observed: outcome,
                stdout: slice(&captured, start, captured.len() as u64),
            };
        } else if !done || !status.success() {
            return Err(format!(
                "the child ended ({status}) outside any step\nstderr:\n{stderr}"
            ));
        }
        Ok(ChildRun {
            steps: observed,
            stderr,
            dir,
        })
    }
}

/// What the child's records say of each step (the last slot is the
/// implicit end), the step still open when the records stop (its index and
/// where its stdout starts), and whether the child finished.
fn observations(
    records: Vec<Record>,
    captured: &[u8],
    total: usize,
) -> (Vec<StepObservation>, Option<(usize, u64)>, bool) {
    let mut observed: Vec<StepObservation> = (0..total)
        .map(|_| StepObservation {
            observed: Observed::NotReached,
            stdout: Vec::new(),
        })
        .collect();
    let mut open: Option<(usize, u64)> = None;
    let mut done = false;
    for record in records {
        match record {
            Record::Start { step, stdout } => open = Some((step.min(total - 1), stdout)),
            Record::Finish {
                step,
                stdout,
                result,
            } => {
                let start = open.take().map_or(stdout, |(_, s)| s);
                observed[step.min(total - 1)] = StepObservation {
                    observed: observe(result),
                    stdout: slice(captured, start, stdout),
                };
            }
            Record::Done => done = true,
        }
    }
    (observed, open, done)
}

/// An executor's crash, exit or timeout reads like the in-process child's
/// own, so one transcript fits every mode.
fn observe(result: StepResult) -> Observed {
    match result {
        StepResult::Crashed { signal, .. } => Observed::Crashed(signal),
        StepResult::Exited { status } => Observed::Exited(status),
        StepResult::TimedOut { ms } => Observed::TimedOut(ms),
        other => Observed::Result(other),
    }
}

struct ChildRun {
    /// One per step, plus the implicit end.
    steps: Vec<StepObservation>,
    stderr: String,
    dir: PathBuf,
}

fn slice(bytes: &[u8], start: u64, end: u64) -> Vec<u8> {
    let end = (end as usize).min(bytes.len());
    let start = (start as usize).min(end);
    bytes[start..end].to_vec()
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

/// Complete lines of the report file.
fn read_records(path: &Path) -> Vec<Record> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Whether the scenario ends with an implicit `end` (no `end` step, and
/// the last step does not end the process).
fn implicit_end(scenario: &Scenario) -> bool {
    !scenario.steps.iter().any(|s| s.action == Action::End)
        && !scenario.steps.last().is_some_and(|s| s.expect.terminal())
}

/// The expected and the actual transcript of a run.
pub fn transcripts(scenario: &Scenario, observed: &[StepObservation]) -> (String, String) {
    let mut expected = String::new();
    let mut actual = String::new();
    let implicit = Step {
        action: Action::End,
        expect: Expect::default(),
    };
    let mut steps: Vec<(&Step, String)> = scenario
        .steps
        .iter()
        .map(|s| (s, s.action.describe()))
        .collect();
    if implicit_end(scenario) {
        steps.push((&implicit, "end (implicit, after the last step)".to_string()));
    }
    for (index, (step, title)) in steps.iter().enumerate() {
        let n = index + 1;
        let _ = writeln!(expected, "step {n}: {title}");
        let _ = writeln!(actual, "step {n}: {title}");
        let obs = &observed[index];
        render_stdout_expectation(&step.expect, &obs.stdout, &mut expected, &mut actual);
        let want = expected_outcome(step);
        let got = actual_outcome(step, &obs.observed, &want);
        let _ = writeln!(expected, "  outcome: {want}");
        let _ = writeln!(actual, "  outcome: {got}");
    }
    (expected, actual)
}

fn stdout_lines(text: &str, out: &mut String) {
    for line in text.split_inclusive('\n') {
        let _ = writeln!(out, "  stdout: {line:?}");
    }
}

fn render_stdout_expectation(
    expect: &Expect,
    stdout: &[u8],
    expected: &mut String,
    actual: &mut String,
) {
    let got = String::from_utf8_lossy(stdout);
    if let Some(pattern) = &expect.stdout_matches {
        let shown = format!("  stdout matches /{pattern}/\n");
        expected.push_str(&shown);
        let whole = format!("^(?:{pattern})$");
        if regex::Regex::new(&whole).is_ok_and(|re| re.is_match(&got)) {
            actual.push_str(&shown);
        } else {
            stdout_lines(&got, actual);
            if got.is_empty() {
                actual.push_str("  (no stdout)\n");
            }
        }
        return;
    }
    stdout_lines(expect.stdout.as_deref().unwrap_or(""), expected);
    stdout_lines(&got, actual);
}

fn expected_outcome(step: &Step) -> String {
    let e = &step.expect;
    if let Some(link) = &e.link_error {
        return match &link.message {
            Some(pattern) => format!("link error {} matching /{pattern}/", link.kind),
            None => format!("link error {}", link.kind),
        };
    }
    if let Some(crash) = &e.crash {
        return format!("crashed with {}", crash.signal);
    }
    if let Some(code) = e.exit {
        return format!("exited with status {code}");
    }
    if e.timeout == Some(true) {
        return "timed out".into();
    }
    match (&step.action, e.returns) {
        (Action::Call(call), Some(value)) => {
            format!("returned {}", normalize(value as u64, call.width))
        }
        (Action::Call(_), None) => "returned (any value)".into(),
        // `main` returns an int.
        (Action::Run { .. }, Some(value)) => format!("returned {}", normalize(value as u64, 32)),
        (Action::Run { .. }, None) => "returned (any value)".into(),
        _ => "ok".into(),
    }
}

fn normalize(value: u64, width: u32) -> i64 {
    if width == 32 {
        i64::from(value as u32 as i32)
    } else {
        value as i64
    }
}

fn actual_outcome(step: &Step, observed: &Observed, want: &str) -> String {
    match observed {
        Observed::Result(StepResult::Ok) => "ok".into(),
        Observed::Result(StepResult::Returned { value }) => {
            let width = match &step.action {
                Action::Call(call) => call.width,
                Action::Run { .. } => 32,
                _ => return format!("returned {value}"),
            };
            if step.expect.returns.is_none() && want == "returned (any value)" {
                return want.to_string();
            }
            format!("returned {}", normalize(*value, width))
        }
        Observed::Result(StepResult::LinkError { kind, message }) => {
            if let Some(link) = &step.expect.link_error
                && link.kind == *kind
                && link
                    .message
                    .as_ref()
                    .is_none_or(|p| regex::Regex::new(p).is_ok_and(|re| re.is_match(message)))
            {
                return want.to_string();
            }
            format!("link error {kind}: {message}")
        }
        Observed::Result(StepResult::MissingSymbol { name }) => {
            format!("no symbol `{name}` in the session")
        }
        Observed::Result(StepResult::MemoryGrew { first, last }) => {
            format!(
                "slab use grew from {first} bytes after the first swap to {last} after the last"
            )
        }
        Observed::Result(StepResult::NoModule { name }) => {
            format!("no module `{name}` (its load failed)")
        }
        Observed::Result(StepResult::Crashed { signal, .. }) => {
            format!("crashed with {}", signal_name(*signal))
        }
        Observed::Result(StepResult::Exited { status }) => format!("exited with status {status}"),
        Observed::Result(StepResult::TimedOut { .. }) => "timed out".into(),
        Observed::Result(StepResult::ExecutorFailed { message }) => {
            format!("executor failed: {message}")
        }
        Observed::Crashed(signal) => format!("crashed with {}", signal_name(*signal)),
        Observed::Exited(code) => format!("exited with status {code}"),
        Observed::TimedOut(_) => "timed out".into(),
        Observed::NotReached => "not reached".into(),
    }
}
