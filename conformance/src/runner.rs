//! The runner's side of a trial: builds and verifies the fixtures, starts
//! the implementation under test ([`crate::implementation`]), sends it the
//! scenario's steps as protocol requests (killing it when a step outlives
//! its timeout), attributes its captured stdout to steps, and compares a
//! transcript of the expected steps against the actual one.
//!
//! The transcript has one block per step: what the step does, its stdout
//! line by line, and its outcome (`ok`, `returned 3`, `link error
//! undefined-symbol ...`, `crashed with SIGSEGV`, `exited with status 3`,
//! `timed out`, `not reached`). When an expectation is a pattern and the
//! actual value matches it, the actual transcript shows the pattern, so the
//! unified diff shows exactly what differs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use crate::catalog::{TrialSpec, rerun_command_for};
use crate::fixtures::Builder;
use crate::formats::Mode;
use crate::implementation::{Answer, ImplementationSpec, file_size};
pub use crate::prepare::TrialOutcome;
use crate::prepare::{Preparer, Unprepared};
use crate::protocol::{Capability, Hello, Reply, Request, inputs, requirements};
use crate::schema::{Action, Expect, Scenario, Step, signal_name};

/// What happened to one step, as the runner saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    Result(Reply),
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
    /// After a crash: the JIT'd functions its report's backtrace names,
    /// crashing one first.
    pub backtrace: Option<Vec<String>>,
}

/// Runs trials against one implementation; shared by all harness threads.
#[derive(Debug)]
pub struct Harness {
    preparer: Preparer,
    runs: PathBuf,
    spec: Result<ImplementationSpec, String>,
    /// The implementation and its hello (asked at the first trial), or
    /// why it cannot run.
    implementation: OnceLock<Result<(ImplementationSpec, Hello), String>>,
}

impl Harness {
    /// `strict` (`SOLDER_STRICT=1`) turns skips into failures.
    pub fn new(
        builder: Builder,
        runs: PathBuf,
        strict: bool,
        implementation: Result<ImplementationSpec, String>,
    ) -> Self {
        Harness {
            preparer: Preparer::new(builder, strict),
            runs,
            spec: implementation,
            implementation: OnceLock::new(),
        }
    }

    /// The implementation and its hello, asked once; its name and version
    /// are printed (`conformance: implementation NAME VERSION`) for
    /// `cargo xtask conformance`'s report.
    fn implementation(&self) -> &Result<(ImplementationSpec, Hello), String> {
        self.implementation.get_or_init(|| {
            let spec = self.spec.clone()?;
            let hello = spec.hello()?;
            println!(
                "conformance: implementation {} {} (protocol {})",
                hello.name, hello.version, hello.protocol
            );
            Ok((spec, hello))
        })
    }

    /// The harness for this workspace, reading `SOLDER_STRICT` and
    /// `SOLDER_CONFORMANCE_IMPL`.
    pub fn for_workspace() -> Self {
        let root = crate::fixtures::workspace_root();
        let target = crate::fixtures::default_target_dir(&root);
        Harness::new(
            Builder::new(&root, &target),
            target.join("conformance").join("runs"),
            Preparer::strict_from_env(),
            ImplementationSpec::from_env(),
        )
    }

    /// The implementation's name (`solder` when it is unavailable too).
    pub fn implementation_name(&self) -> Option<&str> {
        self.spec.as_ref().ok().map(|s| s.name.as_str())
    }

    /// Runs one trial to its outcome.
    pub fn run_trial(&self, trial: &TrialSpec) -> TrialOutcome {
        let outcome = match self.run_unchecked(trial) {
            // Solder runs every scenario: what it lacks is a failure.
            TrialOutcome::Unsupported(why)
                if self.implementation_name().is_none_or(|n| n == "solder") =>
            {
                TrialOutcome::Failed(format!("{why}\nrerun: {}", self.rerun(&trial.name)))
            }
            other => other,
        };
        self.preparer.finish(outcome, &self.rerun(&trial.name))
    }

    fn rerun(&self, trial: &str) -> String {
        match &self.spec {
            Ok(spec) => rerun_command_for(spec, trial),
            Err(_) => crate::catalog::rerun_command(trial),
        }
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
                self.rerun(&trial.name)
            ))
        };
        let (spec, hello) = match self.implementation() {
            Ok(found) => found,
            Err(why) => return fail(format!("the implementation cannot run: {why}")),
        };
        if let Some(missing) = unsupported(hello, trial) {
            return TrialOutcome::Unsupported(missing);
        }
        let objects = match self.preparer.prepare(scenario, trial.format, &hello.cflags) {
            Ok(objects) => objects,
            Err(Unprepared::Skipped(reason)) => return TrialOutcome::Skipped(reason),
            Err(Unprepared::Failed(what))
                if !hello.cflags.is_empty() && what.starts_with("exercises") =>
            {
                return TrialOutcome::Unsupported(format!(
                    "fixtures built with the implementation's flags ({}) do not exercise what \
                     the scenario is about: {what}",
                    hello.cflags.join(" ")
                ));
            }
            Err(Unprepared::Failed(what)) => return fail(what),
        };
        let run = match self.run_steps(spec, trial, &objects) {
            Ok(run) => run,
            Err(err) => return fail(format!("harness error: {err}")),
        };
        let (expected, actual) = transcripts(scenario, &run.steps, &spec.name);
        let xfail = scenario
            .xfail
            .iter()
            .find(|c| c.applies(trial.format, trial.mode) && c.applies_to(&spec.name));
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
                    let _ = write!(
                        report,
                        "{} stderr:\n{}\n",
                        spec.name,
                        truncate(&run.stderr, 4000)
                    );
                }
                let _ = write!(report, "files: {}", run.dir.display());
                fail(report)
            }
        }
    }

    /// Starts the implementation and sends it every step; what it did.
    fn run_steps(
        &self,
        spec: &ImplementationSpec,
        trial: &TrialSpec,
        objects: &BTreeMap<String, PathBuf>,
    ) -> Result<StepsRun, String> {
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
        let read_stderr = || {
            String::from_utf8_lossy(&std::fs::read(&stderr_path).unwrap_or_default()).into_owned()
        };
        let mut running = spec
            .start(Stdio::from(stdout), Stdio::from(stderr))
            .map_err(|e| format!("{e}\n{} stderr:\n{}", spec.name, read_stderr()))?;
        let scenario = &trial.scenario;
        let start = Request::Start {
            trial: trial.name.clone(),
            format: trial.format,
            mode: trial.mode,
            session: scenario.session.clone(),
        };
        match running.exchange(&start, Duration::from_secs(30))? {
            Answer::Reply(Reply::Ok) => {}
            other => return Err(format!("`start` was answered with {other:?}")),
        }
        let mut steps: Vec<&Step> = scenario.steps.iter().collect();
        let implicit = Step {
            action: Action::End,
            expect: Expect::default(),
        };
        if implicit_end(scenario) {
            steps.push(&implicit);
        }
        let executor_process = trial.mode != Mode::Inproc;
        let mut observed = Vec::with_capacity(steps.len());
        let mut gone = false;
        for step in &steps {
            if gone {
                observed.push(StepObservation {
                    observed: Observed::NotReached,
                    stdout: Vec::new(),
                    backtrace: None,
                });
                continue;
            }
            let request = request_of(step, scenario, objects)?;
            let timeout = Duration::from_millis(Scenario::step_timeout_ms(step));
            // An executor process enforces a call's timeout itself and
            // reports it; the watchdog only catches what hangs beyond that.
            let watchdog = if executor_process {
                timeout + Duration::from_secs(10)
            } else {
                timeout
            };
            let before = file_size(&stdout_path);
            let answer = running.exchange(&request, watchdog)?;
            let after = file_size(&stdout_path);
            let captured = std::fs::read(&stdout_path).unwrap_or_default();
            let stdout = slice(&captured, before, after);
            // The implementation is gone after a crash, exit or timeout it
            // did not survive (an executor process reports the ones it did).
            gone = !matches!(answer, Answer::Reply(_));
            let backtrace = match &answer {
                Answer::Reply(Reply::Crashed { report, .. }) => {
                    backtrace_names(report, trial.format)
                }
                Answer::Ended(status) if status.signal().is_some() => {
                    backtrace_names(&read_stderr(), trial.format)
                }
                _ => None,
            };
            let outcome = match answer {
                Answer::Reply(reply) => observe(reply),
                // `end` may be answered by exiting with status 0.
                Answer::Ended(status) if step.action == Action::End && status.code() == Some(0) => {
                    Observed::Result(Reply::Ok)
                }
                Answer::Ended(status) => match status.signal() {
                    Some(signal) => Observed::Crashed(signal),
                    None => Observed::Exited(status.code().unwrap_or(-1)),
                },
                Answer::TimedOut => Observed::TimedOut(timeout.as_millis() as u64),
            };
            observed.push(StepObservation {
                observed: outcome,
                stdout,
                backtrace,
            });
        }
        running.finish(Duration::from_secs(10));
        let stderr = read_stderr();
        Ok(StepsRun {
            steps: observed,
            stderr,
            dir,
        })
    }
}

/// Why `hello`'s implementation cannot run `trial`: a format, mode or
/// capability it lacks, named.
fn unsupported(hello: &Hello, trial: &TrialSpec) -> Option<String> {
    if !hello.formats.contains(&trial.format) {
        return Some(format!(
            "{} does not load {} objects",
            hello.name, trial.format
        ));
    }
    if !hello.modes.contains(&trial.mode) {
        return Some(format!("{} has no {} mode", hello.name, trial.mode));
    }
    let missing: Vec<&str> = requirements(&trial.scenario)
        .into_iter()
        .filter(|c| !hello.capabilities.contains(c))
        .map(Capability::name)
        .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "{} lacks the capability the scenario needs: {}",
            hello.name,
            missing.join(", ")
        )
    })
}

/// The protocol request for `step`.
fn request_of(
    step: &Step,
    scenario: &Scenario,
    built: &BTreeMap<String, PathBuf>,
) -> Result<Request, String> {
    Ok(match &step.action {
        Action::Load { fixtures, module } => {
            let (objects, archives) = inputs(fixtures, &scenario.archives, built)?;
            Request::Load {
                module: module.clone(),
                objects,
                archives,
            }
        }
        Action::Run {
            fixtures,
            entry,
            module,
        } => {
            let (objects, archives) = inputs(fixtures, &scenario.archives, built)?;
            Request::Run {
                module: module.clone(),
                objects,
                archives,
                entry: entry.clone(),
            }
        }
        Action::Call(call) => Request::Call {
            symbol: call.function.clone(),
            args: call.args.clone(),
            timeout_ms: call.timeout_ms,
        },
        Action::Replace {
            module,
            with,
            repeat,
        } => Request::Replace {
            module: module.clone(),
            objects: inputs(with, &scenario.archives, built)?.0,
            repeat: *repeat,
        },
        Action::Remove { module } => Request::Remove {
            module: module.clone(),
        },
        Action::End => Request::End,
    })
}

/// The JIT'd functions of the last `backtrace: a+0x… <- b+0x… <- …` in
/// `text` (a crash report), as C spells them: host frames (addresses,
/// `(host frames)`) and source positions left out.
pub fn backtrace_names(text: &str, format: crate::formats::Format) -> Option<Vec<String>> {
    let start = text.rfind("backtrace: ")? + "backtrace: ".len();
    let line = text[start..].lines().next().unwrap_or("");
    let line = line.split(" during ").next().unwrap_or(line);
    let names = line
        .split(" <- ")
        .filter_map(|frame| {
            let frame = frame.trim();
            let (name, _) = frame.split_once('+')?;
            if name.starts_with("0x") || name.starts_with('(') || name.is_empty() {
                return None;
            }
            let name = match format {
                crate::formats::Format::Macho => name.strip_prefix('_').unwrap_or(name),
                _ => name,
            };
            Some(name.to_string())
        })
        .collect();
    Some(names)
}

/// An executor's crash, exit or timeout reads like an in-process one, so
/// one transcript fits every mode.
fn observe(reply: Reply) -> Observed {
    match reply {
        Reply::Crashed { signal, .. } => Observed::Crashed(signal),
        Reply::Exited { status } => Observed::Exited(status),
        Reply::TimedOut { ms } => Observed::TimedOut(ms),
        other => Observed::Result(other),
    }
}

struct StepsRun {
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

/// Whether the scenario ends with an implicit `end` (no `end` step, and
/// the last step does not end the process).
fn implicit_end(scenario: &Scenario) -> bool {
    !scenario.steps.iter().any(|s| s.action == Action::End)
        && !scenario.steps.last().is_some_and(|s| s.expect.terminal())
}

/// The expected and the actual transcript of a run.
pub fn transcripts(
    scenario: &Scenario,
    observed: &[StepObservation],
    implementation: &str,
) -> (String, String) {
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
        let want = expected_outcome(step, implementation);
        let mut got = actual_outcome(step, &obs.observed, &want, implementation);
        // A backtrace is compared on the frames the scenario names.
        if let (Some(crash), Observed::Crashed(_)) = (&step.expect.crash, &obs.observed)
            && let Some(names) = &crash.backtrace
        {
            let seen = obs.backtrace.clone().unwrap_or_default();
            let shown = &seen[..seen.len().min(names.len())];
            got = if shown.is_empty() {
                format!("{got}, no backtrace")
            } else {
                format!("{got}, backtrace: {}", shown.join(" <- "))
            };
        }
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

fn expected_outcome(step: &Step, implementation: &str) -> String {
    let e = &step.expect;
    if let Some(link) = &e.link_error {
        return match link.message_for(implementation) {
            Some(pattern) => format!("link error {} matching /{pattern}/", link.kind),
            None => format!("link error {}", link.kind),
        };
    }
    if let Some(crash) = &e.crash {
        return match &crash.backtrace {
            Some(names) => format!(
                "crashed with {}, backtrace: {}",
                crash.signal,
                names.join(" <- ")
            ),
            None => format!("crashed with {}", crash.signal),
        };
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

fn actual_outcome(step: &Step, observed: &Observed, want: &str, implementation: &str) -> String {
    match observed {
        Observed::Result(Reply::Ok) => "ok".into(),
        Observed::Result(Reply::Returned { value }) => {
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
        Observed::Result(Reply::LinkError { kind, message }) => {
            if let Some(link) = &step.expect.link_error
                && link.kind == *kind
                && link
                    .message_for(implementation)
                    .is_none_or(|p| regex::Regex::new(p).is_ok_and(|re| re.is_match(message)))
            {
                return want.to_string();
            }
            format!("link error {kind}: {message}")
        }
        Observed::Result(Reply::MissingSymbol { name }) => {
            format!("no symbol `{name}` in the session")
        }
        Observed::Result(Reply::MemoryGrew { first, last }) => {
            format!(
                "slab use grew from {first} bytes after the first swap to {last} after the last"
            )
        }
        Observed::Result(Reply::NoModule { name }) => {
            format!("no module `{name}` (its load failed)")
        }
        Observed::Result(Reply::Crashed { signal, .. }) => {
            format!("crashed with {}", signal_name(*signal))
        }
        Observed::Result(Reply::Exited { status }) => format!("exited with status {status}"),
        Observed::Result(Reply::TimedOut { .. }) => "timed out".into(),
        Observed::Result(Reply::Failed { message }) => {
            format!("executor failed: {message}")
        }
        Observed::Crashed(signal) => format!("crashed with {}", signal_name(*signal)),
        Observed::Exited(code) => format!("exited with status {code}"),
        Observed::TimedOut(_) => "timed out".into(),
        Observed::NotReached => "not reached".into(),
    }
}
