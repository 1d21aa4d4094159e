//! The implementations under test this crate ships, each serving the
//! protocol ([`crate::serve`]) when the harness binary is started with
//! `SOLDER_CONFORMANCE_SERVE` naming it.

pub mod native;
pub mod solder;

use crate::serve::{Implementation, ServeError, serve};

/// Serves implementation `name` (`solder`, `native`) on the descriptors the
/// runner gave this process.
pub fn serve_named(name: &str) -> Result<(), ServeError> {
    // A crash is reported on stderr (signal, address, symbol) and the
    // process dies of its signal, as the runner expects of any
    // implementation (Rust's own handler would abort on a stack overflow).
    solder_executor::crash::install_crash_reporter();
    let mut implementation: Box<dyn Implementation> = match name {
        "native" => Box::new(native::Native::default()),
        _ => Box::new(solder::Solder::default()),
    };
    serve(implementation.as_mut())
}
