//! The implementation side of the protocol ([`crate::protocol`]), shared by
//! the implementations this crate ships (`solder`, `native`): the hello
//! line, then one reply per request, each after the program's stdout and
//! stderr are flushed (the runner attributes output to steps by where the
//! captured stdout was when each request was sent and answered).

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::FromRawFd;

use solder_executor::sys;

use crate::protocol::{Hello, REPLIES_FD_ENV, REQUESTS_FD_ENV, Reply, Request};

/// An implementation under test, as this crate writes them.
pub trait Implementation {
    /// Who it is and what it does.
    fn hello(&self) -> Hello;
    /// Handles one request. `End` may also exit the process (status 0).
    fn handle(&mut self, request: Request) -> Reply;
}

/// Why serving stopped short.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0} is not set to a descriptor number: not started by the conformance runner")]
    NoDescriptor(&'static str),
    #[error("the runner's channel: {0}")]
    Io(#[from] std::io::Error),
    #[error("a request that is not JSON of the protocol: {0}")]
    Request(#[from] serde_json::Error),
}

/// The descriptor named by environment variable `name`.
fn descriptor(name: &'static str) -> Result<File, ServeError> {
    let fd: i32 = std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&fd| fd > 2)
        .ok_or(ServeError::NoDescriptor(name))?;
    // SAFETY: the runner made `fd` (one end of a pipe) inheritable for this
    // process alone and named it in the environment; nothing else here
    // opens or owns it.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Serves `implementation` on the descriptors the runner gave: hello,
/// then requests until the runner closes its end.
pub fn serve(implementation: &mut dyn Implementation) -> Result<(), ServeError> {
    let requests = BufReader::new(descriptor(REQUESTS_FD_ENV)?);
    let mut replies = descriptor(REPLIES_FD_ENV)?;
    write_line(
        &mut replies,
        &serde_json::to_string(&implementation.hello())?,
    )?;
    for line in requests.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let reply = match serde_json::from_str::<Request>(&line) {
            Ok(request) => implementation.handle(request),
            Err(err) => Reply::Failed {
                message: format!("not a request of protocol version 1: {err}"),
            },
        };
        flush_output();
        write_line(&mut replies, &serde_json::to_string(&reply)?)?;
    }
    Ok(())
}

/// C stdio (which JIT'd code writes through) and Rust's stdout.
pub fn flush_output() {
    sys::exit::flush_c_stdio();
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
}

/// One line, in one write: a reply is never seen half-written.
fn write_line(out: &mut File, line: &str) -> std::io::Result<()> {
    let mut bytes = line.as_bytes().to_vec();
    bytes.push(b'\n');
    out.write_all(&bytes)
}
