//! Thread-local storage through the platform's dynamic loader: loading a
//! TLS carrier (see [`crate::tls_carrier`]) from memory, what the loader
//! says about its block (module id, thread-pointer offset, this thread's
//! copy), `__tls_get_addr`, and the thread pointer.

use std::ffi::{CString, c_void};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;
use std::sync::OnceLock;

use crate::tls_carrier::TP_OFFSET_SLOT;

/// A loaded TLS carrier; closed (`dlclose`) when dropped. The loader owns
/// its block in every thread.
#[derive(Debug)]
pub struct Carrier {
    handle: NonNull<c_void>,
    /// The carrier's load address (`l_addr`).
    base: u64,
    /// The memfd it was loaded from, open as long as the carrier is: the
    /// loader knows the carrier by its path, `/proc/self/fd/N`, and takes
    /// a `dlopen` of a path it has loaded for the object loaded before, so
    /// no other open carrier may have that descriptor number. Closed after
    /// `dlclose` (fields drop after [`Drop::drop`]).
    _file: std::fs::File,
}

// SAFETY: the handle is an opaque token of the loader, which serializes
// every `dl*` call on it with its own lock; nothing here is per-thread.
unsafe impl Send for Carrier {}
// SAFETY: as above: `&Carrier` only reads `base` or passes the handle to
// thread-safe `dl*` calls.
unsafe impl Sync for Carrier {}

impl Carrier {
    /// Loads the carrier `bytes` (an ELF shared object made by
    /// [`crate::tls_carrier::carrier_object`]): written to a memfd, opened
    /// with `dlopen` through `/proc/self/fd` (the descriptor stays open
    /// with the carrier). The error is the loader's message, e.g. "cannot allocate memory in
    /// static TLS block" when the static TLS surplus is used up.
    pub fn load(bytes: &[u8]) -> Result<Carrier, String> {
        let fd = super::memory::memfd(c"solder-tls").map_err(|e| format!("memfd_create: {e}"))?;
        let mut file = std::fs::File::from(fd);
        file.write_all(bytes)
            .map_err(|e| format!("writing the TLS carrier: {e}"))?;
        let path = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd()))
            .expect("no NUL in a path made of digits");
        // SAFETY: `path` is NUL-terminated. The carrier has no initializers
        // and no code: loading it runs nothing but the loader.
        let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        let handle = NonNull::new(handle).ok_or_else(super::dl::last_error)?;
        let mut carrier = Carrier {
            handle,
            base: 0,
            _file: file,
        };
        let mut map: *const u64 = std::ptr::null();
        // SAFETY: a live handle; RTLD_DI_LINKMAP stores a `struct link_map *`
        // into `map`, whose first field is `l_addr` (<link.h>).
        let rc = unsafe {
            libc::dlinfo(
                handle.as_ptr(),
                libc::RTLD_DI_LINKMAP,
                (&raw mut map).cast(),
            )
        };
        if rc != 0 || map.is_null() {
            return Err(super::dl::last_error());
        }
        // SAFETY: `map` points to the loader's link map of the carrier,
        // alive while the carrier is open.
        carrier.base = unsafe { map.read() };
        Ok(carrier)
    }

    /// The loader's module id of the block (the first word of a
    /// general-dynamic `tls_index`).
    pub fn module_id(&self) -> Result<u64, String> {
        let mut id: libc::size_t = 0;
        // SAFETY: a live handle; RTLD_DI_TLS_MODID stores a size_t.
        let rc = unsafe {
            libc::dlinfo(
                self.handle.as_ptr(),
                libc::RTLD_DI_TLS_MODID,
                (&raw mut id).cast(),
            )
        };
        if rc != 0 || id == 0 {
            return Err(super::dl::last_error());
        }
        Ok(id as u64)
    }

    /// The thread-pointer offset of the block's first byte, the same in
    /// every thread, for a static carrier (the loader wrote it into the
    /// carrier's slot when it placed the block in static TLS); 0 for a
    /// carrier that is not static.
    pub fn tp_offset(&self) -> i64 {
        self.word(TP_OFFSET_SLOT) as i64
    }

    /// The 8-byte word at `offset` from the load address: a slot the
    /// loader relocated. The caller names a slot of the object it loaded
    /// (`TP_OFFSET_SLOT`, a host probe's `ProbeSlots`), which the builders
    /// place 8-aligned inside the one writable `PT_LOAD`.
    pub fn word(&self, offset: u64) -> u64 {
        // SAFETY: the slot lies inside the object's writable segment,
        // mapped while it is open (the builders in `tls_carrier` place
        // every slot inside the `PT_LOAD` that covers the file); the
        // loader wrote it before `dlopen` returned, and nothing writes it
        // afterwards.
        unsafe { ((self.base + offset) as *const u64).read() }
    }

    /// The calling thread's copy of the block, once the thread has asked
    /// `__tls_get_addr` for it (the loader brings a thread's table of
    /// blocks up to date there, and allocates a block outside static TLS
    /// there); `None` before.
    pub fn block_in_this_thread(&self) -> Option<u64> {
        let mut block: *mut c_void = std::ptr::null_mut();
        // SAFETY: a live handle; RTLD_DI_TLS_DATA stores a `void *`.
        let rc = unsafe {
            libc::dlinfo(
                self.handle.as_ptr(),
                libc::RTLD_DI_TLS_DATA,
                (&raw mut block).cast(),
            )
        };
        (rc == 0 && !block.is_null()).then_some(block as u64)
    }
}

impl Drop for Carrier {
    fn drop(&mut self) {
        // SAFETY: the handle came from a successful dlopen and is closed
        // once; the owner guarantees no code uses the block any more.
        unsafe { libc::dlclose(self.handle.as_ptr()) };
    }
}

type TlsGetAddr = unsafe extern "C" fn(*const [u64; 2]) -> *mut c_void;

/// `__tls_get_addr(&{module, offset})`: the calling thread's address of
/// byte `offset` of module `module`'s block (allocated on first use).
/// `None` when the process has no `__tls_get_addr`.
///
/// # Safety
/// `module` must be the id of a module the loader has loaded (or a
/// carrier that is open) and `offset` inside its block.
pub unsafe fn tls_get_addr(module: u64, offset: u64) -> Option<u64> {
    static FUNCTION: OnceLock<Option<TlsGetAddr>> = OnceLock::new();
    let function = FUNCTION.get_or_init(|| {
        super::dl::global_symbol(c"__tls_get_addr").map(|address| {
            // SAFETY: glibc's `void *__tls_get_addr(tls_index *)`.
            unsafe { std::mem::transmute::<*const (), TlsGetAddr>(address as *const ()) }
        })
    });
    let function = (*function)?;
    let index = [module, offset];
    // SAFETY: guaranteed by the caller; `index` outlives the call.
    Some(unsafe { function(&index) } as u64)
}

/// The calling thread's thread pointer (`%fs:0` on x86-64, which holds
/// the thread control block's own address).
#[cfg(target_arch = "x86_64")]
pub fn thread_pointer() -> u64 {
    let tp: u64;
    // SAFETY: reads the first word of the thread control block, which
    // the x86-64 TLS ABI requires to hold its own address; no side effects.
    unsafe {
        std::arch::asm!("mov {}, qword ptr fs:[0]", out(reg) tp, options(nostack, readonly, preserves_flags));
    }
    tp
}

type ThreadAtExit =
    unsafe extern "C" fn(extern "C" fn(*mut c_void), *mut c_void, *mut c_void) -> i32;

/// Has `function(NULL)` called when the calling thread exits, among the
/// thread's C++ `thread_local` destructors (glibc's
/// `__cxa_thread_atexit_impl`, which the C++ runtime uses too); false when
/// the platform has none.
pub fn at_thread_exit(function: extern "C" fn(*mut c_void)) -> bool {
    static FUNCTION: OnceLock<Option<ThreadAtExit>> = OnceLock::new();
    let register = FUNCTION.get_or_init(|| {
        super::dl::global_symbol(c"__cxa_thread_atexit_impl").map(|address| {
            // SAFETY: glibc's `int __cxa_thread_atexit_impl(void (*)(void *),
            // void *, void *)`.
            unsafe { std::mem::transmute::<*const (), ThreadAtExit>(address as *const ()) }
        })
    });
    let Some(register) = *register else {
        return false;
    };
    // The handle names the object whose code `function` is, so that the
    // loader keeps it loaded until the destructor ran: this binary's.
    let handle = at_thread_exit as *const () as *mut c_void;
    // SAFETY: `function` is a plain function of this binary, valid for the
    // life of the process; glibc calls it once, at thread exit, with NULL.
    unsafe { register(function, std::ptr::null_mut(), handle) == 0 }
}

/// The address of `__tls_get_addr`, for [`tlv_get_addr`] (set by
/// [`tlv_get_addr`] before any descriptor can point at the thunk).
static TLS_GET_ADDR: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

// The thunk of Mach-O thread-local descriptors (what `__tlv_bootstrap`
// binds to). Called as `call *(%rdi)` with `%rdi` the descriptor (thunk,
// key, offset); returns the calling thread's address of the variable in
// `%rax` and, as the descriptor contract requires (compilers keep values
// in registers across the call), changes no other register: it saves the
// System V caller-saved ones, integer and vector, around
// `__tls_get_addr(&descriptor.key)`, whose `tls_index` is the descriptor's
// key and offset words. At entry `%rsp` is 8 mod 16; eight pushes and 264
// bytes leave it 16-aligned for the call.
std::arch::global_asm!(
    ".pushsection .text.solder_rt_tlv_get_addr,\"ax\",@progbits",
    ".p2align 4",
    "solder_rt_tlv_get_addr:",
    "push rdi",
    "push rsi",
    "push rdx",
    "push rcx",
    "push r8",
    "push r9",
    "push r10",
    "push r11",
    "sub rsp, 264",
    "movdqu [rsp + 0], xmm0",
    "movdqu [rsp + 16], xmm1",
    "movdqu [rsp + 32], xmm2",
    "movdqu [rsp + 48], xmm3",
    "movdqu [rsp + 64], xmm4",
    "movdqu [rsp + 80], xmm5",
    "movdqu [rsp + 96], xmm6",
    "movdqu [rsp + 112], xmm7",
    "movdqu [rsp + 128], xmm8",
    "movdqu [rsp + 144], xmm9",
    "movdqu [rsp + 160], xmm10",
    "movdqu [rsp + 176], xmm11",
    "movdqu [rsp + 192], xmm12",
    "movdqu [rsp + 208], xmm13",
    "movdqu [rsp + 224], xmm14",
    "movdqu [rsp + 240], xmm15",
    "lea rdi, [rdi + 8]",
    "call qword ptr [rip + {tls_get_addr}]",
    "movdqu xmm0, [rsp + 0]",
    "movdqu xmm1, [rsp + 16]",
    "movdqu xmm2, [rsp + 32]",
    "movdqu xmm3, [rsp + 48]",
    "movdqu xmm4, [rsp + 64]",
    "movdqu xmm5, [rsp + 80]",
    "movdqu xmm6, [rsp + 96]",
    "movdqu xmm7, [rsp + 112]",
    "movdqu xmm8, [rsp + 128]",
    "movdqu xmm9, [rsp + 144]",
    "movdqu xmm10, [rsp + 160]",
    "movdqu xmm11, [rsp + 176]",
    "movdqu xmm12, [rsp + 192]",
    "movdqu xmm13, [rsp + 208]",
    "movdqu xmm14, [rsp + 224]",
    "movdqu xmm15, [rsp + 240]",
    "add rsp, 264",
    "pop r11",
    "pop r10",
    "pop r9",
    "pop r8",
    "pop rcx",
    "pop rdx",
    "pop rsi",
    "pop rdi",
    "ret",
    ".popsection",
    tls_get_addr = sym TLS_GET_ADDR,
);

unsafe extern "C" {
    /// Only its address is taken: JIT'd code calls it as a descriptor's
    /// thunk (see the assembly above), never Rust.
    safe fn solder_rt_tlv_get_addr();
}

/// The thunk Mach-O thread-local descriptors call (what `__tlv_bootstrap`
/// binds to), or `None` when the process has no `__tls_get_addr`.
pub fn tlv_get_addr() -> Option<u64> {
    let tls_get_addr = super::dl::global_symbol(c"__tls_get_addr")?;
    TLS_GET_ADDR.store(tls_get_addr, std::sync::atomic::Ordering::Release);
    Some(solder_rt_tlv_get_addr as *const () as usize as u64)
}
