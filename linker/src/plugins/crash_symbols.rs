//! Crash symbols: a module's function symbols are published to the
//! executor, so a crash record names `symbol+offset` in the module, and
//! withdrawn before its memory goes.

use super::{Emitted, LinkPlugin};
use crate::error::LinkError;
use crate::executors::Executor;

pub struct CrashSymbols;

impl LinkPlugin for CrashSymbols {
    fn name(&self) -> &'static str {
        "crash symbols"
    }

    fn emitted(
        &mut self,
        executor: &mut dyn Executor,
        module: &Emitted<'_>,
    ) -> Result<Option<u64>, LinkError> {
        let base = module.memory.0;
        executor.add_crash_symbols(base, module.crash_symbols);
        Ok(Some(base))
    }

    fn removing(&mut self, executor: &mut dyn Executor, base: u64) -> Result<(), LinkError> {
        executor.remove_crash_symbols(base);
        Ok(())
    }
}
