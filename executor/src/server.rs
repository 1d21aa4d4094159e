//! The executor's request loop: the server side of [`crate::protocol`].
//!
//! One controller per process, one request at a time, one final reply per
//! request, in order (see `executor/PROTOCOL.md`). The loop is
//! single-threaded; the only other writers of the reply descriptor are the
//! crash handler ([`crate::crash`] record mode), the `exit` path (an
//! `on_exit` callback registered here), a checkpoint that takes over
//! ([`crate::snapshot`]), each of which writes while this loop is stopped
//! or gone, and, when the program's output is forwarded, the drainer
//! thread of [`crate::output`], whose connection lock every writer takes.
//!
//! Exit statuses of a serving process: [`EXIT_CLEAN`] when the controller
//! closes the connection or sends `Shutdown`, [`EXIT_PROTOCOL`] after a
//! malformed frame, a request before `Hello` or a refused handshake; JIT'd
//! code's own status when it calls `exit`; death by the signal of a
//! reported crash.

use std::collections::BTreeMap;
use std::ffi::{c_char, c_int, c_void};
use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use crate::abi::CallingConvention;
use crate::calls;
use crate::crash;
use crate::host::HostLibraries;
use crate::lifecycle;
use crate::module::Finalizers;
use crate::output;
use crate::pages;
use crate::protocol::{
    CheckpointSkip, ErrorCode, FrameHead, Incoming, LibraryKind, MAGIC, PlacementCode, Prot,
    ProtocolError, Recovery, Reply, Request, VERSION, capability,
};
use crate::shm::SharedSlab;
use crate::snapshot::{self, Snapshots, Taken};
use crate::sys;
use crate::transport::{self, Channel, diag, token_matches};
use crate::watchdog;

/// The target triple announced in the handshake.
pub const TARGET_TRIPLE: &str = "x86_64-unknown-linux-gnu";
/// Capabilities announced in the handshake.
pub const CAPABILITIES: u32 = capability::SHARED_MEMORY
    | capability::SNAPSHOT
    | capability::LIFECYCLE
    | capability::UNWIND
    | capability::OUTPUT;
/// Exit status: the controller closed the connection or sent `Shutdown`.
pub const EXIT_CLEAN: i32 = 0;
/// Exit status: malformed frame, request before `Hello`, refused handshake.
pub const EXIT_PROTOCOL: i32 = 3;

/// The reply descriptor, for the `exit` path.
static REPLY_FD: AtomicI32 = AtomicI32::new(-1);
/// The serving process: a process forked by JIT'd code must not speak for it.
static SERVER_PID: AtomicI32 = AtomicI32::new(0);
/// Set while a request runs JIT'd code: only then is an `exit` the
/// program's, to be reported with `Exited`.
static IN_USER_CODE: AtomicBool = AtomicBool::new(false);

fn getpid() -> i32 {
    sys::process::id().as_raw()
}

fn flush_stdio() {
    sys::exit::flush_c_stdio();
}

/// Ends the process now: stdio flushed, no exit handlers (they belong to
/// JIT'd code, which has been ended or abandoned by the controller).
pub fn exit_now(status: i32) -> ! {
    flush_stdio();
    sys::exit::exit_immediately(status)
}

/// `on_exit` callback: JIT'd code called `exit(status)`.
extern "C" fn exit_record(status: c_int, _: *mut c_void) {
    send_exited(status, true);
}

/// `quick_exit` hook: JIT'd code called `quick_exit(status)` (which does not
/// flush stdio).
fn quick_exit_record(status: c_int) {
    send_exited(status, false);
}

fn send_exited(status: c_int, flush: bool) {
    if getpid() != SERVER_PID.load(Ordering::Acquire)
        || IN_USER_CODE
            .compare_exchange(true, false, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
    {
        return;
    }
    // The program ended on purpose: its checkpoint must not take over.
    snapshot::discard_live();
    if flush {
        flush_stdio();
    }
    let fd = REPLY_FD.load(Ordering::Acquire);
    // Its forwarded output goes first, and nothing after the record.
    output::seize(fd, None);
    let frame = Reply::Exited { status }.encode();
    let _ = transport::write_all(fd, &frame);
}

/// The executor's greeting, [`Reply::Hello`], naming this process.
pub fn greeting() -> Reply {
    Reply::Hello {
        magic: MAGIC,
        version: VERSION,
        page_size: pages::page_size(),
        target: TARGET_TRIPLE.into(),
        capabilities: CAPABILITIES,
        pid: getpid() as u32,
    }
}

/// Serves one controller on `channel` until it leaves: greets it, checks
/// its `Hello` against `token` (empty when none is configured), then serves
/// the session. Returns the exit status for the process; some paths (`exit`
/// by JIT'd code, a crash, a vanished controller) end the process instead
/// of returning.
pub fn serve(channel: Channel, token: &[u8]) -> i32 {
    send(&channel, &greeting());
    match handshake(&channel, token) {
        Ok(options) => serve_session(channel, options),
        Err(status) => status,
    }
}

/// What an accepted [`Request::Hello`] asked of the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionOptions {
    pub recovery: Recovery,
    /// Forward the program's stdout and stderr ([`crate::output`]).
    pub forward_output: bool,
}

/// Serves a session whose handshake already passed (the TCP listener
/// checked the controller's `Hello` before forking this process): announces
/// this process with [`Reply::Welcome`], then answers requests until the
/// controller leaves. Returns or ends the process as [`serve`] does.
pub fn serve_session(channel: Channel, options: SessionOptions) -> i32 {
    crash::install_crash_reporter();
    crash::set_record_fd(channel.output);
    REPLY_FD.store(channel.output, Ordering::Release);
    SERVER_PID.store(getpid(), Ordering::Release);
    static EXIT_HOOKS: Once = Once::new();
    EXIT_HOOKS.call_once(|| {
        if sys::process::on_exit(exit_record).is_err() {
            diag("on_exit failed: exit records are off");
        }
        lifecycle::set_before_quick_exit(quick_exit_record);
    });
    if channel.socket {
        watchdog::watch(channel.input);
    }
    // After the watchdog (a clone, made while the process has one thread):
    // the drainer is a thread.
    if options.forward_output
        && let Err(err) = output::forward(channel.output)
    {
        diag(&format!("cannot forward the program's output: {err}"));
        send(
            &channel,
            &error(
                ErrorCode::Refused,
                format!("cannot forward the program's output: {err}"),
            ),
        );
        return EXIT_PROTOCOL;
    }
    send(
        &channel,
        &Reply::Welcome {
            pid: getpid() as u32,
        },
    );
    let mut server = Server {
        page: pages::page_size(),
        snapshots: (options.recovery == Recovery::Snapshot).then(Snapshots::default),
        slab: None,
        host: HostLibraries::with_defaults().map_err(|e| e.to_string()),
        frames: BTreeMap::new(),
        ceiling: None,
        thread_locals: Default::default(),
        args: Vec::new(),
        argv: vec![std::ptr::null_mut()],
        debug_objects: Default::default(),
        channel,
    };
    server.run()
}

/// Sends a reply; a controller that is gone ends the process (status 0),
/// and a live checkpoint with it (there is nobody to resume for).
fn send(channel: &Channel, reply: &Reply) {
    if channel.send(&reply.encode()).is_err() {
        snapshot::discard_live();
        exit_now(EXIT_CLEAN);
    }
}

fn error(code: ErrorCode, message: impl Into<String>) -> Reply {
    Reply::Error {
        code,
        message: message.into(),
    }
}

/// Reads one frame and decodes it as a request. The outer `Err` is the
/// exit status when the connection ended (0); the inner one a frame that
/// does not decode.
fn read_request(channel: &Channel) -> Result<Result<Request, ProtocolError>, i32> {
    match read_frame(channel)? {
        Ok(frame) => Ok(Request::decode(&frame)),
        Err(err) => Ok(Err(err)),
    }
}

/// Reads one frame. The outer `Err` is the exit status when the
/// connection ended (0); the inner one a frame that cannot be read whole.
fn read_frame(channel: &Channel) -> Result<Result<Vec<u8>, ProtocolError>, i32> {
    ended_or(channel, channel.read_frame())
}

/// What reading a frame gave: the outer `Err` is the exit status when
/// the connection ended (0); the inner one what the frame broke.
fn ended_or<T>(
    channel: &Channel,
    read: Result<T, ProtocolError>,
) -> Result<Result<T, ProtocolError>, i32> {
    match read {
        Ok(read) => Ok(Ok(read)),
        Err(err @ (ProtocolError::Closed | ProtocolError::Io(_))) => Err(frame_ended(channel, err)),
        Err(err) => Ok(Err(err)),
    }
}

/// The exit status when the connection failed while a frame was read
/// (the controller closing it first, or an error reading it).
fn frame_ended(channel: &Channel, err: ProtocolError) -> i32 {
    match err {
        ProtocolError::Closed => EXIT_CLEAN,
        ProtocolError::Io(err) => {
            diag(&format!("reading from {}: {err}", channel.peer));
            EXIT_CLEAN
        }
        // Nothing but the two above comes from reading a frame's rest.
        err => malformed(channel, err),
    }
}

/// Reads one frame, or a lone `Write`'s head (see
/// [`protocol::read_frame_head`]). `Err` is the exit status: the
/// connection ended (0) or the frame was malformed (after an `Error`
/// reply).
fn next_frame_head(channel: &Channel) -> Result<FrameHead, i32> {
    ended_or(channel, channel.read_frame_head())?.map_err(|err| malformed(channel, err))
}

/// Answers a malformed frame with an `Error`: the exit status that
/// follows.
fn malformed(channel: &Channel, err: ProtocolError) -> i32 {
    diag(&format!("malformed frame from {}: {err}", channel.peer));
    send(channel, &error(ErrorCode::Malformed, err.to_string()));
    EXIT_PROTOCOL
}

/// Reads the controller's `Hello` and checks it ([`check_hello`]). `Err`
/// is the exit status: the connection ended (0), or the `Hello` was refused
/// (after the `Error` reply).
fn handshake(channel: &Channel, token: &[u8]) -> Result<SessionOptions, i32> {
    let decoded = read_request(channel)?;
    check_hello(decoded, token, &channel.peer).map_err(|reply| {
        send(channel, &reply);
        EXIT_PROTOCOL
    })
}

/// Checks the first request from `peer`: it must decode, be a `Hello`, speak
/// this protocol version and present `token`. Returns what it asks of the
/// session, or the `Error` to answer before closing the connection
/// (logged here, never with either token).
pub fn check_hello(
    decoded: Result<Request, ProtocolError>,
    token: &[u8],
    peer: &str,
) -> Result<SessionOptions, Reply> {
    let request = decoded.map_err(|err| {
        diag(&format!("malformed frame from {peer}: {err}"));
        error(ErrorCode::Malformed, err.to_string())
    })?;
    let Request::Hello {
        version,
        recovery,
        token: given,
        forward_output,
    } = request
    else {
        return Err(error(ErrorCode::State, "the first request must be Hello"));
    };
    // Compared before the version check so the timing never depends on
    // which check fails.
    let token_ok = token_matches(token, &given);
    drop(given);
    let refusal = if version != VERSION {
        Some((
            format!("wrong protocol version {version}"),
            format!("protocol version {version} is not supported; this executor speaks {VERSION}"),
        ))
    } else if !token_ok {
        Some(("wrong token".to_string(), "wrong token".to_string()))
    } else {
        None
    };
    if let Some((log, message)) = refusal {
        diag(&format!("refused connection from {peer}: {log}"));
        return Err(error(ErrorCode::Refused, message));
    }
    Ok(SessionOptions {
        recovery,
        forward_output,
    })
}

/// The session's reservation.
struct Slab {
    base: u64,
    size: u64,
    /// Set when backed by a memfd.
    shared: Option<SharedSlab>,
}

/// What a request led to.
enum Outcome {
    Reply(Reply),
    /// This process is a checkpoint that just took over; the request that
    /// killed the executor gets no reply.
    Resumed,
    /// Reply `Ok`, then leave.
    Shutdown,
    /// Send the reply, then leave with this status.
    Close(Reply, i32),
}

struct Server {
    channel: Channel,
    page: u64,
    /// Present with the snapshot recovery policy.
    snapshots: Option<Snapshots>,
    slab: Option<Slab>,
    /// The host libraries, or why they could not be opened.
    host: Result<HostLibraries, String>,
    /// Registered `.eh_frame` sections by address.
    frames: BTreeMap<u64, crate::unwind::RegisteredFrames>,
    /// The slab's hold on the unwinder's ceiling, taken with its first
    /// frames (declared after `frames`: dropped after them).
    ceiling: Option<crate::unwind::SlabCeiling>,
    /// Modules' thread-local blocks (TLS carriers) by id.
    thread_locals: crate::thread_locals::ThreadLocalBlocks,
    /// `SetArgs` strings, NUL-terminated; JIT'd code may write to them.
    args: Vec<Vec<u8>>,
    /// Pointers into `args`, then NULL.
    argv: Vec<*mut c_char>,
    /// Objects registered with the debugger interface, by token: only
    /// these may be unregistered (a token is the controller's word).
    debug_objects: std::collections::BTreeSet<u64>,
}

/// Handlers return the error reply as `Err`.
type Handled = Result<Reply, Reply>;

/// A handled request is answered by its reply or its error.
impl From<Handled> for Outcome {
    fn from(handled: Handled) -> Self {
        Outcome::Reply(handled.unwrap_or_else(|reply| reply))
    }
}

impl Server {
    fn run(&mut self) -> i32 {
        loop {
            let head = match next_frame_head(&self.channel) {
                Ok(head) => head,
                Err(status) => return status,
            };
            let outcome = match head {
                FrameHead::Write { address, len } => {
                    self.close_shared_descriptor();
                    match self.write_from_channel(address, len) {
                        Ok(outcome) => outcome,
                        Err(status) => return status,
                    }
                }
                FrameHead::Frame(frame) => {
                    // A batch's writes are done from the frame as it came.
                    let requests = match crate::protocol::decode_incoming(&frame) {
                        Ok(requests) => requests,
                        Err(err) => return malformed(&self.channel, err),
                    };
                    self.close_shared_descriptor();
                    // A lone request is a batch of one: it is handled alone.
                    self.batch(requests)
                }
            };
            match outcome {
                Outcome::Reply(reply) => send(&self.channel, &reply),
                Outcome::Resumed => {}
                Outcome::Close(reply, status) => {
                    send(&self.channel, &reply);
                    return status;
                }
                Outcome::Shutdown => {
                    if let Some(snapshots) = &mut self.snapshots {
                        snapshots.discard();
                        snapshots.reap();
                    }
                    // Forwarded output must be in its pipe before the
                    // last reply.
                    flush_stdio();
                    send(&self.channel, &Reply::Ok);
                    return EXIT_CLEAN;
                }
            }
        }
    }

    /// The controller opened the shared slab's memfd before asking anything
    /// else: the executor needs no descriptor of it.
    fn close_shared_descriptor(&mut self) {
        if let Some(shared) = self.slab.as_mut().and_then(|s| s.shared.as_mut()) {
            shared.close_descriptor();
        }
    }

    /// A lone `Write` whose bytes are still in the channel: they are read
    /// straight into the slab (a module's image is megabytes, which a frame
    /// read whole would first copy). The reply is what [`Server::write`]
    /// gives for the same frame; a refused write's bytes are read past.
    /// `Err` is the exit status when the connection ended mid-frame.
    fn write_from_channel(&mut self, address: u64, len: usize) -> Result<Outcome, i32> {
        let page = self.page;
        let ready = self.slab_for(address, len as u64, false).and_then(|_| {
            // SAFETY: the range lies inside the reservation (checked
            // first), which no Rust reference points into; only JIT'd code
            // uses it.
            unsafe { pages::prepare_write(address, len, page) }
                .map_err(|e| error(ErrorCode::Memory, e.to_string()))
        });
        let read = match &ready {
            // SAFETY: the range lies inside the reservation and was just
            // made writable; no Rust reference points into it.
            Ok(()) => unsafe { self.channel.read_payload_to(address, len) },
            Err(_) => self.channel.skip_payload(len),
        };
        match read {
            Ok(()) => Ok(Outcome::Reply(
                ready.map_or_else(|refused| refused, |()| Reply::Ok),
            )),
            Err(err) => Err(frame_ended(&self.channel, err)),
        }
    }

    /// Handles one request: each arm hands the request's fields to its
    /// handler below.
    fn handle(&mut self, request: Request) -> Outcome {
        match request {
            Request::Hello { .. } => {
                Outcome::Reply(error(ErrorCode::State, "Hello was already received"))
            }
            Request::Reserve {
                size,
                placement,
                address,
                shared,
            } => self.reserve(size, placement, address, shared).into(),
            Request::Write { address, bytes } => self.write(address, &bytes).into(),
            Request::Protect {
                address,
                size,
                prot,
            } => self.protect(address, size, prot).into(),
            Request::Release { address, size } => self.release(address, size).into(),
            Request::Read { address, size } => read(address, size).into(),
            Request::Lookup { names } => self.lookup(&names).into(),
            Request::OpenLibrary { kind, name } => self.open_library(kind, &name).into(),
            Request::RegisterFrames { address } => self.register_frames(address).into(),
            Request::DeregisterFrames { address } => self.deregister_frames(address).into(),
            Request::RegisterModule {
                dso,
                position,
                prioritized,
                unprioritized,
                convention,
            } => register_module(
                dso,
                position,
                Finalizers {
                    prioritized,
                    unprioritized,
                    convention,
                },
            )
            .into(),
            Request::SetArgs { args } => self.set_args(args),
            Request::RunInitializers {
                addresses,
                convention,
            } => self.run_initializers(addresses, convention),
            Request::Call {
                address,
                args,
                main,
                timeout_ms,
                convention,
            } => self.call(address, args, main, timeout_ms, convention),
            Request::RemoveModule { dso } => self.remove_module(dso),
            Request::EndModules { dsos } => self.end_modules(dsos),
            Request::Patch {
                address,
                restore,
                bytes,
            } => self.patch(address, restore, &bytes).into(),
            Request::Shutdown => Outcome::Shutdown,
            Request::Batch { requests } => {
                self.batch(requests.into_iter().map(Incoming::Other).collect())
            }
            Request::LoadThreadLocals {
                init,
                zero_size,
                align,
                fixed,
            } => self
                .load_thread_locals(&init, zero_size, align, fixed)
                .into(),
            Request::DropThreadLocals { id } => self.drop_thread_locals(id).into(),
            Request::HostThreadLocal { name, fixed } => self.host_thread_local(&name, fixed).into(),
            Request::RegisterDebugObject { image } => {
                let token = crate::debugger::register(image);
                self.debug_objects.insert(token);
                Outcome::Reply(Reply::Done { value: token })
            }
            Request::UnregisterDebugObject { token } => self.unregister_debug_object(token).into(),
            Request::MapProfilerMarker { path } => map_profiler_marker(&path).into(),
        }
    }

    /// `RunInitializers`: each initializer in order, as
    /// `void (int, char **, char **)` with the `SetArgs` arguments.
    fn run_initializers(&mut self, addresses: Vec<u64>, convention: CallingConvention) -> Outcome {
        if let Err(reply) = nonzero(&addresses, "initializer") {
            return Outcome::Reply(reply);
        }
        self.run_code(false, |server| {
            for &address in &addresses {
                // SAFETY: the controller linked this initializer into the
                // slab with this signature and convention (checked nonzero
                // above). JIT'd code is outside Rust's guarantees: if it is
                // wrong, the crash handler reports the fault.
                unsafe {
                    calls::call_initializer(
                        address,
                        convention,
                        server.argc(),
                        server.argv.as_ptr().cast(),
                        environ(),
                    )
                };
            }
            Reply::Done { value: 0 }
        })
    }

    /// `Call`: the function at `address` with six integer arguments, or as
    /// `main`, under the timeout (0: none).
    fn call(
        &mut self,
        address: u64,
        args: [u64; 6],
        main: bool,
        timeout_ms: u32,
        convention: CallingConvention,
    ) -> Outcome {
        if let Err(reply) = nonzero(&[address], "function") {
            return Outcome::Reply(reply);
        }
        self.run_code(main, |server| {
            set_timer(timeout_ms);
            let value = if main {
                // SAFETY: as for initializers; the controller says this is
                // `int main(int, char **, char **)`.
                let status = unsafe {
                    calls::call_main(
                        address,
                        convention,
                        server.argc(),
                        server.argv.as_ptr().cast(),
                        environ(),
                    )
                };
                status as i64 as u64
            } else {
                // SAFETY: as above; extra integer arguments are ignored by a
                // function taking fewer.
                unsafe { calls::call6(address, convention, args) }
            };
            set_timer(0);
            Reply::Done { value }
        })
    }

    /// `RemoveModule`: the module's handlers and deinitializers run (JIT'd
    /// code), then it is forgotten.
    fn remove_module(&mut self, dso: u64) -> Outcome {
        if let Some(why) = crate::thread_exit::removal_refusal(dso) {
            return Outcome::Reply(error(ErrorCode::State, why));
        }
        self.run_code(false, |_| Reply::Removed {
            position: lifecycle::remove_module(dso).map_or(u64::MAX, |p| p as u64),
        })
    }

    /// `EndModules`: the modules end as `exit()` would end them (JIT'd
    /// code).
    fn end_modules(&mut self, dsos: Vec<u64>) -> Outcome {
        self.run_code(false, |_| {
            lifecycle::end_modules(&dsos);
            Reply::Done { value: 0 }
        })
    }

    /// Handles a `Batch`: the plain requests in order, then the last one as
    /// if it had come alone. Nothing runs unless every request but the last
    /// is plain; the first failure ends the batch with its error, prefixed
    /// with the request's position.
    fn batch(&mut self, mut requests: Vec<Incoming<'_>>) -> Outcome {
        let total = requests.len();
        let Some(last) = requests.pop() else {
            return Outcome::Reply(error(ErrorCode::State, "empty batch"));
        };
        let misplaced = requests
            .iter()
            .enumerate()
            .find(|(_, request)| !request.is_plain())
            .map(|(index, request)| (index, request.name()))
            .or_else(|| {
                matches!(last, Incoming::Other(Request::Batch { .. }))
                    .then_some((total - 1, "Batch"))
            });
        if let Some((index, name)) = misplaced {
            return Outcome::Reply(error(
                ErrorCode::State,
                format!(
                    "request {} of {total} in the batch ({name}): only requests answered by Ok \
                     may precede the last one, and batches do not nest; nothing in the batch ran",
                    index + 1
                ),
            ));
        }
        for (index, request) in requests.into_iter().enumerate() {
            let name = request.name();
            let prefix = |reply: Reply| match reply {
                Reply::Error { code, message } => error(
                    code,
                    format!(
                        "request {} of {total} in the batch ({name}): {message}",
                        index + 1
                    ),
                ),
                other => other,
            };
            match self.handle_incoming(request) {
                Outcome::Reply(Reply::Ok) => {}
                Outcome::Reply(reply) => return Outcome::Reply(prefix(reply)),
                Outcome::Close(reply, status) => return Outcome::Close(prefix(reply), status),
                // Plain requests neither run code nor shut down.
                other @ (Outcome::Resumed | Outcome::Shutdown) => return other,
            }
        }
        self.handle_incoming(last)
    }

    /// Handles one request of a frame: a write from the frame's bytes.
    fn handle_incoming(&mut self, request: Incoming<'_>) -> Outcome {
        match request {
            Incoming::Write { address, bytes } => self.write(address, bytes).into(),
            Incoming::Other(request) => self.handle(request),
        }
    }

    /// Runs a request that executes JIT'd code: checkpoint first (snapshot
    /// policy), then `body`, then flush stdio and discard the checkpoint
    /// before the reply goes out.
    fn run_code(&mut self, main: bool, body: impl FnOnce(&mut Self) -> Reply) -> Outcome {
        if self.snapshots.is_some() {
            // A checkpoint must not hold a copy of buffered output.
            flush_stdio();
            // Nor can it be taken with the output's drainer thread.
            output::pause();
            let taken = self.snapshots.as_mut().map(Snapshots::take);
            let (pid, reason) = match taken {
                Some(Taken::Checkpoint(pid)) => (pid, CheckpointSkip::Taken),
                Some(Taken::Skipped(reason)) => (0, reason),
                Some(Taken::Resumed) => {
                    self.resume();
                    return Outcome::Resumed;
                }
                None => unreachable!("snapshots checked above"),
            };
            output::resume();
            send(&self.channel, &Reply::Checkpoint { pid, reason });
        }
        IN_USER_CODE.store(true, Ordering::Release);
        let reply = body(self);
        IN_USER_CODE.store(false, Ordering::Release);
        if getpid() != SERVER_PID.load(Ordering::Acquire) {
            // A process forked by JIT'd code returned into the executor: it
            // must not answer. A returning `main` exits with its value.
            let status = match reply {
                Reply::Done { value } if main => value as i32,
                _ => 0,
            };
            exit_now(status);
        }
        flush_stdio();
        if let Some(snapshots) = &mut self.snapshots {
            snapshots.discard();
        }
        Outcome::Reply(reply)
    }

    /// This process is the checkpoint and the executor is gone: become the
    /// executor and say so.
    fn resume(&mut self) {
        let pid = getpid();
        SERVER_PID.store(pid, Ordering::Release);
        crash::set_record_fd(self.channel.output);
        // The dead executor's watchdog died with it.
        if self.channel.socket {
            watchdog::watch(self.channel.input);
        }
        // So did its output's drainer (what the pipes still hold goes
        // before `Resumed`).
        output::resume();
        send(&self.channel, &Reply::Resumed { pid: pid as u32 });
    }

    fn argc(&self) -> c_int {
        (self.argv.len() - 1) as c_int
    }

    fn reserve(
        &mut self,
        size: u64,
        placement: PlacementCode,
        address: u64,
        shared: bool,
    ) -> Handled {
        if self.slab.is_some() {
            return Err(error(
                ErrorCode::State,
                "the session already has a reservation",
            ));
        }
        let memory = |message: String| error(ErrorCode::Memory, message);
        let rounded = size
            .checked_next_multiple_of(self.page)
            .filter(|&s| s <= 1 << 47)
            .ok_or_else(|| memory(format!("cannot reserve {size:#x} bytes: too large")))?;
        let slab = if shared {
            let slab =
                SharedSlab::create(size, placement, address).map_err(|e| memory(e.to_string()))?;
            Slab {
                base: slab.base(),
                size: slab.size(),
                shared: Some(slab),
            }
        } else {
            Slab {
                base: pages::reserve(size, placement, address)
                    .map_err(|e| memory(e.to_string()))?,
                size: rounded,
                shared: None,
            }
        };
        let reply = Reply::Reserved {
            base: slab.base,
            shm_fd: slab.shared.as_ref().map_or(-1, SharedSlab::fd),
        };
        self.slab = Some(slab);
        Ok(reply)
    }

    /// The slab, if `[address, address + size)` lies inside it (and
    /// `address` is page-aligned when `aligned`).
    fn slab_for(&self, address: u64, size: u64, aligned: bool) -> Result<&Slab, Reply> {
        let page = self.page;
        let Some(slab) = &self.slab else {
            return Err(error(
                ErrorCode::State,
                "no reservation yet: send Reserve first",
            ));
        };
        let inside = address >= slab.base
            && address
                .checked_add(size)
                .is_some_and(|end| end <= slab.base + slab.size);
        if !inside {
            return Err(error(
                ErrorCode::Memory,
                format!(
                    "range {address:#x}+{size:#x} is outside the slab {:#x}..{:#x}",
                    slab.base,
                    slab.base + slab.size
                ),
            ));
        }
        if aligned && address % page != 0 {
            return Err(error(
                ErrorCode::Memory,
                format!("address {address:#x} is not page-aligned ({page:#x})"),
            ));
        }
        Ok(slab)
    }

    fn write(&mut self, address: u64, bytes: &[u8]) -> Handled {
        let page = self.page;
        self.slab_for(address, bytes.len() as u64, false)?;
        // SAFETY: the range lies inside the reservation (checked above),
        // which no Rust reference points into; only JIT'd code uses it.
        unsafe { pages::write(address, bytes, page) }
            .map(|()| Reply::Ok)
            .map_err(|e| error(ErrorCode::Memory, e.to_string()))
    }

    fn patch(&mut self, address: u64, restore: Prot, bytes: &[u8]) -> Handled {
        let page = self.page;
        self.slab_for(address, bytes.len() as u64, false)?;
        // SAFETY: as for `write`; the rounded-out pages stay inside the slab
        // because its base and size are page multiples. In a shared slab the
        // written pages become the executor's private copies.
        unsafe { pages::patch(address, bytes, restore, page) }
            .map(|()| Reply::Ok)
            .map_err(|e| error(ErrorCode::Memory, e.to_string()))
    }

    fn protect(&mut self, address: u64, size: u64, prot: Prot) -> Handled {
        self.slab_for(address, size, true)?;
        // SAFETY: a page-aligned range inside the reservation (checked
        // above; the slab's end is page-aligned, so rounding the size up
        // stays inside), which no Rust reference points into. A shared
        // slab is a private mapping: mprotect never makes the file writable.
        unsafe { pages::protect(address, size, prot) }
            .map(|()| Reply::Ok)
            .map_err(|e| error(ErrorCode::Memory, e.to_string()))
    }

    fn release(&mut self, address: u64, size: u64) -> Handled {
        let page = self.page;
        self.slab_for(address, size, true)?;
        let size = size.next_multiple_of(page);
        // Frames still registered in the range are deregistered first: the
        // unwinder reads them later (at the next unwind, at exit), and
        // released pages fault.
        self.deregister_frames_in(address, size);
        // SAFETY: as for `protect`; the controller releases only memory no
        // live module uses. In a shared slab this drops the executor's
        // private copies; the file is the controller's to clear.
        unsafe { pages::release(address, size) }
            .map(|()| Reply::Ok)
            .map_err(|e| error(ErrorCode::Memory, e.to_string()))
    }

    fn lookup(&mut self, names: &[String]) -> Handled {
        let host = self
            .host
            .as_mut()
            .map_err(|e| error(ErrorCode::Library, e.clone()))?;
        let symbols = names
            .iter()
            .map(|name| host.resolve_for_jit(name))
            .collect();
        Ok(Reply::Symbols { symbols })
    }

    /// `UnregisterDebugObject`: a token this server gave out, once.
    fn unregister_debug_object(&mut self, token: u64) -> Handled {
        if !self.debug_objects.remove(&token) {
            return Err(error(
                ErrorCode::State,
                format!("no debug object {token:#x} is registered"),
            ));
        }
        // SAFETY: `token` came from `register` (it was in the set, which
        // only register's tokens enter) and leaves the set now: once.
        unsafe { crate::debugger::unregister(token) };
        Ok(Reply::Ok)
    }

    /// `HostThreadLocal`: what the loader says about a host variable.
    fn host_thread_local(&mut self, name: &str, fixed: bool) -> Handled {
        let host = self
            .host
            .as_mut()
            .map_err(|e| error(ErrorCode::Library, e.clone()))?;
        let found = host
            .thread_local(name, fixed)
            .map_err(|e| error(ErrorCode::Library, e))?;
        Ok(Reply::HostThreadLocal {
            module: found.module,
            offset: found.offset,
            fixed: found.tp_offset.is_some(),
            tp_offset: found.tp_offset.unwrap_or(0) as u64,
        })
    }

    fn open_library(&mut self, kind: LibraryKind, name: &str) -> Handled {
        let host = self
            .host
            .as_mut()
            .map_err(|e| error(ErrorCode::Library, e.clone()))?;
        match kind {
            LibraryKind::Link => host.link_library(name),
            LibraryKind::Path => host.preload(name),
        }
        .map(|()| Reply::Ok)
        .map_err(|e| error(ErrorCode::Library, e.to_string()))
    }

    fn register_frames(&mut self, address: u64) -> Handled {
        if self.frames.contains_key(&address) {
            return Ok(Reply::Ok);
        }
        // libgcc would dereference a bad pointer; refuse what cannot be read.
        if read_memory(address, 4).is_err() {
            return Err(error(
                ErrorCode::Unwind,
                format!("no readable .eh_frame data at {address:#x}"),
            ));
        }
        let slab = self.slab_for(address, 1, false)?;
        let (base, size) = (slab.base, slab.size);
        load_unwinder();
        let ceiling = self
            .ceiling
            .get_or_insert_with(|| crate::unwind::SlabCeiling::hold(base, size));
        // SAFETY: the controller registers `.eh_frame` data it linked and
        // finalized in the slab (checked above), zero-terminated, after
        // the module's code, and deregisters it before releasing that
        // memory; the slab's hold outlives every registration.
        let frames = unsafe { crate::unwind::RegisteredFrames::register(address, ceiling) }
            .map_err(|e| error(ErrorCode::Unwind, e.to_string()))?;
        self.frames.insert(address, frames);
        Ok(Reply::Ok)
    }

    /// Deregisters every registration whose frames start in
    /// `[address, address + size)`.
    fn deregister_frames_in(&mut self, address: u64, size: u64) {
        let mut inside = self.frames.split_off(&address);
        let mut after = inside.split_off(&address.saturating_add(size));
        self.frames.append(&mut after);
        drop(inside);
    }

    /// `DeregisterFrames`: only what `RegisterFrames` registered.
    fn deregister_frames(&mut self, address: u64) -> Handled {
        match self.frames.remove(&address) {
            Some(frames) => {
                drop(frames);
                Ok(Reply::Ok)
            }
            None => Err(error(
                ErrorCode::Unwind,
                format!("no frames are registered at {address:#x}"),
            )),
        }
    }

    /// `LoadThreadLocals`: the template becomes a TLS carrier that this
    /// process's dynamic loader loads (see `tls_carrier`).
    fn load_thread_locals(
        &mut self,
        init: &[u8],
        zero_size: u64,
        align: u64,
        fixed: bool,
    ) -> Handled {
        let template = crate::tls_carrier::TlsTemplate {
            init,
            zero_size,
            align,
        };
        let block = self
            .thread_locals
            .load(&template, fixed)
            .map_err(|e| error(ErrorCode::Library, e))?;
        Ok(Reply::ThreadLocals {
            id: block.id,
            module: block.module,
            tp_offset: block.tp_offset as u64,
        })
    }

    /// `DropThreadLocals`: only what `LoadThreadLocals` loaded.
    fn drop_thread_locals(&mut self, id: u64) -> Handled {
        if self.thread_locals.close(id) {
            Ok(Reply::Ok)
        } else {
            Err(error(
                ErrorCode::State,
                format!("no thread-local block has id {id}"),
            ))
        }
    }

    /// `SetArgs`: keeps `args` and their `argv` array alive. An argument
    /// with a NUL byte cannot be a C string: malformed.
    fn set_args(&mut self, args: Vec<String>) -> Outcome {
        if let Some(index) = args.iter().position(|a| a.as_bytes().contains(&0)) {
            // Like every Malformed error, this ends the conversation.
            let message = format!("argument {index} contains a NUL byte");
            diag(&format!(
                "malformed request from {}: {message}",
                self.channel.peer
            ));
            return Outcome::Close(error(ErrorCode::Malformed, message), EXIT_PROTOCOL);
        }
        self.args = args
            .into_iter()
            .map(|a| {
                let mut bytes = a.into_bytes();
                bytes.push(0);
                bytes
            })
            .collect();
        self.argv = self
            .args
            .iter_mut()
            .map(|a| a.as_mut_ptr().cast::<c_char>())
            .chain([std::ptr::null_mut()])
            .collect();
        Outcome::Reply(Reply::Ok)
    }
}

/// `Read`: `size` bytes of any readable memory of this process (host data
/// the controller copies), not only the slab.
fn read(address: u64, size: u32) -> Handled {
    read_memory(address, size as usize)
        .map(|bytes| Reply::Bytes { bytes })
        .map_err(|err| {
            error(
                ErrorCode::Memory,
                format!("cannot read {size:#x} bytes at {address:#x}: {err}"),
            )
        })
}

/// `RegisterModule`: records the module's deinitializers under `dso` at
/// `position` in load order (`u64::MAX`: last).
fn register_module(dso: u64, position: u64, finalizers: Finalizers) -> Handled {
    nonzero(
        finalizers
            .prioritized
            .iter()
            .chain(&finalizers.unprioritized),
        "deinitializer",
    )?;
    let position = (position != u64::MAX).then(|| usize::try_from(position).unwrap_or(usize::MAX));
    lifecycle::register_module(dso, finalizers, position);
    Ok(Reply::Ok)
}

/// Refuses a null address: a null function pointer cannot even be formed.
fn nonzero<'a>(addresses: impl IntoIterator<Item = &'a u64>, what: &str) -> Result<(), Reply> {
    if addresses.into_iter().any(|&a| a == 0) {
        return Err(error(
            ErrorCode::Memory,
            format!("{what} address 0 cannot be called"),
        ));
    }
    Ok(())
}

/// The executor's environment, as `main`'s third argument.
fn environ() -> *const *const c_char {
    sys::process::environ()
}

/// Arms (`ms > 0`) or disarms the call timeout: `ITIMER_REAL`, whose
/// `SIGALRM` the crash handler reports.
fn set_timer(ms: u32) {
    let _ = sys::process::set_alarm(std::time::Duration::from_millis(ms.into()));
}

/// Makes sure libgcc's unwinder is loaded before the first registration
/// (the frame API is looked up once).
fn load_unwinder() {
    static LOAD: Once = Once::new();
    LOAD.call_once(|| {
        // A failure is reported by the registration that follows.
        let _ = sys::dl::Library::open_global(c"libgcc_s.so.1");
    });
}

/// Copies `size` bytes of this process's memory, failing (instead of
/// faulting) when any of it is unmapped or unreadable.
pub fn read_memory(address: u64, size: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; size];
    sys::memory::read_checked(address, &mut buf)?;
    Ok(buf)
}

/// `MapProfilerMarker`: the first page of the jitdump at `path`, mapped
/// read-execute for the life of the process (the file may close).
fn map_profiler_marker(path: &str) -> Handled {
    let file = std::fs::File::open(path).map_err(|e| {
        error(
            ErrorCode::Memory,
            format!("cannot open the jitdump {path}: {e}"),
        )
    })?;
    crate::sys::memory::map_profiler_marker(std::os::fd::AsFd::as_fd(&file)).map_err(|e| {
        error(
            ErrorCode::Memory,
            format!("cannot map the jitdump {path}: {e}"),
        )
    })?;
    Ok(Reply::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_mapped_memory_and_refuses_unmapped() {
        let data = [1u8, 2, 3, 4];
        assert_eq!(read_memory(data.as_ptr() as u64, 4).unwrap(), data.to_vec());
        assert!(read_memory(8, 4).is_err());
    }
}
