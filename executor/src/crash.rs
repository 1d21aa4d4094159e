//! In-process crash reports: a signal handler on an alternate stack that
//! names the signal, the fault address and the JIT'd function
//! (`symbol+offset`), then lets the signal kill the process so its status is
//! the native one (`128 + signal` in a shell).
//!
//! The handler is async-signal-safe: it formats into a stack buffer, looks
//! symbols up in immutable per-module tables published as an atomic list, and
//! writes with `write(2)`.
//!
//! **Record mode** ([`set_record_fd`]) is for the out-of-process executor:
//! instead of the text report, the handler sends the protocol's
//! [`Reply::Crashed`](crate::protocol::Reply::Crashed) frame to the
//! controller with one `write(2)` (after the program's forwarded output
//! that is still in its pipes, [`crate::output::seize`]), then dies of the
//! signal the same way.
//! Record mode also handles `SIGALRM`, the executor's call timeout.

use std::ffi::c_int;
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};

use crate::module::CrashSymbol;
pub use crate::module::CrashSymbols;
use crate::sys::process;
use crate::sys::signal::{self, CrashContext, FatalSignalHandler};

/// One live module's symbols, a node of the list crash reports search.
struct ModuleSymbols {
    /// Which module (the linker's key: the module's base address).
    key: u64,
    table: Arc<CrashSymbols>,
    next: *mut ModuleSymbols,
}

/// The newest module's node; each node links to the next older one. Nodes
/// are immutable once published, so the handler can walk the list without
/// locks.
static MODULES: AtomicPtr<ModuleSymbols> = AtomicPtr::new(std::ptr::null_mut());
/// Handlers that are walking `MODULES`; a handler never returns it.
static READERS: AtomicUsize = AtomicUsize::new(0);
/// Serializes writers (loads and removals); the handler never takes it.
static WRITER: Mutex<()> = Mutex::new(());

/// Adds one module's symbols to what crash reports search. O(1): the
/// module becomes the head of the list.
pub fn add_symbols(key: u64, symbols: Arc<CrashSymbols>) {
    let _writer = WRITER.lock().unwrap_or_else(|e| e.into_inner());
    let node = Box::into_raw(Box::new(ModuleSymbols {
        key,
        table: symbols,
        next: MODULES.load(Ordering::Acquire),
    }));
    MODULES.store(node, Ordering::Release);
}

/// Removes module `key`'s symbols. The nodes in front of it are copied (they
/// share their tables) so that a handler walking the old list still sees a
/// whole one; O(number of newer modules).
pub fn remove_symbols(key: u64) {
    let _writer = WRITER.lock().unwrap_or_else(|e| e.into_inner());
    let head = MODULES.load(Ordering::Acquire);
    // The old nodes up to and including `key`'s.
    let mut prefix = Vec::new();
    let mut at = head;
    while !at.is_null() {
        prefix.push(at);
        // SAFETY: published nodes stay valid while we hold the writer
        // lock (only writers free them).
        let node = unsafe { &*at };
        if node.key == key {
            break;
        }
        at = node.next;
    }
    if at.is_null() {
        return;
    }
    // SAFETY: as above; `at` is the node being removed.
    let mut rebuilt = unsafe { (*at).next };
    for &old in prefix[..prefix.len() - 1].iter().rev() {
        // SAFETY: as above.
        let old = unsafe { &*old };
        rebuilt = Box::into_raw(Box::new(ModuleSymbols {
            key: old.key,
            table: Arc::clone(&old.table),
            next: rebuilt,
        }));
    }
    MODULES.store(rebuilt, Ordering::Release);
    // A handler that starts now sees the new list; one that is running may
    // hold the old nodes, which are then deliberately leaked (the process
    // is about to die of its signal).
    if READERS.load(Ordering::Acquire) == 0 {
        for old in prefix {
            // SAFETY: each came from Box::into_raw, is no longer reachable
            // from MODULES, and no handler is reading (READERS is 0).
            drop(unsafe { Box::from_raw(old) });
        }
    }
}

/// The published symbol containing `address`, with the offset into it.
fn find_published(address: u64) -> Option<(&'static str, u64)> {
    find_published_symbol(address).map(|(symbol, offset)| (&*symbol.name, offset))
}

/// The published symbol containing `address` itself, with the offset.
fn find_published_symbol(address: u64) -> Option<(&'static CrashSymbol, u64)> {
    let mut at = MODULES.load(Ordering::Acquire);
    while !at.is_null() {
        // SAFETY: published nodes are freed only when READERS is 0, and the
        // handler that calls this incremented it before loading the head.
        let node: &'static ModuleSymbols = unsafe { &*at };
        if let Some(found) = node.table.find_symbol(address) {
            return Some(found);
        }
        at = node.next;
    }
    None
}

/// ` at FILE:LINE` for `address` in `symbol`, when its lines are known.
fn push_line(out: &mut Buffer, symbol: &CrashSymbol, address: u64) {
    let Some(lines) = &symbol.lines else {
        return;
    };
    let Some(line) = lines.line_at(address) else {
        return;
    };
    out.push(b" at ");
    out.push(lines.file.as_bytes());
    out.push(b":");
    out.decimal(u64::from(line));
}

const SIGNALS: [c_int; 6] = [
    signal::SIGSEGV,
    signal::SIGBUS,
    signal::SIGILL,
    signal::SIGFPE,
    signal::SIGABRT,
    signal::SIGTRAP,
];

/// The descriptor crash records go to; -1 = text reports (in-process mode).
static RECORD_FD: AtomicI32 = AtomicI32::new(-1);
/// The process that set [`RECORD_FD`]: a process forked by JIT'd code
/// inherits the handler but must not write records into the controller's
/// channel, so it falls back to the text report.
static RECORD_PID: AtomicI32 = AtomicI32::new(0);

/// Switches the handler to record mode: a crash writes the protocol's
/// `Crashed` frame to `fd` (and no text report) before the signal kills the
/// process; `SIGALRM` is handled too, so a call timeout is reported the same
/// way. `-1` switches back to text reports. Call after
/// [`install_crash_reporter`]; call again in a forked process that takes over
/// the channel (the record is tied to the calling process).
pub fn set_record_fd(fd: c_int) {
    RECORD_PID.store(process::id().as_raw(), Ordering::Release);
    RECORD_FD.store(fd, Ordering::Release);
    // A failure leaves SIGALRM's action as it was, as before.
    let _ = if fd >= 0 {
        // SAFETY: the reporter is async-signal-safe (see `Reporter`); the
        // alternate stack was installed by install_crash_reporter (without
        // it the handler runs on the normal stack).
        unsafe { signal::handle_fatal::<Reporter>(signal::SIGALRM) }
    } else {
        signal::restore_default(signal::SIGALRM)
    };
}

/// Installs the handlers once per process.
pub fn install_crash_reporter() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        const STACK_SIZE: usize = 64 * 1024;
        // Mapped, not allocated: its pages cost nothing until a signal
        // arrives (a zeroed heap buffer was 16 page faults at startup).
        if signal::install_alternate_stack(STACK_SIZE).is_err() {
            // Handlers still run, on the faulting thread's stack: every
            // crash but a stack overflow is still reported.
            crate::transport::diag("cannot map the crash reporter's signal stack");
        }
        // The unwinder's functions are resolved here, not in the handler.
        crate::sys::unwind::prepare_backtraces();
        for number in SIGNALS {
            // SAFETY: the reporter is async-signal-safe (see `Reporter`).
            // A failure leaves that signal's default action (unreported).
            let _ = unsafe { signal::handle_fatal::<Reporter>(number) };
        }
    });
}

/// The exit status of a run stopped by [`arm_run_timeout`], as
/// `timeout(1)` gives.
pub const TIMED_OUT_STATUS: i32 = 124;

/// How [`arm_run_timeout`]'s limit reads in its report (`10s`).
static TIMEOUT_TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Bounds the rest of this process's run (in-process mode): after
/// `after`, `SIGALRM` interrupts whatever runs, the report names where
/// (`solder: timed out after 10s, pc 0x… in main+0x1c`), and the process
/// exits at once with [`TIMED_OUT_STATUS`], as `timeout(1)` ends a
/// program: no handler or deinitializer runs, since JIT'd code stopped at
/// an arbitrary instruction cannot be resumed safely. `text` is the limit
/// as the user wrote it. Call once, after [`install_crash_reporter`].
pub fn arm_run_timeout(after: std::time::Duration, text: &str) -> std::io::Result<()> {
    let _ = TIMEOUT_TEXT.set(text.to_string());
    // SAFETY: the timeout reporter is async-signal-safe (see
    // `TimeoutReporter`); the alternate stack is install_crash_reporter's.
    unsafe { signal::handle_fatal::<TimeoutReporter>(signal::SIGALRM) }?;
    process::set_alarm(after.max(std::time::Duration::from_micros(1)))
}

/// The run-timeout handler. Async-signal-safe like [`Reporter`]: a stack
/// buffer, the lock-free symbol list, one `write(2)`, then `_exit`.
struct TimeoutReporter;

impl FatalSignalHandler for TimeoutReporter {
    fn on_signal(context: &CrashContext) {
        READERS.fetch_add(1, Ordering::AcqRel);
        let mut out = Buffer::new();
        out.push(b"solder: timed out after ");
        out.push(
            TIMEOUT_TEXT
                .get()
                .map_or("the limit", String::as_str)
                .as_bytes(),
        );
        push_where(&mut out, context.pc);
        let _ = signal::write_in_handler(2, &out.bytes[..out.len]);
        crate::sys::exit::exit_immediately(TIMED_OUT_STATUS);
    }
}

/// `, pc 0x… in symbol+0x…` and the line's end, for both reports.
/// Async-signal-safe: the lock-free symbol list and the stack buffer.
fn push_where(out: &mut Buffer, pc: u64) {
    out.push(b", pc ");
    out.hex(pc);
    if let Some((symbol, offset)) = find_published_symbol(pc) {
        out.push(b" in ");
        out.push(symbol.name.as_bytes());
        out.push(b"+");
        out.hex(offset);
        push_line(out, symbol, pc);
    }
    out.push(b"\n");
}

/// At most this many frames in a crash's backtrace.
pub const MAX_FRAMES: usize = crate::protocol::MAX_BACKTRACE;

/// The frames of the crashed thread from the interrupted code at `pc`
/// outwards (return addresses after the first), walked by the host
/// unwinder through the signal frame, in `pcs`; just `pc` when the walk
/// does not reach it. Allocates nothing.
fn crash_backtrace(pc: u64, pcs: &mut [u64; MAX_FRAMES]) -> &[u64] {
    let mut walked = [0u64; MAX_FRAMES + 8];
    let n = crate::sys::unwind::backtrace(&mut walked);
    // The handler's own frames and the signal trampoline come first.
    match walked[..n].iter().position(|&frame| frame == pc) {
        Some(start) => {
            let frames = &walked[start..n];
            let count = frames.len().min(MAX_FRAMES);
            pcs[..count].copy_from_slice(&frames[..count]);
            &pcs[..count]
        }
        None => {
            pcs[0] = pc;
            &pcs[..1]
        }
    }
}

/// `solder: backtrace: f+0x… <- g+0x… <- …` up to the outermost JIT'd
/// frame (the host's frames beyond it, the runner's own, are only
/// mentioned), when the walk found more than the crashing frame.
fn push_backtrace(out: &mut Buffer, frames: &[u64]) {
    let jitted = |i: usize, pc: u64| find_published(if i == 0 { pc } else { pc - 1 }).is_some();
    let Some(last) = frames
        .iter()
        .enumerate()
        .rposition(|(i, &pc)| pc != 0 && jitted(i, pc))
    else {
        return;
    };
    if frames.len() < 2 {
        return;
    }
    out.push(b"solder: backtrace:");
    for (i, &frame) in frames[..=last].iter().enumerate() {
        out.push(if i == 0 { b" " } else { b" <- " });
        push_frame(out, frame, i == 0);
    }
    if frames[last + 1..].iter().any(|&pc| pc != 0) {
        out.push(b" <- (host frames)");
    }
    out.push(b"\n");
}

/// A frame as `symbol+0x…` when it is JIT'd code, else its address. A
/// return address (every frame but the first) is looked up one byte back:
/// the call it returns from may end its function.
fn push_frame(out: &mut Buffer, pc: u64, first: bool) {
    let probe = if first { pc } else { pc.saturating_sub(1) };
    match find_published_symbol(probe) {
        Some((symbol, offset)) => {
            out.push(symbol.name.as_bytes());
            out.push(b"+");
            out.hex(offset + (pc - probe));
            push_line(out, symbol, probe);
        }
        None => out.hex(pc),
    }
}

/// The crash handler. Async-signal-safe: it formats into a stack buffer,
/// searches the published symbol tables without locks, and writes with
/// one `write(2)`; the signal wrappers it calls are async-signal-safe too.
struct Reporter;

impl FatalSignalHandler for Reporter {
    fn on_signal(context: &CrashContext) {
        let record = RECORD_FD.load(Ordering::Acquire);
        if record >= 0 && RECORD_PID.load(Ordering::Acquire) == process::id().as_raw() {
            send_record(record, context);
            return;
        }
        READERS.fetch_add(1, Ordering::AcqRel);
        let mut out = Buffer::new();
        out.push(b"solder: crashed: ");
        out.push(signal::name(context.signal).as_bytes());
        let (fault, pc, sp) = (context.fault_address, context.pc, context.sp);
        let faulting = matches!(context.signal, signal::SIGSEGV | signal::SIGBUS);
        if faulting {
            out.push(b" at address ");
            out.hex(fault);
            if fault.abs_diff(sp) < 64 * 1024 {
                out.push(b" (stack overflow)");
            }
        }
        push_where(&mut out, pc);
        let mut pcs = [0u64; MAX_FRAMES];
        let frames = crash_backtrace(pc, &mut pcs);
        push_backtrace(&mut out, frames);
        let _ = signal::write_in_handler(2, &out.bytes[..out.len]);
        // SA_RESETHAND restored the default action; re-raise so the process
        // dies of this signal (for a fault, returning would also re-fault).
        let _ = signal::raise(context.signal);
    }
}

/// Record mode: one `write(2)` of the `Crashed` frame, then re-raises the
/// signal, which kills the process when the handler returns (its action is
/// the default again). Async-signal-safe: no allocation, no locks.
fn send_record(fd: c_int, context: &CrashContext) {
    let number = context.signal;
    // si_addr is only defined for the synchronous faults; for the others
    // (SIGALRM, SIGABRT) the union holds other fields.
    let has_address = matches!(
        number,
        signal::SIGSEGV | signal::SIGBUS | signal::SIGILL | signal::SIGFPE | signal::SIGTRAP
    );
    let fault = if has_address {
        context.fault_address
    } else {
        0
    };
    let overflow = matches!(number, signal::SIGSEGV | signal::SIGBUS)
        && fault.abs_diff(context.sp) < 64 * 1024;
    let mut pcs = [0u64; MAX_FRAMES];
    let frames = crash_backtrace(context.pc, &mut pcs);
    let (frame, len) =
        crate::protocol::crashed_frame(number, context.code, fault, context.pc, overflow, frames);
    // SIGPIPE is blocked so a vanished controller cannot turn the death
    // into a SIGPIPE death; the mask is never restored because the process
    // dies.
    let _ = signal::block_in_this_thread(signal::SIGPIPE);
    // Forwarded output the program wrote before the crash goes first
    // (reads and writes only, bounded; a thread stuck holding the
    // connection is waited for a few seconds at most).
    crate::output::seize(fd, Some(std::time::Duration::from_secs(5)));
    while matches!(
        signal::write_in_handler(fd, &frame[..len]),
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted
    ) {}
    // SA_RESETHAND restored the default action; the signal is blocked
    // while its handler runs, so it is delivered (fatally) on return.
    let _ = signal::raise(number);
}

/// A fixed buffer for formatting without allocation.
struct Buffer {
    bytes: [u8; 2048],
    len: usize,
}

impl Buffer {
    fn new() -> Self {
        Buffer {
            bytes: [0; 2048],
            len: 0,
        }
    }

    fn push(&mut self, data: &[u8]) {
        let n = data.len().min(self.bytes.len() - self.len);
        self.bytes[self.len..self.len + n].copy_from_slice(&data[..n]);
        self.len += n;
    }

    fn decimal(&mut self, value: u64) {
        let mut digits = [0u8; 20];
        let mut n = 0;
        let mut v = value;
        loop {
            digits[19 - n] = b'0' + (v % 10) as u8;
            n += 1;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        let start = 20 - n;
        let mut copy = [0u8; 20];
        copy[..n].copy_from_slice(&digits[start..]);
        self.push(&copy[..n]);
    }

    fn hex(&mut self, value: u64) {
        let mut digits = [0u8; 18];
        digits[0] = b'0';
        digits[1] = b'x';
        let mut n = 0;
        let mut v = value;
        let mut tmp = [0u8; 16];
        loop {
            tmp[n] = b"0123456789abcdef"[(v & 0xf) as usize];
            n += 1;
            v >>= 4;
            if v == 0 {
                break;
            }
        }
        for i in 0..n {
            digits[2 + i] = tmp[n - 1 - i];
        }
        self.push(&digits[..2 + n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_symbol_and_offset() {
        let table = CrashSymbols::new(vec![
            CrashSymbol {
                start: 0x2000,
                size: 0x10,
                name: "g".into(),
                lines: None,
            },
            CrashSymbol {
                start: 0x1000,
                size: 0x20,
                name: "f".into(),
                lines: None,
            },
        ]);
        assert_eq!(table.find(0x1004), Some(("f", 4)));
        assert_eq!(table.find(0x200f), Some(("g", 0xf)));
        assert_eq!(table.find(0x2010), None);
        assert_eq!(table.find(0x10), None);
    }

    /// Of symbols at one address, the last given names it, whether the
    /// symbols came sorted (checked only) or not (sorted stably).
    #[test]
    fn the_last_of_aliases_names_their_address_sorted_or_not() {
        let symbol = |start: u64, name: &str| CrashSymbol {
            start,
            size: 0x10,
            name: name.into(),
            lines: None,
        };
        let sorted = vec![
            symbol(0x1000, "a"),
            symbol(0x2000, "b"),
            symbol(0x2000, "c"),
        ];
        let mut unsorted = vec![
            symbol(0x2000, "b"),
            symbol(0x3000, "d"),
            symbol(0x2000, "c"),
        ];
        unsorted.push(symbol(0x1000, "a"));
        for symbols in [sorted, unsorted] {
            let table = CrashSymbols::new(symbols);
            let starts: Vec<u64> = table.iter().map(|s| s.start).collect();
            assert!(starts.is_sorted(), "{starts:x?}");
            assert_eq!(table.find(0x2004), Some(("c", 4)));
            assert_eq!(table.find(0x1000), Some(("a", 0)));
        }
    }

    #[test]
    fn lines_and_decimals_format_without_allocation() {
        let lines = crate::module::SourceLines {
            file: "a.c".into(),
            rows: vec![(0x100, 3), (0x108, 4), (0x110, 9)],
        };
        assert_eq!(lines.line_at(0xff), None);
        assert_eq!(lines.line_at(0x100), Some(3));
        assert_eq!(lines.line_at(0x10f), Some(4));
        assert_eq!(lines.line_at(0x200), Some(9));
        let symbol = CrashSymbol {
            start: 0x100,
            size: 0x20,
            name: "f".into(),
            lines: Some(std::sync::Arc::new(lines)),
        };
        let mut out = Buffer::new();
        push_line(&mut out, &symbol, 0x10a);
        out.decimal(0);
        out.push(b" ");
        out.decimal(u64::MAX);
        assert_eq!(
            std::str::from_utf8(&out.bytes[..out.len]).unwrap(),
            " at a.c:40 18446744073709551615"
        );
    }

    #[test]
    fn modules_are_added_and_removed_independently() {
        let module = |start: u64, name: &str| {
            Arc::new(CrashSymbols::new(vec![CrashSymbol {
                start,
                size: 0x10,
                name: name.into(),
                lines: None,
            }]))
        };
        // Keys far from any other test's, which may run concurrently.
        add_symbols(0x7_0000, module(0x7_0000, "oldest"));
        add_symbols(0x7_1000, module(0x7_1000, "middle"));
        add_symbols(0x7_2000, module(0x7_2000, "newest"));
        assert_eq!(find_published(0x7_1004), Some(("middle", 4)));
        remove_symbols(0x7_1000);
        assert_eq!(find_published(0x7_1004), None);
        assert_eq!(find_published(0x7_0008), Some(("oldest", 8)));
        assert_eq!(find_published(0x7_200f), Some(("newest", 0xf)));
        remove_symbols(0x7_2000);
        remove_symbols(0x7_0000);
        remove_symbols(0x7_0000);
        assert_eq!(find_published(0x7_0008), None);
    }

    #[test]
    fn hex_formats_without_allocation() {
        let mut b = Buffer::new();
        b.hex(0);
        b.push(b" ");
        b.hex(0xdead_beef);
        assert_eq!(&b.bytes[..b.len], b"0x0 0xdeadbeef");
    }
}
