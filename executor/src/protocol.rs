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
//! controller answers with [`Request::Hello`] and gets [`Reply::Welcome`]
//! (naming the process that serves the session) or an [`Reply::Error`]
//! followed by a closed connection. After that every request
//! gets exactly one final reply, in order. A controller that asked for it
//! in its `Hello` also gets the program's stdout and stderr as
//! [`Reply::Output`] frames, at any time, each before the frames that
//! follow it in time (so the output a call printed comes before its
//! outcome). Requests that run JIT'd code
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
//!
//! # How the code is laid out
//!
//! Each message is declared once, in the `messages!` invocations that
//! define [`Request`] and [`Reply`]: its tag, its name, for a request
//! whether it is plain, and its fields in wire order, each with its type,
//! the name decoding errors give it and, where the protocol bounds it, its
//! limit. The macro generates the enum, `encode`, `decode`, `name` and
//! `is_plain` from that one entry. How a field is written and read is its
//! type's business: the `Wire` trait, implemented below for the integers,
//! `bool`, byte strings, strings, lists, the small enums (declared with
//! `wire_enum!`) and the few irregular fields (the batch, the calling
//! convention, fixed arrays). All the checking (bounds, counts, enum
//! values, UTF-8, limits, trailing bytes) lives in those implementations,
//! in `Cursor` and in `decode_frame`, ordinary functions that tests and
//! mutation testing reach; the macros only list fields.
//!
//! Adding a request: one entry in the `Request` declaration (a new tag,
//! `[plain]` if it is answered by `Ok` alone and runs no code), its row in
//! `PROTOCOL.md`'s table, its sample in [`example_requests`], and its
//! handler in `server.rs`.

use crate::abi::CallingConvention;
use std::io::{Read, Write};

/// Protocol version; the handshake refuses any other.
pub const VERSION: u32 = 9;
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
/// Why a token text (a token file, or the variable that holds a token)
/// gives no usable token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token (its first line) is empty")]
    Empty,
    #[error("the token is longer than {MAX_TOKEN} bytes")]
    TooLong,
}

/// The token a token file or variable holds: its first line, without the
/// line's end (`\n` or `\r\n`). What follows the first line is ignored
/// (a comment, say); an empty first line is an error, as is a token longer
/// than [`MAX_TOKEN`]. Executor and controller read tokens this same way.
pub fn parse_token(text: &[u8]) -> Result<Vec<u8>, TokenError> {
    let line = text.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.is_empty() {
        return Err(TokenError::Empty);
    }
    if line.len() > MAX_TOKEN {
        return Err(TokenError::TooLong);
    }
    Ok(line.to_vec())
}

/// The lowest address a slab may start at: `Reserve` refuses anything in
/// the first 64 KiB (Linux's usual `vm.mmap_min_addr`), which stay
/// unmapped so that null-pointer reads and calls keep faulting, even for
/// root, who may map there.
pub const LOWEST_SLAB_ADDRESS: u64 = 0x1_0000;
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
    /// The program's stdout and stderr can be forwarded as
    /// [`super::Reply::Output`] frames ([`super::Request::Hello`]'s
    /// `forward_output`).
    pub const OUTPUT: u32 = 1 << 4;
}

/// Declares a one-byte enumeration of the wire format: the enum, with the
/// value each variant has on the wire, and its [`Wire`] codec, which refuses
/// any other value (as [`ProtocolError::BadValue`] named after the field).
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $enum:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $value:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(u8)]
        $vis enum $enum {
            $( $(#[$vmeta])* $variant = $value, )*
        }

        impl Wire for $enum {
            fn put(&self, out: &mut Out) {
                (*self as u8).put(out);
            }
            fn take(cursor: &mut Cursor<'_>, what: &'static str) -> Result<Self, ProtocolError> {
                enum_value(
                    u8::take(cursor, what)?,
                    &[$(Self::$variant),*],
                    |v| v as u8,
                    what,
                )
            }
        }
    };
}

/// Declares the messages of one direction: the enum and, from the same
/// entries, `encode`, `decode` and `name` (and, with the leading `batching`,
/// `is_plain`). An entry is the tag, the variant, `[plain]` for a plain
/// request, then the fields in wire order as `name: Type = "what"`, where
/// `Type` implements [`Wire`] and `what` names the field in decoding
/// errors; `(max LIMIT, "what")` after a field refuses a value (or length)
/// above `LIMIT` as it is read.
macro_rules! messages {
    (
        batching
        $(#[$meta:meta])*
        $vis:vis enum $enum:ident {
            $(
                $(#[$vmeta:meta])*
                $tag:literal $variant:ident $([$flag:ident])? $({ $($fields:tt)* })?,
            )*
        }
    ) => {
        messages! {
            $(#[$meta])*
            $vis enum $enum {
                $( $(#[$vmeta])* $tag $variant $({ $($fields)* })?, )*
            }
        }

        impl $enum {
            /// Whether the request is *plain*: answered by [`Reply::Ok`]
            /// alone, runs no JIT'd code, and so may precede the last
            /// request of a [`Request::Batch`]. (Marked `[plain]` where the
            /// request is declared.)
            pub fn is_plain(&self) -> bool {
                match self {
                    $( Self::$variant { .. } => flag!($($flag)?), )*
                }
            }
        }
    };
    (
        $(#[$meta:meta])*
        $vis:vis enum $enum:ident {
            $(
                $(#[$vmeta:meta])*
                $tag:literal $variant:ident $({
                    $(
                        $(#[$fmeta:meta])*
                        $field:ident: $ty:ty = $what:literal $((max $max:expr, $max_what:literal))?
                    ),* $(,)?
                })?,
            )*
        }
    ) => {
        $(#[$meta])*
        $vis enum $enum {
            $(
                #[doc = concat!("Tag ", stringify!($tag), ".")]
                $(#[$vmeta])*
                $variant $({ $( $(#[$fmeta])* $field: $ty, )* })?,
            )*
        }

        impl $enum {
            /// The whole frame, length prefix included.
            pub fn encode(&self) -> Vec<u8> {
                match self {
                    $(
                        Self::$variant $({ $($field),* })? => {
                            Out::new($tag) $($( .with($field) )*)? .frame()
                        }
                    )*
                }
            }

            /// Decodes one frame (tag + body, without the length prefix).
            pub fn decode(frame: &[u8]) -> Result<Self, ProtocolError> {
                decode_frame(frame, |tag, cursor| {
                    Ok(match tag {
                        $(
                            $tag => {
                                $($(
                                    let $field = <$ty as Wire>::take(cursor, $what)?;
                                    $( let $field = at_most($field, $max as u64, $max_what)?; )?
                                )*)?
                                Self::$variant $({ $($field),* })?
                            }
                        )*
                        other => return Err(ProtocolError::UnknownTag(other)),
                    })
                })
            }

            /// The message's name, as in `executor/PROTOCOL.md` (for
            /// messages).
            pub fn name(&self) -> &'static str {
                match self {
                    $( Self::$variant { .. } => stringify!($variant), )*
                }
            }
        }
    };
}

/// The value of a message's flag in `messages!`: true when the entry says
/// `[plain]`, false when it says nothing (any other word does not compile).
macro_rules! flag {
    () => {
        false
    };
    (plain) => {
        true
    };
}

wire_enum! {
    /// Recovery policy requested in the handshake. Only `Snapshot` changes the
    /// executor's behaviour; `Restart` is carried out by the controller.
    pub enum Recovery {
        None = 0,
        Snapshot = 1,
        Restart = 2,
    }
}

wire_enum! {
    /// Where [`Request::Reserve`] should put the reservation.
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
}

wire_enum! {
    /// Page protections of [`Request::Protect`] and [`Request::Patch`].
    pub enum Prot {
        None = 0,
        /// Read + execute (code).
        ReadExecute = 1,
        ReadOnly = 2,
        /// Read + write (data). With shared memory, mapped private.
        ReadWrite = 3,
    }
}

wire_enum! {
    /// How [`Request::OpenLibrary`] names a library.
    pub enum LibraryKind {
        /// `-l NAME`.
        Link = 0,
        /// A path (`--preload`).
        Path = 1,
    }
}

wire_enum! {
    /// What a looked-up name is in the executor.
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

wire_enum! {
    /// Error codes of [`Reply::Error`].
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
}

messages! {
    batching
    /// Controller -> executor.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Request {
        /// `token` must equal the executor's (empty when it has none).
        /// With `forward_output` (capability [`capability::OUTPUT`]) the
        /// program's stdout and stderr come back as [`Reply::Output`]
        /// frames instead of going to the executor's own.
        1 Hello {
            version: u32 = "version",
            recovery: Recovery = "recovery",
            token: Vec<u8> = "token" (max MAX_TOKEN, "token length"),
            forward_output: bool = "forward output",
        },
        /// One per session: reserve `size` bytes of address space
        /// (`PROT_NONE`, not committed). With `shared`, back it by a memfd.
        2 Reserve {
            size: u64 = "size",
            placement: PlacementCode = "placement",
            address: u64 = "address",
            shared: bool = "shared",
        },
        /// Copy `bytes` to `address` (inside the reservation), making the
        /// pages read-write first. Used while staging a new module.
        3 Write [plain] {
            address: u64 = "address",
            bytes: Vec<u8> = "bytes",
        },
        /// Set the protection of whole pages inside the reservation.
        4 Protect [plain] {
            address: u64 = "address",
            size: u64 = "size",
            prot: Prot = "protection",
        },
        /// Discard pages and make them inaccessible until written again.
        5 Release [plain] {
            address: u64 = "address",
            size: u64 = "size",
        },
        /// Read `size` (≤ [`MAX_READ`]) bytes of readable executor memory
        /// (host data to copy). Answered by [`Reply::Bytes`].
        6 Read {
            address: u64 = "address",
            size: u32 = "size" (max MAX_READ, "read size"),
        },
        /// Look names up: runtime interposers first, then host libraries.
        /// Answered by [`Reply::Symbols`], one entry per name, in order.
        7 Lookup {
            names: Vec<String> = "names" (max MAX_NAMES, "name count"),
        },
        /// Open a library searched by later lookups.
        8 OpenLibrary [plain] {
            kind: LibraryKind = "library kind",
            name: String = "library name",
        },
        /// `__register_frame(address)`.
        9 RegisterFrames [plain] {
            address: u64 = "address",
        },
        /// `__deregister_frame(address)`.
        10 DeregisterFrames [plain] {
            address: u64 = "address",
        },
        /// Record a module's deinitializers under `dso` at `position` in
        /// load order (`u64::MAX` = last).
        11 RegisterModule [plain] {
            dso: u64 = "dso",
            position: u64 = "position",
            prioritized: Vec<u64> = "prioritized",
            unprioritized: Vec<u64> = "unprioritized",
            /// The deinitializers' (and the module's `atexit` handlers')
            /// convention; on the wire, 1 for Microsoft x64 (a COFF module).
            convention: CallingConvention = "win64",
        },
        /// `argv` passed to initializers and `main` (envp is the
        /// executor's environment).
        12 SetArgs [plain] {
            args: Vec<String> = "args",
        },
        /// Call each address as `void (int, char **, char **)`, in order.
        /// Answered by [`Reply::Done`] with value 0.
        13 RunInitializers {
            addresses: Vec<u64> = "addresses",
            convention: CallingConvention = "win64",
        },
        /// Call `address` with six integer arguments (SysV), or as
        /// `int main(int, char **, char **)` when `main` is set. A nonzero
        /// `timeout_ms` arms a timer; expiry is reported as a crash with
        /// `SIGALRM`. `convention` is the function's (on the wire, 1 for
        /// Microsoft x64). Answered by [`Reply::Done`].
        14 Call {
            address: u64 = "address",
            args: [u64; 6] = "argument",
            main: bool = "main",
            timeout_ms: u32 = "timeout",
            convention: CallingConvention = "win64",
        },
        /// Run a module's deinitializers and handlers (`dlclose` order)
        /// and forget it. Answered by [`Reply::Removed`].
        15 RemoveModule {
            dso: u64 = "dso",
        },
        /// End modules as `exit()` would. Answered by [`Reply::Done`].
        16 EndModules {
            dsos: Vec<u64> = "dsos",
        },
        /// Write `bytes` at `address` in live pages: make them read-write,
        /// write, then set `restore`.
        17 Patch [plain] {
            address: u64 = "address",
            restore: Prot = "protection",
            bytes: Vec<u8> = "bytes",
        },
        /// Reply [`Reply::Ok`], then exit 0 (a checkpoint is discarded).
        18 Shutdown,
        /// Several requests in one frame (1 ..= [`MAX_BATCH`], no `Hello`
        /// and no nested `Batch`): every one but the last is a plain
        /// request ([`Request::is_plain`]), handled in order; the last is
        /// then handled as if sent alone and the batch gets its replies.
        /// The first failure ends the batch with its `Error` (message
        /// prefixed with the request's position and name); nothing after
        /// it runs. Encoded as a `u32` count, then each request's frame
        /// (`u32` length, tag, body).
        19 Batch {
            requests: Vec<Request> = "batch",
        },
        /// Give a module's thread-local template to the executor's dynamic
        /// loader (a TLS carrier): `init` then `zero_size` zero bytes,
        /// aligned to `align`; with `fixed`, at one thread-pointer offset in
        /// every thread (static TLS). Answered by [`Reply::ThreadLocals`].
        20 LoadThreadLocals {
            init: Vec<u8> = "template",
            zero_size: u64 = "zero size",
            align: u64 = "alignment",
            fixed: bool = "fixed",
        },
        /// Close the carrier [`Reply::ThreadLocals`] named `id`: every
        /// thread's copy of the block goes.
        21 DropThreadLocals [plain] {
            id: u64 = "thread-locals id",
        },
        /// Ask the executor's dynamic loader where the host's thread-local
        /// variable `name` lives (a host probe); with `fixed`, also its
        /// thread-pointer offset, placing its library in static TLS if no
        /// thread has used its block yet. Answered by
        /// [`Reply::HostThreadLocal`].
        22 HostThreadLocal {
            name: String = "symbol name",
            fixed: bool = "fixed",
        },
        /// Register an in-memory object (an ELF object whose section
        /// headers give its sections' load addresses) with the executor's
        /// debugger interface (the GDB JIT interface). Answered by
        /// [`Reply::Done`] with the token [`Request::UnregisterDebugObject`]
        /// takes.
        23 RegisterDebugObject {
            image: Vec<u8> = "object image",
        },
        /// Unregister what [`Request::RegisterDebugObject`] gave `token`.
        24 UnregisterDebugObject [plain] {
            token: u64 = "debug object token",
        },
        /// Map the first page of the jitdump file at `path` (which the
        /// controller writes for this process) read-execute: the marker by
        /// which `perf record` learns where the process's dump is.
        25 MapProfilerMarker {
            path: String = "jitdump path",
        },
    }
}

messages! {
    /// Executor -> controller.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Reply {
        /// First frame on every connection; `pid` is the process that
        /// sends it (over TCP, the listener).
        1 Hello {
            magic: [u8; 4] = "magic",
            version: u32 = "version",
            page_size: u64 = "page size",
            /// e.g. `x86_64-unknown-linux-gnu`.
            target: String = "target",
            capabilities: u32 = "capabilities",
            pid: u32 = "pid",
        },
        2 Ok,
        3 Error {
            code: ErrorCode = "error code",
            message: String = "message",
        },
        /// `shm_fd` is the memfd's descriptor number in the executor (open
        /// `/proc/<pid>/fd/<shm_fd>` to map it), or -1.
        4 Reserved {
            base: u64 = "base",
            shm_fd: i32 = "shm fd",
        },
        5 Bytes {
            bytes: Vec<u8> = "bytes",
        },
        6 Symbols {
            symbols: Vec<SymbolInfo> = "symbols",
        },
        /// JIT'd code returned `value` (rax).
        7 Done {
            value: u64 = "value",
        },
        /// Position the module had in load order (`u64::MAX` = unknown).
        8 Removed {
            position: u64 = "position",
        },
        /// Sent by the signal handler, then the executor dies of `signal`.
        /// Fixed size: 1 + 4 + 4 + 8 + 8 + 1 bytes; the handler builds it
        /// with [`crashed_frame`].
        9 Crashed {
            signal: i32 = "signal",
            code: i32 = "si_code",
            fault_address: u64 = "fault address",
            pc: u64 = "pc",
            stack_overflow: bool = "stack overflow",
            /// The crashed thread's frames from `pc` outwards (return
            /// addresses after the first), at most [`MAX_BACKTRACE`]; just
            /// `pc` when the unwinder could not walk the stack.
            backtrace: Vec<u64> = "backtrace",
        },
        /// User code called `exit(status)`; stdio is flushed and the
        /// process is exiting.
        10 Exited {
            status: i32 = "status",
        },
        /// Snapshot policy: a checkpoint of process `pid` sleeps for the
        /// coming request (0 = none: `reason` says why).
        11 Checkpoint {
            pid: u32 = "pid",
            reason: CheckpointSkip = "checkpoint reason",
        },
        /// The executor died; its checkpoint `pid` serves from now on, with
        /// the state from before the request that killed it.
        12 Resumed {
            pid: u32 = "pid",
        },
        /// The answer to an accepted [`Request::Hello`]: the session begins,
        /// served by process `pid` (over TCP a process forked for the
        /// connection once its `Hello` passed, so not the one that sent
        /// [`Reply::Hello`]).
        13 Welcome {
            pid: u32 = "pid",
        },
        /// Forwarded output: `bytes` the program wrote to `stream`, sent
        /// before every frame that follows it in time; at most
        /// [`MAX_OUTPUT`] bytes per frame. Handlers build it without
        /// allocating, from [`output_frame_header`].
        14 Output {
            stream: Stream = "stream",
            bytes: Vec<u8> = "bytes",
        },
        /// A module's thread-local block, loaded: `id` for
        /// [`Request::DropThreadLocals`], the loader's `module` id (for
        /// `__tls_get_addr`), and for a fixed block its thread-pointer
        /// offset (two's complement: negative on x86-64; 0 otherwise).
        15 ThreadLocals {
            id: u64 = "thread-locals id",
            module: u64 = "module id",
            tp_offset: u64 = "tp offset",
        },
        /// Where a host thread-local variable lives: its library's
        /// `module` id and the variable's `offset` in that module's block,
        /// and when `fixed` (asked for and granted), its thread-pointer
        /// offset (two's complement; 0 otherwise).
        16 HostThreadLocal {
            module: u64 = "module id",
            offset: u64 = "offset",
            fixed: bool = "fixed",
            tp_offset: u64 = "tp offset",
        },
    }
}

wire_enum! {
    /// Which of the program's streams a [`Reply::Output`] carries: the
    /// value is its descriptor number.
    pub enum Stream {
        Stdout = 1,
        Stderr = 2,
    }
}

wire_enum! {
    /// Why no checkpoint was taken.
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
    /// The next `N` bytes, as one field.
    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], ProtocolError> {
        let mut bytes = [0; N];
        bytes.copy_from_slice(self.take(N, what)?);
        Ok(bytes)
    }
    /// A count of items each at least `min_item` bytes long: refused when
    /// the rest of the frame could not hold them.
    fn count(&mut self, min_item: usize, what: &'static str) -> Result<usize, ProtocolError> {
        let n = u32::take(self, what)? as usize;
        if n.saturating_mul(min_item) > self.data.len() {
            return Err(ProtocolError::Truncated {
                what,
                need: n.saturating_mul(min_item),
                left: self.data.len(),
            });
        }
        Ok(n)
    }
    fn finish(self) -> Result<(), ProtocolError> {
        if self.data.is_empty() {
            Ok(())
        } else {
            Err(ProtocolError::Trailing(self.data.len()))
        }
    }
}

/// Decodes one frame (tag + body) with `body`, which reads the fields of
/// the message `tag` names (or refuses the tag); the fields must use up the
/// frame.
fn decode_frame<'f, T>(
    frame: &'f [u8],
    body: impl FnOnce(u8, &mut Cursor<'f>) -> Result<T, ProtocolError>,
) -> Result<T, ProtocolError> {
    let (&tag, rest) = frame.split_first().ok_or(ProtocolError::Empty)?;
    let mut cursor = Cursor { data: rest };
    let message = body(tag, &mut cursor)?;
    cursor.finish()?;
    Ok(message)
}

/// A frame under construction.
struct Out {
    buf: Vec<u8>,
}

impl Out {
    /// A frame with message tag `tag`, its length prefix still to be set.
    fn new(tag: u8) -> Self {
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(&[0, 0, 0, 0, tag]);
        Out { buf }
    }
    /// Appends a field (for the chains `messages!` generates).
    fn with(mut self, field: &impl Wire) -> Self {
        field.put(&mut self);
        self
    }
    /// Appends bytes as they are.
    fn raw(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }
    /// Appends a byte string: its `u32` length, then the bytes.
    fn bytes(&mut self, bytes: &[u8]) {
        (bytes.len() as u32).put(self);
        self.raw(bytes);
    }
    /// The finished frame, its length prefix set.
    fn frame(mut self) -> Vec<u8> {
        let n = (self.buf.len() - 4) as u32;
        self.buf[..4].copy_from_slice(&n.to_le_bytes());
        self.buf
    }
}

/// A field type of the wire format: how a value is written and read back.
/// `what` names the field in decoding errors. Every `take` checks what it
/// reads (bounds, values, counts) and returns a [`ProtocolError`] rather
/// than panicking: frames come from the other side of a connection.
trait Wire: Sized {
    fn put(&self, out: &mut Out);
    fn take(cursor: &mut Cursor<'_>, what: &'static str) -> Result<Self, ProtocolError>;
}

/// `u8`: one byte.
impl Wire for u8 {
    fn put(&self, out: &mut Out) {
        out.raw(&[*self]);
    }
    fn take(cursor: &mut Cursor<'_>, what: &'static str) -> Result<Self, ProtocolError> {
        Ok(cursor.array::<1>(what)?[0])
    }
}

/// `u32`: four bytes, little-endian.
impl Wire for u32 {
    fn put(&self, out: &mut Out) {
        out.raw(&self.to_le_bytes());
    }
    fn take(cursor: &mut Cursor<'_>, what: &'static str) -> Result<Self, ProtocolError> {
        Ok(u32::from_le_bytes(cursor.array(what)?))
    }
}

/// `i32`: four bytes, little-endian, two's complement.
impl Wire for i32 {
    fn put(&self, out: &mut Out) {
        out.raw(&self.to_le_bytes());
    }
    fn take(cursor: &mut Cursor<'_>, what: &'static str) -> Result<Self, ProtocolError> {
        Ok(i32::from_le_bytes(cursor.array(what)?))
    }
}

/// `u64`: eight bytes, little-endian.
impl Wire for u64 {
    fn put(&self, out: &mut Out) {
        out.raw(&self.to_le_bytes());
    }
    fn take(cursor: &mut Cursor<'_>, what: &'static str) -> Result<Self, ProtocolError> {
        Ok(u64::from_le_bytes(cursor.array(what)?))
    }
}

/// `bool`: one byte, 0 or 1; any other value is malformed.
impl Wire for bool {
    fn put(&self, out: &mut Out) {
        u8::from(*self).put(out);
    }
    fn take(cursor: &mut Cursor<'_>, what: &'static str) -> Result<Self, ProtocolError> {
        match u8::take(cursor, what)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(ProtocolError::BadValue {
                what,
                value: v.into(),
            }),
        }
    }
}

/// `bytes`: a `u32` length, then that many bytes.
impl Wire for Vec<u8> {
    fn put(&self, out: &mut Out) {
        out.bytes(self);
    }
    fn take(cursor: &mut Cursor<'_>, what: &'static str) -> Result<Self, ProtocolError> {
        let n = u32::take(cursor, what)? as usize;
        Ok(cursor.take(n, what)?.to_vec())
    }
}

/// `string`: like `bytes`, and the bytes must be UTF-8.
impl Wire for String {
    fn put(&self, out: &mut Out) {
        out.bytes(self.as_bytes());
    }
    fn take(cursor: &mut Cursor<'_>, what: &'static str) -> Result<Self, ProtocolError> {
        String::from_utf8(Vec::take(cursor, what)?).map_err(|_| ProtocolError::NotUtf8)
    }
}

/// A fixed number of bytes, as they are (the magic of [`Reply::Hello`]).
impl<const N: usize> Wire for [u8; N] {
    fn put(&self, out: &mut Out) {
        out.raw(self);
    }
    fn take(cursor: &mut Cursor<'_>, what: &'static str) -> Result<Self, ProtocolError> {
        cursor.array(what)
    }
}

/// A fixed number of `u64`s, without a count (the arguments of
/// [`Request::Call`]).
impl<const N: usize> Wire for [u64; N] {
    fn put(&self, out: &mut Out) {
        for value in self {
            value.put(out);
        }
    }
    fn take(cursor: &mut Cursor<'_>, what: &'static str) -> Result<Self, ProtocolError> {
        let mut values = [0; N];
        for value in &mut values {
            *value = u64::take(cursor, what)?;
        }
        Ok(values)
    }
}

/// A function's calling convention: on the wire the `bool` `win64`, set
/// for Microsoft x64.
impl Wire for CallingConvention {
    fn put(&self, out: &mut Out) {
        self.is_win64().put(out);
    }
    fn take(cursor: &mut Cursor<'_>, what: &'static str) -> Result<Self, ProtocolError> {
        bool::take(cursor, what).map(CallingConvention::from_win64)
    }
}

/// An item of a `list<T>`, with the fewest bytes one can take on the wire:
/// a list's count is refused when the rest of the frame could not hold that
/// many, before anything is allocated for them.
trait Item: Wire {
    const MIN_SIZE: usize;
}

impl Item for u64 {
    const MIN_SIZE: usize = 8;
}

/// At least its length.
impl Item for String {
    const MIN_SIZE: usize = 4;
}

/// Kind, argument index, address and size.
impl Item for SymbolInfo {
    const MIN_SIZE: usize = 1 + 1 + 8 + 8;
}

/// `list<T>`: a `u32` count, then the items. (`Vec<u8>` is `bytes` and
/// `Vec<Request>` a batch: neither is an [`Item`].)
impl<T: Item> Wire for Vec<T> {
    fn put(&self, out: &mut Out) {
        (self.len() as u32).put(out);
        for item in self {
            item.put(out);
        }
    }
    fn take(cursor: &mut Cursor<'_>, what: &'static str) -> Result<Self, ProtocolError> {
        let n = cursor.count(T::MIN_SIZE, what)?;
        (0..n).map(|_| T::take(cursor, what)).collect()
    }
}

impl Wire for SymbolInfo {
    fn put(&self, out: &mut Out) {
        self.kind.put(out);
        self.arg.put(out);
        self.address.put(out);
        self.size.put(out);
    }
    fn take(cursor: &mut Cursor<'_>, _: &'static str) -> Result<Self, ProtocolError> {
        Ok(SymbolInfo {
            kind: Wire::take(cursor, "symbol kind")?,
            arg: Wire::take(cursor, "argument index")?,
            address: Wire::take(cursor, "address")?,
            size: Wire::take(cursor, "size")?,
        })
    }
}

/// Tag of [`Request::Batch`].
const BATCH_TAG: u8 = 19;
/// Tag of [`Request::Hello`], which a batch cannot hold.
const HELLO_TAG: u8 = 1;

/// The body of a [`Request::Batch`]: a `u32` count (1 ..= [`MAX_BATCH`]),
/// then each request's whole frame (`u32` length, tag, body), so that a
/// sender can concatenate the frames it would have sent.
impl Wire for Vec<Request> {
    fn put(&self, out: &mut Out) {
        (self.len() as u32).put(out);
        for request in self {
            out.raw(&request.encode());
        }
    }
    fn take(cursor: &mut Cursor<'_>, what: &'static str) -> Result<Self, ProtocolError> {
        take_batch(cursor, what, Request::decode)
    }
}

/// A batch's body (see `Vec<Request>`'s wire form), each element decoded
/// by `decode` in turn.
fn take_batch<'f, T>(
    cursor: &mut Cursor<'f>,
    what: &'static str,
    decode: impl Fn(&'f [u8]) -> Result<T, ProtocolError>,
) -> Result<Vec<T>, ProtocolError> {
    // Each element needs at least its length and its tag.
    let n = cursor.count(5, what)?;
    if n == 0 || n > MAX_BATCH as usize {
        return Err(ProtocolError::BadValue {
            what: "batch size",
            value: n as u64,
        });
    }
    let mut requests = Vec::with_capacity(n);
    for _ in 0..n {
        let len = u32::take(cursor, "batched request length")? as usize;
        let element = cursor.take(len, "batched request")?;
        // Checked before decoding, so decoding never recurses.
        if let Some(&tag @ (HELLO_TAG | BATCH_TAG)) = element.first() {
            return Err(ProtocolError::Unbatchable(tag));
        }
        requests.push(decode(element)?);
    }
    Ok(requests)
}

/// A request as [`Request::decode`] decodes it, except that a `Write`
/// keeps its bytes where the frame holds them: a large load's image is
/// megabytes, and a copy of it is that much fresh memory to fill.
#[derive(Debug, PartialEq)]
pub enum Incoming<'f> {
    Write { address: u64, bytes: &'f [u8] },
    Other(Request),
}

impl<'f> Incoming<'f> {
    /// Decodes one request frame (tag + body), with the checks and errors
    /// of [`Request::decode`].
    pub fn decode(frame: &'f [u8]) -> Result<Incoming<'f>, ProtocolError> {
        if frame.first() != Some(&WRITE_TAG) {
            return Request::decode(frame).map(Incoming::Other);
        }
        // The fields of `Write`, read as `messages!` reads them.
        decode_frame(frame, |_, cursor| {
            let address = u64::take(cursor, "address")?;
            let len = u32::take(cursor, "bytes")? as usize;
            let bytes = cursor.take(len, "bytes")?;
            Ok(Incoming::Write { address, bytes })
        })
    }

    /// The request itself (a `Write` with its bytes copied).
    pub fn into_request(self) -> Request {
        match self {
            Incoming::Write { address, bytes } => Request::Write {
                address,
                bytes: bytes.to_vec(),
            },
            Incoming::Other(request) => request,
        }
    }

    /// Whether it is answered by `Ok` (see [`Request::is_plain`]).
    pub fn is_plain(&self) -> bool {
        match self {
            Incoming::Write { .. } => true,
            Incoming::Other(request) => request.is_plain(),
        }
    }

    /// Its message's name (see [`Request::name`]).
    pub fn name(&self) -> &'static str {
        match self {
            Incoming::Write { .. } => "Write",
            Incoming::Other(request) => request.name(),
        }
    }
}

/// Whether [`decode_incoming`] read `frame` as [`Request::decode`] does:
/// the same requests (a batch's elements, or the one), or the same error.
/// For tests and the protocol fuzz target.
pub fn decoded_alike(frame: &[u8]) -> bool {
    match (Request::decode(frame), decode_incoming(frame)) {
        (Ok(request), Ok(incoming)) => {
            let requests = match request {
                Request::Batch { requests } => requests,
                one => vec![one],
            };
            let incoming: Vec<Request> = incoming.into_iter().map(Incoming::into_request).collect();
            requests == incoming
        }
        (Err(a), Err(b)) => a.to_string() == b.to_string(),
        _ => false,
    }
}

/// Whether [`read_frame_head`] (then the payload of a lone `Write`, read
/// from what follows) reads the frame at the start of `stream` as
/// [`read_frame`] and [`decode_incoming`] do: the same frame, the same
/// write, or the same error. For tests and the protocol fuzz target.
pub fn read_alike(stream: &[u8]) -> bool {
    let (mut whole, mut headed) = (stream, stream);
    let expected = read_frame(&mut whole);
    let got = read_frame_head(&mut headed).and_then(|head| match head {
        FrameHead::Frame(frame) => Ok((frame, headed)),
        FrameHead::Write { address, len } => {
            let payload = headed.get(..len).ok_or(ProtocolError::Closed)?;
            let mut frame = write_frame_header(address, len)[4..].to_vec();
            frame.extend_from_slice(payload);
            Ok((frame, &headed[len..]))
        }
    });
    match (expected, got) {
        (Ok(frame), Ok((same, rest))) => frame == same && rest == whole,
        (Err(a), Err(b)) => a.to_string() == b.to_string(),
        _ => false,
    }
}

/// A request frame's requests, decoded as [`Incoming`]: a batch's
/// elements, or the one request of any other frame. The checks and errors
/// are [`Request::decode`]'s.
pub fn decode_incoming(frame: &[u8]) -> Result<Vec<Incoming<'_>>, ProtocolError> {
    if frame.first() != Some(&BATCH_TAG) {
        return Incoming::decode(frame).map(|one| vec![one]);
    }
    decode_frame(frame, |_, cursor| {
        take_batch(cursor, "batch", Incoming::decode)
    })
}

/// A field whose size the protocol bounds: a number, or the length of a
/// byte string or list.
trait Amount {
    fn amount(&self) -> u64;
}

impl Amount for u32 {
    fn amount(&self) -> u64 {
        u64::from(*self)
    }
}

impl<T> Amount for Vec<T> {
    fn amount(&self) -> u64 {
        self.len() as u64
    }
}

/// `value`, unless its amount exceeds `max` (a field's `(max ..)` in
/// [`messages!`]).
fn at_most<T: Amount>(value: T, max: u64, what: &'static str) -> Result<T, ProtocolError> {
    let amount = value.amount();
    if amount > max {
        return Err(ProtocolError::BadValue {
            what,
            value: amount,
        });
    }
    Ok(value)
}

/// The variant of `table` whose wire value (`code`) is `value`.
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

/// Tag of [`Request::Write`], as its declaration in `messages!` gives it
/// (the protocol tests check the frames made with it against `encode`'s
/// and `decode`'s).
const WRITE_TAG: u8 = 3;

/// Appends to `frames` the frame of `Request::Write { address, bytes }`,
/// length prefix included, exactly as [`Request::encode`] makes it, but
/// from `bytes` as they lie: a large load's image is megabytes, and each
/// copy of it is that much fresh memory to fill. The caller keeps `bytes`
/// within [`MAX_WRITE`].
pub fn append_write_frame(frames: &mut Vec<u8>, address: u64, bytes: &[u8]) {
    let start = frames.len();
    let mut out = Out {
        buf: std::mem::take(frames),
    };
    out.buf.reserve(WRITE_HEADER_LEN + bytes.len());
    out.raw(&[0, 0, 0, 0, WRITE_TAG]);
    address.put(&mut out);
    out.bytes(bytes);
    let n = (out.buf.len() - start - 4) as u32;
    out.buf[start..start + 4].copy_from_slice(&n.to_le_bytes());
    *frames = out.buf;
}

/// Size of a [`Request::Write`] frame before its bytes: the length prefix,
/// the tag, the address and the bytes' length.
pub const WRITE_HEADER_LEN: usize = 4 + 1 + 8 + 4;

/// The first [`WRITE_HEADER_LEN`] bytes of the frame of
/// `Request::Write { address, bytes }` for `len` bytes: the frame is these
/// and the bytes, sent as they lie. The caller keeps `len` within
/// [`MAX_WRITE`].
pub fn write_frame_header(address: u64, len: usize) -> [u8; WRITE_HEADER_LEN] {
    let mut header = [0u8; WRITE_HEADER_LEN];
    let frame_len = (WRITE_HEADER_LEN - 4 + len) as u32;
    header[..4].copy_from_slice(&frame_len.to_le_bytes());
    header[4] = WRITE_TAG;
    header[5..13].copy_from_slice(&address.to_le_bytes());
    header[13..].copy_from_slice(&(len as u32).to_le_bytes());
    header
}

/// Makes the first [`BATCH_OVERHEAD`] bytes of `frames` the head of a
/// [`Request::Batch`] frame around the `count` requests that follow them
/// (each as [`Request::encode`] makes it): the whole frame, as
/// [`batch_frame`] makes it, without copying the requests. The caller
/// keeps `count` within 1 ..= [`MAX_BATCH`] and the frame within
/// [`MAX_FRAME`].
pub fn finish_batch_in_place(count: u32, frames: &mut [u8]) {
    let n = (frames.len() - 4) as u32;
    frames[..4].copy_from_slice(&n.to_le_bytes());
    frames[4] = BATCH_TAG;
    frames[5..BATCH_OVERHEAD].copy_from_slice(&count.to_le_bytes());
}

/// A whole [`Request::Batch`] frame, length prefix included, around
/// `count` requests already encoded back to back in `frames` (each as
/// [`Request::encode`] makes it, length prefix included). The caller keeps
/// `count` within 1 ..= [`MAX_BATCH`] and the result within [`MAX_FRAME`].
pub fn batch_frame(count: u32, frames: &[u8]) -> Vec<u8> {
    let mut out = Out {
        buf: Vec::with_capacity(BATCH_OVERHEAD + frames.len()),
    };
    out.raw(&[0, 0, 0, 0, BATCH_TAG]);
    count.put(&mut out);
    out.raw(frames);
    out.frame()
}

/// The most bytes one [`Reply::Output`] frame carries.
pub const MAX_OUTPUT: usize = 64 << 10;
/// Tag of [`Reply::Output`].
const OUTPUT_TAG: u8 = 14;
/// Size of a [`Reply::Output`] frame before its bytes: the length prefix,
/// the tag, the stream and the bytes' length.
pub const OUTPUT_HEADER_LEN: usize = 4 + 1 + 1 + 4;

/// The start of a [`Reply::Output`] frame carrying `len` (at most
/// [`MAX_OUTPUT`]) bytes of `stream`, which follow it; built without
/// allocating (for signal handlers and exit paths).
pub fn output_frame_header(stream: Stream, len: usize) -> [u8; OUTPUT_HEADER_LEN] {
    debug_assert!(len <= MAX_OUTPUT);
    let mut f = [0u8; OUTPUT_HEADER_LEN];
    f[..4].copy_from_slice(&((OUTPUT_HEADER_LEN - 4 + len) as u32).to_le_bytes());
    f[4] = OUTPUT_TAG;
    f[5] = stream as u8;
    f[6..].copy_from_slice(&(len as u32).to_le_bytes());
    f
}

/// Whether `frame` (tag and body, without the length prefix) is a
/// [`Reply::Output`], which a controller handles wherever it reads.
pub fn is_output(frame: &[u8]) -> bool {
    frame.first() == Some(&OUTPUT_TAG)
}

/// At most this many frames in a [`Reply::Crashed`] backtrace.
pub const MAX_BACKTRACE: usize = 24;

/// The largest [`Reply::Crashed`] frame, length prefix included.
pub const CRASHED_FRAME_LEN: usize = 4 + 1 + 4 + 4 + 8 + 8 + 1 + 4 + 8 * MAX_BACKTRACE;

/// The [`Reply::Crashed`] frame, built without allocating (for signal
/// handlers, which send it with one `write(2)`): the buffer and how many
/// of its bytes are the frame. Frames past [`MAX_BACKTRACE`] are left out.
pub fn crashed_frame(
    signal: i32,
    code: i32,
    fault_address: u64,
    pc: u64,
    stack_overflow: bool,
    backtrace: &[u64],
) -> ([u8; CRASHED_FRAME_LEN], usize) {
    let frames = &backtrace[..backtrace.len().min(MAX_BACKTRACE)];
    let len = 4 + 1 + 4 + 4 + 8 + 8 + 1 + 4 + 8 * frames.len();
    let mut f = [0u8; CRASHED_FRAME_LEN];
    f[..4].copy_from_slice(&((len - 4) as u32).to_le_bytes());
    f[4] = 9;
    f[5..9].copy_from_slice(&signal.to_le_bytes());
    f[9..13].copy_from_slice(&code.to_le_bytes());
    f[13..21].copy_from_slice(&fault_address.to_le_bytes());
    f[21..29].copy_from_slice(&pc.to_le_bytes());
    f[29] = stack_overflow as u8;
    f[30..34].copy_from_slice(&(frames.len() as u32).to_le_bytes());
    for (i, frame) in frames.iter().enumerate() {
        f[34 + 8 * i..42 + 8 * i].copy_from_slice(&frame.to_le_bytes());
    }
    (f, len)
}

/// Reads one frame: the length prefix, then exactly that many bytes. The
/// limit is checked before anything is allocated.
pub fn read_frame(reader: &mut impl Read) -> Result<Vec<u8>, ProtocolError> {
    let n = read_frame_len(reader)?;
    let mut frame = vec![0u8; n as usize];
    read_frame_body(reader, &mut frame)?;
    Ok(frame)
}

/// A request frame as far as [`read_frame_head`] read it.
#[derive(Debug, PartialEq)]
pub enum FrameHead {
    /// A lone `Write` of `len` bytes at `address`, well formed as far as
    /// its length says: its `len` bytes follow, unread, and are the rest
    /// of the frame (so it decodes, whatever they are).
    Write { address: u64, len: usize },
    /// Any other frame, whole, as [`read_frame`] reads it.
    Frame(Vec<u8>),
}

/// A frame shorter than this is read whole by [`read_frame_head`]: reading
/// a write's bytes in place spares a copy only when they are many, and
/// reading a frame's head first costs each request one more system call.
pub const HEAD_FROM: u32 = 64 << 10;

/// Reads a frame as [`read_frame`] does, with the same errors, except that
/// a lone `Write` of [`HEAD_FROM`] bytes or more stops after its header
/// ([`FrameHead::Write`]): its bytes can then be read straight to where
/// they go, where a frame read whole would hold a copy of megabytes of a
/// module's image first.
pub fn read_frame_head(reader: &mut impl Read) -> Result<FrameHead, ProtocolError> {
    let n = read_frame_len(reader)?;
    if n < HEAD_FROM {
        let mut frame = vec![0u8; n as usize];
        read_frame_body(reader, &mut frame)?;
        return Ok(FrameHead::Frame(frame));
    }
    let head_len = WRITE_HEADER_LEN - 4;
    let mut frame = vec![0u8; (n as usize).min(head_len)];
    read_frame_body(reader, &mut frame)?;
    if let [WRITE_TAG, fields @ ..] = frame.as_slice()
        && let Some((address, len)) = fields.split_at_checked(8)
        && let (Ok(address), Ok(len)) = (<[u8; 8]>::try_from(address), <[u8; 4]>::try_from(len))
        && n as usize == head_len + u32::from_le_bytes(len) as usize
    {
        return Ok(FrameHead::Write {
            address: u64::from_le_bytes(address),
            len: u32::from_le_bytes(len) as usize,
        });
    }
    let read = frame.len();
    frame.resize(n as usize, 0);
    read_frame_body(reader, &mut frame[read..])?;
    Ok(FrameHead::Frame(frame))
}

/// Reads a frame's length prefix and checks it.
fn read_frame_len(reader: &mut impl Read) -> Result<u32, ProtocolError> {
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
    Ok(n)
}

/// Fills `body` with the frame's next bytes: the peer closing first is
/// [`ProtocolError::Closed`].
fn read_frame_body(reader: &mut impl Read, body: &mut [u8]) -> Result<(), ProtocolError> {
    reader.read_exact(body).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            ProtocolError::Closed
        } else {
            e.into()
        }
    })
}

/// Writes one encoded frame with a single `write_all`.
pub fn write_frame(writer: &mut impl Write, frame: &[u8]) -> Result<(), ProtocolError> {
    writer.write_all(frame)?;
    writer.flush()?;
    Ok(())
}

/// One request of every kind (a batch of several and a batch of one),
/// as the tests pin them byte for byte: samples for documentation, tests
/// and the fuzzer's seed corpus (`cargo xtask fuzz seed`).
pub fn example_requests() -> Vec<Request> {
    vec![
        Request::Hello {
            version: VERSION,
            recovery: Recovery::Snapshot,
            token: b"secret".to_vec(),
            forward_output: true,
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
        Request::LoadThreadLocals {
            init: vec![1, 2],
            zero_size: 6,
            align: 16,
            fixed: true,
        },
        Request::DropThreadLocals { id: 3 },
        Request::HostThreadLocal {
            name: "x".into(),
            fixed: true,
        },
        Request::RegisterDebugObject {
            image: b"\x7fELF".to_vec(),
        },
        Request::UnregisterDebugObject { token: 5 },
        Request::MapProfilerMarker {
            path: "/tmp/j".into(),
        },
    ]
}

/// One reply of every kind, as the tests pin them byte for byte (see
/// [`example_requests`]).
pub fn example_replies() -> Vec<Reply> {
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
            backtrace: vec![0x1000, 0x2005],
        },
        Reply::Exited { status: 42 },
        Reply::Checkpoint {
            pid: 77,
            reason: CheckpointSkip::Taken,
        },
        Reply::Resumed { pid: 77 },
        Reply::Welcome { pid: 78 },
        Reply::Output {
            stream: Stream::Stderr,
            bytes: b"hi".to_vec(),
        },
        Reply::ThreadLocals {
            id: 3,
            module: 2,
            tp_offset: (-64i64) as u64,
        },
        Reply::HostThreadLocal {
            module: 1,
            offset: 8,
            fixed: true,
            tp_offset: (-16i64) as u64,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_the_first_line_without_its_end() {
        assert_eq!(parse_token(b"s3cret").unwrap(), b"s3cret");
        assert_eq!(parse_token(b"s3cret\n").unwrap(), b"s3cret");
        assert_eq!(parse_token(b"s3cret\r\n").unwrap(), b"s3cret");
        assert_eq!(parse_token(b"s3cret\r").unwrap(), b"s3cret");
        assert_eq!(parse_token(b"s3cret\nsecond line\n").unwrap(), b"s3cret");
        // Inner spaces and a lone inner `\r` are part of the token.
        assert_eq!(parse_token(b" a b\rc \n").unwrap(), b" a b\rc ");
        for empty in [&b""[..], b"\n", b"\r\n", b"\nsecond line\n"] {
            assert_eq!(parse_token(empty), Err(TokenError::Empty), "{empty:?}");
        }
        let longest = vec![b'x'; MAX_TOKEN];
        assert_eq!(parse_token(&longest).unwrap(), longest);
        let mut long = vec![b'x'; MAX_TOKEN + 1];
        assert_eq!(parse_token(&long), Err(TokenError::TooLong));
        long.push(b'\n');
        long[MAX_TOKEN] = b'\n';
        assert_eq!(
            parse_token(&long).unwrap(),
            longest,
            "the second line does not count"
        );
    }

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
            forward_output: false,
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
        let mut encoded: Vec<(u8, String)> = example_requests()
            .iter()
            .map(|r| (r.encode()[4], r.name().to_string()))
            .collect();
        encoded.sort();
        encoded.dedup();
        assert_eq!(documented, encoded, "executor/PROTOCOL.md's request table");
    }

    #[test]
    fn requests_round_trip_and_truncations_are_refused() {
        for r in example_requests() {
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

    /// A lone `Write` of `HEAD_FROM` bytes stops after its header, its
    /// bytes left in the stream and what follows them untouched; a frame
    /// whose length does not match its write's (one byte more or less), a
    /// smaller write, a batch and any other request are read whole; the
    /// length prefix's errors are `read_frame`'s.
    #[test]
    fn a_lone_write_is_read_up_to_its_bytes() {
        let rerun = "rerun: cargo test -p solder-executor --lib protocol::tests::a_lone_write";
        let len = HEAD_FROM as usize;
        let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let write = Request::Write {
            address: 0xdead_0000,
            bytes: bytes.clone(),
        };
        let mut stream = write.encode();
        stream.extend_from_slice(&Request::Shutdown.encode());
        let mut reader = stream.as_slice();
        let head = read_frame_head(&mut reader).unwrap();
        assert_eq!(
            head,
            FrameHead::Write {
                address: 0xdead_0000,
                len
            },
            "{rerun}"
        );
        assert_eq!(&reader[..len], bytes, "{rerun}");
        let whole = write.encode().len();
        for cut in [
            0,
            3,
            4,
            5,
            16,
            17,
            18,
            whole / 2,
            whole - 1,
            whole,
            whole + 1,
        ] {
            assert!(read_alike(&stream[..cut]), "cut at {cut}\n{rerun}");
        }
        let mut after = &reader[len..];
        assert_eq!(
            read_frame_head(&mut after).unwrap(),
            FrameHead::Frame(Request::Shutdown.encode()[4..].to_vec()),
            "{rerun}"
        );
        for delta in [-1i64, 1] {
            let mut frame = write.encode();
            let n = (frame.len() as i64 - 4 + delta) as u32;
            frame[..4].copy_from_slice(&n.to_le_bytes());
            frame.push(7);
            let mut reader = frame.as_slice();
            match read_frame_head(&mut reader) {
                Ok(FrameHead::Frame(whole)) => assert_eq!(whole.len(), n as usize, "{rerun}"),
                other => panic!("length {n}: {other:?}\n{rerun}"),
            }
            assert!(read_alike(&frame), "{rerun}");
        }
        let small = Request::Write {
            address: 0x1000,
            bytes: vec![9; 100],
        }
        .encode();
        assert_eq!(
            read_frame_head(&mut small.as_slice()).unwrap(),
            FrameHead::Frame(small[4..].to_vec()),
            "{rerun}"
        );
        assert!(matches!(
            read_frame_head(&mut &[0u8, 0, 0, 0][..]),
            Err(ProtocolError::Empty)
        ));
        assert!(matches!(
            read_frame_head(&mut &(MAX_FRAME + 1).to_le_bytes()[..]),
            Err(ProtocolError::TooLong(_))
        ));
        assert!(matches!(
            read_frame_head(&mut &[][..]),
            Err(ProtocolError::Closed)
        ));
    }

    /// The executor's decoding, which leaves a write's bytes in the frame,
    /// reads every request frame as `Request::decode` does: the example of
    /// every request alone and in a batch with writes, and every cut of
    /// those frames (each an error, the same one). Read from a stream, with
    /// a lone write's bytes left to read where they go, every frame and
    /// every cut of it reads as the whole frame would.
    #[test]
    fn incoming_frames_decode_as_requests_do() {
        let rerun = "rerun: cargo test -p solder-executor --lib protocol::tests::incoming_frames";
        let write = |n: u8| Request::Write {
            address: 0x1000 * u64::from(n),
            bytes: vec![n; usize::from(n) * 3],
        };
        let mut frames: Vec<Vec<u8>> = example_requests().iter().map(Request::encode).collect();
        let plain: Vec<Request> = example_requests()
            .into_iter()
            .filter(Request::is_plain)
            .collect();
        let mut batched = vec![write(1)];
        batched.extend(plain);
        batched.extend([write(2), write(0), Request::Shutdown]);
        frames.push(Request::Batch { requests: batched }.encode());
        frames.push(batch_frame(1, &write(5).encode()));
        for frame in &frames {
            let body = &frame[4..];
            for cut in 0..=body.len() {
                assert!(decoded_alike(&body[..cut]), "{:?}\n{rerun}", &body[..cut]);
            }
            let mut longer = body.to_vec();
            longer.push(0);
            assert!(decoded_alike(&longer), "a trailing byte\n{rerun}");
        }
        for frame in &frames {
            for cut in 0..=frame.len() {
                assert!(read_alike(&frame[..cut]), "{:?}\n{rerun}", &frame[..cut]);
            }
        }
        let incoming = decode_incoming(&frames[frames.len() - 1][4..]).unwrap();
        assert!(
            matches!(
                incoming[..],
                [Incoming::Write {
                    address: 0x5000,
                    bytes: [5, 5, ..]
                }]
            ),
            "{incoming:?}\n{rerun}"
        );
    }

    /// A write encoded from its bytes where they lie, and a batch finished
    /// in place around frames queued after room for its head, are the
    /// very frames `encode` and `batch_frame` make (the controller sends
    /// them so; the executor decodes them as any other).
    #[test]
    fn writes_and_batches_made_in_place_are_the_encoded_frames() {
        let rerun =
            "rerun: cargo test -p solder-executor --lib protocol::tests::writes_and_batches";
        let bytes: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for (address, bytes) in [(0x1000, &bytes[..]), (u64::MAX, &[][..]), (8, &bytes[..3])] {
            let mut queued = vec![0u8; BATCH_OVERHEAD];
            append_write_frame(&mut queued, address, bytes);
            let write = Request::Write {
                address,
                bytes: bytes.to_vec(),
            };
            assert_eq!(&queued[BATCH_OVERHEAD..], &write.encode()[..], "{rerun}");
            queued.extend_from_slice(&Request::Shutdown.encode());
            let elements = queued[BATCH_OVERHEAD..].to_vec();
            finish_batch_in_place(2, &mut queued);
            assert_eq!(queued, batch_frame(2, &elements), "{rerun}");
            let decoded = Request::decode(&queued[4..]).unwrap();
            assert_eq!(
                decoded,
                Request::Batch {
                    requests: vec![write, Request::Shutdown]
                },
                "{rerun}"
            );
        }
    }

    #[test]
    fn malformed_batches_are_refused() {
        let shutdown = &Request::Shutdown.encode()[4..];
        let hello = Request::Hello {
            version: VERSION,
            recovery: Recovery::None,
            token: vec![],
            forward_output: false,
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
        for r in example_replies() {
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
    fn output_frame_header_matches_encoder() {
        for (stream, bytes) in [
            (super::Stream::Stdout, &b""[..]),
            (super::Stream::Stderr, b"hello\n"),
            (super::Stream::Stdout, &[7u8; MAX_OUTPUT][..]),
        ] {
            let frame = Reply::Output {
                stream,
                bytes: bytes.to_vec(),
            }
            .encode();
            let mut built = output_frame_header(stream, bytes.len()).to_vec();
            built.extend_from_slice(bytes);
            assert_eq!(built, frame);
            assert!(is_output(&frame[4..]));
        }
        assert!(!is_output(&Reply::Ok.encode()[4..]));
        assert!(!is_output(&[]));
    }

    #[test]
    fn crashed_frame_matches_encoder() {
        for backtrace in [vec![], vec![0xbeef], vec![0xbeef, 0x1234, 0x5678]] {
            let r = Reply::Crashed {
                signal: 7,
                code: 2,
                fault_address: 0xdead,
                pc: 0xbeef,
                stack_overflow: true,
                backtrace: backtrace.clone(),
            };
            let (frame, len) = crashed_frame(7, 2, 0xdead, 0xbeef, true, &backtrace);
            assert_eq!(r.encode(), frame[..len].to_vec());
        }
        // More frames than fit are left out, and the frame still decodes.
        let many: Vec<u64> = (0..MAX_BACKTRACE as u64 + 5).collect();
        let (frame, len) = crashed_frame(7, 2, 0, 0, false, &many);
        assert_eq!(len, CRASHED_FRAME_LEN);
        match Reply::decode(&frame[4..len]) {
            Ok(Reply::Crashed { backtrace, .. }) => {
                assert_eq!(backtrace, many[..MAX_BACKTRACE].to_vec())
            }
            other => panic!("{other:?}"),
        }
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The tag and name of each row of the `PROTOCOL.md` table whose header
    /// starts with `header`, in the document's order.
    fn documented_tags(header: &str) -> Vec<(u8, String)> {
        let doc = include_str!("../PROTOCOL.md");
        let table = &doc[doc.find(header).expect("the table")..];
        table
            .lines()
            .skip(2)
            .map_while(|line| {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                let tag = cells.get(1)?.parse::<u8>().ok()?;
                Some((tag, cells.get(2)?.to_string()))
            })
            .collect()
    }

    /// `PROTOCOL.md`'s table of reply tags matches the encoder: the same
    /// tags with the same names, one row per reply.
    #[test]
    fn the_protocol_document_lists_every_reply_tag() {
        let encoded: Vec<(u8, String)> = example_replies()
            .iter()
            .map(|r| (r.encode()[4], r.name().to_string()))
            .collect();
        assert_eq!(
            documented_tags("| tag | reply"),
            encoded,
            "executor/PROTOCOL.md's reply table"
        );
    }

    /// The requests declared `[plain]` are the ones `PROTOCOL.md` §6 lists
    /// as allowed before the last request of a batch.
    #[test]
    fn plain_requests_are_the_ones_the_protocol_document_lists() {
        let doc = include_str!("../PROTOCOL.md");
        let start = doc.find("must be a **plain** request").expect("the list");
        let sentence = &doc[start..start + doc[start..].find(". ").expect("its end")];
        let mut documented: Vec<&str> = sentence
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|&name| name != "Ok")
            .collect();
        documented.sort_unstable();
        let mut plain: Vec<&str> = example_requests()
            .iter()
            .filter(|r| r.is_plain())
            .map(Request::name)
            .collect();
        plain.sort_unstable();
        plain.dedup();
        assert_eq!(plain, documented);
    }

    /// The encoder's output pinned byte for byte (length prefix included),
    /// so that a change to how any field is written cannot go unnoticed:
    /// version 6 controllers and executors elsewhere depend on it.
    #[test]
    fn every_frame_is_pinned_byte_for_byte() {
        let requests: Vec<String> = example_requests()
            .iter()
            .map(|r| hex(&r.encode()))
            .collect();
        let expected = [
            "110000000109000000010600000073656372657401",
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
            "18000000140200000001020600000000000000100000000000000001",
            "09000000150300000000000000",
            "0700000016010000007801",
            "0900000017040000007f454c46",
            "09000000180500000000000000",
            "0b00000019060000002f746d702f6a",
        ];
        assert_eq!(requests, expected);
        let replies: Vec<String> = example_replies().iter().map(|r| hex(&r.encode())).collect();
        let expected = [
            "3500000001534c4452090000000010000000000000180000007838365f36342d756e6b6e6f776e2d6c696e75782d676e75020000002a000000",
            "0100000002",
            "080000000302020000006e6f",
            "0d000000040000007000000000ffffffff",
            "06000000050100000001",
            "170000000601000000060134120000000000000000000000000000",
            "09000000070300000000000000",
            "09000000080000000000000000",
            "2e000000090b0000000100000000000000000000000010000000000000000200000000100000000000000520000000000000",
            "050000000a2a000000",
            "060000000b4d00000000",
            "050000000c4d000000",
            "050000000d4e000000",
            "080000000e02020000006869",
            "190000000f03000000000000000200000000000000c0ffffffffffffff",
            "1a000000100100000000000000080000000000000001f0ffffffffffffff",
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
        let examples: [(Vec<u8>, &str); 10] = [
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
                    version: VERSION,
                    recovery: Recovery::None,
                    token: vec![],
                    forward_output: false,
                }
                .encode(),
                "0b 00 00 00 01 09 00 00 00 00 00 00 00 00 00",
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
                    backtrace: vec![0x7f00_0000_0000],
                }
                .encode(),
                "26 00 00 00 09 0b 00 00 00 01 00 00 00 \
                 00 00 00 00 00 00 00 00 00 00 00 00 00 7f 00 00 00 \
                 01 00 00 00 00 00 00 00 00 7f 00 00",
            ),
            (
                Reply::Output {
                    stream: super::Stream::Stdout,
                    bytes: b"hi\n".to_vec(),
                }
                .encode(),
                "09 00 00 00 0e 01 03 00 00 00 68 69 0a",
            ),
        ];
        for (frame, shown) in examples {
            let shown: String = shown.split_whitespace().collect();
            assert_eq!(hex(&frame), shown);
            assert!(doc.contains(&shown), "PROTOCOL.md does not show {shown}");
        }
    }
}
