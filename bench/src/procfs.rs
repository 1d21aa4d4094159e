//! Memory figures of a process from `/proc/PID/status`: reserved address
//! space (`VmSize`) and committed, resident memory (`VmRSS`).

use anyhow::{Context, Result};

#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Memory {
    /// Reserved address space, KiB.
    pub vm_size_kib: u64,
    /// Resident (committed and touched) memory, KiB.
    pub vm_rss_kib: u64,
}

/// The memory of process `pid` (`None`: this process).
pub fn memory(pid: Option<u32>) -> Result<Memory> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".to_string(),
    };
    let status = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    let field = |name: &str| -> Result<u64> {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no {name} in {path}"))
    };
    Ok(Memory {
        vm_size_kib: field("VmSize:")?,
        vm_rss_kib: field("VmRSS:")?,
    })
}
