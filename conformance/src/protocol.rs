//! The implementation interface: what the scenario runner says to an
//! *implementation under test* (a JIT linker wrapped in a small process)
//! and what it answers. JSON lines on two dedicated descriptors; the prose
//! is `conformance/IMPLEMENTING.md`, and this file is its schema.
//!
//! Also the portable vocabulary the suite speaks to every implementation:
//! link-error kinds ([`LINK_ERROR_KINDS`]) and capabilities
//! ([`Capability`]), with what each scenario needs ([`requirements`]).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::formats::{Format, Mode};
use crate::schema::{Action, ArchiveSpec, Scenario, SessionSpec};

/// The protocol's version; an implementation says which it speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// The environment variables that name the descriptors: requests are read
/// from the first, replies written to the second.
pub const REQUESTS_FD_ENV: &str = "SOLDER_CONFORMANCE_REQUESTS_FD";
pub const REPLIES_FD_ENV: &str = "SOLDER_CONFORMANCE_REPLIES_FD";

/// The link-error kinds a scenario may expect, whatever the
/// implementation: each maps its own errors onto these.
pub const LINK_ERROR_KINDS: [(&str, &str); 9] = [
    ("undefined-symbol", "a name nothing defines"),
    (
        "duplicate-symbol",
        "two definitions of a name that may have one (strong symbols, COMDAT selections)",
    ),
    (
        "out-of-range",
        "a relocated value that does not fit its field (or is misaligned)",
    ),
    (
        "unsupported",
        "input the implementation refuses by design (a relocation, object kind or feature)",
    ),
    ("malformed", "an object or archive that is not well formed"),
    ("memory", "no room for the module (address space, a window)"),
    ("in-use", "a module another one still uses cannot go"),
    (
        "replacement-missing",
        "a replacement lacks a symbol other modules use",
    ),
    ("not-found", "a file or module that is not there"),
];

/// Whether `kind` is in the vocabulary.
pub fn is_link_error_kind(kind: &str) -> bool {
    LINK_ERROR_KINDS.iter().any(|(k, _)| *k == kind)
}

/// What an implementation may or may not do; a scenario that needs a
/// capability its implementation lacks is *unsupported*, naming it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    /// Remove a module (its deinitializers and handlers run).
    Remove,
    /// Hot-swap a module: callers in other modules reach the new code.
    Replace,
    /// Stop a call that outlives its timeout and go on (an executor
    /// process): without it, a timeout ends the trial.
    CallTimeout,
    /// Survive a crash (roll back or restart): `session.recovery`.
    Recovery,
    /// Static archives as inputs (`archives:`).
    Archives,
    /// Names defined at absolute addresses (`session.absolute`).
    Absolute,
    /// Run a program from its entry point, hidden ones included (`run`).
    Run,
    /// Where the JIT memory goes and how large it is (`session.placement`,
    /// `session.slab_size`).
    Placement,
    /// Crash reports with a backtrace (`crash.backtrace` in a scenario):
    /// a `crashed` reply's report, or a stderr line when the process dies,
    /// reads `backtrace: f+0x… <- g+0x… <- …`.
    Backtrace,
    /// Objects that are not position independent (`-fno-pic`, `-fPIE`:
    /// 32-bit absolute relocations, local-exec TLS, PC-relative references
    /// to data another object defines).
    PositionDependent,
}

impl Capability {
    /// Every capability, in the order documented.
    pub const ALL: [Capability; 10] = [
        Capability::Remove,
        Capability::Replace,
        Capability::CallTimeout,
        Capability::Recovery,
        Capability::Archives,
        Capability::Absolute,
        Capability::Run,
        Capability::Placement,
        Capability::Backtrace,
        Capability::PositionDependent,
    ];

    /// The name used on the wire and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Capability::Remove => "remove",
            Capability::Replace => "replace",
            Capability::CallTimeout => "call-timeout",
            Capability::Recovery => "recovery",
            Capability::Archives => "archives",
            Capability::Absolute => "absolute",
            Capability::Run => "run",
            Capability::Placement => "placement",
            Capability::Backtrace => "backtrace",
            Capability::PositionDependent => "position-dependent",
        }
    }
}

/// The capabilities `scenario` needs, in [`Capability::ALL`] order.
pub fn requirements(scenario: &Scenario) -> Vec<Capability> {
    let steps = &scenario.steps;
    let session = &scenario.session;
    let needs = |c: Capability| match c {
        Capability::Remove => steps
            .iter()
            .any(|s| matches!(s.action, Action::Remove { .. })),
        Capability::Replace => steps
            .iter()
            .any(|s| matches!(s.action, Action::Replace { .. })),
        Capability::CallTimeout => steps.iter().any(|s| s.expect.timeout == Some(true)),
        Capability::Recovery => session.recovery.is_some(),
        Capability::Archives => !scenario.archives.is_empty(),
        Capability::Absolute => !session.absolute.is_empty(),
        Capability::Run => steps.iter().any(|s| matches!(s.action, Action::Run { .. })),
        Capability::Placement => session.placement.is_some() || session.slab_size.is_some(),
        Capability::Backtrace => steps.iter().any(|s| {
            s.expect
                .crash
                .as_ref()
                .is_some_and(|c| c.backtrace.is_some())
        }),
        Capability::PositionDependent => scenario.fixtures.values().any(|f| {
            f.cflags.iter().any(|c| {
                matches!(
                    c.as_str(),
                    "-fno-pic" | "-fno-PIC" | "-fPIE" | "-fpie" | "-mcmodel=large"
                )
            })
        }),
    };
    Capability::ALL.into_iter().filter(|&c| needs(c)).collect()
}

/// The first line an implementation writes: who it is and what it does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol: u32,
    pub name: String,
    pub version: String,
    pub formats: Vec<Format>,
    pub modes: Vec<Mode>,
    pub capabilities: Vec<Capability>,
    /// Compiler flags the implementation needs every fixture built with
    /// (a loader of shared objects needs `-fPIC`), before the scenario's.
    #[serde(default)]
    pub cflags: Vec<String>,
}

/// An object (or archive) given to a load: its name in messages and path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Input {
    pub name: String,
    pub path: PathBuf,
}

/// An archive given to a load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveInput {
    pub name: String,
    pub path: PathBuf,
    /// Every member is loaded (`--whole-archive`).
    pub whole: bool,
}

/// One request; each gets exactly one [`Reply`] (or the process ends).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    /// The session, before anything else: the format the fixtures were
    /// built for, where the code runs, and the scenario's `session` field.
    Start {
        trial: String,
        format: Format,
        mode: Mode,
        session: SessionSpec,
    },
    /// Links `objects` (and the members of `archives` they need; archives
    /// stay on the session's search list) as one module named `module`.
    Load {
        module: String,
        objects: Vec<Input>,
        #[serde(default)]
        archives: Vec<ArchiveInput>,
    },
    /// Links a program and runs its entry point as `main`.
    Run {
        module: String,
        objects: Vec<Input>,
        #[serde(default)]
        archives: Vec<ArchiveInput>,
        entry: String,
    },
    /// Calls `symbol` (as C spells it) with integer arguments.
    Call {
        symbol: String,
        args: Vec<i64>,
        #[serde(default)]
        timeout_ms: Option<u64>,
    },
    /// Hot-swaps `module` for `objects`, `repeat` times.
    Replace {
        module: String,
        objects: Vec<Input>,
        repeat: u32,
    },
    /// Removes `module`.
    Remove { module: String },
    /// Ends the session as `exit()` would. The implementation may answer,
    /// or exit with status 0.
    End,
}

/// How a request ended, when the implementation lived to say it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Reply {
    Ok,
    /// A call's (or run's) value, as the 64 bits of `rax`.
    Returned {
        value: u64,
    },
    LinkError {
        kind: String,
        message: String,
    },
    /// The symbol a call names is not there.
    MissingSymbol {
        name: String,
    },
    /// The module a replace or remove names was never loaded.
    NoModule {
        name: String,
    },
    /// A repeated replace left more memory in use after the last swap
    /// than after the first.
    MemoryGrew {
        first: u64,
        last: u64,
    },
    /// The code crashed with `signal` and the implementation survived it
    /// (an executor process); `report` says where.
    Crashed {
        signal: i32,
        report: String,
    },
    /// The code called `exit(status)` and the implementation survived it.
    Exited {
        status: i32,
    },
    /// The call outlived its timeout and was stopped.
    TimedOut {
        ms: u64,
    },
    /// The implementation cannot go on (its executor vanished, a request
    /// it does not understand).
    Failed {
        message: String,
    },
}

/// The inputs of a load step: its objects and archives, by the names the
/// scenario gives them, with the built files in `built`.
pub fn inputs(
    names: &[String],
    archives: &BTreeMap<String, ArchiveSpec>,
    built: &BTreeMap<String, PathBuf>,
) -> Result<(Vec<Input>, Vec<ArchiveInput>), String> {
    let mut objects = Vec::new();
    let mut given = Vec::new();
    for name in names {
        let path = built
            .get(name)
            .ok_or_else(|| format!("`{name}` was not built"))?
            .clone();
        match archives.get(name) {
            Some(spec) => given.push(ArchiveInput {
                name: name.clone(),
                path,
                whole: spec.whole,
            }),
            None => objects.push(Input {
                name: name.clone(),
                path,
            }),
        }
    }
    Ok((objects, given))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RERUN: &str = "rerun: cargo test -p solder-conformance --lib protocol::tests";

    /// Requests and replies are JSON objects tagged by `op` and `result`,
    /// as IMPLEMENTING.md shows them, and read back the same.
    #[test]
    fn requests_and_replies_are_the_documented_json() {
        let call = Request::Call {
            symbol: "f".into(),
            args: vec![1, -2],
            timeout_ms: Some(500),
        };
        let text = serde_json::to_string(&call).unwrap();
        assert_eq!(
            text, r#"{"op":"call","symbol":"f","args":[1,-2],"timeout_ms":500}"#,
            "{RERUN}"
        );
        assert_eq!(
            serde_json::from_str::<Request>(&text).unwrap(),
            call,
            "{RERUN}"
        );
        let error = Reply::LinkError {
            kind: "undefined-symbol".into(),
            message: "undefined symbol `g`".into(),
        };
        let text = serde_json::to_string(&error).unwrap();
        assert_eq!(
            text,
            r#"{"result":"link_error","kind":"undefined-symbol","message":"undefined symbol `g`"}"#,
            "{RERUN}"
        );
        let end: Request = serde_json::from_str(r#"{"op":"end"}"#).unwrap();
        assert_eq!(end, Request::End, "{RERUN}");
        let hello: Hello = serde_json::from_str(
            r#"{"protocol":1,"name":"x","version":"1","formats":["elf"],"modes":["inproc"],"capabilities":["remove","call-timeout"]}"#,
        )
        .unwrap();
        assert_eq!(
            hello.capabilities,
            [Capability::Remove, Capability::CallTimeout],
            "{RERUN}"
        );
        for c in Capability::ALL {
            let wire = serde_json::to_string(&c).unwrap();
            assert_eq!(wire, format!("\"{}\"", c.name()), "{RERUN}");
        }
    }

    fn scenario(text: &str) -> Scenario {
        Scenario::parse(std::path::Path::new("test.yaml"), text)
            .unwrap_or_else(|e| panic!("{e}\n{RERUN}"))
    }

    /// What a scenario needs follows from its steps, session and fixture
    /// flags, and nothing else.
    #[test]
    fn requirements_follow_from_the_scenario() {
        let plain =
            scenario("summary: s\nfixtures: {a: x.c}\nsteps:\n  - load: [a]\n  - call: f\n");
        assert_eq!(requirements(&plain), [], "{RERUN}");
        let demanding = scenario(
            "summary: s\n\
             session: {placement: low, absolute: {n: 16}}\n\
             fixtures: {a: {source: x.c, cflags: [-fPIE]}, b: y.c}\n\
             archives: {lib: {members: [b]}}\n\
             steps:\n\
             \x20 - load: [a, lib]\n\
             \x20 - replace: {module: a+lib, with: [a]}\n\
             \x20 - remove: {module: a+lib}\n\
             \x20 - run: [a]\n\
             \x20 - call: {function: f, timeout_ms: 5}\n\
             \x20   expect: {timeout: true}\n",
        );
        assert_eq!(
            requirements(&demanding),
            [
                Capability::Remove,
                Capability::Replace,
                Capability::CallTimeout,
                Capability::Archives,
                Capability::Absolute,
                Capability::Run,
                Capability::Placement,
                Capability::PositionDependent,
            ],
            "{RERUN}"
        );
    }
}
