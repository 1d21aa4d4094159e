//! Room in static TLS: the loader's surplus that blocks placed at a fixed
//! thread-pointer offset (a load's initial-exec, local-exec or descriptor
//! accesses, a host library its initial-exec code names) must fit in.
//!
//! glibc sets the surplus once, when a process starts, from
//! `GLIBC_TUNABLES=glibc.rtld.optional_static_tls=BYTES` (by default about
//! 1.6 KiB are free in all). A spawned executor is started with
//! [`STATIC_TLS_SURPLUS`]; `solder run` in process starts again with it
//! when a load finds the room used up ([`restart_tunables`]).

use std::ffi::OsString;

use crate::LinkError;

/// The static TLS surplus a process that runs JIT'd code asks its loader
/// for: room for the fixed thread-local blocks of initial-exec and
/// local-exec modules (and libraries they place in static TLS), 64 KiB
/// instead of the loader's default 512 bytes. It costs every thread of the
/// process that much of its stack allocation.
pub const STATIC_TLS_SURPLUS: u32 = 64 << 10;

/// The tunable's name in `GLIBC_TUNABLES`.
const TUNABLE: &str = "glibc.rtld.optional_static_tls";

/// The words of glibc's loader when a block does not fit in static TLS
/// (`dlopen` fails with "…: cannot allocate memory in static TLS block").
const LOADER_REFUSAL: &str = "cannot allocate memory in static TLS block";

/// `tunables` with the static TLS surplus added unless they set one.
pub fn with_surplus(tunables: Option<OsString>) -> OsString {
    let mut tunables = tunables.unwrap_or_default();
    if sets_surplus(&tunables) {
        return tunables;
    }
    if !tunables.is_empty() {
        tunables.push(":");
    }
    tunables.push(format!("{TUNABLE}={STATIC_TLS_SURPLUS}"));
    tunables
}

/// Whether `tunables` already say how large the surplus is (the user's
/// choice, or an earlier restart's): then it is not changed.
fn sets_surplus(tunables: &OsString) -> bool {
    tunables.to_string_lossy().contains(TUNABLE)
}

/// Whether `error` is the loader's refusal of a block for want of static
/// TLS room (a load's fixed block, or a host library's block that
/// initial-exec code needs there): a process started with a larger
/// surplus may link what this one could not.
pub fn is_out_of_room(error: &LinkError) -> bool {
    matches!(error, LinkError::ThreadLocal { reason, .. } if reason.contains(LOADER_REFUSAL))
}

/// The `GLIBC_TUNABLES` to start this process again with after `error`:
/// `current` with [`STATIC_TLS_SURPLUS`] added. `None` when `error` is not
/// the want of room, or `current` already sets a surplus (the user's, or
/// the one a restart added: a process restarts at most once).
pub fn restart_tunables(error: &LinkError, current: Option<OsString>) -> Option<OsString> {
    let current = current.unwrap_or_default();
    (is_out_of_room(error) && !sets_surplus(&current)).then(|| with_surplus(Some(current)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RERUN: &str = "rerun: cargo test -p solder-linker --lib static_tls::tests";

    fn refused(reason: &str) -> LinkError {
        LinkError::ThreadLocal {
            what: "the load's thread-local block".into(),
            reason: reason.into(),
        }
    }

    #[test]
    fn the_surplus_is_added_unless_one_is_set() {
        let surplus = format!("{TUNABLE}={STATIC_TLS_SURPLUS}");
        assert_eq!(with_surplus(None), surplus.as_str(), "{RERUN}");
        assert_eq!(
            with_surplus(Some("glibc.malloc.arena_max=2".into())),
            format!("glibc.malloc.arena_max=2:{surplus}").as_str(),
            "{RERUN}"
        );
        let own = "glibc.rtld.optional_static_tls=100";
        assert_eq!(with_surplus(Some(own.into())), own, "{RERUN}");
    }

    #[test]
    fn only_the_loaders_want_of_room_restarts_and_only_once() {
        let full = refused("/proc/self/fd/3: cannot allocate memory in static TLS block: …");
        let surplus = format!("{TUNABLE}={STATIC_TLS_SURPLUS}");
        assert_eq!(
            restart_tunables(&full, None),
            Some(surplus.clone().into()),
            "{RERUN}"
        );
        assert_eq!(
            restart_tunables(&full, Some("glibc.malloc.arena_max=2".into())),
            Some(format!("glibc.malloc.arena_max=2:{surplus}").into()),
            "{RERUN}"
        );
        // Started again already, or the user chose the surplus.
        assert_eq!(
            restart_tunables(&full, Some(surplus.into())),
            None,
            "{RERUN}"
        );
        let own = "glibc.rtld.optional_static_tls=100";
        assert_eq!(restart_tunables(&full, Some(own.into())), None, "{RERUN}");
        // Other refusals are not a want of room.
        let odd = refused("the block's alignment 24 is not a power of two");
        assert_eq!(restart_tunables(&odd, None), None, "{RERUN}");
        let other = LinkError::Memory("no room in the slab".into());
        assert_eq!(restart_tunables(&other, None), None, "{RERUN}");
    }
}
