//! Forwarded output: when the controller's `Hello` asks for it
//! (`forward_output`), the program's stdout and stderr (descriptors 1 and
//! 2) are pipes that the executor reads, and what the program writes
//! travels to the controller as [`Reply::Output`](crate::protocol::Reply)
//! frames on the connection: a program run over TCP prints on the
//! controller's side.
//!
//! **Order.** Every other frame the executor sends (replies through
//! [`send`]; the crash handler's `Crashed` and the exit path's `Exited`
//! after [`seize`]) goes out after the output the pipes hold at that
//! moment, so what a call wrote before it ended comes before its outcome.
//! Reading the pipes and writing frames is one critical section: a thread
//! does either only while it holds the *connection lock*, a spin lock in
//! an atomic (no allocation, so a signal handler may take it). Frames
//! never interleave, and no output read before a frame goes after it.
//!
//! **No deadlock.** JIT'd code runs on the server's thread; a program that
//! prints more than a pipe holds while the controller waits for the call
//! would block for good if nothing read the pipes meanwhile. A *drainer*
//! thread does: it sleeps in `poll` on the pipes and forwards what comes,
//! at any time, with every signal blocked (so the call timer's `SIGALRM`
//! and other process-directed signals land in the threads that run JIT'd
//! code, whose program counter a crash record reports). A snapshot
//! checkpoint must be taken with one thread ([`crate::snapshot`]), so the
//! drainer is stopped ([`pause`]) before one is taken and started again
//! after ([`resume`]), also in a checkpoint that takes over.
//!
//! An `Output` frame carries at most `PIPE_BUF` bytes in all, so over a
//! pipe transport it is one atomic `write(2)`: an executor killed while it
//! forwards leaves no half frame in front of its checkpoint's `Resumed`.
//! The executor's own diagnostics keep going to its own stderr
//! ([`crate::transport::diag`]). Output the program leaves in C stdio
//! buffers is flushed before replies and `Exited`, not after a crash (a
//! native program loses it too).

use std::cell::UnsafeCell;
use std::ffi::c_int;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::protocol::{OUTPUT_HEADER_LEN, Stream, output_frame_header};
use crate::sys;
use crate::transport;

/// The most bytes of output one frame carries: the whole frame is then
/// `PIPE_BUF` (4096) bytes, one atomic write to a pipe.
const CHUNK: usize = 4096 - OUTPUT_HEADER_LEN;
/// The most output a reply, `Exited` or `Crashed` waits for: more than a
/// pipe holds, so everything written before it goes first, yet bounded
/// when some process keeps writing.
const BEFORE_A_FRAME: usize = 4 << 20;
/// The most the drainer forwards in one hold of the lock (so a reply
/// waits for little).
const PER_HOLD: usize = 16 * CHUNK;

/// Read ends of the pipes behind descriptors 1 and 2; -1 when the output
/// is not forwarded.
static STDOUT_PIPE: AtomicI32 = AtomicI32::new(-1);
static STDERR_PIPE: AtomicI32 = AtomicI32::new(-1);
/// The connection's descriptor that `Output` frames go to.
static CONNECTION: AtomicI32 = AtomicI32::new(-1);
/// The drainer's wake-up pipe (written to stop it).
static WAKE_READ: AtomicI32 = AtomicI32::new(-1);
static WAKE_WRITE: AtomicI32 = AtomicI32::new(-1);
/// Set while the drainer is asked to stop.
static STOP: AtomicBool = AtomicBool::new(false);
/// The connection lock: the thread id of its holder, 0 when free.
static HOLDER: AtomicI32 = AtomicI32::new(0);
/// The running drainer.
static DRAINER: Mutex<Option<JoinHandle<()>>> = Mutex::new(None);
/// The drainer's thread id, which it stores as it starts.
static DRAINER_TID: AtomicI32 = AtomicI32::new(0);

/// The buffer pipe output is read into, behind room for the frame's
/// header: static, so that a signal handler on its small alternate stack
/// can forward too.
struct Scratch(UnsafeCell<[u8; OUTPUT_HEADER_LEN + CHUNK]>);

// SAFETY: only the holder of the connection lock touches the buffer
// (`drain` requires the lock), so it is never shared between threads.
unsafe impl Sync for Scratch {}

static SCRATCH: Scratch = Scratch(UnsafeCell::new([0; OUTPUT_HEADER_LEN + CHUNK]));

/// Whether the program's output is forwarded.
pub fn forwarding() -> bool {
    STDOUT_PIPE.load(Ordering::Acquire) >= 0
}

/// Forwards the program's output on `connection` from now on: descriptors
/// 1 and 2 become pipes (the executor keeps its own stderr for its
/// diagnostics), and the drainer starts. Call once, while the process has
/// one thread (before the session's first request).
pub fn forward(connection: c_int) -> io::Result<()> {
    if let Ok(own) = sys::io::duplicate(2) {
        transport::set_diag_fd(own.into_raw_fd());
    }
    let (out_read, out_write) = sys::io::pipe()?;
    let (err_read, err_write) = sys::io::pipe()?;
    let (wake_read, wake_write) = sys::io::pipe()?;
    for fd in [&out_read, &err_read, &wake_read] {
        sys::io::set_nonblocking(fd.as_raw_fd())?;
    }
    sys::io::redirect_standard_output(out_write.as_fd(), err_write.as_fd())?;
    // The program's write ends are descriptors 1 and 2 now; the read ends
    // live as long as the process.
    drop((out_write, err_write));
    let keep = |fd: OwnedFd, into: &AtomicI32| into.store(fd.into_raw_fd(), Ordering::Release);
    keep(wake_read, &WAKE_READ);
    keep(wake_write, &WAKE_WRITE);
    CONNECTION.store(connection, Ordering::Release);
    keep(err_read, &STDERR_PIPE);
    keep(out_read, &STDOUT_PIPE);
    start_drainer()
}

/// Sends one encoded frame on `connection`, after the output waiting in
/// the pipes when output is forwarded.
pub fn send(connection: c_int, frame: &[u8]) -> io::Result<()> {
    if !forwarding() {
        return transport::write_all(connection, frame);
    }
    // `None` only in a thread that holds the lock already, which a reply
    // is never sent from.
    if let Some(held) = take_lock(None) {
        drain(connection, BEFORE_A_FRAME, &held)?;
    }
    transport::write_all(connection, frame)
}

/// Takes the connection for good and forwards what the pipes hold, for a
/// last frame (`Crashed`, `Exited`) that the caller then writes: no
/// `Output` frame can follow it. Waits up to `patience` (`None`: for as
/// long as it takes) for a holder of the lock; a thread that already holds
/// it (a signal interrupted it mid-frame) does not wait. Async-signal-safe
/// and allocation-free; nothing when output is not forwarded.
pub fn seize(connection: c_int, patience: Option<Duration>) {
    if !forwarding() {
        return;
    }
    if let Some(held) = take_lock(patience) {
        let _ = drain(connection, BEFORE_A_FRAME, &held);
        // Never released: the process is ending.
        std::mem::forget(held);
    }
}

/// Holding the connection lock; dropping it releases the lock.
struct Held;

impl Drop for Held {
    fn drop(&mut self) {
        HOLDER.store(0, Ordering::Release);
    }
}

/// Takes the connection lock, yielding and then sleeping briefly between
/// tries while another thread holds it (a holder may wait for the
/// controller to read). `None` when this thread holds it already or
/// `patience` ran out. Async-signal-safe (`gettid`, `sched_yield`,
/// `nanosleep`, `clock_gettime`).
fn take_lock(patience: Option<Duration>) -> Option<Held> {
    let me = sys::process::thread_id();
    let start = Instant::now();
    let mut tries = 0u32;
    loop {
        match HOLDER.compare_exchange(0, me, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Some(Held),
            Err(holder) if holder == me => return None,
            Err(_) => {}
        }
        if patience.is_some_and(|p| start.elapsed() >= p) {
            return None;
        }
        tries = tries.saturating_add(1);
        if tries < 100 {
            std::thread::yield_now();
        } else {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

/// What one read of a pipe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// This many bytes, forwarded.
    Sent(usize),
    /// Nothing now.
    Empty,
    /// End of input: every write end is closed (the program closed the
    /// descriptor), or the pipe is gone.
    Ended,
}

/// Forwards one read (at most `room` bytes) of `pipe` as an `Output`
/// frame of `stream`. The caller holds the connection lock.
fn forward_chunk(
    connection: c_int,
    pipe: c_int,
    stream: Stream,
    room: usize,
    _held: &Held,
) -> io::Result<Chunk> {
    // SAFETY: the caller holds the connection lock (`_held`), the only
    // way to the buffer, so no other reference to it exists.
    let scratch = unsafe { &mut *SCRATCH.0.get() };
    let room = room.min(CHUNK);
    let read = loop {
        match sys::io::read(
            pipe,
            &mut scratch[OUTPUT_HEADER_LEN..OUTPUT_HEADER_LEN + room],
        ) {
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            read => break read,
        }
    };
    match read {
        Ok(0) => Ok(Chunk::Ended),
        Ok(n) => {
            scratch[..OUTPUT_HEADER_LEN].copy_from_slice(&output_frame_header(stream, n));
            transport::write_all(connection, &scratch[..OUTPUT_HEADER_LEN + n])?;
            Ok(Chunk::Sent(n))
        }
        Err(err) if err.kind() == io::ErrorKind::WouldBlock => Ok(Chunk::Empty),
        Err(_) => Ok(Chunk::Ended),
    }
}

/// The forwarded streams and their pipes (-1 when none).
fn pipes() -> [(c_int, Stream); 2] {
    [
        (STDOUT_PIPE.load(Ordering::Acquire), Stream::Stdout),
        (STDERR_PIPE.load(Ordering::Acquire), Stream::Stderr),
    ]
}

/// Forwards what the pipes hold until both are empty (taking turns), or
/// `budget` bytes went. The caller holds the connection lock (`held`).
fn drain(connection: c_int, mut budget: usize, held: &Held) -> io::Result<()> {
    loop {
        let mut moved = false;
        for (pipe, stream) in pipes() {
            if pipe < 0 || budget == 0 {
                continue;
            }
            if let Chunk::Sent(n) = forward_chunk(connection, pipe, stream, budget, held)? {
                budget -= n;
                moved = true;
            }
        }
        if !moved {
            return Ok(());
        }
    }
}

/// Starts the drainer thread, with every signal blocked in it.
fn start_drainer() -> io::Result<()> {
    let drainer = sys::signal::with_all_blocked(|| {
        std::thread::Builder::new()
            .name("solder-output".into())
            .stack_size(64 << 10)
            .spawn(drain_until_stopped)
    })?;
    *DRAINER.lock().unwrap_or_else(|e| e.into_inner()) = Some(drainer);
    Ok(())
}

/// The drainer: waits for output and forwards it, a little at a time,
/// until [`pause`] stops it or the connection fails.
fn drain_until_stopped() {
    DRAINER_TID.store(sys::process::thread_id(), Ordering::Release);
    let connection = CONNECTION.load(Ordering::Acquire);
    let wake = WAKE_READ.load(Ordering::Acquire);
    // Pipes at end of input are polled no more (they would always be
    // ready).
    let mut open = pipes().map(|(pipe, _)| pipe);
    loop {
        let borrow = |fd: c_int| {
            // SAFETY: the pipes' read ends and the wake pipe stay open for
            // the life of the process (never closed after `forward`), so
            // the borrow cannot outlive them.
            (fd >= 0).then(|| unsafe { BorrowedFd::borrow_raw(fd) })
        };
        let ready =
            match sys::spawn::poll_readable([borrow(open[0]), borrow(open[1]), borrow(wake)], -1) {
                Ok(ready) => ready,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
        if ready[2] || STOP.load(Ordering::Acquire) {
            return;
        }
        let Some(held) = take_lock(None) else {
            return;
        };
        for (i, (_, stream)) in pipes().into_iter().enumerate() {
            let mut left = PER_HOLD;
            while ready[i] && open[i] >= 0 && left > 0 {
                match forward_chunk(connection, open[i], stream, left, &held) {
                    Ok(Chunk::Sent(n)) => left -= n,
                    Ok(Chunk::Empty) => break,
                    Ok(Chunk::Ended) => open[i] = -1,
                    // The controller is gone: the session is ending.
                    Err(_) => return,
                }
            }
        }
        drop(held);
    }
}

/// Stops the drainer (before a snapshot checkpoint, which must be taken
/// with one thread) and waits until the kernel no longer counts its
/// thread. Nothing when output is not forwarded.
pub fn pause() {
    let drainer = DRAINER.lock().unwrap_or_else(|e| e.into_inner()).take();
    let Some(drainer) = drainer else {
        return;
    };
    STOP.store(true, Ordering::Release);
    let _ = sys::io::write(WAKE_WRITE.load(Ordering::Acquire), b"s");
    let _ = drainer.join();
    let mut byte = [0u8; 1];
    let _ = sys::io::read(WAKE_READ.load(Ordering::Acquire), &mut byte);
    STOP.store(false, Ordering::Release);
    // A joined thread is still counted until the kernel has released it,
    // a moment after `join` returns.
    let tid = DRAINER_TID.load(Ordering::Acquire);
    let deadline = Instant::now() + Duration::from_secs(1);
    while sys::process::thread_exists(tid) && Instant::now() < deadline {
        std::thread::yield_now();
    }
}

/// Starts the drainer again after [`pause`] (in the executor once its
/// checkpoint is taken, or in the checkpoint that takes over). Nothing
/// when output is not forwarded.
pub fn resume() {
    let stopped = DRAINER.lock().unwrap_or_else(|e| e.into_inner()).is_none();
    if forwarding()
        && stopped
        && let Err(err) = start_drainer()
    {
        transport::diag(&format!(
            "cannot start the output drainer ({err}): output waits for the next reply"
        ));
    }
}
