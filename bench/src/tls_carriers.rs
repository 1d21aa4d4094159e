//! `tls-carriers`: what letting the platform's dynamic loader own module
//! TLS costs and allows: the time to load a TLS carrier (static and not),
//! how much static TLS the process has for static carriers before the
//! loader refuses, and whether closing a static carrier gives its space
//! back. Run it under `GLIBC_TUNABLES=glibc.rtld.optional_static_tls=N`
//! to see the surplus grow.

use std::time::Instant;

use anyhow::Result;
use clap::Args as ClapArgs;
use serde_json::json;
use solder_executor::sys::tls::Carrier;
use solder_executor::tls_carrier::{TlsTemplate, carrier_object};

use crate::stats::Summary;

#[derive(Debug, ClapArgs)]
pub struct Args {
    /// Bytes of each carrier's block (half initialized, half zero).
    #[arg(long, default_value_t = 64)]
    block: u64,
    /// Carriers loaded at most, of each kind.
    #[arg(long, default_value_t = 2000)]
    limit: usize,
}

pub fn run(args: &Args) -> Result<()> {
    let init = vec![0x5a; (args.block / 2) as usize];
    let template = TlsTemplate {
        init: &init,
        zero_size: args.block - init.len() as u64,
        align: 16,
    };
    let fixed = carrier_object(&template, true)?;
    let dynamic = carrier_object(&template, false)?;

    // Static carriers until the loader refuses (or the limit).
    let mut times = Vec::new();
    let mut kept = Vec::new();
    let mut refusal = None;
    while kept.len() < args.limit {
        let start = Instant::now();
        match Carrier::load(&fixed) {
            Ok(carrier) => {
                times.push(start.elapsed());
                kept.push(carrier);
            }
            Err(why) => {
                refusal = Some(why);
                break;
            }
        }
    }
    let static_count = kept.len();
    let static_load = (!times.is_empty()).then(|| Summary::of(&times));
    drop(kept);

    // Load and close one static carrier again and again: does its space
    // come back?
    let mut cycles = 0;
    let mut cycle_refusal = None;
    while cycles < args.limit {
        match Carrier::load(&fixed) {
            Ok(carrier) => drop(carrier),
            Err(why) => {
                cycle_refusal = Some(why);
                break;
            }
        }
        cycles += 1;
    }

    let mut times = Vec::new();
    let mut kept = Vec::new();
    for _ in 0..args.limit.min(1000) {
        let start = Instant::now();
        kept.push(Carrier::load(&dynamic).map_err(anyhow::Error::msg)?);
        times.push(start.elapsed());
    }
    let report = json!({
        "bench": "tls-carriers",
        "block": args.block,
        "tunables": std::env::var("GLIBC_TUNABLES").ok(),
        "static": {
            "loaded": static_count,
            "bytes": static_count as u64 * args.block,
            "refusal": refusal,
            "load": static_load,
        },
        "static_reload_cycles": { "done": cycles, "refusal": cycle_refusal },
        "dynamic": { "loaded": kept.len(), "load": Summary::of(&times) },
    });
    println!("{report}");
    Ok(())
}
