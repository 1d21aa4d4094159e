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
    for (index, section) in input.sections.iter().enumerate() {
        if !section
            .characteristics
            .get(LE)
            .contains(pe::IMAGE_SCN_LNK_COMDAT)
        {
            continue;
        }
        match (comdat_of(input, index), placed[index]) {
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
    for (index, comdat) in comdats.iter().enumerate() {
        let (&Some(Comdat::Associative(mut leader)), Some(id)) = (comdat, placed[index]) else {
            continue;
        };
        // Follow associations to the leader.
        let mut steps = 0;
        while let Some(Comdat::Associative(next)) = comdats[leader] {
            leader = next;
            steps += 1;
            if steps > input.sections.len() {
                return Err(input.malformed(format!(
                    "COMDAT section {}: its associations form a loop",
                    sections[id].name
                )));
            }
        }
        // Associated with a section that is no group's leader: always kept.
        if let Some(group) = group_of[leader] {
            graph_groups[group].sections.push(id);
        }
    }

    Ok(graph_groups)
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
    let number = index + 1;
    let signature = input.raw[symbol + 1..].iter().flatten().find(|(sym, _)| {
        sym.section_number().index() == Some(number as u32)
            && matches!(
                sym.storage_class(),
                pe::IMAGE_SYM_CLASS_EXTERNAL | pe::IMAGE_SYM_CLASS_STATIC
            )
            && !sym.has_aux_section()
    });
    let Some((sym, name)) = signature else {
        return Err(Why::Malformed(
            "no COMDAT symbol follows its section symbol".into(),
        ));
    };
    Ok(Comdat::Leader {
        selection,
        signature: (sym.storage_class() == pe::IMAGE_SYM_CLASS_EXTERNAL).then_some(*name),
    })
}
