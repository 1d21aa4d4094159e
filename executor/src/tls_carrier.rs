//! TLS carriers: the smallest ELF shared object the platform's dynamic
//! loader accepts whose only content is a `PT_TLS` segment — a module's
//! thread-local template (`.tdata` bytes, `.tbss` size, alignment).
//!
//! Loading a carrier (`dlopen`) makes the loader own that module's TLS
//! block the way it owns a shared library's: a block in every thread that
//! exists (initialized from the template when the carrier is loaded) and in
//! every thread created later, `__tls_get_addr` for general-dynamic access
//! through the carrier's module id, and the block freed at thread exit.
//!
//! A *static* carrier also asks for a place in static TLS, at one offset
//! from the thread pointer in every thread, which initial-exec and
//! local-exec code needs: it carries one `R_X86_64_TPOFF64` relocation,
//! which the loader resolves by allocating the block in the static TLS
//! surplus (or fails the `dlopen`: "cannot allocate memory in static TLS
//! block") and which leaves the block's thread-pointer offset in the
//! carrier's [`TP_OFFSET_SLOT`]. This is how a shared library built with
//! initial-exec TLS is loaded, so the loader does every thread's copy.
//!
//! This file only builds the bytes (portable); the host layer loads them
//! (`sys::tls`).

/// Where a static carrier's loader-written thread-pointer offset of the
/// block's first byte is, from the carrier's load address: a
/// little-endian `i64`, negative on x86-64 (the block lies below the
/// thread pointer).
pub const TP_OFFSET_SLOT: u64 = SLOT;

/// A module's thread-local template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsTemplate<'a> {
    /// The initialized bytes (`.tdata`), copied into every thread's block.
    pub init: &'a [u8],
    /// Zero bytes after them (`.tbss`).
    pub zero_size: u64,
    /// The block's alignment: a power of two.
    pub align: u64,
}

/// Where a host library's thread-local variable lives, as the loader says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostThreadLocal {
    /// The loader's module id of the variable's library.
    pub module: u64,
    /// The variable's offset in that module's block.
    pub offset: u64,
    /// The variable's thread-pointer offset, when asked for (`fixed`).
    pub tp_offset: Option<i64>,
}

/// Why a template cannot be carried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CarrierError {
    #[error("a thread-local alignment of {0:#x} is not a power of two of at most a page")]
    Alignment(u64),
    #[error("a thread-local block of {init:#x} initialized and {zero:#x} zero bytes is too large")]
    TooLarge { init: u64, zero: u64 },
}

const EHDR_SIZE: u64 = 64;
const PHDR_SIZE: u64 = 56;
const PHDRS: u64 = 4;
const DYNAMIC: u64 = EHDR_SIZE + PHDRS * PHDR_SIZE;
const DYN_ENTRIES: u64 = 10;
const HASH: u64 = DYNAMIC + DYN_ENTRIES * 16;
const SYMTAB: u64 = HASH + 16;
const STRTAB: u64 = SYMTAB + 24;
const RELA: u64 = STRTAB + 8;
const SLOT: u64 = RELA + 24;
/// Where the template may start (then aligned up).
const TEMPLATE: u64 = SLOT + 8;
/// Blocks above this size are refused (the loader would fail to allocate
/// them per thread, or refuse them from static TLS, anyway).
const MAX_BLOCK: u64 = 1 << 30;
/// Alignments above a page are refused: the template is placed at that
/// alignment in the carrier's file, which must stay small (a request
/// from an untrusted controller could otherwise ask for a huge one).
const MAX_ALIGN: u64 = 4096;

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_TLS: u32 = 7;
const PT_GNU_STACK: u32 = 0x6474_e551;
const PF_W: u32 = 2;
const PF_R: u32 = 4;
const DT_NULL: u64 = 0;
const DT_HASH: u64 = 4;
const DT_STRTAB: u64 = 5;
const DT_SYMTAB: u64 = 6;
const DT_RELA: u64 = 7;
const DT_RELASZ: u64 = 8;
const DT_RELAENT: u64 = 9;
const DT_STRSZ: u64 = 10;
const DT_SYMENT: u64 = 11;
const DT_FLAGS: u64 = 30;
const DF_STATIC_TLS: u64 = 0x10;
const R_X86_64_DTPMOD64: u64 = 16;
const R_X86_64_DTPOFF64: u64 = 17;
const R_X86_64_TPOFF64: u64 = 18;
const PT_NULL: u32 = 0;
/// `st_info` of a global thread-local symbol.
const STB_GLOBAL_STT_TLS: u8 = 0x16;

/// The carrier of `template`, static (a fixed thread-pointer offset, from
/// the static TLS surplus) or not (general-dynamic access only).
pub fn carrier_object(
    template: &TlsTemplate<'_>,
    static_tls: bool,
) -> Result<Vec<u8>, CarrierError> {
    let align = template.align.max(1);
    if !align.is_power_of_two() || align > MAX_ALIGN {
        return Err(CarrierError::Alignment(template.align));
    }
    let init = template.init.len() as u64;
    let too_large = CarrierError::TooLarge {
        init,
        zero: template.zero_size,
    };
    let block = init
        .checked_add(template.zero_size)
        .filter(|&b| b <= MAX_BLOCK)
        .ok_or(too_large)?;
    let start = TEMPLATE.next_multiple_of(align);
    let end = start + init;

    let mut out = Vec::with_capacity(end as usize);
    elf_header(&mut out);
    // The template follows the slot, so the file ends with it.
    let load_size = end;
    phdr(
        &mut out,
        PT_LOAD,
        PF_R | PF_W,
        0,
        load_size,
        load_size,
        0x1000,
    );
    phdr(
        &mut out,
        PT_DYNAMIC,
        PF_R | PF_W,
        DYNAMIC,
        DYN_ENTRIES * 16,
        DYN_ENTRIES * 16,
        8,
    );
    phdr(&mut out, PT_TLS, PF_R, start, init, block, align);
    phdr(&mut out, PT_GNU_STACK, PF_R | PF_W, 0, 0, 0, 16);
    debug_assert_eq!(out.len() as u64, DYNAMIC);

    let relocations = if static_tls { 24 } else { 0 };
    let flags = if static_tls { DF_STATIC_TLS } else { 0 };
    for (tag, value) in [
        (DT_HASH, HASH),
        (DT_STRTAB, STRTAB),
        (DT_SYMTAB, SYMTAB),
        (DT_STRSZ, 1),
        (DT_SYMENT, 24),
        (DT_RELA, RELA),
        (DT_RELASZ, relocations),
        (DT_RELAENT, 24),
        (DT_FLAGS, flags),
        (DT_NULL, 0),
    ] {
        u64s(&mut out, &[tag, value]);
    }
    // A hash table of one bucket and the null symbol alone.
    u32s(&mut out, &[1, 1, 0, 0]);
    out.extend_from_slice(&[0; 24]); // the null symbol
    out.extend_from_slice(&[0; 8]); // the string table: ""
    // TPOFF64 against the null symbol (local: this carrier's own block),
    // addend 0: the loader writes the block's thread-pointer offset.
    u64s(&mut out, &[SLOT, R_X86_64_TPOFF64, 0]);
    out.extend_from_slice(&[0; 8]); // the slot
    out.resize(start as usize, 0);
    out.extend_from_slice(template.init);
    Ok(out)
}

/// Where a host probe's loader-written words are, from its load address:
/// the module id (`R_X86_64_DTPMOD64`), the offset in that module's block
/// (`R_X86_64_DTPOFF64`) and, for a fixed probe, the thread-pointer offset
/// (`R_X86_64_TPOFF64`) of the probed variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeSlots {
    pub module: u64,
    pub offset: u64,
    /// `None` for a probe that does not ask for static TLS.
    pub tp_offset: Option<u64>,
}

/// Why a host variable cannot be probed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    #[error("`{0}` cannot be a symbol name (empty, over 4096 bytes, or with a NUL byte)")]
    Name(String),
}

/// A *host probe*: a shared object with no contents of its own whose
/// relocations ask the loader where the host's thread-local variable
/// `name` lives: `R_X86_64_DTPMOD64` and `R_X86_64_DTPOFF64` (its module
/// id and offset, what general-dynamic code needs), and with `fixed`,
/// `R_X86_64_TPOFF64` (its thread-pointer offset, what initial-exec code
/// needs). For the last, the loader places the variable's library in
/// static TLS if no thread has used its block yet, as it does for a
/// library whose initial-exec references name it, or fails the `dlopen`.
/// Returns the bytes and where the loader writes the answers.
pub fn host_probe_object(name: &str, fixed: bool) -> Result<(Vec<u8>, ProbeSlots), ProbeError> {
    if name.is_empty() || name.len() > 4096 || name.contains('\0') {
        return Err(ProbeError::Name(name.chars().take(64).collect()));
    }
    let hash = DYNAMIC + DYN_ENTRIES * 16;
    let symtab = hash + 24;
    let strtab = symtab + 48;
    let strsz = name.len() as u64 + 2;
    let rela = strtab + strsz.next_multiple_of(8);
    let relocations: &[u64] = if fixed {
        &[R_X86_64_DTPMOD64, R_X86_64_DTPOFF64, R_X86_64_TPOFF64]
    } else {
        &[R_X86_64_DTPMOD64, R_X86_64_DTPOFF64]
    };
    let slots = rela + 24 * relocations.len() as u64;
    let end = slots + 8 * relocations.len() as u64;

    let mut out = Vec::with_capacity(end as usize);
    elf_header(&mut out);
    phdr(&mut out, PT_LOAD, PF_R | PF_W, 0, end, end, 0x1000);
    let dynamic_size = DYN_ENTRIES * 16;
    phdr(
        &mut out,
        PT_DYNAMIC,
        PF_R | PF_W,
        DYNAMIC,
        dynamic_size,
        dynamic_size,
        8,
    );
    phdr(&mut out, PT_NULL, 0, 0, 0, 0, 0);
    phdr(&mut out, PT_GNU_STACK, PF_R | PF_W, 0, 0, 0, 16);
    for (tag, value) in [
        (DT_HASH, hash),
        (DT_STRTAB, strtab),
        (DT_SYMTAB, symtab),
        (DT_STRSZ, strsz),
        (DT_SYMENT, 24),
        (DT_RELA, rela),
        (DT_RELASZ, 24 * relocations.len() as u64),
        (DT_RELAENT, 24),
        (DT_FLAGS, 0),
        (DT_NULL, 0),
    ] {
        u64s(&mut out, &[tag, value]);
    }
    u32s(&mut out, &[1, 2, 0, 0, 0, 0]); // one bucket, two chain entries
    out.extend_from_slice(&[0; 24]); // the null symbol
    u32s(&mut out, &[1]); // st_name
    out.extend_from_slice(&[STB_GLOBAL_STT_TLS, 0, 0, 0]); // info, other, SHN_UNDEF
    u64s(&mut out, &[0, 0]); // value, size
    out.push(0);
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    out.resize(rela as usize, 0);
    for (i, &kind) in relocations.iter().enumerate() {
        u64s(&mut out, &[slots + 8 * i as u64, (1 << 32) | kind, 0]);
    }
    out.resize(end as usize, 0);
    let slot = |i: u64| slots + 8 * i;
    Ok((
        out,
        ProbeSlots {
            module: slot(0),
            offset: slot(1),
            tp_offset: fixed.then(|| slot(2)),
        },
    ))
}

fn elf_header(out: &mut Vec<u8>) {
    out.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
    out.extend_from_slice(&[0; 8]);
    u16s(out, &[3, 62]); // ET_DYN, EM_X86_64
    u32s(out, &[1]);
    u64s(out, &[0, EHDR_SIZE, 0]); // entry, program headers, no sections
    u32s(out, &[0]);
    u16s(
        out,
        &[EHDR_SIZE as u16, PHDR_SIZE as u16, PHDRS as u16, 64, 0, 0],
    );
}

fn phdr(out: &mut Vec<u8>, kind: u32, flags: u32, at: u64, file: u64, memory: u64, align: u64) {
    u32s(out, &[kind, flags]);
    u64s(out, &[at, at, at, file, memory, align]);
}

fn u16s(out: &mut Vec<u8>, values: &[u16]) {
    values
        .iter()
        .for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
}

fn u32s(out: &mut Vec<u8>, values: &[u32]) {
    values
        .iter()
        .for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
}

fn u64s(out: &mut Vec<u8>, values: &[u64]) {
    values
        .iter()
        .for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u64_at(bytes: &[u8], at: u64) -> u64 {
        u64::from_le_bytes(bytes[at as usize..at as usize + 8].try_into().unwrap())
    }

    /// The program header of type `kind`: (offset, file size, memory size,
    /// alignment).
    fn segment(bytes: &[u8], kind: u32) -> (u64, u64, u64, u64) {
        (0..PHDRS)
            .map(|i| EHDR_SIZE + i * PHDR_SIZE)
            .find(|&at| {
                u32::from_le_bytes(bytes[at as usize..at as usize + 4].try_into().unwrap()) == kind
            })
            .map(|at| {
                (
                    u64_at(bytes, at + 8),
                    u64_at(bytes, at + 32),
                    u64_at(bytes, at + 40),
                    u64_at(bytes, at + 48),
                )
            })
            .expect("segment present")
    }

    #[test]
    fn the_tls_segment_holds_the_template_at_its_alignment() {
        let init = [1u8, 2, 3, 4, 5];
        let template = TlsTemplate {
            init: &init,
            zero_size: 100,
            align: 64,
        };
        let bytes = carrier_object(&template, true).unwrap();
        let (at, file, memory, align) = segment(&bytes, PT_TLS);
        assert_eq!((file, memory, align), (5, 105, 64));
        assert_eq!(at % 64, 0);
        assert_eq!(&bytes[at as usize..][..5], &init);
        let (_, load_file, load_memory, _) = segment(&bytes, PT_LOAD);
        assert_eq!(load_file, bytes.len() as u64, "the segment is the file");
        assert_eq!((load_file, load_memory), (at + file, at + file));
    }

    #[test]
    fn only_a_static_carrier_asks_for_static_tls() {
        let template = TlsTemplate {
            init: &[],
            zero_size: 8,
            align: 8,
        };
        let dynamic_entry = |bytes: &[u8], tag: u64| {
            (0..DYN_ENTRIES)
                .map(|i| DYNAMIC + i * 16)
                .find(|&at| u64_at(bytes, at) == tag)
                .map(|at| u64_at(bytes, at + 8))
                .unwrap()
        };
        let fixed = carrier_object(&template, true).unwrap();
        assert_eq!(dynamic_entry(&fixed, DT_RELASZ), 24);
        assert_eq!(dynamic_entry(&fixed, DT_FLAGS), DF_STATIC_TLS);
        assert_eq!(u64_at(&fixed, RELA), TP_OFFSET_SLOT);
        assert_eq!(u64_at(&fixed, RELA + 8), R_X86_64_TPOFF64);
        let dynamic = carrier_object(&template, false).unwrap();
        assert_eq!(dynamic_entry(&dynamic, DT_RELASZ), 0);
        assert_eq!(dynamic_entry(&dynamic, DT_FLAGS), 0);
    }

    /// A carrier is its headers, one symbol, one relocation and its slot
    /// (528 bytes), then the template at its alignment: small whatever
    /// asks for it.
    #[test]
    fn a_carrier_is_its_headers_then_its_template() {
        let template = TlsTemplate {
            init: &[7; 5],
            zero_size: 0,
            align: 8,
        };
        let bytes = carrier_object(&template, true).unwrap();
        assert_eq!(TP_OFFSET_SLOT, 520);
        assert_eq!(bytes.len(), 528 + 5);
        assert_eq!(&bytes[528..], &[7; 5]);
    }

    /// Every program header of a carrier and of a host probe, field by
    /// field: (type, flags, offset, file size, memory size, alignment).
    fn program_headers(bytes: &[u8]) -> Vec<(u32, u32, u64, u64, u64, u64)> {
        (0..PHDRS)
            .map(|i| (EHDR_SIZE + i * PHDR_SIZE) as usize)
            .map(|at| {
                let word =
                    |o: usize| u32::from_le_bytes(bytes[at + o..at + o + 4].try_into().unwrap());
                let quad = |o: usize| u64_at(bytes, (at + o) as u64);
                (word(0), word(4), quad(8), quad(32), quad(40), quad(48))
            })
            .collect()
    }

    #[test]
    fn the_program_headers_are_exactly_what_the_loader_needs() {
        let template = TlsTemplate {
            init: &[7; 5],
            zero_size: 11,
            align: 8,
        };
        let carrier = carrier_object(&template, true).unwrap();
        assert_eq!(
            program_headers(&carrier),
            [
                (PT_LOAD, PF_R | PF_W, 0, 533, 533, 0x1000),
                (PT_DYNAMIC, PF_R | PF_W, 288, 160, 160, 8),
                (PT_TLS, PF_R, 528, 5, 16, 8),
                (PT_GNU_STACK, PF_R | PF_W, 0, 0, 0, 16),
            ]
        );
        let (probe, _) = host_probe_object("x", true).unwrap();
        assert_eq!(
            program_headers(&probe),
            [
                (PT_LOAD, PF_R | PF_W, 0, 624, 624, 0x1000),
                (PT_DYNAMIC, PF_R | PF_W, 288, 160, 160, 8),
                (PT_NULL, 0, 0, 0, 0, 0),
                (PT_GNU_STACK, PF_R | PF_W, 0, 0, 0, 16),
            ]
        );
    }

    /// A host probe for `x`: hash at 448, one undefined thread-local
    /// symbol at 472 + 24, its name at 520, three relocations at 528 (one
    /// per slot, against symbol 1), the slots at 600, 608 and 616; two
    /// without `fixed`.
    #[test]
    fn a_host_probe_is_one_symbol_and_its_relocations() {
        let dynamic = |bytes: &[u8], tag: u64| {
            (0..DYN_ENTRIES)
                .map(|i| DYNAMIC + i * 16)
                .find(|&at| u64_at(bytes, at) == tag)
                .map(|at| u64_at(bytes, at + 8))
                .unwrap()
        };
        let (bytes, slots) = host_probe_object("x", true).unwrap();
        assert_eq!(bytes.len(), 624);
        assert_eq!(
            slots,
            ProbeSlots {
                module: 600,
                offset: 608,
                tp_offset: Some(616),
            }
        );
        for (tag, value) in [
            (DT_HASH, 448),
            (DT_SYMTAB, 472),
            (DT_STRTAB, 520),
            (DT_STRSZ, 3),
            (DT_RELA, 528),
            (DT_RELASZ, 72),
        ] {
            assert_eq!(dynamic(&bytes, tag), value, "tag {tag}");
        }
        assert_eq!(&bytes[520..523], b"\0x\0");
        // Symbol 1: name at 1, global thread-local, undefined.
        assert_eq!(&bytes[496..502], &[1, 0, 0, 0, STB_GLOBAL_STT_TLS, 0]);
        for (i, kind) in [R_X86_64_DTPMOD64, R_X86_64_DTPOFF64, R_X86_64_TPOFF64]
            .into_iter()
            .enumerate()
        {
            let at = 528 + 24 * i as u64;
            assert_eq!(u64_at(&bytes, at), 600 + 8 * i as u64, "r_offset {i}");
            assert_eq!(u64_at(&bytes, at + 8), (1 << 32) | kind, "r_info {i}");
        }
        let (dynamic_only, slots) = host_probe_object("x", false).unwrap();
        assert_eq!((dynamic_only.len(), slots.tp_offset), (528 + 48 + 16, None));
        assert_eq!(dynamic(&dynamic_only, DT_RELASZ), 48);
    }

    #[test]
    fn a_host_probe_takes_only_names_a_symbol_can_have() {
        for bad in [String::new(), "a\0b".into(), "x".repeat(4097)] {
            assert!(
                matches!(host_probe_object(&bad, false), Err(ProbeError::Name(_))),
                "{:?}",
                bad.chars().take(8).collect::<String>()
            );
        }
        host_probe_object(&"x".repeat(4096), false).expect("4096 bytes is a name");
    }

    #[test]
    fn bad_templates_are_refused() {
        let odd = TlsTemplate {
            init: &[],
            zero_size: 8,
            align: 24,
        };
        assert_eq!(carrier_object(&odd, true), Err(CarrierError::Alignment(24)));
        let wide = TlsTemplate {
            init: &[],
            zero_size: 8,
            align: 1 << 40,
        };
        assert_eq!(
            carrier_object(&wide, true),
            Err(CarrierError::Alignment(1 << 40))
        );
        let huge = TlsTemplate {
            init: &[0],
            zero_size: u64::MAX,
            align: 8,
        };
        assert!(matches!(
            carrier_object(&huge, true),
            Err(CarrierError::TooLarge { .. })
        ));
    }
}
