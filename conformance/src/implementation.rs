//! The runner's side of the protocol: which implementation runs the
//! trials (`SOLDER_CONFORMANCE_IMPL`: `solder`, the default; `native`;
//! `llvm-orc`; or a command line), starting it for a trial with its two
//! descriptors and captured stdout and stderr, and exchanging lines with a
//! deadline.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use solder_executor::sys;

use crate::protocol::{Hello, PROTOCOL_VERSION, REPLIES_FD_ENV, REQUESTS_FD_ENV, Reply, Request};

/// Names the implementation the harness runs.
pub const IMPL_ENV: &str = "SOLDER_CONFORMANCE_IMPL";
/// Set when the harness binary is started as one of the implementations
/// it ships (`solder`, `native`).
pub const SERVE_ENV: &str = "SOLDER_CONFORMANCE_SERVE";
/// Where the `llvm-orc` adapter is (`cargo xtask conformance` builds it).
pub const LLVM_ORC_ENV: &str = "SOLDER_CONFORMANCE_LLVM_ORC";
/// The directory a command's relative paths are relative to (where
/// `cargo xtask conformance --impl CMD` was run); default: the harness's.
pub const IMPL_CWD_ENV: &str = "SOLDER_CONFORMANCE_IMPL_CWD";

/// How long an implementation may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(20);

/// An implementation: its name and how to start it.
#[derive(Debug, Clone)]
pub struct ImplementationSpec {
    /// `solder`, `native`, `llvm-orc`, or the command line as given.
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub env: Vec<(String, String)>,
    /// Where it starts.
    pub cwd: Option<PathBuf>,
}

impl ImplementationSpec {
    /// The implementation `SOLDER_CONFORMANCE_IMPL` names (default
    /// `solder`): the built-in ones are this harness binary serving.
    pub fn from_env() -> Result<ImplementationSpec, String> {
        let name = std::env::var(IMPL_ENV).unwrap_or_else(|_| "solder".into());
        Self::named(&name)
    }

    /// The implementation called `name`.
    pub fn named(name: &str) -> Result<ImplementationSpec, String> {
        let harness =
            || std::env::current_exe().map_err(|e| format!("cannot find the harness binary: {e}"));
        match name {
            "solder" | "native" => Ok(ImplementationSpec {
                name: name.into(),
                program: harness()?,
                args: Vec::new(),
                env: vec![(SERVE_ENV.into(), name.into())],
                cwd: None,
            }),
            "llvm-orc" => {
                let program = std::env::var_os(LLVM_ORC_ENV).map(PathBuf::from).ok_or(
                    "llvm-orc: the adapter is not built (`cargo xtask conformance --impl \
                     llvm-orc` builds it when llvm-config-19 is installed, and sets \
                     SOLDER_CONFORMANCE_LLVM_ORC)",
                )?;
                Ok(ImplementationSpec {
                    name: name.into(),
                    program,
                    args: Vec::new(),
                    env: Vec::new(),
                    cwd: None,
                })
            }
            command => {
                let mut words = command.split_whitespace();
                let program = words.next().ok_or("an empty implementation command")?;
                Ok(ImplementationSpec {
                    name: command.into(),
                    program: program.into(),
                    args: words.map(OsString::from).collect(),
                    env: Vec::new(),
                    cwd: std::env::var_os(IMPL_CWD_ENV).map(PathBuf::from),
                })
            }
        }
    }

    /// Whether this is the default implementation (trial names and rerun
    /// commands need no `SOLDER_CONFORMANCE_IMPL`).
    pub fn is_default(&self) -> bool {
        self.name == "solder"
    }

    /// Starts the implementation with stdout and stderr going to the given
    /// files, and reads its hello.
    pub fn start(&self, stdout: Stdio, stderr: Stdio) -> Result<Running, String> {
        let (requests_read, requests_write) =
            std::io::pipe().map_err(|e| format!("cannot make a pipe: {e}"))?;
        let (replies_read, replies_write) =
            std::io::pipe().map_err(|e| format!("cannot make a pipe: {e}"))?;
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env(REQUESTS_FD_ENV, raw(&requests_read).to_string())
            .env(REPLIES_FD_ENV, raw(&replies_write).to_string())
            .env_remove("SOLDER_STRICT")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        sys::spawn::inherit_descriptors(
            &mut command,
            &[requests_read.as_fd(), replies_write.as_fd()],
        );
        if let Some(cwd) = &self.cwd {
            command.current_dir(cwd);
        }
        sys::spawn::child_dies_with_parent(&mut command);
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.program.display()))?;
        // Only the implementation holds these ends now: its exit is EOF.
        drop(requests_read);
        drop(replies_write);
        let (lines, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(replies_read).lines() {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let mut running = Running {
            child,
            requests: Some(requests_write),
            replies: receiver,
            hello: None,
        };
        let hello = running.read_line(HELLO_TIMEOUT)?;
        let hello: Hello = serde_json::from_str(&hello).map_err(|e| {
            format!(
                "{}: a hello that is not the protocol's: {e}: {hello}",
                self.name
            )
        })?;
        if hello.protocol != PROTOCOL_VERSION {
            return Err(format!(
                "{} speaks protocol {}, this runner {PROTOCOL_VERSION}",
                self.name, hello.protocol
            ));
        }
        running.hello = Some(hello);
        Ok(running)
    }

    /// The implementation's hello, from a run of its own.
    pub fn hello(&self) -> Result<Hello, String> {
        let mut running = self.start(Stdio::null(), Stdio::inherit())?;
        let hello = running.hello.take().expect("start read it");
        running.finish(Duration::from_secs(5));
        Ok(hello)
    }
}

fn raw(fd: &impl AsFd) -> i32 {
    use std::os::fd::AsRawFd;
    fd.as_fd().as_raw_fd()
}

/// A started implementation.
pub struct Running {
    child: Child,
    requests: Option<std::io::PipeWriter>,
    replies: Receiver<std::io::Result<String>>,
    pub hello: Option<Hello>,
}

/// How an exchange ended.
#[derive(Debug)]
pub enum Answer {
    Reply(Reply),
    /// The implementation ended (crashed, exited) without answering.
    Ended(std::process::ExitStatus),
    /// No answer within the deadline: the implementation was killed.
    TimedOut,
}

impl Running {
    fn read_line(&mut self, timeout: Duration) -> Result<String, String> {
        match self.replies.recv_timeout(timeout) {
            Ok(Ok(line)) => Ok(line),
            Ok(Err(err)) => Err(format!("cannot read a reply: {err}")),
            Err(RecvTimeoutError::Timeout) => {
                self.kill();
                Err(format!("no answer within {} ms", timeout.as_millis()))
            }
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.wait().map_err(|e| e.to_string())?;
                Err(format!(
                    "the implementation ended ({status}) without answering"
                ))
            }
        }
    }

    /// Sends `request` and waits up to `timeout` for its reply.
    pub fn exchange(&mut self, request: &Request, timeout: Duration) -> Result<Answer, String> {
        let mut line = serde_json::to_string(request).map_err(|e| e.to_string())?;
        line.push('\n');
        if let Some(requests) = &mut self.requests {
            // A write to an implementation that died fails: its status is
            // the answer, read below.
            let _ = requests.write_all(line.as_bytes());
        }
        match self.replies.recv_timeout(timeout) {
            Ok(Ok(line)) => serde_json::from_str(&line)
                .map(Answer::Reply)
                .map_err(|e| format!("a reply that is not the protocol's: {e}: {line}")),
            Ok(Err(err)) => Err(format!("cannot read a reply: {err}")),
            Err(RecvTimeoutError::Timeout) => {
                self.kill();
                Ok(Answer::TimedOut)
            }
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.wait().map_err(|e| e.to_string())?;
                Ok(Answer::Ended(status))
            }
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Closes the requests and waits up to `grace` for the implementation
    /// to end (then kills it); its status.
    pub fn finish(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        self.requests = None;
        let deadline = std::time::Instant::now() + grace;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() > deadline {
                self.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}

/// The size of the file at `path` (what the implementation has written
/// to its captured stdout so far).
pub fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    const RERUN: &str = "rerun: cargo test -p solder-conformance --lib implementation::tests";

    /// An implementation that is the bash script `body` (its replies
    /// descriptor is `$OUT`).
    fn script(name: &str, body: &str) -> ImplementationSpec {
        let dir = std::env::temp_dir().join(format!(
            "solder-conformance-implementation-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.sh"));
        std::fs::write(
            &path,
            format!("OUT=${REPLIES_FD_ENV}\nIN=${REQUESTS_FD_ENV}\n{body}\n"),
        )
        .unwrap();
        ImplementationSpec::named(&format!("bash {}", path.display())).unwrap()
    }

    const HELLO: &str = r#"{"protocol":1,"name":"t","version":"0","formats":["elf"],"modes":["inproc"],"capabilities":[]}"#;

    /// What an implementation says is untrusted: a hello or reply that is
    /// not the protocol's, another protocol version, an implementation
    /// that dies before answering: each is an error naming what was
    /// wrong, never a panic or a hang.
    #[test]
    fn broken_implementations_are_errors_not_panics() {
        let cases = [
            (
                "garbage-hello",
                "echo 'not json' >&$OUT".to_string(),
                "not the protocol's",
            ),
            (
                "old-protocol",
                format!("echo '{}' >&$OUT", HELLO.replace(":1,", ":0,")),
                "speaks protocol 0",
            ),
            ("silent-exit", "exit 3".to_string(), "without answering"),
        ];
        for (name, body, wanted) in cases {
            let err = match script(name, &body).start(Stdio::null(), Stdio::null()) {
                Ok(_) => panic!("{name}: started\n{RERUN}"),
                Err(err) => err,
            };
            assert!(err.contains(wanted), "{name}: {err}\n{RERUN}");
        }
        let garbage_reply = script(
            "garbage-reply",
            &format!(
                "echo '{HELLO}' >&$OUT\nread -r line <&$IN\necho '{{\"result\":7}}' >&$OUT\nread -r line <&$IN"
            ),
        );
        let mut running = garbage_reply.start(Stdio::null(), Stdio::null()).unwrap();
        let err = running
            .exchange(&Request::End, Duration::from_secs(10))
            .unwrap_err();
        assert!(err.contains("not the protocol's"), "{err}\n{RERUN}");
        let dies = script(
            "dies",
            &format!("echo '{HELLO}' >&$OUT\nread -r line <&$IN\nkill -SEGV $$"),
        );
        let mut running = dies.start(Stdio::null(), Stdio::null()).unwrap();
        match running.exchange(&Request::End, Duration::from_secs(10)) {
            Ok(Answer::Ended(status)) => {
                use std::os::unix::process::ExitStatusExt;
                assert_eq!(status.signal(), Some(11), "{RERUN}");
            }
            other => panic!("{other:?}\n{RERUN}"),
        }
    }
}
