//! `cargo xtask fuzz`: the fuzz targets of `fuzz/` (see `docs/fuzzing.md`).
//!
//! - `seed` (re)fills `fuzz/corpus/<target>/` from what the project already
//!   has: the conformance fixtures built for each format (`elf`, `macho`,
//!   `coff`), archives of them (`archive`), every protocol message the tests pin (`protocol`), the
//!   scenario files (`scenario`), libraries' linker scripts (`ld_script`),
//!   and every committed regression input.
//! - `run` seeds, builds the targets once, then runs each for a bounded
//!   time (`.ci/run` uses it); any crash, leak, timeout or out-of-memory
//!   fails it, naming the input and the commands to reproduce and minimize
//!   it.
//!
//! Fuzzing needs a nightly toolchain and cargo-fuzz (`cargo +nightly fuzz`);
//! seeding needs neither.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use solder_conformance::archives::write_archive;
use solder_conformance::formats::Format;
use solder_conformance::schema::ArchiveSpec;
use solder_executor::protocol::{example_replies, example_requests};

use crate::util;

/// Every fuzz target, as `fuzz/Cargo.toml` declares them.
pub const TARGETS: [&str; 7] = [
    "elf",
    "macho",
    "coff",
    "archive",
    "protocol",
    "scenario",
    "ld_script",
];

/// libFuzzer's limits for every run: an input that takes longer or uses
/// more memory is a defect (a hang, an allocation blow-up), not slowness.
pub const LIBFUZZER_LIMITS: [&str; 2] = ["-rss_limit_mb=2048", "-timeout=10"];

/// Options of `cargo xtask fuzz`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// (Re)seed fuzz/corpus/<target>/ from the fixtures' objects, the
    /// pinned protocol frames, the scenarios and the regressions.
    Seed {
        /// Empty each corpus first (drops what fuzzing added).
        #[arg(long)]
        clean: bool,
    },
    /// Seed, build, and run each target (or those named) for a bounded
    /// time; fails on the first crash.
    Run {
        /// Seconds per target.
        #[arg(long, default_value_t = 30)]
        seconds: u32,
        /// Targets to run (default: all).
        #[arg(value_parser = TARGETS)]
        targets: Vec<String>,
    },
}

/// Runs the action; true when it passed.
pub fn run(args: &Args) -> Result<bool> {
    let root = util::workspace_root();
    match &args.action {
        Action::Seed { clean } => {
            seed(&root, *clean)?;
            Ok(true)
        }
        Action::Run { seconds, targets } => {
            seed(&root, false)?;
            let targets: Vec<&str> = if targets.is_empty() {
                TARGETS.to_vec()
            } else {
                targets.iter().map(String::as_str).collect()
            };
            fuzz_each(&root, &targets, *seconds)
        }
    }
}

/// Fills every target's corpus; prints how many seeds each got.
fn seed(root: &Path, clean: bool) -> Result<()> {
    let corpus = root.join("fuzz").join("corpus");
    for target in TARGETS {
        let dir = corpus.join(target);
        if clean && dir.exists() {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("cannot empty {}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let objects = seed_objects(root, &corpus)? + seed_debug_objects(root, &corpus.join("elf"))?;
    let archives = seed_archives(root, &corpus.join("archive"))?;
    let frames = seed_frames(&corpus.join("protocol"))?;
    let scenarios = seed_scenarios(root, &corpus.join("scenario"))?;
    let scripts = seed_scripts(&corpus.join("ld_script"))?;
    let regressions = seed_regressions(root, &corpus)?;
    println!(
        "fuzz: seeded {objects} objects, {archives} archives, {frames} protocol frames, \
         {scenarios} scenarios, {scripts} linker scripts and {regressions} regression inputs \
         into {}",
        corpus.display()
    );
    Ok(())
}

/// Writes `bytes` as `dir/name` unless an identical file is there.
fn put(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let path = dir.join(name);
    if std::fs::read(&path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// The conformance fixtures, built for every format whose compiler is
/// here, into the format's corpus.
fn seed_objects(root: &Path, corpus: &Path) -> Result<usize> {
    let target = util::target_dir(root)?;
    let formats = Format::all();
    if crate::conformance::build_fixtures(root, &target, &formats)? {
        bail!("a conformance fixture failed to build (see above)");
    }
    let mut count = 0;
    for format in formats {
        let built = target.join("conformance").join(format.name());
        let extension = format.info().object_extension;
        let dir = corpus.join(format.name());
        for path in files_under(&built)? {
            if path.extension().and_then(|e| e.to_str()) != Some(extension) {
                continue;
            }
            let relative = path.strip_prefix(&built).unwrap_or(&path);
            let name = relative.to_string_lossy().replace('/', "-");
            let bytes =
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            put(&dir, &name, &bytes)?;
            count += 1;
        }
    }
    Ok(count)
}

/// Small ELF objects built with `-g` (no conformance fixture has DWARF),
/// so that the `elf` target plans reads without debug sections
/// (`probe::differs_without_debug`) from its first input on.
fn seed_debug_objects(root: &Path, dir: &Path) -> Result<usize> {
    let scratch = util::target_dir(root)?.join("fuzz-seed-debug");
    std::fs::create_dir_all(&scratch)
        .with_context(|| format!("cannot create {}", scratch.display()))?;
    let source = scratch.join("debug.c");
    std::fs::write(
        &source,
        "struct point { long x, y; };\nstatic long scale = 3;\n\
         long area(struct point *p) { return p->x * p->y * scale; }\n\
         long (*pick(void))(struct point *) { return area; }\n",
    )
    .with_context(|| format!("cannot write {}", source.display()))?;
    let mut count = 0;
    for (name, flags) in [
        ("debug-g.o", &["-g"][..]),
        ("debug-g-fpic.o", &["-g", "-fPIC"]),
    ] {
        let object = scratch.join(name);
        let mut command: Vec<String> = ["cc", "-c", "-O1"].map(str::to_owned).to_vec();
        command.extend(flags.iter().map(|&f| f.to_owned()));
        command.extend([
            source.display().to_string(),
            "-o".to_owned(),
            object.display().to_string(),
        ]);
        crate::programs::build::run_tool(&command)
            .with_context(|| format!("cannot compile the -g seed {name}"))?;
        let bytes =
            std::fs::read(&object).with_context(|| format!("cannot read {}", object.display()))?;
        put(dir, name, &bytes)?;
        count += 1;
    }
    Ok(count)
}

/// Archives of the conformance fixtures (built by [`seed_objects`]): per
/// format, a few small ones, with and without a symbol index.
fn seed_archives(root: &Path, dir: &Path) -> Result<usize> {
    let target = util::target_dir(root)?;
    let scratch = target.join("fuzz-seed-archives");
    let mut count = 0;
    for format in Format::all() {
        let built = target.join("conformance").join(format.name());
        let extension = format.info().object_extension;
        let objects: Vec<PathBuf> = files_under(&built)?
            .into_iter()
            .filter(|p| p.extension().and_then(|e| e.to_str()) == Some(extension))
            .collect();
        for (i, group) in objects.chunks(3).take(8).enumerate() {
            for index in [true, false] {
                let spec = ArchiveSpec {
                    members: Vec::new(),
                    whole: true,
                    index,
                    damage: None,
                };
                let members: Vec<(String, PathBuf)> = group
                    .iter()
                    .enumerate()
                    .map(|(m, path)| (format!("m{m}"), path.clone()))
                    .collect();
                let name = format!(
                    "{}-{i}-{}",
                    format.name(),
                    if index { "index" } else { "scan" }
                );
                let path = write_archive(&scratch, &name, format, &spec, &members)
                    .with_context(|| format!("cannot write archive {name}"))?;
                let bytes = std::fs::read(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                put(dir, &format!("{name}.a"), &bytes)?;
                count += 1;
            }
        }
    }
    Ok(count)
}

/// Every request and reply the protocol tests pin, each as a bare frame
/// (what `decode` takes) and with its length prefix (what `read_frame`
/// reads).
fn seed_frames(dir: &Path) -> Result<usize> {
    let mut count = 0;
    let requests = example_requests()
        .into_iter()
        .map(|r| (r.name(), r.encode()));
    let replies = example_replies()
        .into_iter()
        .map(|r| (r.name(), r.encode()));
    for (kind, messages) in [
        ("request", requests.collect::<Vec<_>>()),
        ("reply", replies.collect()),
    ] {
        for (i, (name, framed)) in messages.iter().enumerate() {
            put(dir, &format!("{kind}-{i:02}-{name}"), &framed[4..])?;
            put(dir, &format!("{kind}-{i:02}-{name}.framed"), framed)?;
            count += 2;
        }
    }
    Ok(count)
}

/// Every scenario file, as `<area>-<name>.yaml`.
fn seed_scenarios(root: &Path, dir: &Path) -> Result<usize> {
    let scenarios = root.join("conformance").join("scenarios");
    let mut count = 0;
    for path in files_under(&scenarios)? {
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let relative = path.strip_prefix(&scenarios).unwrap_or(&path);
        let name = relative.to_string_lossy().replace('/', "-");
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        put(dir, &name, &bytes)?;
        count += 1;
    }
    Ok(count)
}

/// Libraries' linker scripts: the forms the reader takes, and the C
/// library's own where this system has them.
fn seed_scripts(dir: &Path) -> Result<usize> {
    let written: [(&str, &str); 3] = [
        (
            "group-as-needed",
            "/* GNU ld script */\nOUTPUT_FORMAT(elf64-x86-64)\n\
             GROUP ( /lib/libc.so.6 /usr/lib/libc_nonshared.a AS_NEEDED ( /lib64/ld.so.2 ) )\n",
        ),
        ("input-relative", "INPUT(libm.so.6, -lmvec)"),
        ("sections", "SECTIONS { . = 0x1000; }"),
    ];
    for (name, text) in written {
        put(dir, name, text.as_bytes())?;
    }
    let mut count = written.len();
    for system in ["libc.so", "libm.so", "libpthread.so"] {
        let path = Path::new("/usr/lib/x86_64-linux-gnu").join(system);
        if let Ok(bytes) = std::fs::read(&path)
            && bytes.len() < 64 << 10
        {
            put(dir, &format!("system-{system}"), &bytes)?;
            count += 1;
        }
    }
    Ok(count)
}

/// Every committed regression input (`fuzz/regressions/<target>/`) into
/// its target's corpus: what once crashed is a good place to start.
fn seed_regressions(root: &Path, corpus: &Path) -> Result<usize> {
    let regressions = root.join("fuzz").join("regressions");
    let mut count = 0;
    for target in TARGETS {
        let dir = regressions.join(target);
        if !dir.is_dir() {
            continue;
        }
        for path in files_under(&dir)? {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            let name = format!("regression-{}", name.unwrap_or_default());
            let bytes =
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            put(&corpus.join(target), &name, &bytes)?;
            count += 1;
        }
    }
    Ok(count)
}

/// The files under `dir` (recursively), sorted; none when it is missing.
fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry
                .with_context(|| format!("cannot list {}", dir.display()))?
                .path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// `cargo +nightly fuzz ARGS` in `fuzz/`, through rustup's `cargo` (the
/// `CARGO` that runs xtask is a stable toolchain's own binary, which does
/// not understand `+nightly`).
fn cargo_fuzz(root: &Path) -> Command {
    let mut command = Command::new("cargo");
    command
        .current_dir(root.join("fuzz"))
        .env_remove("CARGO")
        .env_remove("RUSTUP_TOOLCHAIN")
        .args(["+nightly", "fuzz"]);
    command
}

/// Builds every target once, then runs each of `targets` for `seconds`;
/// true when none crashed.
fn fuzz_each(root: &Path, targets: &[&str], seconds: u32) -> Result<bool> {
    let status = cargo_fuzz(root)
        .arg("build")
        .status()
        .context("cannot run `cargo +nightly fuzz build`")?;
    if !status.success() {
        bail!("`cargo +nightly fuzz build` failed ({status})");
    }
    let mut passed = true;
    for target in targets {
        let time = format!("-max_total_time={seconds}");
        let mut command = cargo_fuzz(root);
        command
            .args(["run", target, "--", &time, "-print_final_stats=1"])
            .args(LIBFUZZER_LIMITS);
        println!("== fuzz {target} ({seconds} s): {}", describe(&command));
        let status = command
            .status()
            .with_context(|| format!("cannot run the fuzz target {target}"))?;
        if !status.success() {
            passed = false;
            eprintln!(
                "fuzz: {target} failed ({status}). libFuzzer named the input above \
                 (fuzz/artifacts/{target}/...). Reproduce with\n  \
                 (cd fuzz && cargo +nightly fuzz run {target} ARTIFACT)\nminimize with\n  \
                 (cd fuzz && cargo +nightly fuzz tmin {target} ARTIFACT)\nthen fix it and add \
                 it as fuzz/regressions/{target}/NAME (docs/fuzzing.md)."
            );
        }
    }
    Ok(passed)
}

/// The command as it can be pasted into a shell (from `fuzz/`).
fn describe(command: &Command) -> String {
    util::shell_command(std::iter::once(command.get_program()).chain(command.get_args()))
}
