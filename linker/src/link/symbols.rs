//! The load's global symbol table: which definition each global name
//! means, by precedence (strong, then common, then weak), and which common
//! symbols this load allocates.

use rustc_hash::FxHashMap as HashMap;

use super::LinkRequest;
use super::globals::{Globals, Shard, Winner};
use crate::error::LinkError;
use crate::graph::*;

/// A common (tentative) symbol the load allocates: the largest size and
/// alignment any object gave it.
pub(super) struct Common<'a> {
    pub name: &'a str,
    pub size: u64,
    pub align: u64,
}

/// The load's global symbol table: strong beats common beats weak; two
/// strong definitions are an error naming both objects. A large load's
/// table is filled shard by shard on its threads (each shard's names in
/// the load's order, as one pass over all of them would meet them).
pub(super) fn collect<'a>(
    graphs: &'a [LinkGraph<'a>],
    req: &LinkRequest<'_>,
) -> Result<(Globals<'a>, Vec<Common<'a>>), LinkError> {
    let symbols: usize = graphs.iter().map(|g| g.symbols.len()).sum();
    collect_in_shards(graphs, req, Globals::shard_bits(symbols))
}

/// [`collect`], into a table of `bits` shard bits.
fn collect_in_shards<'a>(
    graphs: &'a [LinkGraph<'a>],
    req: &LinkRequest<'_>,
    bits: u32,
) -> Result<(Globals<'a>, Vec<Common<'a>>), LinkError> {
    let mut pieces = global_definitions(graphs, req.threads, bits, req.slab.page());
    let shard_ids: Vec<usize> = (0..1usize << bits).collect();
    let of_shard = |k: usize| pieces.iter().filter_map(move |p| p.shards.get(k));
    let counts: Vec<usize> = (shard_ids.iter())
        .map(|&k| of_shard(k).map(Vec::len).sum())
        .collect();
    // Each definition put in writes a slot, read from its shard's list.
    let weight = |&k: &usize| 64 * counts[k];
    let filled = crate::parallel::map(&shard_ids, req.threads, weight, |&k| {
        fill_shard(
            graphs,
            of_shard(k).flatten(),
            Shard::with_capacity(counts[k], bits),
        )
    });
    // The error a serial pass would meet first: the first, in the load's
    // order, of each piece's and each shard's first (the names of one
    // shard never bear on another's).
    let mut errors: Vec<(Place, LinkError)> =
        pieces.iter_mut().filter_map(|p| p.error.take()).collect();
    let mut shards = Vec::with_capacity(filled.len());
    for result in filled {
        match result {
            Ok(shard) => shards.push(shard),
            Err(error) => errors.push(error),
        }
    }
    if let Some((_, error)) = errors.into_iter().min_by_key(|(at, _)| *at) {
        return Err(error);
    }
    let globals = Globals::from_shards(shards);
    no_clash_with_session(graphs, &globals, req)?;
    let commons = allocated_commons(graphs, &pieces, &globals, req);
    Ok((globals, commons))
}

/// The common symbols the load allocates, sorted by name (resolution
/// finds one by binary search): each common name whose winner is a common
/// definition that does not yield to another module's export, with the
/// largest size and alignment any definition of it gave.
fn allocated_commons<'a>(
    graphs: &'a [LinkGraph<'a>],
    pieces: &[Definitions<'a>],
    globals: &Globals<'a>,
    req: &LinkRequest<'_>,
) -> Vec<Common<'a>> {
    let mut common_sizes: HashMap<&'a str, (u64, u64)> = HashMap::default();
    for &(g, id) in pieces.iter().flat_map(|p| &p.commons) {
        let sym = &graphs[g].symbols[id];
        if let Definition::Common { align } = sym.definition {
            let entry = common_sizes.entry(sym.name).or_insert((0, 1));
            entry.0 = entry.0.max(sym.size);
            entry.1 = entry.1.max(align);
        }
    }
    let mut commons = Vec::new();
    let mut names: Vec<&&str> = common_sizes.keys().collect();
    names.sort();
    for name in names {
        // Every common symbol was put in the table (the first definition of
        // a name is), and a later one only replaces it.
        let Some((g, id)) = globals.get(name) else {
            continue;
        };
        let sym = &graphs[g].symbols[id];
        let in_session = req
            .exports
            .get(*name)
            .is_some_and(|e| Some(e.module) != req.replacing);
        if matches!(sym.definition, Definition::Common { .. })
            && !(yields_to_session(sym) && in_session)
        {
            let (size, align) = common_sizes[*name];
            commons.push(Common { name, size, align });
        }
    }
    commons
}

/// A symbol's place in the load's order: its graph, then its index.
type Place = (usize, SymbolId);

/// A global definition the table is filled with: what filling reads of
/// it, so that filling reads no symbol (a shard's definitions are spread
/// over every object's symbols, a cache miss each), but for a name
/// defined twice.
#[derive(Clone, Copy)]
struct Defined<'a> {
    name: &'a str,
    hash: u64,
    winner: Winner,
}

/// What the definitions pass finds in one piece of the load's objects.
struct Definitions<'a> {
    /// Each shard's definitions, in the load's order.
    shards: Vec<Vec<Defined<'a>>>,
    /// The common symbols' definitions, in order.
    commons: Vec<Place>,
    /// The piece's first error, and where: the pass stops there.
    error: Option<(Place, LinkError)>,
}

/// `shard` filled with `definitions` (the shard's, in the load's order),
/// by precedence; or the first error, with the definition it came at.
fn fill_shard<'a, 'd>(
    graphs: &'a [LinkGraph<'a>],
    definitions: impl Iterator<Item = &'d Defined<'a>> + Clone,
    mut shard: Shard<'a>,
) -> Result<Shard<'a>, (Place, LinkError)>
where
    'a: 'd,
{
    fn rank(sym: &Symbol<'_>) -> u8 {
        match (sym.definition, sym.binding) {
            (Definition::Common { .. }, _) => 1,
            (_, Binding::Weak) => 0,
            _ => 2,
        }
    }
    // The slot of a definition a few ahead is asked for now, so that the
    // waits for memory overlap.
    let mut ahead = definitions.clone().skip(AHEAD);
    for defined in definitions {
        if let Some(next) = ahead.next() {
            shard.prefetch(next.hash);
        }
        let Some(winner) = shard.insert_or_get(defined.hash, defined.name, defined.winner) else {
            continue;
        };
        let ((g0, id0), (g, id)) = (winner.at(), defined.winner.at());
        let (old, new) = (rank(&graphs[g0].symbols[id0]), rank(&graphs[g].symbols[id]));
        if old == 2 && new == 2 {
            let error = LinkError::Duplicate {
                symbol: defined.name.to_string(),
                first: graphs[g0].object.clone(),
                second: graphs[g].object.clone(),
            };
            return Err(((g, id), error));
        }
        if new > old {
            *winner = defined.winner;
        }
    }
    Ok(shard)
}

/// Refuses a strong definition that clashes with another live module's
/// export (weak and common ones yield to it instead). With no export in
/// the session (a program's first load), none can clash: the winners are
/// not read (each one a cache miss in a large load).
fn no_clash_with_session(
    graphs: &[LinkGraph<'_>],
    globals: &Globals<'_>,
    req: &LinkRequest<'_>,
) -> Result<(), LinkError> {
    if req.exports.is_empty() {
        return Ok(());
    }
    for (name, (g, id)) in globals.iter() {
        let sym = &graphs[g].symbols[id];
        if yields_to_session(sym) || !sym.visibility.exported() {
            continue;
        }
        if let Some(export) = req.exports.get(name)
            && Some(export.module) != req.replacing
        {
            return Err(LinkError::Duplicate {
                symbol: name.to_string(),
                first: (req.describe_module)(export.module),
                second: graphs[g].object.clone(),
            });
        }
    }
    Ok(())
}

/// Every global definition of `graphs` that the table holds (in a live
/// section, absolute or common), made on the load's threads, piece by
/// piece of the objects, each piece's split among the shards of a table of
/// `bits` shard bits. A piece stops at its first error: a common symbol
/// aligned past `page`, or a symbol past the table's 32-bit indices.
fn global_definitions<'a>(
    graphs: &'a [LinkGraph<'a>],
    threads: crate::parallel::Threads,
    bits: u32,
    page: u64,
) -> Vec<Definitions<'a>> {
    let indices: Vec<usize> = (0..graphs.len()).collect();
    let weight = |&g: &usize| 8 * graphs[g].symbols.len();
    crate::parallel::map_pieces(&indices, threads, weight, |piece| {
        let mut found = Definitions {
            shards: (0..1usize << bits).map(|_| Vec::new()).collect(),
            commons: Vec::new(),
            error: None,
        };
        for &g in piece {
            if let Err(error) = definitions_of(graphs, g, bits, page, &mut found) {
                found.error = Some(error);
                break;
            }
        }
        vec![found]
    })
}

/// Adds graph `g`'s global definitions to `found`; the first error, and
/// where, if any.
fn definitions_of<'a>(
    graphs: &'a [LinkGraph<'a>],
    g: usize,
    bits: u32,
    page: u64,
    found: &mut Definitions<'a>,
) -> Result<(), (Place, LinkError)> {
    let graph = &graphs[g];
    let unsupported = |reason: String| LinkError::UnsupportedObject {
        object: graph.object.clone(),
        reason,
    };
    for (id, sym) in graph.symbols.iter().enumerate() {
        if sym.binding == Binding::Local || sym.name.is_empty() {
            continue;
        }
        match sym.definition {
            Definition::Defined { section, .. }
                if graph
                    .sections
                    .get(section as SectionId)
                    .is_some_and(|s| s.live) => {}
            Definition::Absolute(_) => {}
            Definition::Common { align } => {
                // The slab places a module on a page boundary: an offset
                // aligned to more would not be an aligned address.
                if align > page {
                    return Err((
                        (g, id),
                        unsupported(format!(
                            "common symbol `{}`: alignment {align:#x} is larger than the page size \
                         ({page:#x}), the most a module's placement guarantees",
                            sym.name
                        )),
                    ));
                }
                found.commons.push((g, id));
            }
            _ => continue,
        }
        let Some(winner) = Winner::new(g, id) else {
            return Err((
                (g, id),
                unsupported(format!(
                    "symbol {id} (`{}`) of object {g} of the load: the global table holds 32-bit \
                 object and symbol indices",
                    sym.name
                )),
            ));
        };
        let hash = Globals::hash(sym.name);
        // `shard_of` is below `2^bits`: the shard is always there.
        if let Some(shard) = found.shards.get_mut(Globals::shard_of(bits, hash)) {
            shard.push(Defined {
                name: sym.name,
                hash,
                winner,
            });
        }
    }
    Ok(())
}

/// How many definitions ahead of the one being put in the table its slot
/// is asked for.
const AHEAD: usize = 16;

/// Whether a definition gives way to one another live module exports: weak
/// and common (tentative) definitions do, as in a dynamic linker's global
/// scope; strong ones clash with it.
pub(super) fn yields_to_session(sym: &Symbol<'_>) -> bool {
    sym.visibility.exported()
        && (sym.binding == Binding::Weak || matches!(sym.definition, Definition::Common { .. }))
}

#[cfg(test)]
mod tests {
    use super::super::globals::SHARDED_FROM;
    use crate::input::parse_object;
    use crate::parallel::Threads;
    use crate::test_support::clang_object;

    const RERUN: &str = "rerun: cargo test -p solder-linker --lib link::symbols::tests";

    /// What [`super::collect`] made of a load, owned: every name and its
    /// winner in the table's order, the commons (name, size, alignment),
    /// and how many shards the table has; or its error.
    type Collected = (
        Vec<(String, (usize, usize))>,
        Vec<(String, u64, u64)>,
        usize,
    );

    /// The objects' global table made on `threads`, its shard bits as a
    /// load of their size gets them.
    fn collect(objects: &[Vec<u8>], threads: Threads) -> Result<Collected, String> {
        collect_in(objects, threads, None)
    }

    /// The objects' global table made on `threads`, of `bits` shard bits
    /// (`None`: as a load of their size gets them).
    fn collect_in(
        objects: &[Vec<u8>],
        threads: Threads,
        bits: Option<u32>,
    ) -> Result<Collected, String> {
        let graphs: Vec<_> = (objects.iter().enumerate())
            .map(|(i, bytes)| parse_object(&format!("part{i}.o"), bytes).expect("parse"))
            .collect();
        let mut parts = super::super::tests::RequestParts::new();
        let request = parts.request("parts", threads);
        let collected = match bits {
            Some(bits) => super::collect_in_shards(&graphs, &request, bits),
            None => super::collect(&graphs, &request),
        };
        let (globals, commons) = collected.map_err(|e| e.to_string())?;
        let table = globals.iter().map(|(n, w)| (n.to_string(), w)).collect();
        let commons = (commons.iter())
            .map(|c| (c.name.to_string(), c.size, c.align))
            .collect();
        Ok((table, commons, globals.shard_count()))
    }

    /// Serial, and split over four threads from the first byte.
    fn both_ways() -> [Threads; 2] {
        let split = Threads {
            count: Some(4),
            min_bytes_each: 1,
        };
        [Threads::serial(), split]
    }

    /// Object `k` of a load of [`SHARDED_FROM`] global functions or more
    /// (so its table is sharded), with `extra` assembly after them.
    fn large_part(k: usize, extra: &str) -> Vec<u8> {
        let mut source = String::from(".text\n");
        for i in 0..SHARDED_FROM / 3 + 100 {
            source += &format!(".globl f{k}_{i}\nf{k}_{i}: ret\n");
        }
        source += extra;
        clang_object("x86_64-unknown-linux-gnu", "assembler", &source, &[])
    }

    /// A load large enough to shard its table gets the same table and
    /// commons on one thread and on four: a strong definition beats an
    /// earlier weak one, the first of two weak ones stays, and a common's
    /// size and alignment are the largest its definitions gave.
    #[test]
    fn a_sharded_table_is_the_same_on_any_number_of_threads() {
        let objects = [
            large_part(0, ".weak both\nboth: ret\n.comm shared, 8, 8\n"),
            large_part(1, ".weak weak_only\nweak_only: ret\n.comm shared, 32, 16\n"),
            large_part(
                2,
                ".globl both\nboth: ret\n.weak weak_only\nweak_only: ret\n.comm shared, 4, 4\n",
            ),
        ];
        let [serial, split] = both_ways().map(|threads| collect(&objects, threads));
        let (table, commons, shards) = serial.expect("the load's table");
        assert!(shards > 1, "the table has {shards} shard(s); {RERUN}");
        let winner = |name: &str| {
            let found = table.iter().find(|(n, _)| n == name);
            found.map(|(_, (g, _))| *g)
        };
        assert_eq!(winner("both"), Some(2), "{RERUN}");
        assert_eq!(winner("weak_only"), Some(1), "{RERUN}");
        assert_eq!(winner("f1_7"), Some(1), "{RERUN}");
        assert_eq!(winner("nowhere"), None, "{RERUN}");
        assert_eq!(table.len(), 3 * (SHARDED_FROM / 3 + 100) + 3, "{RERUN}");
        assert_eq!(commons, [("shared".to_string(), 32, 16)], "{RERUN}");
        let split = split.expect("the split load's table");
        assert!(
            split == (table, commons, shards),
            "the split load's table differs; {RERUN}"
        );
    }

    /// A sharded table reports the error a serial pass over the
    /// definitions meets first, on any number of threads: a strong name
    /// defined twice before a common aligned past the page, or the other
    /// way round.
    #[test]
    fn a_sharded_table_reports_the_first_error_in_the_loads_order() {
        let aligned = ".comm aligned, 8, 65536\n";
        let twice = ".globl twice\ntwice: ret\n";
        for (aligned_in, expected) in [(3, "`twice`"), (0, "`aligned`")] {
            let objects: Vec<Vec<u8>> = (0..4)
                .map(|k| {
                    let mut extra = if k == 1 || k == 2 { twice } else { "" }.to_string();
                    if k == aligned_in {
                        extra += aligned;
                    }
                    large_part(k, &extra)
                })
                .collect();
            let [serial, split] = both_ways().map(|threads| collect(&objects, threads));
            let error = serial.expect_err("the load has two errors");
            assert!(error.contains(expected), "{error}; {RERUN}");
            assert_eq!(split.expect_err("the split load failed"), error, "{RERUN}");
        }
    }

    /// Object `k` of a load whose names come from a pool of 64, each
    /// object defining 40 of them, chosen and bound (strong, weak or
    /// common, of varied sizes and alignments) by a fixed sequence of
    /// pseudo-random numbers; a strong definition is made only of a name
    /// no earlier object defined strongly, unless `clash` asks for one, and
    /// never of the first 16 names (so that some commons win theirs).
    fn mixed_part(k: usize, strong: &mut std::collections::HashSet<usize>, clash: bool) -> Vec<u8> {
        let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ (k as u64 + 1).wrapping_mul(0x2545_f491);
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut source = String::from(".text\n");
        let mut used = std::collections::HashSet::new();
        while used.len() < 40 {
            let name = (next() % 64) as usize;
            if !used.insert(name) {
                continue;
            }
            match next() % 3 {
                0 if name >= 16 && (clash || !strong.contains(&name)) => {
                    strong.insert(name);
                    source += &format!(".globl n{name}\nn{name}: ret\n");
                }
                1 => source += &format!(".weak n{name}\nn{name}: ret\n"),
                _ => {
                    let (size, align) = (8 << (next() % 3), 1 << (next() % 4));
                    source += &format!(".comm n{name}, {size}, {align}\n");
                }
            }
        }
        clang_object("x86_64-unknown-linux-gnu", "assembler", &source, &[])
    }

    /// A load of many definitions of few names (strong, weak and common
    /// ones of varied sizes, the same name in many objects) makes the same
    /// table, commons and first error in one table as in sixteen shards,
    /// serially and on four threads.
    #[test]
    fn a_sharded_table_holds_what_one_table_holds() {
        for clash in [false, true] {
            let mut strong = std::collections::HashSet::new();
            let objects: Vec<Vec<u8>> =
                (0..24).map(|k| mixed_part(k, &mut strong, clash)).collect();
            let sorted = |collected: Result<Collected, String>| {
                collected.map(|(mut table, commons, _)| {
                    table.sort();
                    (table, commons)
                })
            };
            let one = sorted(collect_in(&objects, Threads::serial(), Some(0)));
            if !clash {
                let (table, commons) = one.as_ref().expect("the load without clashes links");
                assert_eq!(table.len(), 64, "{RERUN}");
                assert!(!commons.is_empty(), "the load has commons; {RERUN}");
            } else {
                let error = one.as_ref().expect_err("a strong name is defined twice");
                assert!(error.contains("defined"), "{error}; {RERUN}");
            }
            for threads in both_ways() {
                let sharded = sorted(collect_in(
                    &objects,
                    threads,
                    Some(super::super::globals::SHARD_BITS),
                ));
                assert!(
                    sharded == one,
                    "{threads:?}, clash {clash}: {sharded:?}\n{one:?}\n{RERUN}"
                );
            }
        }
    }
}
