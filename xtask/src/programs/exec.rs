//! Running a program the way a shell would, with a time limit, and
//! comparing two runs.
//!
//! Each run gets its own process group, stdin from `/dev/null`, and captured
//! stdout and stderr. When it ends (or its time is up) the whole group is
//! killed, so a stray grandchild can neither hang the tier nor outlive it.

use std::ffi::OsStr;
use std::fmt;
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use similar::TextDiff;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Exited(i32),
    Signaled(i32),
    TimedOut,
}

impl Status {
    fn from_exit_status(status: ExitStatus) -> Self {
        match (status.code(), status.signal()) {
            (Some(code), _) => Status::Exited(code),
            (None, Some(signal)) => Status::Signaled(signal),
            (None, None) => Status::Exited(-1),
        }
    }

    /// The status as a shell reports it (`$?`): death by a signal is
    /// 128 + signal.
    pub fn shell_code(self) -> Option<i32> {
        match self {
            Status::Exited(code) => Some(code),
            Status::Signaled(signal) => Some(128 + signal),
            Status::TimedOut => None,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Status::Exited(code) => write!(f, "exit {code}"),
            Status::Signaled(signal) => {
                write!(
                    f,
                    "signal {signal} ({}, exit {})",
                    signal_name(signal),
                    128 + signal
                )
            }
            Status::TimedOut => write!(f, "timed out"),
        }
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGABRT => "SIGABRT",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGPIPE => "SIGPIPE",
        _ => "?",
    }
}

/// The result of one run.
#[derive(Debug)]
pub struct Outcome {
    pub status: Status,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub elapsed: Duration,
}

/// Runs `program` with `args` in `cwd`, killing it after `timeout`.
pub fn run<S: AsRef<OsStr>>(
    program: &Path,
    args: &[S],
    cwd: &Path,
    timeout: Duration,
) -> Result<Outcome> {
    let start = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {}", program.display()))?;
    let pgid = child.id() as libc::pid_t;

    let mut stdout_pipe = child.stdout.take().expect("stdout is piped");
    let mut stderr_pipe = child.stderr.take().expect("stderr is piped");
    let stdout_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout_pipe.read_to_end(&mut buf);
        buf
    });
    let stderr_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr_pipe.read_to_end(&mut buf);
        buf
    });

    let mut timed_out = false;
    while !has_exited(pgid)? {
        if start.elapsed() >= timeout {
            timed_out = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let elapsed = start.elapsed();
    // The child is not reaped yet (a zombie at worst), so its process group
    // id cannot have been reused: kill whatever the program left behind in
    // its group, so that the pipes close and the readers finish.
    kill_group(pgid);
    let status = child.wait().context("cannot wait for a child")?;
    let status = if timed_out {
        Status::TimedOut
    } else {
        Status::from_exit_status(status)
    };
    let stdout = stdout_reader.join().unwrap_or_default();
    let stderr = stderr_reader.join().unwrap_or_default();
    Ok(Outcome {
        status,
        stdout,
        stderr,
        elapsed,
    })
}

/// Whether the child `pid` has ended, without reaping it.
fn has_exited(pid: libc::pid_t) -> Result<bool> {
    // SAFETY: waitid only writes into the zeroed siginfo we pass; WNOWAIT
    // leaves the child waitable for `Child::wait`.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let rc = libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        );
        if rc != 0 {
            return Err(std::io::Error::last_os_error()).context("waitid failed");
        }
        Ok(info.si_pid() != 0)
    }
}

/// Sends SIGKILL to the process group we created for a child.
fn kill_group(pgid: libc::pid_t) {
    // SAFETY: kill(2) with a negative pid signals the process group `pgid`,
    // which is the group created for our own child (`process_group(0)`).
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

/// A unified diff of two outputs, at most `max_lines` lines of it.
pub fn diff(expected: &[u8], actual: &[u8], max_lines: usize) -> String {
    let expected = String::from_utf8_lossy(expected);
    let actual = String::from_utf8_lossy(actual);
    let diff = TextDiff::from_lines(&*expected, &*actual);
    let text = diff
        .unified_diff()
        .context_radius(2)
        .header("native", "solder")
        .to_string();
    let mut lines: Vec<&str> = text.lines().collect();
    if lines.len() > max_lines {
        let more = lines.len() - max_lines;
        lines.truncate(max_lines);
        let mut out = lines.join("\n");
        out.push_str(&format!("\n... ({more} more diff lines)"));
        out
    } else {
        lines.join("\n")
    }
}

/// The last `max_lines` lines of some output, for a failure report.
pub fn tail(bytes: &[u8], max_lines: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().collect();
    let skip = lines.len().saturating_sub(max_lines);
    let mut out = String::new();
    if skip > 0 {
        out.push_str(&format!("... ({skip} lines before)\n"));
    }
    out.push_str(&lines[skip..].join("\n"));
    out
}

/// The first `max_lines` lines of some output, for a failure report.
pub fn head(bytes: &[u8], max_lines: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().collect();
    let mut out = lines[..lines.len().min(max_lines)].join("\n");
    if lines.len() > max_lines {
        out.push_str(&format!("\n... ({} more lines)", lines.len() - max_lines));
    }
    out
}

/// Number of lines of some output (a last line without `\n` counts).
pub fn line_count(bytes: &[u8]) -> usize {
    let newlines = bytes.iter().filter(|&&b| b == b'\n').count();
    newlines + usize::from(!bytes.is_empty() && !bytes.ends_with(b"\n"))
}
