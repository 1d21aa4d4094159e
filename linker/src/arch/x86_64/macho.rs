//! The Mach-O x86-64 relocation table: each raw `X86_64_RELOC_*` type, with
//! the pc-relative flag and length it allows, mapped onto a generic
//! [`RelocKind`]. Reading addends out of the relocated fields and pairing
//! SUBTRACTOR with UNSIGNED is the front-end's business (`macho.rs`).

use object::macho::RelocationType;

use crate::arch::{Check, Encoding, Relax, RelocKind, RelocName, RelocOp};

/// What a raw Mach-O x86-64 relocation means, or why it cannot be linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MachOReloc {
    /// A linkable relocation. `n` is the number of immediate bytes between
    /// the 4-byte field and the end of the instruction, which the PC is
    /// relative to (the N of `X86_64_RELOC_SIGNED_N`; 0 for every other
    /// type). The assembler has already folded `-N` into an extern
    /// relocation's field; a non-extern one needs it to find its target.
    Kind { kind: RelocKind, n: u8 },
    /// Known but not linkable here: (name, why).
    Unsupported(&'static str, &'static str),
    /// A known type with a pc-relative flag or length it never has:
    /// (name, the form it requires).
    BadForm(&'static str, &'static str),
}

const fn kind(name: RelocName, op: RelocOp, width: u8, check: Check) -> RelocKind {
    RelocKind {
        op,
        encoding: Encoding::Int { width, check },
        name,
    }
}

/// An 8-byte absolute address (`.quad sym`).
pub const UNSIGNED_64: RelocKind =
    kind(&"X86_64_RELOC_UNSIGNED", RelocOp::Absolute, 8, Check::Wrap);
/// A 4-byte absolute address (`.long sym`): zero-extended when used.
pub const UNSIGNED_32: RelocKind = kind(
    &"X86_64_RELOC_UNSIGNED",
    RelocOp::Absolute,
    4,
    Check::Unsigned,
);
/// `.long a - b` (a SUBTRACTOR + UNSIGNED pair of length 2).
pub const SUBTRACTOR_32: RelocKind = kind(
    &"X86_64_RELOC_SUBTRACTOR",
    RelocOp::Difference,
    4,
    Check::Signed,
);
/// `.quad a - b` (a SUBTRACTOR + UNSIGNED pair of length 3).
pub const SUBTRACTOR_64: RelocKind = kind(
    &"X86_64_RELOC_SUBTRACTOR",
    RelocOp::Difference,
    8,
    Check::Wrap,
);

/// Kinds of the edges the front-end adds for `__eh_frame` pointers that
/// carry no relocation: the assembler resolves pc-relative references from
/// `__eh_frame` to other sections of the object itself (ld64 and JITLink
/// recover them by parsing the records), which is only right while the
/// sections keep their original distances.
pub const EH_FRAME_DELTA64: RelocKind = kind(
    &"__eh_frame pc-relative pointer (64-bit)",
    RelocOp::PcRelative,
    8,
    Check::Wrap,
);
pub const EH_FRAME_DELTA32: RelocKind = kind(
    &"__eh_frame pc-relative pointer (32-bit)",
    RelocOp::PcRelative,
    4,
    Check::Signed,
);
pub const EH_FRAME_POINTER64: RelocKind = kind(
    &"__eh_frame absolute pointer (64-bit)",
    RelocOp::Absolute,
    8,
    Check::Wrap,
);
pub const EH_FRAME_POINTER32: RelocKind = kind(
    &"__eh_frame absolute pointer (32-bit)",
    RelocOp::Absolute,
    4,
    Check::Unsigned,
);

/// A thread-local descriptor's key (its second word): the module id of
/// the variable's block. The front-end adds one per descriptor.
pub const TLV_KEY: RelocKind = kind(
    &"thread-local descriptor key (module id)",
    RelocOp::DtpModule,
    8,
    Check::Wrap,
);
/// A thread-local descriptor's offset (its third word, an
/// `X86_64_RELOC_UNSIGNED` against the variable's initial value): the
/// variable's offset in its block.
pub const TLV_OFFSET: RelocKind = kind(
    &"X86_64_RELOC_UNSIGNED (thread-local descriptor offset)",
    RelocOp::DtpOffset,
    8,
    Check::Wrap,
);
const PC32: &str = "pc-relative, length 2 (4 bytes)";

/// The Mach-O x86-64 relocation table: raw type, pc-relative flag and
/// length (2 = 4 bytes, 3 = 8 bytes) -> kind, width and range. `None` for
/// types x86-64 does not define.
pub fn macho_reloc(r_type: RelocationType, pcrel: bool, length: u8) -> Option<MachOReloc> {
    use Check::*;
    use RelocOp::*;
    use object::macho::*;
    // The pc-relative types all patch a rel32 displacement.
    let pc32 = |name: RelocName, op: RelocOp, n: u8| {
        if pcrel && length == 2 {
            MachOReloc::Kind {
                kind: kind(name, op, 4, Signed),
                n,
            }
        } else {
            MachOReloc::BadForm(name, PC32)
        }
    };
    Some(match r_type {
        X86_64_RELOC_UNSIGNED => match (pcrel, length) {
            (false, 3) => MachOReloc::Kind {
                kind: UNSIGNED_64,
                n: 0,
            },
            (false, 2) => MachOReloc::Kind {
                kind: UNSIGNED_32,
                n: 0,
            },
            _ => MachOReloc::BadForm("X86_64_RELOC_UNSIGNED", "absolute, length 2 or 3"),
        },
        X86_64_RELOC_SUBTRACTOR => match (pcrel, length) {
            (false, 3) => MachOReloc::Kind {
                kind: SUBTRACTOR_64,
                n: 0,
            },
            (false, 2) => MachOReloc::Kind {
                kind: SUBTRACTOR_32,
                n: 0,
            },
            _ => MachOReloc::BadForm("X86_64_RELOC_SUBTRACTOR", "absolute, length 2 or 3"),
        },
        X86_64_RELOC_SIGNED => pc32(&"X86_64_RELOC_SIGNED", PcRelative, 0),
        X86_64_RELOC_SIGNED_1 => pc32(&"X86_64_RELOC_SIGNED_1", PcRelative, 1),
        X86_64_RELOC_SIGNED_2 => pc32(&"X86_64_RELOC_SIGNED_2", PcRelative, 2),
        X86_64_RELOC_SIGNED_4 => pc32(&"X86_64_RELOC_SIGNED_4", PcRelative, 4),
        X86_64_RELOC_BRANCH => pc32(&"X86_64_RELOC_BRANCH", Branch, 0),
        // `movq foo@GOTPCREL(%rip), %reg`: may become `leaq foo(%rip), %reg`.
        X86_64_RELOC_GOT_LOAD => pc32(
            &"X86_64_RELOC_GOT_LOAD",
            GotEntryPcRel {
                relax: Relax::RexMov,
            },
            0,
        ),
        X86_64_RELOC_GOT => pc32(&"X86_64_RELOC_GOT", GotEntryPcRel { relax: Relax::No }, 0),
        // `movq _var@TLVP(%rip), %rdi`: loads the address of the variable's
        // descriptor, like a GOT load (and, like one, may become `leaq`
        // when the descriptor is in the load).
        X86_64_RELOC_TLV => pc32(
            &"X86_64_RELOC_TLV",
            GotEntryPcRel {
                relax: Relax::RexMov,
            },
            0,
        ),
        _ => return Option::None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use object::macho::*;

    fn kind_of(r_type: RelocationType, pcrel: bool, length: u8) -> (RelocKind, u8) {
        match macho_reloc(r_type, pcrel, length) {
            Some(MachOReloc::Kind { kind, n }) => (kind, n),
            other => panic!("{r_type:?}: {other:?}"),
        }
    }

    #[test]
    fn every_type_maps_to_its_kind() {
        let expect = |name, op, width, check| RelocKind {
            op,
            encoding: Encoding::Int { width, check },
            name,
        };
        let pc32 = |name, op| expect(name, op, 4, Check::Signed);
        let cases = [
            (
                X86_64_RELOC_UNSIGNED,
                false,
                3,
                expect(&"X86_64_RELOC_UNSIGNED", RelocOp::Absolute, 8, Check::Wrap),
                0,
            ),
            (
                X86_64_RELOC_UNSIGNED,
                false,
                2,
                expect(
                    &"X86_64_RELOC_UNSIGNED",
                    RelocOp::Absolute,
                    4,
                    Check::Unsigned,
                ),
                0,
            ),
            (
                X86_64_RELOC_SUBTRACTOR,
                false,
                3,
                expect(
                    &"X86_64_RELOC_SUBTRACTOR",
                    RelocOp::Difference,
                    8,
                    Check::Wrap,
                ),
                0,
            ),
            (
                X86_64_RELOC_SUBTRACTOR,
                false,
                2,
                expect(
                    &"X86_64_RELOC_SUBTRACTOR",
                    RelocOp::Difference,
                    4,
                    Check::Signed,
                ),
                0,
            ),
            (
                X86_64_RELOC_SIGNED,
                true,
                2,
                pc32(&"X86_64_RELOC_SIGNED", RelocOp::PcRelative),
                0,
            ),
            (
                X86_64_RELOC_SIGNED_1,
                true,
                2,
                pc32(&"X86_64_RELOC_SIGNED_1", RelocOp::PcRelative),
                1,
            ),
            (
                X86_64_RELOC_SIGNED_2,
                true,
                2,
                pc32(&"X86_64_RELOC_SIGNED_2", RelocOp::PcRelative),
                2,
            ),
            (
                X86_64_RELOC_SIGNED_4,
                true,
                2,
                pc32(&"X86_64_RELOC_SIGNED_4", RelocOp::PcRelative),
                4,
            ),
            (
                X86_64_RELOC_BRANCH,
                true,
                2,
                pc32(&"X86_64_RELOC_BRANCH", RelocOp::Branch),
                0,
            ),
            (
                X86_64_RELOC_GOT_LOAD,
                true,
                2,
                pc32(
                    &"X86_64_RELOC_GOT_LOAD",
                    RelocOp::GotEntryPcRel {
                        relax: Relax::RexMov,
                    },
                ),
                0,
            ),
            (
                X86_64_RELOC_GOT,
                true,
                2,
                pc32(
                    &"X86_64_RELOC_GOT",
                    RelocOp::GotEntryPcRel { relax: Relax::No },
                ),
                0,
            ),
        ];
        for (r_type, pcrel, length, expected, n) in cases {
            assert_eq!(
                kind_of(r_type, pcrel, length),
                (expected, n),
                "{} length {length}",
                expected.name
            );
        }
    }

    #[test]
    fn wrong_forms_unsupported_and_unknown_types() {
        // UNSIGNED is never pc-relative nor 1 or 2 bytes wide.
        for (pcrel, length) in [(true, 3), (false, 1), (false, 0)] {
            assert!(matches!(
                macho_reloc(X86_64_RELOC_UNSIGNED, pcrel, length),
                Some(MachOReloc::BadForm("X86_64_RELOC_UNSIGNED", _))
            ));
        }
        // The pc-relative types are rel32 only.
        for r_type in [
            X86_64_RELOC_SIGNED,
            X86_64_RELOC_SIGNED_1,
            X86_64_RELOC_SIGNED_2,
            X86_64_RELOC_SIGNED_4,
            X86_64_RELOC_BRANCH,
            X86_64_RELOC_GOT_LOAD,
            X86_64_RELOC_GOT,
        ] {
            for (pcrel, length) in [(false, 2), (true, 3), (true, 0)] {
                assert!(
                    matches!(
                        macho_reloc(r_type, pcrel, length),
                        Some(MachOReloc::BadForm(..))
                    ),
                    "{r_type:?} {pcrel} {length}"
                );
            }
        }
        assert!(matches!(
            macho_reloc(X86_64_RELOC_SUBTRACTOR, true, 3),
            Some(MachOReloc::BadForm(..))
        ));
        // A descriptor load: a GOT-like, relaxable rel32.
        let (tlv, n) = kind_of(X86_64_RELOC_TLV, true, 2);
        assert_eq!(
            (tlv.op, tlv.encoding, *tlv.name, n),
            (
                RelocOp::GotEntryPcRel {
                    relax: Relax::RexMov
                },
                Encoding::Int {
                    width: 4,
                    check: Check::Signed
                },
                "X86_64_RELOC_TLV",
                0
            )
        );
        assert!(matches!(
            macho_reloc(X86_64_RELOC_TLV, false, 3),
            Some(MachOReloc::BadForm(..))
        ));
        assert_eq!(macho_reloc(RelocationType(10), true, 2), None);
        assert_eq!(macho_reloc(RelocationType(15), false, 3), None);
    }
}
