//! Incremental loading: module `i` defines `long f_i(long)` calling
//! `f_{i-1}` (through the session's indirection stub, as every
//! cross-module call does). A statement is what a REPL does per input:
//! load the new module, look its function up and call it. Each result is
//! checked (`f_i(0) == i + 1`), so a wrong link cannot pass as fast.

use std::time::{Duration, Instant};

use std::path::Path;

use anyhow::{Context, Result, ensure};
use serde_json::json;
use solder_linker::Recovery;

use crate::stats::Summary;
use crate::{Mode, compile};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, value_enum)]
    mode: Mode,
    /// Number of modules (statements).
    #[arg(long, default_value_t = 1000)]
    modules: usize,
    /// Also write every statement's times as CSV (index, load, statement,
    /// call alone; microseconds).
    #[arg(long)]
    samples: Option<std::path::PathBuf>,
}

/// The C source of module `i`.
fn source(i: usize) -> String {
    if i == 0 {
        "long f_0(long x) { return x + 1; }\n".to_string()
    } else {
        format!(
            "long f_{prev}(long);\nlong f_{i}(long x) {{ return f_{prev}(x) + 1; }}\n",
            prev = i - 1
        )
    }
}

pub fn run(args: &Args, work: &Path) -> Result<()> {
    let sources: Vec<(String, String)> = (0..args.modules)
        .map(|i| (format!("f_{i}"), source(i)))
        .collect();
    let objects = compile::objects(&work.join("incremental"), &sources)?;
    let mut session = args.mode.session(Recovery::None)?;
    let mut statement = Vec::with_capacity(args.modules);
    let mut load = Vec::with_capacity(args.modules);
    let mut call = Vec::with_capacity(args.modules);
    for (i, object) in objects.iter().enumerate() {
        let name = format!("f_{i}");
        let start = Instant::now();
        session
            .load(std::slice::from_ref(object))
            .with_context(|| format!("load module {i}"))?;
        let loaded = Instant::now();
        let address = session
            .lookup(&name)?
            .with_context(|| format!("{name} is not exported"))?;
        // SAFETY: f_i takes one integer argument and returns an integer.
        let value =
            unsafe { session.call(address, &[0]) }.with_context(|| format!("call {name}"))?;
        let end = Instant::now();
        ensure!(
            value == i as u64 + 1,
            "{name}(0) returned {value}, expected {}",
            i + 1
        );
        statement.push(end - start);
        load.push(loaded - start);
        // The call alone, again: the executor's own round trip for a call.
        let again = Instant::now();
        // SAFETY: as above.
        let value = unsafe { session.call(address, &[0]) }?;
        call.push(again.elapsed());
        ensure!(
            value == i as u64 + 1,
            "{name}(0) returned {value} the second time"
        );
    }
    session.end();
    if let Some(path) = &args.samples {
        let mut csv = String::from("index,load_us,statement_us,call_us\n");
        for i in 0..statement.len() {
            let us = |d: Duration| d.as_secs_f64() * 1e6;
            csv += &format!(
                "{i},{:.2},{:.2},{:.2}\n",
                us(load[i]),
                us(statement[i]),
                us(call[i])
            );
        }
        std::fs::write(path, csv).with_context(|| format!("write {}", path.display()))?;
    }
    let summary = |samples: &[Duration]| Summary::of(samples);
    println!(
        "{}",
        json!({
            "bench": "incremental",
            "mode": args.mode,
            "modules": args.modules,
            "statement": summary(&statement),
            "load": summary(&load),
            "call": summary(&call),
        })
    );
    Ok(())
}
