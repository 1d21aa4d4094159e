//! OpenSSL from the `openssl-src` crate's sources (pinned in
//! `xtask/sources/Cargo.toml`), built once under `target/large/openssl/`.
//!
//! The crate's tree is copied to `target/large/openssl/openssl-VERSION/`
//! (the registry's copy stays untouched) and built there with `perl
//! Configure linux-x86_64 no-shared ...` and `make -jN build_libs`: about
//! two minutes on two cores. `build.stamp` records the source tree and the
//! commands; while it matches and both archives exist nothing is rebuilt.
//! Every member of `libssl.a` and `libcrypto.a` is then extracted (once per
//! archive) so that the load is all of both libraries, the same objects
//! for every linker, plus `fixtures/programs/openssl/driver.c`.
//!
//! The assembly is kept (no `no-asm`): OpenSSL's perlasm objects (AES-NI,
//! SHA extensions, bignum and elliptic-curve code, `OPENSSL_ia32cap_P`
//! dispatch) are what a real build links, and solder links them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};

use super::{Built, LargeProgram, compile_objects};
use crate::programs::{build, catalog};

/// `perl Configure`'s arguments: a static build of the two libraries.
const CONFIGURE: &[&str] = &[
    "linux-x86_64",
    "no-shared",
    "no-module",
    "no-tests",
    "no-docs",
    "no-comp",
    "no-zlib",
];

/// The driver's argument (its scale: see `driver.c`): about 0.5 s natively.
const SCALE: &str = "6";
const QUICK_SCALE: &str = "1";

/// Builds what is not up to date and returns the program.
/// `third_party` says where the crates' sources are.
pub(super) fn build(
    root: &Path,
    third_party: &catalog::ThirdParty,
    large: &Path,
    quick: bool,
) -> Result<LargeProgram> {
    let start = Instant::now();
    let sources = &third_party.openssl;
    let version = version(sources)?;
    let dir = large.join("openssl");
    let tree = dir.join(format!("openssl-{version}"));
    let libraries_built = build_libraries(sources, &dir, &tree)?;
    let fixtures = root.join("fixtures/programs/openssl");
    let flags = [
        "-O2".to_owned(),
        "-Wall".to_owned(),
        "-Wextra".to_owned(),
        format!("-I{}", tree.join("include").display()),
    ];
    let (mut objects, compiled) =
        compile_objects("gcc", &flags, &[fixtures.join("driver.c")], &dir)?;
    for library in ["libssl", "libcrypto"] {
        let archive = tree.join(format!("{library}.a"));
        objects.extend(extract(&archive, &dir.join("objects").join(library))?);
    }
    let native = dir.join("native");
    let linked = build::link("gcc", &[], &objects, None, &[], &native)?;
    if linked {
        println!("linked {}", native.display());
    }
    Ok(LargeProgram {
        label: format!("OpenSSL {version}: libcrypto + libssl + driver (gcc -O2, asm)"),
        objects,
        native,
        driver: "gcc",
        dir,
        workload: vec![if quick { QUICK_SCALE } else { SCALE }.into()],
        built: Built {
            rebuilt: libraries_built || compiled || linked,
            seconds: start.elapsed().as_secs_f64(),
        },
    })
}

/// `MAJOR.MINOR.PATCH` from the tree's `VERSION.dat`.
fn version(sources: &Path) -> Result<String> {
    let path = sources.join("VERSION.dat");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
            .map(str::trim)
            .with_context(|| format!("no {name} in {}", path.display()))
    };
    Ok(format!(
        "{}.{}.{}",
        field("MAJOR")?,
        field("MINOR")?,
        field("PATCH")?
    ))
}

/// The commands that build the libraries, as recorded in the stamp.
fn commands(jobs: usize) -> (Vec<String>, Vec<String>) {
    let mut configure = vec!["perl".to_owned(), "Configure".to_owned()];
    configure.extend(CONFIGURE.iter().map(|&a| a.to_owned()));
    let make = vec![
        "make".to_owned(),
        format!("-j{jobs}"),
        "build_libs".to_owned(),
    ];
    (configure, make)
}

/// Copies the sources to `tree` and builds `libcrypto.a` and `libssl.a`
/// there, unless the stamp says they are built. Returns whether it built.
fn build_libraries(sources: &Path, dir: &Path, tree: &Path) -> Result<bool> {
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    let (configure, make) = commands(jobs);
    let stamp = dir.join("build.stamp");
    // The job count is left out: it changes nothing that is built.
    let recorded = format!(
        "{}\n{}\nmake build_libs\n",
        sources.display(),
        configure.join(" ")
    );
    let have = |lib: &str| tree.join(lib).is_file();
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == recorded)
        && have("libcrypto.a")
        && have("libssl.a")
    {
        return Ok(false);
    }
    let log = dir.join("build.log");
    println!(
        "building OpenSSL in {} ({}; then {}; about 2 minutes on 2 cores; log: {})",
        tree.display(),
        configure.join(" "),
        make.join(" "),
        log.display()
    );
    let start = Instant::now();
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    if tree.exists() {
        std::fs::remove_dir_all(tree).with_context(|| format!("remove {}", tree.display()))?;
    }
    let _ = std::fs::remove_file(&stamp);
    run_logged(Command::new("cp").arg("-R").arg(sources).arg(tree), &log)?;
    run_logged(
        Command::new(&configure[0])
            .args(&configure[1..])
            .env("CC", "gcc")
            .current_dir(tree),
        &log,
    )?;
    run_logged(
        Command::new(&make[0]).args(&make[1..]).current_dir(tree),
        &log,
    )?;
    std::fs::write(&stamp, recorded).with_context(|| format!("write {}", stamp.display()))?;
    println!(
        "built OpenSSL's libraries in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    Ok(true)
}

/// Runs `command` with its output appended to `log`; on failure the error
/// has the end of the log.
fn run_logged(command: &mut Command, log: &Path) -> Result<()> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("open {}", log.display()))?;
    let err = file
        .try_clone()
        .with_context(|| format!("open {}", log.display()))?;
    let shown = format!("{command:?}");
    let status = command
        .stdout(file)
        .stderr(err)
        .status()
        .with_context(|| format!("cannot run {shown}"))?;
    if !status.success() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "{shown} failed ({status}); the end of {}:\n{}",
            log.display(),
            tail.join("\n")
        );
    }
    Ok(())
}

/// Every member of `archive`, extracted into `dir` (again only when the
/// archive is newer than the extraction); the objects, sorted.
fn extract(archive: &Path, dir: &Path) -> Result<Vec<PathBuf>> {
    let marker = dir.join(".extracted");
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let fresh = match (mtime(&marker), mtime(archive)) {
        (Some(done), Some(made)) => done >= made,
        _ => false,
    };
    if !fresh {
        println!("extracting {} into {}", archive.display(), dir.display());
        if dir.exists() {
            std::fs::remove_dir_all(dir).with_context(|| format!("remove {}", dir.display()))?;
        }
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let status = Command::new("ar")
            .arg("x")
            .arg(archive)
            .current_dir(dir)
            .status()
            .context("cannot run ar")?;
        ensure!(
            status.success(),
            "ar x {} failed ({status})",
            archive.display()
        );
        ensure_no_duplicates(archive, dir)?;
        std::fs::write(&marker, archive.display().to_string())
            .with_context(|| format!("write {}", marker.display()))?;
    }
    objects_in(dir)
}

/// Fails if two members of `archive` share a name (extraction into one
/// directory would then have kept only the last).
fn ensure_no_duplicates(archive: &Path, dir: &Path) -> Result<()> {
    let output = Command::new("ar")
        .arg("t")
        .arg(archive)
        .output()
        .context("cannot run ar")?;
    ensure!(output.status.success(), "ar t {} failed", archive.display());
    let members = String::from_utf8_lossy(&output.stdout).lines().count();
    let extracted = objects_in(dir)?.len();
    ensure!(
        members == extracted,
        "{} has {members} members but {extracted} distinct object names",
        archive.display()
    );
    Ok(())
}

/// The `.o` files of `dir`, sorted.
fn objects_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut objects = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("list {}", dir.display()))? {
        let path = entry
            .with_context(|| format!("list {}", dir.display()))?
            .path();
        if path.extension().is_some_and(|e| e == "o") {
            objects.push(path);
        }
    }
    objects.sort();
    ensure!(!objects.is_empty(), "no objects in {}", dir.display());
    Ok(objects)
}
