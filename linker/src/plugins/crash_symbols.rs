//! Crash symbols: a module's function symbols are published to the
//! executor, so a crash record names `symbol+offset` in the module, and
//! withdrawn before its memory goes.

use super::{Emitted, LinkPlugin, Registration};
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
    ) -> Result<Option<Registration>, LinkError> {
        let base = module.memory.0;
        executor.add_crash_symbols(base, module.crash_symbols);
        Ok(Some(Registration::new(self.name(), move |executor| {
            executor.remove_crash_symbols(base);
            Ok(())
        })))
    }
}
