//! A crew: helper threads kept awake through one large load, so that each
//! of its parallel stages finds them running instead of starting threads
//! anew.
//!
//! A thread started (or woken) while the other cores are idle runs only
//! once an idle core wakes, and an idle virtual CPU can take milliseconds
//! to: on a 2-vCPU virtual machine, 1.6 ms from `pthread_create` to the
//! thread running, longer than most stages of a load take, so a stage's
//! helper arrived after the caller had done nearly all the work. A crew's
//! helpers start once, when the load does, and between stages spin
//! (yielding to anything else that wants their core) until the load ends.
//! They cost a core's time for the length of one large link, and nothing
//! for the small ones, which get no crew.
//!
//! Each helper keeps off the CPU its caller was on when the crew started
//! (`sys::cpu::keep_off`). A thread starts on its parent's CPU and is moved
//! to an idle one only when the scheduler balances, which on a virtual
//! machine can take milliseconds: until then the helper and the caller
//! share a CPU, the other idles, and a helper waiting for the next job
//! takes time from the caller. Traced on OpenSSL's link (1,127 objects, two
//! CPUs), a helper began reading 2-4 ms after its job was published in two
//! runs of three, and the caller parsed for 11 ms while its helper had
//! finished in 3. The caller stays free to move.
//!
//! A job is the work function of one [`super::map`]: the caller and every
//! helper run it once, taking pieces of the items in turn, and the caller
//! returns only when all of them have finished it.

use std::any::Any;
use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::lock;

/// A job as the helpers see it (its lifetime erased: see [`Crew::run`]).
type Job = &'static (dyn Fn() + Sync);

/// The helpers' shared state.
struct Crew {
    /// Helpers started (set before the first job).
    helpers: AtomicUsize,
    /// Bumped when a job is published; a helper runs a job when it sees
    /// the number change.
    generation: AtomicUsize,
    job: Mutex<Option<Job>>,
    /// Helpers that have not finished the current job.
    pending: AtomicUsize,
    /// A helper's panic in the current job, handed to the caller.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
    /// Set while a job runs: a job that asks for the crew itself (a map
    /// within a map) starts threads of its own instead.
    busy: AtomicBool,
    /// Set when the load is over: helpers return.
    done: AtomicBool,
}

thread_local! {
    /// The crew of the load running on this thread, if any.
    static CURRENT: Cell<Option<&'static Crew>> = const { Cell::new(None) };
}

/// Runs `body` (one load) with `helpers` helper threads kept awake for
/// [`super::map`] to use until it returns. Without helpers, or inside
/// another crew's body, `body` runs as it is.
pub fn with_crew<R>(helpers: usize, body: impl FnOnce() -> R) -> R {
    if helpers == 0 || CURRENT.get().is_some() {
        return body();
    }
    let crew = Crew {
        helpers: AtomicUsize::new(0),
        generation: AtomicUsize::new(0),
        job: Mutex::new(None),
        pending: AtomicUsize::new(0),
        panic: Mutex::new(None),
        busy: AtomicBool::new(false),
        done: AtomicBool::new(false),
    };
    let caller_cpu = caller_cpu();
    let shared = &crew;
    std::thread::scope(|scope| {
        // Dropped last, also when `body` panics: the helpers are told to
        // stop, and the scope waits for them.
        let _stop = Stop(&crew);
        // A helper the system will not start is done without.
        let started = (0..helpers)
            .map_while(|_| {
                let helper = move || {
                    if let Some(cpu) = caller_cpu {
                        keep_off(cpu);
                    }
                    shared.serve()
                };
                std::thread::Builder::new().spawn_scoped(scope, helper).ok()
            })
            .count();
        crew.helpers.store(started, Ordering::SeqCst);
        // SAFETY: the reference is stored for this thread only while
        // `_current` lives, which ends (clearing it) before `crew`, owned
        // by this frame, is dropped; nothing copies it out of `CURRENT`
        // beyond a call of `run_on_crew` that returns before then.
        let current: &'static Crew = unsafe { &*std::ptr::from_ref(&crew) };
        let _current = Current::set(current);
        body()
    })
}

/// The CPU the calling thread is on, which its helpers keep off (see the
/// module's documentation); none without the host layer.
fn caller_cpu() -> Option<usize> {
    #[cfg(feature = "host")]
    return solder_executor::sys::cpu::current();
    #[cfg(not(feature = "host"))]
    None
}

/// Keeps the calling thread (a helper) off `cpu`, where the host layer can.
fn keep_off(cpu: usize) {
    #[cfg(feature = "host")]
    solder_executor::sys::cpu::keep_off(cpu);
    #[cfg(not(feature = "host"))]
    let _ = cpu;
}

/// Runs `job` on this thread and on every helper of this thread's crew,
/// returning when all have finished it (a panic in any is resumed here).
/// `false` without a crew, or with one busy with another job: the caller
/// starts threads of its own.
pub(super) fn run_on_crew(job: &(dyn Fn() + Sync)) -> bool {
    match CURRENT.get() {
        Some(crew) if !crew.busy.swap(true, Ordering::AcqRel) => {
            let _free = Free(crew);
            crew.run(job);
            true
        }
        _ => false,
    }
}

/// Whether this thread has a crew free to take a job.
pub(super) fn free() -> bool {
    CURRENT
        .get()
        .is_some_and(|crew| !crew.busy.load(Ordering::Acquire))
}

impl Crew {
    fn run(&self, job: &(dyn Fn() + Sync)) {
        // SAFETY: helpers use the job only between the publication below
        // and their decrement of `pending`, and this function does not
        // return (or unwind) before `pending` is zero and the job is
        // withdrawn: `job`, and all it borrows, outlives every use.
        let erased: Job = unsafe { std::mem::transmute::<&(dyn Fn() + Sync), Job>(job) };
        *lock(&self.job) = Some(erased);
        let helpers = self.helpers.load(Ordering::SeqCst);
        self.pending.store(helpers, Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
        let mine = catch_unwind(AssertUnwindSafe(job));
        let mut idle = 0u32;
        while self.pending.load(Ordering::Acquire) > 0 {
            pause(&mut idle);
        }
        *lock(&self.job) = None;
        if let Err(panic) = mine {
            resume_unwind(panic);
        }
        if let Some(panic) = lock(&self.panic).take() {
            resume_unwind(panic);
        }
    }

    /// A helper's life: run each job published, until the load is over.
    fn serve(&self) {
        // Jobs are numbered from 1, and the next is published only once
        // every helper has finished the last: a helper that starts late
        // still sees the first.
        let mut seen = 0;
        let mut idle = 0u32;
        while !self.done.load(Ordering::Acquire) {
            let now = self.generation.load(Ordering::Acquire);
            if now == seen {
                pause(&mut idle);
                continue;
            }
            seen = now;
            idle = 0;
            let job = *lock(&self.job);
            if let Some(job) = job
                && let Err(panic) = catch_unwind(AssertUnwindSafe(job))
            {
                lock(&self.panic).get_or_insert(panic);
            }
            self.pending.fetch_sub(1, Ordering::Release);
        }
    }
}

/// Waiting without sleeping: spins briefly, then yields the core to
/// whatever else wants it.
fn pause(idle: &mut u32) {
    *idle = idle.saturating_add(1);
    if *idle < 128 {
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

/// Marks a crew free for the next job when dropped (also by a panic).
struct Free<'c>(&'c Crew);

impl Drop for Free<'_> {
    fn drop(&mut self) {
        self.0.busy.store(false, Ordering::Release);
    }
}

/// Makes a crew this thread's current one until dropped.
struct Current;

impl Current {
    fn set(crew: &'static Crew) -> Current {
        CURRENT.set(Some(crew));
        Current
    }
}

impl Drop for Current {
    fn drop(&mut self) {
        CURRENT.set(None);
    }
}

/// Tells a crew's helpers to return when dropped.
struct Stop<'c>(&'c Crew);

impl Drop for Stop<'_> {
    fn drop(&mut self) {
        self.0.done.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{MIN_BYTES_PER_THREAD, Threads, Work, map};
    use super::*;

    const RERUN: &str = "rerun: cargo test -p solder-linker --lib parallel::crew::tests";

    /// `map` over items where item 0 waits (up to a minute) until another
    /// thread has run an item: the helper must take part. The results, and
    /// the threads other than the caller that ran items.
    fn map_with_a_helper(threads: Threads) -> (Vec<usize>, Vec<std::thread::ThreadId>) {
        let caller = std::thread::current().id();
        let others_ran = std::sync::Mutex::new(false);
        let ran = std::sync::Condvar::new();
        let items: Vec<usize> = (0..64).collect();
        let out = map(
            &items,
            threads,
            |_| MIN_BYTES_PER_THREAD,
            |&i| {
                let mut flag = lock(&others_ran);
                if std::thread::current().id() == caller {
                    let limit = std::time::Duration::from_secs(60);
                    let waited = ran.wait_timeout_while(flag, limit, |f| !*f).unwrap().0;
                    assert!(*waited, "no helper ran an item while the caller waited");
                } else {
                    *flag = true;
                    ran.notify_all();
                }
                (i * 3, std::thread::current().id())
            },
        );
        let results = out.iter().map(|(r, _)| *r).collect();
        let mut helpers: Vec<_> = out
            .into_iter()
            .map(|(_, t)| t)
            .filter(|&t| t != caller)
            .collect();
        helpers.dedup();
        (results, helpers)
    }

    /// Maps inside a crew's body run on its helper, the same thread map
    /// after map (a thread is never started twice with one id), with the
    /// serial results in order; the crew is gone when the body returns.
    #[test]
    fn maps_in_a_load_share_the_crews_helpers() {
        let serial: Vec<usize> = (0..64).map(|i| i * 3).collect();
        let (first, second) = with_crew(1, || {
            (
                map_with_a_helper(Threads::new(2)),
                map_with_a_helper(Threads::new(2)),
            )
        });
        assert_eq!(first.0, serial, "{RERUN}");
        assert_eq!(second.0, serial, "{RERUN}");
        assert_eq!(
            first.1.len(),
            1,
            "one helper ran items: {:?}\n{RERUN}",
            first.1
        );
        assert_eq!(
            first.1, second.1,
            "the second map had another helper\n{RERUN}"
        );
        assert!(
            CURRENT.get().is_none(),
            "the crew outlived its body\n{RERUN}"
        );
        // Without a crew each map starts a thread of its own.
        let (_, third) = map_with_a_helper(Threads::new(2));
        assert_ne!(third, first.1, "{RERUN}");
    }

    /// A free crew takes work far too light to start threads for: a map of
    /// four items weighing [`MIN_BYTES_PER_CREW_THREAD`] each runs on the
    /// crew's helper too, and the same map without a crew stays on the
    /// caller.
    #[test]
    fn a_crew_takes_work_too_light_to_start_threads_for() {
        use super::super::MIN_BYTES_PER_CREW_THREAD;
        let light = |items: &[usize]| {
            let caller = std::thread::current().id();
            let ran = map(
                items,
                Threads::new(2),
                |_| MIN_BYTES_PER_CREW_THREAD,
                |&i| (i, std::thread::current().id() != caller),
            );
            assert_eq!(
                ran.iter().map(|&(i, _)| i).collect::<Vec<_>>(),
                items,
                "{RERUN}"
            );
            ran.iter().filter(|&&(_, helped)| helped).count()
        };
        let items: Vec<usize> = (0..4).collect();
        let work = Work::even(items.len(), MIN_BYTES_PER_CREW_THREAD);
        assert_eq!(Threads::new(2).split(work), 1, "{RERUN}");
        assert_eq!(light(&items), 0, "a map without a crew split\n{RERUN}");
        let (split, helped) = with_crew(1, || {
            let split = Threads::new(2).split(work);
            // The helper is spinning for work: wait (up to a minute) until
            // it takes some of a map's items.
            let limit = std::time::Instant::now() + std::time::Duration::from_secs(60);
            let mut helped = 0;
            while helped == 0 && std::time::Instant::now() < limit {
                helped = light(&items);
            }
            (split, helped)
        });
        assert_eq!(
            split, 2,
            "a free crew did not lower the split's threshold\n{RERUN}"
        );
        assert!(
            helped > 0,
            "the crew's helper never took light work\n{RERUN}"
        );
    }

    /// A panic in a job on a helper reaches the caller, as a serial map's
    /// would, and the crew stops; a map within a job (on the caller, whose
    /// crew is busy) starts threads of its own and runs.
    #[test]
    fn a_helpers_panic_reaches_the_caller_and_nested_maps_run() {
        let items: Vec<usize> = (0..64).collect();
        let weight = |_: &usize| MIN_BYTES_PER_THREAD;
        let caller = std::thread::current().id();
        let helper_ran = AtomicBool::new(false);
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            with_crew(1, || {
                map(&items, Threads::new(2), weight, |&i| {
                    if std::thread::current().id() != caller {
                        helper_ran.store(true, Ordering::Release);
                        panic!("item {i} on a helper");
                    }
                    let nested = map(&items[..4], Threads::new(2), weight, |j| j + i);
                    assert_eq!(nested, vec![i, i + 1, i + 2, i + 3]);
                    // Wait for the helper to take an item (and panic).
                    let limit = std::time::Instant::now() + std::time::Duration::from_secs(60);
                    while !helper_ran.load(Ordering::Acquire) && std::time::Instant::now() < limit {
                        std::thread::yield_now();
                    }
                })
            })
        }));
        let Err(panic) = outcome else {
            panic!("the helper's panic was lost\n{RERUN}");
        };
        let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(message.contains("on a helper"), "{message}\n{RERUN}");
        assert!(CURRENT.get().is_none(), "{RERUN}");
    }
}
