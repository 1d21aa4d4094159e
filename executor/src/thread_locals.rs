//! Modules' thread-local blocks, as TLS carriers the dynamic loader holds,
//! by id: what the executor's server (`LoadThreadLocals`) and the linker's
//! in-process executor hand out and close.

use std::collections::HashMap;

use crate::sys::tls::Carrier;
pub use crate::tls_carrier::HostThreadLocal;
use crate::tls_carrier::{TlsTemplate, carrier_object, host_probe_object};

/// A block just loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadedBlock {
    /// For [`ThreadLocalBlocks::close`].
    pub id: u64,
    /// The loader's module id (for `__tls_get_addr`).
    pub module: u64,
    /// The block's thread-pointer offset when fixed; 0 otherwise.
    pub tp_offset: i64,
}

/// The open carriers.
#[derive(Debug, Default)]
pub struct ThreadLocalBlocks {
    carriers: HashMap<u64, Carrier>,
    last_id: u64,
}

impl ThreadLocalBlocks {
    /// Loads `template` as a carrier (with `fixed`, in static TLS). The
    /// error says why, in the loader's words where it refused.
    pub fn load(&mut self, template: &TlsTemplate<'_>, fixed: bool) -> Result<LoadedBlock, String> {
        let bytes = carrier_object(template, fixed).map_err(|e| e.to_string())?;
        let carrier = Carrier::load(&bytes)?;
        let module = carrier.module_id()?;
        let tp_offset = if fixed { carrier.tp_offset() } else { 0 };
        self.last_id += 1;
        self.carriers.insert(self.last_id, carrier);
        Ok(LoadedBlock {
            id: self.last_id,
            module,
            tp_offset,
        })
    }

    /// Closes block `id`: every thread's copy goes. False when no block
    /// has that id.
    pub fn close(&mut self, id: u64) -> bool {
        self.carriers.remove(&id).is_some()
    }
}

/// Asks the loader where the host's thread-local variable `name` lives
/// (see [`host_probe_object`]); with `fixed`, also its thread-pointer
/// offset, placing its library in static TLS if it can. The error is the
/// loader's message: an undefined symbol, or no room in static TLS.
pub fn host_thread_local(name: &str, fixed: bool) -> Result<HostThreadLocal, String> {
    let (bytes, slots) = host_probe_object(name, fixed).map_err(|e| e.to_string())?;
    // The probe has no block of its own and is closed at once: what the
    // loader wrote into it are facts about the variable's library, which
    // stays loaded.
    let probe = Carrier::load(&bytes)?;
    Ok(HostThreadLocal {
        module: probe.word(slots.module),
        offset: probe.word(slots.offset),
        tp_offset: slots.tp_offset.map(|slot| probe.word(slot) as i64),
    })
}
