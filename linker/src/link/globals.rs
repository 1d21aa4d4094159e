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
//! A large load's table is cut into shards by the top bits of each name's
//! hash, so that the load's threads fill the shards apart
//! ([`super::symbols`]); a lookup reads the one shard its name's hash
//! names.
//!
//! Each shard: open addressing with linear probing, at most 3/5 full.
//! Each slot's tag (32 bits of its name's hash) is kept apart from its
//! entry (the name and the winner's graph and symbol): a probe walks tags,
//! sixteen to a cache line and a small array that stays cached, and reads
//! the entry of a matching tag only. A caller that looks up many names
//! asks for each one's tags, then its entry, then the definition and name
//! the entry points to, a few lookups ahead of each.

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
pub(super) struct SlotId {
    shard: usize,
    at: usize,
}

/// Global names to the definitions that win them: one shard, or (for a
/// load of [`SHARDED_FROM`] symbols or more) `2^SHARD_BITS` shards, each
/// holding the names whose hash's top bits are its number. The shards are
/// filled apart, on the load's threads ([`super::symbols`]); a lookup
/// reads the one shard its name's hash names. How many shards a load's
/// table has depends on the load alone, so the table (and the order
/// [`Globals::iter`] gives) is the same on any number of threads.
pub(super) struct Globals<'a> {
    shards: Vec<Shard<'a>>,
    /// The shards' bits ([`Globals::shard_of`]).
    bits: u32,
}

/// From how many symbols (of every kind, in all of a load's objects) the
/// table is sharded: below it, filling the table takes a millisecond or
/// less, less than sharing it out would cost.
pub(super) const SHARDED_FROM: usize = 1 << 15;

/// A large load's table has `2^SHARD_BITS` shards: pieces enough for two
/// threads to take in turn on any machine's share of the work.
pub(super) const SHARD_BITS: u32 = 4;

/// One shard: open addressing with linear probing, at most 3/5 full.
pub(super) struct Shard<'a> {
    /// Each slot's tag (32 bits of its name's hash; 0 when empty), apart
    /// from the entries: a probe reads a few neighbouring tags, sixteen to
    /// a cache line, and the entry of a matching one only.
    tags: Vec<u32>,
    entries: Vec<Entry<'a>>,
    len: usize,
    /// The hash bits that chose the shard (the top of the high half):
    /// the slot a name starts at is taken from the bits below them.
    bits: u32,
}

impl<'a> Globals<'a> {
    /// The table made of `shards`: shard `k` holds the names whose
    /// [`Globals::shard_of`] is `k`, for the shards' `bits` (the same for
    /// all, `2^bits` of them).
    pub fn from_shards(shards: Vec<Shard<'a>>) -> Self {
        let bits = shards.first().map_or(0, |s| s.bits);
        Globals { shards, bits }
    }

    /// A table of one shard that holds `names` names without growing.
    #[cfg(test)]
    pub fn with_capacity(names: usize) -> Self {
        Globals::from_shards(vec![Shard::with_capacity(names, 0)])
    }

    /// The shard bits of a load of `symbols` symbols in all: 0 (one
    /// shard) below [`SHARDED_FROM`].
    pub fn shard_bits(symbols: usize) -> u32 {
        if symbols >= SHARDED_FROM {
            SHARD_BITS
        } else {
            0
        }
    }

    /// The shard that holds a name of hash `hash` in a table of `bits`
    /// shard bits: the hash's top `bits` bits.
    #[inline]
    pub fn shard_of(bits: u32, hash: u64) -> usize {
        ((hash >> 32) >> (32 - bits)) as usize
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

    /// How many shards the table has.
    #[cfg(test)]
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// How many names the table holds.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.len).sum()
    }

    /// Whether the table is large enough that asking the memory ahead
    /// pays for a lookup ([`LARGE`]).
    pub fn is_large(&self) -> bool {
        self.len() >= LARGE
    }

    /// The definition that wins `name`.
    pub fn get(&self, name: &str) -> Option<(usize, SymbolId)> {
        self.get_hashed(Self::hash(name), name)
    }

    /// Whether the load defines `name`.
    pub fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The shard a name of hash `hash` is in (`None` only for a table made
    /// of fewer shards than its bits say, which holds no such name).
    #[inline]
    fn shard(&self, hash: u64) -> Option<(usize, &Shard<'a>)> {
        let index = Self::shard_of(self.bits, hash);
        Some((index, self.shards.get(index)?))
    }

    /// The definition that wins `name`, whose hash is `hash`
    /// ([`Globals::hash`]).
    #[inline]
    pub fn get_hashed(&self, hash: u64, name: &str) -> Option<(usize, SymbolId)> {
        let (_, shard) = self.shard(hash)?;
        let at = shard.find(hash, name).ok()?;
        Some(shard.entries[at].winner.at())
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
    /// entry of the first, so that a lookup made shortly after does not
    /// wait for them.
    #[inline]
    pub fn prefetch(&self, hash: u64) {
        if let Some((_, shard)) = self.shard(hash) {
            shard.prefetch(hash);
        }
    }

    /// The first slot of `hash`'s probe whose tag is `hash`'s; `None` when
    /// no slot before an empty one has it. Its name is not compared: it is
    /// a hint, for the caller to ask the memory for what it will read once
    /// [`Globals::get_hashed`] confirms it.
    #[inline]
    pub fn candidate(&self, hash: u64) -> Option<SlotId> {
        let (index, shard) = self.shard(hash)?;
        let at = shard.candidate(hash)?;
        Some(SlotId { shard: index, at })
    }

    /// Asks the memory for `slot`'s entry.
    #[inline]
    pub fn prefetch_entry(&self, slot: SlotId) {
        if let Some(entry) = self.slot(slot) {
            prefetch(entry as *const Entry<'_> as *const u8);
        }
    }

    /// The name `slot` holds and the definition that wins it.
    #[inline]
    pub fn entry(&self, slot: SlotId) -> Option<(&'a str, (usize, SymbolId))> {
        let entry = self.slot(slot)?;
        Some((entry.name, entry.winner.at()))
    }

    fn slot(&self, slot: SlotId) -> Option<&Entry<'a>> {
        self.shards.get(slot.shard)?.entries.get(slot.at)
    }

    /// Every name and its definition, shard by shard in slot order: the
    /// same for the same insertions, whatever the machine.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, (usize, SymbolId))> + '_ {
        self.shards.iter().flat_map(Shard::iter)
    }

    /// Every definition, in the order of [`Globals::iter`].
    pub fn values(&self) -> impl Iterator<Item = (usize, SymbolId)> + '_ {
        self.iter().map(|(_, winner)| winner)
    }
}

impl<'a> Shard<'a> {
    /// A shard of a table of `bits` shard bits that holds `names` names
    /// without growing.
    pub fn with_capacity(names: usize, bits: u32) -> Self {
        let slots = slot_count(names);
        Shard {
            tags: vec![0; slots],
            entries: vec![EMPTY; slots],
            len: 0,
            bits,
        }
    }

    /// Asks the memory for the tags a lookup (or an insertion) of `hash`
    /// starts at, and the entry of the first.
    #[inline]
    pub fn prefetch(&self, hash: u64) {
        let home = self.home(hash);
        if let (Some(tag), Some(entry)) = (self.tags.get(home), self.entries.get(home)) {
            prefetch(tag as *const u32 as *const u8);
            prefetch(entry as *const Entry<'_> as *const u8);
        }
    }

    /// The first slot of `hash`'s probe whose tag is `hash`'s.
    #[inline]
    fn candidate(&self, hash: u64) -> Option<usize> {
        let tag = tag(hash);
        let mut at = self.home(hash);
        for _ in 0..self.tags.len() {
            match self.tags[at] {
                0 => return None,
                held if held == tag => return Some(at),
                _ => at = self.next(at),
            }
        }
        None
    }

    /// Makes `winner` win `name` (of hash `hash`, whose shard this is)
    /// when the shard does not hold the name (`None`); otherwise leaves it
    /// as it is and gives the name's winner, for the caller to replace if
    /// it will.
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

    /// Every name and its definition, in slot order.
    fn iter(&self) -> impl Iterator<Item = (&'a str, (usize, SymbolId))> + '_ {
        (self.tags.iter().zip(&self.entries))
            .filter(|(tag, _)| **tag != 0)
            .map(|(_, entry)| (entry.name, entry.winner.at()))
    }

    /// The slot holding `name` (`Ok`), or the empty slot that ends its
    /// probe (`Err`). The shard always has an empty slot (it is never
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

    /// The slot `hash` starts at: the high half's bits below those that
    /// chose the shard, scaled onto the slots (the low half is the tag).
    #[inline]
    fn home(&self, hash: u64) -> usize {
        let rest = ((hash >> 32) << self.bits) & 0xffff_ffff;
        ((rest * self.tags.len() as u64) >> 32) as usize
    }

    #[inline]
    fn next(&self, at: usize) -> usize {
        if at + 1 == self.tags.len() { 0 } else { at + 1 }
    }

    /// Twice the slots, every name placed again.
    fn grow(&mut self) {
        let mut grown = Shard::with_capacity(self.len.max(8) * 2, self.bits);
        for (name, (g, id)) in self.iter() {
            if let Some(winner) = Winner::new(g, id) {
                grown.insert_or_get(Globals::hash(name), name, winner);
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

    /// A table of `bits` shard bits holding `names` (name `i` won by
    /// `winner(i)`), its shards sized for `capacity` names in all.
    fn table_of(names: &[String], bits: u32, capacity: usize) -> Globals<'_> {
        let mut shards: Vec<Shard<'_>> = (0..1usize << bits)
            .map(|_| Shard::with_capacity(capacity >> bits, bits))
            .collect();
        for (i, name) in names.iter().enumerate() {
            let hash = Globals::hash(name);
            let shard = &mut shards[Globals::shard_of(bits, hash)];
            let new = shard.insert_or_get(hash, name, winner(i));
            assert!(new.is_none(), "{name} is new; {RERUN}");
        }
        Globals::from_shards(shards)
    }

    /// Every name put in is found with its winner, whether the table was
    /// sized for them or grew, in one shard or many; names never put in
    /// are not; a name's first winner stays until the caller replaces it.
    #[test]
    fn names_put_in_are_found_and_others_are_not() {
        let names: Vec<String> = (0..5000).map(|i| format!("name_{i}")).collect();
        for (bits, capacity) in [
            (0, 0),
            (0, 10),
            (0, 5000),
            (SHARD_BITS, 0),
            (SHARD_BITS, 5000),
        ] {
            let mut table = table_of(&names, bits, capacity);
            let context = format!("{bits} shard bits, capacity {capacity}; {RERUN}");
            let shard_of = |name: &str| Globals::shard_of(bits, Globals::hash(name));
            let (seven, eight) = (shard_of(&names[7]), shard_of(&names[8]));
            let held =
                table.shards[seven].insert_or_get(Globals::hash(&names[7]), &names[7], winner(99));
            assert_eq!(held.copied(), Some(winner(7)), "{context}");
            if let Some(held) =
                table.shards[eight].insert_or_get(Globals::hash(&names[8]), &names[8], winner(0))
            {
                *held = winner(80);
            }
            assert_eq!(table.len(), names.len(), "{context}");
            for (i, name) in names.iter().enumerate().skip(9) {
                assert_eq!(table.get(name), Some((i, i + 1)), "{context}");
            }
            assert_eq!(table.get(&names[7]), Some((7, 8)), "{context}");
            assert_eq!(table.get(&names[8]), Some((80, 81)), "{context}");
            for missing in ["name_5000", "name_", "", "name_-1"] {
                assert!(!table.contains_key(missing), "{missing}; {context}");
            }
            let mut listed: Vec<(&str, (usize, SymbolId))> = table.iter().collect();
            listed.sort();
            let mut expected: Vec<(&str, (usize, SymbolId))> = (names.iter().enumerate())
                .map(|(i, name)| (name.as_str(), if i == 8 { (80, 81) } else { (i, i + 1) }))
                .collect();
            expected.sort();
            assert_eq!(listed, expected, "{context}");
            assert_eq!(table.values().count(), names.len(), "{context}");
        }
    }

    /// Names are spread over every shard, each shard's slots are used
    /// from the first to the last (the bits that chose the shard do not
    /// also choose the slot), and a candidate found through the table
    /// leads to the name's own entry.
    #[test]
    fn a_sharded_table_uses_every_shard_and_all_of_each() {
        let names: Vec<String> = (0..20_000).map(|i| format!("sym{i}")).collect();
        let table = table_of(&names, SHARD_BITS, names.len());
        for (k, shard) in table.shards.iter().enumerate() {
            let used = |range: std::ops::Range<usize>| shard.tags[range].iter().any(|&t| t != 0);
            let slots = shard.tags.len();
            assert!(shard.len > 0, "shard {k} is empty; {RERUN}");
            assert!(
                used(0..slots / 4),
                "shard {k}'s first quarter is empty; {RERUN}"
            );
            assert!(
                used(slots * 3 / 4..slots),
                "shard {k}'s last quarter is empty; {RERUN}"
            );
        }
        for (i, name) in names.iter().enumerate().step_by(97) {
            let slot = table.candidate(Globals::hash(name));
            let held = slot.and_then(|slot| table.entry(slot));
            assert_eq!(held, Some((name.as_str(), (i, i + 1))), "{name}; {RERUN}");
        }
    }

    /// Names that share their first slot and their tag are told apart by
    /// the name itself; a candidate is a hint that the lookup then
    /// confirms or refuses, and its entry is the slot's.
    #[test]
    fn names_of_one_tag_are_told_apart() {
        let mut shard = Shard::with_capacity(4, 0);
        let hash = Globals::hash("a");
        let slots = shard.tags.len();
        // Every slot but one filled with other names under `a`'s hash.
        let names: Vec<String> = (0..slots - 1).map(|i| format!("other{i}")).collect();
        for (i, name) in names.iter().enumerate() {
            let Err(at) = shard.find(hash, name) else {
                panic!("{name} was not put in; {RERUN}");
            };
            shard.tags[at] = tag(hash);
            shard.entries[at] = Entry {
                name,
                winner: winner(i),
            };
            shard.len += 1;
        }
        let table = Globals::from_shards(vec![shard]);
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
        assert!(
            !table_of(&names[..LARGE - 1], 0, LARGE).is_large(),
            "{RERUN}"
        );
        assert!(table_of(&names, 0, LARGE).is_large(), "{RERUN}");
        assert!(table_of(&names, SHARD_BITS, LARGE).is_large(), "{RERUN}");
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
