//! The CPUs a thread runs on: which one it is on now, and keeping a
//! helper thread off the one its caller is on.

use nix::sched::{CpuSet, sched_getaffinity, sched_getcpu, sched_setaffinity};
use nix::unistd::Pid;

/// The CPU the calling thread is running on now (it may move the next
/// moment), if the system says.
pub fn current() -> Option<usize> {
    sched_getcpu().ok()
}

/// Keeps the calling thread off `cpu`: it may run on every other CPU it
/// was allowed. Whether its affinity changed: not when `cpu` was not
/// allowed, or was the only CPU allowed.
pub fn keep_off(cpu: usize) -> bool {
    let this_thread = Pid::from_raw(0);
    let Ok(mut allowed) = sched_getaffinity(this_thread) else {
        return false;
    };
    if allowed.is_set(cpu) != Ok(true) || allowed.unset(cpu).is_err() {
        return false;
    }
    let others = (0..CpuSet::count()).any(|other| allowed.is_set(other) == Ok(true));
    others && sched_setaffinity(this_thread, &allowed).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A thread kept off the CPU it was on runs elsewhere from then on,
    /// unless that CPU was the only one it may use; a CPU it may not use
    /// changes nothing. (A thread of its own: the affinity stays with it.)
    #[test]
    fn a_thread_kept_off_its_cpu_runs_elsewhere() {
        std::thread::spawn(|| {
            let allowed = sched_getaffinity(Pid::from_raw(0)).unwrap();
            let count = (0..CpuSet::count())
                .filter(|&c| allowed.is_set(c) == Ok(true))
                .count();
            let here = current().expect("sched_getcpu works on Linux");
            let moved = keep_off(here);
            assert_eq!(moved, count > 1, "{count} CPUs allowed");
            if moved {
                std::thread::yield_now();
                assert_ne!(current(), Some(here), "still on CPU {here}");
                assert!(!keep_off(here), "CPU {here} is no longer allowed");
            }
            assert!(!keep_off(CpuSet::count() + 1), "a CPU past the set");
        })
        .join()
        .unwrap();
    }
}
