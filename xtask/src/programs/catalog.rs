//! What the programs tier builds and runs: the compilers, the variants, the
//! programs (their sources, flags and run cases), and where the third-party
//! sources come from.
//!
//! Third-party C code is never vendored. `xtask/sources/Cargo.toml` names
//! crates.io source packages (`lua-src`, `libsqlite3-sys` with `bundled`,
//! `libmimalloc-sys`, `libz-sys`, and `openssl-src` for `cargo xtask bench
//! --large`);
//! [`locate_sources`] runs `cargo metadata` on that manifest, which downloads
//! the crates (pinned by `xtask/sources/Cargo.lock`), and finds the C code
//! inside them. Our own sources live in `fixtures/programs/`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use serde::Deserialize;

use crate::util;

/// A C/C++ toolchain: the C driver and the C++ driver.
#[derive(Debug)]
pub struct Compiler {
    pub name: &'static str,
    pub cc: &'static str,
    pub cxx: &'static str,
}

pub const COMPILERS: &[Compiler] = &[
    Compiler {
        name: "gcc",
        cc: "gcc",
        cxx: "g++",
    },
    Compiler {
        name: "clang",
        cc: "clang",
        cxx: "clang++",
    },
];

/// Code-generation flavour of a build. `default` uses the flags the compiler
/// ships with (Debian's gcc and clang both default to PIE).
#[derive(Debug)]
pub struct Variant {
    pub name: &'static str,
    pub cflags: &'static [&'static str],
    pub ldflags: &'static [&'static str],
}

pub const DEFAULT: Variant = Variant {
    name: "default",
    cflags: &[],
    ldflags: &[],
};

/// Position-dependent code: absolute 32-bit relocations, linked `-no-pie`.
pub const FNO_PIC: Variant = Variant {
    name: "fno-pic",
    cflags: &["-fno-pic"],
    ldflags: &["-no-pie"],
};

/// With debug information (`-g`): what `cargo xtask bench --only debug`
/// links with and without `--debug`.
pub const DEBUG_INFO: Variant = Variant {
    name: "g",
    cflags: &["-g"],
    ldflags: &[],
};

/// Flags every compilation gets.
pub const COMMON_CFLAGS: &[&str] = &["-O2"];

/// Libraries every native link gets.
pub const COMMON_LIBS: &[&str] = &["-lm"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    C,
    Cxx,
}

/// One translation unit and the flags only it needs.
#[derive(Debug)]
pub struct Source {
    pub path: PathBuf,
    pub flags: Vec<String>,
}

impl Source {
    fn new(path: PathBuf) -> Self {
        Self {
            path,
            flags: Vec::new(),
        }
    }

    pub fn lang(&self) -> Lang {
        match self.path.extension().and_then(|e| e.to_str()) {
            Some("cpp" | "cc" | "cxx") => Lang::Cxx,
            _ => Lang::C,
        }
    }
}

/// One run of a program: a name (unique within the program) and its argv.
#[derive(Debug)]
pub struct Case {
    pub name: String,
    pub args: Vec<String>,
}

impl Case {
    fn new(name: &str, args: &[&str]) -> Self {
        Self {
            name: name.to_owned(),
            args: args.iter().map(|&a| a.to_owned()).collect(),
        }
    }
}

/// A program: sources compiled to one object each, linked together.
#[derive(Debug)]
pub struct Program {
    pub name: &'static str,
    /// Flags for every source of the program (defines, include paths).
    pub cflags: Vec<String>,
    pub sources: Vec<Source>,
    pub variants: Vec<&'static Variant>,
    pub cases: Vec<Case>,
    /// Working directory of every run (scripts are named relative to it).
    pub cwd: PathBuf,
    /// What the built objects must contain (relocation types, section
    /// names, `symbol:NAME`, as the conformance suite's `exercises`),
    /// checked with an independent reader after compiling: what the
    /// program is here to exercise.
    pub exercises: &'static [&'static str],
    /// Whether the program is linked from a static archive of its objects.
    pub archive: Option<ArchiveSpec>,
}

/// A program linked from a static archive (`ar rcs libNAME.a ...`): every
/// object but the `outside` ones goes into the archive; the rest are linked
/// as objects, with the archive after them.
#[derive(Debug)]
pub struct ArchiveSpec {
    /// The archive's file name (`liblua.a`).
    pub name: &'static str,
    /// Object stems linked as objects, not archived (`host`).
    pub outside: &'static [&'static str],
    /// Every member linked (`--whole-archive`), not only the needed ones.
    pub whole: bool,
}

impl Program {
    /// Whether the native link needs the C++ driver.
    pub fn lang(&self) -> Lang {
        if self.sources.iter().any(|s| s.lang() == Lang::Cxx) {
            Lang::Cxx
        } else {
            Lang::C
        }
    }

    /// The name of the program in a variant: `lua`, `lua-fno-pic`.
    pub fn label(&self, variant: &Variant) -> String {
        if variant.name == DEFAULT.name {
            self.name.to_owned()
        } else {
            format!("{}-{}", self.name, variant.name)
        }
    }
}

/// Where the third-party C sources are on this machine.
#[derive(Debug)]
pub struct ThirdParty {
    /// `lua-src-*/lua-5.4.9`
    pub lua: PathBuf,
    /// `libsqlite3-sys-*/sqlite3` (holds `sqlite3.c`, `sqlite3.h`)
    pub sqlite: PathBuf,
    /// `libmimalloc-sys-*/c_src/mimalloc/v2` (holds `src/static.c`,
    /// `include/mimalloc.h`)
    pub mimalloc: PathBuf,
    /// `libz-sys-*/src/zlib` (holds `deflate.c`, `zlib.h`)
    pub zlib: PathBuf,
    /// `openssl-src-*/openssl` (holds `Configure`, `VERSION.dat`): built
    /// by `cargo xtask bench --large` only.
    pub openssl: PathBuf,
    /// `libgit2-sys-*/libgit2` (holds `src/libgit2`, `deps`, `include`):
    /// built by `cargo xtask bench --large` only.
    pub libgit2: PathBuf,
    /// `librocksdb-sys-*` (holds `rocksdb/`, `rocksdb_lib_sources.txt`
    /// and `build_version.cc`): built by `cargo xtask bench --large` only.
    pub rocksdb: PathBuf,
}

/// Runs `cargo metadata` on `xtask/sources/Cargo.toml` (downloading the
/// source crates if needed) and finds the Lua and SQLite sources inside them.
pub fn locate_sources(root: &Path) -> Result<ThirdParty> {
    #[derive(Deserialize)]
    struct Metadata {
        packages: Vec<Package>,
    }
    #[derive(Deserialize)]
    struct Package {
        name: String,
        version: String,
        manifest_path: PathBuf,
    }

    let manifest = root.join("xtask/sources/Cargo.toml");
    let output = Command::new(util::cargo())
        .args([
            "metadata",
            "--format-version",
            "1",
            "--locked",
            "--manifest-path",
        ])
        .arg(&manifest)
        .output()
        .with_context(|| format!("cannot run `cargo metadata` on {}", manifest.display()))?;
    if !output.status.success() {
        bail!(
            "`cargo metadata --manifest-path {}` failed ({}):\n{}",
            manifest.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let metadata: Metadata = serde_json::from_slice(&output.stdout).with_context(|| {
        format!(
            "cannot parse `cargo metadata` output for {}",
            manifest.display()
        )
    })?;

    let package_dir = |name: &str| -> Result<PathBuf> {
        let package = metadata
            .packages
            .iter()
            .find(|p| p.name == name)
            .with_context(|| format!("package `{name}` is missing from {}", manifest.display()))?;
        let dir = package.manifest_path.parent().with_context(|| {
            format!(
                "odd manifest path {} of {name}",
                package.manifest_path.display()
            )
        })?;
        println!("sources: {name} {} at {}", package.version, dir.display());
        Ok(dir.to_path_buf())
    };
    let lua = package_dir("lua-src")?.join("lua-5.4.9");
    let sqlite = package_dir("libsqlite3-sys")?.join("sqlite3");
    let mimalloc = package_dir("libmimalloc-sys")?.join("c_src/mimalloc/v2");
    let zlib = package_dir("libz-sys")?.join("src/zlib");
    let openssl = package_dir("openssl-src")?.join("openssl");
    let libgit2 = package_dir("libgit2-sys")?.join("libgit2");
    let rocksdb = package_dir("librocksdb-sys")?;
    ensure!(
        rocksdb.join("rocksdb_lib_sources.txt").is_file(),
        "{} has no rocksdb_lib_sources.txt (has librocksdb-sys changed its layout?)",
        rocksdb.display()
    );
    ensure!(
        libgit2.join("src/libgit2/repository.c").is_file(),
        "{} has no src/libgit2/repository.c (has libgit2-sys changed its layout?)",
        libgit2.display()
    );
    ensure!(
        openssl.join("Configure").is_file(),
        "{} has no Configure (has openssl-src changed its layout?)",
        openssl.display()
    );
    ensure!(
        zlib.join("deflate.c").is_file(),
        "{} has no deflate.c (has libz-sys changed its layout?)",
        zlib.display()
    );
    ensure!(
        lua.join("lua.h").is_file(),
        "{} has no lua.h (has lua-src changed its layout?)",
        lua.display()
    );
    ensure!(
        sqlite.join("sqlite3.c").is_file(),
        "{} has no sqlite3.c (is the `bundled` feature of libsqlite3-sys enabled?)",
        sqlite.display()
    );
    ensure!(
        mimalloc.join("src/static.c").is_file(),
        "{} has no src/static.c (has libmimalloc-sys changed its layout?)",
        mimalloc.display()
    );
    Ok(ThirdParty {
        lua,
        sqlite,
        mimalloc,
        zlib,
        openssl,
        libgit2,
        rocksdb,
    })
}

/// Files of `dir` with extension `ext`, sorted by name.
pub(crate) fn files_with_extension(dir: &Path, ext: &str) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = entry
            .with_context(|| format!("cannot list {}", dir.display()))?
            .path();
        if path.extension().is_some_and(|e| e == ext) && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn file_stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Every program of the tier.
#[allow(clippy::too_many_lines, reason = "a table: one entry per program case")]
pub fn programs(root: &Path, third_party: &ThirdParty) -> Result<Vec<Program>> {
    let fixtures = root.join("fixtures/programs");
    let own_warnings = || vec!["-Wall".to_owned(), "-Wextra".to_owned()];
    let own = |path: &str| Source {
        path: fixtures.join(path),
        flags: own_warnings(),
    };
    let mut programs = Vec::new();

    // Lua 5.4: the whole library (everything but the stand-alone
    // interpreter and compiler) plus our host; one case per script.
    let lua_dir = fixtures.join("lua");
    let mut lua_sources: Vec<Source> = files_with_extension(&third_party.lua, "c")?
        .into_iter()
        .filter(|p| !matches!(file_stem(p).as_str(), "lua" | "luac" | "onelua"))
        .map(Source::new)
        .collect();
    ensure!(
        lua_sources.len() > 20,
        "too few Lua sources in {}",
        third_party.lua.display()
    );
    lua_sources.push(own("lua/host.c"));
    let scripts = files_with_extension(&lua_dir, "lua")?;
    ensure!(
        !scripts.is_empty(),
        "no Lua scripts in {}",
        lua_dir.display()
    );
    let lua_case = |script: &PathBuf| {
        let file = script.file_name().unwrap_or_default().to_string_lossy();
        Case {
            name: file_stem(script),
            args: vec![file.into_owned()],
        }
    };
    // What lua-src itself uses on Linux.
    let lua_cflags = vec![
        "-DLUA_USE_LINUX".to_owned(),
        format!("-I{}", third_party.lua.display()),
    ];
    let lua_sources = || {
        lua_sources
            .iter()
            .map(|s| Source {
                path: s.path.clone(),
                flags: s.flags.clone(),
            })
            .collect::<Vec<_>>()
    };
    // Two scripts for the variations below: the interpreter is the same.
    let some_lua_cases = || {
        scripts
            .iter()
            .filter(|s| matches!(file_stem(s).as_str(), "basics" | "exit_status"))
            .map(lua_case)
            .collect::<Vec<_>>()
    };
    programs.push(Program {
        name: "lua",
        cflags: lua_cflags.clone(),
        sources: lua_sources(),
        variants: vec![&DEFAULT, &FNO_PIC],
        cases: scripts.iter().map(lua_case).collect(),
        cwd: lua_dir.clone(),
        exercises: &[],
        archive: None,
    });
    // Lua's library as `liblua.a` and the host as an object: the members
    // the host needs are taken from the archive (and all of them with
    // `--whole-archive`).
    for (name, whole) in [("lua-archive", false), ("lua-whole-archive", true)] {
        programs.push(Program {
            name,
            cflags: lua_cflags.clone(),
            sources: lua_sources(),
            variants: vec![&DEFAULT],
            cases: some_lua_cases(),
            cwd: lua_dir.clone(),
            exercises: &[],
            archive: Some(ArchiveSpec {
                name: "liblua.a",
                outside: &["host"],
                whole,
            }),
        });
    }
    // Every global hidden, `main` too (as an interpreter built with
    // `-fvisibility=hidden` has it): the entry is found all the same.
    let mut hidden_cflags = lua_cflags.clone();
    hidden_cflags.push("-fvisibility=hidden".to_owned());
    programs.push(Program {
        name: "lua-hidden",
        cflags: hidden_cflags,
        sources: lua_sources(),
        variants: vec![&DEFAULT],
        cases: some_lua_cases(),
        cwd: lua_dir,
        exercises: &["hidden:main", "hidden:lua_newstate"],
        archive: None,
    });

    // SQLite amalgamation, configured like libsqlite3-sys's `bundled` build
    // (minus what needs extra libraries), and our driver.
    let mut sqlite3 = Source::new(third_party.sqlite.join("sqlite3.c"));
    sqlite3.flags = [
        "-DSQLITE_DEFAULT_FOREIGN_KEYS=1",
        "-DSQLITE_ENABLE_API_ARMOR",
        "-DSQLITE_ENABLE_COLUMN_METADATA",
        "-DSQLITE_ENABLE_FTS5",
        "-DSQLITE_ENABLE_RTREE",
        "-DSQLITE_ENABLE_STAT4",
        "-DSQLITE_THREADSAFE=1",
        "-DSQLITE_USE_URI",
        "-DHAVE_USLEEP=1",
        "-DHAVE_ISNAN",
    ]
    .map(str::to_owned)
    .to_vec();
    programs.push(Program {
        name: "sqlite",
        cflags: vec![format!("-I{}", third_party.sqlite.display())],
        sources: vec![sqlite3, own("sqlite/driver.c")],
        variants: vec![&DEFAULT],
        cases: vec![
            Case::new("rows3000", &[]),
            Case::new("rows5000-exit5", &["5000", "5"]),
        ],
        cwd: fixtures.join("sqlite"),
        exercises: &[],
        archive: None,
    });

    programs.push(Program {
        name: "c-lifecycle",
        cflags: Vec::new(),
        sources: vec![own("c/lifecycle.c"), own("c/lifecycle_b.c")],
        variants: vec![&DEFAULT],
        cases: vec![Case::new("exit7", &["first", "second arg"])],
        cwd: fixtures.join("c"),
        exercises: &[],
        archive: None,
    });

    programs.push(Program {
        name: "c-exit-paths",
        cflags: Vec::new(),
        sources: vec![own("c/exit_paths.c")],
        variants: vec![&DEFAULT],
        cases: vec![
            Case::new("return0", &[]),
            Case::new("return42", &["return", "42"]),
            Case::new("exit9", &["exit", "9"]),
            Case::new("quick-exit4", &["quick", "4"]),
            Case::new("underscore-exit5", &["_exit", "5"]),
            Case::new("abort", &["abort"]),
            Case::new("segv", &["segv"]),
        ],
        cwd: fixtures.join("c"),
        exercises: &[],
        archive: None,
    });

    let mut cpp_flags = vec!["-std=c++17".to_owned()];
    cpp_flags.extend(own_warnings());
    programs.push(Program {
        name: "cpp",
        cflags: Vec::new(),
        sources: ["cpp/program.cpp", "cpp/shapes.cpp"]
            .iter()
            .map(|path| Source {
                path: fixtures.join(path),
                flags: cpp_flags.clone(),
            })
            .collect(),
        variants: vec![&DEFAULT],
        cases: vec![Case::new("return0", &[]), Case::new("return3", &["3"])],
        cwd: fixtures.join("cpp"),
        exercises: &[],
        archive: None,
    });

    // mimalloc (its default heap is a thread-local variable), configured
    // like libmimalloc-sys's release build, under a multi-threaded
    // allocation workload.
    let mut mimalloc = Source::new(third_party.mimalloc.join("src/static.c"));
    mimalloc.flags = ["-DMI_DEBUG=0", "-DMI_BUILD_RELEASE", "-DNDEBUG"]
        .map(String::from)
        .to_vec();
    programs.push(Program {
        name: "mimalloc",
        cflags: vec![format!(
            "-I{}",
            third_party.mimalloc.join("include").display()
        )],
        sources: vec![mimalloc, own("mimalloc/driver.c")],
        variants: vec![&DEFAULT, &FNO_PIC],
        cases: vec![
            Case::new("threads4", &["4", "20"]),
            Case::new("threads8", &["8", "5"]),
        ],
        cwd: fixtures.join("mimalloc"),
        // Its default heap, by local exec.
        exercises: &["R_X86_64_TPOFF32", ".tbss*"],
        archive: None,
    });

    // zlib as `libz.a` and a driver: the driver needs deflate, inflate and
    // the checksums, not the gz* file functions, whose members stay out.
    let mut zlib_sources: Vec<Source> = files_with_extension(&third_party.zlib, "c")?
        .into_iter()
        .map(Source::new)
        .collect();
    ensure!(
        zlib_sources.len() > 10,
        "too few zlib sources in {}",
        third_party.zlib.display()
    );
    zlib_sources.push(own("zlib/driver.c"));
    programs.push(Program {
        name: "zlib-archive",
        cflags: vec![
            format!("-I{}", third_party.zlib.display()),
            "-D_LARGEFILE64_SOURCE=1".to_owned(),
        ],
        sources: zlib_sources,
        variants: vec![&DEFAULT],
        cases: vec![
            Case::new("100k", &["100000"]),
            Case::new("1m", &["1000000"]),
        ],
        cwd: fixtures.join("zlib"),
        exercises: &[],
        archive: Some(ArchiveSpec {
            name: "libz.a",
            outside: &["driver"],
            whole: false,
        }),
    });

    // C++ threads, std::call_once and thread_local objects.
    programs.push(Program {
        name: "cpp-threads",
        cflags: Vec::new(),
        sources: vec![Source {
            path: fixtures.join("cpp-threads/threads.cpp"),
            flags: cpp_flags.clone(),
        }],
        variants: vec![&DEFAULT, &FNO_PIC],
        cases: vec![Case::new("threads4", &["4", "10"])],
        cwd: fixtures.join("cpp-threads"),
        // The C++ runtime's `__once_callable`, by initial exec.
        exercises: &["R_X86_64_GOTTPOFF", "symbol:_ZSt15__once_callable"],
        archive: None,
    });

    for program in &programs {
        for source in &program.sources {
            ensure!(
                source.path.is_file(),
                "source {} of program {} is missing",
                source.path.display(),
                program.name
            );
        }
    }
    Ok(programs)
}
