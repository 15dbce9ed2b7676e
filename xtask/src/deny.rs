//! `cargo xtask deny [--advisories]`: the supply-chain checks of `deny.toml` with
//! cargo-deny (pinned, installed into `~/.cargo/mdlr-tools` when missing), on what is compiled
//! into the binary: `mdlr-cli` and its dependencies for the release target, without dev
//! dependencies — the test-only crates of `tests/` and `xtask/` are not its business.
//!
//! - `licenses`: every licence on the allow-list of `deny.toml`;
//! - `bans`: no crate in two versions unless `deny.toml` says why;
//! - `sources`: crates from crates.io only, no git or other registry.
//!
//! `--advisories` adds the RustSec advisory check. It needs the advisory database from
//! GitHub, which CI's network does not reach, so CI runs the three checks above.

use std::path::Path;
use std::process::Stdio;

use crate::tools;

const USAGE: &str = "usage: cargo xtask deny [--advisories]";

pub fn run(root: &Path, args: &[&str]) -> Result<(), String> {
    let mut checks = vec!["licenses", "bans", "sources"];
    match args {
        [] => {}
        ["--advisories"] => checks.push("advisories"),
        _ => return Err(format!("unknown option {}\n{USAGE}", args.join(" "))),
    }
    tools::ensure(root, &tools::CARGO_DENY)?;
    println!(
        "deny: cargo deny check {} (mdlr-cli, as built)",
        checks.join(" ")
    );
    let status = tools::cargo(root, &tools::CARGO_DENY)
        .args([
            "deny",
            "--manifest-path",
            "crates/mdlr-cli/Cargo.toml",
            "--config",
            "deny.toml",
            "--locked",
            "check",
            "--show-stats",
        ])
        .args(&checks)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run cargo deny: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "cargo deny check {} failed ({status}); see deny.toml",
            checks.join(" ")
        ))
    }
}
