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
use std::time::Duration;

use solder_executor::listener::{self, ListenOptions};
use solder_executor::server::{self, exit_now};
use solder_executor::sys;
use solder_executor::transport::{self, TransportError, diag};

const USAGE: &str = "\
usage: solder-executor --fds IN,OUT
       solder-executor --listen ADDR [--token-file PATH] [--ready-file PATH] [--once]
                       [--max-connections N] [--handshake-timeout SECS]
                       [--peer-timeout SECS]

Runs JIT'd code for a Solder controller (protocol version 6).

  --fds IN,OUT        serve one controller over open descriptors: requests
                      are read from IN, replies written to OUT (e.g. pipes
                      from the controller that spawned this process; the
                      executor dies with its parent)
  --listen ADDR       serve controllers over TCP on ADDR (IP:PORT, or a bare
                      PORT for 127.0.0.1:PORT): the listener checks each
                      connection's Hello (and token), then forks a process
                      to serve it
  --token-file PATH   the token controllers must present: the first line of
                      PATH without its line end (default: the first line
                      of $SOLDER_EXECUTOR_TOKEN). Required when ADDR is not
                      a loopback address
  --ready-file PATH   once listening, write the bound address to PATH
  --once              serve the first connection that passes the handshake
                      in this process, then exit
  --max-connections N serve at most N connections at once, and let at most
                      N wait for their Hello (default 16)
  --handshake-timeout SECS
                      close a connection that has not sent its Hello within
                      SECS seconds (default 10)
  --peer-timeout SECS end a session whose controller has been silent (no
                      answer to TCP keepalive probes: powered off, cut off)
                      for about SECS seconds, at least 2 (default 30)
  --help              print this help
  --version           print the version and protocol version
";

/// What the command line asked for.
enum Mode {
    Help,
    Version,
    Fds(i32, i32),
    Listen {
        /// Everything but the token, which is read after parsing.
        options: ListenOptions,
        token_file: Option<PathBuf>,
    },
}

/// `--listen`'s value: a bare port listens on loopback (reaching further is
/// a deliberate choice, and then needs a token).
fn parse_address(v: &str) -> Result<SocketAddr, String> {
    let parsed = match v.parse::<u16>() {
        Ok(port) => Ok(SocketAddr::from(([127, 0, 0, 1], port))),
        Err(_) => v.parse::<SocketAddr>(),
    };
    parsed.map_err(|_| format!("--listen expects PORT or IP:PORT, not `{v}`"))
}

/// A positive whole number no greater than `max`, for option `name`.
fn parse_count(name: &str, v: &str, max: u64) -> Result<u64, String> {
    match v.parse::<u64>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(format!(
            "{name} expects a whole number from 1 to {max}, not `{v}`"
        )),
    }
}

fn parse(args: &[OsString]) -> Result<Mode, String> {
    let mut fds = None;
    let mut listen = ListenOptions::new(SocketAddr::from(([127, 0, 0, 1], 0)));
    let mut listening = false;
    let mut token_file = None;
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
                listen.addr = parse_address(&value("an address such as 127.0.0.1:0")?)?;
                listening = true;
            }
            "--token-file" => token_file = Some(PathBuf::from(value("a path")?)),
            "--ready-file" => listen.ready_file = Some(PathBuf::from(value("a path")?)),
            "--once" if inline.is_none() => listen.once = true,
            "--max-connections" => {
                listen.max_connections = parse_count(name, &value("a number")?, 4096)? as usize;
            }
            "--handshake-timeout" => {
                let secs = parse_count(name, &value("a number of seconds")?, 3600)?;
                listen.handshake_timeout = Duration::from_secs(secs);
            }
            "--peer-timeout" => {
                let secs = parse_count(name, &value("a number of seconds")?, 86_400)?;
                listen.peer_timeout = Duration::from_secs(secs);
            }
            _ => return Err(format!("unknown argument `{arg}`")),
        }
    }
    let listen_only =
        token_file.is_some() || listen.ready_file.is_some() || listen.once || tuned(&listen);
    match (fds, listening) {
        (Some(_), true) => Err("--fds and --listen exclude each other".into()),
        (Some(_), false) if listen_only => Err(
            "--token-file, --ready-file, --once, --max-connections, --handshake-timeout and \
             --peer-timeout need --listen"
                .into(),
        ),
        (Some((input, output)), false) => Ok(Mode::Fds(input, output)),
        (None, true) => Ok(Mode::Listen {
            options: listen,
            token_file,
        }),
        (None, false) => Err("either --fds IN,OUT or --listen ADDR is required".into()),
    }
}

/// Whether a listener's limit (connections, deadlines) was changed.
fn tuned(listen: &ListenOptions) -> bool {
    let defaults = ListenOptions::new(listen.addr);
    listen.max_connections != defaults.max_connections
        || listen.handshake_timeout != defaults.handshake_timeout
        || listen.peer_timeout != defaults.peer_timeout
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
            mut options,
            token_file,
        } => {
            options.token = transport::load_token(token_file.as_deref())
                .unwrap_or_else(|err| fail(2, &err.to_string()));
            match listener::listen(&options) {
                Ok(status) => status,
                Err(err @ TransportError::TokenRequired(_)) => fail(2, &err.to_string()),
                Err(err) => fail(1, &err.to_string()),
            }
        }
    };
    exit_now(status)
}
