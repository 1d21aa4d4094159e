//! Unwind frames: a module's `.eh_frame` is registered with the runtime's
//! unwinder (`__register_frame`), so C++ exceptions and backtraces cross
//! JIT'd frames, and deregistered before its memory goes.

use super::{Emitted, LinkPlugin};
use crate::error::LinkError;
use crate::executors::Executor;

pub struct UnwindFrames;

impl LinkPlugin for UnwindFrames {
    fn name(&self) -> &'static str {
        "unwind frames"
    }

    fn emitted(
        &mut self,
        executor: &mut dyn Executor,
        module: &Emitted<'_>,
    ) -> Result<Option<u64>, LinkError> {
        let Some(begin) = module.eh_frame else {
            return Ok(None);
        };
        executor.register_frames(begin)?;
        Ok(Some(begin))
    }

    fn removing(&mut self, executor: &mut dyn Executor, begin: u64) -> Result<(), LinkError> {
        executor.deregister_frames(begin)
    }
}
