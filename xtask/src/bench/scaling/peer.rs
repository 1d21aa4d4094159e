//! llvm-jitlink on the scaling programs: whether it runs at a size, and
//! what to say when it does not. It is not run above a size where it took
//! more than [`LIMIT_S`]; where it crashes with `SIGSEGV` (its linking
//! recurses once per object, and 2,000 objects overflow the default
//! 8 MiB stack), it is run again with an unlimited stack
//! (`sh -c 'ulimit -s unlimited && exec …'`), so the table shows both.

use std::ffi::OsString;
use std::path::Path;

use anyhow::Result;

use crate::bench::measure::{Ending, Run};
use crate::bench::{Schedule, Setup, alternate, ms, peer_summary};

/// llvm-jitlink is not run at sizes above one where its median exceeded this.
pub(super) const LIMIT_S: f64 = 20.0;

/// llvm-jitlink at one size.
pub(super) struct Peer {
    /// Median time and peak (ms, MiB), or why there are none.
    pub outcome: std::result::Result<(f64, f64), String>,
    /// The outcome is from runs with an unlimited stack, after crashes
    /// with the default one.
    pub unlimited_stack: bool,
}

impl Peer {
    /// Its time's table cell.
    pub fn time_cell(&self) -> String {
        match (&self.outcome, self.unlimited_stack) {
            (Ok((t, _)), false) => ms(*t),
            (Ok((t, _)), true) => format!(
                "crashes (SIGSEGV) with the default {} stack; {} with an unlimited one",
                stack_limit(),
                ms(*t)
            ),
            (Err(why), false) => why.clone(),
            (Err(why), true) => format!("{why}, with the default stack and an unlimited one"),
        }
    }
}

/// Whether llvm-jitlink runs at the next size, after `before`: `Ok(())`,
/// or why not.
pub(super) fn verdict(cx: &Setup, before: &[(f64, &Peer)]) -> std::result::Result<(), String> {
    if cx.peer.is_none() {
        return Err("not installed".into());
    }
    let slow = before.iter().find_map(|(mb, p)| match p.outcome {
        Ok((t, _)) if t > LIMIT_S * 1e3 => Some((mb, t / 1e3)),
        _ => None,
    });
    match slow {
        Some((mb, seconds)) => Err(format!(
            "not measured above {mb:.1} MB: takes {seconds:.1} s there"
        )),
        None => Ok(()),
    }
}

/// What llvm-jitlink's `runs` amount to; after a `SIGSEGV`, as many runs
/// again (`rounds`) of `llvm-jitlink ARGS` in `cwd` with an unlimited stack.
pub(super) fn summarize(
    cx: &Setup,
    runs: &[Run],
    args: &[OsString],
    cwd: &Path,
    rounds: usize,
) -> Result<Peer> {
    let crashed = runs
        .iter()
        .any(|r| r.ending == Ending::Signaled(libc::SIGSEGV));
    let Some(program) = cx.peer.as_ref().filter(|_| crashed) else {
        return Ok(Peer {
            outcome: peer_summary(runs),
            unlimited_stack: false,
        });
    };
    let sh = Path::new("/bin/sh");
    let mut wrapped: Vec<OsString> = vec![
        "-c".into(),
        "ulimit -s unlimited && exec \"$0\" \"$@\"".into(),
        program.clone().into_os_string(),
    ];
    wrapped.extend(args.iter().cloned());
    let again = alternate(cx, &[(sh, wrapped, cwd)], Schedule::interleaved(rounds))?;
    Ok(Peer {
        outcome: peer_summary(&again[0]),
        unlimited_stack: true,
    })
}

/// This process's stack limit, as `ulimit -s` would say it.
fn stack_limit() -> String {
    // SAFETY: an all-zero rlimit is a valid value for getrlimit to overwrite.
    let mut limit: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: `limit` is valid for writes.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_STACK, &mut limit) };
    match (rc, limit.rlim_cur) {
        (0, libc::RLIM_INFINITY) => "unlimited".into(),
        (0, bytes) => format!("{} MiB", bytes / (1024 * 1024)),
        _ => "(unknown)".into(),
    }
}
