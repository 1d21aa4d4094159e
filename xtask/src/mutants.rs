//! `cargo xtask mutants`: mutation testing of the code where a silent
//! mistake is a wrong link or a lost handler.
//!
//! Each [`Area`] is one `cargo mutants` run over a list of files (or of
//! functions in a file) with the tests that guard it, its results kept in
//! `target/mutation/<area>/mutants.out` (`target/mutants/` is cargo's build
//! directory of the `mutants` profile). Afterwards the score of each area
//! is printed: mutants caught (a timeout counts as caught: the mutant made a
//! test hang) over viable mutants, leaving out the missed mutants that
//! `docs/testing.md` lists as equivalent, with the reason. Every other
//! missed mutant is printed with its diff's path. cargo-mutants keeps only
//! its last run's outcomes, so each area's are also merged into
//! `target/mutation/<area>/record.json`: an `--iterate` run (which tests
//! only what was missed) updates the record instead of replacing it. The
//! exit status is 0 only when every area scored at least `--min-score`.
//!
//! `cargo-mutants` must be installed (`cargo install cargo-mutants`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::util;

/// A mutation-testing area: what is mutated and which tests must notice.
struct Area {
    name: &'static str,
    what: &'static str,
    scopes: &'static [Scope],
    tests: Tests,
}

/// One file, whole (no functions named) or only the functions whose names,
/// as cargo-mutants gives them (`Resolver<'g, 'a, 's>::definition`), match
/// one of the regular expressions.
struct Scope {
    file: &'static str,
    functions: &'static [&'static str],
}

/// The tests run against each mutant.
enum Tests {
    /// `cargo test --workspace`: unit, integration and conformance tests.
    Workspace,
    /// `cargo test -p PACKAGE`: a self-contained package.
    Package(&'static str),
}

/// The areas, in the order they run.
const AREAS: &[Area] = &[
    Area {
        name: "relocations",
        what: "relocation tables, kinds, formulas, the checked writer, GOT \
               relaxation, templates, and the near/far decisions of the plan",
        scopes: &[
            Scope {
                file: "linker/src/arch/mod.rs",
                functions: &[],
            },
            Scope {
                file: "linker/src/arch/x86_64/mod.rs",
                functions: &[],
            },
            Scope {
                file: "linker/src/arch/x86_64/elf.rs",
                functions: &[],
            },
            Scope {
                file: "linker/src/arch/x86_64/macho.rs",
                functions: &[],
            },
            Scope {
                file: "linker/src/arch/x86_64/coff.rs",
                functions: &[],
            },
            Scope {
                file: "linker/src/link/plan.rs",
                functions: &["needs_near", "can_relax"],
            },
        ],
        tests: Tests::Workspace,
    },
    Area {
        name: "lifecycle",
        what: "atexit family, fork handlers, quick_exit, deinitializer order, \
               and the initializer and finalizer lists of a load",
        scopes: &[
            Scope {
                file: "executor/src/lifecycle.rs",
                functions: &[],
            },
            Scope {
                file: "linker/src/link/lifecycle.rs",
                functions: &[],
            },
        ],
        tests: Tests::Workspace,
    },
    Area {
        name: "resolution",
        what: "COMDAT selection and symbol precedence (strong, common, weak, \
               the session's exports)",
        scopes: &[
            Scope {
                file: "linker/src/link/comdat.rs",
                functions: &["select"],
            },
            Scope {
                file: "linker/src/link/symbols.rs",
                functions: &[],
            },
            Scope {
                file: "linker/src/link/resolve.rs",
                functions: &["Resolver<'g, 'a, 's>::definition"],
            },
        ],
        tests: Tests::Workspace,
    },
    Area {
        name: "protocol",
        what: "the executor's decoding of frames, requests and replies",
        scopes: &[Scope {
            file: "executor/src/protocol.rs",
            functions: &[
                "read_frame",
                "Request::decode",
                "Reply::decode",
                "enum_value",
                r"Cursor<'a>::\w+",
            ],
        }],
        tests: Tests::Package("solder-executor"),
    },
];

/// Options of `cargo xtask mutants`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only these areas (repeatable): relocations, lifecycle, resolution,
    /// protocol. Default: all.
    #[arg(long = "area", value_parser = ["relocations", "lifecycle", "resolution", "protocol"])]
    areas: Vec<String>,
    /// Test only the mutants the previous run of each area missed (or that
    /// timed out); the others keep their earlier outcome.
    #[arg(long)]
    iterate: bool,
    /// List the mutants of each area and stop.
    #[arg(long)]
    list: bool,
    /// The lowest passing score of an area, in percent.
    #[arg(long, default_value_t = 90.0)]
    min_score: f64,
    /// Further arguments for `cargo mutants` (e.g. `-- --shard 1/4`).
    #[arg(last = true)]
    extra: Vec<String>,
}

/// Runs the areas; true when each scored at least `--min-score`.
pub fn run(args: &Args) -> Result<bool> {
    let root = util::workspace_root();
    let target = util::target_dir(&root)?;
    let equivalents = equivalent_mutants(&root.join("docs/testing.md"))?;
    if !args.list {
        baseline(&root)?;
    }
    let mut passed = true;
    for area in AREAS
        .iter()
        .filter(|a| args.areas.is_empty() || args.areas.iter().any(|n| n == a.name))
    {
        let output = target.join("mutation").join(area.name);
        // cargo-mutants keeps only the last run's outcomes: carry the
        // earlier ones over an `--iterate` run.
        let earlier = if args.iterate {
            Record::load(&output)?
        } else {
            Record::default()
        };
        std::fs::create_dir_all(&output)
            .with_context(|| format!("cannot create {}", output.display()))?;
        let mut command = cargo_mutants(area, &output, args);
        command.current_dir(&root);
        println!("== {}: {}", area.name, area.what);
        println!("$ {}", util::shell_command(command_words(&command)));
        let status = command
            .status()
            .context("cannot run `cargo mutants`: install it with `cargo install cargo-mutants`")?;
        if args.list {
            continue;
        }
        // 0: all caught, 2: some missed, 3: some timed out. Anything else
        // (1: usage) is no result.
        if !matches!(status.code(), Some(0 | 2 | 3)) {
            bail!("`cargo mutants` for {} failed ({status})", area.name);
        }
        let record = earlier.updated(&output.join("mutants.out"))?;
        record.save(&output)?;
        let score = Score::of(&record, &output.join("mutants.out"), &equivalents);
        passed &= score.report(area.name, args.min_score);
    }
    Ok(passed)
}

/// Runs the tests once on the unmutated tree, as each mutant will run them.
/// (cargo-mutants' own baseline would test only the mutated packages, and
/// an area whose tests fail unmutated would count every mutant as caught.)
fn baseline(root: &Path) -> Result<()> {
    let mut command = Command::new(util::cargo());
    command.args(["test", "--workspace", "--profile", "mutants", "--quiet"]);
    command.current_dir(root);
    println!("== baseline: the unmutated tree passes its tests");
    println!("$ {}", util::shell_command(command_words(&command)));
    let status = command.status().context("cannot run `cargo test`")?;
    if !status.success() {
        bail!("the unmutated tree fails its tests ({status}): fix them before mutation testing");
    }
    Ok(())
}

/// The `cargo mutants` command of one area.
fn cargo_mutants(area: &Area, output: &Path, args: &Args) -> Command {
    let mut command = Command::new(util::cargo());
    command.args([
        "mutants",
        "--no-shuffle",
        "--profile",
        "mutants",
        "--baseline",
        "skip",
    ]);
    // Generous bounds: a conformance run takes about 20 s on two cores;
    // a mutant that makes a trial hang is stopped by the trial's own
    // timeout long before these.
    command.args(["--timeout", "300", "--build-timeout", "900"]);
    command.arg("--output").arg(output);
    match area.tests {
        Tests::Workspace => command.arg("--test-workspace=true"),
        Tests::Package(package) => command.args(["--test-package", package]),
    };
    let files: BTreeSet<&str> = area.scopes.iter().map(|s| s.file).collect();
    for file in files {
        command.args(["--file", file]);
    }
    for scope in area.scopes {
        command.args(["--re", &scope_regex(scope)]);
    }
    if args.iterate {
        command.arg("--iterate");
    }
    if args.list {
        command.arg("--list");
    }
    command.args(&args.extra);
    command
}

/// The regular expression that selects a scope's mutants by name: those
/// inside a function (`linker/src/link.rs:412:9: replace && with || in
/// needs_near`) and those replacing its whole body
/// (`linker/src/link.rs:411:5: replace needs_near -> bool with true`).
fn scope_regex(scope: &Scope) -> String {
    let file = regex::escape(scope.file);
    if scope.functions.is_empty() {
        return format!("^{file}:");
    }
    let functions = scope.functions.join("|");
    format!(r"^{file}:\d+:\d+: (replace ({functions}) -> |.* in ({functions})$)")
}

fn command_words(command: &Command) -> Vec<std::ffi::OsString> {
    let mut words = vec![command.get_program().to_os_string()];
    words.extend(command.get_args().map(|a| a.to_os_string()));
    words
}

/// A mutant's name without its line and column, so that documented
/// equivalents survive edits elsewhere in the file:
/// `linker/src/link.rs: replace && with || in needs_near`.
fn stable_name(name: &str) -> String {
    let mut parts = name.splitn(4, ':');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(file), Some(line), Some(column), Some(rest))
            if line.chars().all(|c| c.is_ascii_digit())
                && column.chars().all(|c| c.is_ascii_digit()) =>
        {
            format!("{file}:{rest}")
        }
        _ => name.to_string(),
    }
}

/// The mutants `docs/testing.md` lists as equivalent: the first column of
/// the table under "## Equivalent mutants", in backquotes.
fn equivalent_mutants(doc: &Path) -> Result<BTreeSet<String>> {
    let text =
        std::fs::read_to_string(doc).with_context(|| format!("cannot read {}", doc.display()))?;
    let mut in_section = false;
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if line.starts_with("## ") {
            in_section = line.trim() == "## Equivalent mutants";
            continue;
        }
        let Some(cell) = line.strip_prefix("| `") else {
            continue;
        };
        if let (true, Some(end)) = (in_section, cell.find("` |")) {
            names.insert(cell[..end].to_string());
        }
    }
    Ok(names)
}

/// One area's outcome.
#[derive(Debug, Default)]
struct Score {
    caught: usize,
    timeout: usize,
    unviable: usize,
    /// Missed mutants not documented as equivalent, with their diff files.
    missed: Vec<(String, PathBuf)>,
    /// Missed mutants documented as equivalent.
    equivalent: Vec<String>,
    /// Outcomes this command does not know (a newer cargo-mutants).
    unknown: Vec<String>,
}

#[derive(Deserialize)]
struct Outcomes {
    outcomes: Vec<Outcome>,
}

#[derive(Deserialize)]
struct Outcome {
    scenario: serde_json::Value,
    summary: String,
    diff_path: Option<PathBuf>,
}

/// Every mutant an area's runs tested, by name, with its outcome
/// (`CaughtMutant`, `MissedMutant`, `Timeout`, `Unviable`) and its diff.
/// Kept in `target/mutation/<area>/record.json` across `--iterate` runs.
#[derive(Debug, Default, serde::Serialize, Deserialize)]
struct Record {
    outcomes: std::collections::BTreeMap<String, (String, PathBuf)>,
}

impl Record {
    /// The record of an area's runs so far: its `record.json`, or else the
    /// last run's `outcomes.json`, or nothing.
    fn load(area_dir: &Path) -> Result<Record> {
        let path = area_dir.join("record.json");
        if path.exists() {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            return serde_json::from_str(&text)
                .with_context(|| format!("cannot parse {}", path.display()));
        }
        let outcomes = area_dir.join("mutants.out/outcomes.json");
        if outcomes.exists() {
            return Record::default().updated(&area_dir.join("mutants.out"));
        }
        Ok(Record::default())
    }

    /// This record with the outcomes of the run in `out_dir` (a
    /// `mutants.out`) added or replacing earlier ones.
    fn updated(mut self, out_dir: &Path) -> Result<Record> {
        let path = out_dir.join("outcomes.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let outcomes: Outcomes = serde_json::from_str(&text)
            .with_context(|| format!("cannot parse {}", path.display()))?;
        for outcome in outcomes.outcomes {
            let Some(name) = outcome.scenario["Mutant"]["name"].as_str() else {
                continue; // the baseline
            };
            let diff = out_dir.join(outcome.diff_path.unwrap_or_default());
            self.outcomes
                .insert(name.to_string(), (outcome.summary, diff));
        }
        Ok(self)
    }

    fn save(&self, area_dir: &Path) -> Result<()> {
        let path = area_dir.join("record.json");
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    }
}

impl Score {
    /// The score of an area's record; `out_dir` names it in messages.
    fn of(record: &Record, out_dir: &Path, equivalents: &BTreeSet<String>) -> Score {
        let mut score = Score::default();
        for (name, (summary, diff)) in &record.outcomes {
            match summary.as_str() {
                "CaughtMutant" => score.caught += 1,
                "Timeout" => score.timeout += 1,
                "Unviable" => score.unviable += 1,
                "MissedMutant" if equivalents.contains(&stable_name(name)) => {
                    score.equivalent.push(name.clone())
                }
                "MissedMutant" => score.missed.push((name.clone(), diff.clone())),
                other => score.unknown.push(format!(
                    "{}: unknown outcome {other:?} of {name}",
                    out_dir.display()
                )),
            }
        }
        score
    }

    /// Caught over viable mutants, documented equivalents left out.
    fn percent(&self) -> f64 {
        let caught = self.caught + self.timeout;
        let viable = caught + self.missed.len();
        if viable == 0 {
            return 100.0;
        }
        100.0 * caught as f64 / viable as f64
    }

    /// Prints the score and the missed mutants; true when it passes.
    fn report(&self, area: &str, min_score: f64) -> bool {
        let percent = self.percent();
        println!(
            "{area}: {percent:.1}% caught ({} caught, {} timed out, {} missed, {} equivalent, {} unviable)",
            self.caught,
            self.timeout,
            self.missed.len(),
            self.equivalent.len(),
            self.unviable
        );
        for name in &self.equivalent {
            println!("  equivalent (docs/testing.md): {name}");
        }
        for (name, diff) in &self.missed {
            println!("  MISSED {name}\n         {}", diff.display());
        }
        for line in &self.unknown {
            println!("  {line}");
        }
        let passed = percent >= min_score && self.unknown.is_empty();
        if !passed {
            println!("{area}: below {min_score}%");
        }
        passed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `--iterate` run's outcomes update the record: earlier caught and
    /// unviable mutants stay as they were, missed ones get their new
    /// outcome.
    #[test]
    fn iterate_runs_update_the_record() {
        let dir = std::env::temp_dir().join(format!("solder-xtask-record-{}", std::process::id()));
        let out = dir.join("mutants.out");
        std::fs::create_dir_all(&out).unwrap();
        let write = |outcomes: &[(&str, &str)]| {
            let list: Vec<serde_json::Value> = outcomes
                .iter()
                .map(|(name, summary)| {
                    serde_json::json!({
                        "scenario": {"Mutant": {"name": name}},
                        "summary": summary,
                        "diff_path": format!("diff/{name}.diff"),
                    })
                })
                .chain([serde_json::json!({"scenario": "Baseline", "summary": "Success"})])
                .collect();
            std::fs::write(
                out.join("outcomes.json"),
                serde_json::json!({ "outcomes": list }).to_string(),
            )
            .unwrap();
        };
        write(&[
            ("a", "CaughtMutant"),
            ("b", "MissedMutant"),
            ("c", "Unviable"),
        ]);
        let first = Record::load(&dir).unwrap();
        first.save(&dir).unwrap();
        write(&[("b", "CaughtMutant")]);
        let record = Record::load(&dir).unwrap().updated(&out).unwrap();
        let score = Score::of(&record, &out, &BTreeSet::new());
        assert_eq!(
            (score.caught, score.unviable, score.missed.len()),
            (2, 1, 0)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn stable_names_drop_line_and_column() {
        assert_eq!(
            stable_name("linker/src/link.rs:412:9: replace && with || in needs_near"),
            "linker/src/link.rs: replace && with || in needs_near"
        );
        assert_eq!(stable_name("no position"), "no position");
    }

    #[test]
    fn scope_regexes_select_files_or_functions() {
        let whole = Scope {
            file: "linker/src/arch/mod.rs",
            functions: &[],
        };
        assert_eq!(scope_regex(&whole), r"^linker/src/arch/mod\.rs:");
        let some = Scope {
            file: "linker/src/link.rs",
            functions: &["collect_globals::rank", "Resolver<'g, 'a, 's>::definition"],
        };
        let regex = regex::Regex::new(&scope_regex(&some)).unwrap();
        for name in [
            "linker/src/link.rs:572:9: replace collect_globals::rank -> u8 with 0",
            "linker/src/link.rs:600:20: replace == with != in collect_globals::rank",
            "linker/src/link.rs:740:9: replace Resolver<'g, 'a, 's>::definition -> Result<Resolved<'g>, LinkError> with Ok(Default::default())",
            "linker/src/link.rs:750:9: delete ! in Resolver<'g, 'a, 's>::definition",
        ] {
            assert!(regex.is_match(name), "{name}");
        }
        for name in [
            "linker/src/link.rs:571:5: replace collect_globals -> Result<(), LinkError> with Ok(())",
            "linker/src/link.rs:580:5: replace == with != in collect_globals",
            "linker/src/other.rs:572:9: replace collect_globals::rank -> u8 with 0",
        ] {
            assert!(!regex.is_match(name), "{name}");
        }
    }
}
