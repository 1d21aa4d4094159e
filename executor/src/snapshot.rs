//! Fork checkpoints: the snapshot recovery policy.
//!
//! Before a request runs JIT'd code the executor forks a copy of itself
//! that sleeps on a "wake" pipe. If the request finishes, the executor
//! writes `D` to the pipe and the copy `_exit`s (without running any exit
//! handler). If the executor dies instead (crash, timeout, `kill`), the pipe
//! reaches end-of-file and the copy *takes over*: it has the state from
//! before the request, inherits the channel, announces itself and serves
//! the next requests.
//!
//! The copy is made with `clone` and no exit signal rather than `fork`:
//! JIT'd code calling `wait()` must not see (or block on) a child it never
//! made, a `SIGCHLD` handler must not fire for it, and `pthread_atfork`
//! handlers registered by JIT'd code must not run. Such a child is reaped
//! with `__WALL`; once orphaned, the kernel turns it into an ordinary child
//! of its new parent (exit signal `SIGCHLD`). Because glibc's `fork` is
//! bypassed, the copy keeps the executor's cached thread id, which is also
//! what every lock taken before the fork recorded.
//!
//! A checkpoint is unsafe, and skipped, when the process has more than one
//! thread (only the calling thread would be copied) or a writable shared
//! mapping (a rollback would still see the crashed call's writes there).

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};

use crate::protocol::CheckpointSkip;
use crate::sys;
use crate::sys::process::{ForkResult, Pid};

/// Write end of the live checkpoint's wake pipe, -1 when there is none.
/// Global so the `exit` path can discard the checkpoint without the server.
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

/// What [`Snapshots::take`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// This is the executor; a checkpoint with this pid sleeps.
    Checkpoint(u32),
    /// No checkpoint, for this reason.
    Skipped(CheckpointSkip),
    /// This is the checkpoint and the executor has died: serve from here.
    Resumed,
}

/// The executor's checkpoints: at most one live, at most one exited and
/// not yet reaped.
#[derive(Debug, Default)]
pub struct Snapshots {
    live: Option<Pid>,
    unreaped: Option<Pid>,
}

impl Snapshots {
    /// Takes a checkpoint if it is safe. Returns in two processes when it
    /// succeeds: in the executor at once, and in the checkpoint only if the
    /// executor dies before [`Snapshots::discard`].
    pub fn take(&mut self) -> Taken {
        self.discard();
        self.reap();
        if let Some(reason) = unsafe_reason() {
            return Taken::Skipped(reason);
        }
        let Ok((wake_rd, wake_wr)) = sys::io::pipe() else {
            return Taken::Skipped(CheckpointSkip::ForkFailed);
        };
        // SAFETY: the process has one thread (checked above), so no lock is
        // held by another thread in the copy (see the module docs for why a
        // checkpoint is not a fork).
        match unsafe { sys::process::checkpoint() } {
            // The pipe closes as it drops.
            Err(_) => Taken::Skipped(CheckpointSkip::ForkFailed),
            Ok(ForkResult::Child) => sleep_in_checkpoint(wake_rd, wake_wr),
            Ok(ForkResult::Parent { child }) => {
                // The read end belongs to the checkpoint now.
                drop(wake_rd);
                WAKE_FD.store(wake_wr.into_raw_fd(), Ordering::Release);
                self.live = Some(child);
                Taken::Checkpoint(child.as_raw() as u32)
            }
        }
    }

    /// Tells the live checkpoint (if any) to exit; it is reaped later.
    pub fn discard(&mut self) {
        discard_live();
        if let Some(pid) = self.live.take() {
            self.unreaped = Some(pid);
        }
    }

    /// Waits for a discarded checkpoint (it exits at once when told).
    pub fn reap(&mut self) {
        if let Some(pid) = self.unreaped.take() {
            // ECHILD (someone else reaped it) ends the wait too.
            let _ = sys::process::reap(pid);
        }
    }
}

/// Discards the live checkpoint from anywhere (the `exit` path): writes its
/// `D` byte and closes the pipe. Async-signal-safe.
pub fn discard_live() {
    let fd = WAKE_FD.swap(-1, Ordering::AcqRel);
    if fd >= 0 {
        // SAFETY: `fd` is the wake pipe's write end, owned by WAKE_FD until
        // this swap, so this is now its only owner; dropping it closes it.
        let wake = unsafe { OwnedFd::from_raw_fd(fd) };
        // The checkpoint reads one byte; a full pipe cannot happen with one
        // byte in a fresh pipe.
        let _ = sys::io::write(wake.as_raw_fd(), b"D");
    }
}

/// The checkpoint's side: sleep until told to go (`D`) or until the
/// executor is gone (end-of-file), then take over.
fn sleep_in_checkpoint(wake_rd: OwnedFd, wake_wr: OwnedFd) -> Taken {
    // The write end is the executor's; closing our copy makes its death
    // visible as end-of-file.
    drop(wake_wr);
    let mut byte = [0u8];
    let read = loop {
        match sys::io::read(wake_rd.as_raw_fd(), &mut byte) {
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            read => break read,
        }
    };
    if !matches!(read, Ok(0)) {
        // Discarded (or the pipe failed): leave without exit handlers or
        // stdio flushing; this copy must have no visible effect.
        sys::exit::exit_immediately(0);
    }
    // No parent-death signal here: after the hand-over our parent is
    // whichever live thread of the subreaper the kernel picked, and the
    // signal would fire when that thread (not the controller) exits. A
    // controller that goes away shows as end-of-file on the request channel.
    drop(wake_rd);
    Taken::Resumed
}

/// Why a checkpoint now would be unsafe, if it would. Unknown (no `/proc`)
/// counts as unsafe.
pub fn unsafe_reason() -> Option<CheckpointSkip> {
    match thread_count() {
        Some(1) => {}
        _ => return Some(CheckpointSkip::Threads),
    }
    match has_writable_shared_mapping() {
        Some(false) => None,
        _ => Some(CheckpointSkip::SharedWritable),
    }
}

/// Reads a `/proc` file chunk by chunk into a stack buffer, feeding each
/// chunk to `scan` (which returns `false` to stop). `None` if unreadable.
fn scan_proc_file(path: &str, mut scan: impl FnMut(&[u8]) -> bool) -> Option<()> {
    let mut file = std::fs::File::open(path).ok()?;
    let mut buf = [0u8; 4096];
    loop {
        match file.read(&mut buf) {
            Ok(0) => return Some(()),
            Ok(n) if !scan(&buf[..n]) => return Some(()),
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
}

/// `Threads:` of `/proc/self/status`.
fn thread_count() -> Option<u64> {
    const KEY: &[u8] = b"\nThreads:";
    // The field sits in the first kilobyte or two; keep a sliding tail so a
    // key split across reads is still found.
    let mut window = [0u8; 8192];
    let mut len = 0;
    scan_proc_file("/proc/self/status", |chunk| {
        let take = chunk.len().min(window.len() - len);
        window[len..len + take].copy_from_slice(&chunk[..take]);
        len += take;
        len < window.len()
    })?;
    let text = &window[..len];
    let at = text.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let digits = text[at..]
        .iter()
        .skip_while(|b| b.is_ascii_whitespace())
        .take_while(|b| b.is_ascii_digit());
    let mut count: u64 = 0;
    let mut any = false;
    for &d in digits {
        count = count.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
        any = true;
    }
    any.then_some(count)
}

/// Whether `/proc/self/maps` lists a mapping with permissions `?w?s`.
fn has_writable_shared_mapping() -> Option<bool> {
    let mut scanner = MapsScanner::default();
    scan_proc_file("/proc/self/maps", |chunk| !scanner.feed(chunk))?;
    Some(scanner.found)
}

/// Finds a writable shared mapping in `/proc/*/maps` text fed in chunks of
/// any size. A line is `start-end perms offset dev inode path`.
#[derive(Default)]
struct MapsScanner {
    /// `None` while in the address field; `Some(i)` after it, `i` bytes
    /// into the permissions (past 4: the rest of the line).
    field: Option<usize>,
    perms: [u8; 4],
    found: bool,
}

impl MapsScanner {
    /// Consumes a chunk; returns whether a match has been found so far.
    fn feed(&mut self, chunk: &[u8]) -> bool {
        for &b in chunk {
            match (self.field, b) {
                (_, b'\n') => self.field = None,
                (None, b' ') => self.field = Some(0),
                (None, _) => {}
                (Some(i), _) if i < 4 => {
                    self.perms[i] = b;
                    if i == 3 && self.perms[1] == b'w' && self.perms[3] == b's' {
                        self.found = true;
                    }
                    self.field = Some(i + 1);
                }
                (Some(_), _) => {}
            }
        }
        self.found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_scanner_finds_only_writable_shared_mappings() {
        let text: &[u8] = b"55d0-55e0 r-xp 00000000 08:01 1 /bin/x\n\
            7f00-7f10 r--s 00000000 00:05 2 /memfd:solder-slab (deleted)\n\
            7f10-7f20 ---s 00000000 00:05 2 /memfd:solder-slab (deleted)\n\
            7f20-7f30 rw-p 00000000 00:00 0 \n";
        let shared = b"7f30-7f40 rw-s 00000000 00:05 2 /dev/shm/x\n";
        for split in 0..text.len() {
            let mut s = MapsScanner::default();
            s.feed(&text[..split]);
            assert!(!s.feed(&text[split..]), "split at {split}");
            let mut s = MapsScanner::default();
            s.feed(&text[..split]);
            s.feed(&text[split..]);
            assert!(s.feed(shared), "split at {split}");
        }
    }

    #[test]
    fn reads_thread_count_and_maps() {
        assert!(thread_count().unwrap() >= 1);
        let p = sys::memory::map_shared(None, 4096).unwrap();
        assert_eq!(has_writable_shared_mapping(), Some(true));
        // SAFETY: unmapping the mapping made above, which nothing uses.
        unsafe { sys::memory::unmap(p as u64, 4096) }.unwrap();
    }
}
