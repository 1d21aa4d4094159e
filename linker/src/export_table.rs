//! The session's export table: each name a live module exports, and its
//! export, which later loads bind to; and each module's names, to take
//! them out again when it goes.
//!
//! A module's exports are filed when the table is next asked for, not
//! when the module is installed: a program loaded and run as one module
//! (`solder run`) never asks, and a large one exports hundreds of
//! thousands of names, each a cache miss and fresh memory to file. Every
//! reader files first, but for two rare ones that only read
//! ([`ExportTable::any`]): they see the unfiled exports as filing would.

use std::sync::Arc;

use rustc_hash::FxHashMap as HashMap;

use crate::link::Export;

/// A module's exports, in the pieces its link made them in.
type Exports = Vec<Vec<(Arc<str>, Export)>>;

#[derive(Default)]
pub(crate) struct ExportTable {
    table: HashMap<Arc<str>, Export>,
    /// Each module's filed names (sharing the table's keys).
    names: HashMap<u32, Vec<Arc<str>>>,
    /// Installed modules' exports not filed yet, in install order.
    unfiled: Vec<(u32, Exports)>,
}

impl ExportTable {
    /// Module `module`'s exports, to be filed when the table is next
    /// asked for.
    pub(crate) fn add(&mut self, module: u32, exports: Exports) {
        self.unfiled.push((module, exports));
    }

    /// The table, every module's exports filed.
    pub(crate) fn filed(&mut self) -> &HashMap<Arc<str>, Export> {
        for (module, exports) in std::mem::take(&mut self.unfiled) {
            // One growth of the table for the whole module, not one per
            // doubling.
            let count = exports.iter().map(Vec::len).sum();
            self.table.reserve(count);
            let mut names = Vec::with_capacity(count);
            for (name, export) in exports.into_iter().flatten() {
                names.push(Arc::clone(&name));
                self.table.insert(name, export);
            }
            self.names.entry(module).or_default().extend(names);
        }
        &self.table
    }

    /// The export of `name`, if a live module exports it.
    pub(crate) fn get(&mut self, name: &str) -> Option<&Export> {
        self.filed().get(name)
    }

    /// Takes module `module`'s names out of the table: those still its
    /// own (not since taken by another module's export), for the caller
    /// to retarget.
    pub(crate) fn remove_module(&mut self, module: u32) -> Vec<Arc<str>> {
        self.filed();
        let mut names = self.names.remove(&module).unwrap_or_default();
        names.retain(|name| {
            let own = self.table.get(name).is_some_and(|e| e.module == module);
            if own {
                self.table.remove(name);
            }
            own
        });
        names
    }

    /// Whether an export, filed or not, satisfies `test` (for readers that
    /// cannot file: they see what filing would give).
    pub(crate) fn any(&self, mut test: impl FnMut(&Arc<str>, &Export) -> bool) -> bool {
        if self.unfiled.is_empty() {
            return self.table.iter().any(|(name, export)| test(name, export));
        }
        // The newest export of a name is the one filing keeps: an unfiled
        // one hides a filed one of the same name.
        let unfiled = (self.unfiled.iter().rev())
            .flat_map(|(_, pieces)| pieces.iter().rev().flat_map(|piece| piece.iter().rev()));
        let mut seen = rustc_hash::FxHashSet::default();
        for (name, export) in unfiled {
            if seen.insert(&**name) && test(name, export) {
                return true;
            }
        }
        (self.table.iter())
            .filter(|(name, _)| !seen.contains(&***name))
            .any(|(name, export)| test(name, export))
    }

    pub(crate) fn clear(&mut self) {
        self.table.clear();
        self.names.clear();
        self.unfiled.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use solder_executor::abi::CallingConvention;

    const RERUN: &str = "rerun: cargo test -p solder-linker --lib export_table";

    fn export(module: u32, address: u64) -> Export {
        Export {
            module,
            address,
            function: true,
            convention: CallingConvention::SysV,
            thread_local: None,
        }
    }

    /// One export of `module` per name, in two pieces.
    fn exports(module: u32, names: &[(&str, u64)]) -> Exports {
        let all: Vec<_> = (names.iter())
            .map(|&(name, address)| (Arc::from(name), export(module, address)))
            .collect();
        let (first, second) = all.split_at(all.len() / 2);
        vec![first.to_vec(), second.to_vec()]
    }

    /// Filing keeps the newest export of a name, as inserting each in
    /// install order would; `any` sees the same before filing.
    #[test]
    fn unfiled_exports_read_as_filed_ones() {
        let mut table = ExportTable::default();
        table.add(1, exports(1, &[("a", 0x10), ("b", 0x20)]));
        table.add(2, exports(2, &[("b", 0x30), ("c", 0x40)]));
        let mut b = None;
        table.any(|name, e| {
            b = Some(e.address).filter(|_| &**name == "b");
            b.is_some()
        });
        assert_eq!(b, Some(0x30), "{RERUN}");
        assert!(!table.any(|_, e| e.address == 0x20), "hidden\n{RERUN}");
        assert_eq!(table.get("b").map(|e| e.address), Some(0x30), "{RERUN}");
        assert_eq!(table.get("a").map(|e| e.module), Some(1), "{RERUN}");
        assert!(!table.any(|_, e| e.address == 0x20), "{RERUN}");
        assert!(table.any(|n, _| &**n == "c"), "{RERUN}");
    }

    /// A module's names come out of the table but for those another
    /// module's export has taken since.
    #[test]
    fn a_module_takes_out_only_its_own_names() {
        let mut table = ExportTable::default();
        table.add(1, exports(1, &[("a", 0x10), ("b", 0x20)]));
        table.filed();
        table.add(2, exports(2, &[("b", 0x30)]));
        assert_eq!(table.remove_module(1), [Arc::from("a")], "{RERUN}");
        assert!(table.get("a").is_none(), "{RERUN}");
        assert_eq!(table.get("b").map(|e| e.module), Some(2), "{RERUN}");
        assert_eq!(table.remove_module(2), [Arc::from("b")], "{RERUN}");
        assert!(table.filed().is_empty(), "{RERUN}");
        assert!(table.remove_module(3).is_empty(), "{RERUN}");
    }
}
