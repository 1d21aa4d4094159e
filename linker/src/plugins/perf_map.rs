//! Profiler maps (`--perf-map`): `/tmp/perf-PID.map` for the process that
//! runs the code, one line per JIT'd function (`START SIZE NAME`, hex
//! without `0x`), as `perf report` reads it to name samples in code no
//! file on disk describes. Rewritten whole at every load, replacement and
//! removal, so it lists exactly the live modules' functions; at session end
//! it is left as it is, for `perf report` after the run.
//!
//! The process is the executor's when it is a separate process on this
//! machine, else this one. (An executor on another machine over TCP has its
//! map written here under its pid: `perf` there does not see it.)

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use solder_executor::module::CrashSymbol;

use super::{Emitted, LinkPlugin};
use crate::error::LinkError;
use crate::executors::Executor;

/// The live modules' functions, by module base.
#[derive(Default)]
pub struct PerfMap {
    modules: BTreeMap<u64, Vec<CrashSymbol>>,
    /// The directory the map goes in (`/tmp`, as perf looks there).
    directory: Option<PathBuf>,
    /// Set when the session ends: the map then stays as it is, for
    /// `perf report` after the run.
    ending: bool,
}

impl PerfMap {
    /// A map in `/tmp`, perf's place for them.
    pub fn new() -> PerfMap {
        PerfMap::default()
    }

    /// A map in `directory` instead (tests).
    pub fn in_directory(directory: PathBuf) -> PerfMap {
        PerfMap {
            modules: BTreeMap::new(),
            directory: Some(directory),
            ending: false,
        }
    }

    /// Where the map of process `pid` goes.
    pub fn path_for(&self, pid: u32) -> PathBuf {
        self.directory
            .clone()
            .unwrap_or_else(|| PathBuf::from("/tmp"))
            .join(format!("perf-{pid}.map"))
    }

    /// Writes the map for the process that runs the code.
    fn write(&self, executor: &dyn Executor) -> Result<(), LinkError> {
        let pid = executor.pid().unwrap_or_else(std::process::id);
        let mut text = String::new();
        for symbol in self.modules.values().flatten() {
            let _ = writeln!(
                text,
                "{:x} {:x} {}",
                symbol.start,
                symbol.size.max(1),
                symbol.name
            );
        }
        let path = self.path_for(pid);
        std::fs::write(&path, text).map_err(|reason| LinkError::Write {
            path: path.clone(),
            reason,
        })
    }
}

impl LinkPlugin for PerfMap {
    fn name(&self) -> &'static str {
        "perf map"
    }

    fn emitted(
        &mut self,
        executor: &mut dyn Executor,
        module: &Emitted<'_>,
    ) -> Result<Option<u64>, LinkError> {
        let base = module.memory.0;
        // Already by address.
        self.modules
            .insert(base, module.crash_symbols.iter().cloned().collect());
        self.write(executor)?;
        Ok(Some(base))
    }

    fn removing(&mut self, executor: &mut dyn Executor, base: u64) -> Result<(), LinkError> {
        self.modules.remove(&base);
        if self.ending {
            return Ok(());
        }
        self.write(executor)
    }

    fn session_ending(&mut self) {
        self.ending = true;
    }
}
