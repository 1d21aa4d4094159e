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
    /// Each stage's wall time in milliseconds, in the order they ran.
    pub stages: Vec<Stage>,
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
        let Some(last) = self.last else {
            return;
        };
        let now = Instant::now();
        let ms = now.duration_since(last).as_secs_f64() * 1e3;
        match self.stages.iter_mut().find(|s| s.name == name) {
            Some(stage) => stage.ms += ms,
            None => self.stages.push(Stage { name, ms }),
        }
        self.last = Some(now);
    }
}
