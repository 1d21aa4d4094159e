//! For the front-ends' unit tests: real objects built by clang at test time
//! for any target, in a scratch directory of their own.

use std::process::Command;

/// A directory removed when dropped.
pub fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("solder-objects-")
        .tempdir()
        .expect("create a scratch directory")
}

/// A pipe given as a file, as a shell's `<(cmd)` gives one: its path
/// (`/dev/fd/N`), which reads `bytes` and then ends. The reading end is
/// held until the returned value is dropped; a thread writes the bytes.
#[cfg(unix)]
pub struct PipeFile {
    pub path: std::path::PathBuf,
    _reader: std::io::PipeReader,
    writer: Option<std::thread::JoinHandle<()>>,
}

#[cfg(unix)]
impl PipeFile {
    pub fn new(bytes: Vec<u8>) -> PipeFile {
        use std::os::fd::AsRawFd;
        let (reader, mut writer) = std::io::pipe().expect("make a pipe");
        let path = std::path::PathBuf::from(format!("/dev/fd/{}", reader.as_raw_fd()));
        // A reader that stops early (an error) closes the pipe: the write
        // then fails, which is not this helper's to report.
        let writer = std::thread::spawn(move || {
            let _ = std::io::Write::write_all(&mut writer, &bytes);
        });
        PipeFile {
            path,
            _reader: reader,
            writer: Some(writer),
        }
    }
}

#[cfg(unix)]
impl Drop for PipeFile {
    fn drop(&mut self) {
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// Builds `source` (`lang` as clang's `-x` says: `c` or `assembler`) for
/// `target` with `flags`, and returns the object's bytes. A missing clang
/// fails the test: these tests never pass by building nothing.
pub fn clang_object(target: &str, lang: &str, source: &str, flags: &[&str]) -> Vec<u8> {
    let dir = scratch();
    let input = dir
        .path()
        .join(if lang == "c" { "input.c" } else { "input.s" });
    let output = dir.path().join("output.o");
    std::fs::write(&input, source).expect("write the source");
    let result = Command::new("clang")
        .arg(format!("--target={target}"))
        .args(["-c", "-x", lang])
        .args(flags)
        .arg(&input)
        .arg("-o")
        .arg(&output)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run clang ({e}): these tests build their objects with it")
        });
    assert!(
        result.status.success(),
        "clang --target={target} failed on\n{source}\n{}",
        String::from_utf8_lossy(&result.stderr)
    );
    std::fs::read(&output).expect("read the object")
}

/// An `ar` archive of `members` (GNU format, no symbol index), each
/// member at an even offset after its 60-byte header.
pub fn ar_archive(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut bytes = b"!<arch>\n".to_vec();
    for (name, data) in members {
        let header = format!(
            "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
            format!("{name}/"),
            0,
            0,
            0,
            644,
            data.len()
        );
        assert_eq!(header.len(), 60, "{name}: a name too long for a header");
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(data);
        if bytes.len() % 2 == 1 {
            bytes.push(b'\n');
        }
    }
    bytes
}
