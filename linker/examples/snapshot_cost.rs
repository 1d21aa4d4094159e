//! Measures what the snapshot recovery policy costs: the extra time per
//! call (the executor forks a checkpoint before each call) and the time
//! from a crash to the next call answered by the checkpoint, with 10 MB,
//! 200 MB and 1 GB resident in the executor.
//!
//! `cargo run --release -p solder-linker --example snapshot_cost`
//! (needs `cc`, and `target/release/solder-executor`: `cargo build
//! --release -p solder-executor`). Prints medians over alternated runs.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use solder_linker::{ExecutorChoice, ObjectFile, Recovery, Session, SessionConfig, Transport};

const SOURCE: &str = r#"
#include <stdlib.h>
#include <string.h>
static char *block;
long fill(long mb) { block = malloc((size_t)mb << 20); memset(block, 1, (size_t)mb << 20); return mb; }
long nothing(void) { return 0; }
long crash(void) { *(volatile int *)0 = 0; return 0; }
"#;

fn object() -> ObjectFile {
    let dir = std::env::temp_dir().join("solder-snapshot-cost");
    std::fs::create_dir_all(&dir).unwrap();
    let source = dir.join("resident.c");
    std::fs::write(&source, SOURCE).unwrap();
    let object: PathBuf = dir.join("resident.o");
    let status = std::process::Command::new("cc")
        .args(["-O2", "-c", "-o"])
        .arg(&object)
        .arg(&source)
        .status()
        .expect("run cc");
    assert!(status.success(), "cc failed");
    ObjectFile::read(&object).unwrap()
}

fn session(recovery: Recovery) -> Session {
    Session::new(SessionConfig {
        executor: ExecutorChoice::Remote {
            transport: Transport::Pipe { program: None },
            shared_memory: false,
        },
        recovery,
        ..SessionConfig::default()
    })
    .expect("start the executor (build it: cargo build --release -p solder-executor)")
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn call(session: &mut Session, name: &str, args: &[u64]) -> Result<u64, String> {
    let address = session.lookup(name).unwrap().unwrap();
    // SAFETY: the functions above take at most one integer argument, and
    // they run in the executor process.
    unsafe { session.call(address, args) }.map_err(|e| e.to_string())
}

fn main() {
    let object = object();
    println!("resident   call (none)   call (snapshot)   snapshot cost   crash -> next call");
    for mb in [10u64, 200, 1024] {
        let mut plain = session(Recovery::None);
        let mut snap = session(Recovery::Snapshot);
        for s in [&mut plain, &mut snap] {
            s.load(std::slice::from_ref(&object)).unwrap();
            call(s, "fill", &[mb]).unwrap();
        }
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..200 {
            let t = Instant::now();
            call(&mut plain, "nothing", &[]).unwrap();
            a.push(t.elapsed());
            let t = Instant::now();
            call(&mut snap, "nothing", &[]).unwrap();
            b.push(t.elapsed());
        }
        let mut recovery = Vec::new();
        for _ in 0..20 {
            let t = Instant::now();
            assert!(call(&mut snap, "crash", &[]).is_err());
            call(&mut snap, "nothing", &[]).unwrap();
            recovery.push(t.elapsed());
        }
        let (a, b) = (median(a), median(b));
        println!(
            "{:>5} MB   {:>8.1} us   {:>12.1} us   {:>10.1} us   {:>14.1} us",
            mb,
            a.as_secs_f64() * 1e6,
            b.as_secs_f64() * 1e6,
            b.saturating_sub(a).as_secs_f64() * 1e6,
            median(recovery).as_secs_f64() * 1e6
        );
    }
}
