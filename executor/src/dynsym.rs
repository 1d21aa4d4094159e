//! The size and type of a host symbol, read from the dynamic symbol table
//! of the loaded object that defines it, through that object's GNU hash
//! table.
//!
//! Why not `dladdr1(RTLD_DL_SYMENT)`: glibc answers it by scanning every
//! dynamic symbol of the object, so describing each of a program's host
//! symbols cost O(symbols in libc) apiece; that scan was the largest single
//! item in `solder run --noexec` on Lua (14% of the process). A GNU hash
//! lookup touches a bucket and a short chain. Objects without a GNU hash
//! table (rare: glibc has built one by default since 2006) are left to
//! `dladdr1` by returning `None`.

use std::ffi::CStr;

use crate::sys::dl;

/// One loaded object's dynamic tables, as addresses in this process.
#[derive(Debug, Clone, Copy)]
struct LoadedObject {
    /// The address span of its `PT_LOAD` segments.
    start: u64,
    end: u64,
    /// Load bias: what symbol values are relative to.
    bias: u64,
    symtab: u64,
    strtab: u64,
    strsz: u64,
    gnu_hash: u64,
}

/// The loaded objects with GNU hash tables, as of the last [`refresh`].
///
/// [`refresh`]: ObjectTables::refresh
#[derive(Debug, Default)]
pub struct ObjectTables {
    objects: Vec<LoadedObject>,
}

/// What a dynamic symbol entry says about a definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SymbolEntry {
    /// `st_info & 0xf`.
    pub kind: u8,
    pub size: u64,
}

/// ELF `STT_GNU_IFUNC`: `dlsym` returns the resolved implementation, not
/// the symbol's value.
const STT_GNU_IFUNC: u8 = 10;

impl ObjectTables {
    /// Re-reads the list of loaded objects (after a `dlopen`).
    pub fn refresh(&mut self) {
        self.objects.clear();
        let objects = &mut self.objects;
        dl::for_each_loaded_object(|object| objects.extend(read_tables(object)));
    }

    /// The dynamic symbol entry for `name`, defined at `address` (what
    /// `dlsym` returned). `None` when no object with a GNU hash table spans
    /// `address` or its table has no such definition.
    pub fn describe(&self, name: &CStr, address: u64) -> Option<SymbolEntry> {
        let object = self
            .objects
            .iter()
            .find(|o| (o.start..o.end).contains(&address))?;
        let at_address = |symbol: &ElfSymbol| {
            let value = object.bias.wrapping_add(symbol.st_value);
            value == address || symbol.st_info & 0xf == STT_GNU_IFUNC
        };
        // SAFETY: `object` was read from a loaded object's dynamic section
        // by `visit`; host libraries are never closed, so its tables stay
        // mapped, and `lookup` bounds every string read by DT_STRSZ.
        unsafe { lookup(object, name.to_bytes(), at_address) }
    }

    /// The kinds (`st_info & 0xf`) of the definitions of `name` in the
    /// loaded objects with GNU hash tables, in load order (without its
    /// address: a thread-local variable has none `dlsym` may be asked for).
    pub fn kinds_of(&self, name: &CStr) -> Vec<u8> {
        self.objects
            .iter()
            // SAFETY: as in `describe`.
            .filter_map(|object| unsafe { lookup(object, name.to_bytes(), |_| true) })
            .map(|entry| entry.kind)
            .collect()
    }
}

/// What glibc's `dladdr1(RTLD_DL_SYMENT)` says about `address`: the entry
/// found by scanning the whole symbol table of the object that contains
/// it. The fallback for objects without a GNU hash table.
pub fn scan_for_entry(address: u64) -> Option<SymbolEntry> {
    dl::symbol_at(address).map(|symbol| SymbolEntry {
        kind: symbol.info & 0xf,
        size: symbol.size,
    })
}

/// The GNU hash function (`dl_new_hash`).
fn gnu_hash(name: &[u8]) -> u32 {
    name.iter().fold(5381u32, |h, &c| {
        h.wrapping_mul(33).wrapping_add(u32::from(c))
    })
}

/// Walks `name`'s hash chain for a definition that `accept` takes.
///
/// # Safety
/// `object`'s table addresses must point at a loaded object's GNU hash
/// table, dynamic symbol table and string table of `strsz` bytes.
unsafe fn lookup(
    object: &LoadedObject,
    name: &[u8],
    accept: impl Fn(&ElfSymbol) -> bool,
) -> Option<SymbolEntry> {
    // The GNU hash layout: four u32 (nbuckets, symoffset, bloom_size,
    // bloom_shift), bloom_size u64 words, nbuckets u32 buckets, then one
    // u32 per symbol from symoffset on (hash with bit 0 marking a chain's
    // end).
    let header = object.gnu_hash as *const u32;
    // SAFETY: the caller guarantees the table is mapped; these are its
    // first three header words.
    let (nbuckets, symoffset, bloom_size) = unsafe { (*header, *header.add(1), *header.add(2)) };
    if nbuckets == 0 {
        return None;
    }
    let buckets = (object.gnu_hash + 16 + 8 * u64::from(bloom_size)) as *const u32;
    let chains =
        (object.gnu_hash + 16 + 8 * u64::from(bloom_size) + 4 * u64::from(nbuckets)) as *const u32;
    let hash = gnu_hash(name);
    // SAFETY: `hash % nbuckets` indexes the bucket array.
    let mut index = unsafe { *buckets.add((hash % nbuckets) as usize) };
    if index < symoffset {
        return None;
    }
    let symbols = object.symtab as *const ElfSymbol;
    loop {
        // SAFETY: `index` is at least symoffset and within the chain it
        // started in (the walk stops at the entry with the end bit), so it
        // names a chain word and a dynamic symbol.
        let (chain, symbol) = unsafe {
            (
                *chains.add((index - symoffset) as usize),
                &*symbols.add(index as usize),
            )
        };
        // SAFETY: the caller's guarantee covers the string table.
        if chain | 1 == hash | 1 && unsafe { name_is(object, symbol.st_name, name) } {
            let kind = symbol.st_info & 0xf;
            if symbol.st_shndx != 0 && accept(symbol) {
                let size = if kind == STT_GNU_IFUNC {
                    0
                } else {
                    symbol.st_size
                };
                return Some(SymbolEntry { kind, size });
            }
        }
        if chain & 1 != 0 {
            return None;
        }
        index += 1;
    }
}

/// Whether the string at `offset` in `object`'s string table is `name`.
///
/// # Safety
/// As for [`lookup`].
unsafe fn name_is(object: &LoadedObject, offset: u32, name: &[u8]) -> bool {
    let offset = u64::from(offset);
    // The name and its NUL must fit in the table.
    if offset + name.len() as u64 >= object.strsz {
        return false;
    }
    // SAFETY: `offset + name.len() + 1 <= strsz` bytes of the mapped table.
    let bytes = unsafe {
        std::slice::from_raw_parts((object.strtab + offset) as *const u8, name.len() + 1)
    };
    bytes[..name.len()] == *name && bytes[name.len()] == 0
}

/// An `Elf64_Dyn` entry.
#[repr(C)]
struct DynamicEntry {
    d_tag: i64,
    d_un: u64,
}

/// An `Elf64_Sym` entry.
#[repr(C)]
struct ElfSymbol {
    st_name: u32,
    st_info: u8,
    st_other: u8,
    st_shndx: u16,
    st_value: u64,
    st_size: u64,
}

/// One loaded object's tables, read from its dynamic section; `None` for
/// an object without a dynamic section or a GNU hash table.
fn read_tables(object: &dl::LoadedObject<'_>) -> Option<LoadedObject> {
    let bias = object.bias();
    let mut span = (u64::MAX, 0u64);
    let mut dynamic = None;
    for segment in object.segments() {
        match segment.kind {
            dl::PT_LOAD => {
                span.0 = span.0.min(segment.address);
                span.1 = span.1.max(segment.address + segment.size);
            }
            dl::PT_DYNAMIC => dynamic = Some(segment.address),
            _ => {}
        }
    }
    let dynamic = dynamic?;
    if span.0 >= span.1 {
        return None;
    }
    let (mut symtab, mut strtab, mut strsz, mut gnu_hash) = (0, 0, 0, 0);
    let mut entry = dynamic as *const DynamicEntry;
    loop {
        // SAFETY: `object` is a loaded object (sys::dl shows no other), and
        // its PT_DYNAMIC is a mapped array of Elf64_Dyn ending with DT_NULL.
        let dyn_entry = unsafe { &*entry };
        // glibc rewrites the pointers of most objects' dynamic sections to
        // absolute addresses, but not all (the vDSO's); an address below
        // the object's first segment is still relative.
        let pointer = |value: u64| {
            if value < span.0 { bias + value } else { value }
        };
        match dyn_entry.d_tag as u64 {
            0 => break, // DT_NULL
            5 => strtab = pointer(dyn_entry.d_un),
            6 => symtab = pointer(dyn_entry.d_un),
            10 => strsz = dyn_entry.d_un, // DT_STRSZ
            0x6fff_fef5 => gnu_hash = pointer(dyn_entry.d_un), // DT_GNU_HASH
            _ => {}
        }
        // SAFETY: not past DT_NULL, which ends the array.
        entry = unsafe { entry.add(1) };
    }
    if symtab == 0 || strtab == 0 || strsz == 0 || gnu_hash == 0 {
        return None;
    }
    Some(LoadedObject {
        start: span.0,
        end: span.1,
        bias,
        symtab,
        strtab,
        strsz,
        gnu_hash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dlsym(name: &CStr) -> u64 {
        dl::global_symbol(name).unwrap_or(0)
    }

    #[test]
    fn agrees_with_dladdr1_on_libc_functions_and_data() {
        let mut tables = ObjectTables::default();
        tables.refresh();
        let names: [&CStr; 8] = [
            c"puts", c"fopen", c"stdout", c"stderr", c"environ", c"qsort", c"getenv", c"optind",
        ];
        for name in names {
            let address = dlsym(name);
            assert!(address != 0, "{name:?} not found by dlsym");
            let ours = tables.describe(name, address);
            assert_eq!(ours, scan_for_entry(address), "{name:?}");
            assert!(ours.is_some(), "{name:?} not described");
        }
        let stdout = tables.describe(c"stdout", dlsym(c"stdout")).unwrap();
        assert_eq!((stdout.kind, stdout.size), (1, 8), "STT_OBJECT of 8 bytes");
    }

    #[test]
    fn an_ifunc_is_a_function_and_a_wrong_address_is_nothing() {
        let mut tables = ObjectTables::default();
        tables.refresh();
        // glibc's string functions are IFUNCs on x86-64: dlsym returns the
        // implementation chosen for this CPU.
        let strlen = dlsym(c"strlen");
        let entry = tables.describe(c"strlen", strlen).unwrap();
        assert_eq!(entry.kind, STT_GNU_IFUNC);
        let puts = dlsym(c"puts");
        assert_eq!(tables.describe(c"puts", puts + 1), None);
        assert_eq!(tables.describe(c"solder_no_such_symbol", puts), None);
    }
}
