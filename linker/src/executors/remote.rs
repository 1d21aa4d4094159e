//! The remote executor: a `solder-executor` process reached over pipes (the
//! controller spawns it) or TCP (it listens), speaking
//! `executor/PROTOCOL.md`. Optionally the slab is a memfd shared with the
//! executor: the controller writes code in place and only protections
//! travel; writable data stays private to the executor.
//!
//! Crashes are contained: the executor's handler sends one atomic record,
//! `waitpid` (pipe transport) is authoritative about how it died, a pidfd
//! tells the controller it died even though a checkpoint still holds the
//! pipe ends, and a call that outlives its timeout is killed. With the
//! snapshot policy a checkpoint process takes over after a crash. A run's
//! deadline ([`Executor::set_deadline`]) bounds every code-running request
//! by what is left of it.
//!
//! With [`ExecutorOutput::Forward`] (the default over TCP) the program's
//! stdout and stderr come back as `Output` frames, which [`Connection`]
//! writes to this process's stdout and stderr wherever it reads: always
//! before the outcome they preceded.
//!
//! Requests answered by a bare `Ok` (writes, protections, patches, frame and
//! module registrations, `argv`) are not sent at once: they wait in a queue
//! and travel in one `Batch` frame with the next request that needs an
//! answer, so loading a module and calling into it is one round trip. A
//! failure of a queued request is reported by whichever call sent it, its
//! message naming the request; [`Remote::flush`] sends the queue now.

use solder_executor::abi::CallingConvention;
use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use solder_executor::module::Finalizers;
use solder_executor::protocol::{
    self, BATCH_OVERHEAD, CheckpointSkip, ErrorCode, LibraryKind, MAX_BATCH, MAX_FRAME, MAX_NAMES,
    MAX_READ, MAX_WRITE, Recovery, Reply, Request, Stream, capability,
};
use solder_executor::sys::io;
use solder_executor::sys::signal::{SIGALRM, name as signal_name};
use solder_executor::sys::spawn::{self, WaitStatus};
use solder_executor::transport;

use super::{
    Crash, Executor, ExecutorOutput, HostThreadLocal, Outcome, PlacementCode, SymbolInfo,
    ThreadLocals, TlsTemplate, prot_of,
};
use crate::error::LinkError;
use crate::graph::Protection;

/// How to reach the executor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// Spawn `solder-executor` (this path, or found next to the running
    /// program or through `SOLDER_EXECUTOR`) and talk over two pipes.
    Pipe { program: Option<PathBuf> },
    /// Connect to `solder-executor --listen ADDRESS`. The token, if the
    /// executor wants one, is the first line of `SOLDER_EXECUTOR_TOKEN`
    /// (as the executor reads its token file). A peer that
    /// stays silent for `peer_timeout` (no answer to TCP keepalive probes:
    /// its host powered off or is cut off, which sends no FIN or RST) is
    /// lost ([`Outcome::Lost`]), even in the middle of a call without a
    /// timeout.
    Tcp {
        address: String,
        peer_timeout: Duration,
    },
}

impl Transport {
    /// Where the program's output goes unless a session says otherwise:
    /// forwarded over TCP (the executor's terminal may be on another
    /// machine), local over pipes (the executor shares this process's
    /// stdout and stderr).
    pub fn default_output(&self) -> ExecutorOutput {
        match self {
            Transport::Pipe { .. } => ExecutorOutput::Local,
            Transport::Tcp { .. } => ExecutorOutput::Forward,
        }
    }
}

/// The [`Transport::Tcp`] `peer_timeout` of `solder run`.
pub const DEFAULT_PEER_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct RemoteConfig {
    pub transport: Transport,
    pub shared_memory: bool,
    pub recovery: Recovery,
    /// Where the program's stdout and stderr go.
    pub output: ExecutorOutput,
}

/// How long the executor may take to say hello, answer a non-running
/// request, die after its crash record, or resume from a checkpoint.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const DEATH_TIMEOUT: Duration = Duration::from_secs(5);
/// Extra time the controller allows past a call's timeout before it kills
/// the executor itself (the executor's own timer fires first, and says
/// where the code was).
const KILL_GRACE: Duration = Duration::from_millis(500);

/// The queue is sent on its own once its frames would pass this many bytes
/// (half a frame, so the request that finally sends it usually fits too).
const QUEUE_BYTES: usize = MAX_FRAME as usize / 2;
/// ... or once it holds this many requests (one batch slot is left for the
/// request that sends it).
const QUEUE_REQUESTS: u32 = MAX_BATCH - 1;

/// A `Write` of at least this many bytes is streamed rather than queued
/// (see [`Remote::stream_write`]).
const STREAM_FROM: usize = 1 << 20;

/// A streamed `Write` is cut at the multiples of this address (the huge
/// page size): each whole huge page of the range arrives in one frame, so
/// the executor backs it with a huge page as it would the whole write.
const STREAM_CHUNK: u64 = 2 << 20;

/// Streamed frames whose replies may be unread at once. Their replies wait
/// in the reply channel while this process writes the next frames, so
/// their number is bounded well within what the smallest pipe buffer (one
/// page) holds: an `Ok` is 5 bytes, a `Write`'s error a few hundred.
const MAX_STREAMED: u32 = 8;

/// Plain requests (answered by `Ok`) waiting to travel in a `Batch`.
#[derive(Default)]
struct Queue {
    /// Room for a `Batch`'s head ([`BATCH_OVERHEAD`] bytes, made when the
    /// first request is queued), then the requests' frames, length
    /// prefixes included, back to back: exactly the elements of a `Batch`.
    /// The batch is finished in place, without copying what it carries
    /// (a large load's image).
    frames: Vec<u8>,
    count: u32,
    /// Address ranges (page-rounded) the queued memory requests touch.
    ranges: Vec<(u64, u64)>,
}

impl Queue {
    fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn clear(&mut self) {
        self.frames.clear();
        self.count = 0;
        self.ranges.clear();
    }

    /// Whether a queued memory request touches a page of `[start, end)`.
    fn touches(&self, start: u64, end: u64) -> bool {
        self.ranges.iter().any(|&(s, e)| s < end && start < e)
    }
}

/// The executor process, when it runs on this machine.
struct Process {
    pid: i32,
    /// Becomes readable when the process dies (None: kernel without pidfd).
    pidfd: Option<OwnedFd>,
}

impl Process {
    fn watch(pid: i32) -> Process {
        Process {
            pid,
            pidfd: spawn::open_pidfd(pid).ok(),
        }
    }

    /// Waits for the process to end (killing it after `patience`) and
    /// returns its wait status. The controller is its parent, or its
    /// subreaper once a checkpoint took over.
    fn reap(&self, patience: Duration) -> Option<WaitStatus> {
        let start = Instant::now();
        loop {
            // The wait covers a checkpoint that took over, cloned without
            // an exit signal.
            match spawn::try_wait(self.pid) {
                Ok(Some(status)) => return Some(status),
                Ok(None) => {}
                Err(_) => return None,
            }
            if start.elapsed() > patience {
                let _ = spawn::kill(self.pid);
            }
            match &self.pidfd {
                // Sleep until it dies (or 100 ms pass), not a fixed tick.
                Some(fd) => {
                    let _ = spawn::poll_readable([Some(fd.as_fd())], 100);
                }
                None => std::thread::sleep(Duration::from_millis(1)),
            }
        }
    }
}

/// What waiting for a reply produced.
enum Event {
    Frame(Vec<u8>),
    /// The watched process died (its pidfd became readable) and no bytes
    /// are pending.
    Died,
    /// End of file: every writer of the reply channel is gone.
    Closed,
    TimedOut,
    /// The TCP connection failed (why): the peer stayed silent past the
    /// peer timeout, or its host is unreachable.
    Broken(String),
}

/// The two byte streams to the executor and a reassembly buffer.
struct Connection {
    input: std::fs::File,
    output: std::fs::File,
    /// The TCP connection both streams are, to hang up, and how long its
    /// peer may stay silent.
    socket: Option<(std::net::TcpStream, Duration)>,
    buffer: Vec<u8>,
}

impl Connection {
    /// Ends a TCP connection now (both directions), whoever else holds
    /// its descriptors: the executor's watchdog sees the hang-up and ends
    /// the session, even while JIT'd code runs. Nothing over pipes (the
    /// controller kills the executor process instead).
    fn hang_up(&self) {
        if let Some((socket, _)) = &self.socket {
            let _ = socket.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Puts a received frame back in front of everything still unread.
    fn unread(&mut self, frame: &[u8]) {
        let mut again = (frame.len() as u32).to_le_bytes().to_vec();
        again.extend_from_slice(frame);
        self.buffer.splice(0..0, again);
    }

    fn send(&mut self, frame: &[u8]) -> Result<(), LinkError> {
        self.output
            .write_all(frame)
            .map_err(|e| LinkError::Executor(format!("cannot send to the executor: {e}")))
    }

    /// The next whole frame, or why there is none.
    fn recv(
        &mut self,
        deadline: Option<Instant>,
        watch: Option<&Process>,
    ) -> Result<Event, LinkError> {
        // Poll without blocking for a short while first: an answer that
        // comes within the budget then costs no wake-up (see
        // `transport::spin_budget`).
        let spin_budget = transport::spin_budget();
        let spin_start = Instant::now();
        loop {
            if self.buffer.len() >= 4 {
                let n = u32::from_le_bytes(self.buffer[..4].try_into().expect("4 bytes"));
                if n == 0 || n > MAX_FRAME {
                    return Err(LinkError::Executor(format!(
                        "the executor sent a frame of {n} bytes (limit {MAX_FRAME})"
                    )));
                }
                if self.buffer.len() >= 4 + n as usize {
                    let frame = self.buffer[4..4 + n as usize].to_vec();
                    self.buffer.drain(..4 + n as usize);
                    // Forwarded output is written as it comes, whatever
                    // the caller waits for.
                    if protocol::is_output(&frame) {
                        write_output(&frame)?;
                        continue;
                    }
                    return Ok(Event::Frame(frame));
                }
            }
            let spinning = !spin_budget.is_zero() && spin_start.elapsed() < spin_budget;
            let timeout_ms = match deadline {
                _ if spinning => 0,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(Event::TimedOut);
                    }
                    left.as_millis().min(i32::MAX as u128) as i32
                }
                None => -1,
            };
            let pidfd = watch.and_then(|p| p.pidfd.as_ref()).map(|fd| fd.as_fd());
            // Without a pidfd, look at the process every 20 ms.
            let polling = watch.is_some_and(|p| p.pidfd.is_none());
            let timeout_ms = if polling && !(0..=20).contains(&timeout_ms) {
                20
            } else {
                timeout_ms
            };
            let ready = match spawn::poll_readable([Some(self.input.as_fd()), pidfd], timeout_ms) {
                Ok(ready) => ready,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(LinkError::Executor(format!("poll failed: {err}"))),
            };
            if ready[0] {
                let mut chunk = [0u8; 64 * 1024];
                match self.input.read(&mut chunk) {
                    Ok(0) => return Ok(Event::Closed),
                    Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                        return Ok(Event::Closed);
                    }
                    Err(e) if self.socket.is_some() => {
                        let silence = self.socket.as_ref().map_or(Duration::ZERO, |s| s.1);
                        return Ok(Event::Broken(broken(&e, silence)));
                    }
                    Err(e) => {
                        return Err(LinkError::Executor(format!(
                            "cannot read from the executor: {e}"
                        )));
                    }
                }
                continue;
            }
            if ready[1] {
                return Ok(Event::Died);
            }
            if spinning {
                std::thread::yield_now();
                if deadline.is_none_or(|d| Instant::now() < d) {
                    continue;
                }
            }
            if polling
                && let Some(p) = watch
                && !spawn::exists(p.pid)
            {
                return Ok(Event::Died);
            }
            if let Some(d) = deadline
                && Instant::now() >= d
            {
                return Ok(Event::TimedOut);
            }
        }
    }
}

/// The controller's handle on a shared slab: the executor's memfd, opened
/// here (read-write, through `/proc/<pid>/fd/<n>`, right after `Reserved`)
/// and written with `pwrite`. The controller maps none of the executor's
/// memory, so no stray store of its own can reach JIT'd code. Once this
/// descriptor is open the executor closes its own (at the next request)
/// and keeps only a private mapping: this descriptor is the only writable
/// way to the file, which is why the controller also clears released
/// ranges ([`Remote::clear_shared`]).
struct SharedSlab {
    /// Executor address of the slab's first byte.
    base: u64,
    size: u64,
    file: std::fs::File,
    /// Protection the executor's mapping has, per page, as last set.
    executor_prot: HashMap<u64, Protection>,
    /// Released ranges (file offset, size) to clear once the executor has
    /// run their `Release`: still queued, then sent. Clearing earlier would
    /// pull the pages from under requests queued before it (the unwinder
    /// reads a module's frames when deregistering them, and skips frames
    /// whose first word reads as zero).
    holes_queued: Vec<(u64, u64)>,
    holes_sent: Vec<(u64, u64)>,
}

pub struct Remote {
    config: RemoteConfig,
    connection: Connection,
    process: Option<Process>,
    pid: u32,
    page: u64,
    shared: Option<SharedSlab>,
    alive: bool,
    /// Plain requests not sent yet.
    queue: Queue,
    /// Streamed `Write` frames sent whose replies are not read yet
    /// ([`Remote::stream_write`]).
    streamed: u32,
    /// The run's deadline ([`Executor::set_deadline`]).
    deadline: Option<Instant>,
}

/// Finds the `solder-executor` binary: `explicit`, else `SOLDER_EXECUTOR`,
/// else next to the running program (or one level up, from `deps/`).
pub fn executor_program(explicit: &Option<PathBuf>) -> Result<PathBuf, LinkError> {
    if let Some(path) = explicit {
        return Ok(path.clone());
    }
    if let Some(path) = std::env::var_os("SOLDER_EXECUTOR") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe()
        .map_err(|e| LinkError::Executor(format!("cannot find the running program: {e}")))?;
    // Next to `solder`, or one level up from a test binary in `deps/`.
    for dir in exe.ancestors().skip(1).take(2) {
        let candidate = dir.join("solder-executor");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(LinkError::Executor(format!(
        "cannot find `solder-executor` next to {}; build it (`cargo build -p solder-executor`) or set SOLDER_EXECUTOR",
        exe.display()
    )))
}

/// The request pipe's buffer: Linux's default limit for an unprivileged
/// process (`/proc/sys/fs/pipe-max-size`).
const REQUEST_PIPE_BYTES: usize = 1 << 20;

fn pipe() -> Result<(OwnedFd, OwnedFd), LinkError> {
    io::pipe().map_err(|e| LinkError::Executor(format!("pipe: {e}")))
}

fn error_reply(code: ErrorCode, message: String) -> LinkError {
    match code {
        ErrorCode::Memory => LinkError::Memory(message),
        ErrorCode::Library => LinkError::Host(solder_executor::host::HostError::Load {
            name: "(in the executor)".into(),
            reason: message,
        }),
        other => LinkError::Executor(format!("{other:?}: {message}")),
    }
}

/// A thread-local request's `Error { Library }` (the executor's loader
/// refused, in its words) as the typed error about `what`.
fn loader_refusal(error: LinkError, what: String) -> LinkError {
    match error {
        LinkError::Host(solder_executor::host::HostError::Load { reason, .. }) => {
            LinkError::ThreadLocal { what, reason }
        }
        other => other,
    }
}

/// `GLIBC_TUNABLES` for a spawned executor: this process's, with the
/// static TLS surplus added unless it already sets one
/// ([`crate::static_tls`]).
fn static_tls_tunables() -> std::ffi::OsString {
    crate::static_tls::with_surplus(std::env::var_os("GLIBC_TUNABLES"))
}

impl Remote {
    /// Starts (pipe) or reaches (TCP) an executor and shakes hands.
    pub fn connect(config: RemoteConfig) -> Result<Remote, LinkError> {
        let (connection, process) = match &config.transport {
            Transport::Pipe { program } => {
                let program = executor_program(program)?;
                let (request_read, request_write) = pipe()?;
                let (reply_read, reply_write) = pipe()?;
                // A module's image goes over the request pipe: with the
                // default 64 KiB buffer each 64 KiB is a wake-up of the
                // executor and of this process. Best effort: a smaller
                // system limit leaves the pipe as it was.
                let _ = io::set_pipe_size(request_write.as_fd(), REQUEST_PIPE_BYTES);
                if config.recovery == Recovery::Snapshot {
                    // A checkpoint that takes over is the dead executor's
                    // child; as subreaper we can still wait for it.
                    let _ = spawn::become_subreaper();
                }
                let (child_in, child_out) = (request_read.as_raw_fd(), reply_write.as_raw_fd());
                let mut command = Command::new(&program);
                command.arg("--fds").arg(format!("{child_in},{child_out}"));
                command.env("GLIBC_TUNABLES", static_tls_tunables());
                // The executor inherits the two descriptors it is told about.
                spawn::inherit_descriptors(
                    &mut command,
                    &[request_read.as_fd(), reply_write.as_fd()],
                );
                let child = command.spawn().map_err(|e| {
                    LinkError::Executor(format!("cannot start {}: {e}", program.display()))
                })?;
                drop((request_read, reply_write));
                let process = Process::watch(child.id() as i32);
                (
                    Connection {
                        input: std::fs::File::from(reply_read),
                        output: std::fs::File::from(request_write),
                        socket: None,
                        buffer: Vec::new(),
                    },
                    Some(process),
                )
            }
            Transport::Tcp {
                address,
                peer_timeout,
            } => {
                let stream = connect_tcp(address)?;
                io::fail_when_silent(stream.as_raw_fd(), *peer_timeout).map_err(|e| {
                    LinkError::Executor(format!("{address}: cannot set up TCP keepalive: {e}"))
                })?;
                let clone = || {
                    stream
                        .try_clone()
                        .map_err(|e| LinkError::Executor(format!("{address}: {e}")))
                };
                let (input, output) = (clone()?, clone()?);
                (
                    Connection {
                        input: std::fs::File::from(OwnedFd::from(input)),
                        output: std::fs::File::from(OwnedFd::from(output)),
                        socket: Some((stream, *peer_timeout)),
                        buffer: Vec::new(),
                    },
                    None,
                )
            }
        };
        let mut remote = Remote {
            config,
            connection,
            process,
            pid: 0,
            page: 4096,
            shared: None,
            alive: true,
            queue: Queue::default(),
            streamed: 0,
            deadline: None,
        };
        if let Err(err) = remote.handshake() {
            remote.abandon();
            return Err(err);
        }
        Ok(remote)
    }

    /// Gives up on a peer that broke the protocol or stopped answering: no
    /// goodbye; it is killed (pipes) or hung up on (TCP, where its watchdog
    /// ends it).
    fn abandon(&mut self) {
        self.alive = false;
        if let Some(process) = &self.process {
            let _ = spawn::kill(process.pid);
        }
        self.connection.hang_up();
    }

    fn handshake(&mut self) -> Result<(), LinkError> {
        let deadline = Some(Instant::now() + HANDSHAKE_TIMEOUT);
        let hello = match self.connection.recv(deadline, self.process.as_ref())? {
            Event::Frame(frame) => Reply::decode(&frame).map_err(|e| {
                LinkError::Executor(format!("the peer is not a solder executor: {e}"))
            })?,
            Event::Died => return Err(self.died_early("before its greeting")),
            Event::Closed if self.process.is_some() => {
                return Err(self.died_early("before its greeting"));
            }
            Event::Closed => {
                return Err(LinkError::Executor(
                    "the executor closed the connection before its greeting".into(),
                ));
            }
            Event::TimedOut => {
                return Err(LinkError::Executor(format!(
                    "no greeting from the executor within {} s",
                    HANDSHAKE_TIMEOUT.as_secs()
                )));
            }
            Event::Broken(why) => {
                return Err(LinkError::Executor(format!("before its greeting, {why}")));
            }
        };
        let Reply::Hello {
            magic,
            version,
            page_size,
            target,
            capabilities,
            pid,
        } = hello
        else {
            return Err(LinkError::Executor(format!(
                "expected the executor's greeting, got {hello:?}"
            )));
        };
        if magic != protocol::MAGIC || version != protocol::VERSION {
            return Err(LinkError::Executor(format!(
                "the executor speaks protocol version {version}; this controller speaks {}",
                protocol::VERSION
            )));
        }
        if target != "x86_64-unknown-linux-gnu" {
            return Err(LinkError::Executor(format!(
                "the executor runs {target}; this linker produces x86_64-unknown-linux-gnu code"
            )));
        }
        let needs = |bit: u32, what: &str| {
            if capabilities & bit == 0 {
                Err(LinkError::Executor(format!(
                    "the executor does not offer {what}"
                )))
            } else {
                Ok(())
            }
        };
        if self.config.shared_memory {
            needs(capability::SHARED_MEMORY, "shared memory")?;
        }
        if self.config.recovery == Recovery::Snapshot {
            needs(capability::SNAPSHOT, "snapshots")?;
        }
        let forward_output = self.config.output == ExecutorOutput::Forward;
        if forward_output {
            needs(capability::OUTPUT, "output forwarding")?;
        }
        // The greeter's pid, until the session's own is announced (over
        // TCP the listener greets, and a process forked for the connection
        // serves it).
        self.pid = pid;
        self.page = page_size;
        let token = controller_token()?;
        let welcome = self
            .request(&Request::Hello {
                version: protocol::VERSION,
                recovery: self.config.recovery,
                token,
                forward_output,
            })
            .map_err(|e| match e {
                LinkError::Executor(m) => {
                    LinkError::Executor(format!("the executor refused the connection: {m}"))
                }
                other => other,
            })?;
        match welcome {
            Reply::Welcome { pid } => {
                self.pid = pid;
                Ok(())
            }
            other => Err(unexpected(other)),
        }
    }

    fn died_early(&mut self, when: &str) -> LinkError {
        self.alive = false;
        let status = self.process.as_ref().and_then(|p| p.reap(DEATH_TIMEOUT));
        LinkError::Executor(format!(
            "the executor died {when} ({})",
            describe_status(status)
        ))
    }

    fn ensure_alive(&self) -> Result<(), LinkError> {
        if self.alive {
            Ok(())
        } else {
            Err(LinkError::ExecutorGone("the executor is gone".into()))
        }
    }

    /// Queues a plain request (answered by `Ok`), sending the queue first
    /// when it is full. `range` is the memory the request touches.
    fn defer(&mut self, request: &Request, range: Option<(u64, u64)>) -> Result<(), LinkError> {
        debug_assert!(request.is_plain(), "{} is not plain", request.name());
        let frame = request.encode();
        self.defer_frame(
            frame.len(),
            |frames| frames.extend_from_slice(&frame),
            range,
        )
    }

    /// Queues a `Write` of `bytes` at `address`, encoded straight into the
    /// queue (see [`protocol::append_write_frame`]).
    fn defer_write(&mut self, address: u64, bytes: &[u8]) -> Result<(), LinkError> {
        let len = protocol::WRITE_HEADER_LEN + bytes.len();
        let range = Some((address, bytes.len() as u64));
        self.defer_frame(
            len,
            |frames| protocol::append_write_frame(frames, address, bytes),
            range,
        )
    }

    /// Sends a large `Write` at once, as `Write` frames of the huge pages
    /// it covers ([`STREAM_CHUNK`]), each straight from `bytes`, without
    /// waiting for their replies: the executor backs and fills one piece
    /// while the next is on its way, where a queued image would travel
    /// whole, copied into the queue, before the executor began. The
    /// replies are read before any other request is sent
    /// ([`Remote::settle_streamed`]), so nothing runs on a module whose
    /// writes failed. Requests queued before go first, and are answered
    /// first.
    ///
    /// Only when the program's output is not forwarded: the unread replies
    /// then are all that can wait in the reply channel (at most
    /// [`MAX_STREAMED`]), and the executor never blocks on it while this
    /// process blocks on sending.
    fn stream_write(&mut self, address: u64, bytes: &[u8]) -> Result<(), LinkError> {
        if address.checked_add(bytes.len() as u64).is_none() {
            return Err(LinkError::Memory(format!(
                "a write of {:#x} bytes at {address:#x} passes the end of the address space",
                bytes.len()
            )));
        }
        self.flush()?;
        let mut at = 0usize;
        while at < bytes.len() {
            // In bounds: the whole range was checked above.
            let start = address + at as u64;
            let to_boundary = STREAM_CHUNK - start % STREAM_CHUNK;
            let len = (to_boundary as usize).min(bytes.len() - at).min(MAX_WRITE);
            if self.streamed >= MAX_STREAMED {
                self.settle_one()?;
            }
            let piece = &bytes[at..at + len];
            let header = protocol::write_frame_header(start, piece.len());
            self.ensure_alive()?;
            self.connection.send(&header)?;
            self.connection.send(piece)?;
            self.streamed += 1;
            at += len;
        }
        Ok(())
    }

    /// Reads the replies of every streamed `Write`: the first failure
    /// among them is the error (reported by whichever call sends next, as
    /// a queued request's is), and the requests queued after them are
    /// dropped unsent, as a failed batch's later requests do not run.
    /// Nothing is read from an executor that is gone.
    fn settle_streamed(&mut self) -> Result<(), LinkError> {
        let mut first_error = None;
        while self.streamed > 0 && self.alive {
            if let Err(err) = self.settle_one() {
                first_error.get_or_insert(err);
            }
        }
        self.streamed = 0;
        match first_error {
            None => Ok(()),
            Some(err) => {
                // Streaming never happens with a shared slab, whose queue
                // also carries ranges to clear.
                self.queue.clear();
                Err(err)
            }
        }
    }

    /// Reads the reply of the oldest streamed `Write`: `Ok`, or the
    /// executor's error. Anything else ends the session's use of the
    /// executor.
    fn settle_one(&mut self) -> Result<(), LinkError> {
        self.streamed = self.streamed.saturating_sub(1);
        match self.next_reply("while a module was written")? {
            Reply::Ok => Ok(()),
            Reply::Error { code, message } => Err(error_reply(code, message)),
            other => {
                self.abandon();
                Err(unexpected(other))
            }
        }
    }

    /// The next reply to a request that does not run JIT'd code, decoded.
    /// `when` says what the executor was doing, should it have died. A
    /// reply that does not decode, or a lost connection, ends the
    /// session's use of the executor.
    fn next_reply(&mut self, when: &str) -> Result<Reply, LinkError> {
        let event = self.connection.recv(None, self.process.as_ref());
        match event.inspect_err(|_| self.abandon())? {
            Event::Frame(frame) => Reply::decode(&frame).map_err(|e| {
                self.abandon();
                LinkError::Executor(format!("malformed reply: {e}"))
            }),
            Event::Died => Err(self.died_early(when)),
            Event::Closed if self.process.is_some() => Err(self.died_early(when)),
            Event::Closed => {
                self.alive = false;
                Err(LinkError::Executor(
                    "the executor closed the connection".into(),
                ))
            }
            // Not without a deadline; were it to come, the executor is
            // given up as any silent one.
            Event::TimedOut => {
                self.abandon();
                Err(LinkError::ExecutorGone(format!(
                    "the executor did not answer {when}"
                )))
            }
            Event::Broken(why) => {
                self.abandon();
                Err(LinkError::ExecutorGone(format!("executor lost: {why}")))
            }
        }
    }

    /// Queues the plain request whose `len`-byte frame `append` appends,
    /// touching the page-rounded `range` of memory, sending the queue first
    /// when it would grow too large.
    fn defer_frame(
        &mut self,
        len: usize,
        append: impl FnOnce(&mut Vec<u8>),
        range: Option<(u64, u64)>,
    ) -> Result<(), LinkError> {
        self.ensure_alive()?;
        if !self.queue.is_empty()
            && (self.queue.frames.len() + len > QUEUE_BYTES || self.queue.count >= QUEUE_REQUESTS)
        {
            self.flush()?;
        }
        if self.queue.frames.is_empty() {
            self.queue.frames.resize(BATCH_OVERHEAD, 0);
        }
        append(&mut self.queue.frames);
        self.queue.count += 1;
        if let Some((address, size)) = range {
            let page = self.page;
            let start = address & !(page - 1);
            let end = address.saturating_add(size).saturating_add(page - 1) & !(page - 1);
            self.queue.ranges.push((start, end));
        }
        Ok(())
    }

    /// Sends the queued requests now and waits for their acknowledgement
    /// (nothing to do when none wait), after the replies of streamed
    /// writes ([`Remote::settle_streamed`]). A failed request is reported with
    /// its position in the batch; the ones after it did not run.
    pub fn flush(&mut self) -> Result<(), LinkError> {
        self.settle_streamed()?;
        if self.queue.is_empty() {
            return Ok(());
        }
        self.ensure_alive()?;
        let frame = self.take_queue(None);
        match self.exchange(&frame)? {
            Reply::Ok => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// The frame that carries the queue, then `last` (already encoded; with
    /// `None`, the last queued request ends the batch), emptying the queue.
    /// A lone request goes as a plain frame.
    fn take_queue(&mut self, last: Option<Vec<u8>>) -> Vec<u8> {
        let mut frames = std::mem::take(&mut self.queue.frames);
        let mut count = self.queue.count;
        self.queue.clear();
        if let Some(slab) = self.shared.as_mut() {
            let queued = std::mem::take(&mut slab.holes_queued);
            slab.holes_sent.extend(queued);
        }
        if let Some(last) = last {
            if count == 0 {
                return last;
            }
            frames.extend_from_slice(&last);
            count += 1;
        }
        if count == 1 {
            // A lone request goes as it is, without the batch's head.
            frames.drain(..BATCH_OVERHEAD);
        } else {
            protocol::finish_batch_in_place(count, &mut frames);
        }
        frames
    }

    /// The frame that sends `request` with everything queued before it: one
    /// `Batch` when it fits in a frame, else the queue goes first on its own.
    fn frame_with_queue(&mut self, request: &Request) -> Result<Vec<u8>, LinkError> {
        // Streamed writes are answered before anything else is sent.
        self.settle_streamed()?;
        let own = request.encode();
        if !self.queue.is_empty() && self.queue.frames.len() + own.len() > 4 + MAX_FRAME as usize {
            self.flush()?;
        }
        Ok(self.take_queue(Some(own)))
    }

    /// Sends a request that does not run JIT'd code (with the queue) and
    /// returns its reply.
    fn request(&mut self, request: &Request) -> Result<Reply, LinkError> {
        self.ensure_alive()?;
        let frame = self.frame_with_queue(request)?;
        self.exchange(&frame)
    }

    /// Sends one frame and reads the one reply of a request that does not
    /// run JIT'd code.
    fn exchange(&mut self, frame: &[u8]) -> Result<Reply, LinkError> {
        self.connection.send(frame)?;
        match self.next_reply("while answering a request")? {
            Reply::Error { code, message } => {
                self.forget_released();
                Err(error_reply(code, message))
            }
            reply => {
                self.clear_released()?;
                Ok(reply)
            }
        }
    }

    fn expect_ok(&mut self, request: &Request) -> Result<(), LinkError> {
        match self.request(request)? {
            Reply::Ok => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// What is left of the run's deadline, if it has one.
    fn time_left(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Sends a request that runs JIT'd code (with the queue) and waits for
    /// how it ended. After `timeout` the executor is stopped: a request
    /// that armed the executor's `timer` gets [`KILL_GRACE`] more for the
    /// timer's record, which says where the code was; any other is killed
    /// at once (over TCP, hung up on: the executor's watchdog ends it).
    fn execute(
        &mut self,
        request: &Request,
        timeout: Option<Duration>,
        timer: bool,
    ) -> Result<Outcome, LinkError> {
        self.ensure_alive()?;
        let frame = self.frame_with_queue(request)?;
        match self.connection.send(&frame) {
            Err(LinkError::Executor(why)) if self.connection.socket.is_some() => {
                self.abandon();
                return Ok(Outcome::Lost(why));
            }
            sent => sent?,
        }
        let grace = if timer { KILL_GRACE } else { Duration::ZERO };
        let deadline = timeout.map(|t| Instant::now() + t + grace);
        let mut checkpoint = None;
        let mut record = None;
        let mut killed = false;
        loop {
            let event = self.connection.recv(deadline, self.process.as_ref());
            match event.inspect_err(|_| self.abandon())? {
                Event::Frame(frame) => match self.reply_to_execute(&frame)? {
                    Reply::Checkpoint { pid, reason } => {
                        checkpoint = (reason == CheckpointSkip::Taken && pid != 0).then_some(pid);
                    }
                    Reply::Done { value } => return Ok(Outcome::Returned(value)),
                    Reply::Removed { position } => return Ok(Outcome::Returned(position)),
                    Reply::Error { code, message } => return Err(error_reply(code, message)),
                    r @ (Reply::Crashed { .. } | Reply::Exited { .. }) => {
                        record = Some(r);
                        break;
                    }
                    // The executor died without a record (killed) and its
                    // checkpoint spoke before the pidfd did: the death is
                    // handled below, and `resume` reads this frame again.
                    Reply::Resumed { pid } if Some(pid) == checkpoint => {
                        self.connection.unread(&frame);
                        break;
                    }
                    other => return Err(unexpected(other)),
                },
                Event::Died | Event::Closed => break,
                // Nothing more will come: the executor's watchdog (or its
                // own keepalive) ends its side, checkpoint included.
                Event::Broken(why) => {
                    self.abandon();
                    return Ok(Outcome::Lost(why));
                }
                Event::TimedOut => {
                    match &self.process {
                        Some(p) => {
                            let _ = spawn::kill(p.pid);
                        }
                        None => {
                            // Out of reach of a signal: hanging up makes
                            // the executor's watchdog end it.
                            self.abandon();
                            return Ok(Outcome::TimedOut {
                                after: timeout.unwrap_or_default(),
                                pc: None,
                            });
                        }
                    }
                    killed = true;
                    break;
                }
            }
        }
        // The executor is dead or dying: `waitpid` says how.
        let status = self.process.as_ref().and_then(|p| p.reap(DEATH_TIMEOUT));
        let outcome = classify(record, status, killed, timeout);
        self.alive = false;
        self.process = None;
        if let Some(pid) = checkpoint {
            if let Outcome::Exited(_) = outcome {
                // The program is over; its checkpoint must not take over.
                let discarded = Process::watch(pid as i32);
                let _ = spawn::kill(pid as i32);
                discarded.reap(DEATH_TIMEOUT);
            } else {
                self.resume(pid)?;
            }
        }
        Ok(outcome)
    }

    /// Decodes a frame answering [`Remote::execute`]. Any answer but an
    /// error means the queued requests sent with the call have run.
    fn reply_to_execute(&mut self, frame: &[u8]) -> Result<Reply, LinkError> {
        let reply = Reply::decode(frame).map_err(|e| {
            self.abandon();
            LinkError::Executor(format!("malformed reply: {e}"))
        })?;
        match reply {
            Reply::Error { .. } => self.forget_released(),
            _ => self.clear_released()?,
        }
        Ok(reply)
    }

    /// Waits for the checkpoint to announce that it serves from now on.
    fn resume(&mut self, pid: u32) -> Result<(), LinkError> {
        let watched = matches!(self.config.transport, Transport::Pipe { .. })
            .then(|| Process::watch(pid as i32));
        let deadline = Some(Instant::now() + DEATH_TIMEOUT);
        loop {
            match self.connection.recv(deadline, watched.as_ref())? {
                Event::Frame(frame) => match Reply::decode(&frame) {
                    Ok(Reply::Resumed { pid: resumed }) if resumed == pid => {
                        self.process = watched;
                        self.pid = pid;
                        self.alive = true;
                        return Ok(());
                    }
                    // Leftovers of the dead executor are ignored.
                    Ok(_) => continue,
                    Err(e) => {
                        return Err(LinkError::Executor(format!("malformed reply: {e}")));
                    }
                },
                other => {
                    let what = match other {
                        Event::Died => "it died",
                        Event::Closed => "the connection closed",
                        Event::Broken(_) => "the connection failed",
                        _ => "no word within the deadline",
                    };
                    return Err(LinkError::Executor(format!(
                        "the checkpoint (pid {pid}) did not take over: {what}"
                    )));
                }
            }
        }
    }

    /// Writes into the shared slab directly. Queued requests on the same
    /// pages (a `Release`, whose hole would land under the new bytes) are
    /// sent first, so the executor sees the writes in the order they were
    /// made.
    fn write_shared(&mut self, address: u64, bytes: &[u8]) -> Result<(), LinkError> {
        let page = self.page;
        let start = address & !(page - 1);
        let end = address
            .saturating_add(bytes.len() as u64)
            .saturating_add(page - 1)
            & !(page - 1);
        if self.queue.touches(start, end) {
            self.flush()?;
        }
        // Holes still waiting were sent before a reply that never came: the
        // executor ran them or is gone, and these bytes must land after.
        self.clear_released()?;
        let slab = self.shared.as_mut().expect("shared memory is set up");
        let offset = address
            .checked_sub(slab.base)
            .filter(|o| o + bytes.len() as u64 <= slab.size)
            .ok_or_else(|| {
                LinkError::Memory(format!(
                    "range {address:#x}+{:#x} lies outside the shared slab",
                    bytes.len()
                ))
            })?;
        use std::os::unix::fs::FileExt;
        slab.file.write_all_at(bytes, offset).map_err(|e| {
            LinkError::Memory(format!(
                "write of {:#x} bytes at {address:#x} to the shared slab: {e}",
                bytes.len()
            ))
        })
    }

    /// Clears released memory in the shared slab's file (a hole: it reads
    /// as zero), which only the controller can write: the executor's
    /// `Release` drops its private copies, so the pages show the file
    /// again. The hole waits until the executor has run the `Release`
    /// (see [`Remote::clear_released`]); new writes to the range wait for
    /// it (see [`Remote::write_shared`]). Nothing without a shared slab.
    fn clear_shared(&mut self, address: u64, size: u64) -> Result<(), LinkError> {
        let page = self.page;
        let Some(slab) = self.shared.as_mut() else {
            return Ok(());
        };
        let start = address & !(page - 1);
        let end = address.saturating_add(size).div_ceil(page) * page;
        let offset = start
            .checked_sub(slab.base)
            .filter(|&o| o + (end - start) <= slab.size)
            .ok_or_else(|| {
                LinkError::Memory(format!(
                    "range {address:#x}+{size:#x} lies outside the shared slab"
                ))
            })?;
        slab.holes_queued.push((offset, end - start));
        Ok(())
    }

    /// The executor answered a frame that carried queued requests without
    /// an error, so it ran every `Release` sent: their ranges are cleared
    /// in the file now.
    fn clear_released(&mut self) -> Result<(), LinkError> {
        let Some(slab) = self.shared.as_mut() else {
            return Ok(());
        };
        for (offset, size) in std::mem::take(&mut slab.holes_sent) {
            punch(slab, offset, size)?;
        }
        Ok(())
    }

    /// A request of the last frame failed: the ones after it did not run,
    /// so released ranges sent with it are left as they are.
    fn forget_released(&mut self) {
        if let Some(slab) = self.shared.as_mut() {
            slab.holes_sent.clear();
        }
    }

    fn open_shared(&mut self, base: u64, size: u64, fd: i32) -> Result<(), LinkError> {
        let path = spawn::descriptor_path(self.pid, fd);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| {
                LinkError::Executor(format!(
                    "cannot open the executor's shared slab {path} (shared memory needs the executor on this machine): {e}"
                ))
            })?;
        self.shared = Some(SharedSlab {
            base,
            size,
            file,
            executor_prot: HashMap::new(),
            holes_queued: Vec::new(),
            holes_sent: Vec::new(),
        });
        Ok(())
    }

    fn note_protection(&mut self, address: u64, size: u64, protection: Option<Protection>) {
        let page = self.page;
        if let Some(slab) = self.shared.as_mut() {
            let mut at = address & !(page - 1);
            while at < address + size {
                match protection {
                    Some(p) => slab.executor_prot.insert(at, p),
                    None => slab.executor_prot.remove(&at),
                };
                at += page;
            }
        }
    }
}

/// Punches a hole of `size` bytes at `offset` into the shared slab's file.
fn punch(slab: &SharedSlab, offset: u64, size: u64) -> Result<(), LinkError> {
    solder_executor::sys::memory::punch_hole(slab.file.as_fd(), offset, size).map_err(|e| {
        LinkError::Memory(format!(
            "clearing {size:#x} bytes at {:#x} in the shared slab: {e}",
            slab.base + offset
        ))
    })
}

/// Writes an `Output` frame's bytes to this process's stdout or stderr. A
/// stream that cannot be written (closed) loses them, as the program's own
/// writes would fail.
fn write_output(frame: &[u8]) -> Result<(), LinkError> {
    match Reply::decode(frame) {
        Ok(Reply::Output { stream, bytes }) => {
            let _ = match stream {
                Stream::Stdout => {
                    let mut stdout = std::io::stdout().lock();
                    stdout.write_all(&bytes).and_then(|()| stdout.flush())
                }
                Stream::Stderr => std::io::stderr().lock().write_all(&bytes),
            };
            Ok(())
        }
        other => Err(LinkError::Executor(format!(
            "malformed output frame: {other:?}"
        ))),
    }
}

/// Why a TCP connection failed, for [`Outcome::Lost`].
fn broken(error: &std::io::Error, silence: Duration) -> String {
    if error.kind() == std::io::ErrorKind::TimedOut {
        format!(
            "no sign of life from the executor for {} s (its host is down or cut off): {error}",
            silence.as_secs().max(1)
        )
    } else {
        format!("the connection to the executor failed: {error}")
    }
}

/// The token this controller presents: the first line of
/// `SOLDER_EXECUTOR_TOKEN`, read as the executor reads its token file or
/// variable ([`protocol::parse_token`]); empty when the variable is unset
/// or empty.
fn controller_token() -> Result<Vec<u8>, LinkError> {
    match std::env::var_os(transport::TOKEN_ENV) {
        Some(value) if !value.is_empty() => protocol::parse_token(value.as_encoded_bytes())
            .map_err(|e| LinkError::Executor(format!("{}: {e}", transport::TOKEN_ENV))),
        _ => Ok(Vec::new()),
    }
}

fn connect_tcp(address: &str) -> Result<std::net::TcpStream, LinkError> {
    use std::net::ToSocketAddrs;
    let addrs = address
        .to_socket_addrs()
        .map_err(|e| LinkError::Executor(format!("bad executor address `{address}`: {e}")))?;
    let mut last = None;
    for addr in addrs {
        match std::net::TcpStream::connect_timeout(&addr, HANDSHAKE_TIMEOUT) {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(LinkError::Executor(format!(
        "cannot connect to the executor at {address}: {}",
        last.map_or_else(|| "no address".to_string(), |e| e.to_string())
    )))
}

fn unexpected(reply: Reply) -> LinkError {
    LinkError::Executor(format!("unexpected reply {reply:?}"))
}

fn describe_status(status: Option<WaitStatus>) -> String {
    match status {
        Some(WaitStatus::Exited(code)) => format!("exit status {code}"),
        Some(WaitStatus::Signaled(number)) => format!("killed by {}", signal_name(number)),
        _ => "status unknown".into(),
    }
}

/// How a run ended, from the executor's record and (authoritative) wait
/// status.
fn classify(
    record: Option<Reply>,
    status: Option<WaitStatus>,
    killed: bool,
    timeout: Option<Duration>,
) -> Outcome {
    // The timer's record says where the code was.
    let timer_pc = match &record {
        Some(Reply::Crashed { signal, pc, .. }) if *signal == SIGALRM => Some(*pc),
        _ => None,
    };
    let timed_out = |t: Option<Duration>| Outcome::TimedOut {
        after: t.unwrap_or_default(),
        pc: timer_pc,
    };
    let from_record = |signal: i32| match &record {
        Some(Reply::Crashed {
            signal: s,
            code,
            fault_address,
            pc,
            stack_overflow,
            backtrace,
        }) if *s == signal => Crash {
            signal,
            code: *code,
            fault_address: Some(*fault_address),
            pc: Some(*pc),
            stack_overflow: *stack_overflow,
            backtrace: backtrace.clone(),
        },
        _ => Crash {
            signal,
            code: 0,
            fault_address: None,
            pc: None,
            stack_overflow: false,
            backtrace: Vec::new(),
        },
    };
    match status {
        Some(WaitStatus::Exited(code)) => Outcome::Exited(code),
        Some(WaitStatus::Signaled(number)) => {
            if killed || number == SIGALRM {
                timed_out(timeout)
            } else {
                Outcome::Crashed(from_record(number))
            }
        }
        _ => match record {
            Some(Reply::Crashed { signal, .. }) if signal == SIGALRM => timed_out(timeout),
            Some(Reply::Crashed { signal, .. }) => Outcome::Crashed(from_record(signal)),
            Some(Reply::Exited { status }) => Outcome::Exited(status),
            _ if killed => timed_out(timeout),
            _ => Outcome::Lost("the connection closed without a record".into()),
        },
    }
}

impl Executor for Remote {
    fn page_size(&self) -> u64 {
        self.page
    }

    fn reserve(
        &mut self,
        size: u64,
        placement: PlacementCode,
        address: u64,
    ) -> Result<u64, LinkError> {
        let shared = self.config.shared_memory;
        match self.request(&Request::Reserve {
            size,
            placement,
            address,
            shared,
        })? {
            Reply::Reserved { base, shm_fd } => {
                if shared {
                    let size = size.div_ceil(self.page) * self.page;
                    self.open_shared(base, size, shm_fd)?;
                }
                Ok(base)
            }
            other => Err(unexpected(other)),
        }
    }

    /// Fresh memory whose whole huge pages are backed by huge pages, where
    /// the kernel gives them, as the linker's threads write the image.
    fn staging_image(&mut self, len: usize) -> Vec<u8> {
        let image = vec![0u8; len];
        solder_executor::sys::memory::advise_huge_pages(image.as_ptr() as u64, len as u64);
        image
    }

    fn write(&mut self, address: u64, bytes: &[u8]) -> Result<(), LinkError> {
        if self.shared.is_some() {
            return self.write_shared(address, bytes);
        }
        if bytes.len() >= STREAM_FROM && self.config.output != ExecutorOutput::Forward {
            return self.stream_write(address, bytes);
        }
        for (i, chunk) in bytes.chunks(MAX_WRITE).enumerate() {
            self.defer_write(address + (i * MAX_WRITE) as u64, chunk)?;
        }
        Ok(())
    }

    fn protect(
        &mut self,
        address: u64,
        size: u64,
        protection: Protection,
    ) -> Result<(), LinkError> {
        self.defer(
            &Request::Protect {
                address,
                size,
                prot: prot_of(protection),
            },
            Some((address, size)),
        )?;
        self.note_protection(address, size, Some(protection));
        Ok(())
    }

    fn patch(&mut self, address: u64, bytes: &[u8], restore: Protection) -> Result<(), LinkError> {
        let private = matches!(restore, Protection::Data | Protection::Zero);
        if self.shared.is_none() || private {
            // Writable data is private to the executor: only it can patch it.
            for (i, chunk) in bytes.chunks(MAX_WRITE).enumerate() {
                let address = address + (i * MAX_WRITE) as u64;
                self.defer(
                    &Request::Patch {
                        address,
                        restore: prot_of(restore),
                        bytes: chunk.to_vec(),
                    },
                    Some((address, chunk.len() as u64)),
                )?;
            }
            self.note_protection(address, bytes.len() as u64, Some(restore));
            return Ok(());
        }
        self.write_shared(address, bytes)?;
        let page = self.page;
        let first = address & !(page - 1);
        let end = (address + bytes.len() as u64).div_ceil(page) * page;
        let slab = self.shared.as_ref().expect("shared");
        let current = (first..end)
            .step_by(page as usize)
            .all(|p| slab.executor_prot.get(&p) == Some(&restore));
        if !current {
            self.protect(first, end - first, restore)?;
        }
        Ok(())
    }

    fn release(&mut self, address: u64, size: u64) -> Result<(), LinkError> {
        self.defer(&Request::Release { address, size }, Some((address, size)))?;
        self.note_protection(address, size, None);
        self.clear_shared(address, size)
    }

    fn read(&mut self, address: u64, size: u64) -> Result<Vec<u8>, LinkError> {
        let mut out = Vec::with_capacity(size as usize);
        while (out.len() as u64) < size {
            let n = (size - out.len() as u64).min(u64::from(MAX_READ)) as u32;
            match self.request(&Request::Read {
                address: address + out.len() as u64,
                size: n,
            })? {
                Reply::Bytes { bytes } if bytes.len() == n as usize => out.extend(bytes),
                other => return Err(unexpected(other)),
            }
        }
        Ok(out)
    }

    fn lookup(&mut self, names: &[String]) -> Result<Vec<SymbolInfo>, LinkError> {
        let mut out = Vec::with_capacity(names.len());
        for chunk in names.chunks(MAX_NAMES as usize) {
            match self.request(&Request::Lookup {
                names: chunk.to_vec(),
            })? {
                Reply::Symbols { symbols } if symbols.len() == chunk.len() => out.extend(symbols),
                other => return Err(unexpected(other)),
            }
        }
        Ok(out)
    }

    fn link_library(&mut self, name: &str) -> Result<(), LinkError> {
        self.expect_ok(&Request::OpenLibrary {
            kind: LibraryKind::Link,
            name: name.to_string(),
        })
    }

    fn preload(&mut self, path: &str) -> Result<(), LinkError> {
        self.expect_ok(&Request::OpenLibrary {
            kind: LibraryKind::Path,
            name: path.to_string(),
        })
    }

    fn register_frames(&mut self, address: u64) -> Result<(), LinkError> {
        self.defer(&Request::RegisterFrames { address }, None)
    }

    fn deregister_frames(&mut self, address: u64) -> Result<(), LinkError> {
        self.defer(&Request::DeregisterFrames { address }, None)
    }

    fn load_thread_locals(
        &mut self,
        template: &TlsTemplate<'_>,
        fixed: bool,
    ) -> Result<ThreadLocals, LinkError> {
        if template.init.len() > MAX_WRITE {
            return Err(LinkError::Memory(format!(
                "a thread-local template of {:#x} initialized bytes is more than one request \
                 carries ({MAX_WRITE:#x})",
                template.init.len()
            )));
        }
        let reply = self.request(&Request::LoadThreadLocals {
            init: template.init.to_vec(),
            zero_size: template.zero_size,
            align: template.align,
            fixed,
        });
        match reply.map_err(|e| loader_refusal(e, "the load's thread-local block".into()))? {
            Reply::ThreadLocals {
                id,
                module,
                tp_offset,
            } => Ok(ThreadLocals {
                id,
                module,
                tp_offset: tp_offset as i64,
            }),
            other => Err(unexpected(other)),
        }
    }

    fn drop_thread_locals(&mut self, id: u64) -> Result<(), LinkError> {
        self.defer(&Request::DropThreadLocals { id }, None)
    }

    fn register_debug_object(&mut self, image: std::sync::Arc<[u8]>) -> Result<u64, LinkError> {
        // One frame carries the object: say so rather than send a frame the
        // executor must refuse.
        let limit = MAX_FRAME as usize - 64;
        if image.len() > limit {
            return Err(LinkError::Executor(format!(
                "an object with its debug information is {} bytes, over the {} bytes one \
                 protocol frame carries to the executor: debug it in process",
                image.len(),
                limit
            )));
        }
        let image = image.to_vec();
        match self.request(&Request::RegisterDebugObject { image })? {
            Reply::Done { value } => Ok(value),
            other => Err(unexpected(other)),
        }
    }

    fn unregister_debug_object(&mut self, token: u64) -> Result<(), LinkError> {
        self.defer(&Request::UnregisterDebugObject { token }, None)
    }

    fn map_profiler_marker(&mut self, path: &std::path::Path) -> Result<(), LinkError> {
        let path = path.to_string_lossy().into_owned();
        match self.request(&Request::MapProfilerMarker { path })? {
            Reply::Ok => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    fn host_thread_local(&mut self, name: &str, fixed: bool) -> Result<HostThreadLocal, LinkError> {
        let reply = self.request(&Request::HostThreadLocal {
            name: name.to_string(),
            fixed,
        });
        match reply
            .map_err(|e| loader_refusal(e, format!("host thread-local variable `{name}`")))?
        {
            Reply::HostThreadLocal {
                module,
                offset,
                fixed,
                tp_offset,
            } => Ok(HostThreadLocal {
                module,
                offset,
                tp_offset: fixed.then_some(tp_offset as i64),
            }),
            other => Err(unexpected(other)),
        }
    }

    fn register_module(
        &mut self,
        dso: u64,
        finalizers: &Finalizers,
        position: Option<usize>,
    ) -> Result<(), LinkError> {
        self.defer(
            &Request::RegisterModule {
                dso,
                position: position.map_or(u64::MAX, |p| p as u64),
                prioritized: finalizers.prioritized.clone(),
                unprioritized: finalizers.unprioritized.clone(),
                convention: finalizers.convention,
            },
            None,
        )
    }

    fn set_args(&mut self, args: &[String]) -> Result<(), LinkError> {
        self.defer(
            &Request::SetArgs {
                args: args.to_vec(),
            },
            None,
        )
    }

    fn flush(&mut self) -> Result<(), LinkError> {
        Remote::flush(self)
    }

    fn run_initializers(
        &mut self,
        addresses: &[u64],
        convention: CallingConvention,
    ) -> Result<Outcome, LinkError> {
        let left = self.time_left();
        self.execute(
            &Request::RunInitializers {
                addresses: addresses.to_vec(),
                convention,
            },
            left,
            false,
        )
    }

    fn call(
        &mut self,
        address: u64,
        args: [u64; 6],
        main: bool,
        convention: CallingConvention,
        timeout: Option<Duration>,
    ) -> Result<Outcome, LinkError> {
        // The shorter of the call's own timeout and what is left of the
        // run's, on the executor's timer.
        let timeout = match (timeout, self.time_left()) {
            (Some(own), Some(left)) => Some(own.min(left)),
            (own, left) => own.or(left),
        };
        let timeout_ms = timeout.map_or(0, |t| t.as_millis().clamp(1, u32::MAX as u128) as u32);
        self.execute(
            &Request::Call {
                address,
                args,
                main,
                timeout_ms,
                convention,
            },
            timeout,
            true,
        )
    }

    fn remove_module(&mut self, dso: u64) -> Result<Outcome, LinkError> {
        let left = self.time_left();
        self.execute(&Request::RemoveModule { dso }, left, false)
    }

    fn end_modules(&mut self, dsos: &[u64]) -> Result<Outcome, LinkError> {
        let left = self.time_left();
        self.execute(
            &Request::EndModules {
                dsos: dsos.to_vec(),
            },
            left,
            false,
        )
    }

    fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.deadline = deadline;
    }

    fn alive(&self) -> bool {
        self.alive
    }

    fn pid(&self) -> Option<u32> {
        Some(self.pid)
    }

    fn describe(&self) -> String {
        let how = match &self.config.transport {
            Transport::Pipe { .. } => "pipe".to_string(),
            Transport::Tcp { address, .. } => format!("tcp {address}"),
        };
        let shm = if self.config.shared_memory {
            ", shared memory"
        } else {
            ""
        };
        format!("{how} executor (pid {}{shm})", self.pid)
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        // Nothing runs after the shutdown, so queued requests would change
        // nothing that anybody sees.
        self.queue.clear();
        // Their failure changes nothing either: the executor ends.
        let _ = self.settle_streamed();
        if self.alive && self.connection.send(&Request::Shutdown.encode()).is_ok() {
            let deadline = Some(Instant::now() + DEATH_TIMEOUT);
            let _ = self.connection.recv(deadline, self.process.as_ref());
        }
        if let Some(process) = self.process.take() {
            process.reap(DEATH_TIMEOUT);
        }
    }
}
