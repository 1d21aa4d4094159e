//! Bridges between object formats and the host: the names a load asks the
//! executor for (Mach-O's underscore, the runtime's Microsoft x64 variants
//! of the `atexit` family), and calling-convention shims between COFF code
//! (Microsoft x64) and System V functions.

use super::resolve::{Origin, Resolved, Resolver, Target, refused_reference};
use crate::error::{LinkError, Site};
use crate::graph::ObjectFormat;

/// Names the runtime provides under another name to COFF code, because
/// the handlers they register are Microsoft x64 functions.
const WIN64_RUNTIME_NAMES: [(&str, &str); 4] = [
    ("atexit", "__solder_win64_atexit"),
    ("_onexit", "__solder_win64_onexit"),
    ("at_quick_exit", "__solder_win64_at_quick_exit"),
    ("__cxa_atexit", "__solder_win64_cxa_atexit"),
];

/// Host symbols COFF code uses without a calling-convention shim: the stack
/// probe has its own register convention, and `_fltused` is data.
const WIN64_RAW_NAMES: [&str; 2] = ["__chkstk", "_fltused"];

/// The name to ask the executor for when an object of `format` leaves `name`
/// undefined: the C name (Mach-O's leading underscore removed), or the
/// runtime's Microsoft x64 variant of an `atexit`-like function. `None` when
/// no host symbol can match (a Mach-O name without the underscore).
pub fn host_name(format: ObjectFormat, name: &str) -> Option<&str> {
    let c_name = format.c_name(name)?;
    if format.convention().is_win64()
        && let Some(&(_, runtime)) = WIN64_RUNTIME_NAMES.iter().find(|(c, _)| *c == c_name)
    {
        return Some(runtime);
    }
    Some(c_name)
}

/// Every host name a load may ask about for an undefined `name`: its own
/// and, for a COFF import (`__imp_NAME`), NAME's.
pub fn host_names(format: ObjectFormat, name: &str) -> impl Iterator<Item = &str> {
    let import = (format == ObjectFormat::Coff)
        .then(|| name.strip_prefix("__imp_"))
        .flatten()
        .and_then(|inner| host_name(format, inner));
    host_name(format, name).into_iter().chain(import)
}

impl<'g> Resolver<'g, '_, '_> {
    /// Bridges calling conventions: a System V function referenced from
    /// COFF code is reached through a shim; a COFF function referenced from
    /// System V code is refused.
    pub(super) fn adapt_abi(
        &mut self,
        g: usize,
        r: Resolved<'g>,
        site: &dyn Fn() -> Site,
    ) -> Result<Resolved<'g>, LinkError> {
        let format = self.graphs[g].format;
        // Only COFF code calls host functions through shims, so only COFF
        // names are looked up among the raw ones (every resolution passes
        // here: the lookup is kept off the other formats' path).
        let raw = || {
            format
                .c_name(r.name)
                .is_some_and(|c| WIN64_RAW_NAMES.contains(&c))
        };
        let (sysv_function, win64_function) = match r.origin {
            Origin::Host { data: true } => (false, false),
            Origin::Host { .. } | Origin::Runtime => {
                (format.convention().is_win64() && !raw(), false)
            }
            Origin::Module {
                function: true,
                convention,
                ..
            } => (!convention.is_win64(), convention.is_win64()),
            _ => (false, false),
        };
        if format.convention().is_win64() && sysv_function {
            let next = self.shims.len();
            let index = *self.shim_of.entry(r.target).or_insert(next);
            if index == next {
                self.shims.push(r.target);
            }
            return Ok(Resolved {
                target: Target::Shim(index),
                ..r
            });
        }
        if !format.convention().is_win64() && win64_function {
            return Err(refused_reference(
                site(),
                r.name,
                ": it is a function of a COFF module (Microsoft x64 calling convention), \
                 which System V code cannot call",
            ));
        }
        Ok(r)
    }
}
