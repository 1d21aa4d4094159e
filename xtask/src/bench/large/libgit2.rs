//! libgit2 from the `libgit2-sys` crate's sources (pinned in
//! `xtask/sources/Cargo.toml`) with the libraries it bundles (llhttp,
//! xdiff, PCRE2, SHA-1 collision detection) and zlib from `libz-sys`,
//! built once under `target/large/libgit2/` as that crate's build script
//! builds them: gcc -O2 with a section per function and per datum, hidden
//! visibility, threads on, the built-in SHA-256 and regular expressions.
//! Hundreds of small objects with thousands of sections each: a program
//! of another shape than OpenSSL's larger objects or the C++ program's
//! COMDAT groups. `fixtures/programs/libgit2/driver.c` drives it (commits
//! into objects kept in memory, a history walk, diffs, configuration, a
//! pack built with delta search on two threads).
//!
//! Each source directory compiles into a directory of its own under
//! `objects/` (two directories hold files of one name); only what is out
//! of date is compiled.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, ensure};

use super::{Driven, LargeProgram, compile_groups};
use crate::programs::catalog;

/// The driver's argument (commits): about half a second natively, a
/// third of it in the kernel (references and configuration on disk).
const COMMITS: &str = "200";
const QUICK_COMMITS: &str = "5";

/// What the crate's build script writes into `git2_features.h` on Linux
/// without HTTPS or SSH.
const FEATURES: &str = "#ifndef INCLUDE_features_h
#define INCLUDE_features_h
#define GIT_THREADS 1
#define GIT_TRACE 1
#define GIT_HTTPPARSER_BUILTIN 1
#define GIT_USE_NSEC 1
#define GIT_IO_POLL 1
#define GIT_IO_SELECT 1
#define GIT_USE_STAT_MTIM 1
#define GIT_ARCH_64 1
#define GIT_SHA1_COLLISIONDETECT 1
#define GIT_SHA256_BUILTIN 1
#endif
";

/// The preprocessor definitions of the crate's build script.
const DEFINES: &[&str] = &[
    "-DGIT_REGEX_BUILTIN=1",
    "-DPCRE2_STATIC",
    "-DPCRE2_EXPORT=",
    "-DPCRE2_EXP_DECL=",
    "-DPCRE2_EXP_DEFN=",
    "-DPCRE2_CODE_UNIT_WIDTH=8",
    "-DSUPPORT_PCRE2_8=1",
    "-DSUPPORT_UNICODE=1",
    "-DLINK_SIZE=2",
    "-DHEAP_LIMIT=20000000",
    "-DMATCH_LIMIT=10000000",
    "-DMATCH_LIMIT_DEPTH=MATCH_LIMIT",
    "-DMAX_VARLOOKBEHIND=255",
    "-DNEWLINE_DEFAULT=2",
    "-DPARENS_NEST_LIMIT=250",
    "-DMAX_NAME_SIZE=128",
    "-DMAX_NAME_COUNT=10000",
    "-DSHA1DC_NO_STANDARD_INCLUDES=1",
    "-DSHA1DC_CUSTOM_INCLUDE_SHA1_C=\"common.h\"",
    "-DSHA1DC_CUSTOM_INCLUDE_UBC_CHECK_C=\"common.h\"",
];

/// PCRE2's sources the crate builds (`deps/pcre2/pcre2_NAME.c`).
const PCRE2: &[&str] = &[
    "auto_possess",
    "chartables",
    "chkdint",
    "compile",
    "compile_cgroup",
    "compile_class",
    "config",
    "context",
    "convert",
    "dfa_match",
    "error",
    "extuni",
    "find_bracket",
    "maketables",
    "match",
    "match_data",
    "match_next",
    "newline",
    "ord2utf",
    "pattern_info",
    "script_run",
    "serialize",
    "string_utils",
    "study",
    "substitute",
    "substring",
    "tables",
    "ucd",
    "valid_utf",
    "xclass",
];

/// Builds what is not up to date and returns the program.
/// `third_party` says where the crates' sources are.
pub(super) fn build(
    root: &Path,
    third_party: &catalog::ThirdParty,
    large: &Path,
    quick: bool,
) -> Result<LargeProgram> {
    let start = Instant::now();
    let (git, zlib) = (&third_party.libgit2, &third_party.zlib);
    let dir = large.join("libgit2");
    let generated = dir.join("generated");
    std::fs::create_dir_all(&generated)
        .with_context(|| format!("create {}", generated.display()))?;
    write_if_changed(&generated.join("git2_features.h"), FEATURES)?;
    let mut flags: Vec<String> = [
        "-O2",
        "-fPIC",
        "-ffunction-sections",
        "-fdata-sections",
        "-fvisibility=hidden",
        "-w",
    ]
    .map(str::to_owned)
    .to_vec();
    for include in [
        generated.clone(),
        git.join("include"),
        git.join("src/libgit2"),
        git.join("src/util"),
        git.join("deps/llhttp"),
        git.join("deps/xdiff"),
        git.join("deps/pcre2"),
        zlib.clone(),
    ] {
        flags.push(format!("-I{}", include.display()));
    }
    flags.extend(DEFINES.iter().map(|&d| d.to_owned()));
    println!(
        "libgit2: compiling its sources into {} (gcc {}; only what changed)",
        dir.join("objects").display(),
        flags[..6].join(" ")
    );
    let groups = source_groups(git, zlib)?
        .into_iter()
        .map(|(name, group)| (name.to_owned(), group));
    let (objects, compiled) = compile_groups("gcc", &flags, groups, &dir)?;
    let driver = Driven {
        label: "libgit2 1.9.7 + zlib + driver (gcc -O2, a section per function)".to_owned(),
        compiler: "gcc",
        driver: root.join("fixtures/programs/libgit2/driver.c"),
        driver_flags: vec![
            "-O2".to_owned(),
            "-Wall".to_owned(),
            "-Wextra".to_owned(),
            format!("-I{}", git.join("include").display()),
        ],
        dir,
        workload: if quick { QUICK_COMMITS } else { COMMITS },
        start,
    };
    driver.build(objects, compiled)
}

/// The sources the crate's build script compiles, by the directory their
/// objects go to.
fn source_groups(git: &Path, zlib: &Path) -> Result<Vec<(&'static str, Vec<PathBuf>)>> {
    let mut groups = Vec::new();
    for (name, sub) in [
        ("libgit2", "src/libgit2"),
        ("util", "src/util"),
        ("transports", "src/libgit2/transports"),
        ("streams", "src/libgit2/streams"),
        ("llhttp", "deps/llhttp"),
        ("xdiff", "deps/xdiff"),
        ("unix", "src/util/unix"),
    ] {
        groups.push((name, c_files(&git.join(sub))?));
    }
    let pcre2 = PCRE2
        .iter()
        .map(|n| git.join(format!("deps/pcre2/pcre2_{n}.c")));
    groups.push(("pcre2", pcre2.collect()));
    let util = git.join("src/util");
    groups.push((
        "allocators",
        vec![
            util.join("allocators/failalloc.c"),
            util.join("allocators/stdalloc.c"),
        ],
    ));
    groups.push((
        "hash",
        vec![
            util.join("hash/collisiondetect.c"),
            util.join("hash/builtin.c"),
            util.join("hash/rfc6234/sha224-256.c"),
        ],
    ));
    groups.push((
        "sha1dc",
        vec![
            util.join("hash/sha1dc/sha1.c"),
            util.join("hash/sha1dc/ubc_check.c"),
        ],
    ));
    let zlib_sources = [
        "adler32", "compress", "crc32", "deflate", "infback", "inffast", "inflate", "inftrees",
        "trees", "uncompr", "zutil",
    ];
    groups.push((
        "zlib",
        zlib_sources
            .iter()
            .map(|n| zlib.join(format!("{n}.c")))
            .collect(),
    ));
    for (name, group) in &groups {
        for source in group {
            ensure!(
                source.is_file(),
                "{} is missing ({name}; has libgit2-sys or libz-sys changed its layout?)",
                source.display()
            );
        }
    }
    Ok(groups)
}

/// The `.c` files directly in `dir`, sorted; at least one.
fn c_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let files = catalog::files_with_extension(dir, "c")?;
    ensure!(!files.is_empty(), "no C sources in {}", dir.display());
    Ok(files)
}

/// Writes `text` to `path` unless it holds it already (its objects would
/// otherwise look out of date).
fn write_if_changed(path: &Path, text: &str) -> Result<()> {
    if std::fs::read_to_string(path).is_ok_and(|t| t == text) {
        return Ok(());
    }
    std::fs::write(path, text).with_context(|| format!("write {}", path.display()))
}
