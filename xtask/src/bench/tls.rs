//! The TLS access benchmark: a loop over a thread-local counter
//! (`fixtures/bench/tls_loop.c`), in each access model, under `solder run`
//! against the same code linked natively: as a program for local and
//! initial exec (which the platform's linker relaxes to local exec: the
//! fastest native form), and in a shared library loaded with `dlopen` for
//! general dynamic and descriptors (what those models are for).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::report::Table;
use super::{Schedule, Setup, alternate, ensure_same_output, native_vs_solder_row};

/// One access model: its name, compiler flags, and whether the native
/// contestant is the code in a `dlopen`ed library (else a program).
struct Model {
    name: &'static str,
    flags: &'static [&'static str],
    in_library: bool,
}

const MODELS: [Model; 4] = [
    Model {
        name: "local exec (-fPIE)",
        flags: &["-fPIE"],
        in_library: false,
    },
    Model {
        name: "initial exec (-fPIC -ftls-model=initial-exec)",
        flags: &["-fPIC", "-ftls-model=initial-exec"],
        in_library: false,
    },
    Model {
        name: "general dynamic (-fPIC)",
        flags: &["-fPIC"],
        in_library: true,
    },
    Model {
        name: "descriptors (-fPIC -mtls-dialect=gnu2)",
        flags: &["-fPIC", "-mtls-dialect=gnu2"],
        in_library: true,
    },
];

/// Target: at most this ratio to native, for every model (local and
/// initial exec against the relaxed native program, general dynamic and
/// descriptors against the `dlopen`ed library: no slower, within the
/// machine's noise).
const TARGET: f64 = 1.05;

pub(super) fn tls_access(cx: &Setup, met: &mut Vec<bool>) -> Result<Table> {
    let iterations = if cx.quick { "100000" } else { "300000000" };
    let mut table = Table::new(
        "TLS access: `solder run` against native code",
        &format!(
            "`fixtures/bench/tls_loop.c`: {iterations} calls of a function adding to a \
             thread-local counter, whole process (solder's time includes linking), built with \
             gcc -O2 in each model. Local and initial exec against the natively linked program \
             (whose linker relaxes initial exec to local exec); general dynamic and descriptors \
             against the same object in a shared library loaded with `dlopen` \
             (`fixtures/bench/tls_dlopen.c`), which calls `__tls_get_addr`: solder rewrites \
             general-dynamic sequences to initial exec when the block has room in static TLS \
             (`docs/architecture.md`), so its code makes no call. Outputs must match. Target: \
             at most {TARGET:.2}× native."
        ),
        &[
            "model",
            "native",
            "solder (in-process)",
            "ratio",
            "≤ 1.05×",
            "solder (executor, pipe)",
            "ratio",
        ],
    );
    let dir = cx.scratch.join("tls");
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let fixtures = cx.root.join("fixtures/bench");
    let main = compile(&fixtures.join("tls_main.c"), &dir, "main", &["-fPIE"])?;
    let driver = dir.join("tls_dlopen");
    cc(&[
        fixtures.join("tls_dlopen.c").as_os_str(),
        "-O2".as_ref(),
        "-o".as_ref(),
        driver.as_os_str(),
    ])?;
    let solder = cx.release.join("solder");
    for (index, model) in MODELS.iter().enumerate() {
        let tag = format!("model{index}");
        let object = compile(&fixtures.join("tls_loop.c"), &dir, &tag, model.flags)?;
        let (native, native_args) = if model.in_library {
            let library = dir.join(format!("libtls_{tag}.so"));
            cc(&[
                "-shared".as_ref(),
                object.as_os_str(),
                "-o".as_ref(),
                library.as_os_str(),
            ])?;
            let args = vec![library.into_os_string(), iterations.into()];
            (driver.clone(), args)
        } else {
            let program = dir.join(format!("tls_{tag}"));
            cc(&[
                object.as_os_str(),
                main.as_os_str(),
                "-o".as_ref(),
                program.as_os_str(),
            ])?;
            (program, vec![iterations.into()])
        };
        let solder_args = |executor: &[&str]| -> Vec<OsString> {
            let mut a: Vec<OsString> = vec!["run".into()];
            a.extend(executor.iter().map(OsString::from));
            a.extend([
                object.clone().into_os_string(),
                main.clone().into_os_string(),
            ]);
            a.extend(["--".into(), iterations.into()]);
            a
        };
        let contestants = vec![
            (native.as_path(), native_args, dir.as_path()),
            (solder.as_path(), solder_args(&[]), dir.as_path()),
            (
                solder.as_path(),
                solder_args(&["--executor", "pipe"]),
                dir.as_path(),
            ),
        ];
        let results = alternate(cx, &contestants, Schedule::interleaved(cx.runs))?;
        let label = format!("TLS access, {}", model.name);
        ensure_same_output(&label, &results)?;
        // Out of process too: the target holds in every executor.
        let (ok, row) = native_vs_solder_row(model.name.to_string(), &results, TARGET, true);
        met.push(ok);
        table.row(row);
    }
    Ok(table)
}

/// `cc -O2 FLAGS -c SOURCE -o DIR/STEM-TAG.o`.
fn compile(source: &Path, dir: &Path, tag: &str, flags: &[&str]) -> Result<PathBuf> {
    let stem = source.file_stem().unwrap_or_default().to_string_lossy();
    let object = dir.join(format!("{stem}-{tag}.o"));
    let mut args: Vec<&std::ffi::OsStr> = vec!["-O2".as_ref(), "-c".as_ref()];
    args.extend(flags.iter().map(std::ffi::OsStr::new));
    args.extend([source.as_os_str(), "-o".as_ref(), object.as_os_str()]);
    cc(&args)?;
    Ok(object)
}

fn cc(args: &[&std::ffi::OsStr]) -> Result<()> {
    let output = Command::new("cc")
        .args(args)
        .output()
        .context("cannot run cc")?;
    if !output.status.success() {
        bail!(
            "cc {} failed:\n{}",
            args.iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}
