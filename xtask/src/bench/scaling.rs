//! The scaling curve (`cargo xtask bench --large`, `--only scaling`): link
//! time and peak memory of `solder run --noexec` against input size, on
//! synthetic programs from about 1 MB to 200 MB of objects.
//!
//! - [`assembly`]: the programs' text (N objects × M functions, cross-object
//!   calls, data references through the GOT and PC-relative, mergeable
//!   strings, pointer tables, `.eh_frame`), seeded and deterministic;
//! - [`generate`]: the objects on disk under `target/bench/scaling/`,
//!   made once by `as` and reused while the shape is the same;
//! - [`probe`]: checks that the smallest program runs as its natively
//!   linked build does, and reads the image size of each link;
//! - [`peer`]: llvm-jitlink, where it can be run;
//! - [`fit`]: the least-squares line of time against input bytes;
//! - [`plot`] draws `docs/scaling.svg`.
//!
//! Targets (the issue's): time linear in the input (each size from 10 MB
//! on within ±25% of the fit's ns per byte) and peak memory at most the
//! output image plus 25% of the input.

mod assembly;
mod fit;
mod generate;
mod peer;
mod plot;
mod probe;

use std::ffi::OsString;

use anyhow::{Context, Result};

use super::measure::{median_ms, median_rss_mib};
use super::report::{Table, verdict};
use super::{Schedule, Setup, alternate, mib, ms};
use assembly::Shape;
use generate::Program;
use probe::ImageSource;

/// The generator's seed (any value; fixed so every run links the same programs).
const SEED: u64 = 0x5017_de45_ca11;
/// Functions per object.
const FUNCTIONS: usize = 200;
/// The sizes: nominal MB of objects and the object count that gives it
/// (about 100 KB per object of 200 functions).
const SIZES: [(u32, usize); 6] = [
    (1, 10),
    (3, 30),
    (10, 100),
    (30, 296),
    (100, 983),
    (200, 1955),
];
/// Where one link takes longer than this (s), fewer runs are taken: see
/// [`rounds`].
const SLOW_S: f64 = 5.0;
/// Runs where one link is slow, at most.
const SLOW_RUNS: usize = 3;
/// The linearity tolerance, and the size (bytes) from which it is judged.
const LINEAR_TOLERANCE: f64 = 0.25;
const LINEAR_FROM: u64 = 10_000_000;

/// One size's measurements.
struct Point {
    program: Program,
    shape: Shape,
    /// Recorded runs of each contestant.
    runs: usize,
    solder_ms: f64,
    solder_peak_mib: f64,
    /// The probe run's `--stats` (only the image size without it).
    stats: probe::Stats,
    peer: peer::Peer,
}

impl Point {
    fn input_mb(&self) -> f64 {
        self.program.input_bytes as f64 / 1e6
    }

    fn ns_per_byte(&self) -> f64 {
        self.solder_ms * 1e6 / self.program.input_bytes as f64
    }

    /// The memory budget: the image plus a quarter of the input (MiB).
    fn budget_mib(&self) -> f64 {
        (self.stats.image_bytes as f64 + 0.25 * self.program.input_bytes as f64) / MIB
    }
}

const MIB: f64 = 1024.0 * 1024.0;

pub(super) fn scaling_curve(cx: &Setup, met: &mut Vec<bool>) -> Result<Vec<Table>> {
    let sizes = if cx.quick { &SIZES[..2] } else { &SIZES[..] };
    let mut programs = Vec::new();
    for &(mb, objects) in sizes {
        let shape = shape(objects);
        let dir = cx.scratch.join(format!("scaling/{mb}mb"));
        programs.push((shape, generate::program(&shape, &dir)?));
    }
    let checked = probe::runs_as_native(cx, &programs[0].1)?;
    let floor = probe::process_floor_mib(cx)?;
    let source = ImageSource::detect(cx)?;
    let mut points: Vec<Point> = Vec::new();
    for (shape, program) in programs {
        let before: Vec<(f64, &peer::Peer)> =
            points.iter().map(|p| (p.input_mb(), &p.peer)).collect();
        let peer = peer::verdict(cx, &before);
        points.push(measure_size(cx, shape, program, &source, peer)?);
    }
    let mut table = table(cx, floor, &source);
    for point in &points {
        table.row(row(point, floor, met));
    }
    let line = fit_notes(&mut table, &points, met);
    table.notes.extend(stats_note(&points));
    table.notes.extend(runs_note(cx, &points));
    table.notes.push(checked);
    table.notes.push(generation_note(&points));
    table.notes.push(command_line_note(&points)?);
    if let (false, Some(line)) = (cx.quick, line) {
        let path = cx.root.join("docs/scaling.svg");
        std::fs::write(&path, plot::svg(&points_for_plot(&points, floor), &line))
            .with_context(|| format!("write {}", path.display()))?;
        println!("wrote {}", path.display());
        table.notes.push(
            "![Link time and peak memory against input size](scaling.svg)\n\n\
             `docs/scaling.svg`: solder's median time (left axis) with the fitted line, and its \
             peak resident memory less the process floor with the budget (right axis)."
                .into(),
        );
    }
    Ok(vec![table])
}

fn shape(objects: usize) -> Shape {
    Shape {
        seed: SEED,
        objects,
        functions: FUNCTIONS,
    }
}

/// Each recorded run follows an unrecorded run of the same tool, as the
/// link measures' turns open. A run right after the other tool starts on
/// the memory that tool just freed, and on these virtual machines that is
/// slower to take back than what the same tool freed: the 200 MB program
/// linked in 1.27-1.79 s right after llvm-jitlink and in 0.40-0.44 s right
/// after solder (three pairs each; the host takes back free guest memory
/// and backs it again on first touch, and the guest hands out the two
/// kinds in different orders). Each tool is measured warm, as when used
/// repeatedly, and the turns still alternate.
fn settled(rounds: usize) -> Schedule {
    Schedule {
        rounds,
        runs_per_turn: 1,
        settle: true,
    }
}

/// Recorded runs at a size: `--runs` (one with `--quick`), at most
/// [`SLOW_RUNS`] where the unrecorded probe link took more than [`SLOW_S`].
fn rounds(cx: &Setup, probe_s: f64) -> usize {
    if cx.quick {
        1
    } else if probe_s > SLOW_S {
        cx.runs.min(SLOW_RUNS)
    } else {
        cx.runs
    }
}

/// Links the program of one size: an unrecorded probe run (the image
/// size; it also brings the objects into the page cache), then solder
/// and llvm-jitlink alternated.
fn measure_size(
    cx: &Setup,
    shape: Shape,
    program: Program,
    source: &ImageSource,
    peer: std::result::Result<(), String>,
) -> Result<Point> {
    let (stats, probe_s) = source.probe(cx, &program)?;
    let objects: Vec<OsString> = program.objects.iter().map(OsString::from).collect();
    let solder = cx.release.join("solder");
    let mut ours: Vec<OsString> = vec!["run".into(), "--noexec".into()];
    ours.extend(objects.iter().cloned());
    let mut theirs: Vec<OsString> = vec!["-noexec".into()];
    theirs.extend(objects);
    let mut contestants = vec![(solder.as_path(), ours, program.dir.as_path())];
    if let (Ok(()), Some(path)) = (&peer, &cx.peer) {
        contestants.push((path.as_path(), theirs.clone(), program.dir.as_path()));
    }
    let runs = rounds(cx, probe_s);
    println!(
        "scaling: {:.1} MB, {} objects: {runs} run(s) of {}",
        program.input_bytes as f64 / 1e6,
        program.objects.len(),
        if contestants.len() > 1 {
            "solder and llvm-jitlink, alternated"
        } else {
            "solder"
        }
    );
    let results = alternate(cx, &contestants, settled(runs))?;
    probe::ensure_linked(&results[0], &program)?;
    let peer = match peer {
        Ok(()) => peer::summarize(cx, &results[1], &theirs, &program.dir, runs)?,
        Err(why) => peer::Peer {
            outcome: Err(why),
            unlimited_stack: false,
        },
    };
    Ok(Point {
        solder_ms: median_ms(&results[0]),
        solder_peak_mib: median_rss_mib(&results[0]),
        program,
        shape,
        runs,
        stats,
        peer,
    })
}

fn table(cx: &Setup, floor: f64, source: &ImageSource) -> Table {
    let runs = if cx.quick {
        "one run per size (--quick: the two smallest sizes)".to_string()
    } else {
        let cap = if cx.runs > SLOW_RUNS {
            format!(" ({SLOW_RUNS} where one link takes more than {SLOW_S} s)")
        } else {
            String::new()
        };
        format!(
            "medians of {} alternated runs per size{cap}, each after an unrecorded run of the \
             same tool (a run right after the other tool's took 3-4× longer on this virtual \
             machine's freshly given-back memory); llvm-jitlink is not run above a size where it \
             took more than {} s",
            cx.runs,
            peer::LIMIT_S
        )
    };
    Table::new(
        "Scaling: link time and peak memory against input size",
        &format!(
            "Synthetic programs (`xtask/src/bench/scaling/assembly.rs`): `main.o` and N objects \
             of {FUNCTIONS} functions each, written as assembly and assembled by `as`. Each \
             function calls one to three others (in other objects and its own: \
             `R_X86_64_PLT32`), reads a datum of another object through the GOT \
             (`R_X86_64_REX_GOTPCRELX`) and one PC-relative (`R_X86_64_PC32`), reads bytes of \
             its own string and of one of 128 strings every object has (mergeable \
             `.rodata.str1.1`), and has an FDE in `.eh_frame`; each object's `.data` has 48 \
             data items and two 16-entry pointer tables (`R_X86_64_64`). Whole process \
             `solder run --noexec` (and `llvm-jitlink -noexec`, alternated with it), {runs}. \
             Input: the objects' total size (MB = 10⁶ bytes). Image: {}. Peak memory is the \
             process's maximum resident set (`wait4`); the budget is judged on the peak less \
             the process floor ({}, `solder --version`'s peak). Targets: time linear in the \
             input; peak memory at most the image plus 25% of the input.",
            source.describe(),
            mib(floor)
        ),
        &[
            "input",
            "objects",
            "functions",
            "solder",
            "ns / input byte",
            "solder peak",
            "image",
            "budget: image + ¼ input",
            "peak − floor ≤ budget",
            "llvm-jitlink 19",
            "its peak",
            "ratio",
        ],
    )
}

fn row(point: &Point, floor: f64, met: &mut Vec<bool>) -> Vec<String> {
    let within = point.solder_peak_mib - floor <= point.budget_mib();
    met.push(within);
    let (peer_peak, ratio) = match &point.peer.outcome {
        Ok((t, p)) => (mib(*p), format!("{:.3}×", point.solder_ms / t)),
        Err(_) => ("—".into(), "—".into()),
    };
    vec![
        format!("{:.2} MB", point.input_mb()),
        point.program.objects.len().to_string(),
        (point.shape.objects * point.shape.functions).to_string(),
        ms(point.solder_ms),
        format!("{:.2}", point.ns_per_byte()),
        mib(point.solder_peak_mib),
        mib(point.stats.image_bytes as f64 / MIB),
        mib(point.budget_mib()),
        verdict(within),
        point.peer.time_cell(),
        peer_peak,
        ratio,
    ]
}

/// The fit's notes (and the linearity target); the line, if there is one.
fn fit_notes(table: &mut Table, points: &[Point], met: &mut Vec<bool>) -> Option<fit::Line> {
    let xy: Vec<(f64, f64)> = points
        .iter()
        .map(|p| (p.program.input_bytes as f64, p.solder_ms))
        .collect();
    let line = fit::least_squares(&xy)?;
    let slope_ns = line.slope * 1e6;
    let (worst, deviation) = fit::largest_deviation(&xy, &line)?;
    table.notes.push(format!(
        "Least-squares fit over the {} sizes: time = {:.1} ms + {slope_ns:.2} ns × input bytes. \
         Largest deviation from the line: {deviation:+.1} ms ({:+.1}%) at {:.2} MB.",
        points.len(),
        line.intercept,
        100.0 * deviation / line.at(xy[worst].0),
        points[worst].input_mb()
    ));
    let judged: Vec<&Point> = points
        .iter()
        .filter(|p| p.program.input_bytes >= LINEAR_FROM)
        .collect();
    if judged.is_empty() {
        table.notes.push(format!(
            "Linearity is not judged: no size of {} MB or more was measured.",
            LINEAR_FROM / 1_000_000
        ));
        return Some(line);
    }
    // Time grows linearly when each added byte costs the same: the slope
    // between one size and the next. A size's own ns per byte also counts
    // the process's fixed start (the fit's intercept), which no input
    // size changes.
    let judged_xy: Vec<(f64, f64)> = judged
        .iter()
        .map(|p| (p.program.input_bytes as f64, p.solder_ms))
        .collect();
    let marginal_ns: Vec<f64> = fit::marginal_slopes(&judged_xy)
        .into_iter()
        .map(|s| s * 1e6)
        .collect();
    let linear = !marginal_ns.is_empty()
        && marginal_ns
            .iter()
            .all(|m| (m / slope_ns - 1.0).abs() <= LINEAR_TOLERANCE);
    met.push(linear);
    let steps: Vec<String> = judged
        .windows(2)
        .zip(&marginal_ns)
        .map(|(pair, m)| {
            format!(
                "{m:.2} from {:.0} to {:.0} MB",
                pair[0].input_mb(),
                pair[1].input_mb()
            )
        })
        .collect();
    table.notes.push(format!(
        "Linear (from {} MB on, each added input byte costs the fit's {slope_ns:.2} ns within \
         ±{:.0}%, between each size and the next: {}): {}. Each size's own ns per byte (the \
         table) also counts the fixed start, {:.1} ms by the fit.",
        LINEAR_FROM / 1_000_000,
        LINEAR_TOLERANCE * 100.0,
        if steps.is_empty() {
            "one size only".to_string()
        } else {
            steps.join(", ")
        },
        verdict(linear),
        line.intercept
    ));
    Some(line)
}

/// The sizes that took fewer runs than `--runs`, if any.
fn runs_note(cx: &Setup, points: &[Point]) -> Option<String> {
    let fewer: Vec<String> = points
        .iter()
        .filter(|p| p.runs < cx.runs && !cx.quick)
        .map(|p| format!("{} at {:.0} MB", p.runs, p.input_mb()))
        .collect();
    (!fewer.is_empty()).then(|| {
        format!(
            "Fewer runs where one link takes more than {SLOW_S} s: {}.",
            fewer.join(", ")
        )
    })
}

/// What `--stats` said of the largest link, if solder has it.
fn stats_note(points: &[Point]) -> Option<String> {
    let last = points.last()?;
    let threads = last.stats.threads?;
    let stages = last
        .stats
        .stages
        .iter()
        .map(|s| format!("{} {:.1} ms", s.name, s.ms))
        .collect::<Vec<_>>()
        .join(", ");
    Some(format!(
        "Where the time goes at {:.2} MB (`--stats` of the unrecorded run, one sample): \
         {threads} thread(s); {stages}.",
        last.input_mb()
    ))
}

/// What generating each size took (one-time: the objects are cached).
fn generation_note(points: &[Point]) -> String {
    let sizes = points
        .iter()
        .map(|p| {
            let g = &p.program.generation;
            format!(
                "{:.0} MB {:.1} s{}",
                p.input_mb(),
                g.seconds,
                if p.program.made_now { "" } else { " (cached)" }
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let g = points.iter().map(|p| &p.program.generation);
    let jobs = g.clone().map(|g| g.jobs).max().unwrap_or(1);
    let tool = g.clone().map(|g| g.tool_peak_kib).max().unwrap_or(0);
    let own = g.map(|g| g.generator_peak_kib).max().unwrap_or(0);
    format!(
        "Generation (once; the objects are kept in `target/bench/scaling/` with a stamp of the \
         generator's parameters and remade only when those change): {sizes}, wall time with {jobs} \
         `as` at a time (times marked cached are from the run that made them). Peak memory: \
         {} for one `as` or `cc` at most; the generating process (all of `cargo xtask bench` so \
         far) {}.",
        mib(tool as f64 / 1024.0),
        mib(own as f64 / 1024.0)
    )
}

/// The longest command line against the system's limit.
fn command_line_note(points: &[Point]) -> Result<String> {
    let longest = points
        .iter()
        .map(|p| {
            let bytes: usize = p.program.objects.iter().map(|o| o.len() + 1).sum();
            (bytes, p.program.objects.len())
        })
        .max()
        .unwrap_or((0, 0));
    // SAFETY: sysconf only reads a system constant.
    let arg_max = unsafe { libc::sysconf(libc::_SC_ARG_MAX) };
    anyhow::ensure!(
        arg_max < 0 || (longest.0 as i64) < arg_max as i64 / 2,
        "the command line of {} objects ({} bytes) comes near ARG_MAX ({arg_max})",
        longest.1,
        longest.0
    );
    Ok(format!(
        "Objects are named relative to the program's directory: the longest command line \
         ({} objects) is {:.1} KiB of arguments, against ARG_MAX = {} KiB.",
        longest.1,
        longest.0 as f64 / 1024.0,
        arg_max / 1024
    ))
}

fn points_for_plot(points: &[Point], floor: f64) -> Vec<plot::Sample> {
    points
        .iter()
        .map(|p| plot::Sample {
            input_mb: p.input_mb(),
            time_ms: p.solder_ms,
            memory_mib: p.solder_peak_mib - floor,
            budget_mib: p.budget_mib(),
        })
        .collect()
}
