//! Member selection: which archive members a load takes, as a static
//! linker takes them, from the session's archive search list.
//!
//! A member is taken when it defines a name the load references and leaves
//! undefined so far (a strong reference: weak ones pull nothing), and no
//! earlier module exports. Members taken add their own references, and the
//! search goes on until nothing changes, over every archive of the list
//! for each name (so the order of archives does not matter, like
//! `--start-group`; for a name several archives define, the one added
//! first wins). An archive added as *whole* gives the next load every
//! member. The list lives as long as the session: a later load may take
//! further members of an archive given earlier (ORC's static-library
//! generator), and a member is never taken twice while the module that
//! took it lives.

use std::sync::Arc;

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use crate::archive::Archive;
use crate::error::LinkError;
use crate::graph::{Binding, Definition, LinkGraph};
use crate::input::parse_object;
use crate::parallel::Threads;

/// The session's archives and which of their members modules hold.
#[derive(Debug, Default)]
pub struct ArchiveSearch {
    archives: Vec<Arc<Archive>>,
    /// (archive, member) -> the module holding it.
    taken: HashMap<(usize, usize), u32>,
    /// Archives whose members the next load takes whole.
    whole: Vec<usize>,
    /// How many archives (the first ones of the list) a load that
    /// succeeded has searched.
    searched: usize,
}

/// A member a load took, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    pub archive: usize,
    pub member: usize,
    /// `libfoo.a(bar.o)`.
    pub name: String,
    /// The name that pulled it in; `None` when its archive was whole.
    pub by: Option<String>,
}

impl ArchiveSearch {
    /// Appends `archive` to the search list; with `whole`, the next load
    /// takes every member not held yet.
    pub fn add(&mut self, archive: Archive, whole: bool) {
        if whole {
            self.whole.push(self.archives.len());
        }
        self.archives.push(Arc::new(archive));
    }

    /// The search list, for a load to borrow members from while the
    /// session changes.
    pub fn archives(&self) -> Vec<Arc<Archive>> {
        self.archives.clone()
    }

    /// Takes the members a load needs (every member of a whole archive not
    /// held yet, then what is needed): parses each into `graphs` (after the
    /// load's own objects) and says which were taken. `module` is the
    /// module being linked: members it holds (it is being replaced) count
    /// as free. `defined_elsewhere` says whether an earlier module (or an
    /// absolute definition) already offers a name.
    ///
    /// Members are parsed ahead on `threads`: the members that define the
    /// names wanted so far, all at once, before the names are gone through
    /// in order. The names, and so the members taken and their order, are
    /// the serial search's; a member parsed ahead that the search does not
    /// take (an earlier member defined its name) is dropped, its error too.
    pub fn select<'a>(
        &self,
        archives: &'a [Arc<Archive>],
        graphs: &mut Vec<LinkGraph<'a>>,
        module: u32,
        threads: Threads,
        defined_elsewhere: impl Fn(&str) -> bool,
    ) -> Result<Vec<Pulled>, LinkError> {
        if archives.is_empty() {
            return Ok(Vec::new());
        }
        let mut selection = Selection {
            archives,
            held: |archive, member| {
                self.taken
                    .get(&(archive, member))
                    .is_some_and(|&holder| holder != module)
            },
            defined: HashSet::default(),
            wanted: Vec::new(),
            chosen: HashSet::default(),
            pulled: Vec::new(),
            ahead: HashMap::default(),
        };
        for graph in graphs.iter() {
            selection.note(graph);
        }
        let whole: Vec<(usize, usize)> = self
            .whole
            .iter()
            .flat_map(|&archive| (0..archives[archive].len()).map(move |member| (archive, member)))
            .collect();
        selection.parse_ahead(whole.iter().copied(), threads);
        for (archive, member) in whole {
            if let Some(graph) = selection.take(archive, member, None)? {
                graphs.push(graph);
            }
        }
        let definers = Definers::of(archives);
        let mut next = 0;
        while next < selection.wanted.len() {
            let upcoming: Vec<(usize, usize)> = selection.wanted[next..]
                .iter()
                .filter(|&&name| !selection.defined.contains(name) && !defined_elsewhere(name))
                .filter_map(|&name| definers.get(name))
                .collect();
            selection.parse_ahead(upcoming, threads);
            let end = selection.wanted.len();
            while next < end {
                let name = selection.wanted[next];
                next += 1;
                if selection.defined.contains(name) || defined_elsewhere(name) {
                    continue;
                }
                if let Some((archive, member)) = definers.get(name)
                    && let Some(graph) = selection.take(archive, member, Some(name))?
                {
                    graphs.push(graph);
                }
            }
        }
        Ok(selection.pulled)
    }

    /// What each member of the archives added since the last load weighs
    /// as work ([`Archive::member_weight`]). A load decides its threads
    /// before it knows which members it takes: the first load after a
    /// library is added (a program's `main` and its library) usually
    /// takes much of it, and a later one, a few members if any, so only
    /// archives no load has searched yet count.
    pub fn unsearched_member_weights(&self) -> impl Iterator<Item = usize> + '_ {
        let unsearched = self.archives.get(self.searched..).unwrap_or_default();
        unsearched
            .iter()
            .flat_map(|archive| (0..archive.len()).map(|m| archive.member_weight(m)))
    }

    /// A member a load took, as an object of its own.
    pub fn member_object(&self, pulled: &Pulled) -> crate::input::ObjectFile {
        self.archives[pulled.archive].member_object(pulled.member)
    }

    /// The size of a taken member's bytes.
    pub fn member_len(&self, pulled: &Pulled) -> usize {
        self.archives[pulled.archive]
            .member_bytes(pulled.member)
            .len()
    }

    /// Records that `module` holds `pulled` (replacing what it held); the
    /// whole archives were given to it. (A load that fails records
    /// nothing: the next one is given the whole archives again.)
    pub fn record(&mut self, module: u32, pulled: &[Pulled]) {
        self.whole.clear();
        self.searched = self.archives.len();
        self.forget(module);
        for p in pulled {
            self.taken.insert((p.archive, p.member), module);
        }
    }

    /// `module` is gone: its members may be taken again.
    pub fn forget(&mut self, module: u32) {
        self.taken.retain(|_, holder| *holder != module);
    }

    /// The session ended: nothing is held.
    pub fn clear_taken(&mut self) {
        self.taken.clear();
    }
}

/// Which archive of the list, and which of its members, defines a name:
/// the first archive that does. Asked once or twice for every name a load
/// leaves undefined; with many archives (a C++ library split as abseil
/// splits itself: protoc links 82), asking each in turn cost more than a
/// table of all their names made once per load (protoc's: 9,831 names
/// asked, 5.4 ms in turn).
enum Definers<'a> {
    /// One archive or none: asked directly.
    Each(&'a [Arc<Archive>]),
    /// Every name the archives define, to the first archive's member.
    Table(HashMap<&'a str, (usize, usize)>),
}

impl<'a> Definers<'a> {
    fn of(archives: &'a [Arc<Archive>]) -> Definers<'a> {
        if archives.len() <= 1 {
            return Definers::Each(archives);
        }
        let mut table = HashMap::default();
        for (a, archive) in archives.iter().enumerate() {
            for (name, member) in archive.definitions() {
                table.entry(name).or_insert((a, member));
            }
        }
        Definers::Table(table)
    }

    fn get(&self, name: &str) -> Option<(usize, usize)> {
        match self {
            Definers::Each(archives) => archives
                .iter()
                .enumerate()
                .find_map(|(a, archive)| archive.definer(name).map(|m| (a, m))),
            Definers::Table(table) => table.get(name).copied(),
        }
    }
}

/// One load's selection in progress.
struct Selection<'a, F> {
    archives: &'a [Arc<Archive>],
    /// Whether another module holds a member.
    held: F,
    /// Names the load defines so far.
    defined: HashSet<&'a str>,
    /// Names the load references strongly, in the order met.
    wanted: Vec<&'a str>,
    chosen: HashSet<(usize, usize)>,
    pulled: Vec<Pulled>,
    /// Members parsed ahead of being taken (see [`ArchiveSearch::select`]).
    ahead: HashMap<(usize, usize), Result<LinkGraph<'a>, LinkError>>,
}

impl<'a, F: Fn(usize, usize) -> bool> Selection<'a, F> {
    /// Adds what `graph` defines and references.
    fn note(&mut self, graph: &LinkGraph<'a>) {
        for symbol in &graph.symbols {
            if symbol.binding == Binding::Local || symbol.name.is_empty() {
                continue;
            }
            match symbol.definition {
                Definition::Undefined if symbol.binding == Binding::Global => {
                    self.wanted.push(symbol.name)
                }
                Definition::Defined { .. }
                | Definition::Absolute(_)
                | Definition::Common { .. } => {
                    self.defined.insert(symbol.name);
                }
                _ => {}
            }
        }
    }

    /// Parses the members of `candidates` that may be taken next and are
    /// not parsed yet, on `threads`. A load whose candidates one thread
    /// would parse anyway parses none ahead: each member is parsed when
    /// taken, so a serial load never parses one it does not take.
    fn parse_ahead(
        &mut self,
        candidates: impl IntoIterator<Item = (usize, usize)>,
        threads: Threads,
    ) {
        let mut seen = HashSet::default();
        let candidates: Vec<(usize, usize)> = candidates
            .into_iter()
            .filter(|&(archive, member)| {
                !(self.held)(archive, member)
                    && !self.chosen.contains(&(archive, member))
                    && !self.ahead.contains_key(&(archive, member))
                    && seen.insert((archive, member))
            })
            .collect();
        let archives = self.archives;
        let weight =
            |&(archive, member): &(usize, usize)| archives[archive].member_bytes(member).len();
        if threads.split(crate::parallel::Work::of(candidates.iter().map(weight))) <= 1 {
            return;
        }
        let parsed = crate::parallel::map(&candidates, threads, weight, |&(archive, member)| {
            let name = archives[archive].member_name(member);
            parse_object(&name, archives[archive].member_bytes(member))
        });
        self.ahead.extend(candidates.into_iter().zip(parsed));
    }

    /// Takes member `member` of archive `archive` unless it is taken
    /// already (by this load or by a living module).
    fn take(
        &mut self,
        archive: usize,
        member: usize,
        by: Option<&str>,
    ) -> Result<Option<LinkGraph<'a>>, LinkError> {
        if (self.held)(archive, member) || !self.chosen.insert((archive, member)) {
            return Ok(None);
        }
        let archives = self.archives;
        let name = archives[archive].member_name(member);
        let graph = match self.ahead.remove(&(archive, member)) {
            Some(parsed) => parsed?,
            None => parse_object(&name, archives[archive].member_bytes(member))?,
        };
        self.note(&graph);
        self.pulled.push(Pulled {
            archive,
            member,
            name,
            by: by.map(str::to_string),
        });
        Ok(Some(graph))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RERUN: &str = "rerun: cargo test -p solder-linker --lib members::tests";

    /// The table of the archives' names answers as asking each archive in
    /// turn does: for a name several archives define, the first archive
    /// of the list (and its first member defining it).
    #[test]
    fn the_table_of_definers_gives_the_first_archives_member() {
        let object =
            |body: &str| crate::test_support::clang_object("x86_64-linux-gnu", "c", body, &["-O1"]);
        let a = object("int a(void) { return 1; }");
        let b = object("int b(void) { return 2; }");
        let a_c = object("int a(void) { return 3; }\nint c(void) { return 4; }");
        let c_d = object("int c(void) { return 5; }\nint d(void) { return 6; }");
        let archive = |name: &str, members: &[(&str, &[u8])]| {
            let bytes = crate::test_support::ar_archive(members);
            Arc::new(Archive::parse(name, &bytes, None).unwrap())
        };
        let archives = [
            archive("one.a", &[("b.o", &b), ("a.o", &a), ("a_c.o", &a_c)]),
            archive("two.a", &[("a_c.o", &a_c)]),
            archive("three.a", &[("c_d.o", &c_d)]),
        ];
        let table = Definers::of(&archives);
        assert!(matches!(table, Definers::Table(_)), "{RERUN}");
        let each = Definers::Each(&archives);
        let expected = [
            ("a", Some((0, 1))),
            ("b", Some((0, 0))),
            ("c", Some((0, 2))),
            ("d", Some((2, 0))),
            ("e", None),
        ];
        for (name, member) in expected {
            assert_eq!(each.get(name), member, "{name}, each in turn\n{RERUN}");
            assert_eq!(table.get(name), member, "{name}, from the table\n{RERUN}");
        }
    }

    /// A load counts as work the members of the archives added since the
    /// last load that succeeded, each at its length.
    #[test]
    fn a_load_weighs_the_members_of_the_archives_no_load_searched() {
        let object =
            |body: &str| crate::test_support::clang_object("x86_64-linux-gnu", "c", body, &["-O1"]);
        let (a, b) = (
            object("int a(void) { return 1; }"),
            object("int b(void) { return 2; }"),
        );
        let archive = |members: &[(&str, &[u8])]| {
            let bytes = crate::test_support::ar_archive(members);
            Archive::parse("lib.a", &bytes, None).unwrap()
        };
        let weights =
            |search: &ArchiveSearch| -> Vec<usize> { search.unsearched_member_weights().collect() };
        let mut search = ArchiveSearch::default();
        search.add(archive(&[("a.o", &a), ("b.o", &b)]), false);
        assert_eq!(weights(&search), vec![a.len(), b.len()], "{RERUN}");
        let pulled = Pulled {
            archive: 0,
            member: 0,
            name: "lib.a(a.o)".into(),
            by: None,
        };
        search.record(1, &[pulled]);
        assert_eq!(weights(&search), Vec::<usize>::new(), "searched\n{RERUN}");
        search.add(archive(&[("b.o", &b)]), false);
        assert_eq!(weights(&search), vec![b.len()], "added later\n{RERUN}");
        search.forget(1);
        assert_eq!(weights(&search), vec![b.len()], "{RERUN}");
    }
}
