//! Hot-swap churn: one module replaced thousands of times while another
//! module keeps calling into it. The replaced module has code, 64 KiB of
//! initialized data, an initializer, an `atexit` handler that frees what the
//! initializer allocated, and `.eh_frame`, so every per-module resource
//! (slab pages, indirection slots, handler lists, frame registrations, heap)
//! is exercised. Reserved and committed memory are sampled as it goes; they
//! must stay flat. Each replacement is checked through the caller.

use std::time::{Duration, Instant};

use std::path::Path;

use anyhow::{Context, Result, ensure};
use serde_json::json;
use solder_linker::{ModuleId, Recovery, Session};

use crate::procfs::{Memory, memory};
use crate::stats::Summary;
use crate::{Mode, compile};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, value_enum)]
    mode: Mode,
    #[arg(long, default_value_t = 10_000)]
    replacements: usize,
    /// Memory is sampled after every this many replacements.
    #[arg(long, default_value_t = 1000)]
    every: usize,
}

fn swapped(version: u32) -> String {
    format!(
        r#"#include <stdlib.h>
static char table[65536] = {{ {version} }};
static char *scratch;
static void release(void) {{ free(scratch); scratch = 0; }}
__attribute__((constructor)) static void setup(void) {{
    scratch = malloc(4096);
    scratch[0] = (char)table[0];
    atexit(release);
}}
long version(void) {{ return 1000 * (long)table[0] + scratch[0]; }}
"#
    )
}

const CALLER: &str = "long version(void);\nlong ask(void) { return version() + 1; }\n";

#[derive(serde::Serialize)]
struct Sample {
    replacements: usize,
    slab_used_kib: u64,
    /// The process running the code (this one in-process).
    executor: Memory,
    /// This process (the controller).
    controller: Memory,
}

fn sample(session: &Session, replacements: usize) -> Result<Sample> {
    Ok(Sample {
        replacements,
        slab_used_kib: session.slab_used() / 1024,
        executor: memory(session.executor_pid())?,
        controller: memory(None)?,
    })
}

fn check(session: &mut Session, version: u32) -> Result<()> {
    let ask = session.lookup("ask")?.context("ask is not exported")?;
    // SAFETY: `ask` takes no arguments and returns an integer.
    let value = unsafe { session.call(ask, &[]) }?;
    let expected = 1001 * u64::from(version) + 1;
    ensure!(
        value == expected,
        "ask() returned {value}, expected {expected}"
    );
    Ok(())
}

pub fn run(args: &Args, work: &Path) -> Result<()> {
    let sources = vec![
        ("swapped_1".to_string(), swapped(1)),
        ("swapped_2".to_string(), swapped(2)),
        ("caller".to_string(), CALLER.to_string()),
    ];
    let objects = compile::objects(&work.join("churn"), &sources)?;
    let mut session = args.mode.session(Recovery::None)?;
    let swapped_id: ModuleId = session.load(std::slice::from_ref(&objects[0]))?;
    session.load(std::slice::from_ref(&objects[2]))?;
    check(&mut session, 1)?;
    // Filled in advance, so that the benchmark's own samples do not show
    // up as growth of this process.
    let mut times = vec![Duration::ZERO; args.replacements];
    let mut samples = Vec::with_capacity(args.replacements / args.every.max(1) + 1);
    samples.push(sample(&session, 0)?);
    for n in 1..=args.replacements {
        let version = if n % 2 == 1 { 2 } else { 1 };
        let start = Instant::now();
        session
            .replace(
                swapped_id,
                std::slice::from_ref(&objects[version as usize - 1]),
            )
            .with_context(|| format!("replacement {n}"))?;
        times[n - 1] = start.elapsed();
        check(&mut session, version)?;
        if n % args.every == 0 {
            samples.push(sample(&session, n)?);
        }
    }
    session.end();
    println!(
        "{}",
        json!({
            "bench": "churn",
            "mode": args.mode,
            "replacements": args.replacements,
            "replace": Summary::of(&times),
            "samples": samples,
        })
    );
    Ok(())
}
