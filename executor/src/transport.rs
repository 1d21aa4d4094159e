//! How the executor reaches its controller: two already-open descriptors
//! (pipes from a controller that spawned it), or a TCP connection (accepted
//! by [`crate::listener`]). Also the pieces both share: raw-descriptor frame
//! I/O that never dies of `SIGPIPE`, the token and its constant-time
//! comparison.
//!
//! Frame I/O is unbuffered on purpose: a snapshot checkpoint (a forked copy
//! of the executor) must see exactly the unread requests the kernel still
//! holds, never a copy of a user-space buffer.

use std::ffi::c_int;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};

use crate::protocol::{self, ProtocolError};
use crate::sys;
use crate::sys::process::Pid;

/// The environment variable a token is taken from when no file names it.
pub const TOKEN_ENV: &str = "SOLDER_EXECUTOR_TOKEN";

/// Why a transport could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("file descriptor {0} is not open")]
    BadFd(c_int),
    #[error("the parent process exited before the executor started")]
    Orphaned,
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error(
        "refusing to listen on {0}: it is not a loopback address, so a token is required \
         (--token-file PATH or {TOKEN_ENV})"
    )]
    TokenRequired(SocketAddr),
    #[error("cannot read the token file {path}: {source}")]
    TokenFile { path: PathBuf, source: io::Error },
    #[error("{origin}: {source}")]
    BadToken {
        origin: String,
        source: protocol::TokenError,
    },
    #[error("cannot write the ready file {path}: {source}")]
    ReadyFile { path: PathBuf, source: io::Error },
    #[error("{call} failed: {source}")]
    Sys {
        call: &'static str,
        source: io::Error,
    },
}

/// The descriptors of one conversation. `input` and `output` may be the
/// same descriptor (a socket).
#[derive(Debug, Clone)]
pub struct Channel {
    pub input: c_int,
    pub output: c_int,
    /// Who is at the other end, for diagnostics (`pipe` or `IP:PORT`).
    pub peer: String,
    /// Whether `input` is a socket, whose session [`crate::watchdog`]
    /// ends when the peer is gone (a pipe's executor dies with its parent).
    pub socket: bool,
}

impl Channel {
    /// Reads one frame (length prefix checked before allocating), after
    /// spinning up to [`spin_budget`] for it to arrive.
    pub fn read_frame(&self) -> Result<Vec<u8>, ProtocolError> {
        spin_until_readable(self.input, spin_budget());
        protocol::read_frame(&mut FdReader(self.input))
    }

    /// Reads one frame as [`Channel::read_frame`] does, except that a lone
    /// `Write`'s bytes are left to read where they go
    /// ([`Channel::read_payload_to`], [`Channel::skip_payload`]).
    pub fn read_frame_head(&self) -> Result<protocol::FrameHead, ProtocolError> {
        spin_until_readable(self.input, spin_budget());
        protocol::read_frame_head(&mut FdReader(self.input))
    }

    /// Reads the `len` bytes of the `Write` whose head
    /// [`Channel::read_frame_head`] read into the memory at `address`.
    /// The controller closing first is [`ProtocolError::Closed`].
    ///
    /// # Safety
    /// As for [`sys::io::read_exact_to`].
    pub unsafe fn read_payload_to(&self, address: u64, len: usize) -> Result<(), ProtocolError> {
        // SAFETY: guaranteed by the caller.
        unsafe { sys::io::read_exact_to(self.input, address, len) }.map_err(payload_error)
    }

    /// Reads and drops the `len` bytes of a `Write` that is refused.
    pub fn skip_payload(&self, len: usize) -> Result<(), ProtocolError> {
        let mut payload = FdReader(self.input).take(len as u64);
        let skipped = io::copy(&mut payload, &mut io::sink()).map_err(payload_error)?;
        if skipped < len as u64 {
            return Err(ProtocolError::Closed);
        }
        Ok(())
    }

    /// Writes one encoded frame, after the program's output when it is
    /// forwarded ([`crate::output::send`]).
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        crate::output::send(self.output, frame)
    }
}

/// The environment variable that sets the spin budget in microseconds
/// (`0` turns spinning off), read once per process by controller and
/// executor alike.
pub const SPIN_ENV: &str = "SOLDER_SPIN_US";

/// How long a side waiting for the other polls before it blocks.
///
/// Why spin at all: on these machines a blocking pipe round trip costs
/// 50-60 us, almost all of it waking an idle CPU, while the same round
/// trip between two processes that are already running costs 1.5 us
/// (`solder-bench rtt` measures both). A statement's exchanges come in
/// quick succession (the controller links the next module in about 10 us;
/// the executor answers most calls in tens of microseconds), so a short
/// spin turns nearly every wake-up into a hand-over. The budget bounds the
/// CPU a waiting side burns per message; with one usable CPU spinning
/// only delays the peer, so it is off.
pub fn spin_budget() -> std::time::Duration {
    use std::sync::OnceLock;
    static BUDGET: OnceLock<std::time::Duration> = OnceLock::new();
    *BUDGET.get_or_init(|| {
        let configured = std::env::var(SPIN_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok());
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let micros = match configured {
            Some(us) => us.min(DEFAULT_SPIN_US * 100),
            None if cpus >= 2 => DEFAULT_SPIN_US,
            None => 0,
        };
        std::time::Duration::from_micros(micros)
    })
}

/// The spin budget when [`SPIN_ENV`] does not set one: a little more than
/// the slowest common answer (a load plus a call down a 1,000-module chain),
/// so the wait rarely ends in a sleep.
pub const DEFAULT_SPIN_US: u64 = 100;

/// Polls `fd` without blocking (yielding the CPU between polls, for a peer
/// that shares it) until it is readable or `budget` has passed. Whether it
/// became readable; either way the caller then reads as usual.
pub fn spin_until_readable(fd: c_int, budget: std::time::Duration) -> bool {
    if budget.is_zero() {
        return false;
    }
    let start = std::time::Instant::now();
    loop {
        match sys::io::ready_now(fd) {
            Ok(false) => {}
            // Readable, closed or failed: the read that follows tells which.
            Ok(true) => return true,
            Err(_) => return false,
        }
        if start.elapsed() >= budget {
            return false;
        }
        std::thread::yield_now();
    }
}

/// A failed read of a frame's rest: the peer closing first is
/// [`ProtocolError::Closed`], as [`protocol::read_frame`] says it.
fn payload_error(err: io::Error) -> ProtocolError {
    if err.kind() == io::ErrorKind::UnexpectedEof {
        ProtocolError::Closed
    } else {
        err.into()
    }
}

/// `Read` over a raw descriptor, without buffering.
struct FdReader(c_int);

impl Read for FdReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        sys::io::read(self.0, buf)
    }
}

/// Writes all of `bytes` to `fd` with `SIGPIPE` blocked, so a vanished peer
/// is an `EPIPE` error rather than death by signal (JIT'd code keeps the
/// native `SIGPIPE` default). Async-signal-safe and allocation-free, so exit
/// paths may use it.
pub fn write_all(fd: c_int, bytes: &[u8]) -> io::Result<()> {
    sys::io::write_all(fd, bytes)
}

/// Where [`diag`] writes: the executor's own stderr, which is descriptor
/// 2 unless the program's output is forwarded (then 2 is the program's).
static DIAG_FD: AtomicI32 = AtomicI32::new(2);

/// The descriptor of the executor's own stderr, for diagnostics.
pub fn diag_fd() -> c_int {
    DIAG_FD.load(Ordering::Acquire)
}

/// Sends diagnostics to `fd` from now on (the executor's own stderr, kept
/// when descriptor 2 becomes the program's).
pub fn set_diag_fd(fd: c_int) {
    DIAG_FD.store(fd, Ordering::Release);
}

/// One diagnostic line on the executor's stderr, prefixed
/// `solder-executor: `. Never stdout (it belongs to JIT'd code), never a
/// panic if stderr is gone.
pub fn diag(message: &str) {
    let mut line = Vec::with_capacity(message.len() + 18);
    line.extend_from_slice(b"solder-executor: ");
    line.extend_from_slice(message.as_bytes());
    line.push(b'\n');
    let _ = write_all(diag_fd(), &line);
}

/// Compares a presented token with the configured one in time that depends
/// only on their lengths: every byte of `expected` is XOR-folded, with no
/// early exit.
pub fn token_matches(expected: &[u8], given: &[u8]) -> bool {
    let mut diff = u8::from(expected.len() != given.len());
    for (i, &e) in expected.iter().enumerate() {
        diff |= e ^ given.get(i).copied().unwrap_or(0);
    }
    std::hint::black_box(diff) == 0
}

/// Serving one controller over descriptors it opened for us: checks they
/// are open, marks them close-on-exec (JIT'd code that runs a program must
/// not leak them) and blocking (the loop waits for each request).
pub fn pipe_channel(input: c_int, output: c_int) -> Result<Channel, TransportError> {
    for fd in [input, output] {
        sys::io::set_close_on_exec(fd).map_err(|_| TransportError::BadFd(fd))?;
        let _ = sys::io::set_blocking(fd);
    }
    Ok(Channel {
        input,
        output,
        peer: "pipe".into(),
        socket: false,
    })
}

/// Asks the kernel to kill this process when its parent dies, then checks
/// the parent (`initial_parent`, read at startup) did not die before that.
pub fn die_with_parent(initial_parent: Pid) -> Result<(), TransportError> {
    sys::process::die_with_parent().map_err(|source| TransportError::Sys {
        call: "prctl(PR_SET_PDEATHSIG)",
        source,
    })?;
    if sys::process::parent_id() != initial_parent {
        return Err(TransportError::Orphaned);
    }
    Ok(())
}

/// The token for a listening executor: the first line of `file` (see
/// [`protocol::parse_token`]), else [`TOKEN_ENV`] read the same way (and
/// then removed from the environment JIT'd code sees). `None` when neither
/// is given.
pub fn load_token(file: Option<&Path>) -> Result<Option<Vec<u8>>, TransportError> {
    let (text, origin) = match file {
        Some(path) => (
            std::fs::read(path).map_err(|source| TransportError::TokenFile {
                path: path.to_path_buf(),
                source,
            })?,
            path.display().to_string(),
        ),
        None => match std::env::var_os(TOKEN_ENV) {
            Some(value) => {
                // SAFETY: called from main before any thread exists, so no
                // other thread reads the environment concurrently.
                unsafe { std::env::remove_var(TOKEN_ENV) };
                (value.into_encoded_bytes(), format!("${TOKEN_ENV}"))
            }
            None => return Ok(None),
        },
    };
    protocol::parse_token(&text)
        .map(Some)
        .map_err(|source| TransportError::BadToken { origin, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(token_matches(b"s3cret", b"s3cret"));
        assert!(!token_matches(b"s3cret", b"s3cres"));
        assert!(!token_matches(b"s3cret", b"s3cre"));
        assert!(!token_matches(b"s3cret", b"s3crett"));
        assert!(!token_matches(b"s3cret", b""));
        assert!(token_matches(b"", b""));
        assert!(!token_matches(b"", b"x"));
    }

    #[test]
    fn a_token_file_gives_its_first_line() {
        let dir = std::env::temp_dir().join(format!("solder-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        for (text, expected) in [
            (&b"s3cret"[..], &b"s3cret"[..]),
            (b"s3cret\n", b"s3cret"),
            (b"s3cret\r\n", b"s3cret"),
            (b"s3cret\r\nanything else\n", b"s3cret"),
        ] {
            std::fs::write(&file, text).unwrap();
            let token = load_token(Some(&file)).unwrap();
            assert_eq!(token.as_deref(), Some(expected), "{text:?}");
        }
        for text in [&b""[..], b"\n", b"\r\ns3cret\n"] {
            std::fs::write(&file, text).unwrap();
            let err = load_token(Some(&file)).unwrap_err();
            assert!(
                matches!(
                    err,
                    TransportError::BadToken {
                        source: protocol::TokenError::Empty,
                        ..
                    }
                ),
                "{text:?}: {err}"
            );
            assert!(err.to_string().contains("empty"), "{err}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
        let missing = load_token(Some(&dir.join("token"))).unwrap_err();
        assert!(
            matches!(missing, TransportError::TokenFile { .. }),
            "{missing}"
        );
    }

    #[test]
    fn spinning_stops_at_data_at_end_of_input_and_at_the_budget() {
        use std::os::fd::AsRawFd;
        use std::time::{Duration, Instant};
        let (read_end, write_end) = sys::io::pipe().unwrap();
        let read_fd = read_end.as_raw_fd();
        let budget = Duration::from_millis(20);
        let start = Instant::now();
        assert!(!spin_until_readable(read_fd, budget), "nothing was written");
        assert!(start.elapsed() >= budget, "gave up before the budget");
        assert!(!spin_until_readable(read_fd, Duration::ZERO));

        write_all(write_end.as_raw_fd(), b"x").unwrap();
        let start = Instant::now();
        assert!(spin_until_readable(read_fd, Duration::from_secs(60)));
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "did not see the byte"
        );
        let mut byte = [0u8; 1];
        assert_eq!(sys::io::read(read_fd, &mut byte).unwrap(), 1);

        // Closing the write end: the reader sees end of input.
        drop(write_end);
        assert!(spin_until_readable(read_fd, Duration::from_secs(60)));
    }

    #[test]
    fn write_to_a_closed_pipe_is_an_error_not_a_signal() {
        use std::os::fd::AsRawFd;
        let (read_end, write_end) = sys::io::pipe().unwrap();
        drop(read_end);
        let err = write_all(write_end.as_raw_fd(), b"x").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe, "{err}");
    }
}
