//! Compiling the programs to objects and linking them natively.
//!
//! Every source becomes `<stem>.o` in the build's directory
//! (`target/programs/<compiler>/<variant>/<program>/`), next to
//! `<stem>.d` (the compiler's dependency list, `-MMD`) and `<stem>.o.cmd`
//! (the exact command line). An output is rebuilt only when its command line
//! changed or one of its inputs is newer than it. Compilations run on a pool
//! of threads, biggest sources first.

use std::collections::VecDeque;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};

use crate::util;

/// One compilation: run `command` to turn `source` into `object`.
#[derive(Debug)]
pub struct CompileJob {
    /// Index of the build (compiler, variant, program) this belongs to.
    pub build: usize,
    pub source: PathBuf,
    pub object: PathBuf,
    /// The full command line, driver first.
    pub command: Vec<String>,
}

impl CompileJob {
    /// Builds the job; the dependency file goes next to the object.
    pub fn new(
        build: usize,
        driver: &str,
        flags: &[String],
        source: &Path,
        object: PathBuf,
    ) -> Self {
        let mut command = vec![driver.to_owned()];
        command.extend(flags.iter().cloned());
        command.extend([
            "-MMD".to_owned(),
            "-MF".to_owned(),
            dep_file(&object).display().to_string(),
            "-c".to_owned(),
            source.display().to_string(),
            "-o".to_owned(),
            object.display().to_string(),
        ]);
        Self {
            build,
            source: source.to_path_buf(),
            object,
            command,
        }
    }

    fn weight(&self) -> u64 {
        fs::metadata(&self.source).map(|m| m.len()).unwrap_or(0)
    }
}

/// What became of one compilation.
#[derive(Debug)]
pub struct Compiled {
    /// `false` when the object was up to date.
    pub rebuilt: bool,
    pub duration: Duration,
    /// Diagnostics the compiler printed on success (warnings).
    pub warnings: String,
}

fn dep_file(object: &Path) -> PathBuf {
    object.with_extension("d")
}

fn cmd_file(output: &Path) -> PathBuf {
    let mut name = output.as_os_str().to_owned();
    name.push(".cmd");
    PathBuf::from(name)
}

fn mtime(path: &Path) -> Option<SystemTime> {
    fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Whether `output` exists, was made by `command`, and is newer than all
/// of `inputs`.
fn up_to_date(output: &Path, command: &[String], inputs: &[PathBuf]) -> bool {
    let Some(built) = mtime(output) else {
        return false;
    };
    match fs::read_to_string(cmd_file(output)) {
        Ok(recorded) if recorded == command.join("\n") => {}
        _ => return false,
    }
    inputs
        .iter()
        .all(|input| mtime(input).is_some_and(|changed| changed < built))
}

/// Records the command that made `output`.
fn record_command(output: &Path, command: &[String]) -> Result<()> {
    let path = cmd_file(output);
    fs::write(&path, command.join("\n")).with_context(|| format!("cannot write {}", path.display()))
}

/// The inputs listed in a make-style dependency file (`obj.o: a.c b.h`).
fn parse_dep_file(text: &str) -> Vec<PathBuf> {
    let joined = text.replace("\\\r\n", " ").replace("\\\n", " ");
    let Some(colon) = joined.find(": ") else {
        return Vec::new();
    };
    let mut deps = Vec::new();
    let mut word = String::new();
    let mut chars = joined[colon + 1..].chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&' ') => {
                word.push(' ');
                chars.next();
            }
            c if c.is_whitespace() => {
                if !word.is_empty() {
                    deps.push(PathBuf::from(std::mem::take(&mut word)));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        deps.push(PathBuf::from(word));
    }
    deps
}

/// Sources above this many bytes are announced before they compile.
const LARGE_SOURCE: u64 = 1_000_000;

fn compile_one(job: &CompileJob) -> Result<Compiled> {
    let start = Instant::now();
    let inputs = match fs::read_to_string(dep_file(&job.object)) {
        Ok(text) => {
            let mut deps = parse_dep_file(&text);
            deps.push(job.source.clone());
            deps
        }
        // No dependency file: never built, or built by something else.
        Err(_) => Vec::new(),
    };
    if !inputs.is_empty() && up_to_date(&job.object, &job.command, &inputs) {
        return Ok(Compiled {
            rebuilt: false,
            duration: start.elapsed(),
            warnings: String::new(),
        });
    }
    // A large source (SQLite's amalgamation: 30+ s) says it started, so
    // the run is not silent meanwhile.
    let size = job.weight();
    if size > LARGE_SOURCE {
        println!(
            "compiling {} ({:.1} MB; this takes a while)",
            job.source.display(),
            size as f64 / 1e6
        );
    }
    let output = run_tool(&job.command)?;
    record_command(&job.object, &job.command)?;
    Ok(Compiled {
        rebuilt: true,
        duration: start.elapsed(),
        warnings: output,
    })
}

/// Runs a compiler or linker; on failure the error holds the command and
/// its diagnostics. Returns what it printed.
pub(crate) fn run_tool(command: &[String]) -> Result<String> {
    let output = Command::new(&command[0])
        .args(&command[1..])
        .output()
        .with_context(|| format!("cannot run {}", command[0]))?;
    let mut diagnostics = String::from_utf8_lossy(&output.stderr).into_owned();
    diagnostics.push_str(&String::from_utf8_lossy(&output.stdout));
    if !output.status.success() {
        bail!(
            "`{}` failed ({}):\n{}",
            util::shell_command(command),
            output.status,
            diagnostics.trim_end()
        );
    }
    Ok(diagnostics)
}

/// Runs every job on `workers` threads, biggest sources first. The results
/// are in the order of `jobs`.
pub fn compile_all(jobs: &[CompileJob], workers: usize) -> Vec<Result<Compiled>> {
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    let weights: Vec<u64> = jobs.iter().map(CompileJob::weight).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(weights[i]));
    let queue = Mutex::new(order.into_iter().collect::<VecDeque<_>>());
    let results: Mutex<Vec<Option<Result<Compiled>>>> =
        Mutex::new((0..jobs.len()).map(|_| None).collect());

    std::thread::scope(|scope| {
        for _ in 0..workers.max(1) {
            scope.spawn(|| {
                loop {
                    let next = queue.lock().expect("queue lock").pop_front();
                    let Some(index) = next else { break };
                    let job = &jobs[index];
                    let result = compile_one(job);
                    if let Ok(compiled) = &result
                        && compiled.rebuilt
                    {
                        println!(
                            "compiled {} ({:.1}s)",
                            job.object.display(),
                            compiled.duration.as_secs_f64()
                        );
                    }
                    results.lock().expect("results lock")[index] = Some(result);
                }
            });
        }
    });

    results
        .into_inner()
        .expect("results lock")
        .into_iter()
        .map(|r| r.expect("every job ran"))
        .collect()
}

/// Links `objects` (and every member of `whole_archive`, as
/// `--whole-archive` does) into `output` with `driver` unless it is up to
/// date. Returns whether it linked.
pub fn link(
    driver: &str,
    ldflags: &[&str],
    objects: &[PathBuf],
    whole_archive: Option<&Path>,
    libs: &[&str],
    output: &Path,
) -> Result<bool> {
    let mut command = vec![driver.to_owned()];
    command.extend(ldflags.iter().map(|&f| f.to_owned()));
    command.extend(objects.iter().map(|o| o.display().to_string()));
    let mut inputs = objects.to_vec();
    if let Some(archive) = whole_archive {
        command.push("-Wl,--whole-archive".to_owned());
        command.push(archive.display().to_string());
        command.push("-Wl,--no-whole-archive".to_owned());
        inputs.push(archive.to_path_buf());
    }
    command.extend(libs.iter().map(|&l| l.to_owned()));
    command.extend(["-o".to_owned(), output.display().to_string()]);
    if up_to_date(output, &command, &inputs) {
        return Ok(false);
    }
    let diagnostics = run_tool(&command)?;
    if !diagnostics.trim().is_empty() {
        println!("{}", diagnostics.trim_end());
    }
    record_command(output, &command)?;
    Ok(true)
}

/// Makes the static archive `output` of `members` with `ar` (with a
/// symbol index) unless it is up to date. Returns whether it made it.
pub fn archive(members: &[PathBuf], output: &Path) -> Result<bool> {
    let mut command = vec![
        "ar".to_owned(),
        "rcs".to_owned(),
        output.display().to_string(),
    ];
    command.extend(members.iter().map(|m| m.display().to_string()));
    if up_to_date(output, &command, members) {
        return Ok(false);
    }
    // `ar r` adds to an existing archive: start from nothing.
    match fs::remove_file(output) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            return Err(err).with_context(|| format!("cannot remove {}", output.display()));
        }
        _ => {}
    }
    run_tool(&command)?;
    record_command(output, &command)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dep_file_parsing() {
        let text = "/t/a.o: /src/a.c /inc/a\\ b.h \\\n /inc/c.h\n";
        let deps = parse_dep_file(text);
        assert_eq!(
            deps,
            [
                PathBuf::from("/src/a.c"),
                PathBuf::from("/inc/a b.h"),
                PathBuf::from("/inc/c.h")
            ]
        );
    }
}
