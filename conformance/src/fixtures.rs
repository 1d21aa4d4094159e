//! The fixture builder: compiles fixture C sources with the `cc` crate's
//! compiler detection for each format's target, into
//! `<target>/conformance/<format>/<source>[-<flags hash>].<ext>`.
//!
//! Builds are incremental: an object is rebuilt when it is missing, when the
//! command line changed (kept beside it in `.cmd`), or when its source or any
//! header it included (from the compiler's `.d` dependency file) is newer.
//! Fixtures see no system headers (`-nostdinc`), only `fixtures/include/`.
//! Parallel trials may build the same fixture at once: every output is
//! written under a unique temporary name and renamed into place.
//!
//! The harness and `cargo xtask conformance` both use [`Builder`].

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use crate::formats::Format;
use crate::schema::FixtureSpec;

/// Why a fixture could not be built.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    /// No usable compiler for the format: the trial is skipped (a failure
    /// with `SOLDER_STRICT=1`).
    #[error("no C compiler for {format} ({triple}): {reason}")]
    CompilerMissing {
        format: Format,
        triple: &'static str,
        reason: String,
    },
    #[error("fixture source {0} does not exist")]
    MissingSource(PathBuf),
    #[error("compiling {file} failed ({status}):\n$ {command}\n{stderr}")]
    Compile {
        file: PathBuf,
        command: String,
        status: String,
        stderr: String,
    },
    #[error("{context}: {error}")]
    Io {
        context: String,
        error: std::io::Error,
    },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> FixtureError {
    let context = context.into();
    move |error| FixtureError::Io { context, error }
}

/// The workspace root (the parent of `conformance/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("conformance/ lives one level below the workspace root")
        .to_path_buf()
}

/// The target directory: `CARGO_TARGET_DIR` (relative to the workspace
/// root when relative) or `<root>/target`.
pub fn default_target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => root.join(dir),
        _ => root.join("target"),
    }
}

/// The machine the fixtures are built on, as `cc` wants it told (it reads
/// `HOST` only inside build scripts): it decides whether a format's target
/// is a cross target.
const HOST_TRIPLE: &str = if cfg!(target_os = "macos") {
    if cfg!(target_arch = "aarch64") {
        "aarch64-apple-darwin"
    } else {
        "x86_64-apple-darwin"
    }
} else if cfg!(target_os = "windows") {
    "x86_64-pc-windows-msvc"
} else {
    "x86_64-unknown-linux-gnu"
};

/// Builds fixtures for the formats of one run.
#[derive(Debug, Clone)]
pub struct Builder {
    fixtures: PathBuf,
    out: PathBuf,
}

/// A compiler found for a format: the program and the flags `cc` chose.
#[derive(Debug, Clone)]
pub struct Compiler {
    pub program: PathBuf,
    pub args: Vec<String>,
}

impl Builder {
    /// `root` holds `fixtures/`; objects go under `<target>/conformance/`.
    pub fn new(root: &Path, target: &Path) -> Self {
        Builder {
            fixtures: root.join("fixtures"),
            out: target.join("conformance"),
        }
    }

    /// The builder for this workspace and its default target directory.
    pub fn for_workspace() -> Self {
        let root = workspace_root();
        let target = default_target_dir(&root);
        Builder::new(&root, &target)
    }

    pub fn fixtures_dir(&self) -> &Path {
        &self.fixtures
    }

    /// The C compiler `cc` picks for `format`, with its flags, checked by
    /// running it with `--version`.
    pub fn compiler(&self, format: Format) -> Result<Compiler, FixtureError> {
        let info = format.info();
        let missing = |reason: String| FixtureError::CompilerMissing {
            format,
            triple: info.triple,
            reason,
        };
        let mut build = cc::Build::new();
        build
            .target(info.triple)
            .host(HOST_TRIPLE)
            .opt_level(2)
            .debug(false)
            .cargo_metadata(false)
            .cargo_warnings(false)
            .out_dir(&self.out);
        if format != Format::Elf || !cfg!(target_os = "linux") {
            // Cross formats need clang (gcc only targets the host; on macOS
            // and Windows every format is a cross format).
            build.compiler("clang");
        }
        let tool = build
            .try_get_compiler()
            .map_err(|err| missing(err.to_string()))?;
        let program = tool.path().to_path_buf();
        let probe = Command::new(&program).arg("--version").output();
        match probe {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                return Err(missing(format!(
                    "`{} --version` failed: {}",
                    program.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            Err(err) => {
                return Err(missing(format!("cannot run {}: {err}", program.display())));
            }
        }
        let args = tool
            .args()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        Ok(Compiler { program, args })
    }

    /// Where a scenario's archives (keyed by `key`) for `format` go.
    pub fn archive_dir(&self, format: Format, key: String) -> PathBuf {
        self.out.join(format.name()).join("archives").join(key)
    }

    /// Where the object of `spec` for `format` goes.
    pub fn object_path(&self, format: Format, spec: &FixtureSpec) -> PathBuf {
        let stem = spec
            .source
            .strip_suffix(".c")
            .unwrap_or(&spec.source)
            .to_string();
        let name = if spec.cflags.is_empty() {
            stem
        } else {
            format!(
                "{stem}-{:016x}",
                fnv1a(spec.cflags.join("\u{1f}").as_bytes())
            )
        };
        self.out
            .join(format.name())
            .join(format!("{name}.{}", format.info().object_extension))
    }

    /// Builds `spec` for `format` unless its object is up to date; returns
    /// the object's path.
    pub fn build(
        &self,
        format: Format,
        compiler: &Compiler,
        spec: &FixtureSpec,
    ) -> Result<PathBuf, FixtureError> {
        let source = self.fixtures.join(&spec.source);
        if !source.is_file() {
            return Err(FixtureError::MissingSource(source));
        }
        let object = self.object_path(format, spec);
        let depfile = object.with_extension("d");
        let cmdfile = object.with_extension("cmd");
        let mut args = compiler.args.clone();
        args.extend(
            [
                "-std=gnu11",
                "-nostdinc",
                "-fno-stack-protector",
                "-Wall",
                "-Wno-unused-function",
            ]
            .map(String::from),
        );
        args.push(format!("-I{}", self.fixtures.join("include").display()));
        args.extend(spec.cflags.iter().cloned());
        args.push("-c".into());
        args.push(source.display().to_string());
        let command_line = format!("{} {}", compiler.program.display(), args.join(" "));
        if up_to_date(&object, &depfile, &cmdfile, &command_line) {
            return Ok(object);
        }
        let dir = object.parent().expect("objects live in a directory");
        std::fs::create_dir_all(dir).map_err(io(format!("cannot create {}", dir.display())))?;
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let unique = format!(
            "tmp{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let tmp_object = object.with_extension(format!("{unique}.o"));
        let tmp_depfile = object.with_extension(format!("{unique}.d"));
        let tmp_cmdfile = object.with_extension(format!("{unique}.cmd"));
        let output = Command::new(&compiler.program)
            .args(&args)
            .arg("-o")
            .arg(&tmp_object)
            .arg("-MD")
            .arg("-MF")
            .arg(&tmp_depfile)
            .output()
            .map_err(io(format!("cannot run {}", compiler.program.display())))?;
        if !output.status.success() {
            let _ = std::fs::remove_file(&tmp_object);
            let _ = std::fs::remove_file(&tmp_depfile);
            return Err(FixtureError::Compile {
                file: source,
                command: command_line,
                status: output.status.to_string(),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
        std::fs::write(&tmp_cmdfile, &command_line)
            .map_err(io(format!("cannot write {}", tmp_cmdfile.display())))?;
        for (from, to) in [
            (&tmp_depfile, &depfile),
            (&tmp_cmdfile, &cmdfile),
            (&tmp_object, &object),
        ] {
            std::fs::rename(from, to).map_err(io(format!("cannot rename {}", from.display())))?;
        }
        Ok(object)
    }
}

/// Whether `object` exists, was built by `command_line`, and is newer than
/// every file in its dependency file.
fn up_to_date(object: &Path, depfile: &Path, cmdfile: &Path, command_line: &str) -> bool {
    let Some(built) = modified(object) else {
        return false;
    };
    if std::fs::read_to_string(cmdfile).ok().as_deref() != Some(command_line) {
        return false;
    }
    let Ok(deps) = std::fs::read_to_string(depfile) else {
        return false;
    };
    let Some((_, inputs)) = deps.split_once(": ") else {
        return false;
    };
    inputs
        .replace("\\\n", " ")
        .split_whitespace()
        .all(|input| modified(Path::new(input)).is_some_and(|t| t <= built))
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// FNV-1a: a stable, dependency-free hash for object names.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
