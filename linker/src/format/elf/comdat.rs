//! ELF COMDAT groups (`SHT_GROUP` with `GRP_COMDAT`): a signature and the
//! loaded sections that belong to it. ELF groups are always "any".

use object::read::elf::SectionHeader;

use super::sections::GroupSection;
use super::{Input, Placed};
use crate::error::LinkError;
use crate::format::ObjectErrors;
use crate::graph::*;

pub(super) fn groups<'a>(
    input: &Input<'_, 'a>,
    group_sections: &[GroupSection<'a>],
    placed: &Placed,
    symbols: &[Symbol<'a>],
) -> Result<Vec<Group<'a>>, LinkError> {
    let endian = input.endian;
    let mut groups = Vec::new();
    for &(index, section) in group_sections {
        let Some((flags, members)) = section
            .group(endian, input.data)
            .map_err(|e| input.malformed(format!("group section {index}: {e}")))?
        else {
            continue;
        };
        if !flags.contains(object::elf::GRP_COMDAT) {
            continue;
        }
        let signature = symbols
            .get(section.sh_info(endian) as usize)
            .map(|s| s.name)
            .ok_or_else(|| {
                input.malformed(format!("group section {index}: bad signature symbol"))
            })?;
        let sections = members
            .iter()
            .filter_map(|m| placed.get(m.get(endian) as usize).copied().flatten())
            .collect();
        groups.push(Group {
            signature,
            selection: ComdatSelection::Any,
            sections,
        });
    }
    Ok(groups)
}
