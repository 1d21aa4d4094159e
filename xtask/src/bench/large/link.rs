//! The large programs' link table: `solder run --noexec` with all threads
//! and with one, against `llvm-jitlink -noexec`, against mold linking an
//! executable, and against the machine's floor ([`super::floor`]).

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use super::{LargeProgram, floor};
use crate::bench::baseline::{Change, change_pct, ratio_cell};
use crate::bench::measure::{self, Ending, Run, median_ms, median_rss_mib};
use crate::bench::report::{Table, verdict};
use crate::bench::{Schedule, Setup, against_baseline, alternate_env, mib, ms, peer_summary};

/// Targets: solder on all cores at least this much faster than on one...
const SPEEDUP: f64 = 1.6;
/// ...at most this fraction of llvm-jitlink's time...
const PEER_RATIO: f64 = 0.10;
/// ...and at most this multiple of the machine's floor.
const FLOOR_RATIO: f64 = 2.0;

/// Recorded runs per turn (after one unrecorded run: see
/// `LINK_RUNS_PER_TURN` in `bench.rs` for why a turn opens with one).
const RUNS_PER_TURN: usize = 3;

/// The environment of the serial contestant.
const SERIAL: &[(&str, &str)] = &[("SOLDER_THREADS", "1")];

pub(super) fn link_table(
    cx: &Setup,
    programs: &[LargeProgram],
    met: &mut Vec<bool>,
) -> Result<Table> {
    let schedule = if cx.quick {
        Schedule::interleaved(1)
    } else {
        Schedule {
            rounds: cx.runs,
            runs_per_turn: RUNS_PER_TURN,
            settle: true,
        }
    };
    let mut table = new_table(schedule);
    if cx.baseline.is_some() {
        table.extend_columns(&["baseline solder", "÷ baseline"]);
    }
    let mold = mold_version();
    let mut changes = Vec::new();
    for program in programs {
        let (row, note, change) = link_row(cx, program, schedule, mold.is_some(), met)?;
        table.row(row);
        table.notes.push(note);
        changes.extend(change);
    }
    table.baseline = against_baseline(
        cx,
        "solder's link time with its default threads (current ÷ baseline medians)",
        &changes,
    );
    table.notes.push(match &mold {
        Some(version) => format!("mold: {version}."),
        None => "mold is not installed (Debian: apt-get install mold); its columns say so.".into(),
    });
    if let Some(value) = std::env::var_os("SOLDER_THREADS") {
        table.notes.push(format!(
            "`SOLDER_THREADS={}` was set in the environment: the default column ran with it.",
            value.to_string_lossy()
        ));
    }
    table.notes.push(builds_note(programs));
    Ok(table)
}

fn new_table(schedule: Schedule) -> Table {
    let turns = if schedule.settle {
        format!(
            "each turn is one unrecorded run and then {} recorded ones",
            schedule.runs_per_turn
        )
    } else {
        format!("each turn is {} recorded run(s)", schedule.runs_per_turn)
    };
    Table::new(
        "Large programs: link",
        &format!(
            "Whole process, from spawn to exit. solder: `solder run --noexec OBJS` with its \
             default thread count (every core; the count it used is in the notes) and with \
             `SOLDER_THREADS=1` (serial); speedup = serial ÷ default. llvm-jitlink: LLVM 19's \
             `llvm-jitlink -noexec OBJS`. mold: the same objects linked into an executable by \
             the compiler driver with `-fuse-ld=mold` (the driver's own start is included; \
             its cost is in the notes). The contestants take turns, which one starts \
             rotating each round; {turns}; times and peak resident memory (`wait4`) are \
             medians of {} runs. Floor: what any linker must do for the same work, measured \
             inside xtask: reading every input file from the page cache through one reused \
             128 KiB buffer, plus first-touching anonymous memory of the image's size (one \
             byte per 4 KiB page, then unmapped); medians of as many samples. The image size \
             is solder's (`--stats`, else the segments of `--map`). Targets: speedup at least \
             {SPEEDUP}×, solder ÷ llvm-jitlink at most {PEER_RATIO:.2}×, solder ÷ floor at \
             most {FLOOR_RATIO}×.",
            schedule.rounds * schedule.runs_per_turn
        ),
        &[
            "program",
            "objects",
            "solder",
            "peak",
            "1 thread (peak)",
            "speedup",
            "≥ 1.6×",
            "llvm-jitlink",
            "peak",
            "÷ llvm-jitlink",
            "≤ 0.10×",
            "mold",
            "÷ mold",
            "floor (read + touch)",
            "÷ floor",
            "≤ 2×",
        ],
    )
}

/// What was built in this run and how long building (or checking) took.
fn builds_note(programs: &[LargeProgram]) -> String {
    let parts: Vec<String> = programs
        .iter()
        .map(|p| {
            let what = if p.built.rebuilt {
                "built or rebuilt in this run"
            } else {
                "up to date"
            };
            format!("{}: {what} ({:.1} s)", p.label, p.built.seconds)
        })
        .collect();
    format!(
        "Builds (cached under `target/large/`): {}.",
        parts.join("; ")
    )
}

/// The contestants' argument lists for one program.
struct Commands {
    solder: Vec<OsString>,
    peer: Vec<OsString>,
    mold: Vec<OsString>,
    mold_driver: PathBuf,
}

fn commands(program: &LargeProgram, mold_output: &Path) -> Commands {
    let objects: Vec<OsString> = program
        .objects
        .iter()
        .map(|o| o.clone().into_os_string())
        .collect();
    let mut solder: Vec<OsString> = vec!["run".into(), "--noexec".into()];
    solder.extend(objects.iter().cloned());
    let mut peer: Vec<OsString> = vec!["-noexec".into()];
    peer.extend(objects.iter().cloned());
    let mut mold: Vec<OsString> = vec!["-fuse-ld=mold".into()];
    mold.extend(objects);
    mold.extend(["-o".into(), mold_output.as_os_str().to_owned()]);
    Commands {
        solder,
        peer,
        mold,
        mold_driver: PathBuf::from(program.driver),
    }
}

/// Each contestant's recorded runs of one program's link.
struct LinkRuns {
    solder: Vec<Run>,
    serial: Vec<Run>,
    peer: Option<Vec<Run>>,
    mold: Option<Vec<Run>>,
    /// The baseline's solder, default threads (`--baseline`).
    baseline: Option<Vec<Run>>,
}

/// Runs the contestants alternately; fails if solder failed to link.
fn link_runs(
    cx: &Setup,
    program: &LargeProgram,
    schedule: Schedule,
    mold: bool,
) -> Result<LinkRuns> {
    let solder = cx.release.join("solder");
    let base_solder = cx.baseline.as_ref().map(|b| b.release.join("solder"));
    let commands = commands(program, &program.dir.join("mold-linked"));
    let driver = which(&commands.mold_driver)?;
    let cwd = program.dir.as_path();
    let mut contestants = vec![
        (solder.as_path(), commands.solder.clone(), cwd),
        (solder.as_path(), commands.solder.clone(), cwd),
    ];
    let mut envs: Vec<&[(&str, &str)]> = vec![&[], SERIAL];
    if let Some(peer) = &cx.peer {
        contestants.push((peer.as_path(), commands.peer, cwd));
        envs.push(&[]);
    }
    if mold {
        contestants.push((driver.as_path(), commands.mold, cwd));
        envs.push(&[]);
    }
    if let Some(base_solder) = &base_solder {
        contestants.push((base_solder.as_path(), commands.solder.clone(), cwd));
        envs.push(&[]);
    }
    println!(
        "large: linking {} ({} objects)",
        program.label,
        program.objects.len()
    );
    let mut results = alternate_env(cx, &contestants, &envs, schedule)?.into_iter();
    let mut next = || results.next().context("a contestant without runs");
    let runs = LinkRuns {
        solder: next()?,
        serial: next()?,
        peer: cx.peer.as_ref().map(|_| next()).transpose()?,
        mold: mold.then(&mut next).transpose()?,
        baseline: base_solder.as_ref().map(|_| next()).transpose()?,
    };
    ensure_linked(&runs.solder, "solder run --noexec", program)?;
    ensure_linked(
        &runs.serial,
        "SOLDER_THREADS=1 solder run --noexec",
        program,
    )?;
    if let Some(baseline) = &runs.baseline {
        ensure_linked(baseline, "the baseline's solder run --noexec", program)?;
    }
    Ok(runs)
}

/// One program's row, a note with its sizes, and its change against the
/// baseline (with `--baseline`).
fn link_row(
    cx: &Setup,
    program: &LargeProgram,
    schedule: Schedule,
    mold: bool,
    met: &mut Vec<bool>,
) -> Result<(Vec<String>, String, Option<Change>)> {
    let runs = link_runs(cx, program, schedule, mold)?;
    let size = load_size(cx, program, &[])?;
    let serial_size = load_size(cx, program, SERIAL)?;
    let samples = schedule.rounds * schedule.runs_per_turn;
    let read = floor::read_ms(&program.objects, samples)?;
    let touch = floor::touch_ms(size.image_bytes, samples)?;
    let time = median_ms(&runs.solder);
    let serial = median_ms(&runs.serial);
    let mut row = vec![
        program.label.clone(),
        format!(
            "{} ({:.1} MB)",
            program.objects.len(),
            size.input_bytes as f64 / 1e6
        ),
        ms(time),
        mib(median_rss_mib(&runs.solder)),
        format!("{} ({})", ms(serial), mib(median_rss_mib(&runs.serial))),
    ];
    let speedup = serial / time;
    met.push(speedup >= SPEEDUP);
    row.extend([format!("{speedup:.2}×"), verdict(speedup >= SPEEDUP)]);
    row.extend(peer_cells(time, runs.peer.as_deref(), met));
    row.extend(mold_cells(time, runs.mold.as_deref()));
    let floor = read + touch;
    let ratio = time / floor;
    met.push(ratio <= FLOOR_RATIO);
    row.extend([
        format!("{} ({read:.1} + {touch:.1})", ms(floor)),
        format!("{ratio:.2}×"),
        verdict(ratio <= FLOOR_RATIO),
    ]);
    let mut change = None;
    if let Some(baseline) = &runs.baseline {
        let base = median_ms(baseline);
        row.extend([ms(base), ratio_cell(time, base)]);
        change = Some((program.label.clone(), change_pct(time, base)));
    }
    let mut note = size_note(cx, program, &size, &serial_size, mold, samples)?;
    if let (Some(peer), Some(peer_runs)) = (&cx.peer, &runs.peer)
        && peer_summary(peer_runs).is_ok()
    {
        note += &peer_work_note(peer, program)?;
    }
    Ok((row, note, change))
}

/// What llvm-jitlink's link covers: `-noexec` links only the objects the
/// entry point reaches (ORC materializes on lookup), where solder links
/// every object given. Counted in one more run with `-show-graphs=.*`,
/// which prints a `Link graph "NAME" post-fixup:` header per object it
/// links (and the graph after it, tens of MB for OpenSSL: read as a
/// stream, never held).
fn peer_work_note(peer: &Path, program: &LargeProgram) -> Result<String> {
    let mut child = Command::new(peer)
        .arg("-noexec")
        .arg("-show-graphs=.*")
        .args(&program.objects)
        .current_dir(&program.dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", peer.display()))?;
    let stdout = child.stdout.take().context("llvm-jitlink's stdout")?;
    let mut linked = 0usize;
    for line in BufReader::new(stdout).split(b'\n') {
        if line?.starts_with(b"Link graph \"") {
            linked += 1;
        }
    }
    let status = child.wait()?;
    Ok(if status.success() {
        format!(
            " `llvm-jitlink -noexec` links only what the entry point reaches: {linked} of the \
             {} objects (counted with `-show-graphs=.*` in one more run); solder links all of \
             them.",
            program.objects.len()
        )
    } else {
        format!(" Counting llvm-jitlink's linked objects failed ({status}).")
    })
}

/// The note under the table about one program: its sizes, the driver's
/// own cost in the mold column, and solder's stages.
fn size_note(
    cx: &Setup,
    program: &LargeProgram,
    size: &LoadSize,
    serial_size: &LoadSize,
    mold: bool,
    samples: usize,
) -> Result<String> {
    let mut note = format!(
        "{}: {:.1} MB of input, an image of {:.1} MB",
        program.label,
        size.input_bytes as f64 / 1e6,
        size.image_bytes as f64 / 1e6,
    );
    if let Some(threads) = size.threads {
        note += &format!(", linked with {threads} thread(s) by default");
    }
    if mold {
        let driver = which(Path::new(program.driver))?;
        note += &format!(
            "; `{} -fuse-ld=mold -Wl,--version` (the driver and mold starting, no link) takes {}",
            program.driver,
            ms(driver_start_ms(cx, &driver, program, samples)?)
        );
    }
    note.push('.');
    if let (Some(all), Some(one)) = (size.stages_text(), serial_size.stages_text()) {
        note += &format!(
            " solder's stages in one more run each (`--stats`): default {all}; \
             `SOLDER_THREADS=1` {one}."
        );
    }
    Ok(note)
}

/// The llvm-jitlink cells: time, peak, ratio, verdict (or why none).
fn peer_cells(time: f64, runs: Option<&[Run]>, met: &mut Vec<bool>) -> [String; 4] {
    match runs.map(peer_summary) {
        Some(Ok((t, peak))) => {
            let ratio = time / t;
            met.push(ratio <= PEER_RATIO);
            [
                ms(t),
                mib(peak),
                format!("{ratio:.3}×"),
                verdict(ratio <= PEER_RATIO),
            ]
        }
        Some(Err(why)) => [why, "—".into(), "—".into(), "no peer number".into()],
        None => [
            "not installed".into(),
            "—".into(),
            "—".into(),
            "no peer".into(),
        ],
    }
}

/// The mold cells: time and solder ÷ mold (or why none).
fn mold_cells(time: f64, runs: Option<&[Run]>) -> [String; 2] {
    match runs.map(peer_summary) {
        Some(Ok((t, _))) => [ms(t), format!("{:.2}×", time / t)],
        Some(Err(why)) => [why, "—".into()],
        None => ["not installed".into(), "—".into()],
    }
}

/// Fails unless every run exited with 0, with the first failure's stderr.
fn ensure_linked(runs: &[Run], who: &str, program: &LargeProgram) -> Result<()> {
    if let Some(run) = runs.iter().find(|r| r.ending != Ending::Exited(0)) {
        bail!(
            "`{who}` on {} ({} objects, in {}) ended with {}:\n{}",
            program.label,
            program.objects.len(),
            program.dir.display(),
            run.ending,
            String::from_utf8_lossy(&run.stderr)
        );
    }
    Ok(())
}

/// The median time of the compiler driver starting mold without linking.
fn driver_start_ms(
    cx: &Setup,
    driver: &Path,
    program: &LargeProgram,
    samples: usize,
) -> Result<f64> {
    let args = ["-fuse-ld=mold", "-Wl,--version"];
    let runs = (0..samples.max(1))
        .map(|_| measure::run(driver, &args, &program.dir, &cx.scratch))
        .collect::<Result<Vec<_>>>()?;
    Ok(median_ms(&runs))
}

/// mold's version line, if mold runs.
fn mold_version() -> Option<String> {
    let output = Command::new("mold").arg("--version").output().ok()?;
    output.status.success().then(|| {
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .next()
            .unwrap_or("mold")
            .trim()
            .to_string()
    })
}

/// `program`'s full path, from `PATH`.
fn which(program: &Path) -> Result<PathBuf> {
    if program.components().count() > 1 {
        return Ok(program.to_path_buf());
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .with_context(|| format!("{} is not on PATH", program.display()))
}

/// What solder says one load of the program reads, maps and spends.
struct LoadSize {
    input_bytes: u64,
    image_bytes: u64,
    threads: Option<u64>,
    /// Each stage's name and time in ms (`--stats` only).
    stages: Vec<(String, f64)>,
}

impl LoadSize {
    /// `read 5.1, parse 8.2, ... ms`, or nothing without stages.
    fn stages_text(&self) -> Option<String> {
        (!self.stages.is_empty()).then(|| {
            let parts: Vec<String> = self
                .stages
                .iter()
                .map(|(name, ms)| format!("{name} {ms:.1}"))
                .collect();
            format!("{} ms", parts.join(", "))
        })
    }
}

/// One more `solder run --noexec` (with `env`) that writes `--stats` (or,
/// from a solder without it, a JSON `--map`, whose loads' sizes are the
/// image).
fn load_size(cx: &Setup, program: &LargeProgram, env: &[(&str, &str)]) -> Result<LoadSize> {
    let solder = cx.release.join("solder");
    let input_bytes = program
        .objects
        .iter()
        .map(|o| std::fs::metadata(o).map(|m| m.len()))
        .sum::<std::io::Result<u64>>()
        .context("the size of an object")?;
    let report = cx.scratch.join("large-load.json");
    let stats = has_stats(&solder)?;
    let mut args: Vec<OsString> = vec!["run".into(), "--noexec".into()];
    if stats {
        args.extend(["--stats".into(), report.clone().into_os_string()]);
    } else {
        args.extend(["--map".into(), report.clone().into_os_string()]);
        args.extend(["--map-format".into(), "json".into()]);
    }
    args.extend(program.objects.iter().map(|o| o.clone().into_os_string()));
    let output = Command::new(&solder)
        .args(&args)
        .envs(env.iter().copied())
        .current_dir(&program.dir)
        .output()
        .with_context(|| format!("cannot run {}", solder.display()))?;
    ensure!(
        output.status.success(),
        "solder run --noexec ({}) on {} failed: {}",
        if stats { "--stats" } else { "--map" },
        program.label,
        String::from_utf8_lossy(&output.stderr)
    );
    let text = std::fs::read(&report).with_context(|| format!("read {}", report.display()))?;
    let json: Value = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not JSON", report.display()))?;
    if stats {
        return from_stats(&json);
    }
    let image_bytes = json
        .as_array()
        .context("a --map-format json map is an array of loads")?
        .iter()
        .map(|load| load["size"].as_u64().context("a load without a size"))
        .sum::<Result<u64>>()?;
    Ok(LoadSize {
        input_bytes,
        image_bytes,
        threads: None,
        stages: Vec::new(),
    })
}

/// The sizes and stages of `solder run --stats`'s JSON.
fn from_stats(json: &Value) -> Result<LoadSize> {
    let field = |name: &str| {
        json[name]
            .as_u64()
            .with_context(|| format!("no {name} in solder's --stats"))
    };
    let stages = json["stages"]
        .as_array()
        .map(|stages| {
            stages
                .iter()
                .filter_map(|s| Some((s["name"].as_str()?.to_owned(), s["ms"].as_f64()?)))
                .collect()
        })
        .unwrap_or_default();
    Ok(LoadSize {
        input_bytes: field("input_bytes")?,
        image_bytes: field("image_bytes")?,
        threads: json["threads"].as_u64(),
        stages,
    })
}

/// Whether this solder has `run --stats`.
fn has_stats(solder: &Path) -> Result<bool> {
    let output = Command::new(solder)
        .args(["run", "--help"])
        .output()
        .with_context(|| format!("cannot run {}", solder.display()))?;
    Ok(String::from_utf8_lossy(&output.stdout).contains("--stats"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_are_read() {
        let json = serde_json::json!({
            "input_bytes": 100,
            "image_bytes": 40,
            "threads": 2,
            "stages": [{"name": "read", "ms": 1.25}, {"name": "write", "ms": 2.0}]
        });
        let size = from_stats(&json).expect("complete stats");
        assert_eq!((size.input_bytes, size.image_bytes), (100, 40));
        assert_eq!(size.threads, Some(2));
        assert_eq!(
            size.stages_text().as_deref(),
            Some("read 1.2, write 2.0 ms")
        );
        assert!(from_stats(&serde_json::json!({"image_bytes": 1})).is_err());
    }
}
