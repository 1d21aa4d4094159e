//! The dynamic loader: opening libraries (`dlopen`), looking names up
//! (`dlsym`), what `dladdr1` says about an address, and the loaded objects
//! with their program headers (`dl_iterate_phdr`).

use std::ffi::{CStr, c_int, c_void};
use std::ptr::NonNull;

/// ELF `PT_LOAD`: a segment mapped from the file.
pub const PT_LOAD: u32 = libc::PT_LOAD;
/// ELF `PT_DYNAMIC`: the dynamic section.
pub const PT_DYNAMIC: u32 = libc::PT_DYNAMIC;

/// A library opened with [`Library::open_global`]. Closed only by
/// [`Library::close`]: until then the addresses looked up in it stay valid.
#[derive(Debug)]
pub struct Library {
    handle: NonNull<c_void>,
}

impl Library {
    /// `dlopen(name, RTLD_NOW | RTLD_GLOBAL)`: binds every reference now
    /// and makes the library's symbols visible to later libraries, as a
    /// native link would. The library's initializers run. The error is the
    /// loader's message (`dlerror`).
    pub fn open_global(name: &CStr) -> Result<Library, String> {
        // SAFETY: `name` is a valid NUL-terminated string; dlopen has no
        // other preconditions.
        let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
        NonNull::new(handle)
            .map(|handle| Library { handle })
            .ok_or_else(last_error)
    }

    /// `dlclose`: the library's finalizers (and the handlers it registered
    /// with `__cxa_atexit`) run when this was its last reference, and
    /// every address looked up in it may be gone. The error is the
    /// loader's message.
    pub fn close(self) -> Result<(), String> {
        // SAFETY: the handle came from a successful dlopen and is closed
        // once: `self` is consumed.
        let rc = unsafe { libc::dlclose(self.handle.as_ptr()) };
        if rc == 0 { Ok(()) } else { Err(last_error()) }
    }

    /// The address `dlsym` gives `name` in this library and its
    /// dependencies.
    pub fn symbol(&self, name: &CStr) -> Option<u64> {
        // SAFETY: the handle came from a successful dlopen and is open
        // (closing consumes it); `name` is NUL-terminated.
        let address = unsafe { libc::dlsym(self.handle.as_ptr(), name.as_ptr()) };
        (!address.is_null()).then_some(address as u64)
    }
}

/// The address `dlsym(RTLD_DEFAULT)` gives `name`: the process's global
/// scope (the executable, its libraries and those opened globally).
pub fn global_symbol(name: &CStr) -> Option<u64> {
    // SAFETY: RTLD_DEFAULT is a valid pseudo-handle and `name` is
    // NUL-terminated.
    let address = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    (!address.is_null()).then_some(address as u64)
}

/// The loader's last error message.
pub(super) fn last_error() -> String {
    // SAFETY: dlerror returns null or a NUL-terminated thread-local string.
    let msg = unsafe { libc::dlerror() };
    if msg.is_null() {
        "unknown dlopen error".into()
    } else {
        // SAFETY: non-null, NUL-terminated, valid until the next dl* call.
        unsafe { CStr::from_ptr(msg) }
            .to_string_lossy()
            .into_owned()
    }
}

/// What an ELF dynamic symbol entry says about a definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElfSymbol {
    /// `st_info`: binding and type.
    pub info: u8,
    /// `st_size`.
    pub size: u64,
}

/// `dladdr1` flag from glibc's <dlfcn.h>: return the ELF symbol entry.
const RTLD_DL_SYMENT: c_int = 1;

/// What glibc's `dladdr1(RTLD_DL_SYMENT)` says about `address`: the entry
/// of the symbol it matches, found by scanning the whole dynamic symbol
/// table of the object that contains `address` (slow: O(symbols)).
pub fn symbol_at(address: u64) -> Option<ElfSymbol> {
    let mut info = libc::Dl_info {
        dli_fname: std::ptr::null(),
        dli_fbase: std::ptr::null_mut(),
        dli_sname: std::ptr::null(),
        dli_saddr: std::ptr::null_mut(),
    };
    let mut entry: *const libc::Elf64_Sym = std::ptr::null();
    // SAFETY: `info` and `entry` are valid out-pointers; with RTLD_DL_SYMENT
    // dladdr1 stores a pointer to the ELF symbol (or leaves it null).
    let found = unsafe {
        libc::dladdr1(
            address as *const c_void,
            &mut info,
            (&mut entry as *mut *const libc::Elf64_Sym).cast(),
            RTLD_DL_SYMENT,
        )
    };
    // SAFETY: dladdr1 pointed `entry` into the object's dynamic symbol
    // table, which stays mapped while the object is loaded.
    (found != 0 && !entry.is_null()).then(|| unsafe {
        ElfSymbol {
            info: (*entry).st_info,
            size: (*entry).st_size,
        }
    })
}

/// One loaded object (the executable, a library, the vDSO) as
/// [`for_each_loaded_object`] shows it.
pub struct LoadedObject<'a> {
    info: &'a libc::dl_phdr_info,
}

/// One program header of a loaded object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// `p_type` ([`PT_LOAD`], [`PT_DYNAMIC`], ...).
    pub kind: u32,
    /// Where it is in this process: `p_vaddr` plus the load bias.
    pub address: u64,
    /// `p_memsz`.
    pub size: u64,
}

impl<'a> LoadedObject<'a> {
    /// The path it was loaded from; empty for the executable.
    pub fn name(&self) -> &'a [u8] {
        if self.info.dlpi_name.is_null() {
            return b"";
        }
        // SAFETY: dlpi_name is a NUL-terminated string, valid during the
        // iteration.
        unsafe { CStr::from_ptr(self.info.dlpi_name) }.to_bytes()
    }

    /// The load bias: what its virtual addresses are relative to.
    pub fn bias(&self) -> u64 {
        self.info.dlpi_addr
    }

    /// Its program headers.
    pub fn segments(&self) -> impl Iterator<Item = Segment> + 'a {
        let headers: &'a [libc::Elf64_Phdr] = if self.info.dlpi_phdr.is_null() {
            &[]
        } else {
            // SAFETY: dlpi_phdr points to dlpi_phnum program headers,
            // mapped while the object is loaded.
            unsafe {
                std::slice::from_raw_parts(self.info.dlpi_phdr, usize::from(self.info.dlpi_phnum))
            }
        };
        let bias = self.bias();
        headers.iter().map(move |ph| Segment {
            kind: ph.p_type,
            address: bias + ph.p_vaddr,
            size: ph.p_memsz,
        })
    }
}

/// Calls `visit` once per loaded object (`dl_iterate_phdr`). The loader's
/// lock is held meanwhile: `visit` must not open libraries.
pub fn for_each_loaded_object<F: FnMut(&LoadedObject<'_>)>(mut visit: F) {
    unsafe extern "C" fn callback<F: FnMut(&LoadedObject<'_>)>(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut c_void,
    ) -> c_int {
        // SAFETY: dl_iterate_phdr passes a valid record and our `data`,
        // the `F` below.
        let (info, visit) = unsafe { (&*info, &mut *(data as *mut F)) };
        visit(&LoadedObject { info });
        0
    }
    // SAFETY: the callback only reads the records it is given and calls
    // `visit`, which outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(callback::<F>), (&mut visit as *mut F).cast()) };
}
