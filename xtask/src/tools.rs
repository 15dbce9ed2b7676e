//! The cargo subcommands the tasks run (cargo-auditable, cargo-deny, cargo-fuzz),
//! installed from crates.io when they are not there, with `cargo install --locked` (each
//! built with its own `Cargo.lock`).
//!
//! They go in the user's tool directory for this project, `$CARGO_HOME/mdlr-tools`
//! (`~/.cargo/mdlr-tools`), one directory per tool and version — not in the checkout's
//! `target/`. cargo-auditable runs as rustc's workspace wrapper, and cargo mixes the
//! wrapper's path into the metadata hash of every workspace crate: a wrapper under
//! `target/` would make the binary differ with the checkout's path. (Its bytes depend on
//! `CARGO_HOME` anyway: the registry's source paths are in its panic messages.)
//!
//! The release tools are pinned: the same version on every machine embeds the same
//! dependency list and applies the same checks, so a release depends on the commit
//! alone.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// A cargo subcommand from crates.io.
pub struct CargoTool {
    /// The crate (and executable) name: `cargo-auditable` runs as `cargo auditable`.
    pub name: &'static str,
    /// The version to install; `None`: any version found will do (latest otherwise).
    pub version: Option<&'static str>,
}

/// Embeds the dependency list in the release binary (`.dep-v0`).
pub const CARGO_AUDITABLE: CargoTool = CargoTool {
    name: "cargo-auditable",
    version: Some("0.7.7"),
};

/// Checks licences, bans and sources (`cargo xtask deny`).
pub const CARGO_DENY: CargoTool = CargoTool {
    name: "cargo-deny",
    version: Some("0.20.2"),
};

/// Runs the fuzz targets (`cargo xtask fuzz`).
pub const CARGO_FUZZ: CargoTool = CargoTool {
    name: "cargo-fuzz",
    version: None,
};

/// `$CARGO_HOME/mdlr-tools`, else `~/.cargo/mdlr-tools`; `target/tools` of the
/// checkout when neither variable is set.
pub fn dir(root: &Path) -> PathBuf {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| Path::new(&h).join(".cargo"))
        });
    match cargo_home {
        Some(home) => home.join("mdlr-tools"),
        None => root.join("target").join("tools"),
    }
}

impl CargoTool {
    /// Where it is installed: `mdlr-tools/NAME-VERSION` (`NAME` when unpinned).
    pub fn install_root(&self, root: &Path) -> PathBuf {
        dir(root).join(match self.version {
            Some(v) => format!("{}-{v}", self.name),
            None => self.name.to_owned(),
        })
    }

    fn executable(&self, root: &Path) -> PathBuf {
        self.install_root(root).join("bin").join(self.name)
    }
}

/// A cargo command (see [`crate::cargo`]) that finds `tool` first on its `PATH`.
pub fn cargo(root: &Path, tool: &CargoTool) -> Command {
    let mut dirs = vec![tool.install_root(root).join("bin")];
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    let mut command = crate::cargo(root);
    if let Ok(path) = std::env::join_paths(dirs) {
        command.env("PATH", path);
    }
    command
}

/// Makes sure `tool` is there (an unpinned one may be anywhere cargo finds it), else
/// installs it.
pub fn ensure(root: &Path, tool: &CargoTool) -> Result<(), String> {
    if installed(root, tool) {
        return Ok(());
    }
    let spec = match tool.version {
        Some(v) => format!("{}@{v}", tool.name),
        None => tool.name.to_owned(),
    };
    let into = tool.install_root(root);
    println!(
        "xtask: installing {spec} (cargo install --locked {spec} --root {})",
        into.display()
    );
    let started = Instant::now();
    let status = crate::cargo(root)
        .args(["install", "--locked", &spec, "--root"])
        .arg(&into)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run cargo install: {e}"))?;
    if !status.success() {
        return Err(format!("cargo install {spec} failed ({status})"));
    }
    println!(
        "xtask: installed {spec} in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    match tool.executable(root).is_file() {
        true => Ok(()),
        false => Err(format!(
            "cargo install {spec} succeeded but {} is not there",
            tool.executable(root).display()
        )),
    }
}

/// Whether `tool` is installed as wanted.
fn installed(root: &Path, tool: &CargoTool) -> bool {
    tool.executable(root).is_file() || (tool.version.is_none() && runs(root, tool))
}

/// Whether `cargo SUBCOMMAND --version` runs.
fn runs(root: &Path, tool: &CargoTool) -> bool {
    let subcommand = tool.name.strip_prefix("cargo-").unwrap_or(tool.name);
    cargo(root, tool)
        .args([subcommand, "--version"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_tools_live_apart_per_version() {
        let root = Path::new("/some/checkout");
        let auditable = CARGO_AUDITABLE.install_root(root);
        assert!(auditable.ends_with("cargo-auditable-0.7.7"));
        assert_eq!(auditable.parent(), Some(dir(root).as_path()));
        assert!(CARGO_FUZZ.install_root(root).ends_with("cargo-fuzz"));
    }
}
