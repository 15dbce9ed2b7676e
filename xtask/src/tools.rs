//! The cargo subcommands the tasks run (cargo-auditable, cargo-deny, cargo-fuzz),
//! installed from crates.io into the project's tool directory, `target/tools`, when they
//! are not there — as `cargo xtask test` installs Azurite there with npm.
//!
//! The release tools are pinned: the same version on every machine embeds the same
//! dependency list and applies the same checks, so a release is reproducible from the
//! commit alone. `cargo install --locked` builds them with their own `Cargo.lock`.

use std::ffi::OsString;
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

/// `target/tools`.
pub fn dir(root: &Path) -> PathBuf {
    root.join("target").join("tools")
}

/// `PATH` with `target/tools/bin` first, so that cargo finds the subcommands there.
pub fn path(root: &Path) -> OsString {
    let mut dirs = vec![dir(root).join("bin")];
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    std::env::join_paths(dirs).unwrap_or_else(|_| std::env::var_os("PATH").unwrap_or_default())
}

/// A cargo command (see [`crate::cargo`]) that finds the subcommands in `target/tools`.
pub fn cargo(root: &Path) -> Command {
    let mut command = crate::cargo(root);
    command.env("PATH", path(root));
    command
}

/// Makes sure `tool` is there: in `target/tools` at its version, or (for an unpinned
/// tool) anywhere cargo finds it; else installs it into `target/tools`.
pub fn ensure(root: &Path, tool: &CargoTool) -> Result<(), String> {
    if installed(root, tool) {
        return Ok(());
    }
    let spec = match tool.version {
        Some(v) => format!("{}@{v}", tool.name),
        None => tool.name.to_owned(),
    };
    let tools = dir(root);
    println!(
        "xtask: installing {spec} into {} (cargo install --locked {spec} --root {})",
        tools.display(),
        tools.display()
    );
    let started = Instant::now();
    let status = crate::cargo(root)
        .args(["install", "--locked", &spec, "--root"])
        .arg(&tools)
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
    match installed(root, tool) {
        true => Ok(()),
        false => Err(format!(
            "cargo install {spec} succeeded but {} is not in {}",
            tool.name,
            tools.join("bin").display()
        )),
    }
}

/// Whether `tool` is installed as wanted.
fn installed(root: &Path, tool: &CargoTool) -> bool {
    let tools = dir(root);
    if !tools.join("bin").join(tool.name).is_file() {
        // An unpinned tool may live elsewhere on PATH (`cargo install` without --root).
        return tool.version.is_none() && runs(root, tool);
    }
    match tool.version {
        None => true,
        // cargo install records what it put there: `"cargo-deny 0.20.2 (registry+...)"`.
        Some(version) => std::fs::read_to_string(tools.join(".crates.toml"))
            .is_ok_and(|list| list.contains(&format!("\"{} {version} (", tool.name))),
    }
}

/// Whether `cargo SUBCOMMAND --version` runs.
fn runs(root: &Path, tool: &CargoTool) -> bool {
    let subcommand = tool.name.strip_prefix("cargo-").unwrap_or(tool.name);
    cargo(root)
        .args([subcommand, "--version"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
