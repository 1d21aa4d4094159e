//! End-to-end tests of the `solder-executor` binary: raw protocol frames over
//! pipes and TCP, machine code written into the slab and called, crash, exit,
//! timeout and snapshot records, hostile frames, and shared memory.
//!
//! Every failure ends with the command that reruns the test (a panic hook
//! appends it).

use solder_executor::abi::CallingConvention;
use std::ffi::c_int;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use solder_executor::protocol::{
    CheckpointSkip, ErrorCode, MAGIC, MAX_FRAME, PlacementCode, Prot, Recovery, Reply, Request,
    Stream, SymbolKind, VERSION, capability, read_frame,
};
use solder_executor::sys;

const EXE: &str = env!("CARGO_BIN_EXE_solder-executor");
const TIMEOUT: Duration = Duration::from_secs(20);

/// `mov rax, rdi; add rax, rsi; ret`
const ADD: &[u8] = &[0x48, 0x89, 0xf8, 0x48, 0x01, 0xf0, 0xc3];
/// `mov qword ptr [0], 1`
const NULL_STORE: &[u8] = &[0x48, 0xc7, 0x04, 0x25, 0, 0, 0, 0, 0x01, 0, 0, 0, 0xc3];
/// `jmp .`
const SPIN: &[u8] = &[0xeb, 0xfe];
/// `mov [rdi], rsi; ret`
const STORE: &[u8] = &[0x48, 0x89, 0x37, 0xc3];

std::thread_local! {
    static TEST_NAME: std::cell::Cell<&'static str> = const { std::cell::Cell::new("") };
}

/// Names the running test so a failure ends with how to rerun it.
fn start(name: &'static str) {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            default(info);
            let name = TEST_NAME.with(|n| n.get());
            let name = if name.is_empty() {
                std::thread::current().name().unwrap_or("").to_string()
            } else {
                name.to_string()
            };
            eprintln!("rerun: cargo test -p solder-executor --test server {name}");
        }));
    });
    TEST_NAME.with(|n| n.set(name));
}

/// `mov edi, status; movabs rax, exit; sub rsp, 8; call rax; ud2`
fn exit_code(exit: u64, status: u32) -> Vec<u8> {
    let mut code = vec![0xbf];
    code.extend_from_slice(&status.to_le_bytes());
    code.extend_from_slice(&[0x48, 0xb8]);
    code.extend_from_slice(&exit.to_le_bytes());
    code.extend_from_slice(&[0x48, 0x83, 0xec, 0x08, 0xff, 0xd0, 0x0f, 0x0b]);
    code
}

/// `movabs rax, [counter]; inc rax; movabs [counter], rax; ret`
fn counter_code(counter: u64) -> Vec<u8> {
    let mut code = vec![0x48, 0xa1];
    code.extend_from_slice(&counter.to_le_bytes());
    code.extend_from_slice(&[0x48, 0xff, 0xc0, 0x48, 0xa3]);
    code.extend_from_slice(&counter.to_le_bytes());
    code.push(0xc3);
    code
}

/// `movabs rdi, text; movabs rax, puts; sub rsp, 8; call rax; add rsp, 8; ret`
fn puts_code(puts: u64, text: u64) -> Vec<u8> {
    let mut code = vec![0x48, 0xbf];
    code.extend_from_slice(&text.to_le_bytes());
    code.extend_from_slice(&[0x48, 0xb8]);
    code.extend_from_slice(&puts.to_le_bytes());
    code.extend_from_slice(&[
        0x48, 0x83, 0xec, 0x08, 0xff, 0xd0, 0x48, 0x83, 0xc4, 0x08, 0xc3,
    ]);
    code
}

fn page_size() -> u64 {
    sys::memory::page_size()
}

/// One conversation with an executor.
struct Conn {
    rx: File,
    tx: File,
}

impl Conn {
    fn send(&mut self, request: &Request) {
        self.send_raw(&request.encode());
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        self.tx.write_all(bytes).expect("writing to the executor");
    }

    fn readable(&self) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.rx.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, TIMEOUT.as_millis() as c_int) };
        n == 1
    }

    /// Whether a read would not block now (bytes, or end of input).
    fn readable_now(&self) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.rx.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, 0) == 1 }
    }

    fn recv(&mut self) -> Reply {
        assert!(self.readable(), "no reply within {TIMEOUT:?}");
        let frame = read_frame(&mut self.rx).expect("reading a reply frame");
        Reply::decode(&frame).expect("decoding a reply")
    }

    /// The executor closed its end (after any unread frames are consumed).
    fn expect_eof(&mut self) {
        assert!(self.readable(), "no end-of-file within {TIMEOUT:?}");
        let mut byte = [0u8; 1];
        let n = self.rx.read(&mut byte).unwrap_or(0);
        assert_eq!(n, 0, "expected end-of-file, got a byte {:#x}", byte[0]);
    }

    fn request(&mut self, request: &Request) -> Reply {
        self.send(request);
        self.recv()
    }

    fn ok(&mut self, request: &Request) {
        let reply = self.request(request);
        assert_eq!(reply, Reply::Ok, "for {request:?}");
    }

    /// Reads the executor's `Hello` (checking it) and returns its pid.
    fn read_hello(&mut self) -> u32 {
        match self.recv() {
            Reply::Hello {
                magic,
                version,
                page_size: page,
                target,
                capabilities,
                pid,
            } => {
                assert_eq!(magic, MAGIC);
                assert_eq!(version, VERSION);
                assert_eq!(page, page_size());
                assert_eq!(target, "x86_64-unknown-linux-gnu");
                assert_eq!(
                    capabilities,
                    capability::SHARED_MEMORY
                        | capability::SNAPSHOT
                        | capability::LIFECYCLE
                        | capability::UNWIND
                        | capability::OUTPUT
                );
                pid
            }
            other => panic!("expected Hello, got {other:?}"),
        }
    }

    /// Shakes hands; returns the pid of the process that serves the
    /// session (from `Welcome`).
    fn hello(&mut self, recovery: Recovery, token: &[u8]) -> u32 {
        self.read_hello();
        self.welcome(recovery, token)
    }

    /// Greets with output forwarding asked for (checking the executor
    /// offers it); returns the `Welcome` pid.
    fn hello_forwarding(&mut self, recovery: Recovery) -> u32 {
        match self.recv() {
            Reply::Hello { capabilities, .. } => assert_ne!(
                capabilities & capability::OUTPUT,
                0,
                "forwarding is offered"
            ),
            other => panic!("expected Hello, got {other:?}"),
        }
        match self.request(&Request::Hello {
            version: VERSION,
            recovery,
            token: Vec::new(),
            forward_output: true,
        }) {
            Reply::Welcome { pid } => pid,
            other => panic!("expected Welcome, got {other:?}"),
        }
    }

    /// The frames up to the next one that is not `Output`, with what the
    /// `Output` frames before it carried: (stdout, stderr, the frame).
    fn output_then(&mut self) -> (Vec<u8>, Vec<u8>, Reply) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        loop {
            match self.recv() {
                Reply::Output {
                    stream: Stream::Stdout,
                    bytes,
                } => out.extend(bytes),
                Reply::Output {
                    stream: Stream::Stderr,
                    bytes,
                } => err.extend(bytes),
                other => return (out, err, other),
            }
        }
    }

    /// Sends `Hello` (the greeting already read); returns the `Welcome` pid.
    fn welcome(&mut self, recovery: Recovery, token: &[u8]) -> u32 {
        match self.request(&Request::Hello {
            version: VERSION,
            recovery,
            token: token.to_vec(),
            forward_output: false,
        }) {
            Reply::Welcome { pid } => pid,
            other => panic!("expected Welcome, got {other:?}"),
        }
    }

    fn reserve(&mut self, size: u64, shared: bool) -> (u64, i32) {
        match self.request(&Request::Reserve {
            size,
            placement: PlacementCode::Any,
            address: 0,
            shared,
        }) {
            Reply::Reserved { base, shm_fd } => (base, shm_fd),
            other => panic!("expected Reserved, got {other:?}"),
        }
    }

    fn write(&mut self, address: u64, bytes: &[u8]) {
        self.ok(&Request::Write {
            address,
            bytes: bytes.to_vec(),
        });
    }

    fn protect(&mut self, address: u64, size: u64, prot: Prot) {
        self.ok(&Request::Protect {
            address,
            size,
            prot,
        });
    }

    /// Writes `code` to the page at `address` and makes it executable.
    fn load_code(&mut self, address: u64, code: &[u8]) {
        self.write(address, code);
        self.protect(address, page_size(), Prot::ReadExecute);
    }

    fn call(&mut self, address: u64, args: [u64; 6], timeout_ms: u32) {
        self.send(&Request::Call {
            address,
            args,
            main: false,
            timeout_ms,
            convention: CallingConvention::SysV,
        });
    }

    fn call_value(&mut self, address: u64, args: [u64; 6]) -> u64 {
        self.call(address, args, 0);
        match self.recv() {
            Reply::Done { value } => value,
            other => panic!("expected Done, got {other:?}"),
        }
    }

    fn read(&mut self, address: u64, size: u32) -> Vec<u8> {
        match self.request(&Request::Read { address, size }) {
            Reply::Bytes { bytes } => bytes,
            other => panic!("expected Bytes, got {other:?}"),
        }
    }

    fn lookup_one(&mut self, name: &str) -> u64 {
        match self.request(&Request::Lookup {
            names: vec![name.into()],
        }) {
            Reply::Symbols { symbols } => symbols[0].address,
            other => panic!("expected Symbols, got {other:?}"),
        }
    }
}

/// An executor spawned with `--fds`, as a controller would.
struct Spawned {
    child: Child,
    conn: Conn,
}

fn pipe() -> (OwnedFd, OwnedFd) {
    sys::io::pipe().expect("making a pipe")
}

/// Crashing executors must not leave core files behind.
fn no_core_dumps(command: &mut Command) {
    // SAFETY: setrlimit is async-signal-safe, as pre_exec requires.
    unsafe {
        command.pre_exec(|| {
            let none = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &none);
            Ok(())
        });
    }
}

fn spawn_with(stdout: Stdio) -> Spawned {
    let (req_rd, req_wr) = pipe();
    let (rep_rd, rep_wr) = pipe();
    let (child_in, child_out) = (req_rd.as_raw_fd(), rep_wr.as_raw_fd());
    let mut command = Command::new(EXE);
    // Its diagnostics (malformed frames, refusals) go to a file, not to
    // the test run's terminal: they are what these tests provoke.
    command
        .arg("--fds")
        .arg(format!("{child_in},{child_out}"))
        .stdout(stdout)
        .stderr(diagnostics_file("fds"));
    no_core_dumps(&mut command);
    // SAFETY: fcntl is async-signal-safe; it clears close-on-exec on the
    // executor's two ends only, in the child.
    unsafe {
        command.pre_exec(move || {
            for fd in [child_in, child_out] {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = command.spawn().expect("spawning solder-executor");
    drop((req_rd, rep_wr));
    Spawned {
        child,
        conn: Conn {
            rx: File::from(rep_rd),
            tx: File::from(req_wr),
        },
    }
}

fn spawn() -> Spawned {
    spawn_with(Stdio::inherit())
}

fn wait_with_timeout(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().expect("waiting for the executor") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the executor did not exit within {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits for process `pid` (a child of this process, or adopted by it as
/// subreaper) and returns its raw wait status.
fn waitpid_with_timeout(pid: u32) -> i32 {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let mut status = 0;
        // SAFETY: waiting for a known pid with WNOHANG.
        let rc = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
        assert!(
            rc >= 0,
            "waitpid({pid}): {}",
            std::io::Error::last_os_error()
        );
        if rc == pid as libc::pid_t {
            return status;
        }
        assert!(Instant::now() < deadline, "process {pid} did not exit");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn pipe_transport_serves_a_session() {
    start("pipe_transport_serves_a_session");
    let Spawned {
        mut child,
        mut conn,
    } = spawn();
    let pid = conn.hello(Recovery::None, b"");
    assert_eq!(pid, child.id(), "Hello carries the executor's pid");
    let page = page_size();
    let (base, shm_fd) = conn.reserve(1 << 20, false);
    assert_eq!(shm_fd, -1);
    assert_eq!(base % page, 0);
    let data: Vec<u8> = (1..=16).collect();
    conn.write(base, &data);
    assert_eq!(conn.read(base, 16), data);

    let reply = conn.request(&Request::Lookup {
        names: vec!["puts".into(), "atexit".into(), "no_such_symbol_xyz".into()],
    });
    let Reply::Symbols { symbols } = reply else {
        panic!("expected Symbols, got {reply:?}")
    };
    assert_eq!(symbols.len(), 3);
    assert_eq!(symbols[0].kind, SymbolKind::Function);
    assert_ne!(symbols[0].address, 0);
    assert_eq!(symbols[1].kind, SymbolKind::InterposerPassDso);
    assert_eq!(symbols[1].arg, 1);
    assert_ne!(symbols[1].address, 0);
    assert_eq!(symbols[2].kind, SymbolKind::Missing);

    conn.load_code(base + page, ADD);
    assert_eq!(conn.call_value(base + page, [2, 3, 0, 0, 0, 0]), 5);

    // `main` gets SetArgs' argv; its int result is sign-extended.
    conn.ok(&Request::SetArgs {
        args: vec!["prog".into(), "a".into(), "b".into()],
    });
    // mov eax, edi; ret  /  mov eax, -1; ret
    conn.load_code(base + 2 * page, &[0x89, 0xf8, 0xc3]);
    conn.load_code(base + 3 * page, &[0xb8, 0xff, 0xff, 0xff, 0xff, 0xc3]);
    for (address, expected) in [(base + 2 * page, 3), (base + 3 * page, u64::MAX)] {
        conn.send(&Request::Call {
            address,
            args: [0; 6],
            main: true,
            timeout_ms: 0,
            convention: CallingConvention::SysV,
        });
        assert_eq!(conn.recv(), Reply::Done { value: expected });
    }

    // A Microsoft x64 function sees its first two arguments in %rcx and
    // %rdx (System V puts the fourth and third there):
    // mov rax, rcx; shl rax, 8; add rax, rdx; ret
    conn.load_code(
        base + 4 * page,
        &[
            0x48, 0x89, 0xc8, 0x48, 0xc1, 0xe0, 0x08, 0x48, 0x01, 0xd0, 0xc3,
        ],
    );
    // ... and its sixth on the stack, above the return address and 32
    // bytes of shadow space: mov rax, [rsp+48]; ret
    conn.load_code(base + 5 * page, &[0x48, 0x8b, 0x44, 0x24, 0x30, 0xc3]);
    for (address, convention, expected) in [
        (base + 4 * page, CallingConvention::Win64, 0x102),
        (base + 4 * page, CallingConvention::SysV, 0x403),
        (base + 5 * page, CallingConvention::Win64, 600),
    ] {
        conn.send(&Request::Call {
            address,
            args: [1, 2, 3, 4, 5, 600],
            main: false,
            timeout_ms: 0,
            convention,
        });
        assert_eq!(
            conn.recv(),
            Reply::Done { value: expected },
            "{convention:?}"
        );
    }

    conn.ok(&Request::Shutdown);
    conn.expect_eof();
    let status = wait_with_timeout(&mut child);
    assert_eq!(status.code(), Some(0), "{status:?}");
}

/// A minimal `.eh_frame` at `at`: one CIE and one FDE covering
/// `[code, code + len)`, then the zero terminator.
fn eh_frame(at: u64, code: u64, len: u32) -> Vec<u8> {
    let mut frame = Vec::new();
    // CIE: id 0, version 1, "zR", code align 1, data align -8, return
    // address column 16, FDE pointers pc-relative sdata4; CFA = rsp + 8,
    // return address at CFA - 8.
    frame.extend_from_slice(&20u32.to_le_bytes());
    frame.extend_from_slice(&[0, 0, 0, 0, 1, b'z', b'R', 0, 1, 0x78, 0x10, 1, 0x1b]);
    frame.extend_from_slice(&[0x0c, 0x07, 0x08, 0x90, 0x01, 0, 0]);
    // FDE: CIE pointer (back to offset 0), pc_begin, pc_range, no
    // augmentation data, padding.
    frame.extend_from_slice(&16u32.to_le_bytes());
    frame.extend_from_slice(&28u32.to_le_bytes());
    let pc_field = at + frame.len() as u64;
    frame.extend_from_slice(&((code.wrapping_sub(pc_field)) as u32).to_le_bytes());
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(&[0, 0, 0, 0]);
    frame.extend_from_slice(&[0, 0, 0, 0]);
    frame
}

/// Releasing memory whose frames are still registered deregisters them
/// first: the unwinder must never read released pages (at the next
/// unwind, or at exit).
#[test]
fn releasing_registered_frames_deregisters_them_first() {
    start("releasing_registered_frames_deregisters_them_first");
    let Spawned {
        mut child,
        mut conn,
    } = spawn();
    conn.hello(Recovery::None, b"");
    let page = page_size();
    let (base, _) = conn.reserve(1 << 20, false);
    conn.load_code(base + page, ADD);
    conn.write(base, &eh_frame(base, base + page, ADD.len() as u32));
    conn.protect(base, page, Prot::ReadOnly);
    conn.ok(&Request::RegisterFrames { address: base });
    assert_eq!(conn.call_value(base + page, [2, 3, 0, 0, 0, 0]), 5);
    conn.ok(&Request::Release {
        address: base,
        size: 2 * page,
    });
    let reply = conn.request(&Request::DeregisterFrames { address: base });
    expect_error(reply, ErrorCode::Unwind, "no frames are registered");
    conn.ok(&Request::Shutdown);
    conn.expect_eof();
    let status = wait_with_timeout(&mut child);
    assert_eq!(status.code(), Some(0), "{status:?}");
}

#[test]
fn crash_is_recorded_then_the_executor_dies_of_the_signal() {
    start("crash_is_recorded_then_the_executor_dies_of_the_signal");
    let Spawned {
        mut child,
        mut conn,
    } = spawn();
    conn.hello(Recovery::None, b"");
    let (base, _) = conn.reserve(1 << 20, false);
    conn.load_code(base, NULL_STORE);
    conn.call(base, [0; 6], 0);
    match conn.recv() {
        Reply::Crashed {
            signal,
            fault_address,
            pc,
            stack_overflow,
            ..
        } => {
            assert_eq!(signal, libc::SIGSEGV);
            assert_eq!(fault_address, 0);
            assert_eq!(pc, base, "the faulting instruction is the first one");
            assert!(!stack_overflow);
        }
        other => panic!("expected Crashed, got {other:?}"),
    }
    conn.expect_eof();
    let status = wait_with_timeout(&mut child);
    assert_eq!(status.signal(), Some(libc::SIGSEGV), "{status:?}");
}

#[test]
fn exit_is_recorded_with_its_status() {
    start("exit_is_recorded_with_its_status");
    let Spawned {
        mut child,
        mut conn,
    } = spawn();
    conn.hello(Recovery::None, b"");
    let (base, _) = conn.reserve(1 << 20, false);
    let reply = conn.request(&Request::Lookup {
        names: vec!["exit".into()],
    });
    let Reply::Symbols { symbols } = reply else {
        panic!("expected Symbols, got {reply:?}")
    };
    assert_eq!(symbols[0].kind, SymbolKind::InterposerDirect);
    conn.load_code(base, &exit_code(symbols[0].address, 42));
    conn.call(base, [0; 6], 0);
    assert_eq!(conn.recv(), Reply::Exited { status: 42 });
    conn.expect_eof();
    let status = wait_with_timeout(&mut child);
    assert_eq!(status.code(), Some(42), "{status:?}");
}

#[test]
fn timeout_is_a_sigalrm_crash() {
    start("timeout_is_a_sigalrm_crash");
    let Spawned {
        mut child,
        mut conn,
    } = spawn();
    conn.hello(Recovery::None, b"");
    let (base, _) = conn.reserve(1 << 20, false);
    conn.load_code(base, SPIN);
    let started = Instant::now();
    conn.call(base, [0; 6], 200);
    match conn.recv() {
        Reply::Crashed { signal, pc, .. } => {
            assert_eq!(signal, libc::SIGALRM);
            assert_eq!(pc, base, "interrupted inside the loop");
        }
        other => panic!("expected Crashed, got {other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_millis(190));
    let status = wait_with_timeout(&mut child);
    assert_eq!(status.signal(), Some(libc::SIGALRM), "{status:?}");
}

#[test]
fn stdout_reaches_its_file_before_the_reply() {
    start("stdout_reaches_its_file_before_the_reply");
    let path = temp_path("stdout");
    let file = File::create(&path).unwrap();
    let Spawned {
        mut child,
        mut conn,
    } = spawn_with(Stdio::from(file));
    conn.hello(Recovery::None, b"");
    let (base, _) = conn.reserve(1 << 20, false);
    let page = page_size();
    let puts = conn.lookup_one("puts");
    conn.write(base + page, b"hello from jit\0");
    conn.load_code(base, &puts_code(puts, base + page));
    conn.call_value(base, [0; 6]);
    // A file is fully buffered: only the executor's flush puts it there.
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "hello from jit\n");
    conn.ok(&Request::Shutdown);
    assert_eq!(wait_with_timeout(&mut child).code(), Some(0));
    let _ = std::fs::remove_file(&path);
}

#[test]
fn modules_run_initializers_and_finalizers() {
    start("modules_run_initializers_and_finalizers");
    let Spawned {
        mut child,
        mut conn,
    } = spawn();
    conn.hello(Recovery::None, b"");
    let (base, _) = conn.reserve(1 << 20, false);
    let page = page_size();
    let counter = base + page;
    conn.write(counter, &[0; 8]);
    conn.load_code(base, &counter_code(counter));
    conn.ok_done(&Request::RunInitializers {
        addresses: vec![base, base],
        convention: CallingConvention::SysV,
    });
    let dso = base + 2 * page;
    conn.ok(&Request::RegisterModule {
        dso,
        position: u64::MAX,
        prioritized: vec![],
        unprioritized: vec![base],
        convention: CallingConvention::SysV,
    });
    assert_eq!(
        conn.request(&Request::RemoveModule { dso }),
        Reply::Removed { position: 0 }
    );
    assert_eq!(conn.read(counter, 8), 3u64.to_le_bytes());
    conn.ok(&Request::Shutdown);
    assert_eq!(wait_with_timeout(&mut child).code(), Some(0));
}

impl Conn {
    /// `RunInitializers` answers `Done { value: 0 }`, not `Ok`.
    fn ok_done(&mut self, request: &Request) {
        assert_eq!(self.request(request), Reply::Done { value: 0 });
    }
}

#[test]
fn snapshot_rolls_back_a_crashed_call() {
    start("snapshot_rolls_back_a_crashed_call");
    // SAFETY: PR_SET_CHILD_SUBREAPER only sets a flag on this process; the
    // checkpoint that takes over becomes our child, so we can reap it.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(rc, 0, "PR_SET_CHILD_SUBREAPER");
    let Spawned {
        mut child,
        mut conn,
    } = spawn();
    conn.hello(Recovery::Snapshot, b"");
    let (base, _) = conn.reserve(1 << 20, false);
    let page = page_size();
    let counter = base + 2 * page;
    conn.write(counter, &[0; 8]);
    conn.load_code(base, &counter_code(counter));
    conn.load_code(base + page, NULL_STORE);

    let checkpoint = |conn: &mut Conn| match conn.recv() {
        Reply::Checkpoint {
            pid,
            reason: CheckpointSkip::Taken,
        } => {
            assert_ne!(pid, 0);
            pid
        }
        other => panic!("expected Checkpoint {{ Taken }}, got {other:?}"),
    };
    for expected in 1..=2 {
        conn.call(base, [0; 6], 0);
        checkpoint(&mut conn);
        assert_eq!(conn.recv(), Reply::Done { value: expected });
    }
    conn.call(base + page, [0; 6], 0);
    let saved = checkpoint(&mut conn);
    assert!(matches!(
        conn.recv(),
        Reply::Crashed {
            signal: libc::SIGSEGV,
            ..
        }
    ));
    assert_eq!(conn.recv(), Reply::Resumed { pid: saved });
    let status = wait_with_timeout(&mut child);
    assert_eq!(status.signal(), Some(libc::SIGSEGV), "{status:?}");

    // The checkpoint serves with the state from before the crash.
    conn.call(base, [0; 6], 0);
    checkpoint(&mut conn);
    assert_eq!(conn.recv(), Reply::Done { value: 3 });
    conn.ok(&Request::Shutdown);
    conn.expect_eof();
    let status = waitpid_with_timeout(saved);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "resumed executor status {status:#x}"
    );
}

#[test]
fn snapshot_after_exit_does_not_resume() {
    start("snapshot_after_exit_does_not_resume");
    let Spawned {
        mut child,
        mut conn,
    } = spawn();
    conn.hello(Recovery::Snapshot, b"");
    let (base, _) = conn.reserve(1 << 20, false);
    let exit = conn.lookup_one("exit");
    conn.load_code(base, &exit_code(exit, 7));
    conn.call(base, [0; 6], 0);
    assert!(matches!(conn.recv(), Reply::Checkpoint { .. }));
    assert_eq!(conn.recv(), Reply::Exited { status: 7 });
    // The discarded checkpoint closes its copy of the channel too.
    conn.expect_eof();
    assert_eq!(wait_with_timeout(&mut child).code(), Some(7));
}

#[test]
fn unknown_tag_is_malformed_and_closes() {
    start("unknown_tag_is_malformed_and_closes");
    let Spawned {
        mut child,
        mut conn,
    } = spawn();
    conn.hello(Recovery::None, b"");
    conn.send_raw(&[1, 0, 0, 0, 99]);
    expect_error_then_exit(&mut conn, &mut child, ErrorCode::Malformed, "");
}

#[test]
fn oversized_length_prefix_is_refused() {
    start("oversized_length_prefix_is_refused");
    for prefix in [MAX_FRAME + 1, u32::MAX] {
        let Spawned {
            mut child,
            mut conn,
        } = spawn();
        conn.hello(Recovery::None, b"");
        conn.send_raw(&prefix.to_le_bytes());
        match conn.recv() {
            Reply::Error {
                code: ErrorCode::Malformed,
                message,
            } => assert!(message.contains("exceeds"), "{message}"),
            other => panic!("expected Error {{ Malformed }}, got {other:?}"),
        }
        conn.expect_eof();
        let status = wait_with_timeout(&mut child);
        assert_eq!(status.code(), Some(3), "prefix {prefix:#x}: {status:?}");
    }
}

#[test]
fn truncated_frame_then_eof_exits_cleanly() {
    start("truncated_frame_then_eof_exits_cleanly");
    let Spawned {
        mut child,
        mut conn,
    } = spawn();
    conn.hello(Recovery::None, b"");
    conn.send_raw(&[10, 0, 0, 0, 3, 1, 2]);
    drop(conn.tx);
    let status = wait_with_timeout(&mut child);
    assert_eq!(status.signal(), None, "{status:?}");
    assert_eq!(status.code(), Some(0), "{status:?}");
}

#[test]
fn request_before_hello_is_a_state_error() {
    start("request_before_hello_is_a_state_error");
    let Spawned {
        mut child,
        mut conn,
    } = spawn();
    conn.read_hello();
    conn.send(&Request::Reserve {
        size: 1 << 20,
        placement: PlacementCode::Any,
        address: 0,
        shared: false,
    });
    expect_error_then_exit(&mut conn, &mut child, ErrorCode::State, "");
}

#[test]
fn wrong_version_is_refused() {
    start("wrong_version_is_refused");
    let Spawned {
        mut child,
        mut conn,
    } = spawn();
    conn.read_hello();
    conn.send(&Request::Hello {
        version: VERSION + 1,
        recovery: Recovery::None,
        token: vec![],
        forward_output: false,
    });
    expect_error_then_exit(&mut conn, &mut child, ErrorCode::Refused, "");
}

/// A slab in the first 64 KiB, where null-pointer accesses must fault, is
/// refused whatever asks for it (root may map there), and the session goes
/// on.
#[test]
fn reserve_refuses_the_first_64_kib() {
    start("reserve_refuses_the_first_64_kib");
    let Spawned {
        mut child,
        mut conn,
    } = spawn();
    conn.hello(Recovery::None, b"");
    let page = page_size();
    for shared in [false, true] {
        for address in [0, page, 0x1_0000 - page] {
            let reply = conn.request(&Request::Reserve {
                size: 4 * page,
                placement: PlacementCode::Fixed,
                address,
                shared,
            });
            expect_error(reply, ErrorCode::Memory, "first 64 KiB");
        }
    }
    // The refusals reserved nothing: a first reservation still works.
    let (base, _) = conn.reserve(1 << 20, false);
    assert!(base >= 0x1_0000, "{base:#x}");
    conn.ok(&Request::Shutdown);
    assert_eq!(wait_with_timeout(&mut child).code(), Some(0));
}

#[test]
fn memory_errors_leave_the_session_usable() {
    start("memory_errors_leave_the_session_usable");
    let Spawned {
        mut child,
        mut conn,
    } = spawn();
    conn.hello(Recovery::None, b"");
    // Before Reserve: a state error.
    assert!(matches!(
        conn.request(&Request::Write {
            address: 0x1000,
            bytes: vec![1]
        }),
        Reply::Error {
            code: ErrorCode::State,
            ..
        }
    ));
    let (base, _) = conn.reserve(1 << 20, false);
    let page = page_size();
    for request in [
        Request::Write {
            address: base + (1 << 20) - 2,
            bytes: vec![1, 2, 3],
        },
        Request::Write {
            address: base - 1,
            bytes: vec![1],
        },
        Request::Write {
            address: u64::MAX - 1,
            bytes: vec![1, 2, 3, 4],
        },
        Request::Protect {
            address: base + (1 << 20),
            size: page,
            prot: Prot::ReadOnly,
        },
        Request::Protect {
            address: base,
            size: u64::MAX,
            prot: Prot::ReadOnly,
        },
        Request::Release {
            address: base - page,
            size: page,
        },
        Request::Patch {
            address: base + (1 << 20),
            restore: Prot::ReadOnly,
            bytes: vec![1],
        },
        Request::Read {
            address: 8,
            size: 8,
        },
        Request::Read {
            address: base,
            size: 8,
        },
    ] {
        match conn.request(&request) {
            Reply::Error {
                code: ErrorCode::Memory,
                ..
            } => {}
            other => panic!("{request:?}: expected Error {{ Memory }}, got {other:?}"),
        }
    }
    assert!(matches!(
        conn.request(&Request::Reserve {
            size: 1 << 20,
            placement: PlacementCode::Any,
            address: 0,
            shared: false
        }),
        Reply::Error {
            code: ErrorCode::State,
            ..
        }
    ));
    conn.write(base + 8, &[9, 8, 7]);
    assert_eq!(conn.read(base + 8, 3), [9, 8, 7]);
    // Released memory reads as inaccessible, then as zero once written.
    conn.ok(&Request::Release {
        address: base,
        size: page,
    });
    assert!(matches!(
        conn.request(&Request::Read {
            address: base + 8,
            size: 3
        }),
        Reply::Error { .. }
    ));
    conn.write(base, &[1]);
    assert_eq!(conn.read(base + 8, 3), [0, 0, 0]);
    conn.ok(&Request::Shutdown);
    assert_eq!(wait_with_timeout(&mut child).code(), Some(0));
}

/// A scratch file of this test's under the target directory's scratch
/// folder (`cargo clean` takes it away; the system's temporary directory
/// would keep every run's).
fn temp_path(what: &str) -> PathBuf {
    let name = TEST_NAME.with(|n| n.get());
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "solder-executor-{}-{name}-{what}",
        std::process::id()
    ))
}

/// Where a spawned executor's stderr goes: a file of its own in the
/// scratch folder ([`temp_path`]; the refusals and malformed-frame reports these
/// tests provoke are not alarms for whoever runs them).
fn diagnostics_file(what: &str) -> Stdio {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = temp_path(&format!("{what}-{n}.stderr"));
    Stdio::from(std::fs::File::create(path).expect("create the executor's stderr file"))
}

/// Starts `--listen 127.0.0.1:0 ...` and returns the child and its address.
fn listen(extra: &[&str]) -> (Child, std::net::SocketAddr) {
    let ready = temp_path("ready");
    let _ = std::fs::remove_file(&ready);
    let mut command = Command::new(EXE);
    command
        .args(["--listen", "127.0.0.1:0", "--ready-file"])
        .arg(&ready)
        .args(extra)
        .env_remove("SOLDER_EXECUTOR_TOKEN")
        .stderr(diagnostics_file("listen"));
    no_core_dumps(&mut command);
    let mut child = command.spawn().expect("spawning solder-executor");
    let deadline = Instant::now() + TIMEOUT;
    let addr = loop {
        if let Ok(text) = std::fs::read_to_string(&ready) {
            assert!(text.ends_with('\n'), "ready file {text:?}");
            break text
                .trim()
                .parse()
                .expect("the ready file holds an address");
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the listener exited early: {status:?}");
        }
        assert!(Instant::now() < deadline, "no ready file");
        std::thread::sleep(Duration::from_millis(5));
    };
    let _ = std::fs::remove_file(&ready);
    (child, addr)
}

fn connect(addr: std::net::SocketAddr) -> Conn {
    let stream = std::net::TcpStream::connect(addr).expect("connecting");
    let rx = File::from(OwnedFd::from(stream.try_clone().unwrap()));
    Conn {
        rx,
        tx: File::from(OwnedFd::from(stream)),
    }
}

#[test]
fn tcp_once_serves_a_call() {
    start("tcp_once_serves_a_call");
    let (mut child, addr) = listen(&["--once"]);
    let mut conn = connect(addr);
    let pid = conn.hello(Recovery::None, b"");
    assert_eq!(pid, child.id(), "--once serves in the listening process");
    let (base, _) = conn.reserve(1 << 20, false);
    conn.load_code(base, ADD);
    assert_eq!(conn.call_value(base, [40, 2, 0, 0, 0, 0]), 42);
    conn.ok(&Request::Shutdown);
    conn.expect_eof();
    assert_eq!(wait_with_timeout(&mut child).code(), Some(0));
}

#[test]
fn tcp_token_is_checked_per_connection() {
    start("tcp_token_is_checked_per_connection");
    let token = temp_path("token");
    // The token is the first line, without its `\r\n`.
    std::fs::write(&token, "s3cret\r\nthe second line is not the token\n").unwrap();
    let (mut child, addr) = listen(&["--token-file", token.to_str().unwrap()]);
    let _ = std::fs::remove_file(&token);

    let mut wrong = connect(addr);
    wrong.read_hello();
    wrong.send(&Request::Hello {
        version: VERSION,
        recovery: Recovery::None,
        token: b"wrong".to_vec(),
        forward_output: false,
    });
    match wrong.recv() {
        Reply::Error {
            code: ErrorCode::Refused,
            message,
        } => assert!(!message.contains("s3cret"), "{message}"),
        other => panic!("expected Error {{ Refused }}, got {other:?}"),
    }
    wrong.expect_eof();

    // Each connection is a fresh process; the listener keeps accepting.
    let mut right = connect(addr);
    let pid = right.hello(Recovery::None, b"s3cret");
    assert_ne!(pid, child.id(), "connections are served by forked children");
    let (base, _) = right.reserve(1 << 20, false);
    right.load_code(base, ADD);
    assert_eq!(right.call_value(base, [2, 3, 0, 0, 0, 0]), 5);
    right.ok(&Request::Shutdown);
    right.expect_eof();
    assert!(
        child.try_wait().unwrap().is_none(),
        "the listener still runs"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

/// The processes whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("listing /proc").flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // `PID (COMM) STATE PPID ...`; COMM may hold spaces and parentheses.
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        if rest.split_whitespace().nth(1) == Some(pid.to_string().as_str()) {
            children.push(child);
        }
    }
    children
}

/// Connects and reads the greeting, which must come from the listener
/// itself: no process is forked before a `Hello` passes.
fn connect_to_listener(addr: std::net::SocketAddr, listener: u32) -> Conn {
    let mut conn = connect(addr);
    assert_eq!(conn.read_hello(), listener, "the listener greets");
    conn
}

/// Idle connections and wrong tokens cost no process: the listener greets
/// and checks every `Hello` itself, keeps at most `--max-connections`
/// connections waiting (closing the oldest), and forks only for a `Hello`
/// that passes.
#[test]
fn tcp_idle_connections_and_wrong_tokens_get_no_process() {
    start("tcp_idle_connections_and_wrong_tokens_get_no_process");
    let token = temp_path("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let (mut child, addr) = listen(&[
        "--token-file",
        token.to_str().unwrap(),
        "--max-connections",
        "8",
    ]);
    let _ = std::fs::remove_file(&token);
    let listener = child.id();
    let mut idle: Vec<Conn> = (0..100)
        .map(|_| connect_to_listener(addr, listener))
        .collect();
    assert_eq!(children_of(listener), Vec::<u32>::new(), "idle connections");

    let mut wrong = connect_to_listener(addr, listener);
    assert_eq!(children_of(listener), Vec::<u32>::new());
    wrong.send(&Request::Hello {
        version: VERSION,
        recovery: Recovery::None,
        token: b"wrong".to_vec(),
        forward_output: false,
    });
    expect_error(wrong.recv(), ErrorCode::Refused, "wrong token");
    wrong.expect_eof();
    assert_eq!(children_of(listener), Vec::<u32>::new(), "a wrong token");

    let mut right = connect_to_listener(addr, listener);
    let pid = right.welcome(Recovery::None, b"s3cret");
    assert_ne!(pid, listener);
    assert_eq!(children_of(listener), vec![pid], "one session, one process");
    // At most 8 of the idle connections still wait; the older ones were
    // closed as new ones came (each close happened before the greeting of
    // a newer connection was sent, so it is visible now).
    let mut closed = 0;
    for conn in &mut idle {
        if conn.readable_now() {
            let mut byte = [0u8];
            assert_eq!(
                conn.rx.read(&mut byte).unwrap_or(0),
                0,
                "an idle connection got bytes"
            );
            closed += 1;
        }
    }
    assert!(
        closed >= 92,
        "only {closed} of 100 idle connections were closed"
    );
    drop(idle);
    right.ok(&Request::Shutdown);
    right.expect_eof();
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A connection that does not complete its `Hello` within the deadline is
/// closed, whether it sent nothing or part of a frame.
#[test]
fn tcp_handshake_has_a_deadline() {
    start("tcp_handshake_has_a_deadline");
    let (mut child, addr) = listen(&["--handshake-timeout", "1"]);
    let listener = child.id();
    let mut silent = connect_to_listener(addr, listener);
    let started = Instant::now();
    let mut partial = connect_to_listener(addr, listener);
    let hello = Request::Hello {
        version: VERSION,
        recovery: Recovery::None,
        token: vec![],
        forward_output: false,
    }
    .encode();
    partial.send_raw(&hello[..hello.len() - 1]);
    silent.expect_eof();
    partial.expect_eof();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "closed after {waited:?}, before the deadline"
    );
    assert_eq!(children_of(listener), Vec::<u32>::new());
    // A prompt controller is served.
    let mut prompt = connect(addr);
    prompt.hello(Recovery::None, b"");
    prompt.ok(&Request::Shutdown);
    prompt.expect_eof();
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Beyond `--max-connections` sessions a `Hello` that passes is refused,
/// with a message that says why; a session that ends makes room.
#[test]
fn tcp_connection_cap_refuses_then_makes_room() {
    start("tcp_connection_cap_refuses_then_makes_room");
    let (mut child, addr) = listen(&["--max-connections", "1"]);
    let listener = child.id();
    let mut first = connect(addr);
    first.hello(Recovery::None, b"");
    let mut second = connect_to_listener(addr, listener);
    second.send(&Request::Hello {
        version: VERSION,
        recovery: Recovery::None,
        token: vec![],
        forward_output: false,
    });
    expect_error(second.recv(), ErrorCode::Refused, "too many connections");
    second.expect_eof();
    first.ok(&Request::Shutdown);
    first.expect_eof();
    // The listener notices the session's end (its pidfd) and takes the
    // next one.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let mut next = connect_to_listener(addr, listener);
        next.send(&Request::Hello {
            version: VERSION,
            recovery: Recovery::None,
            token: vec![],
            forward_output: false,
        });
        match next.recv() {
            Reply::Welcome { .. } => {
                next.ok(&Request::Shutdown);
                break;
            }
            reply => expect_error(reply, ErrorCode::Refused, "too many connections"),
        };
        assert!(Instant::now() < deadline, "no room after the session ended");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_token_file_with_an_empty_first_line_is_refused() {
    start("a_token_file_with_an_empty_first_line_is_refused");
    let token = temp_path("token");
    for text in ["", "\n", "\r\ns3cret\n"] {
        std::fs::write(&token, text).unwrap();
        let output = Command::new(EXE)
            .args(["--listen", "127.0.0.1:0", "--token-file"])
            .arg(&token)
            .env_remove("SOLDER_EXECUTOR_TOKEN")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{text:?}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("empty"), "{text:?}: {stderr}");
    }
    let _ = std::fs::remove_file(&token);
}

#[test]
fn non_loopback_listen_requires_a_token() {
    start("non_loopback_listen_requires_a_token");
    let output = Command::new(EXE)
        .args(["--listen", "0.0.0.0:0"])
        .env_remove("SOLDER_EXECUTOR_TOKEN")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("token"), "{stderr}");
    assert!(output.stdout.is_empty());
}

#[test]
fn bad_arguments_exit_2_and_help_exits_0() {
    start("bad_arguments_exit_2_and_help_exits_0");
    for args in [
        &["--bogus"][..],
        &[],
        &["--fds", "x"],
        &["--fds", "3,4", "--once"],
        &["--listen", "nowhere"],
        &["--fds", "3,4", "--max-connections", "2"],
        &["--fds", "3,4", "--peer-timeout", "5"],
        &["--listen", "0", "--max-connections", "0"],
        &["--listen", "0", "--handshake-timeout", "soon"],
        &["--listen", "0", "--peer-timeout", "-1"],
    ] {
        let output = Command::new(EXE).args(args).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
    let output = Command::new(EXE).arg("--help").output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stdout).contains("--listen ADDR"));
}

#[test]
fn shared_memory_code_is_shared_and_data_is_private() {
    start("shared_memory_code_is_shared_and_data_is_private");
    let Spawned {
        mut child,
        mut conn,
    } = spawn();
    let pid = conn.hello(Recovery::None, b"");
    let size = 1u64 << 20;
    let page = page_size();
    let (base, shm_fd) = conn.reserve(size, true);
    assert!(shm_fd >= 0, "shared reservation has a memfd");
    let view_file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/proc/{pid}/fd/{shm_fd}"))
        .expect("opening the executor's memfd");
    // The mapping is only accessed through `view` below, inside its length,
    // and unmapped at the end.
    let view = sys::memory::map_shared(Some(view_file.as_fd()), size).expect("mapping the memfd");
    // SAFETY: `view` maps `size` bytes read-write.
    let view = unsafe { std::slice::from_raw_parts_mut(view, size as usize) };
    view[..ADD.len()].copy_from_slice(ADD);
    view[64..64 + STORE.len()].copy_from_slice(STORE);
    conn.protect(base, page, Prot::ReadExecute);
    assert_eq!(conn.call_value(base, [2, 3, 0, 0, 0, 0]), 5);

    // A data page: the executor's writes stay private to it.
    let data = base + page;
    view[page as usize] = 0x5a;
    conn.protect(data, page, Prot::ReadWrite);
    assert_eq!(
        conn.read(data, 1),
        [0x5a],
        "starts from the shared contents"
    );
    conn.call_value(base + 64, [data + 8, 0x1234, 0, 0, 0, 0]);
    assert_eq!(conn.read(data + 8, 8), 0x1234u64.to_le_bytes());
    assert_eq!(
        view[(page + 8) as usize..(page + 16) as usize],
        [0; 8],
        "the controller's view must not see the executor's data write"
    );
    // Releasing: the controller clears the file (only it can write it),
    // the executor drops its private copies; both then read zero.
    sys::memory::punch_hole(view_file.as_fd(), page, page).expect("punching a hole");
    conn.ok(&Request::Release {
        address: data,
        size: page,
    });
    conn.protect(data, page, Prot::ReadOnly);
    assert_eq!(conn.read(data + 8, 8), [0; 8], "the private copy is gone");
    assert_eq!(view[page as usize], 0);

    conn.ok(&Request::Shutdown);
    assert_eq!(wait_with_timeout(&mut child).code(), Some(0));
    // SAFETY: unmapping the view mapped above, which nothing uses now.
    unsafe { sys::memory::unmap(view.as_mut_ptr() as u64, size) }.expect("unmapping the view");
}

/// `/proc/PID/fd` entries of process `pid` that are the shared slab's
/// memfd.
fn slab_descriptors(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("listing the executor's descriptors")
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let target = std::fs::read_link(entry.path()).ok()?;
            let target = target.to_string_lossy().into_owned();
            target
                .contains("solder-slab")
                .then(|| format!("{} -> {target}", entry.file_name().to_string_lossy()))
        })
        .collect()
}

/// The lines of `/proc/PID/maps` that map the shared slab's memfd.
fn slab_mappings(pid: u32) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .expect("reading the executor's mappings")
        .lines()
        .filter(|line| line.contains("solder-slab"))
        .map(str::to_string)
        .collect()
}

/// With a shared slab the executor keeps no writable alias of its code:
/// once the controller has opened the memfd the executor holds no
/// descriptor of it (none to write through, none to reopen read-write
/// through `/proc/self/fd`), and maps it only privately, code pages not
/// writable.
#[test]
fn shared_memory_leaves_the_executor_no_writable_alias() {
    start("shared_memory_leaves_the_executor_no_writable_alias");
    let Spawned {
        mut child,
        mut conn,
    } = spawn();
    let pid = conn.hello(Recovery::Snapshot, b"");
    let size = 1u64 << 20;
    let page = page_size();
    let (base, shm_fd) = conn.reserve(size, true);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/proc/{pid}/fd/{shm_fd}"))
        .expect("opening the executor's memfd right after Reserved");
    use std::os::unix::fs::FileExt;
    file.write_all_at(ADD, 0).unwrap();
    file.write_all_at(STORE, 64).unwrap();
    // Any next request: the executor has given up its descriptor.
    conn.protect(base, page, Prot::ReadExecute);
    assert_eq!(slab_descriptors(pid), Vec::<String>::new());
    let reopen = format!("/proc/{pid}/fd/{shm_fd}");
    assert!(
        std::fs::read_link(&reopen).is_err(),
        "{reopen} must not exist any more"
    );
    // Data: written by the executor, so its own private copy.
    let data = base + page;
    conn.protect(data, page, Prot::ReadWrite);
    // Checkpoints are taken: no mapping is shared and writable.
    for (address, args, value) in [
        (base, [2, 3, 0, 0, 0, 0], Some(5)),
        (base + 64, [data, 0x77, 0, 0, 0, 0], None),
    ] {
        conn.call(address, args, 0);
        assert!(
            matches!(
                conn.recv(),
                Reply::Checkpoint {
                    reason: CheckpointSkip::Taken,
                    ..
                }
            ),
            "a checkpoint before the call"
        );
        match conn.recv() {
            Reply::Done { value: got } => assert!(value.is_none_or(|v| v == got), "{got}"),
            other => panic!("expected Done, got {other:?}"),
        }
    }
    assert_eq!(conn.read(data, 1), [0x77]);
    let mut byte = [1u8];
    file.read_exact_at(&mut byte, page).unwrap();
    assert_eq!(byte, [0], "the executor's data write stays private");
    let mappings = slab_mappings(pid);
    assert!(!mappings.is_empty(), "the slab is mapped");
    for line in &mappings {
        let perms = line.split_whitespace().nth(1).expect("a permissions field");
        assert!(
            perms.ends_with('p'),
            "every mapping of the memfd is private: {line}"
        );
        let start = u64::from_str_radix(line.split('-').next().unwrap(), 16).unwrap();
        if start <= base && base < start + page {
            assert_eq!(perms, "r-xp", "the code page: {line}");
        }
    }
    assert_eq!(
        slab_descriptors(pid),
        Vec::<String>::new(),
        "nor does a call (or its checkpoint) bring one back"
    );
    conn.ok(&Request::Shutdown);
    assert_eq!(wait_with_timeout(&mut child).code(), Some(0));
}

#[test]
fn snapshot_checkpoint_is_invisible_to_wait() {
    start("snapshot_checkpoint_is_invisible_to_wait");
    let Spawned {
        mut child,
        mut conn,
    } = spawn();
    conn.hello(Recovery::Snapshot, b"");
    expect_no_children_for_wait(&mut conn);
    conn.ok(&Request::Shutdown);
    assert_eq!(wait_with_timeout(&mut child).code(), Some(0));
}

/// Over TCP the session also has a watchdog process: as invisible to the
/// program's `wait()` as a checkpoint.
#[test]
fn tcp_watchdog_is_invisible_to_wait() {
    start("tcp_watchdog_is_invisible_to_wait");
    let (mut child, addr) = listen(&["--once"]);
    let mut conn = connect(addr);
    conn.hello(Recovery::Snapshot, b"");
    expect_no_children_for_wait(&mut conn);
    conn.ok(&Request::Shutdown);
    conn.expect_eof();
    assert_eq!(wait_with_timeout(&mut child).code(), Some(0));
}

/// Loads and calls a function that returns `wait(NULL)`, under the snapshot
/// policy: a program without children must get ECHILD (-1) at once, even
/// while a checkpoint sleeps (a timeout turns a hang into a failure).
fn expect_no_children_for_wait(conn: &mut Conn) {
    let (base, _) = conn.reserve(1 << 20, false);
    let wait = conn.lookup_one("wait");
    // movabs rax, wait; xor edi, edi; sub rsp, 8; call rax; add rsp, 8; ret
    let mut code = vec![0x48, 0xb8];
    code.extend_from_slice(&wait.to_le_bytes());
    code.extend_from_slice(&[0x31, 0xff, 0x48, 0x83, 0xec, 0x08, 0xff, 0xd0]);
    code.extend_from_slice(&[0x48, 0x83, 0xc4, 0x08, 0xc3]);
    conn.load_code(base, &code);
    conn.call(base, [0; 6], 5000);
    assert!(matches!(
        conn.recv(),
        Reply::Checkpoint {
            reason: CheckpointSkip::Taken,
            ..
        }
    ));
    match conn.recv() {
        Reply::Done { value } => assert_eq!(value as u32 as i32, -1, "wait() = {value:#x}"),
        other => panic!("wait() must not see the checkpoint, got {other:?}"),
    }
}

#[test]
fn bare_port_listens_on_loopback() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("solder-bare-port-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ready = dir.join("address");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_solder-executor"))
        .args(["--listen", "0", "--ready-file"])
        .arg(&ready)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    let address = loop {
        if let Ok(text) = std::fs::read_to_string(&ready)
            && !text.trim().is_empty()
        {
            break text.trim().to_string();
        }
        if start.elapsed().as_secs() > 10 {
            let _ = child.kill();
            panic!(
                "no ready file\nrerun: cargo test -p solder-executor --test server bare_port_listens_on_loopback"
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        address.starts_with("127.0.0.1:"),
        "`--listen 0` must bind loopback, bound {address}\nrerun: cargo test -p solder-executor --test server bare_port_listens_on_loopback"
    );
}

/// `Call { address, args }` without a timeout, in the System V convention.
fn call_request(address: u64, args: [u64; 6]) -> Request {
    Request::Call {
        address,
        args,
        main: false,
        timeout_ms: 0,
        convention: CallingConvention::SysV,
    }
}

/// Asserts an `Error` with `code` whose message contains `needle`.
/// The executor answers an `Error` of `code` mentioning `needle`, closes
/// the connection and exits with the protocol-error status (3).
fn expect_error_then_exit(conn: &mut Conn, child: &mut Child, code: ErrorCode, needle: &str) {
    expect_error(conn.recv(), code, needle);
    conn.expect_eof();
    let status = wait_with_timeout(child);
    assert_eq!(status.code(), Some(3), "{status:?}");
}

fn expect_error(reply: Reply, code: ErrorCode, needle: &str) -> String {
    match reply {
        Reply::Error { code: got, message } => {
            assert_eq!(got, code, "{message}");
            assert!(message.contains(needle), "{needle:?} not in {message:?}");
            message
        }
        other => panic!("expected Error {{ {code:?} }}, got {other:?}"),
    }
}

#[test]
fn batch_runs_plain_requests_then_answers_for_the_last() {
    start("batch_runs_plain_requests_then_answers_for_the_last");
    let Spawned {
        mut child,
        mut conn,
    } = spawn();
    conn.hello(Recovery::None, b"");
    let (base, _) = conn.reserve(1 << 20, false);
    let page = page_size();
    // Load and call in one frame, one reply.
    let reply = conn.request(&Request::Batch {
        requests: vec![
            Request::Write {
                address: base,
                bytes: ADD.to_vec(),
            },
            Request::Protect {
                address: base,
                size: page,
                prot: Prot::ReadExecute,
            },
            call_request(base, [20, 22, 0, 0, 0, 0]),
        ],
    });
    assert_eq!(reply, Reply::Done { value: 42 });
    // A batch ending in a plain request is answered Ok; one ending in Read
    // reads what the batch wrote.
    conn.ok(&Request::Batch {
        requests: vec![
            Request::Write {
                address: base + page,
                bytes: vec![1; 8],
            },
            Request::Write {
                address: base + page + 8,
                bytes: vec![2; 8],
            },
        ],
    });
    assert_eq!(
        conn.request(&Request::Batch {
            requests: vec![
                Request::Write {
                    address: base + page + 4,
                    bytes: vec![3; 8],
                },
                Request::Read {
                    address: base + page,
                    size: 16,
                },
            ],
        }),
        Reply::Bytes {
            bytes: [[1; 4], [3; 4], [3; 4], [2; 4]].concat()
        }
    );
    // Nothing else is in flight: the next request gets the next reply.
    assert_eq!(conn.call_value(base, [1, 2, 0, 0, 0, 0]), 3);
    conn.ok(&Request::Shutdown);
    conn.expect_eof();
    assert_eq!(wait_with_timeout(&mut child).code(), Some(0));
}

#[test]
fn batch_stops_at_the_first_failure_and_names_it() {
    start("batch_stops_at_the_first_failure_and_names_it");
    let Spawned {
        mut child,
        mut conn,
    } = spawn();
    conn.hello(Recovery::None, b"");
    let size = 1u64 << 20;
    let (base, _) = conn.reserve(size, false);
    let page = page_size();
    let marker = base + page;
    conn.write(marker, &[0; 8]);
    conn.load_code(base, STORE);
    // Write runs, Protect (outside the slab) fails, the Call that would
    // store the marker does not run.
    let message = expect_error(
        conn.request(&Request::Batch {
            requests: vec![
                Request::Write {
                    address: marker + 8,
                    bytes: vec![7; 8],
                },
                Request::Protect {
                    address: base + size,
                    size: page,
                    prot: Prot::ReadOnly,
                },
                call_request(base, [marker, 0xfeed, 0, 0, 0, 0]),
            ],
        }),
        ErrorCode::Memory,
        "request 2 of 3 in the batch (Protect): ",
    );
    assert!(message.contains("outside the slab"), "{message}");
    assert_eq!(conn.read(marker, 16), [[0; 8], [7; 8]].concat());
    // The session is usable, and the same call, batched correctly, stores.
    let reply = conn.request(&Request::Batch {
        requests: vec![
            Request::Write {
                address: marker + 8,
                bytes: vec![8; 8],
            },
            call_request(base, [marker, 0xfeed, 0, 0, 0, 0]),
        ],
    });
    assert!(matches!(reply, Reply::Done { .. }), "{reply:?}");
    assert_eq!(
        conn.read(marker, 16),
        [0xfeedu64.to_le_bytes(), [8; 8]].concat()
    );
    // A failing first request: nothing after it runs.
    expect_error(
        conn.request(&Request::Batch {
            requests: vec![
                Request::DeregisterFrames { address: 0x1234 },
                Request::Write {
                    address: marker + 8,
                    bytes: vec![9; 8],
                },
                Request::Read {
                    address: marker,
                    size: 8,
                },
            ],
        }),
        ErrorCode::Unwind,
        "request 1 of 3 in the batch (DeregisterFrames): ",
    );
    assert_eq!(conn.read(marker + 8, 8), [8; 8]);
    conn.ok(&Request::Shutdown);
    conn.expect_eof();
    assert_eq!(wait_with_timeout(&mut child).code(), Some(0));
}

#[test]
fn batch_refuses_a_non_plain_request_before_the_last() {
    start("batch_refuses_a_non_plain_request_before_the_last");
    let Spawned {
        mut child,
        mut conn,
    } = spawn();
    conn.hello(Recovery::None, b"");
    let (base, _) = conn.reserve(1 << 20, false);
    let page = page_size();
    let marker = base + page;
    conn.write(marker, &[0; 16]);
    conn.load_code(base, STORE);
    let write = Request::Write {
        address: marker + 8,
        bytes: vec![5; 8],
    };
    for (requests, needle) in [
        (
            vec![
                write.clone(),
                Request::Lookup {
                    names: vec!["puts".into()],
                },
                call_request(base, [marker, 1, 0, 0, 0, 0]),
            ],
            "request 2 of 3 in the batch (Lookup)",
        ),
        (
            vec![
                write.clone(),
                call_request(base, [marker, 2, 0, 0, 0, 0]),
                write.clone(),
            ],
            "request 2 of 3 in the batch (Call)",
        ),
        (
            vec![
                Request::Reserve {
                    size: 1 << 20,
                    placement: PlacementCode::Any,
                    address: 0,
                    shared: false,
                },
                write.clone(),
            ],
            "request 1 of 2 in the batch (Reserve)",
        ),
        (
            vec![Request::Shutdown, write.clone()],
            "request 1 of 2 in the batch (Shutdown)",
        ),
    ] {
        expect_error(
            conn.request(&Request::Batch { requests }),
            ErrorCode::State,
            needle,
        );
        // Nothing in the batch ran: not the leading Write, not the Call.
        assert_eq!(conn.read(marker, 16), [0; 16], "after {needle}");
    }
    // Still serving.
    conn.load_code(base + 2 * page, ADD);
    assert_eq!(conn.call_value(base + 2 * page, [4, 5, 0, 0, 0, 0]), 9);
    conn.ok(&Request::Shutdown);
    conn.expect_eof();
    assert_eq!(wait_with_timeout(&mut child).code(), Some(0));
}

#[test]
fn malformed_batch_is_refused_and_closes() {
    start("malformed_batch_is_refused_and_closes");
    let nested = Request::Batch {
        requests: vec![Request::Shutdown],
    }
    .encode();
    let mut nested_batch = vec![19u8];
    nested_batch.extend_from_slice(&1u32.to_le_bytes());
    nested_batch.extend_from_slice(&nested);
    let empty_batch = [19u8, 0, 0, 0, 0];
    for body in [&nested_batch[..], &empty_batch[..]] {
        let Spawned {
            mut child,
            mut conn,
        } = spawn();
        conn.hello(Recovery::None, b"");
        let mut frame = (body.len() as u32).to_le_bytes().to_vec();
        frame.extend_from_slice(body);
        conn.send_raw(&frame);
        expect_error_then_exit(&mut conn, &mut child, ErrorCode::Malformed, "batch");
    }
}

#[test]
fn batched_call_checkpoints_after_the_plain_requests() {
    start("batched_call_checkpoints_after_the_plain_requests");
    // SAFETY: PR_SET_CHILD_SUBREAPER only sets a flag on this process; the
    // checkpoint that takes over becomes our child, so we can reap it.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(rc, 0, "PR_SET_CHILD_SUBREAPER");
    let Spawned {
        mut child,
        mut conn,
    } = spawn();
    conn.hello(Recovery::Snapshot, b"");
    let (base, _) = conn.reserve(1 << 20, false);
    let page = page_size();
    let data = base + page;
    // The crashing code and a data write travel with the call that crashes.
    conn.send(&Request::Batch {
        requests: vec![
            Request::Write {
                address: base,
                bytes: NULL_STORE.to_vec(),
            },
            Request::Protect {
                address: base,
                size: page,
                prot: Prot::ReadExecute,
            },
            Request::Write {
                address: data,
                bytes: vec![0x41; 8],
            },
            call_request(base, [0; 6]),
        ],
    });
    let saved = match conn.recv() {
        Reply::Checkpoint {
            pid,
            reason: CheckpointSkip::Taken,
        } => pid,
        other => panic!("expected Checkpoint {{ Taken }}, got {other:?}"),
    };
    assert!(matches!(
        conn.recv(),
        Reply::Crashed {
            signal: libc::SIGSEGV,
            ..
        }
    ));
    assert_eq!(conn.recv(), Reply::Resumed { pid: saved });
    assert_eq!(wait_with_timeout(&mut child).signal(), Some(libc::SIGSEGV));
    // The checkpoint was taken after the batch's plain requests ran.
    assert_eq!(conn.read(data, 8), [0x41; 8]);
    assert_eq!(conn.read(base, NULL_STORE.len() as u32), NULL_STORE);
    conn.ok(&Request::Shutdown);
    conn.expect_eof();
    let status = waitpid_with_timeout(saved);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "resumed executor status {status:#x}"
    );
}

/// `mov edi, fd; movabs rsi, text; mov edx, len; movabs rax, write;
/// sub rsp, 8; call rax; add rsp, 8`, then `tail` (e.g. `ret`).
fn write_code(write: u64, fd: u32, text: u64, len: u32, tail: &[u8]) -> Vec<u8> {
    let mut code = vec![0xbf];
    code.extend_from_slice(&fd.to_le_bytes());
    code.extend_from_slice(&[0x48, 0xbe]);
    code.extend_from_slice(&text.to_le_bytes());
    code.push(0xba);
    code.extend_from_slice(&len.to_le_bytes());
    code.extend_from_slice(&[0x48, 0xb8]);
    code.extend_from_slice(&write.to_le_bytes());
    code.extend_from_slice(&[0x48, 0x83, 0xec, 0x08, 0xff, 0xd0, 0x48, 0x83, 0xc4, 0x08]);
    code.extend_from_slice(tail);
    code
}

/// Calls `write(1, buffer, len)` `times` times: `push rbx; mov ebx, times;
/// loop: mov edi, 1; movabs rsi, buffer; mov edx, len; movabs rax, write;
/// call rax; dec ebx; jnz loop; pop rbx; ret`.
fn write_loop_code(write: u64, buffer: u64, len: u32, times: u32) -> Vec<u8> {
    let mut code = vec![0x53, 0xbb];
    code.extend_from_slice(&times.to_le_bytes());
    let top = code.len();
    code.extend_from_slice(&[0xbf, 1, 0, 0, 0, 0x48, 0xbe]);
    code.extend_from_slice(&buffer.to_le_bytes());
    code.push(0xba);
    code.extend_from_slice(&len.to_le_bytes());
    code.extend_from_slice(&[0x48, 0xb8]);
    code.extend_from_slice(&write.to_le_bytes());
    code.extend_from_slice(&[0xff, 0xd0, 0xff, 0xcb, 0x75]);
    let back = top as i64 - (code.len() as i64 + 1);
    code.push(back as i8 as u8);
    code.extend_from_slice(&[0x5b, 0xc3]);
    code
}

/// With `forward_output` the program's stdout and stderr come back as
/// `Output` frames, each before the reply of the call that wrote it (C
/// stdio flushed first), and before the crash record of a call that
/// wrote and then crashed; nothing reaches the executor's own stdout.
#[test]
fn forwarded_output_precedes_replies_and_crash_records() {
    start("forwarded_output_precedes_replies_and_crash_records");
    let path = temp_path("stdout");
    let Spawned {
        mut child,
        mut conn,
    } = spawn_with(Stdio::from(File::create(&path).unwrap()));
    conn.hello_forwarding(Recovery::None);
    let (base, _) = conn.reserve(1 << 20, false);
    let page = page_size();
    let (write, puts) = (conn.lookup_one("write"), conn.lookup_one("puts"));
    let text = base + 8 * page;
    conn.write(text, b"to stdout\n\0to stderr\n\0through puts\0");
    conn.load_code(base, &write_code(write, 1, text, 10, &[0xc3]));
    conn.load_code(base + page, &write_code(write, 2, text + 11, 10, &[0xc3]));
    conn.load_code(base + 2 * page, &puts_code(puts, text + 22));
    conn.load_code(base + 3 * page, &write_code(write, 1, text, 10, NULL_STORE));

    conn.call(base, [0; 6], 0);
    let (out, err, reply) = conn.output_then();
    assert_eq!((&out[..], &err[..]), (&b"to stdout\n"[..], &b""[..]));
    assert_eq!(reply, Reply::Done { value: 10 });
    conn.call(base + page, [0; 6], 0);
    let (out, err, reply) = conn.output_then();
    assert_eq!((&out[..], &err[..]), (&b""[..], &b"to stderr\n"[..]));
    assert_eq!(reply, Reply::Done { value: 10 });
    // A pipe makes stdout fully buffered: the flush before the reply
    // sends it.
    conn.call(base + 2 * page, [0; 6], 0);
    let (out, _, reply) = conn.output_then();
    assert_eq!(out, b"through puts\n");
    assert!(matches!(reply, Reply::Done { .. }), "{reply:?}");

    conn.call(base + 3 * page, [0; 6], 0);
    let (out, _, reply) = conn.output_then();
    assert_eq!(
        out, b"to stdout\n",
        "the output before the crash comes first"
    );
    assert!(
        matches!(
            reply,
            Reply::Crashed {
                signal: libc::SIGSEGV,
                ..
            }
        ),
        "{reply:?}"
    );
    conn.expect_eof();
    let status = wait_with_timeout(&mut child);
    assert_eq!(status.signal(), Some(libc::SIGSEGV), "{status:?}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "",
        "nothing is left on the executor's stdout"
    );
    let _ = std::fs::remove_file(&path);
}

/// A call that prints 4 MiB (far more than a pipe holds) while the
/// controller waits completes: the output is forwarded as it comes.
#[test]
fn forwarding_megabytes_does_not_block_the_call() {
    start("forwarding_megabytes_does_not_block_the_call");
    let Spawned {
        mut child,
        mut conn,
    } = spawn();
    conn.hello_forwarding(Recovery::None);
    let (base, _) = conn.reserve(1 << 20, false);
    let page = page_size();
    let write = conn.lookup_one("write");
    let buffer = base + page;
    let chunk = 64 << 10;
    conn.write(buffer, &vec![b'x'; chunk as usize]);
    conn.load_code(base, &write_loop_code(write, buffer, chunk, 64));
    conn.call(base, [0; 6], 0);
    let (out, err, reply) = conn.output_then();
    assert!(matches!(reply, Reply::Done { .. }), "{reply:?}");
    assert_eq!(out.len(), 4 << 20);
    assert!(out.iter().all(|&b| b == b'x') && err.is_empty());
    conn.ok(&Request::Shutdown);
    assert_eq!(wait_with_timeout(&mut child).code(), Some(0));
}

/// With the snapshot policy and forwarding a checkpoint is still taken
/// before each call, the output of a call that crashed comes before its
/// record, and the checkpoint that takes over forwards too.
#[test]
fn forwarding_with_snapshots_keeps_checkpoints_and_order() {
    start("forwarding_with_snapshots_keeps_checkpoints_and_order");
    // SAFETY: PR_SET_CHILD_SUBREAPER only sets a flag on this process; the
    // checkpoint that takes over becomes our child, so we can reap it.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(rc, 0, "PR_SET_CHILD_SUBREAPER");
    let Spawned {
        mut child,
        mut conn,
    } = spawn();
    conn.hello_forwarding(Recovery::Snapshot);
    let (base, _) = conn.reserve(1 << 20, false);
    let page = page_size();
    let (write, exit) = (conn.lookup_one("write"), conn.lookup_one("exit"));
    let text = base + 8 * page;
    conn.write(text, b"printed\n");
    conn.load_code(base, &write_code(write, 1, text, 8, &[0xc3]));
    conn.load_code(base + page, &write_code(write, 2, text, 8, NULL_STORE));
    conn.load_code(base + 2 * page, &exit_code(exit, 5));
    let checkpoint = |conn: &mut Conn| match conn.output_then() {
        (out, err, Reply::Checkpoint { pid, reason }) => {
            assert!(out.is_empty() && err.is_empty());
            assert_eq!(reason, CheckpointSkip::Taken, "the drainer was stopped");
            pid
        }
        other => panic!("expected Checkpoint, got {other:?}"),
    };
    conn.call(base, [0; 6], 0);
    checkpoint(&mut conn);
    assert_eq!(
        conn.output_then(),
        (b"printed\n".to_vec(), Vec::new(), Reply::Done { value: 8 })
    );
    conn.call(base + page, [0; 6], 0);
    let saved = checkpoint(&mut conn);
    let (_, err, reply) = conn.output_then();
    assert_eq!(err, b"printed\n");
    assert!(matches!(reply, Reply::Crashed { .. }), "{reply:?}");
    assert_eq!(conn.output_then().2, Reply::Resumed { pid: saved });
    let status = wait_with_timeout(&mut child);
    assert_eq!(status.signal(), Some(libc::SIGSEGV), "{status:?}");
    // The checkpoint forwards, and an exit's output precedes `Exited`.
    conn.call(base, [0; 6], 0);
    checkpoint(&mut conn);
    assert_eq!(
        conn.output_then(),
        (b"printed\n".to_vec(), Vec::new(), Reply::Done { value: 8 })
    );
    conn.call(base + 2 * page, [0; 6], 0);
    checkpoint(&mut conn);
    assert_eq!(conn.output_then().2, Reply::Exited { status: 5 });
    conn.expect_eof();
    let status = waitpid_with_timeout(saved);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 5,
        "resumed executor status {status:#x}"
    );
}
