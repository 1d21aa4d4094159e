//! Object-format front-ends: each turns one relocatable object into a
//! format-neutral [`LinkGraph`](crate::graph::LinkGraph), as a short
//! sequence of named phases in its own folder.

pub mod coff;
pub mod eh_frame;
pub mod elf;
pub mod macho;

use crate::error::LinkError;

/// What the phases of a front-end report about the object they read,
/// naming it: a malformed object, or one Solder does not link.
pub(crate) trait ObjectErrors {
    /// The object's name, for messages.
    fn object(&self) -> &str;

    fn malformed(&self, reason: String) -> LinkError {
        LinkError::Malformed {
            object: self.object().to_string(),
            reason,
        }
    }

    fn unsupported(&self, reason: String) -> LinkError {
        LinkError::UnsupportedObject {
            object: self.object().to_string(),
            reason,
        }
    }
}
