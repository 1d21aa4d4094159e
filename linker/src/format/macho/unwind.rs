//! The `__eh_frame` pointers the assembler resolved itself. An FDE's
//! `pc_begin` and LSDA pointers (and sometimes a CIE's personality) point
//! at other sections of the same object, pc-relative, without a relocation:
//! ld64 finds them by parsing `__eh_frame`, and so does this file, with the
//! shared record walker. And the differences within `__eh_frame` itself
//! (an FDE's CIE pointer, a record's length, written as SUBTRACTOR pairs
//! by assemblers that put each record in an atom of its own), folded into
//! the bytes before the records are walked.

use std::borrow::Cow;

use super::Raw;
use super::relocations::Context;
use crate::arch::machine::macho::{
    EH_FRAME_DELTA32, EH_FRAME_DELTA64, EH_FRAME_POINTER32, EH_FRAME_POINTER64,
};
use crate::error::LinkError;
use crate::format::eh_frame;
use crate::graph::*;

impl Context<'_, '_> {
    /// Folds into `data` (the bytes of `__eh_frame`, graph section
    /// `section`) every difference whose two ends are both in the section,
    /// and returns the other edges.
    ///
    /// Some assemblers write an FDE's CIE pointer as `.long Lfde - Lcie`
    /// (and a record's length as `Lend - Lstart`) with the labels in
    /// different atoms, so the object holds a SUBTRACTOR + UNSIGNED pair
    /// where the record walker expects the value. The section is placed
    /// as a whole, so such a value is the same in every layout: it is
    /// computed here (minuend + addend - subtrahend, as offsets in the
    /// section) and written into the field, and the edge dropped. The
    /// walker, and everything after the front-end, then reads what the
    /// assembler meant, as if it had folded the difference itself.
    pub(super) fn fold_internal_differences(
        &self,
        raw: &Raw,
        section: SectionId,
        data: &mut Cow<'_, [u8]>,
        edges: Vec<Edge>,
    ) -> Result<Vec<Edge>, LinkError> {
        // The offset of `symbol` in this section, if it is defined there.
        let here = |symbol: SymbolId| match self.symbols.get(symbol)?.definition.place() {
            Some((s, offset)) if s == section => Some(offset),
            _ => None,
        };
        let mut kept = Vec::with_capacity(edges.len());
        for edge in edges {
            let ends = edge
                .minus()
                .and_then(|minus| Some((here(edge.target)?, here(minus)?, minus)));
            let Some((minuend, subtrahend, minus)) = ends else {
                kept.push(edge);
                continue;
            };
            let value = i128::from(minuend) + i128::from(edge.addend) - i128::from(subtrahend);
            let site = || self.site(raw, edge.offset);
            let width = edge.kind.encoding.size();
            let field = usize::try_from(edge.offset)
                .ok()
                .and_then(|start| data.to_mut().get_mut(start..start.checked_add(width)?))
                .ok_or_else(|| {
                    self.malformed(format!(
                        "{}: {} is past the section",
                        site(),
                        edge.kind.name
                    ))
                })?;
            crate::arch::write_checked(&edge.kind, field, value).map_err(|_| {
                self.malformed(format!(
                    "{}: {} `{}` - `{}` is {}, which does not fit its {width}-byte field",
                    site(),
                    edge.kind.name,
                    self.symbols[edge.target].name,
                    self.symbols[minus].name,
                    crate::error::signed_hex(value)
                ))
            })?;
        }
        Ok(kept)
    }

    /// The first of `existing` (sorted by offset) in the length or CIE
    /// pointer of the record at `offset`: a relocation the walker could
    /// not apply, since it is not a difference within the section.
    fn structure_edge(existing: &[Edge], offset: usize) -> Option<&Edge> {
        let start = existing.partition_point(|e| e.offset < offset as u64);
        existing.get(start).filter(|e| e.offset < offset as u64 + 8)
    }

    /// The error for a record whose length or CIE pointer is relocated
    /// other than by a difference within the section.
    fn relocated_structure(&self, raw: &Raw, offset: usize, edge: &Edge, why: &str) -> LinkError {
        let target = self.symbols.get(edge.target).map_or("?", |s| s.name);
        let against = match edge.minus().and_then(|m| self.symbols.get(m)) {
            Some(minus) => format!("`{target}` - `{}`", minus.name),
            None => format!("`{target}`"),
        };
        self.malformed(format!(
            "{}: the record's length or CIE pointer has a relocation ({} against {against} at \
             offset {:#x}) that is not a difference within the section{why}",
            self.site(raw, offset as u64),
            edge.kind.name,
            edge.offset
        ))
    }

    /// Edges for the `__eh_frame` pointers the assembler resolved itself.
    ///
    /// An FDE's `pc_begin` and LSDA pointers (and sometimes a CIE's
    /// personality) point at other sections of the same object, pc-relative,
    /// without a relocation: ld64 finds them by parsing `__eh_frame`. Once
    /// the sections are placed apart those values are wrong, so each
    /// pointer without an edge (`existing`, sorted by offset) gets one to
    /// the section that held its original target.
    pub(super) fn eh_frame_edges(
        &self,
        raw: &Raw,
        bytes: &[u8],
        existing: &[Edge],
    ) -> Result<Vec<Edge>, LinkError> {
        let mut edges = Vec::new();
        // The CIEs read so far, by offset.
        let mut cies: Vec<(usize, Cie)> = Vec::new();
        for record in eh_frame::records(bytes) {
            let record = record.map_err(|(at, why)| match Self::structure_edge(existing, at) {
                Some(edge) => self.relocated_structure(raw, at, edge, &format!(" ({why})")),
                None => self.malformed(format!("{}: {why}", self.site(raw, at as u64))),
            })?;
            if let Some(edge) = Self::structure_edge(existing, record.offset) {
                return Err(self.relocated_structure(raw, record.offset, edge, ""));
            }
            let mut cursor = Cursor {
                data: &bytes[..record.end],
                pos: record.offset + 8,
            };
            match record.cie {
                None => {
                    let cie = self.read_cie(raw, &mut cursor, existing, &mut edges)?;
                    cies.push((record.offset, cie));
                }
                Some(cie_offset) => {
                    let malformed = |why: &str| {
                        self.malformed(format!("{}: {why}", self.site(raw, record.offset as u64)))
                    };
                    // CIEs are read in offset order: a binary search keeps
                    // many records linear-logarithmic, however hostile.
                    let cie = cies
                        .binary_search_by_key(&cie_offset, |&(at, _)| at)
                        .map(|index| cies[index].1)
                        .map_err(|_| malformed("FDE refers to an unknown CIE"))?;
                    edges.extend(self.eh_pointer(raw, &mut cursor, cie.fde, existing)?); // pc_begin
                    cursor.encoded(cie.fde).map_err(&malformed)?; // pc_range: a length
                    if cie.augmented {
                        let length = cursor.uleb().ok_or_else(|| malformed("truncated record"))?;
                        if length > 0 {
                            edges.extend(self.eh_pointer(raw, &mut cursor, cie.lsda, existing)?);
                        }
                    }
                }
            }
        }
        Ok(edges)
    }

    /// Reads a CIE (the cursor past its id) for what its FDEs need; its
    /// personality pointer, if any, gets an edge in `edges`.
    fn read_cie(
        &self,
        raw: &Raw,
        cursor: &mut Cursor,
        existing: &[Edge],
        edges: &mut Vec<Edge>,
    ) -> Result<Cie, LinkError> {
        let at = cursor.pos as u64 - 8;
        let truncated = || self.malformed(format!("{}: truncated record", self.site(raw, at)));
        let version = cursor.u8().ok_or_else(truncated)?;
        let augmentation = cursor.cstr().ok_or_else(truncated)?;
        cursor.uleb().ok_or_else(truncated)?; // code alignment
        cursor.uleb().ok_or_else(truncated)?; // data alignment (SLEB128)
        if version == 1 {
            cursor.u8().ok_or_else(truncated)?; // return address register
        } else {
            cursor.uleb().ok_or_else(truncated)?;
        }
        let mut cie = Cie {
            fde: DW_EH_PE_ABSPTR,
            lsda: DW_EH_PE_OMIT,
            augmented: augmentation.first() == Some(&b'z'),
        };
        if cie.augmented {
            cursor.uleb().ok_or_else(truncated)?; // augmentation length
            for &letter in &augmentation[1..] {
                match letter {
                    b'P' => {
                        let encoding = cursor.u8().ok_or_else(truncated)?;
                        edges.extend(self.eh_pointer(raw, cursor, encoding, existing)?);
                    }
                    b'L' => cie.lsda = cursor.u8().ok_or_else(truncated)?,
                    b'R' => cie.fde = cursor.u8().ok_or_else(truncated)?,
                    b'S' | b'B' | b'G' => {}
                    // The rest cannot be parsed, and FDEs need none of it.
                    _ => break,
                }
            }
        }
        Ok(cie)
    }

    /// The edge for the `encoding`-encoded pointer at the cursor (which it
    /// moves past), unless it already has one or needs none.
    fn eh_pointer(
        &self,
        raw: &Raw,
        cursor: &mut Cursor,
        encoding: u8,
        existing: &[Edge],
    ) -> Result<Option<Edge>, LinkError> {
        if encoding == DW_EH_PE_OMIT {
            return Ok(None);
        }
        let at = cursor.pos as u64;
        let failure = |why: String| self.malformed(format!("{}: {why}", self.site(raw, at)));
        let encoded = cursor
            .encoded(encoding)
            .map_err(|why| failure(why.into()))?;
        if existing.binary_search_by_key(&at, |e| e.offset).is_ok() {
            return Ok(None);
        }
        let unsupported = || LinkError::UnsupportedObject {
            object: self.object.to_string(),
            reason: format!(
                "{}: pointer encoding {encoding:#04x} without a relocation is not supported",
                self.site(raw, at)
            ),
        };
        let Encoded::Fixed { value, width } = encoded else {
            return Err(unsupported());
        };
        let (original, kind) = match (encoding & 0x70, width) {
            // A null absolute pointer stays null.
            (DW_EH_PE_ABSPTR, _) if value == 0 => return Ok(None),
            (DW_EH_PE_ABSPTR, 8) => (value, EH_FRAME_POINTER64),
            (DW_EH_PE_ABSPTR, 4) => (value, EH_FRAME_POINTER32),
            (DW_EH_PE_PCREL, 8) => (
                i128::from(raw.addr) + i128::from(at) + value,
                EH_FRAME_DELTA64,
            ),
            (DW_EH_PE_PCREL, 4) => (
                i128::from(raw.addr) + i128::from(at) + value,
                EH_FRAME_DELTA32,
            ),
            _ => return Err(unsupported()),
        };
        // The section that held the target; a pointer just past a
        // section's end belongs to it only when no section starts there.
        let loaded = || self.raws.iter().filter(|r| r.placed.is_some());
        let holder = loaded()
            .find(|r| (i128::from(r.addr)..i128::from(r.end())).contains(&original))
            .or_else(|| loaded().find(|r| i128::from(r.end()) == original));
        let Some(
            holder @ Raw {
                placed: Some(section),
                ..
            },
        ) = holder
        else {
            return Err(failure(format!(
                "pointer to {} is outside every loaded section",
                crate::error::signed_hex(original)
            )));
        };
        let addend = i64::try_from(original - i128::from(holder.addr))
            .map_err(|_| failure("pointer is out of range".into()))?;
        Ok(Some(Edge::new(at, kind, self.nsyms + section, addend)))
    }
}

// DW_EH_PE_* pointer encodings: the low nibble is the format, bits 4-6 the
// application (what the value is relative to).
const DW_EH_PE_ABSPTR: u8 = 0x00;
const DW_EH_PE_PCREL: u8 = 0x10;
const DW_EH_PE_OMIT: u8 = 0xff;

/// What FDEs need of their CIE.
#[derive(Clone, Copy)]
struct Cie {
    /// Encoding of `pc_begin` and `pc_range`.
    fde: u8,
    /// Encoding of the LSDA pointer.
    lsda: u8,
    /// Whether FDEs have augmentation data (a `z` augmentation).
    augmented: bool,
}

/// An encoded value as read.
enum Encoded {
    Fixed {
        value: i128,
        width: u8,
    },
    /// LEB128: never a pointer the front-end can patch.
    Leb,
}

/// Reads one `__eh_frame` record; reads fail at the record's end.
struct Cursor<'d> {
    data: &'d [u8],
    pos: usize,
}

impl<'d> Cursor<'d> {
    fn take(&mut self, n: usize) -> Option<&'d [u8]> {
        let bytes = self.data.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(bytes)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    /// An unsigned LEB128 number (also skips a signed one); bits past 64
    /// are dropped.
    fn uleb(&mut self) -> Option<u64> {
        let mut value = 0u64;
        let mut shift = 0u32;
        loop {
            let byte = self.u8()?;
            if shift < 64 {
                value |= u64::from(byte & 0x7f) << shift;
            }
            shift = shift.saturating_add(7);
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
    }

    fn cstr(&mut self) -> Option<&'d [u8]> {
        let rest = self.data.get(self.pos..)?;
        let len = rest.iter().position(|&b| b == 0)?;
        self.pos += len + 1;
        Some(&rest[..len])
    }

    fn encoded(&mut self, encoding: u8) -> Result<Encoded, &'static str> {
        const TRUNCATED: &str = "truncated record";
        let fixed = |bytes: Option<&[u8]>, signed: bool| -> Result<Encoded, &'static str> {
            let bytes = bytes.ok_or(TRUNCATED)?;
            let mut raw = [0u8; 8];
            raw[..bytes.len()].copy_from_slice(bytes);
            let unsigned = u64::from_le_bytes(raw);
            let bits = bytes.len() as u32 * 8;
            let value = if bits == 64 {
                // Address-wide: pc-relative values wrap modulo 2^64
                // whether the encoding calls them signed or not.
                i128::from(unsigned as i64)
            } else if signed {
                // Sign-extend from the field's width.
                i128::from(((unsigned << (64 - bits)) as i64) >> (64 - bits))
            } else {
                i128::from(unsigned)
            };
            Ok(Encoded::Fixed {
                value,
                width: bytes.len() as u8,
            })
        };
        match encoding & 0x0f {
            0x00 | 0x04 => fixed(self.take(8), false), // absptr, udata8
            0x0c => fixed(self.take(8), true),         // sdata8
            0x03 => fixed(self.take(4), false),        // udata4
            0x0b => fixed(self.take(4), true),         // sdata4
            0x02 => fixed(self.take(2), false),        // udata2
            0x0a => fixed(self.take(2), true),         // sdata2
            0x01 | 0x09 => {
                self.uleb().ok_or(TRUNCATED)?; // uleb128, sleb128
                Ok(Encoded::Leb)
            }
            _ => Err("unknown pointer encoding"),
        }
    }
}
