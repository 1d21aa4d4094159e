//! The machine's floor under a link, measured in this process: reading
//! every input byte from the page cache (as `cat` does: each file through
//! one reused buffer) and first-touching an image of the output's size
//! (anonymous memory mapped, one byte written per 4 KiB page, unmapped).
//! No linker can do less than read its inputs and write its output.

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, ensure};

use crate::bench::measure::median;

/// The read buffer: what `cat` uses, give or take.
const BUFFER: usize = 128 * 1024;

/// The page size the touch steps by.
const PAGE: usize = 4096;

/// The median over `samples` of reading every byte of `files` (after one
/// unrecorded pass that brings them into the page cache), in ms.
pub(super) fn read_ms(files: &[PathBuf], samples: usize) -> Result<f64> {
    let mut buffer = vec![0u8; BUFFER];
    read_all(files, &mut buffer)?;
    let mut times = Vec::new();
    for _ in 0..samples.max(1) {
        let start = Instant::now();
        std::hint::black_box(read_all(files, &mut buffer)?);
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    Ok(median(&times))
}

/// Reads every file through `buffer`; returns the bytes read.
fn read_all(files: &[PathBuf], buffer: &mut [u8]) -> Result<u64> {
    let mut total = 0;
    for path in files {
        let mut file = File::open(path).with_context(|| format!("open {}", path.display()))?;
        loop {
            let n = file
                .read(buffer)
                .with_context(|| format!("read {}", path.display()))?;
            if n == 0 {
                break;
            }
            total += n as u64;
        }
    }
    Ok(total)
}

/// The median over `samples` of mapping `bytes` of anonymous memory,
/// writing one byte in each page and unmapping it, in ms.
pub(super) fn touch_ms(bytes: u64, samples: usize) -> Result<f64> {
    let len = usize::try_from(bytes).context("image size")?.max(PAGE);
    let mut times = Vec::new();
    for _ in 0..samples.max(1) {
        let start = Instant::now();
        touch(len)?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    Ok(median(&times))
}

fn touch(len: usize) -> Result<()> {
    // SAFETY: a fresh private anonymous mapping; no existing memory is
    // named or replaced.
    let at = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    ensure!(
        at != libc::MAP_FAILED,
        "mmap of {len} bytes failed: {}",
        std::io::Error::last_os_error()
    );
    let base = at.cast::<u8>();
    for offset in (0..len).step_by(PAGE) {
        // SAFETY: `offset < len`, inside the writable mapping made above.
        unsafe { base.add(offset).write_volatile(1) };
    }
    // SAFETY: `at` and `len` are exactly the mapping made above, which
    // nothing refers to any more.
    let rc = unsafe { libc::munmap(at, len) };
    ensure!(
        rc == 0,
        "munmap failed: {}",
        std::io::Error::last_os_error()
    );
    Ok(())
}
