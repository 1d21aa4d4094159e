//! Pages of this process: reserving address space, protecting, discarding
//! and unmapping it, mapping the memfd behind a shared slab, and reading
//! memory that may not be mapped.
//!
//! Addresses and sizes are `u64`, as the protocol carries them; the
//! policies (where a slab goes, which pages become private) live in
//! [`crate::pages`] and [`crate::shm`]. The page calls (`mmap`, `mprotect`,
//! `madvise`, `munmap`) go straight to `libc`: they take raw addresses, and
//! the protect and write paths run for every module.

use std::ffi::{CStr, c_int, c_void};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::fcntl::{FallocateFlags, OFlag};
use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::uio::{RemoteIoVec, process_vm_readv};
use nix::unistd::{ftruncate, getpid, pipe2, read};

use crate::protocol::Prot;

/// The size of a page; 4096 if the system will not say.
pub fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if page > 0 { page as u64 } else { 4096 }
}

/// The `mmap`/`mprotect` flags of a protection.
fn prot_flags(prot: Prot) -> c_int {
    match prot {
        Prot::None => libc::PROT_NONE,
        Prot::ReadExecute => libc::PROT_READ | libc::PROT_EXEC,
        Prot::ReadOnly => libc::PROT_READ,
        Prot::ReadWrite => libc::PROT_READ | libc::PROT_WRITE,
    }
}

/// Reserves `size` bytes of inaccessible address space that commits no
/// memory (`PROT_NONE`, `MAP_NORESERVE`): exactly at `at` when given
/// (never replacing a mapping: `EEXIST` when something is there), else
/// wherever the kernel likes. Returns the base.
pub fn reserve(size: u64, at: Option<u64>) -> io::Result<u64> {
    let mut flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
    if at.is_some() {
        flags |= libc::MAP_FIXED_NOREPLACE;
    }
    // SAFETY: a new anonymous PROT_NONE mapping; MAP_FIXED_NOREPLACE never
    // replaces an existing mapping, and without it the address is a hint.
    let ptr = unsafe {
        libc::mmap(
            at.unwrap_or(0) as *mut c_void,
            size as usize,
            libc::PROT_NONE,
            flags,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    if at.is_some_and(|address| ptr as u64 != address) {
        // Old kernels ignore MAP_FIXED_NOREPLACE and treat it as a hint.
        // SAFETY: we just mapped this range; nothing else knows it.
        unsafe { libc::munmap(ptr, size as usize) };
        return Err(io::Error::from_raw_os_error(libc::EEXIST));
    }
    Ok(ptr as u64)
}

/// Unmaps `[address, address + size)`.
///
/// # Safety
/// Nothing may use memory in the range afterwards.
pub unsafe fn unmap(address: u64, size: u64) -> io::Result<()> {
    // SAFETY: guaranteed by the caller; munmap checks the range itself.
    let rc = unsafe { libc::munmap(address as *mut c_void, size as usize) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets the protection of the whole pages `[address, address + size)`.
///
/// # Safety
/// The range must be page-aligned and lie in a mapping of this process that
/// no Rust reference points into.
pub unsafe fn protect(address: u64, size: u64, prot: Prot) -> io::Result<()> {
    // SAFETY: guaranteed by the caller.
    let rc = unsafe { libc::mprotect(address as *mut c_void, size as usize, prot_flags(prot)) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Discards this process's copies of private pages (`MADV_DONTNEED`) and
/// gives their memory back: anonymous pages read as zero afterwards, pages
/// of a private file mapping as the file does.
///
/// # Safety
/// As for [`protect`]; nothing may use the range's contents afterwards.
pub unsafe fn discard(address: u64, size: u64) -> io::Result<()> {
    // SAFETY: guaranteed by the caller; discarding private pages only drops
    // this process's copies of them.
    let rc = unsafe { libc::madvise(address as *mut c_void, size as usize, libc::MADV_DONTNEED) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Asks the kernel to back the whole pages `[address, address + size)` now
/// (`MADV_POPULATE_WRITE`, Linux 5.14 and later), rather than one page
/// fault per page as they are first written. Fails (`EINVAL`) on kernels
/// without it and for pages that are not writable; nothing changes then.
pub fn populate(address: u64, size: u64) -> io::Result<()> {
    // SAFETY: populating only allocates the pages' backing, as the first
    // write would, without writing: they keep their contents. The kernel
    // checks the range.
    let rc = unsafe {
        libc::madvise(
            address as *mut c_void,
            size as usize,
            libc::MADV_POPULATE_WRITE,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The huge page size the advice aims at (x86-64's 2 MiB).
pub const HUGE_PAGE: u64 = 2 << 20;

/// Asks for the whole huge pages inside `[address, address + size)` to
/// be backed by huge pages when they are first written or populated
/// (`MADV_HUGEPAGE`): backing a 2 MiB huge page costs about what backing
/// a few 4 KiB pages does, and backing fresh pages is much of what
/// writing a large module costs on a virtual machine. Only pages inside
/// the range are advised, so nothing outside it is backed because of
/// it. Advice only: where the kernel gives no huge pages (they are off,
/// or none is free), nothing changes.
pub fn advise_huge_pages(address: u64, size: u64) {
    let first = address.next_multiple_of(HUGE_PAGE);
    let end = address.saturating_add(size) & !(HUGE_PAGE - 1);
    if end > first {
        // SAFETY: advice changes no contents and no protection: only how
        // the kernel backs pages not yet backed. The kernel checks the
        // range (an unmapped one fails with `ENOMEM`, ignored here).
        let _ = unsafe {
            libc::madvise(
                first as *mut c_void,
                (end - first) as usize,
                libc::MADV_HUGEPAGE,
            )
        };
    }
}

/// Fresh zeroed memory private to this process, for many files' bytes
/// read at once: one mapping, whose pages the reader backs in large
/// pieces ([`crate::pages::populate`]) before writing them. Unmapped when
/// dropped.
///
/// The whole huge pages of memory a huge page or larger are asked to be
/// backed by huge pages ([`advise_huge_pages`]): the mapping is made a
/// huge page larger, and the memory starts at its first huge-page
/// boundary, so that every whole huge page of the memory is one. The
/// rest (less than a huge page at the end) is ordinary pages: the advice
/// never backs memory past what the reader writes.
pub struct FreshMemory {
    mapping: memmap2::MmapMut,
    /// Where the memory starts in the mapping, and its length.
    start: usize,
    len: usize,
}

impl FreshMemory {
    /// `len` zeroed bytes (at least one page is mapped, so `len` may be 0).
    pub fn new(len: usize) -> io::Result<FreshMemory> {
        FreshMemory::with_huge_pages_to(len, len)
    }

    /// As [`FreshMemory::new`], with only the first `huge` bytes advised to
    /// be backed by huge pages: the rest is backed page by page, where it
    /// is written, for bytes read in pieces with holes between them (a
    /// huge page would back each hole it holds).
    pub fn with_huge_pages_to(len: usize, huge: usize) -> io::Result<FreshMemory> {
        const HUGE: usize = HUGE_PAGE as usize;
        let room = if len < HUGE { 0 } else { HUGE };
        let mapped = len
            .max(1)
            .checked_add(room)
            .ok_or_else(|| io::Error::from(io::ErrorKind::OutOfMemory))?;
        let mapping = memmap2::MmapOptions::new().len(mapped).map_anon()?;
        let at = mapping.as_ptr() as usize;
        let start = if room == 0 {
            0
        } else {
            at.next_multiple_of(HUGE) - at
        };
        advise_huge_pages((at + start) as u64, huge.min(len) as u64);
        Ok(FreshMemory {
            mapping,
            start,
            len,
        })
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.mapping[self.start..self.start + self.len]
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.mapping[self.start..self.start + self.len]
    }
}

impl std::fmt::Debug for FreshMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FreshMemory({} bytes)", self.len)
    }
}

/// How many of the whole pages `[address, address + size)` are resident
/// (`mincore`). The range must be mapped (`ENOMEM` otherwise).
pub fn resident_pages(address: u64, size: u64) -> io::Result<usize> {
    let pages = size.div_ceil(page_size()) as usize;
    let mut flags = vec![0u8; pages];
    // SAFETY: `flags` has one byte per page of the range; the kernel checks
    // the range and writes only to `flags`.
    let rc = unsafe { libc::mincore(address as *mut c_void, size as usize, flags.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(flags.iter().filter(|f| **f & 1 != 0).count())
}

/// A new memory-backed file of size 0 (`memfd_create`), close-on-exec so
/// programs that JIT'd code executes do not inherit it (fork keeps it).
pub fn memfd(name: &CStr) -> io::Result<OwnedFd> {
    Ok(memfd_create(name, MFdFlags::MFD_CLOEXEC)?)
}

/// Sets the size of a file (`ftruncate`).
pub fn resize(fd: BorrowedFd<'_>, size: u64) -> io::Result<()> {
    let size =
        libc::off_t::try_from(size).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    Ok(ftruncate(fd, size)?)
}

/// Frees `[offset, offset + size)` of a file, which reads as zero
/// afterwards; the file keeps its size (`fallocate` punching a hole).
pub fn punch_hole(fd: BorrowedFd<'_>, offset: u64, size: u64) -> io::Result<()> {
    let off =
        |v: u64| libc::off_t::try_from(v).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput));
    let flags = FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE;
    Ok(nix::fcntl::fallocate(fd, flags, off(offset)?, off(size)?)?)
}

/// Whether writes to a file mapping reach the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    /// `MAP_SHARED`: writes reach the file and every other mapping of it.
    Shared,
    /// `MAP_PRIVATE`: a copy-on-write view; writes stay in this mapping.
    Private,
}

/// Maps `[offset, offset + size)` of `fd` at exactly `address`, replacing
/// whatever was mapped there (`MAP_FIXED`).
///
/// # Safety
/// The range must be page-aligned and lie inside a reservation of this
/// process that no Rust reference points into; its old contents are gone.
pub unsafe fn map_file_at(
    address: u64,
    size: u64,
    prot: Prot,
    sharing: Sharing,
    fd: BorrowedFd<'_>,
    offset: u64,
) -> io::Result<()> {
    let offset =
        libc::off_t::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let sharing = match sharing {
        Sharing::Shared => libc::MAP_SHARED,
        Sharing::Private => libc::MAP_PRIVATE,
    };
    // SAFETY: guaranteed by the caller; MAP_FIXED replaces only that range.
    let mapped = unsafe {
        libc::mmap(
            address as *mut c_void,
            size as usize,
            prot_flags(prot),
            sharing | libc::MAP_FIXED,
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            offset,
        )
    };
    if mapped == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A new read-write shared mapping of the first `size` bytes of `fd`, or of
/// fresh anonymous memory when `fd` is `None`, wherever the kernel likes.
/// Returns its start; [`unmap`] ends it.
pub fn map_shared(fd: Option<BorrowedFd<'_>>, size: u64) -> io::Result<*mut u8> {
    let (fd, anonymous) = match fd {
        Some(fd) => (std::os::fd::AsRawFd::as_raw_fd(&fd), 0),
        None => (-1, libc::MAP_ANONYMOUS),
    };
    // SAFETY: a new mapping at an address of the kernel's choosing (no
    // MAP_FIXED), so no existing memory changes; using it is the caller's.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | anonymous,
            fd,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(ptr.cast())
}

/// Maps the first page of `fd` readable and executable, privately, and
/// leaves it mapped for the life of the process: the marker by which a
/// profiler recording this process (`perf record`) learns which file
/// holds its jitdump. Nothing is written through it, and it is never
/// writable.
pub fn map_profiler_marker(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: a new private read-execute mapping at an address of the
    // kernel's choosing (no MAP_FIXED): no existing memory changes, and
    // nothing ever reads or runs it.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            page_size() as usize,
            libc::PROT_READ | libc::PROT_EXEC,
            libc::MAP_PRIVATE,
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Copies this process's memory at `address` into `buf`, failing with
/// `EFAULT` (instead of faulting) when any of it is unmapped or unreadable.
///
/// The kernel does the copy (`process_vm_readv` on this process); where a
/// seccomp filter refuses that call (`ENOSYS`, `EPERM`), it copies through
/// a pipe instead.
pub fn read_checked(address: u64, buf: &mut [u8]) -> io::Result<()> {
    if buf.is_empty() {
        return Ok(());
    }
    let size = buf.len();
    let remote = [RemoteIoVec {
        base: address as usize,
        len: size,
    }];
    match process_vm_readv(getpid(), &mut [io::IoSliceMut::new(buf)], &remote) {
        Ok(n) if n == size => Ok(()),
        Ok(_) => Err(io::Error::from_raw_os_error(libc::EFAULT)),
        Err(nix::errno::Errno::ENOSYS | nix::errno::Errno::EPERM) => {
            read_through_pipe(address, buf)
        }
        Err(errno) => Err(errno.into()),
    }
}

/// The fallback of [`read_checked`]: the kernel copies from `address` into
/// a pipe (`EFAULT` for unreadable memory), and we read it back.
fn read_through_pipe(address: u64, buf: &mut [u8]) -> io::Result<()> {
    let (read_end, write_end) = pipe2(OFlag::O_CLOEXEC)?;
    let write_fd = std::os::fd::AsRawFd::as_raw_fd(&write_end);
    for (index, chunk) in buf.chunks_mut(4096).enumerate() {
        let from = address.wrapping_add(index as u64 * 4096);
        // SAFETY: the kernel validates the source range (EFAULT) and reads
        // nothing else; a 4 KiB write fits any pipe, so it never blocks.
        let written = unsafe { libc::write(write_fd, from as *const c_void, chunk.len()) };
        let ok = written == chunk.len() as isize
            && read(read_end.as_fd(), chunk).is_ok_and(|n| n == chunk.len());
        if !ok {
            return Err(io::Error::from_raw_os_error(libc::EFAULT));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fresh memory is as long as asked, zeroed and writable; memory of a
    /// huge page or more starts at a huge-page boundary, so its whole huge
    /// pages can be huge pages. Rerun:
    /// `cargo test -p solder-executor --lib sys::memory::tests::fresh_memory`.
    #[test]
    fn fresh_memory_is_its_length_and_large_memory_starts_at_a_huge_page() {
        for len in [
            0,
            1,
            4096,
            HUGE_PAGE as usize - 1,
            3 * HUGE_PAGE as usize + 5,
        ] {
            let mut memory = FreshMemory::new(len).unwrap();
            assert_eq!(memory.as_slice().len(), len);
            assert!(memory.as_slice().iter().all(|b| *b == 0), "{len}: zeroed");
            if let Some(last) = memory.as_mut_slice().last_mut() {
                *last = 7;
            }
            assert!(
                len == 0 || memory.as_slice()[len - 1] == 7,
                "{len}: writable"
            );
            let huge_aligned = memory.as_slice().as_ptr() as u64 % HUGE_PAGE == 0;
            assert!(
                len < HUGE_PAGE as usize || huge_aligned,
                "{len}: at a huge page"
            );
        }
    }

    #[test]
    fn reads_mapped_memory_and_refuses_unmapped() {
        let data = [1u8, 2, 3, 4];
        let mut buf = [0u8; 4];
        read_checked(data.as_ptr() as u64, &mut buf).unwrap();
        assert_eq!(buf, data);
        assert!(read_checked(8, &mut buf).is_err());
        buf = [0; 4];
        read_through_pipe(data.as_ptr() as u64, &mut buf).unwrap();
        assert_eq!(buf, data);
        assert!(read_through_pipe(8, &mut buf).is_err());
    }

    #[test]
    fn fixed_reservations_never_replace_a_mapping() {
        let page = page_size();
        let base = reserve(4 * page, None).unwrap();
        let err = reserve(page, Some(base + page)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{err}");
        // SAFETY: nothing uses the reservation.
        unsafe { unmap(base, 4 * page) }.unwrap();
    }
}
