//! The `native` implementation: the platform's own loader as the reference
//! for what "native order" means. Each load is linked by the system
//! compiler driver into a shared object (`cc -shared`) and opened with
//! `dlopen(RTLD_NOW | RTLD_GLOBAL)`; a call goes through `dlsym`; removal
//! is `dlclose`; the session ends with `exit(0)`, so glibc runs every
//! handler and finalizer in its own order. ELF, in process only; no hot
//! swap, no recovery, no placement, no program entry points (a shared
//! object has no `main` to find), and position-independent fixtures only
//! (it asks for `-fPIC`).

use std::collections::BTreeMap;
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::process::Command;

use solder_executor::abi::CallingConvention;
use solder_executor::sys;
use solder_executor::sys::dl::Library;

use crate::formats::{Format, Mode};
use crate::protocol::{ArchiveInput, Capability, Hello, Input, PROTOCOL_VERSION, Reply, Request};
use crate::serve::{Implementation, flush_output};

/// The `native` implementation's state.
#[derive(Default)]
pub struct Native {
    /// Where the shared objects go (one directory per process).
    scratch: Option<PathBuf>,
    /// Open modules by name, in load order.
    modules: Vec<(String, Library)>,
    /// Archives given so far: every later load links with them too.
    archives: Vec<ArchiveInput>,
    /// `session.absolute`: `--defsym` for every load.
    absolute: BTreeMap<String, u64>,
    loads: u32,
}

impl Implementation for Native {
    fn hello(&self) -> Hello {
        Hello {
            protocol: PROTOCOL_VERSION,
            name: "native".into(),
            version: compiler_version(),
            formats: vec![Format::Elf],
            modes: vec![Mode::Inproc],
            capabilities: vec![
                Capability::Remove,
                Capability::Archives,
                Capability::Absolute,
            ],
            cflags: vec!["-fPIC".into()],
        }
    }

    fn handle(&mut self, request: Request) -> Reply {
        match request {
            Request::Start {
                format,
                mode,
                session,
                ..
            } => {
                if format != Format::Elf || mode != Mode::Inproc {
                    return Reply::Failed {
                        message: format!("native runs ELF in process, not {format} {mode}"),
                    };
                }
                self.absolute = session.absolute;
                match scratch_dir() {
                    Ok(dir) => {
                        self.scratch = Some(dir);
                        Reply::Ok
                    }
                    Err(message) => Reply::Failed { message },
                }
            }
            Request::Load {
                module,
                objects,
                archives,
            } => self.load(&module, &objects, &archives),
            Request::Call { symbol, args, .. } => self.call(&symbol, &args),
            Request::Remove { module } => {
                match self.modules.iter().position(|(name, _)| *name == module) {
                    Some(index) => match self.modules.remove(index).1.close() {
                        Ok(()) => Reply::Ok,
                        Err(message) => Reply::Failed { message },
                    },
                    None => Reply::NoModule { name: module },
                }
            }
            Request::End => {
                // glibc's own order: atexit handlers and every open
                // library's finalizers, newest first.
                flush_output();
                if let Some(dir) = &self.scratch {
                    let _ = std::fs::remove_dir_all(dir);
                }
                sys::exit::exit(0)
            }
            Request::Run { .. } | Request::Replace { .. } => Reply::Failed {
                message: "native declares neither `run` nor `replace`".into(),
            },
        }
    }
}

impl Native {
    /// `cc -shared` of the objects (with every archive given so far, and
    /// `--defsym` for absolute names), then `dlopen`.
    fn load(&mut self, module: &str, objects: &[Input], archives: &[ArchiveInput]) -> Reply {
        for archive in archives {
            if !self.archives.iter().any(|a| a.name == archive.name) {
                self.archives.push(archive.clone());
            }
        }
        self.loads += 1;
        let Some(dir) = &self.scratch else {
            return Reply::Failed {
                message: "the first request must be `start`".into(),
            };
        };
        let output = dir.join(format!("{}-{module}.so", self.loads));
        let mut command = Command::new(compiler());
        command.arg("-shared").arg("-o").arg(&output);
        command.args(objects.iter().map(|o| &o.path));
        for archive in &self.archives {
            if archive.whole && archives.iter().any(|a| a.name == archive.name) {
                command
                    .arg("-Wl,--whole-archive")
                    .arg(&archive.path)
                    .arg("-Wl,--no-whole-archive");
            } else {
                command.arg(&archive.path);
            }
        }
        for (name, address) in &self.absolute {
            command.arg(format!("-Wl,--defsym={name}={address:#x}"));
        }
        match command.output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => return link_error(&String::from_utf8_lossy(&out.stderr)),
            Err(err) => {
                return Reply::Failed {
                    message: format!("cannot run {}: {err}", compiler()),
                };
            }
        }
        let Ok(path) = CString::new(output.display().to_string()) else {
            return Reply::Failed {
                message: "a path with a NUL byte".into(),
            };
        };
        match Library::open_global(&path) {
            Ok(library) => {
                self.modules.push((module.to_string(), library));
                Reply::Ok
            }
            Err(message) => link_error(&message),
        }
    }
}

impl Native {
    /// Calls `symbol`, looked up in the open modules in load order (each
    /// by its handle: `dlsym(RTLD_DEFAULT)` would make this program depend
    /// on the module, and `dlclose` would then never unload it), with up
    /// to six integer arguments.
    fn call(&self, symbol: &str, args: &[i64]) -> Reply {
        let address = CString::new(symbol).ok().and_then(|name| {
            self.modules
                .iter()
                .find_map(|(_, library)| library.symbol(&name))
        });
        match address {
            Some(address) => call_at(address, args),
            None => Reply::MissingSymbol {
                name: symbol.to_string(),
            },
        }
    }
}

/// Calls the function at `address` with up to six integer arguments.
fn call_at(address: u64, args: &[i64]) -> Reply {
    let mut registers = [0u64; 6];
    for (register, &arg) in registers.iter_mut().zip(args) {
        *register = arg as u64;
    }
    // SAFETY: the scenario names a function of a fixture taking at most six
    // integer arguments; whatever it does happens in this disposable
    // process.
    let value =
        unsafe { solder_executor::calls::call6(address, CallingConvention::SysV, registers) };
    Reply::Returned { value }
}

/// What the static linker or the loader said, as a portable kind.
fn link_error(message: &str) -> Reply {
    let kind = if message.contains("undefined symbol") || message.contains("undefined reference") {
        "undefined-symbol"
    } else if message.contains("multiple definition") {
        "duplicate-symbol"
    } else if message.contains("out of range")
        || message.contains("truncated to fit")
        || message.contains("can not be used when making a shared object")
    {
        "out-of-range"
    } else if message.contains("file format not recognized")
        || message.contains("no more archived files")
        || message.contains("file too short")
        || message.contains("truncated")
    {
        "malformed"
    } else {
        "unsupported"
    };
    Reply::LinkError {
        kind: kind.into(),
        message: message.trim().to_string(),
    }
}

/// The compiler driver that links shared objects (`CC`, else `cc`).
fn compiler() -> String {
    std::env::var("CC").unwrap_or_else(|_| "cc".into())
}

/// `cc --version`'s first line, for reports.
fn compiler_version() -> String {
    Command::new(compiler())
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_string)
        })
        .unwrap_or_else(|| "unknown".into())
}

/// A fresh directory for this process's shared objects.
fn scratch_dir() -> Result<PathBuf, String> {
    let dir =
        std::env::temp_dir().join(format!("solder-conformance-native-{}", std::process::id()));
    std::fs::create_dir_all(&dir)
        .map(|()| dir.clone())
        .map_err(|e| format!("cannot create {}: {e}", Path::new(&dir).display()))
}
