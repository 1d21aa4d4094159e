//! The wire protocol between the controller (the linker) and an executor
//! process, version [`VERSION`]. `executor/PROTOCOL.md` is the prose
//! specification; this file is the one implementation both sides share.
//!
//! A frame is a little-endian `u32` length `n` (1 ..= [`MAX_FRAME`]) followed
//! by `n` bytes: a one-byte tag, then the body. Bodies are sequences of
//! fixed-width little-endian integers and length-prefixed byte strings
//! (`u32` length, then the bytes); lists are a `u32` count, then the items.
//! Every decode is bounds-checked against the frame, every count against
//! what the remaining bytes could hold, so a hostile frame cannot make the
//! reader allocate more than the frame itself.
//!
//! Conversation: the executor speaks first with [`Reply::Hello`]; the
//! controller answers with [`Request::Hello`] and gets [`Reply::Ok`] or an
//! [`Reply::Error`] followed by a closed connection. After that every request
//! gets exactly one final reply, in order. Requests that run JIT'd code
//! ([`Request::RunInitializers`], [`Request::Call`], [`Request::RemoveModule`],
//! [`Request::EndModules`]) may instead end with an unsolicited record:
//! [`Reply::Crashed`] (written by the executor's signal handler in one
//! `write(2)`) or [`Reply::Exited`] (written by the executor's `exit` path),
//! after which the executor process is gone. With the snapshot policy a
//! [`Reply::Checkpoint`] precedes each such request's outcome, and after the
//! executor dies its checkpoint announces itself with [`Reply::Resumed`].
//!
//! [`Request::Batch`] carries several requests in one frame to save round
//! trips: every element but the last must be a *plain* request (one answered
//! by [`Reply::Ok`], see [`Request::is_plain`]); the batch is answered as
//! its last element would be on its own, or by the [`Reply::Error`] of the
//! first element that failed.

use crate::abi::CallingConvention;
use std::io::{Read, Write};

/// Protocol version; the handshake refuses any other.
pub const VERSION: u32 = 3;
/// The largest frame (tag + body) either side sends or accepts. Bigger
/// writes are split by the sender.
pub const MAX_FRAME: u32 = 16 << 20;
/// The largest payload of one [`Request::Write`] / [`Request::Patch`].
pub const MAX_WRITE: usize = (MAX_FRAME as usize) - 64;
/// The largest [`Request::Read`].
pub const MAX_READ: u32 = 1 << 20;
/// Greatest number of names in one [`Request::Lookup`].
pub const MAX_NAMES: u32 = 1 << 16;
/// Greatest number of requests in one [`Request::Batch`].
pub const MAX_BATCH: u32 = 4096;
/// Bytes a [`Request::Batch`] frame adds around its elements' frames: the
/// length prefix, the tag and the count.
pub const BATCH_OVERHEAD: usize = 4 + 1 + 4;
/// Longest token accepted in the handshake.
pub const MAX_TOKEN: usize = 256;
/// Magic at the start of [`Reply::Hello`].
pub const MAGIC: [u8; 4] = *b"SLDR";

/// Capability bits advertised in [`Reply::Hello`].
pub mod capability {
    /// [`super::Request::Reserve`] with `shared = true` works (memfd).
    pub const SHARED_MEMORY: u32 = 1 << 0;
    /// The snapshot recovery policy is available (`fork`).
    pub const SNAPSHOT: u32 = 1 << 1;
    /// The executor hosts the `atexit` family interposers.
    pub const LIFECYCLE: u32 = 1 << 2;
    /// `.eh_frame` registration works.
    pub const UNWIND: u32 = 1 << 3;
}

/// Recovery policy requested in the handshake. Only `Snapshot` changes the
/// executor's behaviour; `Restart` is carried out by the controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Recovery {
    None = 0,
    Snapshot = 1,
    Restart = 2,
}

/// Where [`Request::Reserve`] should put the reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PlacementCode {
    /// Anywhere.
    Any = 0,
    /// Within ±2 GiB of the executor's shared libraries (rel32 reach), else anywhere.
    NearHost = 1,
    /// In the low 2 GiB, else anywhere.
    Low = 2,
    /// Exactly at `address`, or fail.
    Fixed = 3,
}

/// Page protections of [`Request::Protect`] and [`Request::Patch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Prot {
    None = 0,
    /// Read + execute (code).
    ReadExecute = 1,
    ReadOnly = 2,
    /// Read + write (data). With shared memory, mapped private.
    ReadWrite = 3,
}

/// How [`Request::OpenLibrary`] names a library.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum LibraryKind {
    /// `-l NAME`.
    Link = 0,
    /// A path (`--preload`).
    Path = 1,
}

/// What a looked-up name is in the executor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum SymbolKind {
    Missing = 0,
    Function = 1,
    Data = 2,
    /// Thread-local: no plain address.
    Tls = 3,
    Unknown = 4,
    /// A runtime interposer: bind the name to `address`.
    InterposerDirect = 5,
    /// A runtime interposer reached through a per-module thunk that loads
    /// the module's `__dso_handle` into integer argument `arg` and jumps to
    /// `address`.
    InterposerPassDso = 6,
}

/// One [`Request::Lookup`] answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SymbolInfo {
    pub kind: SymbolKind,
    /// Argument register index for [`SymbolKind::InterposerPassDso`].
    pub arg: u8,
    pub address: u64,
    /// `st_size` when known, else 0.
    pub size: u64,
}

/// Error codes of [`Reply::Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ErrorCode {
    /// The frame could not be decoded (unknown tag, truncated, too long).
    Malformed = 0,
    /// Handshake refused: wrong version or token.
    Refused = 1,
    /// mmap/mprotect/madvise failed or the range is not the session's.
    Memory = 2,
    /// A library could not be opened.
    Library = 3,
    /// Frame registration failed.
    Unwind = 4,
    /// Request out of order (e.g. before the handshake, or a second reserve).
    State = 5,
}

/// Controller -> executor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Tag 1. `token` must equal the executor's (empty when it has none).
    Hello {
        version: u32,
        recovery: Recovery,
        token: Vec<u8>,
    },
    /// Tag 2. One per session: reserve `size` bytes of address space
    /// (`PROT_NONE`, not committed). With `shared`, back it by a memfd.
    Reserve {
        size: u64,
        placement: PlacementCode,
        address: u64,
        shared: bool,
    },
    /// Tag 3. Copy `bytes` to `address` (inside the reservation), making the
    /// pages read-write first. Used while staging a new module.
    Write { address: u64, bytes: Vec<u8> },
    /// Tag 4. Set the protection of whole pages inside the reservation.
    Protect { address: u64, size: u64, prot: Prot },
    /// Tag 5. Discard pages and make them inaccessible until written again.
    Release { address: u64, size: u64 },
    /// Tag 6. Read `size` (≤ [`MAX_READ`]) bytes of readable executor memory
    /// (host data to copy). Answered by [`Reply::Bytes`].
    Read { address: u64, size: u32 },
    /// Tag 7. Look names up: runtime interposers first, then host libraries.
    /// Answered by [`Reply::Symbols`], one entry per name, in order.
    Lookup { names: Vec<String> },
    /// Tag 8. Open a library searched by later lookups.
    OpenLibrary { kind: LibraryKind, name: String },
    /// Tag 9. `__register_frame(address)`.
    RegisterFrames { address: u64 },
    /// Tag 10. `__deregister_frame(address)`.
    DeregisterFrames { address: u64 },
    /// Tag 11. Record a module's deinitializers under `dso` at `position`
    /// in load order (`u64::MAX` = last).
    RegisterModule {
        dso: u64,
        position: u64,
        prioritized: Vec<u64>,
        unprioritized: Vec<u64>,
        /// The deinitializers' (and the module's `atexit` handlers')
        /// convention; on the wire, 1 for Microsoft x64 (a COFF module).
        convention: CallingConvention,
    },
    /// Tag 12. `argv` passed to initializers and `main` (envp is the
    /// executor's environment).
    SetArgs { args: Vec<String> },
    /// Tag 13. Call each address as `void (int, char **, char **)`, in order.
    /// Answered by [`Reply::Done`] with value 0.
    RunInitializers {
        addresses: Vec<u64>,
        convention: CallingConvention,
    },
    /// Tag 14. Call `address` with six integer arguments (SysV), or as
    /// `int main(int, char **, char **)` when `main` is set. A nonzero
    /// `timeout_ms` arms a timer; expiry is reported as a crash with
    /// `SIGALRM`. `convention` is the function's (on the wire, 1 for
    /// Microsoft x64). Answered by [`Reply::Done`].
    Call {
        address: u64,
        args: [u64; 6],
        main: bool,
        timeout_ms: u32,
        convention: CallingConvention,
    },
    /// Tag 15. Run a module's deinitializers and handlers (`dlclose` order)
    /// and forget it. Answered by [`Reply::Removed`].
    RemoveModule { dso: u64 },
    /// Tag 16. End modules as `exit()` would. Answered by [`Reply::Done`].
    EndModules { dsos: Vec<u64> },
    /// Tag 17. Write `bytes` at `address` in live pages: make them
    /// read-write, write, then set `restore`.
    Patch {
        address: u64,
        restore: Prot,
        bytes: Vec<u8>,
    },
    /// Tag 18. Reply [`Reply::Ok`], then exit 0 (a checkpoint is discarded).
    Shutdown,
    /// Tag 19. Several requests in one frame (1 ..= [`MAX_BATCH`], no
    /// `Hello` and no nested `Batch`): every one but the last is a plain
    /// request ([`Request::is_plain`]), handled in order; the last is then
    /// handled as if sent alone and the batch gets its replies. The first
    /// failure ends the batch with its `Error` (message prefixed with the
    /// request's position and name); nothing after it runs. Encoded as a
    /// `u32` count, then each request's frame (`u32` length, tag, body).
    Batch { requests: Vec<Request> },
}

/// Executor -> controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Tag 1. First frame on every connection.
    Hello {
        magic: [u8; 4],
        version: u32,
        page_size: u64,
        /// e.g. `x86_64-unknown-linux-gnu`.
        target: String,
        capabilities: u32,
        pid: u32,
    },
    /// Tag 2.
    Ok,
    /// Tag 3.
    Error { code: ErrorCode, message: String },
    /// Tag 4. `shm_fd` is the memfd's descriptor number in the executor
    /// (open `/proc/<pid>/fd/<shm_fd>` to map it), or -1.
    Reserved { base: u64, shm_fd: i32 },
    /// Tag 5.
    Bytes { bytes: Vec<u8> },
    /// Tag 6.
    Symbols { symbols: Vec<SymbolInfo> },
    /// Tag 7. JIT'd code returned `value` (rax).
    Done { value: u64 },
    /// Tag 8. Position the module had in load order (`u64::MAX` = unknown).
    Removed { position: u64 },
    /// Tag 9. Sent by the signal handler, then the executor dies of
    /// `signal`. Fixed size: 1 + 4 + 4 + 8 + 8 + 1 bytes.
    Crashed {
        signal: i32,
        code: i32,
        fault_address: u64,
        pc: u64,
        stack_overflow: bool,
    },
    /// Tag 10. User code called `exit(status)`; stdio is flushed and the
    /// process is exiting.
    Exited { status: i32 },
    /// Tag 11. Snapshot policy: a checkpoint of process `pid` sleeps for the
    /// coming request (0 = none: `reason` says why).
    Checkpoint { pid: u32, reason: CheckpointSkip },
    /// Tag 12. The executor died; its checkpoint `pid` serves from now on,
    /// with the state from before the request that killed it.
    Resumed { pid: u32 },
}

/// Why no checkpoint was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum CheckpointSkip {
    /// A checkpoint was taken.
    Taken = 0,
    /// The process has several threads; `fork` would copy only one.
    Threads = 1,
    /// A writable shared mapping exists; a rollback would see its writes.
    SharedWritable = 2,
    /// `fork` failed.
    ForkFailed = 3,
}

/// Why a frame could not be read or decoded.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("connection closed")]
    Closed,
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame of {0} bytes exceeds the limit of {MAX_FRAME}")]
    TooLong(u32),
    #[error("empty frame")]
    Empty,
    #[error("unknown tag {0}")]
    UnknownTag(u8),
    #[error("truncated frame: {what} needs {need} bytes, {left} left")]
    Truncated {
        what: &'static str,
        need: usize,
        left: usize,
    },
    #[error("{what}: {value} is out of range")]
    BadValue { what: &'static str, value: u64 },
    #[error("{0} trailing bytes after the message")]
    Trailing(usize),
    #[error("string is not UTF-8")]
    NotUtf8,
    #[error("a batch cannot hold a request with tag {0} (Hello or Batch)")]
    Unbatchable(u8),
}

/// Bounds-checked reader over one frame body.
struct Cursor<'a> {
    data: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], ProtocolError> {
        if self.data.len() < n {
            return Err(ProtocolError::Truncated {
                what,
                need: n,
                left: self.data.len(),
            });
        }
        let (head, tail) = self.data.split_at(n);
        self.data = tail;
        Ok(head)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, ProtocolError> {
        Ok(self.take(1, what)?[0])
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, ProtocolError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes(b.try_into().expect("4 bytes")))
    }
    fn i32(&mut self, what: &'static str) -> Result<i32, ProtocolError> {
        Ok(self.u32(what)? as i32)
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, ProtocolError> {
        let b = self.take(8, what)?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }
    fn bool(&mut self, what: &'static str) -> Result<bool, ProtocolError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(ProtocolError::BadValue {
                what,
                value: v.into(),
            }),
        }
    }
    fn bytes(&mut self, what: &'static str) -> Result<Vec<u8>, ProtocolError> {
        let n = self.u32(what)? as usize;
        Ok(self.take(n, what)?.to_vec())
    }
    fn string(&mut self, what: &'static str) -> Result<String, ProtocolError> {
        String::from_utf8(self.bytes(what)?).map_err(|_| ProtocolError::NotUtf8)
    }
    /// A count of items each at least `min_item` bytes long: refused when
    /// the rest of the frame could not hold them.
    fn count(&mut self, min_item: usize, what: &'static str) -> Result<usize, ProtocolError> {
        let n = self.u32(what)? as usize;
        if n.saturating_mul(min_item) > self.data.len() {
            return Err(ProtocolError::Truncated {
                what,
                need: n.saturating_mul(min_item),
                left: self.data.len(),
            });
        }
        Ok(n)
    }
    fn u64s(&mut self, what: &'static str) -> Result<Vec<u64>, ProtocolError> {
        let n = self.count(8, what)?;
        (0..n).map(|_| self.u64(what)).collect()
    }
    fn strings(&mut self, what: &'static str) -> Result<Vec<String>, ProtocolError> {
        let n = self.count(4, what)?;
        (0..n).map(|_| self.string(what)).collect()
    }
    fn finish(self) -> Result<(), ProtocolError> {
        if self.data.is_empty() {
            Ok(())
        } else {
            Err(ProtocolError::Trailing(self.data.len()))
        }
    }
}

/// Appends encoded fields to a frame under construction.
struct Out {
    buf: Vec<u8>,
}

impl Out {
    fn new(tag: u8) -> Self {
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(&[0, 0, 0, 0, tag]);
        Out { buf }
    }
    fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.u32(v.len() as u32);
        self.buf.extend_from_slice(v);
        self
    }
    fn u64s(&mut self, v: &[u64]) -> &mut Self {
        self.u32(v.len() as u32);
        for &x in v {
            self.u64(x);
        }
        self
    }
    fn strings(&mut self, v: &[String]) -> &mut Self {
        self.u32(v.len() as u32);
        for s in v {
            self.bytes(s.as_bytes());
        }
        self
    }
    fn frame(mut self) -> Vec<u8> {
        let n = (self.buf.len() - 4) as u32;
        self.buf[..4].copy_from_slice(&n.to_le_bytes());
        self.buf
    }
}

fn enum_value<T: Copy>(
    value: u8,
    table: &[T],
    code: impl Fn(T) -> u8,
    what: &'static str,
) -> Result<T, ProtocolError> {
    table
        .iter()
        .copied()
        .find(|&t| code(t) == value)
        .ok_or(ProtocolError::BadValue {
            what,
            value: value.into(),
        })
}

fn recovery(v: u8) -> Result<Recovery, ProtocolError> {
    use Recovery::*;
    enum_value(v, &[None, Snapshot, Restart], |t| t as u8, "recovery")
}
fn placement(v: u8) -> Result<PlacementCode, ProtocolError> {
    use PlacementCode::*;
    enum_value(v, &[Any, NearHost, Low, Fixed], |t| t as u8, "placement")
}
fn prot(v: u8) -> Result<Prot, ProtocolError> {
    use Prot::*;
    enum_value(
        v,
        &[None, ReadExecute, ReadOnly, ReadWrite],
        |t| t as u8,
        "protection",
    )
}
fn library_kind(v: u8) -> Result<LibraryKind, ProtocolError> {
    enum_value(
        v,
        &[LibraryKind::Link, LibraryKind::Path],
        |t| t as u8,
        "library kind",
    )
}
fn symbol_kind(v: u8) -> Result<SymbolKind, ProtocolError> {
    use SymbolKind::*;
    enum_value(
        v,
        &[
            Missing,
            Function,
            Data,
            Tls,
            Unknown,
            InterposerDirect,
            InterposerPassDso,
        ],
        |t| t as u8,
        "symbol kind",
    )
}
fn error_code(v: u8) -> Result<ErrorCode, ProtocolError> {
    use ErrorCode::*;
    enum_value(
        v,
        &[Malformed, Refused, Memory, Library, Unwind, State],
        |t| t as u8,
        "error code",
    )
}
fn checkpoint_skip(v: u8) -> Result<CheckpointSkip, ProtocolError> {
    use CheckpointSkip::*;
    enum_value(
        v,
        &[Taken, Threads, SharedWritable, ForkFailed],
        |t| t as u8,
        "checkpoint reason",
    )
}

impl Request {
    /// The whole frame, length prefix included.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Request::Hello {
                version,
                recovery,
                token,
            } => Out::new(1)
                .u32(*version)
                .u8(*recovery as u8)
                .bytes(token)
                .frame_ref(),
            Request::Reserve {
                size,
                placement,
                address,
                shared,
            } => Out::new(2)
                .u64(*size)
                .u8(*placement as u8)
                .u64(*address)
                .u8(*shared as u8)
                .frame_ref(),
            Request::Write { address, bytes } => Out::new(3).u64(*address).bytes(bytes).frame_ref(),
            Request::Protect {
                address,
                size,
                prot,
            } => Out::new(4)
                .u64(*address)
                .u64(*size)
                .u8(*prot as u8)
                .frame_ref(),
            Request::Release { address, size } => Out::new(5).u64(*address).u64(*size).frame_ref(),
            Request::Read { address, size } => Out::new(6).u64(*address).u32(*size).frame_ref(),
            Request::Lookup { names } => Out::new(7).strings(names).frame_ref(),
            Request::OpenLibrary { kind, name } => Out::new(8)
                .u8(*kind as u8)
                .bytes(name.as_bytes())
                .frame_ref(),
            Request::RegisterFrames { address } => Out::new(9).u64(*address).frame_ref(),
            Request::DeregisterFrames { address } => Out::new(10).u64(*address).frame_ref(),
            Request::RegisterModule {
                dso,
                position,
                prioritized,
                unprioritized,
                convention,
            } => Out::new(11)
                .u64(*dso)
                .u64(*position)
                .u64s(prioritized)
                .u64s(unprioritized)
                .u8(convention.is_win64() as u8)
                .frame_ref(),
            Request::SetArgs { args } => Out::new(12).strings(args).frame_ref(),
            Request::RunInitializers {
                addresses,
                convention,
            } => Out::new(13)
                .u64s(addresses)
                .u8(convention.is_win64() as u8)
                .frame_ref(),
            Request::Call {
                address,
                args,
                main,
                timeout_ms,
                convention,
            } => {
                let mut out = Out::new(14);
                out.u64(*address);
                for &a in args {
                    out.u64(a);
                }
                out.u8(*main as u8)
                    .u32(*timeout_ms)
                    .u8(convention.is_win64() as u8)
                    .frame_ref()
            }
            Request::RemoveModule { dso } => Out::new(15).u64(*dso).frame_ref(),
            Request::EndModules { dsos } => Out::new(16).u64s(dsos).frame_ref(),
            Request::Patch {
                address,
                restore,
                bytes,
            } => Out::new(17)
                .u64(*address)
                .u8(*restore as u8)
                .bytes(bytes)
                .frame_ref(),
            Request::Shutdown => Out::new(18).frame_ref(),
            Request::Batch { requests } => {
                let mut frames = Vec::new();
                for r in requests {
                    frames.extend_from_slice(&r.encode());
                }
                batch_frame(requests.len() as u32, &frames)
            }
        }
    }

    /// Whether the request is *plain*: answered by [`Reply::Ok`] alone, runs
    /// no JIT'd code, and so may precede the last request of a
    /// [`Request::Batch`].
    pub fn is_plain(&self) -> bool {
        matches!(
            self,
            Request::Write { .. }
                | Request::Protect { .. }
                | Request::Release { .. }
                | Request::Patch { .. }
                | Request::RegisterFrames { .. }
                | Request::DeregisterFrames { .. }
                | Request::RegisterModule { .. }
                | Request::SetArgs { .. }
                | Request::OpenLibrary { .. }
        )
    }

    /// The request's name, as in `executor/PROTOCOL.md` (for messages).
    pub fn name(&self) -> &'static str {
        match self {
            Request::Hello { .. } => "Hello",
            Request::Reserve { .. } => "Reserve",
            Request::Write { .. } => "Write",
            Request::Protect { .. } => "Protect",
            Request::Release { .. } => "Release",
            Request::Read { .. } => "Read",
            Request::Lookup { .. } => "Lookup",
            Request::OpenLibrary { .. } => "OpenLibrary",
            Request::RegisterFrames { .. } => "RegisterFrames",
            Request::DeregisterFrames { .. } => "DeregisterFrames",
            Request::RegisterModule { .. } => "RegisterModule",
            Request::SetArgs { .. } => "SetArgs",
            Request::RunInitializers { .. } => "RunInitializers",
            Request::Call { .. } => "Call",
            Request::RemoveModule { .. } => "RemoveModule",
            Request::EndModules { .. } => "EndModules",
            Request::Patch { .. } => "Patch",
            Request::Shutdown => "Shutdown",
            Request::Batch { .. } => "Batch",
        }
    }

    /// Decodes one frame (tag + body, without the length prefix).
    #[expect(
        clippy::too_many_lines,
        reason = "one arm per request: to be generated from the declarative request table"
    )]
    pub fn decode(frame: &[u8]) -> Result<Request, ProtocolError> {
        let (&tag, body) = frame.split_first().ok_or(ProtocolError::Empty)?;
        let mut c = Cursor { data: body };
        let request = match tag {
            1 => Request::Hello {
                version: c.u32("version")?,
                recovery: recovery(c.u8("recovery")?)?,
                token: {
                    let token = c.bytes("token")?;
                    if token.len() > MAX_TOKEN {
                        return Err(ProtocolError::BadValue {
                            what: "token length",
                            value: token.len() as u64,
                        });
                    }
                    token
                },
            },
            2 => Request::Reserve {
                size: c.u64("size")?,
                placement: placement(c.u8("placement")?)?,
                address: c.u64("address")?,
                shared: c.bool("shared")?,
            },
            3 => Request::Write {
                address: c.u64("address")?,
                bytes: c.bytes("bytes")?,
            },
            4 => Request::Protect {
                address: c.u64("address")?,
                size: c.u64("size")?,
                prot: prot(c.u8("protection")?)?,
            },
            5 => Request::Release {
                address: c.u64("address")?,
                size: c.u64("size")?,
            },
            6 => {
                let address = c.u64("address")?;
                let size = c.u32("size")?;
                if size > MAX_READ {
                    return Err(ProtocolError::BadValue {
                        what: "read size",
                        value: size.into(),
                    });
                }
                Request::Read { address, size }
            }
            7 => {
                let names = c.strings("names")?;
                if names.len() > MAX_NAMES as usize {
                    return Err(ProtocolError::BadValue {
                        what: "name count",
                        value: names.len() as u64,
                    });
                }
                Request::Lookup { names }
            }
            8 => Request::OpenLibrary {
                kind: library_kind(c.u8("library kind")?)?,
                name: c.string("library name")?,
            },
            9 => Request::RegisterFrames {
                address: c.u64("address")?,
            },
            10 => Request::DeregisterFrames {
                address: c.u64("address")?,
            },
            11 => Request::RegisterModule {
                dso: c.u64("dso")?,
                position: c.u64("position")?,
                prioritized: c.u64s("prioritized")?,
                unprioritized: c.u64s("unprioritized")?,
                convention: CallingConvention::from_win64(c.bool("win64")?),
            },
            12 => Request::SetArgs {
                args: c.strings("args")?,
            },
            13 => Request::RunInitializers {
                addresses: c.u64s("addresses")?,
                convention: CallingConvention::from_win64(c.bool("win64")?),
            },
            14 => {
                let address = c.u64("address")?;
                let mut args = [0u64; 6];
                for a in &mut args {
                    *a = c.u64("argument")?;
                }
                Request::Call {
                    address,
                    args,
                    main: c.bool("main")?,
                    timeout_ms: c.u32("timeout")?,
                    convention: CallingConvention::from_win64(c.bool("win64")?),
                }
            }
            15 => Request::RemoveModule { dso: c.u64("dso")? },
            16 => Request::EndModules {
                dsos: c.u64s("dsos")?,
            },
            17 => Request::Patch {
                address: c.u64("address")?,
                restore: prot(c.u8("protection")?)?,
                bytes: c.bytes("bytes")?,
            },
            18 => Request::Shutdown,
            BATCH_TAG => {
                // Each element needs at least its length and its tag.
                let n = c.count(5, "batch")?;
                if n == 0 || n > MAX_BATCH as usize {
                    return Err(ProtocolError::BadValue {
                        what: "batch size",
                        value: n as u64,
                    });
                }
                let mut requests = Vec::with_capacity(n);
                for _ in 0..n {
                    let len = c.u32("batched request length")? as usize;
                    let element = c.take(len, "batched request")?;
                    // Checked before decoding, so decoding never recurses.
                    if let Some(&tag @ (1 | BATCH_TAG)) = element.first() {
                        return Err(ProtocolError::Unbatchable(tag));
                    }
                    requests.push(Request::decode(element)?);
                }
                Request::Batch { requests }
            }
            other => return Err(ProtocolError::UnknownTag(other)),
        };
        c.finish()?;
        Ok(request)
    }
}

/// Tag of [`Request::Batch`].
const BATCH_TAG: u8 = 19;

/// A whole [`Request::Batch`] frame, length prefix included, around
/// `count` requests already encoded back to back in `frames` (each as
/// [`Request::encode`] makes it, length prefix included). The caller keeps
/// `count` within 1 ..= [`MAX_BATCH`] and the result within [`MAX_FRAME`].
pub fn batch_frame(count: u32, frames: &[u8]) -> Vec<u8> {
    let mut out = Out {
        buf: Vec::with_capacity(BATCH_OVERHEAD + frames.len()),
    };
    out.buf.extend_from_slice(&[0, 0, 0, 0, BATCH_TAG]);
    out.u32(count);
    out.buf.extend_from_slice(frames);
    out.frame()
}

impl Out {
    /// `frame` for builder chains that end on `&mut Out`.
    fn frame_ref(&mut self) -> Vec<u8> {
        std::mem::replace(self, Out { buf: Vec::new() }).frame()
    }
}

impl Reply {
    /// The whole frame, length prefix included.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Reply::Hello {
                magic,
                version,
                page_size,
                target,
                capabilities,
                pid,
            } => {
                let mut out = Out::new(1);
                out.buf.extend_from_slice(magic);
                out.u32(*version)
                    .u64(*page_size)
                    .bytes(target.as_bytes())
                    .u32(*capabilities)
                    .u32(*pid)
                    .frame_ref()
            }
            Reply::Ok => Out::new(2).frame(),
            Reply::Error { code, message } => Out::new(3)
                .u8(*code as u8)
                .bytes(message.as_bytes())
                .frame_ref(),
            Reply::Reserved { base, shm_fd } => {
                Out::new(4).u64(*base).u32(*shm_fd as u32).frame_ref()
            }
            Reply::Bytes { bytes } => Out::new(5).bytes(bytes).frame_ref(),
            Reply::Symbols { symbols } => {
                let mut out = Out::new(6);
                out.u32(symbols.len() as u32);
                for s in symbols {
                    out.u8(s.kind as u8).u8(s.arg).u64(s.address).u64(s.size);
                }
                out.frame()
            }
            Reply::Done { value } => Out::new(7).u64(*value).frame_ref(),
            Reply::Removed { position } => Out::new(8).u64(*position).frame_ref(),
            Reply::Crashed {
                signal,
                code,
                fault_address,
                pc,
                stack_overflow,
            } => crashed_frame(*signal, *code, *fault_address, *pc, *stack_overflow).to_vec(),
            Reply::Exited { status } => Out::new(10).u32(*status as u32).frame_ref(),
            Reply::Checkpoint { pid, reason } => {
                Out::new(11).u32(*pid).u8(*reason as u8).frame_ref()
            }
            Reply::Resumed { pid } => Out::new(12).u32(*pid).frame_ref(),
        }
    }

    /// Decodes one frame (tag + body, without the length prefix).
    pub fn decode(frame: &[u8]) -> Result<Reply, ProtocolError> {
        let (&tag, body) = frame.split_first().ok_or(ProtocolError::Empty)?;
        let mut c = Cursor { data: body };
        let reply = match tag {
            1 => Reply::Hello {
                magic: c.take(4, "magic")?.try_into().expect("4 bytes"),
                version: c.u32("version")?,
                page_size: c.u64("page size")?,
                target: c.string("target")?,
                capabilities: c.u32("capabilities")?,
                pid: c.u32("pid")?,
            },
            2 => Reply::Ok,
            3 => Reply::Error {
                code: error_code(c.u8("error code")?)?,
                message: c.string("message")?,
            },
            4 => Reply::Reserved {
                base: c.u64("base")?,
                shm_fd: c.i32("shm fd")?,
            },
            5 => Reply::Bytes {
                bytes: c.bytes("bytes")?,
            },
            6 => {
                let n = c.count(18, "symbols")?;
                let mut symbols = Vec::with_capacity(n);
                for _ in 0..n {
                    symbols.push(SymbolInfo {
                        kind: symbol_kind(c.u8("symbol kind")?)?,
                        arg: c.u8("argument index")?,
                        address: c.u64("address")?,
                        size: c.u64("size")?,
                    });
                }
                Reply::Symbols { symbols }
            }
            7 => Reply::Done {
                value: c.u64("value")?,
            },
            8 => Reply::Removed {
                position: c.u64("position")?,
            },
            9 => Reply::Crashed {
                signal: c.i32("signal")?,
                code: c.i32("si_code")?,
                fault_address: c.u64("fault address")?,
                pc: c.u64("pc")?,
                stack_overflow: c.bool("stack overflow")?,
            },
            10 => Reply::Exited {
                status: c.i32("status")?,
            },
            11 => Reply::Checkpoint {
                pid: c.u32("pid")?,
                reason: checkpoint_skip(c.u8("checkpoint reason")?)?,
            },
            12 => Reply::Resumed { pid: c.u32("pid")? },
            other => return Err(ProtocolError::UnknownTag(other)),
        };
        c.finish()?;
        Ok(reply)
    }
}

/// Size of the [`Reply::Crashed`] frame, length prefix included.
pub const CRASHED_FRAME_LEN: usize = 4 + 1 + 4 + 4 + 8 + 8 + 1;

/// The [`Reply::Crashed`] frame, built without allocating (for signal
/// handlers, which send it with one `write(2)`).
pub fn crashed_frame(
    signal: i32,
    code: i32,
    fault_address: u64,
    pc: u64,
    stack_overflow: bool,
) -> [u8; CRASHED_FRAME_LEN] {
    let mut f = [0u8; CRASHED_FRAME_LEN];
    f[..4].copy_from_slice(&((CRASHED_FRAME_LEN - 4) as u32).to_le_bytes());
    f[4] = 9;
    f[5..9].copy_from_slice(&signal.to_le_bytes());
    f[9..13].copy_from_slice(&code.to_le_bytes());
    f[13..21].copy_from_slice(&fault_address.to_le_bytes());
    f[21..29].copy_from_slice(&pc.to_le_bytes());
    f[29] = stack_overflow as u8;
    f
}

/// Reads one frame: the length prefix, then exactly that many bytes. The
/// limit is checked before anything is allocated.
pub fn read_frame(reader: &mut impl Read) -> Result<Vec<u8>, ProtocolError> {
    let mut len = [0u8; 4];
    match reader.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Err(ProtocolError::Closed);
        }
        Err(e) => return Err(e.into()),
    }
    let n = u32::from_le_bytes(len);
    if n == 0 {
        return Err(ProtocolError::Empty);
    }
    if n > MAX_FRAME {
        return Err(ProtocolError::TooLong(n));
    }
    let mut frame = vec![0u8; n as usize];
    reader.read_exact(&mut frame).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            ProtocolError::Closed
        } else {
            e.into()
        }
    })?;
    Ok(frame)
}

/// Writes one encoded frame with a single `write_all`.
pub fn write_frame(writer: &mut impl Write, frame: &[u8]) -> Result<(), ProtocolError> {
    writer.write_all(frame)?;
    writer.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip_request(r: Request) {
        let frame = r.encode();
        assert_eq!(
            u32::from_le_bytes(frame[..4].try_into().unwrap()) as usize,
            frame.len() - 4
        );
        assert_eq!(Request::decode(&frame[4..]).unwrap(), r);
        // Every strict prefix of the body is refused, never a panic.
        for cut in 4..frame.len() {
            assert!(Request::decode(&frame[4..cut]).is_err(), "{r:?} cut {cut}");
        }
    }

    fn round_trip_reply(r: Reply) {
        let frame = r.encode();
        assert_eq!(Reply::decode(&frame[4..]).unwrap(), r);
        for cut in 4..frame.len() {
            assert!(Reply::decode(&frame[4..cut]).is_err(), "{r:?} cut {cut}");
        }
    }

    /// The body of an encoded request (without its length prefix).
    fn body(r: &Request) -> Vec<u8> {
        r.encode()[4..].to_vec()
    }

    fn refused_as(frame: &[u8]) -> (&'static str, u64) {
        match Request::decode(frame) {
            Err(ProtocolError::BadValue { what, value }) => (what, value),
            other => panic!("expected a BadValue, got {other:?}"),
        }
    }

    /// Each size limit of a request is inclusive: the limit itself is
    /// accepted, one past it refused, naming what and how much.
    #[test]
    fn request_limits_are_inclusive() {
        let hello = |len: usize| Request::Hello {
            version: VERSION,
            recovery: Recovery::None,
            token: vec![b'x'; len],
        };
        let at_limit = hello(MAX_TOKEN);
        assert_eq!(Request::decode(&body(&at_limit)).unwrap(), at_limit);
        assert_eq!(
            refused_as(&body(&hello(MAX_TOKEN + 1))),
            ("token length", MAX_TOKEN as u64 + 1)
        );

        let read = |size| Request::Read {
            address: 0x1000,
            size,
        };
        assert_eq!(
            Request::decode(&body(&read(MAX_READ))).unwrap(),
            read(MAX_READ)
        );
        assert_eq!(
            refused_as(&body(&read(MAX_READ + 1))),
            ("read size", u64::from(MAX_READ) + 1)
        );

        let lookup = |count: u32| Request::Lookup {
            names: vec![String::new(); count as usize],
        };
        let at_limit = lookup(MAX_NAMES);
        assert_eq!(Request::decode(&body(&at_limit)).unwrap(), at_limit);
        assert_eq!(
            refused_as(&body(&lookup(MAX_NAMES + 1))),
            ("name count", u64::from(MAX_NAMES) + 1)
        );
    }

    /// A reader that yields `data`, then fails with `end` (an error kind)
    /// or reports end of file (`None`).
    struct Stream {
        data: std::io::Cursor<Vec<u8>>,
        end: Option<std::io::ErrorKind>,
    }

    impl Read for Stream {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.data.read(buf)?;
            match (n, self.end) {
                (0, Some(kind)) if !buf.is_empty() => Err(kind.into()),
                _ => Ok(n),
            }
        }
    }

    fn read(data: Vec<u8>, end: Option<std::io::ErrorKind>) -> Result<Vec<u8>, ProtocolError> {
        read_frame(&mut Stream {
            data: std::io::Cursor::new(data),
            end,
        })
    }

    /// `read_frame`: end of file before or inside a frame is a closed
    /// connection, any other read error is an I/O error, the length limit
    /// is inclusive and checked before the body is read.
    #[test]
    fn frames_are_read_up_to_the_limit_and_end_cleanly() {
        let with_length = |n: u32, body: usize| {
            let mut bytes = n.to_le_bytes().to_vec();
            bytes.resize(4 + body, 7);
            bytes
        };
        assert_eq!(read(with_length(3, 3), None).unwrap(), [7, 7, 7]);
        assert!(matches!(read(vec![], None), Err(ProtocolError::Closed)));
        assert!(matches!(read(vec![1, 0], None), Err(ProtocolError::Closed)));
        assert!(matches!(
            read(with_length(3, 2), None),
            Err(ProtocolError::Closed)
        ));
        let broken = Some(std::io::ErrorKind::ConnectionReset);
        assert!(matches!(
            read(vec![1, 0], broken),
            Err(ProtocolError::Io(_))
        ));
        assert!(matches!(
            read(with_length(3, 2), broken),
            Err(ProtocolError::Io(_))
        ));
        assert!(matches!(
            read(with_length(0, 0), None),
            Err(ProtocolError::Empty)
        ));
        let max = MAX_FRAME as usize;
        assert_eq!(read(with_length(MAX_FRAME, max), None).unwrap().len(), max);
        assert!(matches!(
            read(with_length(MAX_FRAME + 1, 0), None),
            Err(ProtocolError::TooLong(n)) if n == MAX_FRAME + 1
        ));
    }

    /// One request of every kind.
    fn every_request() -> Vec<Request> {
        vec![
            Request::Hello {
                version: VERSION,
                recovery: Recovery::Snapshot,
                token: b"secret".to_vec(),
            },
            Request::Reserve {
                size: 1 << 30,
                placement: PlacementCode::NearHost,
                address: 0,
                shared: true,
            },
            Request::Write {
                address: 0x1000,
                bytes: vec![1, 2, 3],
            },
            Request::Protect {
                address: 0x1000,
                size: 0x2000,
                prot: Prot::ReadExecute,
            },
            Request::Release {
                address: 0x1000,
                size: 0x1000,
            },
            Request::Read {
                address: 0x1000,
                size: 8,
            },
            Request::Lookup {
                names: vec!["puts".into(), "atexit".into()],
            },
            Request::OpenLibrary {
                kind: LibraryKind::Link,
                name: "m".into(),
            },
            Request::RegisterFrames { address: 7 },
            Request::DeregisterFrames { address: 7 },
            Request::RegisterModule {
                dso: 9,
                position: u64::MAX,
                prioritized: vec![1],
                unprioritized: vec![2, 3],
                convention: CallingConvention::SysV,
            },
            Request::SetArgs {
                args: vec!["prog".into(), "x".into()],
            },
            Request::RunInitializers {
                addresses: vec![4, 5],
                convention: CallingConvention::Win64,
            },
            Request::Call {
                address: 0x10,
                args: [1, 2, 3, 4, 5, 6],
                main: true,
                timeout_ms: 300,
                convention: CallingConvention::SysV,
            },
            Request::RemoveModule { dso: 3 },
            Request::EndModules { dsos: vec![3, 4] },
            Request::Patch {
                address: 0x1000,
                restore: Prot::ReadOnly,
                bytes: vec![9; 8],
            },
            Request::Shutdown,
            Request::Batch {
                requests: vec![
                    Request::Write {
                        address: 0x1000,
                        bytes: vec![1, 2, 3],
                    },
                    Request::Protect {
                        address: 0x1000,
                        size: 0x1000,
                        prot: Prot::ReadExecute,
                    },
                    Request::Call {
                        address: 0x1000,
                        args: [1, 2, 0, 0, 0, 0],
                        main: false,
                        timeout_ms: 0,
                        convention: CallingConvention::SysV,
                    },
                ],
            },
            Request::Batch {
                requests: vec![Request::Shutdown],
            },
        ]
    }

    /// `PROTOCOL.md`'s table of request tags matches the encoder: the same
    /// tags with the same names, one row per request.
    #[test]
    fn the_protocol_document_lists_every_request_tag() {
        let doc = include_str!("../PROTOCOL.md");
        let table = &doc[doc.find("| tag | request").expect("the request table")..];
        let mut documented: Vec<(u8, String)> = Vec::new();
        for line in table.lines().skip(2) {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let (Some(tag), Some(name)) = (cells.get(1), cells.get(2)) else {
                break;
            };
            let Ok(tag) = tag.parse::<u8>() else { break };
            documented.push((tag, name.to_string()));
        }
        let mut encoded: Vec<(u8, String)> = every_request()
            .iter()
            .map(|r| (r.encode()[4], r.name().to_string()))
            .collect();
        encoded.sort();
        encoded.dedup();
        assert_eq!(documented, encoded, "executor/PROTOCOL.md's request table");
    }

    #[test]
    fn requests_round_trip_and_truncations_are_refused() {
        for r in every_request() {
            round_trip_request(r);
        }
    }

    /// A `Batch` frame body (tag + count + elements) around raw elements.
    fn batch_body(count: u32, elements: &[&[u8]]) -> Vec<u8> {
        let mut body = vec![BATCH_TAG];
        body.extend_from_slice(&count.to_le_bytes());
        for e in elements {
            body.extend_from_slice(&(e.len() as u32).to_le_bytes());
            body.extend_from_slice(e);
        }
        body
    }

    #[test]
    fn batch_encoding_is_the_elements_frames_back_to_back() {
        let write = Request::Write {
            address: 8,
            bytes: vec![7],
        };
        let frame = Request::Batch {
            requests: vec![write.clone(), Request::Shutdown],
        }
        .encode();
        let mut expected = vec![BATCH_TAG];
        expected.extend_from_slice(&2u32.to_le_bytes());
        expected.extend_from_slice(&write.encode());
        expected.extend_from_slice(&Request::Shutdown.encode());
        assert_eq!(&frame[4..], &expected[..]);
        assert_eq!(frame.len(), BATCH_OVERHEAD + expected.len() - 5);
        assert_eq!(
            batch_frame(2, &[write.encode(), Request::Shutdown.encode()].concat()),
            frame
        );
    }

    #[test]
    fn malformed_batches_are_refused() {
        let shutdown = &Request::Shutdown.encode()[4..];
        let hello = Request::Hello {
            version: VERSION,
            recovery: Recovery::None,
            token: vec![],
        }
        .encode();
        let nested = Request::Batch {
            requests: vec![Request::Shutdown],
        }
        .encode();
        // Empty.
        assert!(matches!(
            Request::decode(&batch_body(0, &[])),
            Err(ProtocolError::BadValue {
                what: "batch size",
                value: 0
            })
        ));
        // Nested, in any position, and Hello.
        for elements in [
            vec![&nested[4..]],
            vec![shutdown, &nested[4..]],
            vec![&nested[4..], shutdown],
            vec![&hello[4..], shutdown],
        ] {
            let body = batch_body(elements.len() as u32, &elements);
            assert!(
                matches!(
                    Request::decode(&body),
                    Err(ProtocolError::Unbatchable(1 | BATCH_TAG))
                ),
                "{elements:?}"
            );
        }
        // Too many (each element is a 1-byte Shutdown).
        let many = vec![shutdown; MAX_BATCH as usize + 1];
        assert!(matches!(
            Request::decode(&batch_body(MAX_BATCH + 1, &many)),
            Err(ProtocolError::BadValue {
                what: "batch size",
                ..
            })
        ));
        assert!(Request::decode(&batch_body(MAX_BATCH, &many[1..])).is_ok());
        // A count the frame cannot hold, without allocating for it.
        assert!(matches!(
            Request::decode(&batch_body(u32::MAX, &[shutdown])),
            Err(ProtocolError::Truncated { .. })
        ));
        // An element length that overruns the frame.
        let mut body = batch_body(1, &[shutdown]);
        body[5..9].copy_from_slice(&100u32.to_le_bytes());
        assert!(matches!(
            Request::decode(&body),
            Err(ProtocolError::Truncated { .. })
        ));
        // An empty element, an element with trailing bytes, a bad element.
        for element in [&[][..], &[18, 0][..], &[99][..]] {
            assert!(
                Request::decode(&batch_body(1, &[element])).is_err(),
                "{element:?}"
            );
        }
        // Bytes after the last element.
        let mut body = batch_body(1, &[shutdown]);
        body.push(0);
        assert!(matches!(
            Request::decode(&body),
            Err(ProtocolError::Trailing(1))
        ));
    }

    #[test]
    fn plain_requests_are_the_ones_answered_by_ok() {
        assert!(
            Request::Protect {
                address: 0,
                size: 0,
                prot: Prot::None
            }
            .is_plain()
        );
        assert!(Request::SetArgs { args: vec![] }.is_plain());
        for r in [
            Request::Shutdown,
            Request::Lookup { names: vec![] },
            Request::RemoveModule { dso: 1 },
            Request::Batch {
                requests: vec![Request::Shutdown],
            },
        ] {
            assert!(!r.is_plain(), "{}", r.name());
        }
    }

    #[test]
    fn replies_round_trip_and_truncations_are_refused() {
        for r in [
            Reply::Hello {
                magic: MAGIC,
                version: VERSION,
                page_size: 4096,
                target: "x86_64-unknown-linux-gnu".into(),
                capabilities: capability::SNAPSHOT,
                pid: 42,
            },
            Reply::Ok,
            Reply::Error {
                code: ErrorCode::Memory,
                message: "no".into(),
            },
            Reply::Reserved {
                base: 0x7000_0000,
                shm_fd: -1,
            },
            Reply::Bytes { bytes: vec![1] },
            Reply::Symbols {
                symbols: vec![SymbolInfo {
                    kind: SymbolKind::InterposerPassDso,
                    arg: 1,
                    address: 0x1234,
                    size: 0,
                }],
            },
            Reply::Done { value: 3 },
            Reply::Removed { position: 0 },
            Reply::Crashed {
                signal: 11,
                code: 1,
                fault_address: 0,
                pc: 0x1000,
                stack_overflow: false,
            },
            Reply::Exited { status: 42 },
            Reply::Checkpoint {
                pid: 77,
                reason: CheckpointSkip::Taken,
            },
            Reply::Resumed { pid: 77 },
        ] {
            round_trip_reply(r);
        }
    }

    #[test]
    fn hostile_frames_are_refused_without_allocating() {
        // A lookup claiming 4 billion names in a 5-byte body.
        let mut frame = vec![7u8];
        frame.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            Request::decode(&frame),
            Err(ProtocolError::Truncated { .. })
        ));
        // A write claiming a 4 GiB payload.
        let mut frame = vec![3u8];
        frame.extend_from_slice(&0u64.to_le_bytes());
        frame.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(Request::decode(&frame).is_err());
        assert!(matches!(
            Request::decode(&[99]),
            Err(ProtocolError::UnknownTag(99))
        ));
        assert!(matches!(Request::decode(&[]), Err(ProtocolError::Empty)));
        // Trailing garbage.
        assert!(matches!(
            Request::decode(&[18, 0]),
            Err(ProtocolError::Trailing(1))
        ));
        // An oversized length prefix is refused before reading the body.
        let mut input: &[u8] = &(MAX_FRAME + 1).to_le_bytes();
        assert!(matches!(
            read_frame(&mut input),
            Err(ProtocolError::TooLong(_))
        ));
        // A bad enum value.
        assert!(matches!(
            Request::decode(&[4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9]),
            Err(ProtocolError::BadValue { .. })
        ));
    }

    #[test]
    fn crashed_frame_matches_encoder() {
        let r = Reply::Crashed {
            signal: 7,
            code: 2,
            fault_address: 0xdead,
            pc: 0xbeef,
            stack_overflow: true,
        };
        assert_eq!(
            r.encode(),
            crashed_frame(7, 2, 0xdead, 0xbeef, true).to_vec()
        );
    }

    /// One reply of every kind.
    fn every_reply() -> Vec<Reply> {
        vec![
            Reply::Hello {
                magic: MAGIC,
                version: VERSION,
                page_size: 4096,
                target: "x86_64-unknown-linux-gnu".into(),
                capabilities: capability::SNAPSHOT,
                pid: 42,
            },
            Reply::Ok,
            Reply::Error {
                code: ErrorCode::Memory,
                message: "no".into(),
            },
            Reply::Reserved {
                base: 0x7000_0000,
                shm_fd: -1,
            },
            Reply::Bytes { bytes: vec![1] },
            Reply::Symbols {
                symbols: vec![SymbolInfo {
                    kind: SymbolKind::InterposerPassDso,
                    arg: 1,
                    address: 0x1234,
                    size: 0,
                }],
            },
            Reply::Done { value: 3 },
            Reply::Removed { position: 0 },
            Reply::Crashed {
                signal: 11,
                code: 1,
                fault_address: 0,
                pc: 0x1000,
                stack_overflow: false,
            },
            Reply::Exited { status: 42 },
            Reply::Checkpoint {
                pid: 77,
                reason: CheckpointSkip::Taken,
            },
            Reply::Resumed { pid: 77 },
        ]
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The encoder's output pinned byte for byte (length prefix included),
    /// so that a change to how any field is written cannot go unnoticed:
    /// version 3 controllers and executors elsewhere depend on it.
    #[test]
    fn every_frame_is_pinned_byte_for_byte() {
        let requests: Vec<String> = every_request().iter().map(|r| hex(&r.encode())).collect();
        let expected = [
            "1000000001030000000106000000736563726574",
            "1300000002000000400000000001000000000000000001",
            "1000000003001000000000000003000000010203",
            "12000000040010000000000000002000000000000001",
            "110000000500100000000000000010000000000000",
            "0d00000006001000000000000008000000",
            "170000000702000000040000007075747306000000617465786974",
            "070000000800010000006d",
            "09000000090700000000000000",
            "090000000a0700000000000000",
            "320000000b0900000000000000ffffffffffffffff010000000100000000000000020000000200000000000000030000000000000000",
            "120000000c020000000400000070726f670100000078",
            "160000000d020000000400000000000000050000000000000001",
            "3f0000000e1000000000000000010000000000000002000000000000000300000000000000040000000000000005000000000000000600000000000000012c01000000",
            "090000000f0300000000000000",
            "15000000100200000003000000000000000400000000000000",
            "1600000011001000000000000002080000000909090909090909",
            "0100000012",
            "7200000013030000001000000003001000000000000003000000010203120000000400100000000000000010000000000000013f0000000e0010000000000000010000000000000002000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
            "0a00000013010000000100000012",
        ];
        assert_eq!(requests, expected);
        let replies: Vec<String> = every_reply().iter().map(|r| hex(&r.encode())).collect();
        let expected = [
            "3500000001534c4452030000000010000000000000180000007838365f36342d756e6b6e6f776e2d6c696e75782d676e75020000002a000000",
            "0100000002",
            "080000000302020000006e6f",
            "0d000000040000007000000000ffffffff",
            "06000000050100000001",
            "170000000601000000060134120000000000000000000000000000",
            "09000000070300000000000000",
            "09000000080000000000000000",
            "1a000000090b000000010000000000000000000000001000000000000000",
            "050000000a2a000000",
            "060000000b4d00000000",
            "050000000c4d000000",
        ];
        assert_eq!(replies, expected);
    }

    /// The worked examples of `PROTOCOL.md` §2 are the encoder's bytes, and
    /// the document shows them (compared with all whitespace removed, so the
    /// document may wrap and group the bytes as it likes).
    #[test]
    fn the_protocol_documents_worked_examples_are_the_encoders_bytes() {
        let doc: String = include_str!("../PROTOCOL.md")
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let examples: [(Vec<u8>, &str); 9] = [
            (Reply::Ok.encode(), "01 00 00 00 02"),
            (Request::Shutdown.encode(), "01 00 00 00 12"),
            (
                Reply::Done { value: 5 }.encode(),
                "09 00 00 00 07 05 00 00 00 00 00 00 00",
            ),
            (
                Reply::Exited { status: 42 }.encode(),
                "05 00 00 00 0a 2a 00 00 00",
            ),
            (
                Request::Hello {
                    version: 3,
                    recovery: Recovery::None,
                    token: vec![],
                }
                .encode(),
                "0a 00 00 00 01 03 00 00 00 00 00 00 00 00",
            ),
            (
                Request::Lookup {
                    names: vec!["puts".into()],
                }
                .encode(),
                "0d 00 00 00 07 01 00 00 00 04 00 00 00 70 75 74 73",
            ),
            (
                Request::Batch {
                    requests: vec![
                        Request::RegisterFrames { address: 0x1000 },
                        Request::Shutdown,
                    ],
                }
                .encode(),
                "17 00 00 00 13 02 00 00 00 09 00 00 00 09 00 10 00 00 00 00 00 00 01 00 00 00 12",
            ),
            (
                Reply::Error {
                    code: ErrorCode::State,
                    message: "no".into(),
                }
                .encode(),
                "08 00 00 00 03 05 02 00 00 00 6e 6f",
            ),
            (
                Reply::Crashed {
                    signal: 11,
                    code: 1,
                    fault_address: 0,
                    pc: 0x7f00_0000_0000,
                    stack_overflow: false,
                }
                .encode(),
                "1a 00 00 00 09 0b 00 00 00 01 00 00 00 \
                 00 00 00 00 00 00 00 00 00 00 00 00 00 7f 00 00 00",
            ),
        ];
        for (frame, shown) in examples {
            let shown: String = shown.split_whitespace().collect();
            assert_eq!(hex(&frame), shown);
            assert!(doc.contains(&shown), "PROTOCOL.md does not show {shown}");
        }
    }
}
