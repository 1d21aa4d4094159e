//! Making a synthetic program's objects on disk, once: the assembly of
//! [`super::assembly`] through `as` (one process per object,
//! as many at a time as there are CPUs), `main.c` through `cc -O1 -c`.
//! A stamp file records the shape the objects were made for and what
//! making them took; objects whose stamp matches are reused.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};

use super::assembly::{self, Shape};
use crate::bench::measure::{Ending, reap};

/// What making a program's objects took (when they were made).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Generation {
    /// Wall time of the whole generation.
    pub seconds: f64,
    /// Processes run at a time.
    pub jobs: usize,
    /// The largest peak resident memory of one tool process (`as` or
    /// `cc`), KiB.
    pub tool_peak_kib: u64,
    /// The generator's peak resident memory (the whole xtask process's
    /// so far: an upper bound), KiB.
    pub generator_peak_kib: u64,
}

/// The cache's stamp file.
#[derive(Debug, Serialize, Deserialize)]
struct Stamp {
    shape: String,
    generation: Generation,
}

/// A program on disk.
pub(super) struct Program {
    pub dir: PathBuf,
    /// File names in `dir`, `main.o` first.
    pub objects: Vec<String>,
    /// Their total size.
    pub input_bytes: u64,
    pub generation: Generation,
    /// Whether the objects were made in this run (else reused).
    pub made_now: bool,
}

const STAMP: &str = "stamp.json";

/// The objects of `shape` in `dir`: reused if its stamp says they are of
/// this shape, else made again from scratch.
pub(super) fn program(shape: &Shape, dir: &Path) -> Result<Program> {
    let stamp_path = dir.join(STAMP);
    let cached = std::fs::read(&stamp_path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Stamp>(&bytes).ok())
        .filter(|stamp| stamp.shape == shape.stamp());
    let mut objects = vec!["main.o".to_string()];
    objects.extend((0..shape.objects).map(Shape::object_name));
    let (generation, made_now) = match cached {
        Some(stamp) if objects.iter().all(|o| dir.join(o).is_file()) => (stamp.generation, false),
        _ => (make(shape, dir)?, true),
    };
    let mut input_bytes = 0;
    for object in &objects {
        let path = dir.join(object);
        input_bytes += std::fs::metadata(&path)
            .with_context(|| format!("{}", path.display()))?
            .len();
    }
    Ok(Program {
        dir: dir.to_path_buf(),
        objects,
        input_bytes,
        generation,
        made_now,
    })
}

/// Makes every object of `shape` in a fresh `dir`, then writes the stamp.
fn make(shape: &Shape, dir: &Path) -> Result<Generation> {
    println!(
        "scaling: generating {} objects x {} functions in {}",
        shape.objects + 1,
        shape.functions,
        dir.display()
    );
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("remove {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let start = Instant::now();
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    let main_c = dir.join("main.c");
    std::fs::write(&main_c, assembly::main_c(shape))
        .with_context(|| format!("write {}", main_c.display()))?;
    let main_peak = compile_main(dir)?;
    let as_peak = assemble_all(shape, dir, jobs)?;
    let generation = Generation {
        seconds: start.elapsed().as_secs_f64(),
        jobs,
        tool_peak_kib: as_peak.max(main_peak),
        generator_peak_kib: own_peak_kib(),
    };
    let stamp = Stamp {
        shape: shape.stamp(),
        generation: generation.clone(),
    };
    let stamp_path = dir.join(STAMP);
    std::fs::write(&stamp_path, serde_json::to_vec_pretty(&stamp)?)
        .with_context(|| format!("write {}", stamp_path.display()))?;
    Ok(generation)
}

/// `cc -O1 -c main.c -o main.o` in `dir`; its peak memory (KiB).
fn compile_main(dir: &Path) -> Result<u64> {
    let cc = Path::new("cc");
    let child = Command::new(cc)
        .args(["-O1", "-c", "main.c", "-o", "main.o"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .spawn()
        .context("cannot run cc")?;
    let (ending, peak) = reap(&child, cc)?;
    ensure!(
        ending == Ending::Exited(0),
        "cc -O1 -c main.c in {} ended with {ending}",
        dir.display()
    );
    Ok(peak)
}

/// Assembles every object, `jobs` at a time; the largest `as` peak (KiB).
fn assemble_all(shape: &Shape, dir: &Path, jobs: usize) -> Result<u64> {
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..jobs)
            .map(|_| {
                scope.spawn(|| -> Result<u64> {
                    let mut peak = 0;
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        if index >= shape.objects {
                            return Ok(peak);
                        }
                        peak = peak.max(assemble(shape, dir, index)?);
                    }
                })
            })
            .collect();
        let mut peak = 0;
        for worker in workers {
            match worker.join() {
                Ok(result) => peak = peak.max(result?),
                Err(_) => bail!("an assembling thread panicked"),
            }
        }
        Ok(peak)
    })
}

/// Writes object `index`'s assembly and runs `as` on it; its peak (KiB).
/// The assembly is removed once assembled (regenerated on demand: it is
/// the same for the same shape).
fn assemble(shape: &Shape, dir: &Path, index: usize) -> Result<u64> {
    let object = Shape::object_name(index);
    let source = dir.join(object.replace(".o", ".s"));
    let errors = dir.join(object.replace(".o", ".err"));
    std::fs::write(&source, assembly::object(shape, index))
        .with_context(|| format!("write {}", source.display()))?;
    let stderr =
        std::fs::File::create(&errors).with_context(|| format!("create {}", errors.display()))?;
    let program = Path::new("as");
    let child = Command::new(program)
        .args(["--64", "-o"])
        .arg(dir.join(&object))
        .arg(&source)
        .stdin(Stdio::null())
        .stderr(stderr)
        .spawn()
        .context("cannot run as")?;
    let (ending, peak) = reap(&child, program)?;
    if ending != Ending::Exited(0) {
        let message = std::fs::read_to_string(&errors).unwrap_or_default();
        bail!(
            "as {} ended with {ending} (the assembly is kept):\n{}",
            source.display(),
            message.lines().take(20).collect::<Vec<_>>().join("\n")
        );
    }
    std::fs::remove_file(&source).with_context(|| format!("remove {}", source.display()))?;
    std::fs::remove_file(&errors).with_context(|| format!("remove {}", errors.display()))?;
    Ok(peak)
}

/// This process's peak resident memory so far (KiB).
fn own_peak_kib() -> u64 {
    // SAFETY: an all-zero rusage is a valid value for getrusage to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is valid for writes.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    if rc == 0 { usage.ru_maxrss as u64 } else { 0 }
}
