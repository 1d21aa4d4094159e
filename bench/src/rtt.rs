//! The transport's own round trip: a 16-byte message to a child process
//! over one pipe and back over another, the way the controller talks to
//! `solder-executor` (which is also a child on the other end of two
//! pipes). Measured twice: with both sides blocking in `read` (each message
//! wakes a sleeping process), and with both sides first spinning for up to
//! the budget solder's transport uses (`SOLDER_SPIN_US`), as the controller
//! and the executor do.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::json;
use solder_executor::transport::{spin_budget, spin_until_readable};

use crate::stats::Summary;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Round trips to time per variant (after 1,000 unmeasured ones).
    #[arg(long, default_value_t = 5000)]
    trips: usize,
}

#[derive(Debug, clap::Args)]
pub struct EchoArgs {
    /// Spin this many microseconds for each message before blocking.
    #[arg(long, default_value_t = 0)]
    spin_us: u64,
}

pub fn run(args: &Args) -> Result<()> {
    let spin = spin_budget();
    let blocking = round_trips(args.trips, Duration::ZERO)?;
    let spinning = round_trips(args.trips, spin)?;
    println!(
        "{}",
        json!({
            "bench": "rtt",
            "transport": "pipe",
            "round_trip": Summary::of(&blocking),
            "spin_budget_us": spin.as_micros() as u64,
            "spinning_round_trip": Summary::of(&spinning),
        })
    );
    Ok(())
}

/// Times `trips` round trips with a fresh echo child, both sides spinning
/// up to `spin` before each read.
fn round_trips(trips: usize, spin: Duration) -> Result<Vec<Duration>> {
    let program = std::env::current_exe().context("find solder-bench itself")?;
    let mut child = Command::new(program)
        .args(["echo", "--spin-us", &spin.as_micros().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("spawn the echo process")?;
    let mut to = child.stdin.take().expect("piped");
    let mut from = child.stdout.take().expect("piped");
    let mut samples = Vec::with_capacity(trips);
    let mut message = [0u8; 16];
    for trip in 0..trips + 1000 {
        message[..8].copy_from_slice(&(trip as u64).to_le_bytes());
        let start = Instant::now();
        to.write_all(&message)?;
        let mut reply = [0u8; 16];
        spin_until_readable(from.as_raw_fd(), spin);
        from.read_exact(&mut reply)?;
        let elapsed = start.elapsed();
        ensure!(reply == message, "the echo process answered something else");
        if trip >= 1000 {
            samples.push(elapsed);
        }
    }
    drop(to);
    child.wait()?;
    Ok(samples)
}

/// Echoes 16-byte messages from stdin to stdout until end of input.
pub fn echo(args: &EchoArgs) -> Result<()> {
    let spin = Duration::from_micros(args.spin_us);
    let mut input = std::io::stdin().lock();
    let mut output = std::io::stdout().lock();
    let mut message = [0u8; 16];
    loop {
        spin_until_readable(0, spin);
        if input.read_exact(&mut message).is_err() {
            return Ok(());
        }
        output.write_all(&message)?;
        output.flush()?;
    }
}
