//! The COFF x86-64 (AMD64) relocation table: raw `IMAGE_REL_AMD64_*` types
//! onto the generic [`RelocKind`] vocabulary, and how each type's implicit
//! addend is read from the field (COFF relocations are REL: the addend is
//! the field's current content).

use crate::arch::{Check, Encoding, RelocKind, RelocName, RelocOp};

/// What a raw COFF AMD64 relocation type means, or why it cannot be linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoffReloc {
    /// The kind, and `bias`: what to add to the field's content to get the
    /// addend (`-4 - N` for `REL32_N`, 0 otherwise).
    Kind { kind: RelocKind, bias: i64 },
    /// Known but not linkable here; the strings are its name and why.
    Unsupported(&'static str, &'static str),
}

const fn kind(name: RelocName, op: RelocOp, width: u8, check: Check, bias: i64) -> CoffReloc {
    CoffReloc::Kind {
        kind: RelocKind {
            op,
            encoding: Encoding::Int { width, check },
            name,
        },
        bias,
    }
}

/// The `pc_begin` of a frame description the COFF front-end makes from
/// the object's Windows unwind tables (`.pdata`): the function's address,
/// pc-relative, as in an ELF `.eh_frame`.
pub const UNWIND_PC_BEGIN: RelocKind = RelocKind {
    op: RelocOp::PcRelative,
    encoding: Encoding::Int {
        width: 4,
        check: Check::Signed,
    },
    name: &"frame start from .pdata (pc-relative)",
};

const MANAGED: &str = "a CLR (managed code) relocation has no meaning outside .NET";

/// The COFF AMD64 relocation table: raw type -> kind, width, range and the
/// addend's bias.
pub fn coff_reloc(typ: object::pe::RelocationType) -> Option<CoffReloc> {
    use Check::*;
    use RelocOp::*;
    use object::pe::*;
    // `REL32_N`: the CPU adds the end of the instruction, which is the end
    // of the field plus the N immediate bytes that follow it; the field's
    // content does not include that distance.
    Some(match typ {
        IMAGE_REL_AMD64_ABSOLUTE => kind(&"IMAGE_REL_AMD64_ABSOLUTE", None, 0, Wrap, 0),
        IMAGE_REL_AMD64_ADDR64 => kind(&"IMAGE_REL_AMD64_ADDR64", Absolute, 8, Wrap, 0),
        IMAGE_REL_AMD64_ADDR32 => kind(&"IMAGE_REL_AMD64_ADDR32", Absolute, 4, Unsigned, 0),
        IMAGE_REL_AMD64_ADDR32NB => {
            kind(&"IMAGE_REL_AMD64_ADDR32NB", ImageRelative, 4, Unsigned, 0)
        }
        IMAGE_REL_AMD64_REL32 => kind(&"IMAGE_REL_AMD64_REL32", PcRelative, 4, Signed, -4),
        IMAGE_REL_AMD64_REL32_1 => kind(&"IMAGE_REL_AMD64_REL32_1", PcRelative, 4, Signed, -5),
        IMAGE_REL_AMD64_REL32_2 => kind(&"IMAGE_REL_AMD64_REL32_2", PcRelative, 4, Signed, -6),
        IMAGE_REL_AMD64_REL32_3 => kind(&"IMAGE_REL_AMD64_REL32_3", PcRelative, 4, Signed, -7),
        IMAGE_REL_AMD64_REL32_4 => kind(&"IMAGE_REL_AMD64_REL32_4", PcRelative, 4, Signed, -8),
        IMAGE_REL_AMD64_REL32_5 => kind(&"IMAGE_REL_AMD64_REL32_5", PcRelative, 4, Signed, -9),
        IMAGE_REL_AMD64_SECTION => kind(&"IMAGE_REL_AMD64_SECTION", SegmentIndex, 2, Unsigned, 0),
        IMAGE_REL_AMD64_SECREL => kind(&"IMAGE_REL_AMD64_SECREL", SegmentOffset, 4, Unsigned, 0),
        IMAGE_REL_AMD64_SECREL7 => CoffReloc::Unsupported(
            "IMAGE_REL_AMD64_SECREL7",
            "7-bit section offsets are not supported",
        ),
        IMAGE_REL_AMD64_TOKEN => CoffReloc::Unsupported("IMAGE_REL_AMD64_TOKEN", MANAGED),
        IMAGE_REL_AMD64_SREL32 => CoffReloc::Unsupported(
            "IMAGE_REL_AMD64_SREL32",
            "span-dependent relocations are not supported",
        ),
        IMAGE_REL_AMD64_PAIR => CoffReloc::Unsupported(
            "IMAGE_REL_AMD64_PAIR",
            "span-dependent relocations are not supported",
        ),
        IMAGE_REL_AMD64_SSPAN32 => CoffReloc::Unsupported(
            "IMAGE_REL_AMD64_SSPAN32",
            "span-dependent relocations are not supported",
        ),
        _ => return Option::None,
    })
}

/// The addend of a COFF relocation: the field's little-endian content,
/// sign-extended for signed fields and zero-extended for the others, plus
/// the type's bias. `field` is exactly the kind's width.
pub fn implicit_addend(kind: &RelocKind, bias: i64, field: &[u8]) -> i64 {
    let Encoding::Int { width, check } = kind.encoding else {
        unreachable!("COFF x86-64 fields are integers")
    };
    debug_assert_eq!(field.len(), usize::from(width));
    let mut bytes = [0u8; 8];
    bytes[..field.len()].copy_from_slice(field);
    let raw = u64::from_le_bytes(bytes);
    let bits = u32::from(width) * 8;
    let content = match check {
        _ if bits == 0 || bits == 64 => raw as i64,
        Check::Signed => {
            // Move the field's sign bit to bit 63 and back.
            let shift = 64 - bits;
            ((raw << shift) as i64) >> shift
        }
        Check::Unsigned | Check::Either | Check::Wrap => raw as i64,
    };
    content.wrapping_add(bias)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expect(typ: object::pe::RelocationType) -> (RelocKind, i64) {
        match coff_reloc(typ) {
            Some(CoffReloc::Kind { kind, bias }) => (kind, bias),
            other => panic!("type {typ}: {other:?}"),
        }
    }

    #[test]
    fn addends_are_read_with_the_fields_signedness() {
        let (rel32, bias) = expect(object::pe::IMAGE_REL_AMD64_REL32);
        assert_eq!(implicit_addend(&rel32, bias, &[0xff; 4]), -5);
        let (rel32_5, bias) = expect(object::pe::IMAGE_REL_AMD64_REL32_5);
        assert_eq!(implicit_addend(&rel32_5, bias, &[0, 0, 0, 0]), -9);
        let (addr32, bias) = expect(object::pe::IMAGE_REL_AMD64_ADDR32);
        assert_eq!(implicit_addend(&addr32, bias, &[0xff; 4]), 0xffff_ffff);
        let (addr64, bias) = expect(object::pe::IMAGE_REL_AMD64_ADDR64);
        assert_eq!(implicit_addend(&addr64, bias, &[0xff; 8]), -1);
        let (section, bias) = expect(object::pe::IMAGE_REL_AMD64_SECTION);
        assert_eq!(implicit_addend(&section, bias, &[0xff, 0xff]), 0xffff);
    }

    /// Every linkable type: its name, operation, field and bias.
    #[test]
    fn every_type_maps_to_its_kind() {
        use object::pe::*;
        let cases: [(RelocationType, &str, RelocOp, u8, Check, i64); 12] = [
            (
                IMAGE_REL_AMD64_ABSOLUTE,
                "IMAGE_REL_AMD64_ABSOLUTE",
                RelocOp::None,
                0,
                Check::Wrap,
                0,
            ),
            (
                IMAGE_REL_AMD64_ADDR64,
                "IMAGE_REL_AMD64_ADDR64",
                RelocOp::Absolute,
                8,
                Check::Wrap,
                0,
            ),
            (
                IMAGE_REL_AMD64_ADDR32,
                "IMAGE_REL_AMD64_ADDR32",
                RelocOp::Absolute,
                4,
                Check::Unsigned,
                0,
            ),
            (
                IMAGE_REL_AMD64_ADDR32NB,
                "IMAGE_REL_AMD64_ADDR32NB",
                RelocOp::ImageRelative,
                4,
                Check::Unsigned,
                0,
            ),
            (
                IMAGE_REL_AMD64_REL32,
                "IMAGE_REL_AMD64_REL32",
                RelocOp::PcRelative,
                4,
                Check::Signed,
                -4,
            ),
            (
                IMAGE_REL_AMD64_REL32_1,
                "IMAGE_REL_AMD64_REL32_1",
                RelocOp::PcRelative,
                4,
                Check::Signed,
                -5,
            ),
            (
                IMAGE_REL_AMD64_REL32_2,
                "IMAGE_REL_AMD64_REL32_2",
                RelocOp::PcRelative,
                4,
                Check::Signed,
                -6,
            ),
            (
                IMAGE_REL_AMD64_REL32_3,
                "IMAGE_REL_AMD64_REL32_3",
                RelocOp::PcRelative,
                4,
                Check::Signed,
                -7,
            ),
            (
                IMAGE_REL_AMD64_REL32_4,
                "IMAGE_REL_AMD64_REL32_4",
                RelocOp::PcRelative,
                4,
                Check::Signed,
                -8,
            ),
            (
                IMAGE_REL_AMD64_REL32_5,
                "IMAGE_REL_AMD64_REL32_5",
                RelocOp::PcRelative,
                4,
                Check::Signed,
                -9,
            ),
            (
                IMAGE_REL_AMD64_SECTION,
                "IMAGE_REL_AMD64_SECTION",
                RelocOp::SegmentIndex,
                2,
                Check::Unsigned,
                0,
            ),
            (
                IMAGE_REL_AMD64_SECREL,
                "IMAGE_REL_AMD64_SECREL",
                RelocOp::SegmentOffset,
                4,
                Check::Unsigned,
                0,
            ),
        ];
        for (typ, name, op, width, check, bias) in cases {
            let (kind, b) = expect(typ);
            assert_eq!(
                (*kind.name, kind.op, kind.encoding, b),
                (name, op, Encoding::Int { width, check }, bias)
            );
        }
    }

    /// Types that are known but refused say which and why.
    #[test]
    fn refused_types_say_why() {
        use object::pe::*;
        let span = "span-dependent relocations are not supported";
        let cases = [
            (
                IMAGE_REL_AMD64_SECREL7,
                "IMAGE_REL_AMD64_SECREL7",
                "7-bit section offsets are not supported",
            ),
            (IMAGE_REL_AMD64_TOKEN, "IMAGE_REL_AMD64_TOKEN", MANAGED),
            (IMAGE_REL_AMD64_SREL32, "IMAGE_REL_AMD64_SREL32", span),
            (IMAGE_REL_AMD64_PAIR, "IMAGE_REL_AMD64_PAIR", span),
            (IMAGE_REL_AMD64_SSPAN32, "IMAGE_REL_AMD64_SSPAN32", span),
        ];
        for (typ, name, why) in cases {
            assert_eq!(coff_reloc(typ), Some(CoffReloc::Unsupported(name, why)));
        }
    }

    /// Signed fields of every width are sign-extended; 8-byte ones are
    /// taken whole.
    #[test]
    fn addends_of_every_width() {
        let field = |width, check| RelocKind {
            op: RelocOp::Absolute,
            encoding: Encoding::Int { width, check },
            name: &"R_TEST",
        };
        assert_eq!(
            implicit_addend(&field(2, Check::Signed), 0, &[0xfe, 0xff]),
            -2
        );
        assert_eq!(
            implicit_addend(&field(2, Check::Signed), 0, &[0xfe, 0x7f]),
            0x7ffe
        );
        assert_eq!(implicit_addend(&field(1, Check::Signed), 3, &[0x80]), -125);
        assert_eq!(
            implicit_addend(&field(4, Check::Either), 0, &[0xff; 4]),
            0xffff_ffff
        );
        assert_eq!(implicit_addend(&field(8, Check::Signed), 1, &[0xff; 8]), 0);
        assert_eq!(implicit_addend(&field(0, Check::Wrap), 7, &[]), 7);
        // A field of no bytes has no sign bit to extend, whatever its check.
        assert_eq!(implicit_addend(&field(0, Check::Signed), 5, &[]), 5);
    }

    #[test]
    fn unknown_and_unsupported_types() {
        assert_eq!(coff_reloc(object::pe::RelocationType(0x11)), None);
        assert!(matches!(
            coff_reloc(object::pe::IMAGE_REL_AMD64_PAIR),
            Some(CoffReloc::Unsupported("IMAGE_REL_AMD64_PAIR", _))
        ));
    }
}
