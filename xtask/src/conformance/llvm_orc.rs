//! The `llvm-orc` implementation: an adapter in C++ against LLVM's ORC
//! APIs (`conformance/adapters/llvm-orc/adapter.cpp`), built here with
//! `llvm-config-19` when it is installed (Debian's `llvm-19-dev`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The built adapter, building it when its source is newer; `None` when
/// LLVM 19's development files are not installed.
pub fn adapter(root: &Path, target: &Path) -> Result<Option<PathBuf>> {
    let Some(flags) = llvm_config(&["--cxxflags"]) else {
        return Ok(None);
    };
    let source = root.join("conformance/adapters/llvm-orc/adapter.cpp");
    let output = target.join("conformance").join("llvm-orc-adapter");
    let fresh = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if let (Some(built), Some(written)) = (fresh(&output), fresh(&source))
        && built > written
    {
        return Ok(Some(output));
    }
    let link = llvm_config(&["--ldflags", "--system-libs", "--libs", "orcjit", "native"])
        .context("llvm-config-19 --libs failed")?;
    std::fs::create_dir_all(output.parent().expect("in a directory"))?;
    let compiler = if which("clang++-19") {
        "clang++-19"
    } else {
        "c++"
    };
    let status = Command::new(compiler)
        .args(flags.split_whitespace())
        .arg("-O1")
        .arg(&source)
        .arg("-o")
        .arg(&output)
        .args(link.split_whitespace())
        .status()
        .with_context(|| format!("cannot run {compiler}"))?;
    if !status.success() {
        bail!("building the llvm-orc adapter failed ({status})");
    }
    println!("conformance: built {}", output.display());
    Ok(Some(output))
}

fn llvm_config(args: &[&str]) -> Option<String> {
    let out = Command::new("llvm-config-19").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn which(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}
