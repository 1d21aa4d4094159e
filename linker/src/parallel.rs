//! Work on independent objects spread over threads: reading, parsing
//! (relocation records included), writing and relocating each object's
//! sections. Results come back in the inputs' order, each computed by the
//! same function as a serial link would, so a link's output does not depend
//! on the number of threads.
//!
//! Threads cost tens of microseconds to start, so a load is split only
//! when each thread gets at least [`MIN_BYTES_PER_THREAD`] of input: small
//! links (a script interpreter, one module of a session) spawn nothing.
//! One thread does each item whole, so only what lies beyond the largest
//! item can go to other threads ([`Work`]): a load that is one large
//! object and a few small ones stays on one thread.
//! A large load keeps its helpers awake from stage to stage ([`with_crew`]),
//! and while they are, handing them work costs microseconds: its stages
//! split from [`MIN_BYTES_PER_CREW_THREAD`] a thread. Outside a crew, each
//! split starts and joins threads of its own.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

mod crew;
pub use crew::with_crew;

/// The input a thread must have for a split to pay for its start. At
/// 1 MiB a program of 218 small objects (3.9 MB, many sections each)
/// links in 15.9 ms instead of 19.6 on two threads.
pub const MIN_BYTES_PER_THREAD: usize = 1 << 20;

/// The input a thread of a running crew must have for a split to pay for
/// handing it the work (microseconds, where starting a thread costs tens
/// to thousands).
pub const MIN_BYTES_PER_CREW_THREAD: usize = 64 << 10;

/// Work is cut into this many pieces per thread, taken in turn, so a
/// thread that drew large objects does not hold the others up.
const PIECES_PER_THREAD: usize = 4;

/// How work may be spread: over at most `count` threads (`None`: every
/// core, counted only when a load is large enough to split), each given at
/// least `min_bytes_each` of input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Threads {
    pub count: Option<usize>,
    pub min_bytes_each: usize,
}

impl Threads {
    /// Up to `count` threads, split only when each gets
    /// [`MIN_BYTES_PER_THREAD`].
    pub fn new(count: usize) -> Threads {
        Threads {
            count: Some(count.max(1)),
            min_bytes_each: MIN_BYTES_PER_THREAD,
        }
    }

    /// `SOLDER_THREADS` if set to a positive number, else every core the
    /// process may run on.
    pub fn from_environment() -> Threads {
        let set = std::env::var("SOLDER_THREADS")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|&n| n > 0);
        Threads {
            count: set,
            min_bytes_each: MIN_BYTES_PER_THREAD,
        }
    }

    /// Everything on the caller's thread.
    pub fn serial() -> Threads {
        Threads::new(1)
    }

    /// How many threads `work` is split over (never more threads than
    /// items). With a free crew at hand the threads are already running,
    /// so a split needs only [`MIN_BYTES_PER_CREW_THREAD`] each.
    pub fn split(self, work: Work) -> usize {
        let threads = if crew::free() {
            Threads {
                min_bytes_each: self.min_bytes_each.min(MIN_BYTES_PER_CREW_THREAD),
                ..self
            }
        } else {
            self
        };
        threads.for_work(work)
    }

    /// How many threads `work` is worth: each gets at least
    /// `min_bytes_each`, and every thread but the one that takes the
    /// largest item gets it from the other items.
    pub fn for_work(self, work: Work) -> usize {
        let others = work.total.saturating_sub(work.largest) / self.min_bytes_each.max(1);
        self.for_bytes(work.total)
            .min(others.saturating_add(1))
            .min(work.items)
            .max(1)
    }

    /// How many threads `total_bytes` of input are worth, whatever its
    /// items.
    fn for_bytes(self, total_bytes: usize) -> usize {
        let worth = total_bytes / self.min_bytes_each.max(1);
        if worth <= 1 {
            return 1;
        }
        worth.min(self.count.unwrap_or_else(cores).max(1))
    }
}

/// Work to spread over threads, by weight (bytes of input, or what stands
/// for them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Work {
    /// All items' weight.
    pub total: usize,
    /// The heaviest item's: one thread does it whole.
    pub largest: usize,
    /// How many items there are.
    pub items: usize,
}

impl Work {
    /// Items of these weights.
    pub fn of(weights: impl IntoIterator<Item = usize>) -> Work {
        weights.into_iter().fold(
            Work {
                total: 0,
                largest: 0,
                items: 0,
            },
            |work, weight| Work {
                total: work.total.saturating_add(weight),
                largest: work.largest.max(weight),
                items: work.items + 1,
            },
        )
    }

    /// `items` items weighing `each`.
    pub fn even(items: usize, each: usize) -> Work {
        Work {
            total: items.saturating_mul(each),
            largest: if items == 0 { 0 } else { each },
            items,
        }
    }
}

/// The cores this process may run on, asked once (the standard library
/// reads the scheduler's affinity and the cgroup's quota: tens of
/// microseconds, which a small link does not pay at all).
fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// `f` applied to every item, in the items' order, on as many threads as
/// `threads` allows for the items' weight (the caller's among them). `weight` says how much work an item
/// is (its bytes): pieces of about equal weight are taken in turn.
pub fn map<'t, T, R, F, W>(items: &'t [T], threads: Threads, weight: W, f: F) -> Vec<R>
where
    T: Sync,
    R: Send,
    F: Fn(&'t T) -> R + Sync,
    W: Fn(&T) -> usize,
{
    let work = Work::of(items.iter().map(&weight));
    let threads = threads.split(work);
    if threads <= 1 {
        return items.iter().map(f).collect();
    }
    let total = work.total;
    let parts = by_pieces(items, threads, weight, total, |piece: &'t [T]| {
        piece.iter().map(&f).collect::<Vec<R>>()
    });
    parts.into_iter().flatten().collect()
}

/// `work` applied to consecutive pieces of `items` (spread as [`map`]
/// spreads items), its results concatenated in the items' order: for work
/// that shares something along a piece, such as an open directory. On one
/// thread the whole of `items` is one piece.
pub fn map_pieces<'t, T, R, F, W>(items: &'t [T], threads: Threads, weight: W, work: F) -> Vec<R>
where
    T: Sync,
    R: Send,
    F: Fn(&'t [T]) -> Vec<R> + Sync,
    W: Fn(&T) -> usize,
{
    let weights = Work::of(items.iter().map(&weight));
    let threads = threads.split(weights);
    if threads <= 1 {
        return work(items);
    }
    let total = weights.total;
    let parts = by_pieces(items, threads, weight, total, work);
    let mut out = Vec::with_capacity(parts.iter().map(Vec::len).sum());
    for part in parts {
        out.extend(part);
    }
    out
}

/// `work` applied to consecutive pieces of `items` of about equal weight
/// (`total` in all), taken in turn by `threads` threads (the caller's
/// among them): each piece's result, in the items' order.
fn by_pieces<'t, T, P, F, W>(
    items: &'t [T],
    threads: usize,
    weight: W,
    total: usize,
    work: F,
) -> Vec<P>
where
    T: Sync,
    P: Send,
    F: Fn(&'t [T]) -> P + Sync,
    W: Fn(&T) -> usize,
{
    let pieces = pieces(items, &weight, total, threads * PIECES_PER_THREAD);
    let next = AtomicUsize::new(0);
    let done: Mutex<Vec<(usize, P)>> = Mutex::new(Vec::with_capacity(pieces.len()));
    let take_pieces = || {
        while let Some(range) = pieces.get(next.fetch_add(1, Ordering::Relaxed)) {
            let result = work(&items[range.clone()]);
            lock(&done).push((range.start, result));
        }
    };
    if !crew::run_on_crew(&take_pieces) {
        std::thread::scope(|scope| {
            let helpers: Vec<_> = (1..threads).map(|_| scope.spawn(take_pieces)).collect();
            take_pieces();
            for helper in helpers {
                if let Err(panic) = helper.join() {
                    // A panic in `work` is a bug; it goes on as it would
                    // have in a serial link.
                    std::panic::resume_unwind(panic);
                }
            }
        });
    }
    let mut done = done.into_inner().unwrap_or_else(PoisonError::into_inner);
    done.sort_unstable_by_key(|(start, _)| *start);
    done.into_iter().map(|(_, result)| result).collect()
}

/// A lock whose holder cannot have panicked holding it (nothing panics
/// while the crate's are held), taken even if it had.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What `f` pushes for every item, concatenated in the items' order, as
/// [`map`] spreads the items: one vector per piece, not per item, so an
/// item's few results cost no allocation of their own (on one thread,
/// everything goes straight into one vector).
pub fn flat_map<'t, T, R, F, W>(items: &'t [T], threads: Threads, weight: W, f: F) -> Vec<R>
where
    T: Sync,
    R: Send,
    F: Fn(&'t T, &mut Vec<R>) + Sync,
    W: Fn(&T) -> usize,
{
    map_pieces(items, threads, weight, |piece: &'t [T]| {
        let mut part = Vec::new();
        for item in piece {
            f(item, &mut part);
        }
        part
    })
}

/// As [`map`], for work that owns its items (such as disjoint pieces of
/// memory to write).
pub fn map_owned<T, R, F, W>(items: Vec<T>, threads: Threads, weight: W, f: F) -> Vec<R>
where
    T: Send,
    R: Send,
    F: Fn(T) -> R + Sync,
    W: Fn(&T) -> usize,
{
    let weights: Vec<usize> = items.iter().map(weight).collect();
    if threads.split(Work::of(weights.iter().copied())) <= 1 {
        return items.into_iter().map(f).collect();
    }
    let slots: Vec<(usize, std::sync::Mutex<Option<T>>)> = weights
        .into_iter()
        .zip(items)
        .map(|(w, item)| (w, std::sync::Mutex::new(Some(item))))
        .collect();
    map(
        &slots,
        threads,
        |(w, _)| *w,
        |(_, slot)| {
            // Each slot is taken once, by the one thread its piece went to.
            let item = slot
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            item.map(&f)
        },
    )
    .into_iter()
    .flatten()
    .collect()
}

/// Consecutive ranges of `items` of about `total / count` weight each.
fn pieces<T>(
    items: &[T],
    weight: impl Fn(&T) -> usize,
    total: usize,
    count: usize,
) -> Vec<std::ops::Range<usize>> {
    let share = total.div_ceil(count.max(1)).max(1);
    let mut pieces = Vec::with_capacity(count);
    let (mut start, mut filled) = (0, 0);
    for (i, item) in items.iter().enumerate() {
        filled += weight(item);
        if filled >= share {
            pieces.push(start..i + 1);
            (start, filled) = (i + 1, 0);
        }
    }
    if start < items.len() {
        pieces.push(start..items.len());
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_keep_the_items_order_whatever_the_threads() {
        let items: Vec<usize> = (0..1000).collect();
        let serial: Vec<usize> = items.iter().map(|i| i * 3).collect();
        for threads in [1, 2, 3, 8] {
            // Each item weighs enough for every thread to be used.
            let parallel = map(
                &items,
                Threads::new(threads),
                |_| MIN_BYTES_PER_THREAD,
                |i| i * 3,
            );
            assert_eq!(parallel, serial, "{threads} threads");
        }
    }

    #[test]
    fn small_inputs_stay_on_the_callers_thread() {
        let caller = std::thread::current().id();
        let items = vec![1usize; 64];
        let threads = map(
            &items,
            Threads::new(8),
            |_| 1024,
            |_| std::thread::current().id(),
        );
        assert!(threads.iter().all(|&t| t == caller));
    }

    #[test]
    fn large_inputs_use_other_threads() {
        // Item 0 waits until another item has run: only a second thread
        // can run one meanwhile (a serial map would wait out the limit).
        let others_ran = std::sync::Mutex::new(false);
        let ran = std::sync::Condvar::new();
        let items: Vec<usize> = (0..64).collect();
        let ran_on = map(
            &items,
            Threads::new(2),
            |_| MIN_BYTES_PER_THREAD,
            |&i| {
                let mut flag = others_ran.lock().unwrap();
                if i == 0 {
                    let limit = std::time::Duration::from_secs(60);
                    flag = ran.wait_timeout_while(flag, limit, |f| !*f).unwrap().0;
                    assert!(*flag, "no other thread ran an item while item 0 waited");
                } else {
                    *flag = true;
                    ran.notify_all();
                }
                std::thread::current().id()
            },
        );
        let first = ran_on[0];
        assert!(ran_on.iter().any(|&t| t != first));
    }

    #[test]
    fn pieces_cover_every_item_once_in_order() {
        let items: Vec<usize> = (1..=100).collect();
        let total = items.iter().sum();
        let pieces = pieces(&items, |&w| w, total, 7);
        let covered: Vec<usize> = pieces.iter().flat_map(|r| r.clone()).collect();
        assert_eq!(covered, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn threads_follow_the_input_size() {
        let eight = Threads::new(8);
        assert_eq!(eight.for_bytes(0), 1);
        assert_eq!(eight.for_bytes(MIN_BYTES_PER_THREAD - 1), 1);
        assert_eq!(eight.for_bytes(3 * MIN_BYTES_PER_THREAD), 3);
        assert_eq!(Threads::new(2).for_bytes(100 * MIN_BYTES_PER_THREAD), 2);
        assert_eq!(Threads::new(0).for_bytes(100 * MIN_BYTES_PER_THREAD), 1);
        let every_core = Threads {
            count: None,
            min_bytes_each: 1,
        };
        assert_eq!(every_core.for_bytes(1), 1);
        assert!(every_core.for_bytes(usize::MAX) >= 1);
        let eager = Threads {
            count: Some(4),
            min_bytes_each: 1,
        };
        assert_eq!(eager.for_bytes(3), 3);
    }

    #[test]
    fn only_what_lies_beyond_the_largest_item_goes_to_other_threads() {
        const MIB: usize = MIN_BYTES_PER_THREAD;
        let two = Threads::new(2);
        // One large object and a small one: the second thread would wait
        // for the first.
        assert_eq!(two.for_work(Work::of([3 * MIB, MIB / 8])), 1);
        assert_eq!(two.split(Work::of([3 * MIB, MIB / 8])), 1);
        // Two large ones, or many small ones, keep both busy.
        assert_eq!(two.for_work(Work::of([3 * MIB, 2 * MIB])), 2);
        assert_eq!(two.for_work(Work::even(40, MIB / 16)), 2);
        // Never more threads than the bytes allow, or than items.
        assert_eq!(two.for_work(Work::of([MIB - 1, MIB - 1])), 1);
        assert_eq!(Threads::new(8).for_work(Work::even(3, 4 * MIB)), 3);
        assert_eq!(Threads::new(8).for_work(Work::of([20 * MIB, MIB, MIB])), 3);
        assert_eq!(two.for_work(Work::of([])), 1);
        assert_eq!(
            Work::of([5, 9, 2]),
            Work {
                total: 16,
                largest: 9,
                items: 3
            }
        );
        assert_eq!(Work::even(0, 7), Work::of([]));
    }

    #[test]
    fn owned_items_come_back_in_order() {
        let items: Vec<String> = (0..100).map(|i| i.to_string()).collect();
        let eager = Threads {
            count: Some(3),
            min_bytes_each: 1,
        };
        let back = map_owned(items.clone(), eager, |s| s.len(), |s| s + "!");
        let expected: Vec<String> = items.iter().map(|s| format!("{s}!")).collect();
        assert_eq!(back, expected);
    }
}
