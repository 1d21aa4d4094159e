//! The load's global table: which definition (a graph and a symbol of it)
//! each global name means. [`super::symbols`] fills it by precedence;
//! resolution, host lookups, exports and the map read it.
//!
//! A large load's table holds hundreds of thousands of names, and the
//! names lie in the objects' string tables, scattered over all of the
//! input: a lookup waits for memory several times (the table, the name,
//! the definition, its section). Asked one at a time, the waits add up;
//! asked ahead, those of several lookups overlap.
//!
//! Open addressing with linear probing, at most 3/5 full. Each slot's tag
//! (32 bits of its name's hash) is kept apart from its entry (the name and
//! the winner's graph and symbol): a probe walks tags, sixteen to a cache
//! line and a small array that stays cached, and reads the entry of a
//! matching tag only. A caller that looks up many names asks for each
//! one's tags, then its entry, then the definition and name the entry
//! points to, a few lookups ahead of each.

use std::hash::BuildHasher;

use crate::graph::SymbolId;

/// At most this share of the slots is used (as 3/5): linear probing stays
/// a step or two per lookup.
const LOAD_NUMERATOR: usize = 3;
const LOAD_DENOMINATOR: usize = 5;

/// From how many names asking the memory ahead pays. Below it, the table
/// and the names it leads to stay in the caches, and asking ahead only
/// adds work: measured on a program of 10,857 global names (OpenSSL), a
/// load's resolution took 5.1 ms without and 6.8 ms with; on programs of
/// 66,000 and 220,000, 40 and 132 ms without, 28 and 86 ms with. The
/// result is the same either way.
pub(super) const LARGE: usize = 1 << 15;

/// How many lookups apart the steps of a lookup asked ahead are made
/// (tags, entry, name, ...): far enough that what one step asked for has
/// come when the next reads it, near enough that it is still cached.
pub(super) const STEP: usize = 4;

/// The definition that wins a global name: a graph of the load and a
/// symbol of it, each in 32 bits (a load of more objects, or an object of
/// more symbols, would take tens of gigabytes to hold).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Winner {
    graph: u32,
    symbol: u32,
}

impl Winner {
    /// The winner `symbol` of graph `graph`; `None` past 32 bits.
    pub fn new(graph: usize, symbol: SymbolId) -> Option<Winner> {
        Some(Winner {
            graph: graph.try_into().ok()?,
            symbol: symbol.try_into().ok()?,
        })
    }

    /// The graph and the symbol.
    pub fn at(self) -> (usize, SymbolId) {
        (self.graph as usize, self.symbol as SymbolId)
    }
}

/// What a slot holds besides its tag: the name, and the definition that
/// wins it.
#[derive(Clone, Copy)]
struct Entry<'a> {
    name: &'a str,
    winner: Winner,
}

const EMPTY: Entry<'static> = Entry {
    name: "",
    winner: Winner {
        graph: 0,
        symbol: 0,
    },
};

/// A slot of the table, found by its tag: for the caller to ask the
/// memory for its entry ([`Globals::prefetch_entry`]), then read it
/// ([`Globals::entry`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct SlotId(usize);

/// Global names to the definitions that win them.
pub(super) struct Globals<'a> {
    /// Each slot's tag (32 bits of its name's hash; 0 when empty), apart
    /// from the entries: a probe reads a few neighbouring tags, sixteen to
    /// a cache line, and the entry of a matching one only.
    tags: Vec<u32>,
    entries: Vec<Entry<'a>>,
    len: usize,
}

impl<'a> Globals<'a> {
    /// A table that holds `names` names without growing.
    pub fn with_capacity(names: usize) -> Self {
        let slots = slot_count(names);
        Globals {
            tags: vec![0; slots],
            entries: vec![EMPTY; slots],
            len: 0,
        }
    }

    /// The hash a lookup of `name` takes: Fx, whose low and middle bits
    /// are weakly mixed, folded with a multiply so that every bit of the
    /// slot and the tag depends on the whole name.
    #[inline]
    pub fn hash(name: &str) -> u64 {
        let fx = rustc_hash::FxBuildHasher.hash_one(name);
        let product = u128::from(fx) * 0x9e37_79b9_7f4a_7c15;
        (product >> 64) as u64 ^ product as u64
    }

    /// Whether the table is large enough that asking the memory ahead
    /// pays for a lookup ([`LARGE`]).
    pub fn is_large(&self) -> bool {
        self.len >= LARGE
    }

    /// The definition that wins `name`.
    pub fn get(&self, name: &str) -> Option<(usize, SymbolId)> {
        self.get_hashed(Self::hash(name), name)
    }

    /// Whether the load defines `name`.
    pub fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The definition that wins `name`, whose hash is `hash`
    /// ([`Globals::hash`]).
    #[inline]
    pub fn get_hashed(&self, hash: u64, name: &str) -> Option<(usize, SymbolId)> {
        let at = self.find(hash, name).ok()?;
        Some(self.entries[at].winner.at())
    }

    /// The definition that wins each of `names`, in order. A large table
    /// asks the memory ahead: for the tags of the name three [`STEP`]s
    /// on, the entry of the one two steps on, and the name that entry
    /// holds one step on (each name is hashed once per step: a hash costs
    /// nanoseconds, a wait for memory a hundred).
    pub fn get_each<'n, I>(
        &'n self,
        names: I,
    ) -> impl Iterator<Item = Option<(usize, SymbolId)>> + 'n
    where
        I: Iterator<Item = &'n str> + Clone + 'n,
    {
        let large = self.is_large();
        let ahead = |steps: usize| large.then(|| names.clone().skip(steps * STEP));
        let (mut tags, mut entries, mut stored) = (ahead(3), ahead(2), ahead(1));
        names.map(move |name| {
            if let Some(next) = tags.as_mut().and_then(Iterator::next) {
                self.prefetch(Self::hash(next));
            }
            if let Some(next) = entries.as_mut().and_then(Iterator::next)
                && let Some(slot) = self.candidate(Self::hash(next))
            {
                self.prefetch_entry(slot);
            }
            if let Some(next) = stored.as_mut().and_then(Iterator::next)
                && let Some((held, _)) =
                    self.candidate(Self::hash(next)).and_then(|s| self.entry(s))
            {
                prefetch(held.as_ptr());
            }
            self.get(name)
        })
    }

    /// Asks the memory for the tags a lookup of `hash` starts at, and the
    /// entry of the first, so that a lookup (or an insertion) made shortly
    /// after does not wait for them.
    #[inline]
    pub fn prefetch(&self, hash: u64) {
        let home = self.home(hash);
        if let (Some(tag), Some(entry)) = (self.tags.get(home), self.entries.get(home)) {
            prefetch(tag as *const u32 as *const u8);
            prefetch(entry as *const Entry<'_> as *const u8);
        }
    }

    /// The first slot of `hash`'s probe whose tag is `hash`'s; `None` when
    /// no slot before an empty one has it. Its name is not compared: it is
    /// a hint, for the caller to ask the memory for what it will read once
    /// [`Globals::get_hashed`] confirms it.
    #[inline]
    pub fn candidate(&self, hash: u64) -> Option<SlotId> {
        let tag = tag(hash);
        let mut at = self.home(hash);
        for _ in 0..self.tags.len() {
            match self.tags[at] {
                0 => return None,
                held if held == tag => return Some(SlotId(at)),
                _ => at = self.next(at),
            }
        }
        None
    }

    /// Asks the memory for `slot`'s entry.
    #[inline]
    pub fn prefetch_entry(&self, slot: SlotId) {
        if let Some(entry) = self.entries.get(slot.0) {
            prefetch(entry as *const Entry<'_> as *const u8);
        }
    }

    /// The name `slot` holds and the definition that wins it.
    #[inline]
    pub fn entry(&self, slot: SlotId) -> Option<(&'a str, (usize, SymbolId))> {
        let entry = self.entries.get(slot.0)?;
        Some((entry.name, entry.winner.at()))
    }

    /// Makes `winner` win `name` (of hash `hash`) when the table does not
    /// hold the name (`None`); otherwise leaves the table as it is and
    /// gives the name's winner, for the caller to replace if it will.
    pub fn insert_or_get(
        &mut self,
        hash: u64,
        name: &'a str,
        winner: Winner,
    ) -> Option<&mut Winner> {
        match self.find(hash, name) {
            Ok(at) => Some(&mut self.entries[at].winner),
            Err(at) if self.len < self.tags.len() * LOAD_NUMERATOR / LOAD_DENOMINATOR => {
                self.tags[at] = tag(hash);
                self.entries[at] = Entry { name, winner };
                self.len += 1;
                None
            }
            Err(_) => {
                self.grow();
                self.insert_or_get(hash, name, winner)
            }
        }
    }

    /// Every name and its definition, in slot order: the same for the
    /// same insertions, whatever the machine.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, (usize, SymbolId))> + '_ {
        (self.tags.iter().zip(&self.entries))
            .filter(|(tag, _)| **tag != 0)
            .map(|(_, entry)| (entry.name, entry.winner.at()))
    }

    /// Every definition, in slot order.
    pub fn values(&self) -> impl Iterator<Item = (usize, SymbolId)> + '_ {
        self.iter().map(|(_, winner)| winner)
    }

    /// The slot holding `name` (`Ok`), or the empty slot that ends its
    /// probe (`Err`). The table always has an empty slot (it is never
    /// filled past its load), so the probe ends.
    #[inline]
    fn find(&self, hash: u64, name: &str) -> Result<usize, usize> {
        let tag = tag(hash);
        let mut at = self.home(hash);
        loop {
            match self.tags[at] {
                0 => return Err(at),
                held if held == tag && self.entries[at].name == name => return Ok(at),
                _ => at = self.next(at),
            }
        }
    }

    /// The slot `hash` starts at: its high half scaled onto the slots
    /// (the low half is the tag).
    #[inline]
    fn home(&self, hash: u64) -> usize {
        (((hash >> 32) * self.tags.len() as u64) >> 32) as usize
    }

    #[inline]
    fn next(&self, at: usize) -> usize {
        if at + 1 == self.tags.len() { 0 } else { at + 1 }
    }

    /// Twice the slots, every name placed again.
    fn grow(&mut self) {
        let mut grown = Globals::with_capacity(self.len.max(8) * 2);
        for (name, (g, id)) in self.iter() {
            if let Some(winner) = Winner::new(g, id) {
                grown.insert_or_get(Self::hash(name), name, winner);
            }
        }
        *self = grown;
    }
}

/// A name's tag: 32 bits of its hash, never 0 (an empty slot's).
#[inline]
fn tag(hash: u64) -> u32 {
    (hash as u32).max(1)
}

/// Slots for `names` names at most the table's load, and at least one
/// empty.
fn slot_count(names: usize) -> usize {
    let needed = names.saturating_mul(LOAD_DENOMINATOR) / LOAD_NUMERATOR;
    needed.saturating_add(1).max(8)
}

/// Asks the memory for the cache line at `address`: a hint, which reads
/// nothing into the program.
#[inline]
pub(super) fn prefetch(address: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint to the cache: it never faults, whatever
    // the address, and changes no memory the program can observe. `sse`,
    // which the intrinsic needs, is part of every x86-64 processor.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(address as *const i8)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}

#[cfg(test)]
mod tests {
    use super::*;

    const RERUN: &str = "rerun: cargo test -p solder-linker --lib link::globals::tests";

    fn winner(i: usize) -> Winner {
        Winner::new(i, i + 1).expect("a small index fits")
    }

    /// Every name put in is found with its winner, whether the table was
    /// sized for them or grew; names never put in are not; a name's first
    /// winner stays until the caller replaces it.
    #[test]
    fn names_put_in_are_found_and_others_are_not() {
        let names: Vec<String> = (0..5000).map(|i| format!("name_{i}")).collect();
        for capacity in [0, 10, 5000] {
            let mut table = Globals::with_capacity(capacity);
            for (i, name) in names.iter().enumerate() {
                let new = table.insert_or_get(Globals::hash(name), name, winner(i));
                assert!(new.is_none(), "{name} is new; {RERUN}");
            }
            let held = table.insert_or_get(Globals::hash(&names[7]), &names[7], winner(99));
            assert_eq!(held.copied(), Some(winner(7)), "{RERUN}");
            if let Some(held) = table.insert_or_get(Globals::hash(&names[8]), &names[8], winner(0))
            {
                *held = winner(80);
            }
            assert_eq!(table.len, names.len(), "capacity {capacity}; {RERUN}");
            for (i, name) in names.iter().enumerate().skip(9) {
                assert_eq!(
                    table.get(name),
                    Some((i, i + 1)),
                    "capacity {capacity}; {RERUN}"
                );
            }
            assert_eq!(table.get(&names[7]), Some((7, 8)), "{RERUN}");
            assert_eq!(table.get(&names[8]), Some((80, 81)), "{RERUN}");
            for missing in ["name_5000", "name_", "", "name_-1"] {
                assert!(!table.contains_key(missing), "{missing}; {RERUN}");
            }
            let mut listed: Vec<(&str, (usize, SymbolId))> = table.iter().collect();
            listed.sort();
            let mut expected: Vec<(&str, (usize, SymbolId))> = (names.iter().enumerate())
                .map(|(i, name)| (name.as_str(), if i == 8 { (80, 81) } else { (i, i + 1) }))
                .collect();
            expected.sort();
            assert_eq!(listed, expected, "{RERUN}");
            assert_eq!(table.values().count(), names.len(), "{RERUN}");
        }
    }

    /// Names that share their first slot and their tag are told apart by
    /// the name itself; a candidate is a hint that the lookup then
    /// confirms or refuses, and its entry is the slot's.
    #[test]
    fn names_of_one_tag_are_told_apart() {
        let mut table = Globals::with_capacity(4);
        let hash = Globals::hash("a");
        let slots = table.tags.len();
        // Every slot but one filled with other names under `a`'s hash.
        let names: Vec<String> = (0..slots - 1).map(|i| format!("other{i}")).collect();
        for (i, name) in names.iter().enumerate() {
            let Err(at) = table.find(hash, name) else {
                panic!("{name} was not put in; {RERUN}");
            };
            table.tags[at] = tag(hash);
            table.entries[at] = Entry {
                name,
                winner: winner(i),
            };
            table.len += 1;
        }
        let first = table.candidate(hash).expect("a slot has the tag");
        assert_eq!(table.entry(first), Some(("other0", (0, 1))), "{RERUN}");
        assert_eq!(table.get_hashed(hash, "a"), None, "{RERUN}");
        for (i, name) in names.iter().enumerate() {
            assert_eq!(table.get_hashed(hash, name), Some((i, i + 1)), "{RERUN}");
        }
        assert_eq!(Globals::with_capacity(10).candidate(hash), None, "{RERUN}");
    }

    /// A table is large, and asked ahead, from [`LARGE`] names on.
    #[test]
    fn a_table_is_large_from_its_threshold() {
        let names: Vec<String> = (0..LARGE).map(|i| format!("n{i}")).collect();
        let mut table = Globals::with_capacity(LARGE);
        for (i, name) in names.iter().enumerate() {
            assert!(!table.is_large(), "{i} names; {RERUN}");
            table.insert_or_get(Globals::hash(name), name, winner(i));
        }
        assert!(table.is_large(), "{RERUN}");
    }

    /// A winner holds any graph and symbol 32 bits count, and nothing past
    /// them: an index is never cut to another one.
    #[test]
    fn a_winner_holds_32_bit_indices_only() {
        let max = u32::MAX as usize;
        for (g, id) in [(0, 0), (1, 70_000), (max, max)] {
            assert_eq!(Winner::new(g, id).map(Winner::at), Some((g, id)), "{RERUN}");
        }
        for (g, id) in [(max + 1, 0), (0, max + 1), (usize::MAX, usize::MAX)] {
            assert_eq!(Winner::new(g, id), None, "{g} {id}; {RERUN}");
        }
    }
}
