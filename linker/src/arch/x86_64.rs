//! x86-64: the ELF relocation table, GOT-load relaxation, and the
//! instruction templates of stubs and thunks.

use super::{Check, Relax, RelocKind, RelocName, RelocOp};

/// What a raw ELF relocation type means, or why it cannot be linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElfReloc {
    Kind(RelocKind),
    /// Known but not linkable here; the string says why.
    Unsupported(&'static str, &'static str),
}

const fn kind(name: RelocName, op: RelocOp, width: u8, check: Check) -> ElfReloc {
    ElfReloc::Kind(RelocKind {
        op,
        width,
        check,
        name,
    })
}

/// An 8-byte absolute address: GOT entries and re-applied bindings.
pub const ABS64: RelocKind = RelocKind {
    op: RelocOp::Absolute,
    width: 8,
    check: Check::Wrap,
    name: &"R_X86_64_64",
};

const TLS: &str = "thread-local storage is not supported yet";
const DYNAMIC: &str = "a dynamic relocation has no place in a relocatable object";

/// The ELF x86-64 relocation table: raw type -> kind, width and range.
pub fn elf_reloc(r_type: object::elf::RelocationType) -> Option<ElfReloc> {
    use Check::*;
    use RelocOp::*;
    use object::elf::*;
    Some(match r_type {
        R_X86_64_NONE => kind(&"R_X86_64_NONE", None, 0, Wrap),
        R_X86_64_64 => kind(&"R_X86_64_64", Absolute, 8, Wrap),
        R_X86_64_PC32 => kind(&"R_X86_64_PC32", PcRelative, 4, Signed),
        R_X86_64_PLT32 => kind(&"R_X86_64_PLT32", Branch, 4, Signed),
        R_X86_64_GOTPCREL => kind(
            &"R_X86_64_GOTPCREL",
            GotEntryPcRel { relax: Relax::No },
            4,
            Signed,
        ),
        R_X86_64_32 => kind(&"R_X86_64_32", Absolute, 4, Unsigned),
        R_X86_64_32S => kind(&"R_X86_64_32S", Absolute, 4, Signed),
        R_X86_64_16 => kind(&"R_X86_64_16", Absolute, 2, Either),
        R_X86_64_PC16 => kind(&"R_X86_64_PC16", PcRelative, 2, Signed),
        R_X86_64_8 => kind(&"R_X86_64_8", Absolute, 1, Either),
        R_X86_64_PC8 => kind(&"R_X86_64_PC8", PcRelative, 1, Signed),
        R_X86_64_PC64 => kind(&"R_X86_64_PC64", PcRelative, 8, Wrap),
        R_X86_64_GOTOFF64 => kind(&"R_X86_64_GOTOFF64", GotBaseOffset, 8, Wrap),
        R_X86_64_GOTPC32 => kind(&"R_X86_64_GOTPC32", GotBasePcRel, 4, Signed),
        R_X86_64_GOT64 => kind(&"R_X86_64_GOT64", GotEntryOffset, 8, Wrap),
        R_X86_64_GOTPCREL64 => kind(
            &"R_X86_64_GOTPCREL64",
            GotEntryPcRel { relax: Relax::No },
            8,
            Wrap,
        ),
        R_X86_64_GOTPC64 => kind(&"R_X86_64_GOTPC64", GotBasePcRel, 8, Wrap),
        R_X86_64_SIZE32 => kind(&"R_X86_64_SIZE32", Size, 4, Unsigned),
        R_X86_64_SIZE64 => kind(&"R_X86_64_SIZE64", Size, 8, Wrap),
        R_X86_64_GOTPCRELX => kind(
            &"R_X86_64_GOTPCRELX",
            GotEntryPcRel { relax: Relax::Mov },
            4,
            Signed,
        ),
        R_X86_64_REX_GOTPCRELX => kind(
            &"R_X86_64_REX_GOTPCRELX",
            GotEntryPcRel {
                relax: Relax::RexMov,
            },
            4,
            Signed,
        ),
        R_X86_64_DTPMOD64 => ElfReloc::Unsupported("R_X86_64_DTPMOD64", TLS),
        R_X86_64_DTPOFF64 => ElfReloc::Unsupported("R_X86_64_DTPOFF64", TLS),
        R_X86_64_TPOFF64 => ElfReloc::Unsupported("R_X86_64_TPOFF64", TLS),
        R_X86_64_TLSGD => ElfReloc::Unsupported("R_X86_64_TLSGD", TLS),
        R_X86_64_TLSLD => ElfReloc::Unsupported("R_X86_64_TLSLD", TLS),
        R_X86_64_DTPOFF32 => ElfReloc::Unsupported("R_X86_64_DTPOFF32", TLS),
        R_X86_64_GOTTPOFF => ElfReloc::Unsupported("R_X86_64_GOTTPOFF", TLS),
        R_X86_64_TPOFF32 => ElfReloc::Unsupported("R_X86_64_TPOFF32", TLS),
        R_X86_64_GOTPC32_TLSDESC => ElfReloc::Unsupported("R_X86_64_GOTPC32_TLSDESC", TLS),
        R_X86_64_TLSDESC_CALL => ElfReloc::Unsupported("R_X86_64_TLSDESC_CALL", TLS),
        R_X86_64_TLSDESC => ElfReloc::Unsupported("R_X86_64_TLSDESC", TLS),
        R_X86_64_COPY => ElfReloc::Unsupported("R_X86_64_COPY", DYNAMIC),
        R_X86_64_GLOB_DAT => ElfReloc::Unsupported("R_X86_64_GLOB_DAT", DYNAMIC),
        R_X86_64_JUMP_SLOT => ElfReloc::Unsupported("R_X86_64_JUMP_SLOT", DYNAMIC),
        R_X86_64_RELATIVE => ElfReloc::Unsupported("R_X86_64_RELATIVE", DYNAMIC),
        R_X86_64_IRELATIVE => ElfReloc::Unsupported("R_X86_64_IRELATIVE", DYNAMIC),
        R_X86_64_GOT32 => {
            ElfReloc::Unsupported("R_X86_64_GOT32", "32-bit GOT offsets are not supported")
        }
        R_X86_64_GOTPLT64 => ElfReloc::Unsupported("R_X86_64_GOTPLT64", "not supported"),
        R_X86_64_PLTOFF64 => ElfReloc::Unsupported("R_X86_64_PLTOFF64", "not supported"),
        _ => return Option::None,
    })
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
/// The rel32 field of the shim's `call *slot(%rip)`.
pub const WIN64_TO_SYSV_SLOT: Rel32Field = (104, 108);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::{fits, write_checked};

    fn kind_of(r_type: object::elf::RelocationType) -> RelocKind {
        match elf_reloc(r_type) {
            Some(ElfReloc::Kind(k)) => k,
            other => panic!("{r_type:?}: {other:?}"),
        }
    }

    /// The exact boundary: with the usual addend -4, a target at
    /// P + 4 + 0x7fffffff links and one byte further fails.
    #[test]
    fn pc32_range_boundary() {
        let pc32 = kind_of(object::elf::R_X86_64_PC32);
        let p: i128 = 0x4000_0000;
        let a: i128 = -4;
        let mut field = [0u8; 4];
        let s = p + 4 + 0x7fff_ffff;
        write_checked(&pc32, &mut field, s + a - p).unwrap();
        assert_eq!(field, 0x7fff_ffffu32.to_le_bytes());
        let err = write_checked(&pc32, &mut field, s + 1 + a - p).unwrap_err();
        assert_eq!(err.width, "signed 32 bits");
        // And backwards: P + 4 - 0x80000000 is the lowest reachable target.
        let low = p + 4 - 0x8000_0000;
        write_checked(&pc32, &mut field, low + a - p).unwrap();
        assert!(write_checked(&pc32, &mut field, low - 1 + a - p).is_err());
    }

    #[test]
    fn every_required_kind_is_in_the_table() {
        use object::elf::*;
        let expected: &[(object::elf::RelocationType, RelocOp, u8, Check)] = &[
            (R_X86_64_64, RelocOp::Absolute, 8, Check::Wrap),
            (R_X86_64_PC32, RelocOp::PcRelative, 4, Check::Signed),
            (R_X86_64_PLT32, RelocOp::Branch, 4, Check::Signed),
            (R_X86_64_32, RelocOp::Absolute, 4, Check::Unsigned),
            (R_X86_64_32S, RelocOp::Absolute, 4, Check::Signed),
            (R_X86_64_PC64, RelocOp::PcRelative, 8, Check::Wrap),
            (
                R_X86_64_GOTPCREL,
                RelocOp::GotEntryPcRel { relax: Relax::No },
                4,
                Check::Signed,
            ),
            (
                R_X86_64_GOTPCRELX,
                RelocOp::GotEntryPcRel { relax: Relax::Mov },
                4,
                Check::Signed,
            ),
            (
                R_X86_64_REX_GOTPCRELX,
                RelocOp::GotEntryPcRel {
                    relax: Relax::RexMov,
                },
                4,
                Check::Signed,
            ),
            (R_X86_64_GOTPC32, RelocOp::GotBasePcRel, 4, Check::Signed),
            (R_X86_64_GOTPC64, RelocOp::GotBasePcRel, 8, Check::Wrap),
            (R_X86_64_GOTOFF64, RelocOp::GotBaseOffset, 8, Check::Wrap),
            (R_X86_64_GOT64, RelocOp::GotEntryOffset, 8, Check::Wrap),
            (R_X86_64_SIZE32, RelocOp::Size, 4, Check::Unsigned),
            (R_X86_64_SIZE64, RelocOp::Size, 8, Check::Wrap),
            (R_X86_64_PC8, RelocOp::PcRelative, 1, Check::Signed),
            (R_X86_64_PC16, RelocOp::PcRelative, 2, Check::Signed),
            (R_X86_64_8, RelocOp::Absolute, 1, Check::Either),
            (R_X86_64_16, RelocOp::Absolute, 2, Check::Either),
            (R_X86_64_NONE, RelocOp::None, 0, Check::Wrap),
        ];
        for &(r_type, op, width, check) in expected {
            let k = kind_of(r_type);
            assert_eq!((k.op, k.width, k.check), (op, width, check), "{}", k.name);
        }
        assert!(matches!(
            elf_reloc(R_X86_64_TPOFF32),
            Some(ElfReloc::Unsupported(_, TLS))
        ));
        assert_eq!(elf_reloc(object::elf::RelocationType(200)), None);
    }

    #[test]
    fn narrow_fields_check_their_ranges() {
        use object::elf::*;
        let cases: &[(object::elf::RelocationType, i128, i128)] = &[
            // (type, last value that fits, first that does not)
            (R_X86_64_PC8, 127, 128),
            (R_X86_64_PC16, 32767, 32768),
            (R_X86_64_8, 255, 256),
            (R_X86_64_16, 65535, 65536),
            (R_X86_64_32, 0xffff_ffff, 0x1_0000_0000),
            (R_X86_64_32S, 0x7fff_ffff, 0x8000_0000),
            (R_X86_64_SIZE32, 0xffff_ffff, 0x1_0000_0000),
            (R_X86_64_GOTPC32, 0x7fff_ffff, 0x8000_0000),
        ];
        for &(r_type, ok, bad) in cases {
            let k = kind_of(r_type);
            let mut field = vec![0u8; usize::from(k.width)];
            write_checked(&k, &mut field, ok).unwrap_or_else(|e| panic!("{}: {e:?}", k.name));
            assert!(write_checked(&k, &mut field, bad).is_err(), "{}", k.name);
        }
        assert!(!fits(-1, 4, kind_of(R_X86_64_32).check));
        assert!(fits(-1, 4, kind_of(R_X86_64_32S).check));
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
    fn refused_kinds_say_exactly_why() {
        use object::elf::*;
        let cases: &[(RelocationType, &str, &str)] = &[
            (R_X86_64_DTPMOD64, "R_X86_64_DTPMOD64", TLS),
            (R_X86_64_DTPOFF64, "R_X86_64_DTPOFF64", TLS),
            (R_X86_64_TPOFF64, "R_X86_64_TPOFF64", TLS),
            (R_X86_64_TLSGD, "R_X86_64_TLSGD", TLS),
            (R_X86_64_TLSLD, "R_X86_64_TLSLD", TLS),
            (R_X86_64_DTPOFF32, "R_X86_64_DTPOFF32", TLS),
            (R_X86_64_GOTTPOFF, "R_X86_64_GOTTPOFF", TLS),
            (R_X86_64_TPOFF32, "R_X86_64_TPOFF32", TLS),
            (R_X86_64_GOTPC32_TLSDESC, "R_X86_64_GOTPC32_TLSDESC", TLS),
            (R_X86_64_TLSDESC_CALL, "R_X86_64_TLSDESC_CALL", TLS),
            (R_X86_64_TLSDESC, "R_X86_64_TLSDESC", TLS),
            (R_X86_64_COPY, "R_X86_64_COPY", DYNAMIC),
            (R_X86_64_GLOB_DAT, "R_X86_64_GLOB_DAT", DYNAMIC),
            (R_X86_64_JUMP_SLOT, "R_X86_64_JUMP_SLOT", DYNAMIC),
            (R_X86_64_RELATIVE, "R_X86_64_RELATIVE", DYNAMIC),
            (R_X86_64_IRELATIVE, "R_X86_64_IRELATIVE", DYNAMIC),
            (
                R_X86_64_GOT32,
                "R_X86_64_GOT32",
                "32-bit GOT offsets are not supported",
            ),
            (R_X86_64_GOTPLT64, "R_X86_64_GOTPLT64", "not supported"),
            (R_X86_64_PLTOFF64, "R_X86_64_PLTOFF64", "not supported"),
        ];
        for &(r_type, name, why) in cases {
            assert_eq!(
                elf_reloc(r_type),
                Some(ElfReloc::Unsupported(name, why)),
                "{name}"
            );
        }
    }

    #[test]
    fn every_linkable_kind_is_named_as_the_psabi_names_it() {
        use object::elf::*;
        let cases: &[(RelocationType, &str)] = &[
            (R_X86_64_NONE, "R_X86_64_NONE"),
            (R_X86_64_64, "R_X86_64_64"),
            (R_X86_64_PC32, "R_X86_64_PC32"),
            (R_X86_64_PLT32, "R_X86_64_PLT32"),
            (R_X86_64_GOTPCREL, "R_X86_64_GOTPCREL"),
            (R_X86_64_32, "R_X86_64_32"),
            (R_X86_64_32S, "R_X86_64_32S"),
            (R_X86_64_16, "R_X86_64_16"),
            (R_X86_64_PC16, "R_X86_64_PC16"),
            (R_X86_64_8, "R_X86_64_8"),
            (R_X86_64_PC8, "R_X86_64_PC8"),
            (R_X86_64_PC64, "R_X86_64_PC64"),
            (R_X86_64_GOTOFF64, "R_X86_64_GOTOFF64"),
            (R_X86_64_GOTPC32, "R_X86_64_GOTPC32"),
            (R_X86_64_GOT64, "R_X86_64_GOT64"),
            (R_X86_64_GOTPCREL64, "R_X86_64_GOTPCREL64"),
            (R_X86_64_GOTPC64, "R_X86_64_GOTPC64"),
            (R_X86_64_SIZE32, "R_X86_64_SIZE32"),
            (R_X86_64_SIZE64, "R_X86_64_SIZE64"),
            (R_X86_64_GOTPCRELX, "R_X86_64_GOTPCRELX"),
            (R_X86_64_REX_GOTPCRELX, "R_X86_64_REX_GOTPCRELX"),
        ];
        for &(r_type, name) in cases {
            assert_eq!(*kind_of(r_type).name, name);
        }
        let gotpcrel64 = kind_of(R_X86_64_GOTPCREL64);
        assert_eq!(
            (gotpcrel64.op, gotpcrel64.width, gotpcrel64.check),
            (RelocOp::GotEntryPcRel { relax: Relax::No }, 8, Check::Wrap)
        );
        assert_eq!(ABS64, kind_of(R_X86_64_64));
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
}
