//! The transport's own round trip: a 16-byte message to a child process
//! over one pipe and back over another, the way the controller talks to
//! `solder-executor` (which is also a child on the other end of two
//! pipes). No out-of-process statement can be faster than one of these.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use serde_json::json;

use crate::stats::Summary;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Round trips to time (after 1,000 unmeasured ones).
    #[arg(long, default_value_t = 5000)]
    trips: usize,
}

pub fn run(args: &Args) -> Result<()> {
    let program = std::env::current_exe().context("find solder-bench itself")?;
    let mut child = Command::new(program)
        .arg("echo")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("spawn the echo process")?;
    let mut to = child.stdin.take().expect("piped");
    let mut from = child.stdout.take().expect("piped");
    let mut samples = Vec::with_capacity(args.trips);
    let mut message = [0u8; 16];
    for trip in 0..args.trips + 1000 {
        message[..8].copy_from_slice(&(trip as u64).to_le_bytes());
        let start = Instant::now();
        to.write_all(&message)?;
        let mut reply = [0u8; 16];
        from.read_exact(&mut reply)?;
        let elapsed = start.elapsed();
        ensure!(reply == message, "the echo process answered something else");
        if trip >= 1000 {
            samples.push(elapsed);
        }
    }
    drop(to);
    child.wait()?;
    println!(
        "{}",
        json!({ "bench": "rtt", "transport": "pipe", "round_trip": Summary::of(&samples) })
    );
    Ok(())
}

/// Echoes 16-byte messages from stdin to stdout until end of input.
pub fn echo() -> Result<()> {
    let mut input = std::io::stdin().lock();
    let mut output = std::io::stdout().lock();
    let mut message = [0u8; 16];
    while input.read_exact(&mut message).is_ok() {
        output.write_all(&message)?;
        output.flush()?;
    }
    Ok(())
}
