//! `solder-bench`: Solder's session-level benchmarks, one subcommand per
//! measure. `cargo xtask bench` builds this in release mode, runs each
//! subcommand several times alternated with its baseline, and renders the
//! table in `docs/benchmarks.md`; each subcommand prints one JSON object so
//! that it can also be run by hand.
//!
//! - `incremental`: 1,000 small modules, each calling the previous one,
//!   loaded and called one at a time (per-statement latency).
//! - `rtt`: the transport's own round trip (a pipe ping-pong between two
//!   processes), the floor for any out-of-process statement.
//! - `checkpoints`: the snapshot policy's cost per call and its recovery
//!   time after a crash, at several resident sizes.
//! - `churn`: thousands of hot swaps of one module; memory must stay flat.
//! - `tls-carriers`: module TLS owned by the dynamic loader: what loading a
//!   carrier costs, and how much static TLS there is for them.

mod checkpoints;
mod churn;
mod compile;
mod incremental;
mod procfs;
mod rtt;
mod stats;
mod tls_carriers;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};
use solder_linker::{ExecutorChoice, Recovery, Session, SessionConfig, Transport};

#[derive(Debug, Parser)]
#[command(name = "solder-bench")]
struct Cli {
    /// Directory for generated sources and objects (reused across runs).
    #[arg(long, global = true, default_value_os_t = std::env::temp_dir().join("solder-bench"))]
    work: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Per-statement latency of loading and calling small modules one at a time.
    Incremental(incremental::Args),
    /// Round trip of a small message over a pipe between two processes.
    Rtt(rtt::Args),
    /// Echo side of `rtt` (spawned by it).
    #[command(hide = true)]
    Echo(rtt::EchoArgs),
    /// Snapshot cost per call and crash recovery time at several resident sizes.
    Checkpoints(checkpoints::Args),
    /// Memory of a session across many replacements of one module.
    Churn(churn::Args),
    /// Loading TLS carriers: time per load and the static TLS there is.
    TlsCarriers(tls_carriers::Args),
}

/// Where a benchmark's session runs its code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Inproc,
    Pipe,
    Shm,
}

impl Mode {
    pub fn session(self, recovery: Recovery) -> Result<Session> {
        let executor = match self {
            Mode::Inproc => ExecutorChoice::InProcess,
            Mode::Pipe | Mode::Shm => ExecutorChoice::Remote {
                transport: Transport::Pipe { program: None },
                shared_memory: self == Mode::Shm,
            },
        };
        let session = Session::new(SessionConfig {
            executor,
            recovery,
            ..SessionConfig::default()
        })
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot start a {self:?} session: {e} (solder-executor is found next to solder-bench: cargo build --release -p solder-executor)"
            )
        })?;
        Ok(session)
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Incremental(args) => incremental::run(&args, &cli.work),
        Command::Rtt(args) => rtt::run(&args),
        Command::Echo(args) => rtt::echo(&args),
        Command::Checkpoints(args) => checkpoints::run(&args, &cli.work),
        Command::Churn(args) => churn::run(&args, &cli.work),
        Command::TlsCarriers(args) => tls_carriers::run(&args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("solder-bench: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
