//! Builds the benchmarks' small C modules with the system compiler (`cc`),
//! in parallel, and caches the objects under the work directory.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use solder_linker::ObjectFile;

/// Compiles each `(stem, source)` to `dir/stem.o` with `cc -O2 -c`, unless
/// an object built from the same source is already there.
pub fn objects(dir: &Path, sources: &[(String, String)]) -> Result<Vec<ObjectFile>> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    let chunk = sources.len().div_ceil(jobs).max(1);
    let paths: Vec<PathBuf> = std::thread::scope(|scope| {
        let workers: Vec<_> = sources
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|(stem, source)| build(dir, stem, source))
                        .collect::<Result<Vec<_>>>()
                })
            })
            .collect();
        let mut paths = Vec::new();
        for worker in workers {
            paths.extend(worker.join().expect("compile worker panicked")?);
        }
        Ok::<_, anyhow::Error>(paths)
    })?;
    paths
        .iter()
        .map(|path| ObjectFile::read(path).with_context(|| format!("read {}", path.display())))
        .collect()
}

fn build(dir: &Path, stem: &str, source: &str) -> Result<PathBuf> {
    let c = dir.join(format!("{stem}.c"));
    let o = dir.join(format!("{stem}.o"));
    if o.exists() && std::fs::read_to_string(&c).is_ok_and(|old| old == source) {
        return Ok(o);
    }
    std::fs::write(&c, source).with_context(|| format!("write {}", c.display()))?;
    let partial = dir.join(format!("{stem}.o.partial"));
    let output = Command::new("cc")
        .args(["-O2", "-c", "-o"])
        .arg(&partial)
        .arg(&c)
        .output()
        .context("run cc (the benchmarks compile small C modules)")?;
    if !output.status.success() {
        bail!(
            "cc -O2 -c {} failed:\n{}",
            c.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    std::fs::rename(&partial, &o).with_context(|| format!("rename into {}", o.display()))?;
    Ok(o)
}
