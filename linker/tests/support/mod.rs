//! Shared helpers for the linker's integration tests: compile a fixture
//! with the system C compiler into `target/`, load objects into a session,
//! and run the `solder` binary as a user would.
#![allow(dead_code)] // each test file uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use solder_linker::{ObjectFile, Session, SessionConfig};

pub mod remote;

/// The repository's `fixtures/` directory.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

/// Compiles `fixtures/<source>` with `compiler` (`cc` when `None`) and
/// `flags` into an object under the test target directory, and returns its
/// path. The command is printed on failure so it can be rerun by hand.
pub fn compile(source: &str, flags: &[&str]) -> PathBuf {
    compile_with("cc", source, flags)
}

pub fn compile_with(compiler: &str, source: &str, flags: &[&str]) -> PathBuf {
    let input = fixtures().join(source);
    let tag: String = flags
        .iter()
        .flat_map(|f| f.chars())
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fixtures");
    std::fs::create_dir_all(&out_dir).unwrap();
    let stem = source.replace(['/', '.'], "_");
    let output = out_dir.join(format!("{stem}-{compiler}-{tag}.o"));
    // Tests run in parallel threads and may build the same fixture at once:
    // compile to a private file and rename it into place (atomic), so no
    // reader ever sees a half-written object.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let unique = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let partial = out_dir.join(format!(
        "{stem}-{compiler}-{tag}.o.{}-{unique}.partial",
        std::process::id()
    ));
    let mut cmd = Command::new(compiler);
    cmd.arg("-c")
        .arg(&input)
        .arg("-o")
        .arg(&partial)
        .arg("-I")
        .arg(fixtures().join("include"))
        .args(flags);
    let result = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {compiler}: {e}"));
    assert!(
        result.status.success(),
        "compiling failed: {cmd:?}\n{}",
        String::from_utf8_lossy(&result.stderr)
    );
    std::fs::rename(&partial, &output).unwrap();
    output
}

pub fn object(path: &Path) -> ObjectFile {
    ObjectFile::read(path).unwrap()
}

/// A session with the default configuration.
pub fn session() -> Session {
    Session::new(SessionConfig::default()).unwrap()
}

/// Looks up and calls `name` with integer arguments.
pub fn call(session: &mut Session, name: &str, args: &[u64]) -> u64 {
    let address = session
        .lookup(name)
        .unwrap()
        .unwrap_or_else(|| panic!("`{name}` is not exported"));
    // SAFETY: the fixtures' functions take at most `args.len()` integers.
    unsafe { session.call(address, args) }.unwrap_or_else(|e| panic!("call to {name}: {e}"))
}

/// Runs `solder run ARGS...` and returns its output.
pub fn solder(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_solder"))
        .args(args)
        .output()
        .expect("run solder")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The raw relocation types in an object, read with the `object` crate
/// directly (independently of Solder's front-end), to prove a fixture
/// contains what a test claims it exercises.
pub fn relocation_types(path: &Path) -> Vec<object::elf::RelocationType> {
    use object::read::elf::{FileHeader, SectionHeader};
    let data = std::fs::read(path).unwrap();
    let header = object::elf::FileHeader64::<object::Endianness>::parse(&*data).unwrap();
    let endian = header.endian().unwrap();
    let sections = header.sections(endian, &*data).unwrap();
    let mut names = Vec::new();
    for section in sections.iter() {
        if section.sh_type(endian) != object::elf::SHT_RELA {
            continue;
        }
        let relas = section
            .data_as_array::<object::elf::Rela64<object::Endianness>, _>(endian, &*data)
            .unwrap();
        for rela in relas {
            let r_type = rela.r_type(endian, false);
            if !names.contains(&r_type) {
                names.push(r_type);
            }
        }
    }
    names
}
