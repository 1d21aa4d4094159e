//! Architecture back-ends: the generic relocation vocabulary the link graph
//! speaks (what a relocation computes, [`RelocOp`], and how its field holds
//! the value, [`Encoding`]: a little-endian integer or an instruction's
//! immediate bits) with the one checked writer, [`write_checked`]; and per
//! architecture, the tables that map raw relocation types onto it, and
//! instruction templates for stubs.

pub mod x86_64;

use std::ops::Range;

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

    /// Rewrites the general-dynamic sequence whose `tls_index` field is at
    /// `offset` in `code` (the call of `__tls_get_addr` that follows it
    /// included) into an initial-exec one that loads the variable's
    /// thread-pointer offset from a GOT entry `displacement` bytes from the
    /// sequence's end, when the bytes are the sequence the psABI lets a
    /// linker rewrite; true when it did. The call's own relocation, at
    /// [`Arch::GENERAL_DYNAMIC_CALL`] bytes past `offset`, must then be
    /// left unapplied: its field is now part of the rewritten code.
    fn relax_general_dynamic(code: &mut [u8], offset: usize, displacement: i32) -> bool;

    /// Where the `__tls_get_addr` call's field of a general-dynamic
    /// sequence is, in bytes past its `tls_index` field; the sequence ends
    /// 4 bytes after it.
    const GENERAL_DYNAMIC_CALL: u64;

    /// Rewrites the local-dynamic sequence whose `tls_index` field is at
    /// `offset` in `code` (the call of `__tls_get_addr` that follows
    /// included) into one that leaves the thread pointer where the call
    /// left the block's address, when the bytes are the sequence the psABI
    /// lets a linker rewrite; true when it did. The call's relocation, at
    /// [`Arch::LOCAL_DYNAMIC_CALL`] bytes past `offset`, must then be left
    /// unapplied, and the block offsets the code adds to that address
    /// (`DTPOFF`) become thread-pointer offsets.
    fn relax_local_dynamic(code: &mut [u8], offset: usize) -> bool;

    /// Where the `__tls_get_addr` call's field of a local-dynamic sequence
    /// is, in bytes past its `tls_index` field.
    const LOCAL_DYNAMIC_CALL: u64;

    /// Whether a direct reference from anywhere in `base..base + size`
    /// reaches `target`.
    fn reaches(base: u64, size: u64, target: u64) -> bool {
        let end = base.saturating_add(size);
        target.abs_diff(base) < Self::DIRECT_REACH && target.abs_diff(end) < Self::DIRECT_REACH
    }
}

/// The architecture Solder links for: its folder, through which the rest
/// of the linker reaches the architecture's relocation tables (`elf`,
/// `macho`, `coff`) and instruction templates (`JUMP_STUB`, `dso_thunk`,
/// the Microsoft x64 shim), and its [`Arch`] implementation. A new
/// architecture's folder exports the same names; these two lines choose
/// it.
pub use x86_64 as machine;
pub type Machine = machine::X86_64;

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
    GotEntryPcRel {
        relax: Relax,
    },
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
    /// Thread-local: S + A where S is the variable's offset from the
    /// thread pointer (local exec, `TPOFF32`/`TPOFF64`).
    TpOffset,
    /// Thread-local: S + A where S is the variable's offset in its
    /// module's block (`DTPOFF32`/`DTPOFF64`).
    DtpOffset,
    /// Thread-local: the module id of the variable's block (`DTPMOD64`).
    DtpModule,
    /// Thread-local, through the GOT: G + GOT + A - P, where the GOT entry
    /// (or pair) holds what [`TlsAccess`] says. (One variant per access
    /// model, not one with a field: a kind stays 16 bytes.)
    TlsInitialExec,
    TlsGeneralDynamic,
    TlsLocalDynamic,
    TlsDescriptor,
}

/// What a thread-local GOT reference's entry (or pair of entries) holds:
/// one per access model that goes through the GOT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlsAccess {
    /// Initial exec (`GOTTPOFF`): one entry, the thread-pointer offset.
    InitialExec,
    /// General dynamic (`TLSGD`): a `tls_index` pair, module id and
    /// offset in its block, for `__tls_get_addr`.
    GeneralDynamic,
    /// Local dynamic (`TLSLD`): a `tls_index` pair for the load's own
    /// block at offset 0.
    LocalDynamic,
    /// A TLS descriptor (`GOTPC32_TLSDESC`): a resolver and its argument;
    /// `call *(%rax)` returns the variable's thread-pointer offset.
    Descriptor,
}

impl RelocOp {
    /// Whether the op computes something about a thread-local variable
    /// (and so must target one, and only these may).
    pub fn is_thread_local(self) -> bool {
        matches!(
            self,
            RelocOp::TpOffset | RelocOp::DtpOffset | RelocOp::DtpModule
        ) || self.tls_access().is_some()
    }

    /// The access model of a thread-local reference through the GOT.
    pub fn tls_access(self) -> Option<TlsAccess> {
        Some(match self {
            RelocOp::TlsInitialExec => TlsAccess::InitialExec,
            RelocOp::TlsGeneralDynamic => TlsAccess::GeneralDynamic,
            RelocOp::TlsLocalDynamic => TlsAccess::LocalDynamic,
            RelocOp::TlsDescriptor => TlsAccess::Descriptor,
            _ => return None,
        })
    }
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
    /// No check: the field keeps the value's low bits (an integer as wide
    /// as an address, modulo 2^64; an AArch64 `_NC` immediate).
    Wrap,
}

/// How a relocation's value is stored in its field, and which values the
/// field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// A little-endian integer of `width` bytes (0, 1, 2, 4 or 8): every
    /// x86-64 field.
    Int { width: u8, check: Check },
    /// Bits of a little-endian 32-bit instruction word: an AArch64
    /// immediate.
    Insn(InsnField),
}

impl Encoding {
    /// The field's size in bytes: what the writer reads and writes.
    #[inline]
    pub const fn size(self) -> usize {
        match self {
            Encoding::Int { width, .. } => width as usize,
            Encoding::Insn(_) => 4,
        }
    }

    /// Whether the writer takes `value`: it is in range (and aligned).
    pub fn fits(self, value: i128) -> bool {
        match self {
            Encoding::Int { width, check } => fits(value, u32::from(width) * 8, check),
            Encoding::Insn(insn) => insn.in_range(value) && insn.aligned(value),
        }
    }
}

/// The most pieces an [`InsnField`] has: the most split AArch64 immediate
/// is ADR's and ADRP's, immlo:immhi. (Two keep a kind at 16 bytes.)
const MAX_PIECES: usize = 2;

/// An immediate in a little-endian 32-bit instruction word. The value is
/// shifted right by `shift`; each piece copies the next bits of the shifted
/// value, low bits first, into a bit range of the word; every other bit of
/// the word is kept (read-modify-write). The shifted value must fit the
/// pieces' total width under `check`, and the value must be a multiple of
/// `1 << align_log2`.
///
/// Made by [`InsnField::new`] in a const, which refuses a malformed
/// description at compile time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InsnField {
    /// (lowest bit in the word, length) of each piece, in the order they
    /// take the shifted value's bits; unused pieces are (0, 0).
    pieces: [(u8, u8); MAX_PIECES],
    shift: u8,
    align_log2: u8,
    check: Check,
}

impl InsnField {
    /// A field holding `value >> shift`, checked under `check`, of a value
    /// that must be a multiple of `align` (a power of two). `pieces` maps
    /// bit ranges of the shifted value onto bit ranges of the word:
    /// consecutive value ranges from bit 0, at most two pieces, each pair of
    /// ranges the same length, the word's ranges disjoint and below bit 32.
    ///
    /// ADRP, for one: `InsnField::new(12, 1, Check::Signed, &[(0..2, 29..31),
    /// (2..21, 5..24)])` (immlo, then immhi, of the page delta >> 12).
    ///
    /// # Panics
    ///
    /// On a description that breaks these rules; in a const, that is a
    /// compile error.
    pub const fn new(
        shift: u8,
        align: u64,
        check: Check,
        pieces: &[(Range<u8>, Range<u8>)],
    ) -> InsnField {
        assert!(
            !pieces.is_empty() && pieces.len() <= MAX_PIECES,
            "one or two pieces"
        );
        assert!(align.is_power_of_two(), "the alignment is a power of two");
        let mut out = [(0u8, 0u8); MAX_PIECES];
        let (mut next, mut taken) = (0u8, 0u32);
        let mut i = 0;
        while i < pieces.len() {
            let (value, word) = (&pieces[i].0, &pieces[i].1);
            assert!(
                value.start == next,
                "the pieces take consecutive value bits from bit 0"
            );
            assert!(
                word.start < word.end && word.end <= 32,
                "a piece is in the word"
            );
            let len = word.end - word.start;
            assert!(
                value.end > value.start && value.end - value.start == len,
                "a piece's two ranges are the same length"
            );
            let bits = (((1u64 << len) - 1) << word.start) as u32;
            assert!(taken & bits == 0, "the pieces do not overlap");
            taken |= bits;
            out[i] = (word.start, len);
            next = value.end;
            i += 1;
        }
        assert!(shift < 64, "the shift leaves some of an address");
        InsnField {
            pieces: out,
            shift,
            align_log2: align.trailing_zeros() as u8,
            check,
        }
    }

    /// How many bits of the shifted value the word holds.
    fn bits(self) -> u32 {
        self.pieces.iter().map(|&(_, len)| u32::from(len)).sum()
    }

    fn in_range(self, value: i128) -> bool {
        fits(value >> self.shift, self.bits(), self.check)
    }

    fn aligned(self, value: i128) -> bool {
        value & ((1i128 << self.align_log2) - 1) == 0
    }

    /// Stores `value` in the instruction word `field` after checking it,
    /// keeping the word's other bits.
    fn write(self, field: &mut [u8], value: i128) -> Result<(), FieldFailure> {
        if !self.in_range(value) {
            // The shifted value's range, as a range of the value itself.
            return Err(range_failure(
                self.bits() + u32::from(self.shift),
                self.check,
            ));
        }
        if !self.aligned(value) {
            return Err(FieldFailure::Misaligned {
                alignment: 1 << self.align_log2,
            });
        }
        let len = field.len();
        let Ok(word) = <&mut [u8; 4]>::try_from(field) else {
            return Err(FieldFailure::Range {
                width: format!("{len} bytes (an instruction is 4)"),
            });
        };
        let mut insn = u32::from_le_bytes(*word);
        let mut rest = (value >> self.shift) as u64;
        for (at, len) in self.pieces {
            let mask = ((1u64 << len) - 1) as u32;
            insn = (insn & !(mask << at)) | ((rest as u32 & mask) << at);
            rest >>= len;
        }
        *word = insn.to_le_bytes();
        Ok(())
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
    /// Whether the field holds an absolute address in 32 bits (`-fno-pic`
    /// code's `R_X86_64_32`): its target must be in the low 2 GiB, so a
    /// load with one is placed there.
    pub fn is_absolute32(&self) -> bool {
        self.op == RelocOp::Absolute && matches!(self.encoding, Encoding::Int { width: 4, .. })
    }

    /// Whether the field is narrower than an address, so a far target cannot
    /// be written directly.
    pub fn is_narrow(&self) -> bool {
        match self.encoding {
            Encoding::Int { width, .. } => width < 8,
            Encoding::Insn(_) => true,
        }
    }
}

/// Why the checked writer refused a value (the field is left as it was).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldFailure {
    /// The value is out of range; `width` says which values fit: "signed
    /// 32 bits" and the like.
    Range { width: String },
    /// The value's low bits are not zero: the field holds multiples of
    /// `alignment` only.
    Misaligned { alignment: u64 },
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
/// `kind.encoding.size()` bytes, holding the instruction when the field is
/// one's immediate) after checking that it fits; a value that does not
/// leaves the field as it was.
#[inline]
pub fn write_checked(kind: &RelocKind, field: &mut [u8], value: i128) -> Result<(), FieldFailure> {
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
        Encoding::Insn(insn) => insn.write(field, value),
    }
}

/// The failure of a value out of range of `bits` bits under `check`.
#[cold]
fn range_failure(bits: u32, check: Check) -> FieldFailure {
    let width = match check {
        Check::Signed => format!("signed {bits} bits"),
        Check::Unsigned => format!("unsigned {bits} bits"),
        Check::Either | Check::Wrap => format!("{bits} bits"),
    };
    FieldFailure::Range { width }
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
        let failure = |check, value| write_checked(&kind(4, check), &mut [0u8; 4], value);
        assert_eq!(
            failure(Check::Signed, 1 << 31),
            Err(range("signed 32 bits"))
        );
        assert_eq!(failure(Check::Unsigned, -1), Err(range("unsigned 32 bits")));
        assert_eq!(failure(Check::Either, 1 << 32), Err(range("32 bits")));
        // A failed write leaves the field as it was.
        assert!(write_checked(&kind(4, Check::Unsigned), &mut field, -1).is_err());
        assert_eq!(field, [0; 4]);
    }

    fn range(width: &str) -> FieldFailure {
        FieldFailure::Range {
            width: width.into(),
        }
    }

    // AArch64's fields, as its relocation tables will describe them. The
    // expected words below are the ARM ARM encodings, computed by hand
    // (and checked with `llvm-mc -triple=aarch64 -show-encoding`).

    /// ADRP (R_AARCH64_ADR_PREL_PG_HI21): the page delta >> 12, immlo in
    /// bits 29-30 and immhi in bits 5-23.
    const ADRP: InsnField = InsnField::new(12, 1, Check::Signed, &[(0..2, 29..31), (2..21, 5..24)]);
    /// B and BL (R_AARCH64_JUMP26, CALL26): imm26 in bits 0-25.
    const BRANCH26: InsnField = InsnField::new(2, 4, Check::Signed, &[(0..26, 0..26)]);
    /// A 64-bit LDR's unsigned offset, scaled by 8: imm12 in bits 10-21.
    const LDR64_IMM12: InsnField = InsnField::new(3, 8, Check::Unsigned, &[(0..12, 10..22)]);
    /// R_AARCH64_LDST64_ABS_LO12_NC: bits 3-11 of an address, unchecked.
    const LDR64_LO12_NC: InsnField = InsnField::new(3, 8, Check::Wrap, &[(0..9, 10..19)]);

    /// `word` with `value` written through `field`, or the failure (after
    /// checking that the word was left as it was).
    fn patch(field: InsnField, word: u32, value: i128) -> Result<u32, FieldFailure> {
        let kind = RelocKind {
            op: RelocOp::PcRelative,
            encoding: Encoding::Insn(field),
            name: &"R_TEST",
        };
        let mut bytes = word.to_le_bytes();
        let written = write_checked(&kind, &mut bytes, value);
        if written.is_err() {
            assert_eq!(
                u32::from_le_bytes(bytes),
                word,
                "a refused value is not written"
            );
        }
        written.map(|()| u32::from_le_bytes(bytes))
    }

    #[test]
    fn adrp_splits_the_page_delta_into_immlo_and_immhi() {
        // adrp x0, 0x12345000: imm 0x12345, immlo 1, immhi 0x48d1.
        assert_eq!(patch(ADRP, 0x9000_0000, 0x1234_5000), Ok(0xb009_1a20));
        // One page back: imm -1, every bit of both pieces set.
        assert_eq!(patch(ADRP, 0x9000_0000, -0x1000), Ok(0xf0ff_ffe0));
        // The ends of its reach, +-4 GiB.
        assert_eq!(patch(ADRP, 0x9000_0000, 0xffff_f000), Ok(0xf07f_ffe0));
        assert_eq!(patch(ADRP, 0x9000_0000, -0x1_0000_0000), Ok(0x9080_0000));
        assert_eq!(
            patch(ADRP, 0x9000_0000, 0x1_0000_0000),
            Err(range("signed 33 bits"))
        );
        assert_eq!(
            patch(ADRP, 0x9000_0000, -0x1_0000_1000),
            Err(range("signed 33 bits"))
        );
        // The register (x17) is kept.
        assert_eq!(patch(ADRP, 0x9000_0011, 0x1234_5000), Ok(0xb009_1a31));
    }

    #[test]
    fn branches_take_imm26_of_a_word_offset() {
        // bl .+0x1000, bl .-4, b .+0x1000
        assert_eq!(patch(BRANCH26, 0x9400_0000, 0x1000), Ok(0x9400_0400));
        assert_eq!(patch(BRANCH26, 0x9400_0000, -4), Ok(0x97ff_ffff));
        assert_eq!(patch(BRANCH26, 0x1400_0000, 0x1000), Ok(0x1400_0400));
        // The ends of its reach, +-128 MiB.
        assert_eq!(patch(BRANCH26, 0x9400_0000, 0x7ff_fffc), Ok(0x95ff_ffff));
        assert_eq!(patch(BRANCH26, 0x9400_0000, -0x800_0000), Ok(0x9600_0000));
        assert_eq!(
            patch(BRANCH26, 0x9400_0000, 0x800_0000),
            Err(range("signed 28 bits"))
        );
        assert_eq!(
            patch(BRANCH26, 0x9400_0000, -0x800_0004),
            Err(range("signed 28 bits"))
        );
        // Instructions are 4-byte aligned.
        let misaligned = Err(FieldFailure::Misaligned { alignment: 4 });
        assert_eq!(patch(BRANCH26, 0x9400_0000, 0x1002), misaligned);
        assert_eq!(patch(BRANCH26, 0x9400_0000, -3), misaligned);
    }

    #[test]
    fn scaled_offsets_are_shifted_and_aligned() {
        // ldr x1, [x0, #0x10] and [x0, #0x7ff8]: imm12 = offset / 8.
        assert_eq!(patch(LDR64_IMM12, 0xf940_0001, 0x10), Ok(0xf940_0801));
        assert_eq!(patch(LDR64_IMM12, 0xf940_0001, 0x7ff8), Ok(0xf97f_fc01));
        assert_eq!(
            patch(LDR64_IMM12, 0xf940_0001, 0x8000),
            Err(range("unsigned 15 bits"))
        );
        assert_eq!(
            patch(LDR64_IMM12, 0xf940_0001, -8),
            Err(range("unsigned 15 bits"))
        );
        let misaligned = Err(FieldFailure::Misaligned { alignment: 8 });
        assert_eq!(patch(LDR64_IMM12, 0xf940_0001, 0x14), misaligned);
        assert_eq!(patch(LDR64_IMM12, 0xf940_0001, 0x7ffc), misaligned);
        // An `_NC` field takes the low bits of any address, still aligned:
        // ldr x1, [x0, #0x678] for 0x12345678, #0x988 for -0x12345678.
        assert_eq!(
            patch(LDR64_LO12_NC, 0xf940_0001, 0x1234_5678),
            Ok(0xf943_3c01)
        );
        assert_eq!(
            patch(LDR64_LO12_NC, 0xf940_0001, -0x1234_5678),
            Ok(0xf944_c401)
        );
        assert_eq!(patch(LDR64_LO12_NC, 0xf940_0001, 0x1234_5674), misaligned);
    }

    #[test]
    fn bits_outside_the_field_are_kept() {
        // Zero written into a word of ones clears exactly the field.
        assert_eq!(patch(ADRP, 0xffff_ffff, 0), Ok(0x9f00_001f));
        assert_eq!(patch(BRANCH26, 0xffff_ffff, 0), Ok(0xfc00_0000));
        assert_eq!(patch(LDR64_IMM12, 0xffff_ffff, 0), Ok(0xffc0_03ff));
        assert_eq!(patch(LDR64_LO12_NC, 0xffff_ffff, 0), Ok(0xfff8_03ff));
        // A field's old bits are replaced, not or-ed into.
        assert_eq!(patch(BRANCH26, 0x97ff_ffff, 0x1000), Ok(0x9400_0400));
        assert_eq!(patch(ADRP, 0xf0ff_ffe0, 0x1234_5000), Ok(0xb009_1a20));
    }

    #[test]
    fn instruction_fields_are_narrow_words() {
        let encoding = Encoding::Insn(BRANCH26);
        assert_eq!(encoding.size(), 4);
        assert!(encoding.fits(0x7ff_fffc) && !encoding.fits(0x800_0000));
        assert!(!encoding.fits(2), "misaligned");
        let kind = RelocKind {
            op: RelocOp::Branch,
            encoding,
            name: &"R_TEST",
        };
        assert!(kind.is_narrow());
        // A field shorter than an instruction is refused, not a panic.
        let mut short = [0xaa; 2];
        assert_eq!(
            BRANCH26.write(&mut short, 0),
            Err(range("2 bytes (an instruction is 4)"))
        );
        assert_eq!(short, [0xaa; 2]);
    }

    #[test]
    #[should_panic(expected = "the pieces do not overlap")]
    fn overlapping_pieces_are_refused() {
        InsnField::new(0, 1, Check::Signed, &[(0..4, 0..4), (4..8, 2..6)]);
    }

    #[test]
    fn refused_fields_name_what_and_where() {
        let site = || crate::error::Site {
            object: "a.o".into(),
            section: ".text".into(),
            offset: 0x10,
        };
        let misaligned = FieldFailure::Misaligned { alignment: 4 };
        let error = LinkError::refused_field(
            misaligned,
            site(),
            "R_AARCH64_CALL26",
            "f",
            0x1002,
            "d".into(),
        );
        assert_eq!(
            error.to_string(),
            "a.o section .text at offset 0x10: relocation R_AARCH64_CALL26 against `f` misaligned: \
             value 0x1002 is not a multiple of 4 (d)"
        );
        let error = LinkError::refused_field(
            range("signed 28 bits"),
            site(),
            "R_AARCH64_CALL26",
            "f",
            -0x800_0004,
            "d".into(),
        );
        assert_eq!(
            error.to_string(),
            "a.o section .text at offset 0x10: relocation R_AARCH64_CALL26 against `f` out of range: \
             value -0x8000004 does not fit in signed 28 bits (d)"
        );
    }
}
