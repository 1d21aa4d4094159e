//! Debug information for debuggers (`--debug`): each object of a module,
//! with its section headers' addresses set to where the sections were
//! loaded, registered through the GDB JIT interface of the process that
//! runs the code; unregistered before the module's memory goes (removal,
//! replacement: the debugger then sees the new code). The debugger reads
//! an ELF object's DWARF and applies its relocations itself, against those
//! addresses; a Mach-O object's DWARF is relocated here and handed over in
//! an ELF object ([`super::macho_debug`]). COFF objects carry CodeView,
//! which gdb does not read: none is registered for them.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{DebugSource, Emitted, LinkPlugin};
use crate::error::LinkError;
use crate::executors::Executor;

/// The registrations of each live module, by module base.
#[derive(Default)]
pub struct DebugObjects {
    modules: BTreeMap<u64, Vec<u64>>,
}

impl LinkPlugin for DebugObjects {
    fn name(&self) -> &'static str {
        "debug objects"
    }

    fn emitted(
        &mut self,
        executor: &mut dyn Executor,
        module: &Emitted<'_>,
    ) -> Result<Option<u64>, LinkError> {
        if module.debug_images.is_empty() {
            return Ok(None);
        }
        let mut tokens = Vec::with_capacity(module.debug_images.len());
        for image in module.debug_images {
            match executor.register_debug_object(image.clone()) {
                Ok(token) => tokens.push(token),
                Err(err) => {
                    for token in tokens.into_iter().rev() {
                        let _ = executor.unregister_debug_object(token);
                    }
                    return Err(err);
                }
            }
        }
        let base = module.memory.0;
        self.modules.insert(base, tokens);
        Ok(Some(base))
    }

    fn removing(&mut self, executor: &mut dyn Executor, base: u64) -> Result<(), LinkError> {
        for token in self
            .modules
            .remove(&base)
            .unwrap_or_default()
            .into_iter()
            .rev()
        {
            executor.unregister_debug_object(token)?;
        }
        Ok(())
    }
}

/// The ELF object a debugger reads for `source`: an ELF object with its
/// section headers' load addresses ([`with_load_addresses`]), or a Mach-O
/// object's DWARF relocated into one ([`super::macho_debug::elf_image`]).
/// `None` when there is nothing to register.
pub fn debug_image(source: &DebugSource<'_>) -> Option<Arc<[u8]>> {
    let places = source.places;
    if crate::format::macho::is_macho(source.object) {
        super::macho_debug::elf_image(source.object, &places.headers, &places.addresses)
            .map(Arc::from)
    } else {
        with_load_addresses(source.object, &places.headers, &places.addresses)
    }
}

/// `object` (an ELF relocatable object) with each section header's
/// address set to where its section was loaded: `placed[index]` is the
/// graph section header `index` became, `addresses[section]` its load
/// address. `None` when the object is not ELF as expected (nothing is
/// registered for it then).
pub fn with_load_addresses(
    object: &[u8],
    placed: &[Option<usize>],
    addresses: &[Option<u64>],
) -> Option<Arc<[u8]>> {
    // One copy, made where it is kept (shared by the session and the
    // debugger's registration), then patched: nothing else holds it yet.
    let mut image: Arc<[u8]> = Arc::from(object);
    let patched = Arc::get_mut(&mut image)?;
    let read = |at: usize, n: usize| crate::source_lines::le_field(object, at, n);
    let shoff = usize::try_from(read(0x28, 8)?).ok()?;
    let entsize = usize::try_from(read(0x3a, 2)?).ok()?;
    if entsize < 64 {
        return None;
    }
    for (index, section) in placed.iter().enumerate() {
        let Some(address) = section.and_then(|s| addresses.get(s).copied().flatten()) else {
            continue;
        };
        let field = shoff
            .checked_add(index.checked_mul(entsize)?)?
            .checked_add(16)?;
        patched
            .get_mut(field..field.checked_add(8)?)?
            .copy_from_slice(&address.to_le_bytes());
    }
    Some(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RERUN: &str = "rerun: cargo test -p solder-linker --lib plugins::debug_objects";

    /// A header table of two 64-byte entries after a 64-byte header: the
    /// placed section gets its address, the other keeps its own; anything
    /// too short or odd gives `None`, never a panic.
    #[test]
    fn section_addresses_are_patched_and_bad_input_refused() {
        let mut object = vec![0u8; 64 + 2 * 64];
        object[0x28..0x30].copy_from_slice(&64u64.to_le_bytes()); // e_shoff
        object[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes()); // e_shentsize
        object[64 + 16..64 + 24].copy_from_slice(&0x55u64.to_le_bytes());
        let image = with_load_addresses(&object, &[None, Some(0)], &[Some(0x7000)]).unwrap();
        let addr = |i: usize| u64::from_le_bytes(image[i..i + 8].try_into().unwrap());
        assert_eq!(
            addr(64 + 16),
            0x55,
            "the unplaced header keeps its own\n{RERUN}"
        );
        assert_eq!(addr(128 + 16), 0x7000, "{RERUN}");
        assert_eq!(image.len(), object.len(), "{RERUN}");
        for cut in [0, 0x30, 64, 64 + 70, 64 + 2 * 64 - 1] {
            let short = &object[..cut];
            assert!(
                with_load_addresses(short, &[None, Some(0)], &[Some(1)]).is_none()
                    || cut >= 128 + 24,
                "cut at {cut}\n{RERUN}"
            );
        }
        let mut odd = object.clone();
        odd[0x3a..0x3c].copy_from_slice(&8u16.to_le_bytes());
        assert!(
            with_load_addresses(&odd, &[Some(0)], &[Some(1)]).is_none(),
            "{RERUN}"
        );
        let mut far = object.clone();
        far[0x28..0x30].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(
            with_load_addresses(&far, &[Some(0)], &[Some(1)]).is_none(),
            "{RERUN}"
        );
    }
}
