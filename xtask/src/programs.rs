//! `cargo xtask programs`: the "real programs" tier.
//!
//! Builds real C and C++ programs — Lua 5.4 with a small host and test
//! scripts, the SQLite amalgamation with a driver, C lifecycle and exit-path
//! programs, a C++ program — with gcc and clang at `-O2`, in the compilers'
//! default code model (PIE on Debian) and, for Lua, also with `-fno-pic`.
//! Each program is compiled to relocatable objects under
//! `target/programs/<compiler>/<variant>/<program>/`, linked natively, and
//! every case (a set of arguments) is run twice: as the native executable
//! and as `solder run OBJS... -- ARGS`. A case passes when stdout is
//! byte-identical and the exit status is the same (death by a signal counts
//! as 128 + signal, as in a shell). Each build also gets a `noexec` case:
//! `solder run --noexec OBJS...` must link and exit 0.
//!
//! A missing compiler is skipped (a failure with `SOLDER_STRICT=1`). The
//! native side always runs, even when solder cannot be built, so the
//! fixtures themselves can be checked (`--native-only`,
//! `--check-determinism`). The last line is `N passed, N failed, N skipped`;
//! every failure prints a diff and a command that reruns just that case.
//!
//! Submodules: [`catalog`] (what is built and run), [`build`] (compiling
//! and linking), [`exec`] (running and comparing).

pub(crate) mod build;
pub(crate) mod catalog;
mod exec;

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::ArgAction;

use crate::util;
use build::CompileJob;
use catalog::{Compiler, Lang, Program, Variant};
use exec::{Outcome, Status};

/// Options of `cargo xtask programs`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Which compilers to build with.
    #[arg(long, value_enum, default_value_t = CompilerChoice::All)]
    compiler: CompilerChoice,
    /// Only cases whose name contains this (names look like `lua/basics`,
    /// `lua-fno-pic/basics`, `sqlite/noexec`, `cpp/return3`).
    #[arg(long, value_name = "NAME")]
    program: Option<String>,
    /// Match `--program` against the whole case name instead of a substring.
    #[arg(long, requires = "program")]
    exact: bool,
    /// Use this solder binary instead of building `solder-linker`.
    #[arg(long, value_name = "PATH")]
    solder: Option<PathBuf>,
    /// Only build and run the native programs (checks the fixtures).
    #[arg(long)]
    native_only: bool,
    /// Run every native program twice and require identical results.
    #[arg(long)]
    check_determinism: bool,
    /// Keep running cases after a failure (`--keep-going=false` stops).
    #[arg(long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true", value_name = "BOOL")]
    keep_going: bool,
    /// Parallel compilations (default: the number of CPUs).
    #[arg(long, value_name = "N")]
    jobs: Option<usize>,
    /// Seconds before a run is killed and counted as a failure.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    timeout: u64,
    /// List the selected cases and exit.
    #[arg(long)]
    list: bool,
    /// Where solder runs the programs: in its own process, in a
    /// `solder-executor` over pipes, the same with shared memory, or all.
    #[arg(long, value_enum, default_value_t = ExecutorChoice::All)]
    executor: ExecutorChoice,
}

/// Where `solder run` runs a case; every case runs in each selected one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Executor {
    InProcess,
    Pipe,
    PipeShm,
}

const EXECUTORS: [Executor; 3] = [Executor::InProcess, Executor::Pipe, Executor::PipeShm];

impl Executor {
    /// Appended to the case name: `lua/basics@pipe`.
    fn suffix(self) -> &'static str {
        match self {
            Executor::InProcess => "",
            Executor::Pipe => "@pipe",
            Executor::PipeShm => "@pipe-shm",
        }
    }

    fn flags(self) -> &'static [&'static str] {
        match self {
            Executor::InProcess => &[],
            Executor::Pipe => &["--executor", "pipe"],
            Executor::PipeShm => &["--executor", "pipe", "--shm"],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ExecutorChoice {
    Inproc,
    Pipe,
    PipeShm,
    All,
}

impl ExecutorChoice {
    fn includes(self, executor: Executor) -> bool {
        matches!(
            (self, executor),
            (ExecutorChoice::All, _)
                | (ExecutorChoice::Inproc, Executor::InProcess)
                | (ExecutorChoice::Pipe, Executor::Pipe)
                | (ExecutorChoice::PipeShm, Executor::PipeShm)
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum CompilerChoice {
    Gcc,
    Clang,
    All,
}

impl CompilerChoice {
    fn includes(self, compiler: &Compiler) -> bool {
        match self {
            CompilerChoice::All => true,
            CompilerChoice::Gcc => compiler.name == "gcc",
            CompilerChoice::Clang => compiler.name == "clang",
        }
    }
}

/// One (compiler, variant, program) combination and its selected cases.
struct Build<'a> {
    compiler: &'static Compiler,
    variant: &'static Variant,
    program: &'a Program,
    /// Program name in this variant: `lua`, `lua-fno-pic`.
    label: String,
    dir: PathBuf,
    objects: Vec<PathBuf>,
    native: PathBuf,
    cases: Vec<CaseKind<'a>>,
}

#[derive(Clone, Copy)]
enum CaseKind<'a> {
    /// Run natively and under `solder run` with this executor, compare.
    Run(&'a catalog::Case, Executor),
    /// `solder run --noexec`: link only, exit 0.
    NoExec,
}

impl<'a> Build<'a> {
    /// A build with no cases yet, in `target/programs/COMPILER/VARIANT/PROGRAM`
    /// (shared by `programs` and `bench`, so each reuses the other's objects).
    fn new(
        compiler: &'static Compiler,
        variant: &'static Variant,
        program: &'a Program,
        target: &Path,
    ) -> Self {
        let dir = target
            .join("programs")
            .join(compiler.name)
            .join(variant.name)
            .join(program.name);
        let mut objects: Vec<PathBuf> = program
            .sources
            .iter()
            .map(|s| dir.join(format!("{}.o", object_stem(&s.path))))
            .collect();
        objects.sort();
        Build {
            compiler,
            variant,
            program,
            label: program.label(variant),
            native: dir.join("native"),
            dir,
            objects,
            cases: Vec::new(),
        }
    }

    fn case_name(&self, case: CaseKind<'_>) -> String {
        match case {
            CaseKind::Run(case, executor) => {
                format!("{}/{}{}", self.label, case.name, executor.suffix())
            }
            CaseKind::NoExec => format!("{}/noexec", self.label),
        }
    }

    /// The static archive the program is linked from, if any: its path
    /// and its members.
    fn archive(&self) -> Option<(PathBuf, Vec<PathBuf>)> {
        let spec = self.program.archive.as_ref()?;
        let members = self
            .objects
            .iter()
            .filter(|o| !spec.outside.contains(&object_stem(o).as_str()))
            .cloned()
            .collect();
        Some((self.dir.join(spec.name), members))
    }

    /// What is linked, natively and by solder: the objects outside the
    /// archive, then the archive (when it is not linked whole).
    fn link_inputs(&self) -> Vec<PathBuf> {
        match (self.archive(), &self.program.archive) {
            (Some((archive, members)), Some(spec)) => {
                let mut inputs: Vec<PathBuf> = self
                    .objects
                    .iter()
                    .filter(|o| !members.contains(o))
                    .cloned()
                    .collect();
                if !spec.whole {
                    inputs.push(archive);
                }
                inputs
            }
            _ => self.objects.clone(),
        }
    }

    /// The archive linked whole (`--whole-archive`), if any.
    fn whole_archive(&self) -> Option<PathBuf> {
        let spec = self.program.archive.as_ref()?;
        spec.whole
            .then(|| self.archive().map(|(path, _)| path))
            .flatten()
    }

    /// `solder run`'s inputs: [`Build::link_inputs`] and the whole archive.
    fn solder_inputs(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = self
            .link_inputs()
            .into_iter()
            .map(PathBuf::into_os_string)
            .collect();
        if let Some(whole) = self.whole_archive() {
            args.push("--whole-archive".into());
            args.push(whole.into_os_string());
        }
        args
    }

    fn driver(&self) -> &'static str {
        match self.program.lang() {
            Lang::C => self.compiler.cc,
            Lang::Cxx => self.compiler.cxx,
        }
    }
}

/// Whether solder can be run, and if not why.
enum Solder {
    NotUsed,
    Ready(PathBuf),
    Unavailable(String),
}

#[derive(Default)]
struct Tally {
    passed: usize,
    failed: usize,
    skipped: usize,
}

pub fn run(args: &Args) -> Result<bool> {
    let root = util::workspace_root();
    let strict = std::env::var("SOLDER_STRICT").is_ok_and(|v| v == "1");
    let timeout = Duration::from_secs(args.timeout);
    let target = util::target_dir(&root)?;
    let third_party = catalog::locate_sources(&root)?;
    let programs = catalog::programs(&root, &third_party)?;
    let builds = select(args, &programs, &target);
    if builds.is_empty() {
        bail!(
            "no case matches --program {:?} (see `cargo xtask programs --list`)",
            args.program.as_deref().unwrap_or("")
        );
    }
    if args.list {
        for build in &builds {
            for &case in &build.cases {
                println!("{} {}", build.compiler.name, build.case_name(case));
            }
        }
        return Ok(true);
    }

    let mut tally = Tally::default();
    let mut compilers_ok = Vec::new();
    for compiler in catalog::COMPILERS {
        if !builds.iter().any(|b| std::ptr::eq(b.compiler, compiler)) {
            continue;
        }
        match check_compiler(compiler) {
            Ok(version) => {
                println!("compiler {}: {version}", compiler.name);
                compilers_ok.push(compiler.name);
            }
            Err(reason) => {
                let cases: usize = builds
                    .iter()
                    .filter(|b| std::ptr::eq(b.compiler, compiler))
                    .map(|b| b.cases.len())
                    .sum();
                if strict {
                    println!(
                        "FAIL {} ({cases} cases): {reason} (SOLDER_STRICT=1)",
                        compiler.name
                    );
                    tally.failed += cases;
                } else {
                    println!("skip {} ({cases} cases): {reason}", compiler.name);
                    tally.skipped += cases;
                }
            }
        }
    }
    let mut builds: Vec<Build> = builds
        .into_iter()
        .filter(|b| compilers_ok.contains(&b.compiler.name))
        .collect();

    let solder = prepare_solder(args, &root, &target)?;
    match &solder {
        Solder::NotUsed => println!("solder: not used (--native-only)"),
        Solder::Ready(path) => println!("solder: {}", path.display()),
        Solder::Unavailable(reason) => {
            println!("solder: UNAVAILABLE, every solder check fails: {reason}")
        }
    }

    let build_errors = compile_and_link(&mut builds, args.jobs)?;

    let mut stop = false;
    for (build, build_error) in builds.iter().zip(&build_errors) {
        if let Some(error) = build_error {
            println!(
                "FAIL {} {} ({} cases): build failed:\n{}",
                build.compiler.name,
                build.label,
                build.cases.len(),
                indent(error, "    ")
            );
            println!("    rerun: {}", rerun_command(args, build, None));
            tally.failed += build.cases.len();
            if !args.keep_going {
                break;
            }
            continue;
        }
        for &case in &build.cases {
            let name = build.case_name(case);
            let verdict = run_case(args, build, case, &solder, timeout)?;
            match verdict {
                Verdict::Pass(note) => {
                    println!("ok   {} {name}{note}", build.compiler.name);
                    tally.passed += 1;
                }
                Verdict::Fail { summary, details } => {
                    println!("FAIL {} {name}: {summary}", build.compiler.name);
                    if !details.is_empty() {
                        println!("{}", indent(&details, "    "));
                    }
                    println!("    rerun: {}", rerun_command(args, build, Some(&name)));
                    println!("    by hand: {}", by_hand_command(build, case, &solder));
                    tally.failed += 1;
                    if !args.keep_going {
                        stop = true;
                        break;
                    }
                }
            }
        }
        if stop {
            break;
        }
    }

    println!(
        "{} passed, {} failed, {} skipped",
        tally.passed, tally.failed, tally.skipped
    );
    Ok(tally.failed == 0)
}

/// A program built by [`build_programs`]: its objects, its native
/// executable, and the directory its runs start in.
pub struct BuiltProgram {
    pub compiler: &'static str,
    pub name: &'static str,
    pub objects: Vec<PathBuf>,
    pub native: PathBuf,
    pub cwd: PathBuf,
}

/// Builds the default variant of the named programs with each named
/// compiler (for `cargo xtask bench`), into the same directories as
/// `cargo xtask programs`, so either reuses the other's objects.
pub fn build_programs(compilers: &[&str], names: &[&str]) -> Result<Vec<BuiltProgram>> {
    build_programs_as(compilers, names, &catalog::DEFAULT)
}

/// [`build_programs`] in `variant` (`-g` for the debug-information
/// benchmark).
pub fn build_programs_as(
    compilers: &[&str],
    names: &[&str],
    variant: &'static catalog::Variant,
) -> Result<Vec<BuiltProgram>> {
    let root = util::workspace_root();
    let target = util::target_dir(&root)?;
    let third_party = catalog::locate_sources(&root)?;
    let programs = catalog::programs(&root, &third_party)?;
    let mut builds = Vec::new();
    for compiler in catalog::COMPILERS
        .iter()
        .filter(|c| compilers.contains(&c.name))
    {
        check_compiler(compiler)
            .map_err(|reason| anyhow::anyhow!("{}: {reason}", compiler.name))?;
        for program in programs.iter().filter(|p| names.contains(&p.name)) {
            builds.push(Build::new(compiler, variant, program, target.as_path()));
        }
    }
    let errors = compile_and_link(&mut builds, None)?;
    builds
        .into_iter()
        .zip(errors)
        .map(|(build, error)| match error {
            Some(error) => bail!(
                "building {} with {} failed:\n{error}",
                build.program.name,
                build.compiler.name
            ),
            None => Ok(BuiltProgram {
                compiler: build.compiler.name,
                name: build.program.name,
                objects: build.objects,
                native: build.native,
                cwd: build.program.cwd.clone(),
            }),
        })
        .collect()
}

/// The builds and cases that the options select, in a stable order.
fn select<'a>(args: &Args, programs: &'a [Program], target: &Path) -> Vec<Build<'a>> {
    let matches = |name: &str| match (&args.program, args.exact) {
        (None, _) => true,
        (Some(filter), true) => name == filter,
        (Some(filter), false) => name.contains(filter.as_str()),
    };
    let mut builds = Vec::new();
    for compiler in catalog::COMPILERS {
        if !args.compiler.includes(compiler) {
            continue;
        }
        for program in programs {
            for &variant in &program.variants {
                let mut build = Build::new(compiler, variant, program, target);
                let mut cases: Vec<CaseKind> = program
                    .cases
                    .iter()
                    .flat_map(|case| {
                        EXECUTORS
                            .iter()
                            .filter(|e| args.native_only || args.executor.includes(**e))
                            .take(if args.native_only { 1 } else { EXECUTORS.len() })
                            .map(move |&e| CaseKind::Run(case, e))
                    })
                    .collect();
                if !args.native_only {
                    cases.push(CaseKind::NoExec);
                }
                build.cases = cases
                    .into_iter()
                    .filter(|&c| matches(&build.case_name(c)))
                    .collect();
                if !build.cases.is_empty() {
                    builds.push(build);
                }
            }
        }
    }
    builds
}

fn object_stem(source: &Path) -> String {
    source
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Checks that both drivers of a compiler run; returns the C driver's
/// version line, or why the compiler is unusable.
fn check_compiler(compiler: &Compiler) -> std::result::Result<String, String> {
    let mut version = String::new();
    for driver in [compiler.cc, compiler.cxx] {
        match Command::new(driver).arg("--version").output() {
            Ok(output) if output.status.success() => {
                if version.is_empty() {
                    version = String::from_utf8_lossy(&output.stdout)
                        .lines()
                        .next()
                        .unwrap_or("")
                        .to_owned();
                }
            }
            Ok(output) => return Err(format!("`{driver} --version` failed ({})", output.status)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(format!("{driver} not found in PATH"));
            }
            Err(err) => return Err(format!("cannot run {driver}: {err}")),
        }
    }
    Ok(version)
}

/// Builds solder (unless `--solder` or `--native-only`). A failed build is
/// not fatal: the native side still runs and every solder check fails.
fn prepare_solder(args: &Args, root: &Path, target: &Path) -> Result<Solder> {
    if args.native_only {
        return Ok(Solder::NotUsed);
    }
    if let Some(path) = &args.solder {
        let path = path
            .canonicalize()
            .with_context(|| format!("--solder {} does not exist", path.display()))?;
        return Ok(Solder::Ready(path));
    }
    println!("building solder: cargo build --release -p solder-linker -p solder-executor");
    let status = Command::new(util::cargo())
        .args([
            "build",
            "--release",
            "-p",
            "solder-linker",
            "-p",
            "solder-executor",
        ])
        .current_dir(root)
        .status()
        .context("cannot run cargo to build solder")?;
    if !status.success() {
        return Ok(Solder::Unavailable(format!(
            "`cargo build --release -p solder-linker` failed ({status})"
        )));
    }
    let path = target.join("release/solder");
    if !path.is_file() {
        return Ok(Solder::Unavailable(format!(
            "{} does not exist after building solder-linker",
            path.display()
        )));
    }
    Ok(Solder::Ready(path))
}

/// Compiles every object (in parallel) and links every native program.
/// Returns, per build, the error that broke it.
fn compile_and_link(builds: &mut [Build], jobs: Option<usize>) -> Result<Vec<Option<String>>> {
    let mut compile_jobs = Vec::new();
    for (index, build) in builds.iter().enumerate() {
        std::fs::create_dir_all(&build.dir)
            .with_context(|| format!("cannot create {}", build.dir.display()))?;
        for source in &build.program.sources {
            let driver = match source.lang() {
                Lang::C => build.compiler.cc,
                Lang::Cxx => build.compiler.cxx,
            };
            let flags: Vec<String> = catalog::COMMON_CFLAGS
                .iter()
                .chain(build.variant.cflags)
                .map(|&f| f.to_owned())
                .chain(build.program.cflags.iter().cloned())
                .chain(source.flags.iter().cloned())
                .collect();
            let object = build.dir.join(format!("{}.o", object_stem(&source.path)));
            compile_jobs.push(CompileJob::new(index, driver, &flags, &source.path, object));
        }
    }
    let workers = jobs.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    });
    let results = build::compile_all(&compile_jobs, workers);

    let mut errors: Vec<Option<String>> = vec![None; builds.len()];
    for (job, result) in compile_jobs.iter().zip(results) {
        match result {
            Ok(compiled) if !compiled.warnings.trim().is_empty() => {
                println!(
                    "diagnostics from {}:\n{}",
                    job.source.display(),
                    indent(compiled.warnings.trim_end(), "    ")
                );
            }
            Ok(_) => {}
            Err(err) => {
                let message = errors[job.build].get_or_insert_with(String::new);
                let _ = writeln!(message, "{err:#}");
            }
        }
    }
    for (build, error) in builds.iter().zip(errors.iter_mut()) {
        if error.is_some() {
            continue;
        }
        let exercises: Vec<String> = build
            .program
            .exercises
            .iter()
            .map(|&e| e.to_owned())
            .collect();
        let format = solder_conformance::formats::Format::Elf;
        if let Err(missing) = solder_conformance::verify::verify(format, &build.objects, &exercises)
        {
            *error = Some(format!(
                "the objects do not exercise what the program is for: {missing}"
            ));
            continue;
        }
        if let Some((archive, members)) = build.archive() {
            match build::archive(&members, &archive) {
                Ok(true) => println!("archived {}", archive.display()),
                Ok(false) => {}
                Err(err) => {
                    *error = Some(format!("{err:#}"));
                    continue;
                }
            }
        }
        match build::link(
            build.driver(),
            build.variant.ldflags,
            &build.link_inputs(),
            build.whole_archive().as_deref(),
            catalog::COMMON_LIBS,
            &build.native,
        ) {
            Ok(true) => println!("linked {}", build.native.display()),
            Ok(false) => {}
            Err(err) => *error = Some(format!("{err:#}")),
        }
    }
    Ok(errors)
}

enum Verdict {
    /// Passed; the note goes after the case name.
    Pass(String),
    Fail {
        summary: String,
        details: String,
    },
}

fn fail(summary: impl Into<String>, details: impl Into<String>) -> Verdict {
    Verdict::Fail {
        summary: summary.into(),
        details: details.into(),
    }
}

fn solder_args(build: &Build, case: CaseKind<'_>) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["run".into()];
    match case {
        CaseKind::NoExec => {
            args.push("--noexec".into());
            args.extend(build.solder_inputs());
        }
        CaseKind::Run(case, executor) => {
            args.extend(executor.flags().iter().map(OsString::from));
            args.extend(build.solder_inputs());
            args.push("--".into());
            args.extend(case.args.iter().map(OsString::from));
        }
    }
    args
}

fn run_case(
    args: &Args,
    build: &Build,
    case: CaseKind<'_>,
    solder: &Solder,
    timeout: Duration,
) -> Result<Verdict> {
    let cwd = &build.program.cwd;
    let case_args = match case {
        CaseKind::Run(case, _) => case,
        CaseKind::NoExec => {
            let path = match solder {
                Solder::Ready(path) => path,
                Solder::Unavailable(reason) => {
                    return Ok(fail(format!("solder unavailable: {reason}"), ""));
                }
                Solder::NotUsed => return Ok(Verdict::Pass(" (not run)".into())),
            };
            let out = exec::run(path, &solder_args(build, case), cwd, timeout)?;
            if out.status == Status::Exited(0) {
                return Ok(Verdict::Pass(format!(
                    " ({:.2}s)",
                    out.elapsed.as_secs_f64()
                )));
            }
            return Ok(fail(
                format!(
                    "`solder run --noexec` ended with {}, expected exit 0",
                    out.status
                ),
                stderr_report("solder", &out),
            ));
        }
    };

    let native = exec::run(&build.native, &case_args.args, cwd, timeout)?;
    if native.status == Status::TimedOut {
        return Ok(fail(
            format!("the native program timed out after {}s", args.timeout),
            stderr_report("native", &native),
        ));
    }
    if args.check_determinism {
        let again = exec::run(&build.native, &case_args.args, cwd, timeout)?;
        if again.stdout != native.stdout || again.status != native.status {
            return Ok(fail(
                format!(
                    "the native program is not deterministic ({} then {})",
                    native.status, again.status
                ),
                exec::diff(&native.stdout, &again.stdout, 40)
                    .replace("+++ solder", "+++ native again"),
            ));
        }
    }
    let native_note = format!(
        "{}, {} lines, {:.2}s",
        native.status,
        exec::line_count(&native.stdout),
        native.elapsed.as_secs_f64()
    );
    let path = match solder {
        Solder::NotUsed => return Ok(Verdict::Pass(format!(" (native: {native_note})"))),
        Solder::Unavailable(reason) => {
            return Ok(fail(
                format!("solder unavailable (native: {native_note})"),
                format!("reason: {reason}"),
            ));
        }
        Solder::Ready(path) => path,
    };

    let jit = exec::run(path, &solder_args(build, case), cwd, timeout)?;
    let same_stdout = jit.stdout == native.stdout;
    let same_status =
        jit.status != Status::TimedOut && jit.status.shell_code() == native.status.shell_code();
    if same_stdout && same_status {
        return Ok(Verdict::Pass(format!(
            " ({}, native {:.2}s, solder {:.2}s)",
            native.status,
            native.elapsed.as_secs_f64(),
            jit.elapsed.as_secs_f64()
        )));
    }

    let mut problems = Vec::new();
    let mut details = String::new();
    if !same_status {
        problems.push(format!(
            "exit status differs (native {}, solder {})",
            native.status, jit.status
        ));
        if jit.status == Status::Exited(125) {
            problems.push("solder reported a link error".to_owned());
        }
    }
    if !same_stdout {
        problems.push(format!(
            "stdout differs (native {} lines, solder {} lines)",
            exec::line_count(&native.stdout),
            exec::line_count(&jit.stdout)
        ));
        if jit.stdout.is_empty() {
            let _ = writeln!(
                details,
                "solder printed nothing; native stdout begins:\n{}",
                indent(&exec::head(&native.stdout, 8), "  ")
            );
        } else {
            let _ = writeln!(details, "{}", exec::diff(&native.stdout, &jit.stdout, 30));
        }
    }
    details.push_str(&stderr_report("solder", &jit));
    Ok(fail(problems.join("; "), details.trim_end()))
}

/// The tail of a run's stderr, if it printed anything.
fn stderr_report(who: &str, outcome: &Outcome) -> String {
    if outcome.stderr.is_empty() {
        return String::new();
    }
    format!(
        "{who} stderr:\n{}",
        indent(&exec::tail(&outcome.stderr, 15), "  ")
    )
}

/// The `cargo xtask programs` command that reruns one case (or one build).
fn rerun_command(args: &Args, build: &Build, case: Option<&str>) -> String {
    let mut words: Vec<OsString> = [
        "cargo",
        "xtask",
        "programs",
        "--compiler",
        build.compiler.name,
    ]
    .map(OsString::from)
    .to_vec();
    words.push("--program".into());
    match case {
        Some(case) => {
            words.push(case.into());
            words.push("--exact".into());
        }
        None => words.push(format!("{}/", build.label).into()),
    }
    if let Some(path) = &args.solder {
        words.push("--solder".into());
        words.push(path.clone().into_os_string());
    }
    if args.native_only {
        words.push("--native-only".into());
    }
    util::shell_command(words)
}

/// A shell command that runs one case under solder by hand.
fn by_hand_command(build: &Build, case: CaseKind<'_>, solder: &Solder) -> String {
    let solder = match solder {
        Solder::Ready(path) => path.clone(),
        _ => PathBuf::from("target/release/solder"),
    };
    let mut words: Vec<OsString> = vec![solder.into_os_string()];
    words.extend(solder_args(build, case));
    format!(
        "cd {} && {}",
        util::shell_quote(build.program.cwd.as_os_str()),
        util::shell_command(words)
    )
}

fn indent(text: &str, prefix: &str) -> String {
    text.lines()
        .map(|line| format!("{prefix}{line}"))
        .collect::<Vec<_>>()
        .join("\n")
}
