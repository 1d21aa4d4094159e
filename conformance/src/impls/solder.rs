//! The `solder` implementation: the protocol's requests on a real
//! [`Session`], in every mode (in process, and an executor process over
//! pipes, TCP or shared memory), with every capability.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use solder_executor::sys;
use solder_linker::error::LinkError;
use solder_linker::{
    Archive, ExecutorChoice, ModuleId, ObjectFile, Outcome, Placement, Recovery, Session,
    SessionConfig, Transport,
};

use crate::formats::{Format, Mode};
use crate::protocol::{ArchiveInput, Capability, Hello, Input, PROTOCOL_VERSION, Reply, Request};
use crate::schema::{PlacementSpec, RecoverySpec, SessionSpec};
use crate::serve::Implementation;

/// The `solder` implementation's state: nothing before `start`.
#[derive(Default)]
pub struct Solder {
    started: Option<Started>,
}

/// A started session and what the requests named.
struct Started {
    session: Session,
    format: Format,
    modules: BTreeMap<String, ModuleId>,
    /// Archives on the session's search list, by name.
    archives: Vec<String>,
    /// Kept until the session is dropped (in TCP mode).
    _listener: Option<TcpExecutor>,
}

impl Implementation for Solder {
    fn hello(&self) -> Hello {
        Hello {
            protocol: PROTOCOL_VERSION,
            name: "solder".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            formats: Format::all(),
            modes: Mode::all(),
            capabilities: Capability::ALL.to_vec(),
            cflags: Vec::new(),
        }
    }

    fn handle(&mut self, request: Request) -> Reply {
        if let Request::Start {
            format,
            mode,
            session,
            trial,
        } = request
        {
            return match start(format, mode, &session, &trial) {
                Ok(started) => {
                    self.started = Some(started);
                    Reply::Ok
                }
                Err(message) => Reply::Failed { message },
            };
        }
        match &mut self.started {
            Some(started) => started.handle(request),
            None => Reply::Failed {
                message: "the first request must be `start`".into(),
            },
        }
    }
}

fn start(format: Format, mode: Mode, spec: &SessionSpec, trial: &str) -> Result<Started, String> {
    // TCP: an executor listening on a loopback port of its own, serving
    // each connection (a restart is a new connection) in a fresh process.
    let listener = match mode {
        Mode::Tcp => Some(TcpExecutor::start(trial)?),
        _ => None,
    };
    let config = session_config(spec, mode, listener.as_ref().map(|l| l.address.as_str()));
    let mut session =
        Session::new(config).map_err(|e| format!("cannot create the session: {e}"))?;
    for (name, &address) in &spec.absolute {
        session.define_absolute(name, address);
    }
    Ok(Started {
        session,
        format,
        modules: BTreeMap::new(),
        archives: Vec::new(),
        _listener: listener,
    })
}

impl Started {
    fn handle(&mut self, request: Request) -> Reply {
        let done = |r: Result<(), LinkError>| match r {
            Ok(()) => Reply::Ok,
            Err(err) => failure(err),
        };
        match request {
            Request::Start { .. } => Reply::Failed {
                message: "the session is started already".into(),
            },
            Request::Load {
                module,
                objects,
                archives,
            } => {
                let loaded = self
                    .inputs(&objects, &archives)
                    .and_then(|objects| self.session.load(&objects));
                done(loaded.map(|id| {
                    self.modules.insert(module, id);
                }))
            }
            Request::Run {
                module,
                objects,
                archives,
                entry,
            } => {
                let ran = self
                    .inputs(&objects, &archives)
                    .and_then(|objects| self.session.load_program(&objects, &entry))
                    .and_then(|(id, address)| {
                        self.modules.insert(module, id);
                        self.session.run_entry(address, &entry)
                    });
                match ran {
                    Ok(status) => Reply::Returned {
                        value: i64::from(status) as u64,
                    },
                    Err(err) => failure(err),
                }
            }
            Request::Call {
                symbol,
                args,
                timeout_ms,
            } => self.call(&symbol, &args, timeout_ms),
            Request::Replace {
                module,
                objects,
                repeat,
            } => match (self.modules.get(&module), read_objects(&objects)) {
                (Some(&id), Ok(objects)) => replace(&mut self.session, id, &objects, repeat),
                (None, _) => Reply::NoModule { name: module },
                (_, Err(err)) => failure(err),
            },
            Request::Remove { module } => match self.modules.get(&module) {
                Some(&id) => done(self.session.remove(id).map(|()| {
                    self.modules.remove(&module);
                })),
                None => Reply::NoModule { name: module },
            },
            Request::End => done(self.session.finish()),
        }
    }

    /// The objects of a load; the archives it names join the session's
    /// search list (each once).
    fn inputs(
        &mut self,
        objects: &[Input],
        archives: &[ArchiveInput],
    ) -> Result<Vec<ObjectFile>, LinkError> {
        for archive in archives {
            if self.archives.contains(&archive.name) {
                continue;
            }
            self.session
                .add_archive(Archive::read(&archive.path)?, archive.whole);
            self.archives.push(archive.name.clone());
        }
        read_objects(objects)
    }

    /// A call: looks the function up (spelled as the format spells it) and
    /// calls it.
    fn call(&mut self, symbol: &str, args: &[i64], timeout_ms: Option<u64>) -> Reply {
        let spelled = format!("{}{symbol}", self.format.symbol_prefix());
        match self.session.lookup(&spelled) {
            Ok(Some(address)) => {
                let args: Vec<u64> = args.iter().map(|&a| a as u64).collect();
                let timeout = timeout_ms.map(std::time::Duration::from_millis);
                // SAFETY: the scenario names a function of a fixture and
                // passes at most six integer arguments; whatever the
                // function does happens in this disposable process or in
                // the executor process.
                match unsafe { self.session.call_with_timeout(address, &args, timeout) } {
                    Ok(value) => Reply::Returned { value },
                    Err(err) => failure(err),
                }
            }
            Ok(None) => Reply::MissingSymbol {
                name: symbol.to_string(),
            },
            Err(err) => failure(err),
        }
    }
}

fn read_objects(objects: &[Input]) -> Result<Vec<ObjectFile>, LinkError> {
    objects
        .iter()
        .map(|input| {
            let file = ObjectFile::read(&input.path)?;
            Ok(ObjectFile {
                name: format!("{} ({})", input.name, input.path.display()),
                bytes: file.bytes,
            })
        })
        .collect()
}

/// Hot-swaps module `id` `repeat` times; the slab must not hold more after
/// the last swap than after the first.
fn replace(session: &mut Session, id: ModuleId, objects: &[ObjectFile], repeat: u32) -> Reply {
    let mut result = session.replace(id, objects);
    let first = session.slab_used();
    for _ in 1..repeat {
        if result.is_err() {
            break;
        }
        result = session.replace(id, objects);
    }
    let last = session.slab_used();
    match result {
        Ok(()) if last > first => Reply::MemoryGrew { first, last },
        Ok(()) => Reply::Ok,
        Err(err) => failure(err),
    }
}

/// The portable kind of a link error (`conformance/IMPLEMENTING.md`).
pub fn error_kind(err: &LinkError) -> &'static str {
    match err {
        LinkError::Undefined { .. } => "undefined-symbol",
        LinkError::Duplicate { .. } | LinkError::ComdatConflict { .. } => "duplicate-symbol",
        LinkError::OutOfRange(_) | LinkError::Misaligned(_) => "out-of-range",
        LinkError::Malformed { .. }
        | LinkError::MalformedArchive { .. }
        | LinkError::MalformedScript { .. } => "malformed",
        LinkError::Memory(_) => "memory",
        LinkError::InUse { .. } | LinkError::ThreadLocalInUse { .. } => "in-use",
        LinkError::ReplacementMissing { .. } => "replacement-missing",
        LinkError::Read { .. } | LinkError::LibraryNotFound { .. } | LinkError::NoSuchModule(_) => {
            "not-found"
        }
        _ => "unsupported",
    }
}

/// A failure as a reply: a link error, or how the executor ended.
fn failure(err: LinkError) -> Reply {
    match err {
        LinkError::Execution(abnormal) => match &abnormal.outcome {
            Outcome::Crashed(crash) => Reply::Crashed {
                signal: crash.signal,
                report: abnormal.to_string(),
            },
            &Outcome::Exited(status) => Reply::Exited { status },
            Outcome::TimedOut { after, .. } => Reply::TimedOut {
                ms: after.as_millis() as u64,
            },
            Outcome::Lost(_) | Outcome::Returned(_) => Reply::Failed {
                message: abnormal.to_string(),
            },
        },
        err @ (LinkError::Executor(_) | LinkError::ExecutorGone(_)) => Reply::Failed {
            message: err.to_string(),
        },
        err => Reply::LinkError {
            kind: error_kind(&err).to_string(),
            message: err.to_string(),
        },
    }
}

/// The session configuration of a scenario's `session` field, in `mode`.
pub fn session_config(spec: &SessionSpec, mode: Mode, tcp: Option<&str>) -> SessionConfig {
    let mut config = SessionConfig::default();
    let pipe = Transport::Pipe { program: None };
    config.executor = match mode {
        Mode::Inproc => ExecutorChoice::InProcess,
        Mode::Pipe => ExecutorChoice::Remote {
            transport: pipe,
            shared_memory: false,
        },
        Mode::Shm => ExecutorChoice::Remote {
            transport: pipe,
            shared_memory: true,
        },
        Mode::Tcp => ExecutorChoice::Remote {
            transport: Transport::Tcp {
                address: tcp.unwrap_or("127.0.0.1:0").to_string(),
                peer_timeout: solder_linker::DEFAULT_PEER_TIMEOUT,
            },
            shared_memory: false,
        },
    };
    config.recovery = match spec.recovery {
        None => Recovery::None,
        Some(RecoverySpec::Snapshot) => Recovery::Snapshot,
        Some(RecoverySpec::Restart) => Recovery::Restart,
    };
    if let Some(size) = spec.slab_size {
        config.slab_size = size;
    }
    if let Some(placement) = spec.placement {
        config.placement = match placement {
            PlacementSpec::Auto => Placement::Auto,
            PlacementSpec::NearHost => Placement::NearHost,
            PlacementSpec::Low => Placement::Low,
            PlacementSpec::Fixed(address) => Placement::Fixed(address),
        };
    }
    config
}

/// `solder-executor --listen 127.0.0.1:0`, killed when dropped (and when
/// this process dies: it is started with a parent-death signal).
struct TcpExecutor {
    process: std::process::Child,
    address: String,
}

impl TcpExecutor {
    fn start(trial: &str) -> Result<TcpExecutor, String> {
        let program =
            solder_linker::executors::executor_program(&None).map_err(|e| e.to_string())?;
        let ready = ready_file(trial);
        let _ = std::fs::remove_file(&ready);
        let mut command = std::process::Command::new(program);
        command
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--ready-file")
            .arg(&ready);
        sys::spawn::child_dies_with_parent(&mut command);
        let mut process = command
            .spawn()
            .map_err(|e| format!("cannot start solder-executor --listen: {e}"))?;
        let start = std::time::Instant::now();
        loop {
            if let Ok(text) = std::fs::read_to_string(&ready)
                && !text.trim().is_empty()
            {
                let _ = std::fs::remove_file(&ready);
                return Ok(TcpExecutor {
                    process,
                    address: text.trim().to_string(),
                });
            }
            if let Ok(Some(status)) = process.try_wait() {
                return Err(format!(
                    "solder-executor --listen exited ({status}) before listening"
                ));
            }
            if start.elapsed() > std::time::Duration::from_secs(10) {
                let _ = process.kill();
                return Err("solder-executor --listen did not start listening within 10 s".into());
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }
}

/// Where the TCP executor writes its address: beside this process's
/// captured output, or in the temporary directory.
fn ready_file(trial: &str) -> PathBuf {
    let name = format!(
        "solder-conformance-{}-{}.tcp-address",
        std::process::id(),
        trial.replace('/', "__")
    );
    std::env::temp_dir().join(Path::new(&name))
}

impl Drop for TcpExecutor {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}
