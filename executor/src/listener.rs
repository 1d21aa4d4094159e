//! The TCP front door: `solder-executor --listen`. One single-threaded
//! process accepts connections and shakes hands with each itself, so a
//! connection gets a process of its own only once its `Hello` has passed:
//!
//! - the listener greets every accepted connection ([`Reply::Hello`],
//!   naming the listener) and reads the controller's `Hello` without
//!   blocking, for all pending connections at once, under a **deadline**
//!   ([`ListenOptions::handshake_timeout`]): a connection that has not
//!   completed its `Hello` by then is closed;
//! - the **token** (and the version) is checked there, before any fork: a
//!   wrong token is answered and closed by the listener and never costs a
//!   process;
//! - at most [`ListenOptions::max_connections`] connections wait for their
//!   `Hello` (a new one pushes out the oldest), and at most as many are
//!   served at once: a controller that passes the handshake beyond that is
//!   refused (`Error { Refused }`, "too many connections").
//! - a session's connection fails once its controller has been silent for
//!   [`ListenOptions::peer_timeout`] (TCP keepalive): a controller whose
//!   host powered off or was cut off sends no FIN or RST.
//!
//! An accepted connection is then served by a forked process
//! ([`server::serve_session`], which announces itself with
//! [`Reply::Welcome`]), or with `once` by the listening process itself. The
//! listener watches its children through pidfds to know how many serve.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, IntoRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::protocol::{ErrorCode, MAX_FRAME, MAX_TOKEN, ProtocolError, Reply, Request};
use crate::server::{self, SessionOptions};
use crate::sys;
use crate::sys::process::{ForkResult, Pid};
use crate::transport::{Channel, TransportError, diag, write_all};

/// The default of [`ListenOptions::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 16;
/// The default of [`ListenOptions::handshake_timeout`].
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The default of [`ListenOptions::peer_timeout`].
pub const DEFAULT_PEER_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest `Hello` frame body: tag, version, recovery, token length,
/// the longest token and the output flag. A longer first frame is not a
/// `Hello`.
const MAX_HELLO: usize = 1 + 4 + 1 + 4 + MAX_TOKEN + 1;
const _: () = assert!(MAX_HELLO == 267, "the refusal message says 267");

/// What `--listen` was asked to do.
#[derive(Debug, Clone)]
pub struct ListenOptions {
    pub addr: SocketAddr,
    /// Configured token; `None` only on a loopback address.
    pub token: Option<Vec<u8>>,
    pub ready_file: Option<PathBuf>,
    /// Serve the first connection whose `Hello` passes in this process,
    /// then return.
    pub once: bool,
    /// How many connections may be served at once, and how many may wait
    /// for their `Hello`.
    pub max_connections: usize,
    /// How long an accepted connection may take to send its `Hello`.
    pub handshake_timeout: Duration,
    /// How long a session's controller may be silent (no answer to TCP
    /// keepalive probes: a host powered off or cut off) before the session
    /// ends ([`sys::io::fail_when_silent`]).
    pub peer_timeout: Duration,
}

impl ListenOptions {
    /// Options for `addr` with the defaults: no token, no ready file, a
    /// forked process per connection.
    pub fn new(addr: SocketAddr) -> ListenOptions {
        ListenOptions {
            addr,
            token: None,
            ready_file: None,
            once: false,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            peer_timeout: DEFAULT_PEER_TIMEOUT,
        }
    }
}

/// An accepted connection that has not completed its `Hello` yet.
struct Pending {
    stream: TcpStream,
    peer: SocketAddr,
    deadline: Instant,
    /// What has arrived of the first frame, length prefix included.
    received: Vec<u8>,
}

/// What reading from a pending connection gave.
enum Progress {
    /// The frame is not complete yet.
    Waiting,
    /// The connection ended or failed before a whole frame: drop it.
    Gone,
    /// The first frame, decoded (or why it could not be).
    Frame(Result<Request, ProtocolError>),
}

impl Pending {
    /// Reads what has arrived (never blocks).
    fn advance(&mut self) -> Progress {
        let mut chunk = [0u8; 4 + MAX_HELLO];
        loop {
            let want = self.wanted();
            if want == 0 {
                break;
            }
            match self.stream.read(&mut chunk[..want]) {
                Ok(0) => return Progress::Gone,
                Ok(n) => self.received.extend_from_slice(&chunk[..n]),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Progress::Waiting,
                Err(_) => return Progress::Gone,
            }
            if let Some(frame) = self.frame() {
                return Progress::Frame(frame);
            }
        }
        self.frame().map_or(Progress::Waiting, Progress::Frame)
    }

    /// How many more bytes the first frame needs (0 when it is complete or
    /// its length already refuses it).
    fn wanted(&self) -> usize {
        match self.length() {
            None => 4 - self.received.len(),
            Some(n) if n == 0 || n > MAX_HELLO => 0,
            Some(n) => 4 + n - self.received.len(),
        }
    }

    /// The length prefix, once it has arrived.
    fn length(&self) -> Option<usize> {
        let prefix: [u8; 4] = self.received.get(..4)?.try_into().ok()?;
        Some(u32::from_le_bytes(prefix) as usize)
    }

    /// The first frame, decoded, once it is complete or refused by its
    /// length: a length of 0 or past the protocol's limit is malformed; a
    /// frame too long to be a `Hello` is not one.
    fn frame(&self) -> Option<Result<Request, ProtocolError>> {
        let n = self.length()?;
        if n == 0 {
            return Some(Err(ProtocolError::Empty));
        }
        if n > MAX_FRAME as usize {
            return Some(Err(ProtocolError::TooLong(n as u32)));
        }
        if n > MAX_HELLO {
            // Too long for a Hello (a longer token is refused anyway):
            // not read, refused as malformed.
            return Some(Err(ProtocolError::BadValue {
                what: "first frame length (a Hello has at most 267 bytes)",
                value: n as u64,
            }));
        }
        (self.received.len() == 4 + n).then(|| Request::decode(&self.received[4..]))
    }
}

/// A process serving one connection.
struct Served {
    pid: Pid,
    /// Readable once it has ended (None: kernel without pidfds).
    ended: Option<OwnedFd>,
}

impl Served {
    fn running(&self) -> bool {
        match &self.ended {
            Some(fd) => !sys::io::ready_now(fd.as_raw_fd()).unwrap_or(true),
            None => sys::spawn::exists(self.pid.as_raw()),
        }
    }
}

/// Binds, announces the address, then shakes hands with connections and
/// serves those that pass: each in a forked child (which `_exit`s with the
/// session's status), or with `once` only the first, in this process,
/// returning its status.
pub fn listen(options: &ListenOptions) -> Result<i32, TransportError> {
    if options.token.is_none() && !options.addr.ip().is_loopback() {
        return Err(TransportError::TokenRequired(options.addr));
    }
    let listener = TcpListener::bind(options.addr).map_err(|source| TransportError::Bind {
        addr: options.addr,
        source,
    })?;
    let sys_error = |call| move |source| TransportError::Sys { call, source };
    let bound = listener.local_addr().map_err(sys_error("getsockname"))?;
    listener
        .set_nonblocking(true)
        .map_err(sys_error("fcntl(O_NONBLOCK)"))?;
    if let Some(path) = &options.ready_file {
        write_ready_file(path, bound)?;
    }
    diag(&format!("listening on {bound}"));
    if !options.once {
        // The kernel reaps connection children; each child restores the
        // default before serving.
        let _ = sys::process::reap_children_automatically(true);
    }
    let mut front = FrontDoor {
        options,
        greeting: server::greeting().encode(),
        listener: Some(listener),
        pending: VecDeque::new(),
        served: Vec::new(),
    };
    loop {
        if let Some(status) = front.turn() {
            return Ok(status);
        }
    }
}

/// The listener's state between turns.
struct FrontDoor<'a> {
    options: &'a ListenOptions,
    /// The encoded greeting, the same for every connection.
    greeting: Vec<u8>,
    /// The listening socket; taken (closed) by a process that serves.
    listener: Option<TcpListener>,
    pending: VecDeque<Pending>,
    served: Vec<Served>,
}

impl FrontDoor<'_> {
    /// One wait and what follows it: expired handshakes closed, ended
    /// children forgotten, new connections greeted, arrived `Hello`s
    /// checked. `Some` is the status of a session served in this process
    /// (`once`).
    fn turn(&mut self) -> Option<i32> {
        let now = Instant::now();
        let timeout = self.options.handshake_timeout;
        self.pending.retain(|p| {
            let waiting = p.deadline > now;
            if !waiting {
                diag(&format!(
                    "closed the connection from {}: no Hello within {} ms",
                    p.peer,
                    timeout.as_millis()
                ));
            }
            waiting
        });
        self.served.retain(Served::running);
        let Some(listener) = &self.listener else {
            return None;
        };
        let mut fds = vec![listener.as_fd()];
        fds.extend(self.pending.iter().map(|p| p.stream.as_fd()));
        fds.extend(
            self.served
                .iter()
                .filter_map(|s| s.ended.as_ref())
                .map(AsFd::as_fd),
        );
        // Until the next deadline; without pidfds, look at the children
        // every second.
        let mut wait = self.pending.iter().map(|p| p.deadline - now).min();
        if self.served.iter().any(|s| s.ended.is_none()) {
            wait = Some(wait.map_or(Duration::from_secs(1), |w| w.min(Duration::from_secs(1))));
        }
        let ready = match sys::io::wait_readable(&fds, wait) {
            Ok(ready) => ready,
            Err(err) => {
                if err.kind() != io::ErrorKind::Interrupted {
                    diag(&format!("poll failed: {err}"));
                    std::thread::sleep(Duration::from_millis(100));
                }
                return None;
            }
        };
        drop(fds);
        // Pending connections first (the indices of `ready` are theirs),
        // newest first so removals keep the older indices valid.
        for index in (0..self.pending.len()).rev() {
            if !ready[1 + index] {
                continue;
            }
            let progress = self.pending[index].advance();
            match progress {
                Progress::Waiting => {}
                Progress::Gone => drop(self.pending.remove(index)),
                Progress::Frame(decoded) => {
                    let pending = self.pending.remove(index).expect("index in range");
                    if let Some(status) = self.admit(pending, decoded) {
                        return Some(status);
                    }
                }
            }
        }
        if ready[0] {
            self.accept();
        }
        None
    }

    /// Accepts what is waiting (a bounded number per turn) and greets it.
    fn accept(&mut self) {
        let Some(listener) = &self.listener else {
            return;
        };
        for _ in 0..64 {
            let (stream, peer) = match listener.accept() {
                Ok(accepted) => accepted,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => {
                    diag(&format!("accept failed: {err}"));
                    // Out of descriptors or memory: do not spin.
                    if sys::io::out_of_descriptors(&err) {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    return;
                }
            };
            let _ = stream.set_nodelay(true);
            if stream.set_nonblocking(true).is_err()
                || write_all(stream.as_raw_fd(), &self.greeting).is_err()
            {
                continue;
            }
            if self.pending.len() >= self.options.max_connections.max(1) {
                if let Some(oldest) = self.pending.pop_front() {
                    diag(&format!(
                        "closed the connection from {}: {} connections wait for their Hello",
                        oldest.peer,
                        self.pending.len() + 1
                    ));
                }
            }
            self.pending.push_back(Pending {
                stream,
                peer,
                deadline: Instant::now() + self.options.handshake_timeout,
                received: Vec::new(),
            });
        }
    }

    /// Checks a connection's first frame; serves it if it passes and there
    /// is room (forked, or here with `once`), else answers with the
    /// refusal and closes it.
    fn admit(&mut self, pending: Pending, decoded: Result<Request, ProtocolError>) -> Option<i32> {
        let token = self.options.token.as_deref().unwrap_or_default();
        let peer = pending.peer.to_string();
        let refusal = match server::check_hello(decoded, token, &peer) {
            Err(reply) => reply,
            Ok(options) if self.served.len() < self.options.max_connections => {
                return self.serve(pending, options);
            }
            Ok(_) => {
                diag(&format!(
                    "refused connection from {peer}: {} connections are served already",
                    self.served.len()
                ));
                Reply::Error {
                    code: ErrorCode::Refused,
                    message: format!(
                        "too many connections: this executor serves {} at once \
                         (solder-executor --max-connections)",
                        self.options.max_connections
                    ),
                }
            }
        };
        let _ = write_all(pending.stream.as_raw_fd(), &refusal.encode());
        None
    }

    /// Serves a connection whose `Hello` passed: in a forked child, or with
    /// `once` in this process (returning its status).
    fn serve(&mut self, pending: Pending, options: SessionOptions) -> Option<i32> {
        let Pending { stream, peer, .. } = pending;
        if stream.set_nonblocking(false).is_err() {
            return None;
        }
        // A silent controller fails the connection: the serving process's
        // next read, or its watchdog while code runs, ends the session.
        if let Err(err) = sys::io::fail_when_silent(stream.as_raw_fd(), self.options.peer_timeout) {
            diag(&format!(
                "{peer}: a silent controller will not be noticed: {err}"
            ));
        }
        let channel = |stream: TcpStream| {
            let fd = stream.into_raw_fd();
            Channel {
                input: fd,
                output: fd,
                peer: peer.to_string(),
                socket: true,
            }
        };
        if self.options.once {
            self.listener = None;
            self.pending.clear();
            return Some(server::serve_session(channel(stream), options));
        }
        // SAFETY: the listener is single-threaded, so the child may run
        // arbitrary code after fork.
        match unsafe { sys::process::fork() } {
            Ok(ForkResult::Child) => {
                // Nothing of the listener's stays open in the session.
                self.listener = None;
                self.pending.clear();
                self.served.clear();
                // The serving child must see its own children's exits (it
                // reaps its checkpoints).
                let _ = sys::process::reap_children_automatically(false);
                let status = server::serve_session(channel(stream), options);
                // Every stdio stream flushed; _exit skips the listener's
                // atexit handlers, which are not ours.
                sys::exit::flush_c_stdio();
                sys::exit::exit_immediately(status)
            }
            Ok(ForkResult::Parent { child }) => self.served.push(Served {
                pid: child,
                ended: sys::spawn::open_pidfd(child.as_raw()).ok(),
            }),
            Err(err) => diag(&format!("fork failed for {peer}: {err}")),
        }
        // The parent closes its copy of the connection as `stream` drops.
        None
    }
}

/// Writes `ADDR\n` to `PATH.tmp`, then renames it to `PATH`, so a reader
/// never sees a partial address.
fn write_ready_file(path: &Path, bound: SocketAddr) -> Result<(), TransportError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, format!("{bound}\n"))
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|source| TransportError::ReadyFile {
            path: path.to_path_buf(),
            source,
        })
}
