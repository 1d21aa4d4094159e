//! Unrecorded runs around the scaling measure: the smallest program run
//! by solder against its natively linked build, the process floor, and
//! each link's image size (`--stats` when solder has it, else the JSON
//! link map's segments).

use std::ffi::OsString;
use std::io::BufReader;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use serde::Deserialize;

use super::generate::Program;
use crate::bench::measure::{self, Ending, Run, median_rss_mib};
use crate::bench::{Schedule, Setup, alternate};
use crate::util;

/// `solder run OBJS` (executing) and the program linked by `cc`, once
/// each: same output and status, or an error naming both. Returns the
/// note saying so.
pub(super) fn runs_as_native(cx: &Setup, program: &Program) -> Result<String> {
    let native = program.dir.join("native");
    let output = Command::new("cc")
        .arg("-o")
        .arg(&native)
        .args(&program.objects)
        .current_dir(&program.dir)
        .output()
        .context("cannot run cc")?;
    ensure!(
        output.status.success(),
        "cc -o native *.o in {} failed:\n{}",
        program.dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let expected = measure::run(&native, &[] as &[&str], &program.dir, &cx.scratch)?;
    let mut args: Vec<OsString> = vec!["run".into()];
    args.extend(program.objects.iter().map(OsString::from));
    let solder = cx.release.join("solder");
    let got = measure::run(&solder, &args, &program.dir, &cx.scratch)?;
    let printed = String::from_utf8_lossy(&expected.stdout).trim().to_string();
    if got.ending != expected.ending || got.stdout != expected.stdout {
        bail!(
            "`{}` in {} did not run as the natively linked program: {} and {:?} against {} and \
             {printed:?}\n{}",
            util::shell_command(
                std::iter::once(solder.as_os_str()).chain(args.iter().map(|a| a.as_os_str()))
            ),
            program.dir.display(),
            got.ending,
            String::from_utf8_lossy(&got.stdout).trim(),
            expected.ending,
            String::from_utf8_lossy(&got.stderr)
        );
    }
    Ok(format!(
        "Check: the {:.2} MB program under `solder run` printed `{printed}` and ended with {}, \
         as its natively linked build (`cc`) did.",
        program.input_bytes as f64 / 1e6,
        got.ending
    ))
}

/// The peak resident memory of `solder --version` (median of 3): what
/// the process takes before reading anything.
pub(super) fn process_floor_mib(cx: &Setup) -> Result<f64> {
    let solder = cx.release.join("solder");
    let args = vec![OsString::from("--version")];
    let runs = alternate(
        cx,
        &[(solder.as_path(), args, cx.root.as_path())],
        Schedule::interleaved(3),
    )?;
    Ok(median_rss_mib(&runs[0]))
}

/// Fails unless every run of solder linking `program` exited with 0.
pub(super) fn ensure_linked(runs: &[Run], program: &Program) -> Result<()> {
    for run in runs {
        ensure!(
            run.ending == Ending::Exited(0),
            "`solder run --noexec main.o s0000.o ... ({} objects)` in {} ended with {}:\n{}",
            program.objects.len(),
            program.dir.display(),
            run.ending,
            String::from_utf8_lossy(&run.stderr)
        );
    }
    Ok(())
}

/// Where the image size comes from.
pub(super) enum ImageSource {
    /// `solder run --noexec --stats FILE`: `image_bytes`.
    Stats,
    /// `--map FILE --map-format json`: the sum of every load's segments.
    Map,
}

/// What `--stats` says of a link (the fields read here).
#[derive(Debug, Clone, Default, Deserialize)]
pub(super) struct Stats {
    pub image_bytes: u64,
    #[serde(default)]
    pub threads: Option<u64>,
    #[serde(default)]
    pub stages: Vec<Stage>,
}

/// One stage of the link and its time.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct Stage {
    pub name: String,
    pub ms: f64,
}

#[derive(Deserialize)]
struct MapLoad {
    segments: Vec<MapSegment>,
}

#[derive(Deserialize)]
struct MapSegment {
    size: u64,
}

impl ImageSource {
    /// `--stats` if `solder run --help` lists it.
    pub fn detect(cx: &Setup) -> Result<ImageSource> {
        let solder = cx.release.join("solder");
        let help = Command::new(&solder)
            .args(["run", "--help"])
            .output()
            .with_context(|| format!("cannot run {}", solder.display()))?;
        let text = String::from_utf8_lossy(&help.stdout);
        Ok(if text.contains("--stats") {
            ImageSource::Stats
        } else {
            ImageSource::Map
        })
    }

    pub fn describe(&self) -> &'static str {
        match self {
            ImageSource::Stats => "`image_bytes` of `--stats` (one more, unrecorded run)",
            ImageSource::Map => {
                "the sum of the segments of the JSON link map (`--map FILE --map-format json`, \
                 one more, unrecorded run)"
            }
        }
    }

    /// Links `program` once more, unrecorded, and reads the image size
    /// (with `--stats`, the rest of the stats too).
    /// Returns them and the run's wall time (s).
    pub fn probe(&self, cx: &Setup, program: &Program) -> Result<(Stats, f64)> {
        let file = cx.scratch.join("scaling/probe.json");
        let (flag, extra): (&str, &[&str]) = match self {
            ImageSource::Stats => ("--stats", &[]),
            ImageSource::Map => ("--map", &["--map-format", "json"]),
        };
        let mut args: Vec<OsString> = vec!["run".into(), "--noexec".into(), flag.into()];
        args.push(file.clone().into_os_string());
        args.extend(extra.iter().map(OsString::from));
        args.extend(program.objects.iter().map(OsString::from));
        let run = measure::run(&cx.release.join("solder"), &args, &program.dir, &cx.scratch)?;
        ensure_linked(std::slice::from_ref(&run), program)?;
        Ok((self.read(&file)?, run.wall.as_secs_f64()))
    }

    fn read(&self, file: &Path) -> Result<Stats> {
        let open = std::fs::File::open(file).with_context(|| format!("{}", file.display()))?;
        let reader = BufReader::new(open);
        Ok(match self {
            ImageSource::Stats => serde_json::from_reader::<_, Stats>(reader)
                .with_context(|| format!("{} is not --stats JSON", file.display()))?,
            ImageSource::Map => Stats {
                image_bytes: serde_json::from_reader::<_, Vec<MapLoad>>(reader)
                    .with_context(|| format!("{} is not a JSON link map", file.display()))?
                    .iter()
                    .flat_map(|load| &load.segments)
                    .map(|segment| segment.size)
                    .sum(),
                ..Stats::default()
            },
        })
    }
}
