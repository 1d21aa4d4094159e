//! The Mach-O header (64-bit little-endian x86-64 `MH_OBJECT` only) and the
//! load commands: every section header, in order, and the symbol table.

use object::macho;
use object::read::macho::{MachHeader, Segment as _};

use super::{Header, Input, LE, SectionHeader};
use crate::error::LinkError;
use crate::format::ObjectErrors;

/// The header, once its magic, file type and CPU are ones Solder links.
pub(super) fn check<'a>(input: &Input<'_, 'a>) -> Result<&'a Header, LinkError> {
    let data = input.data;
    let magic = data
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| input.malformed("too short for a Mach-O header".into()))?;
    match magic {
        macho::MH_MAGIC_64 => {}
        macho::MH_CIGAM_64 => {
            return Err(input.unsupported(
                "big-endian Mach-O is not supported; only 64-bit little-endian x86-64 objects"
                    .into(),
            ));
        }
        macho::MH_MAGIC | macho::MH_CIGAM => {
            return Err(input.unsupported(
                "32-bit Mach-O is not supported; only 64-bit little-endian x86-64 objects".into(),
            ));
        }
        macho::FAT_MAGIC | macho::FAT_CIGAM => {
            return Err(input.unsupported(
                "universal (fat) Mach-O files are not supported; extract the x86-64 slice \
                 (lipo -thin x86_64)"
                    .into(),
            ));
        }
        _ => return Err(input.malformed(format!("bad Mach-O magic {magic:#010x}"))),
    }
    let header = Header::parse(data, 0).map_err(|e| input.malformed(e.to_string()))?;
    if header.filetype(LE) != macho::MH_OBJECT {
        return Err(input.unsupported(format!(
            "Mach-O file type {} is not a relocatable object (MH_OBJECT); pass .o files",
            header.filetype(LE).0
        )));
    }
    if header.cputype(LE) != macho::CPU_TYPE_X86_64 {
        let cpu = header.cputype(LE);
        let named = if cpu == macho::CPU_TYPE_ARM64 {
            " (arm64)".to_string()
        } else {
            String::new()
        };
        return Err(input.unsupported(format!("CPU type {:#x}{named} is not x86-64", cpu.0)));
    }

    Ok(header)
}

/// Section headers (numbered from 1 across all segment commands, in
/// order) and the symbol table command, if any.
pub(super) fn load_commands<'a>(
    input: &Input<'_, 'a>,
    header: &'a Header,
) -> Result<
    (
        Vec<&'a SectionHeader>,
        Option<&'a macho::SymtabCommand<object::LittleEndian>>,
    ),
    LinkError,
> {
    let mut headers: Vec<&SectionHeader> = Vec::new();
    let mut symtab = None;
    let mut commands = header
        .load_commands(LE, input.data, 0)
        .map_err(|e| input.malformed(format!("load commands: {e}")))?;
    while let Some(command) = commands
        .next()
        .map_err(|e| input.malformed(format!("load commands: {e}")))?
    {
        if let Some((segment, section_data)) = command
            .segment_64()
            .map_err(|e| input.malformed(format!("segment command: {e}")))?
        {
            let sections = segment
                .sections(LE, section_data)
                .map_err(|e| input.malformed(format!("segment command: {e}")))?;
            headers.extend(sections.iter());
        } else if command.cmd() == macho::LC_SEGMENT {
            return Err(
                input.malformed("32-bit segment command (LC_SEGMENT) in a 64-bit file".into())
            );
        } else if let Some(command) = command
            .symtab()
            .map_err(|e| input.malformed(format!("symbol table command: {e}")))?
            && symtab.replace(command).is_some()
        {
            return Err(input.malformed("more than one symbol table (LC_SYMTAB)".into()));
        }
    }

    Ok((headers, symtab))
}
