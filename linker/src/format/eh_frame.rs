//! `.eh_frame` (Mach-O `__eh_frame`) records: one walker over the CIEs and
//! FDEs of a section, shared by the front-ends (the Mach-O pointers the
//! assembler left without relocations) and the linker (FDEs of discarded
//! COMDAT code are pruned: a native linker drops them, or the unwinder
//! would see records pointing at nothing); and one writer of the records
//! Solder makes itself ([`FrameWriter`]: COFF functions' frames from their
//! Windows unwind tables, the calling-convention shims' frames).

use std::borrow::Cow;

use crate::error::LinkError;
use crate::graph::{Edge, Edges, Section, SymbolId};

/// One record: bytes `offset..end` of the section (its length field
/// included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    pub offset: usize,
    pub end: usize,
    /// `None` for a CIE; for an FDE, the offset of its CIE (a CIE earlier
    /// in the section).
    pub cie: Option<usize>,
}

/// Writes a CIE for x86-64 (code alignment 1, data alignment -8, return
/// address in column 16, pc-relative signed 4-byte FDE addresses; at a
/// function's entry CFA = RSP + 8 and the return address is at CFA - 8),
/// then FDEs after it, each record padded with `DW_CFA_nop` to 4 bytes.
pub struct FrameWriter {
    pub data: Vec<u8>,
}

impl FrameWriter {
    const CIE_BODY: [u8; 20] = [
        0, 0, 0, 0, // CIE id
        1, // version
        b'z', b'R', 0,    // augmentation
        1,    // code alignment
        0x78, // data alignment: -8
        16,   // return address column
        1,    // augmentation data length
        0x1b, // FDE addresses: pc-relative, signed 4 bytes
        0x0c, 7, 8, // DW_CFA_def_cfa: RSP + 8
        0x90, 1, // DW_CFA_offset: return address at CFA - 8
        0, 0, // DW_CFA_nop
    ];

    /// A writer holding the CIE (at offset 0).
    pub fn new() -> FrameWriter {
        let mut writer = FrameWriter { data: Vec::new() };
        writer.record(&Self::CIE_BODY);
        writer
    }

    /// The bytes a writer with FDEs of these instruction lengths holds.
    pub fn size(instruction_lengths: impl IntoIterator<Item = usize>) -> usize {
        4 + Self::CIE_BODY.len().next_multiple_of(4)
            + instruction_lengths
                .into_iter()
                .map(|n| 4 + (13 + n).next_multiple_of(4))
                .sum::<usize>()
    }

    /// Appends an FDE for `length` bytes of code with `instructions`;
    /// returns the offset of its `pc_begin` field (4 bytes, pc-relative:
    /// the function's address minus the field's), written as `pc_begin`.
    pub fn fde(&mut self, pc_begin: i32, length: u32, instructions: &[u8]) -> usize {
        let start = self.data.len();
        let mut body = Vec::with_capacity(13 + instructions.len());
        body.extend_from_slice(&((start + 4) as u32).to_le_bytes()); // back to the CIE
        body.extend_from_slice(&pc_begin.to_le_bytes());
        body.extend_from_slice(&length.to_le_bytes());
        body.push(0); // augmentation data length
        body.extend_from_slice(instructions);
        self.record(&body);
        start + 8
    }

    fn record(&mut self, body: &[u8]) {
        let padded = body.len().next_multiple_of(4);
        self.data.extend_from_slice(&(padded as u32).to_le_bytes());
        self.data.extend_from_slice(body);
        self.data.resize(self.data.len() + padded - body.len(), 0);
    }
}

impl Default for FrameWriter {
    fn default() -> Self {
        FrameWriter::new()
    }
}

/// The records of `data` up to its zero terminator (or its end). An error
/// gives the offset of the bad record and why.
pub fn records(data: &[u8]) -> Records<'_> {
    Records {
        data,
        offset: 0,
        cies: Vec::new(),
        done: false,
    }
}

/// The iterator of [`records`].
pub struct Records<'d> {
    data: &'d [u8],
    offset: usize,
    /// Offsets of the CIEs seen so far.
    cies: Vec<usize>,
    done: bool,
}

impl Records<'_> {
    fn next_record(&mut self) -> Result<Option<Record>, (usize, &'static str)> {
        let offset = self.offset;
        if offset + 4 > self.data.len() {
            return Ok(None);
        }
        let length = read_u32(self.data, offset).ok_or((offset, "truncated length"))?;
        if length == 0 {
            return Ok(None); // terminator
        }
        if length == u32::MAX {
            return Err((offset, "64-bit DWARF records are not supported"));
        }
        let end = offset
            .checked_add(4 + length as usize)
            .filter(|&end| end <= self.data.len())
            .ok_or((offset, "record runs past the section"))?;
        let id = read_u32(&self.data[..end], offset + 4).ok_or((offset, "truncated record"))?;
        let cie = if id == 0 {
            self.cies.push(offset);
            None
        } else {
            let cie = (offset + 4)
                .checked_sub(id as usize)
                .ok_or((offset, "CIE pointer before the section"))?;
            // Offsets only grow: a binary search keeps a section of many
            // records linear-logarithmic, however hostile.
            if self.cies.binary_search(&cie).is_err() {
                return Err((offset, "FDE refers to an unknown CIE"));
            }
            Some(cie)
        };
        self.offset = end;
        Ok(Some(Record { offset, end, cie }))
    }
}

impl Iterator for Records<'_> {
    type Item = Result<Record, (usize, &'static str)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let next = self.next_record().transpose();
        self.done = !matches!(next, Some(Ok(_)));
        next
    }
}

/// The little-endian `u32` at `at`, if it is inside `bytes`.
pub fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let field = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(field.try_into().ok()?))
}

/// Removes the FDEs whose `pc_begin` edge targets a symbol for which
/// `discarded` is true, fixing the CIE pointers of the records kept and
/// moving their edges along.
pub fn prune(
    section: &mut Section<'_>,
    object: &str,
    discarded: impl Fn(SymbolId) -> bool,
) -> Result<(), LinkError> {
    let malformed = |offset: usize, reason: &str| LinkError::Malformed {
        object: object.to_string(),
        reason: format!("{} at offset {offset:#x}: {reason}", section.name),
    };
    let data = &section.data;
    let mut output = Vec::with_capacity(data.len());
    let mut edges = Vec::with_capacity(section.edges.len());
    // The edges by offset (stable: an offset's edges keep their order), so
    // each record finds its own by binary search: pruning stays linear-
    // logarithmic in records and edges, however many an object has.
    let mut old_edges: Vec<Edge> = section.edges.iter().collect();
    old_edges.sort_by_key(|e| e.offset);
    let edges_in = |start: usize, end: usize| {
        let from = old_edges.partition_point(|e| e.offset < start as u64);
        let to = old_edges.partition_point(|e| e.offset < end as u64);
        &old_edges[from..to]
    };
    // Old offset -> new offset of each CIE kept, by old offset.
    let mut cies: Vec<(usize, usize)> = Vec::new();
    for record in records(data) {
        let Record { offset, end, cie } = record.map_err(|(at, why)| malformed(at, why))?;
        let new_offset = output.len();
        match cie {
            None => cies.push((offset, new_offset)),
            Some(_) => {
                let pc_begin = edges_in(offset + 8, offset + 9).first();
                if pc_begin.is_some_and(|e| discarded(e.target)) {
                    continue;
                }
            }
        }
        output.extend_from_slice(&data[offset..end]);
        if let Some(old_cie) = cie {
            let index = cies
                .binary_search_by_key(&old_cie, |&(old, _)| old)
                .map_err(|_| malformed(offset, "FDE refers to an unknown CIE"))?;
            let new_id = (new_offset + 4 - cies[index].1) as u32;
            output[new_offset + 4..new_offset + 8].copy_from_slice(&new_id.to_le_bytes());
        }
        let shift = new_offset as i64 - offset as i64;
        edges.extend(edges_in(offset, end).iter().map(|&e| {
            let mut moved = e;
            moved.offset = (e.offset as i64 + shift) as u64;
            moved
        }));
    }
    section.size = output.len() as u64;
    section.data = Cow::Owned(output);
    section.edges = Edges::Decoded(edges);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: u32, body: &[u8]) -> Vec<u8> {
        let mut bytes = ((4 + body.len()) as u32).to_le_bytes().to_vec();
        bytes.extend_from_slice(&id.to_le_bytes());
        bytes.extend_from_slice(body);
        bytes
    }

    #[test]
    fn walks_cies_and_fdes_to_the_terminator() {
        let mut data = record(0, &[1, 0, 0, 0]); // CIE at 0, 12 bytes
        data.extend(record(16, &[0; 8])); // FDE at 12: 12 + 4 - 16 = 0
        data.extend([0, 0, 0, 0]); // terminator
        data.extend(record(0, &[])); // after the terminator: not read
        let walked: Vec<_> = records(&data).collect();
        assert_eq!(
            walked,
            [
                Ok(Record {
                    offset: 0,
                    end: 12,
                    cie: None
                }),
                Ok(Record {
                    offset: 12,
                    end: 28,
                    cie: Some(0)
                }),
            ]
        );
    }

    /// An FDE of discarded code goes; the records after it move up, their
    /// CIE pointers and edges with them, whatever order the edges came in.
    #[test]
    fn prune_drops_discarded_fdes_and_moves_the_rest() {
        use crate::arch::x86_64::elf::ABS64;
        let mut data = record(0, &[1, 0, 0, 0]); // CIE A at 0..12
        data.extend(record(16, &[0; 8])); // FDE at 12..28 -> A (discarded)
        data.extend(record(0, &[2, 0, 0, 0])); // CIE B at 28..40
        data.extend(record(16, &[0; 8])); // FDE at 40..56 -> B (kept)
        data.extend(record(60, &[0; 8])); // FDE at 56..72 -> A (kept)
        let edge = |offset, target| Edge::new(offset, ABS64, target, 0);
        // pc_begin edges (offset + 8), listed out of order; symbol 7 is
        // discarded code.
        let edges = vec![edge(64, 3), edge(20, 7), edge(48, 5)];
        let mut section = Section {
            name: Cow::Borrowed(".eh_frame"),
            protection: crate::graph::Protection::ReadOnly,
            role: crate::graph::SectionRole::UnwindFrames,
            align: 8,
            size: data.len() as u64,
            data: Cow::Owned(data.clone()),
            edges: Edges::Decoded(edges),
            live: true,
        };
        prune(&mut section, "t.o", |symbol| symbol == 7).expect("prune");
        let mut expected = data[..12].to_vec(); // CIE A
        expected.extend(&data[28..56]); // CIE B, its FDE (still 16 back)
        expected.extend(record(44, &[0; 8])); // the last FDE, now at 40: back to A
        assert_eq!(&section.data[..], &expected[..]);
        assert_eq!(section.size, expected.len() as u64);
        let moved: Vec<(u64, SymbolId)> =
            section.edges.iter().map(|e| (e.offset, e.target)).collect();
        assert_eq!(moved, [(32, 5), (48, 3)]);
    }

    #[test]
    fn bad_records_are_errors_at_their_offset() {
        let cases: [(Vec<u8>, (usize, &str)); 4] = [
            (vec![0xff; 4], (0, "64-bit DWARF records are not supported")),
            (vec![8, 0, 0, 0, 0], (0, "record runs past the section")),
            (record(12, &[]), (0, "CIE pointer before the section")),
            (
                [record(0, &[]), record(4, &[])].concat(),
                (8, "FDE refers to an unknown CIE"),
            ),
        ];
        for (data, expected) in cases {
            let last = records(&data).last().expect("one record or error");
            assert_eq!(last, Err(expected), "{data:?}");
            assert_eq!(records(&data).filter(|r| r.is_err()).count(), 1);
        }
        assert_eq!(records(&[]).count(), 0);
        assert_eq!(records(&[4, 0, 0]).count(), 0, "shorter than a length");
    }
}
