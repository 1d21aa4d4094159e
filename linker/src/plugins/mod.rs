//! Link plugins: each sees every module once it is written and protected
//! (before its initializers run) and may register something for it with
//! the executor: unwind frames, crash symbols, and later debugger and
//! profiler records. What a plugin registers comes back as a
//! [`Registration`] (the plugin and a token), which the session undoes
//! through [`LinkPlugin::removing`], newest first, before the module's
//! memory is released, on every path (removal, replacement, session end,
//! a failed load). A new plugin is one file here and one line
//! in [`default_plugins`].

mod crash_symbols;
pub mod debug_objects;
pub mod jitdump;
pub mod macho_debug;
mod perf_map;
mod unwind;

pub use debug_objects::DebugObjects;
pub use jitdump::JitDump;
pub use perf_map::PerfMap;

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
    /// Its function symbols, by address.
    pub crash_symbols: &'m std::sync::Arc<solder_executor::module::CrashSymbols>,
    /// Its ELF and Mach-O objects as debuggers read them, with their
    /// sections' load addresses (`debug_objects::debug_image`; empty unless
    /// the session keeps debug information). Shared with the session's
    /// record of the module.
    pub debug_images: &'m [std::sync::Arc<[u8]>],
}

/// One object of a module as a debugger needs it: its bytes and where its
/// sections were loaded.
#[derive(Debug, Clone, Copy)]
pub struct DebugSource<'m> {
    pub object: &'m [u8],
    pub places: &'m crate::link::SectionPlaces,
}

/// A plugin: told of every module once it is emitted, and again before
/// its memory is released.
pub trait LinkPlugin {
    fn name(&self) -> &'static str;

    /// Registers what the plugin needs for `module`. Returns the token
    /// [`LinkPlugin::removing`] is given back to undo it (an address, a
    /// key of the plugin's own), or `None` when it registered nothing.
    fn emitted(
        &mut self,
        executor: &mut dyn Executor,
        module: &Emitted<'_>,
    ) -> Result<Option<u64>, LinkError>;

    /// Undoes the registration `emitted` returned `token` for.
    fn removing(&mut self, executor: &mut dyn Executor, token: u64) -> Result<(), LinkError>;

    /// The session is ending: every module goes next (`removing` follows
    /// for each). A plugin whose record should outlive the process (a
    /// profiler map read after the run) keeps it as it is.
    fn session_ending(&mut self) {}
}

/// Something a plugin registered for one module: which plugin (its place
/// in the session's list) and the token that undoes it. A plain value, so
/// a load costs no allocation per plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registration {
    plugin: usize,
    token: u64,
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
    for (plugin, each) in plugins.iter_mut().enumerate() {
        match each.emitted(executor, module) {
            Ok(token) => done.extend(token.map(|token| Registration { plugin, token })),
            Err(err) => {
                // The first error is the one to report.
                let _ = undo_all(plugins, done, executor);
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
    plugins: &mut [Box<dyn LinkPlugin>],
    registrations: Vec<Registration>,
    executor: &mut dyn Executor,
) -> Result<(), LinkError> {
    let mut result = Ok(());
    for Registration { plugin, token } in registrations.into_iter().rev() {
        let undone = plugins[plugin].removing(executor, token);
        if result.is_ok() {
            result = undone;
        }
    }
    result
}
