//! `solder-executor`: the process that runs JIT'd code for a Solder
//! controller, speaking the protocol of `executor/PROTOCOL.md` over
//! inherited descriptors (`--fds`) or TCP (`--listen`).
//!
//! Arguments are parsed by hand to keep the binary small. Exit statuses:
//! 0 after a clean end of the conversation, 1 when the transport cannot be
//! set up (bind failure, parent gone), 2 for bad arguments or a refused
//! configuration, 3 after a protocol error; otherwise whatever the JIT'd
//! program's `exit` or fatal signal made it.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

use solder_executor::server::{self, exit_now};
use solder_executor::sys;
use solder_executor::transport::{self, ListenOptions, TransportError, diag};

const USAGE: &str = "\
usage: solder-executor --fds IN,OUT
       solder-executor --listen ADDR [--token-file PATH] [--ready-file PATH] [--once]

Runs JIT'd code for a Solder controller (protocol version 3).

  --fds IN,OUT        serve one controller over open descriptors: requests
                      are read from IN, replies written to OUT (e.g. pipes
                      from the controller that spawned this process; the
                      executor dies with its parent)
  --listen ADDR       serve controllers over TCP on ADDR (IP:PORT, or a bare
                      PORT for 127.0.0.1:PORT), one forked process per
                      connection
  --token-file PATH   the token controllers must present: the first line of
                      PATH without its line end (default: the first line
                      of $SOLDER_EXECUTOR_TOKEN). Required when ADDR is not
                      a loopback address
  --ready-file PATH   once listening, write the bound address to PATH
  --once              serve the first connection only, then exit
  --help              print this help
  --version           print the version and protocol version
";

/// What the command line asked for.
enum Mode {
    Help,
    Version,
    Fds(i32, i32),
    Listen {
        addr: SocketAddr,
        token_file: Option<PathBuf>,
        ready_file: Option<PathBuf>,
        once: bool,
    },
}

fn parse(args: &[OsString]) -> Result<Mode, String> {
    let mut fds = None;
    let mut listen = None;
    let mut token_file = None;
    let mut ready_file = None;
    let mut once = false;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let arg = arg
            .to_str()
            .ok_or_else(|| format!("argument {arg:?} is not UTF-8"))?;
        // `--name=value` or `--name value`.
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name, Some(value.to_string())),
            _ => (arg, None),
        };
        let mut value = |what: &str| -> Result<String, String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => args
                    .next()
                    .and_then(|v| v.to_str())
                    .map(str::to_string)
                    .ok_or_else(|| format!("{name} needs {what}")),
            }
        };
        match name {
            "--help" | "-h" => return Ok(Mode::Help),
            "--version" | "-V" => return Ok(Mode::Version),
            "--fds" => {
                let v = value("IN,OUT")?;
                let parsed = v.split_once(',').and_then(|(i, o)| {
                    Some((i.trim().parse::<i32>().ok()?, o.trim().parse::<i32>().ok()?))
                });
                match parsed {
                    Some((i, o)) if i >= 0 && o >= 0 => fds = Some((i, o)),
                    _ => {
                        return Err(format!(
                            "--fds expects IN,OUT descriptor numbers, not `{v}`"
                        ));
                    }
                }
            }
            "--listen" => {
                let v = value("an address such as 127.0.0.1:0")?;
                // A bare port listens on loopback: reaching further is a
                // deliberate choice (and then needs a token).
                let parsed = match v.parse::<u16>() {
                    Ok(port) => Ok(SocketAddr::from(([127, 0, 0, 1], port))),
                    Err(_) => v.parse::<SocketAddr>(),
                };
                listen = Some(
                    parsed.map_err(|_| format!("--listen expects PORT or IP:PORT, not `{v}`"))?,
                );
            }
            "--token-file" => token_file = Some(PathBuf::from(value("a path")?)),
            "--ready-file" => ready_file = Some(PathBuf::from(value("a path")?)),
            "--once" if inline.is_none() => once = true,
            _ => return Err(format!("unknown argument `{arg}`")),
        }
    }
    match (fds, listen) {
        (Some(_), Some(_)) => Err("--fds and --listen exclude each other".into()),
        (Some((input, output)), None) => {
            if token_file.is_some() || ready_file.is_some() || once {
                return Err("--token-file, --ready-file and --once need --listen".into());
            }
            Ok(Mode::Fds(input, output))
        }
        (None, Some(addr)) => Ok(Mode::Listen {
            addr,
            token_file,
            ready_file,
            once,
        }),
        (None, None) => Err("either --fds IN,OUT or --listen ADDR is required".into()),
    }
}

fn fail(status: i32, message: &str) -> ! {
    diag(message);
    exit_now(status)
}

fn main() {
    // Read first, so a parent that dies during startup is noticed.
    let parent = sys::process::parent_id();
    // JIT'd code gets the SIGPIPE behaviour of a native program (the Rust
    // runtime ignores it). The executor's own writes block SIGPIPE instead.
    let _ = sys::io::restore_default_sigpipe();
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let mode = parse(&args).unwrap_or_else(|message| {
        fail(
            2,
            &format!("{message}\n(run `solder-executor --help` for usage)"),
        )
    });
    let status = match mode {
        Mode::Help => {
            print!("{USAGE}");
            0
        }
        Mode::Version => {
            println!(
                "solder-executor {} (protocol {})",
                env!("CARGO_PKG_VERSION"),
                solder_executor::protocol::VERSION
            );
            0
        }
        Mode::Fds(input, output) => {
            let channel = transport::pipe_channel(input, output)
                .and_then(|channel| transport::die_with_parent(parent).map(|()| channel))
                .unwrap_or_else(|err| {
                    let status = if matches!(err, TransportError::BadFd(_)) {
                        2
                    } else {
                        1
                    };
                    fail(status, &err.to_string())
                });
            server::serve(channel, &[])
        }
        Mode::Listen {
            addr,
            token_file,
            ready_file,
            once,
        } => {
            let token = transport::load_token(token_file.as_deref())
                .unwrap_or_else(|err| fail(2, &err.to_string()));
            let options = ListenOptions {
                addr,
                token,
                ready_file,
                once,
            };
            let token = options.token.clone().unwrap_or_default();
            match transport::listen(&options, |channel| server::serve(channel, &token)) {
                Ok(status) => status,
                Err(err @ TransportError::TokenRequired(_)) => fail(2, &err.to_string()),
                Err(err) => fail(1, &err.to_string()),
            }
        }
    };
    exit_now(status)
}
