//! `.eh_frame` (Mach-O `__eh_frame`) records: one walker over the CIEs and
//! FDEs of a section, shared by the front-ends (the Mach-O pointers the
//! assembler left without relocations) and the linker (FDEs of discarded
//! COMDAT code are pruned: a native linker drops them, or the unwinder
//! would see records pointing at nothing).

use std::borrow::Cow;

use crate::error::LinkError;
use crate::graph::{Edges, Section, SymbolId};

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
            if !self.cies.contains(&cie) {
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
    // Old offset -> new offset of each CIE kept.
    let mut cies: Vec<(usize, usize)> = Vec::new();
    for record in records(data) {
        let Record { offset, end, cie } = record.map_err(|(at, why)| malformed(at, why))?;
        let new_offset = output.len();
        match cie {
            None => cies.push((offset, new_offset)),
            Some(_) => {
                let pc_begin = section.edges.iter().find(|e| e.offset == offset as u64 + 8);
                if pc_begin.is_some_and(|e| discarded(e.target)) {
                    continue;
                }
            }
        }
        output.extend_from_slice(&data[offset..end]);
        if let Some(old_cie) = cie {
            let &(_, new_cie) = cies
                .iter()
                .find(|&&(old, _)| old == old_cie)
                .ok_or_else(|| malformed(offset, "FDE refers to an unknown CIE"))?;
            let new_id = (new_offset + 4 - new_cie) as u32;
            output[new_offset + 4..new_offset + 8].copy_from_slice(&new_id.to_le_bytes());
        }
        let shift = new_offset as i64 - offset as i64;
        let record_edges = section
            .edges
            .iter()
            .filter(|e| (offset as u64..end as u64).contains(&e.offset));
        edges.extend(record_edges.map(|e| {
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
