//! jitdump (`--jitdump`): `/tmp/jit-PID.dump`, the format `perf inject
//! --jit` reads to turn samples in JIT'd code into symbols with their code:
//! a header, then one `JIT_CODE_LOAD` record per function of every module
//! (its address, size, name and bytes, read back from the executor),
//! preceded, when the session keeps debug information (`--debug`), by a
//! `JIT_CODE_DEBUG_INFO` record with the function's line table; and a
//! `JIT_CODE_CLOSE` record when the session ends. Timestamps are
//! `CLOCK_MONOTONIC` (record with `perf record -k mono`).
//!
//! The process that runs the code maps the file's first page read-execute
//! once ([`Executor::map_profiler_marker`]): the marker by which `perf
//! record` learns where that process's dump is.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use super::{Emitted, LinkPlugin};
use crate::error::LinkError;
use crate::executors::Executor;

/// `JiTD`, version 1, as the format defines them.
pub const MAGIC: u32 = 0x4A69_5444;
pub const VERSION: u32 = 1;
/// Record ids.
pub const JIT_CODE_LOAD: u32 = 0;
pub const JIT_CODE_DEBUG_INFO: u32 = 2;
pub const JIT_CODE_CLOSE: u32 = 3;
/// `e_machine` of x86-64.
const EM_X86_64: u32 = 62;

/// The dump being written, opened at the first module.
pub struct JitDump {
    directory: PathBuf,
    file: Option<std::fs::File>,
    /// Where the file was opened (for messages).
    path: PathBuf,
    /// `code_index`: one per code load.
    loads: u64,
    origin: Instant,
}

impl JitDump {
    /// A dump in `/tmp`.
    pub fn new() -> JitDump {
        JitDump::in_directory(PathBuf::from("/tmp"))
    }

    /// A dump in `directory` instead (tests).
    pub fn in_directory(directory: PathBuf) -> JitDump {
        JitDump {
            directory,
            file: None,
            path: PathBuf::new(),
            loads: 0,
            origin: Instant::now(),
        }
    }

    /// Where the dump of process `pid` goes.
    pub fn path_for(&self, pid: u32) -> PathBuf {
        self.directory.join(format!("jit-{pid}.dump"))
    }

    fn error(&self, reason: std::io::Error) -> LinkError {
        LinkError::Write {
            path: self.path.clone(),
            reason,
        }
    }

    /// Nanoseconds on the clock the records use.
    fn timestamp(&self) -> u64 {
        monotonic_ns().unwrap_or_else(|| self.origin.elapsed().as_nanos() as u64)
    }

    /// Opens the dump for the process that runs the code, with its header.
    fn open(&mut self, executor: &mut dyn Executor) -> Result<(), LinkError> {
        if self.file.is_some() {
            return Ok(());
        }
        let pid = executor.pid().unwrap_or_else(std::process::id);
        self.path = self.path_for(pid);
        // Readable too: the marker maps it.
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&self.path)
            .map_err(|e| self.error(e))?;
        let mut header = Vec::with_capacity(40);
        for word in [MAGIC, VERSION, 40, EM_X86_64, 0, pid] {
            header.extend_from_slice(&word.to_le_bytes());
        }
        header.extend_from_slice(&self.timestamp().to_le_bytes());
        header.extend_from_slice(&0u64.to_le_bytes()); // flags
        file.write_all(&header).map_err(|e| self.error(e))?;
        executor.map_profiler_marker(&self.path)?;
        self.file = Some(file);
        Ok(())
    }

    fn record(&mut self, id: u32, body: &[u8]) -> Result<(), LinkError> {
        let mut record = Vec::with_capacity(16 + body.len());
        record.extend_from_slice(&id.to_le_bytes());
        record.extend_from_slice(&((16 + body.len()) as u32).to_le_bytes());
        record.extend_from_slice(&self.timestamp().to_le_bytes());
        record.extend_from_slice(body);
        let Some(file) = &mut self.file else {
            return Ok(());
        };
        let written = file.write_all(&record);
        written.map_err(|e| self.error(e))
    }
}

impl Default for JitDump {
    fn default() -> Self {
        JitDump::new()
    }
}

/// Each function symbol's line table: the one the session already read
/// for crash reports (in process), else from the first of the module's
/// objects that has one (none without `--debug`), each object's DWARF read
/// once and asked only about its own functions.
fn line_tables(module: &Emitted<'_>) -> Vec<Vec<(u64, crate::source_lines::SourceLine)>> {
    let symbols = &module.crash_symbols;
    let attached = |symbol: &solder_executor::module::CrashSymbol| {
        let lines = symbol.lines.as_ref()?;
        let file = &lines.file;
        Some(
            lines
                .rows
                .iter()
                .map(|&(address, line)| {
                    let line = crate::source_lines::SourceLine {
                        file: file.clone(),
                        line,
                    };
                    (address, line)
                })
                .collect(),
        )
    };
    let mut tables: Vec<Vec<_>> = symbols
        .iter()
        .map(|s| attached(s).unwrap_or_default())
        .collect();
    if module.debug_images.is_empty() || tables.iter().all(|t| !t.is_empty()) {
        return tables;
    }
    let ranges: Vec<(u64, u64)> = symbols
        .iter()
        .map(|s| (s.start, s.start.saturating_add(s.size)))
        .collect();
    let serial = crate::parallel::Threads::serial();
    let keep = |table: &[_]| (!table.is_empty()).then(|| table.to_vec());
    let images = module.debug_images;
    let found = crate::source_lines::tables_by_object(images, &ranges, serial, keep);
    for (table, lines) in tables.iter_mut().zip(found) {
        if let (true, Some(lines)) = (table.is_empty(), lines) {
            *table = lines;
        }
    }
    tables
}

/// A `JIT_CODE_DEBUG_INFO` body for the function at `start`: its address,
/// then each line entry (address, line, discriminator 0, file name), when
/// it has lines.
fn line_record(table: &[(u64, crate::source_lines::SourceLine)], start: u64) -> Option<Vec<u8>> {
    if table.is_empty() {
        return None;
    }
    let mut body = Vec::new();
    body.extend_from_slice(&start.to_le_bytes());
    body.extend_from_slice(&(table.len() as u64).to_le_bytes());
    for (address, line) in table {
        body.extend_from_slice(&address.to_le_bytes());
        body.extend_from_slice(&(line.line as i32).to_le_bytes());
        body.extend_from_slice(&0i32.to_le_bytes());
        body.extend_from_slice(line.file.as_bytes());
        body.push(0);
    }
    Some(body)
}

/// The in-process marker (host layer only).
#[cfg(feature = "host")]
fn monotonic_ns() -> Option<u64> {
    solder_executor::sys::process::monotonic_ns()
}

#[cfg(not(feature = "host"))]
fn monotonic_ns() -> Option<u64> {
    None
}

impl LinkPlugin for JitDump {
    fn name(&self) -> &'static str {
        "jitdump"
    }

    fn emitted(
        &mut self,
        executor: &mut dyn Executor,
        module: &Emitted<'_>,
    ) -> Result<Option<u64>, LinkError> {
        self.open(executor)?;
        let pid = executor.pid().unwrap_or_else(std::process::id);
        let tables = line_tables(module);
        for (index, symbol) in module.crash_symbols.iter().enumerate() {
            if symbol.size == 0 {
                continue;
            }
            if let Some(body) = tables.get(index).and_then(|t| line_record(t, symbol.start)) {
                self.record(JIT_CODE_DEBUG_INFO, &body)?;
            }
            let code = executor.read(symbol.start, symbol.size)?;
            let mut body = Vec::with_capacity(40 + symbol.name.len() + 1 + code.len());
            body.extend_from_slice(&pid.to_le_bytes());
            body.extend_from_slice(&pid.to_le_bytes()); // tid: the loading thread's process
            body.extend_from_slice(&symbol.start.to_le_bytes()); // vma
            body.extend_from_slice(&symbol.start.to_le_bytes()); // code_addr
            body.extend_from_slice(&symbol.size.to_le_bytes());
            body.extend_from_slice(&self.loads.to_le_bytes());
            body.extend_from_slice(symbol.name.as_bytes());
            body.push(0);
            body.extend_from_slice(&code);
            self.loads += 1;
            self.record(JIT_CODE_LOAD, &body)?;
        }
        // Nothing to undo: a dump is a history (a later load at the same
        // address supersedes the earlier one by its timestamp).
        Ok(None)
    }

    fn removing(&mut self, _executor: &mut dyn Executor, _token: u64) -> Result<(), LinkError> {
        Ok(())
    }

    fn session_ending(&mut self) {
        let _ = self.record(JIT_CODE_CLOSE, &[]);
        if let Some(file) = &mut self.file {
            let _ = file.flush();
        }
    }
}
