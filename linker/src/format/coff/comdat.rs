//! COFF COMDAT sections: each leader's selection and signature (from its
//! section symbol's section-definition record), and associative sections
//! kept or discarded with their leader's group.

use object::LittleEndian as LE;
use object::pe;
use object::read::SymbolIndex;
use object::read::coff::{CoffHeader, Symbol as _};

use super::Input;
use crate::error::LinkError;
use crate::format::ObjectErrors;
use crate::graph::*;

/// A COFF section's COMDAT meaning, from its section-definition record.
#[derive(Debug, Clone, Copy)]
enum Comdat<'a> {
    /// A group's leader; `signature` is `None` when the COMDAT symbol is
    /// static (then, as in link.exe and lld, it is never deduplicated).
    Leader {
        selection: ComdatSelection,
        signature: Option<&'a str>,
    },
    /// Kept or discarded with the section at this 0-based index.
    Associative(usize),
}

/// The load's COMDAT groups. Sections that are not loaded are in no group;
/// their malformations do not matter.
pub(super) fn groups<'a, Coff: CoffHeader>(
    input: &Input<'_, 'a, Coff>,
    placed: &[Option<SectionId>],
    sections: &[Section<'a>],
) -> Result<Vec<Group<'a>>, LinkError> {
    let mut comdats: Vec<Option<Comdat<'a>>> = vec![None; input.sections.len()];
    let candidates = signature_candidates(input);
    for (index, section) in input.sections.iter().enumerate() {
        if !section
            .characteristics
            .get(LE)
            .contains(pe::IMAGE_SCN_LNK_COMDAT)
        {
            continue;
        }
        match (comdat_of(input, &candidates, index), placed[index]) {
            (Ok(comdat), _) => comdats[index] = Some(comdat),
            (Err(why), Some(id)) => {
                let name = &sections[id].name;
                return Err(match why {
                    Why::Malformed(why) => input.malformed(format!("COMDAT section {name}: {why}")),
                    Why::Unsupported(why) => {
                        input.unsupported(format!("COMDAT section {name}: {why}"))
                    }
                });
            }
            (Err(_), None) => {}
        }
    }
    // Groups, by the 0-based COFF section index of their leaders.
    let mut graph_groups = Vec::new();
    let mut group_of: Vec<Option<usize>> = vec![None; input.sections.len()];
    for (index, comdat) in comdats.iter().enumerate() {
        if let (
            Some(Comdat::Leader {
                selection,
                signature: Some(signature),
            }),
            Some(id),
        ) = (comdat, placed[index])
        {
            group_of[index] = Some(graph_groups.len());
            graph_groups.push(Group {
                signature,
                selection: *selection,
                sections: vec![id],
            });
        }
    }
    let leaders = leaders(&comdats).map_err(|index| {
        let name = placed[index].map_or_else(
            || format!("number {}", index + 1),
            |id| sections[id].name.to_string(),
        );
        input.malformed(format!(
            "COMDAT section {name}: its associations form a loop"
        ))
    })?;
    for (index, comdat) in comdats.iter().enumerate() {
        let (Some(Comdat::Associative(_)), Some(id)) = (comdat, placed[index]) else {
            continue;
        };
        // Associated with a section that is no group's leader: always kept.
        if let Some(group) = group_of[leaders[index]] {
            graph_groups[group].sections.push(id);
        }
    }

    Ok(graph_groups)
}

/// The section each section's chain of associations ends at (itself when
/// it is not associative), or the index of a section whose chain loops.
/// Each section is walked once: a chain stops where an earlier walk ended,
/// so long chains cost their length, not its square.
fn leaders(comdats: &[Option<Comdat<'_>>]) -> Result<Vec<usize>, usize> {
    const UNSEEN: usize = usize::MAX;
    const ON_PATH: usize = usize::MAX - 1;
    let mut leader = vec![UNSEEN; comdats.len()];
    let mut path = Vec::new();
    for start in 0..comdats.len() {
        let mut at = start;
        let end = loop {
            match leader[at] {
                UNSEEN => {}
                ON_PATH => return Err(start),
                known => break known,
            }
            match comdats[at] {
                Some(Comdat::Associative(next)) => {
                    leader[at] = ON_PATH;
                    path.push(at);
                    at = next;
                }
                _ => break at,
            }
        };
        leader[at] = end;
        for done in path.drain(..) {
            leader[done] = end;
        }
    }
    Ok(leader)
}

/// For each 1-based section number, the symbols that may be its COMDAT
/// symbol (defined in it, external or static, without a section-definition
/// record), in table order: a leader's is the first after its section
/// symbol, found by binary search instead of a scan of the table per
/// section.
fn signature_candidates<'a, Coff: CoffHeader>(
    input: &Input<'_, 'a, Coff>,
) -> rustc_hash::FxHashMap<u32, Vec<usize>> {
    let mut candidates: rustc_hash::FxHashMap<u32, Vec<usize>> = Default::default();
    for (index, entry) in input.raw.iter().enumerate() {
        if let Some((sym, _)) = entry
            && let Some(number) = sym.section_number().index()
            && matches!(
                sym.storage_class(),
                pe::IMAGE_SYM_CLASS_EXTERNAL | pe::IMAGE_SYM_CLASS_STATIC
            )
            && !sym.has_aux_section()
        {
            candidates.entry(number).or_default().push(index);
        }
    }
    candidates
}

/// Why a COMDAT section could not be understood.
enum Why {
    Malformed(String),
    Unsupported(String),
}

/// The COMDAT meaning of the section at 0-based `index`, from the
/// section-definition record of its section symbol.
fn comdat_of<'a, Coff: CoffHeader>(
    input: &Input<'_, 'a, Coff>,
    candidates: &rustc_hash::FxHashMap<u32, Vec<usize>>,
    index: usize,
) -> Result<Comdat<'a>, Why> {
    let section_symbols = &input.section_symbols;
    let Some(symbol) = section_symbols[index] else {
        return Err(Why::Malformed(
            "no section symbol with a section definition".into(),
        ));
    };
    let aux = input
        .symtab
        .aux_section(SymbolIndex(symbol))
        .map_err(|e| Why::Malformed(e.to_string()))?;
    let selection = match aux.selection {
        pe::IMAGE_COMDAT_SELECT_NODUPLICATES => ComdatSelection::NoDuplicates,
        pe::IMAGE_COMDAT_SELECT_ANY => ComdatSelection::Any,
        pe::IMAGE_COMDAT_SELECT_SAME_SIZE => ComdatSelection::SameSize,
        pe::IMAGE_COMDAT_SELECT_EXACT_MATCH => ComdatSelection::ExactMatch,
        pe::IMAGE_COMDAT_SELECT_LARGEST => ComdatSelection::Largest,
        pe::IMAGE_COMDAT_SELECT_ASSOCIATIVE => {
            let mut number = u32::from(aux.number.get(LE));
            if Coff::is_type_bigobj() {
                number |= u32::from(aux.high_number.get(LE)) << 16;
            }
            let target = (number as usize).wrapping_sub(1);
            if target >= section_symbols.len() || target == index {
                return Err(Why::Malformed(format!(
                    "associated with section number {number}, which is out of range"
                )));
            }
            return Ok(Comdat::Associative(target));
        }
        pe::IMAGE_COMDAT_SELECT_NEWEST => {
            return Err(Why::Unsupported(
                "selection IMAGE_COMDAT_SELECT_NEWEST is not supported".into(),
            ));
        }
        other => {
            return Err(Why::Malformed(format!(
                "unknown COMDAT selection {}",
                other.0
            )));
        }
    };
    // The COMDAT symbol is the first symbol after the section symbol that
    // is defined in the section.
    let in_section = candidates
        .get(&(index as u32 + 1))
        .map_or(&[][..], Vec::as_slice);
    let after = in_section.partition_point(|&candidate| candidate <= symbol);
    let signature = in_section
        .get(after)
        .and_then(|&candidate| input.raw[candidate]);
    let Some((sym, name)) = signature else {
        return Err(Why::Malformed(
            "no COMDAT symbol follows its section symbol".into(),
        ));
    };
    Ok(Comdat::Leader {
        selection,
        signature: (sym.storage_class() == pe::IMAGE_SYM_CLASS_EXTERNAL).then_some(name),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Chains end at their leader, each section walked once; a loop is the
    /// index of a section whose chain enters it.
    #[test]
    fn associations_end_at_their_leader_or_are_a_loop() {
        let leader = Some(Comdat::Leader {
            selection: ComdatSelection::Any,
            signature: Some("f"),
        });
        let to = |index| Some(Comdat::Associative(index));
        // 3 -> 2 -> 0 (a leader); 1 is no COMDAT; 4 -> 1.
        let comdats = [leader, None, to(0), to(2), to(1)];
        assert_eq!(leaders(&comdats), Ok(vec![0, 1, 0, 0, 1]));
        // A long chain, each link once: 0 <- 1 <- 2 <- ... <- n-1.
        let mut chain = vec![leader];
        chain.extend((1..100_000).map(|i| to(i - 1)));
        assert!(leaders(&chain).is_ok_and(|l| l.iter().all(|&x| x == 0)));
        // 1 -> 2 -> 3 -> 1: the walk from 1 finds the loop.
        let looped = [leader, to(2), to(3), to(1), to(0)];
        assert_eq!(leaders(&looped), Err(1));
    }
}
