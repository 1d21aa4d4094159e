//! The GDB JIT interface: how a debugger learns of code no file on disk
//! describes. The process defines `__jit_debug_descriptor` (a list of
//! in-memory object files) and `__jit_debug_register_code` (an empty
//! function the debugger puts a breakpoint on); registering an object links
//! it into the list, says so in the descriptor and calls the function. GDB
//! (and LLDB) then read the object's symbols and DWARF, with its sections
//! at the addresses its section headers give (the linker writes the load
//! addresses there).
//!
//! The names and layout are the interface's, fixed by the debuggers.

use std::sync::Mutex;

/// `jit_actions_t`.
const JIT_NOACTION: u32 = 0;
const JIT_REGISTER_FN: u32 = 1;
const JIT_UNREGISTER_FN: u32 = 2;

/// `struct jit_code_entry`.
#[repr(C)]
pub struct JitCodeEntry {
    next_entry: *mut JitCodeEntry,
    prev_entry: *mut JitCodeEntry,
    symfile_addr: *const u8,
    symfile_size: u64,
}

/// `struct jit_descriptor`.
#[repr(C)]
pub struct JitDescriptor {
    version: u32,
    action_flag: u32,
    relevant_entry: *mut JitCodeEntry,
    first_entry: *mut JitCodeEntry,
}

/// What the debugger reads. Changed only under [`LIST`], with the
/// debugger told through [`__jit_debug_register_code`].
#[unsafe(no_mangle)]
pub static mut __jit_debug_descriptor: JitDescriptor = JitDescriptor {
    version: 1,
    action_flag: JIT_NOACTION,
    relevant_entry: std::ptr::null_mut(),
    first_entry: std::ptr::null_mut(),
};

/// The debugger's breakpoint. It must stay a real function of this name
/// that is called: the debugger stops in it and reads the descriptor.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn __jit_debug_register_code() {
    std::hint::black_box(());
}

/// Serializes changes to the list (the debugger reads it while the process
/// is stopped).
static LIST: Mutex<()> = Mutex::new(());

/// A registered object: its entry and bytes, owned until unregistered.
struct Registered {
    entry: *mut JitCodeEntry,
    _image: Box<dyn AsRef<[u8]> + Send>,
}

/// Registers the in-memory object `image` with the debugger; the token
/// [`unregister`] takes. The image is kept until then: its bytes are on
/// the heap (a vector, or bytes shared with the linker's own record of the
/// module), so they stay where the entry says while it is moved.
pub fn register(image: impl AsRef<[u8]> + Send + 'static) -> u64 {
    let image: Box<dyn AsRef<[u8]> + Send> = Box::new(image);
    let bytes = (*image).as_ref();
    let _guard = LIST.lock().unwrap_or_else(|p| p.into_inner());
    let entry = Box::into_raw(Box::new(JitCodeEntry {
        next_entry: std::ptr::null_mut(),
        prev_entry: std::ptr::null_mut(),
        symfile_addr: bytes.as_ptr(),
        symfile_size: bytes.len() as u64,
    }));
    // SAFETY: the list is only changed under LIST, held here; `entry` is a
    // fresh allocation; the descriptor is a static of this process.
    unsafe {
        let descriptor = &raw mut __jit_debug_descriptor;
        let first = (*descriptor).first_entry;
        (*entry).next_entry = first;
        if !first.is_null() {
            (*first).prev_entry = entry;
        }
        (*descriptor).first_entry = entry;
        (*descriptor).relevant_entry = entry;
        (*descriptor).action_flag = JIT_REGISTER_FN;
    }
    __jit_debug_register_code();
    let registered = Box::new(Registered {
        entry,
        _image: image,
    });
    Box::into_raw(registered) as u64
}

/// Unregisters what [`register`] returned `token` for, and frees it.
///
/// # Safety
/// `token` must come from [`register`] and not be unregistered yet.
pub unsafe fn unregister(token: u64) {
    let _guard = LIST.lock().unwrap_or_else(|p| p.into_inner());
    // SAFETY: the caller passes a token of `register`, once: it is the
    // Box it leaked.
    let registered = unsafe { Box::from_raw(token as *mut Registered) };
    let entry = registered.entry;
    // SAFETY: under LIST; `entry` is linked in the list (registered and
    // not yet unregistered), so its neighbours are live entries.
    unsafe {
        let descriptor = &raw mut __jit_debug_descriptor;
        let (prev, next) = ((*entry).prev_entry, (*entry).next_entry);
        if prev.is_null() {
            (*descriptor).first_entry = next;
        } else {
            (*prev).next_entry = next;
        }
        if !next.is_null() {
            (*next).prev_entry = prev;
        }
        (*descriptor).relevant_entry = entry;
        (*descriptor).action_flag = JIT_UNREGISTER_FN;
    }
    __jit_debug_register_code();
    // SAFETY: unlinked above; nothing else holds the entry.
    drop(unsafe { Box::from_raw(entry) });
    drop(registered);
}

/// How many objects are registered (tests).
pub fn registered_count() -> usize {
    let _guard = LIST.lock().unwrap_or_else(|p| p.into_inner());
    let mut count = 0;
    // SAFETY: under LIST; the list's entries are live.
    unsafe {
        let descriptor = &raw const __jit_debug_descriptor;
        let mut entry = (*descriptor).first_entry;
        while !entry.is_null() {
            count += 1;
            entry = (*entry).next_entry;
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    const RERUN: &str = "rerun: cargo test -p solder-executor --lib debugger::tests";

    /// Registering links an entry holding the image at the head of the
    /// list and says so in the descriptor; unregistering unlinks it from
    /// wherever it is, and says that.
    #[test]
    fn registration_links_and_unlinks_entries() {
        let before = registered_count();
        let first = register(vec![1, 2, 3]);
        let second = register(vec![4; 10]);
        assert_eq!(registered_count(), before + 2, "{RERUN}");
        let (flag, size) = {
            let _guard = LIST.lock().unwrap();
            // SAFETY: read under LIST, as the debugger would while
            // stopped; the relevant entry is the live second one.
            unsafe {
                let descriptor = &raw const __jit_debug_descriptor;
                (
                    (*descriptor).action_flag,
                    (*(*descriptor).relevant_entry).symfile_size,
                )
            }
        };
        assert_eq!((flag, size), (JIT_REGISTER_FN, 10), "{RERUN}");
        // SAFETY: tokens of `register`, each unregistered once.
        unsafe { unregister(first) };
        assert_eq!(registered_count(), before + 1, "{RERUN}");
        let flag = {
            let _guard = LIST.lock().unwrap();
            let descriptor = &raw const __jit_debug_descriptor;
            // SAFETY: read under LIST.
            unsafe { (*descriptor).action_flag }
        };
        assert_eq!(flag, JIT_UNREGISTER_FN, "{RERUN}");
        // SAFETY: as above.
        unsafe { unregister(second) };
        assert_eq!(registered_count(), before, "{RERUN}");
    }
}
