//! `solder`: the command-line front of the linker.
//!
//! `solder run [OPTIONS] OBJ... [-- ARGS...]` links the objects in memory and
//! runs `main(argc, argv, envp)` like a native program: stdio passes
//! through, the exit status is the program's, a crash reports on stderr and
//! dies of its signal (`128 + signal` in a shell), a run stopped by
//! `--timeout` (in process or in an executor process) exits with 124, and a
//! link or input error exits with 125 and a message naming object, section,
//! offset and symbol.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use solder_executor::sys;
use solder_linker::archive::is_archive;
use solder_linker::debug_sections::DebugSections;
use solder_linker::error::LinkError;
use solder_linker::parallel::Threads;
use solder_linker::{
    Archive, ExecutorChoice, ExecutorOutput, ModuleId, ObjectFile, Outcome, Placement, Recovery,
    Session, SessionConfig, Transport,
};

/// The exit status for Solder's own failures (link errors, bad input).
const SOLDER_FAILED: u8 = 125;

#[derive(Parser)]
#[command(
    name = "solder",
    version,
    about = "A JIT linker for relocatable objects"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Link objects in memory and run their `main`.
    Run(RunArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// Link only: no initializer, `main` or deinitializer runs.
    #[arg(long)]
    noexec: bool,
    /// The function to run instead of `main`.
    #[arg(long, value_name = "SYMBOL", default_value = "main")]
    entry: String,
    /// Size of the address-space reservation for JIT memory (e.g. 1G, 256M).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    slab: Option<u64>,
    /// Put the slab exactly at this address (e.g. 0x40000000).
    #[arg(long, value_name = "ADDR", value_parser = parse_number)]
    slab_address: Option<u64>,
    /// Link with library NAME: libNAME.so (opened for host symbols) or
    /// libNAME.a (its members linked on demand), searched in the `-L`
    /// directories in order, then by the dynamic loader; `-l:FILE` names
    /// the file.
    #[arg(short = 'l', value_name = "NAME")]
    library: Vec<String>,
    /// Search DIR for `-l` libraries (in the order given).
    #[arg(short = 'L', value_name = "DIR")]
    library_path: Vec<PathBuf>,
    /// Link every member of this archive, not only the ones needed.
    #[arg(long, value_name = "ARCHIVE")]
    whole_archive: Vec<PathBuf>,
    /// Define NAME at an absolute address, as the host defines its
    /// symbols: references reach it through the GOT and stubs.
    #[arg(long = "abs", value_name = "NAME=ADDRESS", value_parser = parse_absolute)]
    absolute: Vec<(String, u64)>,
    /// Open this shared object before linking.
    #[arg(long, value_name = "PATH")]
    preload: Vec<PathBuf>,
    /// Where the code runs: `inproc` (this process), `pipe` (a spawned
    /// solder-executor) or `tcp=HOST:PORT` (solder-executor --listen).
    #[arg(long, value_name = "WHERE", default_value = "inproc", value_parser = parse_executor)]
    executor: ExecutorArg,
    /// Share the slab with the executor (memfd): code is written in place.
    #[arg(long)]
    shm: bool,
    /// Where the program's stdout and stderr go with an executor process:
    /// `forward` (over the connection, to this process's stdout and
    /// stderr; the default over TCP) or `local` (the executor's own; the
    /// default over pipes, where they are this process's anyway).
    #[arg(long, value_name = "WHERE", value_parser = parse_executor_output)]
    executor_output: Option<ExecutorOutput>,
    /// Over TCP: how long the executor may stay silent (no answer to TCP
    /// keepalive probes: its host powered off or cut off) before it counts
    /// as lost, even in the middle of a call, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    peer_timeout: u64,
    /// After a crash in the executor: roll back to a checkpoint taken
    /// before each call (`snapshot`) or start a fresh executor and replay
    /// the modules (`restart`).
    #[arg(long, value_name = "POLICY", value_parser = parse_recovery)]
    recovery: Option<Recovery>,
    /// Stop the run (linking, initializers, `main`, deinitializers) after
    /// this long (`500ms`, `10s`, `2m`; a bare number is seconds) and exit
    /// with status 124, naming where it was running.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    timeout: Option<Limit>,
    /// Write /tmp/perf-PID.map for the process that runs the code (this
    /// one, or the executor): every JIT'd function, for `perf report`.
    #[arg(long)]
    perf_map: bool,
    /// Write /tmp/jit-PID.dump (jitdump, with code bytes) for the process
    /// that runs the code, for `perf inject --jit`.
    #[arg(long)]
    jitdump: bool,
    /// Register the JIT'd objects (with their debug information) with the
    /// debugger interface, so gdb can break in, step and print JIT'd code
    /// compiled with -g (also SOLDER_DEBUG=1). In process only, for now.
    #[arg(long)]
    debug: bool,
    /// Write the link map (sections, symbols, GOT entries, stubs, archive
    /// members taken and why) to FILE.
    #[arg(long, value_name = "FILE")]
    map: Option<PathBuf>,
    /// Print the link map on stdout before the program runs.
    #[arg(long)]
    print_map: bool,
    /// The link map's form: `text` or `json` (an array, one map per load).
    #[arg(long, value_name = "FORM", default_value = "text", value_parser = ["text", "json"])]
    map_format: String,
    /// Threads for reading, parsing, writing and relocating objects
    /// (default: SOLDER_THREADS, else every core; links under a MiB or two
    /// of objects, or of one large object, use one). The output is the
    /// same whatever the number.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    threads: Option<u32>,
    /// Write what the load cost to FILE as JSON: input and image bytes,
    /// threads, and each stage's time in milliseconds.
    #[arg(long, value_name = "FILE")]
    stats: Option<PathBuf>,
    /// Relocatable objects (.o) to link as one module, and archives (.a)
    /// whose members are linked when they define a name the objects need.
    #[arg(required = true, value_name = "OBJ")]
    objects: Vec<PathBuf>,
    /// Arguments passed to the program after `--`.
    #[arg(last = true, value_name = "ARGS")]
    args: Vec<String>,
}

/// The C library's allocator, then mimalloc from the first large load on
/// (`solder_linker::heap`).
#[global_allocator]
static GLOBAL: solder_linker::heap::Global = solder_linker::heap::Global;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let informational = !err.use_stderr();
            let _ = err.print();
            return ExitCode::from(if informational { 0 } else { SOLDER_FAILED });
        }
    };
    match cli.command {
        Command::Run(args) => {
            let ran = run(args);
            solder_linker::heap::process_ending();
            match ran {
                Ok(code) => ExitCode::from(code),
                Err(err) => {
                    eprintln!("solder: error: {err:#}");
                    ExitCode::from(SOLDER_FAILED)
                }
            }
        }
    }
}

#[derive(Debug, Clone)]
enum ExecutorArg {
    InProcess,
    Pipe,
    Tcp(String),
}

fn parse_executor(text: &str) -> Result<ExecutorArg> {
    match text {
        "inproc" => Ok(ExecutorArg::InProcess),
        "pipe" => Ok(ExecutorArg::Pipe),
        _ => match text.strip_prefix("tcp=") {
            Some(address) if !address.is_empty() => Ok(ExecutorArg::Tcp(address.to_string())),
            _ => bail!("expected `inproc`, `pipe` or `tcp=HOST:PORT`, got `{text}`"),
        },
    }
}

fn parse_executor_output(text: &str) -> Result<ExecutorOutput> {
    match text {
        "local" => Ok(ExecutorOutput::Local),
        "forward" => Ok(ExecutorOutput::Forward),
        _ => bail!("expected `local` or `forward`, got `{text}`"),
    }
}

fn parse_recovery(text: &str) -> Result<Recovery> {
    match text {
        "snapshot" => Ok(Recovery::Snapshot),
        "restart" => Ok(Recovery::Restart),
        _ => bail!("expected `snapshot` or `restart`, got `{text}`"),
    }
}

/// A `--timeout`: the duration and how the user wrote it.
#[derive(Debug, Clone)]
struct Limit {
    after: Duration,
    text: String,
}

/// Parses `500ms`, `10s`, `2m`, `1h` or a bare number of seconds (`1.5`).
fn parse_duration(text: &str) -> Result<Limit> {
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let scale = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => bail!("unknown unit `{unit}` in `{text}` (use ms, s, m or h)"),
    };
    let value: f64 = number
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && *v > 0.0)
        .with_context(|| format!("`{text}` is not a positive duration"))?;
    let after = Duration::try_from_secs_f64(value * scale)
        .with_context(|| format!("`{text}` is too long"))?;
    Ok(Limit {
        after,
        text: text.to_string(),
    })
}

fn run(args: RunArgs) -> Result<u8> {
    solder_executor::crash::install_crash_reporter();
    // The run's limit counts from here, linking included, in process or
    // out of it.
    let deadline = args
        .timeout
        .as_ref()
        .map(|limit| Instant::now() + limit.after);
    if let Some(limit) = &args.timeout
        && matches!(args.executor, ExecutorArg::InProcess)
    {
        solder_executor::crash::arm_run_timeout(limit.after, &limit.text)
            .context("cannot arm the --timeout timer")?;
    }
    let executor = executor_choice(&args)?;
    let remote = executor != ExecutorChoice::InProcess;
    for (option, report) in [("--map", &args.map), ("--stats", &args.stats)] {
        if let Some(path) = report {
            refuse_to_overwrite_an_input(option, path)?;
        }
    }
    let threads = args
        .threads
        .map_or_else(Threads::from_environment, |n| Threads::new(n as usize));
    let config = SessionConfig {
        slab_size: args.slab.unwrap_or(1 << 30),
        placement: args.slab_address.map_or(Placement::Auto, Placement::Fixed),
        libraries: Vec::new(),
        preloads: args
            .preload
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
        execute: !args.noexec,
        executor,
        recovery: args.recovery.unwrap_or(Recovery::None),
        executor_output: args.executor_output,
    };
    let debug = if keeps_debug(&args) {
        DebugSections::Read
    } else {
        DebugSections::LeaveOut
    };
    let (session, inputs) = start_and_read(config, remote, &args.objects, threads, debug);
    let mut session = session.context("cannot start the session")?;
    let ((objects, archives), read_ms) = inputs?;
    session.set_thread_policy(threads);
    session.keep_load_stats(args.stats.is_some());
    add_inputs(&mut session, archives, &args)?;
    // Out of process the executor's timer (or the controller's deadline)
    // stops the run.
    session.set_deadline(deadline);
    let mut argv = vec![args.objects[0].display().to_string()];
    argv.extend(args.args.iter().cloned());
    session.set_program_args(&argv)?;
    if !remote {
        if args.noexec {
            let id = or_start_again(session.load(&objects), &args)?;
            write_reports(&session, id, &args, read_ms)?;
            // Only a link was asked for, and nothing ran: the process ends
            // here, and exit takes back the slab and the heap faster than
            // releasing them one by one (clang's `-disable-free`).
            solder_linker::heap::process_ending();
            std::process::exit(0);
        }
        // The entry is found among all of the load's globals (a hidden
        // `main` too) before any initializer runs.
        let (id, entry) = or_start_again(session.load_program(&objects, &args.entry), &args)?;
        write_reports(&session, id, &args, read_ms)?;
        release_inputs(&mut session, objects);
        let status = session.run_entry(entry, &args.entry)?;
        // `main` returned: the program exits as with `exit(status)`.
        session.end();
        // C's exit flushes C stdio (which JIT'd code wrote through) and runs
        // the host's own handlers; nothing of ours is used after it.
        solder_linker::heap::process_ending();
        sys::exit::exit(status)
    }
    // Out of process: the program's fate comes back as a value.
    // The map is written between linking and running: a program that
    // crashes still leaves it.
    let mut map_written = Ok(());
    let mut objects = objects;
    let status = (|| {
        if args.noexec {
            let id = session.load(&objects)?;
            map_written = write_reports(&session, id, &args, read_ms);
            return Ok(0);
        }
        let (id, entry) = session.load_program(&objects, &args.entry)?;
        map_written = write_reports(&session, id, &args, read_ms);
        if map_written.is_err() {
            return Ok(0);
        }
        release_inputs(&mut session, std::mem::take(&mut objects));
        let status = session.run_entry(entry, &args.entry)?;
        session.finish()?;
        Ok(status)
    })();
    map_written?;
    // Said while the session still knows the modules' symbols.
    let timed_out = match &status {
        Err(LinkError::Execution(abnormal)) => match abnormal.outcome {
            Outcome::TimedOut { pc, .. } => Some(timeout_report(
                &session,
                args.timeout.as_ref(),
                pc,
                &abnormal.during,
            )),
            _ => None,
        },
        _ => None,
    };
    // The executor (and a checkpoint that took over) ends here.
    drop(session);
    match status {
        Ok(status) => Ok(status as u8),
        Err(LinkError::Execution(abnormal)) => match abnormal.outcome {
            Outcome::Exited(status) => Ok(status as u8),
            Outcome::Crashed(ref crash) => {
                eprintln!("solder: {abnormal}");
                Ok(128u8.wrapping_add(crash.signal as u8))
            }
            Outcome::TimedOut { .. } => {
                eprintln!("solder: {}", timed_out.unwrap_or_default());
                Ok(solder_executor::crash::TIMED_OUT_STATUS as u8)
            }
            Outcome::Lost(_) | Outcome::Returned(_) => Err(LinkError::Execution(abnormal).into()),
        },
        Err(other) => Err(other.into()),
    }
}

/// A load in process that found static TLS full (its fixed thread-local
/// block, or a host library's that its initial-exec code needs, did not
/// fit in the loader's small default surplus) starts `solder` again, with
/// the same arguments and the surplus a spawned executor gets
/// ([`solder_linker::static_tls`]): the loader sets the surplus only when
/// a process starts. Nothing of the program has run yet, and nothing was
/// written. It starts again at most once (the new run's tunables set the
/// surplus), never over the user's own `optional_static_tls`, and not when
/// starting again would differ from this run: a `--preload`ed library's
/// initializers have run, and an input that is not a regular file (a
/// pipe) has been read up. Otherwise, or if starting again fails, the
/// load's error stands; it says how to make room.
fn or_start_again<T>(loaded: Result<T, LinkError>, args: &RunArgs) -> Result<T, LinkError> {
    let Err(error) = loaded else {
        return loaded;
    };
    let tunables = std::env::var_os("GLIBC_TUNABLES");
    if let Some(tunables) = solder_linker::static_tls::restart_tunables(&error, tunables)
        && args.preload.is_empty()
        && args.objects.iter().all(|path| path.is_file())
    {
        // Returns only when the exec failed.
        let _ = sys::process::restart_with("GLIBC_TUNABLES", &tunables);
    }
    Err(error)
}

/// Where `--executor` (with `--shm`, `--recovery`, `--executor-output`)
/// says the code runs.
fn executor_choice(args: &RunArgs) -> Result<ExecutorChoice> {
    Ok(match &args.executor {
        ExecutorArg::InProcess => {
            if args.shm || args.recovery.is_some() || args.executor_output.is_some() {
                bail!(
                    "--shm, --recovery and --executor-output need an executor process \
                     (--executor pipe or tcp=HOST:PORT)"
                );
            }
            ExecutorChoice::InProcess
        }
        ExecutorArg::Pipe => ExecutorChoice::Remote {
            transport: Transport::Pipe { program: None },
            shared_memory: args.shm,
        },
        ExecutorArg::Tcp(address) => ExecutorChoice::Remote {
            transport: Transport::Tcp {
                address: address.clone(),
                peer_timeout: std::time::Duration::from_secs(args.peer_timeout),
            },
            shared_memory: args.shm,
        },
    })
}

/// How a run that outlived `--timeout` out of process is reported, like
/// in process: `timed out after 10s, pc 0x… in main+0x1c (module 1: a.o)
/// during `main`` (the pc when the executor's timer stopped the code; a
/// run killed while initializers or deinitializers ran says only when).
fn timeout_report(
    session: &Session,
    limit: Option<&Limit>,
    pc: Option<u64>,
    during: &str,
) -> String {
    let mut text = match limit {
        Some(limit) => format!("timed out after {}", limit.text),
        None => "timed out".to_string(),
    };
    if let Some(pc) = pc {
        text.push_str(&format!(", pc {pc:#x}"));
        if let Some(symbol) = session.symbolize(pc) {
            text.push_str(&format!(" in {symbol}"));
        }
    }
    text.push_str(&format!(" during {during}"));
    text
}

/// The session and the inputs (with the milliseconds reading took). Out
/// of process the two overlap: the session waits for the executor's
/// greeting (its start, milliseconds of loading) while another thread
/// reads the inputs.
fn start_and_read(
    config: SessionConfig,
    remote: bool,
    paths: &[PathBuf],
    threads: Threads,
    debug: DebugSections,
) -> (Result<Session, LinkError>, Result<(Inputs, f64)>) {
    let timed_read = || {
        let reading = Instant::now();
        let inputs = read_inputs(paths, threads, debug)?;
        Ok((inputs, reading.elapsed().as_secs_f64() * 1e3))
    };
    if !remote {
        return (Session::new(config), timed_read());
    }
    std::thread::scope(|scope| {
        let reader = scope.spawn(timed_read);
        let session = Session::new(config);
        let inputs = reader
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (session, inputs)
    })
}

/// Objects and archives, as read from the command line.
type Inputs = (Vec<ObjectFile>, Vec<Archive>);

/// The command line's inputs: objects, and archives (known by their magic).
/// Many inputs are read on several threads ([`ObjectFile::read_all`]),
/// without their debug sections unless the session keeps debug information.
fn read_inputs(paths: &[PathBuf], threads: Threads, debug: DebugSections) -> Result<Inputs> {
    let mut objects = Vec::new();
    let mut archives = Vec::new();
    let files = ObjectFile::read_all(paths, threads, debug);
    for (path, file) in paths.iter().zip(files) {
        let file = file?;
        if is_archive(&file.bytes) {
            let directory = path.parent().unwrap_or(std::path::Path::new("."));
            archives.push(Archive::parse_file(file, Some(directory))?);
        } else {
            objects.push(file);
        }
    }
    Ok((objects, archives))
}

/// What the session takes besides the objects: the archives (given, then
/// `--whole-archive` ones, then `-l` ones), `--abs` names, and whether to
/// make link maps.
fn add_inputs(session: &mut Session, archives: Vec<Archive>, args: &RunArgs) -> Result<()> {
    // First: the archives read next keep their members' debug sections
    // only in a session that keeps debug information.
    if keeps_debug(args) {
        session.enable_debug();
    }
    for archive in archives {
        session.add_archive(archive, false);
    }
    for path in &args.whole_archive {
        let archive = session.read_archive(path)?;
        session.add_archive(archive, true);
    }
    for name in &args.library {
        session.link_library(name, &args.library_path)?;
    }
    for (name, address) in &args.absolute {
        session.define_absolute(name, *address);
    }
    session.set_link_maps(args.map.is_some() || args.print_map);
    if args.perf_map {
        session.enable_perf_map();
    }
    if args.jitdump {
        session.enable_jitdump();
    }
    Ok(())
}

/// The program is linked and about to run, and nothing else will be
/// loaded: the inputs' memory (the objects' and the archives') and what
/// the link freed go back to the system, rather than staying resident
/// while the program runs (in this process, or in the executor while this
/// one waits). RocksDB's run in process peaked at 112.5 MiB with them,
/// 75.9 without; its native executable peaks at 54.4.
fn release_inputs(session: &mut Session, objects: Vec<ObjectFile>) {
    drop(objects);
    session.close_archives();
    solder_linker::heap::give_back();
}

/// Whether the session keeps debug information (`--debug`, or
/// `SOLDER_DEBUG=1`): only then are the objects' DWARF sections read.
fn keeps_debug(args: &RunArgs) -> bool {
    args.debug || std::env::var("SOLDER_DEBUG").is_ok_and(|v| v == "1")
}

/// Refuses a report path (`--map FILE`, `--stats FILE`) that holds an
/// object or an archive: `--stats a.o b.o` takes `a.o` as the report's
/// file, and writing the report would destroy the object.
fn refuse_to_overwrite_an_input(option: &str, path: &std::path::Path) -> Result<()> {
    use std::io::Read;
    // Only a regular file can be an input lost (`/dev/stdout` is not read).
    if !std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
        return Ok(());
    }
    let mut magic = [0u8; 8];
    let read = std::fs::File::open(path).and_then(|mut file| file.read(&mut magic));
    let Ok(read) = read else {
        return Ok(()); // Nothing readable: nothing to lose.
    };
    let head = &magic[..read];
    if solder_linker::input::is_object(head) || is_archive(head) {
        bail!(
            "{option} {}: that file is an object or archive, not a report to overwrite \
             ({option} takes a file to write: name one, then the objects)",
            path.display()
        );
    }
    Ok(())
}

/// Writes what `--map`, `--print-map` and `--stats` ask for about the
/// load `id` (whose inputs took `read_ms` to read).
fn write_reports(session: &Session, id: ModuleId, args: &RunArgs, read_ms: f64) -> Result<()> {
    if let Some(path) = &args.stats {
        write_stats(session, path, read_ms)?;
    }
    write_map(session, id, args)
}

/// The last load's [`solder_linker::stats::LoadStats`] as JSON, with the
/// time the command line's inputs took to read as its first stage.
fn write_stats(session: &Session, path: &std::path::Path, read_ms: f64) -> Result<()> {
    let mut stats = session
        .last_load_stats()
        .cloned()
        .context("the session recorded no load")?;
    // This command installs `heap::Global`, so the heap's state is this
    // process's.
    stats.heap = Some(solder_linker::heap::HEAP.allocator());
    stats.stages.insert(
        0,
        solder_linker::stats::Stage {
            name: "read",
            ms: read_ms,
        },
    );
    let mut json = serde_json::to_string_pretty(&stats).context("cannot write the stats")?;
    json.push('\n');
    std::fs::write(path, json)
        .with_context(|| format!("cannot write the load's stats to {}", path.display()))
}

fn write_map(session: &Session, id: ModuleId, args: &RunArgs) -> Result<()> {
    if args.map.is_none() && !args.print_map {
        return Ok(());
    }
    let map = session
        .link_map(id)
        .context("the session made no link map for the load")?;
    let text = if args.map_format == "json" {
        let mut json = serde_json::to_string_pretty(&[map]).context("cannot write the map")?;
        json.push('\n');
        json
    } else {
        map.to_text()
    };
    if let Some(path) = &args.map {
        std::fs::write(path, &text)
            .with_context(|| format!("cannot write the link map to {}", path.display()))?;
    }
    if args.print_map {
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(text.as_bytes())?;
        stdout.flush()?;
    }
    Ok(())
}

/// Parses `NAME=ADDRESS` (`--abs`).
fn parse_absolute(text: &str) -> Result<(String, u64)> {
    match text.split_once('=') {
        Some((name, address)) if !name.is_empty() => Ok((name.to_string(), parse_number(address)?)),
        _ => bail!("expected NAME=ADDRESS, got `{text}`"),
    }
}

/// Parses `1G`, `512M`, `64K`, `4096` or `0x1000`.
fn parse_size(text: &str) -> Result<u64> {
    let (digits, shift) = match text.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&text[..text.len() - 1], 10),
        Some('M') => (&text[..text.len() - 1], 20),
        Some('G') => (&text[..text.len() - 1], 30),
        _ => (text, 0),
    };
    let value = parse_number(digits)?;
    value
        .checked_mul(1 << shift)
        .with_context(|| format!("size `{text}` is too large"))
}

fn parse_number(text: &str) -> Result<u64> {
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    match parsed {
        Ok(value) => Ok(value),
        Err(_) => bail!("`{text}` is not a number"),
    }
}
