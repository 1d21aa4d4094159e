//! In-process crash reports: a signal handler on an alternate stack that
//! names the signal, the fault address and the JIT'd function
//! (`symbol+offset`), then lets the signal kill the process so its status is
//! the native one (`128 + signal` in a shell).
//!
//! The handler is async-signal-safe: it formats into a stack buffer, looks
//! symbols up in an immutable table published through an atomic pointer, and
//! writes with `write(2)`.

use std::ffi::c_int;
use std::sync::Once;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

/// One JIT'd symbol, for mapping a pc to `symbol+offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrashSymbol {
    pub start: u64,
    pub size: u64,
    pub name: String,
}

/// Symbols of every live module, sorted by start address.
#[derive(Debug, Default)]
pub struct CrashSymbols {
    symbols: Vec<CrashSymbol>,
}

impl CrashSymbols {
    pub fn new(mut symbols: Vec<CrashSymbol>) -> Self {
        symbols.sort_by_key(|s| s.start);
        CrashSymbols { symbols }
    }

    /// The symbol containing `address` and the offset into it.
    pub fn find(&self, address: u64) -> Option<(&str, u64)> {
        let index = self.symbols.partition_point(|s| s.start <= address);
        let candidate = self.symbols.get(index.checked_sub(1)?)?;
        let offset = address - candidate.start;
        (offset < candidate.size.max(1)).then_some((candidate.name.as_str(), offset))
    }
}

static SYMBOLS: AtomicPtr<CrashSymbols> = AtomicPtr::new(std::ptr::null_mut());
/// Handlers that are reading `SYMBOLS`; a handler never returns it.
static READERS: AtomicUsize = AtomicUsize::new(0);

/// Makes `symbols` the table crash reports use.
pub fn publish_symbols(symbols: CrashSymbols) {
    let new = Box::into_raw(Box::new(symbols));
    let old = SYMBOLS.swap(new, Ordering::AcqRel);
    if !old.is_null() && READERS.load(Ordering::Acquire) == 0 {
        // SAFETY: `old` came from Box::into_raw above and is no longer
        // reachable through SYMBOLS; no handler holds it (READERS is 0, and
        // a handler that starts now loads the new pointer).
        drop(unsafe { Box::from_raw(old) });
    }
    // Otherwise a crash is being reported and the process is about to die:
    // the old table is deliberately leaked.
}

const SIGNALS: [c_int; 6] = [
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGILL,
    libc::SIGFPE,
    libc::SIGABRT,
    libc::SIGTRAP,
];

/// Installs the handlers once per process.
pub fn install_crash_reporter() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        const STACK_SIZE: usize = 64 * 1024;
        let stack = Box::leak(vec![0u8; STACK_SIZE].into_boxed_slice());
        let ss = libc::stack_t {
            ss_sp: stack.as_mut_ptr().cast(),
            ss_flags: 0,
            ss_size: STACK_SIZE,
        };
        // SAFETY: `ss` describes a leaked buffer that lives forever.
        unsafe { libc::sigaltstack(&ss, std::ptr::null_mut()) };
        for signal in SIGNALS {
            // SAFETY: a zeroed sigaction is a valid starting value; the
            // handler has the SA_SIGINFO signature.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_signal as *const () as usize;
                action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_RESETHAND;
                libc::sigemptyset(&mut action.sa_mask);
                libc::sigaction(signal, &action, std::ptr::null_mut());
            }
        }
    });
}

/// The name of a signal, as shells and `kill -l` spell it.
pub fn signal_name(signal: c_int) -> &'static str {
    match signal {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGABRT => "SIGABRT",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGPIPE => "SIGPIPE",
        _ => "signal",
    }
}

extern "C" fn on_signal(signal: c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    READERS.fetch_add(1, Ordering::AcqRel);
    let mut out = Buffer::new();
    out.push(b"solder: crashed: ");
    out.push(signal_name(signal).as_bytes());
    // SAFETY: the kernel passes a valid siginfo and ucontext to an
    // SA_SIGINFO handler.
    let (fault, pc, sp) = unsafe {
        let fault = (*info).si_addr() as u64;
        let uc = &*(context as *const libc::ucontext_t);
        let pc = uc.uc_mcontext.gregs[libc::REG_RIP as usize] as u64;
        let sp = uc.uc_mcontext.gregs[libc::REG_RSP as usize] as u64;
        (fault, pc, sp)
    };
    let faulting = matches!(signal, libc::SIGSEGV | libc::SIGBUS);
    if faulting {
        out.push(b" at address ");
        out.hex(fault);
        if fault.abs_diff(sp) < 64 * 1024 {
            out.push(b" (stack overflow)");
        }
    }
    out.push(b", pc ");
    out.hex(pc);
    let table = SYMBOLS.load(Ordering::Acquire);
    if !table.is_null() {
        // SAFETY: published tables are only freed when READERS is 0, and
        // this handler incremented it before loading the pointer.
        let table = unsafe { &*table };
        if let Some((name, offset)) = table.find(pc) {
            out.push(b" in ");
            out.push(name.as_bytes());
            out.push(b"+");
            out.hex(offset);
        }
    }
    out.push(b"\n");
    // SAFETY: writing a stack buffer to fd 2 is async-signal-safe.
    unsafe { libc::write(2, out.bytes.as_ptr().cast(), out.len) };
    // SA_RESETHAND restored the default action; re-raise so the process dies
    // of this signal (for a fault, returning would also re-fault).
    // SAFETY: raise is async-signal-safe.
    unsafe { libc::raise(signal) };
}

/// A fixed buffer for formatting without allocation.
struct Buffer {
    bytes: [u8; 512],
    len: usize,
}

impl Buffer {
    fn new() -> Self {
        Buffer {
            bytes: [0; 512],
            len: 0,
        }
    }

    fn push(&mut self, data: &[u8]) {
        let n = data.len().min(self.bytes.len() - self.len);
        self.bytes[self.len..self.len + n].copy_from_slice(&data[..n]);
        self.len += n;
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
            },
            CrashSymbol {
                start: 0x1000,
                size: 0x20,
                name: "f".into(),
            },
        ]);
        assert_eq!(table.find(0x1004), Some(("f", 4)));
        assert_eq!(table.find(0x200f), Some(("g", 0xf)));
        assert_eq!(table.find(0x2010), None);
        assert_eq!(table.find(0x10), None);
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
