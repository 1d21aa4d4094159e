//! Running one measured process: wall time from spawn to reap, peak
//! resident memory from `wait4`'s rusage, and how it ended. Runs of the
//! contestants of one measure are alternated, so that both see the same
//! machine, and summarized by their median.

use std::ffi::OsStr;
use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// How a measured process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Exited(i32),
    Signaled(i32),
}

impl std::fmt::Display for Ending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ending::Exited(code) => write!(f, "exit {code}"),
            Ending::Signaled(signal) => write!(f, "killed by signal {signal}"),
        }
    }
}

/// One measured run.
#[derive(Debug, Clone)]
pub struct Run {
    pub wall: Duration,
    pub max_rss_kib: u64,
    pub ending: Ending,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Runs `program args` in `cwd` with stdout and stderr captured in files
/// under `scratch` (no pipe-reading thread competes with the process).
pub fn run<S: AsRef<OsStr>>(program: &Path, args: &[S], cwd: &Path, scratch: &Path) -> Result<Run> {
    run_env(program, args, &[], cwd, scratch)
}

/// [`run`] with `env` (name, value) added to the inherited environment
/// (`SOLDER_THREADS=1` for a serial link).
pub fn run_env<S: AsRef<OsStr>>(
    program: &Path,
    args: &[S],
    env: &[(&str, &str)],
    cwd: &Path,
    scratch: &Path,
) -> Result<Run> {
    std::fs::create_dir_all(scratch).with_context(|| format!("create {}", scratch.display()))?;
    let out_path = scratch.join("stdout");
    let err_path = scratch.join("stderr");
    let stdout =
        File::create(&out_path).with_context(|| format!("create {}", out_path.display()))?;
    let stderr =
        File::create(&err_path).with_context(|| format!("create {}", err_path.display()))?;
    let start = Instant::now();
    let child = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("cannot start {}", program.display()))?;
    let (ending, max_rss_kib) = reap(&child, program)?;
    let wall = start.elapsed();
    Ok(Run {
        wall,
        max_rss_kib,
        ending,
        stdout: std::fs::read(&out_path)?,
        stderr: std::fs::read(&err_path)?,
    })
}

/// Waits for `child` (started from `program`, never waited on through
/// std's `Child`): how it ended and its peak resident memory in KiB.
pub fn reap(child: &Child, program: &Path) -> Result<(Ending, u64)> {
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    let reaped = loop {
        // SAFETY: `pid` is our child, not yet reaped (std's `Child` is
        // never waited on); `status` and `usage` are valid for writes.
        let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if rc >= 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            break rc;
        }
    };
    anyhow::ensure!(
        reaped == pid,
        "wait4 for {} failed: {}",
        program.display(),
        std::io::Error::last_os_error()
    );
    let ending = if libc::WIFSIGNALED(status) {
        Ending::Signaled(libc::WTERMSIG(status))
    } else {
        Ending::Exited(libc::WEXITSTATUS(status))
    };
    Ok((ending, usage.ru_maxrss as u64))
}

/// The median of some values (the upper one of an even count).
pub fn median<T: Copy + PartialOrd>(values: &[T]) -> T {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.partial_cmp(b).expect("comparable"));
    sorted[sorted.len() / 2]
}

/// The median wall time of runs, in milliseconds.
pub fn median_ms(runs: &[Run]) -> f64 {
    median(
        &runs
            .iter()
            .map(|r| r.wall.as_secs_f64() * 1e3)
            .collect::<Vec<_>>(),
    )
}

/// The median peak resident memory of runs, in MiB.
pub fn median_rss_mib(runs: &[Run]) -> f64 {
    median(
        &runs
            .iter()
            .map(|r| r.max_rss_kib as f64 / 1024.0)
            .collect::<Vec<_>>(),
    )
}
