//! `--baseline REV`: another revision's binaries as one more contestant.
//!
//! REV (any git revision: `HEAD~1`, a hash, a branch) is checked out as a
//! detached `git worktree` under the target directory,
//! `target/bench-baseline/<hash>/src`, and built there with the same cargo
//! invocations as the current binaries but into its own target directory,
//! `target/bench-baseline/<hash>/target`: the current build is untouched,
//! and a second run with the same REV finds the worktree and the build in
//! place and only checks them. The link, incremental, churn and
//! large-program link measures then run the baseline's `solder` and
//! `solder-bench` (with the baseline's own `solder-executor`) alternated
//! with the current ones, and each table gains the baseline's median, the
//! ratio current ÷ baseline and a verdict: within 3%, or a regression. A verdict is reported, never asserted.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};

/// How much slower than the baseline a median may be before the verdict
/// says regression, in percent.
pub const TOLERANCE_PCT: f64 = 3.0;

/// A row's change against the baseline: its name and by how much the
/// current median exceeds the baseline's, in percent.
pub type Change = (String, f64);

/// A built baseline revision.
#[derive(Debug, Clone)]
pub struct Baseline {
    /// The revision as given on the command line.
    pub rev: String,
    /// Its commit, abbreviated to 12 hex digits.
    pub short: String,
    /// Its worktree.
    pub src: PathBuf,
    /// The directory of its release binaries (`solder`, `solder-bench`,
    /// `solder-executor`).
    pub release: PathBuf,
}

impl Baseline {
    /// How the report names the baseline: "`HEAD~1` (0123456789ab)".
    pub fn label(&self) -> String {
        if self.rev.starts_with(&self.short) {
            format!("`{}`", self.short)
        } else {
            format!("`{}` ({})", self.rev, self.short)
        }
    }
}

/// Runs `git ARGS` in `dir` and returns its trimmed standard output.
fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .context("cannot run git")?;
    ensure!(
        output.status.success(),
        "`git {}` in {} failed ({}): {}",
        args.join(" "),
        dir.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// The full commit hash `rev` names in the repository at `root`.
fn resolve(root: &Path, rev: &str) -> Result<String> {
    ensure!(
        !rev.is_empty() && !rev.starts_with('-'),
        "`{rev}` is not a git revision"
    );
    let spec = format!("{rev}^{{commit}}");
    git(root, &["rev-parse", "--verify", "--quiet", &spec])
        .ok()
        .filter(|hash| hash.len() >= 40 && hash.chars().all(|c| c.is_ascii_hexdigit()))
        .with_context(|| {
            format!(
                "unknown git revision `{rev}` in {} (try `git log --oneline` for one)",
                root.display()
            )
        })
}

/// A detached worktree of commit `hash` at `src`: the one already there if
/// it is at `hash` (its tracked files are reset, so that an edit cannot
/// leak into the baseline, and files that did not change keep their times,
/// so that cargo's build is reused), else a new one. `--force` lets `git
/// worktree add` take over a registration whose directory was deleted (with
/// `cargo clean`, say).
fn checkout(root: &Path, src: &Path, hash: &str) -> Result<()> {
    if src.join(".git").exists() && git(src, &["rev-parse", "HEAD"]).is_ok_and(|h| h == hash) {
        git(src, &["checkout", "--quiet", "--force", "--detach", hash])?;
        println!("baseline: reusing the worktree {}", src.display());
        return Ok(());
    }
    if src.exists() {
        std::fs::remove_dir_all(src).with_context(|| format!("remove {}", src.display()))?;
    }
    let parent = src.parent().context("the worktree has no parent")?;
    std::fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
    let path = src
        .to_str()
        .context("the target directory's path is not UTF-8")?;
    git(
        root,
        &[
            "worktree", "add", "--quiet", "--detach", "--force", path, hash,
        ],
    )
    .context("cannot check the baseline out")?;
    println!("baseline: checked {hash} out into {}", src.display());
    Ok(())
}

/// Checks `rev` out under `target/bench-baseline/` and builds it there
/// with `build` (given the source and target directories).
pub fn build(
    root: &Path,
    target: &Path,
    rev: &str,
    build: impl Fn(&Path, Option<&Path>) -> Result<()>,
) -> Result<Baseline> {
    let hash = resolve(root, rev)?;
    let short = hash[..12].to_string();
    let dir = target.join("bench-baseline").join(&short);
    let (src, own_target) = (dir.join("src"), dir.join("target"));
    checkout(root, &src, &hash).with_context(|| format!("baseline `{rev}` ({short})"))?;
    build(&src, Some(&own_target)).with_context(|| {
        format!(
            "cannot build the baseline `{rev}` ({short}) in {}",
            src.display()
        )
    })?;
    let release = own_target.join("release");
    for program in ["solder", "solder-bench", "solder-executor"] {
        if !release.join(program).is_file() {
            bail!(
                "the baseline `{rev}` ({short}) built no {} (is `{program}` part of that revision?)",
                release.join(program).display()
            );
        }
    }
    Ok(Baseline {
        rev: rev.to_string(),
        short,
        src,
        release,
    })
}

/// How much `current` exceeds `baseline`, in percent (negative: faster).
pub fn change_pct(current: f64, baseline: f64) -> f64 {
    (current / baseline - 1.0) * 100.0
}

/// The ratio current ÷ baseline as a table cell.
pub fn ratio_cell(current: f64, baseline: f64) -> String {
    format!("{:.3}×", current / baseline)
}

/// The median over rounds of each round's current ÷ baseline, for
/// measures whose two builds ran back to back in every round: the machine's
/// drift between rounds (an idle CPU's wake-up time moves a session
/// measure by ±20% from run to run) cancels out within each pair, where a
/// ratio of the two medians keeps it.
pub fn paired_ratio(current: &[f64], baseline: &[f64]) -> f64 {
    let ratios: Vec<f64> = current.iter().zip(baseline).map(|(c, b)| c / b).collect();
    super::median(&ratios)
}

/// A measure's verdict against the baseline from each row's change in
/// percent: "within 3% (largest change …)", with "; faster: -x.y% on ROW, …"
/// for the rows faster than that (or "faster on every row: …"), or
/// "REGRESSION: +x.y% on ROW, …" (worst first). A change counts as a regression when, rounded to the
/// tenth of a percent shown, it is above [`TOLERANCE_PCT`].
pub fn verdict(changes: &[Change]) -> String {
    // Adding zero turns a rounded -0.0 into 0.0.
    let shown = |pct: f64| (pct * 10.0).round() / 10.0 + 0.0;
    let mut over: Vec<&Change> = changes
        .iter()
        .filter(|(_, pct)| shown(*pct) > TOLERANCE_PCT)
        .collect();
    over.sort_by(|a, b| b.1.total_cmp(&a.1));
    if !over.is_empty() {
        let rows: Vec<String> = over
            .iter()
            .map(|(row, pct)| format!("{pct:+.1}% on {row}"))
            .collect();
        return format!("REGRESSION: {}", rows.join(", "));
    }
    // Rows faster by more than the tolerance are named on their own, most
    // first: "within 3%" would say nothing of a row twice as fast.
    let (mut faster, within): (Vec<&Change>, Vec<&Change>) = changes
        .iter()
        .partition(|(_, pct)| shown(*pct) < -TOLERANCE_PCT);
    faster.sort_by(|a, b| a.1.total_cmp(&b.1));
    let faster_rows: Vec<String> = faster
        .iter()
        .map(|(row, pct)| format!("{:+.1}% on {row}", shown(*pct)))
        .collect();
    let within_verdict = within
        .iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(row, pct)| {
            format!(
                "within {TOLERANCE_PCT:.0}% (largest change: {:+.1}% on {row})",
                shown(*pct)
            )
        });
    match (within_verdict, faster_rows.is_empty()) {
        (Some(verdict), true) => verdict,
        (Some(verdict), false) => format!("{verdict}; faster: {}", faster_rows.join(", ")),
        (None, false) => format!("faster on every row: {}", faster_rows.join(", ")),
        (None, true) => "no baseline numbers to compare".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(changes: &[(&str, f64)]) -> Vec<Change> {
        changes.iter().map(|(r, p)| (r.to_string(), *p)).collect()
    }

    #[test]
    fn ratio_and_change() {
        assert_eq!(ratio_cell(3.09, 3.0), "1.030×");
        assert_eq!(ratio_cell(2.0, 4.0), "0.500×");
        assert!((change_pct(3.09, 3.0) - 3.0).abs() < 1e-9);
        assert!((change_pct(2.0, 4.0) + 50.0).abs() < 1e-9);
    }

    #[test]
    fn paired_ratio_cancels_drift_between_runs() {
        // The machine got twice as slow for the last two runs; in each run
        // the current build was 2% slower than the baseline: the pairs say
        // 2% whatever the drift.
        let baseline = [10.0, 10.0, 10.0, 20.0, 20.0];
        let current = [10.2, 10.2, 10.2, 20.4, 20.4];
        assert!((paired_ratio(&current, &baseline) - 1.02).abs() < 1e-9);
        // An odd pair does not move the median.
        let current = [10.2, 30.0, 10.2, 20.4, 20.4];
        assert!((paired_ratio(&current, &baseline) - 1.02).abs() < 1e-9);
    }

    #[test]
    fn within_tolerance() {
        assert_eq!(
            verdict(&rows(&[("lua (gcc)", -1.25), ("sqlite (gcc)", 2.96)])),
            "within 3% (largest change: +3.0% on sqlite (gcc))"
        );
        // A row faster than the tolerance is named apart, not hidden
        // behind the largest change.
        assert_eq!(
            verdict(&rows(&[("inproc", -8.0), ("pipe", -2.0)])),
            "within 3% (largest change: -2.0% on pipe); faster: -8.0% on inproc"
        );
        assert_eq!(
            verdict(&rows(&[("shm", -0.04)])),
            "within 3% (largest change: +0.0% on shm)"
        );
    }

    #[test]
    fn faster_everywhere_names_each_row_most_first() {
        assert_eq!(
            verdict(&rows(&[
                ("OpenSSL", -14.3),
                ("C++ -g", -57.04),
                ("C++", -23.1)
            ])),
            "faster on every row: -57.0% on C++ -g, -23.1% on C++, -14.3% on OpenSSL"
        );
    }

    #[test]
    fn regression_lists_each_row_worst_first() {
        assert_eq!(
            verdict(&rows(&[("inproc", 3.06), ("pipe", 1.0), ("shm", 12.34)])),
            "REGRESSION: +12.3% on shm, +3.1% on inproc"
        );
    }

    #[test]
    fn nothing_to_compare() {
        assert_eq!(verdict(&[]), "no baseline numbers to compare");
    }

    #[test]
    fn label_names_the_revision_and_its_commit() {
        let baseline = Baseline {
            rev: "HEAD~1".into(),
            short: "0123456789ab".into(),
            src: PathBuf::new(),
            release: PathBuf::new(),
        };
        assert_eq!(baseline.label(), "`HEAD~1` (0123456789ab)");
        let by_hash = Baseline {
            rev: "0123456789abcdef".into(),
            ..baseline
        };
        assert_eq!(by_hash.label(), "`0123456789ab`");
    }
}
