//! Helpers for the tests of remote executors: `solder-executor --listen`
//! as a child that is killed on drop, and the processes that it and the
//! sessions it serves are (found by an environment tag they inherit).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The environment variable that tags a listener and everything it starts.
pub const TAG_ENV: &str = "SOLDER_TEST_TAG";

/// `target/<profile>/solder-executor`, next to `solder`.
pub fn executor_binary() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_solder")).with_file_name("solder-executor");
    assert!(
        path.is_file(),
        "{} is missing: run the tests with `cargo test --workspace` (or `cargo build -p solder-executor` first)",
        path.display()
    );
    path
}

/// `solder-executor --listen ADDR ...`, killed on drop. The executor's
/// stdout goes to `stdout_file`: over TCP the program's output lands there
/// with `--executor-output local` (forwarded, it comes to the controller).
pub struct Listener {
    pub child: Child,
    pub address: String,
    pub stdout_file: PathBuf,
    /// The value of [`TAG_ENV`] in the listener and its sessions.
    pub tag: String,
}

impl Listener {
    /// Listens on 127.0.0.1 with `token` (if any) and `args`.
    pub fn start(name: &str, token: Option<&str>, args: &[&str]) -> Listener {
        Listener::start_with(name, token, args, "127.0.0.1:0", &[])
    }

    /// Listens on `address`, the executor started by `wrapper` (e.g. `ip
    /// netns exec NS`) when it is not empty.
    pub fn start_with(
        name: &str,
        token: Option<&str>,
        args: &[&str],
        address: &str,
        wrapper: &[&str],
    ) -> Listener {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let tag = format!(
            "{}-{name}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("executor-cli");
        std::fs::create_dir_all(&dir).unwrap();
        let ready = dir.join(format!("{tag}.address"));
        let _ = std::fs::remove_file(&ready);
        let stdout_file = dir.join(format!("{tag}.stdout"));
        let mut command = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut command = Command::new(program);
                command.args(rest).arg(executor_binary());
                command
            }
            None => Command::new(executor_binary()),
        };
        command
            .args(["--listen", address, "--ready-file"])
            .arg(&ready)
            .args(args)
            .env(TAG_ENV, &tag)
            .env_remove("SOLDER_EXECUTOR_TOKEN")
            .stdout(std::fs::File::create(&stdout_file).unwrap())
            // Refusals the tests provoke stay out of the test run's output.
            .stderr(std::fs::File::create(dir.join(format!("{tag}.stderr"))).unwrap());
        if let Some(token) = token {
            let file = dir.join(format!("{tag}.token"));
            std::fs::write(&file, format!("{token}\nnot part of the token\n")).unwrap();
            command.arg("--token-file").arg(file);
        }
        // Owned by the Listener at once, so a failed start still kills it.
        let mut listener = Listener {
            child: command.spawn().unwrap(),
            address: String::new(),
            stdout_file,
            tag,
        };
        let start = Instant::now();
        loop {
            if let Ok(text) = std::fs::read_to_string(&ready)
                && !text.trim().is_empty()
            {
                listener.address = text.trim().to_string();
                return listener;
            }
            if let Ok(Some(status)) = listener.child.try_wait() {
                panic!("solder-executor --listen exited early: {status}");
            }
            assert!(
                start.elapsed().as_secs() < 20,
                "solder-executor --listen did not write {}",
                ready.display()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The processes of this listener's sessions (serving processes,
    /// checkpoints, watchdogs): every process with its tag but the
    /// listener.
    pub fn sessions(&self) -> Vec<u32> {
        let mut found = tagged_processes(&self.tag);
        found.retain(|&pid| pid != self.child.id());
        found
    }

    /// Waits up to `limit` for the listener's sessions to be gone; the
    /// ones left.
    pub fn wait_for_no_sessions(&self, limit: Duration) -> Vec<u32> {
        let deadline = Instant::now() + limit;
        loop {
            let left = self.sessions();
            if left.is_empty() || Instant::now() >= deadline {
                return left;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Sessions that outlived the test would spin on.
        for pid in tagged_processes(&self.tag) {
            // SAFETY: signalling a process this test started (it carries the
            // test's own tag).
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
}

/// The live processes (zombies excluded) whose environment holds
/// `TAG=tag`.
pub fn tagged_processes(tag: &str) -> Vec<u32> {
    let needle = format!("{TAG_ENV}={tag}\0");
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let tagged = environ
            .windows(needle.len())
            .any(|w| w == needle.as_bytes());
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                let (_, rest) = stat.rsplit_once(") ")?;
                rest.chars().next()
            })
            .is_none_or(|state| state == 'Z' || state == 'X');
        if tagged && !zombie {
            found.push(pid);
        }
    }
    found
}

/// Two network namespaces made for one test, a controller's and an
/// executor's, joined by a veth pair (`10.77.0.1/30` and `10.77.0.2/30`:
/// the namespaces are private, so fixed addresses collide with nothing),
/// and deleted on drop, also when the test fails. Nothing changes in this
/// process's own namespace.
pub struct Partitionable {
    /// `solder-<pid>-<n>-ctl`: where the controller runs.
    pub controller: String,
    /// `solder-<pid>-<n>-exe`: where the executor runs.
    pub executor: String,
}

/// The executor's address in its namespace.
pub const EXECUTOR_IP: &str = "10.77.0.2";

/// Runs `ip ARGS`; its error output when it fails.
fn ip(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip`: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

impl Partitionable {
    /// Makes the namespaces and the link, or says why it cannot (not root,
    /// no `ip`, no namespace support).
    pub fn create() -> Result<Partitionable, String> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let base = format!("solder-{}-{n}", std::process::id());
        // Owned before anything is made, so whatever was made is deleted.
        let made = Partitionable {
            controller: format!("{base}-ctl"),
            executor: format!("{base}-exe"),
        };
        ip(&["netns", "add", &made.controller])?;
        ip(&["netns", "add", &made.executor])?;
        // Made directly inside the namespaces: no name or address ever
        // exists in this process's namespace.
        ip(&[
            "link",
            "add",
            "veth-ctl",
            "netns",
            &made.controller,
            "type",
            "veth",
            "peer",
            "name",
            "veth-exe",
            "netns",
            &made.executor,
        ])?;
        for (ns, link, address) in [
            (&made.controller, "veth-ctl", "10.77.0.1/30"),
            (&made.executor, "veth-exe", "10.77.0.2/30"),
        ] {
            ip(&["-n", ns, "addr", "add", address, "dev", link])?;
            ip(&["-n", ns, "link", "set", link, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(made)
    }

    /// The prefix that runs a program in namespace `ns`.
    pub fn exec_in(ns: &str) -> [&str; 4] {
        ["ip", "netns", "exec", ns]
    }

    /// Cuts the link silently: from now on packets between the namespaces
    /// are dropped, nobody sends a FIN or a RST.
    pub fn cut(&self) {
        ip(&["-n", &self.controller, "link", "set", "veth-ctl", "down"]).unwrap();
    }

    /// Restores the link.
    pub fn restore(&self) {
        ip(&["-n", &self.controller, "link", "set", "veth-ctl", "up"]).unwrap();
    }
}

impl Drop for Partitionable {
    fn drop(&mut self) {
        // Deleting the namespaces deletes the veth pair once no process is
        // left in them (the tests kill theirs first).
        let _ = ip(&["netns", "del", &self.controller]);
        let _ = ip(&["netns", "del", &self.executor]);
    }
}

/// Makes the namespaces, or: under `SOLDER_STRICT=1` fails the test,
/// otherwise prints why it is skipped and returns `None`.
pub fn partitionable_or_skip(test: &str) -> Option<Partitionable> {
    match Partitionable::create() {
        Ok(made) => Some(made),
        Err(why) => {
            let strict = std::env::var("SOLDER_STRICT").is_ok_and(|v| !v.is_empty() && v != "0");
            assert!(
                !strict,
                "{test}: cannot make network namespaces ({why}), and SOLDER_STRICT=1 forbids skipping"
            );
            eprintln!("SKIP {test}: cannot make network namespaces (needs root and `ip`): {why}");
            None
        }
    }
}
