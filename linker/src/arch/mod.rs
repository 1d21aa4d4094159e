//! Architecture back-ends: the generic relocation vocabulary the link graph
//! speaks, and (per architecture) the tables that map raw relocation types
//! onto it, one checked writer, and instruction templates for stubs.

pub mod x86_64;

use crate::error::LinkError;

/// What an architecture owns: its relocation formulas, how GOT loads are
/// relaxed, and how far a direct reference reaches. (Its relocation tables,
/// one per object format, and its stub templates live in its folder.)
pub trait Arch {
    /// The architecture's name, for messages.
    const NAME: &'static str;

    /// How far, in bytes, a direct branch or the narrowest PC-relative
    /// reference to data reaches either way from its place. Every JIT
    /// allocation comes from one slab no larger than this, so references
    /// between JIT'd symbols always reach; targets outside the slab's reach
    /// go through a stub or a copy inside it.
    const DIRECT_REACH: u64;

    /// The value a relocation of `op` gives its field. `minus` gives the
    /// address of a difference's subtrahend and `segment` the 1-based index
    /// and start of the module segment holding S (an error when S is not
    /// in the module); each is evaluated only by the kinds that need it.
    fn field_value(
        op: RelocOp,
        operands: &Operands,
        minus: impl FnOnce() -> i128,
        segment: impl FnOnce() -> Result<(i128, i128), LinkError>,
    ) -> Result<i128, LinkError>;

    /// Rewrites the GOT load whose field is at `offset` in `code` into a
    /// direct address computation, when `relax` and the instruction allow
    /// it; true when it did.
    fn relax_got_load(code: &mut [u8], offset: usize, relax: Relax) -> bool;

    /// Whether a direct reference from anywhere in `base..base + size`
    /// reaches `target`.
    fn reaches(base: u64, size: u64, target: u64) -> bool {
        let end = base.saturating_add(size);
        target.abs_diff(base) < Self::DIRECT_REACH && target.abs_diff(end) < Self::DIRECT_REACH
    }
}

/// The architecture Solder links for.
pub type Machine = x86_64::X86_64;

/// The inputs of a relocation formula, as two's-complement values. Letters
/// as in [`RelocOp`].
pub struct Operands {
    /// S: the target's address (or its stub's, or its copy's).
    pub s: i128,
    /// A: the addend.
    pub a: i128,
    /// P: the place (the field's address).
    pub p: i128,
    /// GOT: the module's GOT base.
    pub got: i128,
    /// G: the offset of the target's GOT entry from GOT, when the edge goes
    /// through one (`None` for a relaxed GOT load).
    pub got_entry: Option<i128>,
    /// Z: the target's size.
    pub size: i128,
    /// The session's image base (COFF `__ImageBase`).
    pub image_base: i128,
}

/// The value a relocation computes. Letters as in the psABI: S target
/// address, A addend, P place, GOT the module's GOT base, G the offset of the
/// target's GOT entry from GOT, Z the target's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RelocOp {
    /// Nothing to patch.
    None,
    /// S + A
    Absolute,
    /// S + A - P
    PcRelative,
    /// S + A - P, where a stub may stand in for a far S (a call or jump).
    Branch,
    /// G + GOT + A - P: the GOT entry's address, PC-relative. `relax` says
    /// which instruction forms may be rewritten to skip the GOT.
    GotEntryPcRel { relax: Relax },
    /// GOT + A - P
    GotBasePcRel,
    /// S + A - GOT
    GotBaseOffset,
    /// G + A
    GotEntryOffset,
    /// Z + A
    Size,
    /// S + A - M, where M is the address of the edge's `minus` symbol
    /// (Mach-O SUBTRACTOR + UNSIGNED pairs).
    Difference,
    /// S + A - ImageBase: an image-relative address (COFF ADDR32NB). The
    /// image base is the start of the session's slab, so every JIT'd symbol
    /// has a small non-negative offset from it.
    ImageRelative,
    /// S + A - start of the segment holding S (COFF SECREL: the segment is
    /// the analogue of a PE output section).
    SegmentOffset,
    /// The 1-based index of the segment holding S (COFF SECTION).
    SegmentIndex,
}

/// Which GOT loads the psABI allows the linker to rewrite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Relax {
    /// Plain GOTPCREL: never rewritten.
    No,
    /// GOTPCRELX: `mov foo@GOTPCREL(%rip), %r32` and `call *foo@GOTPCREL(%rip)`.
    Mov,
    /// REX_GOTPCRELX: `mov foo@GOTPCREL(%rip), %r64`.
    RexMov,
}

/// Which values fit the field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Check {
    /// Two's-complement signed.
    Signed,
    /// Unsigned (zero-extended when used).
    Unsigned,
    /// Either signed or unsigned fits (R_X86_64_8/16, like lld).
    Either,
    /// The field is as wide as an address: any value, modulo 2^64.
    Wrap,
}

/// How a relocation's value is stored in its field, and which values the
/// field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// A little-endian integer of `width` bytes (0, 1, 2, 4 or 8): every
    /// x86-64 field.
    Int { width: u8, check: Check },
}

impl Encoding {
    /// The field's size in bytes: what the writer reads and writes.
    #[inline]
    pub const fn size(self) -> usize {
        match self {
            Encoding::Int { width, .. } => width as usize,
        }
    }

    /// Whether the field holds `value`.
    pub fn fits(self, value: i128) -> bool {
        match self {
            Encoding::Int { width, check } => fits(value, u32::from(width) * 8, check),
        }
    }
}

/// A relocation kind: what to compute and how to store it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RelocKind {
    pub op: RelocOp,
    pub encoding: Encoding,
    /// The format's name for it, for messages (`R_X86_64_PC32`).
    pub name: RelocName,
}

// Kinds ride in every edge: keep them at 16 bytes (see `Edge`).
const _: () = assert!(std::mem::size_of::<RelocKind>() == 16);

/// A relocation kind's name, held by a thin reference: every edge carries a
/// kind, edges are the most numerous values of a link, and a `&'static str`
/// (pointer and length) would make a kind 24 bytes instead of 16.
pub type RelocName = &'static &'static str;

impl RelocKind {
    /// Whether the field is narrower than an address, so a far target cannot
    /// be written directly.
    pub fn is_narrow(&self) -> bool {
        match self.encoding {
            Encoding::Int { width, .. } => width < 8,
        }
    }
}

/// The field could not hold the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeFailure {
    /// "signed 32 bits" and the like.
    pub width: String,
}

/// Whether `value` fits `bits` bits under `check`.
fn fits(value: i128, bits: u32, check: Check) -> bool {
    match check {
        Check::Wrap => true,
        Check::Signed => {
            let half = 1i128 << (bits - 1);
            (-half..half).contains(&value)
        }
        Check::Unsigned => (0..(1i128 << bits)).contains(&value),
        Check::Either => {
            let half = 1i128 << (bits - 1);
            (-half..(1i128 << bits)).contains(&value)
        }
    }
}

/// The one checked writer: stores `value` in `field` (exactly
/// `kind.encoding.size()` bytes) after checking that it fits; a value that
/// does not leaves the field as it was.
#[inline]
pub fn write_checked(kind: &RelocKind, field: &mut [u8], value: i128) -> Result<(), RangeFailure> {
    debug_assert_eq!(field.len(), kind.encoding.size());
    match kind.encoding {
        Encoding::Int { width, check } => {
            let bits = u32::from(width) * 8;
            if !fits(value, bits, check) {
                return Err(range_failure(bits, check));
            }
            let bytes = (value as i64 as u64).to_le_bytes();
            field.copy_from_slice(&bytes[..field.len()]);
            Ok(())
        }
    }
}

/// What a field of `bits` bits under `check` would have held.
#[cold]
fn range_failure(bits: u32, check: Check) -> RangeFailure {
    let width = match check {
        Check::Signed => format!("signed {bits} bits"),
        Check::Unsigned => format!("unsigned {bits} bits"),
        Check::Either | Check::Wrap => format!("{bits} bits"),
    };
    RangeFailure { width }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The slab's reach is the architecture's: a target exactly at the
    /// reach from either end of the range is out of it.
    #[test]
    fn reach_is_measured_from_both_ends() {
        let (base, size) = (0x7f00_0000_0000u64, 1u64 << 20);
        let reach = Machine::DIRECT_REACH;
        assert!(Machine::reaches(base, size, base + size + reach - 1 - size));
        assert!(!Machine::reaches(base, size, base + reach));
        assert!(Machine::reaches(base, size, base + size - reach + 1));
        assert!(!Machine::reaches(base, size, base + size - reach));
    }

    #[test]
    fn integers_fit_at_the_exact_boundaries() {
        assert!(int(4, Check::Signed).fits(i32::MAX as i128));
        assert!(!int(4, Check::Signed).fits(i32::MAX as i128 + 1));
        assert!(int(4, Check::Signed).fits(i32::MIN as i128));
        assert!(!int(4, Check::Signed).fits(i32::MIN as i128 - 1));
        assert!(int(4, Check::Unsigned).fits(u32::MAX as i128));
        assert!(!int(4, Check::Unsigned).fits(u32::MAX as i128 + 1));
        assert!(!int(4, Check::Unsigned).fits(-1));
        assert!(int(1, Check::Either).fits(-128));
        assert!(int(1, Check::Either).fits(255));
        assert!(!int(1, Check::Either).fits(256));
        assert!(!int(1, Check::Either).fits(-129));
        assert!(int(8, Check::Wrap).fits(i128::from(u64::MAX)));
        assert!(int(8, Check::Wrap).fits(-1));
        // 16 bits: both ends of each check.
        assert!(int(2, Check::Signed).fits(-0x8000) && !int(2, Check::Signed).fits(-0x8001));
        assert!(int(2, Check::Signed).fits(0x7fff) && !int(2, Check::Signed).fits(0x8000));
        assert!(int(2, Check::Unsigned).fits(0) && int(2, Check::Unsigned).fits(0xffff));
        assert!(!int(2, Check::Unsigned).fits(0x1_0000) && !int(2, Check::Unsigned).fits(-1));
        assert!(int(2, Check::Either).fits(-0x8000) && !int(2, Check::Either).fits(-0x8001));
        assert!(int(2, Check::Either).fits(0xffff) && !int(2, Check::Either).fits(0x1_0000));
    }

    fn int(width: u8, check: Check) -> Encoding {
        Encoding::Int { width, check }
    }

    fn kind(width: u8, check: Check) -> RelocKind {
        RelocKind {
            op: RelocOp::Absolute,
            encoding: int(width, check),
            name: &"R_TEST",
        }
    }

    #[test]
    fn only_fields_narrower_than_an_address_are_narrow() {
        for width in [1, 2, 4] {
            assert!(kind(width, Check::Signed).is_narrow(), "width {width}");
        }
        assert!(!kind(8, Check::Wrap).is_narrow());
    }

    #[test]
    fn writer_stores_little_endian_exactly_the_field() {
        let mut field = [0xaau8; 4];
        write_checked(&kind(4, Check::Signed), &mut field, -2).unwrap();
        assert_eq!(field, [0xfe, 0xff, 0xff, 0xff]);
        let mut wide = [0u8; 8];
        write_checked(&kind(8, Check::Wrap), &mut wide, 0x1122_3344_5566_7788).unwrap();
        assert_eq!(wide, 0x1122_3344_5566_7788u64.to_le_bytes());
        let mut byte = [0u8; 1];
        write_checked(&kind(1, Check::Either), &mut byte, 0xff).unwrap();
        assert_eq!(byte, [0xff]);
    }

    #[test]
    fn range_failures_name_the_field() {
        let mut field = [0u8; 4];
        let failure = |check, value| {
            write_checked(&kind(4, check), &mut [0u8; 4], value)
                .unwrap_err()
                .width
        };
        assert_eq!(failure(Check::Signed, 1 << 31), "signed 32 bits");
        assert_eq!(failure(Check::Unsigned, -1), "unsigned 32 bits");
        assert_eq!(failure(Check::Either, 1 << 32), "32 bits");
        // A failed write leaves the field as it was.
        assert!(write_checked(&kind(4, Check::Unsigned), &mut field, -1).is_err());
        assert_eq!(field, [0; 4]);
    }
}
