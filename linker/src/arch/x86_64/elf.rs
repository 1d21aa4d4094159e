//! The ELF x86-64 relocation table: raw type -> kind, width and range, or
//! why it cannot be linked.

use crate::arch::{Check, Encoding, Relax, RelocKind, RelocName, RelocOp};

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
        encoding: Encoding::Int { width, check },
        name,
    })
}

/// An 8-byte absolute address: GOT entries and re-applied bindings.
pub const ABS64: RelocKind = RelocKind {
    op: RelocOp::Absolute,
    encoding: Encoding::Int {
        width: 8,
        check: Check::Wrap,
    },
    name: &"R_X86_64_64",
};

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
        R_X86_64_DTPMOD64 => kind(&"R_X86_64_DTPMOD64", DtpModule, 8, Wrap),
        R_X86_64_DTPOFF64 => kind(&"R_X86_64_DTPOFF64", DtpOffset, 8, Wrap),
        R_X86_64_TPOFF64 => kind(&"R_X86_64_TPOFF64", TpOffset, 8, Wrap),
        R_X86_64_TLSGD => kind(&"R_X86_64_TLSGD", TlsGeneralDynamic, 4, Signed),
        R_X86_64_TLSLD => kind(&"R_X86_64_TLSLD", TlsLocalDynamic, 4, Signed),
        R_X86_64_DTPOFF32 => kind(&"R_X86_64_DTPOFF32", DtpOffset, 4, Signed),
        R_X86_64_GOTTPOFF => kind(&"R_X86_64_GOTTPOFF", TlsInitialExec, 4, Signed),
        R_X86_64_TPOFF32 => kind(&"R_X86_64_TPOFF32", TpOffset, 4, Signed),
        R_X86_64_GOTPC32_TLSDESC => kind(&"R_X86_64_GOTPC32_TLSDESC", TlsDescriptor, 4, Signed),
        // Marks the descriptor's `call *(%rax)`, which works as it is: there
        // is nothing to patch unless the sequence is relaxed.
        R_X86_64_TLSDESC_CALL => kind(&"R_X86_64_TLSDESC_CALL", None, 0, Wrap),
        R_X86_64_TLSDESC => ElfReloc::Unsupported(
            "R_X86_64_TLSDESC",
            "a TLS descriptor in data is a dynamic relocation; code reaches descriptors \
             through R_X86_64_GOTPC32_TLSDESC",
        ),
        R_X86_64_COPY => ElfReloc::Unsupported("R_X86_64_COPY", DYNAMIC),
        R_X86_64_GLOB_DAT => ElfReloc::Unsupported("R_X86_64_GLOB_DAT", DYNAMIC),
        R_X86_64_JUMP_SLOT => ElfReloc::Unsupported("R_X86_64_JUMP_SLOT", DYNAMIC),
        R_X86_64_RELATIVE => ElfReloc::Unsupported("R_X86_64_RELATIVE", DYNAMIC),
        R_X86_64_IRELATIVE => ElfReloc::Unsupported("R_X86_64_IRELATIVE", DYNAMIC),
        R_X86_64_GOT32 => {
            ElfReloc::Unsupported("R_X86_64_GOT32", "32-bit GOT offsets are not supported")
        }
        R_X86_64_GOTPLT64 => ElfReloc::Unsupported("R_X86_64_GOTPLT64", "not supported"),
        // L + A - GOT, GCC's large-model call: the code adds the GOT's
        // address and calls through the register. There is no PLT: the
        // callee's own address stands for its entry (another module's
        // function is its indirection stub, as for any reference).
        R_X86_64_PLTOFF64 => kind(&"R_X86_64_PLTOFF64", GotBaseOffset, 8, Wrap),
        _ => return Option::None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::{FieldFailure, write_checked};

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
        assert_eq!(
            err,
            FieldFailure::Range {
                width: "signed 32 bits".into()
            }
        );
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
            (R_X86_64_PLTOFF64, RelocOp::GotBaseOffset, 8, Check::Wrap),
            (R_X86_64_GOT64, RelocOp::GotEntryOffset, 8, Check::Wrap),
            (R_X86_64_SIZE32, RelocOp::Size, 4, Check::Unsigned),
            (R_X86_64_SIZE64, RelocOp::Size, 8, Check::Wrap),
            (R_X86_64_PC8, RelocOp::PcRelative, 1, Check::Signed),
            (R_X86_64_PC16, RelocOp::PcRelative, 2, Check::Signed),
            (R_X86_64_8, RelocOp::Absolute, 1, Check::Either),
            (R_X86_64_16, RelocOp::Absolute, 2, Check::Either),
            (R_X86_64_NONE, RelocOp::None, 0, Check::Wrap),
            (R_X86_64_TPOFF32, RelocOp::TpOffset, 4, Check::Signed),
            (R_X86_64_TPOFF64, RelocOp::TpOffset, 8, Check::Wrap),
            (R_X86_64_DTPOFF32, RelocOp::DtpOffset, 4, Check::Signed),
            (R_X86_64_DTPOFF64, RelocOp::DtpOffset, 8, Check::Wrap),
            (R_X86_64_DTPMOD64, RelocOp::DtpModule, 8, Check::Wrap),
            (R_X86_64_GOTTPOFF, RelocOp::TlsInitialExec, 4, Check::Signed),
            (R_X86_64_TLSGD, RelocOp::TlsGeneralDynamic, 4, Check::Signed),
            (R_X86_64_TLSLD, RelocOp::TlsLocalDynamic, 4, Check::Signed),
            (
                R_X86_64_GOTPC32_TLSDESC,
                RelocOp::TlsDescriptor,
                4,
                Check::Signed,
            ),
            (R_X86_64_TLSDESC_CALL, RelocOp::None, 0, Check::Wrap),
        ];
        for &(r_type, op, width, check) in expected {
            let k = kind_of(r_type);
            let encoding = Encoding::Int { width, check };
            assert_eq!((k.op, k.encoding), (op, encoding), "{}", k.name);
        }
        assert!(matches!(
            elf_reloc(R_X86_64_TLSDESC),
            Some(ElfReloc::Unsupported("R_X86_64_TLSDESC", _))
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
            let mut field = vec![0u8; k.encoding.size()];
            write_checked(&k, &mut field, ok).unwrap_or_else(|e| panic!("{}: {e:?}", k.name));
            assert!(write_checked(&k, &mut field, bad).is_err(), "{}", k.name);
        }
        assert!(!kind_of(R_X86_64_32).encoding.fits(-1));
        assert!(kind_of(R_X86_64_32S).encoding.fits(-1));
    }

    #[test]
    fn refused_kinds_say_exactly_why() {
        use object::elf::*;
        let cases: &[(RelocationType, &str, &str)] = &[
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
            (R_X86_64_PLTOFF64, "R_X86_64_PLTOFF64"),
            (R_X86_64_GOTPC32, "R_X86_64_GOTPC32"),
            (R_X86_64_GOT64, "R_X86_64_GOT64"),
            (R_X86_64_GOTPCREL64, "R_X86_64_GOTPCREL64"),
            (R_X86_64_GOTPC64, "R_X86_64_GOTPC64"),
            (R_X86_64_SIZE32, "R_X86_64_SIZE32"),
            (R_X86_64_SIZE64, "R_X86_64_SIZE64"),
            (R_X86_64_GOTPCRELX, "R_X86_64_GOTPCRELX"),
            (R_X86_64_REX_GOTPCRELX, "R_X86_64_REX_GOTPCRELX"),
            (R_X86_64_TPOFF32, "R_X86_64_TPOFF32"),
            (R_X86_64_TPOFF64, "R_X86_64_TPOFF64"),
            (R_X86_64_DTPOFF32, "R_X86_64_DTPOFF32"),
            (R_X86_64_DTPOFF64, "R_X86_64_DTPOFF64"),
            (R_X86_64_DTPMOD64, "R_X86_64_DTPMOD64"),
            (R_X86_64_GOTTPOFF, "R_X86_64_GOTTPOFF"),
            (R_X86_64_TLSGD, "R_X86_64_TLSGD"),
            (R_X86_64_TLSLD, "R_X86_64_TLSLD"),
            (R_X86_64_GOTPC32_TLSDESC, "R_X86_64_GOTPC32_TLSDESC"),
            (R_X86_64_TLSDESC_CALL, "R_X86_64_TLSDESC_CALL"),
        ];
        for &(r_type, name) in cases {
            assert_eq!(*kind_of(r_type).name, name);
        }
        let gotpcrel64 = kind_of(R_X86_64_GOTPCREL64);
        assert_eq!(
            (gotpcrel64.op, gotpcrel64.encoding),
            (
                RelocOp::GotEntryPcRel { relax: Relax::No },
                Encoding::Int {
                    width: 8,
                    check: Check::Wrap
                }
            )
        );
        assert_eq!(ABS64, kind_of(R_X86_64_64));
    }
}
