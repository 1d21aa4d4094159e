//! What a load cost: its input and output sizes, the threads it used, and
//! the time of each stage. Kept by the session for the last load when asked
//! ([`crate::session::Session::keep_load_stats`],
//! [`crate::session::Session::last_load_stats`]) and written by `solder run
//! --stats FILE`, so a benchmark can relate time and memory to the bytes
//! read and written.

use std::time::Instant;

use serde::Serialize;

/// One load's sizes and stage times.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadStats {
    /// Bytes of the load's objects, archive members included.
    pub input_bytes: u64,
    /// Bytes of address space the module occupies (its three segments).
    pub image_bytes: u64,
    /// Threads the load's per-object stages were split over (1: serial).
    pub threads: usize,
    /// Each stage's wall time in milliseconds, in the order they first
    /// ran (a stage run in parts has their sum).
    pub stages: Vec<Stage>,
    /// The allocator the linker's own heap used by the load's end
    /// (`system` or `mimalloc`: see `heap.rs`), where the program that
    /// linked knows it: the `solder` command says, a session alone leaves
    /// it out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heap: Option<&'static str>,
}

/// One stage of a load.
#[derive(Debug, Clone, Serialize)]
pub struct Stage {
    pub name: &'static str,
    pub ms: f64,
}

/// Times consecutive stages: each [`StageClock::lap`] closes the stage
/// that began at the previous lap. A clock started off reads no time and
/// records nothing (a session that was not asked for stats pays nothing).
#[derive(Debug)]
pub struct StageClock {
    last: Option<Instant>,
    pub stages: Vec<Stage>,
}

impl StageClock {
    pub fn start(on: bool) -> StageClock {
        StageClock {
            last: on.then(Instant::now),
            stages: Vec::new(),
        }
    }

    /// Ends the stage `name` now. A stage timed in parts (resolution,
    /// before and after the host lookups) adds them up, in the place of
    /// its first.
    pub fn lap(&mut self, name: &'static str) {
        self.lap_at(name, Instant::now());
    }

    fn lap_at(&mut self, name: &'static str, now: Instant) {
        let Some(last) = self.last else {
            return;
        };
        let ms = now.duration_since(last).as_secs_f64() * 1e3;
        match self.stages.iter_mut().find(|s| s.name == name) {
            Some(stage) => stage.ms += ms,
            None => self.stages.push(Stage { name, ms }),
        }
        self.last = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Each lap closes the stage begun at the last; a stage lapped again
    /// adds the new part to its first place; a clock started off records
    /// nothing.
    #[test]
    fn a_stage_lapped_twice_adds_its_parts_in_its_first_place() {
        let start = Instant::now();
        let mut clock = StageClock {
            last: Some(start),
            stages: Vec::new(),
        };
        let at = |ms: u64| start + Duration::from_millis(ms);
        clock.lap_at("resolve", at(2));
        clock.lap_at("host lookups", at(3));
        clock.lap_at("resolve", at(7));
        clock.lap_at("plan", at(8));
        // Milliseconds to the microsecond: the parts are whole ones.
        let stages: Vec<(&str, f64)> = (clock.stages.iter())
            .map(|s| (s.name, (s.ms * 1e3).round() / 1e3))
            .collect();
        assert_eq!(
            stages,
            [("resolve", 6.0), ("host lookups", 1.0), ("plan", 1.0)],
            "rerun: cargo test -p solder-linker --lib stats::tests"
        );
        let mut off = StageClock::start(false);
        off.lap("resolve");
        assert!(off.stages.is_empty());
    }
}
