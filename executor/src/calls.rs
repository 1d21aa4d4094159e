//! How the runtime calls JIT'd functions in their calling convention
//! (System V, or Microsoft x64 for COFF objects), and the routines
//! foreign-ABI code expects from its platform (`__chkstk`,
//! `___chkstk_darwin`, `_fltused`).
//!
//! Both executors (in-process and `solder-executor`) call JIT'd code only
//! through the functions here, so the choice of convention lives in one
//! place. x86-64 only: part of the host layer, compiled out of the portable
//! core.

use std::ffi::{c_char, c_int};

use crate::abi::CallingConvention;

/// `void init(int argc, char **argv, char **envp)`: how glibc calls
/// initializers; other conventions ignore the extra arguments.
type InitSysV = extern "C-unwind" fn(c_int, *const *const c_char, *const *const c_char);
type InitWin64 = extern "win64-unwind" fn(c_int, *const *const c_char, *const *const c_char);
type MainSysV = extern "C-unwind" fn(c_int, *const *const c_char, *const *const c_char) -> c_int;
type MainWin64 =
    extern "win64-unwind" fn(c_int, *const *const c_char, *const *const c_char) -> c_int;
type CallSysV = extern "C-unwind" fn(u64, u64, u64, u64, u64, u64) -> u64;
type CallWin64 = extern "win64-unwind" fn(u64, u64, u64, u64, u64, u64) -> u64;
type ArgSysV = extern "C-unwind" fn(u64);
type ArgWin64 = extern "win64-unwind" fn(u64);

/// A function pointer of type `F` to JIT'd code at `address`.
///
/// # Safety
/// `address` must be nonzero and `F` a function-pointer type; calling the
/// result is only as sound as the code at `address`.
unsafe fn user_fn<F: Copy>(address: u64) -> F {
    debug_assert_eq!(size_of::<F>(), size_of::<usize>());
    debug_assert_ne!(address, 0);
    // SAFETY: guaranteed by the caller: F is a function pointer, the same
    // size as usize, and the address is not null.
    unsafe { std::mem::transmute_copy::<usize, F>(&(address as usize)) }
}

/// Calls an initializer as `void (int, char **, char **)`.
///
/// # Safety
/// `address` must be a live JIT'd function of that signature (or of fewer
/// arguments) in the given convention. JIT'd code is outside Rust's
/// guarantees: if it misbehaves, the crash handler reports the fault.
pub unsafe fn call_initializer(
    address: u64,
    convention: CallingConvention,
    argc: c_int,
    argv: *const *const c_char,
    envp: *const *const c_char,
) {
    // SAFETY: forwarded from the caller.
    unsafe {
        if convention.is_win64() {
            user_fn::<InitWin64>(address)(argc, argv, envp)
        } else {
            user_fn::<InitSysV>(address)(argc, argv, envp)
        }
    }
}

/// Calls `int main(int, char **, char **)`.
///
/// # Safety
/// As for [`call_initializer`].
pub unsafe fn call_main(
    address: u64,
    convention: CallingConvention,
    argc: c_int,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    // SAFETY: forwarded from the caller.
    unsafe {
        if convention.is_win64() {
            user_fn::<MainWin64>(address)(argc, argv, envp)
        } else {
            user_fn::<MainSysV>(address)(argc, argv, envp)
        }
    }
}

/// Calls a function with six integer arguments and an integer result.
/// A function taking fewer ignores the rest in both conventions (the
/// Microsoft one passes the fifth and sixth on the caller's stack).
///
/// # Safety
/// As for [`call_initializer`], for a function of at most six integer
/// arguments.
pub unsafe fn call6(address: u64, convention: CallingConvention, args: [u64; 6]) -> u64 {
    let [a, b, c, d, e, f] = args;
    // SAFETY: forwarded from the caller.
    unsafe {
        if convention.is_win64() {
            user_fn::<CallWin64>(address)(a, b, c, d, e, f)
        } else {
            user_fn::<CallSysV>(address)(a, b, c, d, e, f)
        }
    }
}

/// Calls `void f(void *)` (an `atexit`-family handler; a `void (void)`
/// handler ignores the argument).
///
/// # Safety
/// As for [`call_initializer`].
pub unsafe fn call_handler(address: u64, convention: CallingConvention, arg: u64) {
    // SAFETY: forwarded from the caller.
    unsafe {
        if convention.is_win64() {
            user_fn::<ArgWin64>(address)(arg)
        } else {
            user_fn::<ArgSysV>(address)(arg)
        }
    }
}

// The stack probe of Windows (`__chkstk`) and of Darwin (`___chkstk_darwin`):
// called with the frame size in %rax before a function moves %rsp down by
// more than a page, it touches every page from the caller's %rsp down to
// %rsp - %rax so guard pages are hit in order. It preserves every register
// (Darwin's contract is the stricter one) and leaves %rsp alone.
std::arch::global_asm!(
    ".text",
    ".p2align 4",
    ".globl solder_rt_chkstk",
    ".hidden solder_rt_chkstk",
    "solder_rt_chkstk:",
    "    push rcx",
    "    push rax",
    // The caller's %rsp before its call: above our two pushes and the
    // return address.
    "    lea rcx, [rsp + 24]",
    "2:",
    "    cmp rax, 0x1000",
    "    jb 3f",
    "    sub rcx, 0x1000",
    "    test [rcx], rcx",
    "    sub rax, 0x1000",
    "    jmp 2b",
    "3:",
    "    sub rcx, rax",
    "    test [rcx], rcx",
    "    pop rax",
    "    pop rcx",
    "    ret",
);

unsafe extern "C" {
    /// Not callable from Rust (custom register convention); only its
    /// address is handed to JIT'd code.
    fn solder_rt_chkstk();
}

/// MSVC's marker that floating point is used; code only takes its address.
static FLTUSED: c_int = 0x9875;

/// The address JIT'd code binds `name` to when it is one of the platform
/// routines above (names as C spells them).
pub fn platform_symbol(name: &str) -> Option<u64> {
    match name {
        "__chkstk" | "__chkstk_darwin" => Some(solder_rt_chkstk as *const () as usize as u64),
        "_fltused" => Some(&FLTUSED as *const c_int as usize as u64),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    extern "win64" fn win64_sum(a: u64, b: u64, c: u64, d: u64, e: u64, f: u64) -> u64 {
        a + 10 * b + 100 * c + 1000 * d + 10000 * e + 100000 * f
    }

    #[test]
    fn win64_calls_pass_six_arguments_in_order() {
        let address = win64_sum as *const () as usize as u64;
        // SAFETY: win64_sum takes six integers in the Microsoft convention.
        let value = unsafe { call6(address, CallingConvention::Win64, [1, 2, 3, 4, 5, 6]) };
        assert_eq!(value, 654321);
    }

    #[test]
    fn stack_probe_touches_pages_and_preserves_registers() {
        let probe = platform_symbol("__chkstk").expect("__chkstk is provided");
        assert_eq!(platform_symbol("__chkstk_darwin"), Some(probe));
        let (rax_after, rcx_after): (u64, u64);
        // SAFETY: the probe reads (never writes) the 64 KiB below the
        // current stack pointer, which lies within this thread's stack
        // (test threads have at least 2 MiB); it preserves every register
        // but flags, declared clobbered by default.
        unsafe {
            std::arch::asm!(
                "call {probe}",
                probe = in(reg) probe,
                inout("rax") 0x10000u64 => rax_after,
                inout("rcx") 0x1234u64 => rcx_after,
            );
        }
        assert_eq!((rax_after, rcx_after), (0x10000, 0x1234));
    }
}
