//! The scenario schema: one YAML file per scenario, documented field by
//! field in `conformance/README.md`.
//!
//! Parsing is strict (`deny_unknown_fields` everywhere) and every error
//! names the file, and for syntax and shape errors the line and column.
//! After parsing, [`Scenario::load`] checks what YAML cannot express: each
//! step has exactly one action, fixture and module names exist, regular
//! expressions compile, a crash, exit or timeout is expected only on the
//! last step.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::formats::{Format, Mode};

/// The default time one step may take before the trial is killed.
pub const DEFAULT_STEP_TIMEOUT_MS: u64 = 10_000;

/// Why a scenario file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// One scenario, as written in its YAML file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// One sentence: what the scenario proves.
    pub summary: String,
    /// Formats the scenario applies to (default: all).
    #[serde(default = "Format::all")]
    pub formats: Vec<Format>,
    /// Modes the scenario applies to (default: all).
    #[serde(default = "Mode::all")]
    pub modes: Vec<Mode>,
    /// How the session is set up (default: the linker's defaults).
    #[serde(default)]
    pub session: SessionSpec,
    /// Fixture name -> C source under `fixtures/`.
    pub fixtures: BTreeMap<String, FixtureSpec>,
    /// Archive name -> the fixtures it holds: static archives that `load`
    /// steps may name beside fixtures.
    #[serde(default)]
    pub archives: BTreeMap<String, ArchiveSpec>,
    /// Per format: section names (`.init_array`, `.ctors*`) or relocation
    /// type names (`R_X86_64_PLT32`) the built objects must contain.
    #[serde(default)]
    pub exercises: BTreeMap<Format, Vec<String>>,
    /// Trials that must not run, with the reason.
    #[serde(default)]
    pub skip: Vec<Condition>,
    /// Trials that are expected to fail, with the reason. One that passes
    /// is a failure.
    #[serde(default)]
    pub xfail: Vec<Condition>,
    pub steps: Vec<Step>,
}

/// A `skip` or `xfail` entry: a reason, optionally narrowed to some formats
/// and modes (default: all of the scenario's) and, for `xfail`, to some
/// implementations (default: every one).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    pub reason: String,
    #[serde(default)]
    pub formats: Option<Vec<Format>>,
    #[serde(default)]
    pub modes: Option<Vec<Mode>>,
    /// Implementation names (`solder`, `native`, `llvm-orc`).
    #[serde(default)]
    pub implementations: Option<Vec<String>>,
}

impl Condition {
    pub fn applies(&self, format: Format, mode: Mode) -> bool {
        self.formats.as_ref().is_none_or(|f| f.contains(&format))
            && self.modes.as_ref().is_none_or(|m| m.contains(&mode))
    }

    /// Whether the entry concerns implementation `name`.
    pub fn applies_to(&self, name: &str) -> bool {
        self.implementations
            .as_ref()
            .is_none_or(|names| names.iter().any(|n| n == name))
    }
}

/// The session options a scenario may set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SessionSpec {
    /// Bytes reserved for all JIT memory.
    #[serde(default)]
    pub slab_size: Option<u64>,
    #[serde(default)]
    pub placement: Option<PlacementSpec>,
    /// What an executor process does after a crash: `snapshot` (roll back
    /// to the checkpoint before the call) or `restart` (a fresh executor
    /// replays the modules). With a policy, steps may follow a crash or a
    /// timeout; the scenario must then run only in executor modes.
    #[serde(default)]
    pub recovery: Option<RecoverySpec>,
    /// Names defined at absolute addresses before the first step, as the
    /// host defines its symbols (`solder run --abs NAME=ADDRESS`); names
    /// as C spells them.
    #[serde(default)]
    pub absolute: BTreeMap<String, u64>,
}

/// A recovery policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecoverySpec {
    Snapshot,
    Restart,
}

/// Where the session's reservation goes: `auto`, `near-host`, `low` or
/// `{fixed: ADDRESS}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlacementSpec {
    Auto,
    NearHost,
    Low,
    /// `{fixed: 0x40000000}`: exactly there, or the first load fails.
    Fixed(u64),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FixedPlacement {
    fixed: u64,
}

impl Serialize for PlacementSpec {
    /// As the scenario writes it (the protocol carries the `session` field
    /// as written).
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            PlacementSpec::Auto => serializer.serialize_str("auto"),
            PlacementSpec::NearHost => serializer.serialize_str("near-host"),
            PlacementSpec::Low => serializer.serialize_str("low"),
            PlacementSpec::Fixed(address) => {
                use serde::ser::SerializeMap;
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("fixed", address)?;
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for PlacementSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PlacementSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("auto, near-host, low or {fixed: ADDRESS}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PlacementSpec, E> {
                match v {
                    "auto" => Ok(PlacementSpec::Auto),
                    "near-host" => Ok(PlacementSpec::NearHost),
                    "low" => Ok(PlacementSpec::Low),
                    other => Err(E::invalid_value(de::Unexpected::Str(other), &self)),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<PlacementSpec, A::Error> {
                let m = FixedPlacement::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(PlacementSpec::Fixed(m.fixed))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// A static archive of fixtures. A `load` step that names it adds it to
/// the session's archive search list (once): that load and later ones take
/// the members that define what they need.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveSpec {
    /// Fixture names, in archive order.
    pub members: Vec<String>,
    /// Every member is loaded (`--whole-archive`), not only needed ones.
    #[serde(default)]
    pub whole: bool,
    /// Whether the archive has a symbol index (default); without one,
    /// the linker reads what each member defines from the member.
    #[serde(default = "yes")]
    pub index: bool,
    /// Breaks the written archive one way, for malformed-input scenarios.
    #[serde(default)]
    pub damage: Option<ArchiveDamage>,
}

fn yes() -> bool {
    true
}

/// How an archive is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ArchiveDamage {
    /// The file ends in the middle of the last member.
    TruncateMember,
    /// The first member's size field is not a number.
    BadSize,
    /// The symbol index points past the end of the file.
    IndexOutside,
}

/// A fixture: a C source path relative to `fixtures/`, or a map with the
/// source and extra compiler flags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FixtureSpec {
    pub source: String,
    pub cflags: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FixtureMap {
    source: String,
    #[serde(default)]
    cflags: Vec<String>,
}

impl<'de> Deserialize<'de> for FixtureSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FixtureSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a source path or a map {source, cflags}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<FixtureSpec, E> {
                Ok(FixtureSpec {
                    source: v.to_string(),
                    cflags: Vec::new(),
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<FixtureSpec, A::Error> {
                let m = FixtureMap::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(FixtureSpec {
                    source: m.source,
                    cflags: m.cflags,
                })
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// One step of a scenario: an action and what it must do.
#[derive(Debug, Clone)]
pub struct Step {
    pub action: Action,
    pub expect: Expect,
}

/// What a step does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Links the fixtures as one new module named `module`.
    Load {
        fixtures: Vec<String>,
        module: String,
    },
    /// Links the fixtures as one new module named `module`, a program:
    /// its entry point `entry` is found among all of its global functions,
    /// hidden ones included, before its initializers run; then runs it as
    /// `main` (the step returns what it returns).
    Run {
        fixtures: Vec<String>,
        entry: String,
        module: String,
    },
    /// Looks `function` up and calls it.
    Call(Call),
    /// Hot-swaps module `module` for the fixtures `with`.
    /// `repeat` > 1 swaps that many times; the step then also fails when
    /// the slab holds more after the last swap than after the first.
    Replace {
        module: String,
        with: Vec<String>,
        repeat: u32,
    },
    /// Removes module `module`.
    Remove { module: String },
    /// Ends the session.
    End,
}

impl Action {
    /// How the step is shown in transcripts.
    pub fn describe(&self) -> String {
        match self {
            Action::Load { fixtures, module } => {
                format!("load [{}] as {module}", fixtures.join(", "))
            }
            Action::Run {
                fixtures,
                entry,
                module,
            } => format!("run [{}] from {entry} as {module}", fixtures.join(", ")),
            Action::Call(call) => {
                let args: Vec<String> = call.args.iter().map(i64::to_string).collect();
                format!("call {}({})", call.function, args.join(", "))
            }
            Action::Replace {
                module,
                with,
                repeat,
            } => {
                let times = if *repeat > 1 {
                    format!(" {repeat} times")
                } else {
                    String::new()
                };
                format!("replace {module} with [{}]{times}", with.join(", "))
            }
            Action::Remove { module } => format!("remove {module}"),
            Action::End => "end".to_string(),
        }
    }
}

/// A call: `call: name` or `call: {function, args, timeout_ms, width}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Call {
    pub function: String,
    /// Integer arguments (at most six), passed in SysV registers.
    #[serde(default)]
    pub args: Vec<i64>,
    /// Kill the trial when the call takes longer (default 10 s).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Bits of the return value compared (32: C `int`, 64: `long`).
    #[serde(default = "default_width")]
    pub width: u32,
}

fn default_width() -> u32 {
    32
}

struct CallSpec(Call);

impl<'de> Deserialize<'de> for CallSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CallSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a function name or a map {function, args, timeout_ms, width}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<CallSpec, E> {
                Ok(CallSpec(Call {
                    function: v.to_string(),
                    args: Vec::new(),
                    timeout_ms: None,
                    width: default_width(),
                }))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<CallSpec, A::Error> {
                Call::deserialize(de::value::MapAccessDeserializer::new(map)).map(CallSpec)
            }
        }
        deserializer.deserialize_any(V)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplaceSpec {
    module: String,
    with: Vec<String>,
    #[serde(default = "one")]
    repeat: u32,
}

fn one() -> u32 {
    1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoveSpec {
    module: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EndSpec {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StepRaw {
    #[serde(default)]
    load: Option<Vec<String>>,
    #[serde(default, rename = "as")]
    as_name: Option<String>,
    #[serde(default)]
    run: Option<Vec<String>>,
    #[serde(default)]
    entry: Option<String>,
    #[serde(default)]
    call: Option<CallSpec>,
    #[serde(default)]
    replace: Option<ReplaceSpec>,
    #[serde(default)]
    remove: Option<RemoveSpec>,
    #[serde(default)]
    end: Option<EndSpec>,
    #[serde(default)]
    expect: Expect,
}

impl<'de> Deserialize<'de> for Step {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = StepRaw::deserialize(deserializer)?;
        let mut actions = Vec::new();
        if let Some(fixtures) = raw.load {
            if fixtures.is_empty() {
                return Err(de::Error::custom("`load` needs at least one fixture"));
            }
            let module = raw.as_name.clone().unwrap_or_else(|| fixtures.join("+"));
            actions.push(Action::Load { fixtures, module });
        } else if let Some(fixtures) = raw.run {
            if fixtures.is_empty() {
                return Err(de::Error::custom("`run` needs at least one fixture"));
            }
            let module = raw.as_name.clone().unwrap_or_else(|| fixtures.join("+"));
            let entry = raw.entry.clone().unwrap_or_else(|| "main".to_string());
            actions.push(Action::Run {
                fixtures,
                entry,
                module,
            });
        } else if raw.as_name.is_some() {
            return Err(de::Error::custom(
                "`as` names the module of a `load` or `run` step",
            ));
        }
        if raw.entry.is_some() && !matches!(actions.first(), Some(Action::Run { .. })) {
            return Err(de::Error::custom(
                "`entry` names the entry point of a `run` step",
            ));
        }
        if let Some(CallSpec(call)) = raw.call {
            actions.push(Action::Call(call));
        }
        if let Some(r) = raw.replace {
            if r.repeat == 0 {
                return Err(de::Error::custom("`repeat` is at least 1"));
            }
            actions.push(Action::Replace {
                module: r.module,
                with: r.with,
                repeat: r.repeat,
            });
        }
        if let Some(r) = raw.remove {
            actions.push(Action::Remove { module: r.module });
        }
        if raw.end.is_some() {
            actions.push(Action::End);
        }
        if actions.len() != 1 {
            return Err(de::Error::custom(format!(
                "a step has exactly one of load, run, call, replace, remove, end (found {})",
                actions.len()
            )));
        }
        Ok(Step {
            action: actions.pop().expect("one action"),
            expect: raw.expect,
        })
    }
}

/// What a step must do. With neither `stdout` nor `stdout_matches`, the
/// step must print nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Exactly what the step prints on stdout.
    #[serde(default)]
    pub stdout: Option<String>,
    /// A regular expression the whole stdout must match.
    #[serde(default)]
    pub stdout_matches: Option<String>,
    /// The call's return value.
    #[serde(default)]
    pub returns: Option<i64>,
    /// The step fails to link.
    #[serde(default)]
    pub link_error: Option<LinkErrorExpect>,
    /// The step kills the process with a signal.
    #[serde(default)]
    pub crash: Option<CrashExpect>,
    /// The step exits the process with this status.
    #[serde(default)]
    pub exit: Option<i32>,
    /// The step does not finish within its timeout.
    #[serde(default)]
    pub timeout: Option<bool>,
}

/// An expected link error.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkErrorExpect {
    /// A kind of the portable vocabulary
    /// ([`crate::protocol::LINK_ERROR_KINDS`]): `undefined-symbol`,
    /// `duplicate-symbol`, `out-of-range`, ...
    pub kind: String,
    /// A regular expression the error message must contain a match of.
    #[serde(default)]
    pub message: Option<String>,
    /// Implementation name -> the pattern its messages match instead of
    /// `message` (messages are each implementation's own; kinds are
    /// shared).
    #[serde(default)]
    pub messages: BTreeMap<String, String>,
}

impl LinkErrorExpect {
    /// The message pattern for implementation `name`, if any.
    pub fn message_for(&self, name: &str) -> Option<&str> {
        self.messages
            .get(name)
            .or(self.message.as_ref())
            .map(String::as_str)
    }
}

/// An expected crash.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrashExpect {
    /// `SIGSEGV`, `SIGBUS`, `SIGILL`, `SIGFPE`, `SIGABRT`, `SIGTRAP`.
    pub signal: String,
    /// The JIT'd functions the crash report's backtrace names first, from
    /// the crashing one outwards (as C spells them; host frames such as
    /// libc's `abort` between them are not listed).
    #[serde(default)]
    pub backtrace: Option<Vec<String>>,
}

/// Signal names a scenario may expect, with their numbers on the
/// executor's system (x86-64 Linux; literal so the schema stays portable).
pub const SIGNALS: [(&str, i32); 7] = [
    ("SIGSEGV", 11),
    ("SIGBUS", 7),
    ("SIGILL", 4),
    ("SIGFPE", 8),
    ("SIGABRT", 6),
    ("SIGTRAP", 5),
    ("SIGKILL", 9),
];

/// The name of a signal number (`signal 7` for ones not in [`SIGNALS`]).
pub fn signal_name(signal: i32) -> String {
    SIGNALS
        .iter()
        .find(|(_, n)| *n == signal)
        .map_or_else(|| format!("signal {signal}"), |(name, _)| name.to_string())
}

impl Expect {
    /// Whether the step ends the process (crash, exit or timeout).
    pub fn terminal(&self) -> bool {
        self.crash.is_some() || self.exit.is_some() || self.timeout == Some(true)
    }
}

/// The deepest YAML flow collections (`[...]`, `{...}`) a scenario may
/// nest. The YAML scanner spends time proportional to the nesting on every
/// token, so deep nesting is quadratic (in the fuzz build, 200 KB of
/// 100 000 nested brackets took 38 s to refuse); scenarios nest two or
/// three.
const MAX_FLOW_NESTING: usize = 64;

/// Where (1-based line and column) brackets first nest deeper than
/// [`MAX_FLOW_NESTING`], if they do. Every bracket counts, even in a quoted
/// string or a comment: an overestimate, which only a string of more than
/// 64 unclosed brackets could notice.
fn too_deep(text: &str) -> Option<(usize, usize)> {
    let mut depth = 0usize;
    let (mut line, mut line_start) = (1, 0);
    for (at, c) in text.char_indices() {
        match c {
            '[' | '{' => {
                depth += 1;
                if depth > MAX_FLOW_NESTING {
                    return Some((line, text[line_start..at].chars().count() + 1));
                }
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            '\n' => (line, line_start) = (line + 1, at + 1),
            _ => {}
        }
    }
    None
}

impl Scenario {
    /// Reads, parses and checks one scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Scenario::parse(path, &text)
    }

    /// Parses and checks scenario text; `path` is only used in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Scenario, ScenarioError> {
        if let Some((line, column)) = too_deep(text) {
            return Err(ScenarioError::Syntax {
                path: path.to_path_buf(),
                line,
                column,
                message: format!(
                    "brackets ([ or {{) nested more than {MAX_FLOW_NESTING} deep; no scenario \
                     needs that many"
                ),
            });
        }
        let scenario: Scenario = serde_yaml::from_str(text).map_err(|err| {
            let (line, column) = err.location().map_or((0, 0), |l| (l.line(), l.column()));
            ScenarioError::Syntax {
                path: path.to_path_buf(),
                line,
                column,
                message: err.to_string(),
            }
        })?;
        scenario.check().map_err(|message| ScenarioError::Invalid {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(scenario)
    }

    fn check(&self) -> Result<(), String> {
        if self.steps.is_empty() {
            return Err("a scenario needs at least one step".into());
        }
        if self.session.recovery.is_some() && self.modes.contains(&Mode::Inproc) {
            return Err(
                "`session.recovery` needs an executor process: list `modes` without inproc (e.g. [pipe, tcp, shm])"
                    .into(),
            );
        }
        for (name, fixture) in &self.fixtures {
            if fixture.source.starts_with('/') || fixture.source.contains("..") {
                return Err(format!(
                    "fixture `{name}`: `{}` must be a relative path under fixtures/",
                    fixture.source
                ));
            }
        }
        for (name, archive) in &self.archives {
            if self.fixtures.contains_key(name) {
                return Err(format!("`{name}` is both a fixture and an archive"));
            }
            if archive.members.is_empty() {
                return Err(format!("archive `{name}` needs at least one member"));
            }
            if let Some(member) = archive
                .members
                .iter()
                .find(|m| !self.fixtures.contains_key(*m))
            {
                return Err(format!("archive `{name}`: no fixture named `{member}`"));
            }
        }
        for condition in self.skip.iter().chain(&self.xfail) {
            if condition.reason.trim().is_empty() {
                return Err("every skip and xfail entry needs a reason".into());
            }
        }
        let mut modules: Vec<&str> = Vec::new();
        let last = self.steps.len() - 1;
        for (index, step) in self.steps.iter().enumerate() {
            self.check_action(index + 1, step, &mut modules)?;
            self.check_expect(index, index == last, step)?;
        }
        Ok(())
    }

    /// Step `n`'s action: known fixtures and modules, call arguments.
    /// `modules` are the names loaded so far.
    fn check_action<'s>(
        &self,
        n: usize,
        step: &'s Step,
        modules: &mut Vec<&'s str>,
    ) -> Result<(), String> {
        let fixtures_known = |names: &[String]| -> Result<(), String> {
            for name in names {
                if !self.fixtures.contains_key(name) {
                    return Err(format!("step {n}: no fixture named `{name}`"));
                }
            }
            Ok(())
        };
        match &step.action {
            Action::Load { fixtures, module }
            | Action::Run {
                fixtures, module, ..
            } => {
                for name in fixtures {
                    if !self.fixtures.contains_key(name) && !self.archives.contains_key(name) {
                        return Err(format!("step {n}: no fixture or archive named `{name}`"));
                    }
                }
                if step.expect.link_error.is_none() {
                    modules.push(module);
                }
            }
            Action::Replace { module, with, .. } => {
                fixtures_known(with)?;
                if !modules.contains(&module.as_str()) {
                    return Err(format!(
                        "step {n}: no module named `{module}` loaded before"
                    ));
                }
            }
            Action::Remove { module } => {
                if !modules.contains(&module.as_str()) {
                    return Err(format!(
                        "step {n}: no module named `{module}` loaded before"
                    ));
                }
            }
            Action::Call(call) => {
                if call.args.len() > 6 {
                    return Err(format!("step {n}: at most six arguments"));
                }
                if call.width != 32 && call.width != 64 {
                    return Err(format!("step {n}: `width` is 32 or 64"));
                }
                if let Some(value) = step.expect.returns
                    && call.width == 32
                    && i32::try_from(value).is_err()
                    && u32::try_from(value).is_err()
                {
                    return Err(format!(
                        "step {n}: {value} does not fit a 32-bit return value (set `width: 64`)"
                    ));
                }
            }
            Action::End => {}
        }
        Ok(())
    }

    /// Step `index`'s expectation: at most one outcome, terminal outcomes
    /// last (unless a recovery policy survives them), valid patterns and
    /// signal names.
    fn check_expect(&self, index: usize, is_last: bool, step: &Step) -> Result<(), String> {
        let n = index + 1;
        let e = &step.expect;
        if e.returns.is_some() && !matches!(step.action, Action::Call(_) | Action::Run { .. }) {
            return Err(format!("step {n}: `returns` needs a `call` or `run` step"));
        }
        if e.link_error.is_some() && matches!(step.action, Action::Call(_) | Action::End) {
            return Err(format!(
                "step {n}: `link_error` needs a load, run, replace or remove step"
            ));
        }
        let outcomes = [
            e.returns.is_some(),
            e.link_error.is_some(),
            e.crash.is_some(),
            e.exit.is_some(),
            e.timeout == Some(true),
        ];
        if outcomes.iter().filter(|&&b| b).count() > 1 {
            return Err(format!(
                "step {n}: expect at most one of returns, link_error, crash, exit, timeout"
            ));
        }
        let survivable =
            self.session.recovery.is_some() && (e.crash.is_some() || e.timeout == Some(true));
        if e.terminal() && !is_last && !survivable {
            return Err(format!(
                "step {n}: a crash, exit or timeout ends the trial, so it must be the last step (unless `session.recovery` lets the session continue after a crash or timeout)"
            ));
        }
        if e.stdout.is_some() && e.stdout_matches.is_some() {
            return Err(format!(
                "step {n}: use `stdout` or `stdout_matches`, not both"
            ));
        }
        if let Some(pattern) = &e.stdout_matches {
            regex::Regex::new(pattern).map_err(|err| format!("step {n}: stdout_matches: {err}"))?;
        }
        if let Some(link) = &e.link_error
            && !crate::protocol::is_link_error_kind(&link.kind)
        {
            let kinds: Vec<&str> = crate::protocol::LINK_ERROR_KINDS
                .iter()
                .map(|(kind, _)| *kind)
                .collect();
            return Err(format!(
                "step {n}: link_error.kind `{}` is not one of {}",
                link.kind,
                kinds.join(", ")
            ));
        }
        if let Some(link) = &e.link_error {
            for pattern in link.message.iter().chain(link.messages.values()) {
                regex::Regex::new(pattern)
                    .map_err(|err| format!("step {n}: link_error.message: {err}"))?;
            }
        }
        if let Some(crash) = &e.crash
            && !SIGNALS.iter().any(|(name, _)| *name == crash.signal)
        {
            let names: Vec<&str> = SIGNALS.iter().map(|(name, _)| *name).collect();
            return Err(format!(
                "step {n}: unknown signal `{}` (one of {})",
                crash.signal,
                names.join(", ")
            ));
        }
        Ok(())
    }

    /// The per-step timeout in milliseconds.
    pub fn step_timeout_ms(step: &Step) -> u64 {
        match &step.action {
            Action::Call(call) => call.timeout_ms.unwrap_or(DEFAULT_STEP_TIMEOUT_MS),
            _ => DEFAULT_STEP_TIMEOUT_MS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brackets nested past the limit are refused where they pass it,
    /// before the YAML scanner (quadratic in the nesting) sees them.
    #[test]
    fn deep_flow_nesting_is_refused_before_parsing() {
        let nested = |n: usize| format!("summary: x\nsteps: {}{}\n", "[".repeat(n), "]".repeat(n));
        let path = Path::new("deep.yaml");
        match Scenario::parse(path, &nested(MAX_FLOW_NESTING + 1)) {
            Err(ScenarioError::Syntax {
                line,
                column,
                message,
                ..
            }) => {
                assert_eq!((line, column), (2, 8 + MAX_FLOW_NESTING), "{message}");
                assert!(message.contains("nested more than 64 deep"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        // At the limit the YAML parser decides (a list of lists is no step).
        match Scenario::parse(path, &nested(MAX_FLOW_NESTING)) {
            Err(ScenarioError::Syntax { message, .. }) => {
                assert!(!message.contains("nested more than"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        // Brackets that close do not add up.
        let flat = format!("summary: x\nsteps: {}\n", "[]".repeat(1000));
        assert!(!format!("{:?}", Scenario::parse(path, &flat)).contains("nested more than"));
    }

    /// Every input the `scenario` fuzz target found a problem with
    /// (`fuzz/regressions/scenario/`, see docs/fuzzing.md) parses to a clean
    /// `Ok` or `Err`: no panic.
    #[test]
    fn fuzz_regressions_parse_cleanly() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions/scenario");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .expect("fuzz/regressions/scenario/")
            .map(|e| e.expect("list regressions").path())
            .collect();
        files.sort();
        assert!(
            !files.is_empty(),
            "no scenario regressions in {}",
            dir.display()
        );
        let mut panicked = Vec::new();
        for path in &files {
            let bytes = std::fs::read(path).expect("read a regression");
            let Ok(text) = std::str::from_utf8(&bytes) else {
                continue; // the target only parses UTF-8
            };
            if std::panic::catch_unwind(|| Scenario::parse(path, text)).is_err() {
                panicked.push(format!(
                    "{}: panicked; replay: (cd fuzz && cargo +nightly fuzz run scenario \
                     regressions/scenario/{})",
                    path.display(),
                    path.file_name().unwrap_or_default().to_string_lossy()
                ));
            }
        }
        assert!(
            panicked.is_empty(),
            "{}\nrerun: cargo test -p solder-conformance --lib schema::tests::fuzz_regressions_parse_cleanly",
            panicked.join("\n")
        );
    }

    #[test]
    fn parses_the_design_sketch() {
        let text = r#"
summary: Only new initializers run.
fixtures:
  first: initializers/counter_a.c
  second: { source: initializers/counter_b.c, cflags: [-fno-pic] }
exercises:
  elf: [".init_array"]
steps:
  - load: [first]
    expect: { stdout: "init a\n" }
  - call: counter
    expect: { returns: 1 }
  - call: { function: add, args: [1, -2], timeout_ms: 100 }
  - load: [second]
    as: b
  - remove: { module: b }
  - end: {}
"#;
        let s = Scenario::parse(Path::new("x.yaml"), text).unwrap();
        assert_eq!(s.formats, Format::all());
        assert_eq!(s.steps.len(), 6);
        assert_eq!(s.fixtures["second"].cflags, vec!["-fno-pic"]);
        assert!(matches!(&s.steps[2].action, Action::Call(c) if c.args == vec![1, -2]));
    }

    #[test]
    fn unknown_fields_give_line_and_column() {
        let text = "summary: x\nfixtures: {}\nsteps:\n  - end: {}\n    expekt: {}\n";
        let err = Scenario::parse(Path::new("x.yaml"), text).unwrap_err();
        let message = err.to_string();
        assert!(message.starts_with("x.yaml:"), "{message}");
        assert!(
            matches!(err, ScenarioError::Syntax { line, .. } if line >= 4),
            "{message}"
        );
        assert!(message.contains("expekt"), "{message}");
    }

    #[test]
    fn two_actions_in_one_step_are_refused() {
        let text = "summary: x\nfixtures: {a: a.c}\nsteps:\n  - load: [a]\n    end: {}\n";
        let err = Scenario::parse(Path::new("x.yaml"), text).unwrap_err();
        assert!(err.to_string().contains("exactly one"), "{err}");
    }

    #[test]
    fn terminal_outcome_must_be_last() {
        let text = "summary: x\nfixtures: {a: a.c}\nsteps:\n  - load: [a]\n  - call: f\n    expect: {crash: {signal: SIGSEGV}}\n  - end: {}\n";
        let err = Scenario::parse(Path::new("x.yaml"), text).unwrap_err();
        assert!(err.to_string().contains("last step"), "{err}");
    }
}
