//! x86-64: the relocation formulas, GOT-load relaxation, the reach of a
//! rel32, and the instruction templates of stubs, thunks and shims; one
//! relocation table per object format ([`elf`], [`macho`], [`coff`]).

pub mod coff;
pub mod elf;
pub mod macho;

use super::{Arch, Operands, Relax, RelocOp};
use crate::error::LinkError;

/// The x86-64 architecture.
pub struct X86_64;

impl Arch for X86_64 {
    const NAME: &'static str = "x86-64";

    /// A rel32 reaches 2 GiB either way; less a 1 MiB margin for addends
    /// (the executor places slabs next to the host with the same margin).
    const DIRECT_REACH: u64 = (1 << 31) - (1 << 20);

    #[inline]
    fn field_value(
        op: RelocOp,
        o: &Operands,
        minus: impl FnOnce() -> i128,
        segment: impl FnOnce() -> Result<(i128, i128), LinkError>,
    ) -> Result<i128, LinkError> {
        Ok(match (op, o.got_entry) {
            (RelocOp::GotEntryPcRel { .. }, None) => o.s + o.a - o.p, // relaxed
            (RelocOp::GotEntryPcRel { .. }, Some(entry)) => o.got + entry + o.a - o.p,
            (RelocOp::GotEntryOffset, Some(entry)) => entry + o.a,
            (RelocOp::GotEntryOffset, None) => unreachable!("GOT offsets are never relaxed"),
            (RelocOp::Absolute, _) => o.s + o.a,
            (RelocOp::PcRelative | RelocOp::Branch, _) => o.s + o.a - o.p,
            (RelocOp::GotBasePcRel, _) => o.got + o.a - o.p,
            (RelocOp::GotBaseOffset, _) => o.s + o.a - o.got,
            (RelocOp::Size, _) => o.size + o.a,
            (RelocOp::Difference, _) => o.s + o.a - minus(),
            (RelocOp::ImageRelative, _) => o.s + o.a - o.image_base,
            (RelocOp::SegmentOffset, _) => o.s + o.a - segment()?.1,
            (RelocOp::SegmentIndex, _) => segment()?.0 + o.a,
            (RelocOp::TpOffset | RelocOp::DtpOffset, _) => o.s + o.a,
            (RelocOp::DtpModule, _) => o.s,
            (
                RelocOp::TlsInitialExec
                | RelocOp::TlsGeneralDynamic
                | RelocOp::TlsLocalDynamic
                | RelocOp::TlsDescriptor,
                Some(entry),
            ) => o.got + entry + o.a - o.p,
            (
                RelocOp::TlsInitialExec
                | RelocOp::TlsGeneralDynamic
                | RelocOp::TlsLocalDynamic
                | RelocOp::TlsDescriptor,
                None,
            ) => unreachable!("thread-local GOT references always have an entry"),
            (RelocOp::None, _) => unreachable!("nothing to patch"),
        })
    }

    fn relax_got_load(code: &mut [u8], offset: usize, relax: Relax) -> bool {
        relax_got_load(code, offset, relax)
    }

    fn relax_general_dynamic(code: &mut [u8], offset: usize, displacement: i32) -> bool {
        relax_general_dynamic(code, offset, displacement)
    }

    const GENERAL_DYNAMIC_CALL: u64 = 8;

    fn relax_local_dynamic(code: &mut [u8], offset: usize) -> bool {
        relax_local_dynamic(code, offset)
    }

    const LOCAL_DYNAMIC_CALL: u64 = 5;
}

/// `lea x@tlsld(%rip), %rdi` up to its field, and `call
/// __tls_get_addr@PLT` up to its own: 12 bytes with both fields.
const LOCAL_DYNAMIC_LEA: [u8; 3] = [0x48, 0x8d, 0x3d];
const LOCAL_DYNAMIC_CALL: u8 = 0xe8;

/// `data16 data16 data16 mov %fs:0, %rax`: the thread pointer in `%rax`,
/// in the local-dynamic sequence's 12 bytes.
const THREAD_POINTER_LOAD: [u8; 12] = [0x66, 0x66, 0x66, 0x64, 0x48, 0x8b, 0x04, 0x25, 0, 0, 0, 0];

/// Rewrites the 12-byte local-dynamic sequence (`lea` of the load's
/// `tls_index`, call of `__tls_get_addr` through the PLT) whose `TLSLD`
/// field is at `offset` into a load of the thread pointer of the same
/// length (the psABI's LD -> LE relaxation). False, changing nothing, when
/// the bytes are not that sequence (`-fno-plt`'s call through the GOT is
/// 13 bytes, and is not rewritten).
pub fn relax_local_dynamic(code: &mut [u8], offset: usize) -> bool {
    let Some(sequence) = sequence_at::<12>(code, offset, LOCAL_DYNAMIC_LEA.len()) else {
        return false;
    };
    if sequence[..3] != LOCAL_DYNAMIC_LEA || sequence[7] != LOCAL_DYNAMIC_CALL {
        return false;
    }
    sequence.copy_from_slice(&THREAD_POINTER_LOAD);
    true
}

/// The `LEN` bytes of `code` from `before` bytes ahead of the field at
/// `offset`: a thread-local sequence to rewrite; `None` when they are not
/// all in `code`.
fn sequence_at<const LEN: usize>(
    code: &mut [u8],
    offset: usize,
    before: usize,
) -> Option<&mut [u8]> {
    let start = offset.checked_sub(before)?;
    code.get_mut(start..start.checked_add(LEN)?)
}

/// `data16 lea x@tlsgd(%rip), %rdi`: the general-dynamic sequence's first
/// instruction, up to its field.
const GENERAL_DYNAMIC_LEA: [u8; 4] = [0x66, 0x48, 0x8d, 0x3d];

/// The call that follows it, up to its field: `data16 data16 rex.W call
/// __tls_get_addr@PLT`, or (`-fno-plt`) `data16 rex.W call
/// *__tls_get_addr@GOTPCREL(%rip)`. Either makes the sequence 16 bytes.
const GENERAL_DYNAMIC_CALLS: [[u8; 4]; 2] = [[0x66, 0x66, 0x48, 0xe8], [0x66, 0x48, 0xff, 0x15]];

/// `mov %fs:0, %rax; add disp32(%rip), %rax`, up to the displacement: 16
/// bytes with it, leaving in `%rax` what `__tls_get_addr` returned, the
/// variable's address in this thread.
const INITIAL_EXEC_ADD: [u8; 12] = [0x64, 0x48, 0x8b, 0x04, 0x25, 0, 0, 0, 0, 0x48, 0x03, 0x05];

/// Rewrites the 16-byte general-dynamic sequence (`lea` of the `tls_index`
/// pair, call of `__tls_get_addr`) whose `TLSGD` field is at `offset` into
/// the initial-exec one of the same length (the psABI's GD -> IE
/// relaxation), its `add` reading the GOT entry `displacement` bytes from
/// the sequence's end. False, changing nothing, when the bytes are not
/// that sequence (`-mcmodel=large` code, or an earlier rewrite).
pub fn relax_general_dynamic(code: &mut [u8], offset: usize, displacement: i32) -> bool {
    let Some(sequence) = sequence_at::<16>(code, offset, GENERAL_DYNAMIC_LEA.len()) else {
        return false;
    };
    if sequence[..4] != GENERAL_DYNAMIC_LEA
        || !GENERAL_DYNAMIC_CALLS
            .iter()
            .any(|call| sequence[8..12] == call[..])
    {
        return false;
    }
    sequence[..12].copy_from_slice(&INITIAL_EXEC_ADD);
    sequence[12..].copy_from_slice(&displacement.to_le_bytes());
    true
}

/// Rewrites a GOT load into a direct address computation when the psABI
/// allows it for this instruction, so the GOT entry is not needed.
///
/// `code` is the section's bytes and `offset` the relocated field. Returns
/// true when the instruction was rewritten; the field then takes
/// `S + A - P` (same place, same addend). The caller only relaxes when the
/// target is defined in the same load, so the result always reaches.
pub fn relax_got_load(code: &mut [u8], offset: usize, relax: Relax) -> bool {
    match relax {
        Relax::No => false,
        Relax::Mov => {
            let Some(at) = offset.checked_sub(2) else {
                return false;
            };
            match (code[at], code[at + 1]) {
                // mov foo@GOTPCREL(%rip), %r32  ->  lea foo(%rip), %r32
                (0x8b, modrm) if modrm & 0xc7 == 0x05 => {
                    code[at] = 0x8d;
                    true
                }
                // call *foo@GOTPCREL(%rip)  ->  addr32 call foo
                (0xff, 0x15) => {
                    code[at] = 0x67; // addr32 prefix: keeps the length at 6 bytes
                    code[at + 1] = 0xe8; // call rel32
                    true
                }
                _ => false,
            }
        }
        Relax::RexMov => {
            let Some(at) = offset.checked_sub(3) else {
                return false;
            };
            let (rex, opcode, modrm) = (code[at], code[at + 1], code[at + 2]);
            // mov foo@GOTPCREL(%rip), %r64  ->  lea foo(%rip), %r64
            if rex & 0xf0 == 0x40 && opcode == 0x8b && modrm & 0xc7 == 0x05 {
                code[at + 1] = 0x8d;
                true
            } else {
                false
            }
        }
    }
}

/// A call stub: jumps through an 8-byte slot. Used for PLT stubs (slot in
/// the module's GOT) and the session's indirection stubs (slot rewritten on
/// hot swap).
pub const JUMP_STUB: [u8; 8] = [
    0xff, 0x25, 0, 0, 0, 0, // jmp *slot(%rip)
    0xcc, 0xcc, // int3 padding
];
/// Offset of the rel32 slot displacement in [`JUMP_STUB`], and the offset the
/// displacement is relative to (the end of the jmp).
pub const JUMP_STUB_DISP: usize = 2;
pub const JUMP_STUB_END: usize = 6;

/// The thunk that passes a module's `__dso_handle` to the runtime: loads its
/// address into an argument register, then jumps through a slot holding the
/// runtime function.
pub const DSO_THUNK_SIZE: usize = 16;

/// A rel32 field in a template: (offset of the field, offset of the end of
/// the instruction, which its displacement is relative to).
pub type Rel32Field = (usize, usize);

/// Builds a dso thunk for integer argument `arg_index` (SysV order).
/// Returns the bytes and its two rel32 fields: `__dso_handle`, then the slot.
pub fn dso_thunk(arg_index: u8) -> Option<([u8; DSO_THUNK_SIZE], [Rel32Field; 2])> {
    // ModRM for `lea disp32(%rip), %reg`: mod=00 rm=101, reg in bits 3..5.
    let modrm = match arg_index {
        0 => 0x3d, // %rdi
        1 => 0x35, // %rsi
        2 => 0x15, // %rdx
        3 => 0x0d, // %rcx
        _ => return None,
    };
    let bytes = [
        0x48, 0x8d, modrm, 0, 0, 0, 0, // lea __dso_handle(%rip), %reg
        0xff, 0x25, 0, 0, 0, 0, // jmp *target_slot(%rip)
        0xcc, 0xcc, 0xcc, // int3 padding
    ];
    Some((bytes, [(3, 7), (9, 13)]))
}

/// The resolver of a TLS descriptor whose variable is in static TLS: the
/// descriptor's second word (at `8(%rax)`) holds the variable's
/// thread-pointer offset, which the resolver returns in `%rax`, touching
/// nothing else, as the descriptor calling convention requires.
pub const TLS_DESCRIPTOR_RESOLVER: [u8; 8] = [
    0x48, 0x8b, 0x40, 0x08, // mov 8(%rax), %rax
    0xc3, // ret
    0xcc, 0xcc, 0xcc, // int3 padding
];

/// A shim that lets Microsoft x64 code (COFF objects) call a System V
/// function (the host's libc, the runtime's interposers): it saves what the
/// Microsoft convention makes callee-saved but System V does not (`rsi`,
/// `rdi`, `xmm6`-`xmm15`), moves up to six integer arguments from `rcx, rdx,
/// r8, r9, [rsp+40], [rsp+48]` to `rdi, rsi, rdx, rcx, r8, r9`, and calls
/// through an 8-byte slot. Floating-point arguments are not moved:
/// the portable host API takes none.
pub const WIN64_TO_SYSV_SHIM: [u8; 192] = {
    let code: [u8; 181] = [
        0x56, // push %rsi
        0x57, // push %rdi
        0x48, 0x81, 0xec, 0xa8, 0x00, 0x00, 0x00, // sub $168, %rsp (rsp 16-aligned)
        0x0f, 0x29, 0x34, 0x24, // movaps %xmm6, (%rsp)
        0x0f, 0x29, 0x7c, 0x24, 0x10, // movaps %xmm7, 16(%rsp)
        0x44, 0x0f, 0x29, 0x44, 0x24, 0x20, // movaps %xmm8, 32(%rsp)
        0x44, 0x0f, 0x29, 0x4c, 0x24, 0x30, // movaps %xmm9, 48(%rsp)
        0x44, 0x0f, 0x29, 0x54, 0x24, 0x40, // movaps %xmm10, 64(%rsp)
        0x44, 0x0f, 0x29, 0x5c, 0x24, 0x50, // movaps %xmm11, 80(%rsp)
        0x44, 0x0f, 0x29, 0x64, 0x24, 0x60, // movaps %xmm12, 96(%rsp)
        0x44, 0x0f, 0x29, 0x6c, 0x24, 0x70, // movaps %xmm13, 112(%rsp)
        0x44, 0x0f, 0x29, 0xb4, 0x24, 0x80, 0x00, 0x00, 0x00, // movaps %xmm14, 128(%rsp)
        0x44, 0x0f, 0x29, 0xbc, 0x24, 0x90, 0x00, 0x00, 0x00, // movaps %xmm15, 144(%rsp)
        0x48, 0x89, 0xcf, // mov %rcx, %rdi (argument 1)
        0x48, 0x89, 0xd6, // mov %rdx, %rsi (argument 2)
        0x4c, 0x89, 0xc2, // mov %r8, %rdx (argument 3)
        0x4c, 0x89, 0xc9, // mov %r9, %rcx (argument 4)
        0x4c, 0x8b, 0x84, 0x24, 0xe0, 0x00, 0x00, 0x00, // mov 224(%rsp), %r8 (argument 5)
        0x4c, 0x8b, 0x8c, 0x24, 0xe8, 0x00, 0x00, 0x00, // mov 232(%rsp), %r9 (argument 6)
        0x31, 0xc0, // xor %eax, %eax (no vector registers, for variadic callees)
        0xff, 0x15, 0, 0, 0, 0, // call *slot(%rip)
        0x0f, 0x28, 0x34, 0x24, // movaps (%rsp), %xmm6
        0x0f, 0x28, 0x7c, 0x24, 0x10, // movaps 16(%rsp), %xmm7
        0x44, 0x0f, 0x28, 0x44, 0x24, 0x20, // movaps 32(%rsp), %xmm8
        0x44, 0x0f, 0x28, 0x4c, 0x24, 0x30, // movaps 48(%rsp), %xmm9
        0x44, 0x0f, 0x28, 0x54, 0x24, 0x40, // movaps 64(%rsp), %xmm10
        0x44, 0x0f, 0x28, 0x5c, 0x24, 0x50, // movaps 80(%rsp), %xmm11
        0x44, 0x0f, 0x28, 0x64, 0x24, 0x60, // movaps 96(%rsp), %xmm12
        0x44, 0x0f, 0x28, 0x6c, 0x24, 0x70, // movaps 112(%rsp), %xmm13
        0x44, 0x0f, 0x28, 0xb4, 0x24, 0x80, 0x00, 0x00, 0x00, // movaps 128(%rsp), %xmm14
        0x44, 0x0f, 0x28, 0xbc, 0x24, 0x90, 0x00, 0x00, 0x00, // movaps 144(%rsp), %xmm15
        0x48, 0x81, 0xc4, 0xa8, 0x00, 0x00, 0x00, // add $168, %rsp
        0x5f, // pop %rdi
        0x5e, // pop %rsi
        0xc3, // ret
    ];
    let mut shim = [0xcc; 192]; // int3 padding
    let mut i = 0;
    while i < code.len() {
        shim[i] = code[i];
        i += 1;
    }
    shim
};
/// The call frame instructions of [`WIN64_TO_SYSV_SHIM`] (after the
/// common CIE's: CFA = RSP + 8), so that unwinding from the System V
/// function it calls (an `abort()`) reaches the COFF code that called it:
/// `push %rsi`, `push %rdi`, `sub $168, %rsp`.
pub const WIN64_TO_SYSV_SHIM_FRAME: [u8; 14] = [
    0x41, 0x0e, 16, 0x84, 2, // at 1: CFA = RSP + 16, RSI at CFA - 16
    0x41, 0x0e, 24, 0x85, 3, // at 2: CFA = RSP + 24, RDI at CFA - 24
    0x47, 0x0e, 0xc0, 0x01, // at 9: CFA = RSP + 192
];

/// The rel32 field of the shim's `call *slot(%rip)`.
pub const WIN64_TO_SYSV_SLOT: Rel32Field = (104, 108);

#[cfg(test)]
mod tests {
    use super::*;

    /// Each formula, with operands distinct enough that any slip (a sign,
    /// a missing term, the wrong operand) changes the value.
    #[test]
    fn every_relocation_formula() {
        let operands = |got_entry| Operands {
            s: 0x1000_0000,
            a: 0x30,
            p: 0x2000_0000,
            got: 0x3000_0000,
            got_entry,
            size: 0x50,
            image_base: 0x100,
        };
        let value = |op, got_entry| {
            X86_64::field_value(op, &operands(got_entry), || 0x700, || Ok((2, 0x0fff_f000)))
                .unwrap()
        };
        let got_load = RelocOp::GotEntryPcRel { relax: Relax::Mov };
        let cases = [
            (got_load, None, 0x1000_0000 + 0x30 - 0x2000_0000),
            (got_load, Some(24), 0x3000_0000 + 24 + 0x30 - 0x2000_0000),
            (RelocOp::GotEntryOffset, Some(24), 24 + 0x30),
            (RelocOp::Absolute, None, 0x1000_0030),
            (RelocOp::PcRelative, None, 0x1000_0030 - 0x2000_0000),
            (RelocOp::Branch, None, 0x1000_0030 - 0x2000_0000),
            (RelocOp::GotBasePcRel, None, 0x3000_0030 - 0x2000_0000),
            (RelocOp::GotBaseOffset, None, 0x1000_0030 - 0x3000_0000),
            (RelocOp::Size, None, 0x80),
            (RelocOp::Difference, None, 0x1000_0030 - 0x700),
            (RelocOp::ImageRelative, None, 0x1000_0030 - 0x100),
            (RelocOp::SegmentOffset, None, 0x1000_0030 - 0x0fff_f000),
            (RelocOp::SegmentIndex, None, 2 + 0x30),
            // Thread-local: S is the variable's offset (from the thread
            // pointer, in its block) or its block's module id.
            (RelocOp::TpOffset, None, 0x1000_0030),
            (RelocOp::DtpOffset, None, 0x1000_0030),
            (RelocOp::DtpModule, None, 0x1000_0000),
            (
                RelocOp::TlsInitialExec,
                Some(24),
                0x3000_0000 + 24 + 0x30 - 0x2000_0000,
            ),
            (
                RelocOp::TlsGeneralDynamic,
                Some(40),
                0x3000_0000 + 40 + 0x30 - 0x2000_0000,
            ),
            (
                RelocOp::TlsLocalDynamic,
                Some(56),
                0x3000_0000 + 56 + 0x30 - 0x2000_0000,
            ),
            (
                RelocOp::TlsDescriptor,
                Some(8),
                0x3000_0000 + 8 + 0x30 - 0x2000_0000,
            ),
        ];
        for (op, got_entry, expected) in cases {
            assert_eq!(value(op, got_entry), expected, "{op:?} {got_entry:?}");
        }
        let outside = X86_64::field_value(
            RelocOp::SegmentIndex,
            &operands(None),
            || 0,
            || Err(LinkError::Memory("not in the module".into())),
        );
        assert!(outside.is_err());
    }

    /// A rel32 reaches 2 GiB either way, less a 1 MiB margin kept for
    /// addends: a target inside the margin goes through a stub.
    #[test]
    fn a_direct_reference_reaches_2_gib_less_the_addend_margin() {
        let base = 1u64 << 40;
        let reach = (1u64 << 31) - (1 << 20);
        for (distance, reaches) in [
            (0, true),
            (reach - 1, true),
            (reach, false),
            ((1 << 31) - (1 << 19), false),
            (1 << 31, false),
        ] {
            assert_eq!(
                X86_64::reaches(base, 0, base - distance),
                reaches,
                "{distance:#x} below"
            );
            assert_eq!(
                X86_64::reaches(base, 0, base + distance),
                reaches,
                "{distance:#x} above"
            );
        }
        // From anywhere in the range: its far end counts too.
        assert!(!X86_64::reaches(base, 0x1000, base - (reach - 0x800)));
        assert!(X86_64::reaches(base, 0x1000, base - (reach - 0x1001)));
    }

    #[test]
    fn relaxes_only_known_instruction_forms() {
        // mov 0(%rip), %rax with REX_GOTPCRELX at offset 3.
        let mut code = [0x48, 0x8b, 0x05, 0, 0, 0, 0];
        assert!(relax_got_load(&mut code, 3, Relax::RexMov));
        assert_eq!(code[..3], [0x48, 0x8d, 0x05]);
        // call *0(%rip) with GOTPCRELX at offset 2.
        let mut call = [0xff, 0x15, 0, 0, 0, 0];
        assert!(relax_got_load(&mut call, 2, Relax::Mov));
        assert_eq!(call[..2], [0x67, 0xe8]);
        // add 0(%rip), %rax is left alone.
        let mut add = [0x48, 0x03, 0x05, 0, 0, 0, 0];
        assert!(!relax_got_load(&mut add, 3, Relax::RexMov));
        assert_eq!(add[1], 0x03);
        // Plain GOTPCREL never relaxes.
        let mut plain = [0x48, 0x8b, 0x05, 0, 0, 0, 0];
        assert!(!relax_got_load(&mut plain, 3, Relax::No));
        assert_eq!(plain[1], 0x8b);
    }

    /// A GOT load is only rewritten when its operand is the RIP-relative
    /// GOT entry (ModRM mod=00 rm=101); any other addressing form, prefix or
    /// opcode stays as it is.
    #[test]
    fn relaxation_refuses_other_addressing_forms() {
        // mov 0(%rip), %ecx (GOTPCRELX): relaxed, the register kept.
        let mut mov = [0x8b, 0x0d, 0, 0, 0, 0];
        assert!(relax_got_load(&mut mov, 2, Relax::Mov));
        assert_eq!(mov[..2], [0x8d, 0x0d]);
        // mov disp32(%rax), %ecx: mod=10, not RIP-relative.
        let mut based = [0x8b, 0x88, 0, 0, 0, 0];
        assert!(!relax_got_load(&mut based, 2, Relax::Mov));
        assert_eq!(based[..2], [0x8b, 0x88]);
        // mov disp32(,%rax), %ecx through a SIB byte: rm=100.
        let mut sib = [0x8b, 0x0c, 0, 0, 0, 0];
        assert!(!relax_got_load(&mut sib, 2, Relax::Mov));
        assert_eq!(sib[..2], [0x8b, 0x0c]);
        // call *disp32(%rax) is not `call *0(%rip)`.
        let mut call_based = [0xff, 0x90, 0, 0, 0, 0];
        assert!(!relax_got_load(&mut call_based, 2, Relax::Mov));
        assert_eq!(call_based[..2], [0xff, 0x90]);
        // jmp *0(%rip) (ModRM 0x25) is not a call.
        let mut jmp = [0xff, 0x25, 0, 0, 0, 0];
        assert!(!relax_got_load(&mut jmp, 2, Relax::Mov));
        assert_eq!(jmp[..2], [0xff, 0x25]);
        // REX forms: the REX prefix must be one (0x4X), the opcode mov and
        // the operand RIP-relative.
        let mut rex_based = [0x48, 0x8b, 0x80, 0, 0, 0, 0];
        assert!(!relax_got_load(&mut rex_based, 3, Relax::RexMov));
        assert_eq!(rex_based[1], 0x8b);
        let mut no_rex = [0x66, 0x8b, 0x05, 0, 0, 0, 0];
        assert!(!relax_got_load(&mut no_rex, 3, Relax::RexMov));
        assert_eq!(no_rex[1], 0x8b);
        let mut rex_r = [0x4c, 0x8b, 0x1d, 0, 0, 0, 0];
        assert!(relax_got_load(&mut rex_r, 3, Relax::RexMov));
        assert_eq!(rex_r[..3], [0x4c, 0x8d, 0x1d]);
        // A field too close to the start of the section has no instruction.
        let mut short = [0u8; 4];
        assert!(!relax_got_load(&mut short, 1, Relax::Mov));
        assert!(!relax_got_load(&mut short, 2, Relax::RexMov));
    }

    #[test]
    fn dso_thunk_encodes_the_register() {
        // lea disp32(%rip), %rdi / %rsi / %rdx / %rcx: the SysV order.
        let modrms = [0x3d, 0x35, 0x15, 0x0d];
        for (arg, modrm) in modrms.into_iter().enumerate() {
            let (bytes, fields) = dso_thunk(arg as u8).unwrap();
            assert_eq!(bytes[..3], [0x48, 0x8d, modrm], "argument {arg}");
            assert_eq!(bytes[7..9], [0xff, 0x25], "argument {arg}: jmp *slot(%rip)");
            assert_eq!(fields, [(3, 7), (9, 13)]);
        }
        assert!(dso_thunk(4).is_none());
        assert!(dso_thunk(6).is_none());
    }

    #[test]
    fn win64_shim_call_field_is_where_the_template_says() {
        let (field, end) = WIN64_TO_SYSV_SLOT;
        assert_eq!(&WIN64_TO_SYSV_SHIM[field - 2..field], &[0xff, 0x15]);
        assert_eq!(end, field + 4);
        // The epilogue follows the call: the first restore is movaps (%rsp), %xmm6.
        assert_eq!(&WIN64_TO_SYSV_SHIM[end..end + 4], &[0x0f, 0x28, 0x34, 0x24]);
        assert_eq!(WIN64_TO_SYSV_SHIM[180], 0xc3);
    }

    /// The general-dynamic sequences gcc and clang emit (with a PLT call,
    /// and `-fno-plt`'s call through the GOT) become the 16-byte
    /// initial-exec one, its displacement in the last 4 bytes; anything
    /// else is left as it is.
    #[test]
    fn general_dynamic_sequences_are_rewritten_to_initial_exec() {
        let mut plt = vec![0x90, 0x66, 0x48, 0x8d, 0x3d, 1, 2, 3, 4];
        plt.extend([0x66, 0x66, 0x48, 0xe8, 5, 6, 7, 8, 0xc3]);
        let mut got = plt.clone();
        got[9..13].copy_from_slice(&[0x66, 0x48, 0xff, 0x15]);
        let expected_tail = (-0x1234i32).to_le_bytes();
        for code in [&mut plt, &mut got] {
            assert!(relax_general_dynamic(code, 5, -0x1234));
            assert_eq!(code[0], 0x90, "the byte before is kept");
            assert_eq!(code[1..13], INITIAL_EXEC_ADD, "mov %fs:0, %rax; add");
            assert_eq!(code[13..17], expected_tail, "the displacement");
            assert_eq!(code[17], 0xc3, "the byte after is kept");
        }
        // Not the sequence: a large-model one, cut short, or at the start.
        let mut large = vec![
            0x48, 0x8d, 0x3d, 0, 0, 0, 0, 0x48, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        let before = large.clone();
        assert!(!relax_general_dynamic(&mut large, 3, 0));
        assert_eq!(large, before);
        let mut short = plt.clone();
        short.truncate(12);
        assert!(!relax_general_dynamic(&mut short, 5, 0));
        assert!(!relax_general_dynamic(&mut [0u8; 16], 2, 0));
    }

    /// The local-dynamic sequence with a PLT call becomes the 12-byte load
    /// of the thread pointer; `-fno-plt`'s (a call through the GOT) and
    /// anything else is left as it is.
    #[test]
    fn local_dynamic_sequences_are_rewritten_to_load_the_thread_pointer() {
        let mut plt = vec![0x90, 0x48, 0x8d, 0x3d, 1, 2, 3, 4, 0xe8, 5, 6, 7, 8, 0xc3];
        assert!(relax_local_dynamic(&mut plt, 4));
        assert_eq!(plt[0], 0x90, "the byte before is kept");
        assert_eq!(plt[1..13], THREAD_POINTER_LOAD);
        assert_eq!(plt[13], 0xc3, "the byte after is kept");
        let mut no_plt = vec![0x48, 0x8d, 0x3d, 1, 2, 3, 4, 0xff, 0x15, 5, 6, 7, 8];
        let before = no_plt.clone();
        assert!(!relax_local_dynamic(&mut no_plt, 3));
        assert_eq!(no_plt, before);
        assert!(!relax_local_dynamic(
            &mut [0x48, 0x8d, 0x3d, 0, 0, 0, 0, 0xe8],
            3
        ));
        assert!(!relax_local_dynamic(&mut [0u8; 12], 1));
    }
}
