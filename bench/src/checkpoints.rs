//! What the snapshot recovery policy costs: the extra time per call (the
//! executor forks a checkpoint before each call) and the time from a crash
//! to the next call answered by the checkpoint, with 10 MB, 200 MB and
//! 1 GB resident in the executor. Calls with and without snapshots are
//! alternated so that both see the same machine.

use std::time::{Duration, Instant};

use std::path::Path;

use anyhow::{Context, Result, ensure};
use serde_json::json;
use solder_linker::{Recovery, Session};

use crate::stats::Summary;
use crate::{Mode, compile};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Resident sizes in MB.
    #[arg(long, value_delimiter = ',', default_value = "10,200,1024")]
    resident: Vec<u64>,
    /// Calls timed per session and size.
    #[arg(long, default_value_t = 200)]
    calls: usize,
    /// Crashes (and recoveries) timed per size.
    #[arg(long, default_value_t = 20)]
    crashes: usize,
}

const SOURCE: &str = r#"#include <stdlib.h>
#include <string.h>
static char *block;
long fill(long mb) { block = malloc((size_t)mb << 20); memset(block, 1, (size_t)mb << 20); return mb; }
long nothing(void) { return 7; }
long crash(void) { *(volatile int *)0 = 0; return 0; }
"#;

fn call(session: &mut Session, name: &str, args: &[u64]) -> Result<u64> {
    let address = session
        .lookup(name)?
        .with_context(|| format!("{name} is not exported"))?;
    // SAFETY: the functions above take at most one integer argument and
    // run in the executor process.
    Ok(unsafe { session.call(address, args) }?)
}

pub fn run(args: &Args, work: &Path) -> Result<()> {
    let objects = compile::objects(
        &work.join("checkpoints"),
        &[("resident".to_string(), SOURCE.to_string())],
    )?;
    let mut rows = Vec::new();
    for &mb in &args.resident {
        let mut plain = Mode::Pipe.session(Recovery::None)?;
        let mut snapshot = Mode::Pipe.session(Recovery::Snapshot)?;
        for session in [&mut plain, &mut snapshot] {
            session.load(&objects)?;
            ensure!(call(session, "fill", &[mb])? == mb, "fill failed");
        }
        let (mut without, mut with) = (Vec::new(), Vec::new());
        for _ in 0..args.calls {
            let start = Instant::now();
            ensure!(call(&mut plain, "nothing", &[])? == 7, "nothing() != 7");
            without.push(start.elapsed());
            let start = Instant::now();
            ensure!(call(&mut snapshot, "nothing", &[])? == 7, "nothing() != 7");
            with.push(start.elapsed());
        }
        let mut recovery: Vec<Duration> = Vec::new();
        for _ in 0..args.crashes {
            let start = Instant::now();
            ensure!(
                call(&mut snapshot, "crash", &[]).is_err(),
                "crash() did not crash"
            );
            ensure!(
                call(&mut snapshot, "nothing", &[])? == 7,
                "the checkpoint did not answer"
            );
            recovery.push(start.elapsed());
        }
        let (without, with) = (Summary::of(&without), Summary::of(&with));
        rows.push(json!({
            "resident_mb": mb,
            "call": without,
            "call_with_snapshot": with,
            "snapshot_cost_us": with.median_us - without.median_us,
            "recovery": Summary::of(&recovery),
        }));
    }
    println!("{}", json!({ "bench": "checkpoints", "rows": rows }));
    Ok(())
}
