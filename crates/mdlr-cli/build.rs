//! Puts the commit the binary was built from into `mdlr --version`, as the compile-time
//! variable `MDLR_BUILD_COMMIT`:
//!
//! - `MDLR_COMMIT`, when set and not empty (a build from a tarball, or a packager that
//!   knows better);
//! - else `git rev-parse --short=12 HEAD`, plus `-dirty` when the files built into the
//!   binary (`crates/`, `Cargo.toml`, `Cargo.lock`, `.cargo/`) differ from that commit;
//! - else `unknown` (no git, or not a git checkout).
//!
//! It reruns when `MDLR_COMMIT` changes, when HEAD moves (a commit, a checkout: in a
//! worktree HEAD lives in `--git-dir` and the branches in `--git-common-dir`), and when
//! a file it checks for `-dirty` changes, so the suffix never outlives the change.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What `-dirty` looks at, relative to the workspace root: everything compiled into
/// `mdlr`. (Docs, tests and xtask do not change the binary.)
const BUILT_FROM: [&str; 4] = ["crates", "Cargo.toml", "Cargo.lock", ".cargo"];

fn main() {
    println!("cargo::rerun-if-env-changed=MDLR_COMMIT");
    let commit = match std::env::var("MDLR_COMMIT") {
        Ok(c) if !c.trim().is_empty() => clean(&c),
        _ => from_git().unwrap_or_else(|| "unknown".to_owned()),
    };
    println!("cargo::rustc-env=MDLR_BUILD_COMMIT={commit}");
}

/// At most 64 characters of `[0-9A-Za-z._+-]`: nothing that could garble `--version`.
fn clean(text: &str) -> String {
    text.trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-'))
        .take(64)
        .collect()
}

fn from_git() -> Option<String> {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR")?);
    // crates/mdlr-cli → the workspace root.
    let root = manifest.parent()?.parent()?.to_path_buf();
    let git_dir = absolute(&root, &git(&root, &["rev-parse", "--git-dir"])?);
    let common_dir = absolute(&root, &git(&root, &["rev-parse", "--git-common-dir"])?);
    watch_head(&git_dir, &common_dir);
    for path in BUILT_FROM {
        let path = root.join(path);
        if path.exists() {
            println!("cargo::rerun-if-changed={}", path.display());
        }
    }
    let head = git(&root, &["rev-parse", "--short=12", "HEAD"])?;
    if !head.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    // Untracked files count: a new module compiled in is a change too.
    let mut status = vec!["--no-optional-locks", "status", "--porcelain", "--"];
    status.extend(BUILT_FROM);
    let dirty = match git_output(&root, &status) {
        Some(out) => !out.trim().is_empty(),
        // Cannot tell: say nothing rather than something wrong.
        None => false,
    };
    Some(if dirty { format!("{head}-dirty") } else { head })
}

/// `rerun-if-changed` on what moves HEAD: the `HEAD` file of this worktree, the branch
/// it points to (loose, or its directory if not there yet) and `packed-refs`.
fn watch_head(git_dir: &Path, common_dir: &Path) {
    let head = git_dir.join("HEAD");
    println!("cargo::rerun-if-changed={}", head.display());
    let Ok(text) = std::fs::read_to_string(&head) else {
        return;
    };
    if let Some(reference) = text.trim().strip_prefix("ref: ") {
        let loose = common_dir.join(reference);
        // A branch whose only copy is in packed-refs gets a loose file at its next
        // commit: watch the directory it will appear in.
        let watched = match loose.exists() {
            true => Some(loose),
            false => loose.parent().map(Path::to_path_buf),
        };
        if let Some(path) = watched.filter(|p| p.exists()) {
            println!("cargo::rerun-if-changed={}", path.display());
        }
    }
    let packed = common_dir.join("packed-refs");
    if packed.exists() {
        println!("cargo::rerun-if-changed={}", packed.display());
    }
}

fn absolute(root: &Path, path: &str) -> PathBuf {
    let path = Path::new(path);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        root.join(path)
    }
}

/// The first line git prints, when it runs and succeeds.
fn git(root: &Path, args: &[&str]) -> Option<String> {
    let out = git_output(root, args)?;
    out.lines()
        .next()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
}

fn git_output(root: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(root)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    String::from_utf8(output.stdout).ok()
}
