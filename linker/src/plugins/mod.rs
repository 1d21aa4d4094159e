//! Link plugins: each sees every module once it is written and protected
//! (before its initializers run) and may register something for it with
//! the executor: unwind frames, crash symbols, and later debugger and
//! profiler records. What a plugin registers comes back as a
//! [`Registration`], which the session undoes, newest first, before the
//! module's memory is released, on every path (removal, replacement,
//! session end, a failed load). A new plugin is one file here and one line
//! in [`default_plugins`].

mod crash_symbols;
mod unwind;

use solder_executor::module::CrashSymbol;

use crate::error::LinkError;
use crate::executors::Executor;

/// What a plugin sees of a module that has just been emitted.
#[derive(Debug, Clone, Copy)]
pub struct Emitted<'m> {
    pub id: u32,
    /// The module's objects, for messages.
    pub objects: &'m str,
    /// The module's memory: start and size.
    pub memory: (u64, u64),
    /// Start of its merged, zero-terminated `.eh_frame`, if any.
    pub eh_frame: Option<u64>,
    /// Its function symbols.
    pub crash_symbols: &'m [CrashSymbol],
}

/// A plugin: told of every module once it is emitted.
pub trait LinkPlugin {
    fn name(&self) -> &'static str;

    /// Registers what the plugin needs for `module`; `None` when it
    /// registered nothing.
    fn emitted(
        &mut self,
        executor: &mut dyn Executor,
        module: &Emitted<'_>,
    ) -> Result<Option<Registration>, LinkError>;
}

type Undo = Box<dyn FnOnce(&mut dyn Executor) -> Result<(), LinkError>>;

/// Something a plugin registered for one module, with how to undo it.
pub struct Registration {
    plugin: &'static str,
    undo: Undo,
}

impl Registration {
    pub fn new(
        plugin: &'static str,
        undo: impl FnOnce(&mut dyn Executor) -> Result<(), LinkError> + 'static,
    ) -> Self {
        Registration {
            plugin,
            undo: Box::new(undo),
        }
    }

    /// The plugin that registered it.
    pub fn plugin(&self) -> &'static str {
        self.plugin
    }

    pub fn undo(self, executor: &mut dyn Executor) -> Result<(), LinkError> {
        (self.undo)(executor)
    }
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("plugin", &self.plugin)
            .finish_non_exhaustive()
    }
}

/// The plugins every session runs, in registration order.
pub fn default_plugins() -> Vec<Box<dyn LinkPlugin>> {
    vec![
        Box::new(unwind::UnwindFrames),
        Box::new(crash_symbols::CrashSymbols),
    ]
}

/// Runs every plugin for `module`. When one fails, what the others
/// registered is undone (newest first) before the error is returned.
pub fn register_all(
    plugins: &mut [Box<dyn LinkPlugin>],
    executor: &mut dyn Executor,
    module: &Emitted<'_>,
) -> Result<Vec<Registration>, LinkError> {
    let mut done = Vec::with_capacity(plugins.len());
    for plugin in plugins.iter_mut() {
        match plugin.emitted(executor, module) {
            Ok(registration) => done.extend(registration),
            Err(err) => {
                // The first error is the one to report.
                let _ = undo_all(done, executor);
                return Err(err);
            }
        }
    }
    Ok(done)
}

/// Undoes registrations newest first. On an error the rest are still
/// undone, and the first error is returned: the caller must then keep the
/// module's memory (something may still point into it).
pub fn undo_all(
    registrations: Vec<Registration>,
    executor: &mut dyn Executor,
) -> Result<(), LinkError> {
    let mut result = Ok(());
    for registration in registrations.into_iter().rev() {
        let undone = registration.undo(executor);
        if result.is_ok() {
            result = undone;
        }
    }
    result
}
