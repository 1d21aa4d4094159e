//! What machine and tools a benchmark ran on, for the report.

use std::process::Command;

/// The first line of `program args`' output, or why there is none.
pub fn first_line(program: &str, args: &[&str]) -> String {
    match Command::new(program).args(args).output() {
        Ok(output) => {
            let text = if output.stdout.is_empty() {
                output.stderr
            } else {
                output.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("")
                .to_string()
        }
        Err(err) => format!("({program}: {err})"),
    }
}

/// Machine facts, as Markdown list items.
pub fn describe(peer_version: &str) -> Vec<String> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or_else(
            || "?".to_string(),
            |kib| format!("{:.1}", kib / 1024.0 / 1024.0),
        );
    vec![
        format!("CPU: {model}, {cpus} logical CPUs available; {memory_gib} GiB memory"),
        format!("Kernel: {}", first_line("uname", &["-sr"])),
        format!("Rust: {}", first_line("rustc", &["-V"])),
        format!("gcc: {}", first_line("gcc", &["--version"])),
        format!("clang: {}", first_line("clang", &["--version"])),
        format!("Peer: {peer_version}"),
    ]
}
